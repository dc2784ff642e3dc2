//! Q8_0: 32 signed 8-bit integers with one f16 scale, `w = q * d`. The same layout serves as
//! weights and as the activation format of Q4_0, Q5_0, Q8_0 and IQ4_NL weights
//! (see `crate::quant::activations::q8`).

use half::f16;

use super::block32::{ActivationBlock, WeightBlock};
use crate::quant::block::{ByteBlock, QK};

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
unsafe impl ByteBlock for BlockQ8_0 {
    const ELEMENTS: usize = QK;
}

impl WeightBlock for BlockQ8_0 {
    fn scale(&self) -> f32 {
        self.d().to_f32()
    }

    fn values(&self) -> [i8; QK] {
        self.quants()
    }
}

impl ActivationBlock for BlockQ8_0 {
    fn scale(&self) -> f32 {
        self.d().to_f32()
    }

    fn qs(&self) -> &[i8; QK] {
        &self.qs
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

/// Plain-Rust twin of the dequantizer.
pub fn dequantize_row_scalar(src: &[u8], dst: &mut [f32]) {
    super::block32::dequantize_scaled::<BlockQ8_0>(src, dst);
}

/// Plain-Rust twin of the dot product, in the order of llama.cpp's x86 kernel
/// (`ggml_vec_dot_q8_0_q8_0`): eight lanes, lane `l` accumulating `d_w·d_a · Σ(4 products)` of every
/// block with a fused multiply-add, then reduced as [`hsum8`](crate::quant::block::hsum8).
pub fn vec_dot_scalar(w: &[u8], act: &[u8]) -> f32 {
    super::block32::vec_dot_lanes::<BlockQ8_0, BlockQ8_0>(w, act)
}
