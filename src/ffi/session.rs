//! Sessions: a KV cache and the tokens in it, for one conversation; evaluation and logits.

use std::ffi::c_char;
use std::sync::Arc;

use super::boundary::{free_handle, guard_count, guard_ptr, guard_status, llm_status, FfiError};
use super::convert::{as_mut, as_ref, c_str, slice};
use super::model::{llm_model, llm_token, SharedModel};
use crate::model::KvType;
use crate::{Session, SessionParams};

/// Element type of a session's KV cache.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum llm_kv_type {
    /// Half precision (the default, as llama.cpp): half the memory, tiny rounding.
    LLM_KV_F16 = 0,
    /// Full precision.
    LLM_KV_F32 = 1,
}

/// Options for `llm_session_new`. Get the defaults from `llm_session_default_params()`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct llm_session_params {
    /// Context window in tokens (prompt plus generated text).
    /// 0 = the model's trained context, capped at 4096.
    pub n_ctx: usize,
    /// Worker threads for this session's forward passes.
    /// 0 = `llm_model_params.n_threads`, and if that is 0 too, the number of CPU cores.
    pub n_threads: usize,
    /// Most prompt tokens evaluated per forward pass (bounds scratch memory). 0 = 512.
    pub n_batch: usize,
    /// KV cache element type, an `llm_kv_type` value: LLM_KV_F16 (0, default) or LLM_KV_F32 (1).
    /// Memory: 2 (F16) or 4 (F32) bytes × 2 × n_layer × n_head_kv × head_dim × n_ctx.
    pub kv_type: i32,
    /// Keep the logits of every position evaluated by the last `llm_eval`, so that
    /// `llm_get_logits(session, i)` works for every i (scoring, perplexity). Costs
    /// 4 × n_vocab bytes per evaluated token (SmolLM2: 192 KiB per token).
    /// false = keep only the last position's logits.
    pub logits_all: bool,
}

/// One conversation with a model: its KV cache, the tokens in it, and scratch buffers.
///
/// Thread safety: use a session from one thread at a time (different sessions, even of one
/// model, may run on different threads at once).
/// Lifetime: from `llm_session_new` until `llm_session_free`; it keeps its model alive.
pub struct llm_session {
    pub(crate) session: Session,
    pub(crate) model: Arc<SharedModel>,
    logits_all: bool,
    /// Logits of every position of the last `llm_eval` (`eval_n × n_vocab`) when `logits_all`.
    eval_logits: Vec<f32>,
    /// Tokens evaluated by the last `llm_eval`, 0 when anything else ran since.
    eval_n: usize,
}

impl llm_session {
    /// Forgets the logits kept from the last `llm_eval` (another operation changed the context).
    pub(crate) fn forget_eval_logits(&mut self) {
        self.eval_n = 0;
        self.eval_logits.clear();
    }
}

/// The KV element type an `llm_kv_type` value names.
pub(super) fn kv_type_of(value: i32) -> Result<KvType, FfiError> {
    match value {
        k if k == llm_kv_type::LLM_KV_F16 as i32 => Ok(KvType::F16),
        k if k == llm_kv_type::LLM_KV_F32 as i32 => Ok(KvType::F32),
        other => Err(FfiError::invalid(format!("unknown kv_type {other}"))),
    }
}

/// The default session options (every field 0/false = automatic; KV cache F16).
#[no_mangle]
pub extern "C" fn llm_session_default_params() -> llm_session_params {
    llm_session_params {
        n_ctx: 0,
        n_threads: 0,
        n_batch: 0,
        kv_type: llm_kv_type::LLM_KV_F16 as i32,
        logits_all: false,
    }
}

