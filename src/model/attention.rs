//! Attention of one query head over the cached keys and values, in the arithmetic llama.cpp's CPU
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

use half::f16;

use super::config::MAX_HEAD_DIM;
use super::kv_cache::{HeadRows, KvCache};
use super::ops::vexp;

/// Lanes of a 512-bit register of f32.
const LANES: usize = 16;
/// Elements per step of llama.cpp's generic f16 dot product (four registers).
const STEP: usize = 4 * LANES;

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

/// Where a head's keys and values come from.
#[derive(Clone, Copy)]
pub enum HeadSource<'a> {
    /// KV head `kv_head` of `layer` in the cache, read (and widened from f16) per query.
    Cache {
        kv: &'a KvCache,
        layer: usize,
        kv_head: usize,
    },
    /// The same rows already widened to f32 by [`widen_head`], row `pos - base` holding
    /// position `pos` (many queries of a batch share one widening).
    Widened {
        keys: &'a [f32],
        values: &'a [f32],
        base: usize,
    },
    /// The same rows widened by [`widen_head_batched`] for the AVX-512 kernel, in 16-position
    /// blocks counted from `base` (a multiple of 16), `positions` of them in all (a multiple of
    /// 16; past the last widened position, zeros):
    /// - keys: block `b` is `keys[b * 16 * dim..][..16 * dim]`, dimension-major, so that one
    ///   512-bit load is one dimension of 16 keys: `keys[(b * dim + d) * 16 + k]` is dimension `d`
    ///   of position `base + 16b + k` (the kernel scores 16 keys per register, no shuffles);
    /// - values: per 16 dimensions `c`, the positions one after the other:
    ///   `values[(c * positions + p - base) * 16 + k]` is dimension `16c + k` of position `p`
    ///   (the kernel's tile of positions × 16 dimensions is contiguous).
    Tiled {
        keys: &'a [f32],
        values: &'a [f32],
        base: usize,
        positions: usize,
    },
}

/// Copies the keys and values of KV head `kv_head` of `layer` at positions `base..=last` into
/// `keys`/`values` as f32 rows (resized as needed), for [`HeadSource::Widened`].
pub fn widen_head(
    kv: &KvCache,
    layer: usize,
    kv_head: usize,
    base: usize,
    last: usize,
    keys: &mut Vec<f32>,
    values: &mut Vec<f32>,
) {
    let rows = kv.key_rows(layer, kv_head);
    widen_rows(rows, kv.head_dim(), base, last, keys);
    let rows = kv.value_rows(layer, kv_head);
    widen_rows(rows, kv.head_dim_v(), base, last, values);
}

/// Widens the keys and values of KV head `kv_head` of `layer` at positions `base..=last` for a
/// batch of queries, in the layout the fastest batched kernel of this CPU reads: blocks
/// ([`HeadSource::Tiled`]) when it has AVX-512, rows ([`HeadSource::Widened`]) otherwise. The buffers are resized as needed; the source borrows them.
pub fn widen_head_batched<'v>(
    kv: &KvCache,
    layer: usize,
    kv_head: usize,
    base: usize,
    last: usize,
    keys: &'v mut Vec<f32>,
    values: &'v mut Vec<f32>,
) -> HeadSource<'v> {
    let (dim, dim_v) = (kv.head_dim(), kv.head_dim_v());
    if !tiled_layout(dim, dim_v) {
        widen_head(kv, layer, kv_head, base, last, keys, values);
        return HeadSource::Widened { keys, values, base };
    }
    widen_tiled(
        kv.key_rows(layer, kv_head),
        kv.value_rows(layer, kv_head),
        (dim, dim_v),
        base,
        last,
        keys,
        values,
    )
}

/// Whether batched attention over heads of these widths runs the AVX-512 kernel (which reads
/// [`HeadSource::Tiled`]): the CPU has AVX-512 and `LLMRT_SIMD` does not ask for less
/// (so that `LLMRT_SIMD=avx2` tests the AVX2 path end to end), and the widths are whole
/// registers.
fn tiled_layout(dim: usize, dim_v: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        whole_registers(dim, dim_v) && crate::quant::Simd::detect() == crate::quant::Simd::Avx512
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (dim, dim_v);
        false
    }
}

/// Head widths the AVX-512 kernel takes: whole registers, the query fitting its buffer.
fn whole_registers(dim: usize, dim_v: usize) -> bool {
    dim.is_multiple_of(LANES) && dim_v.is_multiple_of(LANES) && dim <= MAX_HEAD_DIM
}

/// Whether the CPU can run the AVX-512 kernel (F/BW/VL with AVX2, FMA, F16C), asked once. A
/// tiled source runs it whenever the CPU can (`LLMRT_SIMD` decides whether sources are tiled).
#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    static AVX512: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX512.get_or_init(|| {
        super::ops::has_fma()
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
    })
}

/// [`HeadSource::Tiled`] of the rows at `base..=last` (from `base` rounded down to a multiple of
/// 16, so that the blocks are the cache's 16-position chunks).
fn widen_tiled<'v>(
    key_rows: HeadRows<'_>,
    value_rows: HeadRows<'_>,
    (dim, dim_v): (usize, usize),
    base: usize,
    last: usize,
    keys: &'v mut Vec<f32>,
    values: &'v mut Vec<f32>,
) -> HeadSource<'v> {
    let base = base / LANES * LANES;
    let positions = (last + 1 - base).next_multiple_of(LANES);
    keys.resize(positions * dim, 0.0);
    values.resize(positions * dim_v, 0.0);
    // Every position up to `last` is written below. The padding after it is read (whole
    // 16-lane loads) and its lanes thrown away; zeros keep it finite so it costs nothing.
    let used = last + 1 - base;
    if used < positions {
        let block = &mut keys[(positions - LANES) * dim..][..LANES * dim];
        for dimension in block.chunks_exact_mut(LANES) {
            dimension[used % LANES..].fill(0.0);
        }
    }
    for chunk in values.chunks_exact_mut(positions * LANES) {
        chunk[used * LANES..].fill(0.0);
    }
    let mut row = [0.0f32; MAX_HEAD_DIM];
    for pos in base..=last {
        let (b, k) = ((pos - base) / LANES, (pos - base) % LANES);
        let key = read_row(key_rows, pos, &mut row[..dim]);
        for (dst, &x) in keys[b * LANES * dim + k..]
            .iter_mut()
            .step_by(LANES)
            .zip(key)
        {
            *dst = x;
        }
        let value = read_row(value_rows, pos, &mut row[..dim_v]);
        for (c, chunk) in value.chunks_exact(LANES).enumerate() {
            values[(c * positions + pos - base) * LANES..][..LANES].copy_from_slice(chunk);
        }
    }
    HeadSource::Tiled {
        keys,
        values,
        base,
        positions,
    }
}

/// Row `pos` of `rows` as f32 (`buf.len()` wide), widened into `buf` from f16.
#[inline]
fn read_row<'b>(rows: HeadRows<'b>, pos: usize, buf: &'b mut [f32]) -> &'b [f32] {
    let dim = buf.len();
    match rows {
        HeadRows::F32 { data, stride } => &data[pos * stride..][..dim],
        HeadRows::F16 { data, stride } => {
            half::slice::HalfFloatSliceExt::convert_to_f32_slice(&data[pos * stride..][..dim], buf);
            buf
        }
    }
}

/// `out` = the rows at positions `base..=last` of `rows` as f32 (resized to fit).
fn widen_rows(rows: HeadRows<'_>, dim: usize, base: usize, last: usize, out: &mut Vec<f32>) {
    out.resize((last + 1 - base) * dim, 0.0);
    for (pos, row) in (base..=last).zip(out.chunks_exact_mut(dim)) {
        match rows {
            HeadRows::F32 { data, stride } => row.copy_from_slice(&data[pos * stride..][..dim]),
            HeadRows::F16 { data, stride } => half::slice::HalfFloatSliceExt::convert_to_f32_slice(
                &data[pos * stride..][..dim],
                row,
            ),
        }
    }
}

/// One query head's attention: the rows at positions `first..=last`, the scale applied to the
/// scores, and how to compute.
#[derive(Clone, Copy)]
pub struct HeadAttention<'a> {
    pub source: HeadSource<'a>,
    pub first: usize,
    pub last: usize,
    pub scale: f32,
    pub precision: AttentionPrecision,
    pub kernel: AttentionKernel,
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

/// One query of a batch: its head's attention, the query and where the result goes.
pub struct Query<'a, 'o> {
    pub head: HeadAttention<'a>,
    pub q: &'a [f32],
    pub out: &'o mut [f32],
}

/// Queries the AVX-512 kernel takes at once: each block of keys and tile of values it loads is
/// used by all of them while it is in the L1 cache (one query alone streams the whole head from
/// L2 twice), and the weights and lane slots of 16 queries stay small.
const BATCH: usize = 16;

/// [`HeadAttention::attend`] of every query, each `out` getting the same bits. Queries over
/// [`HeadSource::Tiled`] sources run through the AVX-512 kernel [`BATCH`] at a time, sharing
/// the loads of keys and values.
pub fn attend_batch(queries: &mut [Query<'_, '_>]) {
    for batch in queries.chunks_mut(BATCH) {
        #[cfg(target_arch = "x86_64")]
        if attend_tiled(batch) {
            continue;
        }
        for query in batch.iter_mut() {
            query.head.attend(query.q, query.out);
        }
    }
}

/// The AVX-512 kernel over a batch of at most [`BATCH`] queries, if all of them can take it
/// (otherwise nothing is done and `false` returned).
#[cfg(target_arch = "x86_64")]
fn attend_tiled(batch: &mut [Query<'_, '_>]) -> bool {
    let Some(first) = batch.first() else {
        return true;
    };
    let (dim, dim_v) = (first.q.len(), first.out.len());
    let mut tiles = [Tiles::default(); BATCH];
    for (tile, query) in tiles.iter_mut().zip(batch.iter()) {
        let fits = (query.q.len(), query.out.len()) == (dim, dim_v);
        match query.head.tiles(dim, dim_v) {
            Some(t) if fits => *tile = t,
            _ => return false,
        }
    }
    let tiles = &tiles[..batch.len()];
    let mut rows = [0usize; BATCH + 1];
    for (i, tile) in tiles.iter().enumerate() {
        rows[i + 1] = rows[i] + tile.row_len();
    }
    let rows = &rows[..=tiles.len()];
    SCRATCH.with_borrow_mut(|s| {
        let total = rows[tiles.len()];
        grow(&mut s.weights, total);
        grow(&mut s.used, total / LANES);
        grow(&mut s.queries, tiles.len() * dim);
        grow(&mut s.lanes, tiles.len() * LANES * LANES);
        let qs: [&[f32]; BATCH] = std::array::from_fn(|i| batch.get(i).map_or(&[][..], |q| q.q));
        // SAFETY: every `Tiles` comes from `HeadAttention::tiles`, which checks the CPU (AVX-512
        // F/BW/VL, FMA, F16C) and that the buffers cover the positions; the queries are `dim`
        // and the outputs `dim_v` wide (checked above); the scratch buffers were sized for
        // `rows` just above.
        unsafe {
            x86_512::weights(
                tiles,
                &qs[..tiles.len()],
                rows,
                &mut s.queries,
                &mut s.weights,
            );
            x86_512::weighted_values(tiles, rows, &s.weights, &mut s.used, &mut s.lanes, batch);
        }
    });
    true
}

