//! Q6_K weights repacked at load into groups of 16 interleaved rows, for the AVX-512 VNNI matrix
//! multiply (prompt batches and generation alike), as [`q4_k`](super::q4_k) does for Q4_K.
//!
//! The arithmetic per output is llama.cpp's, which the scalar twins in
//! [`formats::q6_k`](crate::quant::formats::q6_k) spell out. With 8 or more activation columns (its tiled matrix
//! multiply, [`vec_dot_tiled_scalar`](crate::quant::formats::q6_k::vec_dot_tiled_scalar)): per super-block the exact integer
//! `isum = Σ_s sc_s Σ_{e in s} (q_e − 32)·a_e`, then `acc = (isum · d_w) · d_a + acc` with the
//! last multiply and the add fused. With fewer (its `vec_dot`,
//! [`vec_dot_scalar`](crate::quant::formats::q6_k::vec_dot_scalar)): eight integer lanes per super-block, lane `l`
//! summing `sc·q·a` over the elements whose index mod 32 is in `4l..4l+4`, minus
//! `32·(sc_2l·bsum_2l + sc_2l+1·bsum_2l+1)`, each lane accumulating `fma(d_w·d_a, lane, acc)` and
//! the lanes reduced as [`hsum8`](crate::quant::block::hsum8). Integer sums are exact in any order.
//!
//! In a 16-row register the four quants `4G..4G + 4` of every row sit in one lane each, so one
//! `vpdpbusd` gives 16 rows' sums of those four products: the sums of a 16-element sub-block
//! are four of them, and the eight lanes of the one-column arithmetic are the groups `G` with the
//! same `G mod 8`. No horizontal reduction is needed in either.
//!
//! Layout of a group of 16 rows, super-block by super-block (4384 bytes, 1.3 × the file's
//! 16 × 210, for quants unpacked to bytes):
//! - the 16 rows' `d` (f16, 32 bytes);
//! - the sub-block scales (i8): sub-block `s`'s 16 rows at `16s..16s + 16` (256 bytes);
//! - 64 chunks of 64 bytes; chunk `G` holds, for row `r` at bytes `4r..4r + 4`, that row's
//!   unsigned quants `4G..4G + 4` (0..=63, the offset of 32 not removed).

#[cfg(target_arch = "x86_64")]
use super::grouped::{avx512_vnni, column_tiles, Avx512Kernel, GroupDot};
use super::grouped::{GroupedRows, GROUP_ROWS};
use crate::quant::block::as_blocks;
use crate::quant::formats::q6_k::BlockQ6K;
use crate::quant::formats::q8_k::BlockQ8K;
use crate::quant::types::QK_K;

/// Bytes of one super-block of a group.
const GROUP_BLOCK_BYTES: usize = 2 * GROUP_ROWS + 16 * GROUP_ROWS + 64 * 64;
/// Offsets inside a group super-block.
const SCALES_AT: usize = 2 * GROUP_ROWS;
const QUANTS_AT: usize = SCALES_AT + 16 * GROUP_ROWS;
/// Activation columns from which llama.cpp takes its tiled arithmetic (as the row kernels do).
pub const TILED_MIN_COLS: usize = 8;

/// A Q6_K matrix whose row count is a multiple of [`GROUP_ROWS`], repacked into row groups.
#[derive(Debug)]
pub struct PackedQ6K {
    grouped: GroupedRows,
}

impl PackedQ6K {
    /// Repacks `rows` rows of `cols` Q6_K weights (`data`, row-major in whole super-blocks).
    /// `None` if the shape does not fit the layout (rows not a multiple of 16, or a partial
    /// super-block) or the sizes disagree.
    pub fn pack(data: &[u8], rows: usize, cols: usize) -> Option<PackedQ6K> {
        let grouped = GroupedRows::pack(
            data,
            rows,
            cols,
            QK_K,
            as_blocks::<BlockQ6K>,
            |r, b, out: &mut [u8; GROUP_BLOCK_BYTES]| {
                out[2 * r..2 * r + 2].copy_from_slice(&b.d);
                for (s, &sc) in b.scales.iter().enumerate() {
                    out[SCALES_AT + GROUP_ROWS * s + r] = sc as u8;
                }
                for (g, q) in b.quants().chunks_exact(4).enumerate() {
                    let unsigned = [0, 1, 2, 3].map(|k| (q[k] + 32) as u8);
                    out[QUANTS_AT + 64 * g + 4 * r..][..4].copy_from_slice(&unsigned);
                }
            },
        )?;
        Some(PackedQ6K { grouped })
    }

