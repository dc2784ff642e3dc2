//! The AVX-512 batched kernel: the portable path's [`AttentionKernel::Batched`] arithmetic, in the
//! same order, 16 positions per register, for up to [`BATCH`] query heads at once over keys and
//! values widened into [`TiledRows`].

use std::arch::x86_64::*;

use super::layout::{whole_registers, TiledRows};
use super::{grow, AttentionKernel, AttentionPrecision, HeadSource, Span, BATCH, LANES, SCRATCH};

/// Positions of a tile of values: its 16 dimensions (4 KiB at 64 bytes a position) stay in
/// the L1 cache while every query of the batch takes its part.
const TILE: usize = 256;

impl Span<'_> {
    /// The first position of the 16-position chunk holding `first`: a query's row of weights
    /// starts there, so that its 16-float blocks are the cache's chunks (the softmax sums and
    /// the lane slots of the weighted sum both count from position 0).
    pub(super) fn chunk_start(&self) -> usize {
        self.first / LANES * LANES
    }

    /// The end of the chunk holding `last`.
    pub(super) fn chunk_end(&self) -> usize {
        (self.last + 1).next_multiple_of(LANES)
    }

    /// Weights in a query's row: whole chunks.
    pub(super) fn row_len(&self) -> usize {
        self.chunk_end() - self.chunk_start()
    }
}

/// The tiled rows of `span` when the batched kernel can run it for queries `dim` and outputs
/// `dim_v` wide (0: weights only): the batched arithmetic, a tiled source of those widths whose
/// buffers cover the positions, whole-register widths. Otherwise the portable path runs, which
/// reads any source (the same arithmetic).
fn tiled<'a>(span: &Span<'a>, dim: usize, dim_v: usize) -> Option<TiledRows<'a>> {
    let HeadSource::Tiled(t) = span.source else {
        return None;
    };
    let fits = span.kernel == AttentionKernel::Batched
        && t.dim == dim
        && (dim_v == 0 || t.dim_v == dim_v)
        && t.base.is_multiple_of(LANES)
        && t.positions.is_multiple_of(LANES)
        && t.base <= span.first
        && span.first <= span.last
        && span.last < t.base + t.positions
        && t.keys.len() >= t.positions * dim
        && t.values.len() >= t.positions * dim_v
        && whole_registers(dim, dim_v);
    fits.then_some(t)
}

