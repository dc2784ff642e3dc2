//! Q3_K: 16 sub-blocks of 16 three-bit quants (q in -4..3), each with a 6-bit signed scale
//! (stored +32); weight = `d * (sc - 32) * q`.

use super::{f16_le, BlockQ8K, RawBlock, Simd, QK_K};

/// ggml `block_q3_K`, 110 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ3K {
    /// High bits: bit `4n + j` of byte `l` is set when element `128n + 32j + l` is >= 0.
    pub hmask: [u8; QK_K / 8],
    /// Low 2 bits: bits `2j..2j+2` of byte `32n + l` hold element `128n + 32j + l`.
    pub qs: [u8; QK_K / 4],
    /// 16 scales of 6 bits: low nibbles in bytes 0..8, top 2 bits in bytes 8..12.
    pub scales: [u8; 12],
    /// Super-block scale (f16).
    pub d: [u8; 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ3K>() == 110);
const _: () = assert!(std::mem::align_of::<BlockQ3K>() == 1);
// SAFETY: repr(C) of byte arrays only: alignment 1, no padding, every bit pattern valid.
unsafe impl RawBlock for BlockQ3K {}

impl BlockQ3K {
    /// The signed scale of sub-block `s` (0..16), -32..31: low 4 bits from byte `s` (s < 8) or
    /// the high nibble of byte `s - 8`, top 2 bits from bits `2(s/4)` of byte `8 + s%4`.
    #[inline(always)]
    fn scale(&self, s: usize) -> i32 {
        let lo = if s < 8 {
            self.scales[s] & 0xF
        } else {
            self.scales[s - 8] >> 4
        };
        let hi = (self.scales[8 + s % 4] >> (2 * (s / 4))) & 3;
        (lo | (hi << 4)) as i32 - 32
    }

    /// The quant of element `e` (0..256), -4..3.
    #[inline(always)]
    fn quant(&self, e: usize) -> i32 {
        let (n, j, l) = (e / 128, (e % 128) / 32, e % 32);
        let low = ((self.qs[32 * n + l] >> (2 * j)) & 3) as i32;
        let high_set = self.hmask[l] & (1 << (4 * n + j)) != 0;
        if high_set {
            low
        } else {
            low - 4
        }
    }
}

pub(crate) fn dequantize(src: &[BlockQ3K], dst: &mut [f32], _simd: Simd) {
    // Scalar at every level (no SIMD twin yet).
    dequantize_scalar(src, dst);
}

pub(crate) fn vec_dot(w: &[BlockQ3K], act: &[BlockQ8K], _simd: Simd) -> f32 {
    // Scalar at every level (no SIMD twin yet).
    vec_dot_scalar(w, act)
}

/// ggml `dequantize_row_q3_K`: `dl = d * (sc - 32)`, then `dl * q`.
pub fn dequantize_scalar(src: &[BlockQ3K], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = f16_le(b.d);
        for (s, ys) in y.chunks_exact_mut(16).enumerate() {
            let dl = d * b.scale(s) as f32;
            for (i, o) in ys.iter_mut().enumerate() {
                *o = dl * b.quant(16 * s + i) as f32;
            }
        }
    }
}

/// Exact integer sums per sub-block, one float multiply per super-block.
pub fn vec_dot_scalar(w: &[BlockQ3K], act: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(act) {
        let mut sumi = 0i32;
        for s in 0..QK_K / 16 {
            let dot: i32 = (16 * s..16 * s + 16)
                .map(|e| x.quant(e) * y.qs[e] as i32)
                .sum();
            sumi += x.scale(s) * dot;
        }
        sum += f16_le(x.d) * y.d() * sumi as f32;
    }
    sum
}
