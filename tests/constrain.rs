//! Constrained generation: texts sampled (several seeds, a temperature) under a JSON schema, a
//! regex or a Lark grammar match it, on a BPE and a SentencePiece vocabulary; generation ends
//! where the constraint is complete; constraints that do not compile are clear errors; and in a
//! batch each sequence keeps its own constraint and the text it gets alone.

mod common;

use std::sync::Arc;

use llmrt::constrain::Constraint;
use llmrt::generate::{self, GenerateParams, StopReason};
use llmrt::sample::SamplerParams;
use llmrt::{Batcher, EngineParams, Error, Model, Session, SessionParams};
use serde_json::{json, Value};

const MODELS: [&str; 2] = [
    "smollm2-135m-instruct-q8_0.gguf",
    "gemma-3-270m-q4_k_m.gguf",
];

fn load(name: &str) -> Option<Arc<Model>> {
    common::models::load(name)
}

fn session(model: &Arc<Model>) -> Session {
    Session::new(
        model.clone(),
        &SessionParams {
            n_ctx: 512,
            n_threads: 2,
            ..SessionParams::default()
        },
    )
    .expect("session")
}

fn params(constraint: Constraint, seed: u64, max_tokens: usize) -> GenerateParams {
    GenerateParams {
        max_tokens,
        sampler: SamplerParams {
            temperature: 1.0,
            seed,
            ..SamplerParams::default()
        },
        constraint: Some(constraint),
        ..GenerateParams::default()
    }
}

fn person_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 12},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "pets": {"type": "array", "items": {"enum": ["cat", "dog", "fish"]}, "maxItems": 3}
        },
        "required": ["name", "age", "pets"],
        "additionalProperties": false
    })
}

fn check_person(text: &str) {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    let o = v.as_object().expect("an object");
    assert_eq!(o.len(), 3, "{text}");
    let name = o["name"].as_str().expect("a string name");
    assert!(name.chars().count() <= 12, "{text}");
    let age = o["age"].as_i64().expect("an integer age");
    assert!((0..=120).contains(&age), "{text}");
    let pets = o["pets"].as_array().expect("pets");
    assert!(pets.len() <= 3);
    for p in pets {
        assert!(
            ["cat", "dog", "fish"].contains(&p.as_str().expect("a pet")),
            "{text}"
        );
    }
}

#[test]
fn sampled_texts_match_their_json_schema_regex_or_grammar() {
    for name in MODELS {
        let Some(model) = load(name) else { continue };
        let mut s = session(&model);
        let prompt = "Here is a person, as JSON:";
        for seed in 0..4 {
            let g = generate::generate(
                &mut s,
                prompt,
                &params(Constraint::JsonSchema(person_schema()), seed, 96),
                &mut |_| true,
            )
            .expect("generates");
            assert_eq!(
                g.stop_reason,
                StopReason::EndOfGeneration,
                "{name} seed {seed}: {:?}",
                g.text
            );
            check_person(&g.text);
        }
        let rx = r"[0-9]{3}-[0-9]{4}( ext\. [0-9]{1,3})?";
        let whole = regex::Regex::new(&format!("^(?:{rx})$")).expect("regex");
        for seed in 0..4 {
            let g = generate::generate(
                &mut s,
                "Call me at",
                &params(Constraint::Regex(rx.into()), seed, 32),
                &mut |_| true,
            )
            .expect("generates");
            assert!(whole.is_match(&g.text), "{name} seed {seed}: {:?}", g.text);
        }
        let lark = r#"start: answer "."
answer: "yes" | "no" | "maybe""#;
        for seed in 0..4 {
            let g = generate::generate(
                &mut s,
                "Is the sky blue? Answer:",
                &params(Constraint::Lark(lark.into()), seed, 16),
                &mut |_| true,
            )
            .expect("generates");
            assert!(
                ["yes.", "no.", "maybe."].contains(&g.text.as_str()),
                "{name}: {:?}",
                g.text
            );
            assert_eq!(g.stop_reason, StopReason::EndOfGeneration);
        }
        let object = GenerateParams {
            sampler: SamplerParams::greedy(),
            ..params(Constraint::JsonObject, 0, 128)
        };
        let g = generate::generate(&mut s, "A small JSON object:", &object, &mut |_| true)
            .expect("generates");
        assert_eq!(
            g.stop_reason,
            StopReason::EndOfGeneration,
            "{name}: {:?}",
            g.text
        );
        let v: Value = serde_json::from_str(&g.text).expect("JSON");
        assert!(v.is_object(), "{name}: {:?}", g.text);
    }
}

