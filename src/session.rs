//! A session: the mutable state of one conversation with a model — its KV cache, the tokens in
//! it, scratch buffers and a thread pool. Used by one thread at a time; many sessions can share
//! one [`Model`].

use std::sync::Arc;

mod saved;

use crate::lora::ActiveLora;

pub use crate::model::forward::AttentionProbe;
use crate::model::forward::{Logits, Pass, PassLoras, SeqAt};
use crate::model::kv_cache::BlockTable;
use crate::model::{KvCache, KvType, Model, RunState};
use crate::quant::Simd;
use crate::{Error, Result};

/// Receives `(index in batch, logits)` for every evaluated token.
type LogitsCallback<'a> = &'a mut dyn FnMut(usize, &[f32]);

/// What an evaluation hands back per token.
enum Wanted<'a> {
    /// The last token's logits, kept in the session.
    Last,
    /// Every token's logits, to the callback (the last also kept).
    Every(LogitsCallback<'a>),
    /// Every token's final hidden state, to the callback; no logits.
    Hidden(LogitsCallback<'a>),
}

/// Context length used when neither the caller nor a smaller trained context says otherwise.
pub const DEFAULT_MAX_CTX: usize = 4096;
/// Tokens evaluated per forward pass when processing a prompt.
pub const DEFAULT_BATCH: usize = 512;

/// The SIMD level a new session runs at: the one `LLMRT_SIMD` names (`scalar`, `avx2`, `avx512`,
/// `neon`) if this CPU supports it, else the best it supports. [`Session::set_simd`] changes it
/// for one session.
pub fn default_simd() -> Simd {
    Simd::detect()
}

/// Options for a new session.
#[derive(Debug, Clone, Default)]
pub struct SessionParams {
    /// Context length in tokens (0 = the model's trained context, capped at 4096).
    pub n_ctx: usize,
    /// Worker threads (0 = the model's default, else the number of CPU cores).
    pub n_threads: usize,
    /// Element type of the KV cache.
    pub kv_type: KvType,
    /// Most tokens per forward pass when processing a prompt (0 = 512).
    pub n_batch: usize,
}

/// One conversation's state.
pub struct Session {
    model: Arc<Model>,
    pool: rayon::ThreadPool,
    /// The level of every kernel of this session's forward passes: matmuls, attention, RoPE,
    /// activations.
    simd: Simd,
    kv: KvCache,
    state: RunState,
    /// The tokens whose keys and values are in the cache, in order.
    tokens: Vec<u32>,
    /// Logits of the last evaluated token.
    logits: Vec<f32>,
    /// Whether `logits` are those of the last of `tokens` (not after a truncation, or an
    /// evaluation that computed hidden states only).
    logits_current: bool,
    /// Logits saved by [`Session::save_logits`] and the token count they belong to (`None` when
    /// nothing valid is saved).
    saved: (Option<usize>, Vec<f32>),
    /// Attention recording for explain (off unless set).
    probe: Option<AttentionProbe>,
    /// LoRA adapters applied to every evaluation, in order.
    loras: Vec<ActiveLora>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("n_ctx", &self.kv.n_ctx())
            .field("n_past", &self.tokens.len())
            .finish()
    }
}

impl Session {
    /// A session over `model` with an empty cache.
    pub fn new(model: Arc<Model>, params: &SessionParams) -> Result<Session> {
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
        let n_threads = [params.n_threads, model.params().n_threads]
            .into_iter()
            .find(|&t| t > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n_threads)
            .thread_name(|i| format!("llmrt-{i}"))
            .build()
            .map_err(|e| {
                Error::InvalidArgument(format!("cannot start {n_threads} threads: {e}"))
            })?;
        let kv = KvCache::new(c, n_ctx, params.kv_type)?;
        let state = RunState::new(c, n_batch);
        let logits = vec![0.0; c.n_vocab];
        let saved = (None, vec![0.0; c.n_vocab]);
        Ok(Session {
            model,
            pool,
            simd: default_simd(),
            kv,
            state,
            tokens: Vec::new(),
            logits,
            logits_current: false,
            saved,
            probe: None,
            loras: Vec::new(),
        })
    }

    /// The model this session runs.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Context length in tokens.
    pub fn n_ctx(&self) -> usize {
        self.kv.n_ctx()
    }

    /// Threads in this session's pool.
    pub fn n_threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// The SIMD level the kernels use.
    pub fn simd(&self) -> Simd {
        self.simd
    }

    /// Runs every kernel of the following evaluations (matmuls, attention, RoPE, activations) at
    /// `simd`, which this CPU must support (tests and benchmarks compare levels). The cache is
    /// kept.
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

    /// The tokens in the cache.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Logits of the last evaluated token (zeros before the first evaluation).
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// Starts (or with `None` stops) recording attention weights of one layer for every token
    /// evaluated from now on; [`Session::attention_probe`] holds the rows.
    pub fn set_attention_probe(&mut self, probe: Option<AttentionProbe>) -> Result<()> {
        let c = self.model.config();
        if let Some(p) = &probe {
            if p.layer >= c.n_layer || p.head.is_some_and(|h| h >= c.n_head) {
                return Err(Error::InvalidArgument(format!(
                    "attention probe layer {} head {:?} (the model has {} layers of {} heads)",
                    p.layer, p.head, c.n_layer, c.n_head
                )));
            }
        }
        self.probe = probe;
        Ok(())
    }

