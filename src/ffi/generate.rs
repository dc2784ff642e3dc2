//! Text generation and chat.

use std::ffi::{c_char, c_void};

use super::boundary::{guard_count, guard_status, llm_status, FfiError};
use super::convert::{as_mut, as_ref, c_str, check_buffer, slice, write_string};
use super::model::llm_model;
use super::session::llm_session;
use crate::chat::ChatMessage;
use crate::constrain::Constraint;
use crate::generate::{self, GenerateParams, GenerateStats, Generation, StopReason};
use crate::sample::SamplerParams;
use crate::tools;

/// Receives each piece of generated text as soon as it is complete UTF-8 (a piece never splits a
/// character, and text that might begin a stop string is held back until it cannot).
/// `piece` is NUL-terminated and `len` bytes long (without the NUL); it is valid only during the
/// call. Return true to continue, false to stop generating (the call then returns LLM_OK with
/// stop reason LLM_STOP_CANCELLED).
///
/// The callback runs on the thread that called `llm_generate`/`llm_chat`. It must not use the
/// same session, and must not unwind (C++: catch every exception inside).
pub type llm_token_callback =
    Option<unsafe extern "C" fn(piece: *const c_char, len: usize, user_data: *mut c_void) -> bool>;

/// What to generate and when to stop. Get the defaults (those of llama.cpp) from
/// `llm_generate_default_params()` and change fields.
///
/// Samplers run in llama.cpp's order: penalties, top-k, top-p, min-p, temperature.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct llm_generate_params {
    /// Most tokens to generate. Default 128. 0 = until the context window is full.
    pub max_tokens: usize,
    /// Softmax temperature. Default 0.8. 0 = greedy (always the most likely token).
    pub temperature: f32,
    /// Keep only the k most likely tokens. Default 40. 0 = no limit.
    pub top_k: usize,
    /// Keep the most likely tokens whose probabilities sum to at least top_p. Default 0.95.
    /// 1 = no limit.
    pub top_p: f32,
    /// Drop tokens less likely than min_p × the probability of the most likely one.
    /// Default 0.05. 0 = no limit.
    pub min_p: f32,
    /// Divide positive logits (multiply negative ones) of tokens seen in the last
    /// `penalty_last_n` tokens by this. Default 1.0 = off.
    pub repeat_penalty: f32,
    /// Subtract this × (times seen in the last `penalty_last_n` tokens). Default 0 = off.
    pub frequency_penalty: f32,
    /// Subtract this from the logits of tokens seen in the last `penalty_last_n` tokens.
    /// Default 0 = off.
    pub presence_penalty: f32,
    /// How many of the most recent tokens the penalties look at. Default 64. 0 = none (penalties
    /// off).
    pub penalty_last_n: usize,
    /// Seed of the random draw: the same seed, prompt and parameters give the same text on every
    /// platform. Default 0xFFFFFFFF, a fixed seed like any other (not "random"; pass your own,
    /// e.g. from the clock, for varied texts).
    pub seed: u64,
    /// Generation ends when the text contains one of these NUL-terminated UTF-8 strings; the stop
    /// string and what follows are not returned. NULL when `n_stop` is 0. Default none.
    pub stop: *const *const c_char,
    /// Number of strings in `stop`.
    pub n_stop: usize,
    /// Add BOS/EOS to the prompt as the model's metadata asks. Default true. Ignored by
    /// `llm_chat` (the template decides).
    pub add_special: bool,
    /// Treat special-token text in the prompt ("<|im_start|>") as those tokens. Default false.
    /// Ignored by `llm_chat` (always parsed there).
    pub parse_special: bool,
    /// What the generated text must match, an `llm_constraint_type` value: LLM_CONSTRAINT_NONE
    /// (0, default), or one naming what `constraint` holds. Tokens the constraint does not allow
    /// are never sampled, and generation ends (LLM_STOP_END_OF_GENERATION) only where the text
    /// is complete under it. A constraint that does not compile fails the call with
    /// LLM_ERR_INVALID_ARGUMENT and a message saying why.
    pub constraint_type: i32,
    /// The constraint, NUL-terminated UTF-8: a JSON schema (as JSON text), a regular expression,
    /// a Lark or a GBNF grammar. NULL for LLM_CONSTRAINT_NONE and LLM_CONSTRAINT_JSON_OBJECT.
    pub constraint: *const c_char,
}

