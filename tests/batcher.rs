//! The batcher: generations submitted from many threads at once, and joining while others run,
//! get the tokens and text each gets alone in a session — greedy or sampled with its own seed,
//! with stop strings and token budgets; cancelled and refused ones end cleanly, and the rest go
//! on.

mod common;

use std::sync::Arc;

use llmrt::generate::{self, GenerateParams, Generation, StopReason};
use llmrt::sample::SamplerParams;
use llmrt::{Batcher, EngineParams, Error, Model, Session, SessionParams};

fn load(name: &str) -> Option<Arc<Model>> {
    common::models::load(name)
}

const TEXTS: [&str; 8] = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who",
    "1, 1, 2, 3, 5, 8,",
    "Water boils at",
    "The three laws of thermodynamics are: first, energy is conserved; second,",
    "Q: What is the largest planet in the solar system?\nA:",
    "Ich bin ein",
];

/// Request `i`: greedy for even `i`, sampled with seed `i` for odd; a stop string on some.
fn request(i: usize) -> GenerateParams {
    let sampler = if i.is_multiple_of(2) {
        SamplerParams::greedy()
    } else {
        SamplerParams {
            temperature: 0.9,
            seed: 1000 + i as u64,
            ..SamplerParams::default()
        }
    };
    GenerateParams {
        max_tokens: 24 + 3 * i,
        sampler,
        stop: if i.is_multiple_of(3) {
            vec!["\n\n".into()]
        } else {
            Vec::new()
        },
        ..GenerateParams::default()
    }
}

fn alone(model: &Arc<Model>, prompt: &[u32], params: &GenerateParams) -> (Generation, String) {
    alone_in(model, prompt, params, 1024)
}

fn alone_in(
    model: &Arc<Model>,
    prompt: &[u32],
    params: &GenerateParams,
    n_ctx: usize,
) -> (Generation, String) {
    let mut session = Session::new(
        model.clone(),
        &SessionParams {
            n_ctx,
            n_threads: 2,
            ..SessionParams::default()
        },
    )
    .expect("session");
    let mut streamed = String::new();
    let generation = generate::generate_tokens(&mut session, prompt, params, &mut |p| {
        streamed.push_str(p);
        true
    })
    .expect("generates alone");
    (generation, streamed)
}

fn batcher(model: &Arc<Model>) -> Batcher {
    Batcher::new(
        model.clone(),
        &EngineParams {
            n_ctx: 1024,
            pool_positions: 8 * 1024,
            n_threads: 2,
            ..EngineParams::default()
        },
    )
    .expect("batcher")
}

