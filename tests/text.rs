//! Text-side tests: chat templates against llama.cpp's and Jinja2's renderings, and the sampler
//! chain through its public API.
//!
//! References: `tests/reference/<model>.json` (`chat` cases, rendered by llama-cpp-python with
//! HF's Jinja2 conventions) and `tests/reference/chat-templates.json` (Jinja2 renderings, as
//! `apply_chat_template` renders, of templates exercising whitespace control, loop controls,
//! Python methods, Jinja2's filters and tests, `tojson` and `raise_exception`, and of the real
//! templates of popular model families in `tests/reference/chat-templates/` on conversations
//! with tools, tool calls, thinking and non-ASCII text; made by
//! `tests/reference/make_chat_template_cases.py`).

mod common;

use std::path::Path;

use llmrt::chat::{format_time, ChatMessage, ChatTemplate, BUILTIN_NAMES};
use llmrt::gguf::{GgufFile, GgufWriter, Value as GgufValue};
use llmrt::sample::{Pick, Sampler, SamplerParams, Stage};
use llmrt::Error;
use serde_json::Value as Json;

/// Models with `tokenizer.chat_template` and `chat` reference cases.
const CHAT_MODELS: &[&str] = &[
    "smollm2-135m-instruct-q4_1",
    "qwen2.5-coder-0.5b-instruct-q4_k_m",
];
const GEMMA_MODEL: &str = "gemma-3-270m-q4_k_m";

fn reference(file: &str) -> Json {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/reference")
        .join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// The model file, or `None` (with a message) when it is not present.
fn open_model(name: &str) -> Option<GgufFile> {
    let path = common::models::model_path(&format!("{name}.gguf"))?;
    Some(GgufFile::open(&path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display())))
}

/// The text of the token whose id is stored under `id_key`.
fn special_token_text(file: &GgufFile, id_key: &str) -> String {
    let id = file.get_u32(id_key).expect("special token id") as usize;
    let tokens = file
        .get_str_array("tokenizer.ggml.tokens")
        .expect("token list");
    tokens[id].to_string()
}

fn messages(value: &Json) -> Vec<ChatMessage> {
    serde_json::from_value(value.clone()).expect("messages are {role, content} objects")
}

// ---------------------------------------------------------------------------------------------
// Chat templates
// ---------------------------------------------------------------------------------------------

#[test]
fn gguf_chat_templates_render_like_the_reference() {
    for model in CHAT_MODELS {
        let Some(file) = open_model(model) else {
            continue;
        };
        let template = ChatTemplate::from_gguf(&file).expect("template compiles");
        assert_eq!(
            template.source(),
            file.get_str("tokenizer.chat_template").unwrap(),
            "{model}: the GGUF's own template is used"
        );
        let bos = special_token_text(&file, "tokenizer.ggml.bos_token_id");
        let eos = special_token_text(&file, "tokenizer.ggml.eos_token_id");
        let cases = reference(&format!("{model}.json"))["chat"].clone();
        let cases = cases.as_array().expect("chat cases");
        assert!(!cases.is_empty(), "{model}: no chat cases");
        for case in cases {
            // The reference was rendered under exactly the conventions we implement.
            let env = case["template_env"].as_str().unwrap();
            for setting in [
                "trim_blocks=True",
                "lstrip_blocks=True",
                "add_generation_prompt=True",
            ] {
                assert!(env.contains(setting), "{model}: template_env {env:?}");
            }
            let rendered = template
                .render(&messages(&case["messages"]), true, &bos, &eos)
                .unwrap_or_else(|e| panic!("{model}: {e}"));
            assert_eq!(rendered, case["rendered"].as_str().unwrap(), "{model}");
        }
    }
}

