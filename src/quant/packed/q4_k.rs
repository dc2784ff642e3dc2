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

use super::grouped::{store_tile, GroupedRows, GROUP_ROWS};
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
                for chunk in 0..32 {
                    out[QUANTS_AT + 64 * chunk + 4 * r..][..4]
                        .copy_from_slice(&b.qs[4 * chunk..][..4]);
                }
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
    if super::grouped::avx512_vnni() {
        let column = |c: usize| x86::Column {
            quants: acts[c * stride..].as_ptr(),
            scales: sums.scales[c * n_blocks..].as_ptr(),
            min_pairs: sums.min_pairs[c * n_blocks..].as_ptr(),
        };
        for g in groups {
            let group = w.grouped.group(g).as_ptr();
            let mut c = 0;
            macro_rules! tile {
                ($nc:expr, $chunked:expr, $limit:expr) => {
                    while $limit - c >= $nc {
                        let cols: [x86::Column; $nc] = std::array::from_fn(|k| column(c + k));
                        // SAFETY: the CPU has the features (checked above); `group` holds
                        // `n_blocks` group super-blocks and each column `n_blocks` activation
                        // super-blocks and sums (asserted above, `c + k < n_cols`).
                        let v = unsafe { x86::group_dot::<$nc, $chunked>(group, n_blocks, cols) };
                        store_tile(g, c, &v, &mut store);
                        c += $nc;
                    }
                };
            }
            tile!(COLUMN_TILE, true, chunked);
            tile!(1, false, n_cols);
        }
        return true;
    }
    let _ = (groups, acts, chunked, &mut store);
    false
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{DMIN_AT, GROUP_BLOCK_BYTES, GROUP_ROWS, MINS_AT, QUANTS_AT, SCALES_AT};
    use crate::quant::formats::q8_k::BlockQ8K;
    use crate::quant::x86::prefetch_ahead;

    /// One activation column: its Q8_K super-blocks and their [`super::ActivationSumsK`].
    #[derive(Clone, Copy)]
    pub(super) struct Column {
        pub quants: *const u8,
        pub scales: *const f32,
        pub min_pairs: *const [i32; 4],
    }

    /// How far ahead (bytes) one-column calls ask for the group's next super-blocks (generation
    /// streams the weights once).
    const PREFETCH_AHEAD: usize = 4 * GROUP_BLOCK_BYTES;

    /// Offset of the quants in a Q8_K block (after its f32 scale).
    const Q8K_QUANTS: usize = 4;

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
        cols: [Column; NC],
    ) -> [[f32; GROUP_ROWS]; NC] {
        let low_nibbles = _mm512_set1_epi8(0x0F);
        let mut acc = [_mm512_setzero_ps(); NC];
        let mut mins = [_mm512_setzero_ps(); NC];
        for i in 0..n_blocks {
            // SAFETY (whole loop body): `i < n_blocks`, so every read below stays inside the
            // group's super-block `i` and the columns' block `i` (the caller's contract);
            // prefetches never fault.
            unsafe {
                let block = group.add(i * GROUP_BLOCK_BYTES);
                if NC == 1 {
                    prefetch_ahead(block, PREFETCH_AHEAD, GROUP_BLOCK_BYTES);
                }
                let d = _mm512_cvtph_ps(_mm256_loadu_si256(block.cast()));
                let dmin = _mm512_cvtph_ps(_mm256_loadu_si256(block.add(DMIN_AT).cast()));
                let byte_lanes =
                    |at: usize| _mm512_cvtepu8_epi32(_mm_loadu_si128(block.add(at).cast()));
                // Per column: d_w·d_a and dmin_w·d_a (the running sums' multipliers).
                let mut scale = [_mm512_setzero_ps(); NC];
                let mut min_scale = [_mm512_setzero_ps(); NC];
                for c in 0..NC {
                    let da = _mm512_set1_ps(*cols[c].scales.add(i));
                    scale[c] = _mm512_mul_ps(d, da);
                    min_scale[c] = _mm512_mul_ps(dmin, da);
                }
                let mut isum_block = [_mm512_setzero_si512(); NC];
                let mut imin_block = [_mm512_setzero_si512(); NC];
                for chunk in 0..4 {
                    let sc_lo = byte_lanes(SCALES_AT + GROUP_ROWS * 2 * chunk);
                    let sc_hi = byte_lanes(SCALES_AT + GROUP_ROWS * (2 * chunk + 1));
                    // Each row's two mins as an i16 pair, for one `vpmaddwd` per column.
                    let min_pair = _mm512_or_si512(
                        byte_lanes(MINS_AT + GROUP_ROWS * 2 * chunk),
                        _mm512_slli_epi32(byte_lanes(MINS_AT + GROUP_ROWS * (2 * chunk + 1)), 16),
                    );
                    let quants = block.add(QUANTS_AT + 8 * 64 * chunk);
                    let mut lo = [_mm512_setzero_si512(); 8];
                    let mut hi = [_mm512_setzero_si512(); 8];
                    for k in 0..8 {
                        let q = _mm512_loadu_si512(quants.add(64 * k).cast());
                        lo[k] = _mm512_and_si512(q, low_nibbles);
                        hi[k] = _mm512_and_si512(_mm512_srli_epi16(q, 4), low_nibbles);
                    }
                    for c in 0..NC {
                        let a = cols[c]
                            .quants
                            .add(i * size_of::<BlockQ8K>() + Q8K_QUANTS + 64 * chunk);
                        let mut s_lo = _mm512_setzero_si512();
                        let mut s_hi = _mm512_setzero_si512();
                        for k in 0..8 {
                            let a_lo =
                                _mm512_set1_epi32(a.add(4 * k).cast::<i32>().read_unaligned());
                            let a_hi =
                                _mm512_set1_epi32(a.add(32 + 4 * k).cast::<i32>().read_unaligned());
                            s_lo = _mm512_dpbusd_epi32(s_lo, lo[k], a_lo);
                            s_hi = _mm512_dpbusd_epi32(s_hi, hi[k], a_hi);
                        }
                        let isum = _mm512_add_epi32(
                            _mm512_mullo_epi32(s_lo, sc_lo),
                            _mm512_mullo_epi32(s_hi, sc_hi),
                        );
                        let sums = _mm512_set1_epi32((*cols[c].min_pairs.add(i))[chunk]);
                        let imin = _mm512_madd_epi16(min_pair, sums);
                        if CHUNKED {
                            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), scale[c], acc[c]);
                            mins[c] =
                                _mm512_fmadd_ps(_mm512_cvtepi32_ps(imin), min_scale[c], mins[c]);
                        } else {
                            isum_block[c] = _mm512_add_epi32(isum_block[c], isum);
                            imin_block[c] = _mm512_add_epi32(imin_block[c], imin);
                        }
                    }
                }
                if !CHUNKED {
                    for c in 0..NC {
                        acc[c] =
                            _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum_block[c]), scale[c], acc[c]);
                        mins[c] = _mm512_fmadd_ps(
                            _mm512_cvtepi32_ps(imin_block[c]),
                            min_scale[c],
                            mins[c],
                        );
                    }
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