#[test]
fn threads_generating_together_get_the_text_each_gets_alone() {
    for name in [
        "smollm2-135m-instruct-q8_0.gguf",
        "gemma-3-270m-q4_k_m.gguf",
    ] {
        let Some(model) = load(name) else { continue };
        let prompts: Vec<Vec<u32>> = TEXTS
            .iter()
            .map(|t| model.tokenizer().encode(t, true, false).expect("tokens"))
            .collect();
        let expected: Vec<(Generation, String)> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| alone(&model, p, &request(i)))
            .collect();
        let batcher = batcher(&model);
        let results: Vec<(Generation, String)> = std::thread::scope(|scope| {
            let handles: Vec<_> = prompts
                .iter()
                .enumerate()
                .map(|(i, prompt)| {
                    let batcher = &batcher;
                    scope.spawn(move || {
                        // Later requests join while earlier ones are decoding.
                        std::thread::sleep(std::time::Duration::from_millis(40 * i as u64));
                        let mut streamed = String::new();
                        let g = batcher
                            .generate(prompt, &request(i), &mut |p| {
                                streamed.push_str(p);
                                true
                            })
                            .expect("generates in the batch");
                        (g, streamed)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        for (i, ((got, got_stream), (want, want_stream))) in
            results.iter().zip(&expected).enumerate()
        {
            assert_eq!(got.tokens, want.tokens, "{name} request {i}: tokens");
            assert_eq!(got.text, want.text, "{name} request {i}: text");
            assert_eq!(got.stop_reason, want.stop_reason, "{name} request {i}");
            assert_eq!(got_stream, want_stream, "{name} request {i}: stream");
            assert_eq!(got.stats.prompt_tokens, prompts[i].len());
            assert_eq!(got.stats.generated_tokens, got.tokens.len());
            assert!(!got.tokens.is_empty(), "{name} request {i} generated");
        }
        // A generation with a budget stops there.
        assert!(results
            .iter()
            .any(|(g, _)| g.stop_reason == StopReason::MaxTokens));
    }
}

#[test]
fn cancelled_and_refused_generations_end_and_the_others_go_on() {
    let Some(model) = load("smollm2-135m-instruct-q8_0.gguf") else {
        return;
    };
    let batcher = batcher(&model);
    let prompt = model
        .tokenizer()
        .encode(TEXTS[2], true, false)
        .expect("tokens");
    let long = GenerateParams {
        max_tokens: 40,
        sampler: SamplerParams::greedy(),
        ..GenerateParams::default()
    };
    let (want, _) = alone(&model, &prompt, &long);
    std::thread::scope(|scope| {
        let survivor = scope.spawn(|| batcher.generate(&prompt, &long, &mut |_| true));
        // Cancelled from the callback after three pieces.
        let mut pieces = 0;
        let cancelled = batcher
            .generate(&prompt, &long, &mut |_| {
                pieces += 1;
                pieces < 3
            })
            .expect("a cancelled generation is not an error");
        assert_eq!(cancelled.stop_reason, StopReason::Cancelled);
        assert!(cancelled.tokens.len() < want.tokens.len());
        assert_eq!(pieces, 3, "no piece after the callback said stop");
        // Refused before any work: empty, longer than the context, outside the vocabulary.
        assert!(matches!(
            batcher.generate(&[], &long, &mut |_| true),
            Err(Error::InvalidArgument(_))
        ));
        let too_long = vec![prompt[1]; batcher.n_ctx()];
        assert!(matches!(
            batcher.generate(&too_long, &long, &mut |_| true),
            Err(Error::ContextFull { .. })
        ));
        let n_vocab = model.config().n_vocab as u32;
        assert!(matches!(
            batcher.generate(&[1, n_vocab], &long, &mut |_| true),
            Err(Error::InvalidArgument(_))
        ));
        let survivor = survivor.join().expect("thread").expect("survivor");
        assert_eq!(survivor.tokens, want.tokens);
        assert_eq!(survivor.text, want.text);
    });
}

#[test]
fn a_generation_that_fills_its_context_stops_with_context_full() {
    let Some(model) = load("smollm2-135m-instruct-q8_0.gguf") else {
        return;
    };
    let batcher = Batcher::new(
        model.clone(),
        &EngineParams {
            n_ctx: 48,
            pool_positions: 256,
            n_threads: 2,
            ..EngineParams::default()
        },
    )
    .expect("batcher");
    let prompt = model
        .tokenizer()
        .encode(TEXTS[0], true, false)
        .expect("tokens");
    // Every end-of-generation token banned, so only the context can end it.
    let tok = model.tokenizer();
    let banned = (0..model.config().n_vocab as u32)
        .filter(|&t| tok.is_eog(t))
        .map(|t| (t, f32::NEG_INFINITY))
        .collect();
    let params = GenerateParams {
        max_tokens: 0,
        sampler: SamplerParams {
            logit_bias: banned,
            ..SamplerParams::greedy()
        },
        ..GenerateParams::default()
    };
    let (want, _) = alone_in(&model, &prompt, &params, 48);
    let g = batcher
        .generate(&prompt, &params, &mut |_| true)
        .expect("generates");
    assert_eq!(g.stop_reason, StopReason::ContextFull);
    assert_eq!(prompt.len() + g.tokens.len(), 48);
    assert_eq!(g.tokens, want.tokens);
}
