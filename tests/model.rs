//! The forward pass against llama.cpp's reference outputs (tests/reference/*.json): teacher-forced
//! logits, perplexity and greedy continuations, on every model file present, for the AVX-512 and
//! AVX2 kernel paths (and scalar when nothing else is available).

use std::path::Path;
use std::sync::Arc;

use llmrt::quant::Simd;
use llmrt::{Model, ModelParams, Session, SessionParams};
use serde_json::Value;

/// Share of positions whose top-1 token must equal llama.cpp's.
const MIN_TOP1_AGREEMENT: f64 = 0.98;
/// Bound on the median over positions of max |ours − reference| over the reference's top-10.
const MAX_MEDIAN_LOGIT_ERROR: f32 = 0.1;
/// Relative tolerance of perplexity.
const MAX_PERPLEXITY_REL_ERROR: f64 = 0.01;
/// A greedy step whose top-2 logits are closer than this is a near-tie: the paths may diverge.
const NEAR_TIE: f32 = 0.1;


fn reference(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/reference/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("reference file"))
        .expect("reference JSON")
}

fn load(name: &str) -> Option<Arc<Model>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("models/{name}.gguf"));
    if !path.exists() {
        eprintln!(
            "SKIP {name}: {} is missing (run scripts/fetch-models.sh)",
            path.display()
        );
        return None;
    }
    Some(Arc::new(
        Model::load(&path, &ModelParams::default()).expect("model loads"),
    ))
}

/// The SIMD levels to test the model with: every vector level this CPU has, else scalar.
fn levels() -> Vec<Simd> {
    let vector: Vec<Simd> = Simd::all_supported()
        .into_iter()
        .filter(|s| *s != Simd::Scalar)
        .collect();
    if vector.is_empty() {
        vec![Simd::Scalar]
    } else {
        vector
    }
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("id array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn argmax(logits: &[f32]) -> (u32, f32) {
    let mut best = (0u32, f32::NEG_INFINITY);
    for (i, &l) in logits.iter().enumerate() {
        if l > best.1 {
            best = (i as u32, l);
        }
    }
    best
}

fn top2_gap(logits: &[f32]) -> f32 {
    let (a, first) = argmax(logits);
    let second = logits
        .iter()
        .enumerate()
        .filter(|(i, _)| *i as u32 != a)
        .map(|(_, &l)| l)
        .fold(f32::NEG_INFINITY, f32::max);
    first - second
}

fn logsumexp(logits: &[f32]) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    max + logits
        .iter()
        .map(|&l| (l as f64 - max).exp())
        .sum::<f64>()
        .ln()
}

fn teacher_forced(name: &str) {
    let Some(model) = load(name) else { return };
    let r = reference(name);
    let tf = &r["teacher_forced"][0];
    let tokens = ids(&tf["ids"]);
    let top10 = tf["top10"].as_array().expect("top10");
    let ref_ppl = tf["perplexity"].as_f64().expect("perplexity");
    for simd in levels() {
        let params = SessionParams {
            n_ctx: tokens.len() + 16,
            ..SessionParams::default()
        };
        let mut session = Session::new(model.clone(), &params).expect("session");
        session.set_simd(simd).expect("supported level");
        let mut agree = 0usize;
        let mut errors = Vec::with_capacity(tokens.len());
        let mut nll = 0.0f64;
        session
            .eval_all(&tokens, &mut |i, logits| {
                let reference: Vec<(usize, f32)> = top10[i]
                    .as_array()
                    .expect("pairs")
                    .iter()
                    .map(|p| {
                        (
                            p[0].as_u64().expect("id") as usize,
                            p[1].as_f64().expect("logit") as f32,
                        )
                    })
                    .collect();
                if argmax(logits).0 as usize == reference[0].0 {
                    agree += 1;
                }
                let err = reference
                    .iter()
                    .map(|&(id, l)| (logits[id] - l).abs())
                    .fold(0.0f32, f32::max);
                errors.push(err);
                if i + 1 < tokens.len() {
                    nll += logsumexp(logits) - logits[tokens[i + 1] as usize] as f64;
                }
            })
            .expect("eval");
        let n = tokens.len();
        let agreement = agree as f64 / n as f64;
        errors.sort_by(f32::total_cmp);
        let median = errors[n / 2];
        let ppl = (nll / (n - 1) as f64).exp();
        let ppl_err = (ppl - ref_ppl).abs() / ref_ppl;
        println!(
            "{name} [{}]: top-1 agreement {:.2}% over {n} positions, median max|Δlogit| {median:.4} (max {:.4}), perplexity {ppl:.4} vs {ref_ppl:.4} ({:+.3}%)",
            simd.name(),
            agreement * 100.0,
            errors[n - 1],
            (ppl - ref_ppl) / ref_ppl * 100.0
        );
        assert!(
            agreement >= MIN_TOP1_AGREEMENT,
            "{name} [{simd:?}]: top-1 agreement {agreement}"
        );
        assert!(
            median <= MAX_MEDIAN_LOGIT_ERROR,
            "{name} [{simd:?}]: median logit error {median}"
        );
        assert!(
            ppl_err <= MAX_PERPLEXITY_REL_ERROR,
            "{name} [{simd:?}]: perplexity {ppl} vs {ref_ppl}"
        );
    }
}

fn greedy(name: &str) {
    let Some(model) = load(name) else { return };
    let r = reference(name);
    for case in r["greedy"].as_array().expect("greedy cases") {
        let prompt = ids(&case["prompt_ids"]);
        let expected = ids(&case["ids"]);
        for simd in levels() {
            let mut session = Session::new(
                model.clone(),
                &SessionParams {
                    n_ctx: 256,
                    ..Default::default()
                },
            )
            .expect("session");
            session.set_simd(simd).expect("supported level");
            session.eval(&prompt).expect("prompt");
            let mut ours = Vec::new();
            let mut near_tie_at = None;
            for step in 0..expected.len() {
                let logits = session.logits();
                if near_tie_at.is_none() && top2_gap(logits) < NEAR_TIE {
                    near_tie_at = Some(step);
                }
                let (next, _) = argmax(logits);
                ours.push(next);
                if step + 1 < expected.len() {
                    session.eval(&[next]).expect("step");
                }
            }
            let compared = near_tie_at.unwrap_or(expected.len());
            if let Some(s) = near_tie_at {
                println!(
                    "{name} [{}] {:?}: near-tie (top-2 within {NEAR_TIE}) at step {s}; comparing the first {compared} tokens",
                    simd.name(),
                    case["prompt"]
                );
            }
            assert_eq!(
                ours[..compared],
                expected[..compared],
                "{name} [{simd:?}] greedy continuation of {:?}",
                case["prompt"]
            );
        }
    }
}

macro_rules! model_tests {
    ($($module:ident => $name:expr),* $(,)?) => {$(
        mod $module {
            #[test]
            fn teacher_forced_logits_and_perplexity_match_llama_cpp() {
                super::teacher_forced($name);
            }
            #[test]
            fn greedy_continuations_match_llama_cpp() {
                super::greedy($name);
            }
        }
    )*};
}

model_tests! {
    smollm2_q4_1 => "smollm2-135m-instruct-q4_1",
    smollm2_q4_0 => "smollm2-135m-instruct-q4_0",
    smollm2_q8_0 => "smollm2-135m-instruct-q8_0",
    gemma3_q4_k_m => "gemma-3-270m-q4_k_m",
    qwen25_q4_k_m => "qwen2.5-coder-0.5b-instruct-q4_k_m",
}
