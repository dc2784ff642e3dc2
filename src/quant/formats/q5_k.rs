//! Q5_K: as Q4_K (8 sub-blocks of 32, 6-bit scales and mins packed identically) with a fifth
//! quant bit; weight = `d * sc * q - dmin * m`, q in 0..31.

use super::q4_k::{dequantize_scale_min, mins_dot, unpack_scales_mins};
use super::q8_k::BlockQ8K;
use crate::quant::block::{f16_le, ByteBlock};
use crate::quant::types::QK_K;

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

const _: () = assert!(size_of::<BlockQ5K>() == 176);
const _: () = assert!(align_of::<BlockQ5K>() == 1);
// SAFETY: repr(C) of byte arrays only: alignment 1, no padding, every bit pattern valid.
unsafe impl ByteBlock for BlockQ5K {
    const ELEMENTS: usize = QK_K;
}

impl BlockQ5K {
    #[inline(always)]
    pub(crate) fn d(&self) -> f32 {
        f16_le(self.d)
    }
    #[inline(always)]
    pub(crate) fn dmin(&self) -> f32 {
        f16_le(self.dmin)
    }

    /// Quant of element `64c + l` (`high` false) or `64c + 32 + l` (`high` true), 0..31.
    #[inline(always)]
    pub(crate) fn quant(&self, c: usize, l: usize, high: bool) -> u8 {
        let q = self.qs[32 * c + l];
        let (nib, bit) = if high {
            (q >> 4, 2 * c + 1)
        } else {
            (q & 0xF, 2 * c)
        };
        nib | (((self.qh[l] >> bit) & 1) << 4)
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
        let imin = mins_dot(&sm, y);
        let r = (-x.dmin()).mul_add(imin as f32, isum as f32 * x.d());
        acc = r.mul_add(y.d(), acc);
    }
    acc
}

/// ggml `dequantize_row_q5_K`.
pub fn dequantize_scalar(src: &[BlockQ5K], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let quant = |c, l, high| b.quant(c, l, high);
        dequantize_scale_min((b.d(), b.dmin()), &b.scales, quant, y);
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
        let summ = mins_dot(&sm, y);
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
    crate::quant::block::hsum8(acc) + mins
}
