//! LoRA adapters against llama.cpp (tests/reference/lora/, made by scripts/make-lora-reference.py
//! on the adapters scripts/make-synthetic-lora.sh writes): with each adapter and scale, and two
//! adapters at once, teacher-forced logits and greedy tokens equal llama.cpp's on every SIMD
//! level; detaching gives the base model's logits back; bad adapters are refused with a message.

use std::sync::Arc;

use llmrt::lora::{ActiveLora, LoraAdapter};
use llmrt::{Model, ModelParams, Session};
use serde_json::Value;

#[path = "common/models.rs"]
mod models;
#[path = "common/reference.rs"]
mod reference;

use reference::*;

fn load(name: &str) -> Option<Arc<Model>> {
    let path = models::model_path(name)?;
    Some(Arc::new(
        Model::load(&path, &ModelParams::default()).expect("model loads"),
    ))
}

fn adapter(file: &str, model: &Model) -> Option<Arc<LoraAdapter>> {
    let path = models::model_path(&format!("lora/{file}"))?;
    Some(Arc::new(
        LoraAdapter::open(&path, model).expect("adapter loads"),
    ))
}

/// Where each reference's base model lives under models/.
fn base_path(file: &str) -> String {
    if file.starts_with("smollm2") || file.starts_with("qwen2.5") {
        file.to_string()
    } else {
        format!("synthetic/{file}")
    }
}

/// Every reference of tests/reference/lora/ with adapters, and the base references.
fn references() -> Vec<(String, Value)> {
    let dir = models::reference_path("lora");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .expect("tests/reference/lora")
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path.file_name()?.to_str()?.to_string();
            (name.ends_with(".json") && name != "cases.json" && name != "errors.json").then(|| {
                let text = std::fs::read_to_string(&path).expect("read");
                (name, serde_json::from_str(&text).expect("json"))
            })
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        out.len() >= 10,
        "the LoRA references are missing from {}",
        dir.display()
    );
    out
}

#[test]
fn adapted_logits_and_greedy_tokens_equal_llama_cpps() {
    for (name, reference) in references() {
        let base = reference["base_file"].as_str().expect("base_file");
        let Some(model) = load(&base_path(base)) else {
            continue;
        };
        let mut loras = Vec::new();
        for a in reference["adapters"].as_array().expect("adapters") {
            let Some(adapter) = adapter(a["file"].as_str().expect("file"), &model) else {
                return;
            };
            loras.push(ActiveLora {
                adapter,
                scale: a["scale"].as_f64().expect("scale") as f32,
            });
        }
        // llama.cpp keeps a context's adapters in a hash map, which for two of them applies the
        // one attached last first; llmrt applies them in the order given.
        loras.reverse();
        let setup = |s: &mut Session| s.set_loras(loras.clone()).expect("attach");
        // The scalar kernels only on the synthetic models: an adapter adds products of the
        // kernels the model tests check at every level.
        let synthetic = base_path(base).starts_with("synthetic/");
        for simd in levels(&base_path(base))
            .into_iter()
            .filter(|&s| synthetic || s != llmrt::quant::Simd::Scalar)
        {
            teacher_forced(&name, &model, &reference, simd, &setup);
            greedy(&name, &model, &reference, simd, &setup);
        }
    }
}

