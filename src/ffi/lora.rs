//! LoRA adapters: loaded once per model, attached to sessions with a scale each.

use std::ffi::c_char;
use std::sync::Arc;

use super::boundary::{free_handle, guard_ptr, guard_status, llm_status, FfiError};
use super::convert::{as_mut, as_ref, c_str, slice};
use super::model::llm_model;
use super::session::llm_session;
use crate::lora::{ActiveLora, LoraAdapter};

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
        let handles = unsafe { slice(loras, n, "loras") }?;
        // SAFETY: as above.
        let scales = unsafe { slice(scales, n, "scales") }?;
        let active = handles
            .iter()
            .zip(scales)
            .enumerate()
            .map(|(i, (&handle, &scale))| {
                // SAFETY: as above: each of the `n` pointers is NULL or a live adapter.
                let lora = unsafe { handle.as_ref() }
                    .ok_or_else(|| FfiError::null(&format!("loras[{i}]")))?;
                Ok(ActiveLora {
                    adapter: lora.adapter.clone(),
                    scale,
                })
            })
            .collect::<Result<Vec<_>, FfiError>>()?;
        s.session.set_loras(active)?;
        s.forget_eval_logits();
        Ok(())
    })
}
