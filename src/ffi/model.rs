//! Models: loading, facts and metadata, and the tokenizer.

use std::ffi::c_char;
use std::sync::{Arc, OnceLock};

use super::boundary::{free_handle, guard_count, guard_ptr, guard_status, llm_status, FfiError};
use super::convert::{as_mut, as_ref, c_str, slice, str_with_len, write_slice, write_string};
use crate::chat::ChatTemplate;
use crate::gguf::Value;
use crate::{Model, ModelParams};

/// A token id: an index into the model's vocabulary, 0 ≤ id < `llm_model_info_t.n_vocab`.
pub type llm_token = i32;

/// A loaded model: weights (memory-mapped from the file), hyper-parameters, tokenizer and chat
/// template.
///
/// Thread safety: immutable after `llm_load`; every function taking a `const llm_model *` may be
/// called from any number of threads at once.
/// Lifetime: from `llm_load` until `llm_model_free`. Sessions keep their model alive, so the model
/// may be freed before its sessions.
pub struct llm_model {
    pub(crate) shared: Arc<SharedModel>,
}

/// What a model handle and its sessions share.
pub(crate) struct SharedModel {
    pub(crate) model: Arc<Model>,
    /// Built from the file on first use and kept.
    chat_template: OnceLock<ChatTemplate>,
}

// Proof that sharing a model across threads (documented above) is sound.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SharedModel>();
};

impl SharedModel {
    /// The chat template stored in the file.
    pub(crate) fn chat_template(&self) -> Result<&ChatTemplate, FfiError> {
        if let Some(template) = self.chat_template.get() {
            return Ok(template);
        }
        let template = ChatTemplate::from_gguf(self.model.gguf())?;
        // Another thread may have won the race; either template is the same.
        Ok(self.chat_template.get_or_init(|| template))
    }

    /// `token` as a vocabulary index, or `LLM_ERR_INVALID_ARGUMENT`.
    pub(crate) fn check_token(&self, token: llm_token) -> Result<u32, FfiError> {
        let n_vocab = self.model.config().n_vocab;
        u32::try_from(token)
            .ok()
            .filter(|&id| (id as usize) < n_vocab)
            .ok_or_else(|| {
                FfiError::invalid(format!(
                    "token {token} is outside the vocabulary (0..{n_vocab})"
                ))
            })
    }
}

/// Options for `llm_load`. Get the defaults from `llm_model_default_params()` and change fields.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct llm_model_params {
    /// Worker threads for sessions whose `llm_session_params.n_threads` is 0.
    /// 0 = the number of CPU cores.
    pub n_threads: usize,
}

/// Facts about a model, filled by `llm_model_info`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct llm_model_info_t {
    /// `general.architecture`, NUL-terminated: "llama", "qwen2" or "gemma3".
    pub architecture: [c_char; 32],
    /// Weights in all tensors (elements, not bytes).
    pub n_params: u64,
    /// Size of the file in bytes.
    pub file_size: u64,
    /// Logits per position = rows of the output projection; token ids are below this.
    pub n_vocab: usize,
    /// Context length the model was trained with, in tokens.
    pub n_ctx_train: usize,
    /// Width of the residual stream (d_model).
    pub n_embd: usize,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Attention (query) heads.
    pub n_head: usize,
    /// Key/value heads (fewer than `n_head` with grouped-query attention).
    pub n_head_kv: usize,
}

/// The default model options (every field 0 = automatic).
#[no_mangle]
pub extern "C" fn llm_model_default_params() -> llm_model_params {
    llm_model_params { n_threads: 0 }
}

/// Loads the GGUF model at `path` (UTF-8). `params` may be NULL for the defaults.
///
/// Returns the model, or NULL on failure with the reason in `llm_last_status()` /
/// `llm_last_error()`: LLM_ERR_NULL, LLM_ERR_INVALID_UTF8, LLM_ERR_IO (cannot open or map),
/// LLM_ERR_INVALID_GGUF, LLM_ERR_INVALID_MODEL, LLM_ERR_UNSUPPORTED, LLM_ERR_TOKENIZER.
/// Free it with `llm_model_free`.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `params` is NULL or points to an
/// `llm_model_params`.
#[no_mangle]
pub unsafe extern "C" fn llm_load(
    path: *const c_char,
    params: *const llm_model_params,
) -> *mut llm_model {
    guard_ptr(|| {
        // SAFETY: forwarded from this function's contract.
        let path = unsafe { c_str(path, "path") }?;
        // SAFETY: as above.
        let params = unsafe { params.as_ref() }
            .copied()
            .unwrap_or_else(|| llm_model_default_params());
        let model = Model::load(
            path,
            &ModelParams {
                n_threads: params.n_threads,
            },
        )?;
        let handle = llm_model {
            shared: Arc::new(SharedModel {
                model: Arc::new(model),
                chat_template: OnceLock::new(),
            }),
        };
        Ok(Box::into_raw(Box::new(handle)))
    })
}

