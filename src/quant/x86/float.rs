//! F16 and BF16 conversion and the float-weight dot product.

use std::arch::x86_64::*;

use super::hsum_ps;
use crate::quant::formats::float::{dequantize_row_scalar, vec_dot_f32_scalar};
use crate::quant::types::GgmlType;

// ---------------------------------------------------------------------------------------------
// Float weights.

#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) unsafe fn dequantize_f16(src: &[u8], dst: &mut [f32]) {
    let n = dst.len();
    let mut i = 0;
    while i + 8 <= n {
        let h = _mm_loadu_si128(src.as_ptr().add(2 * i).cast());
        _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
        i += 8;
    }
    dequantize_row_scalar(GgmlType::F16, &src[2 * i..], &mut dst[i..]);
}

/// bf16 is the high half of an f32: widen to 32 bits and shift left 16.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bf16x8(p: *const u8) -> __m256 {
    let h = _mm_loadu_si128(p.cast());
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) unsafe fn dequantize_bf16(src: &[u8], dst: &mut [f32]) {
    let n = dst.len();
    let mut i = 0;
    while i + 8 <= n {
        _mm256_storeu_ps(dst.as_mut_ptr().add(i), bf16x8(src.as_ptr().add(2 * i)));
        i += 8;
    }
    dequantize_row_scalar(GgmlType::BF16, &src[2 * i..], &mut dst[i..]);
}

/// Dot of a float row with f32 activations: four independent 8-lane accumulators (to hide FMA
/// latency), a scalar tail.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) unsafe fn vec_dot_float(ty: GgmlType, w: &[u8], x: &[f32]) -> f32 {
    macro_rules! dot_loop {
        ($elem:expr, $load:expr) => {{
            let n = x.len();
            let (wp, xp) = (w.as_ptr(), x.as_ptr());
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut i = 0;
            while i + 32 <= n {
                for (k, a) in acc.iter_mut().enumerate() {
                    let j = i + 8 * k;
                    *a = _mm256_fmadd_ps($load(wp.add($elem * j)), _mm256_loadu_ps(xp.add(j)), *a);
                }
                i += 32;
            }
            while i + 8 <= n {
                acc[0] =
                    _mm256_fmadd_ps($load(wp.add($elem * i)), _mm256_loadu_ps(xp.add(i)), acc[0]);
                i += 8;
            }
            let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            hsum_ps(sum) + vec_dot_f32_scalar(ty, &w[$elem * i..], &x[i..])
        }};
    }
    match ty {
        GgmlType::F32 => dot_loop!(4, |p: *const u8| _mm256_loadu_ps(p.cast())),
        GgmlType::F16 => dot_loop!(2, |p: *const u8| _mm256_cvtph_ps(_mm_loadu_si128(p.cast()))),
        GgmlType::BF16 => dot_loop!(2, |p: *const u8| bf16x8(p)),
        _ => 0.0,
    }
}
