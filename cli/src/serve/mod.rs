//! `llmrt serve`: an OpenAI-compatible HTTP server over one model. Requests become generations
//! of one [`Batcher`], whose engine decodes every running generation in one forward pass per
//! step on threads of its own; handlers (on tokio) talk to it through channels. A generation's
//! text does not depend on what else is being served.

mod api;
mod error;
mod metrics;
mod tools;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use llmrt::chat::ChatTemplate;
use llmrt::lora::ActiveLora;
use llmrt::{Batcher, EngineParams, Model, ModelParams};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use tower_http::limit::RequestBodyLimitLayer;

use error::ApiError;
use metrics::Metrics;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The GGUF model file.
    #[arg(short, long)]
    pub model: PathBuf,
    /// Address to listen on (loopback unless told otherwise).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Generations decoded together (slots); more requests wait in the queue. `-np` as in
    /// llama-server.
    #[arg(long = "parallel", default_value_t = 4)]
    pub parallel: usize,
    /// Most tokens a completion generates when the request does not say (-1 = until the
    /// context is full).
    #[arg(short = 'n', long = "n-predict", default_value_t = -1, allow_negative_numbers = true)]
    pub n_predict: i64,
    /// Most tokens one request holds, prompt and completion (0 = the model's trained context,
    /// capped at 4096).
    #[arg(short = 'c', long = "ctx-size", default_value_t = 0)]
    pub ctx_size: usize,
    /// Worker threads of the engine (default: the number of cores).
    #[arg(short = 't', long, default_value_t = 0)]
    pub threads: usize,
    /// Requests that may wait for a slot; beyond them the server answers 503.
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// Require `Authorization: Bearer KEY` on every endpoint but /health.
    #[arg(long = "api-key", env = "LLMRT_API_KEY")]
    pub api_key: Option<String>,
    /// The model's name in the API (default: the file name without `.gguf`).
    #[arg(short = 'a', long)]
    pub alias: Option<String>,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 8 << 20)]
    pub max_body: usize,
    /// A LoRA adapter (GGUF) applied to every request at scale 1 (repeatable).
    #[arg(long = "lora", value_name = "FILE")]
    pub lora: Vec<PathBuf>,
    /// A LoRA adapter applied to every request at this scale (repeatable).
    #[arg(long = "lora-scaled", num_args = 2, value_names = ["FILE", "SCALE"])]
    pub lora_scaled: Vec<String>,
}

/// What the handlers share.
pub(crate) struct AppState {
    /// Set once the model is loaded; until then, every endpoint but /health answers 503.
    ready: OnceLock<Ready>,
    /// Why loading failed, if it did.
    load_error: OnceLock<String>,
    alias: String,
    api_key: Option<String>,
    /// `max_tokens` of requests that do not give one (0 = until the context is full).
    default_max_tokens: usize,
    /// One permit per slot: a request holds one while its generation runs.
    slots: Arc<Semaphore>,
    n_slots: usize,
    /// Requests waiting for a slot, and how many may.
    waiting: AtomicUsize,
    queue: usize,
    metrics: Metrics,
    next_id: AtomicU64,
    started: u64,
}

/// The loaded model and its batcher.
pub(crate) struct Ready {
    model: Arc<Model>,
    batcher: Batcher,
    template: Result<ChatTemplate, String>,
    /// Embeddings and explanations run one at a time in a session of their own.
    side: std::sync::Mutex<llmrt::Session>,
    pooling: Result<llmrt::embed::Pooling, String>,
    /// The adapters every request runs with, ids in this order (`GET /lora-adapters`).
    loras: Vec<ActiveLora>,
}

impl AppState {
    fn ready(&self) -> Result<&Ready, ApiError> {
        match (self.ready.get(), self.load_error.get()) {
            (Some(ready), _) => Ok(ready),
            (None, Some(e)) => Err(ApiError::unavailable(format!(
                "the model failed to load: {e}"
            ))),
            (None, None) => Err(ApiError::unavailable("Loading model")),
        }
    }

    /// A new response id: unique within this process, distinct across restarts.
    fn response_id(&self, prefix: &str) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}-{:x}{n:06x}", self.started)
    }

    /// Waits for a free slot, or refuses when the queue is full. The permit frees the slot when
    /// dropped (the generation ended, or its client went away).
    async fn slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.queue {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::queue_full());
        }
        let permit = self.slots.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        permit.map_err(|_| ApiError::unavailable("the server is shutting down"))
    }
}

