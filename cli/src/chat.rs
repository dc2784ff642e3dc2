//! `llmrt chat`: an interactive multi-turn chat with streaming; also works with piped input
//! (one user message per line).

use std::io::{BufRead, IsTerminal, Write};

use llmrt::chat::{ChatMessage, ChatTemplate};
use llmrt::generate::{chat, GenerateParams};

use crate::common::{ModelArgs, SamplingArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A system message opening the conversation.
    #[arg(long)]
    pub system: Option<String>,
    /// Use a built-in template (chatml, gemma, llama3, …) instead of the model's.
    #[arg(long)]
    pub template: Option<String>,
    /// Most tokens per reply.
    #[arg(short = 'n', long = "n-predict", default_value_t = 512)]
    pub n_predict: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Every reply follows this constraint.
    #[command(flatten)]
    pub constraint: crate::common::ConstraintArgs,
}

pub fn run(args: Args) -> llmrt::Result<()> {
    let mut session = args.model.open()?;
    let template = match &args.template {
        Some(name) => ChatTemplate::builtin(name)?,
        None => ChatTemplate::from_gguf(session.model().gguf())?,
    };
    let params = GenerateParams {
        max_tokens: args.n_predict,
        sampler: args.sampling.params(),
        constraint: args.constraint.constraint()?,
        ..GenerateParams::default()
    };
    let mut messages: Vec<ChatMessage> = args
        .system
        .iter()
        .map(|s| ChatMessage {
            role: "system".into(),
            content: s.clone(),
        })
        .collect();
    let interactive = std::io::stdin().is_terminal();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            eprint!("> ");
            let _ = std::io::stderr().flush();
        }
        let Some(line) = lines.next() else { break };
        let line = line.map_err(|e| llmrt::Error::io("stdin", e))?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if interactive && (line == "/exit" || line == "/quit") {
            break;
        }
        messages.push(ChatMessage {
            role: "user".into(),
            content: line.to_string(),
        });
        let mut out = std::io::stdout().lock();
        let reply = chat(&mut session, &template, &messages, &params, &mut |piece| {
            write!(out, "{piece}").and_then(|_| out.flush()).is_ok()
        })?;
        let _ = writeln!(out);
        let s = reply.stats;
        if interactive {
            eprintln!(
                "[{} prompt tokens ({} reused), {} generated at {:.1} tok/s]",
                s.prompt_tokens,
                s.reused_tokens,
                s.generated_tokens,
                s.generate_tokens_per_second()
            );
        }
        messages.push(ChatMessage {
            role: "assistant".into(),
            content: reply.text.trim().to_string(),
        });
    }
    Ok(())
}
