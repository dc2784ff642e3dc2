//! K-quants (Q2_K … Q6_K) and their activation format Q8_K.
//!
//! A K-quant super-block holds [`QK_K`] = 256 weights split into sub-blocks of 16 or 32, each
//! with a small integer scale (and for Q2_K/Q4_K/Q5_K a small integer min), themselves scaled by
//! one or two f16 super-block factors. Byte layouts are ggml's (`ggml-common.h`), checked at
//! compile time:
//!
//! | type | bytes | layout |
//! |------|-------|--------|
//! | Q2_K | 84  | scales\[16\] (lo nibble scale, hi nibble min), qs\[64\] (2-bit), d f16, dmin f16 |
//! | Q3_K | 110 | hmask\[32\] (high bit), qs\[64\] (low 2 bits), scales\[12\] (16 × 6-bit), d f16 |
//! | Q4_K | 144 | d f16, dmin f16, scales\[12\] (8 × 6-bit scale + 8 × 6-bit min), qs\[128\] |
//! | Q5_K | 176 | d f16, dmin f16, scales\[12\], qh\[32\] (5th bit), qs\[128\] |
//! | Q6_K | 210 | ql\[128\] (low 4 bits), qh\[64\] (high 2 bits), scales\[16\] i8, d f16 |
//! | Q8_K | 292 | d f32, qs\[256\] i8, bsums\[16\] i16 (sums of 16 consecutive qs) |
//!
//! Each weight type has `dequantize_row` (float32-exact to ggml's `dequantize_row_*`: the same
//! products in the same order) and `vec_dot` against Q8_K activations: integer products inside
//! sub-blocks, one float multiply per super-block, and the min terms through the Q8_K `bsums`, as
//! ggml's `ggml_vec_dot_*_q8_K` do. Every kernel has a plain-Rust twin (the reference the SIMD
//! versions are tested against) and is dispatched once per row on [`Simd`].
//!
//! All block structs are made of byte arrays only (alignment 1), so any `&[u8]` of whole blocks
//! can be viewed as a block slice whatever its address; multi-byte fields are little-endian, as
//! in GGUF.

use super::{GgmlType, Simd, QK_K};

pub mod q2_k;
pub mod q3_k;
pub mod q4_k;
pub mod q5_k;
pub mod q6_k;
pub mod q8_k;

pub use q2_k::BlockQ2K;
pub use q3_k::BlockQ3K;
pub use q4_k::BlockQ4K;
pub use q5_k::BlockQ5K;
pub use q6_k::BlockQ6K;
pub use q8_k::BlockQ8K;

/// A block struct that is plain bytes: `#[repr(C)]`, alignment 1, no padding, and every bit
/// pattern a valid value.
///
/// # Safety
/// Implementors must satisfy exactly that, so that [`as_blocks`] may reinterpret bytes.
pub(crate) unsafe trait RawBlock: Sized {}

/// Views the whole blocks at the start of `bytes` as a block slice (a trailing partial block is
/// ignored).
pub(crate) fn as_blocks<B: RawBlock>(bytes: &[u8]) -> &[B] {
    let n = bytes.len() / std::mem::size_of::<B>();
    // SAFETY: `B: RawBlock` has alignment 1 and no invalid bit patterns, and `n` blocks of
    // `size_of::<B>()` bytes lie within `bytes`, which the returned slice borrows.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<B>(), n) }
}

/// Mutable twin of [`as_blocks`].
pub(crate) fn as_blocks_mut<B: RawBlock>(bytes: &mut [u8]) -> &mut [B] {
    let n = bytes.len() / std::mem::size_of::<B>();
    // SAFETY: as in `as_blocks`; the mutable borrow of `bytes` is moved into the result, so
    // nothing else aliases it.
    unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<B>(), n) }
}

/// Reads a little-endian f16 stored as two bytes.
#[inline(always)]
pub(crate) fn f16_le(bytes: [u8; 2]) -> f32 {
    half::f16::from_le_bytes(bytes).to_f32()
}

/// The level to run at: `simd` if this CPU has it, else scalar. Checked once per row so that a
/// `Simd` value the CPU lacks can never execute an illegal instruction (the feature checks are
/// cached loads).
#[inline(always)]
pub(crate) fn runnable(simd: Simd) -> Simd {
    if simd.is_supported() {
        simd
    } else {
        Simd::Scalar
    }
}

