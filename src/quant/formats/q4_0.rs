//! Q4_0: 32 weights as 4-bit integers with one f16 scale, `w = (q - 8) * d`. Dotted with Q8_0
//! activations.

use half::f16;

use super::block32::{nibble_quants, WeightBlock};
use super::q8_0::BlockQ8_0;
use crate::quant::block::{as_blocks, ByteBlock, QK};

/// ggml `block_q4_0`: `d` (f16, little-endian), then 16 bytes; byte `j` holds element `j` in its
/// low nibble and element `j + 16` in its high nibble.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ4_0 {
    /// Scale, f16 bits (little-endian).
    pub d: [u8; 2],
    /// Packed nibbles.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ4_0>() == 18 && align_of::<BlockQ4_0>() == 1);
// SAFETY: `#[repr(C)]` over byte arrays: alignment 1, no padding, every bit pattern is a block.
unsafe impl ByteBlock for BlockQ4_0 {
    const ELEMENTS: usize = QK;
}

impl WeightBlock for BlockQ4_0 {
    fn scale(&self) -> f32 {
        self.d().to_f32()
    }

    fn values(&self) -> [i8; QK] {
        self.quants()
    }
}

impl BlockQ4_0 {
    /// The scale.
    pub fn d(&self) -> f16 {
        f16::from_le_bytes(self.d)
    }

    /// The signed quants `q - 8` (in -8..=7) in element order.
    pub fn quants(&self) -> [i8; QK] {
        nibble_quants(&self.qs, None).map(|q| q as i8 - 8)
    }
}

/// Plain-Rust twin of the dequantizer.
pub fn dequantize_row_scalar(src: &[u8], dst: &mut [f32]) {
    super::block32::dequantize_scaled::<BlockQ4_0>(src, dst);
}

/// Plain-Rust twin of the dot product, in the arithmetic of llama.cpp's repacked Q4_0 kernels
/// (`ggml_gemv/gemm_q4_0_8x8_q8_0`, which it uses on x86 for every matrix with a multiple of 8
/// rows): each block's 32 products summed exactly as integers, then one fused multiply-add per
/// block, `sum = isum · (d_w · d_a) + sum`.
pub fn vec_dot_scalar(w: &[u8], act: &[u8]) -> f32 {
    let mut sum = 0.0f32;
    for (bw, ba) in as_blocks::<BlockQ4_0>(w)
        .iter()
        .zip(as_blocks::<BlockQ8_0>(act))
    {
        let isum: i32 = bw
            .quants()
            .iter()
            .zip(ba.qs.iter())
            .map(|(&x, &y)| x as i32 * y as i32)
            .sum();
        sum = (isum as f32).mul_add(bw.d().to_f32() * ba.d().to_f32(), sum);
    }
    sum
}
