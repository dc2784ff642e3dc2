//! Q4_0 weights repacked at load into groups of 16 interleaved rows, for the AVX-512 VNNI matrix
//! multiply (prompt batches and generation alike).
//!
//! Why: in the file each Q4_0 row is a run of 18-byte blocks, so a kernel that dots one row at a
//! time must reduce each block's 32 products across the lanes of a register. Interleaving 16 rows
//! lets one 512-bit register hold the same four bytes of all 16 rows: a `vpdpbusd` against four
//! activation bytes broadcast to every lane then advances 16 rows' block sums at once, and after
//! eight of them each lane holds one row's whole-block integer sum, with no horizontal reduction.
//!
//! The arithmetic is llama.cpp's for Q4_0 on x86 (its repacked `gemm/gemv_q4_0_8x8_q8_0`), which
//! [`vec_dot_scalar`](crate::quant::formats::q4_0::vec_dot_scalar) spells out: per block the 32 products summed exactly as
//! integers, then one fused multiply-add per block, `sum = isum · (d_w · d_a) + sum`. Integer sums
//! are exact in any order, so the kernel is free to form them as it likes: it multiplies the
//! unsigned nibbles `q` (0..=15) by the activations and adds `-8 · Σ a` (computed once per
//! activation block), which is `Σ (q - 8) · a` exactly.
//!
//! Layout of a group of 16 rows, block by block (288 bytes per block, as many as 16 Q4_0 blocks):
//! the 16 rows' f16 scales (32 bytes), then four 64-byte chunks; chunk `k` holds, for row `r`
//! at bytes `4r..4r + 4`, that row's packed bytes `4k..4k + 4` (low nibbles: elements `4k..4k+4`,
//! high nibbles: elements `16 + 4k..16 + 4k + 4`).

#[cfg(target_arch = "x86_64")]
use super::grouped::{avx512_vnni, column_tiles, Avx512Kernel, GroupDot};
use super::grouped::{deinterleave_row, interleave_row, q8_0_block_sums, GroupedRows, GROUP_ROWS};
use crate::quant::block::{as_blocks, QK};
use crate::quant::formats::q4_0::BlockQ4_0;
use crate::quant::formats::q8_0::BlockQ8_0;
use crate::quant::types::GgmlType;

/// Bytes of one block of a group: 16 f16 scales and 16 × 16 bytes of nibbles.
const GROUP_BLOCK_BYTES: usize = GROUP_ROWS * size_of::<BlockQ4_0>();
/// Bytes of one row's nibbles in a block.
const NIBBLE_BYTES: usize = QK / 2;
/// Activation columns one kernel call dots with a group (accumulators kept in registers).
const COLUMN_TILE: usize = 8;

/// A Q4_0 matrix whose row count is a multiple of [`GROUP_ROWS`], repacked into row groups.
#[derive(Debug)]
pub struct PackedQ4_0 {
    grouped: GroupedRows,
}

impl PackedQ4_0 {
    /// Repacks `rows` rows of `cols` Q4_0 weights (`data`, row-major in whole blocks). `None` if
    /// the shape does not fit the layout (rows not a multiple of 16, or a partial block) or the
    /// sizes disagree.
    pub fn pack(data: &[u8], rows: usize, cols: usize) -> Option<PackedQ4_0> {
        let grouped = GroupedRows::pack(
            data,
            rows,
            cols,
            QK,
            as_blocks::<BlockQ4_0>,
            |r, block, out: &mut [u8; GROUP_BLOCK_BYTES]| {
                let (scales, nibbles) = out.split_at_mut(2 * GROUP_ROWS);
                scales[2 * r..2 * r + 2].copy_from_slice(&block.d);
                interleave_row(nibbles, r, &block.qs);
            },
        )?;
        Some(PackedQ4_0 { grouped })
    }

    /// The rows, shape and bytes.
    pub fn grouped(&self) -> &GroupedRows {
        &self.grouped
    }

    /// The weight type packed (always Q4_0).
    pub fn ty(&self) -> GgmlType {
        GgmlType::Q4_0
    }

