//! An engine: many sequences of one model, stepped together. Each step is one forward pass over
//! the next token of every decoding sequence, plus pieces of new prompts within a budget of
//! tokens per step; all sequences keep their keys and values in one pool of fixed-size blocks,
//! and a prompt whose first blocks another sequence has computed takes those blocks instead of
//! computing them again.
//!
//! A sequence's logits depend only on its own tokens. Decoding tokens of different sequences
//! share every load of the weights but are each computed in the one-column arithmetic
//! ([`Model::forward_each_alone`]); a prompt is cut into batches of `n_batch` tokens from where it
//! starts, exactly as a [`crate::Session`] cuts it, and every piece of a batch (whatever the
//! step budget, or a prefix taken from another sequence) is computed in the arithmetic of the
//! whole batch ([`Model::forward_piece`]). A shared block is taken only when its key says it
//! holds the bits the sequence would compute itself ([`BlockKey`]).

mod blocks;

use std::sync::Arc;

use blocks::Blocks;
pub use blocks::{BlockKey, PoolStats};

use crate::lora::ActiveLora;
use crate::model::forward::{Pass, PassLoras, SeqAt};
use crate::model::kv_cache::{BlockTable, BLOCK_POSITIONS};
use crate::model::{KvCache, KvType, Model, RunState};
use crate::quant::Simd;
use crate::session::{default_simd, DEFAULT_BATCH, DEFAULT_MAX_CTX};
use crate::{Error, Result};

/// Sequences decoded in one step when the parameters do not say.
pub const DEFAULT_MAX_DECODE: usize = 64;

/// Options of a new engine.
#[derive(Debug, Clone, Default)]
pub struct EngineParams {
    /// Worker threads of the engine's one pool (0 = the model's default, else the CPU cores).
    pub n_threads: usize,
    /// Element type of the KV pool.
    pub kv_type: KvType,
    /// Most positions one sequence holds (0 = the model's trained context, capped at 4096).
    pub n_ctx: usize,
    /// Positions the pool holds for all sequences together, rounded up to whole blocks
    /// (0 = four sequences' `n_ctx`).
    pub pool_positions: usize,
    /// Tokens per prompt batch (0 = 512), as a session's `n_batch`.
    pub n_batch: usize,
    /// Most tokens one step evaluates, decoding tokens and prompt pieces together
    /// (0 = `n_batch`; at least 16).
    pub step_tokens: usize,
    /// Most sequences decoded in one step (0 = 64).
    pub max_decode: usize,
    /// Whether prompts may take blocks other sequences computed (the default, `false` here
    /// meaning on; set to disable sharing, e.g. to compare).
    pub no_prefix_sharing: bool,
}

/// A sequence of an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeqId(pub u64);

/// The prompt batch a sequence is evaluating: where it starts and how long it is.
#[derive(Debug, Clone, Copy)]
struct Batch {
    start: usize,
    len: usize,
}

#[derive(Debug)]
struct Sequence {
    id: SeqId,
    /// Tokens whose keys and values are in the pool, in order.
    tokens: Vec<u32>,
    /// Tokens given but not yet evaluated.
    pending: Vec<u32>,
    /// The batch being evaluated, once begun.
    batch: Option<Batch>,
    /// The pool block of every 16 positions.
    blocks: Vec<u32>,
    /// Logits of the last evaluated token, once `fresh`.
    logits: Vec<f32>,
    fresh: bool,
    /// Why the sequence stopped, if it failed; it evaluates nothing more.
    failed: Option<Error>,
    /// Positions taken from blocks other sequences computed.
    reused: usize,
    /// The LoRA adapters of its evaluations.
    loras: Vec<ActiveLora>,
}

impl Sequence {
    fn pos(&self) -> usize {
        self.tokens.len()
    }

    /// The batch its next tokens belong to, begun now if none is.
    fn batch(&mut self, n_batch: usize) -> Batch {
        *self.batch.get_or_insert(Batch {
            start: self.tokens.len(),
            len: self.pending.len().min(n_batch),
        })
    }
}

