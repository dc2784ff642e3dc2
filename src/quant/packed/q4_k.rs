//! Q4_K weights repacked at load into groups of 16 interleaved rows, for the AVX-512 VNNI matrix
//! multiply (prompt batches and generation alike).
//!
//! Why: the file stores each row as 144-byte super-blocks, so a kernel that dots one row at a time
//! reduces every 64-element chunk's products across the lanes of a register, once per row and
//! column. Interleaving 16 rows, as [`q4_0`](super::q4_0) does for Q4_0, lets one `vpdpbusd` against
//! four broadcast activation bytes advance 16 rows' sub-block sums at once; after eight of them
//! each lane holds one row's whole sub-block sum, with no horizontal reduction, and the per-row
//! sub-block scales and mins become vector operands.
//!
//! The arithmetic per output is llama.cpp's for Q4_K on x86 (its repacked `gemm`/`gemv` kernels),
//! which the scalar twins in [`formats::q4_k`](crate::quant::formats::q4_k) spell out: the exact integers
//! `isum = Σ_j sc_j (q_j · a_j)` and `imin = Σ_j m_j Σ a_j`, two fused running sums
//! `acc = isum · (d_w·d_a) + acc` and `mins = imin · (dmin_w·d_a) + mins`, `acc − mins` at the
//! end. The four-column `gemm` steps the running sums once per 64 elements
//! ([`vec_dot_chunked_scalar`](crate::quant::formats::q4_k::vec_dot_chunked_scalar), for columns in whole groups of four), the
//! one-column `gemv` once per super-block ([`vec_dot_scalar`](crate::quant::formats::q4_k::vec_dot_scalar), for the
//! rest). Integer sums are exact in any order, so the kernel may form them as it likes.
//!
//! Layout of a group of 16 rows, super-block by super-block (2368 bytes, 2.8 % more than the
//! file's 16 × 144, for scales and mins unpacked to bytes):
//! - the 16 rows' `d` (f16, 32 bytes), then their `dmin` (32 bytes);
//! - the sub-block scales, 6-bit values as bytes: sub-block `j`'s 16 rows at `16j..16j + 16`
//!   (128 bytes), then the mins the same way (128 bytes);
//! - 32 chunks of 64 bytes; chunk `8c + k` holds, for row `r` at bytes `4r..4r + 4`, that row's
//!   quant bytes `32c + 4k..32c + 4k + 4` (low nibbles: elements `64c + 4k..+4` of sub-block
//!   `2c`; high nibbles: elements `64c + 32 + 4k..+4` of sub-block `2c + 1`).

#[cfg(target_arch = "x86_64")]
use super::grouped::{avx512_vnni, column_tiles, Avx512Kernel, GroupDot};
use super::grouped::{interleave_row, GroupedRows, GROUP_ROWS};
use crate::quant::block::as_blocks;
use crate::quant::formats::q4_k::{unpack_scales_mins, BlockQ4K};
use crate::quant::formats::q8_k::BlockQ8K;
use crate::quant::types::QK_K;

/// Bytes of one super-block of a group.
const GROUP_BLOCK_BYTES: usize = 4 * 2 * GROUP_ROWS + 16 * GROUP_ROWS + 32 * 64;
/// Offsets inside a group super-block.
const DMIN_AT: usize = 2 * GROUP_ROWS;
const SCALES_AT: usize = 4 * GROUP_ROWS;
const MINS_AT: usize = SCALES_AT + 8 * GROUP_ROWS;
const QUANTS_AT: usize = MINS_AT + 8 * GROUP_ROWS;
/// Activation columns one kernel call dots with a group.
const COLUMN_TILE: usize = 4;

/// A Q4_K matrix whose row count is a multiple of [`GROUP_ROWS`], repacked into row groups.
#[derive(Debug)]
pub struct PackedQ4K {
    grouped: GroupedRows,
}

impl PackedQ4K {
    /// Repacks `rows` rows of `cols` Q4_K weights (`data`, row-major in whole super-blocks).
    /// `None` if the shape does not fit the layout (rows not a multiple of 16, or a partial
    /// super-block) or the sizes disagree.
    pub fn pack(data: &[u8], rows: usize, cols: usize) -> Option<PackedQ4K> {
        let grouped = GroupedRows::pack(
            data,
            rows,
            cols,
            QK_K,
            as_blocks::<BlockQ4K>,
            |r, b, out: &mut [u8; GROUP_BLOCK_BYTES]| {
                out[2 * r..2 * r + 2].copy_from_slice(&b.d);
                out[DMIN_AT + 2 * r..DMIN_AT + 2 * r + 2].copy_from_slice(&b.dmin);
                let sm = unpack_scales_mins(&b.scales);
                for j in 0..8 {
                    out[SCALES_AT + GROUP_ROWS * j + r] = sm[j];
                    out[MINS_AT + GROUP_ROWS * j + r] = sm[8 + j];
                }
                interleave_row(&mut out[QUANTS_AT..], r, &b.qs);
            },
        )?;
        Some(PackedQ4K { grouped })
    }

