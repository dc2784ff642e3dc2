//! The AVX-512 one-token kernel: the portable [`AttentionKernel::Single`] arithmetic, in the
//! same order, for up to four query heads of one KV head at a time, reading the cache's rows
//! directly (f16 widened in registers, once for all the heads).
//!
//! - scores: 16 positions at a time; per position and head the four 16-lane accumulators of
//!   `dot_steps` (each key register loaded serves every head), folded as `reduce_steps` does,
//!   then the 16 positions' `reduce16` trees evaluated together by shuffles (each step of the
//!   tree adds the upper half of every 512-, 256-, 128- and 64-bit group onto the lower, for
//!   two positions' registers at once), so that lane `j` of the result is position `j`'s score;
//! - softmax and the rounding of the weights: the batched kernel's `softmax`, over rows of
//!   weights that start at a multiple of 16 (the cache's chunks), `-inf` outside `first..=last`;
//! - weighted sum: 16 output dimensions at a time, the positions in increasing order each
//!   fused-multiply-added into its lane slot `pos % 64` (zero weights left out by masking), the
//!   slots in a small array of registers of which only those some position falls in are
//!   written (no zeroed 64 × dim buffer), then added in the tree of the portable
//!   `weighted_values`.

use std::arch::x86_64::*;

use half::f16;

use super::avx512_batch::{range_mask, round_f16, softmax};
use super::layout::covers;
use super::{grow, AttentionKernel, AttentionPrecision, HeadSource, Span, LANES, SCRATCH, STEP};
use crate::model::config::MAX_HEAD_DIM;
use crate::model::kv_cache::{BlockTable, HeadRows};

/// [`Span::attend`] of every head of `q` through the one-token kernel, for a span of the
/// one-token arithmetic over the cache, if the kernel can take it (see [`attend_rows`];
/// otherwise nothing is done and `false` returned). The caller checked that the level is
/// AVX-512.
pub(super) fn attend(span: &Span<'_>, q: &[f32], out: &mut [f32]) -> bool {
    let HeadSource::Cache {
        kv,
        blocks,
        layer,
        kv_head,
    } = span.source
    else {
        return false;
    };
    span.kernel == AttentionKernel::Single
        && attend_rows(
            kv.key_rows(layer, kv_head, blocks),
            kv.value_rows(layer, kv_head, blocks),
            span,
            (kv.head_dim(), kv.head_dim_v()),
            q,
            out,
        )
}

/// The one-token kernel over every head of `q` (`dim` each) into `out` (`dim_v` each), reading
/// `keys` and `values` (the span's source is not read), if it can run them: the key width is
/// whole 64-element steps (no leftover summed in f64) and the value width whole registers, the
/// rows cover the positions, keys and values have one type. Otherwise nothing is done and
/// `false` returned. The caller checked that the level is AVX-512.
pub(super) fn attend_rows(
    keys: HeadRows<'_>,
    values: HeadRows<'_>,
    span: &Span<'_>,
    (dim, dim_v): (usize, usize),
    q: &[f32],
    out: &mut [f32],
) -> bool {
    let heads = q.len() / dim.max(1);
    let fits = dim > 0
        && dim.is_multiple_of(STEP)
        && dim <= MAX_HEAD_DIM
        && dim_v > 0
        && dim_v.is_multiple_of(LANES)
        && heads > 0
        && q.len() == heads * dim
        && out.len() == heads * dim_v
        && span.first <= span.last
        && covers(keys, span.last, dim)
        && covers(values, span.last, dim_v);
    if !fits {
        return false;
    }
    let row_len = span.row_len();
    SCRATCH.with_borrow_mut(|s| {
        grow(&mut s.queries, heads * dim);
        grow(&mut s.weights, heads * row_len);
        grow(&mut s.used, heads * row_len);
        let buffers = Buffers {
            queries: &mut s.queries[..heads * dim],
            weights: &mut s.weights[..heads * row_len],
            keep: &mut s.used[..heads * row_len],
        };
        let dims = (dim, dim_v);
        // SAFETY: the level is AVX-512, so the CPU has AVX-512 F/BW/VL, FMA and F16C; the rows
        // cover positions `0..=last` at their widths (`covers`, so every row pointer below stays
        // in its slice); `dim` is a multiple of 64, `dim_v` of 16, `q` and `out` hold `heads` of
        // them; the buffers hold `heads` queries and rows of weights from the chunk holding
        // `first` to the end of the chunk holding `last`.
        unsafe {
            match (keys, values) {
                (
                    HeadRows::F16 {
                        data: k,
                        stride: ks,
                        blocks: kb,
                    },
                    HeadRows::F16 {
                        data: v,
                        stride: vs,
                        blocks: vb,
                    },
                ) => kernel(
                    Rows::new(k, ks, kb),
                    Rows::new(v, vs, vb),
                    span,
                    dims,
                    q,
                    out,
                    buffers,
                ),
                (
                    HeadRows::F32 {
                        data: k,
                        stride: ks,
                        blocks: kb,
                    },
                    HeadRows::F32 {
                        data: v,
                        stride: vs,
                        blocks: vb,
                    },
                ) => kernel(
                    Rows::new(k, ks, kb),
                    Rows::new(v, vs, vb),
                    span,
                    dims,
                    q,
                    out,
                    buffers,
                ),
                _ => return false,
            }
        }
        true
    })
}

