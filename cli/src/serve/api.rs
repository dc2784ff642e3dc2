//! The endpoints: OpenAI's completions, chat completions and models, llama-server's tokenize,
//! detokenize and apply-template, and readiness.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::Uri;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use llmrt::batcher::CancelHandle;
use llmrt::chat::ChatTemplate;
use llmrt::constrain::Constraint;
use llmrt::generate::{self, GenerateParams, Generation, StopReason, TokenLogprobs};
use llmrt::lora::ActiveLora;
use llmrt::sample::SamplerParams;
use llmrt::tools::{self, ToolUse};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::error::ApiError;
use super::tools::{self as tool_fields, StreamedReply, ToolFields};
use super::{AppState, Ready};

/// Parses a JSON body into `T`, with serde's message (which names the field and the type it
/// wanted) for anything that does not fit.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) async fn health(State(state): State<Arc<AppState>>) -> Response {
    match state.ready() {
        Ok(_) => Json(json!({"status": "ok"})).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The web page: a streaming chat and the explain view, one self-contained file.
pub(crate) async fn page() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("page.html"))
}

#[derive(Deserialize)]
struct ExplainRequest {
    prompt: String,
    n_steps: Option<usize>,
    top_k: Option<usize>,
    layer: Option<usize>,
    head: Option<usize>,
}

/// What the model did with a prompt: its tokens, each step's candidates and one layer's
/// attention (`llmrt explain`'s JSON).
pub(crate) async fn explain(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: ExplainRequest = parse(&body)?;
    let ready = state.ready()?;
    let c = ready.model.config();
    let defaults = llmrt::explain::ExplainParams::default();
    let params = llmrt::explain::ExplainParams {
        n_steps: request.n_steps.unwrap_or(defaults.n_steps).clamp(1, 64),
        top_k: request.top_k.unwrap_or(defaults.top_k).clamp(1, 20),
        layer: request.layer,
        head: request.head,
        ..defaults
    };
    if request.layer.is_some_and(|l| l >= c.n_layer) || request.head.is_some_and(|h| h >= c.n_head)
    {
        return Err(ApiError::invalid(format!(
            "the model has {} layers of {} heads",
            c.n_layer, c.n_head
        )));
    }
    if request.prompt.is_empty() {
        return Err(ApiError::invalid_param("prompt", "the prompt is empty"));
    }
    let n_ctx = ready.batcher.n_ctx();
    let worker = state.clone();
    let explanation = tokio::task::spawn_blocking(move || -> Result<Value, ApiError> {
        let ready = worker.ready()?;
        let mut session = ready.side.lock().unwrap_or_else(|e| e.into_inner());
        let n_prompt = ready
            .model
            .tokenizer()
            .encode(&request.prompt, true, false)?
            .len();
        if n_prompt + params.n_steps > n_ctx {
            return Err(ApiError::context_length(format!(
                "the prompt has {n_prompt} tokens; with {} steps the context of {n_ctx} overflows",
                params.n_steps
            )));
        }
        let e = llmrt::explain::explain(&mut session, &request.prompt, &params)?;
        session.reset();
        serde_json::to_value(&e).map_err(|e| ApiError::internal(e.to_string()))
    })
    .await
    .map_err(|e| ApiError::internal(format!("the explain task failed: {e}")))??;
    Ok(Json(explanation))
}

/// llama-server's `GET /lora-adapters`: the adapters every request runs with.
pub(crate) async fn lora_adapters(
    State(state): State<Arc<AppState>>,
) -> Result<Json<Value>, ApiError> {
    let ready = state.ready()?;
    let list: Vec<Value> = ready
        .loras
        .iter()
        .enumerate()
        .map(|(id, l)| json!({"id": id, "path": l.adapter.path(), "scale": l.scale}))
        .collect();
    Ok(Json(Value::Array(list)))
}

pub(crate) async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(uri.path())
}

pub(crate) async fn models(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let ready = state.ready()?;
    let c = ready.model.config();
    Ok(Json(json!({
        "object": "list",
        "data": [{
            "id": state.alias,
            "object": "model",
            "created": state.started,
            "owned_by": "llmrt",
            "meta": {
                "n_ctx": ready.batcher.n_ctx(),
                "n_ctx_train": c.n_ctx_train,
                "n_vocab": c.n_vocab,
                "n_embd": c.n_embd,
            },
        }],
    })))
}