/// Grows `v` to at least `len` elements.
fn grow<T: Copy + Default>(v: &mut Vec<T>, len: usize) {
    if v.len() < len {
        v.resize(len, T::default());
    }
}

/// One token's attention (the [`AttentionKernel::Single`] arithmetic) for a run of query heads
/// that share KV head `kv_head` of `layer`: every head over the cached positions
/// `first..=last`. On a CPU with AVX-512 (and `LLMRT_SIMD` not asking for less) the keys and
/// values are read from the cache and widened once for all the heads, by a kernel that keeps
/// every order of [`HeadAttention::attend`] (see `x86_single`); otherwise each head runs
/// [`HeadAttention::attend`] over [`HeadSource::Cache`]. The results are the same bits.
#[derive(Clone, Copy)]
pub struct GroupAttention<'a> {
    pub kv: &'a KvCache,
    pub layer: usize,
    pub kv_head: usize,
    pub first: usize,
    pub last: usize,
    pub scale: f32,
    pub precision: AttentionPrecision,
}

impl GroupAttention<'_> {
    /// `q` holds the heads' queries one after the other (`head_dim` each), `out` their outputs
    /// (`head_dim_v` each).
    pub fn attend(&self, q: &[f32], out: &mut [f32]) {
        let (kv, layer, kv_head) = (self.kv, self.layer, self.kv_head);
        let (dim, dim_v) = (kv.head_dim(), kv.head_dim_v());
        let span = SingleSpan {
            first: self.first,
            last: self.last,
            scale: self.scale,
            precision: self.precision,
        };
        #[cfg(target_arch = "x86_64")]
        if crate::quant::Simd::detect() == crate::quant::Simd::Avx512
            && attend_single_rows(
                kv.key_rows(layer, kv_head),
                kv.value_rows(layer, kv_head),
                span,
                (dim, dim_v),
                q,
                out,
            )
        {
            return;
        }
        let source = HeadSource::Cache { kv, layer, kv_head };
        for (q, out) in q.chunks_exact(dim).zip(out.chunks_exact_mut(dim_v)) {
            span.head(source).attend(q, out);
        }
    }
}

/// The positions, scale and precision of one token's query heads.
#[derive(Clone, Copy)]
struct SingleSpan {
    first: usize,
    last: usize,
    scale: f32,
    precision: AttentionPrecision,
}

impl SingleSpan {
    /// One head of the span over `source`, as the portable path computes it.
    fn head(self, source: HeadSource<'_>) -> HeadAttention<'_> {
        HeadAttention {
            source,
            first: self.first,
            last: self.last,
            scale: self.scale,
            precision: self.precision,
            kernel: AttentionKernel::Single,
        }
    }
}

/// Whether `rows` hold rows `0..=last`, each `width` wide from its start.
fn covers(rows: HeadRows<'_>, last: usize, width: usize) -> bool {
    let (len, stride) = match rows {
        HeadRows::F32 { data, stride } => (data.len(), stride),
        HeadRows::F16 { data, stride } => (data.len(), stride),
    };
    last.checked_mul(stride)
        .and_then(|start| start.checked_add(width))
        .is_some_and(|end| end <= len)
}

/// The AVX-512 one-token kernel over every head of `q` (`dim` each) into `out` (`dim_v` each),
/// if it can run here: the CPU has AVX-512, the key width is whole 64-element steps (no
/// leftover summed in f64) and the value width whole registers, the rows cover the positions,
/// keys and values have one type. Otherwise nothing is done and `false` returned.
#[cfg(target_arch = "x86_64")]
fn attend_single_rows(
    keys: HeadRows<'_>,
    values: HeadRows<'_>,
    span: SingleSpan,
    (dim, dim_v): (usize, usize),
    q: &[f32],
    out: &mut [f32],
) -> bool {
    let heads = q.len() / dim.max(1);
    let fits = dim > 0
        && dim.is_multiple_of(STEP)
        && dim <= MAX_HEAD_DIM
        && dim_v > 0
        && dim_v.is_multiple_of(LANES)
        && heads > 0
        && q.len() == heads * dim
        && out.len() == heads * dim_v
        && span.first <= span.last
        && covers(keys, span.last, dim)
        && covers(values, span.last, dim_v)
        && avx512();
    if !fits {
        return false;
    }
    let start = span.first / LANES * LANES;
    let row = (span.last + 1).next_multiple_of(LANES) - start;
    SCRATCH.with_borrow_mut(|s| {
        grow(&mut s.queries, heads * dim);
        grow(&mut s.weights, heads * row);
        grow(&mut s.used, heads * row);
        let scratch = x86_single::Scratch {
            queries: &mut s.queries[..heads * dim],
            weights: &mut s.weights[..heads * row],
            keep: &mut s.used[..heads * row],
        };
        let f16 = span.precision == AttentionPrecision::F16;
        let at = x86_single::Span {
            first: span.first,
            last: span.last,
            start,
            row,
            scale: span.scale,
            f16,
            dim,
            dim_v,
        };
        // SAFETY: the CPU has AVX-512 F/BW/VL, FMA and F16C (`avx512`); the rows cover
        // positions `0..=last` at their widths (`covers`, so every row pointer below stays in its
        // slice); `dim` is a multiple of 64, `dim_v` of 16, `q` and `out` hold `heads` of them;
        // the scratch holds `heads` queries and rows of weights from `start` (a multiple of 16)
        // to the end of the chunk holding `last`.
        unsafe {
            match (keys, values) {
                (
                    HeadRows::F16 {
                        data: k,
                        stride: ks,
                    },
                    HeadRows::F16 {
                        data: v,
                        stride: vs,
                    },
                ) => x86_single::attend(
                    x86_single::Rows::new(k, ks),
                    x86_single::Rows::new(v, vs),
                    at,
                    q,
                    out,
                    scratch,
                ),
                (
                    HeadRows::F32 {
                        data: k,
                        stride: ks,
                    },
                    HeadRows::F32 {
                        data: v,
                        stride: vs,
                    },
                ) => x86_single::attend(
                    x86_single::Rows::new(k, ks),
                    x86_single::Rows::new(v, vs),
                    at,
                    q,
                    out,
                    scratch,
                ),
                _ => return false,
            }
        }
        true
    })
}

impl<'a> HeadAttention<'a> {
    /// `out = Σ_j softmax_j(scale · q·k_j) · v_j` over the positions.
    pub fn attend(&self, q: &[f32], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if let HeadSource::Tiled { .. } = self.source {
            let mut query = [Query {
                head: *self,
                q,
                out,
            }];
            if attend_tiled(&mut query) {
                return;
            }
            let [Query { out, .. }] = query;
            return self.attend_portable(q, out);
        }
        self.attend_portable(q, out)
    }

