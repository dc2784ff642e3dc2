//! Counters and histograms of the server, rendered in Prometheus' text format at /metrics.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;

/// A histogram with fixed bucket bounds (seconds).
struct Histogram {
    bounds: &'static [f64],
    /// Observations at most `bounds[i]`, per bucket (not cumulative), then the count above.
    counts: Vec<u64>,
    sum: f64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    fn observe(&mut self, seconds: f64) {
        let i = self
            .bounds
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.sum += seconds;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.counts[self.bounds.len()];
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

const FIRST_TOKEN_BOUNDS: &[f64] = &[0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
const INTER_TOKEN_BOUNDS: &[f64] = &[0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28];

pub(crate) struct Metrics {
    requests: AtomicU64,
    /// Responses with a 4xx or 5xx status.
    errors: AtomicU64,
    prompt_tokens: AtomicU64,
    generated_tokens: AtomicU64,
    cached_tokens: AtomicU64,
    generations: AtomicU64,
    cancelled: AtomicU64,
    timings: Arc<Mutex<(Histogram, Histogram)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            generated_tokens: AtomicU64::new(0),
            cached_tokens: AtomicU64::new(0),
            generations: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            timings: Arc::new(Mutex::new((
                Histogram::new(FIRST_TOKEN_BOUNDS),
                Histogram::new(INTER_TOKEN_BOUNDS),
            ))),
        }
    }
}

impl Metrics {
    pub(crate) fn count_request(&self, status: u16) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 400 {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A finished (or cancelled) generation's counts.
    pub(crate) fn count_generation(
        &self,
        prompt: usize,
        cached: usize,
        generated: usize,
        cancelled: bool,
    ) {
        self.generations.fetch_add(1, Ordering::Relaxed);
        self.prompt_tokens
            .fetch_add(prompt as u64, Ordering::Relaxed);
        self.cached_tokens
            .fetch_add(cached as u64, Ordering::Relaxed);
        self.generated_tokens
            .fetch_add(generated as u64, Ordering::Relaxed);
        if cancelled {
            self.cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn first_token(&self, after: Duration) {
        let mut t = self.timings.lock().unwrap_or_else(|e| e.into_inner());
        t.0.observe(after.as_secs_f64());
    }

    pub(crate) fn inter_token(&self, after: Duration) {
        let mut t = self.timings.lock().unwrap_or_else(|e| e.into_inner());
        t.1.observe(after.as_secs_f64());
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

pub(crate) async fn render(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let m = &state.metrics;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::new();
    counter(
        &mut out,
        "llmrt_requests_total",
        "HTTP requests answered.",
        load(&m.requests),
    );
    counter(
        &mut out,
        "llmrt_request_errors_total",
        "HTTP responses with a 4xx or 5xx status.",
        load(&m.errors),
    );
    counter(
        &mut out,
        "llmrt_generations_total",
        "Generations finished or cancelled.",
        load(&m.generations),
    );
    counter(
        &mut out,
        "llmrt_generations_cancelled_total",
        "Generations whose client went away.",
        load(&m.cancelled),
    );
    counter(
        &mut out,
        "llmrt_prompt_tokens_total",
        "Prompt tokens of generations.",
        load(&m.prompt_tokens),
    );
    counter(
        &mut out,
        "llmrt_prompt_tokens_cached_total",
        "Prompt tokens taken from the KV pool instead of computed.",
        load(&m.cached_tokens),
    );
    counter(
        &mut out,
        "llmrt_generated_tokens_total",
        "Tokens generated.",
        load(&m.generated_tokens),
    );
    {
        let t = m.timings.lock().unwrap_or_else(|e| e.into_inner());
        t.0.render(
            &mut out,
            "llmrt_time_to_first_token_seconds",
            "From the request to its first piece of text.",
        );
        t.1.render(
            &mut out,
            "llmrt_inter_token_seconds",
            "Between consecutive pieces of text of a generation.",
        );
    }
    let busy = state.n_slots - state.slots.available_permits().min(state.n_slots);
    gauge(
        &mut out,
        "llmrt_slots_total",
        "Generations that may run at once.",
        state.n_slots as u64,
    );
    gauge(
        &mut out,
        "llmrt_slots_busy",
        "Generations running.",
        busy as u64,
    );
    gauge(
        &mut out,
        "llmrt_queue_depth",
        "Requests waiting for a slot.",
        state.waiting.load(Ordering::Relaxed) as u64,
    );
    if let Some(ready) = state.ready.get() {
        let status = ready.batcher.status();
        gauge(
            &mut out,
            "llmrt_kv_pool_blocks_total",
            "Blocks of the shared KV pool.",
            status.pool.total as u64,
        );
        gauge(
            &mut out,
            "llmrt_kv_pool_blocks_free",
            "Blocks of the KV pool no sequence holds.",
            status.pool.free as u64,
        );
        gauge(
            &mut out,
            "llmrt_kv_pool_block_positions",
            "Positions per KV block.",
            status.pool.block_positions as u64,
        );
        gauge(
            &mut out,
            "llmrt_engine_sequences",
            "Sequences in the engine.",
            status.running as u64,
        );
    }
    gauge(
        &mut out,
        "llmrt_ready",
        "1 once the model is loaded.",
        u64::from(state.ready.get().is_some()),
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}
