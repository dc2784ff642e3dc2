//! Q5_0 and Q8_0 weights repacked at load into groups of 16 interleaved rows, for the AVX-512
//! VNNI matrix multiply, keeping llama.cpp's eight-lane arithmetic to the bit.
//!
//! The arithmetic to keep is [`q5_0::vec_dot_scalar`](crate::quant::formats::q5_0::vec_dot_scalar) / [`q8_0::vec_dot_scalar`](crate::quant::formats::q8_0::vec_dot_scalar):
//! eight f32 lanes per (row, column); for every block, lane `l` gets
//! `lane = fma(d_w · d_a, Σ of the 4 products of elements 4l..4l+4, lane)`, and at the end
//! [`hsum8`](crate::quant::block::hsum8). The models are chaotic enough that any other rounding (even exact whole-block
//! integer sums) moves their logits visibly, so the eight lanes stay; only the instructions are
//! organised differently from the row-pair kernels in `x86.rs`.
//!
//! Why interleave: in a register holding the same four bytes `4l..4l+4` of 16 rows, one `vpdpbusd`
//! against the column's four activation bytes broadcast gives, in lane `r`, exactly row `r`'s lane
//! sum `l`. So per (16 rows, column, block) the kernel spends 8 `vpdpbusd`, 8 conversions, 8
//! fused multiply-adds and one scale multiply (`d_w` of the 16 rows × `d_a`, shared by the eight
//! lanes): 25 instructions where the row-pair kernels spend 32. Accumulator `l` of a column holds
//! llama lane `l` of all 16 rows, and [`hsum8`](crate::quant::block::hsum8)'s order becomes vertical adds of whole
//! registers at the end.
//!
//! `vpdpbusd` multiplies unsigned by signed bytes, so the weights are stored unsigned, `u = q +
//! offset` (Q8_0: `q ^ 0x80`, offset 128; Q5_0: the raw five-bit value, offset 16), and each lane
//! sum starts from `-offset · Σ a` over its four activation bytes ([`LaneSums`], computed once per
//! matmul): `Σ u·a - offset·Σ a = Σ q·a` exactly, in integers, before the conversion.
//!
//! Layout of a group block (the 16 rows' block `i`; as many bytes as 16 file blocks):
//! - Q8_0, 544 bytes: the 16 rows' f16 scales (32 bytes), then eight 64-byte chunks; chunk `l`
//!   holds at bytes `4r..4r + 4` row `r`'s quants `4l..4l + 4`, each `q ^ 0x80`.
//! - Q5_0, 352 bytes: the 16 f16 scales (32 bytes); eight little-endian u64 masks (64 bytes),
//!   bit `4r + j` of mask `l` being the fifth bit of row `r`'s element `4l + j`; then four 64-byte
//!   chunks of nibbles, chunk `l` holding at bytes `4r..4r + 4` row `r`'s packed bytes
//!   `4l..4l + 4` (low nibbles: elements `4l..4l + 4`, lane `l`; high nibbles: elements
//!   `16 + 4l..16 + 4l + 4`, lane `l + 4`).
//!
//! The prompt kernel unpacks a Q5_0 group once into a small buffer in the Q8_0 layout (unsigned
//! bytes, offset 16), then every column tile runs over it from L1; one-column calls (token
//! generation) unpack each block in registers as they stream the weights.

#[cfg(target_arch = "x86_64")]
use super::grouped::{column_tiles, store_tile, Avx512Kernel, Column, GroupDot};
use super::grouped::{
    deinterleave_row, interleave_row, q8_0_block_sums, GroupedRows, CHUNK_BYTES as CHUNK,
};
use crate::quant::block::{as_blocks, hsum8, QK};
use crate::quant::formats::q5_0::BlockQ5_0;
use crate::quant::formats::q8_0::BlockQ8_0;
use crate::quant::types::GgmlType;

/// Rows per interleaved group (the i32/f32 lanes of a 512-bit register), as for every packed form.
pub use super::grouped::GROUP_ROWS;
/// Llama lanes per (row, column): one per four consecutive elements of a 32-element block.
const LANES: usize = QK / 4;
/// Bytes of the 16 f16 scales at the start of every group block.
const SCALE_BYTES: usize = 2 * GROUP_ROWS;
/// Bytes of a Q8_0 group block (and of the unpacked Q5_0 buffer's blocks).
const Q8_GROUP_BLOCK: usize = GROUP_ROWS * size_of::<BlockQ8_0>();
/// Bytes of a Q5_0 group block.
const Q5_GROUP_BLOCK: usize = GROUP_ROWS * size_of::<BlockQ5_0>();
/// Where a Q5_0 group block's nibble chunks start (after scales and masks).
const Q5_NIBBLES: usize = SCALE_BYTES + 8 * LANES;
const _: () = assert!(SCALE_BYTES + LANES * CHUNK == Q8_GROUP_BLOCK);
const _: () = assert!(Q5_NIBBLES + 4 * CHUNK == Q5_GROUP_BLOCK);

