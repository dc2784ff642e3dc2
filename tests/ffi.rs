//! The C ABI end to end (`scripts/gen-header.sh --check` checks the header): the C and C++ examples
//! build against the shared and the static library and print llama.cpp's reference text; a C
//! program calls every function with NULL and bad arguments; valgrind finds no leaks or invalid
//! accesses; four threads with their own sessions on one model agree with one thread (from C and
//! from Rust).
//!
//! The examples link the libllmrt.{so,a} that cargo built together with this test; gcc and g++
//! must be installed, valgrind is optional (skipped with a message when absent).

mod common;

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use llmrt::chat::{ChatMessage, ChatTemplate};
use llmrt::ffi;
use llmrt::generate::{self, GenerateParams};
use llmrt::sample::SamplerParams;
use llmrt::{Model, ModelParams, Session, SessionParams};
use std::sync::Arc;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The directory holding the libllmrt.{so,a} that cargo built together with this test binary.
///
/// That is `<target>/<profile>/deps`, where the test binary itself lies: cargo compiles the
/// library's rlib, cdylib and staticlib in one go there, but copies them up to
/// `<target>/<profile>` only on `cargo build`, so after `cargo test` alone the copies up there may
/// be stale. Falls back to `<target>/<profile>` if deps/ has none.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("the test binary lies in a directory");
    let has_libs = |dir: &Path| {
        ["libllmrt.so", "libllmrt.a"]
            .iter()
            .all(|l| dir.join(l).exists())
    };
    let dir = [Some(deps), deps.parent()]
        .into_iter()
        .flatten()
        .find(|dir| has_libs(dir))
        .unwrap_or_else(|| {
            panic!(
                "libllmrt.so and libllmrt.a are missing from {}: build them with \
                 `cargo build --release`",
                deps.display()
            )
        })
        .to_path_buf();
    dir
}

/// The test model `name` in models/; absent, it fails the test command and skips loudly elsewhere.
fn model(name: &str) -> Option<PathBuf> {
    common::models::model_path(name)
}

const SMOLLM2: &str = "smollm2-135m-instruct-q4_1.gguf";

