//! The `llmrt` command line: run, chat, tokenize, inspect, quantize, score, bench.

use clap::{Parser, Subcommand};

mod inspect;
mod quantize;

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
    /// Show a GGUF file's model summary and tensor table.
    Inspect(inspect::Args),
    /// Requantize a model: 2-D tensors to TYPE with ggml's reference quantizers, others to F32.
    Quantize(quantize::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => inspect::run(args),
        Command::Quantize(args) => quantize::run(args),
    };
    if let Err(e) = result {
        eprintln!("llmrt: {e}");
        std::process::exit(1);
    }
}
