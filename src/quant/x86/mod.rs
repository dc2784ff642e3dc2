//! x86-64 SIMD kernels, by format family, and the helpers they share. Two levels:
//! AVX2 + FMA + F16C (`Simd::Avx2`) and AVX-512 F/BW/VL with VNNI (`Simd::Avx512`, on 256-bit
//! registers unless a kernel says otherwise).
//!
//! Every kernel is a `#[target_feature]` function the caller may run only on a CPU with those
//! features, with operands of whole, matching blocks: the safe entry points in `dispatch` make
//! both checks ([`Simd::or_supported`](crate::quant::Simd::or_supported) and the length checks
//! of `block`) and then call in. Each kernel computes exactly what its plain-Rust twin in
//! `formats` or `activations` computes, to the bit.

use std::arch::x86_64::*;

pub mod activations;
pub mod block32;
pub mod float;
pub mod iq4;
pub mod q2_k;
pub mod q3_k;
pub mod q4_k;
pub mod q5_k;
pub mod q6_k;
pub mod q8_k;

/// The little-endian f16 at `p`, as f32.
///
/// # Safety
/// `p` must be valid for reading two bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: two readable bytes at `p` (the caller's contract), read unaligned.
    let bits = unsafe { p.cast::<u16>().read_unaligned() };
    let v = _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32));
    // Lane 1 (0.0) is subtracted so that it stays demanded: with only lane 0 used, LLVM turns
    // the conversion's input into a `vpinsrw` into whatever register is live, often a kernel's
    // accumulator, which chains every block's scale load onto the accumulation (a measured 2x
    // on token generation). `x - 0.0 == x` for every x, -0.0 included.
    _mm_cvtss_f32(v) - _mm_cvtss_f32(_mm_movehdup_ps(v))
}

/// The little-endian f16 at `p`, as f32 in all eight lanes (every lane demanded, so no partial
/// register write; see [`f16_at`]).
///
/// # Safety
/// `p` must be valid for reading two bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) unsafe fn f16_splat(p: *const u8) -> __m256 {
    // SAFETY: two readable bytes at `p` (the caller's contract), read unaligned.
    let bits = unsafe { p.cast::<u16>().read_unaligned() };
    _mm256_cvtph_ps(_mm_set1_epi16(bits as i16))
}

/// The f32 `v` as f16 bits, rounded to nearest even (as `half::f16::from_f32`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) fn f16_bits(v: f32) -> [u8; 2] {
    let h = _mm_cvtps_ph(_mm_set_ss(v), _MM_FROUND_TO_NEAREST_INT);
    (_mm_cvtsi128_si32(h) as u16).to_le_bytes()
}

/// Sum of the eight lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Maximum of the eight lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) fn hmax_ps(v: __m256) -> f32 {
    let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let m = _mm_max_ss(m, _mm_movehdup_ps(m));
    _mm_cvtss_f32(m)
}

/// Sum of the eight i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) fn hsum_epi32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}

/// The 16 bytes of packed nibbles at `p` as 32 bytes in element order: low nibbles (elements
/// 0..16) in the low half, high nibbles (16..32) in the high half.
///
/// # Safety
/// `p` must be valid for reading 16 bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) unsafe fn nibbles(p: *const u8) -> __m256i {
    // SAFETY: 16 readable bytes at `p` (the caller's contract), read unaligned.
    let q = unsafe { _mm_loadu_si128(p.cast()) };
    let both = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
}

/// Byte `j` = 0xFF where bit `j` of `bits` is set, else 0 (AVX2: broadcast, pick byte `j / 8`
/// into each byte with a shuffle, test bit `j % 8`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) fn bits_to_bytes_avx2(bits: u32) -> __m256i {
    let v = _mm256_set1_epi32(bits as i32);
    let pick = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3,
        3, 3,
    );
    let bytes = _mm256_shuffle_epi8(v, pick);
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
    _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit)
}

/// Q5_0 quants `q - 16` from the nibbles and the fifth-bit mask: a clear fifth bit means
/// `nibble - 16`, which as i8 is `nibble | 0xF0`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) fn q5_0_values(nib: __m256i, fifth: __m256i) -> __m256i {
    _mm256_or_si256(
        nib,
        _mm256_andnot_si256(fifth, _mm256_set1_epi8(0xF0_u8 as i8)),
    )
}

/// Q5_1 quants `nibble + 16 · fifth bit`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) fn q5_1_values(nib: __m256i, fifth: __m256i) -> __m256i {
    _mm256_or_si256(nib, _mm256_and_si256(fifth, _mm256_set1_epi8(0x10)))
}

/// Two f16 values (little-endian bytes) to f32 with one F16C conversion: exact, as the
/// software conversion, but without the call through `half`'s run-time dispatch.
/// Built from a 32-bit `vmovd` (which zeroes the rest of the register): when only lane 0 is
/// demanded LLVM turns a lone conversion into an insert into an arbitrary live register
/// (the accumulator), chaining every block's scale onto the loop's dependency chain.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) fn f16c_pair(a: [u8; 2], b: [u8; 2]) -> (f32, f32) {
    let v = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes([
        a[0], a[1], b[0], b[1],
    ])));
    (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
}

/// One f16 value to f32 (see [`f16c_pair`]; the second lane is kept live on purpose).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) fn f16c(a: [u8; 2]) -> f32 {
    let (x, zero) = f16c_pair(a, [0, 0]);
    // `x - (+0.0)` is `x` for every x, including -0.0.
    x - zero
}

/// The running sum of a dot product built from eight integer lanes per super-block, in
/// llama.cpp's one-column arithmetic (each lane fused into its own float accumulator with
/// `d_w·d_a`, the accumulators summed as `hsum_float_8` at the end) or, with `TILED`, in its
/// tiled kernels' (`acc = (Σ lanes · d_w) · d_a + acc`, the last two fused).
pub(in crate::quant) struct LaneDot<const TILED: bool> {
    lanes: __m256,
    tiled: f32,
}

impl<const TILED: bool> LaneDot<TILED> {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(in crate::quant) fn new() -> Self {
        LaneDot {
            lanes: _mm256_setzero_ps(),
            tiled: 0.0,
        }
    }

    /// Adds one super-block: its eight exact integer lanes and the two scales.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(in crate::quant) fn add(&mut self, sumi: __m256i, d_w: f32, d_a: f32) {
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
    pub(in crate::quant) fn total(&self) -> f32 {
        if TILED {
            self.tiled
        } else {
            hsum_ps(self.lanes)
        }
    }
}

/// A shuffle control for `_mm256_shuffle_epi8` that broadcasts 16-bit element `lo` of a
/// 128-bit lane over the low lane and element `hi` over the high lane.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) fn broadcast_i16_ctrl(lo: i16, hi: i16) -> __m256i {
    let l = (2 * lo) | ((2 * lo + 1) << 8);
    let h = (2 * hi) | ((2 * hi + 1) << 8);
    _mm256_set_m128i(_mm_set1_epi16(h), _mm_set1_epi16(l))
}

/// Asks for the `bytes` bytes that start `ahead` bytes past `block` to be brought into the
/// cache (one-column calls stream the weights once, and their loads must not wait on memory).
#[inline(always)]
pub(in crate::quant) fn prefetch_ahead(block: *const u8, ahead: usize, bytes: usize) {
    // Wrapping: the address may lie past the matrix, which a hint tolerates.
    let ahead = block.wrapping_add(ahead);
    for line in 0..bytes.div_ceil(64) {
        // SAFETY: a prefetch is only a hint: it never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * line).cast()) };
    }
}
