//! Every pre-tokenizer llmrt knows splits text as llama.cpp's does: one vocabulary (SmolLM2's)
//! under each `tokenizer.ggml.pre` value, on many scripts and odd inputs, token ids compared
//! with what llama.cpp computed (`scripts/make_pretokenizer_reference.py` wrote
//! tests/reference/pretokenizers.json from vocab-only copies of the same metadata).

mod common;

use llmrt::gguf::{GgufFile, GgufWriter, Value};
use llmrt::tokenizer::Tokenizer;

use common::models::{model_path, reference_json};

/// The model's metadata (no tensors) with `tokenizer.ggml.pre` set to `pre`.
fn vocab_with_pre(model: &GgufFile, pre: &str) -> GgufFile {
    let mut w = GgufWriter::new();
    for (key, value) in model.metadata() {
        w.set(key, value.clone());
    }
    w.set("tokenizer.ggml.pre", Value::String(pre.into()));
    GgufFile::from_bytes(w.to_bytes()).expect("valid GGUF")
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("id list")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

#[test]
fn every_pre_tokenizer_splits_as_llama_cpp() {
    let reference = reference_json("pretokenizers.json");
    let vocabulary = reference["vocabulary"].as_str().expect("vocabulary");
    let Some(path) = model_path(vocabulary) else {
        return;
    };
    let model = GgufFile::open(path).expect("open the model");
    let texts: Vec<&str> = reference["texts"]
        .as_array()
        .expect("texts")
        .iter()
        .map(|t| t.as_str().expect("text"))
        .collect();
    let pres = reference["pre"].as_object().expect("pre table");
    assert!(pres.len() >= 70, "the reference covers every name");
    let mut failures = Vec::new();
    for (pre, expected) in pres {
        assert!(
            expected.get("error").is_none(),
            "llama.cpp refused `{pre}`; the reference should not list it"
        );
        let tokenizer = Tokenizer::from_gguf(&vocab_with_pre(&model, pre))
            .unwrap_or_else(|e| panic!("pre `{pre}`: {e}"));
        for (i, text) in texts.iter().enumerate() {
            for (special, key) in [(true, "ids"), (false, "ids_without_special")] {
                let ours = tokenizer.encode(text, special, false).expect("encode");
                if ours != ids(&expected[key][i]) {
                    failures.push(format!("pre `{pre}` {key} of {text:?}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from llama.cpp:\n{}",
        failures.len(),
        pres.len() * texts.len() * 2,
        failures.join("\n")
    );
}

/// A name that is not in the table is refused, never guessed.
#[test]
fn an_unknown_pre_tokenizer_is_refused_by_name() {
    let reference = reference_json("pretokenizers.json");
    let Some(path) = model_path(reference["vocabulary"].as_str().expect("vocabulary")) else {
        return;
    };
    let model = GgufFile::open(path).expect("open the model");
    let Err(err) = Tokenizer::from_gguf(&vocab_with_pre(&model, "no-such-family")) else {
        panic!("an unknown pre-tokenizer was accepted");
    };
    assert!(err.to_string().contains("no-such-family"), "{err}");
}
