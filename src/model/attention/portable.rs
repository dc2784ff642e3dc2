//! The attention arithmetic in plain Rust: the twin every SIMD kernel is tested against, and the
//! path of the scalar and AVX2 levels (compiled with hardware fused multiply-add for AVX2, which
//! gives the same bits as the C library's `fmaf` much faster).

use half::f16;

use super::layout::{read_row, TiledRows};
use super::{
    grow, vexp, AttentionKernel, AttentionPrecision, HeadSource, Span, LANES, SCRATCH, STEP,
};
use crate::model::config::MAX_HEAD_DIM;
use crate::model::ops::has_fma;
use crate::quant::Simd;

impl Span<'_> {
    /// [`Span::attend`] of one query head in plain Rust (compiled with hardware FMA when the
    /// level has it), for any source.
    pub(super) fn attend_portable(&self, simd: Simd, q: &[f32], out: &mut [f32]) {
        SCRATCH.with_borrow_mut(|s| {
            let n = self.last + 1 - self.first;
            let slots = match self.kernel {
                AttentionKernel::Batched => LANES,
                AttentionKernel::Single => STEP,
            };
            let need = slots * out.len();
            grow(&mut s.weights, n);
            grow(&mut s.lanes, need);
            let (weights, lanes) = (&mut s.weights[..n], &mut s.lanes[..need]);
            #[cfg(target_arch = "x86_64")]
            if has_fma(simd) {
                // SAFETY: the CPU has AVX2, FMA and F16C (checked above).
                return unsafe { self.attend_fma(q, weights, lanes, out) };
            }
            self.attend_any(false, q, weights, lanes, out)
        });
    }

    /// [`Self::attend_portable`] compiled with hardware fused multiply-add (same results, much faster than
    /// the C library's `fmaf`). No closures inside: they would be compiled without the features.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn attend_fma(
        &self,
        q: &[f32],
        weights: &mut [f32],
        lanes: &mut [f32],
        out: &mut [f32],
    ) {
        self.attend_any(true, q, weights, lanes, out)
    }

    /// `fma`: whether this copy is compiled with AVX2 and FMA (and may call their kernels).
    #[inline(always)]
    pub(super) fn attend_any(
        &self,
        fma: bool,
        q: &[f32],
        weights: &mut [f32],
        lanes: &mut [f32],
        out: &mut [f32],
    ) {
        self.weights_any(fma, q, weights);
        self.weighted_values(weights, lanes, out);
    }

    /// [`Span::weights`] in plain Rust, as [`Self::attend_portable`].
    pub(super) fn weights_portable(&self, simd: Simd, q: &[f32], weights: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if has_fma(simd) {
            // SAFETY: the CPU has AVX2, FMA and F16C (checked above).
            return unsafe { self.weights_fma(q, weights) };
        }
        self.weights_any(false, q, weights)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn weights_fma(&self, q: &[f32], weights: &mut [f32]) {
        self.weights_any(true, q, weights)
    }

    /// `fma`: as [`Self::attend_any`].
    #[inline(always)]
    fn weights_any(&self, fma: bool, q: &[f32], weights: &mut [f32]) {
        let dim = q.len();
        let mut query = [0.0f32; MAX_HEAD_DIM];
        let query = &mut query[..dim];
        query.copy_from_slice(q);
        if self.precision == AttentionPrecision::F16 {
            round_to_f16(query);
        }
        let mut key = [0.0f32; MAX_HEAD_DIM];
        let key = &mut key[..dim];
        let mut pos = self.first;
        #[cfg(not(target_arch = "x86_64"))]
        let _ = fma;
        #[cfg(target_arch = "x86_64")]
        if let (AttentionKernel::Batched, HeadSource::Widened { keys, base, .. }, true) =
            (self.kernel, self.source, dim.is_multiple_of(LANES) && fma)
        {
            // Four keys at a time: four independent chains of fused multiply-adds instead of
            // one; each score's own order is unchanged.
            while pos + 4 <= self.last + 1 {
                let rows = &keys[(pos - base) * dim..][..4 * dim];
                // SAFETY: the CPU has AVX2 and FMA (`fma`: the caller checked it); `rows` holds
                // four rows of `dim` floats and `dim` is a multiple of 16.
                let scores = unsafe { super::avx2::dot_lanes_x4(rows, query) };
                for (j, score) in scores.into_iter().enumerate() {
                    weights[pos + j - self.first] = self.capped(score) * self.scale;
                }
                pos += 4;
            }
        }
        for pos in pos..=self.last {
            let k = self.row(true, pos, key);
            let score = match self.kernel {
                AttentionKernel::Batched => dot_lanes(k, query),
                AttentionKernel::Single => dot_steps(k, query),
            };
            weights[pos - self.first] = self.capped(score) * self.scale;
        }
        softmax_chunked(weights, self.first);
        if self.precision == AttentionPrecision::F16 {
            round_to_f16(weights);
        }
    }

    /// `out[d] = Σ_j weights[j] · v_j[d]`, with the positions' products accumulated in the lane
    /// slots of the kernel (`lanes` holds `slots × dim` floats), then reduced.
    #[inline(always)]
    fn weighted_values(&self, weights: &[f32], lanes: &mut [f32], out: &mut [f32]) {
        let dim = out.len();
        lanes.fill(0.0);
        let slots = lanes.len() / dim;
        let mut value = [0.0f32; MAX_HEAD_DIM];
        let value = &mut value[..dim];
        for (&w, pos) in weights.iter().zip(self.first..=self.last) {
            if w == 0.0 {
                // Adds exact zeros in llama.cpp too.
                continue;
            }
            let v = self.row(false, pos, value);
            let slot = &mut lanes[(pos % slots) * dim..][..dim];
            fma_axpy(w, v, slot);
        }
        // Reduce the slots row-wise (vectorized over the dimensions), in the order of
        // `reduce_steps` / `reduce16` per dimension.
        if self.kernel == AttentionKernel::Single {
            for l in 0..LANES {
                for d in 0..dim {
                    lanes[l * dim + d] = (lanes[l * dim + d] + lanes[(2 * LANES + l) * dim + d])
                        + (lanes[(LANES + l) * dim + d] + lanes[(3 * LANES + l) * dim + d]);
                }
            }
        }
        for (half, dst_rows) in [(8, 8), (4, 4)] {
            for i in 0..dst_rows {
                for d in 0..dim {
                    lanes[i * dim + d] += lanes[(i + half) * dim + d];
                }
            }
        }
        for (d, o) in out.iter_mut().enumerate() {
            *o = (lanes[d] + lanes[2 * dim + d]) + (lanes[dim + d] + lanes[3 * dim + d]);
        }
    }

    /// The key (`key`) or value row of position `pos` as f32, widened into `buf` when it comes
    /// from an f16 cache (`buf.len()` is the row width).
    #[inline(always)]
    fn row<'b>(&'b self, key: bool, pos: usize, buf: &'b mut [f32]) -> &'b [f32] {
        match self.source {
            HeadSource::Widened {
                keys, values, base, ..
            } => {
                let rows = if key { keys } else { values };
                let dim = buf.len();
                &rows[(pos - base) * dim..][..dim]
            }
            HeadSource::Tiled(TiledRows {
                keys,
                values,
                base,
                positions,
                ..
            }) => {
                let (rel, dim_k) = (pos - base, buf.len());
                if key {
                    let block = &keys[rel / LANES * LANES * dim_k..][..LANES * dim_k];
                    for (x, &k) in buf
                        .iter_mut()
                        .zip(block[rel % LANES..].iter().step_by(LANES))
                    {
                        *x = k;
                    }
                } else {
                    for (c, chunk) in buf.chunks_exact_mut(LANES).enumerate() {
                        chunk.copy_from_slice(&values[(c * positions + rel) * LANES..][..LANES]);
                    }
                }
                buf
            }
            HeadSource::Cache {
                kv,
                blocks,
                layer,
                kv_head,
            } => {
                let rows = if key {
                    kv.key_rows(layer, kv_head, blocks)
                } else {
                    kv.value_rows(layer, kv_head, blocks)
                };
                read_row(rows, pos, buf)
            }
        }
    }
}

