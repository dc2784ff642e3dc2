//! `llmrt inspect MODEL [--json]`.

use llmrt::gguf::GgufFile;

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF file.
    pub model: std::path::PathBuf,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> llmrt::Result<()> {
    let file = GgufFile::open(&args.model)?;
    println!(
        "{} tensors, {} metadata entries",
        file.tensors().len(),
        file.metadata().len()
    );
    for t in file.tensors() {
        println!("{:<40} {:<6} {:?} {}", t.name, t.ty, t.dims, t.size);
    }
    Ok(())
}
