//! LoRA adapters from GGUF files, applied as llama.cpp applies them.
//!
//! An adapter (`general.type = adapter`, `adapter.type = lora`, written by llama.cpp's
//! `convert_lora_to_gguf.py`) holds, for some weight matrices `W` of its base model, two
//! low-rank factors `W.lora_a` (GGUF dims `[n_in, r]`: `r` rows of `n_in`) and `W.lora_b`
//! (`[r, n_out]`). Every product with `W` then becomes
//!
//! ```text
//! y = W·x + s·(B·(A·x)),   s = scale · alpha / r   (scale alone when alpha is 0)
//! ```
//!
//! with `scale` the user's for the adapter and `alpha` its `adapter.lora.alpha`; several
//! adapters add their terms in the order they were attached, each `B·(A·x)` computed in the
//! arithmetic of the factors' element type and scaled before it is added, as llama.cpp's graph
//! does. The token embedding is the exception: its `lora_a` is stored transposed (`[r, n_vocab]`,
//! one row of `r` values per token), and token `t`'s embedding gets `s·(B·a[t])`. When the
//! output projection is the embedding itself (tied), the embedding's adapter changes the input
//! only, as PEFT trains it; llama.cpp aborts on such an adapter.
//!
//! An adapter is read-only once loaded and shared by every session that attaches it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::gguf::{GgufFile, TensorInfo};
use crate::model::Model;
use crate::quant::{GgmlType, QMatrix};
use crate::{Error, Result};

/// The base tensor whose LoRA is gathered by token rather than multiplied.
pub const TOKEN_EMBEDDING: &str = "token_embd.weight";

/// The two factors of one adapted matrix.
#[derive(Debug)]
struct Factors {
    a: TensorInfo,
    b: TensorInfo,
    rank: usize,
}

/// A LoRA adapter loaded from a GGUF file, checked against the model it adapts.
#[derive(Debug)]
pub struct LoraAdapter {
    file: GgufFile,
    path: String,
    alpha: f32,
    /// Base tensor name → its factors.
    factors: HashMap<String, Factors>,
    /// The model's fingerprint: the adapter applies to that model only.
    base: String,
    /// The adapter file's own ([`GgufFile::fingerprint_hex`]).
    fingerprint: String,
}

fn invalid(path: &str, why: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("LoRA adapter {path}: {why}"))
}

impl LoraAdapter {
    /// Loads the adapter at `path` for `model`: its metadata says it is a LoRA adapter of the
    /// model's architecture, and every factor pair matches a tensor of the model in shape.
    pub fn open(path: impl AsRef<Path>, model: &Model) -> Result<LoraAdapter> {
        let path_str = path.as_ref().display().to_string();
        let file = GgufFile::open(path.as_ref())?;
        LoraAdapter::from_file(file, path_str, model)
    }

    fn from_file(file: GgufFile, path: String, model: &Model) -> Result<LoraAdapter> {
        let bad = |why: String| invalid(&path, why);
        match file.opt_str("general.type")? {
            Some("adapter") => {}
            other => {
                return Err(bad(format!(
                    "general.type is {other:?}, not \"adapter\": not an adapter file"
                )))
            }
        }
        match file.opt_str("adapter.type")? {
            Some("lora") => {}
            other => return Err(bad(format!("adapter.type is {other:?}, not \"lora\""))),
        }
        let arch = file.opt_str("general.architecture")?.unwrap_or("");
        let base_arch = model.gguf().get_str("general.architecture")?;
        if arch != base_arch {
            return Err(bad(format!(
                "it adapts a `{arch}` model, and this model is `{base_arch}`"
            )));
        }
        let alpha = file.opt_f32("adapter.lora.alpha")?.unwrap_or(0.0);
        if !alpha.is_finite() {
            return Err(bad(format!("adapter.lora.alpha is {alpha}")));
        }
        let mut factors = HashMap::new();
        for t in file.tensors() {
            // As llama.cpp: norm weights, which some converters keep, are not factors.
            if t.name.ends_with("_norm.weight") {
                continue;
            }
            let (base_name, is_a) = match (
                t.name.strip_suffix(".lora_a"),
                t.name.strip_suffix(".lora_b"),
            ) {
                (Some(base), _) => (base, true),
                (_, Some(base)) => (base, false),
                _ => return Err(bad(format!("tensor `{}` is not a LoRA factor", t.name))),
            };
            if !is_a {
                if file.tensor(&format!("{base_name}.lora_a")).is_none() {
                    return Err(bad(format!("`{}` has no `{base_name}.lora_a`", t.name)));
                }
                continue;
            }
            let b = file
                .tensor(&format!("{base_name}.lora_b"))
                .ok_or_else(|| bad(format!("`{}` has no `{base_name}.lora_b`", t.name)))?;
            let base = model
                .gguf()
                .tensor(base_name)
                .ok_or_else(|| bad(format!("the model has no tensor `{base_name}` to adapt")))?;
            let pair = Factors::checked(base, t, b).map_err(bad)?;
            factors.insert(base_name.to_string(), pair);
        }
        if factors.is_empty() {
            return Err(bad("it holds no LoRA factors".into()));
        }
        Ok(LoraAdapter {
            fingerprint: file.fingerprint_hex(),
            file,
            path,
            alpha,
            factors,
            base: model.fingerprint_hex(),
        })
    }

