//! Q2_K: 16 sub-blocks of 16 two-bit quants, each with a 4-bit scale and 4-bit min;
//! weight = `d * sc * q - dmin * m`, q in 0..3.

use super::{f16_le, BlockQ8K, RawBlock, Simd, QK_K};

/// ggml `block_q2_K`, 84 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ2K {
    /// Per sub-block: scale in the low nibble, min in the high nibble.
    pub scales: [u8; QK_K / 16],
    /// Quants: bits `2j..2j+2` of byte `32n + l` hold element `128n + 32j + l`.
    pub qs: [u8; QK_K / 4],
    /// Super-block scale for the sub-block scales (f16).
    pub d: [u8; 2],
    /// Super-block scale for the sub-block mins (f16).
    pub dmin: [u8; 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ2K>() == 84);
const _: () = assert!(std::mem::align_of::<BlockQ2K>() == 1);
// SAFETY: repr(C) of byte arrays only: alignment 1, no padding, every bit pattern valid.
unsafe impl RawBlock for BlockQ2K {}

impl BlockQ2K {
    /// The quant of element `e` (0..256), 0..3.
    #[inline(always)]
    fn quant(&self, e: usize) -> u8 {
        let (n, j, l) = (e / 128, (e % 128) / 32, e % 32);
        (self.qs[32 * n + l] >> (2 * j)) & 3
    }
}

pub(crate) fn dequantize(src: &[BlockQ2K], dst: &mut [f32], _simd: Simd) {
    // Scalar at every level (no SIMD twin yet).
    dequantize_scalar(src, dst);
}

pub(crate) fn vec_dot(w: &[BlockQ2K], act: &[BlockQ8K], _simd: Simd) -> f32 {
    // Scalar at every level (no SIMD twin yet).
    vec_dot_scalar(w, act)
}

/// ggml `dequantize_row_q2_K`: `dl = d * sc`, `ml = dmin * m`, then `dl * q - ml`.
pub fn dequantize_scalar(src: &[BlockQ2K], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = f16_le(b.d);
        let min = f16_le(b.dmin);
        for (s, ys) in y.chunks_exact_mut(16).enumerate() {
            let dl = d * (b.scales[s] & 0xF) as f32;
            let ml = min * (b.scales[s] >> 4) as f32;
            for (i, o) in ys.iter_mut().enumerate() {
                *o = dl * b.quant(16 * s + i) as f32 - ml;
            }
        }
    }
}

/// Exact integer sums per sub-block; mins through the Q8_K `bsums` (ggml `vec_dot_q2_K_q8_K`).
pub fn vec_dot_scalar(w: &[BlockQ2K], act: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(act) {
        let mut sumi = 0i32;
        let mut summ = 0i32;
        for s in 0..QK_K / 16 {
            let dot: i32 = (16 * s..16 * s + 16)
                .map(|e| x.quant(e) as i32 * y.qs[e] as i32)
                .sum();
            sumi += (x.scales[s] & 0xF) as i32 * dot;
            summ += (x.scales[s] >> 4) as i32 * y.bsum(s);
        }
        sum += y.d() * f16_le(x.d) * sumi as f32 - y.d() * f16_le(x.dmin) * summ as f32;
    }
    sum
}