/// What one step did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StepReport {
    /// Sequences whose logits are new: their pending tokens are all evaluated.
    pub ready: Vec<SeqId>,
    /// Sequences that failed in this step (see [`Engine::error`]); the others went on.
    pub failed: Vec<SeqId>,
    /// Tokens evaluated, and of those decoded one per sequence.
    pub tokens: usize,
    pub decoded: usize,
    /// Positions taken from blocks other sequences computed.
    pub reused: usize,
}

/// Many sequences of one model and their shared KV pool.
pub struct Engine {
    model: Arc<Model>,
    pool: rayon::ThreadPool,
    simd: Simd,
    kv: KvCache,
    blocks: Blocks,
    state: RunState,
    seqs: Vec<Sequence>,
    next_id: u64,
    n_ctx: usize,
    n_batch: usize,
    step_tokens: usize,
    max_decode: usize,
    sharing: bool,
    /// LoRA adapters applied to every sequence.
    loras: Vec<ActiveLora>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("sequences", &self.seqs.len())
            .field("pool", &self.blocks.stats())
            .finish()
    }
}

impl Engine {
    /// An engine over `model` with no sequences.
    pub fn new(model: Arc<Model>, params: &EngineParams) -> Result<Engine> {
        let c = model.config();
        let n_ctx = match params.n_ctx {
            0 => c.n_ctx_train.min(DEFAULT_MAX_CTX),
            n => n,
        };
        let n_batch = match params.n_batch {
            0 => DEFAULT_BATCH,
            b => b,
        }
        .min(n_ctx);
        let step_tokens = match params.step_tokens {
            0 => n_batch,
            s => s,
        };
        if step_tokens < BLOCK_POSITIONS {
            return Err(Error::InvalidArgument(format!(
                "a step of {step_tokens} tokens (at least {BLOCK_POSITIONS})"
            )));
        }
        let max_decode = match params.max_decode {
            0 => DEFAULT_MAX_DECODE,
            m => m,
        };
        let pool_positions = match params.pool_positions {
            0 => n_ctx.saturating_mul(4),
            p => p,
        };
        let n_blocks = pool_positions.div_ceil(BLOCK_POSITIONS);
        let n_threads = [params.n_threads, model.params().n_threads]
            .into_iter()
            .find(|&t| t > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n_threads)
            .thread_name(|i| format!("llmrt-engine-{i}"))
            .build()
            .map_err(|e| {
                Error::InvalidArgument(format!("cannot start {n_threads} threads: {e}"))
            })?;
        let kv = KvCache::new(c, n_blocks * BLOCK_POSITIONS, params.kv_type)?;
        let state = RunState::new(c, step_tokens.max(max_decode).max(n_batch));
        Ok(Engine {
            model,
            pool,
            simd: default_simd(),
            kv,
            blocks: Blocks::new(n_blocks)?,
            state,
            seqs: Vec::new(),
            next_id: 0,
            n_ctx,
            n_batch,
            step_tokens,
            max_decode,
            sharing: !params.no_prefix_sharing,
            loras: Vec::new(),
        })
    }

    /// The model.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// The SIMD level its kernels run at.
    pub fn simd(&self) -> Simd {
        self.simd
    }

    /// Worker threads of the engine's pool.
    pub fn n_threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Most positions one sequence holds.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Runs every kernel at `simd`, which this CPU must support.
    pub fn set_simd(&mut self, simd: Simd) -> Result<()> {
        if !simd.is_supported() {
            return Err(Error::InvalidArgument(format!(
                "this CPU cannot run {} kernels",
                simd.name()
            )));
        }
        self.simd = simd;
        Ok(())
    }

    /// Applies these LoRA adapters (in order, each with its scale) to every sequence; only
    /// while the engine holds nothing computed: no sequence and no cached prefix.
    pub fn set_loras(&mut self, loras: Vec<ActiveLora>) -> Result<()> {
        if !self.seqs.is_empty() || self.blocks.stats().cached > 0 {
            return Err(Error::InvalidArgument(
                "an engine's LoRA adapters are set before it computes anything".into(),
            ));
        }
        crate::lora::check_attachable(&loras, &self.model)?;
        self.loras = loras;
        Ok(())
    }