/// llama.cpp's reference outputs for `model`.
fn reference(model: &str) -> serde_json::Value {
    let path = root()
        .join("tests/reference")
        .join(model.replace(".gguf", ".json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn str_at<'a>(value: &'a serde_json::Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_else(|| panic!("reference has no string at {pointer}"))
}

/// A greedy step whose top-2 logits are closer than this is a near-tie, after which our tokens
/// may part from llama.cpp's (the rule in tests/reference/README.md); otherwise identical.
const NEAR_TIE: f32 = 0.1;

fn load(path: &Path) -> Arc<Model> {
    Arc::new(Model::load(path, &ModelParams::default()).expect("load the model"))
}

fn ids(value: &serde_json::Value, pointer: &str) -> Vec<u32> {
    value
        .pointer(pointer)
        .and_then(serde_json::Value::as_array)
        .unwrap_or_else(|| panic!("reference has no ids at {pointer}"))
        .iter()
        .map(|v| {
            v.as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .expect("a token id")
        })
        .collect()
}

/// Checks our greedy tokens `ours` against llama.cpp's continuation `expected` of `context`:
/// identical, or parting only after a near-tie (top-2 logits within [`NEAR_TIE`]) on the shared
/// path, re-evaluated as generation does (the context in one batch, then token by token).
/// Returns the number of tokens that agree.
fn check_against_llama_cpp(
    model: &Arc<Model>,
    context: &[u32],
    expected: &[u32],
    ours: &[u32],
) -> usize {
    let agree = ours
        .iter()
        .zip(expected)
        .take_while(|(a, b)| a == b)
        .count();
    if agree == ours.len().min(expected.len()) {
        assert_eq!(
            ours.len(),
            expected.len(),
            "same tokens, but a different length"
        );
        return agree;
    }
    let mut session = Session::new(
        model.clone(),
        &SessionParams {
            n_ctx: context.len() + agree + 1,
            ..Default::default()
        },
    )
    .expect("session");
    let mut logits = session
        .eval(context)
        .expect("evaluate the context")
        .to_vec();
    let mut near_tie = None;
    #[allow(clippy::needless_range_loop)] // `step` also counts the steps, one past `expected`
    for step in 0..=agree {
        let mut sorted = logits.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        if near_tie.is_none() && sorted[0] - sorted[1] < NEAR_TIE {
            near_tie = Some(step);
        }
        if step < agree {
            logits = session.eval(&[expected[step]]).expect("step").to_vec();
        }
    }
    assert!(
        near_tie.is_some(),
        "greedy paths part at step {agree} of {} without a near-tie before it\nours:      {ours:?}\nllama.cpp: {expected:?}",
        expected.len()
    );
    println!(
        "agrees with llama.cpp for {agree} of {} tokens, then parts after a near-tie at step {near_tie:?}",
        expected.len()
    );
    agree
}

/// Greedy generation options as the examples set them (temperature 0, everything else default).
fn greedy_params(max_tokens: usize) -> GenerateParams {
    GenerateParams {
        max_tokens,
        sampler: SamplerParams {
            temperature: 0.0,
            ..SamplerParams::default()
        },
        ..GenerateParams::default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Link {
    Shared,
    Static,
}

/// Compiles an example (path relative to the repository) against the library with one compiler
/// line, warnings as errors; each (example, link) once per test run.
fn build(source: &str, link: Link) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<(String, Link), PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(exe) = built.get(&(source.to_string(), link)) {
        return exe.clone();
    }
    let lib_dir = lib_dir();
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ffi-examples");
    std::fs::create_dir_all(&out_dir).expect("create the examples' output directory");
    let stem = Path::new(source).file_stem().expect("a file name");
    let exe = out_dir.join(format!("{}-{link:?}", stem.to_string_lossy()).to_lowercase());
    let is_cpp = source.ends_with(".cpp");
    let mut cmd = Command::new(if is_cpp { "g++" } else { "gcc" });
    cmd.current_dir(root())
        .args(["-O2", "-Wall", "-Wextra", "-Werror", "-pedantic"])
        .arg(if is_cpp { "-std=c++17" } else { "-std=c11" })
        .arg(source)
        .arg("-Iinclude");
    match link {
        Link::Shared => {
            cmd.arg(format!("-L{}", lib_dir.display()))
                .arg("-lllmrt")
                .arg(format!("-Wl,-rpath,{}", lib_dir.display()));
        }
        Link::Static => {
            cmd.arg(lib_dir.join("libllmrt.a"));
        }
    }
    cmd.args(["-lpthread", "-ldl", "-lm", "-o"]).arg(&exe);
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run the compiler ({cmd:?}): {e}"));
    assert!(
        output.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    built.insert((source.to_string(), link), exe.clone());
    exe
}

/// Runs `cmd` with `stdin`, returning (exit success, stdout, stderr).
fn run(cmd: &mut Command, stdin: &str) -> (bool, String, String) {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut input = child.stdin.take().expect("piped stdin");
    input
        .write_all(stdin.as_bytes())
        .expect("write the program's stdin");
    drop(input);
    let output = child.wait_with_output().expect("wait for the program");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const GREEDY_PROMPT: &str = "/greedy/0/prompt";
const GREEDY_TEXT: &str = "/greedy/0/text";

#[test]
fn generate_example_prints_the_reference_greedy_text_shared_and_static() {
    let Some(path) = model(SMOLLM2) else { return };
    let reference = reference(SMOLLM2);
    let prompt = str_at(&reference, GREEDY_PROMPT);
    let expected = ids(&reference, "/greedy/0/ids");
    let model = load(&path);
    // What the Rust API generates: the C ABI must add and lose nothing.
    let mut session = Session::new(model.clone(), &SessionParams::default()).expect("session");
    let rust = generate::generate(
        &mut session,
        prompt,
        &greedy_params(expected.len()),
        &mut |_| true,
    )
    .expect("generate");
    let prompt_ids = ids(&reference, "/greedy/0/prompt_ids");
    check_against_llama_cpp(&model, &prompt_ids, &expected, &rust.tokens);
    let rust = rust.text;
    for link in [Link::Shared, Link::Static] {
        let exe = build("examples/c/generate.c", link);
        let (ok, stdout, stderr) = run(
            Command::new(&exe)
                .arg(&path)
                .arg(prompt)
                .args([&expected.len().to_string(), "0"]),
            "",
        );
        assert!(ok, "{link:?} generate failed:\n{stderr}");
        assert_eq!(
            stdout, rust,
            "{link:?}: the C example and the Rust API differ"
        );
        let counts = format!("generated: {} tokens", expected.len());
        assert!(stderr.contains(&counts), "{stderr}");
    }
}

/// The C++ example's reply to reference chat `case`, with the reference's system prompt if any.
fn check_cpp_chat(
    exe: &Path,
    path: &Path,
    model: &Arc<Model>,
    reference: &serde_json::Value,
    case: usize,
) {
    let messages: Vec<ChatMessage> = serde_json::from_value(
        reference
            .pointer(&format!("/chat/{case}/messages"))
            .expect("chat messages")
            .clone(),
    )
    .expect("messages are role/content pairs");
    let expected = ids(reference, &format!("/chat/{case}/greedy_ids"));
    let template = ChatTemplate::from_gguf(model.gguf()).expect("template");
    let mut session = Session::new(model.clone(), &SessionParams::default()).expect("session");
    let params = greedy_params(expected.len());
    let rust =
        generate::chat(&mut session, &template, &messages, &params, &mut |_| true).expect("chat");
    let context = ids(reference, &format!("/chat/{case}/ids"));
    check_against_llama_cpp(model, &context, &expected, &rust.tokens);
    let rust = rust.text;

    let (system, user): (Vec<_>, Vec<_>) = messages.iter().partition(|m| m.role == "system");
    assert_eq!(user.len(), 1, "one user turn per reference case");
    let mut cmd = Command::new(exe);
    cmd.arg(path).args([&expected.len().to_string(), "0"]);
    if let Some(system) = system.first() {
        cmd.arg(&system.content);
    }
    // A second turn must reuse the first turn's context.
    let (ok, stdout, stderr) = run(&mut cmd, &format!("{}\nAnd of Germany?\n", user[0].content));
    assert!(ok, "chat failed:\n{stderr}");
    let first = format!("{rust}\n");
    assert!(
        stdout.starts_with(&first) && stdout.len() > first.len() + 1,
        "expected the Rust API's reply {rust:?} and a second one, got {stdout:?}"
    );
    let turns: Vec<&str> = stderr.lines().filter(|l| l.contains("reused")).collect();
    assert_eq!(turns.len(), 2, "{stderr}");
    assert!(!turns[1].contains("(0 reused)"), "{stderr}");
}

#[test]
fn cpp_chat_example_prints_the_reference_replies() {
    let Some(path) = model(SMOLLM2) else { return };
    let reference = reference(SMOLLM2);
    let model = load(&path);
    let exe = build("examples/cpp/chat.cpp", Link::Shared);
    let cases = reference["chat"].as_array().map_or(0, Vec::len);
    assert!(cases > 0, "no chat cases");
    for case in 0..cases {
        check_cpp_chat(&exe, &path, &model, &reference, case);
    }
}

#[test]
fn abi_test_gets_the_documented_status_for_null_and_bad_arguments() {
    let exe = build("examples/c/abi_test.c", Link::Shared);
    let mut cmd = Command::new(&exe);
    if let Some(model) = model(SMOLLM2) {
        cmd.arg(model);
    }
    let (ok, stdout, stderr) = run(&mut cmd, "");
    assert!(ok, "abi_test failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    // The library never prints, not even for the panics it catches.
    assert_eq!(stderr, "", "the library wrote to stderr");
}

#[test]
fn valgrind_finds_no_leaks_or_invalid_accesses() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        // scripts/test.sh installs valgrind; under it a missing one is a failure, not a pass.
        assert!(
            !common::models::models_required(),
            "valgrind is not installed (scripts/test.sh installs it with apt-get)"
        );
        eprintln!("SKIP: valgrind is not installed; this test checked nothing");
        return;
    }
    let valgrind = || {
        let mut cmd = Command::new("valgrind");
        cmd.args(["--leak-check=full", "--error-exitcode=1", "--quiet"])
            .arg(format!(
                "--suppressions={}",
                root().join("tests/ffi-valgrind.supp").display()
            ));
        cmd
    };
    // Every error path, without a model (fast).
    let abi_test = build("examples/c/abi_test.c", Link::Shared);
    let (ok, stdout, stderr) = run(valgrind().arg(&abi_test), "");
    assert!(ok, "valgrind abi_test:\n{stdout}\n{stderr}");

    let Some(model) = model(SMOLLM2) else { return };
    let reference = reference(SMOLLM2);
    let generate = build("examples/c/generate.c", Link::Shared);
    let (ok, stdout, stderr) = run(
        valgrind()
            .arg(&generate)
            .arg(&model)
            .arg(str_at(&reference, GREEDY_PROMPT))
            .args(["4", "0"]),
        "",
    );
    assert!(ok, "valgrind generate:\n{stderr}");
    assert!(
        !stdout.is_empty() && str_at(&reference, GREEDY_TEXT).starts_with(&stdout),
        "{stdout:?}"
    );
}

#[test]
fn c_threads_sharing_a_model_generate_what_one_thread_does() {
    let Some(model) = model(SMOLLM2) else { return };
    let exe = build("examples/c/threads.c", Link::Shared);
    let (ok, stdout, stderr) = run(Command::new(&exe).arg(&model).arg("24"), "");
    assert!(ok, "threads failed:\n{stdout}\n{stderr}");
    assert!(
        stderr.contains("with sessions and with one batcher: same texts as one thread"),
        "{stderr}"
    );
}

#[test]
fn c_engine_stepped_by_the_caller_gives_each_sequence_its_tokens_alone() {
    let Some(model) = model(SMOLLM2) else { return };
    let exe = build("examples/c/engine.c", Link::Shared);
    let (ok, stdout, stderr) = run(Command::new(&exe).arg(&model).arg("20"), "");
    assert!(ok, "engine failed:\n{stdout}\n{stderr}");
    assert_eq!(stdout.matches("\tsame\t").count(), 5, "{stdout}");
    assert!(
        stderr.contains("same tokens as alone, pool whole again"),
        "{stderr}"
    );
}

/// A model handle that several threads may use at once, as the C API documents.
#[derive(Clone, Copy)]
struct SharedModel(*const ffi::llm_model);
// SAFETY: llm_model is immutable and documented as usable from any number of threads at once.
unsafe impl Send for SharedModel {}

/// Generates from `prompt` in a fresh session of `model` (sampled, seeded), through the C ABI.
fn generate_via_c_abi(model: SharedModel, prompt: &str, seed: u64) -> String {
    let prompt = CString::new(prompt).expect("no NUL in the prompt");
    let mut session_params = ffi::llm_session_default_params();
    session_params.n_ctx = 256;
    session_params.n_threads = 1;
    let mut params = ffi::llm_generate_default_params();
    params.max_tokens = 24;
    params.temperature = 0.7;
    params.seed = seed;
    let mut text = vec![0u8; 4096];
    // SAFETY: the model is live for the whole test; every pointer is valid for its call.
    unsafe {
        let session = ffi::llm_session_new(model.0, &session_params);
        assert!(!session.is_null(), "{}", last_error());
        let status = ffi::llm_generate(
            session,
            prompt.as_ptr(),
            &params,
            None,
            std::ptr::null_mut(),
            text.as_mut_ptr().cast(),
            text.len(),
            std::ptr::null_mut(),
        );
        ffi::llm_session_free(session);
        assert_eq!(status, ffi::llm_status::LLM_OK, "{}", last_error());
    }
    let len = text.iter().position(|&b| b == 0).expect("NUL-terminated");
    String::from_utf8(text[..len].to_vec()).expect("UTF-8 text")
}

fn last_error() -> String {
    // SAFETY: llm_last_error returns a NUL-terminated string valid until the next call.
    unsafe { CStr::from_ptr(ffi::llm_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// Seeds of the threaded generations (one per prompt, counting up), as in examples/c/threads.c.
const FIRST_SEED: u64 = 1000;

#[test]
fn rust_threads_sharing_a_model_generate_what_one_thread_does() {
    let Some(path) = model(SMOLLM2) else { return };
    let path = CString::new(path.to_string_lossy().into_owned()).expect("no NUL in the path");
    // SAFETY: a valid C string; NULL params are the defaults.
    let model = SharedModel(unsafe { ffi::llm_load(path.as_ptr(), std::ptr::null()) });
    assert!(!model.0.is_null(), "{}", last_error());
    let prompts = [
        "the first president of US is",
        "Once upon a time,",
        "def fibonacci(n):",
        "The three primary colors are",
    ];
    let alone: Vec<String> = (FIRST_SEED..)
        .zip(prompts)
        .map(|(seed, p)| generate_via_c_abi(model, p, seed))
        .collect();
    let together: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (FIRST_SEED..)
            .zip(prompts)
            .map(|(seed, p)| scope.spawn(move || generate_via_c_abi(model, p, seed)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("generation thread"))
            .collect()
    });
    // SAFETY: no thread uses the model any more.
    unsafe { ffi::llm_model_free(model.0.cast_mut()) };
    assert!(alone.iter().all(|t| !t.is_empty()), "{alone:?}");
    assert_eq!(alone, together);
}

/// The C example, through the C ABI, generates llama.cpp's greedy text on every architecture's
/// synthetic model (one weight variant each: the K-quant mix, Q4_0 for the MoE ones, whose mix
/// has F32 routers).
#[test]
fn generate_example_prints_the_reference_greedy_text_for_every_architecture() {
    let sums = std::fs::read_to_string(root().join("tests/reference/synthetic/SHA256SUMS"))
        .expect("SHA256SUMS");
    let names: Vec<String> = sums
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1)?.strip_suffix(".gguf"))
        .filter(|n| {
            let moe = n.contains("moe") || n.contains("mixtral");
            (n.ends_with("-kmix") && !moe) || (n.ends_with("-q4_0") && moe)
        })
        .map(str::to_string)
        .collect();
    assert!(names.len() >= 10, "{names:?}");
    let exe = build("examples/c/generate.c", Link::Shared);
    for name in names {
        let Some(path) = model(&format!("synthetic/{name}.gguf")) else {
            return;
        };
        let reference = reference(&format!("synthetic/{name}.gguf"));
        for case in reference["greedy"].as_array().expect("greedy cases") {
            let n = case["ids"].as_array().expect("ids").len();
            let (ok, stdout, stderr) = run(
                Command::new(&exe)
                    .arg(&path)
                    .arg(case["prompt"].as_str().expect("prompt"))
                    .args([&n.to_string(), "0"]),
                "",
            );
            assert!(ok, "{name}: generate failed:\n{stderr}");
            assert_eq!(stdout, case["text"].as_str().expect("text"), "{name}");
        }
    }
}
