//! Byte-level BPE (`tokenizer.ggml.model = "gpt2"`) on the `tokenizers` crate: the regex
//! pre-split from [`PreTokenizer`], GPT-2's byte → character mapping, then merges by rank.

use std::collections::HashMap;

use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{SplitDelimiterBehavior, TokenizerImpl};

use crate::gguf::GgufFile;

use super::fxhash::{FxHashMap, FxHashSet};
use crate::{Error, Result};

use super::pretokenize::PreTokenizer;

type HfTokenizer = TokenizerImpl<
    BPE,
    tokenizers::NormalizerWrapper,
    PreTokenizerWrapper,
    tokenizers::PostProcessorWrapper,
    tokenizers::DecoderWrapper,
>;

/// The merge model and pre-split for one vocab. Special tokens are handled before text gets here.
pub(crate) struct BpeModel {
    hf: HfTokenizer,
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

impl BpeModel {
    pub fn new(
        file: &GgufFile,
        texts: &[String],
        text_to_id: &FxHashMap<String, u32>,
        pre: &PreTokenizer,
    ) -> Result<BpeModel> {
        let merges_raw = file.get_str_array("tokenizer.ggml.merges")?;
        // llama.cpp splits each merge at the first space after the first byte and keeps the
        // first rank of a repeated pair. The crate needs both halves and the result in the vocab;
        // a merge that fails that can never produce a token id, so it is left out.
        let mut seen = FxHashSet::with_capacity_and_hasher(merges_raw.len(), Default::default());
        let mut merges = Vec::with_capacity(merges_raw.len());
        let mut joined = String::new();
        for m in merges_raw {
            // Byte search: a space found after byte 0 is always on a character boundary.
            let Some(pos) = m.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1) else {
                continue;
            };
            let (a, b) = (&m[..pos], &m[pos + 1..]);
            let (Some(&a_id), Some(&b_id)) = (text_to_id.get(a), text_to_id.get(b)) else {
                continue;
            };
            joined.clear();
            joined.push_str(a);
            joined.push_str(b);
            if !text_to_id.contains_key(joined.as_str()) {
                continue;
            }
            if seen.insert((a_id, b_id)) {
                merges.push((a.to_string(), b.to_string()));
            }
        }
        let vocab: tokenizers::models::bpe::Vocab = texts
            .iter()
            .enumerate()
            .map(|(id, t)| (t.clone(), id as u32))
            .collect();
        let model = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(pre.ignore_merges)
            .build()
            .map_err(tok_err)?;

        let mut steps = Vec::with_capacity(pre.regexes.len() + 1);
        for re in &pre.regexes {
            let split = Split::new(
                SplitPattern::Regex((*re).to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| {
                Error::Tokenizer(format!("pre-tokenizer `{}` regex {re:?}: {e}", pre.name))
            })?;
            steps.push(PreTokenizerWrapper::Split(split));
        }
        // Bytes → GPT-2's printable characters; no splitting of its own.
        steps.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(
            false, false, false,
        )));

        let mut hf = TokenizerImpl::new(model);
        hf.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(Sequence::new(steps))));
        Ok(BpeModel { hf })
    }

    /// Appends the ids of plain `text` (no special-token parsing) to `out`.
    pub fn encode(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        let enc = self.hf.encode(text, false).map_err(tok_err)?;
        out.extend_from_slice(enc.get_ids());
        Ok(())
    }
}

/// GPT-2's byte-level alphabet: printable Latin-1 bytes stand for themselves, the other bytes
/// (controls, space, 0x7F–0xA0, 0xAD) take the characters from U+0100 upwards in byte order.
/// Returns the byte each of these characters stands for.
pub(crate) fn byte_level_decoder() -> HashMap<char, u8> {
    let printable = |b: u8| matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut map = HashMap::with_capacity(256);
    let mut next_extra = 0u32;
    for b in 0..=255u8 {
        let c = if printable(b) {
            char::from(b)
        } else {
            let c = char::from_u32(256 + next_extra).unwrap_or(char::REPLACEMENT_CHARACTER);
            next_extra += 1;
            c
        };
        map.insert(c, b);
    }
    map
}