/// Rounds every value to the nearest f16 (ties to even) and back.
#[inline(always)]
fn round_to_f16(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = f16::from_f32(*v).to_f32();
    }
}

/// The sum of 16 lanes as a 512-bit register is reduced (`_mm512_reduce_add_ps`): upper half onto
/// lower, then again, then the pairs of the last four.
#[inline(always)]
pub fn reduce16(a: [f32; LANES]) -> f32 {
    let mut h = [0.0f32; 8];
    for i in 0..8 {
        h[i] = a[i] + a[i + 8];
    }
    let q = [h[0] + h[4], h[1] + h[5], h[2] + h[6], h[3] + h[7]];
    (q[0] + q[2]) + (q[1] + q[3])
}

/// The reduction of llama.cpp's four 16-lane dot-product accumulators: registers 0+2 and 1+3,
/// then those two, then [`reduce16`], widened to f64.
#[inline(always)]
pub(super) fn reduce_steps(r: [[f32; LANES]; 4]) -> f64 {
    let mut a = [0.0f32; LANES];
    for l in 0..LANES {
        a[l] = (r[0][l] + r[2][l]) + (r[1][l] + r[3][l]);
    }
    f64::from(reduce16(a))
}

/// `Σ a_i·b_i` in 16 lanes (element `i` in lane `i % 16`, fused multiply-adds in order of `i`),
/// reduced as [`reduce16`]: llama.cpp's tiled f16/f32 matrix multiply. `a.len() % 16 == 0`.
#[inline(always)]
pub(super) fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    for (ca, cb) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] = ca[l].mul_add(cb[l], acc[l]);
        }
    }
    reduce16(acc)
}

