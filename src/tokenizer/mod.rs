//! Text ↔ token ids, rebuilt from GGUF metadata to agree with llama.cpp id for id.
//!
//! Encoding runs in two stages, as in llama.cpp (`llama_vocab::impl::tokenize`):
//! 1. **Special-token split** ([`Tokenizer::encode`]): the text of control and user-defined
//!    tokens is cut out of the input, longest token first. User-defined tokens (Gemma's
//!    whitespace runs, HTML tags, Qwen's `<tool_call>`) are always cut out; control tokens
//!    (`<|im_start|>`, `<bos>`) only when `parse_special` is set, i.e. for rendered chat prompts
//!    and never for user text.
//! 2. **The model** on each remaining piece of plain text:
//!    - `gpt2`: byte-level BPE on the `tokenizers` crate (`bpe.rs`), after the regex pre-split
//!      that `tokenizer.ggml.pre` names (`pretokenize.rs`);
//!    - `llama`: SentencePiece-style merges by score with `<0xXX>` byte fallback (`spm.rs`);
//!      spaces become `▁`, and a space is prefixed to text that starts the input or follows a
//!      special token when `tokenizer.ggml.add_space_prefix` is true (the default).
//!
//! Decoding maps each id to its bytes (`token_to_piece`) and joins them; [`StreamDecoder`] does
//! the same incrementally and only ever hands out complete UTF-8.

mod bpe;
mod fxhash;
mod merge;
mod pretokenize;
mod spm;
mod table;
mod vocab;

use std::collections::HashMap;

use crate::gguf::GgufFile;
use crate::{Error, Result};

use vocab::{attr, ModelKind, Vocab};

/// A tokenizer for one GGUF vocab. Immutable after construction, so one instance can be shared
/// by any number of threads.
pub struct Tokenizer {
    vocab: Vocab,
    bpe: Option<bpe::BpeModel>,
    /// GPT-2 byte-level character → byte, for rendering BPE tokens.
    byte_decoder: HashMap<char, u8>,
}

/// A piece of input during the special-token split: plain text still to tokenize (a byte range
/// of the input) or a token already identified.
#[derive(Clone, Copy)]
enum Fragment {
    Text { start: usize, end: usize },
    Token(u32),
}

impl Tokenizer {
    /// Builds the tokenizer described by the `tokenizer.ggml.*` metadata of `file`.
    ///
    /// Fails with [`Error::Tokenizer`] for a tokenizer model other than `llama` or `gpt2`, an
    /// unknown `tokenizer.ggml.pre`, or inconsistent metadata (duplicate tokens, `add_bos_token`
    /// without a BOS id, arrays shorter than the vocab).
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer> {
        let vocab = Vocab::from_gguf(file)?;
        let bpe = match &vocab.kind {
            ModelKind::Bpe(pre) => Some(bpe::BpeModel::new(file, pre)?),
            ModelKind::Spm => None,
        };
        Ok(Tokenizer {
            vocab,
            bpe,
            byte_decoder: bpe::byte_level_decoder(),
        })
    }