/// What `llm_generate_params.constraint` holds.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum llm_constraint_type {
    /// No constraint.
    LLM_CONSTRAINT_NONE = 0,
    /// A JSON value valid under the JSON schema in `constraint`.
    LLM_CONSTRAINT_JSON_SCHEMA = 1,
    /// Any JSON object (`constraint` is ignored).
    LLM_CONSTRAINT_JSON_OBJECT = 2,
    /// The whole text matches the regular expression in `constraint` (Rust `regex` syntax).
    LLM_CONSTRAINT_REGEX = 3,
    /// The text follows the grammar in `constraint`, in llguidance's Lark dialect.
    LLM_CONSTRAINT_LARK = 4,
    /// The text follows the grammar in `constraint`, in llama.cpp's GBNF (its `root` rule).
    LLM_CONSTRAINT_GBNF = 5,
}

/// Why a generation ended.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum llm_stop_reason {
    /// Not generated (the call failed before generating).
    LLM_STOP_NONE = 0,
    /// `max_tokens` tokens were generated.
    LLM_STOP_MAX_TOKENS = 1,
    /// The model produced an end-of-generation token (EOS, end of turn, …).
    LLM_STOP_END_OF_GENERATION = 2,
    /// The text reached one of the stop strings.
    LLM_STOP_STRING = 3,
    /// The callback returned false.
    LLM_STOP_CANCELLED = 4,
    /// The context window filled up before `max_tokens` were generated.
    LLM_STOP_CONTEXT_FULL = 5,
}

/// Counts and timings of one generation, filled by `llm_generate` and `llm_chat`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct llm_generate_stats {
    /// Why generation ended.
    pub stop_reason: llm_stop_reason,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Prompt tokens already in the session's context from an earlier call (not recomputed).
    pub reused_tokens: usize,
    /// Tokens generated, including an end-of-generation token.
    pub generated_tokens: usize,
    /// Bytes of generated text (without a NUL). When `out_buf` was too small, `text_len + 1` is
    /// the size it needs.
    pub text_len: usize,
    /// Seconds spent evaluating the prompt.
    pub prompt_seconds: f64,
    /// Seconds spent generating.
    pub generate_seconds: f64,
    /// Prompt tokens evaluated per second (0 if none).
    pub prompt_tokens_per_second: f64,
    /// Tokens generated per second (0 if none).
    pub generate_tokens_per_second: f64,
}

impl llm_generate_stats {
    const EMPTY: llm_generate_stats = llm_generate_stats {
        stop_reason: llm_stop_reason::LLM_STOP_NONE,
        prompt_tokens: 0,
        reused_tokens: 0,
        generated_tokens: 0,
        text_len: 0,
        prompt_seconds: 0.0,
        generate_seconds: 0.0,
        prompt_tokens_per_second: 0.0,
        generate_tokens_per_second: 0.0,
    };

    pub(super) fn of(g: &Generation) -> Self {
        let s: &GenerateStats = &g.stats;
        llm_generate_stats {
            stop_reason: match g.stop_reason {
                StopReason::MaxTokens => llm_stop_reason::LLM_STOP_MAX_TOKENS,
                StopReason::EndOfGeneration => llm_stop_reason::LLM_STOP_END_OF_GENERATION,
                StopReason::StopString => llm_stop_reason::LLM_STOP_STRING,
                StopReason::Cancelled => llm_stop_reason::LLM_STOP_CANCELLED,
                StopReason::ContextFull => llm_stop_reason::LLM_STOP_CONTEXT_FULL,
            },
            prompt_tokens: s.prompt_tokens,
            reused_tokens: s.reused_tokens,
            generated_tokens: s.generated_tokens,
            text_len: g.text.len(),
            prompt_seconds: s.prompt_seconds,
            generate_seconds: s.generate_seconds,
            prompt_tokens_per_second: s.prompt_tokens_per_second(),
            generate_tokens_per_second: s.generate_tokens_per_second(),
        }
    }
}

