//! Byte-level BPE (`tokenizer.ggml.model = "gpt2"`): the `tokenizers` crate's regex pre-split
//! (the patterns of [`PreTokenizer`]) and GPT-2 byte → character mapping, then llama.cpp's merges
//! by rank ([`super::merge`]).

use std::cmp::Reverse;
use std::collections::HashMap;
use std::ops::Range;

use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{
    OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer as _, SplitDelimiterBehavior,
};

use crate::gguf::GgufFile;

use super::merge::merge_symbols;
use super::table::StrTable;
use crate::{Error, Result};

use super::pretokenize::PreTokenizer;

/// The pre-split and the merge ranks of one vocab. Special tokens are handled before text gets
/// here.
pub(crate) struct BpeModel {
    /// The `tokenizers` crate's regex splits, then its byte → character mapping.
    pre_split: PreTokenizerWrapper,
    /// The merge list as stored (`"left right"`), a merge's position being its rank.
    ranks: StrTable,
    /// A whole pre-token that is a vocab entry is that token, whatever the merges say.
    ignore_merges: bool,
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

impl BpeModel {
    /// The merges come straight from `tokenizer.ggml.merges`, ranked by position, as llama.cpp
    /// ranks them: the crate's own BPE model would want every token text and every merge as
    /// separate `String`s in its own maps, which took 150 ms for Qwen2.5's 152k-entry vocab.
    pub fn new(file: &GgufFile, pre: &PreTokenizer) -> Result<BpeModel> {
        let merges = file.get_str_array("tokenizer.ggml.merges")?;
        if merges.len() >= u32::MAX as usize {
            return Err(Error::Tokenizer(format!("{} merges", merges.len())));
        }
        let bytes = merges.iter().map(|m| m.len()).sum();
        let mut ranks = StrTable::with_capacity(merges.len(), bytes);
        // A repeated merge keeps its first rank (`find` answers the first position).
        let _ = ranks.extend(&merges);

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
        Ok(BpeModel {
            pre_split: PreTokenizerWrapper::Sequence(Sequence::new(steps)),
            ranks,
            ignore_merges: pre.ignore_merges,
        })
    }

