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

use llmrt::quant::Simd;
use llmrt::{Model, ModelParams, Session, SessionParams};
use serde_json::Value;

#[path = "common/models.rs"]
mod models;

/// Half a unit in the 4th decimal, the rounding of the reference's logits, plus room for the
/// float64 representation of a 4-decimal number (a bit-identical f32 logit is within this).
const HALF_4TH_DECIMAL: f64 = 0.5e-4 + 1e-9;
/// Relative difference allowed on the perplexity: float64 sums of ~1000 terms taken in another
/// order (numpy sums pairwise) differ in the last few bits, not in any printed digit.
const PERPLEXITY_REL_DIGITS: f64 = 1e-12;
/// Models this size or smaller are also run on the scalar kernels.
const SCALAR_MAX_PARAMS: &str = "135m";
/// The synthetic models (scripts/make-synthetic-models.sh) are small enough for the scalar
/// kernels too.
const SYNTHETIC: &str = "synthetic/";

fn load(name: &str) -> Option<Arc<Model>> {
    let path = models::model_path(&format!("{name}.gguf"))?;
    Some(Arc::new(
        Model::load(&path, &ModelParams::default()).expect("model loads"),
    ))
}

/// Every SIMD level this CPU runs; the scalar twin only for the smallest models.
fn levels(name: &str) -> Vec<Simd> {
    Simd::all_supported()
        .into_iter()
        .filter(|&s| {
            s != Simd::Scalar || name.contains(SCALAR_MAX_PARAMS) || name.starts_with(SYNTHETIC)
        })
        .collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("id array")
        .iter()
        .map(|x| u32::try_from(x.as_u64().expect("id")).expect("id fits u32"))
        .collect()
}

/// The first index of the largest logit (llama.cpp's greedy choice breaks ties the same way).
fn argmax(logits: &[f32]) -> u32 {
    let mut best = (0usize, f32::NEG_INFINITY);
    for (i, &l) in logits.iter().enumerate() {
        if l > best.1 {
            best = (i, l);
        }
    }
    best.0 as u32
}

/// log Σ exp, in float64 the way the reference computes it (max subtracted first).
fn logsumexp(logits: &[f32]) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    max + logits
        .iter()
        .map(|&l| (l as f64 - max).exp())
        .sum::<f64>()
        .ln()
}

/// One position of the reference: its top-10 `(id, logit)` pairs and its log-sum-exp.
struct ReferencePosition {
    top10: Vec<(usize, f64)>,
    logsumexp: f64,
}

fn reference_positions(tf: &Value) -> Vec<ReferencePosition> {
    let top10 = tf["top10"].as_array().expect("top10");
    let lse = tf["logsumexp"].as_array().expect("logsumexp");
    assert_eq!(top10.len(), lse.len());
    top10
        .iter()
        .zip(lse)
        .map(|(row, lse)| ReferencePosition {
            top10: row
                .as_array()
                .expect("pairs")
                .iter()
                .map(|p| {
                    let id = usize::try_from(p[0].as_u64().expect("id")).expect("id");
                    (id, p[1].as_f64().expect("logit"))
                })
                .collect(),
            logsumexp: lse.as_f64().expect("logsumexp"),
        })
        .collect()
}

/// Checks one position's logits against the reference; returns a description of the first
/// mismatch, if any.
fn compare_position(logits: &[f32], want: &ReferencePosition) -> Result<(), String> {
    for &(id, reference) in &want.top10 {
        let ours = logits[id] as f64;
        if (ours - reference).abs() > HALF_4TH_DECIMAL {
            return Err(format!(
                "logit of token {id}: ours {ours:.6}, llama.cpp {reference:.4}"
            ));
        }
    }
    // No token outside the reference's top 10 may rank above its 10th (ties aside).
    let tenth = want.top10.last().expect("10 pairs").1;
    if let Some((id, &l)) = logits.iter().enumerate().find(|&(id, &l)| {
        l as f64 > tenth + HALF_4TH_DECIMAL && !want.top10.iter().any(|&(t, _)| t == id)
    }) {
        return Err(format!(
            "token {id} (logit {l:.6}) is in our top 10 but not in llama.cpp's (10th: {tenth:.4})"
        ));
    }
    let lse = logsumexp(logits);
    if (lse - want.logsumexp).abs() > HALF_4TH_DECIMAL {
        return Err(format!(
            "log-sum-exp: ours {lse:.6}, llama.cpp {:.4}",
            want.logsumexp
        ));
    }
    Ok(())
}

