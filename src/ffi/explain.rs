//! Explain: the candidates at each generated step and one layer's attention, as a result handle.

use std::ffi::c_char;

use super::boundary::{free_handle, guard_count, guard_ptr, FfiError};
use super::convert::{as_mut, as_ref, c_str, write_slice, write_string};
use super::session::llm_session;
use crate::explain::{explain, ExplainParams, Explanation};
use crate::sample::SamplerParams;

/// What `llm_explain` records. Get the defaults from `llm_explain_default_params()`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct llm_explain_params {
    /// Most tokens to generate (fewer if the model ends the text). Default 8.
    pub n_steps: usize,
    /// Most likely alternatives recorded per step. Default 5.
    pub top_k: usize,
    /// The layer whose attention is recorded, from 0. Default -1 = the last layer.
    pub layer: i32,
    /// The query head whose attention is recorded, from 0. Default -1 = the mean over heads.
    pub head: i32,
    /// Sampling temperature. Default 0 = greedy (always the most likely token). Above 0, the
    /// draw uses llama.cpp's default chain (top-k 40, top-p 0.95, min-p 0.05) at this temperature.
    pub temperature: f32,
    /// Seed of the random draw when `temperature` > 0. Default 0xFFFFFFFF.
    pub seed: u64,
}

/// The result of `llm_explain`: plain data read with the `llm_explanation_*` functions.
///
/// Thread safety: immutable; may be read from any number of threads at once.
/// Lifetime: from `llm_explain` until `llm_explanation_free`; independent of the session.
pub struct llm_explanation {
    explanation: Explanation,
}

/// The default explain options: 8 steps, top 5, the last layer, the mean over heads, greedy.
#[no_mangle]
pub extern "C" fn llm_explain_default_params() -> llm_explain_params {
    // One source of truth: the Rust API's defaults.
    let d = ExplainParams::default();
    llm_explain_params {
        n_steps: d.n_steps,
        top_k: d.top_k,
        layer: -1,
        head: -1,
        temperature: d.sampler.temperature,
        seed: d.sampler.seed,
    }
}

/// An optional index: -1 = `None`, other negatives are errors.
fn index(value: i32, name: &str) -> Result<Option<usize>, FfiError> {
    match value {
        -1 => Ok(None),
        v => usize::try_from(v)
            .map(Some)
            .map_err(|_| FfiError::invalid(format!("{name} must be ≥ 0 or -1, got {v}"))),
    }
}

/// Explains how the model continues `prompt` (NUL-terminated UTF-8; BOS/EOS added as the model's
/// metadata asks): generates up to `params->n_steps` tokens and records, per step, the chosen
/// token and the `top_k` most likely ones with their probabilities (softmax of the raw logits),
/// and the attention weights of one layer over the whole text. The session's context is emptied
/// first; afterwards it holds the prompt and every generated token but the last. `params` may be
/// NULL for the defaults.
///
/// Returns the explanation (free it with `llm_explanation_free`), or NULL on failure
/// (`llm_last_status()`: LLM_ERR_NULL, LLM_ERR_INVALID_UTF8, LLM_ERR_INVALID_ARGUMENT for an empty
/// prompt, a layer or head out of range or a bad temperature, LLM_ERR_CONTEXT_FULL,
/// LLM_ERR_TOKENIZER).
///
/// # Safety
/// `session` is NULL or a live session not in use by another thread; `prompt` is NULL or
/// NUL-terminated; `params` is NULL or points to an `llm_explain_params`.
#[no_mangle]
pub unsafe extern "C" fn llm_explain(
    session: *mut llm_session,
    prompt: *const c_char,
    params: *const llm_explain_params,
) -> *mut llm_explanation {
    guard_ptr(|| {
        // SAFETY: forwarded from this function's contract.
        let s = unsafe { as_mut(session, "session") }?;
        // SAFETY: as above.
        let prompt = unsafe { c_str(prompt, "prompt") }?;
        // SAFETY: as above.
        let p = unsafe { params.as_ref() }
            .copied()
            .unwrap_or_else(|| llm_explain_default_params());
        if !(p.temperature.is_finite() && p.temperature >= 0.0) {
            return Err(FfiError::invalid(format!(
                "temperature must be a number ≥ 0, got {}",
                p.temperature
            )));
        }
        let sampler = if p.temperature == 0.0 {
            SamplerParams::greedy()
        } else {
            SamplerParams {
                temperature: p.temperature,
                seed: p.seed,
                ..SamplerParams::default()
            }
        };
        let params = ExplainParams {
            n_steps: p.n_steps,
            top_k: p.top_k,
            layer: index(p.layer, "layer")?,
            head: index(p.head, "head")?,
            sampler,
        };
        s.forget_eval_logits();
        let explanation = explain(&mut s.session, prompt, &params)?;
        Ok(Box::into_raw(Box::new(llm_explanation { explanation })))
    })
}

/// Frees an explanation. NULL is a no-op.
///
/// # Safety
/// `explanation` is NULL or a pointer from `llm_explain` not yet freed and not in use.
#[no_mangle]
pub unsafe extern "C" fn llm_explanation_free(explanation: *mut llm_explanation) {
    // SAFETY: forwarded from this function's contract: the pointer is NULL or came from
    // Box::into_raw in llm_explain, and is freed only here.
    unsafe { free_handle(explanation) };
}

