//! `llmrt bench`: llama-bench-like figures. pp = prompt tokens/s for one batch of P tokens,
//! tg = tokens/s for N single-token steps, after a warm-up, median of the repetitions; plus load
//! time and peak resident memory. With `--batch`, llama-batched-bench's figure instead: B
//! sequences, each after its own P-token prompt, decoded together for N steps of one forward
//! pass each; aggregate tokens/s = B × N / seconds.

use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use llmrt::{Engine, EngineParams, Model, ModelParams, Session, SessionParams};
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The GGUF model file.
    #[arg(short, long)]
    pub model: std::path::PathBuf,
    /// Prompt tokens processed in one batch.
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    pub n_prompt: usize,
    /// Tokens generated one at a time.
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    pub n_gen: usize,
    /// Worker threads (default: the number of cores).
    #[arg(short = 't', long, default_value_t = 0)]
    pub threads: usize,
    /// Repetitions (the median is reported).
    #[arg(short = 'r', long, default_value_t = 3)]
    pub reps: usize,
    /// Measure batched decoding instead: for each B in the list, B sequences decoded together
    /// (each after its own -p prompt, for -n steps).
    #[arg(long, value_delimiter = ',', value_name = "B,...")]
    pub batch: Vec<usize>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Peak resident set size in bytes (Linux `VmHWM`), if known.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Progress on stderr, drawn only on a terminal and never with --json: results go to stdout.
