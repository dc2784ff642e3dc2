//! Q6_K kernels, AVX2 and AVX-512.

use super::{broadcast_i16_ctrl, f16c, hsum_epi32, LaneDot};
use crate::quant::formats::q6_k::*;
use crate::quant::formats::q8_k::BlockQ8K;
use crate::quant::types::QK_K;
use std::arch::x86_64::*;

/// The four 32-byte vectors of unsigned 6-bit quants (0..63, offset not removed) of half `n`
/// of a block, in element order: elements 32k .. 32k+32 of the half in vector k.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn unpack_half(b: &BlockQ6K, n: usize) -> [__m256i; 4] {
    let m4 = _mm256_set1_epi8(0x0F);
    let m2 = _mm256_set1_epi8(0x30);
    // SAFETY: n < 2, so ql bytes 64n .. 64n+64 and qh bytes 32n .. 32n+32 are in bounds.
    let (ql0, ql1, qh) = unsafe {
        (
            _mm256_loadu_si256(b.ql.as_ptr().add(64 * n).cast()),
            _mm256_loadu_si256(b.ql.as_ptr().add(64 * n + 32).cast()),
            _mm256_loadu_si256(b.qh.as_ptr().add(32 * n).cast()),
        )
    };
    // 16-bit shifts move bits across the byte boundary, but each result is masked to bits
    // 4-5 of every byte, which only ever receive bits of the same byte.
    let h0 = _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2);
    let h1 = _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2);
    let h2 = _mm256_and_si256(qh, m2);
    let h3 = _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2);
    [
        _mm256_or_si256(_mm256_and_si256(ql0, m4), h0),
        _mm256_or_si256(_mm256_and_si256(ql1, m4), h1),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), h2),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4), h3),
    ]
}

/// Same products as [`dequantize_scalar`] (one `d * sc` per sub-block, then one multiply per
/// element), so bit-identical.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) unsafe fn dequantize_avx2(src: &[BlockQ6K], dst: &mut [f32]) {
    let nb = src.len().min(dst.len() / QK_K);
    let off = _mm256_set1_epi32(32);
    for (i, b) in src[..nb].iter().enumerate() {
        let d = f16c(b.d);
        let out = dst[i * QK_K..].as_mut_ptr();
        for n in 0..2 {
            // SAFETY: n < 2 (see `unpack_half`).
            let q = unsafe { unpack_half(b, n) };
            for (k, q) in q.iter().enumerate() {
                let mut bytes = [0u8; 32];
                // SAFETY: `bytes` is 32 bytes.
                unsafe { _mm256_storeu_si256(bytes.as_mut_ptr().cast(), *q) };
                for h in 0..4 {
                    let e = 128 * n + 32 * k + 8 * h;
                    let ds = _mm256_set1_ps(d * b.scales[e / 16] as f32);
                    // SAFETY: reads bytes 8h .. 8h+8 of `bytes`; writes outputs e .. e+8 of
                    // block i < nb, inside `dst`.
                    unsafe {
                        let v = _mm_loadl_epi64(bytes.as_ptr().add(8 * h).cast());
                        let v = _mm256_sub_epi32(_mm256_cvtepu8_epi32(v), off);
                        _mm256_storeu_ps(out.add(e), _mm256_mul_ps(ds, _mm256_cvtepi32_ps(v)));
                    }
                }
            }
        }
    }
}

/// The offset term of one super-block: Σ_s sc_s · bsum_s as 8 i32 lanes (the quants are
/// dotted unsigned, 0..63, and 32 · this is subtracted once per block instead of per
/// element).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scales_dot_bsums(sc16: __m256i, y: &BlockQ8K) -> __m256i {
    // SAFETY: `bsums` has 32 bytes.
    let bs = unsafe { _mm256_loadu_si256(y.bsums.as_ptr().cast()) };
    _mm256_madd_epi16(sc16, bs)
}

