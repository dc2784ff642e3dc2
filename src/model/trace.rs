//! Intermediate-tensor tracing for comparing the forward pass with llama.cpp's, step by step
//! (the counterpart of its `cb_eval` callback). Compiled only with the `trace` feature; without
//! it the `trace!` calls in the forward pass expand to nothing.
//!
//! Names follow llama.cpp's graph (`attn_norm`, `Qcur`, `kqv_out`, `ffn_out`, `l_out`, …) so
//! `scripts/compare-llamacpp-trace.py` can pair the two dumps.

use std::sync::RwLock;

/// Receives `(name, layer, values)`; `layer` is `usize::MAX` for tensors outside the layers.
pub type TraceHook = Box<dyn Fn(&str, usize, &[f32]) + Send + Sync>;

static HOOK: RwLock<Option<TraceHook>> = RwLock::new(None);

/// Installs (or with `None` removes) the process-wide trace hook.
pub fn set_hook(hook: Option<TraceHook>) {
    if let Ok(mut h) = HOOK.write() {
        *h = hook;
    }
}

/// Hands one tensor to the hook, if one is installed.
pub fn emit(name: &str, layer: usize, values: &[f32]) {
    if let Ok(h) = HOOK.read() {
        if let Some(f) = h.as_ref() {
            f(name, layer, values);
        }
    }
}