/// Creates a session on `model` with an empty context. `params` may be NULL for the defaults.
///
/// Returns the session, or NULL on failure (`llm_last_status()`: LLM_ERR_NULL,
/// LLM_ERR_INVALID_ARGUMENT for an unknown `kv_type` or threads that cannot start).
/// Free it with `llm_session_free`.
///
/// # Safety
/// `model` is NULL or a live model; `params` is NULL or points to an `llm_session_params`.
#[no_mangle]
pub unsafe extern "C" fn llm_session_new(
    model: *const llm_model,
    params: *const llm_session_params,
) -> *mut llm_session {
    guard_ptr(|| {
        // SAFETY: forwarded from this function's contract.
        let shared = &unsafe { as_ref(model, "model") }?.shared;
        // SAFETY: as above.
        let params = unsafe { params.as_ref() }
            .copied()
            .unwrap_or_else(|| llm_session_default_params());
        let kv_type = kv_type_of(params.kv_type)?;
        let session = Session::new(
            shared.model.clone(),
            &SessionParams {
                n_ctx: params.n_ctx,
                n_threads: params.n_threads,
                kv_type,
                n_batch: params.n_batch,
            },
        )?;
        Ok(Box::into_raw(Box::new(llm_session {
            session,
            model: shared.clone(),
            logits_all: params.logits_all,
            eval_logits: Vec::new(),
            eval_n: 0,
        })))
    })
}

/// Frees a session. NULL is a no-op.
///
/// # Safety
/// `session` is NULL or a pointer from `llm_session_new` not yet freed and not in use.
#[no_mangle]
pub unsafe extern "C" fn llm_session_free(session: *mut llm_session) {
    // SAFETY: forwarded from this function's contract: the pointer is NULL or came from
    // Box::into_raw in llm_session_new, and is freed only here.
    unsafe { free_handle(session) };
}

/// Empties the session's context (the next generation starts from scratch).
///
/// Returns LLM_OK or LLM_ERR_NULL.
///
/// # Safety
/// `session` is NULL or a live session not in use by another thread.
#[no_mangle]
pub unsafe extern "C" fn llm_session_reset(session: *mut llm_session) -> llm_status {
    guard_status(|| {
        // SAFETY: forwarded from this function's contract.
        let s = unsafe { as_mut(session, "session") }?;
        s.session.reset();
        s.forget_eval_logits();
        Ok(())
    })
}

/// Saves the session's state to `path` (NUL-terminated UTF-8): the tokens its context holds,
/// their keys and values, and the last token's logits, so that `llm_session_load` into a
/// session of the same model (in this process or another) continues exactly where this one
/// is. The file is written beside `path` and renamed, never left half-written.
///
/// Returns LLM_OK; LLM_ERR_NULL; LLM_ERR_INVALID_UTF8; LLM_ERR_IO (the message names the path).
///
/// # Safety
/// `session` is NULL or a live session not in use by another thread; `path` is NULL or
/// NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn llm_session_save(
    session: *const llm_session,
    path: *const c_char,
) -> llm_status {
    guard_status(|| {
        // SAFETY: forwarded from this function's contract.
        let s = unsafe { as_ref(session, "session") }?;
        // SAFETY: as above.
        let path = unsafe { c_str(path, "path") }?;
        Ok(s.session.save(path)?)
    })
}

/// Restores into `session` the state `llm_session_save` wrote to `path`. The session must be
/// of the same model (the file records the model's fingerprint), with the same KV cache type
/// and a context that holds the saved tokens. Afterwards a generation whose prompt begins with
/// the saved tokens reuses them; one whose prompt is exactly them starts from the saved logits.
///
/// Returns LLM_OK; LLM_ERR_NULL; LLM_ERR_INVALID_UTF8; LLM_ERR_IO; LLM_ERR_INVALID_SESSION_FILE
/// (damaged, truncated, another format version, another model or cache type, too many tokens
/// for the context). On any error the session is unchanged.
///
/// # Safety
/// `session` is NULL or a live session not in use by another thread; `path` is NULL or
/// NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn llm_session_load(
    session: *mut llm_session,
    path: *const c_char,
) -> llm_status {
    guard_status(|| {
        // SAFETY: forwarded from this function's contract.
        let s = unsafe { as_mut(session, "session") }?;
        // SAFETY: as above.
        let path = unsafe { c_str(path, "path") }?;
        s.session.load(path)?;
        s.forget_eval_logits();
        Ok(())
    })
}

/// The session's context window in tokens, or LLM_FAILED (LLM_ERR_NULL).
///
/// # Safety
/// `session` is NULL or a live session not being modified by another thread.
#[no_mangle]
pub unsafe extern "C" fn llm_session_n_ctx(session: *const llm_session) -> i32 {
    guard_count(|| {
        // SAFETY: forwarded from this function's contract.
        Ok(unsafe { as_ref(session, "session") }?.session.n_ctx())
    })
}

