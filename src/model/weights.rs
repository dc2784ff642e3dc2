//! Weights bound by their GGUF names. A weight is a location in the mapped file (no copy); the
//! model slices the map when a kernel needs the bytes.

use super::config::{Arch, Config, FfnActivation, Norm, QkNorm};
use crate::gguf::{GgufFile, TensorInfo};
use std::sync::Arc;

use crate::quant::repack::PackedCopy;
use crate::quant::{GgmlType, QMatrix};
use crate::{Error, Result};

/// A matrix of `rows` rows of `cols` elements stored in the model file.
#[derive(Debug, Clone)]
pub struct Matrix {
    pub name: String,
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    /// Where the bytes are in the file.
    pub info: TensorInfo,
    /// A copy of the weights repacked for the AVX-512 kernels, on CPUs that have them
    /// ([`Weights::repack`]).
    pub packed: Option<Arc<PackedCopy>>,
}

impl Matrix {
    /// The kernel view of this matrix over the file's bytes.
    pub fn view<'a>(&'a self, file: &'a GgufFile) -> QMatrix<'a> {
        QMatrix {
            ty: self.ty,
            rows: self.rows,
            cols: self.cols,
            data: file.tensor_data(&self.info),
            packed: self.packed.as_deref(),
        }
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.info.size as usize / self.rows
    }
}

/// One transformer block's weights.
#[derive(Debug, Clone)]
pub struct LayerWeights {
    /// Norm of the attention block's input (every family but olmo2), and its bias (LayerNorm).
    pub attn_norm: Option<Vec<f32>>,
    pub attn_norm_b: Option<Vec<f32>>,
    pub wq: Matrix,
    pub wk: Matrix,
    pub wv: Matrix,
    pub wo: Matrix,
    /// Q/K/V biases (qwen2).
    pub bq: Option<Vec<f32>>,
    pub bk: Option<Vec<f32>>,
    pub bv: Option<Vec<f32>>,
    /// RMSNorm weights of queries and keys: one head's width (qwen3, gemma3) or all heads'
    /// (olmo2).
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    /// Norm of the attention output before the residual add (gemma2/3, olmo2).
    pub post_attn_norm: Option<Vec<f32>>,
    /// Norm of the FFN block's input (every family but olmo2), and its bias (LayerNorm).
    pub ffn_norm: Option<Vec<f32>>,
    pub ffn_norm_b: Option<Vec<f32>>,
    /// Biases of the attention output and of the FFN projections, where the file has them
    /// (starcoder2; llama.cpp reads them for llama too).
    pub bo: Option<Vec<f32>>,
    pub b_gate: Option<Vec<f32>>,
    pub b_up: Option<Vec<f32>>,
    pub b_down: Option<Vec<f32>>,
    pub ffn: FeedForward,
    /// Norm of the FFN output before the residual add (gemma2/3, olmo2).
    pub post_ffn_norm: Option<Vec<f32>>,
}

/// A layer's feed-forward network.
#[derive(Debug, Clone)]
pub enum FeedForward {
    /// `down(act(gate(x)) · up(x))`.
    Dense {
        gate: Matrix,
        up: Matrix,
        down: Matrix,
    },
    /// `down(GELU(up(x)))` (starcoder2).
    Ungated { up: Matrix, down: Matrix },
    /// A mixture of experts: the router's `n_expert` × `n_embd` matrix and every expert's gate,
    /// up and down matrices stacked (expert `e`'s rows follow expert `e − 1`'s).
    Experts {
        router: Matrix,
        gate: Matrix,
        up: Matrix,
        down: Matrix,
    },
}

impl Matrix {
    /// The kernel view of expert `e`'s rows of a stacked expert matrix of `n_expert` experts.
    pub fn expert_view<'a>(&'a self, file: &'a GgufFile, e: usize, n_expert: usize) -> QMatrix<'a> {
        let rows = self.rows / n_expert;
        let bytes = rows * self.row_bytes();
        QMatrix {
            ty: self.ty,
            rows,
            cols: self.cols,
            data: &file.tensor_data(&self.info)[e * bytes..(e + 1) * bytes],
            packed: None,
        }
    }
}

/// All weights of a model.
#[derive(Debug, Clone)]
pub struct Weights {
    pub token_embd: Matrix,
    pub layers: Vec<LayerWeights>,
    pub output_norm: Vec<f32>,
    /// The output norm's bias (LayerNorm).
    pub output_norm_b: Option<Vec<f32>>,
    /// The output projection: `output.weight`, or the token embedding when tied.
    pub output: Matrix,
    /// Per-dimension RoPE frequency divisors (`rope_freqs.weight`, Llama 3.1 style), if present.
    pub rope_freqs: Option<Vec<f32>>,
}