/// A string or a list of them (`stop`).
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// The sampling and stopping fields common to completions and chat completions.
#[derive(Deserialize, Default)]
struct Sampling {
    max_tokens: Option<i64>,
    max_completion_tokens: Option<i64>,
    /// llama-server's name for `max_tokens`.
    n_predict: Option<i64>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<i64>,
    min_p: Option<f32>,
    seed: Option<u64>,
    stop: Option<OneOrMany>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    repeat_penalty: Option<f32>,
    repeat_last_n: Option<i64>,
    logit_bias: Option<HashMap<String, f32>>,
    n: Option<i64>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    model: Option<String>,
    /// OpenAI's structured output: `{"type": "json_object"}` or
    /// `{"type": "json_schema", "json_schema": {"schema": …}}`.
    response_format: Option<ResponseFormat>,
    /// llama-server's fields: a JSON schema, or a grammar (GBNF, or Lark after `%llguidance`).
    json_schema: Option<Value>,
    grammar: Option<String>,
    /// A regular expression the whole completion matches.
    regex: Option<String>,
    /// llama-server's per-request adapter scales: `[{"id", "scale"}]`, unlisted adapters at 0.
    lora: Option<Vec<LoraScale>>,
}

#[derive(Deserialize)]
struct LoraScale {
    id: usize,
    scale: f32,
}

#[derive(Deserialize)]
struct ResponseFormat {
    #[serde(rename = "type")]
    kind: String,
    json_schema: Option<JsonSchemaFormat>,
    /// llama-server accepts the schema here too.
    schema: Option<Value>,
}

#[derive(Deserialize)]
struct JsonSchemaFormat {
    schema: Option<Value>,
}

#[derive(Deserialize, Default)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

impl Sampling {
    /// The generation parameters, every field checked.
    fn params(
        &self,
        state: &AppState,
        n_vocab: usize,
        top_logprobs: Option<usize>,
    ) -> Result<GenerateParams, ApiError> {
        let defaults = SamplerParams::default();
        let unit = |name: &str, v: Option<f32>, default: f32| match v {
            None => Ok(default),
            Some(v) if (0.0..=1.0).contains(&v) => Ok(v),
            Some(v) => Err(ApiError::invalid_param(
                name,
                format!("{name} must be in [0, 1], got {v}"),
            )),
        };
        let finite = |name: &str, v: Option<f32>, default: f32, min: f32| match v {
            None => Ok(default),
            Some(v) if v.is_finite() && v >= min => Ok(v),
            Some(v) => Err(ApiError::invalid_param(
                name,
                format!("{name} must be a number ≥ {min}, got {v}"),
            )),
        };
        if let Some(n) = self.n.filter(|&n| n != 1) {
            return Err(ApiError::invalid_param(
                "n",
                format!("n must be 1 (one choice per prompt), got {n}"),
            ));
        }
        let max_tokens = match self
            .max_completion_tokens
            .or(self.max_tokens)
            .or(self.n_predict)
        {
            None => state.default_max_tokens,
            Some(-1) => 0,
            Some(n) if n >= 0 => n as usize,
            Some(n) => {
                return Err(ApiError::invalid_param(
                    "max_tokens",
                    format!("max_tokens must be ≥ 0 (or -1 for no limit), got {n}"),
                ))
            }
        };
        let top_k = match self.top_k {
            None => defaults.top_k,
            Some(k) if k >= 0 => k as usize,
            Some(k) => {
                return Err(ApiError::invalid_param(
                    "top_k",
                    format!("top_k must be ≥ 0, got {k}"),
                ))
            }
        };
        let penalty_last_n = match self.repeat_last_n {
            None => defaults.penalty_last_n,
            Some(n) if n >= 0 => n as usize,
            Some(n) => {
                return Err(ApiError::invalid_param(
                    "repeat_last_n",
                    format!("repeat_last_n must be ≥ 0, got {n}"),
                ))
            }
        };
        let mut logit_bias = Vec::new();
        for (key, &bias) in self.logit_bias.iter().flatten() {
            let id = key
                .parse::<u32>()
                .ok()
                .filter(|&id| (id as usize) < n_vocab)
                .ok_or_else(|| {
                    ApiError::invalid_param(
                        "logit_bias",
                        format!("logit_bias key `{key}` is not a token id below {n_vocab}"),
                    )
                })?;
            if !bias.is_finite() {
                return Err(ApiError::invalid_param(
                    "logit_bias",
                    format!("logit_bias of {key} is not a number"),
                ));
            }
            logit_bias.push((id, bias));
        }
        let stop = match &self.stop {
            None => Vec::new(),
            Some(OneOrMany::One(s)) => vec![s.clone()],
            Some(OneOrMany::Many(v)) => v.clone(),
        };
        Ok(GenerateParams {
            max_tokens,
            sampler: SamplerParams {
                temperature: finite("temperature", self.temperature, defaults.temperature, 0.0)?,
                top_k,
                top_p: unit("top_p", self.top_p, defaults.top_p)?,
                min_p: unit("min_p", self.min_p, defaults.min_p)?,
                repeat_penalty: finite(
                    "repeat_penalty",
                    self.repeat_penalty,
                    defaults.repeat_penalty,
                    f32::MIN_POSITIVE,
                )?,
                frequency_penalty: finite("frequency_penalty", self.frequency_penalty, 0.0, -2.0)?,
                presence_penalty: finite("presence_penalty", self.presence_penalty, 0.0, -2.0)?,
                penalty_last_n,
                logit_bias,
                seed: self.seed.unwrap_or(defaults.seed),
            },
            stop: stop.into_iter().filter(|s| !s.is_empty()).collect(),
            add_special: true,
            parse_special: true,
            top_logprobs,
            constraint: self.constraint()?,
            preserved_tokens: Vec::new(),
            loras: None,
        })
    }