    /// The rows, shape and bytes.
    pub fn grouped(&self) -> &GroupedRows {
        &self.grouped
    }

    /// Row `r`'s `d`, `dmin` and quant bytes per super-block as the file stores them (the
    /// scales and mins are unpacked; the kernel tests check those through the products).
    pub fn unpack_row(&self, r: usize) -> Vec<([u8; 2], [u8; 2], [u8; QK_K / 2])> {
        let lane = r % GROUP_ROWS;
        self.grouped
            .group_blocks(r / GROUP_ROWS)
            .map(|b| {
                let d = [b[2 * lane], b[2 * lane + 1]];
                let dmin = [b[DMIN_AT + 2 * lane], b[DMIN_AT + 2 * lane + 1]];
                let qs = std::array::from_fn(|k| b[QUANTS_AT + 64 * (k / 4) + 4 * lane + k % 4]);
                (d, dmin, qs)
            })
            .collect()
    }
}

/// What the kernel needs of each Q8_K activation super-block besides its quants: the scale, and
/// per 64-element chunk `c` the two sub-block sums `Σ a` of its halves as a pair of i16 in one
/// i32 (low: sub-block `2c`, high: `2c + 1`), for one `vpmaddwd` with the rows' min pairs.
/// Column `col`, super-block `i` at `col * n_blocks + i`.
#[derive(Debug, Default, Clone)]
pub struct ActivationSumsK {
    scales: Vec<f32>,
    min_pairs: Vec<[i32; 4]>,
    n_blocks: usize,
}

impl ActivationSumsK {
    /// Computes the sums of `n_cols` columns of Q8_K activations (`stride` bytes each) in `acts`.
    pub fn compute(acts: &[u8], stride: usize, n_cols: usize) -> ActivationSumsK {
        let n_blocks = stride / size_of::<BlockQ8K>();
        let mut sums = ActivationSumsK {
            scales: Vec::with_capacity(n_cols * n_blocks),
            min_pairs: Vec::with_capacity(n_cols * n_blocks),
            n_blocks,
        };
        for col in acts.chunks_exact(stride).take(n_cols) {
            for b in &as_blocks::<BlockQ8K>(col)[..n_blocks] {
                sums.scales.push(b.d());
                sums.min_pairs.push(std::array::from_fn(|c| {
                    // Each sum of 32 quants is within ±4096: an i16.
                    let lo = (b.bsum(4 * c) + b.bsum(4 * c + 1)) as i16;
                    let hi = (b.bsum(4 * c + 2) + b.bsum(4 * c + 3)) as i16;
                    i32::from(lo as u16) | (i32::from(hi) << 16)
                }));
            }
        }
        sums
    }
}

/// Computes rows `groups.start * 16 .. groups.end * 16` of `W · X` for the `n_cols` Q8_K
/// activation columns in `acts` (`stride` bytes each, `sums` from [`ActivationSumsK::compute`]),
/// handing each value to `store(column, row, value)`. Columns below `chunked` (a multiple of 4)
/// take the four-column arithmetic (equal to `vec_dot_chunked_scalar` of the row and column to
/// the bit), the rest the one-column arithmetic (equal to `vec_dot_scalar`).
///
/// Needs AVX-512 (F, BW, VL, VNNI) and F16C: returns `false` without computing anything when the
/// CPU lacks them.
///
/// # Panics
/// If the activations or sums do not match the matrix's shape, or a group is out of range.
#[allow(clippy::too_many_arguments)]
pub fn matmul_groups(
    w: &PackedQ4K,
    groups: std::ops::Range<usize>,
    acts: &[u8],
    stride: usize,
    n_cols: usize,
    chunked: usize,
    sums: &ActivationSumsK,
    mut store: impl FnMut(usize, usize, f32),
) -> bool {
    let n_blocks = w.grouped.n_blocks();
    assert!(
        stride == n_blocks * size_of::<BlockQ8K>()
            && acts.len() >= n_cols * stride
            && sums.n_blocks == n_blocks
            && sums.scales.len() >= n_cols * n_blocks
            && sums.min_pairs.len() >= n_cols * n_blocks
            && groups.end <= w.grouped.groups()
            && chunked.is_multiple_of(4)
            && chunked <= n_cols,
        "packed Q4_K matmul: activations or sums do not match the matrix"
    );
    #[cfg(target_arch = "x86_64")]
    if avx512_vnni() {
        // SAFETY: the CPU has the features (checked just above).
        let four = unsafe { Avx512Kernel::<_, true>::new(n_blocks, acts, stride, n_cols, sums) };
        // SAFETY: as above.
        let one = unsafe { Avx512Kernel::<_, false>::new(n_blocks, acts, stride, n_cols, sums) };
        for g in groups {
            let group = w.grouped.group(g);
            let c = column_tiles::<COLUMN_TILE>(&four, group, g, 0, chunked, &mut store);
            column_tiles::<1>(&one, group, g, c, n_cols, &mut store);
        }
        return true;
    }
    let _ = (groups, acts, chunked, &mut store);
    false
}

