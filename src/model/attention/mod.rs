//! Attention of query heads over the cached keys and values, in the arithmetic llama.cpp's CPU
//! backend uses (its non-flash path), so that our results are its results to the bit.
//!
//! Why bit-exact: the outputs feed the next matmul, whose activations are quantized to 8 bits.
//! A difference of one unit in the last place flips an int8 rounding now and then, and each flip
//! grows through the layers; two evaluation orders that are both "correct" end up as far apart as
//! the quantization noise (~0.3 in the logits of SmolLM2). So we follow llama.cpp's order:
//!
//! - scores `q·k`: the query rounded to f16 (the cache's type), then summed in 16 lanes (element
//!   `i` in lane `i % 16`, fused multiply-adds) reduced as a 512-bit register is; one token alone
//!   takes the generic dot product instead, four 16-lane accumulators over 64-element steps;
//! - softmax: scaled scores, the exponential llama.cpp's vector code computes ([`vexp`]) in
//!   16-position chunks whose sums accumulate in f64, then one multiply by `1 / sum`;
//! - the weighted sum of values: weights rounded to f16, then per output dimension the same two
//!   lane layouts over cache positions.
//!
//! The chunks count from position 0 of the cache (llama.cpp's cache cell = position for a single
//! sequence), so masked positions contribute exact zeros and are skipped.
//!
//! # Layout
//!
//! A computation is a [`Span`] (which KV head, which positions, which arithmetic) and the query
//! heads that attend over it, run at the session's [`Simd`] level:
//!
//! - `mod.rs` (here): the span, the entry points and the choice of path by level;
//! - [`layout`]: where a head's keys and values are read from, and the widening of the cache into
//!   the layouts the batched kernels read;
//! - `portable`: the arithmetic in plain Rust, the twin every kernel is tested against (compiled
//!   with hardware FMA when the level has it);
//! - `avx2`: its four-keys-at-once dot product;
//! - `avx512_batch`: several query tokens, 16 query heads at a time over tiled keys and values;
//! - `avx512_single`: one token, the query heads of a KV head reading the cache in place.
//!
//! Every path gives the same bits; the level only decides how fast.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512_batch;
#[cfg(target_arch = "x86_64")]
mod avx512_single;
#[cfg(test)]
mod bench;
pub mod layout;
mod portable;
#[cfg(test)]
mod tests;

pub use layout::{widen_head_batched, HeadSource, TiledRows};
pub use portable::{reduce16, softmax_chunked};

use super::ops::vexp;
use crate::quant::Simd;

/// Lanes of a 512-bit register of f32.
const LANES: usize = 16;
/// Elements per step of llama.cpp's generic f16 dot product (four registers).
const STEP: usize = 4 * LANES;
/// Query heads the AVX-512 batched kernel takes at once: each block of keys and tile of values
/// it loads is used by all of them while it is in the L1 cache (one query alone streams the whole
/// head from L2 twice), and the weights and lane slots of 16 queries stay small.
const BATCH: usize = 16;

/// Which of llama.cpp's kernel families computes the scores and the weighted sum: several query
/// tokens go through its tiled matrix multiply, a lone token through its vector dot product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionKernel {
    /// More than one token in the forward pass.
    Batched,
    /// One token (generation).
    Single,
}

/// How attention rounds its intermediate values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionPrecision {
    /// Everything in f32 (f32 cache).
    F32,
    /// As a half-precision cache implies: the query is rounded to f16 before it meets the keys,
    /// and the softmax weights before they meet the values.
    F16,
}

/// What one attention computation covers: the query heads of one token that share a KV head
/// (passed beside the span, `head_dim` floats each, one after the other) attend over that KV
/// head's positions `first..=last`, read from `source`, scores times `scale`, in the arithmetic
/// of `kernel` rounded as `precision` says. Every path — portable, AVX2, AVX-512 batched and
/// one-token — reads this description.
#[derive(Clone, Copy)]
pub struct Span<'a> {
    /// Where the KV head's keys and values are read from.
    pub source: HeadSource<'a>,
    /// The first position attended.
    pub first: usize,
    /// The last position attended (the query's own, for causal attention).
    pub last: usize,
    /// The factor of every score `q·k`.
    pub scale: f32,
    /// Soft-capping of the scores before the scale, `cap · tanh(score / cap)` (gemma2); 0 for
    /// none.
    pub softcap: f32,
    /// How intermediate values are rounded.
    pub precision: AttentionPrecision,
    /// Which of llama.cpp's kernel families' arithmetic.
    pub kernel: AttentionKernel,
}

