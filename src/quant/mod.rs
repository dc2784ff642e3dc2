//! Block formats and kernels: dequantize a row, quantize activations, dot a weight row with
//! quantized activations, and matrix multiply. Knows nothing about models.
//!
//! As in ggml, a matmul quantizes its f32 activations once into the weight type's
//! [`vec_dot_type`] (Q8_0, Q8_1 or Q8_K), then every weight row is dotted with them using integer
//! products inside a block and one float scale per block. Float weights (F32/F16/BF16) dot
//! directly with f32 activations.
//!
//! Each per-type module exposes the same plain functions over raw bytes:
//! `dequantize_row(src, dst, simd)` and `vec_dot(w, act, simd) -> f32`, where `src`/`w` hold whole
//! blocks of the weight type and `act` the same number of elements in the activation format.
//!
//! The 32-element formats (`q4_0`, `q4_1`, `q5_0`, `q5_1`, `q8_0`, and the activation formats in
//! `q8`) each also define their block as a `#[repr(C)]` struct of byte arrays with ggml's layout
//! (viewable in place with [`as_blocks`]), a plain-Rust twin of every kernel (`*_scalar`, the
//! reference the SIMD versions are tested against), and `vec_dot_tile`, which dots several weight
//! rows with several activation columns at once for the matmul. The SIMD versions live in `x86`
//! (AVX2 and AVX-512 VNNI); the level is a [`Simd`] chosen once and passed down, and each public
//! kernel dispatches on it once per row, after [`Simd::or_supported`] has made sure the CPU can
//! run it. aarch64 uses the scalar twins for now.

// First: its macro writes the 32-element types' entry points.
#[macro_use]
mod block32;
pub mod float;
pub mod interleaved;
pub mod iq4;
pub mod k_quants;
pub mod matmul;
pub mod q4_0;
pub mod q4_1;
pub mod q5_0;
pub mod q5_1;
pub mod q8;
pub mod q8_0;
pub mod quantize;
pub mod repack;
pub mod repack_q4k;
pub mod repack_q6k;
pub mod simd;
pub mod types;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use matmul::{matmul, QMatrix};
pub use simd::Simd;
pub use types::{GgmlType, QK_K};

use crate::{Error, Result};

/// Elements per block of the 32-element formats (ggml's `QK4_0`, `QK4_1`, `QK5_0`, `QK5_1`,
/// `QK8_0`, `QK8_1`: all 32).
pub const QK: usize = 32;

/// A `#[repr(C)]` block struct made only of byte arrays, so a byte slice of whole blocks can be
/// viewed as a block slice in place, at any address (model tensors are borrowed from the file map,
/// and a row of 18-byte Q4_0 blocks need not start at an even address).
///
/// # Safety
/// Implementors must have alignment 1, no padding, a non-zero size, and accept every bit pattern.
pub unsafe trait ByteBlock: Copy + 'static {}

/// Views the whole blocks at the start of `bytes` as blocks (trailing partial bytes are ignored).
pub fn as_blocks<B: ByteBlock>(bytes: &[u8]) -> &[B] {
    let n = bytes.len() / std::mem::size_of::<B>();
    // SAFETY: `ByteBlock` guarantees alignment 1, no padding and that any bytes form a valid `B`;
    // `n * size_of::<B>() <= bytes.len()`, so the view stays inside `bytes` and shares its lifetime.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<B>(), n) }
}

/// Mutable twin of [`as_blocks`].
pub fn as_blocks_mut<B: ByteBlock>(bytes: &mut [u8]) -> &mut [B] {
    let n = bytes.len() / std::mem::size_of::<B>();
    // SAFETY: as in `as_blocks`; the exclusive borrow of `bytes` moves to the returned view.
    unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<B>(), n) }
}

/// Panics unless `bytes` is exactly `n_elements` elements in whole blocks of `B` (32 elements
/// each). Kernels read through raw pointers, so this check is what keeps them in bounds.
#[track_caller]
#[inline]
pub(crate) fn check_blocks<B: ByteBlock>(bytes: usize, n_elements: usize) -> usize {
    let n_blocks = n_elements / QK;
    assert!(
        n_elements.is_multiple_of(QK) && bytes == n_blocks * std::mem::size_of::<B>(),
        "{bytes} bytes are not {n_elements} elements of whole {}-byte blocks",
        std::mem::size_of::<B>()
    );
    n_blocks
}

/// The format activations are quantized to before being dotted with weights of type `ty`
/// (ggml's `vec_dot_type`). `F32` means the activations are used as they are.
pub fn vec_dot_type(ty: GgmlType) -> GgmlType {
    use GgmlType::*;
    match ty {
        Q4_0 | Q5_0 | Q8_0 | IQ4_NL => Q8_0,
        Q4_1 | Q5_1 => Q8_1,
        Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | IQ4_XS => Q8_K,
        _ => F32,
    }
}

