//! Every line of README.md works as written. The test reads the README's code blocks (parsed as
//! CommonMark, so a block is what a Markdown renderer shows as one) and, in the README's order:
//! - compiles each `c` / `cpp` block, which must be a complete program, with gcc / g++ against
//!   `include/llmrt.h` and the release `libllmrt.so`, runs it, and expects exit 0 and text;
//! - runs each `sh` line exactly as written with bash, in a scratch copy of the checkout (so the
//!   files lines write land there, and later lines find them), and checks what the line promises:
//!   exit 0, text or JSON on stdout, the files it names written, the same text twice for
//!   `--temp 0`.
//!
//! Lines not run here are listed in [`skip_reason`], each with its reason. A block in another
//! language, or a command no rule here knows, fails [`every_readme_line_has_a_rule`]: a new
//! README line cannot go untested unnoticed.
//!
//! The lines use `target/release/` and `models/` as a user does after the README's two commands:
//! scripts/test.sh builds the release program and libraries and fetches the models before
//! `cargo test`. A missing model fails under LLMRT_REQUIRE_MODELS=1 (tests/common/models.rs).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use common::models::{model_path, repo_root};

/// The command line program as the README's lines name it.
const LLMRT: &str = "target/release/llmrt";

/// What the README's `llmrt chat` line (interactive on a terminal) gets on its standard input.
const CHAT_INPUT: &str = "What is 2+2?\n";

/// What the README's lines read from the checkout, linked into the scratch copy. `bindings/` is
/// copied instead (see [`scratch_checkout`]); a line reading anything else fails there.
const LINKED: &[&str] = &["include", "examples", "models", "target"];

/// A fenced code block of the README.
struct Block {
    /// The first word of the fence's info string (`sh`, `c`, …); empty for an indented block or a
    /// fence without one.
    lang: String,
    text: String,
    /// The README line where the block starts, for messages.
    line: usize,
}

