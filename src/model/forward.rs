//! The transformer forward pass over a batch of tokens, for every supported architecture.
//!
//! [`Model::forward`] and [`Batch::layers`] read top to bottom: each step of the pass is one
//! named call, the steps only some families take marked with the family's name; each step's
//! method follows, and how attention splits its work over threads lives in
//! `Batch::attend_one_token` and `Batch::attend_tokens`. Buffers live in [`RunState`], allocated
//! once per session for `n_batch` tokens.

use rayon::prelude::*;

use super::attention::reduce16;
use super::attention::{
    attend_batch, widen_head_batched, AttentionKernel, AttentionPrecision, HeadSource, Span,
};
use super::config::{Config, Experts, FfnActivation, Norm};
use super::kv_cache::{BlockTable, KvCache, KvType, BLOCK_POSITIONS};
use super::ops::{
    geglu, gelu_in_place, layer_norm_rows, rms_norm_rows, rms_norm_rows_in_place, rope_heads,
    swiglu, vexp,
};
use super::weights::{FeedForward, LayerWeights, Matrix};
use super::Model;
use crate::lora::{ActiveLora, LoraTerm};
use crate::quant::{self, Simd};
use crate::{Error, Result};

/// Hands a tensor to the trace hook (feature `trace`); nothing otherwise.
macro_rules! trace {
    ($name:expr, $layer:expr, $values:expr) => {
        #[cfg(feature = "trace")]
        super::trace::emit($name, $layer, $values);
        // The layer is an argument of the steps that trace; without the hook, still used.
        #[cfg(not(feature = "trace"))]
        let _ = $layer;
    };
}

/// Query tokens per attention task: enough that widening the f16 keys and values once per task
/// is cheap next to the attention itself, few enough that the tasks spread over the threads.
const ATTENTION_TOKENS: usize = 32;

thread_local! {
    /// Per-thread keys and values of one KV head widened to f32, for an attention task.
    static WIDENED: std::cell::RefCell<(Vec<f32>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Rows of logits computed at once when every position's logits are wanted (scoring). Bounds the
/// logits buffer to `LOGIT_ROWS × n_vocab` floats however long the batch.
pub const LOGIT_ROWS: usize = 16;

/// Which logits a forward pass must produce.
pub enum Logits<'a> {
    /// Only the last token's (generation, prompt processing): left in `RunState::logits`.
    Last,
    /// Every token's, handed to the callback as `(index in batch, logits)`.
    All(&'a mut dyn FnMut(usize, &[f32])),
    /// No logits: every token's final hidden state (after the output norm, the input of the
    /// output projection), handed to the callback as `(index in batch, state)`. Embeddings are
    /// pooled from these.
    Hidden(&'a mut dyn FnMut(usize, &[f32])),
}

/// Activation buffers for a batch of up to `n_batch` tokens. Shapes are per token × width.
pub struct RunState {
    pub n_batch: usize,
    /// (n_batch, n_embd) the residual stream.
    x: Vec<f32>,
    /// (n_batch, n_embd) the normalized input of a sub-layer.
    xb: Vec<f32>,
    /// (n_batch, n_head · head_dim) queries.
    q: Vec<f32>,
    /// (n_batch, n_head_kv · head_dim) keys of the new tokens.
    k: Vec<f32>,
    /// (n_batch, n_head_kv · head_dim_v) values of the new tokens.
    v: Vec<f32>,
    /// (n_batch, n_head · head_dim_v) attention output, heads concatenated.
    attn: Vec<f32>,
    /// (n_batch, n_embd) output of the attention or FFN projection.
    proj: Vec<f32>,
    /// (n_batch, n_ff) FFN gate, then the gated hidden activation.
    gate: Vec<f32>,
    /// (n_batch, n_ff) FFN up projection.
    up: Vec<f32>,
    /// (n_batch, rope_dims / 2) RoPE cos and sin per token, for global and local layers.
    rope_cos: [Vec<f32>; 2],
    rope_sin: [Vec<f32>; 2],
    /// (LOGIT_ROWS, n_embd) final-normed rows whose logits are computed.
    out_norm: Vec<f32>,
    /// (LOGIT_ROWS, n_vocab) logits; row 0 holds the last token's after `Logits::Last`.
    pub logits: Vec<f32>,
    /// Quantized activations for the matmuls.
    scratch: Vec<u8>,
    /// (n_batch, n_expert) the router's logits, then probabilities (MoE).
    router: Vec<f32>,
    /// (n_batch, n_used) the experts chosen for each token and their weights (MoE).
    chosen: Vec<usize>,
    chosen_weights: Vec<f32>,
    /// (n_batch, n_used, n_embd) each chosen expert's weighted output (MoE).
    expert_out: Vec<f32>,
    /// (n_batch · n_used, n_embd) one expert's input rows, then its output rows (MoE).
    expert_in: Vec<f32>,
}

impl RunState {
    /// Buffers for batches of up to `n_batch` tokens of a model with config `c`.
    pub fn new(c: &Config, n_batch: usize) -> RunState {
        let z = |n: usize| vec![0.0f32; n];
        let half = c.rope_dims / 2;
        let (n_expert, n_used, n_ff_expert) = c
            .experts
            .map_or((0, 0, 0), |e| (e.n_expert, e.n_used, e.n_ff));
        RunState {
            n_batch,
            x: z(n_batch * c.n_embd),
            xb: z(n_batch * c.n_embd),
            q: z(n_batch * c.q_dim()),
            k: z(n_batch * c.k_dim()),
            v: z(n_batch * c.v_dim()),
            attn: z(n_batch * c.n_head * c.head_dim_v),
            proj: z(n_batch * c.n_embd),
            gate: z(n_batch * c.n_ff.max(n_used * n_ff_expert)),
            up: z(n_batch * c.n_ff.max(n_used * n_ff_expert)),
            rope_cos: [z(n_batch * half), z(n_batch * half)],
            rope_sin: [z(n_batch * half), z(n_batch * half)],
            out_norm: z(LOGIT_ROWS * c.n_embd),
            logits: z(LOGIT_ROWS * c.n_vocab),
            scratch: Vec::new(),
            router: z(n_batch * n_expert),
            chosen: vec![0; n_batch * n_used],
            chosen_weights: z(n_batch * n_used),
            expert_out: z(n_batch * n_used * c.n_embd),
            expert_in: z(n_batch * n_used * c.n_embd),
        }
    }
}

/// Everything a forward pass reads or writes besides the weights.
pub struct Pass<'s> {
    pub state: &'s mut RunState,
    pub kv: &'s mut KvCache,
    pub pool: &'s rayon::ThreadPool,
    pub simd: Simd,
    /// When set, the attention weights of one layer are recorded (explain); `None` costs nothing.
    pub probe: Option<&'s mut AttentionProbe>,
    /// LoRA adapters whose terms every adapted product adds, in order.
    pub loras: PassLoras<'s>,
}

/// The LoRA adapters of a pass's tokens.
#[derive(Debug, Clone, Copy)]
pub enum PassLoras<'a> {
    /// The same adapters for every token (none: `&[]`).
    All(&'a [ActiveLora]),
    /// Each token's own, for tokens of different sequences computed as alone
    /// ([`Model::forward_each_alone`]): one list per token.
    PerToken(&'a [&'a [ActiveLora]]),
}

/// Records, for every evaluated token, the attention weights of one layer over all positions up
/// to the token's own: one head's, or the mean over heads.
#[derive(Debug, Clone, Default)]
pub struct AttentionProbe {
    /// The layer to record.
    pub layer: usize,
    /// The query head to record, or `None` for the mean over all heads.
    pub head: Option<usize>,
    /// One row per evaluated token, in order: `rows[i][j]` is the weight of position `j`
    /// (length = the token's position + 1; zero outside a sliding window).
    pub rows: Vec<Vec<f32>>,
}

/// Where a sequence's tokens go: the position of the first, and the cache rows of its
/// positions.
#[derive(Debug, Clone, Copy)]
pub struct SeqAt<'a> {
    pub pos: usize,
    pub blocks: BlockTable<'a>,
}