    /// [`Self::attend`] in plain Rust (compiled with hardware FMA when the CPU has it), for any
    /// source.
    fn attend_portable(&self, q: &[f32], out: &mut [f32]) {
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
            if super::ops::has_fma() {
                // SAFETY: the CPU has AVX2, FMA and F16C (checked above).
                return unsafe { self.attend_fma(q, weights, lanes, out) };
            }
            self.attend_any(q, weights, lanes, out)
        });
    }

    /// The AVX-512 view of this head ([`Tiles`]) when the batched kernel can run: batched, a
    /// tiled source whose buffers cover the positions, whole-register widths, a CPU with
    /// AVX-512. Otherwise the portable path runs, which reads any source (the same arithmetic).
    #[cfg(target_arch = "x86_64")]
    fn tiles(&self, dim: usize, dim_v: usize) -> Option<Tiles<'a>> {
        let HeadSource::Tiled {
            keys,
            values,
            base,
            positions,
        } = self.source
        else {
            return None;
        };
        let fits = self.kernel == AttentionKernel::Batched
            && base.is_multiple_of(LANES)
            && positions.is_multiple_of(LANES)
            && base <= self.first
            && self.first <= self.last
            && self.last < base + positions
            && keys.len() >= positions * dim
            && values.len() >= positions * dim_v
            && whole_registers(dim, dim_v)
            && avx512();
        fits.then_some(Tiles {
            keys,
            values,
            base,
            positions,
            first: self.first,
            last: self.last,
            scale: self.scale,
            f16: self.precision == AttentionPrecision::F16,
            dim,
            dim_v,
        })
    }

    /// [`Self::attend`] compiled with hardware fused multiply-add (same results, much faster than
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
        self.attend_any(q, weights, lanes, out)
    }

    #[inline(always)]
    fn attend_any(&self, q: &[f32], weights: &mut [f32], lanes: &mut [f32], out: &mut [f32]) {
        self.weights_any(q, weights);
        self.weighted_values(weights, lanes, out);
    }

    /// The attention weights over `first..=last` (one per position, rounded as the weighted sum
    /// uses them), written to `weights`.
    pub fn weights(&self, q: &[f32], weights: &mut [f32]) {
        // Width 0 for the values: only the keys are read here.
        #[cfg(target_arch = "x86_64")]
        if let Some(tiles) = self.tiles(q.len(), 0) {
            return SCRATCH.with_borrow_mut(|s| {
                let rows = [0, tiles.row_len()];
                grow(&mut s.weights, rows[1]);
                grow(&mut s.queries, q.len());
                // SAFETY: `tiles` comes from `Self::tiles` (CPU and buffers checked), the query
                // is `dim` wide, the scratch sized for `rows`.
                unsafe { x86_512::weights(&[tiles], &[q], &rows, &mut s.queries, &mut s.weights) };
                let skip = self.first - tiles.start();
                weights.copy_from_slice(&s.weights[skip..][..self.last + 1 - self.first]);
            });
        }
        #[cfg(target_arch = "x86_64")]
        if super::ops::has_fma() {
            // SAFETY: the CPU has AVX2, FMA and F16C (checked above).
            return unsafe { self.weights_fma(q, weights) };
        }
        self.weights_any(q, weights)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn weights_fma(&self, q: &[f32], weights: &mut [f32]) {
        self.weights_any(q, weights)
    }

    #[inline(always)]
    fn weights_any(&self, q: &[f32], weights: &mut [f32]) {
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
        #[cfg(target_arch = "x86_64")]
        if let (AttentionKernel::Batched, HeadSource::Widened { keys, base, .. }, true) = (
            self.kernel,
            self.source,
            dim.is_multiple_of(LANES) && super::ops::has_fma(),
        ) {
            // Four keys at a time: four independent chains of fused multiply-adds instead of
            // one; each score's own order is unchanged.
            while pos + 4 <= self.last + 1 {
                let rows = &keys[(pos - base) * dim..][..4 * dim];
                // SAFETY: the CPU has AVX2 and FMA (checked above); `rows` holds four rows of
                // `dim` floats and `dim` is a multiple of 16.
                let scores = unsafe { x86::dot_lanes_x4(rows, query) };
                for (j, score) in scores.into_iter().enumerate() {
                    weights[pos + j - self.first] = score * self.scale;
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
            weights[pos - self.first] = score * self.scale;
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
}

impl<'a> HeadAttention<'a> {
    /// The key (`key`) or value row of position `pos` as f32, widened into `buf` when it comes
    /// from an f16 cache (`buf.len()` is the row width).
    #[inline(always)]
    fn row<'b>(&'b self, key: bool, pos: usize, buf: &'b mut [f32]) -> &'b [f32] {
        let dim = buf.len();
        match self.source {
            HeadSource::Widened { keys, values, base } => {
                let rows = if key { keys } else { values };
                &rows[(pos - base) * dim..][..dim]
            }
            HeadSource::Tiled {
                keys,
                values,
                base,
                positions,
            } => {
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
            HeadSource::Cache { kv, layer, kv_head } => {
                let rows = if key {
                    kv.key_rows(layer, kv_head)
                } else {
                    kv.value_rows(layer, kv_head)
                };
                match rows {
                    HeadRows::F32 { data, stride } => &data[pos * stride..][..dim],
                    HeadRows::F16 { data, stride } => {
                        half::slice::HalfFloatSliceExt::convert_to_f32_slice(
                            &data[pos * stride..][..dim],
                            buf,
                        );
                        buf
                    }
                }
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
fn reduce_steps(r: [[f32; LANES]; 4]) -> f64 {
    let mut a = [0.0f32; LANES];
    for l in 0..LANES {
        a[l] = (r[0][l] + r[2][l]) + (r[1][l] + r[3][l]);
    }
    f64::from(reduce16(a))
}

/// `Σ a_i·b_i` in 16 lanes (element `i` in lane `i % 16`, fused multiply-adds in order of `i`),
/// reduced as [`reduce16`]: llama.cpp's tiled f16/f32 matrix multiply. `a.len() % 16 == 0`.
#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
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
fn dot_steps(a: &[f32], b: &[f32]) -> f32 {
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

/// AVX2 twin of four [`dot_lanes`] at once.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// [`super::dot_lanes`] of the four consecutive `b.len()`-long rows of `rows` with `b`: the
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
}

/// One query's head in the tiled layout, its buffers checked against its positions by
/// [`HeadAttention::tiles`]: what the AVX-512 kernel reads.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Default)]
struct Tiles<'a> {
    keys: &'a [f32],
    values: &'a [f32],
    /// A multiple of 16, at most `first`.
    base: usize,
    /// Positions in the buffers from `base` (a multiple of 16), past `last`.
    positions: usize,
    first: usize,
    last: usize,
    scale: f32,
    f16: bool,
    dim: usize,
    dim_v: usize,
}

#[cfg(target_arch = "x86_64")]
impl Tiles<'_> {
    /// The first position of the 16-position chunk holding `first`: the query's row of weights
    /// starts there, so that its 16-float blocks are the cache's chunks (the softmax sums and
    /// the lane slots of the weighted sum both count from position 0).
    fn start(&self) -> usize {
        self.first / LANES * LANES
    }

    /// The end of the chunk holding `last`.
    fn end(&self) -> usize {
        (self.last + 1).next_multiple_of(LANES)
    }

    /// Weights in the query's row: whole chunks.
    fn row_len(&self) -> usize {
        self.end() - self.start()
    }
}

/// The AVX-512 batched kernel: the same arithmetic as the portable path, in the same order,
/// 16 positions per register, for up to `BATCH` queries at once.
#[cfg(target_arch = "x86_64")]
mod x86_512 {
    use std::arch::x86_64::*;

    use super::{Query, Tiles, LANES};

    /// Positions of a tile of values: its 16 dimensions (4 KiB at 64 bytes a position) stay in
    /// the L1 cache while every query of the batch takes its part.
    const TILE: usize = 256;

    /// The attention weights of each query `i` into `w[rows[i]..rows[i + 1]]` (position
    /// `start + j` at `j`, zeros outside `first..=last`), as `HeadAttention::weights_any`
    /// computes them: the query rounded to f16, each score [`super::dot_lanes`] times the scale,
    /// then [`super::softmax_chunked`] and the rounding to f16. The blocks of keys are the outer
    /// loop, so that each is loaded from memory once for all queries.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL, FMA and F16C; every `tiles[i]` as
    /// `HeadAttention::tiles` checks it, all with the same `dim`; `q[i].len() == dim`;
    /// `rows[i + 1] = rows[i] + tiles[i].row_len()`, `rows[0] = 0`, `w.len() >= rows[n]`,
    /// `queries.len() >= n * dim` (n = `tiles.len()`).
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn weights(
        tiles: &[Tiles<'_>],
        q: &[&[f32]],
        rows: &[usize],
        queries: &mut [f32],
        w: &mut [f32],
    ) {
        let dim = tiles[0].dim;
        for (q, query) in q.iter().zip(queries.chunks_exact_mut(dim)) {
            for (src, dst) in q.chunks_exact(LANES).zip(query.chunks_exact_mut(LANES)) {
                // SAFETY: `src` and `dst` hold 16 floats.
                unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), _mm512_loadu_ps(src.as_ptr())) };
            }
        }
        for (t, query) in tiles.iter().zip(queries.chunks_exact_mut(dim)) {
            if t.f16 {
                for x in query.chunks_exact_mut(LANES) {
                    // SAFETY: `x` holds 16 floats.
                    unsafe {
                        _mm512_storeu_ps(x.as_mut_ptr(), round_f16(_mm512_loadu_ps(x.as_ptr())));
                    }
                }
            }
        }
        let lo = tiles.iter().map(Tiles::start).min().unwrap_or(0);
        let hi = tiles.iter().map(Tiles::end).max().unwrap_or(0);
        let (groups, count) = groups(tiles);
        for p0 in (lo..hi).step_by(LANES) {
            for &(g0, len) in &groups[..count] {
                let t = &tiles[g0];
                if p0 < t.start() || p0 >= t.end() {
                    continue;
                }
                // Block `(p0 - base) / 16` of the keys, `16 * dim` floats from here.
                let block = t.keys[(p0 - t.base) * dim..][..LANES * dim].as_ptr();
                let q = |g: usize| &queries[(g0 + g.min(len - 1)) * dim..][..dim];
                // SAFETY: `block` holds `16 * dim` floats, each query `dim`.
                let scores = unsafe {
                    match len {
                        1 => scores::<1>(block, [q(0)]).to_vec4(),
                        2 => scores::<2>(block, [q(0), q(1)]).to_vec4(),
                        3 => scores::<3>(block, [q(0), q(1), q(2)]).to_vec4(),
                        _ => scores::<4>(block, [q(0), q(1), q(2), q(3)]).to_vec4(),
                    }
                };
                for (i, scores) in (g0..g0 + len).zip(scores) {
                    let t = &tiles[i];
                    let scores = _mm512_mul_ps(scores, _mm512_set1_ps(t.scale));
                    // Outside `first..=last`: -inf, whose exponential is an exact zero (as the
                    // portable path's missing positions are).
                    let scores = _mm512_mask_blend_ps(
                        range_mask(p0, t.first, t.last),
                        _mm512_set1_ps(f32::NEG_INFINITY),
                        scores,
                    );
                    let dst = &mut w[rows[i] + p0 - t.start()..][..LANES];
                    // SAFETY: `dst` holds 16 floats.
                    unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), scores) };
                }
            }
        }
        for (i, t) in tiles.iter().enumerate() {
            softmax(&mut w[rows[i]..rows[i + 1]], t.f16);
        }
    }

    /// Runs of up to 4 consecutive queries over the same keys, values and chunks (the query
    /// heads of one token share a KV head), as (first query, count): one register of keys or
    /// values loaded serves them all.
    fn groups(tiles: &[Tiles<'_>]) -> ([(usize, usize); super::BATCH], usize) {
        let mut groups = [(0usize, 0usize); super::BATCH];
        let mut count = 0;
        for (i, t) in tiles.iter().enumerate() {
            let joins = count > 0 && {
                let (g0, len) = groups[count - 1];
                let u = &tiles[g0];
                len < 4
                    && std::ptr::eq(u.keys, t.keys)
                    && std::ptr::eq(u.values, t.values)
                    && (u.base, u.positions, u.start(), u.end())
                        == (t.base, t.positions, t.start(), t.end())
            };
            if joins {
                groups[count - 1].1 += 1;
            } else {
                groups[count] = (i, 1);
                count += 1;
            }
        }
        (groups, count)
    }

    /// Lanes of the 16-position block at `p0` that lie in `first..=last`.
    #[inline(always)]
    pub(super) fn range_mask(p0: usize, first: usize, last: usize) -> __mmask16 {
        let all = u32::from(u16::MAX);
        let mut mask = all;
        if first > p0 {
            mask &= all << (first - p0).min(LANES);
        }
        if p0 + LANES - 1 > last {
            mask &= all >> (p0 + LANES - 1 - last).min(LANES);
        }
        // The low 16 bits are the lanes.
        mask as __mmask16
    }

    /// Up to four results padded to four (the unused ones are not read).
    trait ToVec4 {
        fn to_vec4(self) -> [__m512; 4];
    }

    impl<const G: usize> ToVec4 for [__m512; G] {
        #[inline(always)]
        fn to_vec4(self) -> [__m512; 4] {
            // SAFETY: all-zero bits are a valid __m512.
            let mut out = [unsafe { std::mem::zeroed::<__m512>() }; 4];
            out[..G].copy_from_slice(&self);
            out
        }
    }

    /// Scores of the 16 keys of a block (`block + (d * 16)` holds dimension `d` of the 16) for
    /// `G` queries: per lane `l` the fused multiply-add chain of `dot_lanes`' accumulator `l`
    /// (dimensions `l`, `l + 16`, … in order) in a register whose lanes are the 16 keys, the
    /// registers added in `reduce16`'s tree, so that each lane of the result is exactly one
    /// key's score. The lanes go four at a time, one quadruple of the tree
    /// `(a_l + a_{l+8}) + (a_{l+4} + a_{l+12})` for every query at once, so that each key
    /// register loaded serves `G` fused multiply-adds.
    ///
    /// # Safety
    /// `block` must point to `16 * dim` readable floats, every query being `dim` long.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    #[inline]
    unsafe fn scores<const G: usize>(block: *const f32, q: [&[f32]; G]) -> [__m512; G] {
        let dim = q[0].len();
        let zero = _mm512_setzero_ps();
        // `q_l` of the tree for l = 0, 2, 1, 3, combined as `(q0 + q2) + (q1 + q3)`.
        let mut even = [zero; G];
        let mut odd = [zero; G];
        for l in [0, 2, 1, 3] {
            let lanes = [l, l + 8, l + 4, l + 12];
            let mut acc = [[zero; 4]; G];
            for j in (0..dim).step_by(LANES) {
                for (k, &lane) in lanes.iter().enumerate() {
                    let d = j + lane;
                    // SAFETY: `d < dim` (the caller's contract).
                    let key = unsafe { _mm512_loadu_ps(block.add(d * LANES)) };
                    for (acc, q) in acc.iter_mut().zip(q) {
                        acc[k] = _mm512_fmadd_ps(key, _mm512_set1_ps(q[d]), acc[k]);
                    }
                }
            }
            for g in 0..G {
                let [a, b, c, d] = acc[g];
                let quad = _mm512_add_ps(_mm512_add_ps(a, b), _mm512_add_ps(c, d));
                match l {
                    0 => even[g] = quad,
                    2 => even[g] = _mm512_add_ps(even[g], quad),
                    1 => odd[g] = quad,
                    _ => odd[g] = _mm512_add_ps(odd[g], quad),
                }
            }
        }
        let mut out = [zero; G];
        for g in 0..G {
            out[g] = _mm512_add_ps(even[g], odd[g]);
        }
        out
    }

    /// `reduce16` applied lane-wise across 16 registers: `h_i = a_i + a_{i+8}`,
    /// `q_i = h_i + h_{i+4}`, `(q_0 + q_2) + (q_1 + q_3)`.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    #[inline]
    fn reduce_registers(a: [__m512; LANES]) -> __m512 {
        let mut h = [_mm512_setzero_ps(); 8];
        for (i, h) in h.iter_mut().enumerate() {
            *h = _mm512_add_ps(a[i], a[i + 8]);
        }
        let mut q = [_mm512_setzero_ps(); 4];
        for (i, q) in q.iter_mut().enumerate() {
            *q = _mm512_add_ps(h[i], h[i + 4]);
        }
        _mm512_add_ps(_mm512_add_ps(q[0], q[2]), _mm512_add_ps(q[1], q[3]))
    }

    /// `super::softmax_chunked` over whole chunks (blocks of `w`, the positions outside the
    /// range holding `-inf`), then the rounding to f16 if asked: the maximum, `vexp(s − max)`,
    /// each chunk's `reduce16` accumulated in f64 in chunk order, one multiply by `1 / sum`.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    pub(super) fn softmax(w: &mut [f32], f16: bool) {
        // The maximum does not depend on the order (scores are never NaN unless the inputs
        // are, and then every weight is NaN on both paths).
        let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
        for block in w.chunks_exact(LANES) {
            // SAFETY: `block` holds 16 floats.
            max = _mm512_max_ps(max, unsafe { _mm512_loadu_ps(block.as_ptr()) });
        }
        let max = _mm512_set1_ps(_mm512_reduce_max_ps(max));
        let mut sum = 0.0f64;
        for block in w.chunks_exact_mut(LANES) {
            // SAFETY: `block` holds 16 floats.
            unsafe {
                let e = vexp16(_mm512_sub_ps(_mm512_loadu_ps(block.as_ptr()), max));
                sum += f64::from(reduce16(e));
                _mm512_storeu_ps(block.as_mut_ptr(), e);
            }
        }
        let inv = _mm512_set1_ps((1.0 / sum) as f32);
        for block in w.chunks_exact_mut(LANES) {
            // SAFETY: `block` holds 16 floats.
            unsafe {
                let x = _mm512_mul_ps(_mm512_loadu_ps(block.as_ptr()), inv);
                let x = if f16 { round_f16(x) } else { x };
                _mm512_storeu_ps(block.as_mut_ptr(), x);
            }
        }
    }

    /// `out = Σ_pos w_pos · v_pos` for each query, as `HeadAttention::weighted_values` computes
    /// it for the batched kernel: lane slot `pos % 16` accumulates its positions in increasing
    /// order with fused multiply-adds, zero weights skipped, the slots reduced in `reduce16`
    /// order. Here 16 output dimensions at a time, a query's 16 slots in 16 registers while it
    /// takes its part of a tile of values, kept in `slots` between tiles.
    ///
    /// # Safety
    /// As [`weights`], with `w` the weights it computed, `used.len() >= rows[n] / 16`,
    /// `slots.len() >= n * 256` and every `out` `dim_v` wide.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn weighted_values(
        tiles: &[Tiles<'_>],
        rows: &[usize],
        w: &[f32],
        used: &mut [u16],
        slots: &mut [f32],
        queries: &mut [Query<'_, '_>],
    ) {
        // Which positions of each block take part, once for all output dimensions (and so that
        // the loop below reads the weights only as scalars, which become broadcasts from memory
        // rather than shuffles of a loaded block).
        for (i, t) in tiles.iter().enumerate() {
            let blocks = w[rows[i]..rows[i + 1]].chunks_exact(LANES);
            for (b, (block, used)) in blocks.zip(&mut used[rows[i] / LANES..]).enumerate() {
                // SAFETY: `block` holds 16 floats.
                let weights = unsafe { _mm512_loadu_ps(block.as_ptr()) };
                // Not-equal-unordered: a NaN weight is used, as the portable `w == 0.0` test
                // lets it through.
                *used = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(weights, _mm512_setzero_ps())
                    & range_mask(t.start() + b * LANES, t.first, t.last);
            }
        }
        let lo = tiles.iter().map(Tiles::start).min().unwrap_or(0);
        let hi = tiles.iter().map(Tiles::end).max().unwrap_or(0);
        let dim_v = tiles[0].dim_v;
        let (groups, count) = groups(tiles);
        for c in 0..dim_v / LANES {
            slots.fill(0.0);
            for t0 in (lo..hi).step_by(TILE) {
                let t1 = (t0 + TILE).min(hi);
                for &(g0, len) in &groups[..count] {
                    let t = &tiles[g0];
                    let (from, to) = (t0.max(t.start()), t1.min(t.end()));
                    if from >= to {
                        continue;
                    }
                    // The group's rows of weights and masks are consecutive and equally long.
                    let (row, skip) = (t.row_len(), from - t.start());
                    let w = &w[rows[g0] + skip..rows[g0 + len]];
                    let used = &used[(rows[g0] + skip) / LANES..rows[g0 + len] / LANES];
                    let blocks = (to - from) / LANES;
                    // Dimensions `16c..` of the positions `from..to`, one after the other.
                    let values = &t.values[(c * t.positions + from - t.base) * LANES..]
                        [..blocks * LANES * LANES];
                    let slots = &mut slots[g0 * LANES * LANES..][..len * LANES * LANES];
                    for l in 0..4 {
                        let at = Span {
                            row,
                            blocks,
                            lanes: [l, l + 8, l + 4, l + 12],
                        };
                        match len {
                            1 => slot_quads::<1>(values, w, used, at, slots),
                            2 => slot_quads::<2>(values, w, used, at, slots),
                            3 => slot_quads::<3>(values, w, used, at, slots),
                            _ => slot_quads::<4>(values, w, used, at, slots),
                        }
                    }
                }
            }
            for (query, slot) in queries.iter_mut().zip(slots.chunks_exact(LANES * LANES)) {
                let mut acc = [_mm512_setzero_ps(); LANES];
                for (acc, src) in acc.iter_mut().zip(slot.chunks_exact(LANES)) {
                    // SAFETY: `src` holds 16 floats.
                    *acc = unsafe { _mm512_loadu_ps(src.as_ptr()) };
                }
                let dst = &mut query.out[c * LANES..][..LANES];
                // SAFETY: `dst` holds 16 floats.
                unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), reduce_registers(acc)) };
            }
        }
    }

    /// Where [`slot_quads`] works: rows of weights `row` long, `blocks` blocks of 16
    /// positions, the four lane slots of one quadruple of `reduce16`'s tree.
    #[derive(Clone, Copy)]
    struct Span {
        row: usize,
        blocks: usize,
        lanes: [usize; 4],
    }

    /// Lane slots `at.lanes` of `G` queries over the same positions, carried on over
    /// `at.blocks` blocks: slot `s` of query `g` takes `w_pos · v_pos` for the positions
    /// `16b + s` in order (one fused multiply-add each, zero weights skipped per `used`).
    /// `values` holds the blocks' 16 dimensions (position after position), `w` and `used` the
    /// queries' weights and masks from the first block (rows `at.row` and `at.row / 16` apart),
    /// `slots` the queries' 16 slot registers (256 floats each). Each value register loaded
    /// serves the `G` queries.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    #[inline]
    fn slot_quads<const G: usize>(
        values: &[f32],
        w: &[f32],
        used: &[u16],
        at: Span,
        slots: &mut [f32],
    ) {
        let zero = _mm512_setzero_ps();
        let mut acc = [[zero; 4]; G];
        for (g, acc) in acc.iter_mut().enumerate() {
            for (acc, &lane) in acc.iter_mut().zip(&at.lanes) {
                let src = &slots[(g * LANES + lane) * LANES..][..LANES];
                // SAFETY: `src` holds 16 floats.
                *acc = unsafe { _mm512_loadu_ps(src.as_ptr()) };
            }
        }
        let row_masks = at.row / LANES;
        for b in 0..at.blocks {
            let block = &values[b * LANES * LANES..][..LANES * LANES];
            let mut masks = [0u16; G];
            for (g, mask) in masks.iter_mut().enumerate() {
                *mask = used[g * row_masks + b];
            }
            let mut weights = [&w[..0]; G];
            for (g, weights) in weights.iter_mut().enumerate() {
                *weights = &w[g * at.row + b * LANES..][..LANES];
            }
            if masks.iter().all(|&m| m == u16::MAX) {
                for (k, &lane) in at.lanes.iter().enumerate() {
                    // SAFETY: `block` holds 16 rows of 16 floats, `lane < 16`.
                    let v = unsafe { _mm512_loadu_ps(block.as_ptr().add(lane * LANES)) };
                    for g in 0..G {
                        let x = _mm512_set1_ps(weights[g][lane]);
                        acc[g][k] = _mm512_fmadd_ps(v, x, acc[g][k]);
                    }
                }
            } else {
                for (k, &lane) in at.lanes.iter().enumerate() {
                    // SAFETY: `block` holds 16 rows of 16 floats, `lane < 16`.
                    let v = unsafe { _mm512_loadu_ps(block.as_ptr().add(lane * LANES)) };
                    for g in 0..G {
                        // A skipped position leaves the slot as it is (masked lanes keep `acc`).
                        let keep = if masks[g] & (1 << lane) != 0 {
                            u16::MAX
                        } else {
                            0
                        };
                        let x = _mm512_set1_ps(weights[g][lane]);
                        acc[g][k] = _mm512_mask3_fmadd_ps(v, x, acc[g][k], keep);
                    }
                }
            }
        }
        for (g, acc) in acc.iter().enumerate() {
            for (acc, &lane) in acc.iter().zip(&at.lanes) {
                let dst = &mut slots[(g * LANES + lane) * LANES..][..LANES];
                // SAFETY: `dst` holds 16 floats.
                unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), *acc) };
            }
        }
    }

    /// `super::reduce16` of the lanes of `v`: upper 256 bits onto the lower, then the upper 128
    /// onto the lower, then `(q0 + q2) + (q1 + q3)`.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    #[inline]
    fn reduce16(v: __m512) -> f32 {
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
        let h = _mm256_add_ps(_mm512_castps512_ps256(v), hi);
        let q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
        let pairs = _mm_add_ps(q, _mm_movehl_ps(q, q));
        _mm_cvtss_f32(_mm_add_ss(pairs, _mm_movehdup_ps(pairs)))
    }

    /// Every lane rounded to the nearest f16 (ties to even) and back, as `half` does.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    #[inline]
    pub(super) fn round_f16(x: __m512) -> __m512 {
        _mm512_cvtph_ps(_mm512_cvtps_ph::<
            { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
        >(x))
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    #[inline]
    fn splat(bits: u32) -> __m512 {
        _mm512_set1_ps(f32::from_bits(bits))
    }

    /// [`super::vexp`] on 16 lanes, to the bit: the same fused multiply-adds (`fnmadd` is the
    /// fused `(−n)·c + x`), and `j · 2^n` with one rounding by `vscalefps` (exact product,
    /// rounded once to nearest even, subnormals included — what the f64 product rounded to f32
    /// gives); `|n| > 192` saturates to 0 or ∞ as there.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    #[inline]
    pub(super) fn vexp16(x: __m512) -> __m512 {
        let shift = splat(0x4b40_0000);
        let z = _mm512_fmadd_ps(x, splat(0x3fb8_aa3b), shift);
        let n = _mm512_sub_ps(z, shift);
        let b = _mm512_fnmadd_ps(
            n,
            splat(0x35bf_be8e),
            _mm512_fnmadd_ps(n, splat(0x3f31_7200), x),
        );
        let u = _mm512_mul_ps(b, b);
        let j = _mm512_fmadd_ps(
            _mm512_fmadd_ps(
                _mm512_fmadd_ps(splat(0x3c07_2010), b, splat(0x3d2b_9f17)),
                u,
                _mm512_fmadd_ps(splat(0x3e2a_af33), b, splat(0x3eff_fedb)),
            ),
            u,
            _mm512_fmadd_ps(splat(0x3f7f_fff6), b, _mm512_set1_ps(1.0)),
        );
        let scaled = _mm512_scalef_ps(j, n);
        let zero = _mm512_setzero_ps();
        let positive = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(n, zero);
        let saturated = _mm512_mask_blend_ps(positive, zero, _mm512_set1_ps(f32::INFINITY));
        let out_of_range =
            _mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_abs_ps(n), _mm512_set1_ps(192.0));
        _mm512_mask_blend_ps(out_of_range, scaled, saturated)
    }
}

