//! Q5_K: as Q4_K (8 sub-blocks of 32, 6-bit scales and mins packed identically) with a fifth
//! quant bit; weight = `d * sc * q - dmin * m`, q in 0..31.

use super::q4_k::{scale_min, unpack_scales_mins};
use super::{f16_le, BlockQ8K, RawBlock, Simd, QK_K};

/// ggml `block_q5_K`, 176 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ5K {
    /// Super-block scale for the sub-block scales (f16).
    pub d: [u8; 2],
    /// Super-block scale for the sub-block mins (f16).
    pub dmin: [u8; 2],
    /// 8 scales and 8 mins of 6 bits, packed as in Q4_K.
    pub scales: [u8; 12],
    /// Fifth bits: bit `2c` of byte `l` belongs to element `64c + l`, bit `2c+1` to `64c+32+l`.
    pub qh: [u8; QK_K / 8],
    /// Low 4 bits, laid out as Q4_K's `qs`.
    pub qs: [u8; QK_K / 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ5K>() == 176);
const _: () = assert!(std::mem::align_of::<BlockQ5K>() == 1);
// SAFETY: repr(C) of byte arrays only: alignment 1, no padding, every bit pattern valid.
unsafe impl RawBlock for BlockQ5K {}

impl BlockQ5K {
    #[inline(always)]
    fn d(&self) -> f32 {
        f16_le(self.d)
    }
    #[inline(always)]
    fn dmin(&self) -> f32 {
        f16_le(self.dmin)
    }

    /// Quant of element `64c + l` (`high` false) or `64c + 32 + l` (`high` true), 0..31.
    #[inline(always)]
    fn quant(&self, c: usize, l: usize, high: bool) -> u8 {
        let q = self.qs[32 * c + l];
        let (nib, bit) = if high {
            (q >> 4, 2 * c + 1)
        } else {
            (q & 0xF, 2 * c)
        };
        nib | (((self.qh[l] >> bit) & 1) << 4)
    }
}

pub(crate) fn dequantize(src: &[BlockQ5K], dst: &mut [f32], _simd: Simd) {
    // Scalar at every level: dequantization is off the hot path for this type.
    dequantize_scalar(src, dst);
}

/// The dot product in the arithmetic of llama.cpp's one-column kernel: see [`vec_dot_scalar`].
pub(crate) fn vec_dot(w: &[BlockQ5K], act: &[BlockQ8K], simd: Simd) -> f32 {
    vec_dot_by::<false>(w, act, simd)
}

/// The dot product in the arithmetic of llama.cpp's tiled K-quant matrix multiply, which it uses
/// for 8 or more activation columns: see [`vec_dot_tiled_scalar`].
pub(crate) fn vec_dot_tiled(w: &[BlockQ5K], act: &[BlockQ8K], simd: Simd) -> f32 {
    vec_dot_by::<true>(w, act, simd)
}

fn vec_dot_by<const TILED: bool>(w: &[BlockQ5K], act: &[BlockQ8K], simd: Simd) -> f32 {
    match simd {
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 | Simd::Avx512 => {
            // SAFETY: `simd` passed `Simd::is_supported`: both levels include AVX2/FMA/F16C.
            unsafe { x86::vec_dot_avx2::<TILED>(w, act) }
        }
        _ if TILED => vec_dot_tiled_scalar(w, act),
        _ => vec_dot_scalar(w, act),
    }
}

/// Plain-Rust reference for [`vec_dot_tiled`], in the arithmetic of llama.cpp's tiled K-quant
/// kernels: per super-block the exact integers `isum = Σ_j sc_j (q_j · a_j)` and
/// `imin = Σ_j m_j Σ a_j`, then `r = isum · d_w`, `r = r − dmin_w · imin` (fused) and
/// `acc = r · d_a + acc` (fused, as GCC compiles its separate multiply and add intrinsics).
pub fn vec_dot_tiled_scalar(w: &[BlockQ5K], act: &[BlockQ8K]) -> f32 {
    let mut acc = 0.0f32;
    for (x, y) in w.iter().zip(act) {
        let sm = unpack_scales_mins(&x.scales);
        let mut isum = 0i32;
        for c in 0..4 {
            let (mut lo, mut hi) = (0i32, 0i32);
            for l in 0..32 {
                lo += x.quant(c, l, false) as i32 * y.qs[64 * c + l] as i32;
                hi += x.quant(c, l, true) as i32 * y.qs[64 * c + 32 + l] as i32;
            }
            isum += sm[2 * c] as i32 * lo + sm[2 * c + 1] as i32 * hi;
        }
        let imin: i32 = (0..8)
            .map(|j| sm[8 + j] as i32 * (y.bsum(2 * j) + y.bsum(2 * j + 1)))
            .sum();
        let r = (-x.dmin()).mul_add(imin as f32, isum as f32 * x.d());
        acc = r.mul_add(y.d(), acc);
    }
    acc
}