/// Lane slots of the one-token weighted sum (`STEP`: llama.cpp's four registers).
const SLOTS: usize = STEP;

/// Zeros standing for the keys of the positions of a block outside `first..=last` (whose
/// scores are replaced by `-inf`): a row that can always be read, whatever the position.
/// All-zero bits are +0 as f32 and as f16.
static ZERO_ROW: [f32; MAX_HEAD_DIM] = [0.0; MAX_HEAD_DIM];

/// An element type of the cache, widened to f32 16 at a time.
trait Elem: Copy {
    /// The 16 elements at `p` as f32.
    ///
    /// # Safety
    /// 16 elements must be readable at `p`; the CPU must have AVX-512F and F16C.
    unsafe fn load16(p: *const Self) -> __m512;
}

impl Elem for f16 {
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    #[inline]
    unsafe fn load16(p: *const f16) -> __m512 {
        // SAFETY: 16 f16 (32 bytes) are readable at `p` (the caller's contract); the load is
        // unaligned.
        _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(p.cast()) })
    }
}

impl Elem for f32 {
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    #[inline]
    unsafe fn load16(p: *const f32) -> __m512 {
        // SAFETY: 16 floats are readable at `p` (the caller's contract).
        unsafe { _mm512_loadu_ps(p) }
    }
}

/// Rows of one KV head in the cache: position `pos` starts `blocks.row(pos) * stride` elements
/// from `data`.
#[derive(Clone, Copy)]
struct Rows<'a, E> {
    data: *const E,
    stride: usize,
    blocks: BlockTable<'a>,
}

impl<'a, E: Elem> Rows<'a, E> {
    fn new(data: &'a [E], stride: usize, blocks: BlockTable<'a>) -> Rows<'a, E> {
        Rows {
            data: data.as_ptr(),
            stride,
            blocks,
        }
    }

    /// The start of position `pos`'s row (computed without dereferencing; the caller reads it
    /// only for positions the rows cover).
    #[inline(always)]
    fn row(self, pos: usize) -> *const E {
        self.data.wrapping_add(self.blocks.row(pos) * self.stride)
    }
}

/// The kernel's buffers for `heads` heads: their rounded queries (`dim` each), their rows
/// of weights and of masks (`row` each; a mask is all ones where the weight takes part).
struct Buffers<'s> {
    queries: &'s mut [f32],
    weights: &'s mut [f32],
    keep: &'s mut [u16],
}

