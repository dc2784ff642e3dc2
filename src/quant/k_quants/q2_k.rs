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
    // Scalar at every level: dequantization is off the hot path for this type.
    dequantize_scalar(src, dst);
}

pub(crate) fn vec_dot(w: &[BlockQ2K], act: &[BlockQ8K], simd: Simd) -> f32 {
    match simd {
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 | Simd::Avx512 => {
            // SAFETY: `simd` passed `Simd::is_supported`: both levels include AVX2/FMA/F16C.
            unsafe { x86::vec_dot_avx2(w, act) }
        }
        _ => vec_dot_scalar(w, act),
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

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::x86::{broadcast_i16_ctrl, f16c_pair, hsum_ps_256};
    use super::*;
    use std::arch::x86_64::*;

    /// `maddubs` of the 2-bit quants (0..3) with the activations, `madd` with the 4-bit
    /// sub-block scale per 128-bit lane (one 16-element sub-block per lane), and the mins as one
    /// `madd` of the 16 mins with the 16 Q8_K `bsums`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn vec_dot_avx2(w: &[BlockQ2K], act: &[BlockQ8K]) -> f32 {
        let m4 = _mm_set1_epi8(0x0F);
        let m3 = _mm256_set1_epi8(3);
        // Vector j of a half covers sub-blocks 2j (low lane) and 2j+1 (high lane) of that half.
        let ctrl = [
            broadcast_i16_ctrl(0, 1),
            broadcast_i16_ctrl(2, 3),
            broadcast_i16_ctrl(4, 5),
            broadcast_i16_ctrl(6, 7),
        ];
        let mut acc = _mm256_setzero_ps();
        let mut acc_m = _mm256_setzero_ps();
        for (x, y) in w.iter().zip(act) {
            let (dw, dminw) = f16c_pair(x.d, x.dmin);
            let d = y.d() * dw;
            let dmin = -y.d() * dminw;
            // SAFETY: loads read `x.scales` (16 bytes), `y.bsums` (32), `x.qs` at 32n (32 bytes,
            // n < 2) and `y.qs` at 128n + 32j (32 bytes, j < 4), all in bounds.
            unsafe {
                let packed = _mm_loadu_si128(x.scales.as_ptr().cast());
                let mins16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), m4));
                let sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(packed, m4));
                let bs = _mm256_loadu_si256(y.bsums.as_ptr().cast());
                let prod_m = _mm256_madd_epi16(mins16, bs);
                acc_m = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(prod_m), acc_m);
                let halves = [
                    _mm256_broadcastsi128_si256(_mm256_castsi256_si128(sc16)),
                    _mm256_broadcastsi128_si256(_mm256_extracti128_si256(sc16, 1)),
                ];
                let mut sumi = _mm256_setzero_si256();
                for (n, sc) in halves.iter().enumerate() {
                    let q = _mm256_loadu_si256(x.qs.as_ptr().add(32 * n).cast());
                    let qj = [
                        _mm256_and_si256(q, m3),
                        _mm256_and_si256(_mm256_srli_epi16(q, 2), m3),
                        _mm256_and_si256(_mm256_srli_epi16(q, 4), m3),
                        _mm256_and_si256(_mm256_srli_epi16(q, 6), m3),
                    ];
                    for j in 0..4 {
                        let a = _mm256_loadu_si256(y.qs.as_ptr().add(128 * n + 32 * j).cast());
                        let p = _mm256_maddubs_epi16(qj[j], a);
                        let p = _mm256_madd_epi16(p, _mm256_shuffle_epi8(*sc, ctrl[j]));
                        sumi = _mm256_add_epi32(sumi, p);
                    }
                }
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
            }
        }
        hsum_ps_256(acc) + hsum_ps_256(acc_m)
    }
}
