//! The tokenizer against llama.cpp's reference tokenizations (tests/reference/<model>.json) on
//! the three test models, plus synthetic vocabs for the error paths.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use llmrt::gguf::{GgufFile, GgufWriter, Value, ValueType};
use llmrt::tokenizer::{StreamDecoder, Tokenizer};
use serde_json::Value as Json;

const MODELS: &[&str] = &[
    "smollm2-135m-instruct-q4_1",
    "gemma-3-270m-q4_k_m",
    "qwen2.5-coder-0.5b-instruct-q4_k_m",
];

/// Building the largest test vocab (Gemma's 262k tokens, Qwen's 151k tokens + merges) must stay
/// interactive: at most this much CPU time of the building thread (wall time on a shared, loaded
/// machine says little).
const MAX_BUILD_CPU_SECONDS: f64 = 1.0;

/// Teacher-forced references are truncated to this many tokens.
const TEACHER_FORCED_MAX_TOKENS: usize = 1024;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn reference(model: &str) -> Json {
    let path = root().join("tests/reference").join(format!("{model}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("reference JSON")
}

/// The model's tokenizer, or None (with a message) when the model file is absent.
fn load(model: &str) -> Option<Tokenizer> {
    let path = common::models::model_path(&format!("{model}.gguf"))?;
    let file = GgufFile::open(&path).expect("open model");
    Some(Tokenizer::from_gguf(&file).expect("build tokenizer"))
}

fn ids(v: &Json) -> Vec<u32> {
    v.as_array()
        .expect("id array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn str_of<'a>(v: &'a Json, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("missing string `{key}`"))
}

#[test]
fn tokenize_cases_match_llama_cpp() {
    for model in MODELS {
        let Some(tok) = load(model) else { continue };
        check_tokenize_cases(model, &tok, &reference(model));
    }
}

/// Harder texts (unassigned and combining code points, a byte character SmolLM2's vocab lacks,
/// emoji sequences, many scripts, control and format characters, special-token text as plain
/// text), tokenized by llama.cpp through /work/shared/tools/make_reference.py with
/// tests/reference/tokenize-extra/cases.json.
#[test]
fn extra_tokenize_cases_match_llama_cpp() {
    for model in [
        "smollm2-135m-instruct-q8_0",
        "gemma-3-270m-q4_k_m",
        "qwen2.5-coder-0.5b-instruct-q4_k_m",
    ] {
        let Some(tok) = load(model) else { continue };
        let path = root()
            .join("tests/reference/tokenize-extra")
            .join(format!("{model}.json"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        check_tokenize_cases(model, &tok, &serde_json::from_str(&text).expect("JSON"));
    }
}

/// Every `tokenize` case of a reference: ids with and without special tokens, and the text
/// of the latter.
fn check_tokenize_cases(model: &str, tok: &Tokenizer, r: &Json) {
    let cases = r["tokenize"].as_array().expect("tokenize cases");
    assert!(!cases.is_empty());
    for case in cases {
        let text = str_of(case, "text");
        let with = tok.encode(text, true, false).unwrap();
        assert_eq!(with, ids(&case["ids"]), "{model}: ids of {text:?}");
        let without = tok.encode(text, false, false).unwrap();
        let expected = ids(&case["ids_without_special"]);
        assert_eq!(
            without, expected,
            "{model}: ids_without_special of {text:?}"
        );
        assert_eq!(
            tok.decode(&expected),
            str_of(case, "detokenized"),
            "{model}: detokenized {text:?}"
        );
    }
}

#[test]
fn prompts_and_chats_match_llama_cpp() {
    for model in MODELS {
        let Some(tok) = load(model) else { continue };
        let r = reference(model);
        for tf in r["teacher_forced"].as_array().expect("teacher_forced") {
            let mut got = tok.encode(str_of(tf, "text"), true, false).unwrap();
            got.truncate(TEACHER_FORCED_MAX_TOKENS);
            assert_eq!(got, ids(&tf["ids"]), "{model}: teacher-forced text");
        }
        for g in r["greedy"].as_array().expect("greedy") {
            let prompt = str_of(g, "prompt");
            let got = tok.encode(prompt, true, false).unwrap();
            assert_eq!(got, ids(&g["prompt_ids"]), "{model}: prompt {prompt:?}");
        }
        for c in r["chat"].as_array().expect("chat") {
            // A rendered template carries its own BOS where the model wants one, so chat
            // prompts are tokenized without adding special tokens, with special text parsed.
            let rendered = str_of(c, "rendered");
            let got = tok.encode(rendered, false, true).unwrap();
            assert_eq!(got, ids(&c["ids"]), "{model}: chat {rendered:?}");
            // The same text as user text must not produce control tokens.
            let plain = tok.encode(rendered, false, false).unwrap();
            assert!(
                plain.iter().all(|&id| !tok.is_control(id)),
                "{model}: control token parsed from plain text"
            );
            // The reply ends with an end-of-generation token when it stopped early.
            let reply = ids(&c["greedy_ids"]);
            let last = *reply.last().expect("reply");
            if reply.len() < 32 {
                assert!(tok.is_eog(last), "{model}: reply ends with {last}, not EOG");
            }
            assert!(
                reply[..reply.len() - 1].iter().all(|&id| !tok.is_eog(id)),
                "{model}: EOG inside a reply"
            );
        }
    }
}

/// Streams `ids` one token at a time; returns the pieces.
fn stream(tok: &Tokenizer, ids: &[u32]) -> (Vec<String>, String) {
    let mut d = StreamDecoder::new();
    let pieces: Vec<String> = ids.iter().map(|&id| d.push(tok, id)).collect();
    let tail = d.finish();
    (pieces, tail)
}

#[test]
fn stream_decoder_emits_only_whole_characters() {
    for model in MODELS {
        let Some(tok) = load(model) else { continue };
        let r = reference(model);
        let mut held_somewhere = false;
        for case in r["tokenize"].as_array().expect("tokenize cases") {
            let expected = str_of(case, "detokenized");
            let ids = ids(&case["ids_without_special"]);
            let (pieces, tail) = stream(&tok, &ids);
            assert_eq!(tail, "", "{model}: bytes left over in {expected:?}");
            assert_eq!(pieces.concat(), expected, "{model}: streamed {expected:?}");
            if !expected.contains('\u{FFFD}') {
                for p in &pieces {
                    assert!(
                        !p.contains('\u{FFFD}'),
                        "{model}: half character in {expected:?}"
                    );
                }
            }
            // A token that contributes bytes but no complete character yet was held back.
            for (i, p) in pieces.iter().enumerate() {
                if p.is_empty() && !tok.token_to_piece(ids[i]).is_empty() {
                    held_somewhere = true;
                }
            }
        }
        // Byte-level vocabs split CJK and emoji across tokens in these cases.
        if tok.token_text(0) != Some("<pad>") {
            assert!(
                held_somewhere,
                "{model}: no case exercised a split character"
            );
        }
    }
}

#[test]
fn stream_decoder_holds_split_character_and_flushes_garbage() {
    let Some(tok) = load("qwen2.5-coder-0.5b-instruct-q4_k_m") else {
        return;
    };
    // "🦀" is four bytes; byte-level BPE has a token for each single byte.
    let crab = "🦀";
    let byte_ids: Vec<u32> = crab
        .bytes()
        .map(|b| {
            // Lone bytes are not valid text to encode; find each byte's token by its rendering.
            (0..tok.vocab_size() as u32)
                .find(|&id| tok.token_to_piece(id) == [b])
                .expect("byte token")
        })
        .collect();
    let mut d = StreamDecoder::new();
    for &id in &byte_ids[..3] {
        assert_eq!(d.push(&tok, id), "", "partial character emitted");
    }
    assert_eq!(d.push(&tok, byte_ids[3]), crab);
    // A truncated character at the end of the stream comes out as one replacement character.
    assert_eq!(d.push(&tok, byte_ids[0]), "");
    assert_eq!(d.finish(), "\u{FFFD}");
    // A byte that can never start a character is replaced at once, not held.
    assert_eq!(d.push(&tok, byte_ids[1]), "\u{FFFD}");
}

#[test]
fn special_tokens_and_end_of_generation() {
    let expectations: &[(&str, &[&str])] = &[
        (
            "smollm2-135m-instruct-q4_1",
            &["<|endoftext|>", "<|im_end|>"],
        ),
        ("gemma-3-270m-q4_k_m", &["<eos>", "<end_of_turn>"]),
        (
            "qwen2.5-coder-0.5b-instruct-q4_k_m",
            &["<|endoftext|>", "<|im_end|>"],
        ),
    ];
    for (model, eog_texts) in expectations {
        let Some(tok) = load(model) else { continue };
        for t in *eog_texts {
            let id = tok.token_id(t).unwrap_or_else(|| panic!("{model}: no {t}"));
            assert!(tok.is_eog(id), "{model}: {t} is not EOG");
            assert!(tok.eog_tokens().contains(&id));
        }
        let eos = tok.eos().expect("eos");
        assert!(tok.is_eog(eos));
        // Ordinary words never end generation.
        for id in tok.encode("Hello world", false, false).unwrap() {
            assert!(!tok.is_eog(id));
        }
        // Control tokens: parsed only on request, rendered by token_to_piece but not decode.
        let bos = tok.bos().expect("bos");
        let bos_text = tok.token_text(bos).expect("bos text").to_string();
        assert_eq!(tok.encode(&bos_text, false, true).unwrap(), vec![bos]);
        assert_ne!(tok.encode(&bos_text, false, false).unwrap(), vec![bos]);
        assert_eq!(tok.token_to_piece(bos), bos_text.as_bytes());
        assert_eq!(tok.decode(&[bos]), "");
    }
}

#[test]
fn gemma_uses_sentencepiece_settings_from_metadata() {
    let Some(tok) = load("gemma-3-270m-q4_k_m") else {
        return;
    };
    assert!(tok.add_bos());
    assert!(!tok.add_eos());
    assert_eq!(tok.bos(), Some(2));
    // User-defined whitespace tokens are split out even from user text, so an inner run of
    // spaces is one token and the word after it has no ▁.
    let ids = tok.encode("a  b", false, false).unwrap();
    assert_eq!(tok.decode(&ids), "a  b");
    assert_eq!(ids.len(), 3);
    // Byte fallback: a character outside the vocab becomes its UTF-8 bytes.
    let rare = "\u{10FFFD}";
    let ids = tok.encode(rare, false, false).unwrap();
    assert_eq!(ids.len(), 4);
    assert_eq!(tok.decode(&ids), rare);
}

/// CPU time consumed by the calling thread so far (Linux: utime + stime from
/// /proc/thread-self/stat, in USER_HZ = 100 ticks per second); None elsewhere.
fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

#[test]
fn building_large_vocabs_is_fast() {
    for model in MODELS {
        let Some(path) = common::models::model_path(&format!("{model}.gguf")) else {
            continue;
        };
        let file = GgufFile::open(&path).unwrap();
        let cpu0 = thread_cpu_seconds();
        let t = Instant::now();
        let tok = Tokenizer::from_gguf(&file).unwrap();
        let wall = t.elapsed().as_secs_f64();
        let cpu = cpu0.and_then(|c0| Some(thread_cpu_seconds()? - c0));
        eprintln!(
            "{model}: {} tokens built in {wall:.3} s wall, {} s CPU",
            tok.vocab_size(),
            cpu.map_or("?".to_string(), |c| format!("{c:.2}"))
        );
        if let Some(cpu) = cpu {
            assert!(
                cpu < MAX_BUILD_CPU_SECONDS,
                "{model}: {cpu:.3} s CPU to build"
            );
        }
    }
}

/// A tiny byte-level vocab: the 256 GPT-2 byte characters plus "ab", with one merge.
fn tiny_bpe(model: &str, pre: Option<&str>) -> GgufFile {
    let mut tokens: Vec<Value> = Vec::new();
    let printable = |b: u8| matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut extra = 0u32;
    for b in 0..=255u8 {
        let c = if printable(b) {
            char::from(b)
        } else {
            extra += 1;
            char::from_u32(255 + extra).unwrap()
        };
        tokens.push(Value::String(c.to_string()));
    }
    tokens.push(Value::String("ab".into()));
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String("llama".into()));
    w.set("tokenizer.ggml.model", Value::String(model.into()));
    if let Some(p) = pre {
        w.set("tokenizer.ggml.pre", Value::String(p.into()));
    }
    w.set(
        "tokenizer.ggml.tokens",
        Value::Array(ValueType::String, tokens),
    );
    w.set(
        "tokenizer.ggml.merges",
        Value::Array(ValueType::String, vec![Value::String("a b".into())]),
    );
    w.set("tokenizer.ggml.bos_token_id", Value::U32(0));
    w.set("tokenizer.ggml.eos_token_id", Value::U32(0));
    GgufFile::from_bytes(w.to_bytes()).expect("valid GGUF")
}

#[test]
fn unknown_model_or_pre_tokenizer_is_an_error() {
    let ok = Tokenizer::from_gguf(&tiny_bpe("gpt2", Some("gpt-2"))).expect("gpt-2 vocab");
    let ids = ok.encode("ab ab", false, false).unwrap();
    assert_eq!(ok.decode(&ids), "ab ab");
    assert_eq!(ids[0], 256, "merge a+b not applied");

    for (model, pre, named) in [
        ("gpt2", Some("no-such-pre"), "no-such-pre"),
        ("wordpiece-2000", Some("gpt-2"), "wordpiece-2000"),
    ] {
        match Tokenizer::from_gguf(&tiny_bpe(model, pre)) {
            Err(llmrt::Error::Tokenizer(msg)) => {
                assert!(msg.contains(named), "error {msg:?} does not name {named}")
            }
            Err(e) => panic!("wrong error kind: {e}"),
            Ok(_) => panic!("{model}/{pre:?} accepted"),
        }
    }
}

/// A tiny SentencePiece vocab: <unk> <s> </s>, the 256 byte tokens, then `pieces` with scores.
fn tiny_spm(pieces: &[(&str, f32)], add_space_prefix: Option<bool>) -> GgufFile {
    let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
    let mut types = vec![2i32, 3, 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
    }
    let mut scores = vec![0.0f32; tokens.len()];
    for (p, s) in pieces {
        tokens.push(p.to_string());
        types.push(1);
        scores.push(*s);
    }
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String("llama".into()));
    w.set("tokenizer.ggml.model", Value::String("llama".into()));
    w.set(
        "tokenizer.ggml.tokens",
        Value::Array(
            ValueType::String,
            tokens.into_iter().map(Value::String).collect(),
        ),
    );
    w.set(
        "tokenizer.ggml.scores",
        Value::Array(ValueType::F32, scores.into_iter().map(Value::F32).collect()),
    );
    w.set(
        "tokenizer.ggml.token_type",
        Value::Array(ValueType::I32, types.into_iter().map(Value::I32).collect()),
    );
    if let Some(p) = add_space_prefix {
        w.set("tokenizer.ggml.add_space_prefix", Value::Bool(p));
    }
    GgufFile::from_bytes(w.to_bytes()).expect("valid GGUF")
}

/// The stored texts of `ids`.
fn texts(tok: &Tokenizer, ids: &[u32]) -> Vec<String> {
    ids.iter()
        .map(|&id| tok.token_text(id).unwrap().to_string())
        .collect()
}

#[test]
fn sentencepiece_merges_by_score_with_space_prefix_and_byte_fallback() {
    let base = [("▁", -3.0), ("a", -3.0), ("b", -3.0)];
    // "ab" outscores "▁a": the pair merged first decides the split.
    let tok = Tokenizer::from_gguf(&tiny_spm(
        &[base[0], base[1], base[2], ("▁a", -2.0), ("ab", -1.0)],
        None,
    ))
    .unwrap();
    assert!(tok.add_bos(), "llama vocabs add BOS by default");
    assert_eq!(tok.bos(), Some(1));
    let ids = tok.encode("ab", false, false).unwrap();
    assert_eq!(texts(&tok, &ids), ["▁", "ab"]);
    // With the scores swapped, "▁a" wins.
    let tok2 = Tokenizer::from_gguf(&tiny_spm(
        &[base[0], base[1], base[2], ("▁a", -1.0), ("ab", -2.0)],
        None,
    ))
    .unwrap();
    let ids2 = tok2.encode("ab", false, false).unwrap();
    assert_eq!(texts(&tok2, &ids2), ["▁a", "b"]);
    // The prefixed space is removed again when decoding the whole text.
    assert_eq!(tok.decode(&ids), "ab");
    assert_eq!(tok.encode("ab", true, false).unwrap()[0], 1);

    // After a special token the space prefix applies again; between words spaces are ▁.
    let ids = tok.encode("<s>ab b", false, true).unwrap();
    assert_eq!(texts(&tok, &ids), ["<s>", "▁", "ab", "▁", "b"]);
    assert_eq!(
        tok.decode(&ids),
        " ab b",
        "only the very first token loses its space"
    );

    // Characters outside the vocab fall back to their UTF-8 bytes.
    let ids = tok.encode("é", false, false).unwrap();
    assert_eq!(texts(&tok, &ids), ["▁", "<0xC3>", "<0xA9>"]);
    assert_eq!(tok.decode(&ids), "é");

    // add_space_prefix = false in the metadata: no leading ▁.
    let tok3 = Tokenizer::from_gguf(&tiny_spm(&base, Some(false))).unwrap();
    let ids = tok3.encode("a b", false, false).unwrap();
    assert_eq!(texts(&tok3, &ids), ["a", "▁", "b"]);
    assert_eq!(tok3.decode(&ids), "a b");
}

#[test]
fn gpt2_default_vocab_cleans_spaces_when_decoding() {
    // `gpt-2` vocabs clean up spaces before punctuation, as llama.cpp's detokenizer does;
    // `smollm` (and Qwen) vocabs keep the text as is.
    let text = "x , y 's";
    let clean = Tokenizer::from_gguf(&tiny_bpe("gpt2", Some("gpt-2"))).unwrap();
    assert_eq!(
        clean.decode(&clean.encode(text, false, false).unwrap()),
        "x, y's"
    );
    let raw = Tokenizer::from_gguf(&tiny_bpe("gpt2", Some("smollm"))).unwrap();
    assert_eq!(raw.decode(&raw.encode(text, false, false).unwrap()), text);
}
