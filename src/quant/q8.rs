//! Activation formats for 32-element blocks: Q8_0 (scale) and Q8_1 (scale and sum). (Placeholder.)

use super::Simd;

/// Quantizes f32 activations to Q8_0 blocks (ggml `quantize_row_q8_0`).
pub fn quantize_row_q8_0(_x: &[f32], _dst: &mut [u8], _simd: Simd) {
    todo!("q8_0 act")
}

/// Quantizes f32 activations to Q8_1 blocks (ggml `quantize_row_q8_1`).
pub fn quantize_row_q8_1(_x: &[f32], _dst: &mut [u8], _simd: Simd) {
    todo!("q8_1 act")
}
