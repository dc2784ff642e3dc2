//! Embeddings: one vector for a text, its final hidden states (after the output norm) pooled
//! as llama.cpp pools them for `llama_get_embeddings_seq`, then scaled to unit length as
//! llama-cpp-python's `embed(normalize=True)` does.

use crate::session::Session;
use crate::{Error, Result};

/// How a text's per-token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The mean over the tokens.
    Mean,
    /// The first token's state (BERT's `[CLS]`).
    First,
    /// The last token's state (what a causal model has read the whole text by).
    Last,
}

impl Pooling {
    /// The pooling the file names in `{arch}.pooling_type` (llama.cpp's numbering: 1 mean,
    /// 2 cls, 3 last); mean when it names none, as generative models' files do.
    pub fn of_file(file: &crate::gguf::GgufFile) -> Result<Pooling> {
        let arch = file.get_str("general.architecture")?;
        match file.opt_u32(&format!("{arch}.pooling_type"))? {
            None | Some(0) | Some(1) => Ok(Pooling::Mean),
            Some(2) => Ok(Pooling::First),
            Some(3) => Ok(Pooling::Last),
            Some(other) => Err(Error::InvalidArgument(format!(
                "{arch}.pooling_type {other} is not a pooling llmrt implements (1 mean, 2 cls, 3 last)"
            ))),
        }
    }

    /// The name OpenAI-style APIs and llama.cpp use.
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::First => "cls",
            Pooling::Last => "last",
        }
    }
}

/// The unit-length embedding of `tokens`, evaluated from an empty context in `session` (which
/// is reset before and after: an embedding never sees another text).
pub fn embed(session: &mut Session, tokens: &[u32], pooling: Pooling) -> Result<Vec<f32>> {
    if tokens.is_empty() {
        return Err(Error::InvalidArgument("the text has no tokens".into()));
    }
    let d = session.model().config().n_embd;
    let n = tokens.len();
    let mut pooled = vec![0.0f32; d];
    session.reset();
    let result = session.eval_hidden(tokens, &mut |t, state| {
        let take = match pooling {
            Pooling::Mean => true,
            Pooling::First => t == 0,
            Pooling::Last => t + 1 == n,
        };
        if take {
            for (p, &x) in pooled.iter_mut().zip(state) {
                *p += x;
            }
        }
    });
    session.reset();
    result?;
    if pooling == Pooling::Mean {
        let inv = 1.0 / n as f32;
        pooled.iter_mut().for_each(|p| *p *= inv);
    }
    let norm = pooled
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        pooled
            .iter_mut()
            .for_each(|p| *p = (f64::from(*p) / norm) as f32);
    }
    Ok(pooled)
}
