//! Many sequences of one model at once: the batcher (generations from any number of threads,
//! decoded together), and underneath it the engine (sequences, steps, per-sequence logits) with
//! a sampler for callers who drive the steps themselves.

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use super::boundary::{free_handle, guard_count, guard_ptr, guard_status, llm_status, FfiError};
use super::convert::{as_mut, as_ref, c_str, slice};
use super::generate::{
    conversation, generate_params, llm_chat_message, llm_generate_default_params,
    llm_generate_params, llm_generate_stats, llm_token_callback, run_generation, Output,
};
use super::model::{llm_model, llm_token, SharedModel};
use super::session::{kv_type_of, llm_kv_type};
use crate::engine::{Engine, EngineParams, SeqId};
use crate::generate;
use crate::sample::Sampler;
use crate::Batcher;

/// Options of an engine or a batcher. Get the defaults from `llm_engine_default_params()`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct llm_engine_params {
    /// Most tokens one sequence holds (prompt plus generated text).
    /// 0 = the model's trained context, capped at 4096.
    pub n_ctx: usize,
    /// Worker threads of the engine's one thread pool, shared by all its sequences.
    /// 0 = `llm_model_params.n_threads`, and if that is 0 too, the number of CPU cores.
    pub n_threads: usize,
    /// Most prompt tokens evaluated per forward pass of one sequence, as
    /// `llm_session_params.n_batch`. 0 = 512.
    pub n_batch: usize,
    /// KV element type, an `llm_kv_type` value: LLM_KV_F16 (0, default) or LLM_KV_F32 (1).
    pub kv_type: i32,
    /// Positions the shared KV pool holds for all sequences together, in blocks of 16.
    /// Memory follows the positions sequences actually hold, up to this.
    /// 0 = four sequences' `n_ctx`.
    pub pool_positions: usize,
    /// Most tokens one step evaluates: a token of every decoding sequence plus pieces of prompts.
    /// 0 = `n_batch`; at least 16.
    pub step_tokens: usize,
    /// Most sequences decoded in one step. 0 = 64.
    pub max_decode: usize,
    /// Let prompts take the KV blocks of a common beginning that another sequence computed,
    /// instead of computing them again (the results are the same bits). Default true.
    pub prefix_sharing: bool,
}

/// The default engine options (every count 0 = automatic; KV F16; prefix sharing on).
#[no_mangle]
pub extern "C" fn llm_engine_default_params() -> llm_engine_params {
    llm_engine_params {
        n_ctx: 0,
        n_threads: 0,
        n_batch: 0,
        kv_type: llm_kv_type::LLM_KV_F16 as i32,
        pool_positions: 0,
        step_tokens: 0,
        max_decode: 0,
        prefix_sharing: true,
    }
}

/// Checks and converts C engine options (NULL = defaults).
///
/// # Safety
/// `params` is NULL or points to an `llm_engine_params`.
unsafe fn engine_params(params: *const llm_engine_params) -> Result<EngineParams, FfiError> {
    // SAFETY: forwarded from this function's contract.
    let params = unsafe { params.as_ref() }
        .copied()
        .unwrap_or_else(|| llm_engine_default_params());
    Ok(EngineParams {
        n_threads: params.n_threads,
        kv_type: kv_type_of(params.kv_type)?,
        n_ctx: params.n_ctx,
        pool_positions: params.pool_positions,
        n_batch: params.n_batch,
        step_tokens: params.step_tokens,
        max_decode: params.max_decode,
        no_prefix_sharing: !params.prefix_sharing,
    })
}

/// Generations from any number of threads, run together: one engine on a worker thread of its
/// own decodes the next token of every running generation in one forward pass per step.
/// Each generation's text is the one it gets alone (the same seed gives the same text), whatever
/// else runs at the same time.
///
/// Thread safety: every `llm_batcher_*` function except `llm_batcher_free` may be called from
/// any number of threads at once.
/// Lifetime: from `llm_batcher_new` until `llm_batcher_free`; it keeps its model alive.
pub struct llm_batcher {
    batcher: Batcher,
    model: Arc<SharedModel>,
}

