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

/// The dot product in the arithmetic of llama.cpp's repacked single-column kernel
/// (`ggml_gemv_q2_K_8x8_q8_K`): see [`vec_dot_scalar`].
pub(crate) fn vec_dot(w: &[BlockQ2K], act: &[BlockQ8K], simd: Simd) -> f32 {
    vec_dot_by::<false>(w, act, simd)
}

/// The dot product in the arithmetic of llama.cpp's repacked four-column kernel
/// (`ggml_gemm_q2_K_8x8_q8_K`), for activation columns in whole groups of four: see
/// [`vec_dot_chunked_scalar`].
pub(crate) fn vec_dot_chunked(w: &[BlockQ2K], act: &[BlockQ8K], simd: Simd) -> f32 {
    vec_dot_by::<true>(w, act, simd)
}

fn vec_dot_by<const CHUNKED: bool>(w: &[BlockQ2K], act: &[BlockQ8K], simd: Simd) -> f32 {
    match simd {
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 | Simd::Avx512 => {
            // SAFETY: `simd` passed `Simd::is_supported`: both levels include AVX2/FMA/F16C.
            unsafe { x86::vec_dot_avx2::<CHUNKED>(w, act) }
        }
        _ => vec_dot_by_halves::<CHUNKED>(w, act),
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
fn half_sums(x: &BlockQ2K, y: &BlockQ8K, n: usize) -> (i32, i32) {
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

fn vec_dot_by_halves<const CHUNKED: bool>(w: &[BlockQ2K], act: &[BlockQ8K]) -> f32 {
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

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::x86::{broadcast_i16_ctrl, f16c_pair, hsum_epi32};

    /// Sum of the four i32 lanes of `v` (exact).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn hsum_epi32_128(v: __m128i) -> i32 {
        let s = _mm_add_epi32(v, _mm_unpackhi_epi64(v, v));
        _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01)))
    }
    use super::*;
    use std::arch::x86_64::*;

    /// [`super::vec_dot_by_halves`]'s arithmetic: `maddubs` of the 2-bit quants (0..3) with the
    /// activations, `madd` with the 4-bit sub-block scale per 128-bit lane (one 16-element
    /// sub-block per lane), the mins as `madd`s of the mins with the Q8_K `bsums`; the integers
    /// of each half summed exactly, the float steps done as the twin does them.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn vec_dot_avx2<const CHUNKED: bool>(
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
}