/// The weight offset that makes the quants unsigned (see the module doc).
fn offset(ty: GgmlType) -> i32 {
    if ty == GgmlType::Q5_0 {
        16
    } else {
        128
    }
}

/// A Q5_0 or Q8_0 matrix whose row count is a multiple of [`GROUP_ROWS`], repacked into
/// interleaved row groups.
#[derive(Debug)]
pub struct PackedLanes {
    ty: GgmlType,
    grouped: GroupedRows,
}

impl PackedLanes {
    /// Repacks `rows` rows of `cols` weights of `ty` (Q5_0 or Q8_0; `data` row-major in whole
    /// blocks). `None` for another type, a shape that does not fit the layout (rows not a multiple
    /// of 16, a partial block) or sizes that disagree.
    pub fn pack(ty: GgmlType, data: &[u8], rows: usize, cols: usize) -> Option<PackedLanes> {
        let grouped = match ty {
            GgmlType::Q8_0 => {
                GroupedRows::pack(data, rows, cols, QK, as_blocks::<BlockQ8_0>, pack_q8_0)
            }
            GgmlType::Q5_0 => {
                GroupedRows::pack(data, rows, cols, QK, as_blocks::<BlockQ5_0>, pack_q5_0)
            }
            _ => None,
        }?;
        Some(PackedLanes { ty, grouped })
    }

    /// The rows, shape and bytes.
    pub fn grouped(&self) -> &GroupedRows {
        &self.grouped
    }

    /// The weight type packed (Q5_0 or Q8_0).
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Row `r` as the file stores it (whole blocks): the inverse of the packing.
    pub fn unpack_row(&self, r: usize) -> Vec<u8> {
        let lane = r % GROUP_ROWS;
        let mut out = Vec::with_capacity(self.grouped.n_blocks() * self.ty.block_bytes());
        for block in self.grouped.group_blocks(r / GROUP_ROWS) {
            out.extend_from_slice(&block[2 * lane..2 * lane + 2]);
            if self.ty == GgmlType::Q8_0 {
                for l in 0..LANES {
                    out.extend(
                        block[SCALE_BYTES + CHUNK * l + 4 * lane..][..4]
                            .iter()
                            .map(|b| b ^ 0x80),
                    );
                }
            } else {
                let mut qh = 0u32;
                for l in 0..LANES {
                    let mask = u64::from_le_bytes(q5_mask_bytes(block, l));
                    qh |= (((mask >> (4 * lane)) & 0xF) as u32) << (4 * l);
                }
                out.extend_from_slice(&qh.to_le_bytes());
                deinterleave_row(&block[Q5_NIBBLES..], lane, LANES / 2, &mut out);
            }
        }
        out
    }
}

/// Mask `l` of a Q5_0 group block, as stored.
fn q5_mask_bytes(block: &[u8], l: usize) -> [u8; 8] {
    let mut m = [0u8; 8];
    m.copy_from_slice(&block[SCALE_BYTES + 8 * l..][..8]);
    m
}

/// Puts block `block` of row `r` of a group of 16 Q8_0 rows into that group's block `out` (see
/// the module doc).
fn pack_q8_0(r: usize, block: &BlockQ8_0, out: &mut [u8; Q8_GROUP_BLOCK]) {
    out[2 * r..2 * r + 2].copy_from_slice(&block.d);
    for l in 0..LANES {
        let q = [0, 1, 2, 3].map(|j| block.qs[4 * l + j] as u8 ^ 0x80);
        out[SCALE_BYTES + CHUNK * l + 4 * r..][..4].copy_from_slice(&q);
    }
}

