//! Safe entry points of the 32-element weight formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): one
//! generic function per operation, the format a type parameter ([`Block32`] says which kernels
//! each format has).

use crate::quant::block::{check_elements, check_tile, ByteBlock};
use crate::quant::formats::q4_0::{self, BlockQ4_0};
use crate::quant::formats::q4_1::{self, BlockQ4_1};
use crate::quant::formats::q5_0::{self, BlockQ5_0};
use crate::quant::formats::q5_1::{self, BlockQ5_1};
use crate::quant::formats::q8_0::{self, BlockQ8_0};
use crate::quant::formats::q8_1::BlockQ8_1;
use crate::quant::simd::Simd;
/// The SIMD kernels of each format ([`Kernels`](crate::quant::x86::block32::Kernels)).
#[cfg(target_arch = "x86_64")]
pub use crate::quant::x86::block32::Kernels as SimdKernels;

/// Off x86-64 the formats have no SIMD kernels: every level runs the plain-Rust twins.
#[cfg(not(target_arch = "x86_64"))]
pub trait SimdKernels {}
#[cfg(not(target_arch = "x86_64"))]
impl<B> SimdKernels for B {}

/// A 32-element weight format: the activation format it dots with, its plain-Rust twins (from
/// `formats`) and, through [`SimdKernels`], its x86 kernels at each level.
pub trait Block32: ByteBlock + SimdKernels {
    /// The activation block it dots with (Q8_0 or Q8_1).
    type Act: ByteBlock;

    /// The plain-Rust dequantizer.
    const DEQUANTIZE_SCALAR: fn(&[u8], &mut [f32]);

    /// The plain-Rust dot product.
    const VEC_DOT_SCALAR: fn(&[u8], &[u8]) -> f32;
}

/// Dequantizes whole blocks of `B` in `src` into `dst`.
///
/// # Panics
/// If `src` is not exactly `dst.len()` elements in whole blocks.
pub fn dequantize_row<B: Block32>(src: &[u8], dst: &mut [f32], simd: Simd) {
    check_elements::<B>(src.len(), dst.len());
    match simd.or_supported() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `or_supported` returned a level whose features (AVX2, FMA, F16C) this CPU has;
        // the lengths were checked above.
        Simd::Avx2 | Simd::Avx512 => unsafe { B::dequantize_avx2(src, dst) },
        _ => (B::DEQUANTIZE_SCALAR)(src, dst),
    }
}

/// Dot product of whole weight blocks `w` of `B` with activations `act` in `B::Act` (same
/// element count).
///
/// # Panics
/// If the lengths are not matching whole blocks.
pub fn vec_dot<B: Block32>(w: &[u8], act: &[u8], simd: Simd) -> f32 {
    vec_dot_tile::<B, 1, 1>([w], [act], simd)[0][0]
}

/// [`vec_dot`] of `R` weight rows (same length) with `N` activation columns at once,
/// `out[r][c] = ws[r] · acts[c]`: each weight block is unpacked once and reused for every
/// column, and each activation block is loaded once and reused for every row (the matmul's
/// prompt path).
///
/// # Panics
/// If the lengths are not matching whole blocks.
pub fn vec_dot_tile<B: Block32, const R: usize, const N: usize>(
    ws: [&[u8]; R],
    acts: [&[u8]; N],
    simd: Simd,
) -> [[f32; N]; R] {
    check_tile::<B, B::Act, R, N>(&ws, &acts);
    match simd.or_supported() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `or_supported` returned a level this CPU supports; lengths checked above.
        Simd::Avx2 if R > 0 => unsafe { B::vec_dot_avx2(ws, acts) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, for the AVX-512 VNNI features.
        Simd::Avx512 if R > 0 => unsafe { B::vec_dot_avx512(ws, acts) },
        _ => ws.map(|w| acts.map(|act| (B::VEC_DOT_SCALAR)(w, act))),
    }
}

impl Block32 for BlockQ4_0 {
    type Act = BlockQ8_0;
    const DEQUANTIZE_SCALAR: fn(&[u8], &mut [f32]) = q4_0::dequantize_row_scalar;
    const VEC_DOT_SCALAR: fn(&[u8], &[u8]) -> f32 = q4_0::vec_dot_scalar;
}

impl Block32 for BlockQ4_1 {
    type Act = BlockQ8_1;
    const DEQUANTIZE_SCALAR: fn(&[u8], &mut [f32]) = q4_1::dequantize_row_scalar;
    const VEC_DOT_SCALAR: fn(&[u8], &[u8]) -> f32 = q4_1::vec_dot_scalar;
}

impl Block32 for BlockQ5_0 {
    type Act = BlockQ8_0;
    const DEQUANTIZE_SCALAR: fn(&[u8], &mut [f32]) = q5_0::dequantize_row_scalar;
    const VEC_DOT_SCALAR: fn(&[u8], &[u8]) -> f32 = q5_0::vec_dot_scalar;
}

impl Block32 for BlockQ5_1 {
    type Act = BlockQ8_1;
    const DEQUANTIZE_SCALAR: fn(&[u8], &mut [f32]) = q5_1::dequantize_row_scalar;
    const VEC_DOT_SCALAR: fn(&[u8], &[u8]) -> f32 = q5_1::vec_dot_scalar;
}

impl Block32 for BlockQ8_0 {
    type Act = BlockQ8_0;
    const DEQUANTIZE_SCALAR: fn(&[u8], &mut [f32]) = q8_0::dequantize_row_scalar;
    const VEC_DOT_SCALAR: fn(&[u8], &[u8]) -> f32 = q8_0::vec_dot_scalar;
}
