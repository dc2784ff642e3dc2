//! The Q8_K activation quantizer, AVX2 and AVX-512.

use crate::quant::activations::q8_k::*;
use crate::quant::formats::q8_k::BlockQ8K;
use crate::quant::types::QK_K;
use std::arch::x86_64::*;

/// [`quantize_block`] 16 lanes at a time. The largest magnitude comes from `vmaxps` with the
/// running maximum as second operand, which returns it when the new lane is NaN (as the
/// scalar `>` skips NaN); the value it belongs to is then the first lane equal to it. The
/// quants are the same multiply, add and bit arithmetic as the twin (no FMA), truncated to
/// bytes by `vpmovdb` as `as i8` does; the block sums come from `vpdpbusd` with all-ones
/// and are exact.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(in crate::quant) unsafe fn quantize_block_avx512(x: &[f32; QK_K], y: &mut BlockQ8K) {
    let (vectors, _) = x.as_chunks::<16>();
    let load = |k: usize| {
        let v = &vectors[k];
        // SAFETY: `v` is 16 floats.
        unsafe { _mm512_loadu_ps(v.as_ptr()) }
    };
    let mut amax = _mm512_setzero_ps();
    for k in 0..16 {
        amax = _mm512_max_ps(_mm512_abs_ps(load(k)), amax);
    }
    // No lane of `amax` is NaN (each step returns the old lane on NaN), so the reduction's
    // order does not matter.
    let amax = _mm512_reduce_max_ps(amax);
    if amax == 0.0 {
        y.d = 0.0f32.to_le_bytes();
        y.qs = [0; QK_K];
        y.bsums = [0; 32];
        return;
    }
    let target = _mm512_set1_ps(amax);
    let mut max = amax;
    for k in 0..16 {
        let hits = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(_mm512_abs_ps(load(k)), target);
        if hits != 0 {
            max = x[16 * k + hits.trailing_zeros() as usize];
            break;
        }
    }
    let iscale = -127.0f32 / max;
    let scale = _mm512_set1_ps(iscale);
    let shift = _mm512_set1_ps(ROUND_SHIFT);
    let mantissa = _mm512_set1_epi32(MANTISSA);
    let zero = _mm512_set1_epi32(ZERO_OFFSET);
    let clamp = _mm512_set1_epi32(127);
    let quants = |k: usize| {
        let shifted = _mm512_add_ps(_mm512_mul_ps(scale, load(k)), shift);
        let rounded = _mm512_sub_epi32(
            _mm512_and_si512(_mm512_castps_si512(shifted), mantissa),
            zero,
        );
        _mm512_cvtepi32_epi8(_mm512_min_epi32(rounded, clamp))
    };
    let ones = _mm512_set1_epi8(1);
    // Four groups of 16 quants per register; `sums[r]` holds, in 128-bit lane `l`, four
    // partial sums of group 4r + l.
    let mut sums = [_mm512_setzero_si512(); 4];
    for (r, sum) in sums.iter_mut().enumerate() {
        let q = _mm512_castsi128_si512(quants(4 * r));
        let q = _mm512_inserti32x4::<1>(q, quants(4 * r + 1));
        let q = _mm512_inserti32x4::<2>(q, quants(4 * r + 2));
        let q = _mm512_inserti32x4::<3>(q, quants(4 * r + 3));
        // SAFETY: bytes 64r .. 64r+64 of the 256 quants.
        unsafe { _mm512_storeu_si512(y.qs.as_mut_ptr().add(64 * r).cast(), q) };
        *sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, q);
    }
    // Fold the four partial sums of every group: lane (l, r) of `total` is group 4r + l.
    let s01 = _mm512_add_epi32(
        _mm512_unpacklo_epi32(sums[0], sums[1]),
        _mm512_unpackhi_epi32(sums[0], sums[1]),
    );
    let s23 = _mm512_add_epi32(
        _mm512_unpacklo_epi32(sums[2], sums[3]),
        _mm512_unpackhi_epi32(sums[2], sums[3]),
    );
    let total = _mm512_add_epi32(
        _mm512_unpacklo_epi64(s01, s23),
        _mm512_unpackhi_epi64(s01, s23),
    );
    // Group g = 4r + l sits at element 4l + r.
    let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    let bsums = _mm512_cvtepi32_epi16(_mm512_permutexvar_epi32(order, total));
    // SAFETY: `bsums` is 32 bytes.
    unsafe { _mm256_storeu_si256(y.bsums.as_mut_ptr().cast(), bsums) };
    y.d = (1.0f32 / iscale).to_le_bytes();
}

