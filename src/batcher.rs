//! Generations from many threads, run together: a [`Batcher`] owns an [`Engine`] on a worker
//! thread of its own; any thread submits a prompt and gets its text back, and every step of the
//! engine decodes the next token of all running generations in one forward pass.
//!
//! Each generation samples with its own [`Continuation`] (its own sampler and seed) from logits
//! that depend only on its own tokens, so its text is the text it gets alone — whatever else is
//! running, and whenever it joined.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::engine::{Engine, EngineParams, PoolStats, SeqId};
use crate::generate::{Continuation, GenerateParams, GenerateStats, Generation, StopReason};
use crate::lora::ActiveLora;
use crate::model::Model;
use crate::{Error, Result};

/// Receives each piece of generated text, on the batcher's worker thread; false cancels.
pub type PieceSink = Box<dyn FnMut(&str) -> bool + Send>;
/// Receives the finished generation (or why it failed), on the batcher's worker thread.
pub type DoneSink = Box<dyn FnOnce(Result<Generation>) + Send>;

/// Cancels a submitted generation: it ends, with [`StopReason::Cancelled`], before the next
/// step of the engine (a prompt still being evaluated is dropped).
#[derive(Debug, Clone, Default)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

struct Job {
    prompt: Vec<u32>,
    params: GenerateParams,
    on_piece: PieceSink,
    on_done: DoneSink,
    cancel: CancelHandle,
    submitted: Instant,
}

/// A generation the worker is running.
struct Running {
    id: SeqId,
    continuation: Continuation,
    on_piece: PieceSink,
    on_done: DoneSink,
    cancel: CancelHandle,
    submitted: Instant,
    /// When the prompt's logits arrived.
    first_logits: Option<Instant>,
    prompt_tokens: usize,
}

impl Running {
    fn finish(self, engine: &mut Engine, result: std::result::Result<StopReason, Error>) {
        let now = Instant::now();
        let first = self.first_logits.unwrap_or(now);
        let stats = GenerateStats {
            prompt_tokens: self.prompt_tokens,
            reused_tokens: engine.reused(self.id).unwrap_or(0),
            prompt_seconds: (first - self.submitted).as_secs_f64(),
            generate_seconds: (now - first).as_secs_f64(),
            ..GenerateStats::default()
        };
        // The sequence exists: it is removed only here.
        let _ = engine.remove(self.id);
        let mut on_piece = self.on_piece;
        let done = result.map(|reason| self.continuation.finish(reason, stats, &mut on_piece));
        (self.on_done)(done);
    }
}

/// What a batcher is doing, as of its worker's last step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatcherStatus {
    /// Generations running (their prompts being evaluated, or decoding).
    pub running: usize,
    /// The engine's KV pool.
    pub pool: PoolStats,
}

/// An engine on its own thread, running the generations any thread submits.
pub struct Batcher {
    model: Arc<Model>,
    n_ctx: usize,
    status: Arc<Mutex<BatcherStatus>>,
    jobs: Option<mpsc::Sender<Job>>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("n_ctx", &self.n_ctx)
            .finish()
    }
}

impl Batcher {
    /// A batcher over a new engine of `model` with `params`.
    pub fn new(model: Arc<Model>, params: &EngineParams) -> Result<Batcher> {
        Batcher::with_loras(model, params, Vec::new())
    }

