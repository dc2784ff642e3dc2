//! The blocks of an engine's KV pool: which are free, how many sequences hold each, and which
//! hold a prefix another sequence may take instead of computing it again.

use std::collections::HashMap;

use crate::model::kv_cache::BLOCK_POSITIONS;
use crate::{Error, Result};

/// What makes a block's keys and values what they are, so that two sequences whose blocks have
/// equal keys hold equal bits: the block before it (which stands for all the tokens before), its
/// tokens, and the arithmetic they were computed in — the index of the block's first position in
/// the prompt batch that computed it, and that batch's length.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlockKey {
    pub parent: Option<u32>,
    pub tokens: [u32; BLOCK_POSITIONS],
    pub first_in_batch: usize,
    pub batch_len: usize,
}

/// The bookkeeping of `total` blocks.
#[derive(Debug)]
pub struct Blocks {
    /// Sequences holding each block (0: free).
    holders: Vec<u32>,
    free: Vec<u32>,
    /// The published blocks, by key, and each published block's key.
    published: HashMap<BlockKey, u32>,
    key_of: HashMap<u32, BlockKey>,
}

/// How a pool's blocks are used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Blocks in the pool.
    pub total: usize,
    /// Blocks no sequence holds.
    pub free: usize,
    /// Blocks held by more than one sequence.
    pub shared: usize,
    /// Positions per block.
    pub block_positions: usize,
}

impl Blocks {
    /// `total` free blocks.
    pub fn new(total: usize) -> Result<Blocks> {
        let n = u32::try_from(total)
            .map_err(|_| Error::InvalidArgument(format!("a pool of {total} blocks")))?;
        let mut free = Vec::new();
        free.try_reserve_exact(total)
            .map_err(|e| Error::InvalidArgument(format!("a pool of {total} blocks: {e}")))?;
        // Handed out lowest first.
        free.extend((0..n).rev());
        Ok(Blocks {
            holders: vec![0; total],
            free,
            published: HashMap::new(),
            key_of: HashMap::new(),
        })
    }

    pub fn stats(&self) -> PoolStats {
        PoolStats {
            total: self.holders.len(),
            free: self.free.len(),
            shared: self.holders.iter().filter(|&&h| h > 1).count(),
            block_positions: BLOCK_POSITIONS,
        }
    }

    /// Whether `n` blocks are free, else the error saying so.
    pub fn check_free(&self, n: usize) -> Result<()> {
        if n <= self.free.len() {
            return Ok(());
        }
        Err(Error::KvPoolFull {
            needed: n,
            free: self.free.len(),
            total: self.holders.len(),
            block_positions: BLOCK_POSITIONS,
        })
    }

    /// A free block, now held once.
    pub fn take(&mut self) -> Result<u32> {
        self.check_free(1)?;
        let b = self
            .free
            .pop()
            .ok_or_else(|| Error::InvalidArgument("no free block".into()))?;
        self.holders[b as usize] = 1;
        Ok(b)
    }

    /// One more holder of `block`.
    pub fn share(&mut self, block: u32) {
        self.holders[block as usize] += 1;
    }

    /// Sequences holding `block`.
    pub fn holders(&self, block: u32) -> u32 {
        self.holders[block as usize]
    }

    /// One holder fewer; the last one frees the block and withdraws it from the published ones.
    pub fn release(&mut self, block: u32) {
        let h = &mut self.holders[block as usize];
        *h = h.saturating_sub(1);
        if *h == 0 {
            if let Some(key) = self.key_of.remove(&block) {
                self.published.remove(&key);
            }
            self.free.push(block);
        }
    }

    /// The published block with `key`, if any.
    pub fn find(&self, key: &BlockKey) -> Option<u32> {
        self.published.get(key).copied()
    }

    /// Makes `block` (whose positions are all computed) available to sequences that would
    /// compute the same bits, unless an equal block is published already.
    pub fn publish(&mut self, block: u32, key: BlockKey) {
        if self.key_of.contains_key(&block) || self.published.contains_key(&key) {
            return;
        }
        self.key_of.insert(block, key.clone());
        self.published.insert(key, block);
    }
}
