//! Q8_K: the activation format the K-quants dot with. 256 signed 8-bit values, one f32 scale,
//! and the sums of each 16 consecutive values (`bsums`) so that the min and offset terms of the
//! weight formats cost one small dot product per super-block.

use super::{RawBlock, Simd, QK_K};

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

const _: () = assert!(std::mem::size_of::<BlockQ8K>() == 292);
const _: () = assert!(std::mem::align_of::<BlockQ8K>() == 1);
// SAFETY: repr(C) of byte arrays only: alignment 1, no padding, every bit pattern valid.
unsafe impl RawBlock for BlockQ8K {}

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

/// ggml `quantize_row_q8_K_ref`: per block, `max` is the value of largest magnitude (first one
/// on ties), `iscale = -127 / max`, `q = min(127, round_half_even(iscale * x))`, `d = 1 / iscale`.
/// (ggml keeps -127 rather than -128 so that its IQ2 AVX kernels can negate quants freely; the
/// clamp is then only a guard.) An all-zero block gets `d = 0` and zero quants.
pub(crate) fn quantize(x: &[f32], dst: &mut [BlockQ8K], _simd: Simd) {
    // One plain-Rust implementation serves every level: it runs once per activation row (not per
    // weight row), and auto-vectorizes well enough for that.
    for (xb, yb) in x.chunks_exact(QK_K).zip(dst.iter_mut()) {
        quantize_block(xb, yb);
    }
}

fn quantize_block(x: &[f32], y: &mut BlockQ8K) {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax == 0.0 {
        y.d = 0.0f32.to_le_bytes();
        y.qs = [0; QK_K];
        y.bsums = [0; 32];
        return;
    }
    let iscale = -127.0f32 / max;
    for (q, &v) in y.qs.iter_mut().zip(x) {
        // ggml's nearest_int adds 1.5 * 2^23 in float: round half to even for |v| < 2^22,
        // which holds here (|iscale * v| <= 127 up to rounding).
        // Done the same way here: `round_ties_even` is a libm call without SSE4.1.
        let shifted = iscale * v + 12_582_912.0;
        let rounded = (shifted.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000;
        *q = rounded.min(127) as i8;
    }
    for j in 0..QK_K / 16 {
        let s: i32 = y.qs[16 * j..16 * j + 16].iter().map(|&q| q as i32).sum();
        y.bsums[2 * j..2 * j + 2].copy_from_slice(&(s as i16).to_le_bytes());
    }
    y.d = (1.0f32 / iscale).to_le_bytes();
}

/// ggml `dequantize_row_q8_K`: `d * q`.
pub(crate) fn dequantize(src: &[BlockQ8K], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d();
        for (o, &q) in y.iter_mut().zip(&b.qs) {
            *o = d * q as f32;
        }
    }
}