/// Every head of `q` attends over the positions of `span`, its output into `out`: weights in
/// rows of `span.row_len()` positions from `span.chunk_start()` (whole 16-position chunks of the
/// cache).
///
/// # Safety
/// The CPU must have AVX-512 F/BW/VL, FMA and F16C; `keys` and `values` must hold readable
/// rows for positions `0..=span.last` of `dim` and `dim_v` elements; `dim % 64 == 0`, `dim <= MAX_HEAD_DIM`,
/// `dim_v % 16 == 0`; `span.first <= span.last`; `q` holds `heads` queries of `dim`, `out` as
/// many outputs of `dim_v`, the buffers `heads` of each of their rows.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn kernel<E: Elem>(
    keys: Rows<'_, E>,
    values: Rows<'_, E>,
    span: &Span<'_>,
    (dim, dim_v): (usize, usize),
    q: &[f32],
    out: &mut [f32],
    buffers: Buffers<'_>,
) {
    let Buffers {
        queries,
        weights,
        keep,
    } = buffers;
    let (start, row_len) = (span.chunk_start(), span.row_len());
    let round = span.precision == AttentionPrecision::F16;
    let heads = q.len() / dim;
    queries.copy_from_slice(q);
    if round {
        for x in queries.chunks_exact_mut(LANES) {
            // SAFETY: `x` holds 16 floats.
            unsafe { _mm512_storeu_ps(x.as_mut_ptr(), round_f16(_mm512_loadu_ps(x.as_ptr()))) };
        }
    }
    // Scores, block by block of 16 positions (each block's keys read once for all heads
    // while they are in the L1 cache).
    for p0 in (start..start + row_len).step_by(LANES) {
        let mut rows = [ZERO_ROW.as_ptr().cast::<E>(); LANES];
        for (j, row) in rows.iter_mut().enumerate() {
            if (span.first..=span.last).contains(&(p0 + j)) {
                *row = keys.row(p0 + j);
            }
        }
        // The cache is read once per token, mostly from L3: ask for the next block's keys
        // and this block's values (read after the softmax) ahead of time. Prefetches
        // never fault; only rows of positions in `first..=last` are named.
        for pos in (p0..p0 + 2 * LANES).filter(|&p| (span.first..=span.last).contains(&p)) {
            if pos >= p0 + LANES {
                prefetch_row(keys.row(pos), dim);
            } else {
                prefetch_row(values.row(pos), dim_v);
            }
        }
        let inside = range_mask(p0, span.first, span.last);
        let mut h0 = 0;
        while h0 < heads {
            let g = (heads - h0).min(4);
            let qs: [*const f32; 4] =
                std::array::from_fn(|i| queries[(h0 + i.min(g - 1)) * dim..].as_ptr());
            // SAFETY: every row pointer is a cache row of a position in `first..=last` or
            // the zero row, `dim` readable elements either way; each query holds `dim`.
            let scores = unsafe {
                match g {
                    1 => pad4(scores::<E, 1>(rows, [qs[0]], dim)),
                    2 => pad4(scores::<E, 2>(rows, [qs[0], qs[1]], dim)),
                    3 => pad4(scores::<E, 3>(rows, [qs[0], qs[1], qs[2]], dim)),
                    _ => scores::<E, 4>(rows, qs, dim),
                }
            };
            for (h, &score) in (h0..h0 + g).zip(&scores) {
                // SAFETY: this kernel runs on AVX-512F CPUs only.
                let score = unsafe { span.capped_lanes(score) };
                let score = _mm512_mul_ps(score, _mm512_set1_ps(span.scale));
                // Outside `first..=last`: -inf, whose exponential is an exact zero (as the
                // portable path's missing positions are).
                let score = _mm512_mask_blend_ps(inside, _mm512_set1_ps(f32::NEG_INFINITY), score);
                let dst = &mut weights[h * row_len + p0 - start..][..LANES];
                // SAFETY: `dst` holds 16 floats.
                unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), score) };
            }
            h0 += g;
        }
    }
    for (w, keep) in weights
        .chunks_exact_mut(row_len)
        .zip(keep.chunks_exact_mut(row_len))
    {
        softmax(w, round);
        for (w, keep) in w.chunks_exact(LANES).zip(keep.chunks_exact_mut(LANES)) {
            // SAFETY: `w` holds 16 floats, `keep` 16 u16.
            unsafe {
                // Not-equal-unordered: a NaN weight takes part, as the portable
                // `w == 0.0` test lets it through.
                let used = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(
                    _mm512_loadu_ps(w.as_ptr()),
                    _mm512_setzero_ps(),
                );
                _mm256_storeu_si256(keep.as_mut_ptr().cast(), _mm256_movm_epi16(used));
            }
        }
    }
    for c in (0..dim_v).step_by(LANES) {
        let mut h0 = 0;
        while h0 < heads {
            let g = (heads - h0).min(4);
            let sums = Sums {
                values,
                c,
                first: span.first,
                last: span.last,
                start,
                row_len,
                w: weights[h0 * row_len..].as_ptr(),
                keep: keep[h0 * row_len..].as_ptr(),
            };
            // SAFETY: `values` holds rows `first..=last` of `dim_v` elements and
            // `c + 16 <= dim_v`; the weights and masks of heads `h0..h0 + g` follow
            // each other, `row_len` apart, from the pointers.
            let sums = unsafe {
                match g {
                    1 => pad4(sums.total::<1>()),
                    2 => pad4(sums.total::<2>()),
                    3 => pad4(sums.total::<3>()),
                    _ => sums.total::<4>(),
                }
            };
            for (h, &sum) in (h0..h0 + g).zip(&sums) {
                let dst = &mut out[h * dim_v + c..][..LANES];
                // SAFETY: `dst` holds 16 floats.
                unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), sum) };
            }
            h0 += g;
        }
    }
}