struct Binder<'a> {
    file: &'a GgufFile,
}

impl Binder<'_> {
    fn info(&self, name: &str) -> Result<&TensorInfo> {
        self.file.tensor(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
        })
    }

    fn check_supported(info: &TensorInfo) -> Result<()> {
        if info.ty.is_supported() {
            Ok(())
        } else {
            Err(Error::UnsupportedTensorType {
                tensor: info.name.clone(),
                ty: info.ty.name().to_string(),
            })
        }
    }

    /// A 2-D weight of `rows` × `cols` (GGUF dims `[cols, rows]`).
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix> {
        let info = self.info(name)?;
        let expected = vec![cols as u64, rows as u64];
        if info.dims != expected {
            return Err(Error::TensorShape {
                name: name.to_string(),
                expected,
                found: info.dims.clone(),
            });
        }
        Self::check_supported(info)?;
        Ok(Matrix {
            name: name.to_string(),
            ty: info.ty,
            rows,
            cols,
            info: info.clone(),
            packed: None,
        })
    }

    /// Consecutive row blocks of one stored matrix, `rows[i]` rows each, all `cols` wide: a
    /// fused projection (`attn_qkv`, phi3's gate-and-up `ffn_up`) as the matrices it joins. Each
    /// output element is one row's dot product, so the parts compute what the whole does.
    fn split_rows<const N: usize>(
        &self,
        name: &str,
        rows: [usize; N],
        cols: usize,
    ) -> Result<[Matrix; N]> {
        let total: usize = rows.iter().sum();
        let whole = self.matrix(name, total, cols)?;
        let row_bytes = whole.row_bytes() as u64;
        let mut first = 0u64;
        Ok(rows.map(|n| {
            let mut part = whole.clone();
            part.rows = n;
            part.info.offset += first * row_bytes;
            part.info.size = n as u64 * row_bytes;
            part.info.dims = vec![cols as u64, n as u64];
            first += n as u64;
            part
        }))
    }

    /// A stack of `n` matrices of `rows` × `cols` (GGUF dims `[cols, rows, n]`), as one matrix
    /// of `n · rows` rows.
    fn stacked(&self, name: &str, n: usize, rows: usize, cols: usize) -> Result<Matrix> {
        let info = self.info(name)?;
        let expected = vec![cols as u64, rows as u64, n as u64];
        if info.dims != expected {
            return Err(Error::TensorShape {
                name: name.to_string(),
                expected,
                found: info.dims.clone(),
            });
        }
        Self::check_supported(info)?;
        Ok(Matrix {
            name: name.to_string(),
            ty: info.ty,
            rows: n * rows,
            cols,
            info: info.clone(),
            packed: None,
        })
    }

    /// A 1-D weight of `n` elements, converted to f32 (norms and biases are small).
    fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>> {
        let info = self.info(name)?;
        if info.dims != [n as u64] {
            return Err(Error::TensorShape {
                name: name.to_string(),
                expected: vec![n as u64],
                found: info.dims.clone(),
            });
        }
        Self::check_supported(info)?;
        let mut out = vec![0.0; n];
        crate::quant::dequantize_row(
            info.ty,
            self.file.tensor_data(info),
            &mut out,
            crate::quant::Simd::Scalar,
        )
        .map_err(|_| Error::UnsupportedTensorType {
            tensor: name.to_string(),
            ty: info.ty.name().to_string(),
        })?;
        Ok(out)
    }

    fn optional_vector(&self, name: &str, n: usize) -> Result<Option<Vec<f32>>> {
        if self.file.tensor(name).is_some() {
            self.vector(name, n).map(Some)
        } else {
            Ok(None)
        }
    }
}