/// Creates a batcher on `model`. `params` may be NULL for the defaults.
///
/// Returns the batcher, or NULL on failure (`llm_last_status()`: LLM_ERR_NULL,
/// LLM_ERR_INVALID_ARGUMENT for an unknown `kv_type` or threads that cannot start).
/// Free it with `llm_batcher_free`.
///
/// # Safety
/// `model` is NULL or a live model; `params` is NULL or points to an `llm_engine_params`.
#[no_mangle]
pub unsafe extern "C" fn llm_batcher_new(
    model: *const llm_model,
    params: *const llm_engine_params,
) -> *mut llm_batcher {
    guard_ptr(|| {
        // SAFETY: forwarded from this function's contract.
        let shared = &unsafe { as_ref(model, "model") }?.shared;
        // SAFETY: as above.
        let params = unsafe { engine_params(params) }?;
        let batcher = Batcher::new(shared.model.clone(), &params)?;
        Ok(Box::into_raw(Box::new(llm_batcher {
            batcher,
            model: shared.clone(),
        })))
    })
}

/// Frees a batcher, after the generations running in it have ended. NULL is a no-op.
///
/// # Safety
/// `batcher` is NULL or a pointer from `llm_batcher_new` not yet freed, and no other thread is
/// in an `llm_batcher_*` call on it.
#[no_mangle]
pub unsafe extern "C" fn llm_batcher_free(batcher: *mut llm_batcher) {
    // SAFETY: forwarded from this function's contract: the pointer is NULL or came from
    // Box::into_raw in llm_batcher_new, and is freed only here.
    unsafe { free_handle(batcher) };
}

/// Most tokens one generation of the batcher holds, prompt included; LLM_FAILED if `batcher` is
/// NULL.
///
/// # Safety
/// `batcher` is NULL or a live batcher.
#[no_mangle]
pub unsafe extern "C" fn llm_batcher_n_ctx(batcher: *const llm_batcher) -> i32 {
    guard_count(|| {
        // SAFETY: forwarded from this function's contract.
        Ok(unsafe { as_ref(batcher, "batcher") }?.batcher.n_ctx())
    })
}

/// Generates a continuation of `prompt` (NUL-terminated UTF-8) among the batcher's other
/// generations, and returns when it ends. Parameters, output and return codes are those of
/// `llm_generate`, except that nothing is reused from an earlier call (every call is a new
/// sequence; a prompt beginning that another running generation has already computed is taken
/// from it). `on_token` runs on the calling thread.
///
/// # Safety
/// As `llm_generate`, with `batcher` NULL or a live batcher (which other threads may be using).
#[no_mangle]
pub unsafe extern "C" fn llm_batcher_generate(
    batcher: *const llm_batcher,
    prompt: *const c_char,
    params: *const llm_generate_params,
    on_token: llm_token_callback,
    user_data: *mut c_void,
    out_buf: *mut c_char,
    out_len: usize,
    stats: *mut llm_generate_stats,
) -> llm_status {
    guard_status(|| {
        let output = Output {
            on_token,
            user_data,
            out_buf,
            out_len,
            stats,
        };
        // SAFETY: forwarded from this function's contract.
        unsafe {
            run_generation(params, output, |params, on_piece| {
                // SAFETY: as above.
                let b = as_ref(batcher, "batcher")?;
                // SAFETY: as above.
                let prompt = c_str(prompt, "prompt")?;
                let tokens = b.model.model.tokenizer().encode(
                    prompt,
                    params.add_special,
                    params.parse_special,
                )?;
                Ok(b.batcher.generate(&tokens, params, on_piece)?)
            })
        }
    })
}