/// One message of a conversation. Both strings are NUL-terminated UTF-8.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct llm_chat_message {
    /// "system", "user" or "assistant" (whatever the model's template knows).
    pub role: *const c_char,
    /// The message text.
    pub content: *const c_char,
}

/// The default generation options, as llama.cpp's: temperature 0.8, top-k 40, top-p 0.95,
/// min-p 0.05, no penalties (window 64), 128 tokens, seed 0xFFFFFFFF, no stop strings,
/// add_special true, parse_special false.
#[no_mangle]
pub extern "C" fn llm_generate_default_params() -> llm_generate_params {
    // One source of truth: the Rust API's defaults.
    let generate = GenerateParams::default();
    let sampler = SamplerParams::default();
    llm_generate_params {
        max_tokens: generate.max_tokens,
        temperature: sampler.temperature,
        top_k: sampler.top_k,
        top_p: sampler.top_p,
        min_p: sampler.min_p,
        repeat_penalty: sampler.repeat_penalty,
        frequency_penalty: sampler.frequency_penalty,
        presence_penalty: sampler.presence_penalty,
        penalty_last_n: sampler.penalty_last_n,
        seed: sampler.seed,
        stop: std::ptr::null(),
        n_stop: 0,
        add_special: generate.add_special,
        parse_special: generate.parse_special,
        constraint_type: llm_constraint_type::LLM_CONSTRAINT_NONE as i32,
        constraint: std::ptr::null(),
    }
}

/// Reads the constraint fields of C generation options.
///
/// # Safety
/// `params.constraint` is NULL or NUL-terminated.
unsafe fn constraint_of(params: &llm_generate_params) -> Result<Option<Constraint>, FfiError> {
    use llm_constraint_type as T;
    let text = || {
        // SAFETY: forwarded from this function's contract.
        unsafe { c_str(params.constraint, "params.constraint") }.map(str::to_owned)
    };
    Ok(match params.constraint_type {
        t if t == T::LLM_CONSTRAINT_NONE as i32 => None,
        t if t == T::LLM_CONSTRAINT_JSON_OBJECT as i32 => Some(Constraint::JsonObject),
        t if t == T::LLM_CONSTRAINT_JSON_SCHEMA as i32 => {
            let schema = serde_json::from_str(&text()?).map_err(|e| {
                FfiError::invalid(format!("params.constraint is not a JSON schema: {e}"))
            })?;
            Some(Constraint::JsonSchema(schema))
        }
        t if t == T::LLM_CONSTRAINT_REGEX as i32 => Some(Constraint::Regex(text()?)),
        t if t == T::LLM_CONSTRAINT_LARK as i32 => Some(Constraint::Lark(text()?)),
        t if t == T::LLM_CONSTRAINT_GBNF as i32 => Some(Constraint::Gbnf(text()?)),
        other => {
            return Err(FfiError::invalid(format!(
                "unknown constraint_type {other}"
            )))
        }
    })
}