/// [`x86::group_dot`], its running sums stepped per 64 elements when `CHUNKED`, else per
/// super-block.
#[cfg(target_arch = "x86_64")]
impl<const CHUNKED: bool> GroupDot for Avx512Kernel<'_, ActivationSumsK, CHUNKED> {
    #[inline(always)]
    fn dot<const NC: usize>(&self, group: &[u8], first: usize) -> [[f32; GROUP_ROWS]; NC] {
        let (n, sums) = (self.n_blocks(), self.sums());
        assert_eq!(group.len(), n * GROUP_BLOCK_BYTES);
        let cols = self.columns::<BlockQ8K, _, NC>(first, &sums.scales, &sums.min_pairs);
        // SAFETY: the CPU has the features (`Avx512Kernel::new`'s contract); `group` is `n` group
        // super-blocks and every column `n` activation super-blocks, scales and min pairs (sliced
        // above).
        unsafe { x86::group_dot::<NC, CHUNKED>(group.as_ptr(), n, cols) }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{DMIN_AT, GROUP_BLOCK_BYTES, GROUP_ROWS, MINS_AT, QUANTS_AT, SCALES_AT};
    use crate::quant::formats::q8_k::BlockQ8K;
    use crate::quant::packed::grouped::Column;
    use crate::quant::x86::prefetch_ahead;

    /// How far ahead (bytes) one-column calls ask for the group's next super-blocks (generation
    /// streams the weights once).
    const PREFETCH_AHEAD: usize = 4 * GROUP_BLOCK_BYTES;

    /// Offset of the quants in a Q8_K block (after its f32 scale).
    const Q8K_QUANTS: usize = 4;

    /// Sub-block scales or mins of the 16 rows at byte `at` of the super-block at `block`, as
    /// i32 lanes.
    ///
    /// # Safety
    /// The 16 bytes at `at` must lie in the super-block.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn byte_lanes(block: *const u8, at: usize) -> __m512i {
        // SAFETY: the caller's contract.
        _mm512_cvtepu8_epi32(unsafe { _mm_loadu_si128(block.add(at).cast()) })
    }

    /// The 16 rows of the group at `group` dotted with each of the `NC` columns; the running sums
    /// step per 64 elements when `CHUNKED`, else per super-block.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL/VNNI, FMA and F16C; `group` must point at `n_blocks`
    /// group super-blocks and each column at `n_blocks` Q8_K blocks, scales and min pairs.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn group_dot<const NC: usize, const CHUNKED: bool>(
        group: *const u8,
        n_blocks: usize,
        cols: [Column<[i32; 4]>; NC],
    ) -> [[f32; GROUP_ROWS]; NC] {
        let low_nibbles = _mm512_set1_epi8(0x0F);
        let mut acc = [_mm512_setzero_ps(); NC];
        let mut mins = [_mm512_setzero_ps(); NC];
        for i in 0..n_blocks {
            // SAFETY: `i < n_blocks`: super-block `i` lies in the group (the caller's contract).
            let block = unsafe { group.add(i * GROUP_BLOCK_BYTES) };
            if NC == 1 {
                prefetch_ahead(block, PREFETCH_AHEAD, GROUP_BLOCK_BYTES);
            }
            // SAFETY: the 16 `d` and the 16 `dmin` are the super-block's first 64 bytes.
            let (d, dmin) = unsafe {
                (
                    _mm256_loadu_si256(block.cast()),
                    _mm256_loadu_si256(block.add(DMIN_AT).cast()),
                )
            };
            let (d, dmin) = (_mm512_cvtph_ps(d), _mm512_cvtph_ps(dmin));
            // Per column: d_w·d_a and dmin_w·d_a (the running sums' multipliers).
            let mut scale = [_mm512_setzero_ps(); NC];
            let mut min_scale = [_mm512_setzero_ps(); NC];
            for c in 0..NC {
                // SAFETY: `i < n_blocks`: the column's scale `i` (the caller's contract).
                let da = _mm512_set1_ps(unsafe { *cols[c].scales.add(i) });
                scale[c] = _mm512_mul_ps(d, da);
                min_scale[c] = _mm512_mul_ps(dmin, da);
            }
            let mut isum_block = [_mm512_setzero_si512(); NC];
            let mut imin_block = [_mm512_setzero_si512(); NC];
            for chunk in 0..4 {
                let (j0, j1) = (2 * chunk, 2 * chunk + 1);
                // SAFETY: sub-blocks `j0` and `j1` (< 8) have their 16 scales and 16 mins in the
                // super-block, 16 bytes per sub-block from `SCALES_AT` and `MINS_AT`.
                let (sc_lo, sc_hi, m_lo, m_hi) = unsafe {
                    (
                        byte_lanes(block, SCALES_AT + GROUP_ROWS * j0),
                        byte_lanes(block, SCALES_AT + GROUP_ROWS * j1),
                        byte_lanes(block, MINS_AT + GROUP_ROWS * j0),
                        byte_lanes(block, MINS_AT + GROUP_ROWS * j1),
                    )
                };
                // Each row's two mins as an i16 pair, for one `vpmaddwd` per column.
                let min_pair = _mm512_or_si512(m_lo, _mm512_slli_epi32(m_hi, 16));
                let mut lo = [_mm512_setzero_si512(); 8];
                let mut hi = [_mm512_setzero_si512(); 8];
                for k in 0..8 {
                    // SAFETY: chunk `8 · chunk + k` (< 32) of the super-block's 64-byte chunks.
                    let q = unsafe {
                        _mm512_loadu_si512(block.add(QUANTS_AT + 64 * (8 * chunk + k)).cast())
                    };
                    lo[k] = _mm512_and_si512(q, low_nibbles);
                    hi[k] = _mm512_and_si512(_mm512_srli_epi16(q, 4), low_nibbles);
                }
                for c in 0..NC {
                    // SAFETY: `i < n_blocks`: the column's block `i` and min pairs `i` (the
                    // caller's contract); quants `64 · chunk..64 · chunk + 64` of its 256.
                    let (a, pairs) = unsafe {
                        (
                            cols[c]
                                .quants
                                .add(i * size_of::<BlockQ8K>() + Q8K_QUANTS + 64 * chunk),
                            *cols[c].sums.add(i),
                        )
                    };
                    let mut s_lo = _mm512_setzero_si512();
                    let mut s_hi = _mm512_setzero_si512();
                    for k in 0..8 {
                        // SAFETY: quants `4k..4k + 4` and `32 + 4k..32 + 4k + 4` of the 64 at `a`.
                        let (a_lo, a_hi) = unsafe {
                            (
                                a.add(4 * k).cast::<i32>().read_unaligned(),
                                a.add(32 + 4 * k).cast::<i32>().read_unaligned(),
                            )
                        };
                        s_lo = _mm512_dpbusd_epi32(s_lo, lo[k], _mm512_set1_epi32(a_lo));
                        s_hi = _mm512_dpbusd_epi32(s_hi, hi[k], _mm512_set1_epi32(a_hi));
                    }
                    let isum = _mm512_add_epi32(
                        _mm512_mullo_epi32(s_lo, sc_lo),
                        _mm512_mullo_epi32(s_hi, sc_hi),
                    );
                    let imin = _mm512_madd_epi16(min_pair, _mm512_set1_epi32(pairs[chunk]));
                    if CHUNKED {
                        acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), scale[c], acc[c]);
                        mins[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(imin), min_scale[c], mins[c]);
                    } else {
                        isum_block[c] = _mm512_add_epi32(isum_block[c], isum);
                        imin_block[c] = _mm512_add_epi32(imin_block[c], imin);
                    }
                }
            }
            if !CHUNKED {
                for c in 0..NC {
                    acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum_block[c]), scale[c], acc[c]);
                    mins[c] =
                        _mm512_fmadd_ps(_mm512_cvtepi32_ps(imin_block[c]), min_scale[c], mins[c]);
                }
            }
        }
        let mut out = [[0.0f32; GROUP_ROWS]; NC];
        for c in 0..NC {
            // SAFETY: `out[c]` holds 16 f32.
            unsafe { _mm512_storeu_ps(out[c].as_mut_ptr(), _mm512_sub_ps(acc[c], mins[c])) };
        }
        out
    }
}