    /// The ids of `text`.
    ///
    /// `add_special` adds BOS (and EOS) where the vocab's `add_bos_token` (`add_eos_token`) asks
    /// for it; `parse_special` turns control-token text in `text` (`<|im_start|>`) into those
    /// tokens instead of tokenizing it as plain characters.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        let v = &self.vocab;
        let fragments = self.split_special(text, parse_special);
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && v.add_bos {
            // Checked at construction: add_bos implies a BOS id.
            if let Some(bos) = v.bos {
                out.push(bos);
            }
        }
        match &v.kind {
            ModelKind::Spm => {
                let mut prev_special = true;
                for f in fragments {
                    match f {
                        Fragment::Text { start, end } => {
                            let mut piece = String::with_capacity(end - start + 3);
                            if v.add_space_prefix && prev_special {
                                piece.push(' ');
                            }
                            piece.push_str(&text[start..end]);
                            let escaped = piece.replace(' ', "\u{2581}");
                            spm::encode(&escaped, &v.texts, &v.scores, &mut out)?;
                            prev_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                    }
                }
            }
            ModelKind::Bpe(_) => {
                let Some(bpe) = &self.bpe else {
                    return Err(Error::Tokenizer("BPE model missing".into()));
                };
                for f in fragments {
                    match f {
                        Fragment::Text { start, end } => {
                            bpe.encode(&text[start..end], &v.texts, &mut out)?
                        }
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
        }
        if add_special && v.add_eos {
            if let Some(eos) = v.eos {
                out.push(eos);
            }
        }
        Ok(out)
    }

    /// llama.cpp's `tokenizer_st_partition`: for each special token, longest first, cut every
    /// occurrence of its text out of the remaining plain-text fragments.
    fn split_special(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        let v = &self.vocab;
        let mut fragments = Vec::new();
        if text.is_empty() {
            return fragments;
        }
        fragments.push(Fragment::Text {
            start: 0,
            end: text.len(),
        });
        let bytes = text.as_bytes();
        for &id in &v.special_order {
            let a = v.attrs[id as usize];
            if !parse_special && a & (attr::CONTROL | attr::UNKNOWN) != 0 {
                continue;
            }
            let needle = v.texts.get(id).unwrap_or_default();
            if needle.is_empty() {
                continue;
            }
            // Cheap pre-check: most special tokens occur nowhere in the input.
            if !text.contains(needle) {
                continue;
            }
            let mut next = Vec::with_capacity(fragments.len() + 2);
            for f in fragments {
                let Fragment::Text { mut start, end } = f else {
                    next.push(f);
                    continue;
                };
                while let Some(rel) = text[start..end].find(needle) {
                    let m = start + rel;
                    let mut left_end = m;
                    if a & attr::LSTRIP != 0 {
                        while left_end > start && bytes[left_end - 1].is_ascii_whitespace_c() {
                            left_end -= 1;
                        }
                    }
                    if left_end > start {
                        next.push(Fragment::Text {
                            start,
                            end: left_end,
                        });
                    }
                    next.push(Fragment::Token(id));
                    start = m + needle.len();
                    if a & attr::RSTRIP != 0 {
                        while start < end && bytes[start].is_ascii_whitespace_c() {
                            start += 1;
                        }
                    }
                }
                if start < end {
                    next.push(Fragment::Text { start, end });
                }
            }
            fragments = next;
        }
        fragments
    }

    /// The text of `ids` as llama.cpp's `llama_detokenize` renders it without special tokens:
    /// control and unknown tokens are dropped, the space a SentencePiece vocab prefixes to the
    /// input is removed from the first token, and vocabs with `clean_spaces` lose spaces before
    /// punctuation. Bytes that are not valid UTF-8 after joining become U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for (i, &id) in ids.iter().enumerate() {
            let piece = self.piece(id, false);
            let piece = if i == 0 && self.vocab.add_space_prefix {
                piece.strip_prefix(b" ").unwrap_or(&piece).to_vec()
            } else {
                piece
            };
            bytes.extend_from_slice(&piece);
        }
        if self.vocab.clean_spaces {
            bytes = clean_up_spaces(&bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The bytes of one token as llama.cpp's `llama_token_to_piece` with `special = true`:
    /// control tokens render as their text. Empty for an id outside the vocab.
    pub fn token_to_piece(&self, id: u32) -> Vec<u8> {
        self.piece(id, true)
    }

    /// The bytes of one token; control and unknown tokens are empty unless `special`.
    fn piece(&self, id: u32, special: bool) -> Vec<u8> {
        let v = &self.vocab;
        let Some(text) = v.texts.get(id) else {
            return Vec::new();
        };
        let a = v.attrs[id as usize];
        let special_bits = attr::UNKNOWN | attr::CONTROL;
        if a & special_bits != 0 && !special {
            return Vec::new();
        }
        if a & (special_bits | attr::USER_DEFINED) != 0 {
            return text.as_bytes().to_vec();
        }
        if a & attr::NORMAL != 0 {
            return match v.kind {
                ModelKind::Spm => text.replace('\u{2581}', " ").into_bytes(),
                ModelKind::Bpe(_) => self.byte_level_to_bytes(text),
            };
        }
        if a & attr::BYTE != 0 {
            // `<0xXX>`; a malformed byte token renders as nothing, like an unsupported type.
            return text
                .get(3..5)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .map(|b| vec![b])
                .unwrap_or_default();
        }
        // Unused and undefined tokens render as nothing.
        Vec::new()
    }

    /// GPT-2 byte-level text → raw bytes; a character outside the alphabet is kept visible the
    /// way llama.cpp shows it (`[UNK_BYTE_0x…]`).
    fn byte_level_to_bytes(&self, text: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len());
        for c in text.chars() {
            match self.byte_decoder.get(&c) {
                Some(&b) => out.push(b),
                None => {
                    out.extend_from_slice(b"[UNK_BYTE_0x");
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.extend_from_slice(format!("{b:02x}").as_bytes());
                    }
                    out.extend_from_slice(text.as_bytes());
                    out.push(b']');
                }
            }
        }
        out
    }

    /// The vocab entry as stored in the GGUF (byte-level characters for `gpt2` vocabs, `▁` for
    /// spaces in `llama` vocabs), e.g. for a chat template's `bos_token`.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.texts.get(id)
    }

    /// The id of the token whose stored text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.texts.find(text)
    }

