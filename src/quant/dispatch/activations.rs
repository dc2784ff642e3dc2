//! Safe entry points of the 32-element activation quantizers (Q8_0, Q8_1).

use crate::quant::activations::q8::{quantize_row_q8_0_scalar, quantize_row_q8_1_scalar};
use crate::quant::block::check_elements;
use crate::quant::formats::q8_0::BlockQ8_0;
use crate::quant::formats::q8_1::BlockQ8_1;
use crate::quant::simd::Simd;
#[cfg(target_arch = "x86_64")]
use crate::quant::x86::activations as x86;

/// Quantizes f32 activations to Q8_0 blocks (ggml `quantize_row_q8_0`).
///
/// # Panics
/// If `dst` is not exactly `x.len()` elements of whole Q8_0 blocks.
pub fn quantize_row_q8_0(x: &[f32], dst: &mut [u8], simd: Simd) {
    check_elements::<BlockQ8_0>(dst.len(), x.len());
    match simd.or_supported() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `or_supported` returned a level whose features (AVX2, FMA, F16C) this CPU has;
        // the lengths were checked above.
        Simd::Avx2 | Simd::Avx512 => unsafe { x86::quantize_q8_0(x, dst) },
        _ => quantize_row_q8_0_scalar(x, dst),
    }
}

/// Quantizes f32 activations to Q8_1 blocks (ggml `quantize_row_q8_1`).
///
/// # Panics
/// If `dst` is not exactly `x.len()` elements of whole Q8_1 blocks.
pub fn quantize_row_q8_1(x: &[f32], dst: &mut [u8], simd: Simd) {
    check_elements::<BlockQ8_1>(dst.len(), x.len());
    match simd.or_supported() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `or_supported` returned a level whose features (AVX2, FMA, F16C) this CPU has;
        // the lengths were checked above.
        Simd::Avx2 | Simd::Avx512 => unsafe { x86::quantize_q8_1(x, dst) },
        _ => quantize_row_q8_1_scalar(x, dst),
    }
}
