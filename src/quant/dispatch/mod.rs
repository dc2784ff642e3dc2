//! The safe entry point of every kernel: checks the operands (the `block` length checks), takes
//! the level [`Simd::or_supported`] returns, and runs the `x86` kernel of that level or the
//! plain-Rust twin from `formats` / `activations`. This module holds the by-type functions; its
//! children one family each.

pub mod activations;
pub mod block32;
pub mod float;
pub mod k_quants;

use crate::quant::formats::q4_0::BlockQ4_0;
use crate::quant::formats::q4_1::BlockQ4_1;
use crate::quant::formats::q5_0::BlockQ5_0;
use crate::quant::formats::q5_1::BlockQ5_1;
use crate::quant::formats::q8_0::BlockQ8_0;
use crate::quant::simd::Simd;
use crate::quant::types::GgmlType;
use crate::{Error, Result};

/// The format activations are quantized (or, for float weights, converted) to before being
/// dotted with weights of type `ty` (ggml's `vec_dot_type`): a float type's is itself.
pub fn vec_dot_type(ty: GgmlType) -> GgmlType {
    use GgmlType::*;
    match ty {
        Q4_0 | Q5_0 | Q8_0 | IQ4_NL => Q8_0,
        Q4_1 | Q5_1 => Q8_1,
        Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | IQ4_XS => Q8_K,
        F16 => F16,
        BF16 => BF16,
        _ => F32,
    }
}

fn unsupported(ty: GgmlType) -> Error {
    Error::UnsupportedTensorType {
        tensor: String::new(),
        ty: ty.name().to_string(),
    }
}

/// The checked form of the `block` length checks, for data from outside the crate: `bytes` must
/// be exactly `n` elements of `ty` in whole blocks.
pub fn check_row(ty: GgmlType, bytes: usize, n: usize) -> Result<()> {
    match ty.row_bytes(n as u64) {
        Some(b) if b == bytes as u64 => Ok(()),
        _ => Err(Error::InvalidArgument(format!(
            "{n} elements of {ty} do not fill {bytes} bytes in whole blocks"
        ))),
    }
}

/// Dequantizes `dst.len()` elements stored as whole blocks of `ty` in `src` into `dst`.
///
/// `dst.len()` must be a multiple of the block size and `src` exactly that many blocks.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32], simd: Simd) -> Result<()> {
    check_row(ty, src.len(), dst.len())?;
    use GgmlType::*;
    match ty {
        F32 | F16 | BF16 => float::dequantize_row(ty, src, dst, simd),
        Q4_0 => block32::dequantize_row::<BlockQ4_0>(src, dst, simd),
        Q4_1 => block32::dequantize_row::<BlockQ4_1>(src, dst, simd),
        Q5_0 => block32::dequantize_row::<BlockQ5_0>(src, dst, simd),
        Q5_1 => block32::dequantize_row::<BlockQ5_1>(src, dst, simd),
        Q8_0 => block32::dequantize_row::<BlockQ8_0>(src, dst, simd),
        Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | IQ4_NL | IQ4_XS => {
            k_quants::dequantize_row(ty, src, dst, simd)
        }
        _ => return Err(unsupported(ty)),
    }
    Ok(())
}

/// Quantizes the f32 activations `x` into `dst` in the activation format `act_ty`
/// (Q8_0, Q8_1 or Q8_K), or converts them to a float type (F32, F16, BF16). `dst` must hold
/// exactly `x.len()` elements of that format.
pub fn quantize_activations(act_ty: GgmlType, x: &[f32], dst: &mut [u8], simd: Simd) -> Result<()> {
    check_row(act_ty, dst.len(), x.len())?;
    match act_ty {
        GgmlType::Q8_0 => activations::quantize_row_q8_0(x, dst, simd),
        GgmlType::Q8_1 => activations::quantize_row_q8_1(x, dst, simd),
        GgmlType::Q8_K => k_quants::quantize_row_q8_k(x, dst, simd),
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => {
            float::convert_activations(act_ty, x, dst)
        }
        _ => return Err(unsupported(act_ty)),
    }
    Ok(())
}

/// Dot product of one weight row of `ty` (whole blocks in `w`) with activations already in
/// `vec_dot_type(ty)` (`act`, same element count). Float weight types are not handled here: they
/// have two arithmetics, chosen by the shape of the product ([`float::vec_dot`]).
///
/// # Panics
/// If the lengths are not matching whole blocks (see `block::check_dot`).
pub fn vec_dot(ty: GgmlType, w: &[u8], act: &[u8], simd: Simd) -> f32 {
    use GgmlType::*;
    match ty {
        Q4_0 => block32::vec_dot::<BlockQ4_0>(w, act, simd),
        Q4_1 => block32::vec_dot::<BlockQ4_1>(w, act, simd),
        Q5_0 => block32::vec_dot::<BlockQ5_0>(w, act, simd),
        Q5_1 => block32::vec_dot::<BlockQ5_1>(w, act, simd),
        Q8_0 => block32::vec_dot::<BlockQ8_0>(w, act, simd),
        Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | IQ4_NL | IQ4_XS => k_quants::vec_dot(ty, w, act, simd),
        // Callers check `is_supported` at load; float types go through `float::vec_dot`.
        _ => 0.0,
    }
}

/// Four weight rows of a 32-element type dotted with eight activation columns, with every
/// activation block's scale already converted to f32 (`scales[c][i]`: block `i` of column `c`):
/// the AVX-512 prompt tile, equal bit for bit to the type's `vec_dot_tile`. `None` when that
/// kernel does not apply (another SIMD level or type, or shapes that do not match).
pub fn vec_dot_wide(
    ty: GgmlType,
    ws: [&[u8]; 4],
    acts: [&[u8]; 8],
    scales: [&[f32]; 8],
    simd: Simd,
) -> Option<[[f32; 8]; 4]> {
    use GgmlType::*;
    if simd.or_supported() != Simd::Avx512 || !matches!(ty, Q5_0 | Q8_0 | Q4_1 | Q5_1) {
        return None;
    }
    let w_len = ws[0].len();
    let n_blocks = w_len / ty.block_bytes();
    let act_len = n_blocks * vec_dot_type(ty).block_bytes();
    if w_len != n_blocks * ty.block_bytes()
        || ws.iter().any(|w| w.len() != w_len)
        || acts.iter().any(|a| a.len() != act_len)
        || scales.iter().any(|s| s.len() < n_blocks)
    {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `or_supported` returned AVX-512, whose features this CPU has; rows, columns and
    // scale tables were checked above to hold `n_blocks` blocks each.
    return unsafe { crate::quant::x86::block32::vec_dot_wide_avx512(ty, ws, acts, scales) };
    #[cfg(not(target_arch = "x86_64"))]
    None
}