impl Model {
    /// Runs `tokens` (at most `n_batch`) of one sequence, at positions `at.pos..`, through the
    /// model, storing their keys and values in the cache rows `at.blocks` gives them, and
    /// produces the logits `want`ed.
    pub fn forward(
        &self,
        pass: Pass<'_>,
        tokens: &[u32],
        at: SeqAt<'_>,
        want: Logits<'_>,
    ) -> Result<()> {
        let positions: Vec<usize> = (at.pos..at.pos + tokens.len()).collect();
        let whole = Columns::Of(0, tokens.len());
        self.forward_positions(pass, tokens, &positions, &[at.blocks], whole, want)
    }

    /// [`Model::forward`] of tokens `first..first + tokens.len()` of a batch of `total` tokens
    /// of one sequence, the earlier ones already in the cache: every value, stored key and value
    /// and the last token's logits (left in `RunState::logits`) get the bits the whole batch
    /// gives them. A prompt can so be evaluated in pieces over several passes, or after a prefix
    /// another sequence computed, in the arithmetic it has whole. `first` must be a multiple of
    /// 4; a mixture of experts routes all of a batch's tokens together, so there a piece must be
    /// the whole batch.
    pub fn forward_piece(
        &self,
        pass: Pass<'_>,
        tokens: &[u32],
        at: SeqAt<'_>,
        (first, total): (usize, usize),
    ) -> Result<()> {
        let n = tokens.len();
        if first.checked_add(n).is_none_or(|end| end > total)
            || !first.is_multiple_of(4)
            || (self.config().experts.is_some() && n != total)
        {
            return Err(Error::InvalidArgument(format!(
                "tokens {first}..{} of a batch of {total} (the first a multiple of 4; the whole \
                 batch for a mixture of experts)",
                first.saturating_add(n)
            )));
        }
        let positions: Vec<usize> = (at.pos..at.pos + n).collect();
        let piece = Columns::Of(first, total);
        self.forward_positions(pass, tokens, &positions, &[at.blocks], piece, Logits::Last)
    }

    /// Runs one token of each of several sequences (`seqs[i]` places token `i`) through the
    /// model, each computed exactly as it is alone ([`Model::forward`] of that one token): the
    /// matmuls in their one-column arithmetic, the attention of each over its own sequence.
    /// `on_logits(i, logits)` receives every token's logits.
    pub fn forward_each_alone(
        &self,
        pass: Pass<'_>,
        tokens: &[u32],
        seqs: &[SeqAt<'_>],
        on_logits: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<()> {
        if seqs.len() != tokens.len() {
            return Err(Error::InvalidArgument(format!(
                "{} tokens for {} sequences",
                tokens.len(),
                seqs.len()
            )));
        }
        let positions: Vec<usize> = seqs.iter().map(|s| s.pos).collect();
        let blocks: Vec<BlockTable<'_>> = seqs.iter().map(|s| s.blocks).collect();
        let want = Logits::All(on_logits);
        self.forward_positions(pass, tokens, &positions, &blocks, Columns::EachAlone, want)
    }

    /// The forward pass of `tokens` at `positions`, token `i` in the sequence whose rows
    /// `blocks[i]` gives (one table for all when there is one), in the arithmetic `columns`
    /// says.
    fn forward_positions(
        &self,
        mut pass: Pass<'_>,
        tokens: &[u32],
        positions: &[usize],
        blocks: &[BlockTable<'_>],
        columns: Columns,
        want: Logits<'_>,
    ) -> Result<()> {
        let n = tokens.len();
        if n == 0 || n > pass.state.n_batch {
            return Err(Error::InvalidArgument(format!(
                "batch of {n} tokens (1 to {} allowed)",
                pass.state.n_batch
            )));
        }
        let n_rows = pass.kv.n_ctx();
        for (t, &pos) in positions.iter().enumerate() {
            let table = blocks[t.min(blocks.len() - 1)];
            if !table.covers(pos, n_rows) {
                let needed = pos + 1;
                return Err(match table {
                    BlockTable::InOrder => Error::ContextFull {
                        needed: positions[0] + n,
                        n_ctx: n_rows,
                    },
                    BlockTable::Blocks(b) => Error::InvalidArgument(format!(
                        "position {pos} has no block in the cache ({} blocks of {} held, {} \
                         positions needed)",
                        b.len(),
                        BLOCK_POSITIONS,
                        needed
                    )),
                });
            }
        }
        let batch = Batch {
            model: self,
            pool: pass.pool,
            simd: pass.simd,
            n,
            pos0: positions[0],
            positions,
            blocks,
            alone: columns == Columns::EachAlone,
            loras: pass.loras,
            columns: match columns {
                Columns::Of(first, total) => (first, total),
                Columns::EachAlone => (0, 1),
            },
        };

        // 1. Token embeddings (gemma scales them by √d_model).
        batch.embed(pass.state, tokens)?;

        // 2. The rotation of every new position, for global and sliding-window layers.
        batch.rope_angles(pass.state);

        // 3-4. The layers. They run inside the pool: the nested `install`s of the matmuls and
        // attention then run on the current worker at once, instead of each handing its job to a
        // pool thread and waiting for it to be scheduled (which, ~9 times per layer, dominated
        // single-token steps on a loaded machine).
        pass.pool.install(|| batch.layers(&mut pass))?;

        // 5. Final norm and output projection, for the rows whose logits are wanted.
        batch.logits(pass.state, want)
    }
}

/// One forward pass over a batch of `n` tokens: the model, the threads and SIMD level of the
/// [`Pass`] every kernel runs with, and where the tokens are. Its methods are the steps of the
/// pass.
#[derive(Clone, Copy)]
struct Batch<'a> {
    model: &'a Model,
    pool: &'a rayon::ThreadPool,
    simd: Simd,
    n: usize,
    /// The first token's position (of one sequence's batch, the others follow it).
    pos0: usize,
    /// Every token's position.
    positions: &'a [usize],
    /// The cache rows of each token's sequence (one for all the tokens of one sequence).
    blocks: &'a [BlockTable<'a>],
    /// Each token is its own sequence, computed as it is alone; otherwise the tokens are one
    /// sequence's, at consecutive positions.
    alone: bool,
    /// Of one sequence: the first token's index in the batch whose arithmetic the pass computes,
    /// and that batch's length (`(0, n)` for the whole batch). Each token alone: `(0, 1)`.
    columns: (usize, usize),
    /// The adapters of [`Pass::loras`].
    loras: PassLoras<'a>,
}

/// The arithmetic of a forward pass's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Columns {
    /// Tokens `first..first + n` of one sequence's batch of `total`: `Of(first, total)`.
    Of(usize, usize),
    /// Each token of its own sequence, as alone.
    EachAlone,
}

