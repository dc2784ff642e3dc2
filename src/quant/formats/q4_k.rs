//! Q4_K: 8 sub-blocks of 32 four-bit quants `q`, each with a 6-bit scale `sc` and 6-bit min `m`;
//! weight = `d * sc * q - dmin * m`.

use super::q8_k::BlockQ8K;
use crate::quant::block::{f16_le, ByteBlock};
use crate::quant::types::QK_K;

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

const _: () = assert!(size_of::<BlockQ4K>() == 144);
const _: () = assert!(align_of::<BlockQ4K>() == 1);
// SAFETY: repr(C) of byte arrays only: alignment 1, no padding, every bit pattern valid.
unsafe impl ByteBlock for BlockQ4K {
    const ELEMENTS: usize = QK_K;
}

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
    pub(crate) fn d(&self) -> f32 {
        f16_le(self.d)
    }
    #[inline(always)]
    pub(crate) fn dmin(&self) -> f32 {
        f16_le(self.dmin)
    }
}

/// ggml `dequantize_row_q4_K` and `_q5_K` for one super-block: `d1 = d * sc`, `m1 = dmin * m`,
/// then `d1 * q - m1` (a separate product and difference, each rounded), `quant(c, l, high)`
/// giving the quant of element `64c + l` (`high` false) or `64c + 32 + l` (`high` true).
#[inline(always)]
pub(crate) fn dequantize_scale_min(
    (d, dmin): (f32, f32),
    scales: &[u8; 12],
    quant: impl Fn(usize, usize, bool) -> u8,
    y: &mut [f32],
) {
    for c in 0..4 {
        let (sc1, m1) = scale_min(2 * c, scales);
        let (sc2, m2) = scale_min(2 * c + 1, scales);
        let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
        let (lo, hi) = y[64 * c..64 * c + 64].split_at_mut(32);
        for l in 0..32 {
            lo[l] = d1 * quant(c, l, false) as f32 - m1;
            hi[l] = d2 * quant(c, l, true) as f32 - m2;
        }
    }
}

/// The min term of one super-block: the exact integer `Σ_j m_j Σ a_j` over the eight
/// sub-blocks, the mins `m_j` from `sm[8..16]` (as [`unpack_scales_mins`] gives them) and the
/// sums `Σ a_j` from the Q8_K `bsums` (shared with Q5_K).
#[inline(always)]
pub(crate) fn mins_dot(sm: &[u8; 16], y: &BlockQ8K) -> i32 {
    (0..8)
        .map(|j| sm[8 + j] as i32 * (y.bsum(2 * j) + y.bsum(2 * j + 1)))
        .sum()
}

/// ggml `dequantize_row_q4_K`.
pub fn dequantize_scalar(src: &[BlockQ4K], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let quant = |c: usize, l: usize, high: bool| {
            let q = b.qs[32 * c + l];
            if high {
                q >> 4
            } else {
                q & 0xF
            }
        };
        dequantize_scale_min((b.d(), b.dmin()), &b.scales, quant, y);
    }
}

/// The exact integer dots of chunk `c` (64 elements) of `x` with the activations: its low-nibble
/// half (sub-block `2c`) and its high-nibble half (`2c + 1`).
#[inline(always)]
fn chunk_dots(x: &BlockQ4K, y: &BlockQ8K, c: usize) -> (i32, i32) {
    let q = &x.qs[32 * c..32 * c + 32];
    let a = &y.qs[64 * c..64 * c + 64];
    let (mut lo, mut hi) = (0i32, 0i32);
    for l in 0..32 {
        lo += (q[l] & 0xF) as i32 * a[l] as i32;
        hi += (q[l] >> 4) as i32 * a[32 + l] as i32;
    }
    (lo, hi)
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
            let (lo, hi) = chunk_dots(x, y, c);
            isum += sm[2 * c] as i32 * lo + sm[2 * c + 1] as i32 * hi;
        }
        let imin = mins_dot(&sm, y);
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
            let (lo, hi) = chunk_dots(x, y, c);
            let isum = sm[2 * c] as i32 * lo + sm[2 * c + 1] as i32 * hi;
            let imin = sm[8 + 2 * c] as i32 * (y.bsum(4 * c) + y.bsum(4 * c + 1))
                + sm[8 + 2 * c + 1] as i32 * (y.bsum(4 * c + 2) + y.bsum(4 * c + 3));
            acc = (isum as f32).mul_add(x.d() * y.d(), acc);
            mins = (imin as f32).mul_add(x.dmin() * y.d(), mins);
        }
    }
    acc - mins
}