/// The AVX-512 one-token kernel: the portable [`AttentionKernel::Single`] arithmetic, in the
/// same order, for up to four query heads of one KV head at a time, reading the cache's rows
/// directly (f16 widened in registers, once for all the heads).
///
/// - scores: 16 positions at a time; per position and head the four 16-lane accumulators of
///   `dot_steps` (each key register loaded serves every head), folded as `reduce_steps` does,
///   then the 16 positions' `reduce16` trees evaluated together by shuffles (each step of the
///   tree adds the upper half of every 512-, 256-, 128- and 64-bit group onto the lower, for
///   two positions' registers at once), so that lane `j` of the result is position `j`'s score;
/// - softmax and the rounding of the weights: `x86_512::softmax`, over rows of weights that
///   start at a multiple of 16 (the cache's chunks), `-inf` outside `first..=last`;
/// - weighted sum: 16 output dimensions at a time, the positions in increasing order each
///   fused-multiply-added into its lane slot `pos % 64` (zero weights left out by masking), the
///   slots in a small array of registers of which only those some position falls in are
///   written (no zeroed 64 × dim buffer), then added in the tree of
///   `HeadAttention::weighted_values`.
#[cfg(target_arch = "x86_64")]
mod x86_single {
    use std::arch::x86_64::*;

