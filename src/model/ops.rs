//! The element-wise and per-head operations of the forward pass.

use super::config::RopeStyle;
use crate::quant::Simd;

/// `1 / rms(x)`, with rms(x) = sqrt(mean(x²) + eps), evaluated as ggml does: squares in f32,
/// summed in f64, the mean rounded to f32.
#[inline]
fn inv_rms(x: &[f32], eps: f32) -> f32 {
    let sum_sq: f64 = x.iter().map(|&v| f64::from(v * v)).sum();
    inv_rms_of_sum(sum_sq, x.len(), eps)
}

#[inline(always)]
fn inv_rms_of_sum(sum_sq: f64, len: usize, eps: f32) -> f32 {
    let mean = (sum_sq / len as f64) as f32;
    1.0 / (mean + eps).sqrt()
}

/// Rows whose sums [`group_inv_rms`] runs side by side.
const NORM_ROWS: usize = 8;

/// [`inv_rms`] of each `width`-wide row of `group` (at most [`NORM_ROWS`] rows; the rest of the
/// result is unused). Each row's sum is the same chain of f64 additions in the same order, so
/// every result is `inv_rms`'s bit for bit; but with a whole group the chains run side by side
/// and the CPU overlaps their additions instead of waiting out each one's latency (alone, the
/// normalizations of a prompt were a few percent of it).
#[inline]
fn group_inv_rms(group: &[f32], width: usize, eps: f32) -> [f32; NORM_ROWS] {
    let mut scales = [0.0f32; NORM_ROWS];
    if group.len() == NORM_ROWS * width {
        let rows: [&[f32]; NORM_ROWS] = std::array::from_fn(|k| &group[k * width..][..width]);
        let mut sums = [0.0f64; NORM_ROWS];
        for i in 0..width {
            for (sum, row) in sums.iter_mut().zip(&rows) {
                *sum += f64::from(row[i] * row[i]);
            }
        }
        for (scale, sum) in scales.iter_mut().zip(sums) {
            *scale = inv_rms_of_sum(sum, width, eps);
        }
    } else {
        for (scale, row) in scales.iter_mut().zip(group.chunks_exact(width)) {
            *scale = inv_rms(row, eps);
        }
    }
    scales
}

/// [`rms_norm`] of every `weight.len()`-wide row of `x` into the same row of `out`, equal to it
/// bit for bit.
pub fn rms_norm_rows(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let width = weight.len();
    if width == 0 {
        return;
    }
    let group = NORM_ROWS * width;
    for (xg, og) in x.chunks(group).zip(out.chunks_mut(group)) {
        let scales = group_inv_rms(xg, width, eps);
        for ((xr, or), scale) in xg
            .chunks_exact(width)
            .zip(og.chunks_exact_mut(width))
            .zip(scales)
        {
            for ((o, &v), &w) in or.iter_mut().zip(xr).zip(weight) {
                *o = v * scale * w;
            }
        }
    }
}

/// [`rms_norm_in_place`] of every `weight.len()`-wide row of `x`, equal to it bit for bit.
pub fn rms_norm_rows_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    let width = weight.len();
    if width == 0 {
        return;
    }
    for group in x.chunks_mut(NORM_ROWS * width) {
        let scales = group_inv_rms(group, width, eps);
        for (row, scale) in group.chunks_exact_mut(width).zip(scales) {
            for (v, &w) in row.iter_mut().zip(weight) {
                *v = *v * scale * w;
            }
        }
    }
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

/// SiLU, `x · σ(x) = x / (1 + e^−x)`, with e^−x from [`vexp`] (llama.cpp's vector SiLU).
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + vexp(0.0 - x))
}

/// Whether level `simd` runs the copies of the hot element-wise loops compiled with hardware
/// fused multiply-add (AVX2, FMA and F16C, which both x86 levels include and this CPU has),
/// instead of the plain ones that call `fmaf`. The results are the same bits either way.
#[inline]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn has_fma(simd: Simd) -> bool {
    matches!(simd.or_supported(), Simd::Avx2 | Simd::Avx512)
}