/// Tokens currently in the session's context, or LLM_FAILED (LLM_ERR_NULL).
///
/// # Safety
/// `session` is NULL or a live session not being modified by another thread.
#[no_mangle]
pub unsafe extern "C" fn llm_session_n_past(session: *const llm_session) -> i32 {
    guard_count(|| {
        // SAFETY: forwarded from this function's contract.
        Ok(unsafe { as_ref(session, "session") }?
            .session
            .tokens()
            .len())
    })
}

/// Appends `n` tokens to the session's context and runs the model over them (teacher forcing,
/// scoring). Afterwards `llm_get_logits` gives the logits: of every one of these positions when
/// the session was created with `logits_all`, else of the last.
///
/// Returns LLM_OK; LLM_ERR_NULL; LLM_ERR_INVALID_ARGUMENT (n is 0, or an id outside the
/// vocabulary); LLM_ERR_CONTEXT_FULL (the context would exceed n_ctx; nothing is evaluated).
///
/// # Safety
/// `session` is NULL or a live session not in use by another thread; `tokens` is NULL or has `n`
/// readable ids.
#[no_mangle]
pub unsafe extern "C" fn llm_eval(
    session: *mut llm_session,
    tokens: *const llm_token,
    n: usize,
) -> llm_status {
    guard_status(|| {
        // SAFETY: forwarded from this function's contract.
        let s = unsafe { as_mut(session, "session") }?;
        // SAFETY: as above.
        let tokens = unsafe { slice(tokens, n, "tokens") }?;
        if tokens.is_empty() {
            return Err(FfiError::invalid("no tokens to evaluate (n is 0)"));
        }
        let ids = tokens
            .iter()
            .map(|&t| s.model.check_token(t))
            .collect::<Result<Vec<u32>, _>>()?;
        s.forget_eval_logits();
        if s.logits_all {
            let n_vocab = s.model.model.config().n_vocab;
            let mut kept = Vec::new();
            kept.try_reserve_exact(ids.len() * n_vocab).map_err(|_| {
                FfiError::invalid(format!(
                    "cannot allocate logits for {} positions",
                    ids.len()
                ))
            })?;
            s.session
                .eval_all(&ids, &mut |_, logits| kept.extend_from_slice(logits))?;
            s.eval_logits = kept;
        } else {
            s.session.eval(&ids)?;
        }
        s.eval_n = ids.len();
        Ok(())
    })
}

/// The logits (`llm_n_vocab` floats, unnormalized) at position `i` of the last `llm_eval`:
/// 0 ≤ i < n for a session with `logits_all`, else only i = n - 1. i = -1 means the last token
/// evaluated by any call (`llm_eval` or `llm_generate`).
///
/// Returns a pointer owned by the session, valid until the next call that changes the session
/// (eval, generate, chat, reset, free); NULL on failure (LLM_ERR_NULL; LLM_ERR_INVALID_ARGUMENT
/// when nothing was evaluated, `i` is out of range, or position `i` was not kept).
///
/// # Safety
/// `session` is NULL or a live session not being modified by another thread.
#[no_mangle]
pub unsafe extern "C" fn llm_get_logits(session: *const llm_session, i: i32) -> *const f32 {
    guard_ptr(|| {
        // SAFETY: forwarded from this function's contract.
        let s = unsafe { as_ref(session, "session") }?;
        let last_evaluated = s.eval_n.checked_sub(1);
        let logits = match i {
            -1 if !s.session.tokens().is_empty() => s.session.logits(),
            -1 => return Err(FfiError::invalid("nothing has been evaluated yet")),
            _ => {
                let i = usize::try_from(i)
                    .ok()
                    .filter(|&i| i < s.eval_n)
                    .ok_or_else(|| {
                        FfiError::invalid(format!(
                            "position {i} is not in the last llm_eval (0..{})",
                            s.eval_n
                        ))
                    })?;
                let n_vocab = s.model.model.config().n_vocab;
                if s.logits_all {
                    &s.eval_logits[i * n_vocab..(i + 1) * n_vocab]
                } else if Some(i) == last_evaluated {
                    s.session.logits()
                } else {
                    return Err(FfiError::invalid(format!(
                        "logits of position {i} were not kept; create the session with logits_all"
                    )));
                }
            }
        };
        Ok(logits.as_ptr().cast_mut())
    })
    .cast_const()
}
