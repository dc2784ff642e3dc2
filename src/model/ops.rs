//! The element-wise and per-head operations of the forward pass.

use super::config::{RopeStyle, MAX_HEAD_DIM};
use super::kv_cache::{HeadRows, KvCache};

/// `1 / rms(x)`, with rms(x) = sqrt(mean(x²) + eps), evaluated as ggml does: squares in f32,
/// summed in f64, the mean rounded to f32.
#[inline]
fn inv_rms(x: &[f32], eps: f32) -> f32 {
    let sum_sq: f64 = x.iter().map(|&v| f64::from(v * v)).sum();
    let mean = (sum_sq / x.len() as f64) as f32;
    1.0 / (mean + eps).sqrt()
}

/// `out = x / rms(x) * weight`.
#[inline]
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let scale = inv_rms(x, eps);
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
        *o = v * scale * w;
    }
}

/// [`rms_norm`] in place.
#[inline]
pub fn rms_norm_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    let scale = inv_rms(x, eps);
    for (v, &w) in x.iter_mut().zip(weight) {
        *v = *v * scale * w;
    }
}

/// SiLU, `x · σ(x)`.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// GELU with the tanh approximation as llama.cpp evaluates it: through a table indexed by the
/// input rounded to f16, holding f16 results (0 below -10, identity above 10). Matching its
/// rounding keeps our logits within the reference tolerances, and the table is faster than tanh.
#[inline]
pub fn gelu_tanh_f16_table(x: f32) -> f32 {
    static TABLE: std::sync::OnceLock<Box<[half::f16]>> = std::sync::OnceLock::new();
    if x <= -10.0 {
        return 0.0;
    }
    if x >= 10.0 {
        return x;
    }
    let table = TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|bits| half::f16::from_f32(gelu_tanh(half::f16::from_bits(bits).to_f32())))
            .collect()
    });
    table[usize::from(half::f16::from_f32(x).to_bits())].to_f32()
}

/// GELU with the tanh approximation, as Gemma was trained with.
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const COEF: f32 = 0.044_715;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + COEF * x * x)).tanh())
}

/// The inverse frequencies of RoPE: θ_i = pos · inv_freq[i] for the i-th rotated pair.
/// `inv_freq[i] = scale · base^(-2i/dims) / factor[i]`.
pub fn rope_inv_freq(base: f32, scale: f32, dims: usize, factors: Option<&[f32]>) -> Vec<f32> {
    (0..dims / 2)
        .map(|i| {
            let f = f64::from(scale) * f64::from(base).powf(-2.0 * i as f64 / dims as f64);
            let factor = factors.and_then(|ff| ff.get(i)).copied().unwrap_or(1.0);
            (f / f64::from(factor)) as f32
        })
        .collect()
}

/// Fills `cos`/`sin` (each `dims/2` long) with the rotation of position `pos`.
#[inline]
pub fn rope_angles(pos: usize, inv_freq: &[f32], cos: &mut [f32], sin: &mut [f32]) {
    for ((c, s), &f) in cos.iter_mut().zip(sin.iter_mut()).zip(inv_freq) {
        let theta = pos as f32 * f;
        *c = theta.cos();
        *s = theta.sin();
    }
}

/// Rotates the first `2 · cos.len()` dimensions of one head in place.
#[inline]
pub fn rope_head(head: &mut [f32], cos: &[f32], sin: &[f32], style: RopeStyle) {
    let half = cos.len();
    match style {
        RopeStyle::Normal => {
            for i in 0..half {
                let (a, b) = (head[2 * i], head[2 * i + 1]);
                head[2 * i] = a * cos[i] - b * sin[i];
                head[2 * i + 1] = a * sin[i] + b * cos[i];
            }
        }
        RopeStyle::Neox => {
            for i in 0..half {
                let (a, b) = (head[i], head[i + half]);
                head[i] = a * cos[i] - b * sin[i];
                head[i + half] = a * sin[i] + b * cos[i];
            }
        }
    }
}

