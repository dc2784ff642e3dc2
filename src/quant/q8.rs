//! Activation formats for the 32-element blocks: Q8_0 (scale) and Q8_1 (scale and scaled sum),
//! and their quantizers.
//!
//! The quantizers compute what llama.cpp's x86 build computes at run time (not its `_ref`
//! reference, which the weight quantizer in `quantize.rs` follows): per block `d = amax / 127`,
//! `q = x * (127 / amax)` rounded half to even, so every `q` lies in -127..=127. Matching its
//! rounding bit for bit matters: a single quant that rounds the other way moves the matmul output
//! by a whole quantization step, and the difference then grows through the layers. The kernels
//! rely on the range (the sign trick negates activations, which would overflow for -128).

use half::f16;

pub use super::q8_0::BlockQ8_0;
use super::{as_blocks_mut, check_blocks, ByteBlock, Simd, QK};

/// ggml `block_q8_1`: `d` and `s = d * Σ qs` (f16, little-endian), then 32 signed quants.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ8_1 {
    /// Scale, f16 bits (little-endian).
    pub d: [u8; 2],
    /// `d * Σ qs`, f16 bits (little-endian).
    pub s: [u8; 2],
    /// Quants, element order.
    pub qs: [i8; QK],
}
const _: () = assert!(size_of::<BlockQ8_1>() == 36 && align_of::<BlockQ8_1>() == 1);
// SAFETY: `#[repr(C)]` over byte arrays: alignment 1, no padding, every bit pattern is a block.
unsafe impl ByteBlock for BlockQ8_1 {}

impl BlockQ8_1 {
    /// The scale.
    pub fn d(&self) -> f16 {
        f16::from_le_bytes(self.d)
    }

    /// The scaled sum `d * Σ qs`.
    pub fn s(&self) -> f16 {
        f16::from_le_bytes(self.s)
    }
}

/// Quantizes f32 activations to Q8_0 blocks (ggml `quantize_row_q8_0`).
///
/// # Panics
/// If `dst` is not exactly `x.len()` elements of whole Q8_0 blocks.
pub fn quantize_row_q8_0(x: &[f32], dst: &mut [u8], simd: Simd) {
    check_blocks::<BlockQ8_0>(dst.len(), x.len());
    match simd.or_supported() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `or_supported` returned a level whose features (AVX2, FMA, F16C) this CPU has;
        // the lengths were checked above.
        Simd::Avx2 | Simd::Avx512 => unsafe { super::x86::quantize_q8_0(x, dst) },
        _ => quantize_row_q8_0_scalar(x, dst),
    }
}

/// Quantizes f32 activations to Q8_1 blocks (ggml `quantize_row_q8_1`).
///
/// # Panics
/// If `dst` is not exactly `x.len()` elements of whole Q8_1 blocks.
pub fn quantize_row_q8_1(x: &[f32], dst: &mut [u8], simd: Simd) {
    check_blocks::<BlockQ8_1>(dst.len(), x.len());
    match simd.or_supported() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `or_supported` returned a level whose features (AVX2, FMA, F16C) this CPU has;
        // the lengths were checked above.
        Simd::Avx2 | Simd::Avx512 => unsafe { super::x86::quantize_q8_1(x, dst) },
        _ => quantize_row_q8_1_scalar(x, dst),
    }
}

/// The block scale and the multiplier that quantizes: `d = amax / 127` and `127 / amax` (0 for
/// an all-zero block).
fn scale_of(x: &[f32]) -> (f32, f32) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    (d, id)
}

/// Plain-Rust reference for [`quantize_row_q8_0`].
pub fn quantize_row_q8_0_scalar(x: &[f32], dst: &mut [u8]) {
    for (b, xs) in as_blocks_mut::<BlockQ8_0>(dst)
        .iter_mut()
        .zip(x.chunks_exact(QK))
    {
        let (d, id) = scale_of(xs);
        b.d = f16::from_f32(d).to_le_bytes();
        for (q, &v) in b.qs.iter_mut().zip(xs) {
            // |v * id| <= 127.
            *q = (v * id).round_ties_even() as i8;
        }
    }
}

/// Plain-Rust reference for [`quantize_row_q8_1`].
pub fn quantize_row_q8_1_scalar(x: &[f32], dst: &mut [u8]) {
    for (b, xs) in as_blocks_mut::<BlockQ8_1>(dst)
        .iter_mut()
        .zip(x.chunks_exact(QK))
    {
        let (d, id) = scale_of(xs);
        let mut sum = 0i32;
        for (q, &v) in b.qs.iter_mut().zip(xs) {
            *q = (v * id).round_ties_even() as i8;
            sum += *q as i32;
        }
        b.d = f16::from_f32(d).to_le_bytes();
        b.s = f16::from_f32(sum as f32 * d).to_le_bytes();
    }
}
