//! Attention of one query head over the cached keys and values, in the arithmetic llama.cpp's CPU
//! backend uses (its non-flash path), so that our results are its results to the bit.
//!
//! Why bit-exact: the outputs feed the next matmul, whose activations are quantized to 8 bits.
//! A difference of one unit in the last place flips an int8 rounding now and then, and each flip
//! grows through the layers; two evaluation orders that are both "correct" end up as far apart as
//! the quantization noise (~0.3 in the logits of SmolLM2). So we follow llama.cpp's order:
//!
//! - scores `q·k`: the query rounded to f16 (the cache's type), then summed in 16 lanes (element
//!   `i` in lane `i % 16`, fused multiply-adds) reduced as a 512-bit register is; one token alone
//!   takes the generic dot product instead, four 16-lane accumulators over 64-element steps;
//! - softmax: scaled scores, the exponential llama.cpp's vector code computes ([`vexp`]) in
//!   16-position chunks whose sums accumulate in f64, then one multiply by `1 / sum`;
//! - the weighted sum of values: weights rounded to f16, then per output dimension the same two
//!   lane layouts over cache positions.
//!
//! The chunks count from position 0 of the cache (llama.cpp's cache cell = position for a single
//! sequence), so masked positions contribute exact zeros and are skipped.

use half::f16;

use super::config::MAX_HEAD_DIM;
use super::kv_cache::{HeadRows, KvCache};
use super::ops::vexp;

/// Lanes of a 512-bit register of f32.
const LANES: usize = 16;
/// Elements per step of llama.cpp's generic f16 dot product (four registers).
const STEP: usize = 4 * LANES;

/// Which of llama.cpp's kernel families computes the scores and the weighted sum: several query
/// tokens go through its tiled matrix multiply, a lone token through its vector dot product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionKernel {
    /// More than one token in the forward pass.
    Batched,
    /// One token (generation).
    Single,
}

/// How attention rounds its intermediate values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionPrecision {
    /// Everything in f32 (f32 cache).
    F32,
    /// As a half-precision cache implies: the query is rounded to f16 before it meets the keys,
    /// and the softmax weights before they meet the values.
    F16,
}

/// Where a head's keys and values come from.
#[derive(Clone, Copy)]
pub enum HeadSource<'a> {
    /// KV head `kv_head` of `layer` in the cache, read (and widened from f16) per query.
    Cache {
        kv: &'a KvCache,
        layer: usize,
        kv_head: usize,
    },
    /// The same rows already widened to f32 by [`widen_head`], row `pos - base` holding
    /// position `pos` (many queries of a batch share one widening).
    Widened {
        keys: &'a [f32],
        values: &'a [f32],
        base: usize,
    },
}

/// Copies the keys and values of KV head `kv_head` of `layer` at positions `base..=last` into
/// `keys`/`values` as f32 rows (resized as needed), for [`HeadSource::Widened`].
pub fn widen_head(
    kv: &KvCache,
    layer: usize,
    kv_head: usize,
    base: usize,
    last: usize,
    keys: &mut Vec<f32>,
    values: &mut Vec<f32>,
) {
    for (rows, dim, out) in [
        (kv.key_rows(layer, kv_head), kv.head_dim(), keys),
        (kv.value_rows(layer, kv_head), kv.head_dim_v(), values),
    ] {
        out.resize((last + 1 - base) * dim, 0.0);
        for (pos, row) in (base..=last).zip(out.chunks_exact_mut(dim)) {
            match rows {
                HeadRows::F32 { data, stride } => row.copy_from_slice(&data[pos * stride..][..dim]),
                HeadRows::F16 { data, stride } => {
                    half::slice::HalfFloatSliceExt::convert_to_f32_slice(
                        &data[pos * stride..][..dim],
                        row,
                    )
                }
            }
        }
    }
}

/// One query head's attention: the rows at positions `first..=last`, the scale applied to the
/// scores, and how to compute.
#[derive(Clone, Copy)]
pub struct HeadAttention<'a> {
    pub source: HeadSource<'a>,
    pub first: usize,
    pub last: usize,
    pub scale: f32,
    pub precision: AttentionPrecision,
    pub kernel: AttentionKernel,
}

