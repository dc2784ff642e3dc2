//! The Q8_K activation quantizer (ggml `quantize_row_q8_K_ref`): per block, `max` is the value of
//! largest magnitude (first one on ties), `iscale = -127 / max`,
//! `q = min(127, round_half_even(iscale * x))`, `d = 1 / iscale`. (ggml keeps -127 rather than
//! -128 so that its IQ2 AVX kernels can negate quants freely; the clamp is then only a guard.)
//! An all-zero block gets `d = 0` and zero quants.
//!
//! Runs once per activation column of every K-quant matmul, a few percent of a prompt, so AVX2
//! and AVX-512 versions exist (`x86::q8_k`); they compute the same operations in the same order
//! as [`quantize_block`], their plain-Rust twin, and equal it bit for bit for every input (NaN,
//! infinities and subnormals included).

use crate::quant::formats::q8_k::BlockQ8K;
use crate::quant::types::QK_K;

/// ggml's `nearest_int` trick: adding 1.5 · 2^23 leaves the rounded integer in the low mantissa
/// bits (round half to even for |v| < 2^22, which holds here: |iscale · x| <= 127 up to
/// rounding). Done the same way in every version: `round_ties_even` is a libm call without
/// SSE4.1.
pub(crate) const ROUND_SHIFT: f32 = 12_582_912.0;
/// The mantissa bits the rounded integer lands in.
pub(crate) const MANTISSA: i32 = 0x007f_ffff;
/// The offset of zero in those bits (the 0.5 · 2^23 of the shift).
pub(crate) const ZERO_OFFSET: i32 = 0x0040_0000;

/// The plain-Rust twin of the SIMD versions (and the level used without them).
pub fn quantize_block(x: &[f32; QK_K], y: &mut BlockQ8K) {
    // Strictly greater: the first value of the largest magnitude wins, and NaN never does.
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax == 0.0 {
        y.d = 0.0f32.to_le_bytes();
        y.qs = [0; QK_K];
        y.bsums = [0; 32];
        return;
    }
    let iscale = -127.0f32 / max;
    for (q, &v) in y.qs.iter_mut().zip(x) {
        let shifted = iscale * v + ROUND_SHIFT;
        let rounded = (shifted.to_bits() as i32 & MANTISSA) - ZERO_OFFSET;
        // The clamp matters only for values that round to 128; `as i8` keeps the low byte
        // (the SIMD versions truncate the same way).
        *q = rounded.min(127) as i8;
    }
    for j in 0..QK_K / 16 {
        let s: i32 = y.qs[16 * j..16 * j + 16].iter().map(|&q| q as i32).sum();
        y.bsums[2 * j..2 * j + 2].copy_from_slice(&(s as i16).to_le_bytes());
    }
    y.d = (1.0f32 / iscale).to_le_bytes();
}