/// Puts block `block` of row `r` of a group of 16 Q5_0 rows into that group's block `out` (see
/// the module doc).
fn pack_q5_0(r: usize, block: &BlockQ5_0, out: &mut [u8; Q5_GROUP_BLOCK]) {
    out[2 * r..2 * r + 2].copy_from_slice(&block.d);
    let qh = u32::from_le_bytes(block.qh);
    for l in 0..LANES {
        // Row `r`'s four bits of mask `l` are bits 4r..4r + 4: nibble `r % 2` of the mask's byte
        // `r / 2` (the copy starts zeroed).
        let byte = &mut out[SCALE_BYTES + 8 * l + r / 2];
        *byte |= (((qh >> (4 * l)) & 0xF) as u8) << (4 * (r % 2));
    }
    interleave_row(&mut out[Q5_NIBBLES..], r, &block.qs);
}

/// What the kernel needs of each Q8_0 activation block besides its quants: the scale as f32
/// and, per llama lane `l`, `-offset · Σ a[4l..4l + 4]` (the weights' unsigned offset, folded into
/// the lane's integer sum). Column `c`, block `i` at `c * n_blocks + i`.
#[derive(Debug, Default, Clone)]
pub struct LaneSums {
    scales: Vec<f32>,
    starts: Vec<[i32; LANES]>,
    n_blocks: usize,
    ty: Option<GgmlType>,
}

impl LaneSums {
    /// Computes the sums of `n_cols` columns of Q8_0 activations (`stride` bytes each) in `acts`
    /// for weights of type `ty` (Q5_0 or Q8_0: the offset differs), the columns shared among the
    /// threads of the current rayon pool (a serial step here would hold back every thread).
    pub fn compute(ty: GgmlType, acts: &[u8], stride: usize, n_cols: usize) -> LaneSums {
        let offset = offset(ty);
        let (scales, starts) = q8_0_block_sums(acts, stride, n_cols, |b: &BlockQ8_0| {
            std::array::from_fn(|l| {
                -offset
                    * b.qs[4 * l..4 * l + 4]
                        .iter()
                        .map(|&q| i32::from(q))
                        .sum::<i32>()
            })
        });
        LaneSums {
            scales,
            starts,
            n_blocks: stride / size_of::<BlockQ8_0>(),
            ty: Some(ty),
        }
    }
}

/// Checks the operands of [`matmul_groups`] and its scalar twin.
#[track_caller]
fn check_operands(
    w: &PackedLanes,
    groups: &std::ops::Range<usize>,
    acts: &[u8],
    stride: usize,
    n_cols: usize,
    sums: &LaneSums,
) {
    let n_blocks = w.grouped.n_blocks();
    assert!(
        stride == n_blocks * size_of::<BlockQ8_0>()
            && acts.len() >= n_cols * stride
            && sums.n_blocks == n_blocks
            && sums.ty == Some(w.ty)
            && sums.scales.len() >= n_cols * n_blocks
            && sums.starts.len() >= n_cols * n_blocks
            && groups.end <= w.grouped.groups(),
        "interleaved matmul: activations or sums do not match the matrix"
    );
}

/// Computes rows `groups.start * 16 .. groups.end * 16` of `W · X` for the `n_cols` Q8_0
/// activation columns in `acts` (`stride` bytes each, `sums` from [`LaneSums::compute`] for this
/// matrix's type), handing each value to `store(column, row, value)`. Each value equals the
/// type's `vec_dot_scalar` of the row and column to the bit.
///
/// Needs AVX-512 (F, BW, VL, VNNI) and F16C: returns `false` without computing anything when the
/// CPU lacks them.
///
/// # Panics
/// If the activations or sums do not match the matrix's shape, or a group is out of range.
pub fn matmul_groups(
    w: &PackedLanes,
    groups: std::ops::Range<usize>,
    acts: &[u8],
    stride: usize,
    n_cols: usize,
    sums: &LaneSums,
    mut store: impl FnMut(usize, usize, f32),
) -> bool {
    check_operands(w, &groups, acts, stride, n_cols, sums);
    #[cfg(target_arch = "x86_64")]
    if avx512_vnni() {
        let n_blocks = w.grouped.n_blocks();
        // SAFETY: the CPU has the features (checked just above).
        let kernel = unsafe { Avx512Kernel::new(n_blocks, acts, stride, n_cols, sums) };
        // The Q5_0 group unpacked for the column tiles (prompts only).
        let q5 = w.ty == GgmlType::Q5_0;
        let mut unpacked = if q5 && n_cols > 1 {
            vec![0u8; n_blocks * Q8_GROUP_BLOCK]
        } else {
            Vec::new()
        };
        for g in groups {
            let group = w.grouped.group(g);
            if n_cols == 1 {
                store_tile(g, 0, &kernel.stream(group), &mut store);
                continue;
            }
            let ready = if q5 {
                kernel.unpack_q5_0(group, &mut unpacked);
                &unpacked[..]
            } else {
                group
            };
            let c = column_tiles::<COLUMN_TILE>(&kernel, ready, g, 0, n_cols, &mut store);
            let c = column_tiles::<2>(&kernel, ready, g, c, n_cols, &mut store);
            column_tiles::<1>(&kernel, ready, g, c, n_cols, &mut store);
        }
        return true;
    }
    let _ = (groups, acts, &mut store);
    false
}

