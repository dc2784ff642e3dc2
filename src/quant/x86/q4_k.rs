//! Q4_K kernels, AVX2 and AVX-512.

use super::{broadcast_i16_ctrl, f16c_pair, hsum_epi32};
use crate::quant::formats::q4_k::*;
use crate::quant::formats::q8_k::BlockQ8K;
use crate::quant::types::QK_K;
use std::arch::x86_64::*;

/// Same arithmetic as [`dequantize_scalar`] (separate multiply and subtract, no FMA, so the
/// results are bit-identical), 8 lanes at a time.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) unsafe fn dequantize_avx2(src: &[BlockQ4K], dst: &mut [f32]) {
    let nb = src.len().min(dst.len() / QK_K);
    let mask = _mm_set1_epi8(0x0F);
    for (i, b) in src[..nb].iter().enumerate() {
        let (d, min) = f16c_pair(b.d, b.dmin);
        let out = dst[i * QK_K..].as_mut_ptr();
        for c in 0..4 {
            let (sc1, m1) = scale_min(2 * c, &b.scales);
            let (sc2, m2) = scale_min(2 * c + 1, &b.scales);
            let d1 = _mm256_set1_ps(d * sc1 as f32);
            let m1 = _mm256_set1_ps(min * m1 as f32);
            let d2 = _mm256_set1_ps(d * sc2 as f32);
            let m2 = _mm256_set1_ps(min * m2 as f32);
            for h in 0..4 {
                // SAFETY: bytes 32c+8h .. +8 lie in `qs` (128 bytes); the 8 stores at
                // 64c+8h and 64c+32+8h lie in this block's 256 outputs (i < nb).
                unsafe {
                    let q = _mm_loadl_epi64(b.qs.as_ptr().add(32 * c + 8 * h).cast());
                    let lo = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_and_si128(q, mask)));
                    let hi = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_and_si128(
                        _mm_srli_epi16(q, 4),
                        mask,
                    )));
                    let lo = _mm256_sub_ps(_mm256_mul_ps(d1, lo), m1);
                    let hi = _mm256_sub_ps(_mm256_mul_ps(d2, hi), m2);
                    _mm256_storeu_ps(out.add(64 * c + 8 * h), lo);
                    _mm256_storeu_ps(out.add(64 * c + 32 + 8 * h), hi);
                }
            }
        }
    }
}

/// Lane `i` (< 4) of four i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn lane(v: __m128i, i: usize) -> i32 {
    let mut lanes = [0i32; 4];
    // SAFETY: `lanes` holds four i32.
    unsafe { _mm_storeu_si128(lanes.as_mut_ptr().cast(), v) };
    lanes[i]
}

/// Sum of four i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_epi32_128(v: __m128i) -> i32 {
    let s = _mm_add_epi32(v, _mm_unpackhi_epi64(v, v));
    _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01)))
}

/// The min term of one super-block: Σ_j m_j · (bsum_2j + bsum_2j+1) as 4 i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn mins_dot_bsums(mins: &[u8], y: &BlockQ8K) -> __m128i {
    // SAFETY: `mins` has 8 bytes (bytes 8..16 of the unpacked scales); `bsums` has 32.
    unsafe {
        let m16 = _mm_cvtepu8_epi16(_mm_loadl_epi64(mins.as_ptr().cast()));
        let bs = _mm256_loadu_si256(y.bsums.as_ptr().cast());
        // Pairwise sums: one i16 per 32-element sub-block (|sum| <= 32 * 128, no overflow).
        let pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
        _mm_madd_epi16(m16, pairs)
    }
}

