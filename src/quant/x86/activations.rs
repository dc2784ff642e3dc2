//! The Q8_0 and Q8_1 activation quantizers (ggml's x86 `quantize_row_q8_0` / `_q8_1`).

use std::arch::x86_64::*;

use super::{f16_bits, hmax_ps, hsum_epi32};
use crate::quant::block::QK;
use crate::quant::formats::q8_0::BlockQ8_0;
use crate::quant::formats::q8_1::BlockQ8_1;

const Q8_0_BYTES: usize = size_of::<BlockQ8_0>();
const Q8_1_BYTES: usize = size_of::<BlockQ8_1>();

// ---------------------------------------------------------------------------------------------
// Activation quantization (ggml's x86 `quantize_row_q8_0` / `_q8_1`), bit-identical to the
// scalar twin: same `amax`, same `d = amax / 127` and multiplier `127 / amax` in scalar f32, same
// product `x * id`, rounded half to even.

/// Quantizes the 32 floats at `x` into the 32 bytes at `qs`; returns `d` and the quants' sum.
///
/// # Safety
/// `x` must be valid for reading 32 f32 and `qs` for writing 32 bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_block(x: *const f32, qs: *mut u8) -> (f32, i32) {
    // SAFETY: the 32 floats at `x` (the caller's contract).
    let v = unsafe {
        [
            _mm256_loadu_ps(x),
            _mm256_loadu_ps(x.add(8)),
            _mm256_loadu_ps(x.add(16)),
            _mm256_loadu_ps(x.add(24)),
        ]
    };
    let sign = _mm256_set1_ps(-0.0);
    let abs = |a: __m256| _mm256_andnot_ps(sign, a);
    let m = _mm256_max_ps(
        _mm256_max_ps(abs(v[0]), abs(v[1])),
        _mm256_max_ps(abs(v[2]), abs(v[3])),
    );
    let amax = hmax_ps(m);
    let d = amax / 127.0;
    let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
    let mut q = [_mm256_setzero_si256(); 4];
    for k in 0..4 {
        let s = _mm256_mul_ps(v[k], id);
        q[k] = _mm256_cvtps_epi32(_mm256_round_ps::<
            { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
        >(s));
    }
    let sum = hsum_epi32(_mm256_add_epi32(
        _mm256_add_epi32(q[0], q[1]),
        _mm256_add_epi32(q[2], q[3]),
    ));
    // Saturating packs interleave the 128-bit halves; the permute restores element order.
    let p01 = _mm256_packs_epi32(q[0], q[1]);
    let p23 = _mm256_packs_epi32(q[2], q[3]);
    let bytes = _mm256_packs_epi16(p01, p23);
    let bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    // SAFETY: the 32 bytes at `qs` (the caller's contract).
    unsafe { _mm256_storeu_si256(qs.cast(), bytes) };
    (d, sum)
}

/// Quantizes `x` into the Q8_0 blocks of `dst`.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `dst` holds `x.len() / 32` blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) unsafe fn quantize_q8_0(x: &[f32], dst: &mut [u8]) {
    for i in 0..x.len() / QK {
        // SAFETY: block `i` of `dst` exists (the caller's contract) and elements `32i..32i + 32`
        // of `x` do (`i < x.len() / 32`); the quants follow the block's two scale bytes.
        unsafe {
            let b = dst.as_mut_ptr().add(i * Q8_0_BYTES);
            let (d, _) = quantize_block(x.as_ptr().add(i * QK), b.add(2));
            let d = f16_bits(d);
            *b = d[0];
            *b.add(1) = d[1];
        }
    }
}

/// Quantizes `x` into the Q8_1 blocks of `dst`.
///
/// # Safety
/// As [`quantize_q8_0`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) unsafe fn quantize_q8_1(x: &[f32], dst: &mut [u8]) {
    for i in 0..x.len() / QK {
        // SAFETY: as in `quantize_q8_0`; the quants follow the block's four bytes of scale and
        // sum.
        unsafe {
            let b = dst.as_mut_ptr().add(i * Q8_1_BYTES);
            let (d, sum) = quantize_block(x.as_ptr().add(i * QK), b.add(4));
            let s = f16_bits(sum as f32 * d);
            let d = f16_bits(d);
            for (k, byte) in [d[0], d[1], s[0], s[1]].into_iter().enumerate() {
                *b.add(k) = byte;
            }
        }
    }
}