/// [`x86::group_dot`]: [`GroupDot::dot`] reads a group in the Q8_0 layout (a Q8_0 group, or a
/// Q5_0 group through [`Avx512Kernel::unpack_q5_0`]), [`Avx512Kernel::stream`] one in the
/// matrix's own.
#[cfg(target_arch = "x86_64")]
impl Avx512Kernel<'_, LaneSums> {
    /// Columns `first..first + NC` with their scales and lane starts.
    #[inline(always)]
    fn lane_columns<const NC: usize>(&self, first: usize) -> [Column<[i32; LANES]>; NC] {
        let sums = self.sums();
        self.columns::<BlockQ8_0, _, NC>(first, &sums.scales, &sums.starts)
    }

    /// A group of the matrix, in the matrix's layout, dotted with column 0: the one-column call
    /// of token generation, which streams the weights (prefetching them) and unpacks Q5_0 blocks
    /// in registers.
    fn stream(&self, group: &[u8]) -> [[f32; GROUP_ROWS]; 1] {
        let n = self.n_blocks();
        let q5 = self.sums().ty == Some(GgmlType::Q5_0);
        let block_bytes = if q5 { Q5_GROUP_BLOCK } else { Q8_GROUP_BLOCK };
        assert_eq!(group.len(), n * block_bytes);
        let cols = self.lane_columns::<1>(0);
        // SAFETY: the CPU has the features (`Avx512Kernel::new`'s contract); `group` is `n` group
        // blocks of the layout read (the sums were computed for the matrix's type, checked in
        // `check_operands`; the length above) and the column `n` activation blocks, scales and
        // starts (sliced in `columns`).
        unsafe {
            if q5 {
                x86::group_dot::<1, true>(group.as_ptr(), n, cols, true)
            } else {
                x86::group_dot::<1, false>(group.as_ptr(), n, cols, true)
            }
        }
    }

    /// Unpacks the Q5_0 group `group` into `out` in the Q8_0 layout (see the module doc).
    fn unpack_q5_0(&self, group: &[u8], out: &mut [u8]) {
        let n = self.n_blocks();
        assert!(group.len() == n * Q5_GROUP_BLOCK && out.len() == n * Q8_GROUP_BLOCK);
        // SAFETY: the CPU has the features (`Avx512Kernel::new`'s contract); the lengths are
        // checked above.
        unsafe { x86::unpack_q5_0(group.as_ptr(), n, out.as_mut_ptr()) };
    }
}

#[cfg(target_arch = "x86_64")]
impl GroupDot for Avx512Kernel<'_, LaneSums> {
    #[inline(always)]
    fn dot<const NC: usize>(&self, group: &[u8], first: usize) -> [[f32; GROUP_ROWS]; NC] {
        let n = self.n_blocks();
        assert_eq!(group.len(), n * Q8_GROUP_BLOCK);
        let cols = self.lane_columns::<NC>(first);
        // SAFETY: the CPU has the features (`new`'s contract); `group` is `n` Q8_0-layout group
        // blocks (checked above) and every column `n` activation blocks, scales and starts
        // (sliced in `columns`).
        unsafe { x86::group_dot::<NC, false>(group.as_ptr(), n, cols, false) }
    }
}

/// Activation columns one prompt kernel call dots with a group: 8 accumulators per column, so
/// three columns' 24 plus one weight register and the three columns' scales fit the 32 vector
/// registers (Qwen2.5 pp512 about 3 % faster than two columns; four would spill). Walking the
/// columns in chunks of 96 per group pass, to keep the activations nearer, measured no gain.
const COLUMN_TILE: usize = 3;

