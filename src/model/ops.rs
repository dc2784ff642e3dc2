//! The element-wise and per-head operations of the forward pass.

use super::config::{RopeStyle, MAX_HEAD_DIM};
use super::kv_cache::KvCache;

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
        let mut value = [0.0f32; MAX_HEAD_DIM];
        let value = &mut value[..out.len()];
        out.fill(0.0);
        for (&w, pos) in weights.iter().zip(first..=last) {
            kv.value(layer, pos, kv_head, value);
            for (o, &v) in out.iter_mut().zip(value.iter()) {
                *o += w * v;
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
    let mut key = [0.0f32; MAX_HEAD_DIM];
    let key = &mut key[..q.len()];
    for (w, pos) in weights.iter_mut().zip(first..=last) {
        kv.key(layer, pos, kv_head, key);
        *w = scale * dot(query, key);
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