    /// The constraint the request asks for, if any (at most one).
    fn constraint(&self) -> Result<Option<Constraint>, ApiError> {
        let mut found = Vec::new();
        if let Some(f) = &self.response_format {
            match (f.kind.as_str(), &f.json_schema, &f.schema) {
                ("text", _, _) => {}
                ("json_object", _, None) => found.push(Constraint::JsonObject),
                ("json_object", _, Some(schema)) => {
                    found.push(Constraint::JsonSchema(schema.clone()))
                }
                (
                    "json_schema",
                    Some(JsonSchemaFormat {
                        schema: Some(schema),
                    }),
                    _,
                )
                | ("json_schema", _, Some(schema)) => {
                    found.push(Constraint::JsonSchema(schema.clone()))
                }
                ("json_schema", _, None) => {
                    return Err(ApiError::invalid_param(
                        "response_format",
                        "response_format of type json_schema needs json_schema.schema",
                    ))
                }
                (other, _, _) => {
                    return Err(ApiError::invalid_param(
                        "response_format",
                        format!(
                        "response_format type `{other}` is not text, json_object or json_schema"
                    ),
                    ))
                }
            }
        }
        if let Some(schema) = &self.json_schema {
            found.push(Constraint::JsonSchema(schema.clone()));
        }
        if let Some(grammar) = &self.grammar {
            match grammar.trim_start().strip_prefix("%llguidance") {
                // llama.cpp's form: `%llguidance {}` (options, which we do not take), then
                // the grammar on the next lines.
                Some(rest) => {
                    let (first, after) = rest.split_once('\n').unwrap_or((rest, ""));
                    let lark = if first.trim().starts_with('{') {
                        after
                    } else {
                        rest
                    };
                    found.push(Constraint::Lark(lark.to_string()))
                }
                // As llama-server: otherwise the grammar is GBNF.
                None => found.push(Constraint::Gbnf(grammar.clone())),
            }
        }
        if let Some(rx) = &self.regex {
            found.push(Constraint::Regex(rx.clone()));
        }
        if found.len() > 1 {
            return Err(ApiError::invalid(
                "give one of response_format, json_schema, grammar and regex",
            ));
        }
        Ok(found.pop())
    }

    /// The adapters a request's `lora` asks for, as llama-server reads it: the server's
    /// adapters by id, each at the scale given, those not listed at 0 (left out). `None`: the
    /// server's own scales. Requests with different adapters decode in the same engine steps.
    fn loras(&self, ready: &Ready) -> Result<Option<Vec<ActiveLora>>, ApiError> {
        let Some(asked) = &self.lora else {
            return Ok(None);
        };
        let mut loras: Vec<ActiveLora> = ready
            .loras
            .iter()
            .map(|l| ActiveLora {
                scale: 0.0,
                ..l.clone()
            })
            .collect();
        for l in asked {
            if !l.scale.is_finite() {
                return Err(ApiError::invalid_param(
                    "lora",
                    format!("the scale of adapter {} is {}", l.id, l.scale),
                ));
            }
            let lora = loras.get_mut(l.id).ok_or_else(|| {
                ApiError::invalid_param(
                    "lora",
                    format!(
                        "no LoRA adapter has id {} (GET /lora-adapters lists them)",
                        l.id
                    ),
                )
            })?;
            lora.scale = l.scale;
        }
        Ok(Some(loras))
    }

    fn check_model(&self, state: &AppState) -> Result<(), ApiError> {
        match &self.model {
            Some(m) if !m.is_empty() && *m != state.alias => Err(ApiError::model_not_found(m)),
            _ => Ok(()),
        }
    }

    fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage)
    }
}

/// What a generation sends from the batcher's worker to its handler.
enum Event {
    Piece(String),
    Done(llmrt::Result<Generation>),
}

/// A running generation: its events, its slot, and what it measures. Dropping it (the client
/// went away) cancels the generation, which then leaves the engine at its next step.
struct Running {
    events: mpsc::UnboundedReceiver<Event>,
    cancel: CancelHandle,
    _slot: OwnedSemaphorePermit,
    state: Arc<AppState>,
    submitted: Instant,
    last_piece: Option<Instant>,
    finished: bool,
}

