//! Q5_K kernels, AVX2 and AVX-512.

use super::{broadcast_i16_ctrl, f16c_pair, hsum_epi32, hsum_ps};
use crate::quant::formats::q4_k::unpack_scales_mins;
use crate::quant::formats::q5_k::*;
use crate::quant::formats::q8_k::BlockQ8K;
use std::arch::x86_64::*;

/// [`super::vec_dot_scalar`]'s arithmetic (llama.cpp's): eight integer lanes per super-block
/// from `maddubs` + `madd` with the sub-block scales, the fifth bit OR-ed in as 16 (quants
/// 0..31: `maddubs` pair sums at most 2·31·128, no saturation), one fused multiply-add per
/// lane; the mins' integer sum added to one scalar by a fused multiply-add. `TILED`:
/// [`super::vec_dot_tiled_scalar`]'s arithmetic from the same integer sums.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) unsafe fn vec_dot_avx2<const TILED: bool>(
    w: &[BlockQ5K],
    act: &[BlockQ8K],
) -> f32 {
    let mask = _mm256_set1_epi8(0x0F);
    let sixteen = _mm256_set1_epi8(16);
    let ctrl: [__m256i; 8] = [
        broadcast_i16_ctrl(0, 0),
        broadcast_i16_ctrl(1, 1),
        broadcast_i16_ctrl(2, 2),
        broadcast_i16_ctrl(3, 3),
        broadcast_i16_ctrl(4, 4),
        broadcast_i16_ctrl(5, 5),
        broadcast_i16_ctrl(6, 6),
        broadcast_i16_ctrl(7, 7),
    ];
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0.0f32;
    let mut tiled = 0.0f32;
    for (x, y) in w.iter().zip(act) {
        let (dw, dminw) = f16c_pair(x.d, x.dmin);
        let d = y.d() * dw;
        let dmin = -y.d() * dminw;
        let sm = unpack_scales_mins(&x.scales);
        // SAFETY: every load below reads within `x.qs` (128 bytes), `x.qh` (32 bytes),
        // `y.qs` (256 bytes), `sm` (16 bytes) or `y.bsums` (32 bytes), at the offsets written.
        unsafe {
            let m16 = _mm_cvtepu8_epi16(_mm_loadl_epi64(sm.as_ptr().add(8).cast()));
            let bs = _mm256_loadu_si256(y.bsums.as_ptr().cast());
            let pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
            let prod_m = _mm_madd_epi16(m16, pairs);
            let s = _mm_add_epi32(prod_m, _mm_unpackhi_epi64(prod_m, prod_m));
            let summ = _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01)));
            if !TILED {
                mins = dmin.mul_add(summ as f32, mins);
            }
            let sc =
                _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_loadl_epi64(sm.as_ptr().cast())));
            let qh = _mm256_loadu_si256(x.qh.as_ptr().cast());
            let mut bit = _mm256_set1_epi8(1);
            let mut sumi = _mm256_setzero_si256();
            for c in 0..4 {
                let q = _mm256_loadu_si256(x.qs.as_ptr().add(32 * c).cast());
                let hlo =
                    _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit), sixteen);
                bit = _mm256_add_epi8(bit, bit);
                let hhi =
                    _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit), sixteen);
                bit = _mm256_add_epi8(bit, bit);
                let qlo = _mm256_or_si256(_mm256_and_si256(q, mask), hlo);
                let qhi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), mask), hhi);
                let a0 = _mm256_loadu_si256(y.qs.as_ptr().add(64 * c).cast());
                let a1 = _mm256_loadu_si256(y.qs.as_ptr().add(64 * c + 32).cast());
                let p0 = _mm256_madd_epi16(
                    _mm256_shuffle_epi8(sc, ctrl[2 * c]),
                    _mm256_maddubs_epi16(qlo, a0),
                );
                let p1 = _mm256_madd_epi16(
                    _mm256_shuffle_epi8(sc, ctrl[2 * c + 1]),
                    _mm256_maddubs_epi16(qhi, a1),
                );
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
            }
            if TILED {
                let r = (-dminw).mul_add(summ as f32, hsum_epi32(sumi) as f32 * dw);
                tiled = r.mul_add(y.d(), tiled);
            } else {
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
            }
        }
    }
    if TILED {
        tiled
    } else {
        hsum_ps(acc) + mins
    }
}