impl<'a> Span<'a> {
    /// The causal span of a query at position `pos`: the positions up to its own, only the last
    /// `window` of them (`usize::MAX` for no window).
    pub fn causal(
        source: HeadSource<'a>,
        pos: usize,
        window: usize,
        scale: f32,
        precision: AttentionPrecision,
        kernel: AttentionKernel,
    ) -> Span<'a> {
        Span {
            source,
            first: (pos + 1).saturating_sub(window),
            last: pos,
            scale,
            softcap: 0.0,
            precision,
            kernel,
        }
    }

    /// The same span with its scores soft-capped at `cap` (0 for none).
    pub fn with_softcap(self, cap: f32) -> Span<'a> {
        Span {
            softcap: cap,
            ..self
        }
    }

    /// A raw score `q·k` as the softmax takes it before the scale: soft-capped as llama.cpp
    /// does it, three operations each rounded (`· (1/cap)`, libm's `tanhf`, `· cap`).
    #[inline]
    fn capped(&self, score: f32) -> f32 {
        if self.softcap == 0.0 {
            score
        } else {
            self.softcap * (score * (1.0 / self.softcap)).tanh()
        }
    }

    /// [`Span::capped`] of 16 scores at once (each through libm's `tanhf`, as llama.cpp's vector
    /// tanh is a loop over it).
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn capped_lanes(&self, scores: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::{_mm512_loadu_ps, _mm512_storeu_ps};
        if self.softcap == 0.0 {
            return scores;
        }
        let mut lanes = [0.0f32; LANES];
        // SAFETY: `lanes` holds 16 floats, the width of one register.
        unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), scores) };
        lanes.iter_mut().for_each(|s| *s = self.capped(*s));
        // SAFETY: as above.
        unsafe { _mm512_loadu_ps(lanes.as_ptr()) }
    }

    /// `out = Σ_j softmax_j(scale · q·k_j) · v_j` over the positions, for every query head of
    /// `q` (the source's key width each) into the same head of `out` (its value width each).
    pub fn attend(&self, simd: Simd, q: &[f32], out: &mut [f32]) {
        let (dim, dim_v) = self.source.dims();
        if dim == 0 || dim_v == 0 {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if avx512(simd)
            && self.kernel == AttentionKernel::Single
            && avx512_single::attend(self, q, out)
        {
            return;
        }
        for (q, out) in q.chunks_exact(dim).zip(out.chunks_exact_mut(dim_v)) {
            #[cfg(target_arch = "x86_64")]
            let out = {
                let mut outs = [out];
                if avx512(simd)
                    && self.kernel == AttentionKernel::Batched
                    && avx512_batch::attend(&[*self], &[q], &mut outs)
                {
                    continue;
                }
                let [out] = outs;
                out
            };
            self.attend_portable(simd, q, out);
        }
    }

    /// The attention weights of the one query head `q` over `first..=last` (one per position,
    /// rounded as the weighted sum uses them), written to `weights`.
    pub fn weights(&self, simd: Simd, q: &[f32], weights: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if avx512(simd) && avx512_batch::weights(self, q, weights) {
            return;
        }
        self.weights_portable(simd, q, weights)
    }
}

/// [`Span::attend`] of every query head `queries[i]` over `spans[i]` into `outs[i]`, each output
/// getting the same bits. Spans of one token's heads over [`HeadSource::Tiled`] sources run
/// through the AVX-512 kernel [`BATCH`] at a time (when `simd` is AVX-512), sharing the loads of
/// keys and values.
pub fn attend_batch(simd: Simd, spans: &[Span<'_>], queries: &[&[f32]], outs: &mut [&mut [f32]]) {
    let batches = spans
        .chunks(BATCH)
        .zip(queries.chunks(BATCH))
        .zip(outs.chunks_mut(BATCH));
    for ((spans, queries), outs) in batches {
        #[cfg(target_arch = "x86_64")]
        if avx512(simd) && avx512_batch::attend(spans, queries, outs) {
            continue;
        }
        for ((span, q), out) in spans.iter().zip(queries).zip(outs.iter_mut()) {
            span.attend(simd, q, out);
        }
    }
}

/// Whether level `simd` runs the AVX-512 kernels here: the level's features (F/BW/VL with AVX2,
/// FMA and F16C) are what they use, and `or_supported` steps down on a CPU without them.
fn avx512(simd: Simd) -> bool {
    simd.or_supported() == Simd::Avx512
}

/// Per-thread buffers, grown to the longest context seen; nothing is allocated per token.
struct Scratch {
    /// The attention weights (of one query, or of a batch's queries one after the other).
    weights: Vec<f32>,
    /// Lane accumulators of the portable weighted sum, or the AVX-512 kernel's lane slots of a
    /// batch (16 registers per query).
    lanes: Vec<f32>,
    /// Per 16 weights of the AVX-512 kernel: which positions take part (the one-token
    /// kernel: per weight, all ones where it takes part).
    used: Vec<u16>,
    /// The AVX-512 kernels' queries, rounded.
    queries: Vec<f32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = const {
        std::cell::RefCell::new(Scratch {
            weights: Vec::new(),
            lanes: Vec::new(),
            used: Vec::new(),
            queries: Vec::new(),
        })
    };
}

/// Grows `v` to at least `len` elements.
fn grow<T: Copy + Default>(v: &mut Vec<T>, len: usize) {
    if v.len() < len {
        v.resize(len, T::default());
    }
}
