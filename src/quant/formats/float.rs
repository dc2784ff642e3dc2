//! F32, F16 and BF16 weights: conversion to f32 and dot products with f32 activations.

use half::{bf16, f16};

use crate::quant::types::GgmlType;

/// Bytes per element of a float type, or `None` for other types.
pub fn elem_bytes(ty: GgmlType) -> Option<usize> {
    match ty {
        GgmlType::F32 => Some(4),
        GgmlType::F16 | GgmlType::BF16 => Some(2),
        _ => None,
    }
}

/// Converts whole elements of `ty` (F32, F16 or BF16, little-endian) in `src` to f32 in `dst`:
/// the plain-Rust twin of the dequantizers. Every conversion is exact.
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
        // Callers check that `ty` is a float type.
        _ => {}
    }
}

/// Dot product of a float weight row of `ty` with f32 activations `x`, the plain-Rust twin of
/// the SIMD kernels: converts each weight exactly and accumulates in f64
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
