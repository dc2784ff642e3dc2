//! The model's hyper-parameters, read from GGUF metadata.

use crate::gguf::{GgufFile, Value};
use crate::{Error, Result};

/// The transformer families llmrt implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Llama 2/3, Mistral, TinyLlama, SmolLM2: RMSNorm, RoPE in "normal" (adjacent-pair) mode,
    /// grouped-query attention, SwiGLU FFN.
    Llama,
    /// Qwen2 / Qwen2.5: llama plus biases on Q/K/V, RoPE in NEOX (split-half) mode.
    Qwen2,
    /// Mistral Small 3.x / Ministral 3: llama with YaRN and a position-dependent temperature of
    /// the queries.
    Mistral3,
    /// StarCoder2: LayerNorm with biases, biased projections, a plain (ungated) GELU FFN.
    Starcoder2,
    /// Phi-3 / Phi-4-mini: fused QKV and gate-and-up projections, NEOX RoPE (possibly over part
    /// of each head), queries scaled before attention.
    Phi3,
    /// Qwen3 MoE: qwen3 whose FFN is a mixture of experts.
    Qwen3Moe,
    /// Qwen3: qwen2 without the Q/K/V biases, with an RMS norm of every query and key head
    /// before RoPE.
    Qwen3,
    /// Gemma 2: scaled embeddings, sandwich norms, GELU-tanh FFN, sliding-window attention on
    /// alternate layers, soft-capped attention scores and logits.
    Gemma2,
    /// OLMo 2: no pre-norms, an RMS norm over all queries and over all keys, post-norms.
    Olmo2,
    /// Granite 3: llama with multipliers of the embeddings, the residual branches, the
    /// attention scores and the logits.
    Granite,
    /// SmolLM3: llama without RoPE on every fourth layer.
    Smollm3,
    /// Gemma 3: scaled embeddings, QK-norm, sandwich norms, GELU-tanh FFN, interleaved
    /// sliding-window and global attention.
    Gemma3,
}

/// `general.architecture` values llmrt accepts.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &[
    "llama", "qwen2", "qwen3", "qwen3moe", "phi3", "gemma2", "gemma3", "olmo2", "granite",
    "smollm3",
];

impl Arch {
    /// The family for a `general.architecture` value.
    pub fn from_name(name: &str) -> Result<Arch> {
        match name {
            "llama" => Ok(Arch::Llama),
            "qwen2" => Ok(Arch::Qwen2),
            "qwen3" => Ok(Arch::Qwen3),
            "qwen3moe" => Ok(Arch::Qwen3Moe),
            "phi3" => Ok(Arch::Phi3),
            "starcoder2" => Ok(Arch::Starcoder2),
            "mistral3" => Ok(Arch::Mistral3),
            "gemma2" => Ok(Arch::Gemma2),
            "olmo2" => Ok(Arch::Olmo2),
            "granite" => Ok(Arch::Granite),
            "smollm3" => Ok(Arch::Smollm3),
            "gemma3" => Ok(Arch::Gemma3),
            other => Err(Error::UnsupportedArchitecture {
                arch: other.to_string(),
                supported: SUPPORTED_ARCHITECTURES.join(", "),
            }),
        }
    }

    /// The `general.architecture` name.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Qwen3Moe => "qwen3moe",
            Arch::Phi3 => "phi3",
            Arch::Starcoder2 => "starcoder2",
            Arch::Mistral3 => "mistral3",
            Arch::Gemma2 => "gemma2",
            Arch::Olmo2 => "olmo2",
            Arch::Granite => "granite",
            Arch::Smollm3 => "smollm3",
            Arch::Gemma3 => "gemma3",
        }
    }
}

/// How RoPE pairs up the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Rotate adjacent pairs (x[2i], x[2i+1]) — llama.cpp's `LLAMA_ROPE_TYPE_NORM`.
    Normal,
    /// Rotate (x[i], x[i + d/2]) — llama.cpp's `LLAMA_ROPE_TYPE_NEOX` (GPT-NeoX, Qwen, Gemma).
    Neox,
}