/// Checks and converts C generation options.
///
/// # Safety
/// `params.stop` is NULL or points to `params.n_stop` pointers, each NULL or NUL-terminated;
/// `params.constraint` is NULL or NUL-terminated.
pub(super) unsafe fn generate_params(
    params: &llm_generate_params,
) -> Result<GenerateParams, FfiError> {
    let finite_at_least = |name: &str, value: f32, min: f32| {
        if value.is_finite() && value >= min {
            Ok(value)
        } else {
            Err(FfiError::invalid(format!(
                "{name} must be a number ≥ {min}, got {value}"
            )))
        }
    };
    let in_unit = |name: &str, value: f32| {
        if (0.0..=1.0).contains(&value) {
            Ok(value)
        } else {
            Err(FfiError::invalid(format!(
                "{name} must be in [0, 1], got {value}"
            )))
        }
    };
    // SAFETY: forwarded from this function's contract.
    let stop_ptrs = unsafe { slice(params.stop, params.n_stop, "params.stop") }?;
    let stop = stop_ptrs
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            // SAFETY: forwarded from this function's contract.
            unsafe { c_str(s, &format!("params.stop[{i}]")) }.map(str::to_owned)
        })
        .collect::<Result<Vec<String>, _>>()?;
    Ok(GenerateParams {
        max_tokens: params.max_tokens,
        sampler: SamplerParams {
            temperature: finite_at_least("temperature", params.temperature, 0.0)?,
            top_k: params.top_k,
            top_p: in_unit("top_p", params.top_p)?,
            min_p: in_unit("min_p", params.min_p)?,
            repeat_penalty: finite_at_least(
                "repeat_penalty",
                params.repeat_penalty,
                f32::MIN_POSITIVE,
            )?,
            frequency_penalty: finite_at_least(
                "frequency_penalty",
                params.frequency_penalty,
                f32::MIN,
            )?,
            presence_penalty: finite_at_least(
                "presence_penalty",
                params.presence_penalty,
                f32::MIN,
            )?,
            penalty_last_n: params.penalty_last_n,
            logit_bias: Vec::new(),
            seed: params.seed,
        },
        stop,
        add_special: params.add_special,
        parse_special: params.parse_special,
        top_logprobs: None,
        // SAFETY: forwarded from this function's contract.
        constraint: unsafe { constraint_of(params) }?,
        preserved_tokens: Vec::new(),
        loras: None,
    })
}

/// Where a generation's output goes.
pub(super) struct Output {
    pub(super) on_token: llm_token_callback,
    pub(super) user_data: *mut c_void,
    pub(super) out_buf: *mut c_char,
    pub(super) out_len: usize,
    pub(super) stats: *mut llm_generate_stats,
}

/// Runs `generate` with the C options and output: streams pieces to the callback, then writes the
/// text and the statistics.
///
/// # Safety
/// `params` and every pointer in `output` follow `llm_generate`'s contract.
pub(super) unsafe fn run_generation(
    params: *const llm_generate_params,
    output: Output,
    generate: impl FnOnce(&GenerateParams, &mut dyn FnMut(&str) -> bool) -> Result<Generation, FfiError>,
) -> Result<(), FfiError> {
    // SAFETY: forwarded from this function's contract.
    let stats = unsafe { output.stats.as_mut() };
    let stats = stats.map(|s| {
        *s = llm_generate_stats::EMPTY;
        s
    });
    check_buffer(output.out_buf, output.out_len, "out_buf")?;
    // SAFETY: as above.
    let params = match unsafe { params.as_ref() } {
        // SAFETY: as above.
        Some(p) => unsafe { generate_params(p) }?,
        None => {
            let defaults = llm_generate_default_params();
            // SAFETY: the defaults have no stop strings.
            unsafe { generate_params(&defaults) }?
        }
    };
    // The piece plus a NUL, reused across calls so C gets a C string without an allocation each.
    let mut piece_c = Vec::new();
    let mut on_piece = |piece: &str| match output.on_token {
        None => true,
        Some(callback) => {
            piece_c.clear();
            piece_c.extend_from_slice(piece.as_bytes());
            piece_c.push(0);
            // SAFETY: the caller guarantees the callback is a valid function; the piece is
            // NUL-terminated and lives across the call.
            unsafe { callback(piece_c.as_ptr().cast(), piece.len(), output.user_data) }
        }
    };
    let generation = generate(&params, &mut on_piece)?;
    if let Some(stats) = stats {
        *stats = llm_generate_stats::of(&generation);
    }
    if output.out_buf.is_null() {
        return Ok(());
    }
    let text = generation.text.as_bytes();
    // SAFETY: as above; `out_buf` is non-NULL with `out_len` ≥ 1 bytes (checked above).
    match unsafe { write_string(text, output.out_buf, output.out_len, "the generated text") } {
        Err(e) => {
            // Too small: the generation happened and cannot be repeated cheaply, so give as much
            // of the text as fits, cut at a character boundary (snprintf style).
            let mut fit = output.out_len - 1;
            while !generation.text.is_char_boundary(fit) {
                fit -= 1;
            }
            // SAFETY: as above; `fit + 1 ≤ out_len`.
            unsafe { write_string(&text[..fit], output.out_buf, output.out_len, "") }?;
            Err(e)
        }
        Ok(_) => Ok(()),
    }
}