/// Everything recorded, as one JSON object (UTF-8, NUL-terminated) in `buf`:
/// `{"prompt": [{"id", "piece"}…], "steps": [{"chosen": {"id", "piece"}, "prob", "logit",
/// "candidates": [{"id", "piece", "prob", "logit"}…], "end_of_generation"}…], "text", "layer",
/// "head" (null = mean over heads), "n_layer", "n_head", "attention": [[…]…]}` where
/// `attention[i][j]` (j ≤ i) is the weight token i gives token j; the tokens are the prompt then
/// the generated ones except the last (never evaluated). Pieces with bytes that are not UTF-8 on
/// their own show U+FFFD.
///
/// Returns the length written (without the NUL); -(bytes needed, with the NUL) if `len` is too
/// small (nothing written); LLM_FAILED otherwise (LLM_ERR_NULL).
///
/// # Safety
/// `explanation` is NULL or live; `buf` is NULL or has `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn llm_explanation_json(
    explanation: *const llm_explanation,
    buf: *mut c_char,
    len: usize,
) -> i32 {
    guard_count(|| {
        // SAFETY: forwarded from this function's contract.
        let e = &unsafe { as_ref(explanation, "explanation") }?.explanation;
        let json = serde_json::to_string(e)
            .map_err(|err| FfiError::invalid(format!("cannot write JSON: {err}")))?;
        // SAFETY: as above.
        unsafe { write_string(json.as_bytes(), buf, len, "the explanation's JSON") }
    })
}

/// The number of tokens the attention matrix covers (the prompt plus every generated token but
/// the last), or LLM_FAILED (LLM_ERR_NULL).
///
/// # Safety
/// `explanation` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn llm_explanation_n_tokens(explanation: *const llm_explanation) -> i32 {
    guard_count(|| {
        // SAFETY: forwarded from this function's contract.
        Ok(unsafe { as_ref(explanation, "explanation") }?
            .explanation
            .attention
            .len())
    })
}

/// The attention matrix, n × n floats row-major into `buf` (n = `llm_explanation_n_tokens`):
/// `buf[i * n + j]` is the weight token i gives token j; each row sums to 1, and entries above
/// the diagonal (j > i, the future) are 0.
///
/// Returns n × n; -(n × n) if `len` is too small (nothing written); LLM_FAILED otherwise.
///
/// # Safety
/// `explanation` is NULL or live; `buf` is NULL or has `len` writable floats.
#[no_mangle]
pub unsafe extern "C" fn llm_explanation_attention(
    explanation: *const llm_explanation,
    buf: *mut f32,
    len: usize,
) -> i32 {
    guard_count(|| {
        // SAFETY: forwarded from this function's contract.
        let rows = &unsafe { as_ref(explanation, "explanation") }?
            .explanation
            .attention;
        let n = rows.len();
        let mut square = vec![0.0f32; n * n];
        for (dst, row) in square.chunks_exact_mut(n.max(1)).zip(rows) {
            dst[..row.len()].copy_from_slice(row);
        }
        // SAFETY: as above.
        unsafe { write_slice(&square, buf, len, "the attention matrix") }
    })
}

/// The attention heatmap as a PNG figure (file bytes, no NUL added) in `buf`: a grid of
/// `cell_px` × `cell_px` pixels per (token, token) cell, viridis colours of √weight, light grey
/// above the diagonal, token pieces on both axes, a colour bar and a title naming the layer, head
/// and model (also in the PNG's `Title` text chunk; `llmrt:grid` holds "left top cell n").
///
/// Returns the bytes written; -(bytes needed) if `len` is too small (nothing written);
/// LLM_FAILED otherwise (LLM_ERR_NULL, LLM_ERR_INVALID_ARGUMENT for a grid side of 0 or more than
/// 16384 pixels).
///
/// # Safety
/// `explanation` is NULL or live; `buf` is NULL or has `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn llm_explanation_png(
    explanation: *const llm_explanation,
    cell_px: usize,
    buf: *mut c_char,
    len: usize,
) -> i32 {
    guard_count(|| {
        // SAFETY: forwarded from this function's contract.
        let e = &unsafe { as_ref(explanation, "explanation") }?.explanation;
        let png = e.heatmap_png(cell_px)?;
        // SAFETY: as above.
        unsafe { write_slice(&png, buf.cast::<u8>(), len, "the PNG") }
    })
}

/// A self-contained HTML page (UTF-8, NUL-terminated) showing the explanation: the token strip,
/// one candidate table per step and the attention heatmap, headed by `title` (NUL-terminated
/// UTF-8, e.g. the model's file name; NULL = none).
///
/// Returns the length written (without the NUL); -(bytes needed, with the NUL) if `len` is too
/// small (nothing written); LLM_FAILED otherwise (LLM_ERR_NULL, LLM_ERR_INVALID_UTF8).
///
/// # Safety
/// `explanation` is NULL or live; `title` is NULL or NUL-terminated; `buf` is NULL or has `len`
/// writable bytes.
#[no_mangle]
pub unsafe extern "C" fn llm_explanation_html(
    explanation: *const llm_explanation,
    title: *const c_char,
    buf: *mut c_char,
    len: usize,
) -> i32 {
    guard_count(|| {
        // SAFETY: forwarded from this function's contract.
        let e = &unsafe { as_ref(explanation, "explanation") }?.explanation;
        let title = if title.is_null() {
            ""
        } else {
            // SAFETY: as above.
            unsafe { c_str(title, "title") }?
        };
        let html = e.to_html(title)?;
        // SAFETY: as above.
        unsafe { write_string(html.as_bytes(), buf, len, "the HTML page") }
    })
}