    use half::f16;

    use super::x86_512::{range_mask, round_f16, softmax};
    use super::{LANES, MAX_HEAD_DIM, STEP};

    /// Lane slots of the one-token weighted sum (`STEP`: llama.cpp's four registers).
    const SLOTS: usize = STEP;

    /// Zeros standing for the keys of the positions of a block outside `first..=last` (whose
    /// scores are replaced by `-inf`): a row that can always be read, whatever the position.
    /// All-zero bits are +0 as f32 and as f16.
    static ZERO_ROW: [f32; MAX_HEAD_DIM] = [0.0; MAX_HEAD_DIM];

    /// An element type of the cache, widened to f32 16 at a time.
    pub(super) trait Elem: Copy {
        /// The 16 elements at `p` as f32.
        ///
        /// # Safety
        /// 16 elements must be readable at `p`; the CPU must have AVX-512F and F16C.
        unsafe fn load16(p: *const Self) -> __m512;
    }

    impl Elem for f16 {
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
        #[inline]
        unsafe fn load16(p: *const f16) -> __m512 {
            // SAFETY: 16 f16 (32 bytes) are readable at `p` (the caller's contract); the load is
            // unaligned.
            _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(p.cast()) })
        }
    }

    impl Elem for f32 {
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
        #[inline]
        unsafe fn load16(p: *const f32) -> __m512 {
            // SAFETY: 16 floats are readable at `p` (the caller's contract).
            unsafe { _mm512_loadu_ps(p) }
        }
    }

    /// Rows of one KV head in the cache: row `pos` starts `pos * stride` elements from `data`.
    #[derive(Clone, Copy)]
    pub(super) struct Rows<E> {
        data: *const E,
        stride: usize,
    }

    impl<E: Elem> Rows<E> {
        pub(super) fn new(data: &[E], stride: usize) -> Rows<E> {
            Rows {
                data: data.as_ptr(),
                stride,
            }
        }

        /// The start of row `pos` (computed without dereferencing; the caller reads it only
        /// for positions the rows cover).
        #[inline(always)]
        fn row(self, pos: usize) -> *const E {
            self.data.wrapping_add(pos * self.stride)
        }
    }

    /// What the kernel computes: positions `first..=last`, weights in rows of `row` positions
    /// from `start` (`first` rounded down to a multiple of 16; `row` a multiple of 16 reaching
    /// past `last`), the scale of the scores, whether queries and weights are rounded to f16,
    /// the widths of keys and values.
    #[derive(Clone, Copy)]
    pub(super) struct Span {
        pub(super) first: usize,
        pub(super) last: usize,
        pub(super) start: usize,
        pub(super) row: usize,
        pub(super) scale: f32,
        pub(super) f16: bool,
        pub(super) dim: usize,
        pub(super) dim_v: usize,
    }

    /// The kernel's buffers for `heads` heads: their rounded queries (`dim` each), their rows
    /// of weights and of masks (`row` each; a mask is all ones where the weight takes part).
    pub(super) struct Scratch<'s> {
        pub(super) queries: &'s mut [f32],
        pub(super) weights: &'s mut [f32],
        pub(super) keep: &'s mut [u16],
    }

    /// Every head of `q` attends over the positions of `at`, its output into `out`.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL, FMA and F16C; `keys` and `values` must hold readable
    /// rows `0..=at.last` of `at.dim` and `at.dim_v` elements; `at.dim % 64 == 0`,
    /// `at.dim <= MAX_HEAD_DIM`, `at.dim_v % 16 == 0`; `at.start`, `at.row` as [`Span`] says,
    /// `at.first <= at.last`; `q` holds `heads` queries of `at.dim`, `out` as many outputs of
    /// `at.dim_v`, the scratch `heads` of each of its rows.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn attend<E: Elem>(
        keys: Rows<E>,
        values: Rows<E>,
        at: Span,
        q: &[f32],
        out: &mut [f32],
        scratch: Scratch<'_>,
    ) {
        let Scratch {
            queries,
            weights,
            keep,
        } = scratch;
        let heads = q.len() / at.dim;
        queries.copy_from_slice(q);
        if at.f16 {
            for x in queries.chunks_exact_mut(LANES) {
                // SAFETY: `x` holds 16 floats.
                unsafe { _mm512_storeu_ps(x.as_mut_ptr(), round_f16(_mm512_loadu_ps(x.as_ptr()))) };
            }
        }
        // Scores, block by block of 16 positions (each block's keys read once for all heads
        // while they are in the L1 cache).
        for p0 in (at.start..at.start + at.row).step_by(LANES) {
            let mut rows = [ZERO_ROW.as_ptr().cast::<E>(); LANES];
            for (j, row) in rows.iter_mut().enumerate() {
                if (at.first..=at.last).contains(&(p0 + j)) {
                    *row = keys.row(p0 + j);
                }
            }
            // The cache is read once per token, mostly from L3: ask for the next block's keys
            // and this block's values (read after the softmax) ahead of time. Prefetches
            // never fault; only rows of positions in `first..=last` are named.
            for pos in (p0..p0 + 2 * LANES).filter(|&p| (at.first..=at.last).contains(&p)) {
                if pos >= p0 + LANES {
                    prefetch_row(keys.row(pos), at.dim);
                } else {
                    prefetch_row(values.row(pos), at.dim_v);
                }
            }
            let inside = range_mask(p0, at.first, at.last);
            let mut h0 = 0;
            while h0 < heads {
                let g = (heads - h0).min(4);
                let qs: [*const f32; 4] =
                    std::array::from_fn(|i| queries[(h0 + i.min(g - 1)) * at.dim..].as_ptr());
                // SAFETY: every row pointer is a cache row of a position in `first..=last` or
                // the zero row, `dim` readable elements either way; each query holds `dim`.
                let scores = unsafe {
                    match g {
                        1 => pad4(scores::<E, 1>(rows, [qs[0]], at.dim)),
                        2 => pad4(scores::<E, 2>(rows, [qs[0], qs[1]], at.dim)),
                        3 => pad4(scores::<E, 3>(rows, [qs[0], qs[1], qs[2]], at.dim)),
                        _ => scores::<E, 4>(rows, qs, at.dim),
                    }
                };
                for (h, &score) in (h0..h0 + g).zip(&scores) {
                    let score = _mm512_mul_ps(score, _mm512_set1_ps(at.scale));
                    // Outside `first..=last`: -inf, whose exponential is an exact zero (as the
                    // portable path's missing positions are).
                    let score =
                        _mm512_mask_blend_ps(inside, _mm512_set1_ps(f32::NEG_INFINITY), score);
                    let dst = &mut weights[h * at.row + p0 - at.start..][..LANES];
                    // SAFETY: `dst` holds 16 floats.
                    unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), score) };
                }
                h0 += g;
            }
        }
        for (w, keep) in weights
            .chunks_exact_mut(at.row)
            .zip(keep.chunks_exact_mut(at.row))
        {
            softmax(w, at.f16);
            for (w, keep) in w.chunks_exact(LANES).zip(keep.chunks_exact_mut(LANES)) {
                // SAFETY: `w` holds 16 floats, `keep` 16 u16.
                unsafe {
                    // Not-equal-unordered: a NaN weight takes part, as the portable
                    // `w == 0.0` test lets it through.
                    let used = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(
                        _mm512_loadu_ps(w.as_ptr()),
                        _mm512_setzero_ps(),
                    );
                    _mm256_storeu_si256(keep.as_mut_ptr().cast(), _mm256_movm_epi16(used));
                }
            }
        }
        for c in (0..at.dim_v).step_by(LANES) {
            let mut h0 = 0;
            while h0 < heads {
                let g = (heads - h0).min(4);
                let sums = Sums {
                    values,
                    c,
                    at,
                    w: weights[h0 * at.row..].as_ptr(),
                    keep: keep[h0 * at.row..].as_ptr(),
                };
                // SAFETY: `values` holds rows `first..=last` of `dim_v` elements and
                // `c + 16 <= dim_v`; the weights and masks of heads `h0..h0 + g` follow
                // each other, `row` apart, from the pointers.
                let sums = unsafe {
                    match g {
                        1 => pad4(sums.total::<1>()),
                        2 => pad4(sums.total::<2>()),
                        3 => pad4(sums.total::<3>()),
                        _ => sums.total::<4>(),
                    }
                };
                for (h, &sum) in (h0..h0 + g).zip(&sums) {
                    let dst = &mut out[h * at.dim_v + c..][..LANES];
                    // SAFETY: `dst` holds 16 floats.
                    unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), sum) };
                }
                h0 += g;
            }
        }
    }

    /// Up to four results padded to four (the others are not read).
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    #[inline]
    fn pad4<const G: usize>(x: [__m512; G]) -> [__m512; 4] {
        let mut out = [_mm512_setzero_ps(); 4];
        out[..G].copy_from_slice(&x);
        out
    }

    /// The scores of 16 keys for `G` queries, before the scale: lane `j` of the result is the
    /// score of `keys[j]`.
    ///
    /// Per input and query, the four accumulators of `dot_steps` folded by `reduce_steps` into
    /// one register `a` (see [`key_sums`]); then `reduce16` of every `a` at once: `fold256`
    /// makes `a_i + a_{i+8}` of two inputs, `fold128` `h_i + h_{i+4}` of those of four,
    /// `fold64` `q_0 + q_2`, `q_1 + q_3` of eight, `fold32` their sum for all sixteen, each add
    /// the one of `reduce16` (only which lanes it happens in changes). That leaves the score of
    /// key `4 (j % 4) + j / 4` in lane `j` (a 4 × 4 transpose), put back in order by one
    /// permutation. (The keys are loaded in order, which the hardware prefetchers follow.)
    ///
    /// # Safety
    /// Each key must point to `dim` readable elements, each query to `dim` floats;
    /// `dim % 64 == 0`.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    #[inline]
    unsafe fn scores<E: Elem, const G: usize>(
        keys: [*const E; LANES],
        q: [*const f32; G],
        dim: usize,
    ) -> [__m512; G] {
        let zero = _mm512_setzero_ps();
        // Loops rather than a tree written out: one copy of `key_sums` per `G`, not sixteen.
        let mut twos = [[zero; G]; 8];
        for (t, two) in twos.iter_mut().enumerate() {
            // SAFETY: the caller's contract.
            let (a, b) = unsafe {
                (
                    key_sums::<E, G>(keys[2 * t], q, dim),
                    key_sums::<E, G>(keys[2 * t + 1], q, dim),
                )
            };
            for (two, (a, b)) in two.iter_mut().zip(a.into_iter().zip(b)) {
                *two = fold256(a, b);
            }
        }
        let mut fours = [[zero; G]; 4];
        for (f, four) in fours.iter_mut().enumerate() {
            for (g, four) in four.iter_mut().enumerate() {
                *four = fold128(twos[2 * f][g], twos[2 * f + 1][g]);
            }
        }
        let mut eights = [[zero; G]; 2];
        for (e, eight) in eights.iter_mut().enumerate() {
            for (g, eight) in eight.iter_mut().enumerate() {
                *eight = fold64(fours[2 * e][g], fours[2 * e + 1][g]);
            }
        }
        let transpose = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        let mut out = [zero; G];
        for (g, out) in out.iter_mut().enumerate() {
            *out = _mm512_permutexvar_ps(transpose, fold32(eights[0][g], eights[1][g]));
        }
        out
    }

    /// Asks for the cache lines of a row of `width` elements at `row` (a hint: never faults).
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    #[inline]
    fn prefetch_row<E>(row: *const E, width: usize) {
        let bytes = width * std::mem::size_of::<E>();
        for offset in (0..bytes).step_by(64) {
            _mm_prefetch::<_MM_HINT_T0>(row.cast::<i8>().wrapping_add(offset));
        }
    }

    /// Per query, `dot_steps`' four 16-lane accumulators of `key · q` (element `i` of each
    /// 64-element step in register `(i / 16) % 4`, lane `i % 16`, fused multiply-adds in order
    /// of the steps) folded lane-wise as `reduce_steps` does: `(r0 + r2) + (r1 + r3)`.
    ///
    /// # Safety
    /// As [`scores`].
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    #[inline]
    unsafe fn key_sums<E: Elem, const G: usize>(
        key: *const E,
        q: [*const f32; G],
        dim: usize,
    ) -> [__m512; G] {
        let zero = _mm512_setzero_ps();
        // `acc[r][g]`: register `r` of query `g`.
        let mut acc = [[zero; G]; 4];
        for step in (0..dim).step_by(STEP) {
            for (r, acc) in acc.iter_mut().enumerate() {
                let i = step + r * LANES;
                // SAFETY: `i + 16 <= dim`, inside the key and every query.
                unsafe {
                    let k = E::load16(key.add(i));
                    for (acc, q) in acc.iter_mut().zip(q) {
                        *acc = _mm512_fmadd_ps(k, _mm512_loadu_ps(q.add(i)), *acc);
                    }
                }
            }
        }
        let [r0, r1, r2, r3] = acc;
        let mut out = [zero; G];
        for (g, out) in out.iter_mut().enumerate() {
            *out = _mm512_add_ps(_mm512_add_ps(r0[g], r2[g]), _mm512_add_ps(r1[g], r3[g]));
        }
        out
    }

    /// Lanes `i` of `[a.lo8 + a.hi8 | b.lo8 + b.hi8]`: 128-bit blocks `[a0 a1 b0 b1]` plus
    /// `[a2 a3 b2 b3]`.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    #[inline]
    fn fold256(a: __m512, b: __m512) -> __m512 {
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x44>(a, b),
            _mm512_shuffle_f32x4::<0xee>(a, b),
        )
    }

    /// The upper 4 lanes of every 8 onto the lower: blocks `[a0 a2 b0 b2]` plus
    /// `[a1 a3 b1 b3]`.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    #[inline]
    fn fold128(a: __m512, b: __m512) -> __m512 {
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x88>(a, b),
            _mm512_shuffle_f32x4::<0xdd>(a, b),
        )
    }

    /// In every 128-bit block, lanes 2, 3 onto 0, 1: the lower 64 bits of `a`'s and `b`'s
    /// blocks plus the upper.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    #[inline]
    fn fold64(a: __m512, b: __m512) -> __m512 {
        let (a, b) = (_mm512_castps_pd(a), _mm512_castps_pd(b));
        _mm512_add_ps(
            _mm512_castpd_ps(_mm512_unpacklo_pd(a, b)),
            _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)),
        )
    }

    /// In every 128-bit block, the even lanes of `a` and `b` plus the odd ones.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    #[inline]
    fn fold32(a: __m512, b: __m512) -> __m512 {
        _mm512_add_ps(
            _mm512_shuffle_ps::<0x88>(a, b),
            _mm512_shuffle_ps::<0xdd>(a, b),
        )
    }

    /// The weighted sum of dimensions `c..c + 16` of the values for `G` heads, whose weights
    /// and masks start at `w` and `keep` (position `start`), `row` apart.
    #[derive(Clone, Copy)]
    struct Sums<E> {
        values: Rows<E>,
        c: usize,
        at: Span,
        w: *const f32,
        keep: *const u16,
    }

    /// `a + b` per head, where `None` is a sum of no slots.
    ///
    /// Why leaving the empty slots out is exact: the portable path adds them as +0.0, and
    /// `x + (+0.0) == x` for every `x` but -0.0 (a NaN stays that NaN). No slot is ever -0.0:
    /// an empty one is +0.0, and a fused multiply-add whose exact result is zero rounds to
    /// +0.0 unless both the product and the addend are -0.0 — the first addend is +0.0 and,
    /// by induction, no later one is -0.0. A sum of two values that are not -0.0 is not -0.0
    /// either, so no partial sum of the tree is, and each +0.0 added there changes nothing.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    #[inline]
    fn add<const G: usize>(a: Option<[__m512; G]>, b: Option<[__m512; G]>) -> Option<[__m512; G]> {
        match (a, b) {
            (Some(mut a), Some(b)) => {
                for (a, b) in a.iter_mut().zip(b) {
                    *a = _mm512_add_ps(*a, b);
                }
                Some(a)
            }
            (a, None) => a,
            (None, b) => b,
        }
    }

    impl<E: Elem> Sums<E> {
        /// `out` of `HeadAttention::weighted_values` for the one-token kernel. The positions
        /// go in increasing order, each fused-multiply-added into its slot `pos % 64` (from
        /// +0.0; masked off where its weight is zero, leaving the slot as it is), so that every
        /// slot takes its positions in the portable order. The slots live in an array of
        /// registers on the stack of which only the ones a position falls in are written (the
        /// first 64 positions are the first in their slots, the later ones the next), then
        /// are reduced as `lanes[l] = (s[l] + s[32 + l]) + (s[16 + l] + s[48 + l])`,
        /// `lanes[i] += lanes[i + 8]`, `lanes[i] += lanes[i + 4]`, `(l0 + l2) + (l1 + l3)`
        /// (grouped here per `l ∈ {0, 1, 2, 3}` of the middle steps,
        /// `(L_l + L_{l+8}) + (L_{l+4} + L_{l+12})`), the slots no position fell in left out
        /// (see [`add`]).
        ///
        /// # Safety
        /// The CPU must have AVX-512 F/BW/VL, FMA and F16C; the values hold rows
        /// `first..=last` of which dimensions `c..c + 16` are read; `w` and `keep` hold `G`
        /// rows of `at.row` from `at.start`.
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
        #[inline]
        unsafe fn total<const G: usize>(self) -> [__m512; G] {
            let at = self.at;
            let n = at.last + 1 - at.first;
            let zero = _mm512_setzero_ps();
            let mut slots = [std::mem::MaybeUninit::<[__m512; G]>::uninit(); SLOTS];
            for pos in at.first..at.first + n.min(SLOTS) {
                // SAFETY: `pos` is in `first..=last` (the caller's contract passed on).
                let acc = unsafe { self.position::<G>(pos, [zero; G]) };
                slots[pos % SLOTS].write(acc);
            }
            for pos in at.first + SLOTS..=at.last {
                let slot = &mut slots[pos % SLOTS];
                // SAFETY: the slot was written by the first loop (position `pos - 64`, or a
                // later one of this loop); `pos` is in `first..=last`.
                unsafe {
                    let acc = slot.assume_init();
                    slot.write(self.position::<G>(pos, acc));
                }
            }
            // The slots the first `n` positions from `first` fell in.
            let used = if n >= SLOTS {
                u64::MAX
            } else {
                ((1u64 << n) - 1).rotate_left((at.first % SLOTS) as u32)
            };
            let mut lanes = [None; LANES];
            for (l, lane) in lanes.iter_mut().enumerate() {
                let slot = |s: usize| {
                    // SAFETY: slot `s` was written when its bit of `used` is set.
                    (used >> s & 1 == 1).then(|| unsafe { slots[s].assume_init() })
                };
                *lane = add(add(slot(l), slot(32 + l)), add(slot(16 + l), slot(48 + l)));
            }
            let mut quads = [None; 4];
            for (l, quad) in quads.iter_mut().enumerate() {
                *quad = add(
                    add(lanes[l], lanes[l + 8]),
                    add(lanes[l + 4], lanes[l + 12]),
                );
            }
            let sum = add(add(quads[0], quads[2]), add(quads[1], quads[3]));
            // `first <= last`: some slot holds a position, so `sum` is never `None`.
            sum.unwrap_or([zero; G])
        }

        /// `acc + w_pos · v_pos` per head (one fused multiply-add), `acc` where the weight is
        /// zero.
        ///
        /// # Safety
        /// As [`Self::total`], `pos` in `first..=last`.
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
        #[inline]
        unsafe fn position<const G: usize>(self, pos: usize, mut acc: [__m512; G]) -> [__m512; G] {
            let (i, row) = (pos - self.at.start, self.at.row);
            // SAFETY: the caller's contract: row `pos` holds dimensions `c..c + 16`, and weight
            // and mask `i` of each head lie in its row (`i < row`).
            unsafe {
                let v = E::load16(self.values.row(pos).add(self.c));
                for (g, acc) in acc.iter_mut().enumerate() {
                    let w = _mm512_set1_ps(*self.w.add(g * row + i));
                    let keep: __mmask16 = *self.keep.add(g * row + i);
                    *acc = _mm512_mask3_fmadd_ps(v, w, *acc, keep);
                }
            }
            acc
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reductions_sum_every_lane_once() {
        let a: [f32; 16] = std::array::from_fn(|i| (1 << i) as f32);
        assert_eq!(reduce16(a), 65535.0);
        let r: [[f32; 16]; 4] =
            std::array::from_fn(|j| std::array::from_fn(|l| (j * 16 + l) as f32));
        assert_eq!(reduce_steps(r), (0..64).sum::<i32>() as f64);
        let x: Vec<f32> = (0..96).map(|i| i as f32 * 0.5).collect();
        let exact: f32 = x.iter().map(|v| v * v).sum();
        assert_eq!(dot_steps(&x, &x), exact);
        assert_eq!(dot_lanes(&x, &x), exact);
    }

    #[test]
    fn softmax_sums_to_one_and_masks_nothing_it_is_given() {
        let mut x: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin() * 4.0).collect();
        softmax_chunked(&mut x, 5);
        let sum: f32 = x.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "{sum}");
        assert!(x.iter().all(|&v| v > 0.0));
    }

    /// xorshift64*: deterministic pseudo-random numbers for the twin tests.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        /// Uniform in `[-r, r)`.
        fn float(&mut self, r: f32) -> f32 {
            ((self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * r
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn have_avx512() -> bool {
        avx512()
    }

    /// Asserts that `vector` (16 lanes at once) gives `scalar`'s result bit for bit on each of
    /// `xs` (NaN where `scalar` gives NaN). Only whole groups of 16 are checked.
    #[cfg(target_arch = "x86_64")]
    fn assert_lanewise(
        xs: impl IntoIterator<Item = f32>,
        vector: unsafe fn(std::arch::x86_64::__m512) -> std::arch::x86_64::__m512,
        scalar: fn(f32) -> f32,
    ) {
        use std::arch::x86_64::*;
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
        fn check(xs: &[f32; 16], vector: unsafe fn(__m512) -> __m512, scalar: fn(f32) -> f32) {
            let mut out = [0.0f32; 16];
            // SAFETY: both arrays hold 16 floats; the caller checked the CPU has the features
            // `vector` needs.
            unsafe { _mm512_storeu_ps(out.as_mut_ptr(), vector(_mm512_loadu_ps(xs.as_ptr()))) };
            for (&x, &y) in xs.iter().zip(&out) {
                let want = scalar(x);
                assert!(
                    want.to_bits() == y.to_bits() || (want.is_nan() && y.is_nan()),
                    "{x:e}: scalar {want:e}, vector {y:e}"
                );
            }
        }
        if !have_avx512() {
            return;
        }
        let mut group = [0.0f32; 16];
        for (i, x) in xs.into_iter().enumerate() {
            group[i % 16] = x;
            if i % 16 == 15 {
                // SAFETY: the CPU has the features (checked above).
                unsafe { check(&group, vector, scalar) };
            }
        }
    }

    /// Every 61st f32 bit pattern, NaNs and infinities included.
    fn sparse_bit_patterns() -> impl Iterator<Item = f32> {
        (0..=u32::MAX).step_by(61).map(f32::from_bits)
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vexp16_is_vexp_to_the_bit() {
        // Densely where the result turns subnormal, underflows and overflows, 3 ulps apart.
        let mut dense = Vec::new();
        for (lo, hi) in [
            (-106.0f32, -85.0f32),
            (85.0, 90.0),
            (-134.0, -132.0),
            (132.0, 134.0),
        ] {
            let mut x = lo;
            while x < hi {
                dense.push(x);
                x = f32::from_bits(x.to_bits() + if x < 0.0 { -3i32 as u32 } else { 3 });
                if x.to_bits() == 0 {
                    break;
                }
            }
        }
        let special = [
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1.0,
            -1.0,
        ];
        let mut xs: Vec<f32> = sparse_bit_patterns().chain(dense).chain(special).collect();
        // Whole groups of 16: pad with zeros.
        xs.resize(xs.len().next_multiple_of(16), 0.0);
        assert_lanewise(xs, x86_512::vexp16, vexp);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_f16_rounding_is_half() {
        assert_lanewise(sparse_bit_patterns(), x86_512::round_f16, |x| {
            f16::from_f32(x).to_f32()
        });
    }

    /// Keys and values of one KV head over `n` positions, stored as the cache stores them (f16
    /// or f32, rows `stride` apart), and random queries with the windows of a batch.
    struct Case {
        keys16: Vec<f16>,
        values16: Vec<f16>,
        keys32: Vec<f32>,
        values32: Vec<f32>,
        stride: usize,
        precision: AttentionPrecision,
    }

    impl Case {
        fn new(rng: &mut Rng, n: usize, dim: usize, dim_v: usize, f16: bool) -> Case {
            let stride = dim.max(dim_v) + 16;
            let mut draw =
                |spread: f32| -> Vec<f32> { (0..n * stride).map(|_| rng.float(spread)).collect() };
            let (keys32, values32) = (draw(2.0), draw(3.0));
            let half = |v: &[f32]| v.iter().map(|&x| f16::from_f32(x)).collect();
            Case {
                keys16: half(&keys32),
                values16: half(&values32),
                keys32,
                values32,
                stride,
                precision: if f16 {
                    AttentionPrecision::F16
                } else {
                    AttentionPrecision::F32
                },
            }
        }

        fn rows(&self, key: bool) -> HeadRows<'_> {
            let stride = self.stride;
            match (self.precision, key) {
                (AttentionPrecision::F16, true) => HeadRows::F16 {
                    data: &self.keys16,
                    stride,
                },
                (AttentionPrecision::F16, false) => HeadRows::F16 {
                    data: &self.values16,
                    stride,
                },
                (AttentionPrecision::F32, true) => HeadRows::F32 {
                    data: &self.keys32,
                    stride,
                },
                (AttentionPrecision::F32, false) => HeadRows::F32 {
                    data: &self.values32,
                    stride,
                },
            }
        }
    }

    /// The AVX-512 kernel (tiled source, queries in batches) against the portable path (rows,
    /// one query at a time, plain Rust), bit for bit: outputs and weights, over head widths,
    /// windows starting anywhere (first > 0, unaligned), causal ends, sharp softmaxes whose
    /// weights underflow to zero, f16 and f32 caches.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn tiled_kernel_is_the_portable_path_to_the_bit() {
        if !have_avx512() {
            return;
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let widths = [(64, 64), (128, 128), (256, 256), (64, 128), (16, 32)];
        let mut compared = 0;
        // Reused across cases, as the per-thread buffers are: stale contents must not leak.
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        for case in 0..120 {
            let (dim, dim_v) = widths[case % widths.len()];
            let n = 1 + rng.below(if case % 3 == 0 { 40 } else { 700 });
            let data = Case::new(&mut rng, n, dim, dim_v, case % 4 != 3);
            // A batch: the task's first and last positions, its queries' windows inside.
            let base = rng.below(n);
            let last = base + rng.below(n - base);
            let tiled = widen_tiled(
                data.rows(true),
                data.rows(false),
                (dim, dim_v),
                base,
                last,
                &mut keys,
                &mut values,
            );
            let (mut keys_w, mut values_w) = (Vec::new(), Vec::new());
            widen_rows(data.rows(true), dim, base, last, &mut keys_w);
            widen_rows(data.rows(false), dim_v, base, last, &mut values_w);
            let rows = HeadSource::Widened {
                keys: &keys_w,
                values: &values_w,
                base,
            };
            let count = 1 + rng.below(40);
            // Runs of queries over the same positions (the query heads of one token) as well as
            // scattered ones.
            let mut heads: Vec<HeadAttention<'_>> = Vec::new();
            for _ in 0..count {
                let first = base + rng.below(last + 1 - base);
                let mut head = HeadAttention {
                    source: tiled,
                    first,
                    last: first + rng.below(last + 1 - first),
                    scale: [0.125, 1.0, 6.0, 40.0][rng.below(4)],
                    precision: data.precision,
                    kernel: AttentionKernel::Batched,
                };
                if let Some(previous) = heads.last().filter(|_| rng.below(3) != 0) {
                    (head.first, head.last) = (previous.first, previous.last);
                }
                heads.push(head);
            }
            let spread = [0.5, 2.0, 8.0][rng.below(3)];
            let qs: Vec<f32> = (0..count * dim).map(|_| rng.float(spread)).collect();
            let mut outs = vec![0.0f32; count * dim_v];
            let mut queries: Vec<Query<'_, '_>> = heads
                .iter()
                .zip(qs.chunks_exact(dim))
                .zip(outs.chunks_exact_mut(dim_v))
                .map(|((&head, q), out)| Query { head, q, out })
                .collect();
            attend_batch(&mut queries);
            for (i, (head, q)) in heads.iter().zip(qs.chunks_exact(dim)).enumerate() {
                let plain = HeadAttention {
                    source: rows,
                    ..*head
                };
                let n_w = head.last + 1 - head.first;
                let (mut w_plain, mut lanes) = (vec![0.0; n_w], vec![0.0; LANES * dim_v]);
                let mut out_plain = vec![0.0; dim_v];
                plain.attend_any(q, &mut w_plain, &mut lanes, &mut out_plain);
                let out = &outs[i * dim_v..][..dim_v];
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                let mut w_tiled = vec![0.0; n_w];
                head.weights(q, &mut w_tiled);
                assert_eq!(
                    bits(&w_tiled),
                    bits(&w_plain),
                    "case {case} query {i}: weights"
                );
                assert_eq!(
                    bits(out),
                    bits(&out_plain),
                    "case {case} query {i}: outputs"
                );
                // The portable path reading the tiled layout (a CPU without AVX-512 never
                // builds one, but it must read it right).
                let mut out_rows = vec![0.0; dim_v];
                head.attend_any(q, &mut w_plain, &mut lanes, &mut out_rows);
                assert_eq!(
                    bits(&out_rows),
                    bits(&out_plain),
                    "case {case} query {i}: rows"
                );
                compared += 1;
            }
        }
        assert!(compared > 1000);
    }

    /// The AVX-512 one-token kernel (several query heads of one KV head, rows read from the
    /// cache's layout) against the portable one-token path (one head at a time, plain Rust),
    /// bit for bit: head widths, contexts crossing multiples of 16 and 64, sliding windows
    /// starting anywhere, 1 to 9 heads, sharp softmaxes whose f16 weights are zeros, infinite
    /// values behind zero weights, f16 and f32 caches.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn single_kernel_is_the_portable_path_to_the_bit() {
        if !have_avx512() {
            return;
        }
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let widths = [(64, 64), (128, 128), (256, 256), (64, 128), (128, 32)];
        let mut compared = 0;
        for case in 0..400 {
            let (dim, dim_v) = widths[case % widths.len()];
            let n = match case % 4 {
                0 => 1 + rng.below(300),
                1 => [1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 192, 255, 256, 257][rng.below(14)],
                2 => 1 + rng.below(70),
                _ => 1 + rng.below(1000),
            };
            let mut data = Case::new(&mut rng, n, dim, dim_v, case % 5 != 4);
            // Infinite values now and then: where their weight is zero the position must be
            // left out (not multiplied by zero, which gives NaN).
            if case % 7 == 6 {
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(n) * data.stride + rng.below(dim_v);
                    data.values32[at] = f32::INFINITY;
                    data.values16[at] = f16::INFINITY;
                }
            }
            let last = n - 1;
            let first = match rng.below(3) {
                0 => 0,
                1 => rng.below(n),
                _ => last.saturating_sub(rng.below(80)),
            };
            let heads = 1 + rng.below(9);
            let span = SingleSpan {
                first,
                last,
                scale: [0.125, 1.0, 6.0, 40.0][rng.below(4)],
                precision: data.precision,
            };
            let spread = [0.5, 2.0, 8.0][rng.below(3)];
            let q: Vec<f32> = (0..heads * dim).map(|_| rng.float(spread)).collect();
            let mut out = vec![f32::NAN; heads * dim_v];
            assert!(attend_single_rows(
                data.rows(true),
                data.rows(false),
                span,
                (dim, dim_v),
                &q,
                &mut out
            ));
            let (mut keys, mut values) = (Vec::new(), Vec::new());
            widen_rows(data.rows(true), dim, 0, last, &mut keys);
            widen_rows(data.rows(false), dim_v, 0, last, &mut values);
            let source = HeadSource::Widened {
                keys: &keys,
                values: &values,
                base: 0,
            };
            let same = |a: f32, b: f32| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
            for (h, (q, out)) in q.chunks_exact(dim).zip(out.chunks_exact(dim_v)).enumerate() {
                let n_w = last + 1 - first;
                let (mut w, mut lanes) = (vec![0.0; n_w], vec![0.0; STEP * dim_v]);
                let mut plain = vec![0.0; dim_v];
                span.head(source)
                    .attend_any(q, &mut w, &mut lanes, &mut plain);
                for (d, (&x, &y)) in out.iter().zip(&plain).enumerate() {
                    assert!(
                        same(x, y),
                        "case {case} (n {n}, first {first}, dims {dim}/{dim_v}) head {h} dim {d}: {x:e} vs {y:e}"
                    );
                }
                compared += 1;
            }
        }
        assert!(compared > 1000);
    }
}

/// A microbenchmark, not a test (ignored): 16 queries (three per range, as the query heads of a
/// token) over one KV head, AVX-512 kernel against the portable path, best of 7, in GMAC/s.
/// `cargo test --release --lib attend_speed -- --ignored --nocapture`.
#[cfg(test)]
mod speed {
    use super::*;

    #[test]
    #[ignore]
    fn attend_speed() {
        for &(n, dim) in &[(64usize, 64usize), (256, 64), (512, 64), (512, 256)] {
            let keys_h: Vec<f16> = (0..n * dim)
                .map(|i| f16::from_f32(((i * 7919) % 1000) as f32 / 1000.0 - 0.5))
                .collect();
            let vals_h: Vec<f16> = (0..n * dim)
                .map(|i| f16::from_f32(((i * 104729) % 1000) as f32 / 1000.0 - 0.5))
                .collect();
            let rows = |data| HeadRows::F16 { data, stride: dim };
            let (mut k, mut v) = (Vec::new(), Vec::new());
            let src = widen_tiled(
                rows(&keys_h),
                rows(&vals_h),
                (dim, dim),
                0,
                n - 1,
                &mut k,
                &mut v,
            );
            let (mut kw, mut vw) = (Vec::new(), Vec::new());
            widen_rows(rows(&keys_h), dim, 0, n - 1, &mut kw);
            widen_rows(rows(&vals_h), dim, 0, n - 1, &mut vw);
            let old = HeadSource::Widened {
                keys: &kw,
                values: &vw,
                base: 0,
            };
            let q: Vec<f32> = (0..16 * dim).map(|i| (i as f32 * 0.1).sin()).collect();
            let mut out = vec![0.0; 16 * dim];
            let iters = 20_000_000 / (16 * n * dim);
            let mut rate = |source| {
                let t = std::time::Instant::now();
                for _ in 0..iters {
                    let mut queries: Vec<Query> = q
                        .chunks_exact(dim)
                        .zip(out.chunks_exact_mut(dim))
                        .enumerate()
                        .map(|(i, (q, out))| Query {
                            head: HeadAttention {
                                source,
                                first: 0,
                                last: n - 1 - i / 3,
                                scale: 0.125,
                                precision: AttentionPrecision::F16,
                                kernel: AttentionKernel::Batched,
                            },
                            q,
                            out,
                        })
                        .collect();
                    attend_batch(&mut queries);
                }
                (2 * 16 * iters * n * dim) as f64 / t.elapsed().as_secs_f64() / 1e9
            };
            let (mut new, mut old_rate) = (0.0f64, 0.0f64);
            for _ in 0..7 {
                new = new.max(rate(src));
                old_rate = old_rate.max(rate(old));
            }
            let old = old_rate;
            eprintln!("n {n} dim {dim}: new {new:.1} GMAC/s old {old:.1} GMAC/s");
        }
    }
}
