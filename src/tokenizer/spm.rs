//! SentencePiece-style BPE (`tokenizer.ggml.model = "llama"`), as llama.cpp's
//! `llm_tokenizer_spm` runs it: start from single characters, repeatedly merge the adjacent pair
//! whose concatenation is the vocab entry with the highest score (ties: leftmost), then emit each
//! symbol's id, or its bytes as `<0xXX>` tokens when the symbol is not in the vocab.
//!
//! The `tokenizers` crate's BPE merges by a fixed rank per pair, which cannot express "any pair
//! whose concatenation is a token, ranked by that token's score" for a 262k vocab without
//! materialising every such pair, so this runs the merge loop of [`super::merge`].

use std::cmp::Ordering;
use std::ops::Range;

use super::merge::merge_symbols;
use super::table::StrTable;

use crate::{Error, Result};

/// A token's score, ordered totally so that it can rank merges.
#[derive(Clone, Copy, PartialEq)]
struct Score(f32);
impl Eq for Score {}
impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Score {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Tokenizes `text` (spaces already replaced by ▁) and appends the ids to `out`.
pub(crate) fn encode(
    text: &str,
    vocab: &StrTable,
    scores: &[f32],
    out: &mut Vec<u32>,
) -> Result<()> {
    let mut symbols: Vec<Range<usize>> = Vec::new();
    merge_symbols(
        text,
        |left, right| {
            let id = vocab.find(&text[left.start..right.end])?;
            Some(Score(scores.get(id as usize).copied().unwrap_or(0.0)))
        },
        &mut symbols,
    );
    for range in symbols {
        let piece = &text[range];
        match vocab.find(piece) {
            Some(id) => out.push(id),
            // Every merged symbol is a vocab entry, so only a single character can be missing:
            // byte fallback.
            None => {
                for &byte in piece.as_bytes() {
                    out.push(byte_token(byte, vocab)?);
                }
            }
        }
    }
    Ok(())
}

/// The id of the `<0xXX>` token for `byte`, or of the one-byte text as a fallback.
pub(crate) fn byte_token(byte: u8, vocab: &StrTable) -> Result<u32> {
    if let Some(id) = vocab.find(&format!("<0x{byte:02X}>")) {
        return Ok(id);
    }
    if byte.is_ascii() {
        if let Some(id) = vocab.find(char::from(byte).encode_utf8(&mut [0; 4])) {
            return Ok(id);
        }
    }
    Err(Error::Tokenizer(format!(
        "the vocabulary has no token for byte 0x{byte:02X}"
    )))
}
