//! Safe entry points of the float weight types (F32, F16, BF16).

use crate::quant::formats::float::{dequantize_row_scalar, elem_bytes, vec_dot_f32_scalar};
use crate::quant::simd::Simd;
use crate::quant::types::GgmlType;
#[cfg(target_arch = "x86_64")]
use crate::quant::x86::float as x86;

/// The float types' form of the `block` length checks: panics unless `ty` is a float type and
/// `bytes` exactly `n` of its elements.
#[track_caller]
fn check(ty: GgmlType, bytes: usize, n: usize) {
    let ok = elem_bytes(ty).is_some_and(|b| n.checked_mul(b) == Some(bytes));
    assert!(ok, "{bytes} bytes are not {n} elements of {ty}");
}

/// Converts whole elements of `ty` (F32, F16 or BF16, little-endian) in `src` to f32 in `dst`.
/// Every conversion is exact.
///
/// # Panics
/// If `ty` is not a float type or `src` is not exactly `dst.len()` elements.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32], simd: Simd) {
    check(ty, src.len(), dst.len());
    #[cfg(target_arch = "x86_64")]
    if matches!(simd.or_supported(), Simd::Avx2 | Simd::Avx512) {
        // SAFETY: `or_supported` returned a level whose features (AVX2, FMA, F16C) this CPU has;
        // the lengths were checked above.
        unsafe {
            match ty {
                GgmlType::F16 => x86::dequantize_f16(src, dst),
                GgmlType::BF16 => x86::dequantize_bf16(src, dst),
                _ => dequantize_row_scalar(ty, src, dst),
            }
        }
        return;
    }
    let _ = simd;
    dequantize_row_scalar(ty, src, dst);
}

/// Dot product of a float weight row of `ty` (F32, F16 or BF16) with f32 activations `x`.
///
/// # Panics
/// If `ty` is not a float type or `w` is not exactly `x.len()` elements.
pub fn vec_dot_f32(ty: GgmlType, w: &[u8], x: &[f32], simd: Simd) -> f32 {
    check(ty, w.len(), x.len());
    #[cfg(target_arch = "x86_64")]
    if matches!(simd.or_supported(), Simd::Avx2 | Simd::Avx512) {
        // SAFETY: `or_supported` returned a level whose features (AVX2, FMA, F16C) this CPU has;
        // the lengths were checked above.
        return unsafe { x86::vec_dot_float(ty, w, x) };
    }
    let _ = simd;
    vec_dot_f32_scalar(ty, w, x)
}