/// SiLU of the gate times the up projection, element by element, as llama.cpp's SwiGLU kernel
/// computes it: [`silu`] on whole 16-element groups, then for the remainder the C library's
/// `expf` in place of [`vexp`].
pub fn swiglu(simd: Simd, gate: &mut [f32], up: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_fma(simd) {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked above).
        return unsafe { swiglu_fma(gate, up) };
    }
    swiglu_any(gate, up)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn swiglu_fma(gate: &mut [f32], up: &[f32]) {
    swiglu_any(gate, up)
}

#[inline(always)]
fn swiglu_any(gate: &mut [f32], up: &[f32]) {
    let vector = gate.len() / 16 * 16;
    for (g, &u) in gate[..vector].iter_mut().zip(&up[..vector]) {
        *g = silu(*g) * u;
    }
    for (g, &u) in gate[vector..].iter_mut().zip(&up[vector..]) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// `e^x` as llama.cpp's AVX-512 vector code computes it (`ggml_v_expf`, after ARM's optimized
/// routines): `x = n·ln2 + b` with `n = round(x·log2 e)` and `ln2` split in two parts, a degree-5
/// polynomial in `b`, scaled by `2^n` with one rounding; 0 below `n = -192`, ∞ above 192.
/// Softmax and SiLU use it, so their results are llama.cpp's to the bit. Maximum error about
/// 1.5 ulp.
#[inline(always)]
pub fn vexp(x: f32) -> f32 {
    let c = |bits: u32| f32::from_bits(bits);
    let shift = c(0x4b40_0000); // 0x1.8p23: adding it rounds to an integer
    let z = x.mul_add(c(0x3fb8_aa3b), shift); // x · log2(e) + shift
    let n = z - shift;
    let b = (-n).mul_add(c(0x35bf_be8e), (-n).mul_add(c(0x3f31_7200), x));
    let u = b * b;
    let j = c(0x3c07_2010)
        .mul_add(b, c(0x3d2b_9f17))
        .mul_add(u, c(0x3e2a_af33).mul_add(b, c(0x3eff_fedb)))
        .mul_add(u, c(0x3f7f_fff6).mul_add(b, 1.0));
    // j · 2^n with a single rounding: the f64 product is exact, and 2^n (n an integer in ±192)
    // is built from its exponent bits. Branch-free (selects), so loops over it vectorize.
    let out_of_range = n.abs() > 192.0;
    let n_in_range = if out_of_range { 0.0 } else { n };
    let pow2 = f64::from_bits(((n_in_range as i64 + 1023) as u64) << 52);
    let scaled = (f64::from(j) * pow2) as f32;
    let saturated = if n > 0.0 { f32::INFINITY } else { 0.0 };
    if out_of_range {
        saturated
    } else {
        scaled
    }
}

/// LayerNorm of every `weight.len()`-wide row of `x` into `out`, as ggml's `norm` then its `mul`
/// and `add` compute it: the mean from an f64 sum rounded to f32 and divided in f32; the
/// centred values and their squares in 16-element steps, each step's squares reduced as a 512-bit
/// register is and the rest added one by one, all in f64, divided by the width and rounded to
/// f32; `1 / sqrt(variance + eps)` times each centred value, times the weight, plus the bias.
pub fn layer_norm_rows(x: &[f32], weight: &[f32], bias: Option<&[f32]>, eps: f32, out: &mut [f32]) {
    const LANES: usize = 16;
    let width = weight.len();
    if width == 0 {
        return;
    }
    for (xr, or) in x.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
        let sum = xr.iter().map(|&v| f64::from(v)).sum::<f64>() as f32;
        let mean = sum / width as f32;
        let mut sum_sq = 0.0f64;
        let mut steps = xr.chunks_exact(LANES).zip(or.chunks_exact_mut(LANES));
        for (xs, os) in &mut steps {
            let mut squares = [0.0f32; LANES];
            for ((o, &v), sq) in os.iter_mut().zip(xs).zip(squares.iter_mut()) {
                *o = v - mean;
                *sq = *o * *o;
            }
            sum_sq += f64::from(super::attention::reduce16(squares));
        }
        let done = width / LANES * LANES;
        for (o, &v) in or[done..].iter_mut().zip(&xr[done..]) {
            *o = v - mean;
            sum_sq += f64::from(*o * *o);
        }
        let variance = (sum_sq / width as f64) as f32;
        let scale = 1.0 / (variance + eps).sqrt();
        for (o, &w) in or.iter_mut().zip(weight) {
            *o = *o * scale * w;
        }
        if let Some(bias) = bias {
            or.iter_mut().zip(bias).for_each(|(o, b)| *o += b);
        }
    }
}

