//! Q3_K kernels, AVX2 and AVX-512.

use super::{broadcast_i16_ctrl, f16c, LaneDot};
use crate::quant::formats::q3_k::*;
use crate::quant::formats::q8_k::BlockQ8K;
use std::arch::x86_64::*;

/// [`super::vec_dot_scalar`]'s arithmetic (llama.cpp's): the low two bits and the "high bit
/// clear" 4 are dotted separately by `maddubs` (pair sums at most 2·4·128) and subtracted,
/// which leaves the signed quants' products exact in every 16-bit lane; `madd` applies the
/// signed sub-block scale per 128-bit lane. `TILED`: [`super::vec_dot_tiled_scalar`]'s
/// arithmetic from the same integer sums.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) unsafe fn vec_dot_avx2<const TILED: bool>(
    w: &[BlockQ3K],
    act: &[BlockQ8K],
) -> f32 {
    let m3 = _mm256_set1_epi8(3);
    let one = _mm256_set1_epi8(1);
    let off = _mm_set1_epi8(32);
    let ctrl = [
        broadcast_i16_ctrl(0, 1),
        broadcast_i16_ctrl(2, 3),
        broadcast_i16_ctrl(4, 5),
        broadcast_i16_ctrl(6, 7),
    ];
    let mut dot = LaneDot::<TILED>::new();
    for (x, y) in w.iter().zip(act) {
        let scales = x.unpack_scales();
        // SAFETY: loads read `scales` (16 bytes), `y.bsums` (32), `x.hmask` (32), `x.qs` at
        // 32n (32 bytes, n < 2) and `y.qs` at 128n + 32j (32 bytes, j < 4), all in bounds.
        unsafe {
            let sc = _mm_sub_epi8(_mm_loadu_si128(scales.as_ptr().cast()), off);
            let sc16 = _mm256_cvtepi8_epi16(sc);
            let halves = [
                _mm256_broadcastsi128_si256(_mm256_castsi256_si128(sc16)),
                _mm256_broadcastsi128_si256(_mm256_extracti128_si256(sc16, 1)),
            ];
            let hm = _mm256_loadu_si256(x.hmask.as_ptr().cast());
            let mut sumi = _mm256_setzero_si256();
            for (n, sc) in halves.iter().enumerate() {
                let q = _mm256_loadu_si256(x.qs.as_ptr().add(32 * n).cast());
                for (j, ctrl) in ctrl.iter().enumerate() {
                    let shift = _mm_cvtsi32_si128(2 * j as i32);
                    let low = _mm256_and_si256(_mm256_srl_epi16(q, shift), m3);
                    // Bit 4n+j of each hmask byte, as 0 or 1 per byte (16-bit shift, then
                    // masked to bit 0 of each byte, which only receives its own byte's bit).
                    let hshift = _mm_cvtsi32_si128((4 * n + j) as i32);
                    let high = _mm256_and_si256(_mm256_srl_epi16(hm, hshift), one);
                    // 4 where the high bit is clear, else 0 (bytes hold 0 or 1: no carry).
                    let minus = _mm256_slli_epi16(_mm256_xor_si256(high, one), 2);
                    let a = _mm256_loadu_si256(y.qs.as_ptr().add(128 * n + 32 * j).cast());
                    let p = _mm256_sub_epi16(
                        _mm256_maddubs_epi16(low, a),
                        _mm256_maddubs_epi16(minus, a),
                    );
                    let p = _mm256_madd_epi16(p, _mm256_shuffle_epi8(*sc, *ctrl));
                    sumi = _mm256_add_epi32(sumi, p);
                }
            }
            dot.add(sumi, f16c(x.d), y.d());
        }
    }
    dot.total()
}
