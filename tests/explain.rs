//! `llmrt::explain` and `llmrt explain` on a real model: the recorded candidates against logits
//! recomputed in a separate session, greedy choices against llama.cpp's reference continuation,
//! the attention rows as causal probability distributions, and the PNG and HTML outputs (the
//! CLI's are tested with the CLI, in cli/tests/explain.rs).

use std::path::PathBuf;
use std::sync::Arc;

use llmrt::explain::{explain, visible_piece, ExplainParams, Explanation};
use llmrt::{Model, Session, SessionParams};
use serde_json::Value;

mod common;
use common::heatmap::assert_heatmap;
use common::models;

const MODEL: &str = "smollm2-135m-instruct-q4_1";
/// The first greedy case of the reference file.
const REF_PROMPT: &str = "the first president of US is";
/// A greedy step whose top-2 logits are closer than this is a near-tie: the paths may diverge.
const NEAR_TIE: f32 = 0.1;
/// Recorded logits against the same computation in another session (same kernels and shapes,
/// so they should agree to rounding).
const MAX_LOGIT_DIFF: f32 = 1e-4;
/// Recorded probabilities against softmax recomputed here in f64.
const MAX_PROB_DIFF: f32 = 1e-5;
/// How far an attention row's sum may be from 1.
const MAX_ROW_SUM_ERROR: f32 = 1e-3;
/// The mean-over-heads row against the mean of the per-head rows.
const MAX_HEAD_MEAN_DIFF: f32 = 1e-5;

fn model_path() -> PathBuf {
    models::repo_root().join(format!("models/{MODEL}.gguf"))
}

fn load() -> Option<Arc<Model>> {
    models::load(&format!("{MODEL}.gguf"))
}

fn session(model: &Arc<Model>) -> Session {
    Session::new(
        model.clone(),
        &SessionParams {
            n_ctx: 256,
            ..Default::default()
        },
    )
    .expect("session")
}

fn reference_greedy_ids() -> (Vec<u32>, Vec<u32>) {
    let r = models::reference_json(&format!("{MODEL}.json"));
    let case = &r["greedy"][0];
    assert_eq!(
        case["prompt"], REF_PROMPT,
        "reference case 0 is the test prompt"
    );
    let ids = |v: &Value| -> Vec<u32> {
        v.as_array()
            .expect("id array")
            .iter()
            .map(|x| x.as_u64().expect("id") as u32)
            .collect()
    };
    (ids(&case["prompt_ids"]), ids(&case["ids"]))
}

/// Softmax probabilities of `logits` in f64, via the log-sum-exp.
fn softmax64(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = max
        + logits
            .iter()
            .map(|&l| (l as f64 - max).exp())
            .sum::<f64>()
            .ln();
    logits.iter().map(|&l| (l as f64 - lse).exp()).collect()
}

/// Ids of the `k` largest logits, largest first.
fn top_ids(logits: &[f32], k: usize) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
    ids.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    ids.truncate(k);
    ids
}

fn top2_gap(logits: &[f32]) -> f32 {
    let t = top_ids(logits, 2);
    logits[t[0] as usize] - logits[t[1] as usize]
}