/// Frees a model from `llm_load`. NULL is a no-op. Sessions created from it stay valid.
/// The model must not be in use by another thread.
///
/// # Safety
/// `model` is NULL or a pointer from `llm_load` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn llm_model_free(model: *mut llm_model) {
    // SAFETY: forwarded from this function's contract: the pointer is NULL or came from
    // Box::into_raw in llm_load, and is freed only here.
    unsafe { free_handle(model) };
}

/// Fills `*out` with facts about the model.
///
/// Returns LLM_OK, or LLM_ERR_NULL.
///
/// # Safety
/// `model` is NULL or a live model; `out` is NULL or points to writable memory for one
/// `llm_model_info_t`.
#[no_mangle]
pub unsafe extern "C" fn llm_model_info(
    model: *const llm_model,
    out: *mut llm_model_info_t,
) -> llm_status {
    guard_status(|| {
        // SAFETY: forwarded from this function's contract.
        let model = &unsafe { as_ref(model, "model") }?.shared.model;
        // SAFETY: as above.
        let out = unsafe { as_mut(out, "out") }?;
        let c = model.config();
        let mut architecture = [0 as c_char; 32];
        // Architecture names are short ASCII; the last byte stays the NUL.
        for (dst, src) in architecture.iter_mut().zip(c.arch.name().bytes().take(31)) {
            *dst = src as c_char;
        }
        *out = llm_model_info_t {
            architecture,
            n_params: model.n_params(),
            file_size: model.gguf().file_size() as u64,
            n_vocab: c.n_vocab,
            n_ctx_train: c.n_ctx_train,
            n_embd: c.n_embd,
            n_layer: c.n_layer,
            n_head: c.n_head,
            n_head_kv: c.n_head_kv,
        };
        Ok(())
    })
}

/// A metadata value as text: strings as they are, numbers and booleans in decimal, arrays in full
/// as `[a, b, …]` with string elements JSON-quoted.
fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(_, items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|item| match item {
                    Value::String(s) => serde_json::Value::from(s.as_str()).to_string(),
                    other => value_text(other),
                })
                .collect();
            format!("[{}]", parts.join(", "))
        }
        scalar => scalar.to_string(),
    }
}

/// Writes the metadata value of `key` (e.g. "general.name", "llama.context_length") as text into
/// `buf` of `len` bytes, NUL-terminated. Strings come as they are, numbers in decimal, booleans as
/// "true"/"false", arrays as "[a, b, …]" (complete; string elements JSON-quoted).
///
/// Returns the length written (without the NUL); -(bytes needed, with the NUL) if `len` is too
/// small (nothing written; `buf` may be NULL with `len` 0 to ask); LLM_FAILED otherwise, with
/// `llm_last_status()` LLM_ERR_NULL, LLM_ERR_INVALID_UTF8 or LLM_ERR_NOT_FOUND.
///
/// # Safety
/// `model` is NULL or a live model; `key` is NULL or NUL-terminated; `buf` is NULL or has `len`
/// writable bytes.
#[no_mangle]
pub unsafe extern "C" fn llm_model_meta(
    model: *const llm_model,
    key: *const c_char,
    buf: *mut c_char,
    len: usize,
) -> i32 {
    guard_count(|| {
        // SAFETY: forwarded from this function's contract.
        let model = &unsafe { as_ref(model, "model") }?.shared.model;
        // SAFETY: as above.
        let key = unsafe { c_str(key, "key") }?;
        let value = model.gguf().get(key).ok_or_else(|| {
            FfiError::new(
                llm_status::LLM_ERR_NOT_FOUND,
                format!("metadata key `{key}` is not in the file"),
            )
        })?;
        // SAFETY: forwarded from this function's contract.
        unsafe { write_string(value_text(value).as_bytes(), buf, len, "the value") }
    })
}

/// The number of metadata entries in the model's file, or LLM_FAILED (LLM_ERR_NULL).
///
/// # Safety
/// `model` is NULL or a live model.
#[no_mangle]
pub unsafe extern "C" fn llm_model_meta_count(model: *const llm_model) -> i32 {
    guard_count(|| {
        // SAFETY: forwarded from this function's contract.
        let model = &unsafe { as_ref(model, "model") }?.shared.model;
        Ok(model.gguf().metadata().len())
    })
}

/// Writes the key of metadata entry `i` (0 ≤ i < `llm_model_meta_count`) into `buf`, like
/// `llm_model_meta`. LLM_FAILED with LLM_ERR_INVALID_ARGUMENT when `i` is out of range.
///
/// # Safety
/// `model` is NULL or a live model; `buf` is NULL or has `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn llm_model_meta_key(
    model: *const llm_model,
    i: i32,
    buf: *mut c_char,
    len: usize,
) -> i32 {
    guard_count(|| {
        // SAFETY: forwarded from this function's contract.
        let model = &unsafe { as_ref(model, "model") }?.shared.model;
        let metadata = model.gguf().metadata();
        let (key, _) = usize::try_from(i)
            .ok()
            .and_then(|i| metadata.get(i))
            .ok_or_else(|| {
                FfiError::invalid(format!(
                    "metadata index {i} is out of range (0..{})",
                    metadata.len()
                ))
            })?;
        // SAFETY: forwarded from this function's contract.
        unsafe { write_string(key.as_bytes(), buf, len, "the key") }
    })
}

