//! F32, F16 and BF16 weights. (Placeholder.)

use super::{GgmlType, Simd};

/// Converts whole elements of `ty` in `src` to f32 in `dst`.
pub fn dequantize_row(_ty: GgmlType, _src: &[u8], _dst: &mut [f32], _simd: Simd) {
    todo!("float dequantize")
}

/// Dot product of a float weight row of `ty` with f32 activations.
pub fn vec_dot_f32(_ty: GgmlType, _w: &[u8], _x: &[f32], _simd: Simd) -> f32 {
    todo!("float vec_dot")
}