/// The activation inside the gated FFN: `down(act(gate(x)) * up(x))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FfnActivation {
    /// SiLU (SwiGLU), llama and qwen2.
    Silu,
    /// GELU with the tanh approximation (GeGLU), gemma.
    GeluTanh,
    /// No gate: `down(GELU(up(x)))`, starcoder2.
    UngatedGelu,
}

/// The normalization of the residual stream before each sub-layer and before the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Norm {
    /// RMSNorm (`x / rms(x) · w`).
    Rms,
    /// LayerNorm with a bias (`(x − mean) / std · w + b`), starcoder2.
    Layer,
}

/// Which RMS norm the queries and keys get after their projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkNorm {
    None,
    /// Each head alone, one weight of `head_dim` shared by the heads (qwen3, gemma3).
    PerHead,
    /// All heads of a token together, a weight per element (olmo2).
    Whole,
}

/// A mixture-of-experts FFN: a router picks, per token, `n_used` of `n_expert` gated FFNs of
/// width `n_ff`, whose outputs are summed weighted by the router's softmax probabilities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Experts {
    pub n_expert: usize,
    pub n_used: usize,
    /// Hidden width of each expert.
    pub n_ff: usize,
    /// Whether the chosen experts' probabilities are divided by their sum.
    pub normalize_weights: bool,
    /// Multiplier of the weights (after the normalization); 1 for none.
    pub weights_scale: f32,
}

/// Rotary embedding parameters for one layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rope {
    /// θ base (`rope.freq_base`).
    pub freq_base: f32,
    /// Position scaling: 1 / `rope.scaling.factor` (linear and YaRN scaling; 1 for none).
    pub freq_scale: f32,
    /// YaRN's blend of interpolated and extrapolated frequencies, when the file asks for it.
    pub yarn: Option<Yarn>,
    /// The factor of every cos and sin (llama.cpp's `attn_factor`: YaRN's magnitude correction
    /// and `rope.scaling.attn_factor`; 1 without either).
    pub mscale: f32,
}

/// YaRN's parameters: the context the model was trained with before scaling and the
/// rotation counts that bound the blended dimensions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Yarn {
    pub n_ctx_orig: usize,
    pub beta_fast: f32,
    pub beta_slow: f32,
}

/// Everything the forward pass needs to know about a model's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub arch: Arch,
    /// Tokens in the vocabulary (rows of the output projection).
    pub n_vocab: usize,
    /// Context length the model was trained with.
    pub n_ctx_train: usize,
    /// Width of the residual stream (d_model).
    pub n_embd: usize,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (grouped-query attention: `n_head / n_head_kv` queries share one).
    pub n_head_kv: usize,
    /// Dimension of a query/key head.
    pub head_dim: usize,
    /// Dimension of a value head.
    pub head_dim_v: usize,
    /// Hidden width of the FFN.
    pub n_ff: usize,
    /// The ε of every norm (RMSNorm's or LayerNorm's, as `norm` says).
    pub rms_eps: f32,
    pub norm: Norm,
    /// Dimensions of each head that RoPE rotates (the rest pass through).
    pub rope_dims: usize,
    pub rope_style: RopeStyle,
    /// RoPE for global-attention layers.
    pub rope_global: Rope,
    /// RoPE for sliding-window layers (gemma3 uses its own base there).
    pub rope_local: Rope,
    /// Sliding-window size in tokens for the layers where `layer_is_swa` is true.
    pub sliding_window: usize,
    /// Per layer: whether it attends only to the last `sliding_window` positions.
    pub layer_is_swa: Vec<bool>,
    /// Multiplier of q·k before the softmax.
    pub attn_scale: f32,
    /// Whether the queries are multiplied by `attn_scale` before they meet the keys (gemma3, as
    /// llama.cpp builds it) instead of the scores after. The two differ in rounding where the
    /// f16-rounded query would be subnormal.
    pub scale_queries: bool,
    /// Multiplier applied to token embeddings (√d_model for gemma, granite's
    /// `embedding_scale`, 1 otherwise).
    pub embed_scale: f32,
    pub ffn_activation: FfnActivation,
    /// Whether each sub-layer normalizes its input (all but olmo2, which normalizes only the
    /// sub-layers' outputs).
    pub pre_norm: bool,
    pub qk_norm: QkNorm,
    /// Per layer: whether queries and keys are rotated (smollm3 leaves every fourth alone).
    pub layer_has_rope: Vec<bool>,
    /// Soft-capping of the attention scores, `cap · tanh(score / cap)` (gemma2); 0 for none.
    pub attn_softcap: f32,
    /// Soft-capping of the logits (gemma2); 0 for none.
    pub final_softcap: f32,
    /// Multiplier of each sub-layer's output before it joins the residual stream (granite);
    /// 1 for none.
    pub residual_scale: f32,
    /// Multiplier of the logits (granite's 1 / `logit_scale`); 1 for none.
    pub logit_scale: f32,
    /// The mixture of experts that replaces the dense FFN in every layer, if any.
    pub experts: Option<Experts>,
    /// A factor of the rotated queries that grows with the position (mistral3), if any.
    pub query_temperature: Option<QueryTemperature>,
}