/// `Σ a_i·b_i` as llama.cpp's generic f16 dot product computes it: four 16-lane accumulators
/// over 64-element steps, reduced by [`reduce_steps`] into f64, the remaining elements' f32
/// products added in f64, the total rounded to f32.
#[inline(always)]
pub(super) fn dot_steps(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [[0.0f32; LANES]; 4];
    let full = a.len() / STEP * STEP;
    for (sa, sb) in a[..full]
        .chunks_exact(STEP)
        .zip(b[..full].chunks_exact(STEP))
    {
        for (r, acc) in acc.iter_mut().enumerate() {
            for (l, acc) in acc.iter_mut().enumerate() {
                let i = r * LANES + l;
                *acc = sa[i].mul_add(sb[i], *acc);
            }
        }
    }
    let mut sum = reduce_steps(acc);
    for (x, y) in a[full..].iter().zip(&b[full..]) {
        sum += f64::from(x * y);
    }
    sum as f32
}

/// `acc += w · v` with one fused multiply-add per element.
#[inline(always)]
fn fma_axpy(w: f32, v: &[f32], acc: &mut [f32]) {
    for (a, &x) in acc.iter_mut().zip(v) {
        *a = x.mul_add(w, *a);
    }
}

/// Softmax of the scores of positions `first..`, in place, as llama.cpp's vector code computes
/// it: `e_j = vexp(s_j − max)`, summed per 16-position chunk of the cache (chunks count from
/// position 0; masked positions are zeros) in [`reduce16`] order, the chunk sums accumulated in
/// f64, then each `e_j` multiplied by `1 / sum` rounded to f32.
#[inline(always)]
pub fn softmax_chunked(x: &mut [f32], first: usize) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for v in x.iter_mut() {
        *v = vexp(*v - max);
    }
    let mut sum = 0.0f64;
    let mut pos = first;
    let end = first + x.len();
    while pos < end {
        let chunk_start = pos / LANES * LANES;
        let chunk_end = (chunk_start + LANES).min(end);
        let mut chunk = [0.0f32; LANES];
        chunk[pos - chunk_start..chunk_end - chunk_start]
            .copy_from_slice(&x[pos - first..chunk_end - first]);
        sum += f64::from(reduce16(chunk));
        pos = chunk_end;
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}
