//! The C ABI: a thin skin over [`Model`](crate::Model), [`Session`](crate::Session),
//! [`generate`](crate::generate), [`Engine`](crate::Engine) and [`Batcher`](crate::Batcher).
//! It converts pointers and strings, catches panics, maps [`Error`](crate::Error) to an
//! [`llm_status`] plus a thread-local message, and holds no logic of
//! its own. `include/llmrt.h` is generated from this module by cbindgen (`scripts/gen-header.sh`);
//! the doc comments here are the header's documentation, written for C readers.
//!
//! Conventions every function follows:
//! - Every exported function catches panics (`LLM_ERR_PANIC`), checks its pointers (`LLM_ERR_NULL`)
//!   and rejects text that is not UTF-8 (`LLM_ERR_INVALID_UTF8`); the message of the last failure
//!   on the calling thread is in `llm_last_error()`.
//! - Functions that fill a caller's buffer return an `int32_t`: the number of elements written
//!   (for strings: bytes without the terminating NUL); when the buffer is too small, the negative of
//!   the size needed (for strings: including the NUL) and nothing is written; `LLM_FAILED` on any
//!   other failure. Passing a NULL buffer with length 0 asks for the size.
//! - `*_free(NULL)` is a no-op.

// The C names (`llm_status`, `LLM_OK`, …) are the ABI; Rust naming rules do not apply to them.
#![allow(non_camel_case_types)]

mod boundary;
mod convert;
mod model;
mod session;
// After model and session: the header lists items in this order.
mod generate;
// After generate: many sequences reuse its parameters.
mod engine;
// After sessions and engines: adapters attach to them.
mod lora;
// Last in the header.
mod explain;

pub use boundary::{
    llm_last_error, llm_last_status, llm_status, llm_status_str, llm_system_info, llm_version,
    LLM_FAILED,
};
pub use engine::{
    llm_batcher, llm_batcher_chat, llm_batcher_free, llm_batcher_generate, llm_batcher_n_ctx,
    llm_batcher_new, llm_engine, llm_engine_add, llm_engine_default_params, llm_engine_feed,
    llm_engine_fork, llm_engine_free, llm_engine_has_work, llm_engine_logits, llm_engine_n_past,
    llm_engine_new, llm_engine_params, llm_engine_pool_stats, llm_engine_remove, llm_engine_step,
    llm_pool_stats, llm_sampler, llm_sampler_free, llm_sampler_new, llm_sampler_sample,
    llm_step_report,
};
pub use explain::{
    llm_explain, llm_explain_default_params, llm_explain_params, llm_explanation,
    llm_explanation_attention, llm_explanation_free, llm_explanation_html, llm_explanation_json,
    llm_explanation_n_tokens, llm_explanation_png,
};
pub use generate::{
    llm_chat, llm_chat_apply_template, llm_chat_message, llm_chat_request, llm_constraint_type,
    llm_generate, llm_generate_default_params, llm_generate_params, llm_generate_stats,
    llm_stop_reason, llm_token_callback,
};
pub use lora::{
    llm_engine_set_sequence_loras, llm_lora, llm_lora_free, llm_lora_load, llm_session_set_loras,
};
pub use model::{
    llm_detokenize, llm_load, llm_model, llm_model_default_params, llm_model_free, llm_model_info,
    llm_model_info_t, llm_model_meta, llm_model_meta_count, llm_model_meta_key, llm_model_params,
    llm_n_vocab, llm_token, llm_token_to_piece, llm_tokenize,
};
pub use session::{
    llm_eval, llm_get_logits, llm_kv_type, llm_session, llm_session_default_params,
    llm_session_free, llm_session_load, llm_session_n_ctx, llm_session_n_past, llm_session_new,
    llm_session_params, llm_session_reset, llm_session_save,
};
