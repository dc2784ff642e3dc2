//! IQ4_NL and IQ4_XS (non-linear 4-bit). (Placeholder.)

use super::{GgmlType, Simd};

/// Dequantizes whole blocks of `ty` in `src` into `dst`.
pub fn dequantize_row(_ty: GgmlType, _src: &[u8], _dst: &mut [f32], _simd: Simd) {
    todo!("iq4 dequantize")
}

/// Dot product of whole weight blocks of `ty` with activations in its vec_dot_type.
pub fn vec_dot(_ty: GgmlType, _w: &[u8], _act: &[u8], _simd: Simd) -> f32 {
    todo!("iq4 vec_dot")
}
