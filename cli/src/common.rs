//! Options shared by the commands that run a model.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use llmrt::lora::{ActiveLora, LoraAdapter};

use llmrt::model::KvType;
use llmrt::sample::SamplerParams;
use llmrt::{Model, ModelParams, Session, SessionParams};

/// Which model to load and how to run it.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// The GGUF model file.
    #[arg(short, long)]
    pub model: PathBuf,
    /// Worker threads (default: the number of cores).
    #[arg(short = 't', long, default_value_t = 0)]
    pub threads: usize,
    /// Context length in tokens (default: the model's, at most 4096).
    #[arg(short = 'c', long = "ctx-size", default_value_t = 0)]
    pub ctx_size: usize,
    /// Store the KV cache in f32 instead of f16.
    #[arg(long)]
    pub kv_f32: bool,
    /// A LoRA adapter (GGUF) applied at scale 1 (repeatable).
    #[arg(long = "lora", value_name = "FILE")]
    pub lora: Vec<PathBuf>,
    /// A LoRA adapter applied at this scale (repeatable; after the --lora ones).
    #[arg(long = "lora-scaled", num_args = 2, value_names = ["FILE", "SCALE"])]
    pub lora_scaled: Vec<String>,
}

impl ModelArgs {
    /// Loads the model and opens a session on it.
    pub fn open(&self) -> llmrt::Result<Session> {
        let model = Arc::new(Model::load(&self.model, &ModelParams::default())?);
        self.session(model)
    }

    /// A new session on `model` with these options; warns when the context is longer than the
    /// model was trained on.
    pub fn session(&self, model: Arc<Model>) -> llmrt::Result<Session> {
        let session = Session::new(
            model,
            &SessionParams {
                n_ctx: self.ctx_size,
                n_threads: self.threads,
                kv_type: if self.kv_f32 {
                    KvType::F32
                } else {
                    KvType::F16
                },
                n_batch: 0,
            },
        )?;
        warn_if_beyond_training(&session);
        let mut session = session;
        session.set_loras(self.loras(session.model())?)?;
        Ok(session)
    }

    /// The adapters of `--lora` and `--lora-scaled`, loaded for `model`, in that order.
    pub fn loras(&self, model: &Model) -> llmrt::Result<Vec<ActiveLora>> {
        load_loras(&self.lora, &self.lora_scaled, model)
    }
}

/// The adapters of `--lora FILE…` (scale 1) and `--lora-scaled FILE SCALE…` (`scaled` holds the
/// pairs' words in turn), loaded for `model`, in that order.
pub fn load_loras(
    plain: &[PathBuf],
    scaled: &[String],
    model: &Model,
) -> llmrt::Result<Vec<ActiveLora>> {
    let mut files: Vec<(PathBuf, f32)> = plain.iter().map(|p| (p.clone(), 1.0)).collect();
    for pair in scaled.chunks(2) {
        let [file, scale] = pair else {
            return Err(llmrt::Error::InvalidArgument(
                "--lora-scaled takes a file and a scale".into(),
            ));
        };
        let scale: f32 = scale.parse().map_err(|_| {
            llmrt::Error::InvalidArgument(format!(
                "--lora-scaled {file}: `{scale}` is not a number"
            ))
        })?;
        files.push((PathBuf::from(file), scale));
    }
    files
        .into_iter()
        .map(|(path, scale)| {
            Ok(ActiveLora {
                adapter: Arc::new(LoraAdapter::open(&path, model)?),
                scale,
            })
        })
        .collect()
}

/// How to choose tokens.
#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Temperature (0 = greedy).
    #[arg(long = "temp", default_value_t = 0.8)]
    pub temperature: f32,
    /// Keep the K most likely tokens (0 = off).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Keep the most likely tokens up to cumulative probability P (1 = off).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than P × the most likely one (0 = off).
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalty for repeating recent tokens (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// How many recent tokens the penalties look at.
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Random seed (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
}

impl SamplingArgs {
    pub fn params(&self) -> SamplerParams {
        SamplerParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            penalty_last_n: self.repeat_last_n,
            seed: self.seed.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64)
            }),
            ..SamplerParams::default()
        }
    }
}

/// Where the prompt comes from: `-p TEXT`, or `-f FILE` (`-f -` reads standard input), as in
/// llama.cpp's tools.
#[derive(clap::Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct PromptArgs {
    /// The prompt.
    #[arg(short, long)]
    pub prompt: Option<String>,
    /// Read the prompt from FILE (`-` = standard input).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
}

impl PromptArgs {
    /// The prompt text.
    pub fn text(&self) -> llmrt::Result<String> {
        match (&self.prompt, &self.file) {
            (Some(p), _) => Ok(p.clone()),
            // As llama.cpp's `-f`: the file's final newline ends the file, not the prompt.
            (None, Some(file)) => {
                let mut text = read_text(file)?;
                if text.ends_with('\n') {
                    text.pop();
                }
                Ok(text)
            }
            (None, None) => Err(llmrt::Error::InvalidArgument(
                "give a prompt with -p TEXT or -f FILE".into(),
            )),
        }
    }
}

/// The UTF-8 text of `file`, or of standard input when it is `-`.
pub fn read_text(file: &Path) -> llmrt::Result<String> {
    let bytes = if file == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| llmrt::Error::io("standard input", e))?;
        bytes
    } else {
        std::fs::read(file).map_err(|e| llmrt::Error::io(file, e))?
    };
    String::from_utf8(bytes).map_err(|_| llmrt::Error::InvalidUtf8("the prompt file"))
}

/// llama.cpp's warning when the context asked for is longer than the model was trained on.
fn warn_if_beyond_training(session: &Session) {
    let trained = session.model().config().n_ctx_train;
    if trained > 0 && session.n_ctx() > trained {
        eprintln!(
            "llmrt: warning: the model was trained with a context of {trained} tokens; \
             -c {} goes beyond it and may give poor results",
            session.n_ctx()
        );
    }
}

/// What the generated text must match (at most one).
#[derive(clap::Args, Debug, Default)]
pub struct ConstraintArgs {
    /// The text is a JSON value valid under the JSON schema in FILE.
    #[arg(long = "json-schema", value_name = "FILE", group = "constraint")]
    pub json_schema: Option<PathBuf>,
    /// The text follows the grammar in FILE: GBNF (llama.cpp's `root ::= …`) or llguidance's
    /// Lark dialect (`start: …`).
    #[arg(long, value_name = "FILE", group = "constraint")]
    pub grammar: Option<PathBuf>,
    /// The whole text matches this regular expression.
    #[arg(long, value_name = "REGEX", group = "constraint")]
    pub regex: Option<String>,
}

impl ConstraintArgs {
    pub fn constraint(&self) -> llmrt::Result<Option<llmrt::constrain::Constraint>> {
        use llmrt::constrain::Constraint;
        if let Some(file) = &self.json_schema {
            let text = read_text(file)?;
            let schema = serde_json::from_str(&text).map_err(|e| {
                llmrt::Error::InvalidArgument(format!("{}: not JSON: {e}", file.display()))
            })?;
            return Ok(Some(Constraint::JsonSchema(schema)));
        }
        if let Some(file) = &self.grammar {
            return Ok(Some(Constraint::grammar_text(&read_text(file)?)));
        }
        Ok(self.regex.clone().map(Constraint::Regex))
    }
}
