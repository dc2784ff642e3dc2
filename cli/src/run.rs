//! `llmrt run`: stream the continuation of a prompt.

use std::io::Write;

use llmrt::generate::{generate, prefill, GenerateParams};

use crate::common::{ModelArgs, PromptArgs, SamplingArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub prompt: PromptArgs,
    /// Most tokens to generate.
    #[arg(short = 'n', long = "n-predict", default_value_t = 128)]
    pub n_predict: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Stop when the text contains this (repeatable); the stop string is not printed.
    #[arg(long)]
    pub stop: Vec<String>,
    /// Parse special-token text in the prompt (`<|im_start|>`) as tokens.
    #[arg(long)]
    pub parse_special: bool,
    /// Do not print the prompt before the continuation.
    #[arg(long)]
    pub no_echo: bool,
    #[command(flatten)]
    pub constraint: crate::common::ConstraintArgs,
    /// Session file of the prompt (llama.cpp's name): when it exists, the prompt's saved prefix
    /// is reused instead of evaluated; the session is saved to it after the prompt.
    #[arg(long, value_name = "FILE")]
    pub prompt_cache: Option<std::path::PathBuf>,
    /// With --prompt-cache: read the file, never write it.
    #[arg(long, requires = "prompt_cache")]
    pub prompt_cache_ro: bool,
}

pub fn run(args: Args) -> llmrt::Result<()> {
    let prompt = args.prompt.text()?;
    let mut session = args.model.open()?;
    let params = GenerateParams {
        max_tokens: args.n_predict,
        sampler: args.sampling.params(),
        stop: args.stop.clone(),
        add_special: true,
        parse_special: args.parse_special,
        top_logprobs: None,
        constraint: args.constraint.constraint()?,
        preserved_tokens: Vec::new(),
        loras: None,
    };
    let mut out = std::io::stdout().lock();
    if !args.no_echo {
        let _ = write!(out, "{prompt}");
        let _ = out.flush();
    }
    // With a prompt cache the prompt is evaluated here, so that the file holds it before the
    // generation starts; the generation then evaluates nothing more of it.
    let mut prefilled = None;
    if let Some(cache) = &args.prompt_cache {
        let started = std::time::Instant::now();
        if cache.exists() {
            session.load(cache)?;
        }
        let tokens = session.model().tokenizer().encode(
            &prompt,
            params.add_special,
            params.parse_special,
        )?;
        let reused = prefill(&mut session, &tokens)?;
        prefilled = Some((reused, started.elapsed().as_secs_f64()));
        if reused < tokens.len() && !args.prompt_cache_ro {
            session.save(cache)?;
        }
    }
    let mut generation = generate(&mut session, &prompt, &params, &mut |piece| {
        // Stop quietly when stdout is closed (e.g. piped into `head`).
        write!(out, "{piece}").and_then(|_| out.flush()).is_ok()
    })?;
    let _ = writeln!(out);
    if let Some((reused, seconds)) = prefilled {
        generation.stats.reused_tokens = reused;
        generation.stats.prompt_seconds = seconds;
    }
    let s = generation.stats;
    eprintln!(
        "\n[{} prompt tokens ({} reused) at {:.1} tok/s, {} generated at {:.1} tok/s, stop: {}]",
        s.prompt_tokens,
        s.reused_tokens,
        s.prompt_tokens_per_second(),
        s.generated_tokens,
        s.generate_tokens_per_second(),
        generation.stop_reason.describe()
    );
    Ok(())
}