#[test]
fn jinja2_reference_cases_render_identically() {
    let reference = reference("chat-templates.json");
    let now = reference["now"].as_i64().expect("the reference clock");
    let cases = reference["cases"].as_array().expect("cases");
    assert!(cases.len() >= 100, "{} cases", cases.len());
    let templates_dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/chat-templates");
    let families: std::collections::BTreeSet<&str> = cases
        .iter()
        .filter_map(|case| case.get("template_file")?.as_str())
        .collect();
    assert!(families.len() >= 13, "{families:?}");
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            let why = check_jinja2_case(case, now, &templates_dir).err()?;
            Some(format!("{}: {why}", case["name"].as_str().unwrap()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from Jinja2:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// Render one case of chat-templates.json and compare with Jinja2's outcome.
fn check_jinja2_case(case: &Json, now: i64, templates_dir: &Path) -> Result<(), String> {
    let source = match case.get("template_file") {
        Some(file) => {
            let path = templates_dir.join(file.as_str().unwrap());
            std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        }
        None => case["template"].as_str().unwrap().to_string(),
    };
    let mut template = ChatTemplate::from_source(&source).map_err(|e| e.to_string())?;
    template.set_now(Some(now));
    let add_generation_prompt = case["add_generation_prompt"].as_bool().unwrap();
    let bos = case["bos_token"].as_str().unwrap();
    let eos = case["eos_token"].as_str().unwrap();
    // Plain {role, content} messages with text content go through ChatMessage (as callers pass
    // them); others (tool calls, content blocks) as JSON.
    let plain = case["messages"].as_array().unwrap().iter().all(|m| {
        let m = m.as_object().unwrap();
        m.len() == 2 && m["content"].is_string()
    });
    let result = if plain {
        let messages = messages(&case["messages"]);
        template.render_with(&messages, add_generation_prompt, bos, eos, &case["extra"])
    } else {
        let messages = &case["messages"];
        template.render_with(messages, add_generation_prompt, bos, eos, &case["extra"])
    };
    match (case.get("rendered"), case.get("error"), case.get("fails")) {
        (Some(want), _, _) => match result {
            Ok(got) if got == want.as_str().unwrap() => Ok(()),
            Ok(got) => Err(format!("rendered\n{got:?}\nwant\n{want}")),
            Err(e) => Err(format!("failed: {e}")),
        },
        // raise_exception: its message reaches the caller.
        (None, Some(want), _) => match result {
            Err(Error::ChatTemplate(message)) if message.contains(want.as_str().unwrap()) => Ok(()),
            other => Err(format!("expected the error {want}, got {other:?}")),
        },
        // Jinja2 failed otherwise (a Python TypeError, …): a template error here too.
        (None, None, Some(python)) => match result {
            Err(Error::ChatTemplate(_)) => Ok(()),
            other => Err(format!("Jinja2 fails ({python}), llmrt gives {other:?}")),
        },
        (None, None, None) => Err("the case has no outcome".to_string()),
    }
}

/// A conversation with a system turn and whitespace around the contents (which llama.cpp's
/// Gemma and Llama 3 formats trim).
fn conversation() -> Vec<ChatMessage> {
    vec![
        ChatMessage::new("system", " Be brief.\n"),
        ChatMessage::new("user", "  Hello \n"),
        ChatMessage::new("assistant", " Hi there "),
        ChatMessage::new("user", "How are you?"),
    ]
}

#[test]
fn gemma_without_template_gets_chatml_as_in_llama_cpp() {
    let Some(file) = open_model(GEMMA_MODEL) else {
        return;
    };
    assert!(file.get("tokenizer.chat_template").is_none());
    let template = ChatTemplate::from_gguf(&file).unwrap();
    assert_eq!(
        template.source(),
        ChatTemplate::builtin("chatml").unwrap().source()
    );
    let bos = special_token_text(&file, "tokenizer.ggml.bos_token_id");
    let eos = special_token_text(&file, "tokenizer.ggml.eos_token_id");
    // llama.cpp formats a template-less model's chat as ChatML (llama_chat_apply_template with
    // no template, common_chat_templates_init's default): contents as given, no BOS.
    let want = "<|im_start|>system\n Be brief.\n<|im_end|>\n<|im_start|>user\n  Hello \n<|im_end|>\n\
                <|im_start|>assistant\n Hi there <|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n\
                <|im_start|>assistant\n";
    assert_eq!(
        template.render(&conversation(), true, &bos, &eos).unwrap(),
        want
    );
    let without_prompt = template.render(&conversation(), false, &bos, &eos).unwrap();
    assert_eq!(
        without_prompt,
        want.strip_suffix("<|im_start|>assistant\n").unwrap()
    );
}

/// A GGUF file of architecture `arch` with only the metadata the template choice reads.
fn template_less_gguf(arch: &str, pre: &str, n_layer: u32, extra: &[(&str, &str)]) -> GgufFile {
    let mut writer = GgufWriter::new();
    writer
        .set("general.architecture", GgufValue::String(arch.into()))
        .set("tokenizer.ggml.pre", GgufValue::String(pre.into()))
        .set(format!("{arch}.block_count"), GgufValue::U32(n_layer));
    for (key, value) in extra {
        writer.set(*key, GgufValue::String(value.to_string()));
    }
    GgufFile::from_bytes(writer.to_bytes()).expect("a GGUF image")
}

#[test]
fn template_less_models_get_llama_cpp_fallback() {
    // llama.cpp (llama_model_chat_template, common_chat_templates_init): without
    // tokenizer.chat_template every architecture gets ChatML, except Mistral Small 3.1 (tekken
    // pre-tokenizer, 40 layers), which gets mistral-v7-tekken; a lone tool_use template is
    // taken; a template that is just "chatml" names that format.
    let source = |file: &GgufFile| ChatTemplate::from_gguf(file).unwrap().source().to_string();
    let chatml = ChatTemplate::builtin("chatml")
        .unwrap()
        .source()
        .to_string();
    for arch in [
        "llama",
        "qwen2",
        "qwen3",
        "qwen3moe",
        "gemma2",
        "gemma3",
        "olmo2",
        "granite",
        "smollm3",
        "phi3",
        "starcoder2",
        "mistral3",
    ] {
        for (pre, n_layer) in [("default", 40), ("tekken", 30), ("llama-bpe", 32)] {
            let file = template_less_gguf(arch, pre, n_layer, &[]);
            assert_eq!(source(&file), chatml, "{arch}, {pre}, {n_layer} layers");
        }
        let mistral_small = template_less_gguf(arch, "tekken", 40, &[]);
        assert_eq!(
            source(&mistral_small),
            ChatTemplate::builtin("mistral-v7-tekken").unwrap().source(),
            "{arch}"
        );
        let tool_use = "{{ 'tools: ' ~ messages | length }}";
        let file = template_less_gguf(
            arch,
            "default",
            8,
            &[("tokenizer.chat_template.tool_use", tool_use)],
        );
        assert_eq!(source(&file), tool_use);
        let named =
            template_less_gguf(arch, "default", 8, &[("tokenizer.chat_template", "chatml")]);
        assert_eq!(source(&named), chatml);
    }
}

#[test]
fn gemma_system_text_waits_for_a_user_turn() {
    // Two system messages concatenate; a model turn before any user turn does not take them.
    let template = ChatTemplate::builtin("gemma").unwrap();
    let messages = vec![
        ChatMessage::new("system", "A."),
        ChatMessage::new("system", " B. "),
        ChatMessage::new("assistant", "Greetings."),
        ChatMessage::new("user", "Hi"),
    ];
    assert_eq!(
        template.render(&messages, true, "<bos>", "<eos>").unwrap(),
        "<start_of_turn>model\nGreetings.<end_of_turn>\n\
         <start_of_turn>user\nA.B.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    );
}

#[test]
fn builtin_formats_match_llama_cpp() {
    // Expected texts follow llm_chat_apply_template in llama.cpp's llama-chat.cpp.
    let cases: &[(&str, &str)] = &[
        (
            "chatml",
            "<|im_start|>system\n Be brief.\n<|im_end|>\n<|im_start|>user\n  Hello \n<|im_end|>\n\
             <|im_start|>assistant\n Hi there <|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n\
             <|im_start|>assistant\n",
        ),
        (
            "llama3",
            "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nHow are you?<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n",
        ),
        (
            "llama2",
            "[INST]  Be brief.\n\n  Hello \n [/INST] Hi there </s>[INST] How are you? [/INST]",
        ),
        (
            "llama2-sys",
            "[INST] <<SYS>>\n Be brief.\n\n<</SYS>>\n\n  Hello \n [/INST] Hi there </s>\
             [INST] How are you? [/INST]",
        ),
        (
            "mistral-v1",
            " [INST]  Be brief.\n\n\n  Hello \n [/INST]  Hi there </s> [INST] How are you? [/INST]",
        ),
        (
            "mistral-v3",
            "[INST]  Be brief.\n\n\n  Hello \n[/INST] Hi there</s>[INST] How are you?[/INST]",
        ),
        (
            "mistral-v3-tekken",
            "[INST] Be brief.\n\n\n  Hello \n[/INST] Hi there </s>[INST]How are you?[/INST]",
        ),
        (
            "mistral-v7",
            "[SYSTEM_PROMPT]  Be brief.\n[/SYSTEM_PROMPT][INST]   Hello \n[/INST]  Hi there </s>\
             [INST] How are you?[/INST]",
        ),
        (
            "mistral-v7-tekken",
            "[SYSTEM_PROMPT] Be brief.\n[/SYSTEM_PROMPT][INST]  Hello \n[/INST] Hi there </s>\
             [INST]How are you?[/INST]",
        ),
        (
            "phi3",
            "<|system|>\n Be brief.\n<|end|>\n<|user|>\n  Hello \n<|end|>\n\
             <|assistant|>\n Hi there <|end|>\n<|user|>\nHow are you?<|end|>\n<|assistant|>\n",
        ),
    ];
    for (name, want) in cases {
        let template = ChatTemplate::builtin(name).unwrap();
        let got = template
            .render(&conversation(), true, "<s>", "</s>")
            .unwrap();
        assert_eq!(&got, want, "{name}");
    }
}

#[test]
fn every_builtin_compiles_and_unknown_names_are_listed() {
    for name in BUILTIN_NAMES {
        let template = ChatTemplate::builtin(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = template
            .render(&conversation(), true, "<s>", "</s>")
            .unwrap();
        assert!(text.contains("How are you?"), "{name}: {text:?}");
    }
    match ChatTemplate::builtin("vicuna-9000") {
        Err(Error::ChatTemplate(message)) => {
            assert!(message.contains("vicuna-9000"));
            for name in BUILTIN_NAMES {
                assert!(message.contains(name), "{message} lacks {name}");
            }
        }
        other => panic!("expected an unknown-template error, got {other:?}"),
    }
}

#[test]
fn template_errors_are_chat_template_errors() {
    let syntax = ChatTemplate::from_source("{% for m in messages %}{{ m.content }}");
    assert!(matches!(syntax, Err(Error::ChatTemplate(_))), "{syntax:?}");
    let raising =
        ChatTemplate::from_source("{{ raise_exception('no ' + messages[0].role + ' here') }}")
            .unwrap();
    match raising.render(&conversation(), true, "", "") {
        Err(Error::ChatTemplate(message)) => assert!(message.contains("no system here")),
        other => panic!("expected raise_exception to fail the render, got {other:?}"),
    }
    // An attribute of an undefined value is an error in Jinja2, too.
    let undefined = ChatTemplate::from_source("{{ nothing.attribute }}").unwrap();
    assert!(matches!(
        undefined.render(&[], true, "", ""),
        Err(Error::ChatTemplate(_))
    ));
    // Extra variables must be an object.
    let plain = ChatTemplate::builtin("chatml").unwrap();
    assert!(matches!(
        plain.render_with(&conversation(), true, "", "", &serde_json::json!([1])),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn strftime_now_formats_the_current_date() {
    let template = ChatTemplate::from_source("{{ strftime_now('%Y-%m-%d') }}").unwrap();
    let today = template.render(&[], false, "", "").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // Rendered within a second of `now`, unless that second crossed midnight.
    let around = [
        format_time("%Y-%m-%d", now),
        format_time("%Y-%m-%d", now - 1),
    ];
    assert!(around.contains(&today), "{today} vs {around:?}");
}

#[test]
fn format_time_matches_c_strftime() {
    // Expected strings from Python's time.strftime(fmt, time.gmtime(t)) (glibc).
    const FORMAT: &str = "%Y-%m-%d %H:%M:%S|%y|%j|%I %p|%a %A|%b %B|%e|%-d %-m %-H|%F %T|%D %R|%%";
    let cases = [
        (0, "1970-01-01 00:00:00|70|001|12 AM|Thu Thursday|Jan January| 1|1 1 0|1970-01-01 00:00:00|01/01/70 00:00|%"),
        (1_709_251_199, "2024-02-29 23:59:59|24|060|11 PM|Thu Thursday|Feb February|29|29 2 23|2024-02-29 23:59:59|02/29/24 23:59|%"),
        (951_829_261, "2000-02-29 13:01:01|00|060|01 PM|Tue Tuesday|Feb February|29|29 2 13|2000-02-29 13:01:01|02/29/00 13:01|%"),
        (4_102_444_799, "2099-12-31 23:59:59|99|365|11 PM|Thu Thursday|Dec December|31|31 12 23|2099-12-31 23:59:59|12/31/99 23:59|%"),
    ];
    for (t, want) in cases {
        assert_eq!(format_time(FORMAT, t), want, "t = {t}");
    }
}

// ---------------------------------------------------------------------------------------------
// Samplers
// ---------------------------------------------------------------------------------------------

/// Deterministic pseudo-logits (an LCG), so tests need no model: `n` values in about [-8, 8).
fn pseudo_logits(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 16.0 - 8.0
        })
        .collect()
}

/// Feed each sampled token back as history, as a generation loop does.
fn generate(sampler: &mut Sampler, logits_per_step: &[Vec<f32>]) -> Vec<u32> {
    let mut history = vec![1u32, 2, 3];
    for logits in logits_per_step {
        let token = sampler.sample(logits, &history);
        history.push(token);
    }
    history[3..].to_vec()
}

const VOCAB: usize = 4096;
const STEPS: usize = 64;

#[test]
fn same_seed_same_sequence_different_seed_different_sequence() {
    let steps: Vec<Vec<f32>> = (0..STEPS).map(|_| vec![0.0; VOCAB]).collect(); // flat
    let params = |seed| SamplerParams {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        seed,
        ..SamplerParams::default()
    };
    let a = generate(&mut Sampler::new(&params(42)), &steps);
    let b = generate(&mut Sampler::new(&params(42)), &steps);
    let c = generate(&mut Sampler::new(&params(43)), &steps);
    assert_eq!(a, b);
    assert_ne!(a, c);
    // A flat distribution over 4096 ids: 64 draws are not all the same token.
    assert!(a.iter().any(|&t| t != a[0]));

    // The same holds through the whole default chain on uneven logits.
    let steps: Vec<Vec<f32>> = (0..STEPS as u64)
        .map(|i| pseudo_logits(VOCAB, i).iter().map(|x| x * 0.25).collect())
        .collect();
    let default = |seed| SamplerParams {
        seed,
        repeat_penalty: 1.1,
        ..SamplerParams::default()
    };
    let a = generate(&mut Sampler::new(&default(7)), &steps);
    assert_eq!(a, generate(&mut Sampler::new(&default(7)), &steps));
    assert_ne!(a, generate(&mut Sampler::new(&default(8)), &steps));
    // Reseeding restarts the stream.
    let mut sampler = Sampler::new(&default(7));
    let _ = generate(&mut sampler, &steps);
    sampler.reseed(7);
    assert_eq!(a, generate(&mut sampler, &steps));
}

#[test]
fn top_k_one_and_zero_temperature_are_greedy() {
    for i in 0..16u64 {
        let logits = pseudo_logits(VOCAB, 1000 + i);
        let argmax = logits
            .iter()
            .enumerate()
            .fold(0, |best, (id, &x)| if x > logits[best] { id } else { best })
            as u32;
        let mut greedy = Sampler::new(&SamplerParams::greedy());
        let mut top1 = Sampler::new(&SamplerParams {
            top_k: 1,
            temperature: 1.5,
            seed: i,
            ..SamplerParams::default()
        });
        assert_eq!(greedy.sample(&logits, &[]), argmax);
        assert_eq!(top1.sample(&logits, &[]), argmax);
    }
}

#[test]
fn penalties_steer_greedy_away_from_repeats() {
    // Token 5 leads by 0.5; repeated twice in the window, a frequency penalty of 0.3 pushes it
    // below token 9; outside the window it is not penalized.
    let mut logits = vec![0.0f32; 16];
    logits[5] = 2.5;
    logits[9] = 2.0;
    let params = SamplerParams {
        frequency_penalty: 0.3,
        penalty_last_n: 4,
        ..SamplerParams::greedy()
    };
    let mut sampler = Sampler::new(&params);
    assert_eq!(sampler.sample(&logits, &[5, 5, 1, 2]), 9);
    assert_eq!(sampler.sample(&logits, &[5, 5, 1, 2, 3, 4]), 5);
    // Repeat penalty 1.5: 2.5 / 1.5 < 2.0.
    let mut repeat = Sampler::new(&SamplerParams {
        repeat_penalty: 1.5,
        ..SamplerParams::greedy()
    });
    assert_eq!(repeat.sample(&logits, &[5]), 9);
    // Presence is counted once: 0.4 is not enough to beat a 0.5 lead however often 5 occurs.
    let mut presence = Sampler::new(&SamplerParams {
        presence_penalty: 0.4,
        ..SamplerParams::greedy()
    });
    assert_eq!(presence.sample(&logits, &[5, 5, 5, 5, 5]), 5);
}

#[test]
fn default_chain_draws_only_from_the_truncated_set() {
    // top-k 3 then min-p: whatever the seed, draws stay within the 3 most likely tokens.
    let logits = pseudo_logits(VOCAB, 99);
    let mut ranked: Vec<u32> = (0..VOCAB as u32).collect();
    ranked.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    let mut sampler = Sampler::from_stages(
        vec![Stage::TopK(3), Stage::MinP(0.01), Stage::Temperature(2.0)],
        Pick::Draw,
        5,
    );
    let distribution = sampler.distribution(&logits, &[]).to_vec();
    let ids: Vec<u32> = distribution.iter().map(|c| c.id).collect();
    assert_eq!(ids, ranked[..3]);
    for _ in 0..200 {
        assert!(ranked[..3].contains(&sampler.sample(&logits, &[])));
    }
}
