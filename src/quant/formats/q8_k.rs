//! Q8_K: the activation format the K-quants dot with. 256 signed 8-bit values, one f32 scale,
//! and the sums of each 16 consecutive values (`bsums`) so that the min and offset terms of the
//! weight formats cost one small dot product per super-block.

use crate::quant::block::ByteBlock;
use crate::quant::types::QK_K;

/// ggml `block_q8_K`: `d` f32, `qs[256]` i8, `bsums[16]` i16, 292 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ8K {
    /// Scale, little-endian f32.
    pub d: [u8; 4],
    /// Quants.
    pub qs: [i8; QK_K],
    /// Little-endian i16 sums of `qs[16*j .. 16*j+16]`.
    pub bsums: [u8; 32],
}

const _: () = assert!(size_of::<BlockQ8K>() == 292);
const _: () = assert!(align_of::<BlockQ8K>() == 1);
// SAFETY: repr(C) of byte arrays only: alignment 1, no padding, every bit pattern valid.
unsafe impl ByteBlock for BlockQ8K {
    const ELEMENTS: usize = QK_K;
}

impl BlockQ8K {
    /// The block scale.
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f32::from_le_bytes(self.d)
    }

    /// The sum of quants `16*j .. 16*j+16`.
    #[inline(always)]
    pub fn bsum(&self, j: usize) -> i32 {
        i16::from_le_bytes([self.bsums[2 * j], self.bsums[2 * j + 1]]) as i32
    }
}

/// ggml `dequantize_row_q8_K`: `d * q`.
pub fn dequantize_scalar(src: &[BlockQ8K], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d();
        for (o, &q) in y.iter_mut().zip(&b.qs) {
            *o = d * q as f32;
        }
    }
}