/// Dequantizes whole super-blocks of `ty` in `src` into `dst` (`dst.len()` elements; the caller,
/// `quant::dequantize_row`, has checked that `src` holds exactly that many).
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32], simd: Simd) {
    let simd = runnable(simd);
    match ty {
        GgmlType::Q2_K => q2_k::dequantize(as_blocks(src), dst, simd),
        GgmlType::Q3_K => q3_k::dequantize(as_blocks(src), dst, simd),
        GgmlType::Q4_K => q4_k::dequantize(as_blocks(src), dst, simd),
        GgmlType::Q5_K => q5_k::dequantize(as_blocks(src), dst, simd),
        GgmlType::Q6_K => q6_k::dequantize(as_blocks(src), dst, simd),
        GgmlType::Q8_K => q8_k::dequantize(as_blocks(src), dst),
        // `quant::dequantize_row` routes only the types above here.
        _ => {}
    }
}

/// Dot product of whole weight super-blocks of `ty` with Q8_K activations (the same number of
/// elements). Extra blocks on either side are ignored.
pub fn vec_dot(ty: GgmlType, w: &[u8], act: &[u8], simd: Simd) -> f32 {
    let simd = runnable(simd);
    let act: &[BlockQ8K] = as_blocks(act);
    match ty {
        GgmlType::Q2_K => q2_k::vec_dot(as_blocks(w), act, simd),
        GgmlType::Q3_K => q3_k::vec_dot(as_blocks(w), act, simd),
        GgmlType::Q4_K => q4_k::vec_dot(as_blocks(w), act, simd),
        GgmlType::Q5_K => q5_k::vec_dot(as_blocks(w), act, simd),
        GgmlType::Q6_K => q6_k::vec_dot(as_blocks(w), act, simd),
        // `quant::vec_dot` routes only the types above here.
        _ => 0.0,
    }
}

/// [`vec_dot`] in the arithmetic llama.cpp uses when 8 or more activation columns are multiplied
/// at once (its tiled K-quant matrix multiply, ggml-cpu/tiled): for Q3_K, Q6_K and IQ4_XS, per
/// super-block the exact integer dot, then `(isum · d_w) · d_a + acc` (the last multiply and add
/// fused); for Q5_K the same with the mins fused in before. Other types keep the single-column
/// arithmetic.
pub fn vec_dot_tiled(ty: GgmlType, w: &[u8], act: &[u8], simd: Simd) -> f32 {
    match ty {
        GgmlType::Q6_K => q6_k::vec_dot_tiled(as_blocks(w), as_blocks(act), runnable(simd)),
        GgmlType::Q5_K => q5_k::vec_dot_tiled(as_blocks(w), as_blocks(act), runnable(simd)),
        GgmlType::Q3_K => q3_k::vec_dot_tiled(as_blocks(w), as_blocks(act), runnable(simd)),
        GgmlType::IQ4_XS => super::iq4::vec_dot_xs_tiled(w, act, simd),
        _ => vec_dot(ty, w, act, simd),
    }
}

/// [`vec_dot`] in the arithmetic llama.cpp uses for activation columns that fall in a whole
/// group of four (its repacked four-column kernels): the fused running sums step per 64 elements
/// (Q4_K) or per 128 (Q2_K) instead of per super-block. Other types keep the single-column
/// arithmetic.
pub fn vec_dot_four_columns(ty: GgmlType, w: &[u8], act: &[u8], simd: Simd) -> f32 {
    match ty {
        GgmlType::Q4_K => q4_k::vec_dot_chunked(as_blocks(w), as_blocks(act), runnable(simd)),
        GgmlType::Q2_K => q2_k::vec_dot_chunked(as_blocks(w), as_blocks(act), runnable(simd)),
        _ => vec_dot(ty, w, act, simd),
    }
}

/// [`vec_dot_four_columns`] of one Q4_K row with four activation columns at once (the weight
/// row unpacked once); `None` for other types.
pub fn vec_dot_four_columns_x4(
    ty: GgmlType,
    w: &[u8],
    acts: [&[u8]; 4],
    simd: Simd,
) -> Option<[f32; 4]> {
    match ty {
        GgmlType::Q4_K => Some(q4_k::vec_dot_chunked_x4(
            as_blocks(w),
            acts.map(as_blocks),
            runnable(simd),
        )),
        _ => None,
    }
}

/// [`vec_dot_tiled`] of one Q6_K row with four activation columns at once (the weight row
/// unpacked once); `None` for other types.
pub fn vec_dot_tiled_x4(ty: GgmlType, w: &[u8], acts: [&[u8]; 4], simd: Simd) -> Option<[f32; 4]> {
    match ty {
        GgmlType::Q6_K => Some(q6_k::vec_dot_tiled_x4(
            as_blocks(w),
            acts.map(as_blocks),
            runnable(simd),
        )),
        _ => None,
    }
}