/// Unsigned quants × activations with `maddubs` (pair sums at most 2·63·128 < 2^15, no
/// saturation), then `madd` with the sub-block scale per 128-bit lane (one 16-element
/// sub-block per lane).
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) unsafe fn vec_dot_avx2<const TILED: bool>(
    w: &[BlockQ6K],
    act: &[BlockQ8K],
) -> f32 {
    // Vector k of a half covers sub-blocks 2k (low lane) and 2k+1 (high lane) of that half.
    let ctrl = [
        broadcast_i16_ctrl(0, 1),
        broadcast_i16_ctrl(2, 3),
        broadcast_i16_ctrl(4, 5),
        broadcast_i16_ctrl(6, 7),
    ];
    let mut dot = LaneDot::<TILED>::new();
    for (x, y) in w.iter().zip(act) {
        // SAFETY: `scales` has 16 bytes; every `y.qs` load is at 128n + 32k < 256 - 31.
        unsafe {
            let sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(x.scales.as_ptr().cast()));
            let corr = scales_dot_bsums(sc16, y);
            let halves = [
                _mm256_broadcastsi128_si256(_mm256_castsi256_si128(sc16)),
                _mm256_broadcastsi128_si256(_mm256_extracti128_si256(sc16, 1)),
            ];
            let mut sumi = _mm256_setzero_si256();
            for (n, sc) in halves.iter().enumerate() {
                let q = unpack_half(x, n);
                for k in 0..4 {
                    let a = _mm256_loadu_si256(y.qs.as_ptr().add(128 * n + 32 * k).cast());
                    let p = _mm256_maddubs_epi16(q[k], a);
                    let p = _mm256_madd_epi16(p, _mm256_shuffle_epi8(*sc, ctrl[k]));
                    sumi = _mm256_add_epi32(sumi, p);
                }
            }
            let sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(corr, 5));
            dot.add(sumi, f16c(x.d), y.d());
        }
    }
    dot.total()
}

/// The unsigned 6-bit quants (0..63) of half `n` (< 2) of a block as two 64-byte vectors:
/// elements 128n .. 128n+64 (from the low nibbles of `ql`) and 128n+64 .. 128n+128 (high).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn unpack_half_512(x: &BlockQ6K, n: usize) -> (__m512i, __m512i) {
    let m4 = _mm512_set1_epi8(0x0F);
    let m2 = _mm256_set1_epi8(0x30);
    // SAFETY: n < 2, so `ql` bytes 64n .. 64n+64 and `qh` bytes 32n .. 32n+32 are in bounds.
    let (ql, qh) = unsafe {
        (
            _mm512_loadu_si512(x.ql.as_ptr().add(64 * n).cast()),
            _mm256_loadu_si256(x.qh.as_ptr().add(32 * n).cast()),
        )
    };
    let h0 = _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2);
    let h1 = _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2);
    let h2 = _mm256_and_si256(qh, m2);
    let h3 = _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2);
    let ha = _mm512_inserti64x4(_mm512_castsi256_si512(h0), h1, 1);
    let hb = _mm512_inserti64x4(_mm512_castsi256_si512(h2), h3, 1);
    (
        _mm512_or_si512(_mm512_and_si512(ql, m4), ha),
        _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4), hb),
    )
}

