//! The AVX2 kernel of the portable path: four of its batched dot products at once.

use std::arch::x86_64::*;

/// `portable::dot_lanes` of the four consecutive `b.len()`-long rows of `rows` with `b`: the
/// 16 lanes of each held in two 8-lane registers, then reduced as `reduce16` does.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `rows.len() == 4 * b.len()` and `b.len() % 16 == 0`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dot_lanes_x4(rows: &[f32], b: &[f32]) -> [f32; 4] {
    let dim = b.len();
    let mut lo = [_mm256_setzero_ps(); 4];
    let mut hi = [_mm256_setzero_ps(); 4];
    for c in 0..dim / 16 {
        // SAFETY: 16c + 16 <= dim, inside `b` and inside each row (checked by the caller).
        unsafe {
            let b_lo = _mm256_loadu_ps(b.as_ptr().add(16 * c));
            let b_hi = _mm256_loadu_ps(b.as_ptr().add(16 * c + 8));
            for j in 0..4 {
                let r = rows.as_ptr().add(j * dim + 16 * c);
                lo[j] = _mm256_fmadd_ps(_mm256_loadu_ps(r), b_lo, lo[j]);
                hi[j] = _mm256_fmadd_ps(_mm256_loadu_ps(r.add(8)), b_hi, hi[j]);
            }
        }
    }
    let mut out = [0.0f32; 4];
    for j in 0..4 {
        let h = _mm256_add_ps(lo[j], hi[j]);
        let q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
        let pairs = _mm_add_ps(q, _mm_movehl_ps(q, q));
        out[j] = _mm_cvtss_f32(_mm_add_ss(pairs, _mm_movehdup_ps(pairs)));
    }
    out
}