/// `x = GELU(x)` element by element, GELU as [`gelu_tanh_f16_table`] (ggml's `gelu`).
pub fn gelu_in_place(x: &mut [f32]) {
    let table = gelu_table();
    x.iter_mut().for_each(|v| *v = gelu_lookup(table, *v));
}

/// Entries of the GELU table: one per f16 bit pattern.
const GELU_TABLE_LEN: usize = 1 << 16;

/// GELU with the tanh approximation as llama.cpp evaluates it: through a table indexed by the
/// input rounded to f16, holding f16 results (0 below -10, identity above 10). Matching its
/// rounding keeps our logits within the reference tolerances, and the table is faster than tanh.
#[inline]
pub fn gelu_tanh_f16_table(x: f32) -> f32 {
    gelu_lookup(gelu_table(), x)
}

/// The table of [`gelu_tanh_f16_table`]: entry `i` is [`gelu_tanh`] of the f16 with bits `i`,
/// rounded to f16. Built on first use.
fn gelu_table() -> &'static [half::f16; GELU_TABLE_LEN] {
    static TABLE: std::sync::OnceLock<Box<[half::f16; GELU_TABLE_LEN]>> =
        std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = Box::new([half::f16::ZERO; GELU_TABLE_LEN]);
        for (bits, entry) in (0..=u16::MAX).zip(table.iter_mut()) {
            *entry = half::f16::from_f32(gelu_tanh(half::f16::from_bits(bits).to_f32()));
        }
        table
    })
}

#[inline(always)]
fn gelu_lookup(table: &[half::f16; GELU_TABLE_LEN], x: f32) -> f32 {
    if x <= -10.0 {
        return 0.0;
    }
    if x >= 10.0 {
        return x;
    }
    table[usize::from(half::f16::from_f32(x).to_bits())].to_f32()
}

/// GeGLU: `gate = GELU(gate) · up` element by element, GELU as [`gelu_tanh_f16_table`]. On x86
/// the f16 roundings of eight inputs and of their eight table entries are one F16C instruction
/// each (the same round-to-nearest-even conversions `half` makes one value at a time), so the
/// result is [`geglu_any`]'s bit for bit.
pub fn geglu(simd: Simd, gate: &mut [f32], up: &[f32]) {
    let table = gelu_table();
    #[cfg(target_arch = "x86_64")]
    if has_fma(simd) {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked above).
        return unsafe { geglu_f16c(table, gate, up) };
    }
    geglu_any(table, gate, up)
}

/// The plain-Rust twin of [`geglu_f16c`].
fn geglu_any(table: &[half::f16; GELU_TABLE_LEN], gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = gelu_lookup(table, *g) * u;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn geglu_f16c(table: &[half::f16; GELU_TABLE_LEN], gate: &mut [f32], up: &[f32]) {
    use std::arch::x86_64::*;
    const LANES: usize = 8;
    let n = gate.len().min(up.len());
    let vector = n / LANES * LANES;
    let (low, high) = (_mm256_set1_ps(-10.0), _mm256_set1_ps(10.0));
    for i in (0..vector).step_by(LANES) {
        // SAFETY: `i + LANES <= vector <= n`, inside both slices.
        let (x, u) = unsafe {
            (
                _mm256_loadu_ps(gate.as_ptr().add(i)),
                _mm256_loadu_ps(up.as_ptr().add(i)),
            )
        };
        let mut index = [0u16; LANES];
        // SAFETY: `index` is 16 bytes.
        unsafe {
            _mm_storeu_si128(
                index.as_mut_ptr().cast(),
                _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x),
            )
        };
        let entries = index.map(|i| table[usize::from(i)].to_bits());
        // SAFETY: `entries` is 16 bytes.
        let looked_up = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(entries.as_ptr().cast()) });
        // Above 10 the input itself, at or below -10 zero (NaN compares false: the table's).
        let y = _mm256_blendv_ps(looked_up, x, _mm256_cmp_ps::<_CMP_GE_OQ>(x, high));
        let y = _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(x, low), y);
        // SAFETY: as for the loads.
        unsafe { _mm256_storeu_ps(gate.as_mut_ptr().add(i), _mm256_mul_ps(y, u)) };
    }
    geglu_any(table, &mut gate[vector..n], &up[vector..n]);
}