    /// Row `r` as the file stores it (whole Q4_0 blocks): the inverse of the packing.
    pub fn unpack_row(&self, r: usize) -> Vec<u8> {
        let lane = r % GROUP_ROWS;
        let mut out = Vec::with_capacity(self.grouped.n_blocks() * size_of::<BlockQ4_0>());
        for block in self.grouped.group_blocks(r / GROUP_ROWS) {
            out.extend_from_slice(&block[2 * lane..2 * lane + 2]);
            deinterleave_row(&block[2 * GROUP_ROWS..], lane, NIBBLE_BYTES / 4, &mut out);
        }
        out
    }
}

/// What the kernel needs of each Q8_0 activation block besides its quants: the scale as f32 and
/// `-8 · Σ q` (Q4_0's offset of 8, folded into the integer sum). Column `c`, block `i` at
/// `c * n_blocks + i`.
#[derive(Debug, Default, Clone)]
pub struct ActivationSums {
    scales: Vec<f32>,
    offsets: Vec<i32>,
    n_blocks: usize,
}

impl ActivationSums {
    /// Computes the sums of `n_cols` columns of Q8_0 activations (`stride` bytes each) in `acts`,
    /// the columns shared among the threads of the current rayon pool.
    pub fn compute(acts: &[u8], stride: usize, n_cols: usize) -> ActivationSums {
        let (scales, offsets) =
            q8_0_block_sums(acts, stride, n_cols, |b: &BlockQ8_0| -8 * quant_sum(&b.qs));
        ActivationSums {
            scales,
            offsets,
            n_blocks: stride / size_of::<BlockQ8_0>(),
        }
    }
}

/// The sum of a block's 32 quants (exact).
#[inline]
fn quant_sum(qs: &[i8; QK]) -> i32 {
    // Written as a plain sum of widened values, which LLVM turns into a few vector adds.
    qs.iter().map(|&q| i32::from(q)).sum()
}

/// Computes rows `groups.start * 16 .. groups.end * 16` of `W · X` for the `n_cols` Q8_0
/// activation columns in `acts` (`stride` bytes each, `sums` from [`ActivationSums::compute`]),
/// handing each value to `store(column, row, value)`. Each value equals
/// [`vec_dot_scalar`](crate::quant::formats::q4_0::vec_dot_scalar) of the row and column to the bit.
///
/// Needs AVX-512 (F, BW, VL, VNNI) and F16C: returns `false` without computing anything when the
/// CPU lacks them.
///
/// # Panics
/// If the activations or sums do not match the matrix's shape, or a group is out of range.
pub fn matmul_groups(
    w: &PackedQ4_0,
    groups: std::ops::Range<usize>,
    acts: &[u8],
    stride: usize,
    n_cols: usize,
    sums: &ActivationSums,
    mut store: impl FnMut(usize, usize, f32),
) -> bool {
    let n_blocks = w.grouped.n_blocks();
    assert!(
        stride == n_blocks * size_of::<BlockQ8_0>()
            && acts.len() >= n_cols * stride
            && sums.n_blocks == n_blocks
            && sums.scales.len() >= n_cols * n_blocks
            && sums.offsets.len() >= n_cols * n_blocks
            && groups.end <= w.grouped.groups(),
        "packed Q4_0 matmul: activations or sums do not match the matrix"
    );
    #[cfg(target_arch = "x86_64")]
    if avx512_vnni() {
        // SAFETY: the CPU has the features (checked just above).
        let kernel = unsafe { Avx512Kernel::new(n_blocks, acts, stride, n_cols, sums) };
        for g in groups {
            let group = w.grouped.group(g);
            let c = column_tiles::<COLUMN_TILE>(&kernel, group, g, 0, n_cols, &mut store);
            let c = column_tiles::<4>(&kernel, group, g, c, n_cols, &mut store);
            column_tiles::<1>(&kernel, group, g, c, n_cols, &mut store);
        }
        return true;
    }
    let _ = (groups, acts, &mut store);
    false
}

