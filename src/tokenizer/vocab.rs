//! The vocabulary as llama.cpp's `llama_vocab::load` sees it: token texts, scores and attributes
//! from `tokenizer.ggml.*`, the special ids, the end-of-generation set and the order in which
//! special-token text is split out of the input.

use crate::gguf::GgufFile;
use crate::{Error, Result};

use super::pretokenize::PreTokenizer;
use super::table::StrTable;

/// Token attribute bits, numbered as llama.h's `llama_token_attr`.
pub(crate) mod attr {
    pub const UNKNOWN: u32 = 1 << 0;
    pub const UNUSED: u32 = 1 << 1;
    pub const NORMAL: u32 = 1 << 2;
    pub const CONTROL: u32 = 1 << 3;
    pub const USER_DEFINED: u32 = 1 << 4;
    pub const BYTE: u32 = 1 << 5;
    pub const LSTRIP: u32 = 1 << 7;
    pub const RSTRIP: u32 = 1 << 8;
}

/// `tokenizer.ggml.token_type` values (gguf-py `TokenType`) mapped to attribute bits; anything
/// else (0 = undefined, or out of range) has no bits.
fn attr_of_type(token_type: i64) -> u32 {
    match token_type {
        1 => attr::NORMAL,
        2 => attr::UNKNOWN,
        3 => attr::CONTROL,
        4 => attr::USER_DEFINED,
        5 => attr::UNUSED,
        6 => attr::BYTE,
        _ => 0,
    }
}

/// Which algorithm turns plain text into ids.
pub(crate) enum ModelKind {
    /// `tokenizer.ggml.model = "llama"`: SentencePiece-style merges by score with byte fallback.
    Spm,
    /// `tokenizer.ggml.model = "gpt2"`: byte-level BPE by merge rank after a regex pre-split.
    Bpe(PreTokenizer),
}

/// Texts whose token ends generation wherever it appears in a vocab (llama.cpp's list, matched on
/// the stored text because converters do not record the role of these tokens).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];

/// Everything `Tokenizer` needs besides the BPE model itself.
pub(crate) struct Vocab {
    pub kind: ModelKind,
    /// Token texts as stored (an empty entry becomes `[EMPTY_<id>]`, as llama.cpp renames it),
    /// by id and by text.
    pub texts: StrTable,
    pub scores: Vec<f32>,
    pub attrs: Vec<u32>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
    pub clean_spaces: bool,
    /// Sorted ascending.
    pub eog: Vec<u32>,
    /// Control, user-defined and unknown tokens, longest text first: the order in which their
    /// text is split out of the input.
    pub special_order: Vec<u32>,
}

fn key(name: &str) -> String {
    format!("tokenizer.ggml.{name}")
}

