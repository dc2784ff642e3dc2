//! `llmrt run` and friends as a llama.cpp user expects them: generation until the context is
//! full, a warning past the trained context, the prompt from a file or standard input, and clear
//! messages for files that are not models.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

#[path = "../../tests/common/models.rs"]
mod models;
use models::model_path;

const MODEL: &str = "smollm2-135m-instruct-q4_1.gguf";

fn llmrt(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_llmrt"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start llmrt");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write stdin");
    }
    child.wait_with_output().expect("llmrt runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Runs `llmrt args` and checks that it fails with `needle` in its message.
fn assert_fails_saying(args: &[&str], needle: &str) {
    let out = llmrt(args, None);
    assert!(!out.status.success(), "llmrt {args:?} succeeded");
    let stderr = text(&out.stderr);
    assert!(stderr.contains(needle), "llmrt {args:?}: {stderr}");
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[test]
fn generates_until_the_context_is_full() {
    let Some(model) = model_path(MODEL) else {
        return;
    };
    let out = llmrt(
        &[
            "run",
            "-m",
            path_str(&model),
            "-p",
            "The quick brown fox",
            "-n",
            "200",
            "-c",
            "24",
            "--temp",
            "0",
        ],
        None,
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Four prompt tokens, twenty generated: the context of 24 is full.
    assert!(stderr.contains("stop: context full"), "{stderr}");
    assert!(stderr.contains("4 prompt tokens"), "{stderr}");
    assert!(stderr.contains("20 generated"), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn a_prompt_that_fills_the_context_is_refused() {
    let Some(model) = model_path(MODEL) else {
        return;
    };
    let long = "word ".repeat(40);
    let out = llmrt(
        &["run", "-m", path_str(&model), "-p", &long, "-c", "16"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("context is full"), "{stderr}");
    assert!(stderr.contains("the context holds 16"), "{stderr}");
}

#[test]
fn warns_when_the_context_exceeds_the_trained_one() {
    let Some(model) = model_path(MODEL) else {
        return;
    };
    // SmolLM2 was trained with 8192 tokens of context.
    let args = |ctx: &'static str| {
        vec![
            "run".to_string(),
            "-m".into(),
            path_str(&model).into(),
            "-p".into(),
            "Hello".into(),
            "-n".into(),
            "2".into(),
            "-c".into(),
            ctx.into(),
            "--temp".into(),
            "0".into(),
        ]
    };
    let run = |ctx| {
        let a = args(ctx);
        llmrt(&a.iter().map(String::as_str).collect::<Vec<_>>(), None)
    };
    let beyond = run("8200");
    let stderr = text(&beyond.stderr);
    assert!(beyond.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: the model was trained with a context of 8192 tokens")
            && stderr.contains("-c 8200"),
        "{stderr}"
    );
    let within = run("8192");
    assert!(within.status.success());
    assert!(!text(&within.stderr).contains("warning"));
}

#[test]
fn the_prompt_comes_from_a_file_or_standard_input() {
    let Some(model) = model_path(MODEL) else {
        return;
    };
    let model = path_str(&model);
    let prompt = "The capital of France is";
    let dir = temp_dir("run-prompt-file");
    let file = dir.join("prompt.txt");
    // A final newline ends the file, not the prompt (llama.cpp's `-f` drops it too).
    std::fs::write(&file, format!("{prompt}\n")).expect("write prompt");
    let common = ["-n", "6", "--temp", "0"];
    let with = |source: &[&str], stdin| {
        let mut a = vec!["run", "-m", model];
        a.extend_from_slice(source);
        a.extend_from_slice(&common);
        let out = llmrt(&a, stdin);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let from_arg = with(&["-p", prompt], None);
    assert!(from_arg.starts_with(prompt), "{from_arg}");
    assert!(from_arg.len() > prompt.len() + 1, "something was generated");
    assert_eq!(with(&["-f", path_str(&file)], None), from_arg);
    assert_eq!(with(&["-f", "-"], Some(&format!("{prompt}\n"))), from_arg);

    // tokenize takes -f too: the file's text, newline included, as given.
    let out = llmrt(
        &["tokenize", "-m", model, "--json", "-f", path_str(&file)],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let direct = llmrt(
        &["tokenize", "-m", model, "--json", &format!("{prompt}\n")],
        None,
    );
    assert_eq!(text(&out.stdout), text(&direct.stdout));

    // -p and -f together are a usage error, and so is neither.
    let both = llmrt(
        &["run", "-m", model, "-p", "x", "-f", path_str(&file)],
        None,
    );
    assert_eq!(both.status.code(), Some(2));
    assert!(text(&both.stderr).contains("cannot be used with"));
    let neither = llmrt(&["run", "-m", model], None);
    assert_eq!(neither.status.code(), Some(2));
}

#[test]
fn files_that_are_not_models_get_clear_messages() {
    let dir = temp_dir("run-not-a-model");
    let cases: &[(&str, &[u8], &str)] = &[
        (
            "notes.txt",
            b"hello, world\n",
            r#"it starts with "hell" (a GGUF file's magic is "GGUF")"#,
        ),
        (
            "page.gguf",
            b"<html><body>404</body></html>",
            r#"it starts with "<htm""#,
        ),
        (
            "archive.gguf",
            b"PK\x03\x04rest",
            r#"it starts with "PK\x03\x04""#,
        ),
        ("empty.gguf", b"", "0 bytes long"),
        ("short.gguf", b"GGU", "3 bytes long"),
    ];
    for (name, bytes, expected) in cases {
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write file");
        let out = llmrt(&["run", "-m", path_str(&path), "-p", "hi"], None);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains("not a GGUF file"), "{name}: {stderr}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(
            stderr.contains(name),
            "{name}: the message names the file: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }

    let out = llmrt(&["run", "-m", path_str(&dir), "-p", "hi"], None);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("is a directory, not a GGUF file"),
        "{stderr}"
    );

    let missing = dir.join("no-such-model.gguf");
    let out = llmrt(&["inspect", path_str(&missing)], None);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("no-such-model.gguf") && stderr.contains("No such file"),
        "{stderr}"
    );
}

#[test]
fn bench_keeps_stdout_for_results() {
    let Some(model) = model_path(MODEL) else {
        return;
    };
    let out = llmrt(
        &[
            "bench",
            "-m",
            path_str(&model),
            "-p",
            "8",
            "-n",
            "2",
            "-r",
            "1",
            "--json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert!(json["pp8"].as_f64().is_some_and(|v| v > 0.0), "{json}");
    assert!(json["tg2"].as_f64().is_some_and(|v| v > 0.0), "{json}");
    // Progress is drawn only on a terminal; piped, stderr stays empty.
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn bench_batch_reports_aggregate_decode_speed_per_batch_size() {
    let Some(model) = model_path(MODEL) else {
        return;
    };
    let args = [
        "bench",
        "-m",
        path_str(&model),
        "--batch",
        "1,3",
        "-p",
        "20",
        "-n",
        "3",
    ];
    let out = llmrt(&[&args[..], &["-r", "1", "--json"]].concat(), None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let rows = json["batched"].as_array().expect("a batched list");
    let batches: Vec<u64> = rows.iter().filter_map(|r| r["batch"].as_u64()).collect();
    assert_eq!(batches, [1, 3], "{json}");
    assert!(
        rows.iter()
            .all(|r| r["tg"].as_f64().is_some_and(|v| v > 0.0)),
        "{json}"
    );
    assert_eq!(
        (json["prompt"].as_u64(), json["steps"].as_u64()),
        (Some(20), Some(3))
    );
    // Without --json: one line in llama.cpp's batched-bench wording.
    let out = llmrt(&[&args[..], &["-r", "1"]].concat(), None);
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("llmrt-batched ") && stdout.contains(" B1=") && stdout.contains(" B3="),
        "{stdout}"
    );
}

/// `inspect`, `run` and `score` on every architecture's synthetic model: the architecture named,
/// llama.cpp's greedy text printed after the prompt, and its perplexity (as `score --json` reports
/// it) equal to the reference's digits.
#[test]
fn inspect_run_and_score_work_on_every_architecture() {
    let root = models::repo_root();
    let sums = std::fs::read_to_string(root.join("tests/reference/synthetic/SHA256SUMS"))
        .expect("SHA256SUMS");
    let names: Vec<&str> = sums
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1)?.strip_suffix("-q8_0.gguf"))
        .collect();
    assert!(names.len() >= 10, "{names:?}");
    let dir = temp_dir("architectures");
    for name in names {
        let file = format!("synthetic/{name}-q8_0");
        let Some(model) = model_path(&format!("{file}.gguf")) else {
            return;
        };
        let reference = models::reference_json(&format!("{file}.json"));
        let m = path_str(&model);
        let arch = reference_arch(&model);
        let out = llmrt(&["inspect", m], None);
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains(&format!("architecture:    {arch}")),
            "{name}: {}",
            text(&out.stdout)
        );

        let greedy = &reference["greedy"][0];
        let prompt = greedy["prompt"].as_str().expect("prompt");
        let n = greedy["ids"].as_array().expect("ids").len().to_string();
        let out = llmrt(
            &["run", "-m", m, "-p", prompt, "-n", &n, "--temp", "0"],
            None,
        );
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        let want = format!("{prompt}{}", greedy["text"].as_str().expect("text"));
        assert!(
            text(&out.stdout).starts_with(&want),
            "{name}: {:?} does not start with {want:?}",
            text(&out.stdout)
        );

        let tf = &reference["teacher_forced"][0];
        let file = dir.join(format!("{name}.txt"));
        std::fs::write(&file, tf["text"].as_str().expect("text")).expect("write text");
        let out = llmrt(&["score", "-m", m, "-f", path_str(&file), "--json"], None);
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        let scored: serde_json::Value = serde_json::from_slice(&out.stdout).expect("score JSON");
        assert_eq!(scored["ids"], tf["ids"], "{name}");
        let (ours, want) = (
            scored["perplexity"].as_f64().expect("perplexity"),
            tf["perplexity"].as_f64().expect("reference perplexity"),
        );
        assert!(
            ((ours - want) / want).abs() < 1e-12,
            "{name}: {ours} vs {want}"
        );
    }
}

/// `general.architecture` of a GGUF file, read with the library.
fn reference_arch(model: &Path) -> String {
    let file = llmrt::gguf::GgufFile::open(model).expect("GGUF");
    file.get_str("general.architecture")
        .expect("architecture")
        .to_string()
}

/// Output piped into a reader that stops early (`| head`) ends the program quietly, without a
/// panic message.
#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    let Some(model) = model_path(MODEL) else {
        return;
    };
    // Far more output than a pipe buffers (64 KiB), so llmrt is still writing when the reader
    // goes away.
    let input = "The quick brown fox jumps over the lazy dog. ".repeat(20_000);
    let dir = std::env::temp_dir().join(format!("llmrt-pipe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let text_file = dir.join("input.txt");
    std::fs::write(&text_file, input).expect("write input");
    let mut child = Command::new(env!("CARGO_BIN_EXE_llmrt"))
        .args([
            "tokenize",
            "-m",
            path_str(&model),
            "-f",
            path_str(&text_file),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start llmrt");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 16];
    std::io::Read::read_exact(&mut stdout, &mut first).expect("some output");
    drop(stdout);
    let out = child.wait_with_output().expect("llmrt ends");
    std::fs::remove_dir_all(&dir).ok();
    let stderr = text(&out.stderr);
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(libc::SIGPIPE),
        "{:?}",
        out.status
    );
}

#[test]
fn run_follows_a_json_schema_a_regex_or_a_grammar() {
    let Some(model) = model_path(MODEL) else {
        return;
    };
    let dir = temp_dir("constraints");
    let schema = dir.join("schema.json");
    std::fs::write(
        &schema,
        r#"{"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"], "additionalProperties": false}"#,
    )
    .expect("write the schema");
    let m = path_str(&model);
    let base = [
        "run",
        "-m",
        m,
        "--no-echo",
        "--temp",
        "0.9",
        "--seed",
        "3",
        "-n",
        "48",
    ];
    let out = llmrt(
        &[
            &base[..],
            &["-p", "A city as JSON:", "--json-schema", path_str(&schema)],
        ]
        .concat(),
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(text(&out.stdout).trim_end()).expect("JSON");
    assert!(
        v["city"].is_string() && v.as_object().map(|o| o.len()) == Some(1),
        "{v}"
    );
    let out = llmrt(
        &[&base[..], &["-p", "The year:", "--regex", "[12][0-9]{3}"]].concat(),
        None,
    );
    let year = text(&out.stdout);
    let year = year.trim_end_matches('\n');
    assert!(
        year.len() == 4 && year.chars().all(|c| c.is_ascii_digit()),
        "{year:?}"
    );
    // A GBNF grammar (llama.cpp's format) and a Lark one; two constraints at once are a usage
    // error.
    for (file, grammar) in [
        (
            "g.gbnf",
            "root ::= answer \".\"\nanswer ::= \"yes\" | \"no\"\n",
        ),
        ("g.lark", "start: answer \".\"\nanswer: \"yes\" | \"no\"\n"),
    ] {
        let path = dir.join(file);
        std::fs::write(&path, grammar).expect("write");
        let args = ["-p", "Yes or no?", "--grammar", path_str(&path)];
        let out = llmrt(&[&base[..], &args[..]].concat(), None);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let answer = text(&out.stdout);
        assert!(
            ["yes.\n", "no.\n"].contains(&answer.as_str()),
            "{file}: {answer:?}"
        );
    }
    let out = llmrt(
        &[
            &base[..],
            &[
                "-p",
                "x",
                "--regex",
                "a",
                "--json-schema",
                path_str(&schema),
            ],
        ]
        .concat(),
        None,
    );
    assert!(!out.status.success());
}

#[test]
fn chat_replies_follow_a_constraint() {
    let Some(model) = model_path(MODEL) else {
        return;
    };
    let out = llmrt(
        &[
            "chat",
            "-m",
            path_str(&model),
            "--temp",
            "0.8",
            "--seed",
            "5",
            "--regex",
            "(red|green|blue)\\.",
        ],
        Some("Give me a colour.\nAnother one.\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let replies: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(replies.len(), 2, "{replies:?}");
    for r in &replies {
        assert!(["red.", "green.", "blue."].contains(&r.as_str()), "{r:?}");
    }
}

#[test]
fn a_prompt_cache_is_reused_across_runs_with_the_same_text() {
    let Some(model) = model_path(MODEL) else {
        return;
    };
    let cache = temp_dir("prompt-cache").join("prompt.session");
    let _ = std::fs::remove_file(&cache);
    let prompt = "Once upon a time, in a small village by the sea, there lived";
    let run = |prompt: &str, cache_args: &[&str]| {
        let mut args = vec![
            "run",
            "-m",
            path_str(&model),
            "-p",
            prompt,
            "-n",
            "16",
            "--temp",
            "0.9",
            "--seed",
            "21",
            "--no-echo",
            "-t",
            "2",
        ];
        args.extend_from_slice(cache_args);
        let out = llmrt(&args, None);
        assert!(out.status.success(), "{}", text(&out.stderr));
        (text(&out.stdout), text(&out.stderr))
    };
    let (plain, _) = run(prompt, &[]);
    let with_cache = ["--prompt-cache", path_str(&cache)];
    let (first, first_log) = run(prompt, &with_cache);
    assert!(cache.is_file());
    let (second, second_log) = run(prompt, &with_cache);
    assert_eq!(first, plain);
    assert_eq!(second, plain);
    let n = first_log
        .split(" prompt tokens")
        .next()
        .unwrap()
        .rsplit('[')
        .next()
        .unwrap();
    assert!(
        first_log.contains(&format!("[{n} prompt tokens (0 reused)")),
        "{first_log}"
    );
    assert!(
        second_log.contains(&format!("[{n} prompt tokens ({n} reused)")),
        "{second_log}"
    );

    // A longer prompt reuses the cached prefix and, read-only, leaves the file as it was.
    let before = std::fs::read(&cache).unwrap();
    let longer = format!("{prompt} an old fisherman");
    let (extended, log) = run(
        &longer,
        &["--prompt-cache", path_str(&cache), "--prompt-cache-ro"],
    );
    assert_eq!(extended, run(&longer, &[]).0);
    assert!(log.contains(&format!("({n} reused)")), "{log}");
    assert_eq!(std::fs::read(&cache).unwrap(), before);

    // A cache from another model is refused with a clear message.
    let Some(other) = model_path("smollm2-135m-instruct-q8_0.gguf") else {
        return;
    };
    assert_fails_saying(
        &[
            "run",
            "-m",
            path_str(&other),
            "-p",
            prompt,
            "-n",
            "2",
            "--prompt-cache",
            path_str(&cache),
        ],
        "saved with another model",
    );
}

#[test]
fn lora_adapters_on_the_command_line_give_llama_cpps_greedy_text() {
    let (Some(model), Some(adapter)) = (
        model_path("smollm2-135m-instruct-q8_0.gguf"),
        model_path("lora/smollm2-135m-lora-f32.gguf"),
    ) else {
        return;
    };
    for (reference, scale_args) in [
        (
            "smollm2-135m-lora-f32-s1.0.json",
            vec!["--lora", path_str(&adapter)],
        ),
        (
            "smollm2-135m-lora-f32-s0.5.json",
            vec!["--lora-scaled", path_str(&adapter), "0.5"],
        ),
    ] {
        let want = models::reference_json(&format!("lora/{reference}"));
        for case in want["greedy"].as_array().expect("greedy") {
            let prompt = case["prompt"].as_str().expect("prompt");
            let n = case["ids"].as_array().expect("ids").len().to_string();
            let mut args = vec![
                "run",
                "-m",
                path_str(&model),
                "-p",
                prompt,
                "-n",
                &n,
                "--temp",
                "0",
                "--no-echo",
            ];
            args.extend(&scale_args);
            let out = llmrt(&args, None);
            assert!(out.status.success(), "{}", text(&out.stderr));
            let printed = text(&out.stdout);
            // `run` ends the text with one newline of its own.
            let printed = printed.strip_suffix('\n').unwrap_or(&printed);
            assert_eq!(printed, case["text"].as_str().unwrap(), "{reference}");
        }
    }
    // A file that is not an adapter of the model is refused, naming it.
    assert_fails_saying(
        &[
            "run",
            "-m",
            path_str(&model),
            "-p",
            "hi",
            "--lora",
            path_str(&model),
        ],
        "not an adapter",
    );
}
