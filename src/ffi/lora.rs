//! LoRA adapters: loaded once per model, attached to sessions with a scale each.

use std::ffi::c_char;
use std::sync::Arc;

use super::boundary::{free_handle, guard_ptr, guard_status, llm_status, FfiError};
use super::convert::{as_mut, as_ref, c_str, slice};
use super::engine::llm_engine;
use super::model::llm_model;
use super::session::llm_session;
use crate::lora::{ActiveLora, LoraAdapter};
use crate::SeqId;

/// A LoRA adapter loaded for one model (opaque). Immutable: any number of sessions of that model,
/// on any threads, may use it at once.
pub struct llm_lora {
    adapter: Arc<LoraAdapter>,
}

/// Loads the LoRA adapter at `path` (a GGUF file from llama.cpp's `convert_lora_to_gguf.py`)
/// for `model`, checking that it adapts the model's architecture and that every pair of factors
/// fits a tensor of the model.
///
/// Returns the adapter, or NULL on failure (`llm_last_status()`: LLM_ERR_NULL,
/// LLM_ERR_INVALID_UTF8, LLM_ERR_IO, LLM_ERR_INVALID_GGUF, LLM_ERR_INVALID_ARGUMENT for a file
/// that is not a LoRA adapter of this model; the message says why). Free it with
/// `llm_lora_free`; sessions using it keep it alive.
///
/// # Safety
/// `model` is NULL or a live model; `path` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn llm_lora_load(
    model: *const llm_model,
    path: *const c_char,
) -> *mut llm_lora {
    guard_ptr(|| {
        // SAFETY: forwarded from this function's contract.
        let shared = &unsafe { as_ref(model, "model") }?.shared;
        // SAFETY: as above.
        let path = unsafe { c_str(path, "path") }?;
        let adapter = LoraAdapter::open(path, &shared.model)?;
        Ok(Box::into_raw(Box::new(llm_lora {
            adapter: Arc::new(adapter),
        })))
    })
}

/// Frees an adapter handle. NULL is a no-op. Sessions it is attached to keep using it.
///
/// # Safety
/// `lora` is NULL or a pointer from `llm_lora_load` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn llm_lora_free(lora: *mut llm_lora) {
    // SAFETY: forwarded from this function's contract: the pointer is NULL or came from
    // Box::into_raw in llm_lora_load, and is freed only here.
    unsafe { free_handle(lora) };
}

/// Attaches `n` adapters to `session`, `loras[i]` at `scales[i]`, replacing those attached
/// before (`n` = 0 detaches all). Every product an adapter adapts then adds
/// `scale · alpha / rank · B·(A·x)` (`scale` alone when the adapter's alpha is 0), adapters in
/// the order given. A change empties the session's context (it was computed without them).
///
/// Returns LLM_OK; LLM_ERR_NULL; LLM_ERR_INVALID_ARGUMENT (an adapter loaded for another
/// model, a scale that is not finite).
///
/// # Safety
/// `session` is NULL or a live session not in use by another thread; `loras` and `scales` are
/// NULL (with `n` = 0) or point to `n` live adapters and `n` floats.
#[no_mangle]
pub unsafe extern "C" fn llm_session_set_loras(
    session: *mut llm_session,
    loras: *const *const llm_lora,
    scales: *const f32,
    n: usize,
) -> llm_status {
    guard_status(|| {
        // SAFETY: forwarded from this function's contract.
        let s = unsafe { as_mut(session, "session") }?;
        // SAFETY: as above.
        let active = unsafe { active_loras(loras, scales, n) }?;
        s.session.set_loras(active)?;
        s.forget_eval_logits();
        Ok(())
    })
}

/// Gives sequence `seq` of `engine` its own adapters (as `llm_session_set_loras` takes them)
/// instead of none; only before anything of the sequence is evaluated. Sequences with
/// different adapters still decode in one step: the base products are shared, each adapter's
/// term is computed for its own sequences' tokens, and prefixes are shared only between
/// sequences with the same adapters.
///
/// Returns LLM_OK; LLM_ERR_NULL; LLM_ERR_INVALID_ARGUMENT (an unknown sequence, one that has
/// evaluated tokens, an adapter loaded for another model).
///
/// # Safety
/// `engine` is NULL or a live engine not in use by another thread; `loras` and `scales` as in
/// `llm_session_set_loras`.
#[no_mangle]
pub unsafe extern "C" fn llm_engine_set_sequence_loras(
    engine: *mut llm_engine,
    seq: u64,
    loras: *const *const llm_lora,
    scales: *const f32,
    n: usize,
) -> llm_status {
    guard_status(|| {
        // SAFETY: forwarded from this function's contract.
        let e = unsafe { as_mut(engine, "engine") }?;
        // SAFETY: as above.
        let active = unsafe { active_loras(loras, scales, n) }?;
        Ok(e.engine.set_sequence_loras(SeqId(seq), active)?)
    })
}

/// The adapters `loras[i]` at `scales[i]`.
///
/// # Safety
/// `loras` and `scales` are NULL (with `n` = 0) or point to `n` adapters (each NULL or live)
/// and `n` floats.
unsafe fn active_loras(
    loras: *const *const llm_lora,
    scales: *const f32,
    n: usize,
) -> Result<Vec<ActiveLora>, FfiError> {
    // SAFETY: forwarded from this function's contract.
    let handles = unsafe { slice(loras, n, "loras") }?;
    // SAFETY: as above.
    let scales = unsafe { slice(scales, n, "scales") }?;
    handles
        .iter()
        .zip(scales)
        .enumerate()
        .map(|(i, (&handle, &scale))| {
            // SAFETY: as above: each of the `n` pointers is NULL or a live adapter.
            let lora =
                unsafe { handle.as_ref() }.ok_or_else(|| FfiError::null(&format!("loras[{i}]")))?;
            Ok(ActiveLora {
                adapter: lora.adapter.clone(),
                scale,
            })
        })
        .collect()
}