    /// [`Batcher::new`] with LoRA adapters applied to every generation.
    pub fn with_loras(
        model: Arc<Model>,
        params: &EngineParams,
        loras: Vec<ActiveLora>,
    ) -> Result<Batcher> {
        let mut engine = Engine::new(model.clone(), params)?;
        engine.set_loras(loras)?;
        let n_ctx = engine.n_ctx();
        let status = Arc::new(Mutex::new(BatcherStatus {
            running: 0,
            pool: engine.pool_stats(),
        }));
        let (jobs, queue) = mpsc::channel();
        let reported = status.clone();
        let worker = std::thread::Builder::new()
            .name("llmrt-batcher".into())
            .spawn(move || work(engine, queue, &reported))
            .map_err(|e| Error::Internal(format!("cannot start the batcher's thread: {e}")))?;
        Ok(Batcher {
            model,
            n_ctx,
            status,
            jobs: Some(jobs),
            worker: Some(worker),
        })
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Most tokens one generation holds, prompt included.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// What the worker is doing, as of its last step.
    pub fn status(&self) -> BatcherStatus {
        // A poisoned lock still holds the last status written.
        *self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues the generation of a continuation of `prompt` (token ids). `on_piece` gets its text
    /// as it is produced and `on_done` the result, both on the worker thread; they must not
    /// block it for long. A prompt that cannot be run at all is refused here.
    pub fn submit(
        &self,
        prompt: Vec<u32>,
        params: GenerateParams,
        on_piece: PieceSink,
        on_done: DoneSink,
    ) -> Result<CancelHandle> {
        if prompt.is_empty() {
            return Err(Error::InvalidArgument("the prompt has no tokens".into()));
        }
        // As a session: a prompt that leaves no room for one token is refused before any work.
        if prompt.len() >= self.n_ctx {
            return Err(Error::ContextFull {
                needed: prompt.len() + 1,
                n_ctx: self.n_ctx,
            });
        }
        let n_vocab = self.model.config().n_vocab;
        if let Some(&bad) = prompt.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(Error::InvalidArgument(format!(
                "token id {bad} is outside the vocabulary of {n_vocab}"
            )));
        }
        let cancel = CancelHandle::default();
        let job = Job {
            prompt,
            params,
            on_piece,
            on_done,
            cancel: cancel.clone(),
            submitted: Instant::now(),
        };
        let stopped = || Error::Internal("the batcher's worker thread has stopped".into());
        self.jobs
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())?;
        Ok(cancel)
    }

    /// Generates a continuation of `prompt` among whatever else is running, calling `on_piece`
    /// on this thread with each piece of text (false cancels); blocks until it ends.
    pub fn generate(
        &self,
        prompt: &[u32],
        params: &GenerateParams,
        on_piece: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        enum Message {
            Piece(String),
            Done(Result<Generation>),
        }
        let (pieces, messages) = mpsc::channel();
        let done = pieces.clone();
        let cancel = self.submit(
            prompt.to_vec(),
            params.clone(),
            Box::new(move |piece: &str| pieces.send(Message::Piece(piece.to_string())).is_ok()),
            Box::new(move |result| {
                let _ = done.send(Message::Done(result));
            }),
        )?;
        let mut cancelled = false;
        for message in messages {
            match message {
                Message::Piece(piece) if !cancelled => {
                    if !on_piece(&piece) {
                        cancelled = true;
                        cancel.cancel();
                    }
                }
                Message::Piece(_) => {}
                Message::Done(result) => return result,
            }
        }
        Err(Error::Internal(
            "the batcher's worker thread stopped mid-generation".into(),
        ))
    }
}

