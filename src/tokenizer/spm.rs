//! SentencePiece-style BPE (`tokenizer.ggml.model = "llama"`), as llama.cpp's
//! `llm_tokenizer_spm` runs it: start from single characters, repeatedly merge the adjacent pair
//! whose concatenation is the vocab entry with the highest score (ties: leftmost), then emit each
//! symbol's id, or its bytes as `<0xXX>` tokens when the symbol is not in the vocab.
//!
//! The `tokenizers` crate's BPE merges by a fixed rank per pair, which cannot express "any pair
//! whose concatenation is a token, ranked by that token's score" for a 262k vocab without
//! materialising every such pair, so this loop is written out; it is short.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::fxhash::FxHashMap;

use crate::{Error, Result};

/// One symbol: a byte range of the input; `len == 0` once merged into its left neighbour.
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge of `symbols[left]` with `symbols[right]` into a token of `score`.
struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    /// Byte length of the merged text, to recognise candidates made stale by other merges.
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// The max-heap pops the highest score first, and of equal scores the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Tokenizes `text` (spaces already replaced by ▁) and appends the ids to `out`.
pub(crate) fn encode(
    text: &str,
    text_to_id: &FxHashMap<String, u32>,
    scores: &[f32],
    out: &mut Vec<u32>,
) -> Result<()> {
    if text.is_empty() {
        return Ok(());
    }
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    let boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    for (k, &start) in boundaries.iter().enumerate() {
        let end = boundaries.get(k + 1).copied().unwrap_or(text.len());
        symbols.push(Symbol {
            start,
            len: end - start,
            prev: k.checked_sub(1),
            next: (k + 1 < boundaries.len()).then_some(k + 1),
        });
    }

    let mut queue = BinaryHeap::new();
    let try_add =
        |queue: &mut BinaryHeap<Bigram>, symbols: &[Symbol], left: usize, right: usize| {
            let (l, r) = (symbols[left], symbols[right]);
            let merged = &text[l.start..r.start + r.len];
            if let Some(&id) = text_to_id.get(merged) {
                queue.push(Bigram {
                    left,
                    right,
                    score: scores.get(id as usize).copied().unwrap_or(0.0),
                    size: merged.len(),
                });
            }
        };
    for i in 1..symbols.len() {
        try_add(&mut queue, &symbols, i - 1, i);
    }

    while let Some(b) = queue.pop() {
        let (l, r) = (symbols[b.left], symbols[b.right]);
        if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
            continue;
        }
        symbols[b.left].len += r.len;
        symbols[b.right].len = 0;
        symbols[b.left].next = r.next;
        if let Some(n) = r.next {
            symbols[n].prev = Some(b.left);
        }
        if let Some(p) = symbols[b.left].prev {
            try_add(&mut queue, &symbols, p, b.left);
        }
        if let Some(n) = symbols[b.left].next {
            try_add(&mut queue, &symbols, b.left, n);
        }
    }

    let mut cur = Some(0);
    while let Some(i) = cur {
        let s = symbols[i];
        let piece = &text[s.start..s.start + s.len];
        match text_to_id.get(piece) {
            Some(&id) => out.push(id),
            // Every merged symbol is a vocab entry, so only a single character can be missing:
            // byte fallback.
            None => {
                for &byte in piece.as_bytes() {
                    out.push(byte_token(byte, text_to_id)?);
                }
            }
        }
        cur = s.next;
    }
    Ok(())
}

/// The id of the `<0xXX>` token for `byte`, or of the one-byte text as a fallback.
pub(crate) fn byte_token(byte: u8, text_to_id: &FxHashMap<String, u32>) -> Result<u32> {
    if let Some(&id) = text_to_id.get(&format!("<0x{byte:02X}>")) {
        return Ok(id);
    }
    if byte.is_ascii() {
        if let Some(&id) = text_to_id.get(&char::from(byte).to_string()) {
            return Ok(id);
        }
    }
    Err(Error::Tokenizer(format!(
        "the vocabulary has no token for byte 0x{byte:02X}"
    )))
}