/// Up to four results padded to four (the others are not read).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
#[inline]
fn pad4<const G: usize>(x: [__m512; G]) -> [__m512; 4] {
    let mut out = [_mm512_setzero_ps(); 4];
    out[..G].copy_from_slice(&x);
    out
}

/// The scores of 16 keys for `G` queries, before the scale: lane `j` of the result is the
/// score of `keys[j]`.
///
/// Per input and query, the four accumulators of `dot_steps` folded by `reduce_steps` into
/// one register `a` (see [`key_sums`]); then `reduce16` of every `a` at once: `fold256`
/// makes `a_i + a_{i+8}` of two inputs, `fold128` `h_i + h_{i+4}` of those of four,
/// `fold64` `q_0 + q_2`, `q_1 + q_3` of eight, `fold32` their sum for all sixteen, each add
/// the one of `reduce16` (only which lanes it happens in changes). That leaves the score of
/// key `4 (j % 4) + j / 4` in lane `j` (a 4 × 4 transpose), put back in order by one
/// permutation. (The keys are loaded in order, which the hardware prefetchers follow.)
///
/// # Safety
/// Each key must point to `dim` readable elements, each query to `dim` floats;
/// `dim % 64 == 0`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
#[inline]
unsafe fn scores<E: Elem, const G: usize>(
    keys: [*const E; LANES],
    q: [*const f32; G],
    dim: usize,
) -> [__m512; G] {
    let zero = _mm512_setzero_ps();
    // Loops rather than a tree written out: one copy of `key_sums` per `G`, not sixteen.
    let mut twos = [[zero; G]; 8];
    for (t, two) in twos.iter_mut().enumerate() {
        // SAFETY: the caller's contract.
        let (a, b) = unsafe {
            (
                key_sums::<E, G>(keys[2 * t], q, dim),
                key_sums::<E, G>(keys[2 * t + 1], q, dim),
            )
        };
        for (two, (a, b)) in two.iter_mut().zip(a.into_iter().zip(b)) {
            *two = fold256(a, b);
        }
    }
    let mut fours = [[zero; G]; 4];
    for (f, four) in fours.iter_mut().enumerate() {
        for (g, four) in four.iter_mut().enumerate() {
            *four = fold128(twos[2 * f][g], twos[2 * f + 1][g]);
        }
    }
    let mut eights = [[zero; G]; 2];
    for (e, eight) in eights.iter_mut().enumerate() {
        for (g, eight) in eight.iter_mut().enumerate() {
            *eight = fold64(fours[2 * e][g], fours[2 * e + 1][g]);
        }
    }
    let transpose = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    let mut out = [zero; G];
    for (g, out) in out.iter_mut().enumerate() {
        *out = _mm512_permutexvar_ps(transpose, fold32(eights[0][g], eights[1][g]));
    }
    out
}

/// Asks for the cache lines of a row of `width` elements at `row` (a hint: never faults).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
#[inline]
fn prefetch_row<E>(row: *const E, width: usize) {
    let bytes = width * size_of::<E>();
    for offset in (0..bytes).step_by(64) {
        _mm_prefetch::<_MM_HINT_T0>(row.cast::<i8>().wrapping_add(offset));
    }
}