impl Vocab {
    pub fn from_gguf(file: &GgufFile) -> Result<Vocab> {
        let model = file.get_str(&key("model"))?;
        let pre = file.opt_str(&key("pre"))?;

        let tokens = file.get_str_array(&key("tokens"))?;
        let n = tokens.len();
        if n == 0 || n > u32::MAX as usize {
            return Err(Error::Tokenizer(format!("the vocabulary has {n} tokens")));
        }

        // Defaults per model type, before metadata overrides them (llama_vocab::impl::load).
        let mut bos: Option<u32>;
        let mut eos: Option<u32>;
        let mut unk: Option<u32>;
        let mut add_bos;
        let add_eos_default;
        let mut add_space_prefix;
        let clean_spaces;
        let kind = match model {
            "llama" => {
                bos = Some(1);
                eos = Some(2);
                unk = Some(0);
                add_bos = true;
                add_eos_default = false;
                add_space_prefix = true;
                clean_spaces = false;
                ModelKind::Spm
            }
            "gpt2" => {
                // llama.cpp's placeholder defaults for BPE vocabs (GPT-2's ids), replaced by
                // the metadata in every real conversion.
                bos = Some(11);
                eos = Some(11);
                unk = None;
                add_space_prefix = false;
                let pre_name = pre.unwrap_or("default");
                let pre_tok = PreTokenizer::from_name(pre_name)?;
                add_bos = pre_tok.add_bos;
                add_eos_default = false;
                clean_spaces = pre_tok.clean_spaces;
                if pre_tok.no_bos {
                    bos = None;
                }
                ModelKind::Bpe(pre_tok)
            }
            other => {
                return Err(Error::Tokenizer(format!(
                    "unsupported tokenizer model `{other}` (supported: llama, gpt2)"
                )))
            }
        };
        let mut add_eos = add_eos_default;
        if let Some(v) = file.opt_bool(&key("add_space_prefix"))? {
            add_space_prefix = v;
        }

        let scores = if file.contains_key(&key("scores")) {
            let s = file.get_f32_array(&key("scores"))?;
            if s.len() < n {
                return Err(Error::Tokenizer(format!(
                    "{} scores for {n} tokens",
                    s.len()
                )));
            }
            s
        } else {
            vec![0.0; n]
        };
        let mut attrs = if file.contains_key(&key("token_type")) {
            let t = file.get_i64_array(&key("token_type"))?;
            if t.len() < n {
                return Err(Error::Tokenizer(format!(
                    "{} token types for {n} tokens",
                    t.len()
                )));
            }
            t[..n].iter().map(|&t| attr_of_type(t)).collect()
        } else {
            vec![attr::NORMAL; n]
        };

        // llama.cpp renames empty entries; they are rare, so only they get a String.
        let renamed: Vec<(usize, String)> = tokens
            .iter()
            .enumerate()
            .filter(|(_, t)| t.is_empty())
            .map(|(id, _)| (id, format!("[EMPTY_{id}]")))
            .collect();
        let mut tokens = tokens;
        for (id, name) in &renamed {
            tokens[*id] = name;
        }
        let bytes = tokens.iter().map(|t| t.len()).sum();
        let mut texts = StrTable::with_capacity(n, bytes);
        if let Some((earlier, id)) = texts.extend(&tokens) {
            return Err(Error::Tokenizer(format!(
                "duplicate token in vocabulary: {:?} has ids {earlier} and {id}",
                tokens[id as usize]
            )));
        }

        // Special ids from metadata; an id outside the vocab keeps the default, and a default
        // outside the vocab is dropped.
        let in_range = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
        let read_id = |name: &str, current: Option<u32>| -> Result<Option<u32>> {
            let current = in_range(current);
            Ok(match file.opt_u32(&key(name))? {
                Some(id) if (id as usize) < n => Some(id),
                _ => current,
            })
        };
        bos = read_id("bos_token_id", bos)?;
        eos = read_id("eos_token_id", eos)?;
        unk = read_id("unknown_token_id", unk)?;
        let mut eot = read_id("eot_token_id", None)?;
        let mut eom = read_id("eom_token_id", None)?;
        let mut fim_pad = read_id("fim_pad_token_id", None)?;
        let mut fim_rep = read_id("fim_rep_token_id", None)?;
        let mut fim_sep = read_id("fim_sep_token_id", None)?;

        if let Some(v) = file.opt_bool(&key("add_bos_token"))? {
            add_bos = v;
        }
        if let Some(v) = file.opt_bool(&key("add_eos_token"))? {
            add_eos = v;
        }
        if add_bos && bos.is_none() {
            return Err(Error::Tokenizer(
                "add_bos_token is true, but bos_token_id is not set".into(),
            ));
        }
        if add_eos && eos.is_none() {
            return Err(Error::Tokenizer(
                "add_eos_token is true, but eos_token_id is not set".into(),
            ));
        }

        // Roles recognised by text when the metadata does not name them; such tokens become
        // control tokens. llama.cpp walks a hash map here; we walk ids in order, which only
        // matters for vocabs with two candidates for one role.
        let detect = |slot: &mut Option<u32>, names: &[&str], attrs: &mut Vec<u32>| {
            if slot.is_some() {
                return;
            }
            if let Some(id) = names.iter().filter_map(|t| texts.find(t)).min() {
                *slot = Some(id);
                attrs[id as usize] |= attr::CONTROL;
            }
        };
        detect(&mut eot, EOT_TEXTS, &mut attrs);
        detect(&mut eom, EOM_TEXTS, &mut attrs);
        detect(&mut fim_pad, FIM_PAD_TEXTS, &mut attrs);
        detect(&mut fim_rep, FIM_REP_TEXTS, &mut attrs);
        detect(&mut fim_sep, FIM_SEP_TEXTS, &mut attrs);

        // Control tokens named "unused…" are unused.
        for (a, t) in attrs.iter_mut().zip(texts.iter()) {
            if *a & attr::CONTROL != 0 && t.contains("unused") {
                *a |= attr::UNUSED;
            }
        }

        let mut eog: Vec<u32> = [fim_pad, fim_rep, fim_sep].into_iter().flatten().collect();
        for id in EOG_TEXTS.iter().filter_map(|t| texts.find(t)) {
            eog.push(id);
            attrs[id as usize] |= attr::CONTROL;
        }
        // gpt-oss: these structural tokens are always rendered.
        for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(id) = texts.find(t) {
                attrs[id as usize] = attr::USER_DEFINED;
            }
        }
        eog.extend([eos, eot, eom].into_iter().flatten());
        eog.sort_unstable();
        eog.dedup();