/// Replies to a conversation among the batcher's other generations: `messages` rendered as
/// `llm_chat` renders them, generated as `llm_batcher_generate` generates (same outputs and
/// return codes as `llm_chat`).
///
/// # Safety
/// As `llm_chat`, with `batcher` NULL or a live batcher (which other threads may be using).
#[no_mangle]
pub unsafe extern "C" fn llm_batcher_chat(
    batcher: *const llm_batcher,
    messages: *const llm_chat_message,
    n_messages: usize,
    params: *const llm_generate_params,
    on_token: llm_token_callback,
    user_data: *mut c_void,
    out_buf: *mut c_char,
    out_len: usize,
    stats: *mut llm_generate_stats,
) -> llm_status {
    guard_status(|| {
        let output = Output {
            on_token,
            user_data,
            out_buf,
            out_len,
            stats,
        };
        // SAFETY: forwarded from this function's contract.
        let messages = unsafe { conversation(messages, n_messages) }?;
        // SAFETY: as above.
        unsafe {
            run_generation(params, output, |params, on_piece| {
                // SAFETY: as above.
                let b = as_ref(batcher, "batcher")?;
                let template = b.model.chat_template()?;
                let tokens = generate::chat_prompt(&b.model.model, template, &messages)?;
                Ok(b.batcher.generate(&tokens, params, on_piece)?)
            })
        }
    })
}

/// Many sequences of one model, stepped together by the caller: feed tokens to sequences, call
/// `llm_engine_step` until the sequences you wait for have logits, sample, feed the chosen
/// tokens, and so on. A sequence's logits depend only on its own tokens (the same bits as alone
/// in a session), whatever else shares its steps.
///
/// Thread safety: use an engine from one thread at a time (for many threads, use a batcher).
/// Lifetime: from `llm_engine_new` until `llm_engine_free`; it keeps its model alive.
pub struct llm_engine {
    pub(super) engine: Engine,
    model: Arc<SharedModel>,
}

/// Counts of an engine's KV pool, in blocks of `block_positions` positions.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct llm_pool_stats {
    /// Positions per block.
    pub block_positions: usize,
    /// Blocks in the pool.
    pub total: usize,
    /// Blocks no sequence holds.
    pub free: usize,
    /// Blocks held by more than one sequence (a shared prompt beginning).
    pub shared: usize,
}

/// What one `llm_engine_step` did.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct llm_step_report {
    /// Sequences whose logits became ready (all their fed tokens evaluated).
    pub n_ready: usize,
    /// Sequences that failed in this step (see `llm_engine_logits`); the others went on.
    pub n_failed: usize,
    /// Tokens evaluated, and of those, single tokens of decoding sequences.
    pub tokens: usize,
    pub decoded: usize,
    /// Positions taken from blocks another sequence had computed.
    pub reused: usize,
}

/// Creates an engine on `model` with no sequences. `params` may be NULL for the defaults.
///
/// Returns the engine, or NULL on failure (`llm_last_status()`: LLM_ERR_NULL,
/// LLM_ERR_INVALID_ARGUMENT). Free it with `llm_engine_free`.
///
/// # Safety
/// `model` is NULL or a live model; `params` is NULL or points to an `llm_engine_params`.
#[no_mangle]
pub unsafe extern "C" fn llm_engine_new(
    model: *const llm_model,
    params: *const llm_engine_params,
) -> *mut llm_engine {
    guard_ptr(|| {
        // SAFETY: forwarded from this function's contract.
        let shared = &unsafe { as_ref(model, "model") }?.shared;
        // SAFETY: as above.
        let params = unsafe { engine_params(params) }?;
        let engine = Engine::new(shared.model.clone(), &params)?;
        Ok(Box::into_raw(Box::new(llm_engine {
            engine,
            model: shared.clone(),
        })))
    })
}

/// Frees an engine and its sequences. NULL is a no-op.
///
/// # Safety
/// `engine` is NULL or a pointer from `llm_engine_new` not yet freed and not in use.
#[no_mangle]
pub unsafe extern "C" fn llm_engine_free(engine: *mut llm_engine) {
    // SAFETY: forwarded from this function's contract: the pointer is NULL or came from
    // Box::into_raw in llm_engine_new, and is freed only here.
    unsafe { free_handle(engine) };
}

