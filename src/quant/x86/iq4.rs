//! IQ4_NL and IQ4_XS dot products, AVX2 and AVX-512.

use super::{f16c, f16c_pair, hsum_epi32, LaneDot};
use crate::quant::formats::iq4::*;
use crate::quant::formats::q8_0::BlockQ8_0;
use crate::quant::formats::q8_k::BlockQ8K;
use std::arch::x86_64::*;

/// The 32 signed levels of one 32-element group (16 index bytes at `q`), in element order.
///
/// # Safety
/// `q` must be valid for reading 16 bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn levels32(q: *const u8, table: __m256i) -> __m256i {
    let mask = _mm_set1_epi8(0x0F);
    // SAFETY: the caller guarantees 16 readable bytes at `q`.
    let q = unsafe { _mm_loadu_si128(q.cast()) };
    let lo = _mm_and_si128(q, mask);
    let hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
    _mm256_shuffle_epi8(table, _mm256_set_m128i(hi, lo))
}

/// i8 × i8 products summed in pairs to i16 with `maddubs`, by moving the sign of the level
/// onto the activation (`|w| · sign(a, w)`). Levels are within ±127 and activations from
/// ggml's quantizers within ±127, so pair sums stay within 2·127·127 < 2^15.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn signed_pairs(w: __m256i, a: __m256i) -> __m256i {
    _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w))
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) unsafe fn vec_dot_nl_avx2(w: &[BlockIq4Nl], act: &[BlockQ8_0]) -> f32 {
    // SAFETY: IQ4NL_LEVELS is 16 bytes.
    let table =
        unsafe { _mm256_broadcastsi128_si256(_mm_loadu_si128(IQ4NL_LEVELS.as_ptr().cast())) };
    let ones = _mm256_set1_epi16(1);
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(act) {
        // SAFETY: `x.qs` has 16 bytes, `y.qs` 32.
        let (lv, a) = unsafe {
            (
                levels32(x.qs.as_ptr(), table),
                _mm256_loadu_si256(y.qs.as_ptr().cast()),
            )
        };
        let isum = hsum_epi32(_mm256_madd_epi16(signed_pairs(lv, a), ones));
        let (dx, dy) = f16c_pair(x.d, y.d);
        sum = (isum as f32).mul_add(dx * dy, sum);
    }
    sum
}

/// [`super::vec_dot_xs_scalar`]'s arithmetic (llama.cpp's one-column kernel); `TILED`:
/// [`super::vec_dot_xs_tiled_scalar`]'s from the same integer lanes.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) unsafe fn vec_dot_xs_avx2<const TILED: bool>(
    w: &[BlockIq4Xs],
    act: &[BlockQ8K],
) -> f32 {
    // SAFETY: IQ4NL_LEVELS is 16 bytes.
    let table =
        unsafe { _mm256_broadcastsi128_si256(_mm_loadu_si128(IQ4NL_LEVELS.as_ptr().cast())) };
    let mut dot = LaneDot::<TILED>::new();
    for (x, y) in w.iter().zip(act) {
        let mut sumi = _mm256_setzero_si256();
        for ib in 0..8 {
            // SAFETY: ib < 8: index bytes 16ib .. +16 of 128, activations 32ib .. +32 of 256.
            let (lv, a) = unsafe {
                (
                    levels32(x.qs.as_ptr().add(16 * ib), table),
                    _mm256_loadu_si256(y.qs.as_ptr().add(32 * ib).cast()),
                )
            };
            let scale = _mm256_set1_epi16(x.scale(ib) as i16);
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(signed_pairs(lv, a), scale));
        }
        dot.add(sumi, f16c(x.d), y.d());
    }
    dot.total()
}