    /// The LoRA adapters applied to every sequence.
    pub fn loras(&self) -> &[ActiveLora] {
        &self.loras
    }

    /// How the pool's blocks are used.
    pub fn pool_stats(&self) -> PoolStats {
        self.blocks.stats()
    }

    /// A new, empty sequence.
    pub fn add(&mut self) -> SeqId {
        let id = SeqId(self.next_id);
        self.next_id += 1;
        self.seqs.push(Sequence {
            id,
            tokens: Vec::new(),
            pending: Vec::new(),
            batch: None,
            blocks: Vec::new(),
            logits: Vec::new(),
            fresh: false,
            failed: None,
            reused: 0,
            loras: self.loras.clone(),
        });
        id
    }

    /// Gives sequence `id` its own LoRA adapters (in order, each with its scale) instead of the
    /// engine's; only before anything of it is evaluated. Sequences with different adapters
    /// still decode in one step: the base products are shared, each adapter's term is computed
    /// for its own sequences' tokens.
    pub fn set_sequence_loras(&mut self, id: SeqId, loras: Vec<ActiveLora>) -> Result<()> {
        crate::lora::check_attachable(&loras, &self.model)?;
        let i = self.index(id)?;
        let s = &mut self.seqs[i];
        if !s.tokens.is_empty() || s.batch.is_some() {
            return Err(Error::InvalidArgument(
                "a sequence's LoRA adapters are set before it evaluates anything".into(),
            ));
        }
        s.loras = loras;
        Ok(())
    }

