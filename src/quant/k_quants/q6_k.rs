//! Q6_K: 16 sub-blocks of 16 six-bit quants stored with an offset of 32 (`q - 32` in -32..31),
//! each with a signed 8-bit scale; weight = `d * sc * (q - 32)`.

use super::{f16_le, BlockQ8K, RawBlock, Simd, QK_K};
use crate::quant::hsum8;

/// ggml `block_q6_K`, 210 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ6K {
    /// Low 4 bits: for each half `n` of 128 elements, byte `64n + l` holds element `128n + l`
    /// (low nibble) and `128n + 64 + l` (high nibble), for l in 0..64.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits: byte `32n + l` holds, in bit pairs 0-1, 2-3, 4-5, 6-7, elements
    /// `128n + l`, `+32`, `+64`, `+96`.
    pub qh: [u8; QK_K / 4],
    /// Sub-block scales (i8).
    pub scales: [i8; QK_K / 16],
    /// Super-block scale (f16).
    pub d: [u8; 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);
const _: () = assert!(std::mem::align_of::<BlockQ6K>() == 1);
// SAFETY: repr(C) of byte arrays only: alignment 1, no padding, every bit pattern valid.
unsafe impl RawBlock for BlockQ6K {}

impl BlockQ6K {
    #[inline(always)]
    fn d(&self) -> f32 {
        f16_le(self.d)
    }