fn readme_blocks() -> Vec<Block> {
    let path = repo_root().join("README.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let tree = markdown::to_mdast(&text, &markdown::ParseOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut blocks = Vec::new();
    collect_code(&tree, &mut blocks);
    assert!(!blocks.is_empty(), "README.md has no code blocks");
    blocks
}

/// Appends the code blocks under `node`, in document order.
fn collect_code(node: &markdown::mdast::Node, blocks: &mut Vec<Block>) {
    if let markdown::mdast::Node::Code(code) = node {
        blocks.push(Block {
            lang: code.lang.clone().unwrap_or_default(),
            text: code.value.clone(),
            line: code.position.as_ref().map_or(0, |p| p.start.line),
        });
    }
    for child in node.children().into_iter().flatten() {
        collect_code(child, blocks);
    }
}

/// What one shell line must do when it runs.
#[derive(Debug)]
enum Check {
    /// Non-blank text on stdout.
    PrintsText,
    /// stdout is one JSON value.
    PrintsJson,
    /// The file exists afterwards and is not empty (a `.png` is a PNG, a `.json` parses).
    Writes(String),
    /// As `Writes`, and the file did not exist before the line: two lines must not write one
    /// compiler output name.
    WritesNew(String),
    /// Run a second time, the line prints the same stdout.
    Deterministic,
}

/// What the test does with one shell line.
#[derive(Debug)]
enum Plan {
    /// Not run here, for this reason.
    Skip(&'static str),
    /// Run as written in the scratch checkout with this on stdin (none: stdin closed), then
    /// checked.
    Run {
        stdin: Option<&'static str>,
        checks: Vec<Check>,
    },
}

/// Why a command is not run here, if it is not.
fn skip_reason(words: &[&str]) -> Option<&'static str> {
    match words {
        ["scripts/generate.sh", ..] => Some(
            "the README's first command runs `cargo build`, which would wait forever for the \
             build-directory lock this `cargo test` holds; the `llmrt run` lines cover what it \
             then runs",
        ),
        ["scripts/test.sh"] => {
            Some("the README's second command runs this test: running it here would recurse")
        }
        ["cargo", "build", "--release"] => Some(
            "scripts/test.sh builds the release program and libraries before `cargo test`, and \
             cargo here would wait forever for the build-directory lock this `cargo test` holds",
        ),
        [LLMRT, "serve", ..] | ["curl", ..] => Some(
            "a server runs until stopped; tests/server (run by scripts/test.sh) starts `llmrt \
             serve` and sends it these requests and more through the openai client",
        ),
        ["scripts/build-wheel.sh"] => Some(
            "scripts/test-wheel.sh, which scripts/test.sh runs, builds the wheel and installs it \
             into a fresh venv outside the checkout, as this line does",
        ),
        _ => None,
    }
}

/// The word after `flag` in `words`.
fn value_of(words: &[&str], flag: &str) -> Option<String> {
    let at = words.iter().position(|w| *w == flag)?;
    words.get(at + 1).map(|w| w.to_string())
}

/// How one command of a line (its words between `&&` and `|`) is checked, or why no rule knows
/// it.
fn command_checks(words: &[&str]) -> Result<Vec<Check>, String> {
    use Check::*;
    Ok(match words {
        [LLMRT, "explain", ..] => {
            let mut checks = vec![PrintsText];
            for flag in ["--html", "--png", "--json"] {
                checks.extend(value_of(words, flag).map(Writes));
            }
            checks
        }
        [LLMRT, "run", ..] => {
            let mut checks = vec![PrintsText];
            if value_of(words, "--temp").as_deref() == Some("0") {
                checks.push(Deterministic);
            }
            checks
        }
        [LLMRT, "chat" | "tokenize" | "inspect" | "score" | "bench", ..] => {
            vec![if words.contains(&"--json") {
                PrintsJson
            } else {
                PrintsText
            }]
        }
        [LLMRT, "quantize", _, output, _] => vec![Writes(output.to_string())],
        ["./generate" | "./generate-static" | "./chat", ..] => vec![PrintsText],
        ["gcc" | "g++", ..] => {
            let output = value_of(words, "-o").ok_or("a compiler line without `-o`")?;
            vec![WritesNew(output)]
        }
        ["echo", .., ">", file] => vec![Writes(file.to_string())],
        // The input of a pipe (`echo … | ./chat …`).
        ["echo", _] => vec![],
        ["python3", "-m", "venv", dir] => vec![Writes(format!("{dir}/bin/python"))],
        [pip, "install", ..] if pip.ends_with("/bin/pip") => vec![],
        [python, "-c", _] if python.ends_with("/bin/python") => vec![PrintsText],
        _ => return Err(format!("no rule runs `{}`", words.join(" "))),
    })
}

/// The plan for one shell line, or why there is none.
fn plan(line: &str) -> Result<Plan, String> {
    if line.ends_with('\\') {
        return Err("continued lines are not supported: write one command per line".into());
    }
    let words = shlex::split(line).ok_or("unbalanced quotes")?;
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let commands: Vec<&[&str]> = words.split(|w| matches!(*w, "&&" | "|")).collect();
    if let Some(reason) = commands.iter().find_map(|c| skip_reason(c)) {
        return Ok(Plan::Skip(reason));
    }
    let mut checks = Vec::new();
    for command in &commands {
        checks.extend(command_checks(command)?);
    }
    // `llmrt chat` is interactive on a terminal; a message on a pipe is what a user would type.
    let stdin = match commands.first() {
        Some([LLMRT, "chat", ..]) if !words.contains(&"|") => Some(CHAT_INPUT),
        _ => None,
    };
    Ok(Plan::Run { stdin, checks })
}

/// One step of the README: a program to compile and run, or a shell line.
enum Step<'a> {
    Program(&'a Block),
    Shell {
        text: &'a str,
        line: usize,
        plan: Plan,
    },
}

/// The README's steps in order, or every block and line that no rule covers.
fn steps(blocks: &[Block]) -> Result<Vec<Step<'_>>, Vec<String>> {
    let mut steps = Vec::new();
    let mut errors = Vec::new();
    for block in blocks {
        match block.lang.as_str() {
            "c" | "cpp" if block.text.contains("int main(") => steps.push(Step::Program(block)),
            "c" | "cpp" => errors.push(format!(
                "README.md:{}: the {} block is not a complete program (no `int main(`)",
                block.line, block.lang
            )),
            "sh" => {
                for (i, text) in block.text.lines().enumerate() {
                    // The fence is the block's first line.
                    let line = block.line + 1 + i;
                    if text.trim().is_empty() {
                        continue;
                    }
                    match plan(text) {
                        Ok(plan) => steps.push(Step::Shell { text, line, plan }),
                        Err(why) => errors.push(format!("README.md:{line}: `{text}`: {why}")),
                    }
                }
            }
            "" => errors.push(format!(
                "README.md:{}: a code block without a language, which this test cannot run",
                block.line
            )),
            lang => errors.push(format!(
                "README.md:{}: a code block in language `{lang}`, which this test cannot run",
                block.line
            )),
        }
    }
    if errors.is_empty() {
        Ok(steps)
    } else {
        Err(errors)
    }
}