/// GELU with the tanh approximation, as Gemma was trained with, evaluated as llama.cpp's
/// compiled `ggml_gelu_f32` does (the `1 + a·x²` term fused), so that [`gelu_tanh_f16_table`]
/// holds llama.cpp's table entry for entry.
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const COEF: f32 = 0.044_715;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (COEF * x).mul_add(x, 1.0)).tanh())
}

/// The rotation angles of RoPE, computed as llama.cpp computes them so that the rotated keys
/// and queries are its values to the bit: pair `i` of position `p` turns by
/// `θ_i = freq_scale · p · s^i / factor_i` with `s = base^(-2/dims)` in f32, the powers taken by
/// repeated multiplication (`θ_{i+1} = θ_i · s`), and its cos and sin from the C library.
#[derive(Debug, Clone)]
pub struct RopeFrequencies {
    theta_scale: f32,
    freq_scale: f32,
    /// Per-pair divisors (`rope_freqs.weight`), when the model has them.
    factors: Option<Vec<f32>>,
    /// YaRN's first and last blended dimension pair, when it applies.
    yarn_dims: Option<[f32; 2]>,
    /// The factor of every cos and sin.
    mscale: f32,
}

impl RopeFrequencies {
    /// The rotation of `rope` over `dims` rotated dimensions with optional per-pair `factors`.
    pub fn new(rope: &super::config::Rope, dims: usize, factors: Option<&[f32]>) -> Self {
        RopeFrequencies {
            theta_scale: rope.freq_base.powf(-2.0 / dims as f32),
            freq_scale: rope.freq_scale,
            factors: factors.map(<[f32]>::to_vec),
            yarn_dims: rope
                .yarn
                .map(|y| yarn_corr_dims(dims, y.n_ctx_orig, rope.freq_base, y)),
            mscale: rope.mscale,
        }
    }

    /// Fills `cos`/`sin` (each `dims/2` long) with the rotation of position `pos`, as ggml's
    /// rope cache computes it: per pair `i`, the extrapolated angle `θ_i / factor`, its
    /// interpolation `freq_scale · θ`, with YaRN blended by a ramp over the pairs between its
    /// bounds (`interp · (1 − mix) + extrap · mix`, contracted to one fused multiply-add as the
    /// C++ is compiled) and its magnitude corrected by `1 + 0.1 · ln(1 / freq_scale)`; cos and
    /// sin times `mscale`.
    pub fn angles(&self, pos: usize, cos: &mut [f32], sin: &mut [f32]) {
        let mut theta = pos as f32;
        for (i, (c, s)) in cos.iter_mut().zip(sin.iter_mut()).enumerate() {
            let factor = self
                .factors
                .as_ref()
                .and_then(|f| f.get(i))
                .copied()
                .unwrap_or(1.0);
            let extrapolated = theta / factor;
            let interpolated = self.freq_scale * extrapolated;
            let (angle, mscale) = match self.yarn_dims {
                None => (interpolated, self.mscale),
                Some([low, high]) => {
                    let y = (i as f32 - low) / (high - low).max(0.001);
                    let mix = 1.0 - y.clamp(0.0, 1.0);
                    let angle = interpolated.mul_add(1.0 - mix, extrapolated * mix);
                    let correction = 0.1f32.mul_add((1.0 / self.freq_scale).ln(), 1.0);
                    (angle, self.mscale * correction)
                }
            };
            *c = angle.cos() * mscale;
            *s = angle.sin() * mscale;
            theta *= self.theta_scale;
        }
    }
}

