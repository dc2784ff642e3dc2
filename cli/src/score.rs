//! `llmrt score`: teacher-forced scoring of a text file (perplexity, and per-position top-k
//! logits in the shape of the reference files' `teacher_forced`).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::common::ModelArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text file to score.
    #[arg(short = 'f', long = "file")]
    pub file: std::path::PathBuf,
    /// Highest logits to report per position (with --json).
    #[arg(long, default_value_t = 10)]
    pub top_k: usize,
    /// Most tokens scored (the reference uses the first 1024).
    #[arg(long, default_value_t = 1024)]
    pub max_tokens: usize,
    /// Print ids, per-position top-k `[id, logit]` pairs, logsumexp and perplexity as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> llmrt::Result<()> {
    let text = crate::common::read_text(&args.file)?;
    let model = std::sync::Arc::new(llmrt::Model::load(&args.model.model, &Default::default())?);
    let mut ids = model.tokenizer().encode(&text, true, false)?;
    ids.truncate(args.max_tokens);
    let mut model_args = args.model.clone();
    if model_args.ctx_size == 0 {
        model_args.ctx_size = ids.len().max(1);
    }
    let mut session = model_args.session(model)?;
    if ids.len() < 2 {
        return Err(llmrt::Error::InvalidArgument(
            "the text needs at least two tokens to score".into(),
        ));
    }

    let progress = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(ids.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} tokens {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut top = Vec::with_capacity(ids.len());
    let mut lse = Vec::with_capacity(ids.len());
    let mut nll_sum = 0.0f64;
    session.eval_all(&ids, &mut |i, logits| {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let logsumexp = max
            + logits
                .iter()
                .map(|&l| (l as f64 - max).exp())
                .sum::<f64>()
                .ln();
        if i + 1 < ids.len() {
            nll_sum += logsumexp - logits[ids[i + 1] as usize] as f64;
        }
        lse.push(logsumexp);
        if args.json {
            let mut order: Vec<u32> = (0..logits.len() as u32).collect();
            let k = args.top_k.min(order.len());
            if k > 0 {
                order.select_nth_unstable_by(k - 1, |&a, &b| {
                    logits[b as usize].total_cmp(&logits[a as usize])
                });
                order.truncate(k);
                order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
            }
            top.push(
                order
                    .into_iter()
                    .map(|id| json!([id, logits[id as usize]]))
                    .collect::<Vec<_>>(),
            );
        }
        progress.inc(1);
    })?;
    progress.finish_and_clear();
    let mean_nll = nll_sum / (ids.len() - 1) as f64;
    let perplexity = mean_nll.exp();
    if args.json {
        let out = json!({
            "ids": ids,
            "top10": top,
            "logsumexp": lse,
            "mean_nll": mean_nll,
            "perplexity": perplexity,
        });
        println!("{out}");
    } else {
        println!(
            "{} tokens, mean NLL {mean_nll:.4}, perplexity {perplexity:.4}",
            ids.len()
        );
    }
    Ok(())
}
