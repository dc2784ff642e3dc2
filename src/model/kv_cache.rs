//! The key/value cache: for every layer, the keys and values of the positions evaluated so far,
//! in f32 or f16, in rows; a sequence's positions are rows in order (a session's own cache) or
//! in blocks a table places (a pool that many sequences share).

use half::f16;
use half::slice::HalfFloatSliceExt;

use super::config::Config;
use crate::{Error, Result};

/// Element type of the KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvType {
    /// Half precision, as llama.cpp stores it by default: half the memory, tiny rounding.
    #[default]
    F16,
    /// Full precision.
    F32,
}

#[derive(Debug)]
enum Store {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

impl Store {
    fn new(ty: KvType, n: usize) -> Result<Store> {
        let fail =
            |_| Error::InvalidArgument(format!("cannot allocate a KV cache of {n} elements"));
        Ok(match ty {
            KvType::F32 => {
                let mut v = Vec::new();
                v.try_reserve_exact(n).map_err(fail)?;
                v.resize(n, 0.0);
                Store::F32(v)
            }
            KvType::F16 => {
                let mut v = Vec::new();
                v.try_reserve_exact(n).map_err(fail)?;
                v.resize(n, f16::ZERO);
                Store::F16(v)
            }
        })
    }

    fn write(&mut self, at: usize, src: &[f32]) {
        match self {
            Store::F32(v) => v[at..at + src.len()].copy_from_slice(src),
            Store::F16(v) => v[at..at + src.len()].convert_from_f32_slice(src),
        }
    }

    /// Elements `0..n` as little-endian bytes, appended to `out`.
    fn append_bytes(&self, n: usize, out: &mut Vec<u8>) {
        match self {
            Store::F32(v) => v[..n].iter().for_each(|x| out.extend(x.to_le_bytes())),
            Store::F16(v) => v[..n].iter().for_each(|x| out.extend(x.to_le_bytes())),
        }
    }

    /// Sets the first elements from little-endian `bytes`, one element per 4 (f32) or 2 (f16).
    fn set_from_bytes(&mut self, bytes: &[u8]) {
        match self {
            Store::F32(v) => {
                for (x, b) in v.iter_mut().zip(bytes.chunks_exact(4)) {
                    *x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            Store::F16(v) => {
                for (x, b) in v.iter_mut().zip(bytes.chunks_exact(2)) {
                    *x = f16::from_le_bytes([b[0], b[1]]);
                }
            }
        }
    }

    fn copy_within(&mut self, from: usize, to: usize, n: usize) {
        match self {
            Store::F32(v) => v.copy_within(from..from + n, to),
            Store::F16(v) => v.copy_within(from..from + n, to),
        }
    }
}

/// Positions per block of a cache shared by many sequences: one 16-position chunk of the
/// attention's softmax, so that every chunk the kernels read lies in one block, rows in order.
pub const BLOCK_POSITIONS: usize = 16;

/// Where a sequence's positions are in a cache: in order (a cache of one sequence), or block by
/// block where a table says (a pool shared by many).
#[derive(Debug, Clone, Copy)]
pub enum BlockTable<'a> {
    /// Position `p` is row `p`.
    InOrder,
    /// Position `p` is row `blocks[p / 16] * 16 + p % 16`.
    Blocks(&'a [u32]),
}

impl BlockTable<'_> {
    /// The cache row holding position `pos`.
    ///
    /// # Panics
    /// If the table has no block for `pos`.
    #[inline(always)]
    pub fn row(self, pos: usize) -> usize {
        match self {
            BlockTable::InOrder => pos,
            BlockTable::Blocks(blocks) => {
                blocks[pos / BLOCK_POSITIONS] as usize * BLOCK_POSITIONS + pos % BLOCK_POSITIONS
            }
        }
    }

    /// Whether positions `0..=last` all have rows below `n_rows`.
    pub fn covers(self, last: usize, n_rows: usize) -> bool {
        match self {
            BlockTable::InOrder => last < n_rows,
            BlockTable::Blocks(blocks) => blocks.get(..=last / BLOCK_POSITIONS).is_some_and(|b| {
                b.iter()
                    .all(|&b| (b as usize + 1) * BLOCK_POSITIONS <= n_rows)
            }),
        }
    }
}

/// The cached rows of one layer seen from one KV head and one sequence: position `p`'s vector
/// for that head is `data[blocks.row(p) * stride..][..dim]`, read in place by the attention
/// kernels.
#[derive(Debug, Clone, Copy)]
pub enum HeadRows<'a> {
    F32 {
        data: &'a [f32],
        stride: usize,
        blocks: BlockTable<'a>,
    },
    F16 {
        data: &'a [f16],
        stride: usize,
        blocks: BlockTable<'a>,
    },
}

/// Keys and values for `n_ctx` positions of every layer.
#[derive(Debug)]
pub struct KvCache {
    n_ctx: usize,
    k_dim: usize,
    v_dim: usize,
    head_dim: usize,
    head_dim_v: usize,
    /// Per layer: (n_ctx, n_head_kv * head_dim).
    keys: Vec<Store>,
    /// Per layer: (n_ctx, n_head_kv * head_dim_v).
    values: Vec<Store>,
}

impl KvCache {
    /// An empty cache for `n_ctx` positions.
    pub fn new(config: &Config, n_ctx: usize, ty: KvType) -> Result<KvCache> {
        let (k_dim, v_dim) = (config.k_dim(), config.v_dim());
        let mut keys = Vec::with_capacity(config.n_layer);
        let mut values = Vec::with_capacity(config.n_layer);
        for _ in 0..config.n_layer {
            keys.push(Store::new(ty, n_ctx * k_dim)?);
            values.push(Store::new(ty, n_ctx * v_dim)?);
        }
        Ok(KvCache {
            n_ctx,
            k_dim,
            v_dim,
            head_dim: config.head_dim,
            head_dim_v: config.head_dim_v,
            keys,
            values,
        })
    }

