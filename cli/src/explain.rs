//! `llmrt explain -m MODEL -p PROMPT [-n N] [--top-k K] [--layer L] [--head H] [--html OUT.html]
//! [--png OUT.png] [--json OUT.json]`: how the model produces its continuation — the prompt's
//! tokens, the candidates at each step with their probabilities, and an attention heatmap.

use std::path::Path;

use llmrt::explain::{explain, visible_piece, ExplainParams, Explanation};
use llmrt::sample::SamplerParams;

use crate::common::{ModelArgs, PromptArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub prompt: PromptArgs,
    /// Most tokens to generate.
    #[arg(short = 'n', long = "n-predict", default_value_t = 8)]
    pub n_predict: usize,
    /// Alternatives shown per step.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// The layer whose attention to show (default: the last).
    #[arg(long)]
    pub layer: Option<usize>,
    /// The attention head to show (default: the mean over heads).
    #[arg(long)]
    pub head: Option<usize>,
    /// Sampling temperature (0 = greedy: always the most likely token).
    #[arg(long = "temp", default_value_t = 0.0)]
    pub temperature: f32,
    /// Random seed when sampling at a temperature.
    #[arg(long, default_value_t = llmrt::sample::DEFAULT_SEED)]
    pub seed: u64,
    /// Write a self-contained HTML page (tokens, step tables, heatmap) here.
    #[arg(long)]
    pub html: Option<std::path::PathBuf>,
    /// Write the attention heatmap as a PNG image here.
    #[arg(long)]
    pub png: Option<std::path::PathBuf>,
    /// Write everything recorded as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

/// Characters of the widest probability bar on the terminal.
const BAR_WIDTH: usize = 30;
/// Aimed-at side of the PNG heatmap, in pixels.
const PNG_SIDE: usize = 640;
/// Terminal columns the token strip wraps at.
const STRIP_COLUMNS: usize = 100;

pub fn run(args: Args) -> llmrt::Result<()> {
    let mut session = args.model.open()?;
    let sampler = if args.temperature <= 0.0 {
        SamplerParams::greedy()
    } else {
        SamplerParams {
            temperature: args.temperature,
            seed: args.seed,
            ..SamplerParams::default()
        }
    };
    let params = ExplainParams {
        n_steps: args.n_predict,
        top_k: args.top_k,
        layer: args.layer,
        head: args.head,
        sampler,
    };
    let prompt = args.prompt.text()?;
    let ex = explain(&mut session, &prompt, &params)?;
    print_report(&prompt, &ex);

    let title = args
        .model
        .model
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    if let Some(path) = &args.png {
        let n = ex.attention.len().max(1);
        let cell = (PNG_SIDE / n).clamp(1, 48);
        write(path, &ex.heatmap_png(cell)?)?;
        eprintln!(
            "wrote {} ({n}×{n} tokens, {cell}-pixel cells)",
            path.display()
        );
    }
    if let Some(path) = &args.html {
        write(path, ex.to_html(&title)?.as_bytes())?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&ex)
            .map_err(|e| llmrt::Error::InvalidArgument(format!("cannot write JSON: {e}")))?;
        write(path, json.as_bytes())?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> llmrt::Result<()> {
    std::fs::write(path, bytes).map_err(|source| llmrt::Error::Io {
        path: path.display().to_string(),
        source,
    })
}

fn print_report(prompt: &str, ex: &Explanation) {
    println!(
        "prompt: {} tokens (id:piece, · = space, ↵ = newline)",
        ex.prompt.len()
    );
    let mut line = String::new();
    let mut width = 0;
    for t in &ex.prompt {
        let cell = format!("{}:{}", t.id, visible_piece(&t.piece));
        let cell_width = cell.chars().count() + 1;
        if width > 0 && width + cell_width > STRIP_COLUMNS {
            println!("  {}", line.trim_end());
            line.clear();
            width = 0;
        }
        line.push_str(&cell);
        line.push(' ');
        width += cell_width;
    }
    if !line.is_empty() {
        println!("  {}", line.trim_end());
    }

    let piece_width = ex
        .steps
        .iter()
        .flat_map(|s| &s.candidates)
        .map(|c| visible_piece(&c.piece).chars().count())
        .max()
        .unwrap_or(0)
        .clamp(6, 24);
    for (k, s) in ex.steps.iter().enumerate() {
        println!();
        println!(
            "step {}: {}:{}  p={:.4}  logit={:.3}{}",
            k + 1,
            s.chosen.id,
            visible_piece(&s.chosen.piece),
            s.prob,
            s.logit,
            if s.end_of_generation {
                "  (end of generation)"
            } else {
                ""
            }
        );
        for c in &s.candidates {
            let mark = if c.id == s.chosen.id { '>' } else { ' ' };
            let piece = visible_piece(&c.piece);
            let pad = piece_width.saturating_sub(piece.chars().count());
            println!(
                "  {mark} {:>6} {piece}{:pad$} {:>6.4} {:>8.3}  {}",
                c.id,
                "",
                c.prob,
                c.logit,
                bar(c.prob)
            );
        }
    }
    println!();
    println!(
        "text: {}",
        format!("{prompt}{}", ex.text).replace('\n', "↵")
    );
    let head = match ex.head {
        Some(h) => format!("head {h}"),
        None => format!("mean of {} heads", ex.n_head),
    };
    println!(
        "attention: layer {} of {}, {head}, {} × {} tokens",
        ex.layer,
        ex.n_layer,
        ex.attention.len(),
        ex.attention.len()
    );
}

/// A bar of `BAR_WIDTH` × `p` characters, in eighths of a block.
fn bar(p: f32) -> String {
    const PARTIAL: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    let eighths = (p.clamp(0.0, 1.0) * (BAR_WIDTH * 8) as f32).round() as usize;
    let mut s = "█".repeat(eighths / 8);
    let rest = eighths % 8;
    if rest > 0 {
        s.push(PARTIAL[rest]);
    }
    s
}