#[test]
fn every_readme_line_has_a_rule() {
    let blocks = readme_blocks();
    let steps = steps(&blocks).unwrap_or_else(|errors| {
        panic!(
            "README lines without a rule in tests/readme.rs:\n{}",
            errors.join("\n")
        )
    });
    let programs = steps
        .iter()
        .filter(|s| matches!(s, Step::Program(_)))
        .count();
    let runs = steps
        .iter()
        .filter(|s| {
            matches!(
                s,
                Step::Shell {
                    plan: Plan::Run { .. },
                    ..
                }
            )
        })
        .count();
    assert!(programs > 0, "the README shows no C program");
    assert!(runs > 0, "the README shows no shell line to run");
}

/// The `models/NAME.gguf` files `text` names.
fn models_named(text: &str) -> Vec<String> {
    text.match_indices("models/")
        .filter_map(|(at, _)| {
            let rest = &text[at + "models/".len()..];
            let end = rest.find(|c: char| c.is_whitespace() || c == '"' || c == '\'')?;
            rest[..end]
                .ends_with(".gguf")
                .then(|| rest[..end].to_string())
        })
        .collect()
}

/// A scratch copy of the checkout: [`LINKED`] as symbolic links, `bindings/` copied because pip
/// builds a local package inside its source directory (build/, *.egg-info) and must not write
/// into the checkout.
fn scratch_checkout(root: &Path) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("llmrt-readme.")
        .tempdir()
        .expect("a scratch directory");
    for name in LINKED {
        std::os::unix::fs::symlink(root.join(name), dir.path().join(name))
            .unwrap_or_else(|e| panic!("link {name} into the scratch checkout: {e}"));
    }
    copy_sources(&root.join("bindings"), &dir.path().join("bindings"));
    dir
}

/// Copies the tree `from` to `to`, leaving out build products (build/, *.egg-info, __pycache__).
fn copy_sources(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    let entries = std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if name_str == "build" || name_str == "__pycache__" || name_str.ends_with(".egg-info") {
            continue;
        }
        let (source, target) = (entry.path(), to.join(&name));
        if source.is_dir() {
            copy_sources(&source, &target);
        } else {
            std::fs::copy(&source, &target)
                .unwrap_or_else(|e| panic!("copy {}: {e}", source.display()));
        }
    }
}

/// stdout and stderr of a finished command, for a failure message.
fn describe(output: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `command` in `dir` with `stdin` on its standard input (none: closed), without the
/// `LLMRT_LIB` that scripts/test.sh may set, so that the Python line finds the library as the
/// README says it does.
fn run(command: &mut Command, dir: &Path, stdin: Option<&str>) -> Output {
    command
        .current_dir(dir)
        .env_remove("LLMRT_LIB")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .unwrap_or_else(|e| panic!("write the input of {command:?}: {e}"));
        // Dropping the pipe closes it: the program sees the end of its input.
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait for {command:?}: {e}"))
}

fn bash(line: &str, dir: &Path, stdin: Option<&str>) -> Output {
    run(
        Command::new("bash").args(["-o", "pipefail", "-c", line]),
        dir,
        stdin,
    )
}

/// Checks a file a line wrote: there, not empty, and of the kind its extension says.
fn check_written(dir: &Path, name: &str, at: &str) {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{at}: {name} not written: {e}"));
    assert!(!bytes.is_empty(), "{at}: {name} is empty");
    match path.extension().and_then(|e| e.to_str()) {
        Some("png") => assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{at}: {name} is no PNG"
        ),
        Some("json") => {
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .unwrap_or_else(|e| panic!("{at}: {name} is no JSON: {e}"));
        }
        _ => {}
    }
}

