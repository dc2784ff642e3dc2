//! The blocks of an engine's KV pool: which are free, how many sequences hold each, and which
//! hold a prefix another sequence may take instead of computing it again.

use std::collections::HashMap;

use crate::model::kv_cache::BLOCK_POSITIONS;
use crate::{Error, Result};

/// What makes a block's keys and values what they are, so that two sequences whose blocks have
/// equal keys hold equal bits: the block before it (which stands for all the tokens before), its
/// tokens, the arithmetic they were computed in — the index of the block's first position in
/// the prompt batch that computed it, and that batch's length — and the LoRA adapters they were
/// computed with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlockKey {
    pub parent: Option<u32>,
    pub tokens: [u32; BLOCK_POSITIONS],
    pub first_in_batch: usize,
    pub batch_len: usize,
    /// The sequence's adapters, each one's fingerprint and scale bits.
    pub adapters: Vec<(String, u32)>,
}

/// The bookkeeping of `total` blocks.
///
/// A published block that no sequence holds any longer is kept, with its keys and values, as
/// long as no block is needed for anything else: a later prompt with the same beginning takes
/// it instead of computing it again. Such cached blocks count as free; when a block is needed
/// and none is truly free, the one cached longest ago is taken, and every published block after
/// it in a prefix (whose key names it as parent) is unpublished with it, so that no key can
/// ever name a block whose contents have changed.
#[derive(Debug)]
pub struct Blocks {
    /// Sequences holding each block (0: free or cached).
    holders: Vec<u32>,
    free: Vec<u32>,
    /// Published blocks no sequence holds, least recently released first.
    cached: Vec<u32>,
    /// The published blocks, by key, and each published block's key.
    published: HashMap<BlockKey, u32>,
    key_of: HashMap<u32, BlockKey>,
    /// The published blocks whose key names each block as parent.
    children: HashMap<u32, Vec<u32>>,
}

/// How a pool's blocks are used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Blocks in the pool.
    pub total: usize,
    /// Blocks no sequence holds (`cached` of them still holding a prefix for later prompts).
    pub free: usize,
    /// Blocks held by more than one sequence.
    pub shared: usize,
    /// Positions per block.
    pub block_positions: usize,
    /// Free blocks that still hold a computed prefix a later prompt may take.
    pub cached: usize,
}

impl Blocks {
    /// `total` free blocks.
    pub fn new(total: usize) -> Result<Blocks> {
        let n = u32::try_from(total)
            .map_err(|_| Error::InvalidArgument(format!("a pool of {total} blocks")))?;
        let mut free = Vec::new();
        free.try_reserve_exact(total)
            .map_err(|e| Error::InvalidArgument(format!("a pool of {total} blocks: {e}")))?;
        // Taken from the end: block 0 first.
        free.extend((0..n).rev());
        Ok(Blocks {
            holders: vec![0; total],
            free,
            cached: Vec::new(),
            published: HashMap::new(),
            key_of: HashMap::new(),
            children: HashMap::new(),
        })
    }

    pub fn stats(&self) -> PoolStats {
        PoolStats {
            total: self.holders.len(),
            free: self.free.len() + self.cached.len(),
            shared: self.holders.iter().filter(|&&h| h > 1).count(),
            block_positions: BLOCK_POSITIONS,
            cached: self.cached.len(),
        }
    }

    /// Whether `n` blocks can be taken, or the error saying how many are missing.
    pub fn check_free(&self, n: usize) -> Result<()> {
        let free = self.free.len() + self.cached.len();
        if n <= free {
            return Ok(());
        }
        Err(Error::KvPoolFull {
            needed: n,
            free,
            total: self.holders.len(),
            block_positions: BLOCK_POSITIONS,
        })
    }

    /// A block for one sequence to write: a free one, else the cached one released longest ago.
    pub fn take(&mut self) -> Result<u32> {
        self.check_free(1)?;
        if self.free.is_empty() {
            if let Some(&oldest) = self.cached.first() {
                self.unpublish(oldest);
            }
        }
        let b = self
            .free
            .pop()
            .ok_or_else(|| Error::InvalidArgument("no free block".into()))?;
        self.holders[b as usize] = 1;
        Ok(b)
    }

    /// One more sequence holds `block` (a published prefix it takes, or a fork).
    pub fn share(&mut self, block: u32) {
        if self.holders[block as usize] == 0 {
            self.cached.retain(|&b| b != block);
        }
        self.holders[block as usize] += 1;
    }

    /// Sequences holding `block`.
    pub fn holders(&self, block: u32) -> u32 {
        self.holders[block as usize]
    }

    /// One sequence fewer holds `block`; with none left it is cached if published, else free.
    pub fn release(&mut self, block: u32) {
        let h = &mut self.holders[block as usize];
        if *h == 0 {
            return;
        }
        *h -= 1;
        if *h == 0 {
            if self.key_of.contains_key(&block) {
                self.cached.push(block);
            } else {
                self.free.push(block);
            }
        }
    }

    /// The published block with `key`, if any.
    pub fn find(&self, key: &BlockKey) -> Option<u32> {
        self.published.get(key).copied()
    }

    /// Makes `block`, written in full, findable by `key` (unless the key or block already is).
    pub fn publish(&mut self, block: u32, key: BlockKey) {
        if self.key_of.contains_key(&block) || self.published.contains_key(&key) {
            return;
        }
        if let Some(parent) = key.parent {
            self.children.entry(parent).or_default().push(block);
        }
        self.key_of.insert(block, key.clone());
        self.published.insert(key, block);
    }

    /// Unpublishes `block` and every published block after it in a prefix; those no sequence
    /// holds become free.
    fn unpublish(&mut self, block: u32) {
        let mut pending = vec![block];
        while let Some(b) = pending.pop() {
            if let Some(key) = self.key_of.remove(&b) {
                self.published.remove(&key);
                if let Some(siblings) = key.parent.and_then(|p| self.children.get_mut(&p)) {
                    siblings.retain(|&c| c != b);
                }
            }
            pending.extend(self.children.remove(&b).unwrap_or_default());
            if self.holders[b as usize] == 0 {
                if let Some(at) = self.cached.iter().position(|&c| c == b) {
                    self.cached.remove(at);
                    self.free.push(b);
                }
            }
        }
    }
}