    /// The file the adapter was loaded from.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `adapter.lora.alpha` (0 when absent).
    pub fn alpha(&self) -> f32 {
        self.alpha
    }

    /// How many of the base's matrices it adapts.
    pub fn n_adapted(&self) -> usize {
        self.factors.len()
    }

    /// What tells this adapter's file from another's (a saved session records it).
    pub fn fingerprint_hex(&self) -> &str {
        &self.fingerprint
    }

    /// Whether it was loaded for `model`.
    pub fn adapts(&self, model: &Model) -> bool {
        self.base == model.fingerprint_hex()
    }
}

impl Factors {
    /// The factors of `base` after checking that their shapes fit it and each other.
    fn checked(
        base: &TensorInfo,
        a: &TensorInfo,
        b: &TensorInfo,
    ) -> std::result::Result<Factors, String> {
        let dims = |t: &TensorInfo| -> std::result::Result<(u64, u64), String> {
            match t.dims.as_slice() {
                [x, y] => Ok((*x, *y)),
                other => Err(format!(
                    "`{}` has {} dimensions, not 2",
                    t.name,
                    other.len()
                )),
            }
        };
        let (base_in, base_out) = dims(base)?;
        let (a0, a1) = dims(a)?;
        let (b0, b1) = dims(b)?;
        let token_embedding = base.name == TOKEN_EMBEDDING;
        // Regular: A [n_in, r], B [r, n_out]. The embedding: A [r, n_vocab], B [r, n_embd].
        let (rank, fits) = if token_embedding {
            (a0, a1 == base_out && b0 == a0 && b1 == base_in)
        } else {
            (a1, a0 == base_in && b0 == a1 && b1 == base_out)
        };
        if !fits || rank == 0 {
            return Err(format!(
                "the factors of `{}` have shapes {:?} and {:?}, which do not fit its {:?}",
                base.name, a.dims, b.dims, base.dims
            ));
        }
        for t in [a, b] {
            if !matches!(
                t.ty,
                GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 | GgmlType::Q8_0
            ) {
                return Err(format!(
                    "`{}` has type {}, which LoRA factors may not",
                    t.name, t.ty
                ));
            }
        }
        Ok(Factors {
            a: a.clone(),
            b: b.clone(),
            rank: rank as usize,
        })
    }
}

/// An adapter attached with its scale.
#[derive(Debug, Clone)]
pub struct ActiveLora {
    pub adapter: Arc<LoraAdapter>,
    pub scale: f32,
}

/// The factors of one adapted matrix as the kernels take them, with the scale of their term.
pub(crate) struct LoraTerm<'a> {
    /// `r × n_in` (the embedding's: `n_vocab × r`).
    pub a: QMatrix<'a>,
    /// `n_out × r`.
    pub b: QMatrix<'a>,
    pub scale: f32,
}

impl ActiveLora {
    /// The term this adapter adds to the product with the base tensor `name`, if it adapts it
    /// (at scale 0 it adds nothing and is left out, as llama.cpp leaves it out).
    pub(crate) fn term(&self, name: &str) -> Option<LoraTerm<'_>> {
        if self.scale == 0.0 {
            return None;
        }
        let f = self.adapter.factors.get(name)?;
        let file = &self.adapter.file;
        let matrix = |t: &TensorInfo| QMatrix {
            ty: t.ty,
            rows: t.dims[1] as usize,
            cols: t.dims[0] as usize,
            data: file.tensor_data(t),
            packed: None,
        };
        let alpha = self.adapter.alpha;
        let scale = if alpha == 0.0 {
            self.scale
        } else {
            self.scale * alpha / f.rank as f32
        };
        Some(LoraTerm {
            a: matrix(&f.a),
            b: matrix(&f.b),
            scale,
        })
    }
}

/// Whether two adapter lists are the same adapters at the same scales, in the same order.
pub fn same_loras(a: &[ActiveLora], b: &[ActiveLora]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            Arc::ptr_eq(&x.adapter, &y.adapter) && x.scale.to_bits() == y.scale.to_bits()
        })
}

/// Checks adapters about to be attached to a session or sequence of `model`: each loaded for
/// that model, each scale finite.
pub fn check_attachable(loras: &[ActiveLora], model: &Model) -> Result<()> {
    if let Some(other) = loras.iter().find(|l| !l.adapter.adapts(model)) {
        return Err(Error::InvalidArgument(format!(
            "LoRA adapter {} was loaded for another model",
            other.adapter.path()
        )));
    }
    if let Some(bad) = loras.iter().find(|l| !l.scale.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "LoRA adapter {} has scale {}",
            bad.adapter.path(),
            bad.scale
        )));
    }
    Ok(())
}
