//! F16 and BF16 conversion and the float-weight dot product.

use std::arch::x86_64::*;

use super::hsum_ps;
use crate::quant::formats::float::{dequantize_row_scalar, vec_dot_f32_scalar};
use crate::quant::types::GgmlType;

/// A float weight type as the x86 kernels read it: eight elements at a time, as f32.
trait FloatWeights {
    /// The type.
    const TY: GgmlType;
    /// Bytes per element.
    const BYTES: usize;

    /// The eight elements at `p`, as f32.
    ///
    /// # Safety
    /// The CPU has AVX2 and F16C; `p` must be valid for reading eight elements.
    unsafe fn load8(p: *const u8) -> __m256;
}

/// F32 weights.
enum F32 {}
/// F16 weights.
enum F16 {}
/// BF16 weights.
enum Bf16 {}

impl FloatWeights for F32 {
    const TY: GgmlType = GgmlType::F32;
    const BYTES: usize = 4;

    #[inline(always)]
    unsafe fn load8(p: *const u8) -> __m256 {
        // SAFETY: the caller's contract.
        unsafe { _mm256_loadu_ps(p.cast()) }
    }
}

impl FloatWeights for F16 {
    const TY: GgmlType = GgmlType::F16;
    const BYTES: usize = 2;

    /// One F16C conversion.
    #[inline(always)]
    unsafe fn load8(p: *const u8) -> __m256 {
        // SAFETY: the caller's contract.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
    }
}

impl FloatWeights for Bf16 {
    const TY: GgmlType = GgmlType::BF16;
    const BYTES: usize = 2;

    /// bf16 is the high half of an f32: widen to 32 bits and shift left 16.
    #[inline(always)]
    unsafe fn load8(p: *const u8) -> __m256 {
        // SAFETY: the caller's contract.
        unsafe {
            let h = _mm_loadu_si128(p.cast());
            _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Float weights.

/// Converts the F16 `src` into `dst`, eight at a time, the tail by the scalar twin.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `src` holds `dst.len()` elements.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) unsafe fn dequantize_f16(src: &[u8], dst: &mut [f32]) {
    // SAFETY: the caller's contract.
    unsafe { dequantize::<F16>(src, dst) }
}

/// Converts the BF16 `src` into `dst`, as [`dequantize_f16`].
///
/// # Safety
/// As [`dequantize_f16`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) unsafe fn dequantize_bf16(src: &[u8], dst: &mut [f32]) {
    // SAFETY: the caller's contract.
    unsafe { dequantize::<Bf16>(src, dst) }
}

/// The body of [`dequantize_f16`] and [`dequantize_bf16`].
///
/// # Safety
/// As [`dequantize_f16`], for `T`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dequantize<T: FloatWeights>(src: &[u8], dst: &mut [f32]) {
    let n = dst.len();
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: elements `i..i + 8 <= n` of both (`src` holds `n`: the caller's contract).
        unsafe {
            let v = T::load8(src.as_ptr().add(T::BYTES * i));
            _mm256_storeu_ps(dst.as_mut_ptr().add(i), v);
        }
        i += 8;
    }
    dequantize_row_scalar(T::TY, &src[T::BYTES * i..], &mut dst[i..]);
}

/// Dot of a float row with f32 activations.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `w` holds `x.len()` elements of `ty` (F32, F16 or BF16).
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) unsafe fn vec_dot_float(ty: GgmlType, w: &[u8], x: &[f32]) -> f32 {
    // SAFETY: the caller's contract, for the type matched.
    unsafe {
        match ty {
            GgmlType::F32 => dot::<F32>(w, x),
            GgmlType::F16 => dot::<F16>(w, x),
            GgmlType::BF16 => dot::<Bf16>(w, x),
            _ => 0.0,
        }
    }
}

/// The body of [`vec_dot_float`]: four independent 8-lane accumulators (to hide FMA latency),
/// then one, then a scalar tail.
///
/// # Safety
/// As [`vec_dot_float`], for `T`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot<T: FloatWeights>(w: &[u8], x: &[f32]) -> f32 {
    let n = x.len();
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, a) in acc.iter_mut().enumerate() {
            let j = i + 8 * k;
            // SAFETY: elements `j..j + 8 <= n` of both (`w` holds `n`: the caller's contract).
            let (wv, xv) = unsafe { (T::load8(wp.add(T::BYTES * j)), _mm256_loadu_ps(xp.add(j))) };
            *a = _mm256_fmadd_ps(wv, xv, *a);
        }
        i += 32;
    }
    while i + 8 <= n {
        // SAFETY: as above, elements `i..i + 8 <= n`.
        let (wv, xv) = unsafe { (T::load8(wp.add(T::BYTES * i)), _mm256_loadu_ps(xp.add(i))) };
        acc[0] = _mm256_fmadd_ps(wv, xv, acc[0]);
        i += 8;
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    hsum_ps(sum) + vec_dot_f32_scalar(T::TY, &w[T::BYTES * i..], &x[i..])
}