    /// The rows, shape and bytes.
    pub fn grouped(&self) -> &GroupedRows {
        &self.grouped
    }

    /// Row `r`'s `d`, sub-block scales and unsigned quants (0..=63) per super-block, to check the
    /// packing against the file.
    pub fn unpack_row(&self, r: usize) -> Vec<([u8; 2], [i8; 16], [u8; QK_K])> {
        let lane = r % GROUP_ROWS;
        self.grouped
            .group_blocks(r / GROUP_ROWS)
            .map(|b| {
                let d = [b[2 * lane], b[2 * lane + 1]];
                let scales = std::array::from_fn(|s| b[SCALES_AT + GROUP_ROWS * s + lane] as i8);
                let qs = std::array::from_fn(|e| b[QUANTS_AT + 64 * (e / 4) + 4 * lane + e % 4]);
                (d, scales, qs)
            })
            .collect()
    }
}

/// Computes rows `groups.start * 16 .. groups.end * 16` of `W · X` for the `n_cols` Q8_K
/// activation columns in `acts` (`stride` bytes each), handing each value to
/// `store(column, row, value)`: when `tiled` (llama.cpp's multiply of [`TILED_MIN_COLS`] or more
/// columns) each value equals `vec_dot_tiled_scalar` of the row and column to the bit, otherwise
/// `vec_dot_scalar`.
///
/// Needs AVX-512 (F, BW, VL, VNNI) and F16C: returns `false` without computing anything when the
/// CPU lacks them.
///
/// # Panics
/// If the activations do not match the matrix's shape, or a group is out of range.
pub fn matmul_groups(
    w: &PackedQ6K,
    groups: std::ops::Range<usize>,
    acts: &[u8],
    stride: usize,
    n_cols: usize,
    tiled: bool,
    mut store: impl FnMut(usize, usize, f32),
) -> bool {
    let n_blocks = w.grouped.n_blocks();
    assert!(
        stride == n_blocks * size_of::<BlockQ8K>()
            && acts.len() >= n_cols * stride
            && groups.end <= w.grouped.groups(),
        "packed Q6_K matmul: activations do not match the matrix"
    );
    #[cfg(target_arch = "x86_64")]
    if avx512_vnni() {
        if tiled {
            // SAFETY: the CPU has the features (checked above).
            let kernel =
                unsafe { Avx512Kernel::<(), true>::new(n_blocks, acts, stride, n_cols, &()) };
            for g in groups {
                let group = w.grouped.group(g);
                let c = column_tiles::<8>(&kernel, group, g, 0, n_cols, &mut store);
                let c = column_tiles::<4>(&kernel, group, g, c, n_cols, &mut store);
                column_tiles::<1>(&kernel, group, g, c, n_cols, &mut store);
            }
        } else {
            // SAFETY: as above.
            let kernel =
                unsafe { Avx512Kernel::<(), false>::new(n_blocks, acts, stride, n_cols, &()) };
            for g in groups {
                column_tiles::<1>(&kernel, w.grouped.group(g), g, 0, n_cols, &mut store);
            }
        }
        return true;
    }
    let _ = (groups, acts, &mut store);
    false
}