fn unsupported(ty: GgmlType) -> Error {
    Error::UnsupportedTensorType {
        tensor: String::new(),
        ty: ty.name().to_string(),
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
        Q4_0 => q4_0::dequantize_row(src, dst, simd),
        Q4_1 => q4_1::dequantize_row(src, dst, simd),
        Q5_0 => q5_0::dequantize_row(src, dst, simd),
        Q5_1 => q5_1::dequantize_row(src, dst, simd),
        Q8_0 => q8_0::dequantize_row(src, dst, simd),
        Q2_K | Q3_K | Q4_K | Q5_K | Q6_K => k_quants::dequantize_row(ty, src, dst, simd),
        IQ4_NL | IQ4_XS => iq4::dequantize_row(ty, src, dst, simd),
        _ => return Err(unsupported(ty)),
    }
    Ok(())
}

/// Quantizes the f32 activations `x` into `dst` in the activation format `act_ty`
/// (Q8_0, Q8_1 or Q8_K). `dst` must hold exactly `x.len()` elements of that format.
pub fn quantize_activations(act_ty: GgmlType, x: &[f32], dst: &mut [u8], simd: Simd) -> Result<()> {
    check_row(act_ty, dst.len(), x.len())?;
    match act_ty {
        GgmlType::Q8_0 => q8::quantize_row_q8_0(x, dst, simd),
        GgmlType::Q8_1 => q8::quantize_row_q8_1(x, dst, simd),
        GgmlType::Q8_K => k_quants::quantize_row_q8_k(x, dst, simd),
        _ => return Err(unsupported(act_ty)),
    }
    Ok(())
}

/// Dot product of one weight row of `ty` (whole blocks in `w`) with activations already in
/// `vec_dot_type(ty)` (`act`, same element count). Float weight types are not handled here: use
/// [`float::vec_dot_f32`] with f32 activations.
pub fn vec_dot(ty: GgmlType, w: &[u8], act: &[u8], simd: Simd) -> f32 {
    use GgmlType::*;
    match ty {
        Q4_0 => q4_0::vec_dot(w, act, simd),
        Q4_1 => q4_1::vec_dot(w, act, simd),
        Q5_0 => q5_0::vec_dot(w, act, simd),
        Q5_1 => q5_1::vec_dot(w, act, simd),
        Q8_0 => q8_0::vec_dot(w, act, simd),
        Q2_K | Q3_K | Q4_K | Q5_K | Q6_K => k_quants::vec_dot(ty, w, act, simd),
        IQ4_NL | IQ4_XS => iq4::vec_dot(ty, w, act, simd),
        // Callers check `is_supported` at load; float types go through `float::vec_dot_f32`.
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
    return unsafe { x86::avx512::vec_dot_wide(ty, ws, acts, scales) };
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// Checks that `bytes` is exactly `n` elements of `ty` in whole blocks.
fn check_row(ty: GgmlType, bytes: usize, n: usize) -> Result<()> {
    match ty.row_bytes(n as u64) {
        Some(b) if b == bytes as u64 => Ok(()),
        _ => Err(Error::InvalidArgument(format!(
            "{n} elements of {ty} do not fill {bytes} bytes in whole blocks"
        ))),
    }
}

/// [`check_dot`] for a tile: panics unless every weight row has the same length and every
/// activation column matches it in whole blocks.
#[track_caller]
#[inline]
pub(crate) fn check_tile<W: ByteBlock, A: ByteBlock, const R: usize, const N: usize>(
    ws: &[&[u8]; R],
    acts: &[&[u8]; N],
) {
    let w_len = ws.first().map_or(0, |w| w.len());
    for w in ws {
        assert_eq!(
            w.len(),
            w_len,
            "vec_dot_tile: weight rows of different lengths"
        );
    }
    for act in acts {
        check_dot::<W, A>(w_len, act.len());
    }
}

/// Panics unless `w` is whole blocks of `W` and `act` the same number of blocks of `A`; returns
/// the block count. Kernels read through raw pointers, so this check keeps them in bounds.
#[track_caller]
#[inline]
pub(crate) fn check_dot<W: ByteBlock, A: ByteBlock>(w: usize, act: usize) -> usize {
    let n_blocks = w / std::mem::size_of::<W>();
    assert!(
        w.is_multiple_of(std::mem::size_of::<W>()) && act == n_blocks * std::mem::size_of::<A>(),
        "vec_dot: {w} weight bytes and {act} activation bytes are not matching whole blocks"
    );
    n_blocks
}

/// The sum of eight f32 lanes in the order x86 kernels reduce a 256-bit register (upper half
/// onto lower, then pairs, then the last two): `((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7))`. Scalar
/// twins use it so that their result is the SIMD kernels' to the bit.
#[inline]
pub fn hsum8(a: [f32; 8]) -> f32 {
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

/// The integer dot product of 32 quants, as eight lane sums of four consecutive products (the
/// lanes a `vpdpbusd` or `vpmaddubsw` + `vpmaddwd` pair produces).
#[inline]
pub fn lane_sums(x: &[i8; QK], y: &[i8; QK]) -> [i32; 8] {
    std::array::from_fn(|l| {
        (0..4)
            .map(|k| i32::from(x[4 * l + k]) * i32::from(y[4 * l + k]))
            .sum()
    })
}
