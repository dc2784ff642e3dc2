//! Saved sessions: a session saved after a prompt and restored into a fresh session continues
//! with exactly the tokens of an uninterrupted run, greedy and seeded; files that are damaged,
//! truncated, of another version or model or cache, or that claim impossible counts are
//! refused with `Error::InvalidSessionFile`, and the session they were loaded into is unchanged.

mod common;

use std::sync::Arc;

use llmrt::generate::{self, GenerateParams};
use llmrt::model::KvType;
use llmrt::sample::SamplerParams;
use llmrt::{Error, Model, Session, SessionParams};

const PROMPT: &str = "Once upon a time, in a small village by the sea, there lived an old \
                      fisherman who every morning";

fn params(seed: Option<u64>) -> GenerateParams {
    GenerateParams {
        max_tokens: 24,
        sampler: match seed {
            None => SamplerParams::greedy(),
            Some(seed) => SamplerParams {
                temperature: 0.9,
                seed,
                ..SamplerParams::default()
            },
        },
        ..GenerateParams::default()
    }
}

fn session(model: &Arc<Model>, n_ctx: usize, kv_type: KvType) -> Session {
    let params = SessionParams {
        n_ctx,
        n_threads: 2,
        kv_type,
        ..SessionParams::default()
    };
    Session::new(model.clone(), &params).expect("session")
}

fn prompt_tokens(model: &Model) -> Vec<u32> {
    model
        .tokenizer()
        .encode(PROMPT, true, false)
        .expect("tokenize")
}

/// The tokens generated from `PROMPT` in `s` (which may already hold it).
fn continue_prompt(s: &mut Session, seed: Option<u64>) -> Vec<u32> {
    let prompt = prompt_tokens(&s.model().clone());
    generate::generate_tokens(s, &prompt, &params(seed), &mut |_| true)
        .expect("generate")
        .tokens
}

/// A session that has evaluated `PROMPT` and nothing else, and its saved bytes.
fn saved_after_prompt(model: &Arc<Model>) -> (Session, Vec<u8>) {
    let mut s = session(model, 256, KvType::F16);
    s.eval(&prompt_tokens(model)).expect("eval");
    let bytes = s.saved_bytes();
    (s, bytes)
}

#[test]
fn a_restored_session_continues_as_the_uninterrupted_one() {
    let Some(model) = common::models::load("smollm2-135m-instruct-q8_0.gguf") else {
        return;
    };
    for seed in [None, Some(7), Some(12345)] {
        let uninterrupted = continue_prompt(&mut session(&model, 256, KvType::F16), seed);
        let (_, bytes) = saved_after_prompt(&model);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("prompt.session");
        std::fs::write(&path, &bytes).expect("write");
        let mut restored = session(&model, 256, KvType::F16);
        restored.load(&path).expect("load");
        assert_eq!(restored.tokens(), prompt_tokens(&model).as_slice());
        let stats_before = restored.tokens().len();
        assert_eq!(
            continue_prompt(&mut restored, seed),
            uninterrupted,
            "seed {seed:?}"
        );
        assert!(stats_before > 0);
    }
    // Saving through the file API writes the same bytes, and a second save replaces the first.
    let (s, bytes) = saved_after_prompt(&model);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("again.session");
    s.save(&path).expect("save");
    s.save(&path).expect("save over");
    assert_eq!(std::fs::read(&path).expect("read"), bytes);
}

