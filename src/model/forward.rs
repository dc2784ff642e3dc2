//! The transformer forward pass over a batch of tokens, for every supported architecture.
//!
//! One function, read top to bottom; the steps only some families take are marked with the
//! family's name. Buffers live in [`RunState`], allocated once per session for `n_batch` tokens.

use rayon::prelude::*;

use super::attention::{
    attend_batch, widen_head_batched, AttentionKernel, AttentionPrecision, GroupAttention,
    HeadAttention, HeadSource, Query,
};
use super::config::{Config, FfnActivation};
use super::kv_cache::{KvCache, KvType};
use super::ops::{geglu, rms_norm_rows, rms_norm_rows_in_place, rope_heads, swiglu};
use super::weights::Matrix;
use super::Model;
use crate::quant::{self, Simd};
use crate::{Error, Result};

/// Hands a tensor to the trace hook (feature `trace`); nothing otherwise.
macro_rules! trace {
    ($name:expr, $layer:expr, $values:expr) => {
        #[cfg(feature = "trace")]
        super::trace::emit($name, $layer, $values);
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
}

impl RunState {
    /// Buffers for batches of up to `n_batch` tokens of a model with config `c`.
    pub fn new(c: &Config, n_batch: usize) -> RunState {
        let z = |n: usize| vec![0.0f32; n];
        let half = c.rope_dims / 2;
        RunState {
            n_batch,
            x: z(n_batch * c.n_embd),
            xb: z(n_batch * c.n_embd),
            q: z(n_batch * c.q_dim()),
            k: z(n_batch * c.k_dim()),
            v: z(n_batch * c.v_dim()),
            attn: z(n_batch * c.n_head * c.head_dim_v),
            proj: z(n_batch * c.n_embd),
            gate: z(n_batch * c.n_ff),
            up: z(n_batch * c.n_ff),
            rope_cos: [z(n_batch * half), z(n_batch * half)],
            rope_sin: [z(n_batch * half), z(n_batch * half)],
            out_norm: z(LOGIT_ROWS * c.n_embd),
            logits: z(LOGIT_ROWS * c.n_vocab),
            scratch: Vec::new(),
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

impl Model {
    /// Runs `tokens` (at most `n_batch`) at positions `pos0..` through the model, appending their
    /// keys and values to the cache, and produces the logits `want`ed.
    pub fn forward(
        &self,
        pass: Pass<'_>,
        tokens: &[u32],
        pos0: usize,
        want: Logits<'_>,
    ) -> Result<()> {
        let c = self.config();
        let w = self.weights();
        let file = self.gguf();
        let Pass {
            state: s,
            kv,
            pool,
            simd,
            probe,
        } = pass;
        let n = tokens.len();
        if n == 0 || n > s.n_batch {
            return Err(Error::InvalidArgument(format!(
                "batch of {n} tokens (1 to {} allowed)",
                s.n_batch
            )));
        }
        if pos0 + n > kv.n_ctx() {
            return Err(Error::ContextFull {
                needed: pos0 + n,
                n_ctx: kv.n_ctx(),
            });
        }
        let d = c.n_embd;

        // 1. Token embeddings: one dequantized row of the embedding table per token
        //    (gemma scales them by √d_model).
        let embd = &w.token_embd;
        let embd_data = embd.view(file).data;
        for (t, &id) in tokens.iter().enumerate() {
            let id = id as usize;
            if id >= c.n_vocab {
                return Err(Error::InvalidArgument(format!(
                    "token id {id} is outside the vocabulary of {}",
                    c.n_vocab
                )));
            }
            let row = &embd_data[id * embd.row_bytes()..(id + 1) * embd.row_bytes()];
            let x = &mut s.x[t * d..(t + 1) * d];
            quant::dequantize_row(embd.ty, row, x, simd)?;
            if c.embed_scale != 1.0 {
                x.iter_mut().for_each(|v| *v *= c.embed_scale);
            }
        }

        // 2. The rotation of every new position, for global (0) and sliding-window (1) layers.
        let half = c.rope_dims / 2;
        for (kind, layer) in [
            (0, c.layer_is_swa.iter().position(|&swa| !swa)),
            (1, c.layer_is_swa.iter().position(|&swa| swa)),
        ] {
            let Some(layer) = layer else { continue };
            let frequencies = self.rope_frequencies(layer);
            for t in 0..n {
                let r = t * half..(t + 1) * half;
                frequencies.angles(
                    pos0 + t,
                    &mut s.rope_cos[kind][r.clone()],
                    &mut s.rope_sin[kind][r],
                );
            }
        }

        // The layers run inside the pool: the nested `install`s of the matmuls and attention
        // then run on the current worker at once, instead of each handing its job to a pool
        // thread and waiting for it to be scheduled (which, ~9 times per layer, dominated
        // single-token steps on a loaded machine).
        pool.install(|| self.layers(s, kv, pool, simd, probe, n, pos0))?;

        // 5. Final norm and output projection, for the rows whose logits are wanted.
        let rows: Box<dyn Iterator<Item = std::ops::Range<usize>>> = match want {
            Logits::Last => Box::new(std::iter::once(n - 1..n)),
            Logits::All(_) => Box::new(
                (0..n)
                    .step_by(LOGIT_ROWS)
                    .map(|r| r..(r + LOGIT_ROWS).min(n)),
            ),
        };
        let mut want = want;
        for range in rows {
            let m = range.len();
            rms_norm_rows(
                &s.x[range.start * d..range.end * d],
                &w.output_norm,
                c.rms_eps,
                &mut s.out_norm[..m * d],
            );
            quant::matmul(
                pool,
                &w.output.view(file),
                &s.out_norm[..m * d],
                m,
                &mut s.logits[..m * c.n_vocab],
                &mut s.scratch,
                simd,
            )?;
            if let Logits::All(f) = &mut want {
                for (i, t) in range.enumerate() {
                    f(t, &s.logits[i * c.n_vocab..(i + 1) * c.n_vocab]);
                }
            }
        }
        Ok(())
    }
    /// Step 3-4 for every layer: attention and feed-forward sub-layers over the batch of `n`
    /// tokens at positions `pos0..`, whose embeddings are in `s.x` and rotations in
    /// `s.rope_cos`/`s.rope_sin`.
    #[allow(clippy::too_many_arguments)]
    fn layers(
        &self,
        s: &mut RunState,
        kv: &mut KvCache,
        pool: &rayon::ThreadPool,
        simd: Simd,
        mut probe: Option<&mut AttentionProbe>,
        n: usize,
        pos0: usize,
    ) -> Result<()> {
        let c = self.config();
        let w = self.weights();
        let file = self.gguf();
        let (d, q_dim, k_dim, v_dim) = (c.n_embd, c.q_dim(), c.k_dim(), c.v_dim());
        let (hd, hdv) = (c.head_dim, c.head_dim_v);
        let attn_dim = c.n_head * hdv;
        let half = c.rope_dims / 2;
        let matmul = |m: &Matrix, x: &[f32], out: &mut [f32], scratch: &mut Vec<u8>| {
            quant::matmul(pool, &m.view(file), x, n, out, scratch, simd)
        };
        for (il, lw) in w.layers.iter().enumerate() {
            // 3. Attention sub-layer. Normalize the residual stream.
            rms_norm_rows(&s.x[..n * d], &lw.attn_norm, c.rms_eps, &mut s.xb[..n * d]);
            let xb = &s.xb[..n * d];
            trace!("attn_norm", il, xb);

            // 3a. Project to queries, keys and values (qwen2 adds biases).
            matmul(&lw.wq, xb, &mut s.q[..n * q_dim], &mut s.scratch)?;
            matmul(&lw.wk, xb, &mut s.k[..n * k_dim], &mut s.scratch)?;
            matmul(&lw.wv, xb, &mut s.v[..n * v_dim], &mut s.scratch)?;
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

            // 3b. gemma3: RMS-normalize each query and key head.
            if let (Some(q_norm), Some(k_norm)) = (&lw.q_norm, &lw.k_norm) {
                rms_norm_rows_in_place(&mut s.q[..n * q_dim], &q_norm[..hd], c.rms_eps);
                rms_norm_rows_in_place(&mut s.k[..n * k_dim], &k_norm[..hd], c.rms_eps);
            }

            // 3c. Rotate queries and keys by their positions (RoPE).
            let kind = usize::from(c.layer_is_swa[il]);
            for t in 0..n {
                let cos = &s.rope_cos[kind][t * half..(t + 1) * half];
                let sin = &s.rope_sin[kind][t * half..(t + 1) * half];
                rope_heads(
                    &mut s.q[t * q_dim..(t + 1) * q_dim],
                    hd,
                    cos,
                    sin,
                    c.rope_style,
                );
                rope_heads(
                    &mut s.k[t * k_dim..(t + 1) * k_dim],
                    hd,
                    cos,
                    sin,
                    c.rope_style,
                );
            }

            trace!("Qcur_rope", il, &s.q[..n * q_dim]);
            // gemma3: the queries carry the attention scale.
            let score_scale = if c.scale_queries {
                s.q[..n * q_dim].iter_mut().for_each(|v| *v *= c.attn_scale);
                1.0
            } else {
                c.attn_scale
            };
            trace!("Kcur_rope", il, &s.k[..n * k_dim]);

            // 3d. Append the new keys and values to the cache.
            for t in 0..n {
                kv.store(
                    il,
                    pos0 + t,
                    &s.k[t * k_dim..(t + 1) * k_dim],
                    &s.v[t * v_dim..(t + 1) * v_dim],
                );
            }

            // 3e. Each query head attends over its KV head's cached positions up to its own
            //     (causal), or over the last `sliding_window` of them on sliding-window layers.
            let group = c.n_head / c.n_head_kv;
            let window = if c.layer_is_swa[il] {
                c.sliding_window
            } else {
                usize::MAX
            };
            let (q, kv_ref) = (&s.q, &*kv);
            let precision = match kv.kv_type() {
                KvType::F16 => AttentionPrecision::F16,
                KvType::F32 => AttentionPrecision::F32,
            };
            let kernel = if n == 1 {
                AttentionKernel::Single
            } else {
                AttentionKernel::Batched
            };
            fn head_attention(
                source: HeadSource<'_>,
                pos: usize,
                window: usize,
                scale: f32,
                precision: AttentionPrecision,
                kernel: AttentionKernel,
            ) -> HeadAttention<'_> {
                HeadAttention {
                    source,
                    first: (pos + 1).saturating_sub(window),
                    last: pos,
                    scale,
                    precision,
                    kernel,
                }
            }
            // One token: a task per KV head, reading the cache directly and widening each key
            // and value once for all its query heads. With several threads and few KV heads,
            // the query heads of each are split into parts, so that every thread has about two
            // tasks.
            if n == 1 {
                let threads = pool.current_num_threads();
                let parts = if threads > 1 {
                    (2 * threads).div_ceil(c.n_head_kv).clamp(1, group)
                } else {
                    1
                };
                let per_task = group.div_ceil(parts);
                pool.install(|| {
                    s.attn[..attn_dim]
                        .par_chunks_mut(group * hdv)
                        .enumerate()
                        .flat_map(|(g, out)| {
                            out.par_chunks_mut(per_task * hdv)
                                .enumerate()
                                .map(move |(part, out)| (g, g * group + part * per_task, out))
                        })
                        .for_each(|(kv_head, h0, out)| {
                            let heads = out.len() / hdv;
                            GroupAttention {
                                kv: kv_ref,
                                layer: il,
                                kv_head,
                                first: (pos0 + 1).saturating_sub(window),
                                last: pos0,
                                scale: score_scale,
                                precision,
                            }
                            .attend(&q[h0 * hd..][..heads * hd], out);
                        });
                });
            }
            // Tasks of up to ATTENTION_TOKENS tokens: each widens the keys and values of every
            // KV head once, for all its tokens and query heads.
            if n > 1 {
                pool.install(|| {
                    s.attn[..n * attn_dim]
                        .par_chunks_mut(ATTENTION_TOKENS * attn_dim)
                        .enumerate()
                        .for_each(|(chunk, out)| {
                            let t0 = chunk * ATTENTION_TOKENS;
                            let tokens = t0..t0 + out.len() / attn_dim;
                            let base = (pos0 + t0 + 1).saturating_sub(window);
                            let last = pos0 + tokens.end - 1;
                            WIDENED.with_borrow_mut(|(keys, values)| {
                                for g in 0..c.n_head_kv {
                                    let source =
                                        widen_head_batched(kv_ref, il, g, base, last, keys, values);
                                    // All queries of this KV head at once: the AVX-512 kernel
                                    // shares its loads of keys and values among them.
                                    let heads = g * group * hdv..(g + 1) * group * hdv;
                                    let mut queries: Vec<Query<'_, '_>> = tokens
                                        .clone()
                                        .zip(out.chunks_exact_mut(attn_dim))
                                        .flat_map(|(t, out)| {
                                            (g * group..(g + 1) * group)
                                                .zip(out[heads.clone()].chunks_exact_mut(hdv))
                                                .map(move |(h, out)| Query {
                                                    head: head_attention(
                                                        source,
                                                        pos0 + t,
                                                        window,
                                                        score_scale,
                                                        precision,
                                                        kernel,
                                                    ),
                                                    q: &q[t * q_dim + h * hd..][..hd],
                                                    out,
                                                })
                                        })
                                        .collect();
                                    attend_batch(&mut queries);
                                }
                            });
                        });
                });
            }

            trace!("kqv_out", il, &s.attn[..n * attn_dim]);

            // (explain) Record this layer's attention weights if asked to.
            if let Some(probe) = probe.as_deref_mut().filter(|p| p.layer == il) {
                let heads: Vec<usize> = match probe.head {
                    Some(h) => vec![h.min(c.n_head - 1)],
                    None => (0..c.n_head).collect(),
                };
                for t in 0..n {
                    let pos = pos0 + t;
                    let first = (pos + 1).saturating_sub(window);
                    let mut row = vec![0.0f32; pos + 1];
                    let mut weights = vec![0.0f32; pos + 1 - first];
                    for &h in &heads {
                        let q_head = &q[t * q_dim + h * hd..t * q_dim + (h + 1) * hd];
                        let source = HeadSource::Cache {
                            kv: kv_ref,
                            layer: il,
                            kv_head: h / group,
                        };
                        head_attention(source, pos, window, score_scale, precision, kernel)
                            .weights(q_head, &mut weights);
                        for (r, w) in row[first..].iter_mut().zip(&weights) {
                            *r += w / heads.len() as f32;
                        }
                    }
                    probe.rows.push(row);
                }
            }

            // 3f. Project the heads back to the residual width (gemma3 normalizes the result),
            //     and add to the residual stream.
            matmul(
                &lw.wo,
                &s.attn[..n * attn_dim],
                &mut s.proj[..n * d],
                &mut s.scratch,
            )?;
            trace!("attn_out", il, &s.proj[..n * d]);
            add_residual(
                &mut s.x[..n * d],
                &mut s.proj[..n * d],
                lw.post_attn_norm.as_deref(),
                c,
            );

            // 4. Feed-forward sub-layer: down(act(gate(x)) · up(x)) on the normalized stream.
            rms_norm_rows(&s.x[..n * d], &lw.ffn_norm, c.rms_eps, &mut s.xb[..n * d]);
            let xb = &s.xb[..n * d];
            trace!("ffn_inp", il, &s.x[..n * d]);
            trace!("ffn_norm", il, xb);
            let ff = n * c.n_ff;
            matmul(&lw.w_gate, xb, &mut s.gate[..ff], &mut s.scratch)?;
            matmul(&lw.w_up, xb, &mut s.up[..ff], &mut s.scratch)?;
            trace!("ffn_gate", il, &s.gate[..ff]);
            trace!("ffn_up", il, &s.up[..ff]);
            let n_ff = c.n_ff;
            let activation = c.ffn_activation;
            pool.install(|| {
                s.gate[..ff]
                    .par_chunks_mut(n_ff)
                    .zip(s.up[..ff].par_chunks(n_ff))
                    .for_each(|(g, u)| match activation {
                        FfnActivation::Silu => swiglu(g, u),
                        FfnActivation::GeluTanh => geglu(g, u),
                    });
            });
            trace!("ffn_swiglu", il, &s.gate[..ff]);
            matmul(
                &lw.w_down,
                &s.gate[..ff],
                &mut s.proj[..n * d],
                &mut s.scratch,
            )?;
            trace!("ffn_out", il, &s.proj[..n * d]);
            add_residual(
                &mut s.x[..n * d],
                &mut s.proj[..n * d],
                lw.post_ffn_norm.as_deref(),
                c,
            );
            trace!("l_out", il, &s.x[..n * d]);
        }

        Ok(())
    }
}

/// `x += norm(proj)` (gemma3's post-norms) or `x += proj`, token by token.
fn add_residual(x: &mut [f32], proj: &mut [f32], post_norm: Option<&[f32]>, c: &Config) {
    if let Some(weight) = post_norm {
        rms_norm_rows_in_place(proj, weight, c.rms_eps);
    }
    x.iter_mut().zip(proj.iter()).for_each(|(a, b)| *a += b);
}