    /// Appends the ids of plain `text` (no special-token parsing) to `out`.
    pub fn encode(&self, text: &str, vocab: &StrTable, out: &mut Vec<u32>) -> Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        let mut words = PreTokenizedString::from(text);
        self.pre_split.pre_tokenize(&mut words).map_err(tok_err)?;
        let mut symbols: Vec<Range<usize>> = Vec::new();
        let mut pair = String::new();
        for (word, _, _) in words.get_splits(OffsetReferential::Original, OffsetType::Byte) {
            if self.ignore_merges {
                if let Some(id) = vocab.find(word) {
                    out.push(id);
                    continue;
                }
            }
            symbols.clear();
            merge_symbols(
                word,
                |left, right| {
                    // llama.cpp splits a stored merge at its first space after the first byte,
                    // so a left part with a space of its own is never a ranked pair.
                    let left = &word[left];
                    if left.as_bytes()[1..].contains(&b' ') {
                        return None;
                    }
                    pair.clear();
                    pair.push_str(left);
                    pair.push(' ');
                    pair.push_str(&word[right]);
                    self.ranks.find(&pair).map(Reverse)
                },
                &mut symbols,
            );
            for range in symbols.drain(..) {
                let piece = &word[range];
                match vocab.find(piece) {
                    Some(id) => out.push(id),
                    // A merge whose result is not a token, or a character outside the vocab:
                    // llama.cpp keeps the bytes that are tokens by themselves.
                    None => {
                        for b in piece.bytes().filter(u8::is_ascii) {
                            if let Some(id) = vocab.find(char::from(b).encode_utf8(&mut [0; 4])) {
                                out.push(id);
                            }
                        }
                    }
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::vocab::ModelKind;
    use crate::tokenizer::Tokenizer;
    use proptest::prelude::*;
    use std::path::PathBuf;
    use tokenizers::models::bpe::BPE;
    use tokenizers::TokenizerImpl;

    type CrateTokenizer = TokenizerImpl<
        BPE,
        tokenizers::NormalizerWrapper,
        PreTokenizerWrapper,
        tokenizers::PostProcessorWrapper,
        tokenizers::DecoderWrapper,
    >;

    /// The test model's tokenizer and the `tokenizers` crate's own BPE model built from the same
    /// vocab, merges and pre-split (what this module used before it ranked merges itself), or
    /// None when the model file is absent.
    fn with_crate_bpe(model: &str) -> Option<(Tokenizer, CrateTokenizer)> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("models")
            .join(format!("{model}.gguf"));
        if !path.exists() {
            // Same policy as the integration tests' `tests/common/models.rs`: the test command
            // requires the models; elsewhere a missing one is a loud skip.
            assert!(
                std::env::var_os("LLMRT_REQUIRE_MODELS").is_none(),
                "{} not found (LLMRT_REQUIRE_MODELS is set): run scripts/fetch-models.sh",
                path.display()
            );
            #[allow(clippy::print_stderr)]
            {
                eprintln!("SKIP {model}: {} not found", path.display());
            }
            return None;
        }
        let file = GgufFile::open(&path).expect("open the model");
        let ours = Tokenizer::from_gguf(&file).expect("build the tokenizer");
        let ModelKind::Bpe(pre) = &ours.vocab.kind else {
            panic!("{model}: not a BPE vocab");
        };
        let texts = &ours.vocab.texts;
        let vocab: tokenizers::models::bpe::Vocab = texts
            .iter()
            .enumerate()
            .map(|(id, t)| (t.to_string(), id as u32))
            .collect();
        // The crate wants both halves and the result in the vocab, and each pair once.
        let mut seen = std::collections::HashSet::new();
        let merges: Vec<(String, String)> = file
            .get_str_array("tokenizer.ggml.merges")
            .expect("merges")
            .into_iter()
            .filter_map(|m| {
                let pos = m.bytes().skip(1).position(|b| b == b' ')? + 1;
                let (a, b) = (&m[..pos], &m[pos + 1..]);
                let ok = texts.find(a).is_some()
                    && texts.find(b).is_some()
                    && texts.find(&format!("{a}{b}")).is_some()
                    && seen.insert((a.to_string(), b.to_string()));
                ok.then(|| (a.to_string(), b.to_string()))
            })
            .collect();
        let model = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(pre.ignore_merges)
            .build()
            .expect("the crate's BPE model");
        let mut hf = TokenizerImpl::new(model);
        let ours_bpe = ours.bpe.as_ref().expect("a BPE model");
        hf.with_pre_tokenizer(Some(ours_bpe.pre_split.clone()));
        Some((ours, hf))
    }

    /// Text pieces from many scripts, digits, punctuation, contractions and whitespace runs, so
    /// that every branch of the pre-split regexes and long merge chains get exercised.
    fn text() -> impl Strategy<Value = String> {
        let fragment = prop_oneof![
            3 => "[a-zA-Z]{1,12}",
            2 => "[ \t\n\r]{1,4}",
            1 => "[0-9]{1,7}",
            1 => "'(s|t|re|ve|m|ll|d|S|LL)",
            1 => "[.,;:!?()\\[\\]{}\"'`~@#$%^&*_+=/\\\\-]{1,3}",
            1 => "[àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿßœ]{1,6}",
            1 => "[а-яА-ЯёЁ]{1,8}",
            1 => "[α-ωΑ-Ω]{1,6}",
            1 => "[\u{4e00}-\u{9fff}]{1,6}",
            1 => "[\u{3040}-\u{30ff}]{1,6}",
            1 => "[\u{ac00}-\u{d7a3}]{1,4}",
            1 => "[\u{0600}-\u{06ff}]{1,6}",
            1 => "[\u{0900}-\u{097f}]{1,6}",
            1 => "[\u{1f300}-\u{1faff}]{1,3}",
            1 => "[\u{0300}-\u{036f}]{1,2}",
            1 => any::<char>().prop_map(String::from),
        ];
        proptest::collection::vec(fragment, 0..16).prop_map(|v| v.concat())
    }

    fn check_against_crate(model: &str) {
        let Some((ours, hf)) = with_crate_bpe(model) else {
            return;
        };
        let bpe = ours.bpe.as_ref().expect("a BPE model");
        let cases = std::cell::Cell::new(0);
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(512));
        // GPT-2's byte → character mapping, to see which byte characters the vocab lacks.
        let byte_chars: Vec<char> = {
            let decoder = byte_level_decoder();
            let mut chars = vec!['\0'; 256];
            for (c, b) in decoder {
                chars[b as usize] = c;
            }
            chars
        };
        runner
            .run(&text(), |s| {
                // The crate drops a byte character missing from the vocab before merging (so
                // its neighbours may merge); llama.cpp keeps it as a symbol that emits nothing
                // and blocks merges across it, as we do: SmolLM2 lacks the character of 0xF1, and
                // "\u{319}\u{42000}" is one of tests/reference/tokenize-extra's cases.
                prop_assume!(s.bytes().all(|b| {
                    let mut buf = [0; 4];
                    ours.vocab
                        .texts
                        .find(byte_chars[b as usize].encode_utf8(&mut buf))
                        .is_some()
                }));
                let mut got = Vec::new();
                bpe.encode(&s, &ours.vocab.texts, &mut got).unwrap();
                let expected = hf.encode(s.as_str(), false).unwrap().get_ids().to_vec();
                prop_assert_eq!(got, expected, "{}: {:?}", model, s);
                cases.set(cases.get() + 1);
                Ok(())
            })
            .unwrap();
        assert_eq!(cases.get(), 512, "{model}: every case compared");
    }

    /// Our merge ranking agrees with the `tokenizers` crate's BPE (which agrees with llama.cpp
    /// on every reference text) on texts in many scripts.
    #[test]
    fn smollm2_merges_agree_with_the_crate_bpe() {
        check_against_crate("smollm2-135m-instruct-q8_0");
    }

    #[test]
    fn qwen2_merges_agree_with_the_crate_bpe() {
        check_against_crate("qwen2.5-coder-0.5b-instruct-q4_k_m");
    }
}
