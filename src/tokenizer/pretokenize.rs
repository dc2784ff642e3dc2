//! The regex pre-split of byte-level BPE vocabs, chosen by `tokenizer.ggml.pre` exactly as
//! llama.cpp chooses it (llama-vocab.cpp `llm_tokenizer_bpe`, unicode.cpp): a list of regexes,
//! each one splitting the pieces the previous one produced, keeping both the matches and the text
//! between them. The patterns are llama.cpp's adaptations of the upstream `tokenizer.json` ones
//! (case-insensitive groups spelled out, which is what llama.cpp actually runs).

use crate::{Error, Result};

/// GPT-2's split: contractions, letters, digits, other symbols, each with an optional leading
/// space, and whitespace runs that leave their last space to the next word.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Llama 3's split: numbers in groups of at most three, newlines kept apart from other space.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 2's split: Llama 3's with single digits.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
// Six letters of this class (U+1F7D, U+1FD3, U+1FDB, U+1FBE, U+2126, U+212A) are written as
// escapes: each has a canonical equivalent, and a text editor's NFC normalization would
// otherwise turn them into other code points (three of them into range ends below their start).
const DEEPSEEK_LLM: &[&str] = &[
    r"[\r\n]",
    r"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\x{1F7D}ᾀ-ᾴᾶ-ᾼ\x{1FBE}ῂ-ῄῆ-ῌῐ-\x{1FD3}ῖ-\x{1FDB}ῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\x{2126}ℨ\x{212A}-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
    r"\s?[!-/:-~！-／：-～‘-‟　-。]+",
    r"\s+$",
    r"[一-龥ࠀ-一가-퟿]+",
    r"\p{N}+",
];
const DEEPSEEK_CODER: &[&str] = &[
    r"[\r\n]",
    r"\s?\p{L}+",
    r"\s?\p{P}+",
    r"[一-龥ࠀ-一가-퟿]+",
    r"\p{N}",
];
const DEEPSEEK3: &[&str] = &[
    r"\p{N}{1,3}",
    r"[一-龥぀-ゟ゠-ヿ]+",
    r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
];
const PORO: &str = r" ?[^(\s|.,!?…。，、।۔،)]+";
/// Mistral's tekken split, with llama.cpp's ASCII-only upper/lower case distinction.
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const SEED_CODER: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+";
const BAILINGMOE: &str = r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+";
const JAIS2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1}";
const MINICPM5: &[&str] = &[
    r"\p{N}{1,3}",
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const UFAKZEKA: &str =
    r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How a byte-level BPE vocab splits text before merging, and the flags llama.cpp ties to the
/// same `tokenizer.ggml.pre` name.
#[derive(Debug, Clone)]
pub(crate) struct PreTokenizer {
    /// The `tokenizer.ggml.pre` value this came from.
    pub name: String,
    pub regexes: Vec<&'static str>,
    /// Whether detokenization removes spaces before `?!.,` and some contractions.
    pub clean_spaces: bool,
    /// A whole pre-token found in the vocab is one token, whatever the merges say (Llama 3).
    pub ignore_merges: bool,
    /// The default of `add_bos_token` for this family.
    pub add_bos: bool,
    /// The family has no BOS unless the metadata names one (ChatGLM).
    pub no_bos: bool,
}

impl PreTokenizer {
    /// The pre-tokenizer llama.cpp uses for `tokenizer.ggml.pre = name`; an unknown name is an
    /// error rather than a guess, because a wrong split silently changes every tokenization.
    pub fn from_name(name: &str) -> Result<PreTokenizer> {
        let mut p = PreTokenizer {
            name: name.to_string(),
            regexes: Vec::new(),
            clean_spaces: true,
            ignore_merges: false,
            add_bos: false,
            no_bos: false,
        };
        let starcoder: &[&str] = &[r"\p{N}", GPT2];
        let (regexes, clean): (&[&str], bool) = match name {
            "default" => (
                &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
                true,
            ),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" | "jina-v5-nano" => {
                p.ignore_merges = true;
                p.add_bos = true;
                (&[LLAMA3], true)
            }
            "dbrx" | "smaug-bpe" => (&[LLAMA3], true),
            "chatglm-bpe" => {
                p.no_bos = true;
                (&[LLAMA3], true)
            }
            "glm4" | "glm5" => {
                p.no_bos = true;
                p.ignore_merges = true;
                (&[LLAMA3], true)
            }
            "jais-2" => (&[JAIS2], true),
            "minicpm5" => {
                p.ignore_merges = true;
                (MINICPM5, true)
            }
            "deepseek-llm" => (DEEPSEEK_LLM, false),
            "deepseek-coder" => (DEEPSEEK_CODER, false),
            "deepseek-v3" | "hunyuan-dense" | "joyai-llm" | "hy_v4" => (DEEPSEEK3, false),
            "falcon" => (&[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"], true),
            "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
            | "jina-v2-de" | "a.x-4.0" | "mellum" | "modern-bert" | "exaone4" | "mpt" | "olmo"
            | "jais" | "jina-v1-en" | "jina-v2-code" | "roberta-bpe" => (&[GPT2], true),
            "trillion" | "granite-docling" => (&[GPT2], false),
            "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => {
                (starcoder, true)
            }
            "command-r" | "smollm" => (starcoder, false),
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "hunyuan" | "solar-open" => {
                (&[QWEN2], false)
            }
            "stablelm2" | "megrez" => (&[QWEN2], true),
            "grok-2" => (&[QWEN2], false),
            "qwen35" => (&[QWEN35], false),
            "poro-chat" => (&[PORO], false),
            "bloom" | "gpt3-finnish" => (&[PORO], true),
            "viking" => (&[PORO, r"\p{N}"], false),
            "tekken" => {
                p.ignore_merges = true;
                p.add_bos = true;
                (&[TEKKEN], false)
            }
            "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => (&[GPT4O], false),
            "seed-coder" => (&[SEED_CODER], false),
            "bailingmoe" | "bailingmoe2" | "llada-moe" => (&[BAILINGMOE], false),
            "ufakzeka" => (&[UFAKZEKA], false),
            other => {
                return Err(Error::Tokenizer(format!(
                    "unsupported pre-tokenizer `{other}` (tokenizer.ggml.pre)"
                )))
            }
        };
        p.regexes = regexes.to_vec();
        p.clean_spaces = clean;
        Ok(p)
    }
}