/// [`quantize_block`] 8 lanes at a time, as [`quantize_block_avx512`]. The quants are
/// narrowed to bytes by masking to the low byte and packing without saturation (the masked
/// values fit), which is the truncation of `as i8`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) unsafe fn quantize_block_avx2(x: &[f32; QK_K], y: &mut BlockQ8K) {
    let (vectors, _) = x.as_chunks::<8>();
    let load = |k: usize| {
        let v = &vectors[k];
        // SAFETY: `v` is eight floats.
        unsafe { _mm256_loadu_ps(v.as_ptr()) }
    };
    let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX));
    let abs = |v: __m256| _mm256_and_ps(v, abs_mask);
    let mut amax = _mm256_setzero_ps();
    for k in 0..32 {
        amax = _mm256_max_ps(abs(load(k)), amax);
    }
    // No lane is NaN, so the order of this reduction does not matter.
    let m = _mm_max_ps(
        _mm256_castps256_ps128(amax),
        _mm256_extractf128_ps::<1>(amax),
    );
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
    if amax == 0.0 {
        y.d = 0.0f32.to_le_bytes();
        y.qs = [0; QK_K];
        y.bsums = [0; 32];
        return;
    }
    let target = _mm256_set1_ps(amax);
    let mut max = amax;
    for k in 0..32 {
        let hits = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(abs(load(k)), target));
        if hits != 0 {
            max = x[8 * k + hits.trailing_zeros() as usize];
            break;
        }
    }
    let iscale = -127.0f32 / max;
    let scale = _mm256_set1_ps(iscale);
    let shift = _mm256_set1_ps(ROUND_SHIFT);
    let mantissa = _mm256_set1_epi32(MANTISSA);
    let zero = _mm256_set1_epi32(ZERO_OFFSET);
    let clamp = _mm256_set1_epi32(127);
    let low_byte = _mm256_set1_epi32(0xff);
    let quants = |k: usize| {
        let shifted = _mm256_add_ps(_mm256_mul_ps(scale, load(k)), shift);
        let rounded = _mm256_sub_epi32(
            _mm256_and_si256(_mm256_castps_si256(shifted), mantissa),
            zero,
        );
        _mm256_and_si256(_mm256_min_epi32(rounded, clamp), low_byte)
    };
    // The packs interleave 128-bit lanes; this puts the 4-byte runs back in order.
    let unlace = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let ones8 = _mm256_set1_epi8(1);
    let ones16 = _mm256_set1_epi16(1);
    // `sums[r]` holds, in 128-bit lane `l`, four partial sums of group 2r + l.
    let mut sums = [_mm256_setzero_si256(); 8];
    for (r, sum) in sums.iter_mut().enumerate() {
        let lo = _mm256_packus_epi32(quants(4 * r), quants(4 * r + 1));
        let hi = _mm256_packus_epi32(quants(4 * r + 2), quants(4 * r + 3));
        let q = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(lo, hi), unlace);
        // SAFETY: bytes 32r .. 32r+32 of the 256 quants.
        unsafe { _mm256_storeu_si256(y.qs.as_mut_ptr().add(32 * r).cast(), q) };
        // Unsigned ones times signed quants: pair sums within i16, then quads in i32.
        *sum = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, q), ones16);
    }
    // Lane l of `half[h]` element r: group 2(4h + r) + l.
    let half = |h: usize| {
        let s = &sums[4 * h..4 * h + 4];
        let a = _mm256_hadd_epi32(s[0], s[1]);
        let b = _mm256_hadd_epi32(s[2], s[3]);
        _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(a, b), unlace)
    };
    // Sums of 16 bytes fit i16, so the saturating pack is exact; it interleaves lanes too.
    let packed = _mm256_packs_epi32(half(0), half(1));
    let bsums = _mm256_permute4x64_epi64::<0b11_01_10_00>(packed);
    // SAFETY: `bsums` is 32 bytes.
    unsafe { _mm256_storeu_si256(y.bsums.as_mut_ptr().cast(), bsums) };
    y.d = (1.0f32 / iscale).to_le_bytes();
}
