//! The `llmrt` command line: run, chat, tokenize, inspect, quantize, score, bench.

use clap::{Parser, Subcommand};

mod inspect;

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
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => inspect::run(args),
    };
    if let Err(e) = result {
        eprintln!("llmrt: {e}");
        std::process::exit(1);
    }
}