/// Llama 4's attention temperature as mistral3 uses it: queries at position `p` are multiplied
/// by `1 + scale · ln(⌊p / floor⌋ + 1)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueryTemperature {
    pub scale: f32,
    pub floor: usize,
}

impl QueryTemperature {
    /// The factor at position `pos`, in llama.cpp's mix of f32 and f64.
    pub fn at(&self, pos: usize) -> f32 {
        let steps = (pos as f32 / self.floor as f32).floor();
        ((f64::from(steps) + 1.0).ln() * f64::from(self.scale) + 1.0) as f32
    }
}

/// The cos/sin factor llama.cpp's context derives for YaRN (1 without it): `get_mscale` of the
/// scaling factor, divided by the same correction the rotation multiplies back in, as its C++
/// evaluates it (compiled with contraction: `0.1 · m · ln s + 1` is one fused multiply-add).
fn yarn_mscale(yarn: bool, freq_scale: f32, log_mul: f32) -> f32 {
    if !yarn {
        return 1.0;
    }
    let factor = 1.0 / freq_scale;
    let get_mscale = |scale: f32, m: f32| {
        if scale <= 1.0 {
            1.0
        } else {
            (0.1 * m).mul_add(scale.ln(), 1.0)
        }
    };
    let m = if log_mul != 0.0 {
        get_mscale(factor, 1.0) / get_mscale(factor, log_mul)
    } else {
        get_mscale(factor, 1.0)
    };
    m * (1.0 / 0.1f32.mul_add(factor.ln(), 1.0))
}

