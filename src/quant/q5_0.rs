//! Q5_0: 32 weights as 5-bit integers with one f16 scale, `w = (q - 16) * d`. Dotted with Q8_0
//! activations.

use half::f16;

use super::q8_0::BlockQ8_0;
use super::{check_blocks, check_tile, ByteBlock, Simd, WeightBlock, QK};

/// ggml `block_q5_0`: `d` (f16, little-endian), `qh` (u32, little-endian: bit `j` is the fifth
/// bit of element `j`), then 16 bytes of low nibbles laid out as in Q4_0 (byte `j`: element `j`
/// low, element `j + 16` high).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ5_0 {
    /// Scale, f16 bits (little-endian).
    pub d: [u8; 2],
    /// Fifth bits, u32 little-endian.
    pub qh: [u8; 4],
    /// Low nibbles.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ5_0>() == 22 && align_of::<BlockQ5_0>() == 1);
// SAFETY: `#[repr(C)]` over byte arrays: alignment 1, no padding, every bit pattern is a block.
unsafe impl ByteBlock for BlockQ5_0 {}

impl WeightBlock for BlockQ5_0 {
    fn scale(&self) -> f32 {
        self.d().to_f32()
    }

    fn values(&self) -> [i8; QK] {
        self.quants()
    }
}

impl BlockQ5_0 {
    /// The scale.
    pub fn d(&self) -> f16 {
        f16::from_le_bytes(self.d)
    }

    /// The signed quants `q - 16` (in -16..=15) in element order.
    pub fn quants(&self) -> [i8; QK] {
        let qh = u32::from_le_bytes(self.qh);
        let mut q = [0i8; QK];
        for (j, &b) in self.qs.iter().enumerate() {
            let hi0 = ((qh >> j) & 1) as u8;
            let hi1 = ((qh >> (j + QK / 2)) & 1) as u8;
            q[j] = ((b & 0x0F) | (hi0 << 4)) as i8 - 16;
            q[j + QK / 2] = ((b >> 4) | (hi1 << 4)) as i8 - 16;
        }
        q
    }
}

/// Dequantizes whole blocks in `src` into `dst` (ggml `dequantize_row_q5_0`: `(q - 16) * d`).
///
/// # Panics
/// If `src` is not exactly `dst.len()` elements in whole blocks.
pub fn dequantize_row(src: &[u8], dst: &mut [f32], simd: Simd) {
    check_blocks::<BlockQ5_0>(src.len(), dst.len());
    match simd.or_supported() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `or_supported` returned a level whose features (AVX2, FMA, F16C) this CPU has;
        // the lengths were checked above.
        Simd::Avx2 | Simd::Avx512 => unsafe { super::x86::dequantize_q5_0(src, dst) },
        _ => dequantize_row_scalar(src, dst),
    }
}

/// Plain-Rust reference for [`dequantize_row`].
pub fn dequantize_row_scalar(src: &[u8], dst: &mut [f32]) {
    super::dequantize_scaled::<BlockQ5_0>(src, dst);
}

/// Dot product of whole weight blocks `w` with Q8_0 activations `act` (same element count).
///
/// # Panics
/// If the lengths are not matching whole blocks.
pub fn vec_dot(w: &[u8], act: &[u8], simd: Simd) -> f32 {
    vec_dot_tile([w], [act], simd)[0][0]
}

/// [`vec_dot`] of `R` weight rows (same length) with `N` activation columns at once,
/// `out[r][c] = ws[r] · acts[c]`: each weight block is unpacked once and reused for every column,
/// and each activation block is loaded once and reused for every row (the matmul's prompt path).
///
/// # Panics
/// If the lengths are not matching whole blocks.
pub fn vec_dot_tile<const R: usize, const N: usize>(
    ws: [&[u8]; R],
    acts: [&[u8]; N],
    simd: Simd,
) -> [[f32; N]; R] {
    check_tile::<BlockQ5_0, BlockQ8_0, R, N>(&ws, &acts);
    match simd.or_supported() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `or_supported` returned a level this CPU supports; lengths checked above.
        Simd::Avx2 if R > 0 => unsafe { super::x86::avx2::vec_dot_q5_0(ws, acts) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, for the AVX-512 VNNI features.
        Simd::Avx512 if R > 0 => unsafe { super::x86::avx512::vec_dot_q5_0(ws, acts) },
        _ => ws.map(|w| acts.map(|act| vec_dot_scalar(w, act))),
    }
}

/// Plain-Rust reference for [`vec_dot`], in the order of llama.cpp's x86 kernel
/// (`ggml_vec_dot_q5_0_q8_0`): eight lanes, lane `l` accumulating `d_w·d_a · Σ(4 products)` of every
/// block with a fused multiply-add, then reduced as [`super::hsum8`].
pub fn vec_dot_scalar(w: &[u8], act: &[u8]) -> f32 {
    super::vec_dot_lanes::<BlockQ5_0>(w, act)
}
