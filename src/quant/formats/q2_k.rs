//! Q2_K: 16 sub-blocks of 16 two-bit quants, each with a 4-bit scale and 4-bit min;
//! weight = `d * sc * q - dmin * m`, q in 0..3.

use super::q8_k::BlockQ8K;
use crate::quant::block::{f16_le, ByteBlock};
use crate::quant::types::QK_K;

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

const _: () = assert!(size_of::<BlockQ2K>() == 84);
const _: () = assert!(align_of::<BlockQ2K>() == 1);
// SAFETY: repr(C) of byte arrays only: alignment 1, no padding, every bit pattern valid.
unsafe impl ByteBlock for BlockQ2K {
    const ELEMENTS: usize = QK_K;
}

impl BlockQ2K {
    /// The quant of element `e` (0..256), 0..3.
    #[inline(always)]
    pub(crate) fn quant(&self, e: usize) -> u8 {
        let (n, j, l) = (e / 128, (e % 128) / 32, e % 32);
        (self.qs[32 * n + l] >> (2 * j)) & 3
    }
}

/// ggml `dequantize_row_q2_K`: `dl = d * sc`, `ml = dmin * m`, then `dl * q - ml`.
pub fn dequantize_scalar(src: &[BlockQ2K], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = f16_le(b.d);
        let min = f16_le(b.dmin);
        // Element 128n + 32j + l is bits 2j..2j+2 of qs[32n + l]; its sub-block is (that)/16.
        for n in 0..2 {
            let q = &b.qs[32 * n..32 * n + 32];
            for j in 0..4 {
                for h in 0..2 {
                    let sc = b.scales[8 * n + 2 * j + h];
                    let dl = d * (sc & 0xF) as f32;
                    let ml = min * (sc >> 4) as f32;
                    let out = &mut y[128 * n + 32 * j + 16 * h..][..16];
                    for (o, &q) in out.iter_mut().zip(&q[16 * h..16 * h + 16]) {
                        *o = dl * ((q >> (2 * j)) & 3) as f32 - ml;
                    }
                }
            }
        }
    }
}

/// The exact integers of one 128-element half `n` of a super-block: `Σ_s sc_s Σ q·a` and
/// `Σ_s m_s · bsum_s` over its eight 16-element sub-blocks.
pub(crate) fn half_sums(x: &BlockQ2K, y: &BlockQ8K, n: usize) -> (i32, i32) {
    let (mut isum, mut imin) = (0i32, 0i32);
    for s in 8 * n..8 * n + 8 {
        let dot: i32 = (16 * s..16 * s + 16)
            .map(|e| x.quant(e) as i32 * y.qs[e] as i32)
            .sum();
        isum += (x.scales[s] & 0xF) as i32 * dot;
        imin += (x.scales[s] >> 4) as i32 * y.bsum(s);
    }
    (isum, imin)
}

/// Plain-Rust reference for [`vec_dot`], in the arithmetic of llama.cpp's repacked Q2_K
/// kernels (which it uses on AVX-512 CPUs for every matrix with a multiple of 8 rows): per
/// super-block the exact integers `isum` and `imin`, two fused running sums
/// `acc = isum · (d_w·d_a) + acc`, `mins = imin · (dmin_w·d_a) + mins`, and `acc − mins` at the
/// end.
pub fn vec_dot_scalar(w: &[BlockQ2K], act: &[BlockQ8K]) -> f32 {
    vec_dot_by_halves::<false>(w, act)
}

/// Plain-Rust reference for [`vec_dot_chunked`]: as [`vec_dot_scalar`], with the running sums
/// stepped per 128-element half of each super-block.
pub fn vec_dot_chunked_scalar(w: &[BlockQ2K], act: &[BlockQ8K]) -> f32 {
    vec_dot_by_halves::<true>(w, act)
}

pub(crate) fn vec_dot_by_halves<const CHUNKED: bool>(w: &[BlockQ2K], act: &[BlockQ8K]) -> f32 {
    let (mut acc, mut mins) = (0.0f32, 0.0f32);
    for (x, y) in w.iter().zip(act) {
        let d = f16_le(x.d) * y.d();
        let dmin = f16_le(x.dmin) * y.d();
        let halves = [half_sums(x, y, 0), half_sums(x, y, 1)];
        if CHUNKED {
            for (isum, imin) in halves {
                acc = (isum as f32).mul_add(d, acc);
                mins = (imin as f32).mul_add(dmin, mins);
            }
        } else {
            let isum = halves[0].0 + halves[1].0;
            let imin = halves[0].1 + halves[1].1;
            acc = (isum as f32).mul_add(d, acc);
            mins = (imin as f32).mul_add(dmin, mins);
        }
    }
    acc - mins
}