impl Weights {
    /// Binds every weight the architecture needs, checking names, shapes and types.
    pub fn bind(file: &GgufFile, c: &Config) -> Result<Weights> {
        let b = Binder { file };
        let token_embd = b.matrix("token_embd.weight", c.n_vocab, c.n_embd)?;
        let output = if file.tensor("output.weight").is_some() {
            b.matrix("output.weight", c.n_vocab, c.n_embd)?
        } else {
            token_embd.clone()
        };
        let post_norms = matches!(c.arch, Arch::Gemma2 | Arch::Gemma3 | Arch::Olmo2);
        let qwen = c.arch == Arch::Qwen2;
        let (q_norm_len, k_norm_len) = match c.qk_norm {
            QkNorm::None | QkNorm::PerHead => (c.head_dim, c.head_dim),
            QkNorm::Whole => (c.q_dim(), c.k_dim()),
        };
        let qk_norm = c.qk_norm != QkNorm::None;
        let layer_norm = c.norm == Norm::Layer;
        // Biases of the FFN's hidden projections are as wide as the dense FFN (none in MoE).
        let ffn_width = c.n_ff;
        let mut layers = Vec::with_capacity(c.n_layer);
        for il in 0..c.n_layer {
            let n = |s: &str| format!("blk.{il}.{s}");
            let required_if = |cond: bool, s: &str, len: usize| -> Result<Option<Vec<f32>>> {
                if cond {
                    b.vector(&n(s), len).map(Some)
                } else {
                    b.optional_vector(&n(s), len)
                }
            };
            // Queries, keys and values in one matrix (`attn_qkv`) where the file fuses them.
            let [wq, wk, wv] = if file.tensor(&n("attn_qkv.weight")).is_some() {
                b.split_rows(
                    &n("attn_qkv.weight"),
                    [c.q_dim(), c.k_dim(), c.v_dim()],
                    c.n_embd,
                )?
            } else {
                [
                    b.matrix(&n("attn_q.weight"), c.q_dim(), c.n_embd)?,
                    b.matrix(&n("attn_k.weight"), c.k_dim(), c.n_embd)?,
                    b.matrix(&n("attn_v.weight"), c.v_dim(), c.n_embd)?,
                ]
            };
            // LongRoPE's per-layer factors (Phi-3 128k, Phi-3.5) are not implemented.
            for factors in ["rope_factors_long.weight", "rope_factors_short.weight"] {
                if file.tensor(&n(factors)).is_some() || file.tensor(factors).is_some() {
                    return Err(Error::InvalidArgument(format!(
                        "unsupported model: the {factors} tensor (LongRoPE) is not implemented"
                    )));
                }
            }
            layers.push(LayerWeights {
                attn_norm: required_if(c.pre_norm, "attn_norm.weight", c.n_embd)?,
                attn_norm_b: required_if(layer_norm, "attn_norm.bias", c.n_embd)?,
                wq,
                wk,
                wv,
                wo: b.matrix(&n("attn_output.weight"), c.n_embd, c.n_head * c.head_dim_v)?,
                bq: required_if(qwen, "attn_q.bias", c.q_dim())?,
                bk: required_if(qwen, "attn_k.bias", c.k_dim())?,
                bv: required_if(qwen, "attn_v.bias", c.v_dim())?,
                q_norm: required_if(qk_norm, "attn_q_norm.weight", q_norm_len)?,
                k_norm: required_if(qk_norm, "attn_k_norm.weight", k_norm_len)?,
                post_attn_norm: required_if(post_norms, "post_attention_norm.weight", c.n_embd)?,
                ffn_norm: required_if(c.pre_norm, "ffn_norm.weight", c.n_embd)?,
                ffn_norm_b: required_if(layer_norm, "ffn_norm.bias", c.n_embd)?,
                bo: b.optional_vector(&n("attn_output.bias"), c.n_embd)?,
                b_gate: b.optional_vector(&n("ffn_gate.bias"), ffn_width)?,
                b_up: b.optional_vector(&n("ffn_up.bias"), ffn_width)?,
                b_down: b.optional_vector(&n("ffn_down.bias"), c.n_embd)?,
                ffn: match c.experts {
                    // phi3 stores the gate and up projections as one matrix, gate rows first.
                    None if c.arch == Arch::Phi3 => {
                        let [gate, up] =
                            b.split_rows(&n("ffn_up.weight"), [c.n_ff, c.n_ff], c.n_embd)?;
                        let down = b.matrix(&n("ffn_down.weight"), c.n_embd, c.n_ff)?;
                        FeedForward::Dense { gate, up, down }
                    }
                    None if c.ffn_activation == FfnActivation::UngatedGelu => {
                        FeedForward::Ungated {
                            up: b.matrix(&n("ffn_up.weight"), c.n_ff, c.n_embd)?,
                            down: b.matrix(&n("ffn_down.weight"), c.n_embd, c.n_ff)?,
                        }
                    }
                    None => FeedForward::Dense {
                        gate: b.matrix(&n("ffn_gate.weight"), c.n_ff, c.n_embd)?,
                        up: b.matrix(&n("ffn_up.weight"), c.n_ff, c.n_embd)?,
                        down: b.matrix(&n("ffn_down.weight"), c.n_embd, c.n_ff)?,
                    },
                    Some(e) => FeedForward::Experts {
                        router: b.matrix(&n("ffn_gate_inp.weight"), e.n_expert, c.n_embd)?,
                        gate: b.stacked(
                            &n("ffn_gate_exps.weight"),
                            e.n_expert,
                            e.n_ff,
                            c.n_embd,
                        )?,
                        up: b.stacked(&n("ffn_up_exps.weight"), e.n_expert, e.n_ff, c.n_embd)?,
                        down: b.stacked(
                            &n("ffn_down_exps.weight"),
                            e.n_expert,
                            c.n_embd,
                            e.n_ff,
                        )?,
                    },
                },
                post_ffn_norm: required_if(post_norms, "post_ffw_norm.weight", c.n_embd)?,
            });
        }
        Ok(Weights {
            token_embd,
            layers,
            output_norm: b.vector("output_norm.weight", c.n_embd)?,
            output_norm_b: b.optional_vector("output_norm.bias", c.n_embd)?,
            output,
            rope_freqs: b.optional_vector("rope_freqs.weight", c.rope_dims / 2)?,
        })
    }
}

