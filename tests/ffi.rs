//! The C ABI end to end: the committed header is what cbindgen generates; the C and C++ examples
//! build against the shared and the static library and print llama.cpp's reference text; a C
//! program calls every function with NULL and bad arguments; valgrind finds no leaks or invalid
//! accesses; four threads with their own sessions on one model agree with one thread (from C and
//! from Rust).
//!
//! The libraries are the ones cargo builds beside this test (`target/release/libllmrt.{so,a}`
//! under `cargo test --release`); gcc and g++ must be installed, valgrind is optional.

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The header as cbindgen generates it from src/ffi with cbindgen.toml.
fn generate_header() -> Vec<u8> {
    let config = cbindgen::Config::from_file(root().join("cbindgen.toml"))
        .unwrap_or_else(|e| panic!("cbindgen.toml: {e}"));
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(root().join("src/ffi/mod.rs"))
        .generate()
        .unwrap_or_else(|e| panic!("cbindgen: {e}"));
    let mut header = Vec::new();
    bindings.write(&mut header);
    header
}

/// Fails when include/llmrt.h is stale; with LLMRT_BLESS=1 rewrites it instead.
#[test]
fn header_is_fresh() {
    let path = root().join("include/llmrt.h");
    let generated = generate_header();
    if std::env::var_os("LLMRT_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/llmrt.h differs from what cbindgen generates from src/ffi: run scripts/gen-header.sh"
    );
}
