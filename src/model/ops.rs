//! The element-wise and per-head operations of the forward pass.

use super::config::{RopeStyle, MAX_HEAD_DIM};
use super::kv_cache::KvCache;

/// `out = x / rms(x) * weight`, with rms(x) = sqrt(mean(x²) + eps). The mean is accumulated in
/// f64 as ggml does, so long rows lose no precision.
#[inline]
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let sum_sq: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    let mean = (sum_sq / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
        *o = v * scale * w;
    }
}

/// [`rms_norm`] in place.
#[inline]
pub fn rms_norm_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    let sum_sq: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    let mean = (sum_sq / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for (v, &w) in x.iter_mut().zip(weight) {
        *v = *v * scale * w;
    }
}

/// SiLU, `x · σ(x)`.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
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

/// One query head attending over cached positions `first..=last` of `layer`:
/// `out = Σ_j softmax_j(scale · q·k_j) · v_j`, computed in one streaming pass with a running
/// maximum (online softmax), so no score buffer is needed and long contexts stay cache-friendly.
#[allow(clippy::too_many_arguments)]
pub fn attend_head(
    q: &[f32],
    kv: &KvCache,
    layer: usize,
    kv_head: usize,
    first: usize,
    last: usize,
    scale: f32,
    out: &mut [f32],
) {
    let mut key = [0.0f32; MAX_HEAD_DIM];
    let mut value = [0.0f32; MAX_HEAD_DIM];
    let key = &mut key[..q.len()];
    let value = &mut value[..out.len()];
    out.fill(0.0);
    let mut max = f32::NEG_INFINITY;
    let mut denom = 0.0f32;
    for pos in first..=last {
        kv.key(layer, pos, kv_head, key);
        let score = scale * dot(q, key);
        kv.value(layer, pos, kv_head, value);
        if score > max {
            // Rescale what was accumulated under the old maximum.
            let correction = (max - score).exp();
            denom *= correction;
            for o in out.iter_mut() {
                *o *= correction;
            }
            max = score;
        }
        let weight = (score - max).exp();
        denom += weight;
        for (o, &v) in out.iter_mut().zip(value.iter()) {
            *o += weight * v;
        }
    }
    let inv = 1.0 / denom;
    for o in out.iter_mut() {
        *o *= inv;
    }
}

/// The attention weights (softmax of scaled scores) of one query head over `first..=last`,
/// written to `weights` (one per position). Used by the explain observer, not the hot path.
#[allow(clippy::too_many_arguments)]
pub fn attention_weights(
    q: &[f32],
    kv: &KvCache,
    layer: usize,
    kv_head: usize,
    first: usize,
    last: usize,
    scale: f32,
    weights: &mut [f32],
) {
    let mut key = [0.0f32; MAX_HEAD_DIM];
    let key = &mut key[..q.len()];
    for (w, pos) in weights.iter_mut().zip(first..=last) {
        kv.key(layer, pos, kv_head, key);
        *w = scale * dot(q, key);
    }
    softmax_in_place(weights);
}

/// Numerically stable softmax.
pub fn softmax_in_place(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
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