impl Running {
    async fn start(
        state: &Arc<AppState>,
        prompt: Vec<u32>,
        params: GenerateParams,
    ) -> Result<Running, ApiError> {
        let ready = state.ready()?;
        let n_ctx = ready.batcher.n_ctx();
        if prompt.len() >= n_ctx {
            return Err(ApiError::context_length(format!(
                "the prompt has {} tokens; the context holds {n_ctx}, prompt and completion",
                prompt.len()
            )));
        }
        if let Some(constraint) = params.constraint.clone() {
            // A constraint that does not compile is the request's fault: say so before it
            // takes a slot (the first use also builds the model's vocabulary, off the runtime).
            let model = ready.model.clone();
            tokio::task::spawn_blocking(move || -> llmrt::Result<()> {
                llmrt::constrain::Guide::new(model.constraint_vocabulary()?, &constraint).map(drop)
            })
            .await
            .map_err(|e| ApiError::internal(format!("the constraint check failed: {e}")))??;
        }
        let slot = state.slot().await?;
        let submitted = Instant::now();
        let (events, receiver) = mpsc::unbounded_channel();
        let done = events.clone();
        let cancel = ready.batcher.submit(
            prompt,
            params,
            Box::new(move |piece: &str| events.send(Event::Piece(piece.to_string())).is_ok()),
            Box::new(move |result| {
                let _ = done.send(Event::Done(result));
            }),
        )?;
        Ok(Running {
            events: receiver,
            cancel,
            _slot: slot,
            state: state.clone(),
            submitted,
            last_piece: None,
            finished: false,
        })
    }

    /// The next event; timings go to the metrics.
    async fn next(&mut self) -> Option<Event> {
        let event = self.events.recv().await?;
        match &event {
            Event::Piece(_) => {
                let now = Instant::now();
                match self.last_piece {
                    None => self.state.metrics.first_token(now - self.submitted),
                    Some(last) => self.state.metrics.inter_token(now - last),
                }
                self.last_piece = Some(now);
            }
            Event::Done(result) => {
                self.finished = true;
                if let Ok(g) = result {
                    let s = &g.stats;
                    let cancelled = g.stop_reason == StopReason::Cancelled;
                    self.state.metrics.count_generation(
                        s.prompt_tokens,
                        s.reused_tokens,
                        s.generated_tokens,
                        cancelled,
                    );
                }
            }
        }
        Some(event)
    }

    /// Runs to the end, discarding pieces.
    async fn finish(mut self) -> Result<Generation, ApiError> {
        while let Some(event) = self.next().await {
            if let Event::Done(result) = event {
                return Ok(result?);
            }
        }
        Err(ApiError::internal("the generation ended without a result"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.finished {
            self.cancel.cancel();
            self.state.metrics.count_generation(0, 0, 0, true);
        }
    }
}

fn finish_reason(reason: StopReason) -> &'static str {
    match reason {
        StopReason::MaxTokens | StopReason::ContextFull => "length",
        StopReason::EndOfGeneration | StopReason::StopString | StopReason::Cancelled => "stop",
    }
}

fn usage(prompt_tokens: usize, g: &Generation) -> Value {
    let completion = g.tokens.len();
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": g.stats.reused_tokens},
    })
}

/// The tokens whose log-probabilities are reported: an end-of-generation token is not text.
fn reported_logprobs(g: &Generation) -> &[TokenLogprobs] {
    let n = g.logprobs.len();
    match g.stop_reason {
        StopReason::EndOfGeneration if n > 0 => &g.logprobs[..n - 1],
        _ => &g.logprobs,
    }
}

/// A token's text for the API: its bytes as (lossy) UTF-8, and the bytes themselves.
fn token_text(ready: &Ready, id: u32) -> (String, Vec<u8>) {
    let bytes = ready.model.tokenizer().token_to_piece(id);
    (String::from_utf8_lossy(&bytes).into_owned(), bytes)
}

/// Chat completions' `logprobs.content`.
fn chat_logprobs(ready: &Ready, g: &Generation) -> Value {
    let entry = |id: u32, logprob: f32| {
        let (token, bytes) = token_text(ready, id);
        json!({"token": token, "logprob": logprob, "bytes": bytes})
    };
    let content: Vec<Value> = reported_logprobs(g)
        .iter()
        .map(|t| {
            let mut e = entry(t.token, t.logprob);
            e["top_logprobs"] = t.top.iter().map(|&(id, lp)| entry(id, lp)).collect();
            e
        })
        .collect();
    json!({ "content": content })
}

/// Legacy completions' `logprobs`: parallel lists.
fn completion_logprobs(ready: &Ready, g: &Generation) -> Value {
    let entries = reported_logprobs(g);
    let mut offset = 0;
    let (mut tokens, mut logprobs, mut tops, mut offsets) = (vec![], vec![], vec![], vec![]);
    for t in entries {
        let (text, _) = token_text(ready, t.token);
        offsets.push(offset);
        offset += text.len();
        tokens.push(text);
        logprobs.push(t.logprob);
        let top: serde_json::Map<String, Value> = t
            .top
            .iter()
            .map(|&(id, lp)| (token_text(ready, id).0, json!(lp)))
            .collect();
        tops.push(Value::Object(top));
    }
    json!({"tokens": tokens, "token_logprobs": logprobs, "top_logprobs": tops, "text_offset": offsets})
}