/// ggml `dequantize_row_q5_K`: `d1 = d * sc`, `m1 = dmin * m`, then `d1 * q - m1`.
pub fn dequantize_scalar(src: &[BlockQ5K], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d();
        let min = b.dmin();
        for c in 0..4 {
            let (sc1, m1) = scale_min(2 * c, &b.scales);
            let (sc2, m2) = scale_min(2 * c + 1, &b.scales);
            let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
            for l in 0..32 {
                y[64 * c + l] = d1 * b.quant(c, l, false) as f32 - m1;
                y[64 * c + 32 + l] = d2 * b.quant(c, l, true) as f32 - m2;
            }
        }
    }
}

/// Plain-Rust reference for [`vec_dot`], in the arithmetic of llama.cpp's `ggml_vec_dot_q5_K_q8_K`
/// on x86 (which it runs for Q5_K: there is no x86 repacked form): per super-block, eight exact
/// integer lanes (lane `k` takes elements `4k..4k + 4` of every 32-element half, times that
/// half's sub-block scale), each added to its own float accumulator by a fused multiply-add with
/// `d_w·d_a`; the mins as one exact integer `Σ_j m_j Σ a_j` (from the Q8_K `bsums`) per
/// super-block, added by a fused multiply-add with `-dmin_w·d_a` to one running float; at the
/// end the eight accumulators summed in `hsum_float_8`'s order, plus the mins.
pub fn vec_dot_scalar(w: &[BlockQ5K], act: &[BlockQ8K]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut mins = 0.0f32;
    for (x, y) in w.iter().zip(act) {
        let d = y.d() * x.d();
        let dmin = -y.d() * x.dmin();
        let sm = unpack_scales_mins(&x.scales);
        let summ: i32 = (0..8)
            .map(|j| sm[8 + j] as i32 * (y.bsum(2 * j) + y.bsum(2 * j + 1)))
            .sum();
        mins = dmin.mul_add(summ as f32, mins);
        let mut lanes = [0i32; 8];
        for c in 0..4 {
            for (k, lane) in lanes.iter_mut().enumerate() {
                let (mut lo, mut hi) = (0i32, 0i32);
                for l in 4 * k..4 * k + 4 {
                    lo += x.quant(c, l, false) as i32 * y.qs[64 * c + l] as i32;
                    hi += x.quant(c, l, true) as i32 * y.qs[64 * c + 32 + l] as i32;
                }
                *lane += sm[2 * c] as i32 * lo + sm[2 * c + 1] as i32 * hi;
            }
        }
        for (a, &lane) in acc.iter_mut().zip(&lanes) {
            *a = d.mul_add(lane as f32, *a);
        }
    }
    crate::quant::hsum8(acc) + mins
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::x86::{broadcast_i16_ctrl, f16c_pair, hsum_epi32, hsum_ps_256};
    use super::*;
    use std::arch::x86_64::*;

    /// [`super::vec_dot_scalar`]'s arithmetic (llama.cpp's): eight integer lanes per super-block
    /// from `maddubs` + `madd` with the sub-block scales, the fifth bit OR-ed in as 16 (quants
    /// 0..31: `maddubs` pair sums at most 2·31·128, no saturation), one fused multiply-add per
    /// lane; the mins' integer sum added to one scalar by a fused multiply-add. `TILED`:
    /// [`super::vec_dot_tiled_scalar`]'s arithmetic from the same integer sums.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn vec_dot_avx2<const TILED: bool>(w: &[BlockQ5K], act: &[BlockQ8K]) -> f32 {
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
                let pairs =
                    _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
                let prod_m = _mm_madd_epi16(m16, pairs);
                let s = _mm_add_epi32(prod_m, _mm_unpackhi_epi64(prod_m, prod_m));
                let summ = _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01)));
                if !TILED {
                    mins = dmin.mul_add(summ as f32, mins);
                }
                let sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_loadl_epi64(
                    sm.as_ptr().cast(),
                )));
                let qh = _mm256_loadu_si256(x.qh.as_ptr().cast());
                let mut bit = _mm256_set1_epi8(1);
                let mut sumi = _mm256_setzero_si256();
                for c in 0..4 {
                    let q = _mm256_loadu_si256(x.qs.as_ptr().add(32 * c).cast());
                    let hlo = _mm256_and_si256(
                        _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit),
                        sixteen,
                    );
                    bit = _mm256_add_epi8(bit, bit);
                    let hhi = _mm256_and_si256(
                        _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit),
                        sixteen,
                    );
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
            hsum_ps_256(acc) + mins
        }
    }
}
