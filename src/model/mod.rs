//! A loaded model: its file, config, weights and tokenizer. Immutable after load and
//! `Send + Sync`, so many sessions (and threads) share one.

pub mod attention;
pub mod config;
pub(crate) mod forward;
pub mod kv_cache;
pub mod ops;
#[cfg(feature = "trace")]
pub mod trace;
pub mod weights;

use std::path::Path;
use std::sync::Arc;

pub use config::{Arch, Config, SUPPORTED_ARCHITECTURES};
pub use forward::RunState;
pub use kv_cache::{KvCache, KvType};

use crate::gguf::GgufFile;
use crate::tokenizer::Tokenizer;
use crate::Result;
use weights::Weights;

/// Options for loading a model.
#[derive(Debug, Clone, Default)]
pub struct ModelParams {
    /// Threads for sessions that do not choose their own (0 = the number of CPU cores).
    pub n_threads: usize,
}

/// A model loaded from a GGUF file. Tensor data stays in the memory map.
pub struct Model {
    file: GgufFile,
    config: Config,
    weights: Weights,
    tokenizer: Arc<Tokenizer>,
    /// The vocabulary for constrained generation, built on first use.
    vocabulary: std::sync::OnceLock<std::result::Result<Arc<crate::constrain::Vocabulary>, String>>,
    /// [`Model::fingerprint_hex`], computed on first use.
    fingerprint: std::sync::OnceLock<String>,
    /// RoPE inverse frequencies for global-attention layers.
    rope_global: ops::RopeFrequencies,
    /// RoPE inverse frequencies for sliding-window layers.
    rope_local: ops::RopeFrequencies,
    params: ModelParams,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.config)
            .finish()
    }
}

impl Model {
    /// Maps, validates and binds the model at `path`.
    pub fn load(path: impl AsRef<Path>, params: &ModelParams) -> Result<Model> {
        Self::from_gguf(GgufFile::open(path)?, params)
    }

    /// Binds a model from an already opened GGUF file.
    pub fn from_gguf(file: GgufFile, params: &ModelParams) -> Result<Model> {
        let config = Config::from_gguf(&file)?;
        let mut weights = Weights::bind(&file, &config)?;
        let n_threads = match params.n_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        weights.repack(&file, n_threads);
        // After the repack rather than beside it: on two threads they slowed each other down
        // (memory and page-table contention) about as much as the overlap saved.
        let tokenizer = Tokenizer::from_gguf(&file)?;
        let factors = weights.rope_freqs.as_deref();
        let frequencies =
            |r: config::Rope| ops::RopeFrequencies::new(&r, config.rope_dims, factors);
        let rope_global = frequencies(config.rope_global);
        let rope_local = frequencies(config.rope_local);
        Ok(Model {
            file,
            config,
            weights,
            tokenizer: Arc::new(tokenizer),
            vocabulary: std::sync::OnceLock::new(),
            fingerprint: std::sync::OnceLock::new(),
            rope_global,
            rope_local,
            params: params.clone(),
        })
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The GGUF file (metadata and tensors).
    pub fn gguf(&self) -> &GgufFile {
        &self.file
    }

    /// The tokenizer built from the file's metadata.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The vocabulary constrained generation works on, built on first use (about a second for
    /// a large vocabulary) and kept.
    pub fn constraint_vocabulary(&self) -> Result<Arc<crate::constrain::Vocabulary>> {
        self.vocabulary
            .get_or_init(|| {
                crate::constrain::Vocabulary::new(self.tokenizer.clone())
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(crate::Error::InvalidArgument)
    }

    /// What tells this model's file from another's ([`GgufFile::fingerprint_hex`]); a saved
    /// session records it.
    pub fn fingerprint_hex(&self) -> String {
        self.fingerprint
            .get_or_init(|| self.file.fingerprint_hex())
            .clone()
    }

    /// The parameters the model was loaded with.
    pub fn params(&self) -> &ModelParams {
        &self.params
    }

    /// Number of weights (elements of every tensor).
    pub fn n_params(&self) -> u64 {
        self.file.tensors().iter().map(|t| t.n_elements()).sum()
    }

    pub(crate) fn weights(&self) -> &Weights {
        &self.weights
    }

    pub(crate) fn rope_frequencies(&self, layer: usize) -> &ops::RopeFrequencies {
        if self.config.layer_is_swa[layer] {
            &self.rope_local
        } else {
            &self.rope_global
        }
    }
}
