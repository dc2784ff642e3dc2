//! `llmrt tokenize -m MODEL [--no-special] [--parse-special] [--json] TEXT`: the ids of TEXT with
//! the piece each one stands for.

use llmrt::gguf::GgufFile;
use llmrt::tokenizer::Tokenizer;

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF file whose vocab to use.
    #[arg(short = 'm', long = "model")]
    pub model: std::path::PathBuf,
    /// Do not add BOS/EOS even where the vocab asks for them.
    #[arg(long)]
    pub no_special: bool,
    /// Turn control-token text in TEXT (e.g. `<|im_start|>`) into those tokens.
    #[arg(long)]
    pub parse_special: bool,
    /// Print one JSON object: {"ids": [...], "pieces": [...]}.
    #[arg(long)]
    pub json: bool,
    /// The text to tokenize.
    pub text: String,
}

pub fn run(args: Args) -> llmrt::Result<()> {
    let file = GgufFile::open(&args.model)?;
    let tok = Tokenizer::from_gguf(&file)?;
    let ids = tok.encode(&args.text, !args.no_special, args.parse_special)?;
    // A piece may be part of a multi-byte character; show such bytes lossily.
    let pieces: Vec<String> = ids
        .iter()
        .map(|&id| String::from_utf8_lossy(&tok.token_to_piece(id)).into_owned())
        .collect();
    if args.json {
        let out = serde_json::json!({ "ids": ids, "pieces": pieces });
        println!("{out}");
    } else {
        for (id, piece) in ids.iter().zip(&pieces) {
            println!("{id:>7} -> {piece:?}");
        }
        println!("{} tokens", ids.len());
    }
    Ok(())
}