    /// Element type.
    pub fn kv_type(&self) -> KvType {
        match self.keys.first() {
            Some(Store::F32(_)) => KvType::F32,
            _ => KvType::F16,
        }
    }

    /// Positions the cache holds.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Stores all KV heads of the position in row `row` of layer `layer`.
    pub fn store(&mut self, layer: usize, row: usize, k: &[f32], v: &[f32]) {
        self.keys[layer].write(row * self.k_dim, k);
        self.values[layer].write(row * self.v_dim, v);
    }

    /// Copies rows `from..from + n` of every layer to `to..to + n` (a block shared by several
    /// sequences, copied before one of them writes into it).
    pub fn copy_rows(&mut self, from: usize, to: usize, n: usize) {
        let (k_dim, v_dim) = (self.k_dim, self.v_dim);
        for store in &mut self.keys {
            store.copy_within(from * k_dim, to * k_dim, n * k_dim);
        }
        for store in &mut self.values {
            store.copy_within(from * v_dim, to * v_dim, n * v_dim);
        }
    }

    /// Bytes one position takes in every layer, keys and values.
    pub fn bytes_per_position(&self) -> usize {
        self.keys.len() * (self.k_dim + self.v_dim) * self.element_bytes()
    }

    fn element_bytes(&self) -> usize {
        match self.kv_type() {
            KvType::F32 => 4,
            KvType::F16 => 2,
        }
    }

    /// Rows `0..n` of every layer, keys then values of each layer in turn, as little-endian
    /// bytes ([`KvCache::bytes_per_position`] each), appended to `out`.
    pub fn append_rows(&self, n: usize, out: &mut Vec<u8>) {
        for (keys, values) in self.keys.iter().zip(&self.values) {
            keys.append_bytes(n * self.k_dim, out);
            values.append_bytes(n * self.v_dim, out);
        }
    }

    /// Sets rows `0..n` of every layer from bytes [`KvCache::append_rows`] wrote for `n` rows.
    ///
    /// # Panics
    /// If `bytes` is not `n` positions long, or `n` exceeds the cache.
    pub fn set_rows(&mut self, n: usize, bytes: &[u8]) {
        assert!(n <= self.n_ctx && bytes.len() == n * self.bytes_per_position());
        let element = self.element_bytes();
        let mut rest = bytes;
        for (keys, values) in self.keys.iter_mut().zip(&mut self.values) {
            let (k, after) = rest.split_at(n * self.k_dim * element);
            let (v, after) = after.split_at(n * self.v_dim * element);
            keys.set_from_bytes(k);
            values.set_from_bytes(v);
            rest = after;
        }
    }

    /// Width of one key head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// Width of one value head.
    pub fn head_dim_v(&self) -> usize {
        self.head_dim_v
    }

    /// The keys of KV head `head` in `layer` of the sequence whose positions `blocks` places, in
    /// place.
    #[inline]
    pub fn key_rows<'a>(
        &'a self,
        layer: usize,
        head: usize,
        blocks: BlockTable<'a>,
    ) -> HeadRows<'a> {
        Self::rows(&self.keys[layer], head * self.head_dim, self.k_dim, blocks)
    }

    /// The values of KV head `head` in `layer`, as [`KvCache::key_rows`].
    #[inline]
    pub fn value_rows<'a>(
        &'a self,
        layer: usize,
        head: usize,
        blocks: BlockTable<'a>,
    ) -> HeadRows<'a> {
        Self::rows(
            &self.values[layer],
            head * self.head_dim_v,
            self.v_dim,
            blocks,
        )
    }

    fn rows<'a>(
        store: &'a Store,
        offset: usize,
        stride: usize,
        blocks: BlockTable<'a>,
    ) -> HeadRows<'a> {
        match store {
            Store::F32(v) => HeadRows::F32 {
                data: &v[offset..],
                stride,
                blocks,
            },
            Store::F16(v) => HeadRows::F16 {
                data: &v[offset..],
                stride,
                blocks,
            },
        }
    }
}
