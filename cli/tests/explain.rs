//! `llmrt explain` on SmolLM2: the token strip and step tables it prints (the first greedy
//! choice is llama.cpp's), and the heatmap PNG and HTML page it writes.

use std::path::Path;

#[path = "../../tests/common/models.rs"]
mod models;
use models::{model_path, reference_json};
#[path = "../../tests/common/heatmap.rs"]
mod heatmap;
use heatmap::assert_heatmap;

const MODEL: &str = "smollm2-135m-instruct-q4_1";
/// The first greedy case of the reference file.
const REF_PROMPT: &str = "the first president of US is";

#[test]
fn cli_prints_steps_and_writes_png_and_html() {
    let Some(model) = model_path(&format!("{MODEL}.gguf")) else {
        return;
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("explain-cli");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (png_path, html_path) = (dir.join("a.png"), dir.join("a.html"));
    let _ = std::fs::remove_file(&png_path);
    let _ = std::fs::remove_file(&html_path);
    let n_steps = 4;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_llmrt"))
        .arg("explain")
        .arg("-m")
        .arg(&model)
        .args(["-p", REF_PROMPT, "-n", &n_steps.to_string(), "--top-k", "3"])
        .arg("--png")
        .arg(&png_path)
        .arg("--html")
        .arg(&html_path)
        .output()
        .expect("run llmrt");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "llmrt explain failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference = reference_json(&format!("{MODEL}.json"));
    assert_eq!(reference["greedy"][0]["prompt"], REF_PROMPT);
    let first_id = &reference["greedy"][0]["ids"][0];
    assert!(stdout.contains("808:·first"), "token strip:\n{stdout}");
    assert!(
        stdout.contains(&format!("step {n_steps}:")),
        "step tables:\n{stdout}"
    );
    assert!(
        !stdout.contains(&format!("step {}:", n_steps + 1)),
        "{stdout}"
    );
    assert!(stdout.contains('█'), "probability bars:\n{stdout}");
    assert!(
        stdout.contains(&format!("step 1: {first_id}:")),
        "greedy first token:\n{stdout}"
    );
    let n = 6 + n_steps - 1;
    let png_bytes = std::fs::read(&png_path).expect("PNG written");
    let (png, _) = assert_heatmap(&png_bytes, n);
    let title = &png.text["Title"];
    assert!(
        title.contains("layer") && title.contains("heads") && title.contains("135M"),
        "{title}"
    );
    let html = std::fs::read_to_string(&html_path).expect("HTML written");
    assert!(
        html.contains(title.as_str()),
        "the HTML page shows the same title"
    );
    assert_eq!(html.matches("<table class=\"step\">").count(), n_steps);
}