#[test]
fn detaching_gives_the_base_logits_back() {
    let Some(model) = load("smollm2-135m-instruct-q8_0.gguf") else {
        return;
    };
    let Some(adapter) = adapter("smollm2-135m-lora-f32.gguf", &model) else {
        return;
    };
    let reference = models::reference_json("lora/smollm2-135m-base.json");
    let base_case = &reference["teacher_forced"][0];
    let tokens: Vec<u32> = ids(&base_case["ids"]);
    let mut session = Session::new(model.clone(), &Default::default()).expect("session");
    let alone = session.eval(&tokens).expect("eval").to_vec();
    session
        .set_loras(vec![ActiveLora {
            adapter,
            scale: 1.0,
        }])
        .expect("attach");
    assert!(session.tokens().is_empty(), "attaching empties the cache");
    let adapted = session.eval(&tokens).expect("eval").to_vec();
    assert_ne!(alone, adapted);
    session.set_loras(Vec::new()).expect("detach");
    let detached = session.eval(&tokens).expect("eval").to_vec();
    assert!(alone
        .iter()
        .zip(&detached)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
fn bad_adapters_are_refused_with_a_message() {
    let errors = models::reference_json("lora/errors.json");
    for case in errors["cases"].as_array().expect("cases") {
        let file = case["file"].as_str().expect("file");
        let Some(model) = load(&base_path(case["base_file"].as_str().expect("base"))) else {
            continue;
        };
        let Some(path) = models::model_path(&format!("lora/{file}")) else {
            continue;
        };
        let aborts = case["errors"].to_string().contains("GGML_ASSERT");
        match (LoraAdapter::open(&path, &model), aborts) {
            (Err(e), false) => println!("{file}: {e}"),
            (Ok(_), false) => panic!(
                "{file}: loaded, but llama.cpp refuses it: {}",
                case["errors"]
            ),
            // An embedding adapter on a tied output, which llama.cpp multiplies the output by
            // and aborts on: llmrt adds its term to the input embedding only.
            (Ok(adapter), true) => {
                let tokens = [1u32, 504, 3458, 282, 4649];
                let mut s = Session::new(model.clone(), &Default::default()).expect("session");
                let base = s.eval(&tokens).expect("eval").to_vec();
                s.set_loras(vec![ActiveLora {
                    adapter: Arc::new(adapter),
                    scale: 1.0,
                }])
                .expect("attach");
                assert_ne!(s.eval(&tokens).expect("eval"), base.as_slice(), "{file}");
            }
            (Err(e), true) => panic!("{file}: {e}"),
        }
    }
    // An adapter loaded for one model cannot be attached to another.
    let (Some(smol), Some(qwen)) = (
        load("smollm2-135m-instruct-q8_0.gguf"),
        load("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
    ) else {
        return;
    };
    let Some(adapter) = adapter("smollm2-135m-lora-f32.gguf", &smol) else {
        return;
    };
    let mut session = Session::new(qwen.clone(), &Default::default()).expect("session");
    let err = session
        .set_loras(vec![ActiveLora {
            adapter,
            scale: 1.0,
        }])
        .expect_err("another model's adapter");
    assert!(err.to_string().contains("another model"), "{err}");
    let path = models::model_path("lora/smollm2-135m-lora-f32.gguf").expect("adapter");
    let err = LoraAdapter::open(&path, &qwen).expect_err("another architecture's shapes");
    println!("smollm2 adapter on qwen: {err}");
}

#[test]
fn a_batcher_with_an_adapter_gives_each_generation_its_solo_tokens() {
    let Some(model) = load("smollm2-135m-instruct-q8_0.gguf") else {
        return;
    };
    let Some(adapter) = adapter("smollm2-135m-lora-f16.gguf", &model) else {
        return;
    };
    let loras = vec![ActiveLora {
        adapter,
        scale: 0.7,
    }];
    let prompts = [
        "The capital of France is",
        "def fibonacci(n):",
        "Water boils at",
        "Ich bin",
    ];
    let params = |i: usize| llmrt::generate::GenerateParams {
        max_tokens: 16,
        sampler: llmrt::sample::SamplerParams {
            temperature: if i.is_multiple_of(2) { 0.0 } else { 0.9 },
            seed: 40 + i as u64,
            ..Default::default()
        },
        ..Default::default()
    };
    let tokens = |p: &str| model.tokenizer().encode(p, true, false).expect("tokenize");
    let solo: Vec<Vec<u32>> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut s = Session::new(model.clone(), &Default::default()).expect("session");
            s.set_loras(loras.clone()).expect("attach");
            llmrt::generate::generate_tokens(&mut s, &tokens(p), &params(i), &mut |_| true)
                .expect("generate")
                .tokens
        })
        .collect();
    let batcher = llmrt::Batcher::with_loras(model.clone(), &Default::default(), loras.clone())
        .expect("batcher");
    let together: Vec<Vec<u32>> = std::thread::scope(|scope| {
        let handles: Vec<_> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (batcher, prompt) = (&batcher, tokens(p));
                scope.spawn(move || {
                    batcher
                        .generate(&prompt, &params(i), &mut |_| true)
                        .expect("generate")
                        .tokens
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_eq!(together, solo);
    // Without the adapter the texts differ (the adapter is applied, not ignored).
    let plain = llmrt::Batcher::new(model.clone(), &Default::default()).expect("batcher");
    let base: Vec<Vec<u32>> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            plain
                .generate(&tokens(p), &params(i), &mut |_| true)
                .expect("generate")
                .tokens
        })
        .collect();
    assert_ne!(base, solo);
}

/// Greedy decoding of `steps` tokens after `prompt` in a session with `loras`: the bits of the
/// logits after the prompt and after each token.
fn solo_trace(
    model: &Arc<Model>,
    loras: &[ActiveLora],
    prompt: &[u32],
    steps: usize,
) -> Vec<Vec<u32>> {
    let mut s = Session::new(model.clone(), &Default::default()).expect("session");
    s.set_loras(loras.to_vec()).expect("attach");
    let bits = |l: &[f32]| l.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    let mut trace = vec![bits(s.eval(prompt).expect("eval"))];
    for _ in 0..steps {
        let next = argmax(s.logits());
        trace.push(bits(s.eval(&[next]).expect("eval")));
    }
    trace
}

#[test]
fn sequences_with_different_adapters_decode_in_one_step_with_their_solo_logits() {
    let Some(model) = load("smollm2-135m-instruct-q8_0.gguf") else {
        return;
    };
    let (Some(f32_adapter), Some(f16_adapter)) = (
        adapter("smollm2-135m-lora-f32.gguf", &model),
        adapter("smollm2-135m-lora-f16.gguf", &model),
    ) else {
        return;
    };
    let sets: Vec<Vec<ActiveLora>> = vec![
        vec![],
        vec![ActiveLora {
            adapter: f32_adapter.clone(),
            scale: 1.0,
        }],
        vec![ActiveLora {
            adapter: f32_adapter.clone(),
            scale: 0.5,
        }],
        vec![
            ActiveLora {
                adapter: f16_adapter,
                scale: 0.7,
            },
            ActiveLora {
                adapter: f32_adapter,
                scale: 1.0,
            },
        ],
    ];
    // The same prompt for all: a prefix computed with one set of adapters must not be taken
    // by a sequence with another.
    let prompt = model
        .tokenizer()
        .encode(
            "Once upon a time, in a small village by the sea, there lived an old fisherman who \
             every morning walked down to the harbour before dawn, mended his nets and talked to \
             the gulls about the weather",
            true,
            false,
        )
        .expect("tokenize");
    assert!(prompt.len() > 32, "the prompt fills whole KV blocks");
    let steps = 8;
    let mut engine = llmrt::Engine::new(model.clone(), &Default::default()).expect("engine");
    let ids: Vec<llmrt::SeqId> = sets
        .iter()
        .map(|loras| {
            let id = engine.add();
            engine
                .set_sequence_loras(id, loras.clone())
                .expect("adapters");
            engine.feed(id, &prompt).expect("feed");
            id
        })
        .collect();
    let mut traces: Vec<Vec<Vec<u32>>> = vec![Vec::new(); sets.len()];
    let mut shared_steps = 0;
    while engine.has_work() {
        let report = engine.step().expect("step");
        assert!(report.failed.is_empty(), "{report:?}");
        if report.decoded > 1 {
            shared_steps += 1;
        }
        for id in report.ready {
            let i = ids.iter().position(|&x| x == id).expect("known");
            let logits = engine.logits(id).expect("seq").expect("ready").to_vec();
            traces[i].push(logits.iter().map(|x| x.to_bits()).collect());
            if traces[i].len() <= steps {
                engine.feed(id, &[argmax(&logits)]).expect("feed");
            }
        }
    }
    assert!(
        shared_steps >= steps,
        "the sequences did not decode together"
    );
    // Four sequences with three different adapter sets (and none): the same prompt's blocks
    // were computed more than once, never shared across adapters.
    assert_eq!(engine.pool_stats().shared, 0);
    for (i, loras) in sets.iter().enumerate() {
        assert!(
            traces[i] == solo_trace(&model, loras, &prompt, steps),
            "adapter set {i}"
        );
    }
    // Setting adapters once a sequence has evaluated something is refused.
    assert!(engine.set_sequence_loras(ids[0], Vec::new()).is_err());
}