/// Plain-Rust twin of [`matmul_groups`], reading the packed layout: the reference its kernel is
/// tested against, and the definition of what each lane of the layout means.
///
/// # Panics
/// As [`matmul_groups`].
pub fn matmul_groups_scalar(
    w: &PackedLanes,
    groups: std::ops::Range<usize>,
    acts: &[u8],
    stride: usize,
    n_cols: usize,
    sums: &LaneSums,
    mut store: impl FnMut(usize, usize, f32),
) {
    check_operands(w, &groups, acts, stride, n_cols, sums);
    let n_blocks = w.grouped.n_blocks();
    for g in groups {
        for c in 0..n_cols {
            let col = as_blocks::<BlockQ8_0>(&acts[c * stride..][..stride]);
            let mut lanes = [[0.0f32; LANES]; GROUP_ROWS];
            for (i, block) in w.grouped.group_blocks(g).enumerate() {
                let da = sums.scales[c * n_blocks + i];
                let starts = &sums.starts[c * n_blocks + i];
                for (r, lanes) in lanes.iter_mut().enumerate() {
                    let dw = half::f16::from_le_bytes([block[2 * r], block[2 * r + 1]]).to_f32();
                    let scale = dw * da;
                    for (l, lane) in lanes.iter_mut().enumerate() {
                        let mut isum = starts[l];
                        for j in 0..4 {
                            let u = if w.ty == GgmlType::Q8_0 {
                                block[SCALE_BYTES + CHUNK * l + 4 * r + j]
                            } else {
                                let byte = block[Q5_NIBBLES + CHUNK * (l % 4) + 4 * r + j];
                                let nibble = if l < 4 { byte & 0xF } else { byte >> 4 };
                                let mask = u64::from_le_bytes(q5_mask_bytes(block, l));
                                nibble | ((((mask >> (4 * r + j)) & 1) as u8) << 4)
                            };
                            isum += i32::from(u) * i32::from(col[i].qs[4 * l + j]);
                        }
                        *lane = scale.mul_add(isum as f32, *lane);
                    }
                }
            }
            for (r, lanes) in lanes.iter().enumerate() {
                store(c, g * GROUP_ROWS + r, hsum8(*lanes));
            }
        }
    }
}