#[test]
fn candidates_are_softmax_of_logits_and_greedy_follows_the_reference() {
    let Some(model) = load() else { return };
    let (ref_prompt, ref_ids) = reference_greedy_ids();
    let params = ExplainParams {
        n_steps: 16,
        top_k: 8,
        ..ExplainParams::default()
    };
    let mut s = session(&model);
    let ex = explain(&mut s, REF_PROMPT, &params).expect("explain");
    let prompt_ids: Vec<u32> = ex.prompt.iter().map(|t| t.id).collect();
    assert_eq!(prompt_ids, ref_prompt, "prompt tokens");
    assert_eq!(ex.steps.len(), params.n_steps, "no end of text this early");

    // The independent path: a fresh session without a probe, fed the same tokens one by one.
    let mut check = session(&model);
    check.eval(&prompt_ids).expect("prompt");
    let mut gaps = Vec::new();
    for (k, step) in ex.steps.iter().enumerate() {
        let logits = check.logits().to_vec();
        let probs = softmax64(&logits);
        let expected_ids = top_ids(&logits, params.top_k);
        let ids: Vec<u32> = step.candidates.iter().map(|c| c.id).collect();
        assert_eq!(ids, expected_ids, "step {k}: top-{} ids", params.top_k);
        let mut sum = 0.0f32;
        for c in &step.candidates {
            let (p, l) = (probs[c.id as usize] as f32, logits[c.id as usize]);
            assert!(
                (c.logit - l).abs() <= MAX_LOGIT_DIFF,
                "step {k} id {}: logit {} vs {l}",
                c.id,
                c.logit
            );
            assert!(
                (c.prob - p).abs() <= MAX_PROB_DIFF,
                "step {k} id {}: prob {} vs {p}",
                c.id,
                c.prob
            );
            sum += c.prob;
        }
        assert!(sum <= 1.0 + MAX_PROB_DIFF, "step {k}: top-k mass {sum} > 1");
        // Greedy: the chosen token is the argmax, the first candidate, with the largest mass.
        assert_eq!(step.chosen.id, expected_ids[0], "step {k}: argmax");
        assert_eq!(step.chosen.id, step.candidates[0].id, "step {k}");
        assert_eq!(step.prob, step.candidates[0].prob, "step {k}");
        gaps.push(top2_gap(&logits));
        check.eval(&[step.chosen.id]).expect("step");
    }

    // Against llama.cpp: identical tokens, except that at a near-tie (our top-2 logits within
    // NEAR_TIE) the reference may have taken our second choice, after which the paths diverge.
    let mut compared = 0;
    for (k, (step, &expected)) in ex.steps.iter().zip(&ref_ids).enumerate() {
        if gaps[k] < NEAR_TIE {
            println!(
                "near-tie at step {k}: top-2 logits within {:.4} (< {NEAR_TIE})",
                gaps[k]
            );
        }
        if step.chosen.id != expected {
            let second = step.candidates[1].id;
            assert!(
                gaps[k] < NEAR_TIE && second == expected,
                "step {k}: chose {} where llama.cpp chose {expected} (top-2 gap {})",
                step.chosen.id,
                gaps[k]
            );
            println!("diverged from the reference at that near-tie (step {k}); stopped comparing");
            break;
        }
        compared += 1;
    }
    println!("{compared} greedy tokens equal llama.cpp's");
    assert!(compared > 0, "nothing compared");
    let ours: Vec<u32> = ex.steps.iter().map(|s| s.chosen.id).collect();
    assert_eq!(ex.text, model.tokenizer().decode(&ours), "generated text");
}

/// Checks every row of `ex.attention` is a distribution over the tokens up to its own.
fn assert_causal_rows(ex: &Explanation, what: &str) {
    let expected_rows = ex.prompt.len() + ex.steps.len() - 1;
    assert_eq!(
        ex.attention.len(),
        expected_rows,
        "{what}: one row per evaluated token"
    );
    for (i, row) in ex.attention.iter().enumerate() {
        assert_eq!(
            row.len(),
            i + 1,
            "{what}: row {i} covers positions 0..={i} only"
        );
        assert!(
            row.iter().all(|w| w.is_finite() && *w >= 0.0),
            "{what}: row {i} has a negative or non-finite weight: {row:?}"
        );
        let sum: f32 = row.iter().sum();
        assert!(
            (sum - 1.0).abs() <= MAX_ROW_SUM_ERROR,
            "{what}: row {i} sums to {sum}"
        );
    }
}

#[test]
fn attention_rows_are_causal_distributions_over_the_whole_text() {
    let Some(model) = load() else { return };
    let c = model.config();
    let mut s = session(&model);
    // Leave unrelated tokens in the cache: explain must start from an empty one.
    let other = model
        .tokenizer()
        .encode("Once upon a time", true, false)
        .unwrap();
    s.eval(&other).expect("eval");
    for (layer, head) in [
        (None, None),
        (Some(0), Some(0)),
        (Some(c.n_layer / 2), Some(c.n_head - 1)),
    ] {
        let params = ExplainParams {
            n_steps: 5,
            layer,
            head,
            ..ExplainParams::default()
        };
        let ex = explain(&mut s, REF_PROMPT, &params).expect("explain");
        let what = format!("layer {layer:?} head {head:?}");
        assert_eq!(ex.layer, layer.unwrap_or(c.n_layer - 1), "{what}");
        assert_eq!(ex.head, head, "{what}");
        assert_causal_rows(&ex, &what);
        // The attention tokens are the prompt and every chosen token but the last, which are
        // exactly what the session evaluated (no leftovers from before).
        let tokens: Vec<u32> = ex.attention_tokens().iter().map(|t| t.id).collect();
        assert_eq!(s.tokens(), &tokens[..], "{what}: the session's cache");
        assert!(
            s.attention_probe().is_none(),
            "{what}: the probe is removed"
        );
    }
}