/// Adds an empty sequence and writes its id to `*seq`. Ids are never reused by one engine.
///
/// Returns LLM_OK or LLM_ERR_NULL.
///
/// # Safety
/// `engine` is NULL or a live engine; `seq` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llm_engine_add(engine: *mut llm_engine, seq: *mut u64) -> llm_status {
    guard_status(|| {
        // SAFETY: forwarded from this function's contract.
        let e = unsafe { as_mut(engine, "engine") }?;
        // SAFETY: as above.
        let seq = unsafe { as_mut(seq, "seq") }?;
        *seq = e.engine.add().0;
        Ok(())
    })
}

/// Appends `n` tokens to sequence `seq`, to be evaluated by the next steps: a prompt (one call
/// is evaluated in batches of `n_batch` as a session evaluates one `llm_eval`), or the token
/// just sampled.
///
/// Returns LLM_OK; LLM_ERR_NULL; LLM_ERR_INVALID_ARGUMENT (no such sequence, it failed, `n` is 0,
/// a token outside the vocabulary); LLM_ERR_CONTEXT_FULL (the sequence would hold more than
/// `n_ctx` tokens).
///
/// # Safety
/// `engine` is NULL or a live engine; `tokens` is NULL or has `n` tokens.
#[no_mangle]
pub unsafe extern "C" fn llm_engine_feed(
    engine: *mut llm_engine,
    seq: u64,
    tokens: *const llm_token,
    n: usize,
) -> llm_status {
    guard_status(|| {
        // SAFETY: forwarded from this function's contract.
        let e = unsafe { as_mut(engine, "engine") }?;
        // SAFETY: as above.
        let tokens = unsafe { slice(tokens, n, "tokens") }?;
        if tokens.is_empty() {
            return Err(FfiError::invalid("no tokens"));
        }
        let ids = tokens
            .iter()
            .map(|&t| e.model.check_token(t))
            .collect::<Result<Vec<u32>, _>>()?;
        Ok(e.engine.feed(SeqId(seq), &ids)?)
    })
}

/// Evaluates the next tokens of the sequences in one forward pass: one token of every sequence
/// whose next fed token is a single one, and pieces of prompts within the step's budget. A
/// sequence that cannot get KV blocks fails alone (LLM_ERR_CONTEXT_FULL from
/// `llm_engine_logits`). `report` (may be NULL) receives what the step did.
///
/// Returns LLM_OK; LLM_ERR_NULL.
///
/// # Safety
/// `engine` is NULL or a live engine; `report` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llm_engine_step(
    engine: *mut llm_engine,
    report: *mut llm_step_report,
) -> llm_status {
    guard_status(|| {
        // SAFETY: forwarded from this function's contract.
        let e = unsafe { as_mut(engine, "engine") }?;
        let r = e.engine.step()?;
        // SAFETY: as above.
        if let Some(report) = unsafe { report.as_mut() } {
            *report = llm_step_report {
                n_ready: r.ready.len(),
                n_failed: r.failed.len(),
                tokens: r.tokens,
                decoded: r.decoded,
                reused: r.reused,
            };
        }
        Ok(())
    })
}

/// Whether some sequence has fed tokens not yet evaluated (the next step would do work):
/// 1 or 0; LLM_FAILED if `engine` is NULL.
///
/// # Safety
/// `engine` is NULL or a live engine.
#[no_mangle]
pub unsafe extern "C" fn llm_engine_has_work(engine: *const llm_engine) -> i32 {
    guard_count(|| {
        // SAFETY: forwarded from this function's contract.
        Ok(usize::from(
            unsafe { as_ref(engine, "engine") }?.engine.has_work(),
        ))
    })
}