/// Teacher-forces each reference text in prompt batches of 512 tokens (as llama.cpp computed it)
/// and compares every position and the perplexity.
fn teacher_forced(name: &str, model: &Arc<Model>, reference: &Value, simd: Simd) {
    for tf in reference["teacher_forced"]
        .as_array()
        .expect("teacher_forced cases")
    {
        let tokens = ids(&tf["ids"]);
        let positions = reference_positions(tf);
        assert_eq!(positions.len(), tokens.len());
        let params = SessionParams {
            n_ctx: tokens.len() + 16,
            n_batch: 512,
            ..SessionParams::default()
        };
        let mut session = Session::new(model.clone(), &params).expect("session");
        session.set_simd(simd).expect("supported level");
        let mut mismatches = Vec::new();
        let mut nll = Vec::with_capacity(tokens.len());
        session
            .eval_all(&tokens, &mut |i, logits| {
                if let Err(e) = compare_position(logits, &positions[i]) {
                    mismatches.push(format!("position {i}: {e}"));
                }
                if let Some(&next) = tokens.get(i + 1) {
                    nll.push(logsumexp(logits) - logits[next as usize] as f64);
                }
            })
            .expect("eval");
        let perplexity = (nll.iter().sum::<f64>() / nll.len() as f64).exp();
        let want = tf["perplexity"].as_f64().expect("perplexity");
        println!(
            "{name} [{}] {} positions: {} differ from llama.cpp at 4 decimals; perplexity {perplexity:.12} vs {want:.12}",
            simd.name(),
            tokens.len(),
            mismatches.len()
        );
        assert!(
            mismatches.is_empty(),
            "{name} [{}]: {} of {} positions differ from llama.cpp, first: {}",
            simd.name(),
            mismatches.len(),
            tokens.len(),
            mismatches[0]
        );
        assert!(
            ((perplexity - want) / want).abs() <= PERPLEXITY_REL_DIGITS,
            "{name} [{}]: perplexity {perplexity} vs llama.cpp's {want}",
            simd.name()
        );
    }
}

/// Free-running greedy decoding (the prompt as one batch, then one token at a time, as the
/// reference did) gives llama.cpp's tokens.
fn greedy(name: &str, model: &Arc<Model>, reference: &Value, simd: Simd) {
    for case in reference["greedy"].as_array().expect("greedy cases") {
        let prompt = ids(&case["prompt_ids"]);
        let expected = ids(&case["ids"]);
        let params = SessionParams {
            n_ctx: prompt.len() + expected.len() + 8,
            ..Default::default()
        };
        let mut session = Session::new(model.clone(), &params).expect("session");
        session.set_simd(simd).expect("supported level");
        session.eval(&prompt).expect("prompt");
        let mut ours = Vec::with_capacity(expected.len());
        for step in 0..expected.len() {
            let next = argmax(session.logits());
            ours.push(next);
            if step + 1 < expected.len() {
                session.eval(&[next]).expect("step");
            }
        }
        assert_eq!(
            ours,
            expected,
            "{name} [{}] greedy continuation of {:?}",
            simd.name(),
            case["prompt"]
        );
    }
}

fn matches_llama_cpp(name: &str) {
    let Some(model) = load(name) else { return };
    let reference = models::reference_json(&format!("{name}.json"));
    for simd in levels(name) {
        teacher_forced(name, &model, &reference, simd);
        greedy(name, &model, &reference, simd);
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