impl Weights {
    /// Repacks the Q4_0, Q4_K and Q6_K matrices into row groups, and the layers' Q5_0/Q8_0
    /// matrices into interleaved groups, when this CPU has the kernels for them (llama.cpp
    /// repacks Q4_0 and Q4_K too). The copies serve prompts and generation alike, so the file's
    /// pages of each packed matrix are dropped from memory; sessions forced to another SIMD level
    /// read (and fault back) the file's bytes. Up to `n_threads` threads share the work.
    pub fn repack(&mut self, file: &GgufFile, n_threads: usize) {
        // The packed kernels are AVX-512 (with VNNI) ones: exactly that level's features.
        if !crate::quant::Simd::Avx512.is_supported() {
            return;
        }
        let tied = self.output.info.offset == self.token_embd.info.offset;
        let mut todo: Vec<&mut Matrix> = self
            .layers
            .iter_mut()
            .flat_map(|l| {
                // Experts are multiplied one token at a time from the file's bytes.
                let dense = match &mut l.ffn {
                    FeedForward::Dense { gate, up, down } => vec![gate, up, down],
                    FeedForward::Ungated { up, down } => vec![up, down],
                    FeedForward::Experts { .. } => Vec::new(),
                };
                [&mut l.wq, &mut l.wk, &mut l.wv, &mut l.wo]
                    .into_iter()
                    .chain(dense)
            })
            // Not the vocabulary matrices in K-quants, Q5_0 or Q8_0 (below): a prompt multiplies
            // the output by one column (its last token), and a copy of a large vocabulary would
            // add to the load time and resident memory for little.
            .filter(|m| {
                use GgmlType::*;
                matches!(m.ty, Q4_0 | Q4_K | Q6_K | Q5_0 | Q8_0)
            })
            .chain(
                std::iter::once(&mut self.token_embd)
                    .chain((!tied).then_some(&mut self.output))
                    .filter(|m| m.ty == GgmlType::Q4_0),
            )
            .collect();
        // Largest first, so that no thread is left with a big matrix at the end.
        todo.sort_by_key(|m| std::cmp::Reverse(m.info.size));
        let next = std::sync::atomic::AtomicUsize::new(0);
        let slots: Vec<std::sync::Mutex<Option<&mut Matrix>>> = todo
            .into_iter()
            .map(|m| std::sync::Mutex::new(Some(m)))
            .collect();
        let work = || loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(slot) = slots.get(i) else { break };
            // A poisoned lock only means another packing thread panicked; the slot is intact.
            let mut guard = slot.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(m) = guard.take() {
                let data = file.tensor_data(&m.info);
                m.packed = PackedCopy::pack(m.ty, data, m.rows, m.cols).map(Arc::new);
                // The AVX-512 sessions read only the copy (a session forced to another level
                // faults the file's pages back in): do not count both in the resident set.
                if m.packed.is_some() {
                    file.release(&m.info);
                }
            }
        };
        std::thread::scope(|scope| {
            for _ in 1..n_threads.max(1) {
                scope.spawn(work);
            }
            work();
        });
        if tied {
            self.output.packed = self.token_embd.packed.clone();
        }
    }
}
