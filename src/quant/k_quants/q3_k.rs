//! Q3_K: 16 sub-blocks of 16 three-bit quants (q in -4..3), each with a 6-bit signed scale
//! (stored +32); weight = `d * (sc - 32) * q`.

use super::{f16_le, BlockQ8K, RawBlock, Simd, QK_K};

/// ggml `block_q3_K`, 110 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ3K {
    /// High bits: bit `4n + j` of byte `l` is set when element `128n + 32j + l` is >= 0.
    pub hmask: [u8; QK_K / 8],
    /// Low 2 bits: bits `2j..2j+2` of byte `32n + l` hold element `128n + 32j + l`.
    pub qs: [u8; QK_K / 4],
    /// 16 scales of 6 bits: low nibbles in bytes 0..8, top 2 bits in bytes 8..12.
    pub scales: [u8; 12],
    /// Super-block scale (f16).
    pub d: [u8; 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ3K>() == 110);
const _: () = assert!(std::mem::align_of::<BlockQ3K>() == 1);
// SAFETY: repr(C) of byte arrays only: alignment 1, no padding, every bit pattern valid.
unsafe impl RawBlock for BlockQ3K {}

impl BlockQ3K {
    #[cfg(target_arch = "x86_64")]
    /// All 16 scales, still offset by +32 (0..63), with 32-bit masks; byte `s` equals
    /// `scale(s) + 32`.
    #[inline(always)]
    fn unpack_scales(&self) -> [u8; 16] {
        const LOW4: u32 = 0x0f0f_0f0f;
        const LOW2: u32 = 0x0303_0303;
        let s = &self.scales;
        let a0 = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
        let a1 = u32::from_le_bytes([s[4], s[5], s[6], s[7]]);
        let a2 = u32::from_le_bytes([s[8], s[9], s[10], s[11]]);
        let words = [
            (a0 & LOW4) | ((a2 & LOW2) << 4),
            (a1 & LOW4) | (((a2 >> 2) & LOW2) << 4),
            ((a0 >> 4) & LOW4) | (((a2 >> 4) & LOW2) << 4),
            ((a1 >> 4) & LOW4) | (((a2 >> 6) & LOW2) << 4),
        ];
        let mut out = [0u8; 16];
        for (o, w) in out.chunks_exact_mut(4).zip(words) {
            o.copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// The signed scale of sub-block `s` (0..16), -32..31: low 4 bits from byte `s` (s < 8) or
    /// the high nibble of byte `s - 8`, top 2 bits from bits `2(s/4)` of byte `8 + s%4`.
    #[inline(always)]
    fn scale(&self, s: usize) -> i32 {
        let lo = if s < 8 {
            self.scales[s] & 0xF
        } else {
            self.scales[s - 8] >> 4
        };
        let hi = (self.scales[8 + s % 4] >> (2 * (s / 4))) & 3;
        (lo | (hi << 4)) as i32 - 32
    }

    /// The quant of element `e` (0..256), -4..3.
    #[inline(always)]
    fn quant(&self, e: usize) -> i32 {
        let (n, j, l) = (e / 128, (e % 128) / 32, e % 32);
        let low = ((self.qs[32 * n + l] >> (2 * j)) & 3) as i32;
        let high_set = self.hmask[l] & (1 << (4 * n + j)) != 0;
        if high_set {
            low
        } else {
            low - 4
        }
    }
}

pub(crate) fn dequantize(src: &[BlockQ3K], dst: &mut [f32], _simd: Simd) {
    // Scalar at every level: dequantization is off the hot path for this type.
    dequantize_scalar(src, dst);
}

pub(crate) fn vec_dot(w: &[BlockQ3K], act: &[BlockQ8K], simd: Simd) -> f32 {
    vec_dot_by::<false>(w, act, simd)
}

/// The dot product in the arithmetic of llama.cpp's tiled K-quant matrix multiply (8 or more
/// activation columns): see [`vec_dot_tiled_scalar`].
pub(crate) fn vec_dot_tiled(w: &[BlockQ3K], act: &[BlockQ8K], simd: Simd) -> f32 {
    vec_dot_by::<true>(w, act, simd)
}

fn vec_dot_by<const TILED: bool>(w: &[BlockQ3K], act: &[BlockQ8K], simd: Simd) -> f32 {
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

pub fn dequantize_scalar(src: &[BlockQ3K], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = f16_le(b.d);
        // Element 128n + 32j + l: bits 2j..2j+2 of qs[32n + l], high bit 4n + j of hmask[l].
        for n in 0..2 {
            let q = &b.qs[32 * n..32 * n + 32];
            for j in 0..4 {
                let bit = 1u8 << (4 * n + j);
                for h in 0..2 {
                    let dl = d * b.scale(8 * n + 2 * j + h) as f32;
                    let out = &mut y[128 * n + 32 * j + 16 * h..][..16];
                    for (i, o) in out.iter_mut().enumerate() {
                        let l = 16 * h + i;
                        let low = ((q[l] >> (2 * j)) & 3) as i8;
                        let v = if b.hmask[l] & bit != 0 { low } else { low - 4 };
                        *o = dl * v as f32;
                    }
                }
            }
        }
    }
}

/// Plain-Rust reference for [`vec_dot`], in the arithmetic of llama.cpp's
/// `ggml_vec_dot_q3_K_q8_K` on x86: per super-block eight exact integer lanes, lane `k` taking
/// elements `4k..4k + 4` of every 32-element chunk (signed quants -4..3) times the scale of the
/// 16-element sub-block they lie in; each lane fused into its own float accumulator with
/// `d_a·d_w`; the accumulators summed in `hsum_float_8`'s order.
pub fn vec_dot_scalar(w: &[BlockQ3K], act: &[BlockQ8K]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (x, y) in w.iter().zip(act) {
        let mut lanes = [0i32; 8];
        for chunk in 0..QK_K / 32 {
            for (k, lane) in lanes.iter_mut().enumerate() {
                let dot: i32 = (32 * chunk + 4 * k..32 * chunk + 4 * k + 4)
                    .map(|e| x.quant(e) * y.qs[e] as i32)
                    .sum();
                *lane += x.scale(2 * chunk + k / 4) * dot;
            }
        }
        let d = y.d() * f16_le(x.d);
        for (a, &lane) in acc.iter_mut().zip(&lanes) {
            *a = d.mul_add(lane as f32, *a);
        }
    }
    crate::quant::hsum8(acc)
}

/// Plain-Rust reference for [`vec_dot_tiled`], in the arithmetic of llama.cpp's tiled K-quant
/// kernels (8 or more activation columns): per super-block the exact integer
/// `Σ_s sc_s Σ q·a`, then `acc = (isum · d_w) · d_a + acc` with the last multiply and the add
/// fused.
pub fn vec_dot_tiled_scalar(w: &[BlockQ3K], act: &[BlockQ8K]) -> f32 {
    let mut acc = 0.0f32;
    for (x, y) in w.iter().zip(act) {
        let isum: i32 = (0..QK_K / 16)
            .map(|s| {
                let dot: i32 = (16 * s..16 * s + 16)
                    .map(|e| x.quant(e) * y.qs[e] as i32)
                    .sum();
                x.scale(s) * dot
            })
            .sum();
        acc = (isum as f32 * f16_le(x.d)).mul_add(y.d(), acc);
    }
    acc
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::x86::{broadcast_i16_ctrl, f16c, LaneDot};
    use super::*;
    use std::arch::x86_64::*;

    /// [`super::vec_dot_scalar`]'s arithmetic (llama.cpp's): the low two bits and the "high bit
    /// clear" 4 are dotted separately by `maddubs` (pair sums at most 2·4·128) and subtracted,
    /// which leaves the signed quants' products exact in every 16-bit lane; `madd` applies the
    /// signed sub-block scale per 128-bit lane. `TILED`: [`super::vec_dot_tiled_scalar`]'s
    /// arithmetic from the same integer sums.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn vec_dot_avx2<const TILED: bool>(w: &[BlockQ3K], act: &[BlockQ8K]) -> f32 {
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
}