thread_local! {
    /// Per-thread buffers (attention weights, lane accumulators), grown to the longest context
    /// seen; nothing is allocated per token.
    static SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

impl HeadAttention<'_> {
    /// `out = Σ_j softmax_j(scale · q·k_j) · v_j` over the positions.
    pub fn attend(&self, q: &[f32], out: &mut [f32]) {
        SCRATCH.with_borrow_mut(|(weights, lanes)| {
            let n = self.last + 1 - self.first;
            if weights.len() < n {
                weights.resize(n, 0.0);
            }
            let slots = match self.kernel {
                AttentionKernel::Batched => LANES,
                AttentionKernel::Single => STEP,
            };
            let need = slots * out.len();
            if lanes.len() < need {
                lanes.resize(need, 0.0);
            }
            let (weights, lanes) = (&mut weights[..n], &mut lanes[..need]);
            #[cfg(target_arch = "x86_64")]
            if super::ops::has_fma() {
                // SAFETY: the CPU has AVX2, FMA and F16C (checked above).
                return unsafe { self.attend_fma(q, weights, lanes, out) };
            }
            self.attend_any(q, weights, lanes, out)
        });
    }

    /// [`Self::attend`] compiled with hardware fused multiply-add (same results, much faster than
    /// the C library's `fmaf`). No closures inside: they would be compiled without the features.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn attend_fma(
        &self,
        q: &[f32],
        weights: &mut [f32],
        lanes: &mut [f32],
        out: &mut [f32],
    ) {
        self.attend_any(q, weights, lanes, out)
    }

    #[inline(always)]
    fn attend_any(&self, q: &[f32], weights: &mut [f32], lanes: &mut [f32], out: &mut [f32]) {
        self.weights_any(q, weights);
        self.weighted_values(weights, lanes, out);
    }

    /// The attention weights over `first..=last` (one per position, rounded as the weighted sum
    /// uses them), written to `weights`.
    pub fn weights(&self, q: &[f32], weights: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if super::ops::has_fma() {
            // SAFETY: the CPU has AVX2, FMA and F16C (checked above).
            return unsafe { self.weights_fma(q, weights) };
        }
        self.weights_any(q, weights)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn weights_fma(&self, q: &[f32], weights: &mut [f32]) {
        self.weights_any(q, weights)
    }

    #[inline(always)]
    fn weights_any(&self, q: &[f32], weights: &mut [f32]) {
        let dim = q.len();
        let mut query = [0.0f32; MAX_HEAD_DIM];
        let query = &mut query[..dim];
        query.copy_from_slice(q);
        if self.precision == AttentionPrecision::F16 {
            round_to_f16(query);
        }
        let mut key = [0.0f32; MAX_HEAD_DIM];
        let key = &mut key[..dim];
        let mut pos = self.first;
        #[cfg(target_arch = "x86_64")]
        if let (AttentionKernel::Batched, HeadSource::Widened { keys, base, .. }, true) = (
            self.kernel,
            self.source,
            dim.is_multiple_of(LANES) && super::ops::has_fma(),
        ) {
            // Four keys at a time: four independent chains of fused multiply-adds instead of
            // one; each score's own order is unchanged.
            while pos + 4 <= self.last + 1 {
                let rows = &keys[(pos - base) * dim..][..4 * dim];
                // SAFETY: the CPU has AVX2 and FMA (checked above); `rows` holds four rows of
                // `dim` floats and `dim` is a multiple of 16.
                let scores = unsafe { x86::dot_lanes_x4(rows, query) };
                for (j, score) in scores.into_iter().enumerate() {
                    weights[pos + j - self.first] = score * self.scale;
                }
                pos += 4;
            }
        }
        for pos in pos..=self.last {
            let k = self.row(true, pos, key);
            let score = match self.kernel {
                AttentionKernel::Batched => dot_lanes(k, query),
                AttentionKernel::Single => dot_steps(k, query),
            };
            weights[pos - self.first] = score * self.scale;
        }
        softmax_chunked(weights, self.first);
        if self.precision == AttentionPrecision::F16 {
            round_to_f16(weights);
        }
    }

    /// `out[d] = Σ_j weights[j] · v_j[d]`, with the positions' products accumulated in the lane
    /// slots of the kernel (`lanes` holds `slots × dim` floats), then reduced.
    #[inline(always)]
    fn weighted_values(&self, weights: &[f32], lanes: &mut [f32], out: &mut [f32]) {
        let dim = out.len();
        lanes.fill(0.0);
        let slots = lanes.len() / dim;
        let mut value = [0.0f32; MAX_HEAD_DIM];
        let value = &mut value[..dim];
        for (&w, pos) in weights.iter().zip(self.first..=self.last) {
            if w == 0.0 {
                // Adds exact zeros in llama.cpp too.
                continue;
            }
            let v = self.row(false, pos, value);
            let slot = &mut lanes[(pos % slots) * dim..][..dim];
            fma_axpy(w, v, slot);
        }
        // Reduce the slots row-wise (vectorized over the dimensions), in the order of
        // `reduce_steps` / `reduce16` per dimension.
        if self.kernel == AttentionKernel::Single {
            for l in 0..LANES {
                for d in 0..dim {
                    lanes[l * dim + d] = (lanes[l * dim + d] + lanes[(2 * LANES + l) * dim + d])
                        + (lanes[(LANES + l) * dim + d] + lanes[(3 * LANES + l) * dim + d]);
                }
            }
        }
        for (half, dst_rows) in [(8, 8), (4, 4)] {
            for i in 0..dst_rows {
                for d in 0..dim {
                    lanes[i * dim + d] += lanes[(i + half) * dim + d];
                }
            }
        }
        for (d, o) in out.iter_mut().enumerate() {
            *o = (lanes[d] + lanes[2 * dim + d]) + (lanes[dim + d] + lanes[3 * dim + d]);
        }
    }
}

