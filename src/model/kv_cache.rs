//! The key/value cache of one session: for every layer, the keys and values of every position
//! evaluated so far, in f32 or f16.

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

    fn read(&self, at: usize, dst: &mut [f32]) {
        match self {
            Store::F32(v) => dst.copy_from_slice(&v[at..at + dst.len()]),
            Store::F16(v) => v[at..at + dst.len()].convert_to_f32_slice(dst),
        }
    }
}

/// The cached rows of one layer seen from one KV head: position `p`'s vector for that head is
/// `data[p * stride..][..dim]`, read in place by the attention kernels.
#[derive(Debug, Clone, Copy)]
pub enum HeadRows<'a> {
    F32 { data: &'a [f32], stride: usize },
    F16 { data: &'a [f16], stride: usize },
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

    /// Stores all KV heads of position `pos` in layer `layer`.
    pub fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        self.keys[layer].write(pos * self.k_dim, k);
        self.values[layer].write(pos * self.v_dim, v);
    }

    /// Width of one key head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// Width of one value head.
    pub fn head_dim_v(&self) -> usize {
        self.head_dim_v
    }

    /// Reads the key of KV head `head` at `pos` in `layer` into `dst` (head_dim long).
    #[inline]
    pub fn key(&self, layer: usize, pos: usize, head: usize, dst: &mut [f32]) {
        self.keys[layer].read(pos * self.k_dim + head * self.head_dim, dst);
    }

    /// The keys of KV head `head` in `layer`, in place.
    #[inline]
    pub fn key_rows(&self, layer: usize, head: usize) -> HeadRows<'_> {
        Self::rows(&self.keys[layer], head * self.head_dim, self.k_dim)
    }

    /// The values of KV head `head` in `layer`, in place.
    #[inline]
    pub fn value_rows(&self, layer: usize, head: usize) -> HeadRows<'_> {
        Self::rows(&self.values[layer], head * self.head_dim_v, self.v_dim)
    }

    fn rows(store: &Store, offset: usize, stride: usize) -> HeadRows<'_> {
        match store {
            Store::F32(v) => HeadRows::F32 {
                data: &v[offset..],
                stride,
            },
            Store::F16(v) => HeadRows::F16 {
                data: &v[offset..],
                stride,
            },
        }
    }

    /// Reads the value of KV head `head` at `pos` in `layer` into `dst` (head_dim_v long).
    #[inline]
    pub fn value(&self, layer: usize, pos: usize, head: usize, dst: &mut [f32]) {
        self.values[layer].read(pos * self.v_dim + head * self.head_dim_v, dst);
    }
}