/// YaRN's bounds (ggml's `rope_yarn_corr_dims`): the dimension pairs that make `beta_fast` and
/// `beta_slow` rotations over the original context, rounded out and clamped to the head.
fn yarn_corr_dims(dims: usize, n_ctx_orig: usize, base: f32, y: super::config::Yarn) -> [f32; 2] {
    let corr = |rotations: f32| {
        let n = dims as f32;
        n * (n_ctx_orig as f32 / (rotations * 2.0 * std::f32::consts::PI)).ln() / (2.0 * base.ln())
    };
    let start = corr(y.beta_fast).floor();
    let end = corr(y.beta_slow).ceil();
    [start.max(0.0), end.min(dims as f32 - 1.0)]
}

/// Rotates every `head_dim`-wide head of `heads` in place by [`rope_head`].
pub fn rope_heads(
    simd: Simd,
    heads: &mut [f32],
    head_dim: usize,
    cos: &[f32],
    sin: &[f32],
    style: RopeStyle,
) {
    #[cfg(target_arch = "x86_64")]
    if has_fma(simd) {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked above).
        return unsafe { rope_heads_fma(heads, head_dim, cos, sin, style) };
    }
    rope_heads_any(heads, head_dim, cos, sin, style)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rope_heads_fma(
    heads: &mut [f32],
    head_dim: usize,
    cos: &[f32],
    sin: &[f32],
    style: RopeStyle,
) {
    rope_heads_any(heads, head_dim, cos, sin, style)
}

#[inline(always)]
fn rope_heads_any(heads: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32], style: RopeStyle) {
    for head in heads.chunks_exact_mut(head_dim) {
        rope_head(head, cos, sin, style);
    }
}

