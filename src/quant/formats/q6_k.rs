//! Q6_K: 16 sub-blocks of 16 six-bit quants stored with an offset of 32 (`q - 32` in -32..31),
//! each with a signed 8-bit scale; weight = `d * sc * (q - 32)`.

use super::q8_k::BlockQ8K;
use crate::quant::block::{f16_le, hsum8, ByteBlock};
use crate::quant::types::QK_K;

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

const _: () = assert!(size_of::<BlockQ6K>() == 210);
const _: () = assert!(align_of::<BlockQ6K>() == 1);
// SAFETY: repr(C) of byte arrays only: alignment 1, no padding, every bit pattern valid.
unsafe impl ByteBlock for BlockQ6K {
    const ELEMENTS: usize = QK_K;
}

impl BlockQ6K {
    #[inline(always)]
    pub(crate) fn d(&self) -> f32 {
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
pub(crate) fn superblock_dot(x: &BlockQ6K, y: &BlockQ8K) -> i32 {
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