#[test]
fn constraints_that_do_not_compile_are_clear_errors() {
    let Some(model) = load(MODELS[0]) else { return };
    let mut s = session(&model);
    for (constraint, what) in [
        (Constraint::Regex("(unclosed".into()), "regex"),
        (Constraint::Lark("start: undefined_rule".into()), "lark"),
        (
            Constraint::JsonSchema(json!({"type": "no-such-type"})),
            "schema",
        ),
    ] {
        let e = generate::generate(&mut s, "x", &params(constraint, 0, 8), &mut |_| true)
            .expect_err(what);
        assert!(
            matches!(&e, Error::InvalidArgument(m) if m.starts_with("constraint")),
            "{what}: {e}"
        );
    }
    // The session is still usable.
    let g = generate::generate(
        &mut s,
        "1, 2, 3,",
        &params(Constraint::Regex(" [0-9]".into()), 0, 8),
        &mut |_| true,
    )
    .expect("generates");
    assert!(g.text.len() == 2 && g.text.starts_with(' '), "{:?}", g.text);
}

#[test]
fn in_a_batch_each_sequence_keeps_its_constraint_and_its_text_alone() {
    let Some(model) = load(MODELS[0]) else { return };
    let requests: Vec<(String, GenerateParams)> = (0..6)
        .map(|i| {
            let p = match i % 3 {
                0 => params(Constraint::JsonSchema(person_schema()), i, 80),
                1 => params(Constraint::Regex("[a-z]+( [a-z]+){2,5}\\.".into()), i, 32),
                _ => GenerateParams {
                    max_tokens: 24,
                    sampler: SamplerParams {
                        seed: i,
                        ..SamplerParams::default()
                    },
                    ..GenerateParams::default()
                },
            };
            (format!("Request {i}: tell me something."), p)
        })
        .collect();
    let alone: Vec<String> = requests
        .iter()
        .map(|(prompt, p)| {
            let mut s = session(&model);
            generate::generate(&mut s, prompt, p, &mut |_| true)
                .expect("alone")
                .text
        })
        .collect();
    let batcher = Batcher::new(
        model.clone(),
        &EngineParams {
            n_ctx: 512,
            n_threads: 2,
            ..EngineParams::default()
        },
    )
    .expect("batcher");
    let together: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .iter()
            .map(|(prompt, p)| {
                let batcher = &batcher;
                let tokens = model
                    .tokenizer()
                    .encode(prompt, true, false)
                    .expect("tokens");
                scope.spawn(move || {
                    batcher
                        .generate(&tokens, p, &mut |_| true)
                        .expect("batched")
                        .text
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_eq!(together, alone);
    check_person(&together[0]);
}

/// llama.cpp's greedy completions under GBNF grammars, by its own grammar sampler
/// (`scripts/make-gbnf-reference.py`): the grammars translated to Lark give the same tokens, so
/// they allow exactly what llama.cpp's allow along the way.
#[test]
fn gbnf_grammars_give_llama_cpps_greedy_tokens() {
    let name = "smollm2-135m-instruct-q8_0";
    let Some(model) = load(&format!("{name}.gguf")) else {
        return;
    };
    let reference = common::models::reference_json(&format!("gbnf/{name}.json"));
    let cases = reference["cases"].as_array().expect("cases");
    assert!(cases.len() >= 6);
    let ids = |v: &Value| -> Vec<u32> {
        v.as_array()
            .expect("ids")
            .iter()
            .map(|t| t.as_u64().expect("id") as u32)
            .collect()
    };
    for case in cases {
        let grammar = case["grammar"].as_str().expect("grammar");
        let mut s = session(&model);
        let params = GenerateParams {
            max_tokens: case["max_tokens"].as_u64().expect("max_tokens") as usize,
            sampler: SamplerParams::greedy(),
            constraint: Some(Constraint::Gbnf(grammar.into())),
            ..GenerateParams::default()
        };
        let g =
            generate::generate_tokens(&mut s, &ids(&case["prompt_tokens"]), &params, &mut |_| true)
                .expect("generates");
        assert_eq!(g.tokens, ids(&case["tokens"]), "{grammar}: {:?}", g.text);
        assert_eq!(g.text, case["text"].as_str().expect("text"), "{grammar}");
    }
}
