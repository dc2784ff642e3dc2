//! `llmrt-gen-header [--check]`: generates the C header from the C ABI's sources (`src/ffi/`) with
//! cbindgen and `cbindgen.toml`, and writes it to `include/llmrt.h`; with `--check` compares
//! instead and exits with status 1 when the committed header is stale.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let check = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--check") => true,
        Some(other) => {
            eprintln!("usage: llmrt-gen-header [--check] (unknown argument {other:?})");
            return ExitCode::from(2);
        }
    };
    let config = match cbindgen::Config::from_file(root.join("cbindgen.toml")) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("cbindgen.toml: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bindings = match cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/ffi/mod.rs"))
        .generate()
    {
        Ok(bindings) => bindings,
        Err(e) => {
            eprintln!("cbindgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let path = root.join("include/llmrt.h");
    if check {
        let committed = std::fs::read(&path).unwrap_or_default();
        if committed != generated {
            eprintln!(
                "include/llmrt.h differs from what cbindgen generates from src/ffi: run scripts/gen-header.sh"
            );
            return ExitCode::FAILURE;
        }
        println!("include/llmrt.h is what cbindgen generates");
    } else if let Err(e) = std::fs::write(&path, &generated) {
        eprintln!("{}: {e}", path.display());
        return ExitCode::FAILURE;
    } else {
        println!("include/llmrt.h regenerated");
    }
    ExitCode::SUCCESS
}