#[test]
fn mean_over_heads_is_the_mean_of_the_heads() {
    let Some(model) = load() else { return };
    let n_head = model.config().n_head;
    let mut s = session(&model);
    let run = |s: &mut Session, head| {
        let params = ExplainParams {
            n_steps: 3,
            layer: Some(1),
            head,
            ..ExplainParams::default()
        };
        explain(s, REF_PROMPT, &params).expect("explain").attention
    };
    let mean = run(&mut s, None);
    let heads: Vec<Vec<Vec<f32>>> = (0..n_head).map(|h| run(&mut s, Some(h))).collect();
    // Heads really differ (otherwise this test would prove nothing).
    assert_ne!(heads[0], heads[n_head - 1], "heads 0 and {}", n_head - 1);
    for (i, row) in mean.iter().enumerate() {
        for (j, &w) in row.iter().enumerate() {
            let avg = heads.iter().map(|h| h[i][j]).sum::<f32>() / n_head as f32;
            assert!(
                (w - avg).abs() <= MAX_HEAD_MEAN_DIFF,
                "[{i}][{j}]: mean row {w} vs mean of heads {avg}"
            );
        }
    }
}

#[test]
fn bad_layer_or_head_is_an_error_and_leaves_no_probe() {
    let Some(model) = load() else { return };
    let c = model.config();
    let mut s = session(&model);
    for (layer, head) in [(Some(c.n_layer), None), (None, Some(c.n_head))] {
        let params = ExplainParams {
            layer,
            head,
            ..ExplainParams::default()
        };
        let err = explain(&mut s, REF_PROMPT, &params).expect_err("out of range");
        assert!(matches!(err, llmrt::Error::InvalidArgument(_)), "{err}");
        assert!(s.attention_probe().is_none());
    }
    let err = explain(&mut s, "", &ExplainParams::default()).expect_err("empty prompt");
    assert!(matches!(err, llmrt::Error::InvalidArgument(_)), "{err}");
}

#[test]
fn heatmap_png_and_html_page_show_the_run() {
    let Some(model) = load() else { return };
    let mut s = session(&model);
    let ex = explain(&mut s, REF_PROMPT, &ExplainParams::default()).expect("explain");
    let n = ex.attention.len();
    const CELL: usize = 5;
    let (png, cell) = assert_heatmap(&ex.heatmap_png(CELL).expect("png"), n);
    assert_eq!(cell, CELL);
    let title = ex.heatmap_title();
    assert_eq!(png.text["Title"], title);
    let layer = format!("layer {} of {}", ex.layer, ex.n_layer);
    assert!(
        title.contains(&layer) && title.contains(&ex.model),
        "{title}"
    );
    assert!(
        ex.model.contains("135M"),
        "the model's general.name: {}",
        ex.model
    );
    assert!(ex.heatmap_png(0).is_err(), "zero-pixel cells");

    let html = ex.to_html("a <model> & co").expect("html");
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    assert!(html.contains("a &lt;model&gt; &amp; co"), "title escaped");
    assert!(html.contains(&title), "the figure's title in the page");
    for t in ex.prompt.iter().chain(ex.steps.iter().map(|s| &s.chosen)) {
        assert!(
            html.contains(&visible_piece(&t.piece)),
            "token {:?} in the page",
            t.piece
        );
    }
    assert_eq!(
        html.matches("<table class=\"step\">").count(),
        ex.steps.len(),
        "one candidate table per step"
    );
    assert_eq!(
        html.matches("<tr class=\"chosen\">").count(),
        ex.steps.len(),
        "the chosen token marked in every table"
    );
    assert!(html.contains("<table class=\"heat\">"), "heatmap table");
    assert_eq!(
        html.matches("<td class=\"future\">").count(),
        n * (n - 1) / 2,
        "cells above the diagonal"
    );
    assert!(
        html.contains("src=\"data:image/png;base64,"),
        "embedded image"
    );
    for external in ["http://", "https://", "<script", "<link"] {
        assert!(!html.contains(external), "self-contained: found {external}");
    }
    let json = serde_json::to_value(&ex).expect("serializable");
    assert_eq!(json["steps"].as_array().map(Vec::len), Some(ex.steps.len()));
}

