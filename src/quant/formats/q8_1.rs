//! Q8_1: the activation format of Q4_1 and Q5_1 weights, Q8_0 with the block's scaled sum, which
//! the minimum terms of those formats need.

use half::f16;

use super::block32::{ActivationBlock, SummedActivationBlock};
use crate::quant::block::{ByteBlock, QK};

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
unsafe impl ByteBlock for BlockQ8_1 {
    const ELEMENTS: usize = QK;
}

impl ActivationBlock for BlockQ8_1 {
    fn scale(&self) -> f32 {
        self.d().to_f32()
    }

    fn qs(&self) -> &[i8; QK] {
        &self.qs
    }
}

impl SummedActivationBlock for BlockQ8_1 {
    fn sum(&self) -> f32 {
        self.s().to_f32()
    }
}

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
