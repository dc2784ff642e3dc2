//! Q4_1: 32 weights as 4-bit integers with an f16 scale and an f16 minimum, `w = q * d + m`.
//! Dotted with Q8_1 activations, whose block sum carries the `m` term.

use half::f16;

use super::block32::{nibble_quants, MinWeightBlock, WeightBlock};
use super::q8_1::BlockQ8_1;
use crate::quant::block::{ByteBlock, QK};

/// ggml `block_q4_1`: `d`, `m` (f16, little-endian), then 16 bytes of nibbles laid out as in Q4_0
/// (byte `j`: element `j` low, element `j + 16` high).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ4_1 {
    /// Scale, f16 bits (little-endian).
    pub d: [u8; 2],
    /// Minimum, f16 bits (little-endian).
    pub m: [u8; 2],
    /// Packed nibbles.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ4_1>() == 20 && align_of::<BlockQ4_1>() == 1);
// SAFETY: `#[repr(C)]` over byte arrays: alignment 1, no padding, every bit pattern is a block.
unsafe impl ByteBlock for BlockQ4_1 {
    const ELEMENTS: usize = QK;
}

impl WeightBlock for BlockQ4_1 {
    fn scale(&self) -> f32 {
        self.d().to_f32()
    }

    fn values(&self) -> [i8; QK] {
        self.quants()
    }
}

impl MinWeightBlock for BlockQ4_1 {
    fn min(&self) -> f32 {
        self.m().to_f32()
    }
}

impl BlockQ4_1 {
    /// The scale.
    pub fn d(&self) -> f16 {
        f16::from_le_bytes(self.d)
    }

    /// The minimum.
    pub fn m(&self) -> f16 {
        f16::from_le_bytes(self.m)
    }

    /// The unsigned quants (in 0..=15) in element order.
    pub fn quants(&self) -> [i8; QK] {
        nibble_quants(&self.qs, None).map(|q| q as i8)
    }
}

/// Plain-Rust twin of the dequantizer.
pub fn dequantize_row_scalar(src: &[u8], dst: &mut [f32]) {
    super::block32::dequantize_with_min::<BlockQ4_1>(src, dst);
}

/// Plain-Rust twin of the dot product, in the order of llama.cpp's x86 kernel
/// (`ggml_vec_dot_q4_1_q8_1`): eight lanes, lane `l` accumulating `d_w·d_a · Σ(4 products)` of
/// every block with a fused multiply-add, the minimum terms `m_w · s_a` fused into one running
/// sum, then the lanes reduced as [`hsum8`](crate::quant::block::hsum8) and the minimum sum added.
pub fn vec_dot_scalar(w: &[u8], act: &[u8]) -> f32 {
    super::block32::vec_dot_lanes_with_min::<BlockQ4_1, BlockQ8_1>(w, act)
}