impl Config {
    /// Reads the config of the model in `file`.
    pub fn from_gguf(file: &GgufFile) -> Result<Config> {
        let arch_name = file.get_str("general.architecture")?;
        let arch = Arch::from_name(arch_name)?;
        let key = |k: &str| format!("{arch_name}.{k}");
        let get = |k: &str| file.get_u32(&key(k)).map(|v| v as usize);
        let opt = |k: &str| file.opt_u32(&key(k)).map(|v| v.map(|v| v as usize));

        let n_embd = get("embedding_length")?;
        let n_layer = get("block_count")?;
        let n_head = get("attention.head_count")?;
        let n_head_kv = opt("attention.head_count_kv")?.unwrap_or(n_head);
        let n_ff = get("feed_forward_length")?;
        let n_ctx_train = get("context_length")?;
        let (norm, rms_eps) = if arch == Arch::Starcoder2 {
            (
                Norm::Layer,
                file.get_f32(&key("attention.layer_norm_epsilon"))?,
            )
        } else {
            (
                Norm::Rms,
                file.get_f32(&key("attention.layer_norm_rms_epsilon"))?,
            )
        };
        if n_head == 0 || n_head_kv == 0 || n_head % n_head_kv != 0 || n_layer == 0 {
            return Err(Error::InvalidArgument(format!(
                "inconsistent attention config: {n_head} heads, {n_head_kv} KV heads, {n_layer} layers"
            )));
        }
        let head_dim = opt("attention.key_length")?.unwrap_or(n_embd / n_head);
        let head_dim_v = opt("attention.value_length")?.unwrap_or(head_dim);
        let rope_dims = opt("rope.dimension_count")?.unwrap_or(head_dim);
        let n_vocab = match opt("vocab_size")? {
            Some(n) => n,
            None => file.array_len("tokenizer.ggml.tokens")?,
        };
        let freq_base = file.opt_f32(&key("rope.freq_base"))?.unwrap_or(10_000.0);
        // llama.cpp's default scaling is linear; a factor of 0 (or none) means no scaling.
        let scaling = file.opt_str(&key("rope.scaling.type"))?;
        let factor = file
            .opt_f32(&key("rope.scaling.factor"))?
            .filter(|&f| f != 0.0);
        let freq_scale = match scaling {
            Some("none") => 1.0,
            Some("linear") | Some("yarn") | None => factor.map_or(1.0, |f| 1.0 / f),
            Some(other) => return Err(unsupported(&key("rope.scaling.type"), other)),
        };
        let yarn = (scaling == Some("yarn")).then_some(Yarn {
            n_ctx_orig: opt("rope.scaling.original_context_length")?.unwrap_or(n_ctx_train),
            beta_fast: 32.0,
            beta_slow: 1.0,
        });
        let rope_attn_factor = file
            .opt_f32(&key("rope.scaling.attn_factor"))?
            .unwrap_or(1.0);
        // mistral3 reads YaRN's rotation bounds and a log multiplier of the magnitude; the
        // other families take the defaults.
        let (yarn, log_mul) = match (yarn, arch) {
            (Some(mut y), Arch::Mistral3) => {
                let f = |k: &str| file.opt_f32(&key(k));
                y.beta_fast = f("rope.scaling.yarn_beta_fast")?.unwrap_or(y.beta_fast);
                y.beta_slow = f("rope.scaling.yarn_beta_slow")?.unwrap_or(y.beta_slow);
                (
                    Some(y),
                    f("rope.scaling.yarn_log_multiplier")?.unwrap_or(0.0),
                )
            }
            (y, _) => (y, 0.0),
        };
        let rope_global = Rope {
            freq_base,
            freq_scale,
            yarn,
            mscale: yarn_mscale(yarn.is_some(), freq_scale, log_mul) * rope_attn_factor,
        };
        let experts = match opt("expert_count")?.filter(|&n| n > 0) {
            None => None,
            Some(n_expert) => {
                let n_used = get("expert_used_count")?;
                if n_used == 0 || n_used > n_expert {
                    return Err(Error::InvalidArgument(format!(
                        "inconsistent experts: {n_used} of {n_expert} used"
                    )));
                }
                // Softmax gating (1) is what llama and qwen3moe build; other functions and
                // shared or grouped experts are other families' and not implemented.
                if let Some(f) = opt("expert_gating_func")?.filter(|&f| f != 1) {
                    return Err(unsupported(&key("expert_gating_func"), &f.to_string()));
                }
                for field in ["expert_shared_count", "expert_group_count"] {
                    if let Some(v) =
                        opt(field)?.filter(|&v| v > 1 || (field == "expert_shared_count" && v > 0))
                    {
                        return Err(unsupported(&key(field), &v.to_string()));
                    }
                }
                Some(Experts {
                    n_expert,
                    n_used,
                    n_ff: opt("expert_feed_forward_length")?.unwrap_or(n_ff),
                    normalize_weights: true,
                    weights_scale: 1.0,
                })
            }
        };
        if experts.is_some() && !matches!(arch, Arch::Llama | Arch::Qwen3Moe) {
            return Err(unsupported(
                &key("expert_count"),
                "experts in this architecture",
            ));
        }

        let mut config = Config {
            arch,
            n_vocab,
            n_ctx_train,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            head_dim_v,
            n_ff,
            rms_eps,
            norm,
            rope_dims,
            rope_style: RopeStyle::Normal,
            rope_global,
            rope_local: rope_global,
            sliding_window: 0,
            layer_is_swa: vec![false; n_layer],
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
            scale_queries: false,
            embed_scale: 1.0,
            ffn_activation: FfnActivation::Silu,
            pre_norm: true,
            qk_norm: QkNorm::None,
            layer_has_rope: vec![true; n_layer],
            attn_softcap: 0.0,
            final_softcap: 0.0,
            residual_scale: 1.0,
            logit_scale: 1.0,
            experts,
            query_temperature: None,
        };
        // The sliding-window layers: every layer but each `period`-th (the last of each period)
        // unless the file lists them (`attention.sliding_window_pattern` as an array of bools).
        let sliding = |config: &mut Config, period: usize| -> Result<()> {
            config.sliding_window = get("attention.sliding_window")?;
            let pattern_key = key("attention.sliding_window_pattern");
            config.layer_is_swa = match file.get(&pattern_key) {
                Some(Value::Array(_, flags)) => {
                    let flags: Option<Vec<bool>> = flags
                        .iter()
                        .map(|v| match v {
                            Value::Bool(b) => Some(*b),
                            _ => None,
                        })
                        .collect();
                    match flags {
                        Some(f) if f.len() == n_layer => f,
                        _ => {
                            return Err(unsupported(
                                &pattern_key,
                                "an array that is not a bool per layer",
                            ))
                        }
                    }
                }
                _ => {
                    let period = opt("attention.sliding_window_pattern")?.unwrap_or(period);
                    (0..n_layer)
                        .map(|il| period == 0 || il % period < period - 1)
                        .collect()
                }
            };
            Ok(())
        };
        let base_swa = file.opt_f32(&key("rope.freq_base_swa"))?;
        match arch {
            Arch::Llama => {}
            Arch::Qwen2 => config.rope_style = RopeStyle::Neox,
            Arch::Qwen3 | Arch::Qwen3Moe => {
                config.rope_style = RopeStyle::Neox;
                config.qk_norm = QkNorm::PerHead;
                if arch == Arch::Qwen3Moe && config.experts.is_none() {
                    return Err(Error::InvalidArgument(
                        "qwen3moe without experts (expert_count)".to_string(),
                    ));
                }
            }
            Arch::Mistral3 => {
                if let Some(scale) = file
                    .opt_f32(&key("attention.temperature_scale"))?
                    .filter(|&s| s != 0.0)
                {
                    let floor = opt("rope.scaling.original_context_length")?.unwrap_or(n_ctx_train);
                    if floor == 0 {
                        return Err(unsupported(
                            &key("rope.scaling.original_context_length"),
                            "0",
                        ));
                    }
                    config.query_temperature = Some(QueryTemperature { scale, floor });
                }
            }
            Arch::Starcoder2 => {
                config.rope_style = RopeStyle::Neox;
                config.ffn_activation = FfnActivation::UngatedGelu;
            }
            Arch::Phi3 => {
                // llama.cpp leaves phi3's sliding window off (its conversions mislabel it).
                config.rope_style = RopeStyle::Neox;
                config.scale_queries = true;
            }
            Arch::Gemma2 => {
                config.rope_style = RopeStyle::Neox;
                config.ffn_activation = FfnActivation::GeluTanh;
                config.embed_scale = (n_embd as f32).sqrt();
                config.scale_queries = true;
                sliding(&mut config, 2)?;
                config.rope_local = Rope {
                    freq_base: base_swa.unwrap_or(freq_base),
                    ..rope_global
                };
                config.attn_softcap = file
                    .opt_f32(&key("attn_logit_softcapping"))?
                    .unwrap_or(50.0);
                config.final_softcap = file
                    .opt_f32(&key("final_logit_softcapping"))?
                    .unwrap_or(30.0);
                // Gemma 2 27B (46 layers) scales queries by 1/√(d_model/heads).
                if n_layer == 46 {
                    config.attn_scale = 1.0 / ((n_embd / n_head) as f32).sqrt();
                } else {
                    config.attn_scale = 1.0 / (head_dim as f32).sqrt();
                }
            }
            Arch::Gemma3 => {
                config.rope_style = RopeStyle::Neox;
                config.ffn_activation = FfnActivation::GeluTanh;
                config.embed_scale = (n_embd as f32).sqrt();
                config.scale_queries = true;
                config.qk_norm = QkNorm::PerHead;
                // Five sliding-window layers, then one global layer, repeating (llama.cpp's
                // swa pattern 6); the local layers use RoPE base 10 000 without scaling.
                sliding(&mut config, 6)?;
                config.rope_local = Rope {
                    freq_base: base_swa.unwrap_or(10_000.0),
                    freq_scale: 1.0,
                    ..rope_global
                };
                // Gemma 3 270M/1B/4B/12B scale queries by 1/√head_dim; 27B by 1/√(d_model/heads).
                let is_27b = n_layer == 62;
                config.attn_scale = if is_27b {
                    1.0 / ((n_embd / n_head) as f32).sqrt()
                } else {
                    1.0 / (head_dim as f32).sqrt()
                };
            }
            Arch::Olmo2 => {
                config.rope_style = RopeStyle::Neox;
                config.pre_norm = false;
                config.qk_norm = QkNorm::Whole;
                config.attn_scale = 1.0 / (head_dim as f32).sqrt();
                if opt("attention.sliding_window")?.is_some_and(|w| w > 0) {
                    // OLMo 3: sliding windows on three layers of four, unscaled RoPE there.
                    sliding(&mut config, 4)?;
                    config.rope_local = Rope {
                        freq_base: base_swa.unwrap_or(freq_base),
                        freq_scale: 1.0,
                        yarn: None,
                        mscale: 1.0,
                    };
                }
            }
            Arch::Granite => {
                config.embed_scale = file.opt_f32(&key("embedding_scale"))?.unwrap_or(1.0);
                config.residual_scale = file
                    .opt_f32(&key("residual_scale"))?
                    .filter(|&s| s != 0.0)
                    .unwrap_or(1.0);
                config.logit_scale = 1.0 / file.get_f32(&key("logit_scale"))?;
                if let Some(scale) = file.opt_f32(&key("attention.scale"))?.filter(|&s| s != 0.0) {
                    config.attn_scale = scale;
                }
            }
            Arch::Smollm3 => {
                const NO_ROPE_STEP: usize = 4;
                config.layer_has_rope = (0..n_layer)
                    .map(|il| (il + 1) % NO_ROPE_STEP != 0)
                    .collect();
            }
        }
        if rope_dims > head_dim || rope_dims % 2 != 0 || head_dim > MAX_HEAD_DIM {
            return Err(Error::InvalidArgument(format!(
                "unsupported head geometry: head_dim {head_dim}, rope dims {rope_dims} (head_dim ≤ {MAX_HEAD_DIM})"
            )));
        }
        Ok(config)
    }

    /// Width of all query heads together.
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// Width of all key heads together.
    pub fn k_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    /// Width of all value heads together.
    pub fn v_dim(&self) -> usize {
        self.n_head_kv * self.head_dim_v
    }

    /// RoPE parameters of layer `il`.
    pub fn rope(&self, il: usize) -> Rope {
        if self.layer_is_swa[il] {
            self.rope_local
        } else {
            self.rope_global
        }
    }
}

/// The error for a metadata field whose value llmrt does not implement: refused rather than run
/// wrongly.
fn unsupported(field: &str, value: &str) -> Error {
    Error::InvalidArgument(format!(
        "unsupported model: {field} = {value} is not implemented"
    ))
}

/// Largest head dimension the attention kernel's stack buffers hold.
pub const MAX_HEAD_DIM: usize = 512;