/// The C ABI returns what the Rust API returns, in its three forms (JSON, square attention
/// matrix, PNG and HTML bytes), with the size-query convention and NULL checks.
#[test]
fn c_abi_explain_matches_the_rust_api() {
    use llmrt::ffi;
    use std::ffi::CString;
    use std::ptr::{null, null_mut};

    let Some(model) = load() else { return };
    let n_steps = 5;
    let params = ExplainParams {
        n_steps,
        top_k: 3,
        layer: Some(2),
        head: None,
        ..ExplainParams::default()
    };
    let expected = explain(&mut session(&model), REF_PROMPT, &params).expect("explain");

    let path = CString::new(model_path().to_str().expect("UTF-8 path")).unwrap();
    let prompt = CString::new(REF_PROMPT).unwrap();
    // SAFETY: (whole block) every pointer passed is NULL or comes from the calls above it and
    // is freed exactly once at the end; buffers are sized as passed.
    unsafe {
        let c_model = ffi::llm_load(path.as_ptr(), null());
        assert!(!c_model.is_null(), "llm_load");
        let mut sp = ffi::llm_session_default_params();
        sp.n_ctx = 256;
        let c_session = ffi::llm_session_new(c_model, &sp);
        assert!(!c_session.is_null(), "llm_session_new");

        let mut p = ffi::llm_explain_default_params();
        assert_eq!((p.n_steps, p.top_k, p.layer, p.head), (8, 5, -1, -1));
        assert_eq!(p.temperature, 0.0);
        p.n_steps = n_steps;
        p.top_k = 3;
        p.layer = 2;
        let bad = ffi::llm_explain(c_session, null(), &p);
        assert!(bad.is_null());
        assert_eq!(ffi::llm_last_status(), ffi::llm_status::LLM_ERR_NULL);
        let mut bad_params = p;
        bad_params.head = -2;
        assert!(ffi::llm_explain(c_session, prompt.as_ptr(), &bad_params).is_null());
        assert_eq!(
            ffi::llm_last_status(),
            ffi::llm_status::LLM_ERR_INVALID_ARGUMENT
        );
        let ex = ffi::llm_explain(c_session, prompt.as_ptr(), &p);
        assert!(!ex.is_null(), "llm_explain");

        // JSON: a size query, then the text, equal to the Rust result serialized.
        let needed = ffi::llm_explanation_json(ex, null_mut(), 0);
        assert!(needed < 0, "size query returns -(bytes needed)");
        let mut buf = vec![0u8; (-needed) as usize];
        let written = ffi::llm_explanation_json(ex, buf.as_mut_ptr().cast(), buf.len());
        assert_eq!(written + 1, -needed);
        let json: Value = serde_json::from_slice(&buf[..written as usize]).expect("JSON");
        // Through text on both sides: f32 values print as their shortest decimal form.
        let expected_json: Value =
            serde_json::from_str(&serde_json::to_string(&expected).unwrap()).unwrap();
        assert!(
            json == expected_json,
            "the C ABI's JSON differs from the Rust API's"
        );

        // The attention as a square matrix with zeros above the diagonal.
        let n = ffi::llm_explanation_n_tokens(ex);
        assert_eq!(n as usize, expected.attention.len());
        let n = n as usize;
        let mut square = vec![f32::NAN; n * n];
        assert_eq!(
            ffi::llm_explanation_attention(ex, square.as_mut_ptr(), n * n - 1),
            -((n * n) as i32),
            "too small: nothing written, size needed"
        );
        assert!(square[0].is_nan());
        assert_eq!(
            ffi::llm_explanation_attention(ex, square.as_mut_ptr(), square.len()),
            (n * n) as i32
        );
        for (i, row) in expected.attention.iter().enumerate() {
            for j in 0..n {
                let w = row.get(j).copied().unwrap_or(0.0);
                assert_eq!(square[i * n + j], w, "[{i}][{j}]");
            }
        }

        // PNG and HTML bytes as the Rust API makes them.
        let png = expected.heatmap_png(4).unwrap();
        let mut buf = vec![0u8; png.len()];
        assert_eq!(
            ffi::llm_explanation_png(ex, 4, buf.as_mut_ptr().cast(), buf.len()),
            png.len() as i32
        );
        assert_eq!(buf, png);
        assert_eq!(
            ffi::llm_explanation_png(ex, 0, buf.as_mut_ptr().cast(), buf.len()),
            ffi::LLM_FAILED
        );
        let title = CString::new("smol").unwrap();
        let html = expected.to_html("smol").unwrap();
        let mut buf = vec![0u8; html.len() + 1];
        assert_eq!(
            ffi::llm_explanation_html(ex, title.as_ptr(), buf.as_mut_ptr().cast(), buf.len()),
            html.len() as i32
        );
        assert_eq!(&buf[..html.len()], html.as_bytes());
        assert_eq!(buf[html.len()], 0, "NUL-terminated");

        assert_eq!(ffi::llm_explanation_n_tokens(null()), ffi::LLM_FAILED);
        ffi::llm_explanation_free(ex);
        ffi::llm_explanation_free(null_mut());
        ffi::llm_session_free(c_session);
        ffi::llm_model_free(c_model);
    }
}