/// How attention rounds its intermediate values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionPrecision {
    /// Everything in f32.
    F32,
    /// As a half-precision cache implies and llama.cpp computes it: the query is rounded to f16
    /// before it is dotted with the f16 keys, and the softmax weights are rounded to f16 before
    /// they weight the f16 values (products and sums in f32).
    F16,
}

thread_local! {
    /// Per-thread attention scores, grown to the longest context seen; no allocation per token.
    static SCORES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One query head attending over cached positions `first..=last` of `layer`:
/// `out = Σ_j softmax_j(scale · q·k_j) · v_j`.
#[allow(clippy::too_many_arguments)]
pub fn attend_head(
    q: &[f32],
    kv: &KvCache,
    layer: usize,
    kv_head: usize,
    first: usize,
    last: usize,
    scale: f32,
    precision: AttentionPrecision,
    out: &mut [f32],
) {
    SCORES.with_borrow_mut(|weights| {
        let n = last + 1 - first;
        if weights.len() < n {
            weights.resize(n, 0.0);
        }
        let weights = &mut weights[..n];
        attention_weights(
            q, kv, layer, kv_head, first, last, scale, precision, weights,
        );
        out.fill(0.0);
        let dim = out.len();
        match kv.value_rows(layer, kv_head) {
            HeadRows::F32 { data, stride } => {
                for (&w, pos) in weights.iter().zip(first..=last) {
                    axpy(w, &data[pos * stride..][..dim], out);
                }
            }
            HeadRows::F16 { data, stride } => {
                let f16c = has_f16c();
                for (&w, pos) in weights.iter().zip(first..=last) {
                    axpy_f16(w, &data[pos * stride..][..dim], out, f16c);
                }
            }
        }
    });
}

/// The attention weights (softmax of scaled scores) of one query head over `first..=last`,
/// written to `weights` (one per position).
#[allow(clippy::too_many_arguments)]
pub fn attention_weights(
    q: &[f32],
    kv: &KvCache,
    layer: usize,
    kv_head: usize,
    first: usize,
    last: usize,
    scale: f32,
    precision: AttentionPrecision,
    weights: &mut [f32],
) {
    let mut query = [0.0f32; MAX_HEAD_DIM];
    let query = &mut query[..q.len()];
    query.copy_from_slice(q);
    if precision == AttentionPrecision::F16 {
        round_to_f16(query);
    }
    let dim = q.len();
    match kv.key_rows(layer, kv_head) {
        HeadRows::F32 { data, stride } => {
            for (w, pos) in weights.iter_mut().zip(first..=last) {
                *w = scale * dot(query, &data[pos * stride..][..dim]);
            }
        }
        HeadRows::F16 { data, stride } => {
            let f16c = has_f16c();
            for (w, pos) in weights.iter_mut().zip(first..=last) {
                *w = scale * dot_f16(query, &data[pos * stride..][..dim], f16c);
            }
        }
    }
    softmax_in_place(weights);
    if precision == AttentionPrecision::F16 {
        round_to_f16(weights);
    }
}

/// Rounds every value to the nearest f16 (ties to even) and back.
fn round_to_f16(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = half::f16::from_f32(*v).to_f32();
    }
}

/// Numerically stable softmax (the sum accumulated in f64, as ggml does).
pub fn softmax_in_place(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += f64::from(*v);
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// Dot product with four independent accumulators (lets the compiler vectorize).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        for l in 0..8 {
            acc[l] += a[c * 8 + l] * b[c * 8 + l];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in chunks * 8..a.len() {
        sum += a[i] * b[i];
    }
    sum
}

/// Whether the CPU converts f16 in hardware (F16C); std caches the answer, so this is one load.
#[inline]
fn has_f16c() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx") && std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// [`dot`] of `a` with f16 values `b`, each widened to f32: the same products summed in the
/// same order (eight lanes, then the lanes in turn, then the tail), so the same result.
/// `f16c` must be [`has_f16c`].
#[inline]
fn dot_f16(a: &[f32], b: &[half::f16], f16c: bool) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if f16c {
        // SAFETY: `f16c` says the CPU has AVX and F16C.
        return unsafe { x86::dot_f16(a, b) };
    }
    let mut wide = [0.0f32; MAX_HEAD_DIM];
    let wide = &mut wide[..b.len()];
    for (w, &h) in wide.iter_mut().zip(b) {
        *w = h.to_f32();
    }
    dot(a, wide)
}

