//! Q4_1 blocks. (Placeholder: the kernels land with the kernels issue.)

use super::Simd;

/// Dequantizes whole blocks in `src` into `dst`.
pub fn dequantize_row(_src: &[u8], _dst: &mut [f32], _simd: Simd) {
    todo!("q4_1 dequantize")
}

/// Dot product of whole weight blocks with activations in this type's vec_dot_type.
pub fn vec_dot(_w: &[u8], _act: &[u8], _simd: Simd) -> f32 {
    todo!("q4_1 vec_dot")
}
