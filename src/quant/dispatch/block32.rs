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
#[cfg(target_arch = "x86_64")]
use crate::quant::x86::block32 as x86;

/// A 32-element weight format and its kernels at each level.
pub trait Block32: ByteBlock {
    /// The activation block it dots with (Q8_0 or Q8_1).
    type Act: ByteBlock;

    /// The plain-Rust dequantizer.
    fn dequantize_scalar(src: &[u8], dst: &mut [f32]);

    /// The plain-Rust dot product.
    fn vec_dot_scalar(w: &[u8], act: &[u8]) -> f32;

    /// The x86 dequantizer (exact, so one AVX2 version serves both levels).
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C; `src` is exactly `dst.len()` elements of whole blocks.
    #[cfg(target_arch = "x86_64")]
    unsafe fn dequantize_x86(src: &[u8], dst: &mut [f32]);

    /// The AVX2 tile of `R` rows × `N` columns.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C; `R > 0`; operands passed [`check_tile`].
    #[cfg(target_arch = "x86_64")]
    unsafe fn tile_avx2<const R: usize, const N: usize>(
        ws: [&[u8]; R],
        acts: [&[u8]; N],
    ) -> [[f32; N]; R];

    /// The AVX-512 VNNI tile of `R` rows × `N` columns.
    ///
    /// # Safety
    /// The CPU has the `Simd::Avx512` features; `R > 0`; operands passed [`check_tile`].
    #[cfg(target_arch = "x86_64")]
    unsafe fn tile_avx512<const R: usize, const N: usize>(
        ws: [&[u8]; R],
        acts: [&[u8]; N],
    ) -> [[f32; N]; R];
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
        Simd::Avx2 | Simd::Avx512 => unsafe { B::dequantize_x86(src, dst) },
        _ => B::dequantize_scalar(src, dst),
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
        Simd::Avx2 if R > 0 => unsafe { B::tile_avx2(ws, acts) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, for the AVX-512 VNNI features.
        Simd::Avx512 if R > 0 => unsafe { B::tile_avx512(ws, acts) },
        _ => ws.map(|w| acts.map(|act| B::vec_dot_scalar(w, act))),
    }
}

impl Block32 for BlockQ4_0 {
    type Act = BlockQ8_0;

    fn dequantize_scalar(src: &[u8], dst: &mut [f32]) {
        q4_0::dequantize_row_scalar(src, dst);
    }

