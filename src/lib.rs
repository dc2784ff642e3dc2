//! llmrt: a runtime for quantized large language models stored as GGUF files.
//!
//! Data flows `gguf` (file format, borrowed tensor views) → `quant` (block formats and kernels)
//! → `model` (config, weights, forward pass) → `session` (KV cache) → `generate` (sampling loop),
//! with `tokenizer` and `chat` turning text into ids and back. `ffi` is the C ABI over all of it.
//! The library never prints; errors are [`Error`].

// Printing is the interfaces' business (the CLI, the bindings); the library reports through its
// return values only.
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

pub mod batcher;
pub mod chat;
pub mod constrain;
pub mod embed;
pub mod engine;
pub mod error;
pub mod explain;
pub mod ffi;
pub mod generate;
pub mod gguf;
pub mod lora;
pub mod model;
pub mod quant;
pub mod sample;
pub mod session;
pub mod tokenizer;
pub mod tools;

pub use batcher::{Batcher, BatcherStatus};
pub use engine::{Engine, EngineParams, SeqId};
pub use error::{Error, Result};
pub use model::{Model, ModelParams};
pub use session::{Session, SessionParams};