/// A prompt as the completions endpoint takes it.
#[derive(Deserialize)]
#[serde(untagged)]
enum Prompt {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

#[derive(Deserialize)]
struct CompletionRequest {
    prompt: Prompt,
    #[serde(flatten)]
    sampling: Sampling,
    /// The number of alternatives to report per token.
    logprobs: Option<i64>,
    #[serde(default)]
    echo: bool,
}

fn checked_logprobs(n: Option<i64>) -> Result<Option<usize>, ApiError> {
    match n {
        None => Ok(None),
        Some(n) if (0..=20).contains(&n) => Ok(Some(n as usize)),
        Some(n) => Err(ApiError::invalid_param(
            "logprobs",
            format!("logprobs must be in [0, 20], got {n}"),
        )),
    }
}

pub(crate) async fn completions(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: CompletionRequest = parse(&body)?;
    let ready = state.ready()?;
    request.sampling.check_model(&state)?;
    if request.echo {
        return Err(ApiError::invalid_param("echo", "echo is not supported"));
    }
    let n_vocab = ready.model.config().n_vocab;
    let mut params =
        request
            .sampling
            .params(&state, n_vocab, checked_logprobs(request.logprobs)?)?;
    params.loras = request.sampling.loras(ready)?;
    let tokenize = |text: &str| -> Result<Vec<u32>, ApiError> {
        Ok(ready
            .model
            .tokenizer()
            .encode(text, params.add_special, params.parse_special)?)
    };
    let prompts: Vec<Vec<u32>> = match &request.prompt {
        Prompt::Text(t) => vec![tokenize(t)?],
        Prompt::Texts(ts) => ts.iter().map(|t| tokenize(t)).collect::<Result<_, _>>()?,
        Prompt::Tokens(ids) => vec![ids.clone()],
        Prompt::TokenLists(lists) => lists.clone(),
    };
    if prompts.is_empty() || prompts.iter().any(Vec::is_empty) {
        return Err(ApiError::invalid_param("prompt", "the prompt is empty"));
    }
    if let Some(&bad) = prompts.iter().flatten().find(|&&t| t as usize >= n_vocab) {
        return Err(ApiError::invalid_param(
            "prompt",
            format!("token id {bad} is outside the vocabulary of {n_vocab}"),
        ));
    }
    let id = state.response_id("cmpl");
    let created = unix_now();
    if request.sampling.stream {
        if prompts.len() > 1 {
            return Err(ApiError::invalid_param(
                "prompt",
                "streaming takes one prompt",
            ));
        }
        let prompt = prompts.into_iter().next().unwrap_or_default();
        let n_prompt = prompt.len();
        let with_logprobs = params.top_logprobs.is_some();
        let running = Running::start(&state, prompt, params).await?;
        let model = state.alias.clone();
        let include_usage = request.sampling.include_usage();
        let logprobs_state = state.clone();
        let chunk = move |text: &str, finish: Option<&str>| {
            let mut c = json!({
                "id": id, "object": "text_completion", "created": created, "model": model,
                "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish}],
            });
            if include_usage {
                c["usage"] = Value::Null;
            }
            c
        };
        return Ok(stream(running, move |event| match event {
            Streamed::Start => Vec::new(),
            Streamed::Piece(p) => vec![chunk(p, None)],
            Streamed::End(g) => {
                let mut end = chunk("", Some(finish_reason(g.stop_reason)));
                // Every token's log-probabilities in the last chunk: clients gather them
                // across chunks, and the tokens behind a piece are only known at the end.
                if let (true, Ok(ready)) = (with_logprobs, logprobs_state.ready()) {
                    end["choices"][0]["logprobs"] = completion_logprobs(ready, g);
                }
                let mut last = vec![end];
                if include_usage {
                    let mut u = chunk("", None);
                    u["choices"] = json!([]);
                    u["usage"] = usage(n_prompt, g);
                    last.push(u);
                }
                last
            }
        }));
    }
    // Every prompt at once, each in its own slot.
    let mut runs = Vec::new();
    for prompt in &prompts {
        runs.push(Running::start(&state, prompt.clone(), params.clone()).await?);
    }
    let mut choices = Vec::new();
    let (mut n_prompt, mut n_completion, mut n_cached) = (0, 0, 0);
    let results = futures_util::future::join_all(runs.into_iter().map(Running::finish)).await;
    for (index, (result, prompt)) in results.into_iter().zip(&prompts).enumerate() {
        let g = result?;
        n_prompt += prompt.len();
        n_completion += g.tokens.len();
        n_cached += g.stats.reused_tokens;
        let logprobs = match params.top_logprobs {
            Some(_) => completion_logprobs(ready, &g),
            None => Value::Null,
        };
        choices.push(json!({
            "index": index, "text": g.text, "logprobs": logprobs,
            "finish_reason": finish_reason(g.stop_reason),
        }));
    }
    Ok(Json(json!({
        "id": id, "object": "text_completion", "created": created, "model": state.alias,
        "choices": choices,
        "usage": {
            "prompt_tokens": n_prompt, "completion_tokens": n_completion,
            "total_tokens": n_prompt + n_completion,
            "prompt_tokens_details": {"cached_tokens": n_cached},
        },
    }))
    .into_response())
}

/// A message's content: a string, or a list of parts of which the text ones count.
#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Deserialize)]
struct ContentPart {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    role: String,
    content: Option<Content>,
    /// An assistant turn's calls, and a tool result's call id and function name.
    tool_calls: Option<Vec<Value>>,
    tool_call_id: Option<String>,
    name: Option<String>,
}

impl Message {
    /// The message as the chat template reads it: `role` and `content` (text; none is empty),
    /// then the tool fields the message has.
    fn to_template(&self) -> Result<Value, ApiError> {
        let content = match &self.content {
            None => String::new(),
            Some(Content::Text(t)) => t.clone(),
            Some(Content::Parts(parts)) => {
                let mut text = String::new();
                for p in parts {
                    match (p.kind.as_str(), &p.text) {
                        ("text", Some(t)) => text.push_str(t),
                        (kind, _) => {
                            return Err(ApiError::invalid_param(
                                "messages",
                                format!("content parts of type `{kind}` are not supported"),
                            ))
                        }
                    }
                }
                text
            }
        };
        let mut message = json!({"role": self.role, "content": content});
        if let Some(calls) = &self.tool_calls {
            message["tool_calls"] = json!(calls);
        }
        if let Some(id) = &self.tool_call_id {
            message["tool_call_id"] = json!(id);
        }
        if let Some(name) = &self.name {
            message["name"] = json!(name);
        }
        Ok(message)
    }
}

#[derive(Deserialize)]
struct ChatRequest {
    messages: Vec<Message>,
    #[serde(flatten)]
    sampling: Sampling,
    #[serde(flatten)]
    tools: ToolFields,
    #[serde(default)]
    logprobs: bool,
    top_logprobs: Option<i64>,
}

/// A conversation ready to render: the model's template, the request's messages as it reads
/// them, its extra variables (the tools), and the tools the reply may call.
struct Conversation<'a> {
    template: &'a ChatTemplate,
    messages: Vec<Value>,
    variables: Value,
    tool_use: Option<ToolUse>,
}

