//! The `llmrt` command line: run, chat, tokenize, inspect, quantize, score, bench, explain,
//! serve.

use clap::{Parser, Subcommand};

mod bench;
mod chat;
mod common;
mod explain;
mod inspect;
mod quantize;
mod run;
mod score;
mod serve;
mod tokenize;

#[derive(Parser)]
#[command(
    name = "llmrt",
    version,
    about = "Run quantized language models from GGUF files"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Continue a prompt, streaming the text to stdout.
    Run(run::Args),
    /// Measure prompt processing and generation speed (like llama-bench).
    Bench(bench::Args),
    /// Chat with the model, one message per line (interactive on a terminal).
    Chat(chat::Args),
    /// Show a GGUF file's model summary and tensor table.
    Inspect(inspect::Args),
    /// Print the token ids (and pieces) of a text.
    Tokenize(tokenize::Args),
    /// Requantize a model: 2-D tensors to TYPE with ggml's reference quantizers, others to F32.
    Quantize(quantize::Args),
    /// Show how the model continues a prompt: tokens, candidates per step, attention heatmap.
    Explain(explain::Args),
    /// Perplexity and per-position logits of a text under teacher forcing.
    Score(score::Args),
    /// An OpenAI-compatible HTTP server (like llama-server), batching concurrent requests.
    Serve(serve::Args),
}

fn main() {
    default_sigpipe();
    let cli = Cli::parse_from(llama_server_flags(std::env::args_os()));
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Chat(args) => chat::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Quantize(args) => quantize::run(args),
        Command::Score(args) => score::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Tokenize(args) => tokenize::run(args),
        Command::Serve(args) => serve::run(args),
    };
    if let Err(e) = result {
        eprintln!("llmrt: {e}");
        std::process::exit(1);
    }
}

/// llama-server's one multi-letter short flag, `-np N`, which clap cannot express, as
/// `--parallel N` (only for `serve`, where it means that).
fn llama_server_flags(args: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let args: Vec<_> = args.collect();
    let serving = args.get(1).is_some_and(|a| a == "serve");
    args.into_iter()
        .map(|a| {
            if serving && a == "-np" {
                "--parallel".into()
            } else {
                a
            }
        })
        .collect()
}

/// Makes a closed pipe end the program quietly, as it ends other Unix tools writing into
/// `| head`: Rust starts programs with SIGPIPE ignored, so a write to a closed pipe fails and
/// `println!` panics with a backtrace instead.
fn default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any other thread exists; setting a signal's
    // disposition to its default touches no memory of ours.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