    fn vec_dot_scalar(w: &[u8], act: &[u8]) -> f32 {
        q4_0::vec_dot_scalar(w, act)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn dequantize_x86(src: &[u8], dst: &mut [f32]) {
        // SAFETY: forwarded from the caller.
        unsafe { x86::dequantize_q4_0(src, dst) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn tile_avx2<const R: usize, const N: usize>(
        ws: [&[u8]; R],
        acts: [&[u8]; N],
    ) -> [[f32; N]; R] {
        // SAFETY: forwarded from the caller.
        unsafe { x86::avx2::vec_dot_q4_0(ws, acts) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn tile_avx512<const R: usize, const N: usize>(
        ws: [&[u8]; R],
        acts: [&[u8]; N],
    ) -> [[f32; N]; R] {
        // SAFETY: forwarded from the caller.
        unsafe { x86::avx512::vec_dot_q4_0(ws, acts) }
    }
}

impl Block32 for BlockQ4_1 {
    type Act = BlockQ8_1;

    fn dequantize_scalar(src: &[u8], dst: &mut [f32]) {
        q4_1::dequantize_row_scalar(src, dst);
    }

    fn vec_dot_scalar(w: &[u8], act: &[u8]) -> f32 {
        q4_1::vec_dot_scalar(w, act)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn dequantize_x86(src: &[u8], dst: &mut [f32]) {
        // SAFETY: forwarded from the caller.
        unsafe { x86::dequantize_q4_1(src, dst) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn tile_avx2<const R: usize, const N: usize>(
        ws: [&[u8]; R],
        acts: [&[u8]; N],
    ) -> [[f32; N]; R] {
        // SAFETY: forwarded from the caller.
        unsafe { x86::avx2::vec_dot_q4_1(ws, acts) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn tile_avx512<const R: usize, const N: usize>(
        ws: [&[u8]; R],
        acts: [&[u8]; N],
    ) -> [[f32; N]; R] {
        // SAFETY: forwarded from the caller.
        unsafe { x86::avx512::vec_dot_q4_1(ws, acts) }
    }
}

impl Block32 for BlockQ5_0 {
    type Act = BlockQ8_0;

    fn dequantize_scalar(src: &[u8], dst: &mut [f32]) {
        q5_0::dequantize_row_scalar(src, dst);
    }

    fn vec_dot_scalar(w: &[u8], act: &[u8]) -> f32 {
        q5_0::vec_dot_scalar(w, act)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn dequantize_x86(src: &[u8], dst: &mut [f32]) {
        // SAFETY: forwarded from the caller.
        unsafe { x86::dequantize_q5_0(src, dst) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn tile_avx2<const R: usize, const N: usize>(
        ws: [&[u8]; R],
        acts: [&[u8]; N],
    ) -> [[f32; N]; R] {
        // SAFETY: forwarded from the caller.
        unsafe { x86::avx2::vec_dot_q5_0(ws, acts) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn tile_avx512<const R: usize, const N: usize>(
        ws: [&[u8]; R],
        acts: [&[u8]; N],
    ) -> [[f32; N]; R] {
        // SAFETY: forwarded from the caller.
        unsafe { x86::avx512::vec_dot_q5_0(ws, acts) }
    }
}

impl Block32 for BlockQ5_1 {
    type Act = BlockQ8_1;

    fn dequantize_scalar(src: &[u8], dst: &mut [f32]) {
        q5_1::dequantize_row_scalar(src, dst);
    }

    fn vec_dot_scalar(w: &[u8], act: &[u8]) -> f32 {
        q5_1::vec_dot_scalar(w, act)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn dequantize_x86(src: &[u8], dst: &mut [f32]) {
        // SAFETY: forwarded from the caller.
        unsafe { x86::dequantize_q5_1(src, dst) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn tile_avx2<const R: usize, const N: usize>(
        ws: [&[u8]; R],
        acts: [&[u8]; N],
    ) -> [[f32; N]; R] {
        // SAFETY: forwarded from the caller.
        unsafe { x86::avx2::vec_dot_q5_1(ws, acts) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn tile_avx512<const R: usize, const N: usize>(
        ws: [&[u8]; R],
        acts: [&[u8]; N],
    ) -> [[f32; N]; R] {
        // SAFETY: forwarded from the caller.
        unsafe { x86::avx512::vec_dot_q5_1(ws, acts) }
    }
}

impl Block32 for BlockQ8_0 {
    type Act = BlockQ8_0;

    fn dequantize_scalar(src: &[u8], dst: &mut [f32]) {
        q8_0::dequantize_row_scalar(src, dst);
    }

    fn vec_dot_scalar(w: &[u8], act: &[u8]) -> f32 {
        q8_0::vec_dot_scalar(w, act)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn dequantize_x86(src: &[u8], dst: &mut [f32]) {
        // SAFETY: forwarded from the caller.
        unsafe { x86::dequantize_q8_0(src, dst) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn tile_avx2<const R: usize, const N: usize>(
        ws: [&[u8]; R],
        acts: [&[u8]; N],
    ) -> [[f32; N]; R] {
        // SAFETY: forwarded from the caller.
        unsafe { x86::avx2::vec_dot_q8_0(ws, acts) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn tile_avx512<const R: usize, const N: usize>(
        ws: [&[u8]; R],
        acts: [&[u8]; N],
    ) -> [[f32; N]; R] {
        // SAFETY: forwarded from the caller.
        unsafe { x86::avx512::vec_dot_q8_0(ws, acts) }
    }
}
