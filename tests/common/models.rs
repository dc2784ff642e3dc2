//! Where the test models and llama.cpp's reference outputs are, and what a test does when a
//! model file is absent: under `scripts/test.sh` (which sets `LLMRT_REQUIRE_MODELS=1`) that is a
//! failure; elsewhere the test says loudly that it skipped and passes.

// Each test crate compiles this module and uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The repository root: the nearest ancestor of this crate's manifest directory that holds
/// `tests/reference` (the library's own tests run from it, the CLI's from `cli/`).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .find(|dir| dir.join("tests/reference").is_dir())
        .unwrap_or(manifest)
        .to_path_buf()
}

/// `tests/reference/NAME`.
pub fn reference_path(name: &str) -> PathBuf {
    repo_root().join("tests/reference").join(name)
}

/// `tests/reference/NAME`, parsed.
pub fn reference_json(name: &str) -> serde_json::Value {
    let path = reference_path(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reference {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("reference {}: {e}", path.display()))
}

/// Whether an absent model fails the test instead of skipping it.
pub fn models_required() -> bool {
    std::env::var_os("LLMRT_REQUIRE_MODELS").is_some_and(|v| v == "1")
}

/// `models/NAME` when the file is there. When it is not: panics if models are required,
/// otherwise prints a SKIP line naming the file and returns `None`.
pub fn model_path(name: &str) -> Option<PathBuf> {
    let path = repo_root().join("models").join(name);
    if path.is_file() {
        return Some(path);
    }
    assert!(
        !models_required(),
        "{} is missing and LLMRT_REQUIRE_MODELS=1 (run scripts/fetch-models.sh)",
        path.display()
    );
    eprintln!(
        "SKIP: {} is missing (run scripts/fetch-models.sh); this test checked nothing",
        path.display()
    );
    None
}

/// The model `models/NAME`, loaded with the default parameters, when the file is there (see
/// [`model_path`] for when it is not).
pub fn load(name: &str) -> Option<std::sync::Arc<llmrt::Model>> {
    let path = model_path(name)?;
    let model = llmrt::Model::load(&path, &llmrt::ModelParams::default()).expect("model loads");
    Some(std::sync::Arc::new(model))
}