/// Whether this CPU runs the interleaved kernel: the same check as the other packed kernels'.
pub use super::grouped::avx512_vnni;

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    use super::{
        CHUNK, GROUP_ROWS, LANES, Q5_GROUP_BLOCK, Q5_NIBBLES, Q8_GROUP_BLOCK, SCALE_BYTES,
    };
    use crate::quant::formats::q8_0::BlockQ8_0;
    use crate::quant::packed::grouped::Column;
    use crate::quant::x86::prefetch_ahead;

    /// How far ahead (bytes) one-column calls ask for the group's next blocks: generation streams
    /// the weights once, and the loads must not wait on memory (8 KiB, as the file-layout
    /// one-column path in `matmul.rs` measured best).
    const PREFETCH_AHEAD: usize = 8192;

    /// The eight lane registers of the Q5_0 group block at `block`: unsigned five-bit quants.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW; `block` must point at a whole Q5_0 group block.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn q5_0_lanes(block: *const u8) -> [__m512i; LANES] {
        let low = _mm512_set1_epi8(0x0F);
        let fifth = _mm512_set1_epi8(0x10);
        let mut w = [_mm512_setzero_si512(); LANES];
        for l in 0..LANES / 2 {
            // SAFETY: the masks and nibble chunks lie inside the group block (caller's contract).
            unsafe {
                let q = _mm512_loadu_si512(block.add(Q5_NIBBLES + CHUNK * l).cast());
                let lo = _mm512_and_si512(q, low);
                let hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), low);
                let m_lo = block
                    .add(SCALE_BYTES + 8 * l)
                    .cast::<u64>()
                    .read_unaligned();
                let m_hi = block
                    .add(SCALE_BYTES + 8 * (l + 4))
                    .cast::<u64>()
                    .read_unaligned();
                w[l] = _mm512_mask_add_epi8(lo, u64::from_le(m_lo), lo, fifth);
                w[l + 4] = _mm512_mask_add_epi8(hi, u64::from_le(m_hi), hi, fifth);
            }
        }
        w
    }

    /// Unpacks the `n_blocks` Q5_0 group blocks at `group` into the Q8_0 layout at `out` (the
    /// unsigned quants, offset 16, and the scales as they are).
    ///
    /// # Safety
    /// The CPU must have the module's features; `group` must hold `n_blocks` Q5_0 group blocks
    /// and `out` room for `n_blocks` Q8_0 group blocks.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn unpack_q5_0(group: *const u8, n_blocks: usize, out: *mut u8) {
        for i in 0..n_blocks {
            // SAFETY: `i < n_blocks`: block `i` of both buffers (caller's contract).
            unsafe {
                let block = group.add(i * Q5_GROUP_BLOCK);
                let dst = out.add(i * Q8_GROUP_BLOCK);
                std::ptr::copy_nonoverlapping(block, dst, SCALE_BYTES);
                for (l, w) in q5_0_lanes(block).into_iter().enumerate() {
                    _mm512_storeu_si512(dst.add(SCALE_BYTES + CHUNK * l).cast(), w);
                }
            }
        }
    }

    /// The 16 rows of the group at `group` dotted with each of the `NC` columns: `Q5` reads
    /// Q5_0 group blocks (unpacked in registers), otherwise Q8_0-layout blocks (unsigned quants).
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL/VNNI, FMA and F16C; `group` must point at `n_blocks`
    /// group blocks of that layout and each column at `n_blocks` Q8_0 blocks, scales and starts.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn group_dot<const NC: usize, const Q5: bool>(
        group: *const u8,
        n_blocks: usize,
        cols: [Column<[i32; LANES]>; NC],
        prefetch: bool,
    ) -> [[f32; GROUP_ROWS]; NC] {
        let block_bytes = if Q5 { Q5_GROUP_BLOCK } else { Q8_GROUP_BLOCK };
        let mut acc = [[_mm512_setzero_ps(); LANES]; NC];
        for i in 0..n_blocks {
            // SAFETY: `i < n_blocks`: group block `i` lies in the group (the caller's contract).
            let block = unsafe { group.add(i * block_bytes) };
            if prefetch {
                prefetch_ahead(block, PREFETCH_AHEAD, block_bytes);
            }
            // SAFETY: the block's first 32 bytes are its 16 scales.
            let dw = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(block.cast()) });
            let mut scale = [_mm512_setzero_ps(); NC];
            for c in 0..NC {
                // SAFETY: `i < n_blocks`: the column's scale `i` (the caller's contract).
                let da = unsafe { *cols[c].scales.add(i) };
                scale[c] = _mm512_mul_ps(dw, _mm512_set1_ps(da));
            }
            let q5 = if Q5 {
                // SAFETY: `block` is a whole Q5_0 group block (the caller's contract).
                unsafe { q5_0_lanes(block) }
            } else {
                [_mm512_setzero_si512(); LANES]
            };
            for l in 0..LANES {
                let w = if Q5 {
                    q5[l]
                } else {
                    // SAFETY: chunk `l` of the Q8_0-layout block's eight.
                    unsafe { _mm512_loadu_si512(block.add(SCALE_BYTES + CHUNK * l).cast()) }
                };
                for c in 0..NC {
                    // SAFETY: `i < n_blocks`: activation block `i` of the column and its lane
                    // starts (the caller's contract); quants `4l..4l + 4` of its 32, which follow
                    // its two scale bytes.
                    let (a, start) = unsafe {
                        let a = cols[c].quants.add(i * size_of::<BlockQ8_0>() + 2 + 4 * l);
                        (a.cast::<i32>().read_unaligned(), (*cols[c].sums.add(i))[l])
                    };
                    let isum =
                        _mm512_dpbusd_epi32(_mm512_set1_epi32(start), w, _mm512_set1_epi32(a));
                    acc[c][l] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), scale[c], acc[c][l]);
                }
            }
        }
        reduce_lanes(&acc)
    }

    /// Each column's eight lane accumulators (lane `l` of 16 rows in `acc[c][l]`) reduced in
    /// [`hsum8`](crate::quant::block::hsum8)'s order on whole registers: every row's eight lanes at once.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(crate) fn reduce_lanes<const NC: usize>(
        acc: &[[__m512; 8]; NC],
    ) -> [[f32; GROUP_ROWS]; NC] {
        let mut out = [[0.0f32; GROUP_ROWS]; NC];
        for (out, a) in out.iter_mut().zip(acc) {
            let sum = _mm512_add_ps(
                _mm512_add_ps(_mm512_add_ps(a[0], a[4]), _mm512_add_ps(a[2], a[6])),
                _mm512_add_ps(_mm512_add_ps(a[1], a[5]), _mm512_add_ps(a[3], a[7])),
            );
            // SAFETY: `out` holds 16 f32.
            unsafe { _mm512_storeu_ps(out.as_mut_ptr(), sum) };
        }
        out
    }
}