impl<'a> Conversation<'a> {
    fn new(
        ready: &'a Ready,
        messages: &[Message],
        tools: &ToolFields,
    ) -> Result<Conversation<'a>, ApiError> {
        if messages.is_empty() {
            return Err(ApiError::invalid_param("messages", "messages is empty"));
        }
        let messages: Vec<Value> = messages
            .iter()
            .map(Message::to_template)
            .collect::<Result<_, _>>()?;
        let template = ready
            .template
            .as_ref()
            .map_err(|e| ApiError::invalid(format!("the model's chat template: {e}")))?;
        let tool_use = tools.tool_use(template.source())?;
        let (messages, variables) = match &tool_use {
            Some(t) => (
                t.messages(&messages, template.source()),
                t.template_variables(),
            ),
            None => (
                messages.iter().map(tools::with_parsed_arguments).collect(),
                Value::Null,
            ),
        };
        Ok(Conversation {
            template,
            messages,
            variables,
            tool_use,
        })
    }

    fn render(&self, ready: &Ready, add_generation_prompt: bool) -> llmrt::Result<String> {
        generate::render_chat_with(
            &ready.model,
            self.template,
            &self.messages,
            add_generation_prompt,
            &self.variables,
        )
    }
}

pub(crate) async fn chat_completions(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: ChatRequest = parse(&body)?;
    let ready = state.ready()?;
    request.sampling.check_model(&state)?;
    let top_logprobs = match (request.logprobs, request.top_logprobs) {
        (false, None) => None,
        (false, Some(_)) => {
            return Err(ApiError::invalid_param(
                "top_logprobs",
                "top_logprobs needs logprobs: true",
            ))
        }
        (true, n) => checked_logprobs(Some(n.unwrap_or(0))).map_err(|_| {
            ApiError::invalid_param("top_logprobs", "top_logprobs must be in [0, 20]")
        })?,
    };
    let params = request
        .sampling
        .params(&state, ready.model.config().n_vocab, top_logprobs)?;
    let conversation = Conversation::new(ready, &request.messages, &request.tools)?;
    let mut params = params;
    params.loras = request.sampling.loras(ready)?;
    if let Some(tool_use) = &conversation.tool_use {
        tool_fields::configure(tool_use, &mut params, &ready.model).await?;
    }
    let prompt =
        generate::tokenize_rendered_chat(&ready.model, &conversation.render(ready, true)?)?;
    let tool_use = conversation.tool_use;
    let n_prompt = prompt.len();
    let id = state.response_id("chatcmpl");
    let created = unix_now();
    let running = Running::start(&state, prompt, params).await?;
    if request.sampling.stream {
        let model = state.alias.clone();
        let include_usage = request.sampling.include_usage();
        let logprobs_state = state.clone();
        let mut reply = tool_use.as_ref().map(|t| StreamedReply::new(t, &id));
        let chunk = move |delta: Value, finish: Option<&str>| {
            let mut c = json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
            });
            if include_usage {
                c["usage"] = Value::Null;
            }
            c
        };
        return Ok(stream(running, move |event| match event {
            Streamed::Start => vec![chunk(json!({"role": "assistant", "content": ""}), None)],
            Streamed::Piece(p) => match &mut reply {
                Some(reply) => reply.push(p).into_iter().map(|d| chunk(d, None)).collect(),
                None => vec![chunk(json!({"content": p}), None)],
            },
            Streamed::End(g) => {
                let (mut last, called) = match &mut reply {
                    Some(reply) => {
                        let (deltas, called) = reply.finish();
                        (deltas.into_iter().map(|d| chunk(d, None)).collect(), called)
                    }
                    None => (Vec::new(), false),
                };
                let reason = if called {
                    "tool_calls"
                } else {
                    finish_reason(g.stop_reason)
                };
                let mut end = chunk(json!({}), Some(reason));
                // As for completions: every token's log-probabilities in the last chunk.
                if let (Some(_), Ok(ready)) = (top_logprobs, logprobs_state.ready()) {
                    end["choices"][0]["logprobs"] = chat_logprobs(ready, g);
                }
                last.push(end);
                if include_usage {
                    let mut u = chunk(json!({}), None);
                    u["choices"] = json!([]);
                    u["usage"] = usage(n_prompt, g);
                    last.push(u);
                }
                last
            }
        }));
    }
    let g = running.finish().await?;
    let logprobs = match top_logprobs {
        Some(_) => chat_logprobs(ready, &g),
        None => Value::Null,
    };
    let (message, called) = match &tool_use {
        Some(t) => t.message(&g.text, tool_fields::call_id_stem(&id)),
        None => (json!({"role": "assistant", "content": g.text}), false),
    };
    let reason = if called {
        "tool_calls"
    } else {
        finish_reason(g.stop_reason)
    };
    Ok(Json(json!({
        "id": id, "object": "chat.completion", "created": created, "model": state.alias,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": logprobs,
            "finish_reason": reason,
        }],
        "usage": usage(n_prompt, &g),
    }))
    .into_response())
}

