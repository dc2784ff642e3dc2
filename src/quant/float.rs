//! F32, F16 and BF16 weights: conversion to f32 and dot products with f32 activations.

use half::{bf16, f16};

use super::{GgmlType, Simd};

/// Bytes per element of a float type, or `None` for other types.
fn elem_bytes(ty: GgmlType) -> Option<usize> {
    match ty {
        GgmlType::F32 => Some(4),
        GgmlType::F16 | GgmlType::BF16 => Some(2),
        _ => None,
    }
}

/// Panics unless `ty` is a float type and `bytes` exactly `n` of its elements.
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
                GgmlType::F16 => super::x86::dequantize_f16(src, dst),
                GgmlType::BF16 => super::x86::dequantize_bf16(src, dst),
                _ => dequantize_row_scalar(ty, src, dst),
            }
        }
        return;
    }
    let _ = simd;
    dequantize_row_scalar(ty, src, dst);
}

/// Plain-Rust reference for [`dequantize_row`].
pub fn dequantize_row_scalar(ty: GgmlType, src: &[u8], dst: &mut [f32]) {
    match ty {
        GgmlType::F32 => {
            for (o, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        GgmlType::BF16 => {
            for (o, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        // `check` admitted only the three float types.
        _ => {}
    }
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
        return unsafe { super::x86::vec_dot_float(ty, w, x) };
    }
    let _ = simd;
    vec_dot_f32_scalar(ty, w, x)
}

/// Plain-Rust reference for [`vec_dot_f32`]: converts each weight exactly and accumulates in f64
/// (as ggml's generic `ggml_vec_dot_f16` does with `ggml_float`).
pub fn vec_dot_f32_scalar(ty: GgmlType, w: &[u8], x: &[f32]) -> f32 {
    let mut sum = 0.0f64;
    match ty {
        GgmlType::F32 => {
            for (b, &v) in w.chunks_exact(4).zip(x) {
                sum += f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64 * v as f64;
            }
        }
        GgmlType::F16 => {
            for (b, &v) in w.chunks_exact(2).zip(x) {
                sum += f16::from_le_bytes([b[0], b[1]]).to_f64() * v as f64;
            }
        }
        GgmlType::BF16 => {
            for (b, &v) in w.chunks_exact(2).zip(x) {
                sum += bf16::from_le_bytes([b[0], b[1]]).to_f64() * v as f64;
            }
        }
        _ => {}
    }
    sum as f32
}
