//! IQ4_NL and IQ4_XS: 4-bit indices into a fixed non-linear table of 16 signed levels
//! (ggml `kvalues_iq4nl`), scaled per block.
//!
//! | type | bytes | layout |
//! |------|-------|--------|
//! | IQ4_NL | 18 | d f16, qs\[16\]: byte j holds element j (low nibble) and j+16 (high) |
//! | IQ4_XS | 136 | d f16, scales_h u16, scales_l\[4\], qs\[128\]: 8 sub-blocks of 32 laid out as IQ4_NL, each with a 6-bit scale stored +32 (low 4 bits in `scales_l`, top 2 in `scales_h`) |
//!
//! IQ4_NL dots with Q8_0 activations (f16 d + 32 i8, 34 bytes), IQ4_XS with Q8_K.

use super::q8_0::BlockQ8_0;
use super::q8_k::BlockQ8K;
use crate::quant::block::{f16_le, ByteBlock};
use crate::quant::types::QK_K;

/// ggml `kvalues_iq4nl`: the 16 levels an index selects.
pub const IQ4NL_LEVELS: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// ggml `block_iq4_nl`, 18 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockIq4Nl {
    /// Block scale (f16).
    pub d: [u8; 2],
    /// Indices: byte j holds element j (low nibble) and j + 16 (high nibble).
    pub qs: [u8; 16],
}

const _: () = assert!(size_of::<BlockIq4Nl>() == 18);
const _: () = assert!(align_of::<BlockIq4Nl>() == 1);
// SAFETY: repr(C) of byte arrays only: alignment 1, no padding, every bit pattern valid.
unsafe impl ByteBlock for BlockIq4Nl {
    const ELEMENTS: usize = 32;
}

/// ggml `block_iq4_xs`, 136 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockIq4Xs {
    /// Super-block scale (f16).
    pub d: [u8; 2],
    /// Top 2 bits of the 8 sub-block scales, bits `2ib..2ib+2` (little-endian u16).
    pub scales_h: [u8; 2],
    /// Low 4 bits of the sub-block scales: nibble `ib % 2` of byte `ib / 2`.
    pub scales_l: [u8; 4],
    /// Indices: sub-block ib in bytes `16ib .. 16ib+16`, laid out as IQ4_NL.
    pub qs: [u8; QK_K / 2],
}

const _: () = assert!(size_of::<BlockIq4Xs>() == 136);
const _: () = assert!(align_of::<BlockIq4Xs>() == 1);
// SAFETY: repr(C) of byte arrays only: alignment 1, no padding, every bit pattern valid.
unsafe impl ByteBlock for BlockIq4Xs {
    const ELEMENTS: usize = QK_K;
}

impl BlockIq4Xs {
    /// Signed scale of sub-block `ib` (0..8), -32..31.
    #[inline(always)]
    pub(crate) fn scale(&self, ib: usize) -> i32 {
        let h = u16::from_le_bytes(self.scales_h);
        let lo = (self.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF;
        let hi = ((h >> (2 * ib)) & 3) as u8;
        (lo | (hi << 4)) as i32 - 32
    }
}

/// ggml `dequantize_row_iq4_nl`: `d * level`.
pub fn dequantize_nl_scalar(src: &[BlockIq4Nl], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(32)) {
        let d = f16_le(b.d);
        for j in 0..16 {
            y[j] = d * IQ4NL_LEVELS[(b.qs[j] & 0xF) as usize] as f32;
            y[j + 16] = d * IQ4NL_LEVELS[(b.qs[j] >> 4) as usize] as f32;
        }
    }
}

/// ggml `dequantize_row_iq4_xs`: `dl = d * (ls - 32)`, then `dl * level`.
pub fn dequantize_xs_scalar(src: &[BlockIq4Xs], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = f16_le(b.d);
        for ib in 0..8 {
            let dl = d * b.scale(ib) as f32;
            let q = &b.qs[16 * ib..16 * ib + 16];
            let y = &mut y[32 * ib..32 * ib + 32];
            for j in 0..16 {
                y[j] = dl * IQ4NL_LEVELS[(q[j] & 0xF) as usize] as f32;
                y[j + 16] = dl * IQ4NL_LEVELS[(q[j] >> 4) as usize] as f32;
            }
        }
    }
}