/// What a streamed response is made of, for the endpoint to shape into chunks.
enum Streamed<'a> {
    Start,
    Piece(&'a str),
    End(&'a Generation),
}

/// The generation as server-sent events: the endpoint's chunks, then `[DONE]`; a failure midway
/// is sent as an error event. A client that goes away ends the generation at the next step.
fn stream(
    mut running: Running,
    mut chunks: impl FnMut(Streamed<'_>) -> Vec<Value> + Send + 'static,
) -> Response {
    let (events, receiver) = mpsc::channel::<SseEvent>(32);
    tokio::spawn(async move {
        let send = |value: &Value| SseEvent::default().data(value.to_string());
        for c in chunks(Streamed::Start) {
            if events.send(send(&c)).await.is_err() {
                return;
            }
        }
        loop {
            let event = tokio::select! {
                event = running.next() => event,
                // The client went away: dropping `running` cancels the generation.
                () = events.closed() => return,
            };
            let out: Vec<Value> = match event {
                Some(Event::Piece(p)) => chunks(Streamed::Piece(&p)),
                Some(Event::Done(Ok(g))) => chunks(Streamed::End(&g)),
                Some(Event::Done(Err(e))) => vec![ApiError::from(e).body()],
                None => vec![ApiError::internal("the generation ended without a result").body()],
            };
            let done = running.finished || out.iter().any(|v| v.get("error").is_some());
            for c in &out {
                if events.send(send(c)).await.is_err() {
                    return;
                }
            }
            if done {
                let _ = events.send(SseEvent::default().data("[DONE]")).await;
                return;
            }
        }
    });
    let body = futures_util::stream::unfold(receiver, |mut r| async move {
        r.recv().await.map(|e| (Ok::<_, Infallible>(e), r))
    });
    Sse::new(body)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

#[derive(Deserialize)]
struct EmbeddingRequest {
    input: Prompt,
    model: Option<String>,
    encoding_format: Option<String>,
    dimensions: Option<i64>,
}

pub(crate) async fn embeddings(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: EmbeddingRequest = parse(&body)?;
    let ready = state.ready()?;
    if let Some(m) = request
        .model
        .as_ref()
        .filter(|m| !m.is_empty() && **m != state.alias)
    {
        return Err(ApiError::model_not_found(m));
    }
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid_param(
                "encoding_format",
                format!("encoding_format must be float or base64, got {other}"),
            ))
        }
    };
    let n_embd = ready.model.config().n_embd;
    if request.dimensions.is_some_and(|d| d != n_embd as i64) {
        return Err(ApiError::invalid_param(
            "dimensions",
            format!("this model's embeddings have {n_embd} dimensions"),
        ));
    }
    let pooling = ready
        .pooling
        .clone()
        .map_err(|e| ApiError::invalid(format!("embeddings: {e}")))?;
    // As llama-cpp-python's `embed`: BOS as the model wants it, special-token text as text.
    let tokenize = |text: &str| -> Result<Vec<u32>, ApiError> {
        Ok(ready.model.tokenizer().encode(text, true, false)?)
    };
    let inputs: Vec<Vec<u32>> = match &request.input {
        Prompt::Text(t) => vec![tokenize(t)?],
        Prompt::Texts(ts) => ts.iter().map(|t| tokenize(t)).collect::<Result<_, _>>()?,
        Prompt::Tokens(ids) => vec![ids.clone()],
        Prompt::TokenLists(lists) => lists.clone(),
    };
    let n_vocab = ready.model.config().n_vocab;
    let n_ctx = ready.batcher.n_ctx();
    if inputs.is_empty() {
        return Err(ApiError::invalid_param("input", "input is empty"));
    }
    for ids in &inputs {
        if ids.is_empty() {
            return Err(ApiError::invalid_param("input", "an input is empty"));
        }
        if let Some(&bad) = ids.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(ApiError::invalid_param(
                "input",
                format!("token id {bad} is outside the vocabulary of {n_vocab}"),
            ));
        }
        if ids.len() > n_ctx {
            return Err(ApiError::context_length(format!(
                "an input has {} tokens; the context holds {n_ctx}",
                ids.len()
            )));
        }
    }
    let n_tokens: usize = inputs.iter().map(Vec::len).sum();
    let worker = state.clone();
    let vectors = tokio::task::spawn_blocking(move || -> Result<Vec<Vec<f32>>, ApiError> {
        let ready = worker.ready()?;
        // A poisoned lock: the session is reset before every text anyway.
        let mut session = ready.side.lock().unwrap_or_else(|e| e.into_inner());
        inputs
            .iter()
            .map(|ids| Ok(llmrt::embed::embed(&mut session, ids, pooling)?))
            .collect()
    })
    .await
    .map_err(|e| ApiError::internal(format!("the embedding task failed: {e}")))??;
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    bytes
                ))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": state.alias,
        "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
    })))
}

