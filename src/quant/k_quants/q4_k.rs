//! Q4_K: 8 sub-blocks of 32 four-bit quants `q`, each with a 6-bit scale `sc` and 6-bit min `m`;
//! weight = `d * sc * q - dmin * m`.

use super::{f16_le, BlockQ8K, RawBlock, Simd, QK_K};

/// ggml `block_q4_K`, 144 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ4K {
    /// Super-block scale for the sub-block scales (f16).
    pub d: [u8; 2],
    /// Super-block scale for the sub-block mins (f16).
    pub dmin: [u8; 2],
    /// 8 scales and 8 mins of 6 bits, packed as in [`scale_min`].
    pub scales: [u8; 12],
    /// Quants: byte `32*c + l` holds element `64*c + l` (low nibble) and `64*c + 32 + l` (high).
    pub qs: [u8; QK_K / 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);
const _: () = assert!(std::mem::align_of::<BlockQ4K>() == 1);
// SAFETY: repr(C) of byte arrays only: alignment 1, no padding, every bit pattern valid.
unsafe impl RawBlock for BlockQ4K {}

/// ggml `get_scale_min_k4`: scale and min of sub-block `j` (0..8) from the 12 packed bytes.
/// Sub-blocks 0..3 use the low 6 bits of bytes `j` and `j+4`; sub-blocks 4..7 take their low 4
/// bits from byte `j+4` and their top 2 bits from the spare top bits of bytes `j-4` and `j`.
#[inline(always)]
pub(crate) fn scale_min(j: usize, s: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// All 8 scales (bytes 0..8) and 8 mins (bytes 8..16) at once with 32-bit masks, equal to
/// [`scale_min`] for every `j` (shared with Q5_K, which packs them the same way).
#[inline(always)]
pub(crate) fn unpack_scales_mins(s: &[u8; 12]) -> [u8; 16] {
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    let a0 = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    let a1 = u32::from_le_bytes([s[4], s[5], s[6], s[7]]);
    let a2 = u32::from_le_bytes([s[8], s[9], s[10], s[11]]);
    let scales_lo = a0 & LOW6;
    let mins_lo = a1 & LOW6;
    let scales_hi = (a2 & LOW4) | (((a0 >> 6) & LOW2) << 4);
    let mins_hi = ((a2 >> 4) & LOW4) | (((a1 >> 6) & LOW2) << 4);
    let mut out = [0u8; 16];
    out[0..4].copy_from_slice(&scales_lo.to_le_bytes());
    out[4..8].copy_from_slice(&scales_hi.to_le_bytes());
    out[8..12].copy_from_slice(&mins_lo.to_le_bytes());
    out[12..16].copy_from_slice(&mins_hi.to_le_bytes());
    out
}

impl BlockQ4K {
    #[inline(always)]
    fn d(&self) -> f32 {
        f16_le(self.d)
    }
    #[inline(always)]
    fn dmin(&self) -> f32 {
        f16_le(self.dmin)
    }
}

pub(crate) fn dequantize(src: &[BlockQ4K], dst: &mut [f32], simd: Simd) {
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

/// The dot product in the arithmetic of llama.cpp's repacked single-column kernel
/// (`ggml_gemv_q4_K_8x8_q8_K`): see [`vec_dot_scalar`].
pub(crate) fn vec_dot(w: &[BlockQ4K], act: &[BlockQ8K], simd: Simd) -> f32 {
    vec_dot_by::<false>(w, act, simd)
}

/// The dot product in the arithmetic of llama.cpp's repacked four-column kernel
/// (`ggml_gemm_q4_K_8x8_q8_K`), which it uses for the activation columns in whole groups of four:
/// see [`vec_dot_chunked_scalar`].
pub(crate) fn vec_dot_chunked(w: &[BlockQ4K], act: &[BlockQ8K], simd: Simd) -> f32 {
    vec_dot_by::<true>(w, act, simd)
}

/// [`vec_dot_chunked`] of one weight row with four activation columns.
pub(crate) fn vec_dot_chunked_x4(w: &[BlockQ4K], acts: [&[BlockQ8K]; 4], simd: Simd) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    if simd == Simd::Avx512 && acts.iter().all(|a| a.len() >= w.len()) {
        // SAFETY: `simd` passed `Simd::is_supported`: AVX-512 F/BW/VL/VNNI and AVX2 present;
        // every column has at least as many blocks as the row (checked above).
        return unsafe { x86::vec_dot_chunked_x4_avx512(w, acts) };
    }
    acts.map(|a| vec_dot_chunked(w, a, simd))
}

fn vec_dot_by<const CHUNKED: bool>(w: &[BlockQ4K], act: &[BlockQ8K], simd: Simd) -> f32 {
    match simd {
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => {
            // SAFETY: `simd` passed `Simd::is_supported`: AVX-512 F/BW/VL/VNNI and AVX2 present.
            unsafe { x86::vec_dot_avx512::<CHUNKED>(w, act) }
        }
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => {
            // SAFETY: `simd` passed `Simd::is_supported`: AVX2, FMA and F16C present.
            unsafe { x86::vec_dot_avx2::<CHUNKED>(w, act) }
        }
        _ if CHUNKED => vec_dot_chunked_scalar(w, act),
        _ => vec_dot_scalar(w, act),
    }
}

/// ggml `dequantize_row_q4_K`: `d1 = d * sc`, `m1 = dmin * m`, then `d1 * q - m1`.
pub fn dequantize_scalar(src: &[BlockQ4K], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d();
        let min = b.dmin();
        for c in 0..4 {
            let (sc1, m1) = scale_min(2 * c, &b.scales);
            let (sc2, m2) = scale_min(2 * c + 1, &b.scales);
            let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
            let q = &b.qs[32 * c..32 * c + 32];
            let (lo, hi) = y[64 * c..64 * c + 64].split_at_mut(32);
            for l in 0..32 {
                lo[l] = d1 * (q[l] & 0xF) as f32 - m1;
                hi[l] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
}

/// Plain-Rust reference for [`vec_dot`], in the arithmetic of llama.cpp's repacked Q4_K kernels
/// (`ggml_gemv/gemm_q4_K_8x8_q8_K`, which it uses on x86 for every matrix with a multiple of 8
/// rows, whatever the column count): per super-block the exact integers
/// `isum = Σ_j sc_j (q_j · a_j)` and `imin = Σ_j m_j Σ a_j` (`Σ a_j` from the Q8_K `bsums`), two
/// fused running sums `acc = isum · (d_w·d_a) + acc`, `mins = imin · (dmin_w·d_a) + mins`, and
/// `acc − mins` at the end.
pub fn vec_dot_scalar(w: &[BlockQ4K], act: &[BlockQ8K]) -> f32 {
    let (mut acc, mut mins) = (0.0f32, 0.0f32);
    for (x, y) in w.iter().zip(act) {
        let sm = unpack_scales_mins(&x.scales);
        let mut isum = 0i32;
        for c in 0..4 {
            let q = &x.qs[32 * c..32 * c + 32];
            let a = &y.qs[64 * c..64 * c + 64];
            let (mut lo, mut hi) = (0i32, 0i32);
            for l in 0..32 {
                lo += (q[l] & 0xF) as i32 * a[l] as i32;
                hi += (q[l] >> 4) as i32 * a[32 + l] as i32;
            }
            isum += sm[2 * c] as i32 * lo + sm[2 * c + 1] as i32 * hi;
        }
        let imin: i32 = (0..8)
            .map(|j| sm[8 + j] as i32 * (y.bsum(2 * j) + y.bsum(2 * j + 1)))
            .sum();
        acc = (isum as f32).mul_add(x.d() * y.d(), acc);
        mins = (imin as f32).mul_add(x.dmin() * y.d(), mins);
    }
    acc - mins
}

/// Plain-Rust reference for [`vec_dot_chunked`]: as [`vec_dot_scalar`], but the two fused
/// running sums take one step per 64 elements (a pair of sub-blocks) instead of per super-block.
pub fn vec_dot_chunked_scalar(w: &[BlockQ4K], act: &[BlockQ8K]) -> f32 {
    let (mut acc, mut mins) = (0.0f32, 0.0f32);
    for (x, y) in w.iter().zip(act) {
        let sm = unpack_scales_mins(&x.scales);
        for c in 0..4 {
            let q = &x.qs[32 * c..32 * c + 32];
            let a = &y.qs[64 * c..64 * c + 64];
            let (mut lo, mut hi) = (0i32, 0i32);
            for l in 0..32 {
                lo += (q[l] & 0xF) as i32 * a[l] as i32;
                hi += (q[l] >> 4) as i32 * a[32 + l] as i32;
            }
            let isum = sm[2 * c] as i32 * lo + sm[2 * c + 1] as i32 * hi;
            let imin = sm[8 + 2 * c] as i32 * (y.bsum(4 * c) + y.bsum(4 * c + 1))
                + sm[8 + 2 * c + 1] as i32 * (y.bsum(4 * c + 2) + y.bsum(4 * c + 3));
            acc = (isum as f32).mul_add(x.d() * y.d(), acc);
            mins = (imin as f32).mul_add(x.dmin() * y.d(), mins);
        }
    }
    acc - mins
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::x86::{broadcast_i16_ctrl, f16c_pair, hsum_epi32};
    use super::*;
    use std::arch::x86_64::*;

    /// Same arithmetic as [`dequantize_scalar`] (separate multiply and subtract, no FMA, so the
    /// results are bit-identical), 8 lanes at a time.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dequantize_avx2(src: &[BlockQ4K], dst: &mut [f32]) {
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
    pub(super) unsafe fn vec_dot_avx2<const CHUNKED: bool>(
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
                let sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_loadl_epi64(
                    sm.as_ptr().cast(),
                )));
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
    pub(super) unsafe fn vec_dot_avx512<const CHUNKED: bool>(
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
                let sc =
                    _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(_mm_loadl_epi64(sm.as_ptr().cast())));
                let mut sumi = _mm512_setzero_si512();
                for (c, ctrl) in ctrl.iter().enumerate() {
                    let q = _mm256_loadu_si256(x.qs.as_ptr().add(32 * c).cast());
                    let q =
                        _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1);
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
    pub(super) unsafe fn vec_dot_chunked_x4_avx512(
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
                let sc =
                    _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(_mm_loadl_epi64(sm.as_ptr().cast())));
                let ys: [&BlockQ8K; 4] = [&acts[0][b], &acts[1][b], &acts[2][b], &acts[3][b]];
                let imins = [
                    mins_dot_bsums(&sm[8..], ys[0]),
                    mins_dot_bsums(&sm[8..], ys[1]),
                    mins_dot_bsums(&sm[8..], ys[2]),
                    mins_dot_bsums(&sm[8..], ys[3]),
                ];
                for (c, ctrl) in ctrl.iter().enumerate() {
                    let q = _mm256_loadu_si256(x.qs.as_ptr().add(32 * c).cast());
                    let q =
                        _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1);
                    let q = _mm512_and_si512(q, mask);
                    let scales = _mm512_shuffle_epi8(sc, *ctrl);
                    for n in 0..4 {
                        let y = ys[n];
                        let a = _mm512_loadu_si512(y.qs.as_ptr().add(64 * c).cast());
                        let p = _mm512_maddubs_epi16(q, a);
                        let chunk = _mm512_dpwssd_epi32(_mm512_setzero_si512(), p, scales);
                        acc[n] =
                            (_mm512_reduce_add_epi32(chunk) as f32).mul_add(dw * y.d(), acc[n]);
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
}