fn run_shell(text: &str, at: &str, dir: &Path, stdin: Option<&str>, checks: &[Check]) {
    for check in checks {
        if let Check::WritesNew(name) = check {
            assert!(
                !dir.join(name).exists(),
                "{at}: `{text}` writes {name}, which an earlier line wrote"
            );
        }
    }
    let output = bash(text, dir, stdin);
    assert!(
        output.status.success(),
        "{at}: `{text}` failed: {}",
        describe(&output)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    for check in checks {
        match check {
            Check::PrintsText => assert!(
                !stdout.trim().is_empty(),
                "{at}: `{text}` printed nothing: {}",
                describe(&output)
            ),
            Check::PrintsJson => {
                serde_json::from_str::<serde_json::Value>(&stdout)
                    .unwrap_or_else(|e| panic!("{at}: `{text}` printed no JSON ({e}): {stdout}"));
            }
            Check::Writes(name) | Check::WritesNew(name) => check_written(dir, name, at),
            Check::Deterministic => {
                let again = bash(text, dir, stdin);
                assert!(
                    again.status.success(),
                    "{at}: `{text}` failed the second time"
                );
                assert_eq!(
                    stdout,
                    String::from_utf8_lossy(&again.stdout),
                    "{at}: `{text}` printed another text the second time"
                );
            }
        }
    }
}

/// Compiles the program `block` against the header and the release shared library and runs it
/// in `dir`.
fn run_program(block: &Block, at: &str, root: &Path, dir: &Path) {
    let (compiler, standard) = match block.lang.as_str() {
        "c" => ("gcc", "-std=c11"),
        _ => ("g++", "-std=c++17"),
    };
    let source = dir.join(format!("readme-{}.{}", block.line, block.lang));
    let program = dir.join(format!("readme-{}", block.line));
    std::fs::write(&source, &block.text).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
    let lib = root.join("target/release");
    let mut compile = Command::new(compiler);
    compile
        .args([standard, "-O1", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(root.join("include"))
        .arg(&source)
        .arg("-L")
        .arg(&lib)
        .arg("-lllmrt")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-o")
        .arg(&program);
    let built = run(&mut compile, dir, None);
    assert!(
        built.status.success(),
        "{at}: the {} block does not compile: {}",
        block.lang,
        describe(&built)
    );
    let output = run(&mut Command::new(&program), dir, None);
    assert!(
        output.status.success(),
        "{at}: the {} program failed: {}",
        block.lang,
        describe(&output)
    );
    assert!(
        !String::from_utf8_lossy(&output.stdout).trim().is_empty(),
        "{at}: the {} program printed nothing: {}",
        block.lang,
        describe(&output)
    );
}

#[test]
fn every_readme_line_works_as_written() {
    let root = repo_root();
    let blocks = readme_blocks();
    let Ok(steps) = steps(&blocks) else {
        panic!("README lines without a rule: see every_readme_line_has_a_rule");
    };
    let release: PathBuf = root.join("target/release");
    for file in ["llmrt", "libllmrt.so", "libllmrt.a"] {
        assert!(
            release.join(file).is_file(),
            "{} is missing: the README's lines use the release build; run \
             `cargo build --release` first (scripts/test.sh does)",
            release.join(file).display()
        );
    }
    let mut models: Vec<String> = blocks.iter().flat_map(|b| models_named(&b.text)).collect();
    models.sort();
    models.dedup();
    if !models.iter().all(|m| model_path(m).is_some()) {
        return;
    }

    let scratch = scratch_checkout(&root);
    let dir = scratch.path();
    for step in &steps {
        let started = Instant::now();
        let at = match step {
            Step::Program(block) => {
                let at = format!("README.md:{}", block.line);
                run_program(block, &at, &root, dir);
                at
            }
            Step::Shell { text, line, plan } => {
                let at = format!("README.md:{line}");
                match plan {
                    Plan::Skip(reason) => {
                        eprintln!("{at}: not run: `{text}`: {reason}");
                        continue;
                    }
                    Plan::Run { stdin, checks } => run_shell(text, &at, dir, *stdin, checks),
                }
                at
            }
        };
        eprintln!("{at}: ok in {:.1} s", started.elapsed().as_secs_f64());
    }
}