    /// The sequences, in the order they were added.
    pub fn sequences(&self) -> impl Iterator<Item = SeqId> + '_ {
        self.seqs.iter().map(|s| s.id)
    }

    fn index(&self, id: SeqId) -> Result<usize> {
        self.seqs
            .iter()
            .position(|s| s.id == id)
            .ok_or_else(|| Error::InvalidArgument(format!("no sequence {}", id.0)))
    }

    /// Appends `tokens` to the sequence, to be evaluated by the next steps (one call is one
    /// prompt, cut into batches as [`crate::Session::eval`] cuts it).
    pub fn feed(&mut self, id: SeqId, tokens: &[u32]) -> Result<()> {
        let i = self.index(id)?;
        let n_vocab = self.model.config().n_vocab;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(Error::InvalidArgument(format!(
                "token id {bad} is outside the vocabulary of {n_vocab}"
            )));
        }
        let s = &mut self.seqs[i];
        if let Some(e) = &s.failed {
            return Err(Error::InvalidArgument(format!("the sequence failed: {e}")));
        }
        let needed = s.tokens.len() + s.pending.len() + tokens.len();
        if needed > self.n_ctx {
            return Err(Error::ContextFull {
                needed,
                n_ctx: self.n_ctx,
            });
        }
        if s.batch.is_none() && !s.pending.is_empty() {
            // The earlier call's tokens are batched on their own.
            s.batch(self.n_batch);
        }
        s.pending.extend_from_slice(tokens);
        s.fresh = false;
        Ok(())
    }

    /// The tokens whose keys and values the sequence holds.
    pub fn tokens(&self, id: SeqId) -> Result<&[u32]> {
        Ok(&self.seqs[self.index(id)?].tokens)
    }

    /// Logits of the sequence's last token, once all its tokens are evaluated.
    pub fn logits(&self, id: SeqId) -> Result<Option<&[f32]>> {
        let s = &self.seqs[self.index(id)?];
        Ok((s.fresh && s.pending.is_empty()).then_some(&s.logits[..]))
    }

    /// Why the sequence failed, if it did.
    pub fn error(&self, id: SeqId) -> Result<Option<&Error>> {
        Ok(self.seqs[self.index(id)?].failed.as_ref())
    }

    /// Takes the error the sequence failed with, if it did (it stays failed).
    pub fn take_error(&mut self, id: SeqId) -> Result<Option<Error>> {
        let i = self.index(id)?;
        let s = &mut self.seqs[i];
        let error = s.failed.take();
        if let Some(e) = &error {
            s.failed = Some(Error::InvalidArgument(e.to_string()));
        }
        Ok(error)
    }

    /// Positions of the sequence taken from blocks other sequences computed, not computed again.
    pub fn reused(&self, id: SeqId) -> Result<usize> {
        Ok(self.seqs[self.index(id)?].reused)
    }

    /// Whether some sequence has tokens to evaluate.
    pub fn has_work(&self) -> bool {
        self.seqs
            .iter()
            .any(|s| s.failed.is_none() && !s.pending.is_empty())
    }

    /// Removes the sequence (finished, cancelled or failed) and returns its blocks.
    pub fn remove(&mut self, id: SeqId) -> Result<()> {
        let i = self.index(id)?;
        let s = self.seqs.remove(i);
        for b in s.blocks {
            self.blocks.release(b);
        }
        Ok(())
    }

    /// A new sequence holding what `id` holds, its blocks shared until one of the two writes
    /// into a shared one (which then gets its own copy first). Pending tokens are not copied.
    pub fn fork(&mut self, id: SeqId) -> Result<SeqId> {
        let i = self.index(id)?;
        let (tokens, blocks, logits, fresh, loras) = {
            let s = &self.seqs[i];
            let fresh = s.fresh && s.pending.is_empty();
            let loras = s.loras.clone();
            (
                s.tokens.clone(),
                s.blocks.clone(),
                s.logits.clone(),
                fresh,
                loras,
            )
        };
        for &b in &blocks {
            self.blocks.share(b);
        }
        let new = self.add();
        let s = self
            .seqs
            .last_mut()
            .ok_or_else(|| Error::InvalidArgument("fork".into()))?;
        (s.tokens, s.blocks, s.logits, s.fresh, s.loras) = (tokens, blocks, logits, fresh, loras);
        Ok(new)
    }

    /// Evaluates the next tokens of the sequences: one token of every sequence whose next batch
    /// is one token (up to `max_decode` of them), then pieces of prompt batches in the order
    /// the sequences were added, within the step's budget of tokens.
    pub fn step(&mut self) -> Result<StepReport> {
        let mut report = StepReport::default();
        let mut budget = self.step_tokens;
        // The decoding sequences: their next batch is a single token.
        let mut decode = Vec::new();
        for i in 0..self.seqs.len() {
            let n_batch = self.n_batch;
            let s = &mut self.seqs[i];
            if s.failed.is_some() || s.pending.is_empty() || decode.len() == self.max_decode {
                continue;
            }
            if s.batch(n_batch).len == 1 && budget > 0 {
                if let Err(e) = self.reserve(i, 1) {
                    self.fail(i, e, &mut report);
                    continue;
                }
                decode.push(i);
                budget -= 1;
            }
        }
        if !decode.is_empty() {
            self.decode(&decode, &mut report)?;
        }
        // Prompt pieces.
        for i in 0..self.seqs.len() {
            let s = &self.seqs[i];
            if s.failed.is_some() || s.pending.is_empty() || decode.contains(&i) {
                continue;
            }
            if budget < BLOCK_POSITIONS && report.tokens > 0 {
                break;
            }
            let used = self.prompt_piece(i, budget.max(BLOCK_POSITIONS), &mut report);
            budget = budget.saturating_sub(used);
        }
        Ok(report)
    }

    /// Marks sequence `i` failed with `e`.
    fn fail(&mut self, i: usize, e: Error, report: &mut StepReport) {
        let s = &mut self.seqs[i];
        s.failed = Some(e);
        s.fresh = false;
        report.failed.push(s.id);
    }

    /// Gives sequence `i` blocks of its own for its next `n` positions: new blocks past its
    /// table, and a copy of a block it shares with others before writing into it.
    fn reserve(&mut self, i: usize, n: usize) -> Result<()> {
        let s = &self.seqs[i];
        let (pos, have) = (s.pos(), s.blocks.len());
        let end_block = (pos + n).div_ceil(BLOCK_POSITIONS);
        let first = pos / BLOCK_POSITIONS;
        let copy = first < have && self.blocks.holders(s.blocks[first]) > 1;
        let needed = end_block.saturating_sub(have) + usize::from(copy);
        self.blocks.check_free(needed)?;
        if copy {
            let old = self.seqs[i].blocks[first];
            let new = self.blocks.take()?;
            let rows = BLOCK_POSITIONS;
            self.kv
                .copy_rows(old as usize * rows, new as usize * rows, rows);
            self.blocks.release(old);
            self.seqs[i].blocks[first] = new;
        }
        for _ in have..end_block {
            let b = self.blocks.take()?;
            self.seqs[i].blocks.push(b);
        }
        Ok(())
    }

    /// One token of each sequence of `decode`, each computed as alone.
    fn decode(&mut self, decode: &[usize], report: &mut StepReport) -> Result<()> {
        let tokens: Vec<u32> = decode.iter().map(|&i| self.seqs[i].pending[0]).collect();
        let n_vocab = self.model.config().n_vocab;
        let mut logits = vec![0.0f32; decode.len() * n_vocab];
        {
            let seqs: Vec<SeqAt<'_>> = decode
                .iter()
                .map(|&i| SeqAt {
                    pos: self.seqs[i].pos(),
                    blocks: BlockTable::Blocks(&self.seqs[i].blocks),
                })
                .collect();
            let sets: Vec<&[ActiveLora]> = decode
                .iter()
                .map(|&i| self.seqs[i].loras.as_slice())
                .collect();
            let loras = match sets.first() {
                Some(first) if sets.iter().all(|s| crate::lora::same_loras(s, first)) => {
                    PassLoras::All(first)
                }
                Some(_) => PassLoras::PerToken(&sets),
                None => PassLoras::All(&[]),
            };
            let pass = Pass {
                state: &mut self.state,
                kv: &mut self.kv,
                pool: &self.pool,
                simd: self.simd,
                probe: None,
                loras,
            };
            let mut keep = |t: usize, l: &[f32]| {
                logits[t * n_vocab..][..n_vocab].copy_from_slice(l);
            };
            self.model
                .forward_each_alone(pass, &tokens, &seqs, &mut keep)?;
        }
        for (k, &i) in decode.iter().enumerate() {
            let s = &mut self.seqs[i];
            let token = s.pending.remove(0);
            s.tokens.push(token);
            s.batch = None;
            s.logits.clear();
            s.logits
                .extend_from_slice(&logits[k * n_vocab..][..n_vocab]);
            if s.pending.is_empty() {
                s.fresh = true;
                report.ready.push(s.id);
            }
        }
        report.tokens += decode.len();
        report.decoded += decode.len();
        Ok(())
    }

    /// The key the block holding positions `b * 16..` of sequence `i` would have if computed by
    /// the sequence's current batch, when that block lies wholly inside the batch.
    fn key_in_batch(&self, i: usize, b: usize, tokens: &[u32]) -> Option<BlockKey> {
        let s = &self.seqs[i];
        let batch = s.batch?;
        let start = b * BLOCK_POSITIONS;
        if start < batch.start || start + BLOCK_POSITIONS > batch.start + batch.len {
            return None;
        }
        let parent = match b {
            0 => None,
            _ => Some(*s.blocks.get(b - 1)?),
        };
        Some(BlockKey {
            parent,
            tokens: tokens.try_into().ok()?,
            first_in_batch: start - batch.start,
            batch_len: batch.len,
            adapters: s
                .loras
                .iter()
                .map(|l| (l.adapter.fingerprint_hex().to_string(), l.scale.to_bits()))
                .collect(),
        })
    }

    /// The next piece of sequence `i`'s prompt batch, within `budget` tokens: first the blocks
    /// other sequences computed with the same key (never the one holding the last token, whose
    /// logits are wanted), then up to `budget` tokens computed. Returns the tokens computed.
    fn prompt_piece(&mut self, i: usize, budget: usize, report: &mut StepReport) -> usize {
        let n_batch = self.n_batch;
        let batch = self.seqs[i].batch(n_batch);
        // A mixture routes all of a batch's tokens together: its pieces are whole batches.
        let whole_only = self.model.config().experts.is_some();
        // Blocks are taken whole from where a batch's block-aligned start makes every piece
        // after them start at a multiple of 16 (the pieces' arithmetic needs a multiple of 4).
        if self.sharing && !whole_only && batch.start.is_multiple_of(BLOCK_POSITIONS) {
            loop {
                let s = &self.seqs[i];
                let pos = s.pos();
                let end = batch.start + batch.len;
                let last_needed = s.pending.len() == end - pos;
                if !pos.is_multiple_of(BLOCK_POSITIONS)
                    || pos + BLOCK_POSITIONS > end
                    || (last_needed && pos + BLOCK_POSITIONS == end)
                    || s.blocks.len() > pos / BLOCK_POSITIONS
                {
                    break;
                }
                let tokens = &s.pending[..BLOCK_POSITIONS];
                let Some(key) = self.key_in_batch(i, pos / BLOCK_POSITIONS, tokens) else {
                    break;
                };
                let Some(block) = self.blocks.find(&key) else {
                    break;
                };
                self.blocks.share(block);
                let s = &mut self.seqs[i];
                s.blocks.push(block);
                let taken: Vec<u32> = s.pending.drain(..BLOCK_POSITIONS).collect();
                s.tokens.extend_from_slice(&taken);
                s.reused += BLOCK_POSITIONS;
                report.reused += BLOCK_POSITIONS;
            }
        }
        let s = &self.seqs[i];
        let (pos, end) = (s.pos(), batch.start + batch.len);
        if pos == end {
            // The whole batch was taken (the prompt goes on after it).
            self.seqs[i].batch = None;
            return 0;
        }
        let left = end - pos;
        let n = if whole_only || left <= budget {
            left
        } else {
            budget / BLOCK_POSITIONS * BLOCK_POSITIONS
        };
        if let Err(e) = self.reserve(i, n) {
            self.fail(i, e, report);
            return 0;
        }
        let tokens: Vec<u32> = self.seqs[i].pending[..n].to_vec();
        let result = {
            let s = &self.seqs[i];
            let at = SeqAt {
                pos,
                blocks: BlockTable::Blocks(&s.blocks),
            };
            let pass = Pass {
                state: &mut self.state,
                kv: &mut self.kv,
                pool: &self.pool,
                simd: self.simd,
                probe: None,
                loras: PassLoras::All(&s.loras),
            };
            let piece = (pos - batch.start, batch.len);
            self.model.forward_piece(pass, &tokens, at, piece)
        };
        if let Err(e) = result {
            self.fail(i, e, report);
            return n;
        }
        let n_vocab = self.model.config().n_vocab;
        {
            let s = &mut self.seqs[i];
            s.pending.drain(..n);
            s.tokens.extend_from_slice(&tokens);
            s.logits.clear();
            s.logits.extend_from_slice(&self.state.logits[..n_vocab]);
        }
        // Publish the blocks this piece completed.
        if self.sharing && !whole_only {
            for b in pos / BLOCK_POSITIONS..(pos + n) / BLOCK_POSITIONS {
                let s = &self.seqs[i];
                let block_tokens = &s.tokens[b * BLOCK_POSITIONS..][..BLOCK_POSITIONS];
                if let Some(key) = self.key_in_batch(i, b, block_tokens) {
                    self.blocks.publish(s.blocks[b], key);
                }
            }
        }
        let s = &mut self.seqs[i];
        if pos + n == end {
            s.batch = None;
        }
        if s.pending.is_empty() {
            s.fresh = true;
            report.ready.push(s.id);
        }
        report.tokens += n;
        n
    }

    /// Evaluates until every sequence's tokens are evaluated (or it failed).
    pub fn run(&mut self) -> Result<()> {
        while self.has_work() {
            self.step()?;
        }
        Ok(())
    }
}