impl Drop for Batcher {
    /// Waits for the running generations to end.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// The worker: starts queued jobs between steps, steps the engine, samples every sequence whose
/// logits are ready and feeds it its next token, until the queue closes and nothing runs.
fn work(mut engine: Engine, queue: mpsc::Receiver<Job>, status: &Mutex<BatcherStatus>) {
    let model = engine.model().clone();
    let tokenizer = model.tokenizer();
    let mut running: Vec<Running> = Vec::new();
    loop {
        *status.lock().unwrap_or_else(|e| e.into_inner()) = BatcherStatus {
            running: running.len(),
            pool: engine.pool_stats(),
        };
        // Block for work when idle; otherwise take what has arrived and go on stepping.
        if running.is_empty() {
            match queue.recv() {
                Ok(job) => start(&mut engine, &mut running, job),
                Err(_) => return,
            }
        }
        while let Ok(job) = queue.try_recv() {
            start(&mut engine, &mut running, job);
        }
        let mut k = 0;
        while k < running.len() {
            if running[k].cancel.is_cancelled() {
                running
                    .swap_remove(k)
                    .finish(&mut engine, Ok(StopReason::Cancelled));
            } else {
                k += 1;
            }
        }
        if running.is_empty() {
            continue;
        }
        let report = match catch_unwind(AssertUnwindSafe(|| engine.step())) {
            Ok(Ok(report)) => report,
            failure => {
                // The step's state is lost: every running generation fails with why.
                let why = match failure {
                    Ok(Err(e)) => e.to_string(),
                    _ => "a panic while stepping the engine".to_string(),
                };
                for r in running.drain(..) {
                    let error = Error::Internal(why.clone());
                    r.finish(&mut engine, Err(error));
                }
                continue;
            }
        };
        for id in report.failed {
            if let Some(k) = running.iter().position(|r| r.id == id) {
                let error = engine.take_error(id).ok().flatten().unwrap_or_else(|| {
                    Error::Internal(format!("sequence {} failed without an error", id.0))
                });
                running.swap_remove(k).finish(&mut engine, Err(error));
            }
        }
        for id in report.ready {
            let Some(k) = running.iter().position(|r| r.id == id) else {
                continue;
            };
            let r = &mut running[k];
            r.first_logits.get_or_insert_with(Instant::now);
            let (Ok(Some(logits)), Ok(history)) = (engine.logits(id), engine.tokens(id)) else {
                let error = Error::Internal(format!("sequence {} has no logits", id.0));
                running.swap_remove(k).finish(&mut engine, Err(error));
                continue;
            };
            match r
                .continuation
                .next(tokenizer, logits, history, &mut r.on_piece)
            {
                Ok(None) => {
                    let next = r.continuation.last_token();
                    if let Err(error) = engine.feed(id, &[next]) {
                        running.swap_remove(k).finish(&mut engine, Err(error));
                    }
                }
                Ok(Some(reason)) => running.swap_remove(k).finish(&mut engine, Ok(reason)),
                Err(error) => running.swap_remove(k).finish(&mut engine, Err(error)),
            }
        }
        // Every running generation waits for its sequence's next logits; with nothing left to
        // evaluate they would wait forever.
        if !running.is_empty() && !engine.has_work() {
            for r in running.drain(..) {
                let error = Error::Internal(format!("sequence {} stalled", r.id.0));
                r.finish(&mut engine, Err(error));
            }
        }
    }
}

/// Adds the job's sequence to the engine with its prompt.
fn start(engine: &mut Engine, running: &mut Vec<Running>, job: Job) {
    let continuation = match Continuation::new(engine.model(), &job.params, engine.n_ctx()) {
        Ok(c) => c,
        Err(error) => return (job.on_done)(Err(error)),
    };
    if job.cancel.is_cancelled() {
        (job.on_done)(Ok(continuation.finish(
            StopReason::Cancelled,
            GenerateStats {
                prompt_tokens: job.prompt.len(),
                ..GenerateStats::default()
            },
            &mut |_: &str| true,
        )));
        return;
    }
    let id = engine.add();
    let adapters = match &job.params.loras {
        Some(loras) => engine.set_sequence_loras(id, loras.clone()),
        None => Ok(()),
    };
    if let Err(error) = adapters.and_then(|()| engine.feed(id, &job.prompt)) {
        let _ = engine.remove(id);
        (job.on_done)(Err(error));
        return;
    }
    running.push(Running {
        id,
        continuation,
        on_piece: job.on_piece,
        on_done: job.on_done,
        cancel: job.cancel,
        submitted: job.submitted,
        first_logits: None,
        prompt_tokens: job.prompt.len(),
    });
}