/// `out += w · v`, element by element (a product then a sum, not fused).
#[inline]
fn axpy(w: f32, v: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(v) {
        *o += w * v;
    }
}

/// [`axpy`] with f16 values widened to f32; `f16c` must be [`has_f16c`].
#[inline]
fn axpy_f16(w: f32, v: &[half::f16], out: &mut [f32], f16c: bool) {
    #[cfg(target_arch = "x86_64")]
    if f16c {
        // SAFETY: `f16c` says the CPU has AVX and F16C.
        return unsafe { x86::axpy_f16(w, v, out) };
    }
    for (o, &v) in out.iter_mut().zip(v) {
        *o += w * v.to_f32();
    }
}

/// F16C twins of [`dot_f16`] and [`axpy_f16`] (same operations, same order, same results).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must have AVX and F16C.
    #[target_feature(enable = "avx,f16c")]
    pub(super) unsafe fn dot_f16(a: &[f32], b: &[half::f16]) -> f32 {
        let n = a.len().min(b.len());
        let chunks = n / 8;
        let mut acc = _mm256_setzero_ps();
        for c in 0..chunks {
            // SAFETY: `c * 8 + 8 <= n`, inside both slices; unaligned loads.
            let (x, y) = unsafe {
                (
                    _mm256_loadu_ps(a.as_ptr().add(c * 8)),
                    _mm256_cvtph_ps(_mm_loadu_si128(b.as_ptr().add(c * 8).cast())),
                )
            };
            acc = _mm256_add_ps(acc, _mm256_mul_ps(x, y));
        }
        let mut lanes = [0.0f32; 8];
        // SAFETY: `lanes` holds 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
        let mut sum: f32 = lanes.iter().sum();
        for i in chunks * 8..n {
            sum += a[i] * b[i].to_f32();
        }
        sum
    }

    /// # Safety
    /// The CPU must have AVX and F16C.
    #[target_feature(enable = "avx,f16c")]
    pub(super) unsafe fn axpy_f16(w: f32, v: &[half::f16], out: &mut [f32]) {
        let n = out.len().min(v.len());
        let wv = _mm256_set1_ps(w);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: `i + 8 <= n`, inside both slices; unaligned loads and store.
            unsafe {
                let y = _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr().add(i).cast()));
                let o = out.as_mut_ptr().add(i);
                _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), _mm256_mul_ps(wv, y)));
            }
            i += 8;
        }
        for j in i..n {
            out[j] += w * v[j].to_f32();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_rotation_preserves_norm_and_position_zero_is_identity() {
        let inv = rope_inv_freq(10_000.0, 1.0, 8, None);
        let mut cos = [0.0; 4];
        let mut sin = [0.0; 4];
        for style in [RopeStyle::Normal, RopeStyle::Neox] {
            let orig: Vec<f32> = (0..8).map(|i| i as f32 - 3.5).collect();
            let mut h = orig.clone();
            rope_angles(0, &inv, &mut cos, &mut sin);
            rope_head(&mut h, &cos, &sin, style);
            assert_eq!(h, orig);
            rope_angles(17, &inv, &mut cos, &mut sin);
            rope_head(&mut h, &cos, &sin, style);
            let n0: f32 = orig.iter().map(|v| v * v).sum();
            let n1: f32 = h.iter().map(|v| v * v).sum();
            assert!((n0 - n1).abs() < 1e-4 * n0);
        }
    }

    #[test]
    fn gelu_and_silu_match_their_definitions() {
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
        assert!((gelu_tanh(1.0) - 0.841_192).abs() < 1e-5);
        assert_eq!(gelu_tanh(0.0), 0.0);
    }
}