/// ggml's AVX2 scheme: `maddubs` (u8 quants × i8 activations, pairs summed to i16: at most
/// 2·15·128, no saturation), then `madd` with the sub-block scale (i16 → i32), summed in i32
/// per super-block and converted to float once.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) unsafe fn vec_dot_avx2<const CHUNKED: bool>(
    w: &[BlockQ4K],
    act: &[BlockQ8K],
) -> f32 {
    let mask = _mm256_set1_epi8(0x0F);
    let ctrl = [
        broadcast_i16_ctrl(0, 0),
        broadcast_i16_ctrl(1, 1),
        broadcast_i16_ctrl(2, 2),
        broadcast_i16_ctrl(3, 3),
        broadcast_i16_ctrl(4, 4),
        broadcast_i16_ctrl(5, 5),
        broadcast_i16_ctrl(6, 6),
        broadcast_i16_ctrl(7, 7),
    ];
    let (mut acc, mut mins) = (0.0f32, 0.0f32);
    for (x, y) in w.iter().zip(act) {
        let (dw, dminw) = f16c_pair(x.d, x.dmin);
        let sm = unpack_scales_mins(&x.scales);
        // SAFETY: every load below reads within `x.qs` (128 bytes), `y.qs` (256 bytes),
        // `sm` (16 bytes) or `y.bsums` (32 bytes), at the offsets written.
        unsafe {
            let imins = mins_dot_bsums(&sm[8..], y);
            if !CHUNKED {
                mins = (hsum_epi32_128(imins) as f32).mul_add(dminw * y.d(), mins);
            }
            let sc =
                _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_loadl_epi64(sm.as_ptr().cast())));
            let mut sumi = _mm256_setzero_si256();
            for c in 0..4 {
                let q = _mm256_loadu_si256(x.qs.as_ptr().add(32 * c).cast());
                let qlo = _mm256_and_si256(q, mask);
                let qhi = _mm256_and_si256(_mm256_srli_epi16(q, 4), mask);
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
                if CHUNKED {
                    let isum = hsum_epi32(_mm256_add_epi32(p0, p1));
                    acc = (isum as f32).mul_add(dw * y.d(), acc);
                    let imin = lane(imins, c);
                    mins = (imin as f32).mul_add(dminw * y.d(), mins);
                } else {
                    sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
                }
            }
            if !CHUNKED {
                acc = (hsum_epi32(sumi) as f32).mul_add(dw * y.d(), acc);
            }
        }
    }
    acc - mins
}

/// AVX-512: 64 elements (two sub-blocks) per step. The 32 quant bytes are widened to 64
/// (low nibbles, then high nibbles: exactly the element order of 64 activations), one
/// `maddubs` forms i16 pair sums and one VNNI `vpdpwssd` multiplies them by the sub-block
/// scale and accumulates in i32.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(in crate::quant) unsafe fn vec_dot_avx512<const CHUNKED: bool>(
    w: &[BlockQ4K],
    act: &[BlockQ8K],
) -> f32 {
    let mask = _mm512_set1_epi8(0x0F);
    // For chunk c: 128-bit lanes 0-1 (low nibbles) take scale 2c, lanes 2-3 take 2c+1.
    let mut ctrl = [_mm512_setzero_si512(); 4];
    for (c, ctrl) in ctrl.iter_mut().enumerate() {
        let lo = broadcast_i16_ctrl(2 * c as i16, 2 * c as i16);
        let hi = broadcast_i16_ctrl(2 * c as i16 + 1, 2 * c as i16 + 1);
        *ctrl = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    }
    let (mut acc, mut mins) = (0.0f32, 0.0f32);
    for (x, y) in w.iter().zip(act) {
        let (dw, dminw) = f16c_pair(x.d, x.dmin);
        let sm = unpack_scales_mins(&x.scales);
        // SAFETY: every load below reads within `x.qs` (128 bytes), `y.qs` (256 bytes),
        // `sm` (16 bytes) or `y.bsums` (32 bytes), at the offsets written.
        unsafe {
            let imins = mins_dot_bsums(&sm[8..], y);
            if !CHUNKED {
                mins = (hsum_epi32_128(imins) as f32).mul_add(dminw * y.d(), mins);
            }
            let sc = _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(_mm_loadl_epi64(sm.as_ptr().cast())));
            let mut sumi = _mm512_setzero_si512();
            for (c, ctrl) in ctrl.iter().enumerate() {
                let q = _mm256_loadu_si256(x.qs.as_ptr().add(32 * c).cast());
                let q = _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1);
                let q = _mm512_and_si512(q, mask);
                let a = _mm512_loadu_si512(y.qs.as_ptr().add(64 * c).cast());
                let p = _mm512_maddubs_epi16(q, a);
                if CHUNKED {
                    let chunk = _mm512_dpwssd_epi32(
                        _mm512_setzero_si512(),
                        p,
                        _mm512_shuffle_epi8(sc, *ctrl),
                    );
                    acc = (_mm512_reduce_add_epi32(chunk) as f32).mul_add(dw * y.d(), acc);
                    let imin = lane(imins, c);
                    mins = (imin as f32).mul_add(dminw * y.d(), mins);
                } else {
                    sumi = _mm512_dpwssd_epi32(sumi, p, _mm512_shuffle_epi8(sc, *ctrl));
                }
            }
            if !CHUNKED {
                acc = (_mm512_reduce_add_epi32(sumi) as f32).mul_add(dw * y.d(), acc);
            }
        }
    }
    acc - mins
}