    /// The 256 quants with the offset removed, in element order.
    pub(crate) fn quants(&self) -> [i8; QK_K] {
        let mut q = [0i8; QK_K];
        for n in 0..2 {
            let ql = &self.ql[64 * n..64 * n + 64];
            let qh = &self.qh[32 * n..32 * n + 32];
            let out = &mut q[128 * n..128 * n + 128];
            for l in 0..32 {
                out[l] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
                out[l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                out[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                out[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
            }
        }
        q
    }
}

pub(crate) fn dequantize(src: &[BlockQ6K], dst: &mut [f32], simd: Simd) {
    match simd {
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 | Simd::Avx512 => {
            // SAFETY: `simd` passed `Simd::is_supported` (see `runnable`), and both levels
            // include AVX2, FMA and F16C.
            unsafe { x86::dequantize_avx2(src, dst) }
        }
        _ => dequantize_scalar(src, dst),
    }
}

/// The dot product in the arithmetic of llama.cpp's `ggml_vec_dot_q6_K_q8_K` (x86), which it uses
/// for fewer than 8 activation columns: see [`vec_dot_scalar`].
pub(crate) fn vec_dot(w: &[BlockQ6K], act: &[BlockQ8K], simd: Simd) -> f32 {
    vec_dot_by::<false>(w, act, simd)
}

/// The dot product in the arithmetic of llama.cpp's tiled K-quant matrix multiply, which it uses
/// for 8 or more activation columns: see [`vec_dot_tiled_scalar`].
pub(crate) fn vec_dot_tiled(w: &[BlockQ6K], act: &[BlockQ8K], simd: Simd) -> f32 {
    vec_dot_by::<true>(w, act, simd)
}

fn vec_dot_by<const TILED: bool>(w: &[BlockQ6K], act: &[BlockQ8K], simd: Simd) -> f32 {
    match simd {
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => {
            // SAFETY: `simd` passed `Simd::is_supported`: AVX-512 F/BW/VL/VNNI and AVX2 present.
            unsafe { x86::vec_dot_avx512::<TILED>(w, act) }
        }
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => {
            // SAFETY: `simd` passed `Simd::is_supported`: AVX2, FMA and F16C present.
            unsafe { x86::vec_dot_avx2::<TILED>(w, act) }
        }
        _ if TILED => vec_dot_tiled_scalar(w, act),
        _ => vec_dot_scalar(w, act),
    }
}

/// ggml `dequantize_row_q6_K`: `(d * sc) * (q - 32)`, left to right as in C.
pub fn dequantize_scalar(src: &[BlockQ6K], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d();
        let q = b.quants();
        for (s, (ys, qs)) in y.chunks_exact_mut(16).zip(q.chunks_exact(16)).enumerate() {
            let ds = d * b.scales[s] as f32;
            for (o, &q) in ys.iter_mut().zip(qs) {
                *o = ds * q as f32;
            }
        }
    }
}

/// [`vec_dot_tiled`] of one weight row with four activation columns.
pub(crate) fn vec_dot_tiled_x4(w: &[BlockQ6K], acts: [&[BlockQ8K]; 4], simd: Simd) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    if simd == Simd::Avx512 && acts.iter().all(|a| a.len() >= w.len()) {
        // SAFETY: `simd` passed `Simd::is_supported`: AVX-512 F/BW/VL/VNNI and AVX2 present;
        // every column has at least as many blocks as the row (checked above).
        return unsafe { x86::vec_dot_tiled_x4_avx512(w, acts) };
    }
    acts.map(|a| vec_dot_tiled(w, a, simd))
}

/// Plain-Rust reference for [`vec_dot`]: eight integer lanes per super-block, lane `l` holding
/// `Σ sc·q·a` over the elements whose index mod 32 is in `4l..4l+4` (quants unsigned, 0..63)
/// minus `32·(sc_2l·bsum_2l + sc_2l+1·bsum_2l+1)`; each lane accumulates
/// `fma(d_w·d_a, lane, acc)` and the lanes are reduced as [`hsum8`].
pub fn vec_dot_scalar(w: &[BlockQ6K], act: &[BlockQ8K]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (x, y) in w.iter().zip(act) {
        let q = x.quants();
        let mut lanes = [0i32; 8];
        for (e, (&q, &a)) in q.iter().zip(&y.qs).enumerate() {
            let unsigned = i32::from(q) + 32;
            lanes[(e % 32) / 4] += i32::from(x.scales[e / 16]) * unsigned * i32::from(a);
        }
        let d = y.d() * x.d();
        for (l, (acc, lane)) in acc.iter_mut().zip(lanes).enumerate() {
            let corr = i32::from(x.scales[2 * l]) * y.bsum(2 * l)
                + i32::from(x.scales[2 * l + 1]) * y.bsum(2 * l + 1);
            *acc = d.mul_add((lane - 32 * corr) as f32, *acc);
        }
    }
    hsum8(acc)
}

/// Plain-Rust reference for [`vec_dot_tiled`]: per super-block the exact integer
/// `Σ_s sc_s Σ (q − 32)·a`, then `acc = (isum · d_w) · d_a + acc` with the last multiply and the
/// add fused (as GCC compiles llama.cpp's separate multiply and add intrinsics).
pub fn vec_dot_tiled_scalar(w: &[BlockQ6K], act: &[BlockQ8K]) -> f32 {
    let mut acc = 0.0f32;
    for (x, y) in w.iter().zip(act) {
        acc = (superblock_dot(x, y) as f32 * x.d()).mul_add(y.d(), acc);
    }
    acc
}

/// The exact integer `Σ_s sc_s · Σ_{e in s} (q_e − 32) · a_e` of one super-block.
fn superblock_dot(x: &BlockQ6K, y: &BlockQ8K) -> i32 {
    let q = x.quants();
    (0..QK_K / 16)
        .map(|s| {
            let dot: i32 = (16 * s..16 * s + 16)
                .map(|e| i32::from(q[e]) * i32::from(y.qs[e]))
                .sum();
            i32::from(x.scales[s]) * dot
        })
        .sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::x86::{broadcast_i16_ctrl, f16c, hsum_epi32, LaneDot};
    use super::*;
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
    pub(super) unsafe fn dequantize_avx2(src: &[BlockQ6K], dst: &mut [f32]) {
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
    pub(super) unsafe fn vec_dot_avx2<const TILED: bool>(w: &[BlockQ6K], act: &[BlockQ8K]) -> f32 {
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
    pub(super) unsafe fn vec_dot_avx512<const TILED: bool>(
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
                    sumi =
                        _mm512_dpwssd_epi32(sumi, pb, _mm512_permutexvar_epi16(idx[2 * n + 1], sc));
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
    pub(super) unsafe fn vec_dot_tiled_x4_avx512(
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
}