/// The batched kernel over at most [`BATCH`] query heads, `queries[i]` over `spans[i]` into
/// `outs[i]`, if all of them can take it (otherwise nothing is done and `false` returned). The
/// caller checked that the level is AVX-512.
pub(super) fn attend(spans: &[Span<'_>], queries: &[&[f32]], outs: &mut [&mut [f32]]) -> bool {
    let n = spans.len();
    let (Some(q0), Some(out0)) = (queries.first(), outs.first()) else {
        return n == 0;
    };
    let (dim, dim_v) = (q0.len(), out0.len());
    if n > BATCH || queries.len() != n || outs.len() != n {
        return false;
    }
    let mut tiles = [TiledRows::default(); BATCH];
    for (((tile, span), q), out) in tiles.iter_mut().zip(spans).zip(queries).zip(outs.iter()) {
        let fits = (q.len(), out.len()) == (dim, dim_v);
        match tiled(span, dim, dim_v) {
            Some(t) if fits => *tile = t,
            _ => return false,
        }
    }
    let tiles = &tiles[..n];
    let mut rows = [0usize; BATCH + 1];
    for (i, span) in spans.iter().enumerate() {
        rows[i + 1] = rows[i] + span.row_len();
    }
    let rows = &rows[..=n];
    SCRATCH.with_borrow_mut(|s| {
        let total = rows[n];
        grow(&mut s.weights, total);
        grow(&mut s.used, total / LANES);
        grow(&mut s.queries, n * dim);
        grow(&mut s.lanes, n * LANES * LANES);
        // SAFETY: the level is AVX-512, so the CPU has AVX-512 F/BW/VL, FMA and F16C; every tile
        // passed `tiled` (its buffers cover its span's positions at these widths); the queries
        // are `dim` and the outputs `dim_v` wide (checked above); the scratch buffers were sized
        // for `rows` just above.
        unsafe {
            weights_kernel(spans, tiles, queries, rows, &mut s.queries, &mut s.weights);
            weighted_values(
                spans,
                tiles,
                rows,
                &s.weights,
                &mut s.used,
                &mut s.lanes,
                outs,
            );
        }
    });
    true
}

/// [`Span::weights`] of the one query head `q` through the batched kernel's scores and softmax,
/// if it can take the span (otherwise nothing is done and `false` returned). The caller checked
/// that the level is AVX-512.
pub(super) fn weights(span: &Span<'_>, q: &[f32], weights: &mut [f32]) -> bool {
    // Width 0 for the values: only the keys are read here.
    let Some(tile) = tiled(span, q.len(), 0) else {
        return false;
    };
    SCRATCH.with_borrow_mut(|s| {
        let rows = [0, span.row_len()];
        grow(&mut s.weights, rows[1]);
        grow(&mut s.queries, q.len());
        // SAFETY: the level is AVX-512 (the CPU has the features); `tile` passed `tiled`, the
        // query is its `dim` wide, the scratch sized for `rows`.
        unsafe {
            weights_kernel(
                &[*span],
                &[tile],
                &[q],
                &rows,
                &mut s.queries,
                &mut s.weights,
            )
        };
        let skip = span.first - span.chunk_start();
        weights.copy_from_slice(&s.weights[skip..][..span.last + 1 - span.first]);
    });
    true
}

/// The attention weights of each query `i` into `w[rows[i]..rows[i + 1]]` (position
/// `chunk_start + j` at `j`, zeros outside `first..=last`), as the portable path computes them:
/// the query rounded to f16, each score `dot_lanes` times the scale, then `softmax_chunked`
/// and the rounding to f16. The blocks of keys are the outer
/// loop, so that each is loaded from memory once for all queries.
///
/// # Safety
/// The CPU must have AVX-512 F/BW/VL, FMA and F16C; every `tiles[i]` the source of `spans[i]` as
/// [`tiled`] checks it, all with the same `dim`; `q[i].len() == dim`;
/// `rows[i + 1] = rows[i] + spans[i].row_len()`, `rows[0] = 0`, `w.len() >= rows[n]`,
/// `queries.len() >= n * dim` (n = `spans.len()` = `tiles.len()`).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn weights_kernel(
    spans: &[Span<'_>],
    tiles: &[TiledRows<'_>],
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
    for (span, query) in spans.iter().zip(queries.chunks_exact_mut(dim)) {
        if span.precision == AttentionPrecision::F16 {
            for x in query.chunks_exact_mut(LANES) {
                // SAFETY: `x` holds 16 floats.
                unsafe {
                    _mm512_storeu_ps(x.as_mut_ptr(), round_f16(_mm512_loadu_ps(x.as_ptr())));
                }
            }
        }
    }
    let lo = spans.iter().map(Span::chunk_start).min().unwrap_or(0);
    let hi = spans.iter().map(Span::chunk_end).max().unwrap_or(0);
    let (groups, count) = groups(spans, tiles);
    for p0 in (lo..hi).step_by(LANES) {
        for &(g0, len) in &groups[..count] {
            let t = &spans[g0];
            if p0 < t.chunk_start() || p0 >= t.chunk_end() {
                continue;
            }
            // Block `(p0 - base) / 16` of the keys, `16 * dim` floats from here.
            let block = tiles[g0].keys[(p0 - tiles[g0].base) * dim..][..LANES * dim].as_ptr();
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
                let t = &spans[i];
                // SAFETY: this kernel runs on AVX-512F CPUs only.
                let scores = unsafe { t.capped_lanes(scores) };
                let scores = _mm512_mul_ps(scores, _mm512_set1_ps(t.scale));
                // Outside `first..=last`: -inf, whose exponential is an exact zero (as the
                // portable path's missing positions are).
                let scores = _mm512_mask_blend_ps(
                    range_mask(p0, t.first, t.last),
                    _mm512_set1_ps(f32::NEG_INFINITY),
                    scores,
                );
                let dst = &mut w[rows[i] + p0 - t.chunk_start()..][..LANES];
                // SAFETY: `dst` holds 16 floats.
                unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), scores) };
            }
        }
    }
    for (i, t) in spans.iter().enumerate() {
        softmax(
            &mut w[rows[i]..rows[i + 1]],
            t.precision == AttentionPrecision::F16,
        );
    }
}