#[test]
fn a_session_saved_mid_conversation_restores_its_logits_and_cache() {
    let Some(model) = common::models::load("smollm2-135m-instruct-q8_0.gguf") else {
        return;
    };
    // After a generation the cache holds the prompt and all but the last generated token.
    let mut original = session(&model, 256, KvType::F32);
    continue_prompt(&mut original, None);
    let bytes = original.saved_bytes();
    let mut restored = session(&model, 256, KvType::F32);
    restored.restore(&bytes).expect("restore");
    assert_eq!(restored.tokens(), original.tokens());
    assert!(restored
        .logits()
        .iter()
        .zip(original.logits())
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    // The next token's logits, computed from the restored cache, are the original's.
    let next = [42u32];
    let from_original = original.eval(&next).expect("eval").to_vec();
    let from_restored = restored.eval(&next).expect("eval").to_vec();
    assert!(from_original
        .iter()
        .zip(&from_restored)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
}

/// `bytes` with the header edited and the checksum made right again: what a forger (or another
/// writer) could produce.
fn with_header(bytes: &[u8], edit: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
    let header_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let mut header: serde_json::Value =
        serde_json::from_slice(&bytes[16..16 + header_len]).unwrap();
    edit(&mut header);
    let header = serde_json::to_vec(&header).unwrap();
    let mut out = bytes[..12].to_vec();
    out.extend((header.len() as u32).to_le_bytes());
    out.extend(&header);
    out.extend(&bytes[16 + header_len..bytes.len() - 32]);
    use sha2::Digest;
    let checksum = sha2::Sha256::digest(&out);
    out.extend(checksum);
    out
}

#[test]
fn bad_files_are_refused_and_leave_the_session_as_it_was() {
    let Some(model) = common::models::load("smollm2-135m-instruct-q8_0.gguf") else {
        return;
    };
    let Some(other) = common::models::load("smollm2-135m-instruct-q4_0.gguf") else {
        return;
    };
    let (_, bytes) = saved_after_prompt(&model);
    let (_, other_bytes) = saved_after_prompt(&other);
    let mut flipped = Vec::new();
    for at in [0, 9, 20, bytes.len() / 2, bytes.len() - 40, bytes.len() - 1] {
        let mut b = bytes.clone();
        b[at] ^= 0x10;
        flipped.push((format!("a bit flipped at byte {at}"), b, None));
    }
    let mut version = bytes.clone();
    version[8] = 2;
    let cases: Vec<(String, Vec<u8>, Option<&str>)> = [
        ("empty".to_string(), Vec::new(), Some("too short")),
        (
            "truncated".into(),
            bytes[..bytes.len() / 3].to_vec(),
            Some("checksum"),
        ),
        (
            "without its checksum".into(),
            bytes[..bytes.len() - 32].to_vec(),
            Some("checksum"),
        ),
        ("another version".into(), version, Some("version 2")),
        ("another model's".into(), other_bytes, Some("another model")),
        (
            "impossible token count".into(),
            with_header(&bytes, |h| h["n_tokens"] = serde_json::json!(1u64 << 40)),
            Some("holds"),
        ),
        (
            "a count that does not match the data".into(),
            with_header(&bytes, |h| h["n_tokens"] = serde_json::json!(3)),
            Some("bytes of data"),
        ),
        (
            "another cache type".into(),
            with_header(&bytes, |h| h["kv_type"] = serde_json::json!("f32")),
            Some("another shape or type"),
        ),
    ]
    .into_iter()
    .chain(flipped)
    .collect();

    // The target session holds a conversation of its own, which must survive every refusal.
    let mut target = session(&model, 256, KvType::F16);
    let before = continue_prompt(&mut target, Some(3));
    let tokens_before = target.tokens().to_vec();
    for (what, bad, needle) in &cases {
        match target.restore(bad) {
            Err(Error::InvalidSessionFile(message)) => {
                if let Some(needle) = needle {
                    assert!(message.contains(needle), "{what}: {message}");
                }
            }
            other => panic!("{what}: expected InvalidSessionFile, got {other:?}"),
        }
        assert_eq!(target.tokens(), tokens_before.as_slice(), "{what}");
    }
    assert_eq!(continue_prompt(&mut target, Some(3)), before);

    // A context too small for the saved tokens, and a cache of another element type.
    let mut small = session(&model, 8, KvType::F16);
    assert!(
        matches!(small.restore(&bytes), Err(Error::InvalidSessionFile(m)) if m.contains("context"))
    );
    let mut f32_cache = session(&model, 256, KvType::F32);
    assert!(
        matches!(f32_cache.restore(&bytes), Err(Error::InvalidSessionFile(m)) if m.contains("shape or type"))
    );

    // A file far larger than any session of this model and context is refused unread.
    let dir = tempfile::tempdir().expect("tempdir");
    let huge = dir.path().join("huge.session");
    let file = std::fs::File::create(&huge).expect("create");
    file.set_len(1 << 40).expect("sparse file");
    assert!(
        matches!(target.load(&huge), Err(Error::InvalidSessionFile(m)) if m.contains("more than"))
    );
    assert!(matches!(
        target.load(dir.path().join("absent")),
        Err(Error::Io { .. })
    ));
}

#[test]
fn a_file_saved_with_other_adapters_is_refused() {
    let Some(model) = common::models::load("smollm2-135m-instruct-q8_0.gguf") else {
        return;
    };
    let Some(path) = common::models::model_path("lora/smollm2-135m-lora-f16.gguf") else {
        return;
    };
    let adapter = Arc::new(llmrt::lora::LoraAdapter::open(&path, &model).expect("adapter"));
    let (_, plain) = saved_after_prompt(&model);
    let mut adapted = session(&model, 256, KvType::F16);
    let lora = llmrt::lora::ActiveLora {
        adapter,
        scale: 0.5,
    };
    adapted.set_loras(vec![lora.clone()]).expect("attach");
    assert!(
        matches!(adapted.restore(&plain), Err(Error::InvalidSessionFile(m)) if m.contains("LoRA"))
    );
    // Saved with the adapter, it restores into a session with the same adapter and scale only.
    adapted.eval(&prompt_tokens(&model)).expect("eval");
    let with_adapter = adapted.saved_bytes();
    let mut same = session(&model, 256, KvType::F16);
    same.set_loras(vec![lora.clone()]).expect("attach");
    same.restore(&with_adapter).expect("same adapters");
    let mut other_scale = session(&model, 256, KvType::F16);
    other_scale
        .set_loras(vec![llmrt::lora::ActiveLora { scale: 1.0, ..lora }])
        .expect("attach");
    assert!(other_scale.restore(&with_adapter).is_err());
    assert!(session(&model, 256, KvType::F16)
        .restore(&with_adapter)
        .is_err());
}