/// Rotates the first `2 · cos.len()` dimensions of one head in place. Each output is one fused
/// multiply-add over a rounded product (`x0·cos − x1·sin` as `fma(x0, cos, −(x1·sin))`), which is
/// what llama.cpp's compiled rotation computes.
#[inline(always)]
pub fn rope_head(head: &mut [f32], cos: &[f32], sin: &[f32], style: RopeStyle) {
    let half = cos.len();
    let rotate = |a: f32, b: f32, c: f32, s: f32| (a.mul_add(c, -(b * s)), a.mul_add(s, b * c));
    match style {
        RopeStyle::Normal => {
            for i in 0..half {
                let (a, b) = rotate(head[2 * i], head[2 * i + 1], cos[i], sin[i]);
                head[2 * i] = a;
                head[2 * i + 1] = b;
            }
        }
        RopeStyle::Neox => {
            for i in 0..half {
                let (a, b) = rotate(head[i], head[i + half], cos[i], sin[i]);
                head[i] = a;
                head[i + half] = b;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    #[test]
    fn rope_rotation_preserves_norm_and_position_zero_is_identity() {
        let rope = RopeFrequencies::new(
            &super::super::config::Rope {
                freq_base: 10_000.0,
                freq_scale: 1.0,
                yarn: None,
                mscale: 1.0,
            },
            8,
            None,
        );
        let mut cos = [0.0; 4];
        let mut sin = [0.0; 4];
        for style in [RopeStyle::Normal, RopeStyle::Neox] {
            let orig: Vec<f32> = (0..8).map(|i| i as f32 - 3.5).collect();
            let mut h = orig.clone();
            rope.angles(0, &mut cos, &mut sin);
            rope_head(&mut h, &cos, &sin, style);
            assert_eq!(h, orig);
            rope.angles(17, &mut cos, &mut sin);
            rope_head(&mut h, &cos, &sin, style);
            let n0: f32 = orig.iter().map(|v| v * v).sum();
            let n1: f32 = h.iter().map(|v| v * v).sum();
            assert!((n0 - n1).abs() < 1e-4 * n0);
        }
    }

    #[test]
    fn vexp_is_within_two_ulp_of_exp() {
        for i in -2000..=2000 {
            let x = i as f32 * 0.0437;
            let (ours, exact) = (vexp(x), f64::from(x).exp());
            let ulp = f64::from(f32::EPSILON) * exact;
            assert!(
                (f64::from(ours) - exact).abs() <= 2.0 * ulp,
                "{x}: {ours} vs {exact}"
            );
        }
        assert_eq!(vexp(f32::NEG_INFINITY), 0.0);
        assert_eq!(vexp(-200.0), 0.0);
        assert_eq!(vexp(200.0), f32::INFINITY);
    }

    proptest::proptest! {
        #[test]
        fn row_norms_match_one_row_at_a_time_bit_for_bit(
            (width, x) in (1usize..40).prop_flat_map(|w| (
                proptest::strategy::Just(w),
                proptest::collection::vec(
                    proptest::prop_oneof![
                        8 => -100.0f32..100.0,
                        1 => proptest::prelude::any::<u32>().prop_map(f32::from_bits),
                    ],
                    0..20 * w,
                ),
            )),
            weight_seed in -2.0f32..2.0,
        ) {
            let x = &x[..x.len() / width * width];
            let weight: Vec<f32> = (0..width).map(|i| weight_seed + i as f32 * 0.25).collect();
            let eps = 1e-6;
            let mut want = vec![0.0f32; x.len()];
            for (xr, wr) in x.chunks_exact(width).zip(want.chunks_exact_mut(width)) {
                rms_norm(xr, &weight, eps, wr);
            }
            let mut got = vec![0.0f32; x.len()];
            rms_norm_rows(x, &weight, eps, &mut got);
            let mut in_place = x.to_vec();
            rms_norm_rows_in_place(&mut in_place, &weight, eps);
            let mut one_by_one = x.to_vec();
            one_by_one.chunks_exact_mut(width).for_each(|r| rms_norm_in_place(r, &weight, eps));
            // Bit for bit, except that any NaN equals any NaN: Rust leaves NaN payloads
            // unspecified, and LLVM may swap the operands of a multiply (which picks the payload).
            let same = |a: f32, b: f32| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
            for i in 0..x.len() {
                proptest::prop_assert!(same(got[i], want[i]), "element {}: {} vs {}", i, got[i], want[i]);
                proptest::prop_assert!(
                    same(in_place[i], one_by_one[i]),
                    "element {}: {} vs {}", i, in_place[i], one_by_one[i]
                );
            }
        }

        #[test]
        fn geglu_matches_its_twin_bit_for_bit(
            gate in proptest::collection::vec(
                proptest::prop_oneof![
                    4 => -12.0f32..12.0,
                    1 => proptest::sample::select(vec![
                        -10.0f32, 10.0, -0.0, 0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN,
                        65504.0, 65520.0, -65520.0, 1e-8, -1e-8,
                    ]),
                    1 => proptest::prelude::any::<u32>().prop_map(f32::from_bits),
                ],
                0..70,
            ),
            up in proptest::collection::vec(-1e4f32..1e4, 70),
        ) {
            let up = &up[..gate.len()];
            let mut want = gate.clone();
            geglu_any(gelu_table(), &mut want, up);
            for simd in Simd::all_supported() {
                let mut got = gate.clone();
                geglu(simd, &mut got, up);
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    proptest::prop_assert_eq!(
                        g.to_bits(), w.to_bits(), "{}: element {} of {:?}", simd.name(), i, gate[i]
                    );
                }
            }
            for ((w, &x), &u) in want.iter().zip(&gate).zip(up) {
                let single = gelu_tanh_f16_table(x) * u;
                proptest::prop_assert_eq!(w.to_bits(), single.to_bits());
            }
        }
    }

    #[test]
    fn gelu_and_silu_match_their_definitions() {
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
        assert!((gelu_tanh(1.0) - 0.841_192).abs() < 1e-5);
        assert_eq!(gelu_tanh(0.0), 0.0);
    }
}
