//! Q3_K: 16 sub-blocks of 16 three-bit quants (q in -4..3), each with a 6-bit signed scale
//! (stored +32); weight = `d * (sc - 32) * q`.

use super::q8_k::BlockQ8K;
use crate::quant::block::{f16_le, ByteBlock};
use crate::quant::types::QK_K;

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

const _: () = assert!(size_of::<BlockQ3K>() == 110);
const _: () = assert!(align_of::<BlockQ3K>() == 1);
// SAFETY: repr(C) of byte arrays only: alignment 1, no padding, every bit pattern valid.
unsafe impl ByteBlock for BlockQ3K {
    const ELEMENTS: usize = QK_K;
}

impl BlockQ3K {
    #[cfg(target_arch = "x86_64")]
    /// All 16 scales, still offset by +32 (0..63), with 32-bit masks; byte `s` equals
    /// `scale(s) + 32`.
    #[inline(always)]
    pub(crate) fn unpack_scales(&self) -> [u8; 16] {
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
    pub(crate) fn scale(&self, s: usize) -> i32 {
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
    pub(crate) fn quant(&self, e: usize) -> i32 {
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
    crate::quant::block::hsum8(acc)
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