/// [`x86::group_dot`].
#[cfg(target_arch = "x86_64")]
impl GroupDot for Avx512Kernel<'_, ActivationSums> {
    #[inline(always)]
    fn dot<const NC: usize>(&self, group: &[u8], first: usize) -> [[f32; GROUP_ROWS]; NC] {
        let (n, sums) = (self.n_blocks(), self.sums());
        assert_eq!(group.len(), n * GROUP_BLOCK_BYTES);
        let cols = self.columns::<BlockQ8_0, _, NC>(first, &sums.scales, &sums.offsets);
        // SAFETY: the CPU has the features (`Avx512Kernel::new`'s contract); `group` is `n` group
        // blocks and every column `n` activation blocks, scales and offsets (sliced above). One
        // column is a generation step, which streams the weights: prefetch them.
        unsafe { x86::group_dot(group.as_ptr(), n, cols, NC == 1) }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{GROUP_BLOCK_BYTES, GROUP_ROWS};
    use crate::quant::formats::q8_0::BlockQ8_0;
    use crate::quant::packed::grouped::Column;
    use crate::quant::x86::prefetch_ahead;

    /// How far ahead (bytes) one-column calls ask for the group's next blocks: generation streams
    /// the weights once, and the loads must not wait on memory.
    const PREFETCH_AHEAD: usize = 32 * GROUP_BLOCK_BYTES;

    /// The 16 rows of the group at `group` dotted with each of the `NC` columns.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL/VNNI, FMA and F16C; `group` must point at `n_blocks`
    /// group blocks and each column at `n_blocks` Q8_0 blocks, scales and offsets.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn group_dot<const NC: usize>(
        group: *const u8,
        n_blocks: usize,
        cols: [Column<i32>; NC],
        prefetch: bool,
    ) -> [[f32; GROUP_ROWS]; NC] {
        let low_nibbles = _mm512_set1_epi8(0x0F);
        let mut acc = [_mm512_setzero_ps(); NC];
        for i in 0..n_blocks {
            // SAFETY: `i < n_blocks`: group block `i` lies in the group (the caller's contract).
            let block = unsafe { group.add(i * GROUP_BLOCK_BYTES) };
            if prefetch {
                prefetch_ahead(block, PREFETCH_AHEAD, GROUP_BLOCK_BYTES);
            }
            // SAFETY: the block's first 32 bytes are its 16 scales.
            let dw = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(block.cast()) });
            let mut lo = [_mm512_setzero_si512(); 4];
            let mut hi = [_mm512_setzero_si512(); 4];
            for k in 0..4 {
                // SAFETY: the scales are followed by four 64-byte chunks of nibbles.
                let q = unsafe { _mm512_loadu_si512(block.add(2 * GROUP_ROWS + 64 * k).cast()) };
                lo[k] = _mm512_and_si512(q, low_nibbles);
                hi[k] = _mm512_and_si512(_mm512_srli_epi16(q, 4), low_nibbles);
            }
            for c in 0..NC {
                // SAFETY: `i < n_blocks`: activation block `i` of the column, its scale and its
                // offset are in the column (the caller's contract); its 32 quants follow the
                // block's two scale bytes.
                let (a, offset, da) = unsafe {
                    (
                        cols[c].quants.add(i * size_of::<BlockQ8_0>() + 2),
                        *cols[c].sums.add(i),
                        *cols[c].scales.add(i),
                    )
                };
                // Two independent chains (low and high nibbles), each starting from exact
                // integers; their sum is the block's exact integer dot.
                let mut s_lo = _mm512_set1_epi32(offset);
                let mut s_hi = _mm512_setzero_si512();
                for k in 0..4 {
                    // SAFETY: quants `4k..4k + 4` and `16 + 4k..16 + 4k + 4` of the 32 at `a`.
                    let (a_lo, a_hi) = unsafe {
                        (
                            a.add(4 * k).cast::<i32>().read_unaligned(),
                            a.add(16 + 4 * k).cast::<i32>().read_unaligned(),
                        )
                    };
                    s_lo = _mm512_dpbusd_epi32(s_lo, lo[k], _mm512_set1_epi32(a_lo));
                    s_hi = _mm512_dpbusd_epi32(s_hi, hi[k], _mm512_set1_epi32(a_hi));
                }
                let isum = _mm512_add_epi32(s_lo, s_hi);
                let scale = _mm512_mul_ps(dw, _mm512_set1_ps(da));
                acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), scale, acc[c]);
            }
        }
        let mut out = [[0.0f32; GROUP_ROWS]; NC];
        for c in 0..NC {
            // SAFETY: `out[c]` holds 16 f32.
            unsafe { _mm512_storeu_ps(out[c].as_mut_ptr(), acc[c]) };
        }
        out
    }
}
