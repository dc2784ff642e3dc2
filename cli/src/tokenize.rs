//! `llmrt tokenize -m MODEL [--no-special] [--parse-special] [--json] (TEXT | -f FILE)`: the ids of
//! the text with the piece each one stands for.

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
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    pub text: Option<String>,
    /// Read the text from FILE (`-` = standard input).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<std::path::PathBuf>,
}

pub fn run(args: Args) -> llmrt::Result<()> {
    let file = GgufFile::open(&args.model)?;
    let tok = Tokenizer::from_gguf(&file)?;
    let text = match (args.text, &args.file) {
        (Some(text), _) => text,
        (None, Some(file)) => crate::common::read_text(file)?,
        (None, None) => unreachable!("clap requires TEXT or -f"),
    };
    let ids = tok.encode(&text, !args.no_special, args.parse_special)?;
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
