//! Q5_1: 32 weights as 5-bit integers with an f16 scale and an f16 minimum, `w = q * d + m`.
//! Dotted with Q8_1 activations, whose block sum carries the `m` term.

use half::f16;

use super::block32::{nibble_quants, MinWeightBlock, WeightBlock};
use super::q8_1::BlockQ8_1;
use crate::quant::block::{ByteBlock, QK};

/// ggml `block_q5_1`: `d`, `m` (f16, little-endian), `qh` (u32, little-endian: bit `j` is the
/// fifth bit of element `j`), then 16 bytes of low nibbles laid out as in Q4_0.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ5_1 {
    /// Scale, f16 bits (little-endian).
    pub d: [u8; 2],
    /// Minimum, f16 bits (little-endian).
    pub m: [u8; 2],
    /// Fifth bits, u32 little-endian.
    pub qh: [u8; 4],
    /// Low nibbles.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ5_1>() == 24 && align_of::<BlockQ5_1>() == 1);
// SAFETY: `#[repr(C)]` over byte arrays: alignment 1, no padding, every bit pattern is a block.
unsafe impl ByteBlock for BlockQ5_1 {
    const ELEMENTS: usize = QK;
}

impl WeightBlock for BlockQ5_1 {
    fn scale(&self) -> f32 {
        self.d().to_f32()
    }

    fn values(&self) -> [i8; QK] {
        self.quants()
    }
}

impl MinWeightBlock for BlockQ5_1 {
    fn min(&self) -> f32 {
        self.m().to_f32()
    }
}

impl BlockQ5_1 {
    /// The scale.
    pub fn d(&self) -> f16 {
        f16::from_le_bytes(self.d)
    }

    /// The minimum.
    pub fn m(&self) -> f16 {
        f16::from_le_bytes(self.m)
    }

    /// The unsigned quants (in 0..=31) in element order.
    pub fn quants(&self) -> [i8; QK] {
        nibble_quants(&self.qs, Some(self.qh)).map(|q| q as i8)
    }
}

/// Plain-Rust twin of the dequantizer.
pub fn dequantize_row_scalar(src: &[u8], dst: &mut [f32]) {
    super::block32::dequantize_with_min::<BlockQ5_1>(src, dst);
}

/// Plain-Rust twin of the dot product, in the order of llama.cpp's x86 kernel
/// (`ggml_vec_dot_q5_1_q8_1`): as Q4_1's, eight fused lanes plus a fused running sum of the
/// minimum terms `m_w · s_a`.
pub fn vec_dot_scalar(w: &[u8], act: &[u8]) -> f32 {
    super::block32::vec_dot_lanes_with_min::<BlockQ5_1, BlockQ8_1>(w, act)
}