/// The logits (`n_vocab` floats) after the last token of sequence `seq`, once every token fed
/// to it has been evaluated. Valid until the next call that feeds, steps or removes on this
/// engine.
///
/// Returns NULL (with `llm_last_status()`) when the logits are not ready: LLM_ERR_INVALID_ARGUMENT
/// (no such sequence, or tokens still to evaluate: step again), or the error the sequence
/// failed with (LLM_ERR_CONTEXT_FULL when the KV pool had no room for it).
///
/// # Safety
/// `engine` is NULL or a live engine.
#[no_mangle]
pub unsafe extern "C" fn llm_engine_logits(engine: *const llm_engine, seq: u64) -> *const f32 {
    guard_ptr(|| {
        // SAFETY: forwarded from this function's contract.
        let e = unsafe { as_ref(engine, "engine") }?;
        let id = SeqId(seq);
        if let Some(error) = e.engine.error(id)? {
            return Err(FfiError::new(
                llm_status::of_error(error),
                format!("sequence {seq} failed: {error}"),
            ));
        }
        match e.engine.logits(id)? {
            Some(logits) => Ok(logits.as_ptr().cast_mut()),
            None => Err(FfiError::invalid(format!(
                "sequence {seq} has tokens not yet evaluated (call llm_engine_step)"
            ))),
        }
    })
}

/// The number of tokens sequence `seq` holds (evaluated); LLM_FAILED if `engine` is NULL or
/// there is no such sequence.
///
/// # Safety
/// `engine` is NULL or a live engine.
#[no_mangle]
pub unsafe extern "C" fn llm_engine_n_past(engine: *const llm_engine, seq: u64) -> i32 {
    guard_count(|| {
        // SAFETY: forwarded from this function's contract.
        Ok(unsafe { as_ref(engine, "engine") }?
            .engine
            .tokens(SeqId(seq))?
            .len())
    })
}

/// Removes sequence `seq` (finished, abandoned or failed) and returns its KV blocks to the pool.
///
/// Returns LLM_OK; LLM_ERR_NULL; LLM_ERR_INVALID_ARGUMENT (no such sequence).
///
/// # Safety
/// `engine` is NULL or a live engine.
#[no_mangle]
pub unsafe extern "C" fn llm_engine_remove(engine: *mut llm_engine, seq: u64) -> llm_status {
    guard_status(|| {
        // SAFETY: forwarded from this function's contract.
        let e = unsafe { as_mut(engine, "engine") }?;
        Ok(e.engine.remove(SeqId(seq))?)
    })
}

/// Adds a sequence holding what `seq` holds (its tokens, its logits), writing its id to
/// `*forked`. The two share KV blocks until one of them writes into a shared block, which it
/// then copies first: forking a long prompt costs no memory. Tokens fed but not yet evaluated
/// are not copied.
///
/// Returns LLM_OK; LLM_ERR_NULL; LLM_ERR_INVALID_ARGUMENT (no such sequence).
///
/// # Safety
/// `engine` is NULL or a live engine; `forked` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llm_engine_fork(
    engine: *mut llm_engine,
    seq: u64,
    forked: *mut u64,
) -> llm_status {
    guard_status(|| {
        // SAFETY: forwarded from this function's contract.
        let e = unsafe { as_mut(engine, "engine") }?;
        // SAFETY: as above.
        let forked = unsafe { as_mut(forked, "forked") }?;
        *forked = e.engine.fork(SeqId(seq))?.0;
        Ok(())
    })
}

/// Writes the counts of the engine's KV pool to `*stats`.
///
/// Returns LLM_OK or LLM_ERR_NULL.
///
/// # Safety
/// `engine` is NULL or a live engine; `stats` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llm_engine_pool_stats(
    engine: *const llm_engine,
    stats: *mut llm_pool_stats,
) -> llm_status {
    guard_status(|| {
        // SAFETY: forwarded from this function's contract.
        let e = unsafe { as_ref(engine, "engine") }?;
        // SAFETY: as above.
        let stats = unsafe { as_mut(stats, "stats") }?;
        let p = e.engine.pool_stats();
        *stats = llm_pool_stats {
            block_positions: p.block_positions,
            total: p.total,
            free: p.free,
            shared: p.shared,
        };
        Ok(())
    })
}