/// Runs `generate` in `session` with the C options and output (see [`run_generation`]).
///
/// # Safety
/// `session`, `params` and every pointer in `output` follow `llm_generate`'s contract.
unsafe fn run(
    session: *mut llm_session,
    params: *const llm_generate_params,
    output: Output,
    generate: impl FnOnce(
        &mut llm_session,
        &GenerateParams,
        &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation, FfiError>,
) -> Result<(), FfiError> {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        run_generation(params, output, |params, on_piece| {
            // SAFETY: as above.
            let s = as_mut(session, "session")?;
            s.forget_eval_logits();
            generate(s, params, on_piece)
        })
    }
}

/// Generates a continuation of `prompt` (NUL-terminated UTF-8) in `session`.
///
/// The session's context is reused: the part of its tokens that the prompt begins with is not
/// evaluated again, so a growing prompt (a chat transcript) costs only its new tokens. Sampling
/// and stopping follow `params` (NULL = defaults).
///
/// Output, all optional (NULL):
/// - `on_token(piece, len, user_data)` for each complete piece of text as it is generated;
///   returning false stops generation, which is not an error (LLM_OK, LLM_STOP_CANCELLED).
/// - `out_buf` of `out_len` bytes receives the whole generated text, NUL-terminated. If it is too
///   small, it receives as much as fits (cut at a character boundary, NUL-terminated), the call
///   returns LLM_ERR_BUFFER_TOO_SMALL and `stats->text_len + 1` is the size needed.
/// - `stats` receives counts and timings (zeroed when the call fails before generating).
///
/// Returns LLM_OK; LLM_ERR_NULL; LLM_ERR_INVALID_UTF8; LLM_ERR_INVALID_ARGUMENT (bad params, empty
/// prompt); LLM_ERR_CONTEXT_FULL (the prompt leaves no room in the context
/// for a generated token; a prompt that leaves room generates until `max_tokens` or a full
/// context, LLM_STOP_CONTEXT_FULL); LLM_ERR_TOKENIZER;
/// LLM_ERR_BUFFER_TOO_SMALL (see above).
///
/// # Safety
/// `session` is NULL or a live session not in use by another thread; `prompt` is NULL or
/// NUL-terminated; `params` is NULL or valid (with `n_stop` valid strings in `stop`, and `constraint` NULL or NUL-terminated);
/// `on_token` is NULL or a function of that type; `out_buf` is NULL or has `out_len` writable
/// bytes; `stats` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llm_generate(
    session: *mut llm_session,
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
            run(session, params, output, |s, params, on_piece| {
                // SAFETY: as above.
                let prompt = c_str(prompt, "prompt")?;
                Ok(generate::generate(
                    &mut s.session,
                    prompt,
                    params,
                    on_piece,
                )?)
            })
        }
    })
}

/// Reads the C messages of a conversation to reply to: at least one.
///
/// # Safety
/// As [`chat_messages`].
pub(super) unsafe fn conversation(
    messages: *const llm_chat_message,
    n: usize,
) -> Result<Vec<ChatMessage>, FfiError> {
    // SAFETY: forwarded from this function's contract.
    let messages = unsafe { chat_messages(messages, n) }?;
    if messages.is_empty() {
        return Err(FfiError::invalid("no messages"));
    }
    Ok(messages)
}

/// Reads C chat messages.
///
/// # Safety
/// `messages` is NULL or has `n` messages whose strings are NULL or NUL-terminated.
unsafe fn chat_messages(
    messages: *const llm_chat_message,
    n: usize,
) -> Result<Vec<ChatMessage>, FfiError> {
    // SAFETY: forwarded from this function's contract.
    let messages = unsafe { slice(messages, n, "messages") }?;
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            Ok(ChatMessage {
                // SAFETY: as above.
                role: unsafe { c_str(m.role, &format!("messages[{i}].role")) }?.to_owned(),
                // SAFETY: as above.
                content: unsafe { c_str(m.content, &format!("messages[{i}].content")) }?.to_owned(),
            })
        })
        .collect()
}