fn progress_bar(json: bool, len: usize) -> ProgressBar {
    let target = if json {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let progress = ProgressBar::with_draw_target(Some(len as u64), target);
    progress.set_style(
        ProgressStyle::with_template("{spinner} [{pos}/{len}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    progress
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Aggregate decode tokens/s of B sequences stepped together, for each B of `args.batch`: the
/// measurement of llama.cpp's batched bench (`llcpp-bench.sh --batched`), with its token
/// streams.
fn run_batched(args: &Args, model: Arc<Model>, load_seconds: f64) -> llmrt::Result<()> {
    let n_vocab = model.config().n_vocab as u64;
    let (n_prompt, n_gen) = (args.n_prompt.max(1), args.n_gen.max(1));
    let reps = args.reps.max(1);
    let progress = progress_bar(args.json, args.batch.len() * (reps + 1));
    let mut rows = Vec::new();
    let (mut threads, mut simd) = (0, "");
    for &b in &args.batch {
        let b = b.max(1);
        let n_ctx = n_prompt + n_gen + 16;
        let mut engine = Engine::new(
            model.clone(),
            &EngineParams {
                n_threads: args.threads,
                n_ctx,
                pool_positions: b * n_ctx,
                n_batch: n_prompt,
                max_decode: b,
                step_tokens: n_prompt.max(b).max(16),
                ..EngineParams::default()
            },
        )?;
        (threads, simd) = (engine.n_threads(), engine.simd().name());
        let mut run = || -> llmrt::Result<f64> {
            let seqs: Vec<_> = (0..b as u64)
                .map(|s| {
                    let id = engine.add();
                    let prompt: Vec<u32> = (0..n_prompt as u64)
                        .map(|i| ((i * 7919 + 13 + s * 104729) % n_vocab) as u32)
                        .collect();
                    engine.feed(id, &prompt).map(|()| id)
                })
                .collect::<llmrt::Result<_>>()?;
            engine.run()?;
            let mut tokens: Vec<u64> = (1..=b as u64).collect();
            let t = Instant::now();
            for _ in 0..n_gen {
                for (&id, tok) in seqs.iter().zip(&mut tokens) {
                    engine.feed(id, &[*tok as u32])?;
                    *tok = (*tok * 31 + 7) % n_vocab;
                }
                engine.step()?;
            }
            let seconds = t.elapsed().as_secs_f64();
            for &id in &seqs {
                if let Some(e) = engine.take_error(id)? {
                    return Err(e);
                }
                engine.remove(id)?;
            }
            Ok((b * n_gen) as f64 / seconds)
        };
        let mut rates = Vec::new();
        for rep in 0..=reps {
            progress.set_message(match rep {
                0 => format!("B={b} warm-up"),
                _ => format!("B={b} repetition {rep}/{reps}"),
            });
            progress.tick();
            let rate = run()?;
            if rep > 0 {
                rates.push(rate);
            }
            progress.inc(1);
        }
        rows.push((b, median(rates)));
    }
    progress.finish_and_clear();
    let file = file_name(&args.model);
    let rss = peak_rss_bytes();
    if args.json {
        let batched: Vec<_> = rows
            .iter()
            .map(|&(b, tg)| json!({ "batch": b, "tg": tg }))
            .collect();
        let out = json!({
            "model": file,
            "threads": threads,
            "simd": simd,
            "load_s": load_seconds,
            "prompt": n_prompt,
            "steps": n_gen,
            "batched": batched,
            "peak_rss_bytes": rss,
        });
        println!("{out}");
    } else {
        let figures: Vec<String> = rows.iter().map(|(b, tg)| format!("B{b}={tg:.1}")).collect();
        println!(
            "llmrt-batched {file} threads={threads} simd={simd} prompt={n_prompt} steps={n_gen} aggregate tok/s: {}",
            figures.join(" ")
        );
    }
    Ok(())
}

pub fn run(args: Args) -> llmrt::Result<()> {
    let started = Instant::now();
    let model = Arc::new(Model::load(&args.model, &ModelParams::default())?);
    if !args.batch.is_empty() {
        return run_batched(&args, model, started.elapsed().as_secs_f64());
    }
    let params = SessionParams {
        n_ctx: args.n_prompt + args.n_gen + 16,
        n_threads: args.threads,
        n_batch: args.n_prompt.max(1),
        ..SessionParams::default()
    };
    let mut session = Session::new(model.clone(), &params)?;
    let load_seconds = started.elapsed().as_secs_f64();
    let n_vocab = model.config().n_vocab as u64;
    // The same token streams llama.cpp's bench script uses, so both do identical work.
    let prompt: Vec<u32> = (0..args.n_prompt as u64)
        .map(|i| ((i * 7919 + 13) % n_vocab) as u32)
        .collect();

    let run_pp = |session: &mut Session| -> llmrt::Result<f64> {
        session.reset();
        let t = Instant::now();
        session.eval(&prompt)?;
        Ok(prompt.len() as f64 / t.elapsed().as_secs_f64())
    };
    let run_tg = |session: &mut Session| -> llmrt::Result<f64> {
        session.reset();
        let mut tok = 1u64;
        let t = Instant::now();
        for _ in 0..args.n_gen {
            session.eval(&[tok as u32])?;
            tok = (tok * 31 + 7) % n_vocab;
        }
        Ok(args.n_gen as f64 / t.elapsed().as_secs_f64())
    };
    let reps = args.reps.max(1);
    let tests = usize::from(args.n_prompt > 0) + usize::from(args.n_gen > 0);
    let progress = progress_bar(args.json, tests * (reps + 1));
    // A warm-up run pages in the weights and sizes the buffers; then `reps` measured runs.
    let measure = |test: String,
                   session: &mut Session,
                   run: &dyn Fn(&mut Session) -> llmrt::Result<f64>|
     -> llmrt::Result<Vec<f64>> {
        let mut rates = Vec::new();
        for rep in 0..=reps {
            progress.set_message(match rep {
                0 => format!("{test} warm-up"),
                _ => format!("{test} repetition {rep}/{reps}"),
            });
            progress.tick();
            let rate = run(session)?;
            if rep > 0 {
                rates.push(rate);
            }
            progress.inc(1);
        }
        Ok(rates)
    };
    let pp = match args.n_prompt {
        0 => Vec::new(),
        n => measure(format!("pp{n}"), &mut session, &run_pp)?,
    };
    let tg = match args.n_gen {
        0 => Vec::new(),
        n => measure(format!("tg{n}"), &mut session, &run_tg)?,
    };
    progress.finish_and_clear();
    let (pp, tg) = (median(pp), median(tg));
    let rss = peak_rss_bytes();
    let file = file_name(&args.model);
    if args.json {
        let out = json!({
            "model": file,
            "threads": session.n_threads(),
            "simd": session.simd().name(),
            "load_s": load_seconds,
            format!("pp{}", args.n_prompt): pp,
            format!("tg{}", args.n_gen): tg,
            "peak_rss_bytes": rss,
        });
        println!("{out}");
    } else {
        println!(
            "llmrt {file} threads={} simd={} load_s={load_seconds:.3} pp{}={pp:.1} tok/s tg{}={tg:.1} tok/s peak_rss={}",
            session.n_threads(),
            session.simd().name(),
            args.n_prompt,
            args.n_gen,
            rss.map_or("?".to_string(), |b| format!("{:.0}MiB", b as f64 / 1048576.0))
        );
    }
    Ok(())
}
