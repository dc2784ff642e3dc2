//! Q4_0: 32 weights as 4-bit integers with one f16 scale, `w = (q - 8) * d`. Dotted with Q8_0
//! activations.

use half::f16;

use super::q8_0::BlockQ8_0;
use super::{as_blocks, check_blocks, check_tile, ByteBlock, Simd, WeightBlock, QK};

/// ggml `block_q4_0`: `d` (f16, little-endian), then 16 bytes; byte `j` holds element `j` in its
/// low nibble and element `j + 16` in its high nibble.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ4_0 {
    /// Scale, f16 bits (little-endian).
    pub d: [u8; 2],
    /// Packed nibbles.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ4_0>() == 18 && align_of::<BlockQ4_0>() == 1);
// SAFETY: `#[repr(C)]` over byte arrays: alignment 1, no padding, every bit pattern is a block.
unsafe impl ByteBlock for BlockQ4_0 {}

impl WeightBlock for BlockQ4_0 {
    fn scale(&self) -> f32 {
        self.d().to_f32()
    }

    fn values(&self) -> [i8; QK] {
        self.quants()
    }
}

impl BlockQ4_0 {
    /// The scale.
    pub fn d(&self) -> f16 {
        f16::from_le_bytes(self.d)
    }

    /// The signed quants `q - 8` (in -8..=7) in element order.
    pub fn quants(&self) -> [i8; QK] {
        let mut q = [0i8; QK];
        for (j, &b) in self.qs.iter().enumerate() {
            q[j] = (b & 0x0F) as i8 - 8;
            q[j + QK / 2] = (b >> 4) as i8 - 8;
        }
        q
    }
}

/// Dequantizes whole blocks in `src` into `dst` (ggml `dequantize_row_q4_0`: `(q - 8) * d`).
///
/// # Panics
/// If `src` is not exactly `dst.len()` elements in whole blocks.
pub fn dequantize_row(src: &[u8], dst: &mut [f32], simd: Simd) {
    check_blocks::<BlockQ4_0>(src.len(), dst.len());
    match simd.or_supported() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `or_supported` returned a level whose features (AVX2, FMA, F16C) this CPU has;
        // the lengths were checked above.
        Simd::Avx2 | Simd::Avx512 => unsafe { super::x86::dequantize_q4_0(src, dst) },
        _ => dequantize_row_scalar(src, dst),
    }
}

/// Plain-Rust reference for [`dequantize_row`].
pub fn dequantize_row_scalar(src: &[u8], dst: &mut [f32]) {
    super::dequantize_scaled::<BlockQ4_0>(src, dst);
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
    check_tile::<BlockQ4_0, BlockQ8_0, R, N>(&ws, &acts);
    match simd.or_supported() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `or_supported` returned a level this CPU supports; lengths checked above.
        Simd::Avx2 if R > 0 => unsafe { super::x86::avx2::vec_dot_q4_0(ws, acts) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, for the AVX-512 VNNI features.
        Simd::Avx512 if R > 0 => unsafe { super::x86::avx512::vec_dot_q4_0(ws, acts) },
        _ => ws.map(|w| acts.map(|act| vec_dot_scalar(w, act))),
    }
}

/// Plain-Rust reference for [`vec_dot`], in the arithmetic of llama.cpp's repacked Q4_0 kernels
/// (`ggml_gemv/gemm_q4_0_8x8_q8_0`, which it uses on x86 for every matrix with a multiple of 8
/// rows): each block's 32 products summed exactly as integers, then one fused multiply-add per
/// block, `sum = isum · (d_w · d_a) + sum`.
pub fn vec_dot_scalar(w: &[u8], act: &[u8]) -> f32 {
    let mut sum = 0.0f32;
    for (bw, ba) in as_blocks::<BlockQ4_0>(w)
        .iter()
        .zip(as_blocks::<BlockQ8_0>(act))
    {
        let isum: i32 = bw
            .quants()
            .iter()
            .zip(ba.qs.iter())
            .map(|(&x, &y)| x as i32 * y as i32)
            .sum();
        sum = (isum as f32).mul_add(bw.d().to_f32() * ba.d().to_f32(), sum);
    }
    sum
}
