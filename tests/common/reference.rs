//! Checks against llama.cpp's reference outputs (tests/reference/*.json), shared by the model
//! and adapter tests: teacher-forced logits at the reference's 4 decimals, perplexity, and
//! greedy continuations, on every SIMD level this CPU has.

// Each test crate uses only part of this module.
#![allow(dead_code)]

use std::sync::Arc;

use llmrt::quant::Simd;
use llmrt::{Model, Session, SessionParams};
use serde_json::Value;

/// Half a unit in the 4th decimal, the rounding of the reference's logits, plus room for the
/// float64 representation of a 4-decimal number (a bit-identical f32 logit is within this).
pub const HALF_4TH_DECIMAL: f64 = 0.5e-4 + 1e-9;
/// Relative difference allowed on the perplexity: float64 sums of ~1000 terms taken in another
/// order (numpy sums pairwise) differ in the last few bits, not in any printed digit.
pub const PERPLEXITY_REL_DIGITS: f64 = 1e-12;
/// Models this size or smaller are also run on the scalar kernels.
pub const SCALAR_MAX_PARAMS: &str = "135m";
/// The synthetic models (scripts/make-synthetic-models.sh) are small enough for the scalar
/// kernels too.
pub const SYNTHETIC: &str = "synthetic/";

/// Every SIMD level this CPU runs; the scalar twin only for the smallest models.
pub fn levels(name: &str) -> Vec<Simd> {
    Simd::all_supported()
        .into_iter()
        .filter(|&s| {
            s != Simd::Scalar || name.contains(SCALAR_MAX_PARAMS) || name.starts_with(SYNTHETIC)
        })
        .collect()
}

pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("id array")
        .iter()
        .map(|x| u32::try_from(x.as_u64().expect("id")).expect("id fits u32"))
        .collect()
}

/// The first index of the largest logit (llama.cpp's greedy choice breaks ties the same way).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = (0usize, f32::NEG_INFINITY);
    for (i, &l) in logits.iter().enumerate() {
        if l > best.1 {
            best = (i, l);
        }
    }
    best.0 as u32
}

/// log Σ exp, in float64 the way the reference computes it (max subtracted first).
pub fn logsumexp(logits: &[f32]) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    max + logits
        .iter()
        .map(|&l| (l as f64 - max).exp())
        .sum::<f64>()
        .ln()
}

/// One position of the reference: its top-10 `(id, logit)` pairs and its log-sum-exp.
pub struct ReferencePosition {
    pub top10: Vec<(usize, f64)>,
    pub logsumexp: f64,
}

pub fn reference_positions(tf: &Value) -> Vec<ReferencePosition> {
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
pub fn compare_position(logits: &[f32], want: &ReferencePosition) -> Result<(), String> {
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
pub fn teacher_forced(
    name: &str,
    model: &Arc<Model>,
    reference: &Value,
    simd: Simd,
    setup: &dyn Fn(&mut Session),
) {
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
        setup(&mut session);
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
pub fn greedy(
    name: &str,
    model: &Arc<Model>,
    reference: &Value,
    simd: Simd,
    setup: &dyn Fn(&mut Session),
) {
    for case in reference["greedy"].as_array().expect("greedy cases") {
        let prompt = ids(&case["prompt_ids"]);
        let expected = ids(&case["ids"]);
        let params = SessionParams {
            n_ctx: prompt.len() + expected.len() + 8,
            ..Default::default()
        };
        let mut session = Session::new(model.clone(), &params).expect("session");
        session.set_simd(simd).expect("supported level");
        setup(&mut session);
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
