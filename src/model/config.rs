//! The model's hyper-parameters, read from GGUF metadata.

use crate::gguf::GgufFile;
use crate::{Error, Result};

/// The transformer families llmrt implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Llama 2/3, Mistral, TinyLlama, SmolLM2: RMSNorm, RoPE in "normal" (adjacent-pair) mode,
    /// grouped-query attention, SwiGLU FFN.
    Llama,
    /// Qwen2 / Qwen2.5: llama plus biases on Q/K/V, RoPE in NEOX (split-half) mode.
    Qwen2,
    /// Qwen3: qwen2 without the Q/K/V biases, with an RMS norm of every query and key head
    /// before RoPE.
    Qwen3,
    /// Gemma 3: scaled embeddings, QK-norm, sandwich norms, GELU-tanh FFN, interleaved
    /// sliding-window and global attention.
    Gemma3,
}

/// `general.architecture` values llmrt accepts.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["llama", "qwen2", "qwen3", "gemma3"];

impl Arch {
    /// The family for a `general.architecture` value.
    pub fn from_name(name: &str) -> Result<Arch> {
        match name {
            "llama" => Ok(Arch::Llama),
            "qwen2" => Ok(Arch::Qwen2),
            "qwen3" => Ok(Arch::Qwen3),
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
}

/// Rotary embedding parameters for one layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rope {
    /// θ base (`rope.freq_base`).
    pub freq_base: f32,
    /// Linear position scaling (1 / `rope.scaling.factor` for linear scaling; 1 otherwise).
    pub freq_scale: f32,
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
    /// RMSNorm ε.
    pub rms_eps: f32,
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
    /// Multiplier applied to token embeddings (√d_model for gemma, 1 otherwise).
    pub embed_scale: f32,
    pub ffn_activation: FfnActivation,
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
        let rms_eps = file.get_f32(&key("attention.layer_norm_rms_epsilon"))?;
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
        let freq_scale = match file.opt_str(&key("rope.scaling.type"))? {
            Some("linear") => 1.0 / file.opt_f32(&key("rope.scaling.factor"))?.unwrap_or(1.0),
            Some("none") | None => 1.0,
            Some(other) => {
                return Err(Error::InvalidArgument(format!(
                    "unsupported RoPE scaling `{other}`"
                )))
            }
        };
        let rope_global = Rope {
            freq_base,
            freq_scale,
        };

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
        };
        match arch {
            Arch::Llama => {}
            Arch::Qwen2 | Arch::Qwen3 => config.rope_style = RopeStyle::Neox,
            Arch::Gemma3 => {
                config.rope_style = RopeStyle::Neox;
                config.ffn_activation = FfnActivation::GeluTanh;
                config.embed_scale = (n_embd as f32).sqrt();
                config.scale_queries = true;
                // Five sliding-window layers, then one global layer, repeating (llama.cpp's
                // swa pattern 6); the local layers use RoPE base 10 000 without scaling.
                const SWA_PERIOD: usize = 6;
                config.sliding_window = get("attention.sliding_window")?;
                config.layer_is_swa = (0..n_layer)
                    .map(|il| il % SWA_PERIOD < SWA_PERIOD - 1)
                    .collect();
                config.rope_local = Rope {
                    freq_base: 10_000.0,
                    freq_scale: 1.0,
                };
                // Gemma 3 270M/1B/4B/12B scale queries by 1/√head_dim; 27B by 1/√(d_model/heads).
                let is_27b = n_layer == 62;
                if is_27b {
                    config.attn_scale = 1.0 / ((n_embd / n_head) as f32).sqrt();
                }
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

/// Largest head dimension the attention kernel's stack buffers hold.
pub const MAX_HEAD_DIM: usize = 512;
