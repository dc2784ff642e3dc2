//! The generation loop end to end on SmolLM2 and Qwen: chat prompts as llama.cpp renders and
//! tokenizes them, reproducible seeds, stop strings, streaming, prefix reuse and the context limit.

mod common;

use std::path::Path;
use std::sync::Arc;

use llmrt::chat::{ChatMessage, ChatTemplate};
use llmrt::generate::{self, GenerateParams, StopReason};
use llmrt::sample::SamplerParams;
use llmrt::{Error, Model, Session, SessionParams};
use serde_json::Value;

/// A greedy step whose top-2 logits are closer than this is a near-tie, after which our reply
/// may part from llama.cpp's (the rule in tests/reference/README.md); otherwise identical.
const NEAR_TIE: f32 = 0.1;

fn load(name: &str) -> Option<Arc<Model>> {
    common::models::load(&format!("{name}.gguf"))
}

fn reference(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/reference/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("reference")).expect("JSON")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn session(model: &Arc<Model>) -> Session {
    Session::new(
        model.clone(),
        &SessionParams {
            n_ctx: 512,
            ..Default::default()
        },
    )
    .expect("session")
}

fn sampled(temperature: f32, seed: u64, max_tokens: usize) -> GenerateParams {
    GenerateParams {
        max_tokens,
        sampler: SamplerParams {
            temperature,
            seed,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..SamplerParams::default()
        },
        ..GenerateParams::default()
    }
}

fn run(
    session: &mut Session,
    prompt: &str,
    params: &GenerateParams,
) -> (generate::Generation, Vec<String>) {
    let mut pieces = Vec::new();
    let g = generate::generate(session, prompt, params, &mut |p| {
        pieces.push(p.to_string());
        true
    })
    .expect("generate");
    (g, pieces)
}

#[test]
fn chat_prompts_render_and_tokenize_as_llama_cpp_and_replies_follow_its_greedy_path() {
    for name in [
        "smollm2-135m-instruct-q4_1",
        "qwen2.5-coder-0.5b-instruct-q4_k_m",
    ] {
        let Some(model) = load(name) else { continue };
        let template = ChatTemplate::from_gguf(model.gguf()).expect("template");
        for case in reference(name)["chat"].as_array().expect("chat cases") {
            let messages: Vec<ChatMessage> =
                serde_json::from_value(case["messages"].clone()).expect("messages");
            let rendered =
                generate::render_chat(&model, &template, &messages, true).expect("render");
            assert_eq!(
                rendered,
                case["rendered"].as_str().expect("rendered"),
                "{name}"
            );
            let prompt = generate::tokenize_rendered_chat(&model, &rendered).expect("tokenize");
            assert_eq!(prompt, ids(&case["ids"]), "{name}: chat prompt ids");

            // Our greedy reply through the generation loop (prompt in one batch, then token by
            // token, as llama.cpp computed the reference) equals llama.cpp's, except after a
            // near-tie along its path.
            let expected = ids(&case["greedy_ids"]);
            let mut s = session(&model);
            let g = generate::generate_tokens(
                &mut s,
                &prompt,
                &sampled(0.0, 0, expected.len()),
                &mut |_| true,
            )
            .expect("generate");
            if g.tokens != expected {
                let mut s = session(&model);
                let mut logits = s.eval(&prompt).expect("prompt").to_vec();
                for (step, &token) in expected.iter().enumerate() {
                    let mut sorted = logits.clone();
                    sorted.sort_by(|a, b| b.total_cmp(a));
                    if sorted[0] - sorted[1] < NEAR_TIE {
                        break;
                    }
                    assert_eq!(
                        g.tokens.get(step),
                        Some(&token),
                        "{name}: greedy reply parts from llama.cpp's at step {step} without a near-tie"
                    );
                    logits = s.eval(&[token]).expect("step").to_vec();
                }
            }
            // llama.cpp stopped at an end-of-generation token or at its 32-token limit.
            let last = *expected.last().expect("reply");
            assert!(
                expected.len() == 32 || model.tokenizer().is_eog(last),
                "{name}: reply ends with EOG"
            );
        }
    }
}

#[test]
fn same_seed_same_text_and_different_seeds_differ() {
    let Some(model) = load("smollm2-135m-instruct-q4_1") else {
        return;
    };
    let mut s = session(&model);
    let prompt = "Once upon a time,";
    let (a, _) = run(&mut s, prompt, &sampled(1.0, 42, 24));
    let (b, _) = run(&mut s, prompt, &sampled(1.0, 42, 24));
    assert_eq!(a.text, b.text, "same seed, same text");
    assert_eq!(a.tokens, b.tokens);
    let others: Vec<String> = (1..=3)
        .map(|seed| run(&mut s, prompt, &sampled(1.0, seed, 24)).0.text)
        .collect();
    assert!(
        others.iter().any(|t| *t != a.text),
        "different seeds give different texts at temperature 1"
    );
}