/// Per query, `dot_steps`' four 16-lane accumulators of `key · q` (element `i` of each
/// 64-element step in register `(i / 16) % 4`, lane `i % 16`, fused multiply-adds in order
/// of the steps) folded lane-wise as `reduce_steps` does: `(r0 + r2) + (r1 + r3)`.
///
/// # Safety
/// As [`scores`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
#[inline]
unsafe fn key_sums<E: Elem, const G: usize>(
    key: *const E,
    q: [*const f32; G],
    dim: usize,
) -> [__m512; G] {
    let zero = _mm512_setzero_ps();
    // `acc[r][g]`: register `r` of query `g`.
    let mut acc = [[zero; G]; 4];
    for step in (0..dim).step_by(STEP) {
        for (r, acc) in acc.iter_mut().enumerate() {
            let i = step + r * LANES;
            // SAFETY: `i + 16 <= dim`, inside the key and every query.
            unsafe {
                let k = E::load16(key.add(i));
                for (acc, q) in acc.iter_mut().zip(q) {
                    *acc = _mm512_fmadd_ps(k, _mm512_loadu_ps(q.add(i)), *acc);
                }
            }
        }
    }
    let [r0, r1, r2, r3] = acc;
    let mut out = [zero; G];
    for (g, out) in out.iter_mut().enumerate() {
        *out = _mm512_add_ps(_mm512_add_ps(r0[g], r2[g]), _mm512_add_ps(r1[g], r3[g]));
    }
    out
}

/// Lanes `i` of `[a.lo8 + a.hi8 | b.lo8 + b.hi8]`: 128-bit blocks `[a0 a1 b0 b1]` plus
/// `[a2 a3 b2 b3]`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
#[inline]
fn fold256(a: __m512, b: __m512) -> __m512 {
    _mm512_add_ps(
        _mm512_shuffle_f32x4::<0x44>(a, b),
        _mm512_shuffle_f32x4::<0xee>(a, b),
    )
}

/// The upper 4 lanes of every 8 onto the lower: blocks `[a0 a2 b0 b2]` plus
/// `[a1 a3 b1 b3]`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
#[inline]
fn fold128(a: __m512, b: __m512) -> __m512 {
    _mm512_add_ps(
        _mm512_shuffle_f32x4::<0x88>(a, b),
        _mm512_shuffle_f32x4::<0xdd>(a, b),
    )
}

/// In every 128-bit block, lanes 2, 3 onto 0, 1: the lower 64 bits of `a`'s and `b`'s
/// blocks plus the upper.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
#[inline]
fn fold64(a: __m512, b: __m512) -> __m512 {
    let (a, b) = (_mm512_castps_pd(a), _mm512_castps_pd(b));
    _mm512_add_ps(
        _mm512_castpd_ps(_mm512_unpacklo_pd(a, b)),
        _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)),
    )
}

/// In every 128-bit block, the even lanes of `a` and `b` plus the odd ones.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
#[inline]
fn fold32(a: __m512, b: __m512) -> __m512 {
    _mm512_add_ps(
        _mm512_shuffle_ps::<0x88>(a, b),
        _mm512_shuffle_ps::<0xdd>(a, b),
    )
}

/// The weighted sum of dimensions `c..c + 16` of the values for `G` heads, whose weights
/// and masks start at `w` and `keep` (position `start`), `row_len` apart.
#[derive(Clone, Copy)]
struct Sums<'a, E> {
    values: Rows<'a, E>,
    c: usize,
    /// The positions summed, `first..=last`.
    first: usize,
    last: usize,
    /// The position of the first weight of a row, and the length of the rows.
    start: usize,
    row_len: usize,
    w: *const f32,
    keep: *const u16,
}

/// `a + b` per head, where `None` is a sum of no slots.
///
/// Why leaving the empty slots out is exact: the portable path adds them as +0.0, and
/// `x + (+0.0) == x` for every `x` but -0.0 (a NaN stays that NaN). No slot is ever -0.0:
/// an empty one is +0.0, and a fused multiply-add whose exact result is zero rounds to
/// +0.0 unless both the product and the addend are -0.0 — the first addend is +0.0 and,
/// by induction, no later one is -0.0. A sum of two values that are not -0.0 is not -0.0
/// either, so no partial sum of the tree is, and each +0.0 added there changes nothing.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
#[inline]
fn add<const G: usize>(a: Option<[__m512; G]>, b: Option<[__m512; G]>) -> Option<[__m512; G]> {
    match (a, b) {
        (Some(mut a), Some(b)) => {
            for (a, b) in a.iter_mut().zip(b) {
                *a = _mm512_add_ps(*a, b);
            }
            Some(a)
        }
        (a, None) => a,
        (None, b) => b,
    }
}