/// AVX-512: 64 elements per step. The 64 `ql` bytes of a half give elements 0..63 (low
/// nibbles) and 64..127 (high nibbles) directly; the high bits are spread from 32 `qh`
/// bytes. `maddubs` + VNNI `vpdpwssd` with a per-128-bit-lane sub-block scale.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(in crate::quant) unsafe fn vec_dot_avx512<const TILED: bool>(
    w: &[BlockQ6K],
    act: &[BlockQ8K],
) -> f32 {
    // Index vectors for vpermw: lane L of step (n, h) takes scale 8n + 4h + L.
    let mut idx = [_mm512_setzero_si512(); 4];
    for (s, idx) in idx.iter_mut().enumerate() {
        let b = 4 * s as i16;
        *idx = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_set_m128i(_mm_set1_epi16(b + 1), _mm_set1_epi16(b))),
            _mm256_set_m128i(_mm_set1_epi16(b + 3), _mm_set1_epi16(b + 2)),
            1,
        );
    }
    let mut dot = LaneDot::<TILED>::new();
    for (x, y) in w.iter().zip(act) {
        // SAFETY: loads read `scales` (16 bytes), `ql` at 64n (64 bytes, n < 2), `qh` at
        // 32n (32 bytes), `y.qs` at 128n and 128n + 64 (64 bytes each), all in bounds.
        unsafe {
            let sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(x.scales.as_ptr().cast()));
            let corr = scales_dot_bsums(sc16, y);
            let sc = _mm512_castsi256_si512(sc16);
            let mut sumi = _mm512_setzero_si512();
            for n in 0..2 {
                let (qa, qb) = unpack_half_512(x, n);
                let aa = _mm512_loadu_si512(y.qs.as_ptr().add(128 * n).cast());
                let ab = _mm512_loadu_si512(y.qs.as_ptr().add(128 * n + 64).cast());
                let pa = _mm512_maddubs_epi16(qa, aa);
                let pb = _mm512_maddubs_epi16(qb, ab);
                sumi = _mm512_dpwssd_epi32(sumi, pa, _mm512_permutexvar_epi16(idx[2 * n], sc));
                sumi = _mm512_dpwssd_epi32(sumi, pb, _mm512_permutexvar_epi16(idx[2 * n + 1], sc));
            }
            let sumi = _mm256_add_epi32(
                _mm512_castsi512_si256(sumi),
                _mm512_extracti64x4_epi64(sumi, 1),
            );
            let sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(corr, 5));
            dot.add(sumi, f16c(x.d), y.d());
        }
    }
    dot.total()
}

/// [`vec_dot_avx512`] with `TILED`, for four activation columns at once: each weight
/// super-block is unpacked once; every column's sum takes the one-column kernel's steps.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(in crate::quant) unsafe fn vec_dot_tiled_x4_avx512(
    w: &[BlockQ6K],
    acts: [&[BlockQ8K]; 4],
) -> [f32; 4] {
    let mut idx = [_mm512_setzero_si512(); 4];
    for (s, idx) in idx.iter_mut().enumerate() {
        let b = 4 * s as i16;
        *idx = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_set_m128i(_mm_set1_epi16(b + 1), _mm_set1_epi16(b))),
            _mm256_set_m128i(_mm_set1_epi16(b + 3), _mm_set1_epi16(b + 2)),
            1,
        );
    }
    let mut tiled = [0.0f32; 4];
    for (b, x) in w.iter().enumerate() {
        let dw = f16c(x.d);
        // SAFETY: loads read `scales` (16 bytes), `ql` at 64n (64 bytes, n < 2), `qh` at
        // 32n (32 bytes), a column's `qs` at 128n and 128n + 64 (64 bytes each), all in
        // bounds; every column has at least `w.len()` blocks (checked by the caller).
        unsafe {
            let sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(x.scales.as_ptr().cast()));
            let sc = _mm512_castsi256_si512(sc16);
            let ys: [&BlockQ8K; 4] = [&acts[0][b], &acts[1][b], &acts[2][b], &acts[3][b]];
            let mut sumi = [_mm512_setzero_si512(); 4];
            for n in 0..2 {
                let (qa, qb) = unpack_half_512(x, n);
                let sca = _mm512_permutexvar_epi16(idx[2 * n], sc);
                let scb = _mm512_permutexvar_epi16(idx[2 * n + 1], sc);
                for (y, sumi) in ys.iter().zip(sumi.iter_mut()) {
                    let aa = _mm512_loadu_si512(y.qs.as_ptr().add(128 * n).cast());
                    let ab = _mm512_loadu_si512(y.qs.as_ptr().add(128 * n + 64).cast());
                    *sumi = _mm512_dpwssd_epi32(*sumi, _mm512_maddubs_epi16(qa, aa), sca);
                    *sumi = _mm512_dpwssd_epi32(*sumi, _mm512_maddubs_epi16(qb, ab), scb);
                }
            }
            for ((y, sumi), tiled) in ys.iter().zip(sumi).zip(tiled.iter_mut()) {
                let corr = scales_dot_bsums(sc16, y);
                let sumi = _mm256_add_epi32(
                    _mm512_castsi512_si256(sumi),
                    _mm512_extracti64x4_epi64(sumi, 1),
                );
                let sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(corr, 5));
                *tiled = (hsum_epi32(sumi) as f32 * dw).mul_add(y.d(), *tiled);
            }
        }
    }
    tiled
}
