//! Q2_K kernels, AVX2 and AVX-512.

use super::{broadcast_i16_ctrl, f16c_pair, hsum_epi32};

/// Sum of the four i32 lanes of `v` (exact).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_epi32_128(v: __m128i) -> i32 {
    let s = _mm_add_epi32(v, _mm_unpackhi_epi64(v, v));
    _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01)))
}
use crate::quant::formats::q2_k::*;
use crate::quant::formats::q8_k::BlockQ8K;
use std::arch::x86_64::*;

/// [`super::vec_dot_by_halves`]'s arithmetic: `maddubs` of the 2-bit quants (0..3) with the
/// activations, `madd` with the 4-bit sub-block scale per 128-bit lane (one 16-element
/// sub-block per lane), the mins as `madd`s of the mins with the Q8_K `bsums`; the integers
/// of each half summed exactly, the float steps done as the twin does them.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) unsafe fn vec_dot_avx2<const CHUNKED: bool>(
    w: &[BlockQ2K],
    act: &[BlockQ8K],
) -> f32 {
    let m4 = _mm_set1_epi8(0x0F);
    let m3 = _mm256_set1_epi8(3);
    // Vector j of a half covers sub-blocks 2j (low lane) and 2j+1 (high lane) of that half.
    let ctrl = [
        broadcast_i16_ctrl(0, 1),
        broadcast_i16_ctrl(2, 3),
        broadcast_i16_ctrl(4, 5),
        broadcast_i16_ctrl(6, 7),
    ];
    let (mut acc, mut mins) = (0.0f32, 0.0f32);
    for (x, y) in w.iter().zip(act) {
        let (dw, dminw) = f16c_pair(x.d, x.dmin);
        let d = dw * y.d();
        let dmin = dminw * y.d();
        // SAFETY: loads read `x.scales` (16 bytes), `y.bsums` (32), `x.qs` at 32n (32 bytes,
        // n < 2) and `y.qs` at 128n + 32j (32 bytes, j < 4), all in bounds.
        unsafe {
            let packed = _mm_loadu_si128(x.scales.as_ptr().cast());
            let mins16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), m4));
            let sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(packed, m4));
            let bs = _mm256_loadu_si256(y.bsums.as_ptr().cast());
            // Lanes 0-3: sub-blocks 0-7 (first half); lanes 4-7: the second half.
            let prod_m = _mm256_madd_epi16(mins16, bs);
            let imin = [
                hsum_epi32_128(_mm256_castsi256_si128(prod_m)),
                hsum_epi32_128(_mm256_extracti128_si256(prod_m, 1)),
            ];
            let halves = [
                _mm256_broadcastsi128_si256(_mm256_castsi256_si128(sc16)),
                _mm256_broadcastsi128_si256(_mm256_extracti128_si256(sc16, 1)),
            ];
            let mut isum = [0i32; 2];
            for (n, sc) in halves.iter().enumerate() {
                let mut sumi = _mm256_setzero_si256();
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
                isum[n] = hsum_epi32(sumi);
            }
            if CHUNKED {
                for n in 0..2 {
                    acc = (isum[n] as f32).mul_add(d, acc);
                    mins = (imin[n] as f32).mul_add(dmin, mins);
                }
            } else {
                acc = ((isum[0] + isum[1]) as f32).mul_add(d, acc);
                mins = ((imin[0] + imin[1]) as f32).mul_add(dmin, mins);
            }
        }
    }
    acc - mins
}