/// Runs of up to 4 consecutive queries over the same keys, values and chunks (the query
/// heads of one token share a KV head), as (first query, count): one register of keys or
/// values loaded serves them all.
fn groups(spans: &[Span<'_>], tiles: &[TiledRows<'_>]) -> ([(usize, usize); BATCH], usize) {
    let mut groups = [(0usize, 0usize); BATCH];
    let mut count = 0;
    for (i, (s, t)) in spans.iter().zip(tiles).enumerate() {
        let joins = count > 0 && {
            let (g0, len) = groups[count - 1];
            let (r, u) = (&spans[g0], &tiles[g0]);
            len < 4
                && std::ptr::eq(u.keys, t.keys)
                && std::ptr::eq(u.values, t.values)
                && (u.base, u.positions, r.chunk_start(), r.chunk_end())
                    == (t.base, t.positions, s.chunk_start(), s.chunk_end())
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

/// `softmax_chunked` over whole chunks (blocks of `w`, the positions outside the
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

/// `out = Σ_pos w_pos · v_pos` for each query, as the portable `weighted_values` computes
/// it for the batched kernel: lane slot `pos % 16` accumulates its positions in increasing
/// order with fused multiply-adds, zero weights skipped, the slots reduced in `reduce16`
/// order. Here 16 output dimensions at a time, a query's 16 slots in 16 registers while it
/// takes its part of a tile of values, kept in `slots` between tiles.
///
/// # Safety
/// As [`weights_kernel`], with `w` the weights it computed, `used.len() >= rows[n] / 16`,
/// `slots.len() >= n * 256` and every `outs[i]` `dim_v` wide, as every tile.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn weighted_values(
    spans: &[Span<'_>],
    tiles: &[TiledRows<'_>],
    rows: &[usize],
    w: &[f32],
    used: &mut [u16],
    slots: &mut [f32],
    outs: &mut [&mut [f32]],
) {
    // Which positions of each block take part, once for all output dimensions (and so that
    // the loop below reads the weights only as scalars, which become broadcasts from memory
    // rather than shuffles of a loaded block).
    for (i, t) in spans.iter().enumerate() {
        let blocks = w[rows[i]..rows[i + 1]].chunks_exact(LANES);
        for (b, (block, used)) in blocks.zip(&mut used[rows[i] / LANES..]).enumerate() {
            // SAFETY: `block` holds 16 floats.
            let weights = unsafe { _mm512_loadu_ps(block.as_ptr()) };
            // Not-equal-unordered: a NaN weight is used, as the portable `w == 0.0` test
            // lets it through.
            *used = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(weights, _mm512_setzero_ps())
                & range_mask(t.chunk_start() + b * LANES, t.first, t.last);
        }
    }
    let lo = spans.iter().map(Span::chunk_start).min().unwrap_or(0);
    let hi = spans.iter().map(Span::chunk_end).max().unwrap_or(0);
    let dim_v = tiles[0].dim_v;
    let (groups, count) = groups(spans, tiles);
    for c in 0..dim_v / LANES {
        slots.fill(0.0);
        for t0 in (lo..hi).step_by(TILE) {
            let t1 = (t0 + TILE).min(hi);
            for &(g0, len) in &groups[..count] {
                let (t, tile) = (&spans[g0], &tiles[g0]);
                let (from, to) = (t0.max(t.chunk_start()), t1.min(t.chunk_end()));
                if from >= to {
                    continue;
                }
                // The group's rows of weights and masks are consecutive and equally long.
                let (row, skip) = (t.row_len(), from - t.chunk_start());
                let w = &w[rows[g0] + skip..rows[g0 + len]];
                let used = &used[(rows[g0] + skip) / LANES..rows[g0 + len] / LANES];
                let blocks = (to - from) / LANES;
                // Dimensions `16c..` of the positions `from..to`, one after the other.
                let values = &tile.values[(c * tile.positions + from - tile.base) * LANES..]
                    [..blocks * LANES * LANES];
                let slots = &mut slots[g0 * LANES * LANES..][..len * LANES * LANES];
                for l in 0..4 {
                    let at = Quad {
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
        for (out, slot) in outs.iter_mut().zip(slots.chunks_exact(LANES * LANES)) {
            let mut acc = [_mm512_setzero_ps(); LANES];
            for (acc, src) in acc.iter_mut().zip(slot.chunks_exact(LANES)) {
                // SAFETY: `src` holds 16 floats.
                *acc = unsafe { _mm512_loadu_ps(src.as_ptr()) };
            }
            let dst = &mut out[c * LANES..][..LANES];
            // SAFETY: `dst` holds 16 floats.
            unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), reduce_registers(acc)) };
        }
    }
}

/// Where [`slot_quads`] works: rows of weights `row` long, `blocks` blocks of 16
/// positions, the four lane slots of one quadruple of `reduce16`'s tree.
#[derive(Clone, Copy)]
struct Quad {
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
    at: Quad,
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

/// The portable `reduce16` of the lanes of `v`: upper 256 bits onto the lower, then the upper 128
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

/// [`crate::model::ops::vexp`] on 16 lanes, to the bit: the same fused multiply-adds (`fnmadd` is the
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
    let out_of_range = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_abs_ps(n), _mm512_set1_ps(192.0));
    _mm512_mask_blend_ps(out_of_range, scaled, saturated)
}
