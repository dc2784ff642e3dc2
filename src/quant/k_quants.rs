//! K-quants (Q2_K … Q6_K) and their activation format Q8_K. (Placeholder.)

use super::{GgmlType, Simd};

/// Dequantizes whole super-blocks of `ty` in `src` into `dst`.
pub fn dequantize_row(_ty: GgmlType, _src: &[u8], _dst: &mut [f32], _simd: Simd) {
    todo!("k-quant dequantize")
}

/// Dot product of whole weight super-blocks of `ty` with Q8_K activations.
pub fn vec_dot(_ty: GgmlType, _w: &[u8], _act: &[u8], _simd: Simd) -> f32 {
    todo!("k-quant vec_dot")
}

/// Quantizes f32 activations to Q8_K (ggml `quantize_row_q8_K`).
pub fn quantize_row_q8_k(_x: &[f32], _dst: &mut [u8], _simd: Simd) {
    todo!("q8_k")
}