    /// Number of tokens in the vocab.
    pub fn vocab_size(&self) -> usize {
        self.vocab.texts.len()
    }

    /// The beginning-of-sequence token.
    pub fn bos(&self) -> Option<u32> {
        self.vocab.bos
    }

    /// The end-of-sequence token.
    pub fn eos(&self) -> Option<u32> {
        self.vocab.eos
    }

    /// The unknown-token id, if the vocab has one.
    pub fn unk(&self) -> Option<u32> {
        self.vocab.unk
    }

    /// Whether `encode(.., add_special = true, ..)` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.vocab.add_bos
    }

    /// Whether `encode(.., add_special = true, ..)` appends EOS.
    pub fn add_eos(&self) -> bool {
        self.vocab.add_eos
    }

    /// Whether generating `id` ends the generation: EOS, EOT, EOM, the FIM pad/repo/file-separator
    /// tokens and every token llama.cpp recognises by text (`<|im_end|>`, `<end_of_turn>`,
    /// `<|endoftext|>`, `<|eot_id|>`, …).
    pub fn is_eog(&self, id: u32) -> bool {
        self.vocab.eog.binary_search(&id).is_ok()
    }

    /// All end-of-generation tokens, ascending.
    pub fn eog_tokens(&self) -> &[u32] {
        &self.vocab.eog
    }

    /// Whether `id` is a control token (rendered as nothing by [`Tokenizer::decode`]).
    pub fn is_control(&self, id: u32) -> bool {
        self.vocab
            .attrs
            .get(id as usize)
            .is_some_and(|a| a & attr::CONTROL != 0)
    }
}

trait AsciiSpace {
    /// C's `isspace` in the "C" locale: space, \t, \n, \v, \f, \r.
    fn is_ascii_whitespace_c(&self) -> bool;
}
impl AsciiSpace for u8 {
    fn is_ascii_whitespace_c(&self) -> bool {
        matches!(*self, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
    }
}

/// llama.cpp's `clean_spaces` post-pass: drop the space before `?!.,`, around a lone `'`, and
/// before the contractions `'s 'm 're 've`.
fn clean_up_spaces(input: &[u8]) -> Vec<u8> {
    // Pass 1: " ?", " !", " .", " ," lose the space.
    let mut a: Vec<u8> = Vec::with_capacity(input.len());
    for (i, &x) in input.iter().enumerate() {
        if i > 0 && input[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            a.pop();
        }
        a.push(x);
    }
    // Pass 2: " ' " becomes "'".
    let mut b: Vec<u8> = Vec::with_capacity(a.len());
    let mut i = 0;
    while i < a.len() {
        let x = a[i];
        if i > 0 && x == b'\'' && i + 1 < a.len() && a[i - 1] == b' ' && a[i + 1] == b' ' {
            b.pop();
            b.push(x);
            i += 2;
            continue;
        }
        b.push(x);
        i += 1;
    }
    // Pass 3: " 's", " 'm", " 're", " 've" lose the space.
    let mut c: Vec<u8> = Vec::with_capacity(b.len());
    for (i, &x) in b.iter().enumerate() {
        if i > 0 && b[i - 1] == b' ' && x == b'\'' && i + 1 < b.len() {
            let x1 = b[i + 1];
            let x2 = b.get(i + 2).copied();
            if matches!(x1, b's' | b'm')
                || (matches!((x1, x2), (b'r', Some(b'e')) | (b'v', Some(b'e'))))
            {
                c.pop();
            }
        }
        c.push(x);
    }
    c
}

/// Turns generated ids into text one token at a time without ever splitting a UTF-8 character:
/// bytes of an incomplete character are held until the token that completes it arrives. Tokens
/// render as in [`Tokenizer::decode`] (control tokens as nothing), without the first-token space
/// removal and space clean-up, which only make sense for a whole text.
#[derive(Debug, Default, Clone)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    /// A decoder with nothing held.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds token `id`; returns the text that is now complete (possibly empty). Bytes that can
    /// never become valid UTF-8 are emitted as U+FFFD rather than held.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> String {
        self.push_piece(tok, id, false)
    }

    /// [`StreamDecoder::push`] with control tokens written as their text when `special`.
    pub fn push_piece(&mut self, tok: &Tokenizer, id: u32, special: bool) -> String {
        self.pending.extend_from_slice(&tok.piece(id, special));
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, tail) = rest.split_at(e.valid_up_to());
                    // `valid` is valid UTF-8 by the error's contract.
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        // An invalid sequence: replace it and go on.
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &tail[n..];
                        }
                        // A character cut short at the end: hold it.
                        None => {
                            rest = tail;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }

    /// Ends the stream: whatever is still held, with an incomplete character as U+FFFD.
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}