/// A sampler chain with its own random stream, configured by the sampling fields of
/// `llm_generate_params` (temperature, top_k, top_p, min_p, the penalties, seed): one per
/// sequence, so that each sequence's draws are its own.
///
/// Thread safety: use a sampler from one thread at a time.
pub struct llm_sampler {
    sampler: Sampler,
}

/// Creates a sampler from the sampling fields of `params` (NULL = the defaults of
/// `llm_generate_default_params()`).
///
/// Returns the sampler, or NULL on failure (`llm_last_status()`: LLM_ERR_INVALID_ARGUMENT for
/// out-of-range fields, LLM_ERR_INVALID_UTF8 for bad stop strings). Free it with
/// `llm_sampler_free`.
///
/// # Safety
/// `params` is NULL or valid (with `n_stop` valid strings in `stop`, and `constraint` NULL or NUL-terminated).
#[no_mangle]
pub unsafe extern "C" fn llm_sampler_new(params: *const llm_generate_params) -> *mut llm_sampler {
    guard_ptr(|| {
        // SAFETY: forwarded from this function's contract.
        let params = match unsafe { params.as_ref() } {
            // SAFETY: as above.
            Some(p) => unsafe { generate_params(p) }?,
            None => {
                let defaults = llm_generate_default_params();
                // SAFETY: the defaults have no stop strings.
                unsafe { generate_params(&defaults) }?
            }
        };
        Ok(Box::into_raw(Box::new(llm_sampler {
            sampler: Sampler::new(&params.sampler),
        })))
    })
}

/// Frees a sampler. NULL is a no-op.
///
/// # Safety
/// `sampler` is NULL or a pointer from `llm_sampler_new` not yet freed and not in use.
#[no_mangle]
pub unsafe extern "C" fn llm_sampler_free(sampler: *mut llm_sampler) {
    // SAFETY: forwarded from this function's contract: the pointer is NULL or came from
    // Box::into_raw in llm_sampler_new, and is freed only here.
    unsafe { free_handle(sampler) };
}

/// Chooses the next token from `logits` (`n_vocab` floats), as `llm_generate` chooses it:
/// `history` (`n_history` tokens, prompt and generated so far; may be NULL when 0) is what the
/// penalties look at. Advances the sampler's random stream.
///
/// Returns the token id; LLM_FAILED on LLM_ERR_NULL or LLM_ERR_INVALID_ARGUMENT (`n_vocab` 0 or
/// above INT32_MAX).
///
/// # Safety
/// `sampler` is NULL or a live sampler; `logits` is NULL or has `n_vocab` floats; `history` is
/// NULL or has `n_history` tokens.
#[no_mangle]
pub unsafe extern "C" fn llm_sampler_sample(
    sampler: *mut llm_sampler,
    logits: *const f32,
    n_vocab: usize,
    history: *const llm_token,
    n_history: usize,
) -> i32 {
    guard_count(|| {
        // SAFETY: forwarded from this function's contract.
        let s = unsafe { as_mut(sampler, "sampler") }?;
        if logits.is_null() {
            return Err(FfiError::null("logits"));
        }
        if n_vocab == 0 || i32::try_from(n_vocab).is_err() {
            return Err(FfiError::invalid(format!(
                "n_vocab {n_vocab} is out of range"
            )));
        }
        // SAFETY: as above.
        let logits = unsafe { slice(logits, n_vocab, "logits") }?;
        // SAFETY: as above.
        let history = unsafe { slice(history, n_history, "history") }?;
        // Negative ids cannot be in a vocabulary; as u32 they match no token of it.
        let history: Vec<u32> = history.iter().map(|&t| t as u32).collect();
        Ok(s.sampler.sample(logits, &history) as usize)
    })
}