#[test]
fn streamed_pieces_are_whole_utf8_and_concatenate_to_the_text() {
    let Some(model) = load("qwen2.5-coder-0.5b-instruct-q4_k_m") else {
        return;
    };
    let mut s = session(&model);
    // Chinese text makes byte-level BPE split characters across tokens.
    let (g, pieces) = run(
        &mut s,
        "请用中文写一首关于大海的短诗：",
        &sampled(0.0, 0, 48),
    );
    assert_eq!(pieces.concat(), g.text);
    assert!(
        g.text.chars().any(|c| c as u32 > 0x2E80),
        "the reply has CJK text: {:?}",
        g.text
    );
    assert!(
        !g.text.contains('\u{FFFD}'),
        "no half characters: {:?}",
        g.text
    );
}

#[test]
fn a_stop_string_ends_generation_and_is_excluded() {
    let Some(model) = load("smollm2-135m-instruct-q4_1") else {
        return;
    };
    let mut s = session(&model);
    let free = run(&mut s, "the first president of US is", &sampled(0.0, 0, 32))
        .0
        .text;
    // Stop on a word the free run produces, so the stop is certain to be reached.
    let word = free
        .split_whitespace()
        .nth(3)
        .expect("a few words")
        .to_string();
    let params = GenerateParams {
        stop: vec![word.clone()],
        ..sampled(0.0, 0, 32)
    };
    let (g, pieces) = run(&mut s, "the first president of US is", &params);
    assert_eq!(g.stop_reason, StopReason::StopString);
    assert!(
        !g.text.contains(&word),
        "stop string excluded: {:?}",
        g.text
    );
    assert!(
        free.starts_with(&g.text),
        "text before the stop is returned: {:?} vs {:?}",
        g.text,
        free
    );
    assert_eq!(pieces.concat(), g.text);
}

#[test]
fn cancelling_from_the_callback_stops_and_the_next_call_reuses_the_prefix() {
    let Some(model) = load("smollm2-135m-instruct-q4_1") else {
        return;
    };
    let mut s = session(&model);
    let mut seen = 0;
    let g = generate::generate(
        &mut s,
        "Once upon a time,",
        &sampled(0.0, 0, 32),
        &mut |_| {
            seen += 1;
            seen < 3
        },
    )
    .expect("generate");
    assert_eq!(g.stop_reason, StopReason::Cancelled);
    assert_eq!(seen, 3);
    let (again, _) = run(&mut s, "Once upon a time, there", &sampled(0.0, 0, 4));
    assert!(
        again.stats.reused_tokens >= 4,
        "prefix reused: {:?}",
        again.stats
    );
}

#[test]
fn a_prompt_longer_than_the_context_is_a_clear_error() {
    let Some(model) = load("smollm2-135m-instruct-q4_1") else {
        return;
    };
    let mut s = Session::new(
        model.clone(),
        &SessionParams {
            n_ctx: 16,
            ..Default::default()
        },
    )
    .expect("session");
    let long = "word ".repeat(40);
    match generate::generate(&mut s, &long, &sampled(0.0, 0, 4), &mut |_| true) {
        Err(Error::ContextFull { n_ctx: 16, .. }) => {}
        other => panic!("expected ContextFull, got {other:?}"),
    }
    // The session stays usable.
    let (g, _) = run(&mut s, "Hi", &sampled(0.0, 0, 4));
    assert_eq!(g.tokens.len(), 4);
}

#[test]
fn generation_runs_until_the_context_is_full() {
    let Some(model) = load("smollm2-135m-instruct-q4_1") else {
        return;
    };
    let n_ctx = 32;
    let mut s = Session::new(
        model.clone(),
        &SessionParams {
            n_ctx,
            ..Default::default()
        },
    )
    .expect("session");
    // A prompt that leaves room, and a token budget far beyond it: llama.cpp generates until
    // the context is full and stops there; so do we.
    let prompt = "The quick brown fox jumps over the lazy dog. The quick brown fox";
    let prompt_ids = model
        .tokenizer()
        .encode(prompt, true, false)
        .expect("encode");
    assert!(prompt_ids.len() < n_ctx, "the prompt must leave room");
    let mut params = sampled(0.0, 0, 100);
    params.stop.clear();
    let (g, _) = run(&mut s, prompt, &params);
    if g.stop_reason == StopReason::EndOfGeneration {
        panic!(
            "the model ended the text early; pick a prompt it continues: {:?}",
            g.text
        );
    }
    assert_eq!(g.stop_reason, StopReason::ContextFull, "{:?}", g.stats);
    assert_eq!(s.tokens().len(), n_ctx, "the whole context is used");
    assert_eq!(g.tokens.len(), n_ctx - prompt_ids.len());
    assert_eq!(g.stop_reason.describe(), "context full");

    // The same prompt with a budget that fits stops at the budget.
    let (g, _) = run(&mut s, prompt, &sampled(0.0, 0, 3));
    assert_eq!(g.stop_reason, StopReason::MaxTokens);
    assert_eq!(g.tokens.len(), 3);
}