impl Batch<'_> {
    /// Every layer over the batch, whose embeddings are in `state.x` and rotations in
    /// `state.rope_cos`/`state.rope_sin`: attention, then feed-forward, each a normalized
    /// sub-layer added to the residual stream.
    fn layers(&self, pass: &mut Pass<'_>) -> Result<()> {
        let c = self.model.config();
        let (s, kv) = (&mut *pass.state, &mut *pass.kv);
        let n = self.n;
        let (d, attn_dim) = (n * c.n_embd, n * c.n_head * c.head_dim_v);
        for (il, lw) in self.model.weights().layers.iter().enumerate() {
            // 3. Attention block.
            // 3a. Normalize the residual stream (olmo2 takes it as it is).
            let (norm, bias) = (lw.attn_norm.as_deref(), lw.attn_norm_b.as_deref());
            pre_norm(c, &s.x[..d], norm, bias, &mut s.xb[..d]);
            trace!("attn_norm", il, &s.xb[..d]);

            // 3b. Project to queries, keys and values (qwen2 adds biases).
            self.project_qkv(s, lw, il)?;

            // 3c. qwen3, gemma3: RMS-normalize each query and key head; olmo2: all queries and
            //     all keys of a token.
            self.normalize_qk_heads(s, lw);

            // 3d. Rotate queries and keys by their positions (RoPE; smollm3 skips some layers).
            self.rotate_qk(s, il);

            // 3d'. mistral3: the queries' temperature, growing with the position.
            self.warm_queries(s);

            // 3e. gemma3: the queries carry the attention scale; otherwise the scores do.
            let score_scale = self.scale_queries(s);

            // 3f. Append the new keys and values to the cache.
            self.store_kv(s, kv, il);

            // 3g. Each query head attends over its KV head's cached positions up to its own
            //     (causal), or over the last `sliding_window` of them on sliding-window layers.
            self.attend(s, kv, il, score_scale);
            trace!("kqv_out", il, &s.attn[..attn_dim]);

            // (explain) Record this layer's attention weights if asked to.
            if let Some(probe) = pass.probe.as_deref_mut().filter(|p| p.layer == il) {
                self.record_attention(probe, s, kv, il, score_scale);
            }

            // 3h. Project the heads back to the residual width, normalize the result (gemma,
            //     olmo2) or scale it (granite), and add it to the residual stream.
            self.matmul(
                &lw.wo,
                &s.attn[..attn_dim],
                &mut s.proj[..d],
                &mut s.scratch,
            )?;
            add_bias(&mut s.proj[..d], lw.bo.as_deref());
            trace!("attn_out", il, &s.proj[..d]);
            add_residual(
                &mut s.x[..d],
                &mut s.proj[..d],
                lw.post_attn_norm.as_deref(),
                c,
            );

            // 4. Feed-forward block: down(act(gate(x)) · up(x)) on the normalized stream.
            // 4a. Normalize the residual stream (olmo2 takes it as it is).
            let (norm, bias) = (lw.ffn_norm.as_deref(), lw.ffn_norm_b.as_deref());
            pre_norm(c, &s.x[..d], norm, bias, &mut s.xb[..d]);
            trace!("ffn_inp", il, &s.x[..d]);
            trace!("ffn_norm", il, &s.xb[..d]);

            // 4b-4d. The gated FFN into `s.proj`: one for all tokens, or (MoE) the router's
            //        choice of experts for each token.
            match &lw.ffn {
                FeedForward::Dense { gate, up, down } => {
                    self.dense_ffn(s, lw, [gate, up, down], il)?;
                }
                FeedForward::Ungated { up, down } => self.ungated_ffn(s, lw, [up, down], il)?,
                FeedForward::Experts {
                    router,
                    gate,
                    up,
                    down,
                } => self.mixture_of_experts(s, router, [gate, up, down], il)?,
            }
            trace!("ffn_out", il, &s.proj[..d]);
            add_residual(
                &mut s.x[..d],
                &mut s.proj[..d],
                lw.post_ffn_norm.as_deref(),
                c,
            );
            trace!("l_out", il, &s.x[..d]);
        }
        Ok(())
    }

    /// Steps 4b-4d of a dense FFN: `s.proj = down(act(gate(s.xb)) · up(s.xb))`.
    fn dense_ffn(
        &self,
        s: &mut RunState,
        lw: &LayerWeights,
        [gate, up, down]: [&Matrix; 3],
        il: usize,
    ) -> Result<()> {
        let c = self.model.config();
        let (d, ff) = (self.n * c.n_embd, self.n * c.n_ff);
        // 4b. Gate and up projections (and their biases where the file has them).
        self.matmul(gate, &s.xb[..d], &mut s.gate[..ff], &mut s.scratch)?;
        self.matmul(up, &s.xb[..d], &mut s.up[..ff], &mut s.scratch)?;
        add_bias(&mut s.gate[..ff], lw.b_gate.as_deref());
        add_bias(&mut s.up[..ff], lw.b_up.as_deref());
        trace!("ffn_gate", il, &s.gate[..ff]);
        trace!("ffn_up", il, &s.up[..ff]);
        // 4c. The gated activation, into the gate buffer.
        self.activate(s);
        trace!("ffn_swiglu", il, &s.gate[..ff]);
        // 4d. Down projection.
        self.matmul(down, &s.gate[..ff], &mut s.proj[..d], &mut s.scratch)?;
        add_bias(&mut s.proj[..d], lw.b_down.as_deref());
        Ok(())
    }

    /// Steps 4b-4d of an ungated FFN (starcoder2): `s.proj = down(GELU(up(s.xb)))`, each
    /// projection plus its bias.
    fn ungated_ffn(
        &self,
        s: &mut RunState,
        lw: &LayerWeights,
        [up, down]: [&Matrix; 2],
        il: usize,
    ) -> Result<()> {
        let c = self.model.config();
        let (d, ff) = (self.n * c.n_embd, self.n * c.n_ff);
        self.matmul(up, &s.xb[..d], &mut s.up[..ff], &mut s.scratch)?;
        add_bias(&mut s.up[..ff], lw.b_up.as_deref());
        trace!("ffn_up", il, &s.up[..ff]);
        gelu_in_place(&mut s.up[..ff]);
        trace!("ffn_gelu", il, &s.up[..ff]);
        self.matmul(down, &s.up[..ff], &mut s.proj[..d], &mut s.scratch)?;
        add_bias(&mut s.proj[..d], lw.b_down.as_deref());
        Ok(())
    }

    /// Steps 4b-4d of a mixture of experts, as llama.cpp computes it: the router's logits, their
    /// softmax, the `n_used` most probable experts of each token (most probable first) with their
    /// probabilities, divided by their sum; each chosen expert's SwiGLU FFN of its tokens, one
    /// token at a time (llama.cpp multiplies experts with its one-column arithmetic); each
    /// output times its weight, and the weighted outputs summed in the experts' order.
    fn mixture_of_experts(
        &self,
        s: &mut RunState,
        router: &Matrix,
        [gate, up, down]: [&Matrix; 3],
        il: usize,
    ) -> Result<()> {
        let c = self.model.config();
        let Some(e) = c.experts else {
            return Err(Error::InvalidArgument(
                "expert weights without experts".into(),
            ));
        };
        let (n, d, k) = (self.n, c.n_embd, e.n_used);
        let router_logits = &mut s.router[..n * e.n_expert];
        self.matmul(router, &s.xb[..n * d], router_logits, &mut s.scratch)?;
        trace!("ffn_moe_logits", il, router_logits);
        let (chosen, weights) = (&mut s.chosen[..n * k], &mut s.chosen_weights[..n * k]);
        for ((probs, chosen), weights) in router_logits
            .chunks_exact_mut(e.n_expert)
            .zip(chosen.chunks_exact_mut(k))
            .zip(weights.chunks_exact_mut(k))
        {
            soft_max(probs);
            choose_experts(probs, &e, chosen, weights);
        }
        trace!("ffn_moe_probs", il, &s.router[..n * e.n_expert]);
        // Each expert's tokens, in token order, multiplied together (each column in the
        // one-column arithmetic); every (token, slot) output lands in its own row.
        let file = self.model.gguf();
        let ff = e.n_ff;
        for expert in 0..e.n_expert {
            let rows: Vec<usize> = (0..n * k).filter(|&r| chosen[r] == expert).collect();
            if rows.is_empty() {
                continue;
            }
            let m = rows.len();
            for (i, &r) in rows.iter().enumerate() {
                s.expert_in[i * d..][..d].copy_from_slice(&s.xb[r / k * d..][..d]);
            }
            let [gate, up, down] =
                [gate, up, down].map(|w| w.expert_view(file, expert, e.n_expert));
            let (x, g, u) = (
                &s.expert_in[..m * d],
                &mut s.gate[..m * ff],
                &mut s.up[..m * ff],
            );
            self.matmul_expert(&gate, x, m, g, &mut s.scratch)?;
            self.matmul_expert(&up, x, m, u, &mut s.scratch)?;
            for (g, u) in g.chunks_exact_mut(ff).zip(u.chunks_exact(ff)) {
                swiglu(self.simd, g, u);
            }
            let out = &mut s.expert_in[..m * d];
            self.matmul_expert(&down, &s.gate[..m * ff], m, out, &mut s.scratch)?;
            for (i, &r) in rows.iter().enumerate() {
                let w = weights[r];
                let dst = &mut s.expert_out[r * d..][..d];
                dst.iter_mut()
                    .zip(&out[i * d..][..d])
                    .for_each(|(o, &v)| *o = v * w);
            }
        }
        for (proj, outs) in s.proj[..n * d]
            .chunks_exact_mut(d)
            .zip(s.expert_out[..n * k * d].chunks_exact(k * d))
        {
            proj.copy_from_slice(&outs[..d]);
            for out in outs.chunks_exact(d).skip(1) {
                proj.iter_mut().zip(out).for_each(|(p, o)| *p += o);
            }
        }
        trace!("ffn_moe_out", il, &s.proj[..n * d]);
        Ok(())
    }

    /// `out = m · x` for the `n` rows of `x` routed to the expert `m`, in the arithmetic llama.cpp
    /// gives an expert ([`quant::matmul_expert`]).
    fn matmul_expert(
        &self,
        m: &quant::QMatrix<'_>,
        x: &[f32],
        n: usize,
        out: &mut [f32],
        scratch: &mut Vec<u8>,
    ) -> Result<()> {
        if self.alone {
            quant::matmul_columns_alone(self.pool, m, x, n, out, scratch, self.simd)
        } else {
            quant::matmul_expert(self.pool, m, x, n, out, scratch, self.simd)
        }
    }

    /// `out = m · x` for the batch's `n` rows of `x` (each as alone when the tokens are of
    /// different sequences), plus the term of every attached adapter that adapts `m`.
    fn matmul(&self, m: &Matrix, x: &[f32], out: &mut [f32], scratch: &mut Vec<u8>) -> Result<()> {
        self.product(&m.view(self.model.gguf()), x, out, scratch)?;
        let (cols, rows) = (x.len() / self.n, out.len() / self.n);
        self.for_each_lora_term(&m.name, 0..self.n, |batch, term, t| {
            let (x, out) = (
                &x[t.start * cols..t.end * cols],
                &mut out[t.start * rows..t.end * rows],
            );
            batch.add_lora(term, x, out, scratch)
        })
    }

    /// Calls `apply(batch, term, tokens)` for the term of every adapter of tokens `among` that
    /// adapts the tensor `name`: once for them all when the tokens share their adapters, else
    /// token by token (each then a one-token batch, as alone). `tokens` counts from
    /// `among.start`.
    fn for_each_lora_term(
        &self,
        name: &str,
        among: std::ops::Range<usize>,
        mut apply: impl FnMut(&Batch<'_>, &LoraTerm<'_>, std::ops::Range<usize>) -> Result<()>,
    ) -> Result<()> {
        match self.loras {
            PassLoras::All(loras) => {
                for term in loras.iter().filter_map(|l| l.term(name)) {
                    apply(self, &term, 0..among.len())?;
                }
            }
            PassLoras::PerToken(sets) => {
                let one = Batch {
                    n: 1,
                    columns: (0, 1),
                    ..*self
                };
                for t in among.clone() {
                    let loras = sets.get(t).copied().unwrap_or_default();
                    for term in loras.iter().filter_map(|l| l.term(name)) {
                        let at = t - among.start;
                        apply(&one, &term, at..at + 1)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// `out = w · x` in the arithmetic of this pass's tokens.
    fn product(
        &self,
        w: &quant::QMatrix<'_>,
        x: &[f32],
        out: &mut [f32],
        scratch: &mut Vec<u8>,
    ) -> Result<()> {
        if self.alone {
            quant::matmul_columns_alone(self.pool, w, x, self.n, out, scratch, self.simd)
        } else {
            let (n, columns, simd) = (self.n, self.columns, self.simd);
            quant::matmul_columns_of(self.pool, w, x, n, columns, out, scratch, simd)
        }
    }

    /// `out += s·(B·(A·x))` of one adapter's term, each product as llama.cpp's graph computes
    /// it, the scaled term rounded before it is added.
    fn add_lora(
        &self,
        term: &LoraTerm<'_>,
        x: &[f32],
        out: &mut [f32],
        scratch: &mut Vec<u8>,
    ) -> Result<()> {
        let mut ax = vec![0.0; self.n * term.a.rows];
        self.product(&term.a, x, &mut ax, scratch)?;
        let mut bax = vec![0.0; self.n * term.b.rows];
        self.product(&term.b, &ax, &mut bax, scratch)?;
        for (o, v) in out.iter_mut().zip(&bax) {
            *o += v * term.scale;
        }
        Ok(())
    }

    /// The cache rows of token `t`'s sequence.
    fn table(&self, t: usize) -> BlockTable<'_> {
        self.blocks[t.min(self.blocks.len() - 1)]
    }

    /// Step 1: one dequantized row of the embedding table per token into `s.x`.
    fn embed(&self, s: &mut RunState, tokens: &[u32]) -> Result<()> {
        let c = self.model.config();
        let embd = &self.model.weights().token_embd;
        let embd_data = embd.view(self.model.gguf()).data;
        let d = c.n_embd;
        for (t, &id) in tokens.iter().enumerate() {
            let id = id as usize;
            if id >= c.n_vocab {
                return Err(Error::InvalidArgument(format!(
                    "token id {id} is outside the vocabulary of {}",
                    c.n_vocab
                )));
            }
            let row = &embd_data[id * embd.row_bytes()..(id + 1) * embd.row_bytes()];
            quant::dequantize_row(embd.ty, row, &mut s.x[t * d..(t + 1) * d], self.simd)?;
        }
        // An adapter of the embedding adds s·(B·a[t]) to token t's row, before any scaling.
        let scratch = &mut s.scratch;
        let x = &mut s.x[..self.n * d];
        self.for_each_lora_term(&embd.name, 0..self.n, |batch, term, t| {
            let rows = &mut x[t.start * d..t.end * d];
            batch.add_embedding_lora(term, &tokens[t], rows, scratch)
        })?;
        if c.embed_scale != 1.0 {
            s.x[..self.n * d]
                .iter_mut()
                .for_each(|v| *v *= c.embed_scale);
        }
        Ok(())
    }

    /// `x[t] += s·(B·a[tokens[t]])`: the embedding's LoRA term, `a` gathered by token.
    fn add_embedding_lora(
        &self,
        term: &LoraTerm<'_>,
        tokens: &[u32],
        x: &mut [f32],
        scratch: &mut Vec<u8>,
    ) -> Result<()> {
        let rank = term.a.cols;
        let row_bytes = term.a.data.len() / term.a.rows.max(1);
        let mut gathered = vec![0.0; tokens.len() * rank];
        for (&id, a_row) in tokens.iter().zip(gathered.chunks_exact_mut(rank)) {
            let id = id as usize;
            let bytes = term
                .a
                .data
                .get(id * row_bytes..(id + 1) * row_bytes)
                .ok_or_else(|| Error::InvalidArgument(format!("token {id} has no LoRA row")))?;
            quant::dequantize_row(term.a.ty, bytes, a_row, self.simd)?;
        }
        let mut delta = vec![0.0; tokens.len() * term.b.rows];
        self.product(&term.b, &gathered, &mut delta, scratch)?;
        for (v, dv) in x.iter_mut().zip(&delta) {
            *v += dv * term.scale;
        }
        Ok(())
    }

    /// Step 2: the cos and sin of every new position's angles, for global (0) and
    /// sliding-window (1) layers.
    fn rope_angles(&self, s: &mut RunState) {
        let c = self.model.config();
        let half = c.rope_dims / 2;
        for (kind, layer) in [
            (0, c.layer_is_swa.iter().position(|&swa| !swa)),
            (1, c.layer_is_swa.iter().position(|&swa| swa)),
        ] {
            let Some(layer) = layer else { continue };
            let frequencies = self.model.rope_frequencies(layer);
            for t in 0..self.n {
                let r = t * half..(t + 1) * half;
                frequencies.angles(
                    self.positions[t],
                    &mut s.rope_cos[kind][r.clone()],
                    &mut s.rope_sin[kind][r],
                );
            }
        }
    }

    /// Step 3b: `s.q`, `s.k`, `s.v` from the normalized stream `s.xb`, biases added.
    fn project_qkv(&self, s: &mut RunState, lw: &LayerWeights, il: usize) -> Result<()> {
        let c = self.model.config();
        let n = self.n;
        let (q_dim, k_dim, v_dim) = (c.q_dim(), c.k_dim(), c.v_dim());
        let xb = &s.xb[..n * c.n_embd];
        self.matmul(&lw.wq, xb, &mut s.q[..n * q_dim], &mut s.scratch)?;
        self.matmul(&lw.wk, xb, &mut s.k[..n * k_dim], &mut s.scratch)?;
        self.matmul(&lw.wv, xb, &mut s.v[..n * v_dim], &mut s.scratch)?;
        for (buf, bias, width) in [
            (&mut s.q, &lw.bq, q_dim),
            (&mut s.k, &lw.bk, k_dim),
            (&mut s.v, &lw.bv, v_dim),
        ] {
            if let Some(bias) = bias {
                for row in buf[..n * width].chunks_exact_mut(width) {
                    row.iter_mut().zip(bias).for_each(|(x, b)| *x += b);
                }
            }
        }
        trace!("Qcur", il, &s.q[..n * q_dim]);
        trace!("Kcur", il, &s.k[..n * k_dim]);
        trace!("Vcur", il, &s.v[..n * v_dim]);
        Ok(())
    }

    /// Step 3c: the RMS norm of queries and keys, when the layer has one: of each head
    /// (qwen3, gemma3) or of each token's heads together (olmo2), as wide as its weight.
    fn normalize_qk_heads(&self, s: &mut RunState, lw: &LayerWeights) {
        let c = self.model.config();
        if let (Some(q_norm), Some(k_norm)) = (&lw.q_norm, &lw.k_norm) {
            rms_norm_rows_in_place(&mut s.q[..self.n * c.q_dim()], q_norm, c.rms_eps);
            rms_norm_rows_in_place(&mut s.k[..self.n * c.k_dim()], k_norm, c.rms_eps);
        }
    }

    /// Step 3d: every query and key head rotated by its token's angles (those of layer `il`'s
    /// kind, global or sliding-window).
    fn rotate_qk(&self, s: &mut RunState, il: usize) {
        let c = self.model.config();
        if !c.layer_has_rope[il] {
            return;
        }
        let (q_dim, k_dim, half) = (c.q_dim(), c.k_dim(), c.rope_dims / 2);
        let kind = usize::from(c.layer_is_swa[il]);
        for t in 0..self.n {
            let cos = &s.rope_cos[kind][t * half..(t + 1) * half];
            let sin = &s.rope_sin[kind][t * half..(t + 1) * half];
            let q = &mut s.q[t * q_dim..(t + 1) * q_dim];
            rope_heads(self.simd, q, c.head_dim, cos, sin, c.rope_style);
            let k = &mut s.k[t * k_dim..(t + 1) * k_dim];
            rope_heads(self.simd, k, c.head_dim, cos, sin, c.rope_style);
        }
        trace!("Qcur_rope", il, &s.q[..self.n * q_dim]);
        trace!("Kcur_rope", il, &s.k[..self.n * k_dim]);
    }

    /// Step 3d': each query times its position's temperature (mistral3), when the model has one.
    fn warm_queries(&self, s: &mut RunState) {
        let c = self.model.config();
        if let Some(temperature) = c.query_temperature {
            let q_dim = c.q_dim();
            for (t, q) in s.q[..self.n * q_dim].chunks_exact_mut(q_dim).enumerate() {
                let factor = temperature.at(self.positions[t]);
                q.iter_mut().for_each(|v| *v *= factor);
            }
        }
    }

    /// Step 3e: the factor of the attention scores. gemma3 multiplies the queries by the
    /// attention scale instead (then 1).
    fn scale_queries(&self, s: &mut RunState) -> f32 {
        let c = self.model.config();
        if c.scale_queries {
            let q = &mut s.q[..self.n * c.q_dim()];
            q.iter_mut().for_each(|v| *v *= c.attn_scale);
            1.0
        } else {
            c.attn_scale
        }
    }

    /// Step 3f: the batch's keys and values into the cache, at their positions' rows.
    fn store_kv(&self, s: &RunState, kv: &mut KvCache, il: usize) {
        let c = self.model.config();
        let (k_dim, v_dim) = (c.k_dim(), c.v_dim());
        for t in 0..self.n {
            kv.store(
                il,
                self.table(t).row(self.positions[t]),
                &s.k[t * k_dim..(t + 1) * k_dim],
                &s.v[t * v_dim..(t + 1) * v_dim],
            );
        }
    }

    /// The span of layer `il` of the query at position `pos` over `source`, scores times
    /// `scale`: causal, within the layer's sliding window, rounded as the cache's type implies,
    /// in the arithmetic of the batch's size.
    fn span<'k>(
        &self,
        kv: &KvCache,
        il: usize,
        source: HeadSource<'k>,
        pos: usize,
        scale: f32,
    ) -> Span<'k> {
        let c = self.model.config();
        let window = if c.layer_is_swa[il] {
            c.sliding_window
        } else {
            usize::MAX
        };
        let precision = match kv.kv_type() {
            KvType::F16 => AttentionPrecision::F16,
            KvType::F32 => AttentionPrecision::F32,
        };
        // The batch's size decides, not the piece's.
        let kernel = if self.columns.1 == 1 {
            AttentionKernel::Single
        } else {
            AttentionKernel::Batched
        };
        Span::causal(source, pos, window, scale, precision, kernel).with_softcap(c.attn_softcap)
    }

    /// Step 3g: `s.attn` = every query head of `s.q` attending over layer `il`'s cache, the work
    /// split over the pool's threads as suits one token or many.
    fn attend(&self, s: &mut RunState, kv: &KvCache, il: usize, scale: f32) {
        if self.columns.1 == 1 {
            self.attend_one_token(s, kv, il, scale);
        } else {
            self.attend_tokens(s, kv, il, scale);
        }
    }

    /// Tokens alone (one, or one of each of several sequences): a task per token and KV head,
    /// reading the cache directly and widening each key and value once for all its query heads.
    /// With several threads and few tasks, the query heads of each KV head are split into parts,
    /// so that every thread has about two tasks.
    fn attend_one_token(&self, s: &mut RunState, kv: &KvCache, il: usize, scale: f32) {
        let c = self.model.config();
        let (hd, hdv, q_dim) = (c.head_dim, c.head_dim_v, c.q_dim());
        let group = c.n_head / c.n_head_kv;
        let threads = self.pool.current_num_threads();
        let parts = if threads > 1 {
            (2 * threads).div_ceil(self.n * c.n_head_kv).clamp(1, group)
        } else {
            1
        };
        let per_task = group.div_ceil(parts);
        let q = &s.q;
        let tasks = s.attn[..self.n * c.n_head * hdv]
            .par_chunks_mut(group * hdv)
            .enumerate()
            .flat_map(|(i, out)| {
                let (t, kv_head) = (i / c.n_head_kv, i % c.n_head_kv);
                out.par_chunks_mut(per_task * hdv)
                    .enumerate()
                    .map(move |(part, out)| (t, kv_head, kv_head * group + part * per_task, out))
            });
        self.pool.install(|| {
            tasks.for_each(|(t, kv_head, h0, out)| {
                let heads = out.len() / hdv;
                let source = HeadSource::Cache {
                    kv,
                    blocks: self.table(t),
                    layer: il,
                    kv_head,
                };
                self.span(kv, il, source, self.positions[t], scale).attend(
                    self.simd,
                    &q[t * q_dim + h0 * hd..][..heads * hd],
                    out,
                );
            });
        });
    }

    /// Several tokens: tasks of up to [`ATTENTION_TOKENS`] tokens, each widening the keys and
    /// values of every KV head once for all its tokens and query heads.
    fn attend_tokens(&self, s: &mut RunState, kv: &KvCache, il: usize, scale: f32) {
        let c = self.model.config();
        let (hd, hdv, q_dim) = (c.head_dim, c.head_dim_v, c.q_dim());
        let attn_dim = c.n_head * hdv;
        let group = c.n_head / c.n_head_kv;
        let window = if c.layer_is_swa[il] {
            c.sliding_window
        } else {
            usize::MAX
        };
        let (q, blocks) = (&s.q, self.table(0));
        self.pool.install(|| {
            s.attn[..self.n * attn_dim]
                .par_chunks_mut(ATTENTION_TOKENS * attn_dim)
                .enumerate()
                .for_each(|(chunk, out)| {
                    let t0 = chunk * ATTENTION_TOKENS;
                    let tokens = t0..t0 + out.len() / attn_dim;
                    let base = (self.pos0 + t0 + 1).saturating_sub(window);
                    let last = self.pos0 + tokens.end - 1;
                    WIDENED.with_borrow_mut(|(keys, values)| {
                        for g in 0..c.n_head_kv {
                            let source = widen_head_batched(
                                self.simd, kv, blocks, il, g, base, last, keys, values,
                            );
                            // All queries of this KV head at once: the AVX-512 kernel shares its
                            // loads of keys and values among them.
                            let heads = g * group..(g + 1) * group;
                            let mut spans = Vec::with_capacity(tokens.len() * group);
                            let mut queries = Vec::with_capacity(tokens.len() * group);
                            for t in tokens.clone() {
                                let span = self.span(kv, il, source, self.pos0 + t, scale);
                                for h in heads.clone() {
                                    spans.push(span);
                                    queries.push(&q[t * q_dim + h * hd..][..hd]);
                                }
                            }
                            let mut outs: Vec<&mut [f32]> = out
                                .chunks_exact_mut(attn_dim)
                                .flat_map(|out| {
                                    out[g * group * hdv..(g + 1) * group * hdv]
                                        .chunks_exact_mut(hdv)
                                })
                                .collect();
                            attend_batch(self.simd, &spans, &queries, &mut outs);
                        }
                    });
                });
        });
    }

    /// (explain) Layer `il`'s attention weights of every token of the batch, over all positions
    /// up to its own: of the probe's head, or the mean over heads.
    fn record_attention(
        &self,
        probe: &mut AttentionProbe,
        s: &RunState,
        kv: &KvCache,
        il: usize,
        scale: f32,
    ) {
        let c = self.model.config();
        let (hd, q_dim) = (c.head_dim, c.q_dim());
        let group = c.n_head / c.n_head_kv;
        let heads: Vec<usize> = match probe.head {
            Some(h) => vec![h.min(c.n_head - 1)],
            None => (0..c.n_head).collect(),
        };
        for t in 0..self.n {
            let pos = self.positions[t];
            let mut row = vec![0.0f32; pos + 1];
            for &h in &heads {
                let q_head = &s.q[t * q_dim + h * hd..t * q_dim + (h + 1) * hd];
                let source = HeadSource::Cache {
                    kv,
                    blocks: self.table(t),
                    layer: il,
                    kv_head: h / group,
                };
                let span = self.span(kv, il, source, pos, scale);
                let mut weights = vec![0.0f32; pos + 1 - span.first];
                span.weights(self.simd, q_head, &mut weights);
                for (r, w) in row[span.first..].iter_mut().zip(&weights) {
                    *r += w / heads.len() as f32;
                }
            }
            probe.rows.push(row);
        }
    }

    /// Step 4c: `gate = act(gate) · up` token by token, over the pool's threads.
    fn activate(&self, s: &mut RunState) {
        let c = self.model.config();
        let (n_ff, ff) = (c.n_ff, self.n * c.n_ff);
        let (activation, simd) = (c.ffn_activation, self.simd);
        let rows = s.gate[..ff]
            .par_chunks_mut(n_ff)
            .zip(s.up[..ff].par_chunks(n_ff));
        self.pool.install(|| {
            rows.for_each(|(g, u)| match activation {
                FfnActivation::Silu => swiglu(simd, g, u),
                FfnActivation::GeluTanh => geglu(simd, g, u),
                // The ungated FFN has its own step and never comes here.
                FfnActivation::UngatedGelu => {}
            });
        });
    }

    /// Step 5: the final norm and the output projection of the rows whose logits are `want`ed.
    fn logits(&self, s: &mut RunState, want: Logits<'_>) -> Result<()> {
        let c = self.model.config();
        let w = self.model.weights();
        let (n, d) = (self.n, c.n_embd);
        if let Logits::Hidden(f) = want {
            for t in 0..n {
                pre_norm(
                    c,
                    &s.x[t * d..(t + 1) * d],
                    Some(&w.output_norm),
                    w.output_norm_b.as_deref(),
                    &mut s.out_norm[..d],
                );
                f(t, &s.out_norm[..d]);
            }
            return Ok(());
        }
        let rows: Box<dyn Iterator<Item = std::ops::Range<usize>>> = match want {
            Logits::Hidden(_) => return Ok(()),
            Logits::Last => Box::new(std::iter::once(n - 1..n)),
            // Each row as alone: any grouping computes the same.
            Logits::All(_) if self.alone => Box::new(
                (0..n)
                    .step_by(LOGIT_ROWS)
                    .map(move |r| r..(r + LOGIT_ROWS).min(n)),
            ),
            Logits::All(_) => Box::new(logit_chunks(n)),
        };
        let mut want = want;
        for range in rows {
            let m = range.len();
            pre_norm(
                c,
                &s.x[range.start * d..range.end * d],
                Some(&w.output_norm),
                w.output_norm_b.as_deref(),
                &mut s.out_norm[..m * d],
            );
            let product = if self.alone {
                quant::matmul_columns_alone
            } else {
                quant::matmul
            };
            product(
                self.pool,
                &w.output.view(self.model.gguf()),
                &s.out_norm[..m * d],
                m,
                &mut s.logits[..m * c.n_vocab],
                &mut s.scratch,
                self.simd,
            )?;
            // The output's adapters; a tied output is the embedding, whose factors are gathered
            // by token, not multiplied.
            if w.output.name != crate::lora::TOKEN_EMBEDDING {
                let output_rows = Batch {
                    n: m,
                    columns: match want {
                        Logits::Last => (0, 1),
                        _ => (range.start, n),
                    },
                    ..*self
                };
                let (x, out, scratch) = (&s.out_norm, &mut s.logits, &mut s.scratch);
                let v = c.n_vocab;
                let rows = match want {
                    Logits::Last => n - 1..n,
                    _ => range.clone(),
                };
                output_rows.for_each_lora_term(&w.output.name, rows, |batch, term, t| {
                    let (x, out) = (&x[t.start * d..t.end * d], &mut out[t.start * v..t.end * v]);
                    batch.add_lora(term, x, out, scratch)
                })?;
            }
            cap_logits(&mut s.logits[..m * c.n_vocab], c);
            if let Logits::All(f) = &mut want {
                for (i, t) in range.enumerate() {
                    f(t, &s.logits[i * c.n_vocab..(i + 1) * c.n_vocab]);
                }
            }
        }
        Ok(())
    }
}

/// The rows of a batch of `n` whose logits are computed together, when all are wanted: at most
/// [`LOGIT_ROWS`] at once, each chunk computing what llama.cpp's one matmul of all `n` rows
/// computes. Its K-quant kernels take another arithmetic from 8 rows on and group rows by four
/// from the first, so no chunk but a lone one has fewer than 8 rows and every chunk but the last
/// is a multiple of four: a remainder under 8 shares the last 16 + r rows as 8 and 8 + r.
fn logit_chunks(n: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    const MIN_TILED_ROWS: usize = 8;
    let r = n % LOGIT_ROWS;
    let mut bounds: Vec<usize> = (0..n).step_by(LOGIT_ROWS).collect();
    if n > LOGIT_ROWS && r != 0 && r < MIN_TILED_ROWS {
        // Replace the last two starts (n - r - 16, n - r) by (n - r - 16, n - r - 8).
        if let Some(last) = bounds.last_mut() {
            *last -= MIN_TILED_ROWS;
        }
    }
    bounds.push(n);
    (0..bounds.len() - 1).map(move |i| bounds[i]..bounds[i + 1])
}

/// llama.cpp's softmax of a row (`ggml_soft_max` without scale or mask): the exponentials of
/// `x − max` in 16-element steps by its vector exponential, each step's sum reduced as a 512-bit
/// register is, the rest by libm's `expf` one at a time, all sums accumulated in f64; then every
/// value times `1 / sum` rounded to f32.
fn soft_max(x: &mut [f32]) {
    const LANES: usize = 16;
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f64;
    let mut steps = x.chunks_exact_mut(LANES);
    for step in &mut steps {
        let mut lanes = [0.0f32; LANES];
        for (l, v) in lanes.iter_mut().zip(step.iter_mut()) {
            *v = vexp(*v - max);
            *l = *v;
        }
        sum += f64::from(reduce16(lanes));
    }
    for v in steps.into_remainder() {
        *v = (*v - max).exp();
        sum += f64::from(*v);
    }
    let inv = (1.0 / sum) as f32;
    x.iter_mut().for_each(|v| *v *= inv);
}

/// The `chosen.len()` most probable experts of `probs` in decreasing probability (the lower
/// index first among equals), and their `weights`: the probabilities, divided by their sum
/// (summed in f64, at least f16's smallest normal) when the model says so, then scaled.
fn choose_experts(probs: &[f32], e: &Experts, chosen: &mut [usize], weights: &mut [f32]) {
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    for ((c, w), &i) in chosen.iter_mut().zip(weights.iter_mut()).zip(&order) {
        (*c, *w) = (i, probs[i]);
    }
    if e.normalize_weights {
        const F16_MIN_NORMAL: f32 = 6.103_515_6e-5;
        let sum = (weights.iter().map(|&w| f64::from(w)).sum::<f64>() as f32).max(F16_MIN_NORMAL);
        weights.iter_mut().for_each(|w| *w /= sum);
    }
    if e.weights_scale != 1.0 {
        weights.iter_mut().for_each(|w| *w *= e.weights_scale);
    }
}

/// `out = norm(x)` row by row with `weight` (and `bias`, LayerNorm), or `out = x` when the
/// sub-layer has no pre-norm.
fn pre_norm(c: &Config, x: &[f32], weight: Option<&[f32]>, bias: Option<&[f32]>, out: &mut [f32]) {
    match (weight, c.norm) {
        (Some(weight), Norm::Rms) => rms_norm_rows(x, weight, c.rms_eps, out),
        (Some(weight), Norm::Layer) => layer_norm_rows(x, weight, bias, c.rms_eps, out),
        (None, _) => out.copy_from_slice(x),
    }
}

/// `rows += bias` for every `bias.len()`-wide row, when there is a bias.
fn add_bias(rows: &mut [f32], bias: Option<&[f32]>) {
    if let Some(bias) = bias {
        for row in rows.chunks_exact_mut(bias.len()) {
            row.iter_mut().zip(bias).for_each(|(x, b)| *x += b);
        }
    }
}

/// `x += norm(proj)` (the post-norms of gemma and olmo2), `x += proj · scale` (granite) or
/// `x += proj`, token by token; each product rounded before the sum, as llama.cpp's separate
/// scale and add do.
fn add_residual(x: &mut [f32], proj: &mut [f32], post_norm: Option<&[f32]>, c: &Config) {
    if let Some(weight) = post_norm {
        rms_norm_rows_in_place(proj, weight, c.rms_eps);
    }
    if c.residual_scale != 1.0 {
        proj.iter_mut().for_each(|v| *v *= c.residual_scale);
    }
    x.iter_mut().zip(proj.iter()).for_each(|(a, b)| *a += b);
}

/// The logits' last steps in some families: granite's multiplier, gemma2's soft-capping
/// (`cap · tanh(logit / cap)`, three roundings as llama.cpp's scale, tanh, scale).
fn cap_logits(logits: &mut [f32], c: &Config) {
    if c.logit_scale != 1.0 {
        logits.iter_mut().for_each(|v| *v *= c.logit_scale);
    }
    if c.final_softcap != 0.0 {
        let (inv, cap) = (1.0 / c.final_softcap, c.final_softcap);
        logits.iter_mut().for_each(|v| *v = (*v * inv).tanh() * cap);
    }
}

#[cfg(test)]
mod tests {
    use super::{logit_chunks, LOGIT_ROWS};

    /// Chunks cover 0..n in order, none longer than LOGIT_ROWS, all but the last a multiple of
    /// four, none under 8 rows unless it is the only one.
    #[test]
    fn logit_chunks_follow_llama_cpp_s_row_grouping() {
        for n in 1..200 {
            let chunks: Vec<_> = logit_chunks(n).collect();
            assert_eq!(chunks.first().map(|c| c.start), Some(0), "n {n}");
            assert_eq!(chunks.last().map(|c| c.end), Some(n), "n {n}");
            for (i, c) in chunks.iter().enumerate() {
                assert!(!c.is_empty() && c.len() <= LOGIT_ROWS, "n {n}: {c:?}");
                if i + 1 < chunks.len() {
                    assert_eq!(c.end, chunks[i + 1].start);
                    assert_eq!(c.len() % 4, 0, "n {n}: {c:?}");
                }
                if chunks.len() > 1 {
                    assert!(c.len() >= 8, "n {n}: {c:?}");
                }
            }
        }
    }
}