impl<'a> HeadAttention<'a> {
    /// The key (`key`) or value row of position `pos` as f32, widened into `buf` when it comes
    /// from an f16 cache (`buf.len()` is the row width).
    #[inline(always)]
    fn row<'b>(&'b self, key: bool, pos: usize, buf: &'b mut [f32]) -> &'b [f32] {
        let dim = buf.len();
        match self.source {
            HeadSource::Widened { keys, values, base } => {
                let rows = if key { keys } else { values };
                &rows[(pos - base) * dim..][..dim]
            }
            HeadSource::Cache { kv, layer, kv_head } => {
                let rows = if key {
                    kv.key_rows(layer, kv_head)
                } else {
                    kv.value_rows(layer, kv_head)
                };
                match rows {
                    HeadRows::F32 { data, stride } => &data[pos * stride..][..dim],
                    HeadRows::F16 { data, stride } => {
                        half::slice::HalfFloatSliceExt::convert_to_f32_slice(
                            &data[pos * stride..][..dim],
                            buf,
                        );
                        buf
                    }
                }
            }
        }
    }
}

/// Rounds every value to the nearest f16 (ties to even) and back.
#[inline(always)]
fn round_to_f16(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = f16::from_f32(*v).to_f32();
    }
}

/// The sum of 16 lanes as a 512-bit register is reduced (`_mm512_reduce_add_ps`): upper half onto
/// lower, then again, then the pairs of the last four.
#[inline(always)]
pub fn reduce16(a: [f32; LANES]) -> f32 {
    let mut h = [0.0f32; 8];
    for i in 0..8 {
        h[i] = a[i] + a[i + 8];
    }
    let q = [h[0] + h[4], h[1] + h[5], h[2] + h[6], h[3] + h[7]];
    (q[0] + q[2]) + (q[1] + q[3])
}

/// The reduction of llama.cpp's four 16-lane dot-product accumulators: registers 0+2 and 1+3,
/// then those two, then [`reduce16`], widened to f64.
#[inline(always)]
fn reduce_steps(r: [[f32; LANES]; 4]) -> f64 {
    let mut a = [0.0f32; LANES];
    for l in 0..LANES {
        a[l] = (r[0][l] + r[2][l]) + (r[1][l] + r[3][l]);
    }
    f64::from(reduce16(a))
}

/// `Σ a_i·b_i` in 16 lanes (element `i` in lane `i % 16`, fused multiply-adds in order of `i`),
/// reduced as [`reduce16`]: llama.cpp's tiled f16/f32 matrix multiply. `a.len() % 16 == 0`.
#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    for (ca, cb) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] = ca[l].mul_add(cb[l], acc[l]);
        }
    }
    reduce16(acc)
}

/// `Σ a_i·b_i` as llama.cpp's generic f16 dot product computes it: four 16-lane accumulators
/// over 64-element steps, reduced by [`reduce_steps`] into f64, the remaining elements' f32
/// products added in f64, the total rounded to f32.
#[inline(always)]
fn dot_steps(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [[0.0f32; LANES]; 4];
    let full = a.len() / STEP * STEP;
    for (sa, sb) in a[..full]
        .chunks_exact(STEP)
        .zip(b[..full].chunks_exact(STEP))
    {
        for (r, acc) in acc.iter_mut().enumerate() {
            for (l, acc) in acc.iter_mut().enumerate() {
                let i = r * LANES + l;
                *acc = sa[i].mul_add(sb[i], *acc);
            }
        }
    }
    let mut sum = reduce_steps(acc);
    for (x, y) in a[full..].iter().zip(&b[full..]) {
        sum += f64::from(x * y);
    }
    sum as f32
}

