//! The forward pass against llama.cpp's reference outputs (tests/reference/*.json), on every SIMD
//! level this CPU has (scalar on the small models: it is the slow reference twin).
//!
//! llmrt computes llama.cpp's arithmetic operation for operation, so the assertions are those of
//! identical logits, at the precision the reference stores them:
//! - teacher forcing: at every position, our logits at llama.cpp's top-10 tokens equal its values
//!   to the 4 decimals it keeps, no other token of ours enters that top 10, and our log-sum-exp
//!   equals its (4-decimal) one;
//! - perplexity: equal to the reference's digits, up to the last bits of a float64 sum taken in
//!   another order;
//! - greedy continuations: the same tokens.

use std::sync::Arc;

use llmrt::{Model, ModelParams};

#[path = "common/models.rs"]
mod models;
#[path = "common/reference.rs"]
mod reference;

use reference::*;

fn load(name: &str) -> Option<Arc<Model>> {
    let path = models::model_path(&format!("{name}.gguf"))?;
    Some(Arc::new(
        Model::load(&path, &ModelParams::default()).expect("model loads"),
    ))
}

fn matches_llama_cpp(name: &str) {
    let Some(model) = load(name) else { return };
    let reference = models::reference_json(&format!("{name}.json"));
    for simd in levels(name) {
        teacher_forced(name, &model, &reference, simd, &|_| {});
        greedy(name, &model, &reference, simd, &|_| {});
    }
}

