//! Q5_0: 32 weights as 5-bit integers with one f16 scale, `w = (q - 16) * d`. Dotted with Q8_0
//! activations.

use half::f16;

use super::block32::{nibble_quants, WeightBlock};
use super::q8_0::BlockQ8_0;
use crate::quant::block::{ByteBlock, QK};

/// ggml `block_q5_0`: `d` (f16, little-endian), `qh` (u32, little-endian: bit `j` is the fifth
/// bit of element `j`), then 16 bytes of low nibbles laid out as in Q4_0 (byte `j`: element `j`
/// low, element `j + 16` high).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ5_0 {
    /// Scale, f16 bits (little-endian).
    pub d: [u8; 2],
    /// Fifth bits, u32 little-endian.
    pub qh: [u8; 4],
    /// Low nibbles.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ5_0>() == 22 && align_of::<BlockQ5_0>() == 1);
// SAFETY: `#[repr(C)]` over byte arrays: alignment 1, no padding, every bit pattern is a block.
unsafe impl ByteBlock for BlockQ5_0 {
    const ELEMENTS: usize = QK;
}

impl WeightBlock for BlockQ5_0 {
    fn scale(&self) -> f32 {
        self.d().to_f32()
    }

    fn values(&self) -> [i8; QK] {
        self.quants()
    }
}

impl BlockQ5_0 {
    /// The scale.
    pub fn d(&self) -> f16 {
        f16::from_le_bytes(self.d)
    }

    /// The signed quants `q - 16` (in -16..=15) in element order.
    pub fn quants(&self) -> [i8; QK] {
        nibble_quants(&self.qs, Some(self.qh)).map(|q| q as i8 - 16)
    }
}

/// Plain-Rust twin of the dequantizer.
pub fn dequantize_row_scalar(src: &[u8], dst: &mut [f32]) {
    super::block32::dequantize_scaled::<BlockQ5_0>(src, dst);
}

/// Plain-Rust twin of the dot product, in the order of llama.cpp's x86 kernel
/// (`ggml_vec_dot_q5_0_q8_0`): eight lanes, lane `l` accumulating `d_w·d_a · Σ(4 products)` of every
/// block with a fused multiply-add, then reduced as [`hsum8`](crate::quant::block::hsum8).
pub fn vec_dot_scalar(w: &[u8], act: &[u8]) -> f32 {
    super::block32::vec_dot_lanes::<BlockQ5_0, BlockQ8_0>(w, act)
}
