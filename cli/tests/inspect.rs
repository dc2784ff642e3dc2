//! `llmrt inspect`: its JSON and text summaries of the test models (checked against the
//! reference's tensor samples) and its error for a malformed file.

use std::path::Path;

#[path = "../../tests/common/models.rs"]
mod models;
use models::{model_path, reference_json};

/// Runs the built `llmrt inspect --json` on `model` and parses its output.
fn inspect_json(model: &Path) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_llmrt"))
        .arg("inspect")
        .arg("--json")
        .arg(model)
        .output()
        .expect("run llmrt");
    assert!(
        out.status.success(),
        "llmrt inspect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("inspect --json prints one JSON object")
}

/// What each test model holds: architecture, tensor count, tensors per type
/// (every type the file holds), and the tokenizer.
struct Expected {
    file: &'static str,
    architecture: &'static str,
    tensors: u64,
    types: &'static [(&'static str, u64)],
    tokenizer: &'static str,
    chat_template: bool,
}

const EXPECTED: [Expected; 3] = [
    Expected {
        file: "smollm2-135m-instruct-q4_1.gguf",
        architecture: "llama",
        tensors: 272,
        types: &[("Q4_1", 210), ("F32", 61), ("Q8_0", 1)],
        tokenizer: "gpt2",
        chat_template: true,
    },
    Expected {
        file: "gemma-3-270m-q4_k_m.gguf",
        architecture: "gemma3",
        tensors: 236,
        types: &[],
        tokenizer: "llama",
        chat_template: false,
    },
    Expected {
        file: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        architecture: "qwen2",
        tensors: 291,
        types: &[],
        tokenizer: "gpt2",
        chat_template: true,
    },
];

#[test]
fn inspect_reports_the_test_models() {
    let samples = reference_json("dequant-samples.json");
    for want in &EXPECTED {
        let Some(path) = model_path(want.file) else {
            continue;
        };
        let got = inspect_json(&path);
        assert_eq!(got["architecture"], want.architecture, "{}", want.file);
        assert_eq!(got["tensor_count"], want.tensors, "{}", want.file);
        let tensors = got["tensors"].as_array().unwrap();
        assert_eq!(tensors.len() as u64, want.tensors, "{}", want.file);
        for (ty, n) in want.types {
            let counted = tensors.iter().filter(|t| t["type"] == *ty).count() as u64;
            assert_eq!(counted, *n, "{}: {ty} tensors", want.file);
            assert_eq!(got["tensor_types"][ty], *n, "{}: {ty} summary", want.file);
        }
        // The summary's counts add up to the table, and the parameter count is its elements.
        let type_total: u64 = got["tensor_types"]
            .as_object()
            .unwrap()
            .values()
            .map(|n| n.as_u64().unwrap())
            .sum();
        assert_eq!(type_total, want.tensors);
        let elements: u64 = tensors
            .iter()
            .map(|t| {
                t["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap())
                    .product::<u64>()
            })
            .sum();
        assert_eq!(got["parameter_count"], elements);
        // Every tensor lies inside the file, aligned.
        let (data_offset, file_size) = (
            got["data_offset"].as_u64().unwrap(),
            got["file_size"].as_u64().unwrap(),
        );
        let alignment = got["alignment"].as_u64().unwrap();
        for t in tensors {
            let (offset, bytes) = (t["offset"].as_u64().unwrap(), t["bytes"].as_u64().unwrap());
            assert_eq!(offset % alignment, 0, "{}", t["name"]);
            assert!(data_offset + offset + bytes <= file_size, "{}", t["name"]);
        }
        assert_eq!(got["tokenizer_model"], want.tokenizer);
        assert_eq!(got["has_chat_template"], want.chat_template);
        // Vocabulary size is the token list's length, which the metadata listing also gives.
        let tokens = got["metadata"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["key"] == "tokenizer.ggml.tokens")
            .unwrap();
        assert_eq!(got["vocab_size"], tokens["value"]["length"]);
        for key in [
            "context_length",
            "embedding_length",
            "block_count",
            "head_count",
        ] {
            assert!(
                got[key].as_u64().is_some_and(|v| v > 0),
                "{}: {key}",
                want.file
            );
        }
        // Every tensor sampled in the reference has the type and shape inspect reports.
        let reference = samples["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["file"] == want.file)
            .expect("model in dequant-samples.json");
        for sample in reference["samples"].as_array().unwrap() {
            let t = tensors
                .iter()
                .find(|t| t["name"] == sample["tensor"])
                .unwrap_or_else(|| panic!("{}: {} missing", want.file, sample["tensor"]));
            assert_eq!(t["type"], sample["type"], "{}", sample["tensor"]);
            assert_eq!(t["shape"], sample["ne"], "{}", sample["tensor"]);
        }
    }
}

#[test]
fn inspect_text_output_and_errors() {
    let exe = env!("CARGO_BIN_EXE_llmrt");
    if let Some(path) = model_path("smollm2-135m-instruct-q4_1.gguf") {
        let out = std::process::Command::new(exe)
            .arg("inspect")
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        for line in [
            "architecture:    llama",
            "file type:       MOSTLY_Q4_1 (3)",
            "vocab size:      49152",
            "chat template:   yes",
            "tensors:         272 (61 F32, 210 Q4_1, 1 Q8_0)",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        // The token list is shortened, not printed whole.
        assert!(text.contains("… (49152 items)"));
        assert!(text.len() < 100_000, "{} bytes of output", text.len());

        // A reader that closes the pipe early is not an error, and never a panic.
        let mut child = std::process::Command::new(exe)
            .arg("inspect")
            .arg(&path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        // Ending on SIGPIPE, as cat and grep do, or finishing first, are both quiet ends.
        let ended_on_sigpipe =
            std::os::unix::process::ExitStatusExt::signal(&out.status) == Some(libc::SIGPIPE);
        assert!(
            out.status.success() || ended_on_sigpipe,
            "{:?}: {stderr}",
            out.status
        );
        assert!(stderr.is_empty(), "{stderr}");
    }
    // A malformed file is an error message and exit status 1.
    let dir = std::env::temp_dir().join(format!("llmrt-inspect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.gguf");
    // A header that claims format version 1, which llmrt (like llama.cpp) refuses.
    let mut version_1 = b"GGUF".to_vec();
    version_1.extend_from_slice(&1u32.to_le_bytes());
    version_1.extend_from_slice(&[0; 16]);
    std::fs::write(&bad, version_1).unwrap();
    let out = std::process::Command::new(exe)
        .arg("inspect")
        .arg(&bad)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid GGUF: ") && stderr.contains("bad.gguf: version 1"),
        "the message names the file and the version: {stderr}"
    );
}