macro_rules! model_tests {
    ($($(#[$attr:meta])* $test:ident => $name:expr),* $(,)?) => {$(
        #[test]
        $(#[$attr])*
        fn $test() {
            matches_llama_cpp($name);
        }
    )*};
}

model_tests! {
    smollm2_q4_1 => "smollm2-135m-instruct-q4_1",
    smollm2_q4_0 => "smollm2-135m-instruct-q4_0",
    smollm2_q8_0 => "smollm2-135m-instruct-q8_0",
    gemma3_q4_k_m => "gemma-3-270m-q4_k_m",
    qwen25_q4_k_m => "qwen2.5-coder-0.5b-instruct-q4_k_m",
    #[ignore = "needs llama.cpp's quantizer: scripts/make-requantized-models.sh makes the file"]
    smollm2_q5_k_m_requantized => "smollm2-135m-instruct-q5_k_m",
    #[ignore = "needs llama.cpp's quantizer: scripts/make-requantized-models.sh makes the file"]
    smollm2_q5_1_requantized => "smollm2-135m-instruct-q5_1",
    #[ignore = "needs llama.cpp's quantizer: scripts/make-requantized-models.sh makes the file"]
    smollm2_q5_0_requantized => "smollm2-135m-instruct-q5_0",
    #[ignore = "needs llama.cpp's quantizer: scripts/make-requantized-models.sh makes the file"]
    smollm2_q3_k_requantized => "smollm2-135m-instruct-q3_k",
    #[ignore = "needs llama.cpp's quantizer: scripts/make-requantized-models.sh makes the file"]
    smollm2_iq4_xs_requantized => "smollm2-135m-instruct-iq4_xs",
    #[ignore = "needs llama.cpp's quantizer: scripts/make-requantized-models.sh makes the file"]
    smollm2_q2_k_requantized => "smollm2-135m-instruct-q2_k",
}

// The architectures no downloadable file has, on random-weight files of every weight variant
// (scripts/make_synthetic_models.py says what each holds).
model_tests! {
    llama3_q8_0 => "synthetic/llama3-q8_0",
    llama3_q4_0 => "synthetic/llama3-q4_0",
    llama3_kmix => "synthetic/llama3-kmix",
    llama3_f16 => "synthetic/llama3-f16",
    llama3_bf16 => "synthetic/llama3-bf16",
    qwen3_q8_0 => "synthetic/qwen3-q8_0",
    qwen3_q4_0 => "synthetic/qwen3-q4_0",
    qwen3_kmix => "synthetic/qwen3-kmix",
    qwen3_f16 => "synthetic/qwen3-f16",
    qwen3_bf16 => "synthetic/qwen3-bf16",
    gemma2_q8_0 => "synthetic/gemma2-q8_0",
    gemma2_q4_0 => "synthetic/gemma2-q4_0",
    gemma2_kmix => "synthetic/gemma2-kmix",
    gemma2_f16 => "synthetic/gemma2-f16",
    gemma2_bf16 => "synthetic/gemma2-bf16",
    olmo2_q8_0 => "synthetic/olmo2-q8_0",
    olmo2_q4_0 => "synthetic/olmo2-q4_0",
    olmo2_kmix => "synthetic/olmo2-kmix",
    olmo2_f16 => "synthetic/olmo2-f16",
    olmo2_bf16 => "synthetic/olmo2-bf16",
    granite_q8_0 => "synthetic/granite-q8_0",
    granite_q4_0 => "synthetic/granite-q4_0",
    granite_kmix => "synthetic/granite-kmix",
    granite_f16 => "synthetic/granite-f16",
    granite_bf16 => "synthetic/granite-bf16",
    smollm3_q8_0 => "synthetic/smollm3-q8_0",
    smollm3_q4_0 => "synthetic/smollm3-q4_0",
    smollm3_kmix => "synthetic/smollm3-kmix",
    qwen3moe_q8_0 => "synthetic/qwen3moe-q8_0",
    qwen3moe_q4_0 => "synthetic/qwen3moe-q4_0",
    qwen3moe_kmix => "synthetic/qwen3moe-kmix",
    qwen3moe_f16 => "synthetic/qwen3moe-f16",
    qwen3moe_bf16 => "synthetic/qwen3moe-bf16",
    mixtral_q8_0 => "synthetic/mixtral-q8_0",
    phi3_q8_0 => "synthetic/phi3-q8_0",
    starcoder2_q8_0 => "synthetic/starcoder2-q8_0",
    qwen3_yarn_q8_0 => "synthetic/qwen3-yarn-q8_0",
    qwen3_yarn_q4_0 => "synthetic/qwen3-yarn-q4_0",
    qwen3_yarn_kmix => "synthetic/qwen3-yarn-kmix",
    qwen3_yarn_f16 => "synthetic/qwen3-yarn-f16",
    qwen3_yarn_bf16 => "synthetic/qwen3-yarn-bf16",
    mistral3_q8_0 => "synthetic/mistral3-q8_0",
    mistral3_q4_0 => "synthetic/mistral3-q4_0",
    mistral3_kmix => "synthetic/mistral3-kmix",
    mistral3_f16 => "synthetic/mistral3-f16",
    mistral3_bf16 => "synthetic/mistral3-bf16",
    starcoder2_q4_0 => "synthetic/starcoder2-q4_0",
    starcoder2_kmix => "synthetic/starcoder2-kmix",
    starcoder2_f16 => "synthetic/starcoder2-f16",
    starcoder2_bf16 => "synthetic/starcoder2-bf16",
    phi3_q4_0 => "synthetic/phi3-q4_0",
    phi3_kmix => "synthetic/phi3-kmix",
    phi3_f16 => "synthetic/phi3-f16",
    phi3_bf16 => "synthetic/phi3-bf16",
    mixtral_q4_0 => "synthetic/mixtral-q4_0",
    mixtral_kmix => "synthetic/mixtral-kmix",
    mixtral_f16 => "synthetic/mixtral-f16",
    mixtral_bf16 => "synthetic/mixtral-bf16",
    smollm3_f16 => "synthetic/smollm3-f16",
    smollm3_bf16 => "synthetic/smollm3-bf16",
}

/// Every synthetic reference was computed on the file whose digest SHA256SUMS holds (which
/// scripts/make-synthetic-models.sh checks the generated files against), and every file there
/// has a reference and a test above.
#[test]
fn synthetic_references_match_the_generated_files() {
    let sums = std::fs::read_to_string(models::reference_path("synthetic/SHA256SUMS"))
        .expect("SHA256SUMS");
    let source = include_str!("model.rs");
    let mut n = 0;
    for line in sums.lines() {
        let (digest, file) = line.split_once("  ").expect("sha256sum line");
        let name = file.strip_suffix(".gguf").expect("a .gguf file");
        let reference = models::reference_json(&format!("synthetic/{name}.json"));
        assert_eq!(
            reference["model_sha256"], digest,
            "{name}: reference of another file"
        );
        assert!(
            source.contains(&format!("\"synthetic/{name}\"")),
            "synthetic/{name} has no test"
        );
        n += 1;
    }
    assert!(n > 0, "SHA256SUMS lists no file");
}