/// `acc += w · v` with one fused multiply-add per element.
#[inline(always)]
fn fma_axpy(w: f32, v: &[f32], acc: &mut [f32]) {
    for (a, &x) in acc.iter_mut().zip(v) {
        *a = x.mul_add(w, *a);
    }
}

/// Softmax of the scores of positions `first..`, in place, as llama.cpp's vector code computes
/// it: `e_j = vexp(s_j − max)`, summed per 16-position chunk of the cache (chunks count from
/// position 0; masked positions are zeros) in [`reduce16`] order, the chunk sums accumulated in
/// f64, then each `e_j` multiplied by `1 / sum` rounded to f32.
#[inline(always)]
pub fn softmax_chunked(x: &mut [f32], first: usize) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for v in x.iter_mut() {
        *v = vexp(*v - max);
    }
    let mut sum = 0.0f64;
    let mut pos = first;
    let end = first + x.len();
    while pos < end {
        let chunk_start = pos / LANES * LANES;
        let chunk_end = (chunk_start + LANES).min(end);
        let mut chunk = [0.0f32; LANES];
        chunk[pos - chunk_start..chunk_end - chunk_start]
            .copy_from_slice(&x[pos - first..chunk_end - first]);
        sum += f64::from(reduce16(chunk));
        pos = chunk_end;
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// AVX2 twin of four [`dot_lanes`] at once.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// [`super::dot_lanes`] of the four consecutive `b.len()`-long rows of `rows` with `b`: the
    /// 16 lanes of each held in two 8-lane registers, then reduced as `reduce16` does.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `rows.len() == 4 * b.len()` and `b.len() % 16 == 0`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_lanes_x4(rows: &[f32], b: &[f32]) -> [f32; 4] {
        let dim = b.len();
        let mut lo = [_mm256_setzero_ps(); 4];
        let mut hi = [_mm256_setzero_ps(); 4];
        for c in 0..dim / 16 {
            // SAFETY: 16c + 16 <= dim, inside `b` and inside each row (checked by the caller).
            unsafe {
                let b_lo = _mm256_loadu_ps(b.as_ptr().add(16 * c));
                let b_hi = _mm256_loadu_ps(b.as_ptr().add(16 * c + 8));
                for j in 0..4 {
                    let r = rows.as_ptr().add(j * dim + 16 * c);
                    lo[j] = _mm256_fmadd_ps(_mm256_loadu_ps(r), b_lo, lo[j]);
                    hi[j] = _mm256_fmadd_ps(_mm256_loadu_ps(r.add(8)), b_hi, hi[j]);
                }
            }
        }
        let mut out = [0.0f32; 4];
        for j in 0..4 {
            let h = _mm256_add_ps(lo[j], hi[j]);
            let q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
            let pairs = _mm_add_ps(q, _mm_movehl_ps(q, q));
            out[j] = _mm_cvtss_f32(_mm_add_ss(pairs, _mm_movehdup_ps(pairs)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reductions_sum_every_lane_once() {
        let a: [f32; 16] = std::array::from_fn(|i| (1 << i) as f32);
        assert_eq!(reduce16(a), 65535.0);
        let r: [[f32; 16]; 4] =
            std::array::from_fn(|j| std::array::from_fn(|l| (j * 16 + l) as f32));
        assert_eq!(reduce_steps(r), (0..64).sum::<i32>() as f64);
        let x: Vec<f32> = (0..96).map(|i| i as f32 * 0.5).collect();
        let exact: f32 = x.iter().map(|v| v * v).sum();
        assert_eq!(dot_steps(&x, &x), exact);
        assert_eq!(dot_lanes(&x, &x), exact);
    }

    #[test]
    fn softmax_sums_to_one_and_masks_nothing_it_is_given() {
        let mut x: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin() * 4.0).collect();
        softmax_chunked(&mut x, 5);
        let sum: f32 = x.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "{sum}");
        assert!(x.iter().all(|&v| v > 0.0));
    }
}