pub fn run(args: Args) -> llmrt::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| llmrt::Error::Internal(format!("cannot start the HTTP runtime: {e}")))?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> llmrt::Result<()> {
    let alias = args.alias.clone().unwrap_or_else(|| {
        args.model
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into())
    });
    let n_slots = args.parallel.max(1);
    let state = Arc::new(AppState {
        ready: OnceLock::new(),
        load_error: OnceLock::new(),
        alias,
        api_key: args.api_key.clone().filter(|k| !k.is_empty()),
        default_max_tokens: usize::try_from(args.n_predict).unwrap_or(0),
        slots: Arc::new(Semaphore::new(n_slots)),
        n_slots,
        waiting: AtomicUsize::new(0),
        queue: args.queue,
        metrics: Metrics::default(),
        next_id: AtomicU64::new(0),
        started: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    });
    let addr: SocketAddr = format!("{}:{}", args.host, args.port)
        .parse()
        .or_else(|_| {
            use std::net::ToSocketAddrs;
            (args.host.as_str(), args.port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or(())
        })
        .map_err(|()| {
            llmrt::Error::InvalidArgument(format!("cannot resolve --host {}", args.host))
        })?;
    // Listen first, so that /health can say "loading" while the model loads.
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| llmrt::Error::io(addr.to_string(), e))?;
    tracing::info!(%addr, model = %args.model.display(), slots = n_slots, "listening");

    let loading = state.clone();
    let load_args = args.clone();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        match load(&load_args, n_slots) {
            Ok(ready) => {
                tracing::info!(
                    seconds = started.elapsed().as_secs_f64(),
                    n_ctx = ready.batcher.n_ctx(),
                    "model loaded"
                );
                let _ = loading.ready.set(ready);
            }
            Err(e) => {
                tracing::error!(error = %e, "the model failed to load");
                let _ = loading.load_error.set(e.to_string());
            }
        }
    });

    let app = router(state.clone(), args.max_body);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down");
        })
        .await
        .map_err(|e| llmrt::Error::io(addr.to_string(), e))
}

fn load(args: &Args, slots: usize) -> llmrt::Result<Ready> {
    let (n_ctx, threads) = (args.ctx_size, args.threads);
    let model = Arc::new(Model::load(&args.model, &ModelParams::default())?);
    let loras = crate::common::load_loras(&args.lora, &args.lora_scaled, &model)?;
    let n_ctx = match n_ctx {
        0 => model.config().n_ctx_train.clamp(1, 4096),
        n => n,
    };
    let batcher = Batcher::with_loras(
        model.clone(),
        &EngineParams {
            n_threads: threads,
            n_ctx,
            // Every slot can hold a full context.
            pool_positions: slots * n_ctx,
            max_decode: slots,
            ..EngineParams::default()
        },
        loras.clone(),
    )?;
    let template = ChatTemplate::from_gguf(model.gguf()).map_err(|e| e.to_string());
    let mut side = llmrt::Session::new(
        model.clone(),
        &llmrt::SessionParams {
            n_ctx,
            n_threads: threads,
            ..llmrt::SessionParams::default()
        },
    )?;
    side.set_loras(loras.clone())?;
    let pooling = llmrt::embed::Pooling::of_file(model.gguf()).map_err(|e| e.to_string());
    Ok(Ready {
        model,
        batcher,
        template,
        side: std::sync::Mutex::new(side),
        pooling,
        loras,
    })
}

fn router(state: Arc<AppState>, max_body: usize) -> Router {
    let api = Router::new()
        .route("/v1/models", get(api::models))
        .route("/v1/completions", post(api::completions))
        .route("/completions", post(api::completions))
        .route("/v1/chat/completions", post(api::chat_completions))
        .route("/chat/completions", post(api::chat_completions))
        .route("/explain", post(api::explain))
        .route("/v1/embeddings", post(api::embeddings))
        .route("/embeddings", post(api::embeddings))
        .route("/tokenize", post(api::tokenize))
        .route("/detokenize", post(api::detokenize))
        .route("/apply-template", post(api::apply_template))
        .route("/lora-adapters", get(api::lora_adapters))
        .route("/metrics", get(metrics::render))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ));
    Router::new()
        .route("/", get(api::page))
        .route("/health", get(api::health))
        .merge(api)
        .fallback(api::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            log_request,
        ))
        .layer(RequestBodyLimitLayer::new(max_body))
        .with_state(state)
}

/// With `--api-key`, a request must carry `Authorization: Bearer KEY`; compared in constant time
/// so that response timing does not leak how much of a guess was right.
async fn require_api_key(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(key) = &state.api_key {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(key.as_bytes())) {
            return Err(ApiError::unauthorized());
        }
    }
    Ok(next.run(request).await)
}

/// One log line per request, with an id that the response carries as `x-request-id`.
async fn log_request(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let started = Instant::now();
    let span = tracing::info_span!("request", id);
    let mut response = next.run(request).await;
    let status = response.status().as_u16();
    state.metrics.count_request(status);
    span.in_scope(|| {
        tracing::info!(
            %method,
            path,
            status,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "request"
        );
    });
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

/// How long a refused request should wait before trying again.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(1);
