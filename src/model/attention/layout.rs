//! Where a KV head's keys and values are read from: the cache in place, or copies widened to
//! f32 once for the many queries of a batch, in rows or in the tiles the AVX-512 batched kernel
//! reads.

use super::{avx512, LANES};
use crate::model::config::MAX_HEAD_DIM;
use crate::model::kv_cache::{BlockTable, HeadRows, KvCache};
use crate::quant::Simd;

/// Where a head's keys and values come from.
#[derive(Clone, Copy)]
pub enum HeadSource<'a> {
    /// KV head `kv_head` of `layer` in the cache, at the rows `blocks` gives the sequence's
    /// positions, read (and widened from f16) per query.
    Cache {
        kv: &'a KvCache,
        blocks: BlockTable<'a>,
        layer: usize,
        kv_head: usize,
    },
    /// The same rows already widened to f32 by [`widen_head_batched`], row `pos - base` holding
    /// position `pos` (many queries of a batch share one widening); keys `dim` and values
    /// `dim_v` wide.
    Widened {
        keys: &'a [f32],
        values: &'a [f32],
        base: usize,
        dim: usize,
        dim_v: usize,
    },
    /// The same rows widened by [`widen_head_batched`] for the AVX-512 batched kernel.
    Tiled(TiledRows<'a>),
}

impl HeadSource<'_> {
    /// The widths of a key and of a value.
    pub fn dims(&self) -> (usize, usize) {
        match *self {
            HeadSource::Cache { kv, .. } => (kv.head_dim(), kv.head_dim_v()),
            HeadSource::Widened { dim, dim_v, .. } => (dim, dim_v),
            HeadSource::Tiled(t) => (t.dim, t.dim_v),
        }
    }
}

/// Keys and values of one KV head in 16-position blocks counted from `base` (a multiple of 16),
/// `positions` of them in all (a multiple of 16; past the last widened position, zeros):
/// - keys: block `b` is `keys[b * 16 * dim..][..16 * dim]`, dimension-major, so that one 512-bit
///   load is one dimension of 16 keys: `keys[(b * dim + d) * 16 + k]` is dimension `d` of
///   position `base + 16b + k` (the kernel scores 16 keys per register, no shuffles);
/// - values: per 16 dimensions `c`, the positions one after the other:
///   `values[(c * positions + p - base) * 16 + k]` is dimension `16c + k` of position `p`
///   (the kernel's tile of positions × 16 dimensions is contiguous).
#[derive(Clone, Copy, Default)]
pub struct TiledRows<'a> {
    pub keys: &'a [f32],
    pub values: &'a [f32],
    pub base: usize,
    pub positions: usize,
    pub dim: usize,
    pub dim_v: usize,
}

/// Widens the keys and values of KV head `kv_head` of `layer` at the sequence's positions
/// `base..=last` (rows as `blocks` places them) for a batch of queries, in the layout the batched kernel of level `simd` reads: blocks
/// ([`HeadSource::Tiled`]) for AVX-512, rows ([`HeadSource::Widened`]) otherwise. The buffers
/// are resized as needed; the source borrows them.
#[allow(clippy::too_many_arguments)]
pub fn widen_head_batched<'v>(
    simd: Simd,
    kv: &KvCache,
    blocks: BlockTable<'_>,
    layer: usize,
    kv_head: usize,
    base: usize,
    last: usize,
    keys: &'v mut Vec<f32>,
    values: &'v mut Vec<f32>,
) -> HeadSource<'v> {
    let (dim, dim_v) = (kv.head_dim(), kv.head_dim_v());
    if !(avx512(simd) && whole_registers(dim, dim_v)) {
        widen_rows(kv.key_rows(layer, kv_head, blocks), dim, base, last, keys);
        widen_rows(
            kv.value_rows(layer, kv_head, blocks),
            dim_v,
            base,
            last,
            values,
        );
        return HeadSource::Widened {
            keys,
            values,
            base,
            dim,
            dim_v,
        };
    }
    HeadSource::Tiled(widen_tiled(
        kv.key_rows(layer, kv_head, blocks),
        kv.value_rows(layer, kv_head, blocks),
        (dim, dim_v),
        base,
        last,
        keys,
        values,
    ))
}

/// Head widths the AVX-512 batched kernel takes: whole registers, the query fitting its buffer.
pub(super) fn whole_registers(dim: usize, dim_v: usize) -> bool {
    dim.is_multiple_of(LANES) && dim_v.is_multiple_of(LANES) && dim <= MAX_HEAD_DIM
}

/// [`TiledRows`] of the rows at `base..=last` (from `base` rounded down to a multiple of
/// 16, so that the blocks are the cache's 16-position chunks).
pub(super) fn widen_tiled<'v>(
    key_rows: HeadRows<'_>,
    value_rows: HeadRows<'_>,
    (dim, dim_v): (usize, usize),
    base: usize,
    last: usize,
    keys: &'v mut Vec<f32>,
    values: &'v mut Vec<f32>,
) -> TiledRows<'v> {
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
    TiledRows {
        keys,
        values,
        base,
        positions,
        dim,
        dim_v,
    }
}

/// Row `pos` of `rows` as f32 (`buf.len()` wide), widened into `buf` from f16.
#[inline(always)]
pub(super) fn read_row<'b>(rows: HeadRows<'b>, pos: usize, buf: &'b mut [f32]) -> &'b [f32] {
    let dim = buf.len();
    match rows {
        HeadRows::F32 {
            data,
            stride,
            blocks,
        } => &data[blocks.row(pos) * stride..][..dim],
        HeadRows::F16 {
            data,
            stride,
            blocks,
        } => {
            let row = &data[blocks.row(pos) * stride..][..dim];
            half::slice::HalfFloatSliceExt::convert_to_f32_slice(row, buf);
            buf
        }
    }
}

/// `out` = the rows at positions `base..=last` of `rows` as f32 (resized to fit).
pub(super) fn widen_rows(
    rows: HeadRows<'_>,
    dim: usize,
    base: usize,
    last: usize,
    out: &mut Vec<f32>,
) {
    out.resize((last + 1 - base) * dim, 0.0);
    for (pos, row) in (base..=last).zip(out.chunks_exact_mut(dim)) {
        if let HeadRows::F32 {
            data,
            stride,
            blocks,
        } = rows
        {
            // No widening: the row itself.
            row.copy_from_slice(&data[blocks.row(pos) * stride..][..dim]);
        } else {
            read_row(rows, pos, row);
        }
    }
}

/// Whether `rows` hold the sequence's positions `0..=last`, each `width` wide from its start.
pub(super) fn covers(rows: HeadRows<'_>, last: usize, width: usize) -> bool {
    let (len, stride, blocks) = match rows {
        HeadRows::F32 {
            data,
            stride,
            blocks,
        } => (data.len(), stride, blocks),
        HeadRows::F16 {
            data,
            stride,
            blocks,
        } => (data.len(), stride, blocks),
    };
    // Whole rows of `stride`, then the last one's first `width` elements.
    let whole_rows = if width == 0 || stride == 0 {
        return false;
    } else if len >= width {
        (len - width) / stride + 1
    } else {
        0
    };
    blocks.covers(last, whole_rows)
}
