//! Q8_0: 32 signed 8-bit integers with one f16 scale, `w = q * d`. The same layout serves as
//! weights and as the activation format of Q4_0, Q5_0, Q8_0 and IQ4_NL weights
//! (see [`super::q8::quantize_row_q8_0`]).

use half::f16;

use super::{check_blocks, check_tile, ByteBlock, Simd, WeightBlock, QK};

/// ggml `block_q8_0`: `d` (f16, little-endian), then 32 signed quants in element order.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ8_0 {
    /// Scale, f16 bits (little-endian).
    pub d: [u8; 2],
    /// Quants, element order.
    pub qs: [i8; QK],
}
const _: () = assert!(size_of::<BlockQ8_0>() == 34 && align_of::<BlockQ8_0>() == 1);
// SAFETY: `#[repr(C)]` over byte arrays: alignment 1, no padding, every bit pattern is a block.
unsafe impl ByteBlock for BlockQ8_0 {}

impl WeightBlock for BlockQ8_0 {
    fn scale(&self) -> f32 {
        self.d().to_f32()
    }

    fn values(&self) -> [i8; QK] {
        self.quants()
    }
}

impl BlockQ8_0 {
    /// The scale.
    pub fn d(&self) -> f16 {
        f16::from_le_bytes(self.d)
    }

    /// The integer quants in element order.
    pub fn quants(&self) -> [i8; QK] {
        self.qs
    }
}

/// Dequantizes whole blocks in `src` into `dst` (ggml `dequantize_row_q8_0`: `q * d`).
///
/// # Panics
/// If `src` is not exactly `dst.len()` elements in whole blocks.
pub fn dequantize_row(src: &[u8], dst: &mut [f32], simd: Simd) {
    check_blocks::<BlockQ8_0>(src.len(), dst.len());
    match simd.or_supported() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `or_supported` returned a level whose features (AVX2, FMA, F16C) this CPU has;
        // the lengths were checked above.
        Simd::Avx2 | Simd::Avx512 => unsafe { super::x86::dequantize_q8_0(src, dst) },
        _ => dequantize_row_scalar(src, dst),
    }
}

/// Plain-Rust reference for [`dequantize_row`].
pub fn dequantize_row_scalar(src: &[u8], dst: &mut [f32]) {
    super::dequantize_scaled::<BlockQ8_0>(src, dst);
}

/// Dot product of whole weight blocks `w` with Q8_0 activations `act` (same element count).
///
/// # Panics
/// If the lengths are not matching whole blocks.
pub fn vec_dot(w: &[u8], act: &[u8], simd: Simd) -> f32 {
    vec_dot_tile([w], [act], simd)[0][0]
}

/// [`vec_dot`] of `R` weight rows (same length) with `N` activation columns at once,
/// `out[r][c] = ws[r] · acts[c]`: each weight block is unpacked once and reused for every column,
/// and each activation block is loaded once and reused for every row (the matmul's prompt path).
///
/// # Panics
/// If the lengths are not matching whole blocks.
pub fn vec_dot_tile<const R: usize, const N: usize>(
    ws: [&[u8]; R],
    acts: [&[u8]; N],
    simd: Simd,
) -> [[f32; N]; R] {
    check_tile::<BlockQ8_0, BlockQ8_0, R, N>(&ws, &acts);
    match simd.or_supported() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `or_supported` returned a level this CPU supports; lengths checked above.
        Simd::Avx2 if R > 0 => unsafe { super::x86::avx2::vec_dot_q8_0(ws, acts) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, for the AVX-512 VNNI features.
        Simd::Avx512 if R > 0 => unsafe { super::x86::avx512::vec_dot_q8_0(ws, acts) },
        _ => ws.map(|w| acts.map(|act| vec_dot_scalar(w, act))),
    }
}

/// Plain-Rust reference for [`vec_dot`], in the order of llama.cpp's x86 kernel
/// (`ggml_vec_dot_q8_0_q8_0`): eight lanes, lane `l` accumulating `d_w·d_a · Σ(4 products)` of every
/// block with a fused multiply-add, then reduced as [`super::hsum8`].
pub fn vec_dot_scalar(w: &[u8], act: &[u8]) -> f32 {
    super::vec_dot_lanes::<BlockQ8_0>(w, act)
}