/// [`x86::group_dot_tiled`] (`TILED`) or [`x86::group_dot_lanes`]; Q6_K needs no activation sums
/// beyond the Q8_K blocks' own.
#[cfg(target_arch = "x86_64")]
impl<const TILED: bool> GroupDot for Avx512Kernel<'_, (), TILED> {
    #[inline(always)]
    fn dot<const NC: usize>(&self, group: &[u8], first: usize) -> [[f32; GROUP_ROWS]; NC] {
        let n = self.n_blocks();
        assert_eq!(group.len(), n * GROUP_BLOCK_BYTES);
        let cols = std::array::from_fn(|k| self.column::<BlockQ8K>(first + k).as_ptr());
        // SAFETY: the CPU has the features (`Avx512Kernel::new`'s contract); `group` is `n` group
        // super-blocks and every column `n` Q8_K blocks (sliced above).
        unsafe {
            if TILED {
                x86::group_dot_tiled::<NC>(group.as_ptr(), n, cols)
            } else {
                x86::group_dot_lanes::<NC>(group.as_ptr(), n, cols)
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{GROUP_BLOCK_BYTES, GROUP_ROWS, QUANTS_AT, SCALES_AT};
    use crate::quant::formats::q8_k::BlockQ8K;
    use crate::quant::x86::prefetch_ahead;

    /// Offsets in a Q8_K block: quants after the f32 scale, then the i16 sums of 16 quants.
    const Q8K_QUANTS: usize = 4;
    const Q8K_BSUMS: usize = 4 + 256;

    /// How far ahead (bytes) one-column calls ask for the group's next super-blocks.
    const PREFETCH_AHEAD: usize = 2 * GROUP_BLOCK_BYTES;

    /// Sub-block `s`'s scales of the 16 rows, sign-extended to i32 lanes.
    ///
    /// # Safety
    /// `block` must point at a whole group super-block and `s` be below 16.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn scales(block: *const u8, s: usize) -> __m512i {
        // SAFETY: the super-block holds 16 sub-blocks' 16 scales from `SCALES_AT` (the caller's
        // contract).
        let sc = unsafe { _mm_loadu_si128(block.add(SCALES_AT + GROUP_ROWS * s).cast()) };
        _mm512_cvtepi8_epi32(sc)
    }

    /// Each row's scales of sub-blocks `2 · pair` and `2 · pair + 1` as an i16 pair in its lane,
    /// for one `vpmaddwd` with a column's pair of block sums.
    ///
    /// # Safety
    /// `block` must point at a whole group super-block and `pair` be below 8.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn scale_pair(block: *const u8, pair: usize) -> __m512i {
        // SAFETY: sub-blocks `2 · pair + 1 < 16` (the caller's contract).
        let (lo, hi) = unsafe { (scales(block, 2 * pair), scales(block, 2 * pair + 1)) };
        _mm512_or_si512(
            _mm512_and_si512(lo, _mm512_set1_epi32(0xFFFF)),
            _mm512_slli_epi32(hi, 16),
        )
    }

    /// Four bytes at `at` in the Q8_K block at `a`, as one i32 broadcast to every lane.
    ///
    /// # Safety
    /// `a` must point at a Q8_K block and `at + 4` be within it.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn broadcast_word(a: *const u8, at: usize) -> __m512i {
        // SAFETY: the caller's contract.
        _mm512_set1_epi32(unsafe { a.add(at).cast::<i32>().read_unaligned() })
    }

    /// The tiled arithmetic: the 16 rows of the group at `group` dotted with each of the `NC`
    /// columns (Q8_K blocks at `cols[c]`).
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL/VNNI, FMA and F16C; `group` must point at `n_blocks`
    /// group super-blocks and each column at `n_blocks` Q8_K blocks.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn group_dot_tiled<const NC: usize>(
        group: *const u8,
        n_blocks: usize,
        cols: [*const u8; NC],
    ) -> [[f32; GROUP_ROWS]; NC] {
        let mut acc = [_mm512_setzero_ps(); NC];
        for i in 0..n_blocks {
            // SAFETY: `i < n_blocks`: super-block `i` of the group and block `i` of every column
            // exist (the caller's contract); every read below is inside one of them, at the
            // offsets of their layouts.
            unsafe {
                let block = group.add(i * GROUP_BLOCK_BYTES);
                let a = cols.map(|c| c.add(i * size_of::<BlockQ8K>()));
                let mut isum = [_mm512_setzero_si512(); NC];
                // Σ_s sc_s · bsum_s per row and column, for the offset of 32.
                let mut offset = [_mm512_setzero_si512(); NC];
                for pair in 0..8 {
                    let sc_pair = scale_pair(block, pair);
                    for c in 0..NC {
                        let bsums = broadcast_word(a[c], Q8K_BSUMS + 4 * pair);
                        offset[c] = _mm512_add_epi32(offset[c], _mm512_madd_epi16(sc_pair, bsums));
                    }
                }
                for s in 0..16 {
                    let sc = scales(block, s);
                    let mut q = [_mm512_setzero_si512(); 4];
                    for (k, q) in q.iter_mut().enumerate() {
                        *q = _mm512_loadu_si512(block.add(QUANTS_AT + 64 * (4 * s + k)).cast());
                    }
                    for c in 0..NC {
                        let mut dot = _mm512_setzero_si512();
                        for (k, &q) in q.iter().enumerate() {
                            let a4 = broadcast_word(a[c], Q8K_QUANTS + 16 * s + 4 * k);
                            dot = _mm512_dpbusd_epi32(dot, q, a4);
                        }
                        isum[c] = _mm512_add_epi32(isum[c], _mm512_mullo_epi32(dot, sc));
                    }
                }
                let d = _mm512_cvtph_ps(_mm256_loadu_si256(block.cast()));
                for c in 0..NC {
                    let isum = _mm512_sub_epi32(isum[c], _mm512_slli_epi32(offset[c], 5));
                    let scaled = _mm512_mul_ps(_mm512_cvtepi32_ps(isum), d);
                    let da = _mm512_set1_ps(a[c].cast::<f32>().read_unaligned());
                    acc[c] = _mm512_fmadd_ps(scaled, da, acc[c]);
                }
            }
        }
        let mut out = [[0.0f32; GROUP_ROWS]; NC];
        for c in 0..NC {
            // SAFETY: `out[c]` holds 16 f32.
            unsafe { _mm512_storeu_ps(out[c].as_mut_ptr(), acc[c]) };
        }
        out
    }

    /// The one-column arithmetic (eight lanes per row): the 16 rows of the group at `group`
    /// dotted with each of the `NC` columns.
    ///
    /// # Safety
    /// As [`group_dot_tiled`].
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn group_dot_lanes<const NC: usize>(
        group: *const u8,
        n_blocks: usize,
        cols: [*const u8; NC],
    ) -> [[f32; GROUP_ROWS]; NC] {
        let mut acc = [[_mm512_setzero_ps(); 8]; NC];
        for i in 0..n_blocks {
            // SAFETY: as in `group_dot_tiled`: every read is inside super-block `i` of the group
            // or block `i` of a column; prefetches never fault.
            unsafe {
                let block = group.add(i * GROUP_BLOCK_BYTES);
                if NC == 1 {
                    prefetch_ahead(block, PREFETCH_AHEAD, GROUP_BLOCK_BYTES);
                }
                let d = _mm512_cvtph_ps(_mm256_loadu_si256(block.cast()));
                for c in 0..NC {
                    let a = cols[c].add(i * size_of::<BlockQ8K>());
                    let mut lanes = [_mm512_setzero_si512(); 8];
                    for s in 0..16 {
                        let sc = scales(block, s);
                        for k in 0..4 {
                            let g = 4 * s + k;
                            let q = _mm512_loadu_si512(block.add(QUANTS_AT + 64 * g).cast());
                            let a4 = broadcast_word(a, Q8K_QUANTS + 4 * g);
                            let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, a4);
                            lanes[g % 8] =
                                _mm512_add_epi32(lanes[g % 8], _mm512_mullo_epi32(dot, sc));
                        }
                    }
                    let da = _mm512_set1_ps(a.cast::<f32>().read_unaligned());
                    let scale = _mm512_mul_ps(da, d);
                    for (l, lane) in lanes.iter().enumerate() {
                        let bsums = broadcast_word(a, Q8K_BSUMS + 4 * l);
                        let corr = _mm512_madd_epi16(scale_pair(block, l), bsums);
                        let value = _mm512_sub_epi32(*lane, _mm512_slli_epi32(corr, 5));
                        acc[c][l] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(value), acc[c][l]);
                    }
                }
            }
        }
        crate::quant::packed::lanes::x86::reduce_lanes(&acc)
    }
}