#[derive(Deserialize)]
struct TokenizeRequest {
    content: String,
    #[serde(default)]
    add_special: bool,
    #[serde(default)]
    parse_special: Option<bool>,
    #[serde(default)]
    with_pieces: bool,
}

pub(crate) async fn tokenize(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: TokenizeRequest = parse(&body)?;
    let ready = state.ready()?;
    let tok = ready.model.tokenizer();
    let ids = tok.encode(
        &request.content,
        request.add_special,
        request.parse_special.unwrap_or(true),
    )?;
    let tokens: Vec<Value> = if request.with_pieces {
        ids.iter()
            .map(|&id| {
                let bytes = tok.token_to_piece(id);
                match String::from_utf8(bytes) {
                    Ok(piece) => json!({"id": id, "piece": piece}),
                    Err(e) => json!({"id": id, "piece": e.into_bytes()}),
                }
            })
            .collect()
    } else {
        ids.iter().map(|&id| json!(id)).collect()
    };
    Ok(Json(json!({ "tokens": tokens })))
}

#[derive(Deserialize)]
struct DetokenizeRequest {
    tokens: Vec<u32>,
}

pub(crate) async fn detokenize(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: DetokenizeRequest = parse(&body)?;
    let ready = state.ready()?;
    let n_vocab = ready.model.config().n_vocab;
    if let Some(&bad) = request.tokens.iter().find(|&&t| t as usize >= n_vocab) {
        return Err(ApiError::invalid_param(
            "tokens",
            format!("token id {bad} is outside the vocabulary of {n_vocab}"),
        ));
    }
    Ok(Json(
        json!({ "content": ready.model.tokenizer().decode(&request.tokens) }),
    ))
}

#[derive(Deserialize)]
struct ApplyTemplateRequest {
    messages: Vec<Message>,
    #[serde(flatten)]
    tools: ToolFields,
    #[serde(default = "yes")]
    add_generation_prompt: bool,
}

fn yes() -> bool {
    true
}

pub(crate) async fn apply_template(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: ApplyTemplateRequest = parse(&body)?;
    let ready = state.ready()?;
    let conversation = Conversation::new(ready, &request.messages, &request.tools)?;
    let prompt = conversation.render(ready, request.add_generation_prompt)?;
    Ok(Json(json!({ "prompt": prompt })))
}