/// Integer dot of one 32-element group of indices with 32 activations.
#[inline(always)]
pub(crate) fn dot_levels(q: &[u8], a: &[i8]) -> i32 {
    (0..16)
        .map(|j| {
            IQ4NL_LEVELS[(q[j] & 0xF) as usize] as i32 * a[j] as i32
                + IQ4NL_LEVELS[(q[j] >> 4) as usize] as i32 * a[j + 16] as i32
        })
        .sum()
}

/// Plain-Rust reference for IQ4_NL's [`vec_dot`], in the arithmetic of llama.cpp's repacked
/// IQ4_NL kernels (`ggml_gemv/gemm_iq4_nl_8x8_q8_0`, Q4_0's with a table of levels, which it
/// uses on x86 for every matrix with a multiple of 8 rows): each block's 32 products summed
/// exactly as integers, then one fused multiply-add per block, `sum = isum · (d_w · d_a) + sum`.
pub fn vec_dot_nl_scalar(w: &[BlockIq4Nl], act: &[BlockQ8_0]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(act) {
        let isum = dot_levels(&x.qs, &y.qs);
        sum = (isum as f32).mul_add(f16_le(x.d) * f16_le(y.d), sum);
    }
    sum
}

/// The integer lanes of llama.cpp's IQ4_XS kernels for one super-block: lane `k` holds
/// elements `4k..4k + 4` of every 32-element sub-block, times that sub-block's scale.
pub(crate) fn xs_lanes(x: &BlockIq4Xs, y: &BlockQ8K) -> [i32; 8] {
    let mut lanes = [0i32; 8];
    for ib in 0..8 {
        let q = &x.qs[16 * ib..16 * ib + 16];
        let a = &y.qs[32 * ib..32 * ib + 32];
        // Element e of the sub-block: low nibble of q[e] (e < 16), high nibble of q[e - 16].
        let level = |e: usize| {
            let nibble = if e < 16 { q[e] & 0xF } else { q[e - 16] >> 4 };
            IQ4NL_LEVELS[nibble as usize] as i32
        };
        for (k, lane) in lanes.iter_mut().enumerate() {
            let dot: i32 = (4 * k..4 * k + 4).map(|e| level(e) * a[e] as i32).sum();
            *lane += x.scale(ib) * dot;
        }
    }
    lanes
}

/// Plain-Rust reference for IQ4_XS's [`vec_dot`], in the arithmetic of llama.cpp's
/// `ggml_vec_dot_iq4_xs_q8_K` on x86: the eight integer lanes of [`xs_lanes`] per super-block,
/// each fused into its own float accumulator with `d_w·d_a`, summed in `hsum_float_8`'s order.
pub fn vec_dot_xs_scalar(w: &[BlockIq4Xs], act: &[BlockQ8K]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (x, y) in w.iter().zip(act) {
        let d = f16_le(x.d) * y.d();
        for (a, lane) in acc.iter_mut().zip(xs_lanes(x, y)) {
            *a = d.mul_add(lane as f32, *a);
        }
    }
    crate::quant::block::hsum8(acc)
}

/// Plain-Rust reference for [`vec_dot_xs_tiled`]: per super-block the exact integer
/// `Σ_ib ls_ib Σ level·a`, then `acc = (isum · d_w) · d_a + acc` with the last multiply and the
/// add fused.
pub fn vec_dot_xs_tiled_scalar(w: &[BlockIq4Xs], act: &[BlockQ8K]) -> f32 {
    let mut acc = 0.0f32;
    for (x, y) in w.iter().zip(act) {
        let isum: i32 = xs_lanes(x, y).iter().sum();
        acc = (isum as f32 * f16_le(x.d)).mul_add(y.d(), acc);
    }
    acc
}