        let text_of = |id: u32| texts.get(id).unwrap_or_default();
        // Harmony-style vocabs end a message with <|end|> but a generation with <|return|> or
        // <|call|>; there <|end|> is not an end of generation.
        let has = |eog: &[u32], s: &str| eog.iter().any(|&i| text_of(i) == s);
        if (has(&eog, "<|return|>") && has(&eog, "<|call|>"))
            || (has(&eog, "<|calls|>") && has(&eog, "<|flush|>"))
        {
            if let Some(pos) = eog.iter().position(|&i| text_of(i) == "<|end|>") {
                attrs[eog[pos] as usize] = attr::USER_DEFINED;
                eog.remove(pos);
            }
        }
        // Gemma 4 and PLaMo have an ordinary </s>; only vocabs without these markers end on it.
        if has(&eog, "<|tool_response>") || has(&eog, "<|plamo:eos|>") {
            if let Some(pos) = eog.iter().position(|&i| text_of(i) == "</s>") {
                attrs[eog[pos] as usize] = attr::NORMAL;
                eog.remove(pos);
            }
        }

        let mut special_order: Vec<u32> = (0..n as u32)
            .filter(|&id| {
                attrs[id as usize] & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0
            })
            .collect();
        // Longest first; ties by id so the order is deterministic (llama.cpp's sort is unstable).
        special_order.sort_by_key(|&id| std::cmp::Reverse(text_of(id).len()));

        // Per-model strip attributes that the GGUF does not carry (llama.cpp sets them by name).
        let model_name = file
            .opt_str("general.name")?
            .unwrap_or("")
            .to_ascii_lowercase();
        let arch = file.opt_str("general.architecture")?.unwrap_or("");
        let pre_name = pre.unwrap_or("");
        let set = |attrs: &mut Vec<u32>, text: &str, bit: u32, on: bool| {
            if let Some(id) = texts.find(text) {
                if on {
                    attrs[id as usize] |= bit;
                } else {
                    attrs[id as usize] &= !bit;
                }
            }
        };
        if ["jina-v2-de", "jina-v2-es", "jina-v2-code"]
            .iter()
            .any(|p| pre_name.contains(p))
            || ["nomic-bert-moe", "jina-bert-v3"]
                .iter()
                .any(|a| arch.contains(a))
        {
            set(&mut attrs, "<mask>", attr::LSTRIP, true);
        } else if model_name.contains("phi-3") || model_name.contains("phi3") {
            for &id in &special_order {
                attrs[id as usize] |= attr::RSTRIP;
            }
            set(&mut attrs, "</s>", attr::RSTRIP, true);
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                set(&mut attrs, t, attr::RSTRIP, false);
            }
        } else if model_name.contains("modern-bert") {
            set(&mut attrs, "[MASK]", attr::LSTRIP, true);
        }

        Ok(Vocab {
            kind,
            texts,
            scores,
            attrs,
            bos,
            eos,
            unk,
            add_bos,
            add_eos,
            add_space_prefix,
            clean_spaces,
            eog,
            special_order,
        })
    }
}