    /// The attention recording, if one was set.
    pub fn attention_probe(&self) -> Option<&AttentionProbe> {
        self.probe.as_ref()
    }

    /// Applies these LoRA adapters (each with its scale, added in this order) to every
    /// evaluation from now on; an empty list detaches all. The cache was computed without them,
    /// so a change empties it. Every adapter must have been loaded for this session's model,
    /// with a finite scale.
    pub fn set_loras(&mut self, loras: Vec<ActiveLora>) -> Result<()> {
        crate::lora::check_attachable(&loras, &self.model)?;
        if !crate::lora::same_loras(&loras, &self.loras) {
            self.loras = loras;
            self.reset();
        }
        Ok(())
    }

    /// The attached LoRA adapters.
    pub fn loras(&self) -> &[ActiveLora] {
        &self.loras
    }

    /// Empties the cache.
    pub fn reset(&mut self) {
        self.tokens.clear();
        self.logits_current = false;
        self.saved.0 = None;
    }

    /// Keeps only the first `n` cached tokens (later positions are overwritten by the next
    /// evaluation). The logits are stale until the next [`Session::eval`].
    pub fn truncate(&mut self, n: usize) {
        if n < self.tokens.len() {
            self.logits_current = false;
        }
        self.tokens.truncate(n);
        if self.saved.0.is_some_and(|saved| saved > n) {
            self.saved.0 = None;
        }
    }

    /// Saves the current logits (those of the last cached token), so that
    /// [`Session::rewind_to_saved`] can return to this point without evaluating again.
    pub fn save_logits(&mut self) {
        self.saved.1.copy_from_slice(&self.logits);
        self.saved.0 = Some(self.tokens.len());
    }

    /// If logits were saved at exactly `n` cached tokens and the first `n` tokens are unchanged
    /// since, keeps only those `n` tokens, restores their logits and returns true.
    pub fn rewind_to_saved(&mut self, n: usize) -> bool {
        if self.saved.0 != Some(n) || self.tokens.len() < n {
            return false;
        }
        self.tokens.truncate(n);
        self.logits.copy_from_slice(&self.saved.1);
        self.logits_current = true;
        true
    }

    /// Appends `tokens` to the context, evaluating them in batches; afterwards [`Session::logits`]
    /// holds the last token's logits.
    pub fn eval(&mut self, tokens: &[u32]) -> Result<&[f32]> {
        self.eval_inner(tokens, Wanted::Last)?;
        Ok(&self.logits)
    }

    /// Like [`Session::eval`], and calls `on_logits(i, logits)` for every token `i` of `tokens`
    /// (teacher forcing, scoring).
    pub fn eval_all(
        &mut self,
        tokens: &[u32],
        on_logits: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<()> {
        self.eval_inner(tokens, Wanted::Every(on_logits))
    }

    /// Appends `tokens` to the context like [`Session::eval`], but computes no logits: calls
    /// `on_hidden(i, state)` with every token's final hidden state (after the output norm)
    /// instead. [`Session::logits`] is not updated.
    pub fn eval_hidden(
        &mut self,
        tokens: &[u32],
        on_hidden: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<()> {
        self.eval_inner(tokens, Wanted::Hidden(on_hidden))
    }

    fn eval_inner(&mut self, tokens: &[u32], mut wanted: Wanted<'_>) -> Result<()> {
        let needed = self.tokens.len() + tokens.len();
        if needed > self.n_ctx() {
            return Err(Error::ContextFull {
                needed,
                n_ctx: self.n_ctx(),
            });
        }
        let n_vocab = self.model.config().n_vocab;
        let mut done = 0;
        for batch in tokens.chunks(self.state.n_batch) {
            let at = SeqAt {
                pos: self.tokens.len(),
                blocks: BlockTable::InOrder,
            };
            let pass = Pass {
                state: &mut self.state,
                kv: &mut self.kv,
                pool: &self.pool,
                simd: self.simd,
                probe: self.probe.as_mut(),
                loras: PassLoras::All(&self.loras),
            };
            match &mut wanted {
                Wanted::Last => self.model.forward(pass, batch, at, Logits::Last)?,
                Wanted::Every(f) => {
                    let last_logits = &mut self.logits;
                    let mut forward_to_caller = |i: usize, l: &[f32]| {
                        if done + i + 1 == tokens.len() {
                            last_logits.copy_from_slice(l);
                        }
                        f(done + i, l)
                    };
                    self.model
                        .forward(pass, batch, at, Logits::All(&mut forward_to_caller))?;
                }
                Wanted::Hidden(f) => {
                    let mut forward_to_caller = |i: usize, h: &[f32]| f(done + i, h);
                    self.model
                        .forward(pass, batch, at, Logits::Hidden(&mut forward_to_caller))?;
                }
            }
            self.tokens.extend_from_slice(batch);
            done += batch.len();
        }
        if matches!(wanted, Wanted::Last) && !tokens.is_empty() {
            self.logits.copy_from_slice(&self.state.logits[..n_vocab]);
        }
        if !tokens.is_empty() {
            self.logits_current = !matches!(wanted, Wanted::Hidden(_));
        }
        Ok(())
    }
}