/// [`vec_dot_avx512`] with `CHUNKED`, for four activation columns at once: each weight
/// super-block is unpacked once and dotted with the four columns; every column's running
/// sums take the same steps as the one-column kernel's.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(in crate::quant) unsafe fn vec_dot_chunked_x4_avx512(
    w: &[BlockQ4K],
    acts: [&[BlockQ8K]; 4],
) -> [f32; 4] {
    let mask = _mm512_set1_epi8(0x0F);
    let mut ctrl = [_mm512_setzero_si512(); 4];
    for (c, ctrl) in ctrl.iter_mut().enumerate() {
        let lo = broadcast_i16_ctrl(2 * c as i16, 2 * c as i16);
        let hi = broadcast_i16_ctrl(2 * c as i16 + 1, 2 * c as i16 + 1);
        *ctrl = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    }
    let mut acc = [0.0f32; 4];
    let mut mins = [0.0f32; 4];
    for (b, x) in w.iter().enumerate() {
        let (dw, dminw) = f16c_pair(x.d, x.dmin);
        let sm = unpack_scales_mins(&x.scales);
        // SAFETY: every load below reads within `x.qs` (128 bytes), a column's `qs` (256
        // bytes), `sm` (16 bytes) or a column's `bsums` (32 bytes), at the offsets written;
        // every column has at least `w.len()` blocks (checked by the caller).
        unsafe {
            let sc = _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(_mm_loadl_epi64(sm.as_ptr().cast())));
            let ys: [&BlockQ8K; 4] = [&acts[0][b], &acts[1][b], &acts[2][b], &acts[3][b]];
            let imins = [
                mins_dot_bsums(&sm[8..], ys[0]),
                mins_dot_bsums(&sm[8..], ys[1]),
                mins_dot_bsums(&sm[8..], ys[2]),
                mins_dot_bsums(&sm[8..], ys[3]),
            ];
            for (c, ctrl) in ctrl.iter().enumerate() {
                let q = _mm256_loadu_si256(x.qs.as_ptr().add(32 * c).cast());
                let q = _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1);
                let q = _mm512_and_si512(q, mask);
                let scales = _mm512_shuffle_epi8(sc, *ctrl);
                for n in 0..4 {
                    let y = ys[n];
                    let a = _mm512_loadu_si512(y.qs.as_ptr().add(64 * c).cast());
                    let p = _mm512_maddubs_epi16(q, a);
                    let chunk = _mm512_dpwssd_epi32(_mm512_setzero_si512(), p, scales);
                    acc[n] = (_mm512_reduce_add_epi32(chunk) as f32).mul_add(dw * y.d(), acc[n]);
                    mins[n] = (lane(imins[n], c) as f32).mul_add(dminw * y.d(), mins[n]);
                }
            }
        }
    }
    [
        acc[0] - mins[0],
        acc[1] - mins[1],
        acc[2] - mins[2],
        acc[3] - mins[3],
    ]
}