/// Replies to a conversation: renders `messages` (`n_messages` of them) with the model's chat
/// template (the file's `tokenizer.chat_template`; without one, a built-in format chosen by
/// architecture: Gemma's for gemma, ChatML otherwise), adds the assistant's turn, and generates
/// as `llm_generate` does (same outputs and return codes, plus LLM_ERR_TEMPLATE when the template
/// does not compile or fails to render these messages, and LLM_ERR_INVALID_ARGUMENT for 0
/// messages). The reply is not
/// added to anything: append it to your messages for the next turn; the session's context is
/// reused for the common beginning of the transcript.
///
/// # Safety
/// As `llm_generate`; `messages` is NULL or has `n_messages` messages with NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn llm_chat(
    session: *mut llm_session,
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
            run(session, params, output, |s, params, on_piece| {
                let template = s.model.chat_template()?;
                Ok(generate::chat(
                    &mut s.session,
                    template,
                    &messages,
                    params,
                    on_piece,
                )?)
            })
        }
    })
}

/// Replies to a chat request given as JSON in OpenAI's shape (NUL-terminated UTF-8):
/// `{"messages": [{"role", "content", "tool_calls"?, "tool_call_id"?}, …], "tools": […],
/// "tool_choice": "none"|"auto"|"required"|{"type": "function", "function": {"name": …}},
/// "parallel_tool_calls": bool}`, all but `messages` optional. The tools go into the model's chat
/// template; a required or named call is constrained to the tool's parameter schema.
///
/// Output as `llm_chat`, except that `on_token` gets only the reply's text (not the calls) and
/// `out_buf` receives the reply as the JSON of an OpenAI assistant message:
/// `{"role": "assistant", "content": …, "tool_calls": [{"id", "type": "function", "function":
/// {"name", "arguments"}}]}` (`tool_calls` present when the model called a tool; `arguments` a
/// JSON string, `content` null when the reply is only calls). `stats->text_len` is that JSON's
/// length.
///
/// Returns as `llm_chat`, with LLM_ERR_INVALID_ARGUMENT for a request that is not such JSON, a
/// bad tool, a `tool_choice` naming no tool, or a parameter schema that cannot constrain a call
/// (`llm_last_error` names the field).
///
/// # Safety
/// As `llm_generate`; `request` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn llm_chat_request(
    session: *mut llm_session,
    request: *const c_char,
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
        let request = unsafe { c_str(request, "request") }?;
        let request: serde_json::Value = serde_json::from_str(request)
            .map_err(|e| FfiError::invalid(format!("request: not JSON: {e}")))?;
        // SAFETY: as above.
        unsafe {
            run(session, params, output, |s, params, on_piece| {
                let template = s.model.chat_template()?;
                let (mut generation, message) =
                    tools::reply_to_request(&mut s.session, template, &request, params, on_piece)?;
                generation.text = message.to_string();
                Ok(generation)
            })
        }
    })
}

/// Renders `messages` (`n` of them) with the model's chat template (as `llm_chat` chooses it)
/// into `buf`, NUL-terminated;
/// with `add_generation_prompt`, the assistant's turn prefix is appended.
///
/// Returns the length written (without the NUL); -(bytes needed, with the NUL) if `len` is too
/// small (nothing written); LLM_FAILED otherwise (LLM_ERR_NULL, LLM_ERR_INVALID_UTF8,
/// LLM_ERR_TEMPLATE).
///
/// # Safety
/// `model` is NULL or a live model; `messages` is NULL or has `n` messages with NUL-terminated
/// strings; `buf` is NULL or has `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn llm_chat_apply_template(
    model: *const llm_model,
    messages: *const llm_chat_message,
    n: usize,
    add_generation_prompt: bool,
    buf: *mut c_char,
    len: usize,
) -> i32 {
    guard_count(|| {
        // SAFETY: forwarded from this function's contract.
        let shared = &unsafe { as_ref(model, "model") }?.shared;
        // SAFETY: as above.
        let messages = unsafe { chat_messages(messages, n) }?;
        let template = shared.chat_template()?;
        let text =
            generate::render_chat(&shared.model, template, &messages, add_generation_prompt)?;
        // SAFETY: as above.
        unsafe { write_string(text.as_bytes(), buf, len, "the rendered chat") }
    })
}
