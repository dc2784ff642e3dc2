//! Safe entry points of the float weight types (F32, F16, BF16).

use crate::quant::formats::float::{
    convert_activations_scalar, dequantize_row_scalar, elem_bytes, vec_dot_row_scalar,
    vec_dot_tiled_scalar,
};
pub use crate::quant::formats::float::{takes_tiles, FloatProduct};
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

/// Converts f32 activations `x` into `dst` as elements of the float weight type `ty` (ggml's
/// `vec_dot_type` of a float type is the type itself): F16 and BF16 rounded to nearest even, F32
/// copied. Once per column, so plain Rust at every level.
///
/// # Panics
/// If `ty` is not a float type or `dst` is not exactly `x.len()` elements.
pub fn convert_activations(ty: GgmlType, x: &[f32], dst: &mut [u8]) {
    check(ty, dst.len(), x.len());
    convert_activations_scalar(ty, x, dst);
}

/// Dot product of a float weight row of `ty` with activations converted to `ty`
/// ([`convert_activations`]), in llama.cpp's arithmetic `product` (see [`takes_tiles`]). A tiled
/// product needs a row length that is a multiple of the type's tile step; with any other it
/// covers the whole steps only.
///
/// # Panics
/// If `ty` is not a float type or `w` and `act` are not the same number of its elements.
pub fn vec_dot(ty: GgmlType, w: &[u8], act: &[u8], product: FloatProduct, simd: Simd) -> f32 {
    let n = elem_bytes(ty).map_or(0, |b| act.len() / b);
    check(ty, w.len(), n);
    check(ty, act.len(), n);
    #[cfg(target_arch = "x86_64")]
    match simd.or_supported() {
        Simd::Avx512 if ty == GgmlType::BF16 && has_avx512_bf16() => {
            // SAFETY: `or_supported` returned AVX-512, whose features (AVX-512F/BW/VL, AVX2, FMA,
            // F16C) this CPU has, and AVX512_BF16 was detected; the lengths were checked above.
            return unsafe { x86::vec_dot_avx512_bf16(ty, product, w, act) };
        }
        Simd::Avx512 => {
            // SAFETY: as above, without AVX512_BF16.
            return unsafe { x86::vec_dot_avx512(ty, product, w, act) };
        }
        Simd::Avx2 => {
            // SAFETY: the AVX2 level's features (AVX2, FMA, F16C) are this CPU's; lengths checked.
            return unsafe { x86::vec_dot_avx2(ty, product, w, act) };
        }
        _ => {}
    }
    let _ = simd;
    match product {
        FloatProduct::Row => vec_dot_row_scalar(ty, w, act),
        FloatProduct::Tiled => vec_dot_tiled_scalar(ty, w, act),
    }
}

/// Weight rows of [`vec_dot_tile`] (as tinyBLAS's AVX-512 tile).
pub const TILE_ROWS: usize = 4;
/// Activation columns of [`vec_dot_tile`].
pub const TILE_COLS: usize = 6;

/// [`TILE_ROWS`] weight rows by [`TILE_COLS`] activation columns in the tiled arithmetic, each output
/// equal to its [`vec_dot`] with [`FloatProduct::Tiled`]; `None` at levels without a tile kernel
/// (the caller then takes the dots one by one).
///
/// # Panics
/// If `ty` is not a float type or the rows are not all the same number of its elements.
pub fn vec_dot_tile(
    ty: GgmlType,
    ws: [&[u8]; TILE_ROWS],
    acts: [&[u8]; TILE_COLS],
    simd: Simd,
) -> Option<[[f32; TILE_COLS]; TILE_ROWS]> {
    let n = elem_bytes(ty).map_or(0, |b| acts[0].len() / b);
    for row in ws.iter().chain(&acts) {
        check(ty, row.len(), n);
    }
    #[cfg(target_arch = "x86_64")]
    match simd.or_supported() {
        Simd::Avx512 if ty == GgmlType::BF16 && has_avx512_bf16() => {
            // SAFETY: the level's features are this CPU's (`or_supported`) and AVX512_BF16 was
            // detected; the lengths were checked above.
            return Some(unsafe { x86::vec_dot_tile_avx512_bf16(ty, ws, acts) });
        }
        Simd::Avx512 => {
            // SAFETY: as above, without AVX512_BF16.
            return Some(unsafe { x86::vec_dot_tile_avx512(ty, ws, acts) });
        }
        Simd::Avx2 => {
            // SAFETY: the AVX2 level's features are this CPU's; the lengths were checked above.
            return Some(unsafe { x86::vec_dot_tile_avx2(ty, ws, acts) });
        }
        _ => {}
    }
    let _ = simd;
    None
}

/// Whether the CPU has AVX512_BF16 (`vdpbf16ps`); std caches the detection.
#[cfg(target_arch = "x86_64")]
fn has_avx512_bf16() -> bool {
    std::arch::is_x86_feature_detected!("avx512bf16")
}
