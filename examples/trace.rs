//! Dumps the forward pass's intermediate tensors for one batch of token ids, to compare with
//! llama.cpp's (`scripts/compare-llamacpp-trace.py` makes its side and diffs the two).
//!
//! `cargo run --release --features trace --example trace -- MODEL OUTDIR ID,ID,...`
//! writes `OUTDIR/<name>-<layer>#<k>.f32` (raw little-endian f32, k = occurrence) and
//! `OUTDIR/logits.f32` (every position's logits).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use llmrt::model::trace;
use llmrt::{Model, ModelParams, Session, SessionParams};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        return Err("usage: trace MODEL OUTDIR ID,ID,...".into());
    }
    let out = std::path::PathBuf::from(&args[2]);
    std::fs::create_dir_all(&out)?;
    let ids: Vec<u32> = args[3]
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let dir = out.clone();
    trace::set_hook(Some(Box::new(move |name, layer, values| {
        let base = if layer == usize::MAX {
            name.to_string()
        } else {
            format!("{name}-{layer}")
        };
        let k = {
            let mut seen = seen.lock().expect("trace counter");
            let k = seen.entry(base.clone()).or_insert(0);
            *k += 1;
            *k - 1
        };
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(dir.join(format!("{base}#{k}.f32")), bytes).expect("write trace");
    })));
    let model = Arc::new(Model::load(&args[1], &ModelParams::default())?);
    let mut session = Session::new(
        model,
        &SessionParams {
            n_ctx: 2048,
            ..Default::default()
        },
    )?;
    let mut logits = Vec::new();
    session.eval_all(&ids, &mut |_, l| logits.extend_from_slice(l))?;
    let bytes: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(out.join("logits.f32"), bytes)?;
    Ok(())
}