impl<E: Elem> Sums<'_, E> {
    /// `out` of the portable `weighted_values` for the one-token kernel. The positions
    /// go in increasing order, each fused-multiply-added into its slot `pos % 64` (from
    /// +0.0; masked off where its weight is zero, leaving the slot as it is), so that every
    /// slot takes its positions in the portable order. The slots live in an array of
    /// registers on the stack of which only the ones a position falls in are written (the
    /// first 64 positions are the first in their slots, the later ones the next), then
    /// are reduced as `lanes[l] = (s[l] + s[32 + l]) + (s[16 + l] + s[48 + l])`,
    /// `lanes[i] += lanes[i + 8]`, `lanes[i] += lanes[i + 4]`, `(l0 + l2) + (l1 + l3)`
    /// (grouped here per `l ∈ {0, 1, 2, 3}` of the middle steps,
    /// `(L_l + L_{l+8}) + (L_{l+4} + L_{l+12})`), the slots no position fell in left out
    /// (see [`add`]).
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL, FMA and F16C; the values hold rows
    /// `first..=last` of which dimensions `c..c + 16` are read; `w` and `keep` hold `G`
    /// rows of `row_len` from `start`.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    #[inline]
    unsafe fn total<const G: usize>(self) -> [__m512; G] {
        let (first, last) = (self.first, self.last);
        let n = last + 1 - first;
        let zero = _mm512_setzero_ps();
        let mut slots = [std::mem::MaybeUninit::<[__m512; G]>::uninit(); SLOTS];
        for pos in first..first + n.min(SLOTS) {
            // SAFETY: `pos` is in `first..=last` (the caller's contract passed on).
            let acc = unsafe { self.position::<G>(pos, [zero; G]) };
            slots[pos % SLOTS].write(acc);
        }
        for pos in first + SLOTS..=last {
            let slot = &mut slots[pos % SLOTS];
            // SAFETY: the slot was written by the first loop (position `pos - 64`, or a
            // later one of this loop); `pos` is in `first..=last`.
            unsafe {
                let acc = slot.assume_init();
                slot.write(self.position::<G>(pos, acc));
            }
        }
        // The slots the first `n` positions from `first` fell in.
        let used = if n >= SLOTS {
            u64::MAX
        } else {
            ((1u64 << n) - 1).rotate_left((first % SLOTS) as u32)
        };
        let mut lanes = [None; LANES];
        for (l, lane) in lanes.iter_mut().enumerate() {
            let slot = |s: usize| {
                // SAFETY: slot `s` was written when its bit of `used` is set.
                (used >> s & 1 == 1).then(|| unsafe { slots[s].assume_init() })
            };
            *lane = add(add(slot(l), slot(32 + l)), add(slot(16 + l), slot(48 + l)));
        }
        let mut quads = [None; 4];
        for (l, quad) in quads.iter_mut().enumerate() {
            *quad = add(
                add(lanes[l], lanes[l + 8]),
                add(lanes[l + 4], lanes[l + 12]),
            );
        }
        let sum = add(add(quads[0], quads[2]), add(quads[1], quads[3]));
        // `first <= last`: some slot holds a position, so `sum` is never `None`.
        sum.unwrap_or([zero; G])
    }

    /// `acc + w_pos · v_pos` per head (one fused multiply-add), `acc` where the weight is
    /// zero.
    ///
    /// # Safety
    /// As [`Self::total`], `pos` in `first..=last`.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    #[inline]
    unsafe fn position<const G: usize>(self, pos: usize, mut acc: [__m512; G]) -> [__m512; G] {
        let (i, row) = (pos - self.start, self.row_len);
        // SAFETY: the caller's contract: row `pos` holds dimensions `c..c + 16`, and weight
        // and mask `i` of each head lie in its row (`i < row`).
        unsafe {
            let v = E::load16(self.values.row(pos).add(self.c));
            for (g, acc) in acc.iter_mut().enumerate() {
                let w = _mm512_set1_ps(*self.w.add(g * row + i));
                let keep: __mmask16 = *self.keep.add(g * row + i);
                *acc = _mm512_mask3_fmadd_ps(v, w, *acc, keep);
            }
        }
        acc
    }
}