/// Quantizes f32 activations to Q8_K (ggml `quantize_row_q8_K_ref`); `x.len()` must be a
/// multiple of 256 and `dst` exactly `x.len() / 256` blocks (checked by the caller).
pub fn quantize_row_q8_k(x: &[f32], dst: &mut [u8], simd: Simd) {
    q8_k::quantize(x, as_blocks_mut(dst), runnable(simd));
}

/// Horizontal sums shared by the x86 kernels.
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    /// Two f16 values (little-endian bytes) to f32 with one F16C conversion: exact, as the
    /// software conversion, but without the call through `half`'s run-time dispatch.
    /// Built from a 32-bit `vmovd` (which zeroes the rest of the register): when only lane 0 is
    /// demanded LLVM turns a lone conversion into an insert into an arbitrary live register
    /// (the accumulator), chaining every block's scale onto the loop's dependency chain.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn f16c_pair(a: [u8; 2], b: [u8; 2]) -> (f32, f32) {
        let v = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes([
            a[0], a[1], b[0], b[1],
        ])));
        (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
    }

    /// One f16 value to f32 (see [`f16c_pair`]; the second lane is kept live on purpose).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn f16c(a: [u8; 2]) -> f32 {
        let (x, zero) = f16c_pair(a, [0, 0]);
        // `x - (+0.0)` is `x` for every x, including -0.0.
        x - zero
    }

    /// Sum of the eight i32 lanes (exact, wrapping).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn hsum_epi32(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
        _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01)))
    }

    /// The running sum of a dot product built from eight integer lanes per super-block, in
    /// llama.cpp's one-column arithmetic (each lane fused into its own float accumulator with
    /// `d_w·d_a`, the accumulators summed as `hsum_float_8` at the end) or, with `TILED`, in its
    /// tiled kernels' (`acc = (Σ lanes · d_w) · d_a + acc`, the last two fused).
    pub(crate) struct LaneDot<const TILED: bool> {
        lanes: __m256,
        tiled: f32,
    }

    impl<const TILED: bool> LaneDot<TILED> {
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) fn new() -> Self {
            LaneDot {
                lanes: _mm256_setzero_ps(),
                tiled: 0.0,
            }
        }

        /// Adds one super-block: its eight exact integer lanes and the two scales.
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) fn add(&mut self, sumi: __m256i, d_w: f32, d_a: f32) {
            if TILED {
                self.tiled = (hsum_epi32(sumi) as f32 * d_w).mul_add(d_a, self.tiled);
            } else {
                let d = _mm256_set1_ps(d_w * d_a);
                self.lanes = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), self.lanes);
            }
        }

        /// The dot product.
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) fn total(&self) -> f32 {
            if TILED {
                self.tiled
            } else {
                hsum_ps_256(self.lanes)
            }
        }
    }

    /// Sum of the eight lanes (upper half onto lower, then pairs).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn hsum_ps_256(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        hsum_ps_128(s)
    }

    /// Sum of the 4 lanes of `v`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn hsum_ps_128(v: __m128) -> f32 {
        let s = _mm_add_ps(v, _mm_movehl_ps(v, v));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// A shuffle control for `_mm256_shuffle_epi8` that broadcasts 16-bit element `lo` of a
    /// 128-bit lane over the low lane and element `hi` over the high lane.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn broadcast_i16_ctrl(lo: i16, hi: i16) -> __m256i {
        let l = (2 * lo) | ((2 * lo + 1) << 8);
        let h = (2 * hi) | ((2 * hi + 1) << 8);
        _mm256_set_m128i(_mm_set1_epi16(h), _mm_set1_epi16(l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_match_the_type_table() {
        use std::mem::size_of;
        assert_eq!(size_of::<BlockQ2K>(), GgmlType::Q2_K.block_bytes());
        assert_eq!(size_of::<BlockQ3K>(), GgmlType::Q3_K.block_bytes());
        assert_eq!(size_of::<BlockQ4K>(), GgmlType::Q4_K.block_bytes());
        assert_eq!(size_of::<BlockQ5K>(), GgmlType::Q5_K.block_bytes());
        assert_eq!(size_of::<BlockQ6K>(), GgmlType::Q6_K.block_bytes());
        assert_eq!(size_of::<BlockQ8K>(), GgmlType::Q8_K.block_bytes());
        assert_eq!(QK_K, 256);
    }
}