/// Logits per position (the vocabulary size), or LLM_FAILED (LLM_ERR_NULL).
///
/// # Safety
/// `model` is NULL or a live model.
#[no_mangle]
pub unsafe extern "C" fn llm_n_vocab(model: *const llm_model) -> i32 {
    guard_count(|| {
        // SAFETY: forwarded from this function's contract.
        Ok(unsafe { as_ref(model, "model") }?
            .shared
            .model
            .config()
            .n_vocab)
    })
}

/// Converts `len` bytes of UTF-8 `text` (no NUL needed) to token ids in `tokens` (room for `max`).
/// `add_special`: add BOS/EOS as the model's metadata asks. `parse_special`: treat special-token
/// text such as "<|im_start|>" as those tokens rather than as plain text.
///
/// Returns the number of tokens; -(tokens needed) if `max` is too small (nothing written;
/// `tokens` may be NULL with `max` 0 to ask); LLM_FAILED otherwise (LLM_ERR_NULL,
/// LLM_ERR_INVALID_UTF8, LLM_ERR_TOKENIZER).
///
/// # Safety
/// `model` is NULL or a live model; `text` is NULL or has `len` readable bytes; `tokens` is NULL
/// or has room for `max` tokens.
#[no_mangle]
pub unsafe extern "C" fn llm_tokenize(
    model: *const llm_model,
    text: *const c_char,
    len: usize,
    add_special: bool,
    parse_special: bool,
    tokens: *mut llm_token,
    max: usize,
) -> i32 {
    guard_count(|| {
        // SAFETY: forwarded from this function's contract.
        let model = &unsafe { as_ref(model, "model") }?.shared.model;
        if text.is_null() {
            return Err(FfiError::null("text"));
        }
        // SAFETY: as above.
        let text = unsafe { str_with_len(text, len, "text") }?;
        let ids = model.tokenizer().encode(text, add_special, parse_special)?;
        let ids: Vec<llm_token> = ids
            .into_iter()
            .map(|id| {
                llm_token::try_from(id)
                    .map_err(|_| FfiError::invalid(format!("token id {id} exceeds int32_t")))
            })
            .collect::<Result<_, _>>()?;
        // SAFETY: as above.
        unsafe { write_slice(&ids, tokens, max, "the tokens") }
    })
}

/// Converts `n` token ids back to text, written NUL-terminated into `buf` of `len` bytes.
///
/// Returns the length written (without the NUL); -(bytes needed, with the NUL) if `len` is too
/// small (nothing written); LLM_FAILED otherwise (LLM_ERR_NULL, LLM_ERR_INVALID_ARGUMENT for an id
/// outside the vocabulary).
///
/// # Safety
/// `model` is NULL or a live model; `tokens` is NULL or has `n` readable ids; `buf` is NULL or
/// has `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn llm_detokenize(
    model: *const llm_model,
    tokens: *const llm_token,
    n: usize,
    buf: *mut c_char,
    len: usize,
) -> i32 {
    guard_count(|| {
        // SAFETY: forwarded from this function's contract.
        let shared = &unsafe { as_ref(model, "model") }?.shared;
        // SAFETY: as above.
        let tokens = unsafe { slice(tokens, n, "tokens") }?;
        let ids = tokens
            .iter()
            .map(|&t| shared.check_token(t))
            .collect::<Result<Vec<u32>, _>>()?;
        let text = shared.model.tokenizer().decode(&ids);
        // SAFETY: as above.
        unsafe { write_string(text.as_bytes(), buf, len, "the text") }
    })
}

/// Writes the bytes one token stands for into `buf`, NUL-terminated. A piece may be an incomplete
/// UTF-8 sequence (byte tokens); concatenate pieces before treating them as text.
///
/// Returns the number of bytes (without the NUL); -(bytes needed, with the NUL) if `len` is too
/// small; LLM_FAILED otherwise (LLM_ERR_NULL, LLM_ERR_INVALID_ARGUMENT).
///
/// # Safety
/// `model` is NULL or a live model; `buf` is NULL or has `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn llm_token_to_piece(
    model: *const llm_model,
    token: llm_token,
    buf: *mut c_char,
    len: usize,
) -> i32 {
    guard_count(|| {
        // SAFETY: forwarded from this function's contract.
        let shared = &unsafe { as_ref(model, "model") }?.shared;
        let id = shared.check_token(token)?;
        let piece = shared.model.tokenizer().token_to_piece(id);
        // SAFETY: as above.
        unsafe { write_string(&piece, buf, len, "the piece") }
    })
}
