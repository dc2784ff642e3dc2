//! Output constrained to a JSON schema, a regular expression or a grammar, with llguidance:
//! before each token is sampled, every token the constraint does not allow next gets a logit of
//! −∞, and an end-of-generation token is allowed exactly when the constraint accepts the text
//! so far.
//!
//! llguidance works on a token trie of the model's vocabulary (each token's bytes, special
//! tokens marked so that no text can produce them), built once per model ([`Vocabulary`]); each
//! generation then runs its own matcher over it ([`Guide`]). llama.cpp's GBNF grammars are
//! translated to Lark first ([`gbnf`]).

pub mod gbnf;

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{InferenceCapabilities, TokEnv, TokRxInfo, TokTrie, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};

use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// What the generated text must match.
#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    /// A JSON value valid under this JSON schema.
    JsonSchema(serde_json::Value),
    /// Any JSON object.
    JsonObject,
    /// The whole text matches this regular expression (Rust `regex` syntax).
    Regex(String),
    /// A grammar in llguidance's Lark dialect.
    Lark(String),
    /// A grammar in llama.cpp's GBNF, its `root` rule the whole text.
    Gbnf(String),
}

impl Constraint {
    /// A grammar in either format: GBNF when a line defines a rule with `::=` (llama.cpp's
    /// `name ::= …`), else Lark (`name: …`).
    pub fn grammar_text(text: &str) -> Constraint {
        let defines_gbnf_rule = |line: &str| {
            let line = line.trim_start();
            let name_end = line
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .unwrap_or(line.len());
            name_end > 0 && line[name_end..].trim_start().starts_with("::=")
        };
        if text.lines().any(defines_gbnf_rule) {
            Constraint::Gbnf(text.to_string())
        } else {
            Constraint::Lark(text.to_string())
        }
    }

    fn grammar(&self) -> Result<TopLevelGrammar> {
        Ok(match self {
            Constraint::JsonSchema(schema) => {
                TopLevelGrammar::from_json_schema(with_bounded_whitespace(schema))
            }
            Constraint::JsonObject => TopLevelGrammar::from_json_schema(with_bounded_whitespace(
                &serde_json::json!({"type": "object"}),
            )),
            Constraint::Regex(rx) => TopLevelGrammar::from_regex(rx),
            Constraint::Lark(lark) => TopLevelGrammar::from_lark(lark.clone()),
            Constraint::Gbnf(gbnf) => TopLevelGrammar::from_lark(gbnf::to_lark(gbnf)?),
        })
    }
}

/// Whitespace between JSON tokens as llama.cpp's schema grammars allow it: one space, or one
/// newline and up to 20 spaces or tabs of indentation. llguidance's default (any run of
/// whitespace) lets a small model write newlines until its token budget runs out. A schema that
/// sets llguidance's own options (`x-guidance`) keeps them.
pub(crate) fn with_bounded_whitespace(schema: &serde_json::Value) -> serde_json::Value {
    let mut schema = schema.clone();
    if let Some(object) = schema.as_object_mut() {
        object
            .entry("x-guidance")
            .or_insert_with(|| serde_json::json!({"whitespace_pattern": "(?: |\n[ \t]{0,20})"}));
    }
    schema
}

/// The model's tokenizer as llguidance asks for it: the trie of token bytes, and tokenization
/// of bytes (for the literals of a grammar).
struct TokenizerForGuidance {
    trie: TokTrie,
    tokenizer: Arc<Tokenizer>,
}

impl TokenizerEnv for TokenizerForGuidance {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<u32> {
        // Text that is not UTF-8 cannot be typed into a prompt either; the lossy form is what
        // the tokenizer would see.
        self.tokenizer
            .encode(&String::from_utf8_lossy(s), false, false)
            .unwrap_or_default()
    }
}

/// A model's vocabulary for constraints: built once, shared by every generation of the model.
pub struct Vocabulary {
    factory: ParserFactory,
    /// llguidance's EOS, and the model's end-of-generation tokens, all allowed where it is.
    eos: u32,
    eog: Vec<u32>,
    n_vocab: usize,
}

impl std::fmt::Debug for Vocabulary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vocabulary")
            .field("n_vocab", &self.n_vocab)
            .finish_non_exhaustive()
    }
}

impl Vocabulary {
    /// The trie of `tokenizer`'s tokens: each token's bytes as the model writes them (byte
    /// tokens as their byte, SentencePiece's ▁ as a space), control tokens behind llguidance's
    /// special-token marker so that no grammar literal can spell them.
    pub fn new(tokenizer: Arc<Tokenizer>) -> Result<Vocabulary> {
        let n_vocab = tokenizer.vocab_size();
        let eog = tokenizer.eog_tokens().to_vec();
        let eos = tokenizer
            .eos()
            .or_else(|| eog.first().copied())
            .ok_or_else(|| {
                Error::InvalidArgument("constraints need an end-of-generation token".into())
            })?;
        let words: Vec<Vec<u8>> = (0..n_vocab as u32)
            .map(|id| {
                let piece = tokenizer.token_to_piece(id);
                if tokenizer.is_control(id) || tokenizer.is_eog(id) {
                    let mut marked = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                    marked.extend_from_slice(&piece);
                    marked
                } else {
                    piece
                }
            })
            .collect();
        let info = TokRxInfo::new(n_vocab as u32, eos);
        let trie = TokTrie::from(&info, &words);
        let env: TokEnv = Arc::new(TokenizerForGuidance { trie, tokenizer });
        let capabilities = InferenceCapabilities {
            ff_tokens: false,
            conditional_ff_tokens: false,
            backtrack: false,
            fork: false,
        };
        let mut factory = ParserFactory::new(
            &env,
            capabilities,
            &llguidance::earley::SlicedBiasComputer::general_slices(),
        )
        .map_err(|e| Error::InvalidArgument(format!("constraint vocabulary: {e}")))?;
        // The library never prints.
        factory.quiet();
        Ok(Vocabulary {
            factory,
            eos,
            eog,
            n_vocab,
        })
    }
}

/// One generation's constraint: where the text is in the grammar, and the allowed-token mask.
pub struct Guide {
    matcher: Matcher,
    vocabulary: Arc<Vocabulary>,
}

impl std::fmt::Debug for Guide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guide").finish_non_exhaustive()
    }
}

impl Guide {
    /// A guide at the start of `constraint`; a constraint that does not compile is an error
    /// naming why.
    pub fn new(vocabulary: Arc<Vocabulary>, constraint: &Constraint) -> Result<Guide> {
        let parser = vocabulary
            .factory
            .create_parser(constraint.grammar()?)
            .map_err(|e| Error::InvalidArgument(format!("constraint: {e}")))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(Error::InvalidArgument(format!("constraint: {e}")));
        }
        Ok(Guide {
            matcher,
            vocabulary,
        })
    }

    /// Sets every logit the constraint does not allow next to −∞. Every end-of-generation
    /// token stands for llguidance's one EOS: all are allowed when it is.
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<()> {
        let mask = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| Error::InvalidArgument(format!("constraint: {e}")))?;
        let v = &self.vocabulary;
        let eos_allowed = mask.is_allowed(v.eos);
        for (id, l) in logits.iter_mut().enumerate() {
            let id = id as u32;
            let allowed = (id as usize) < v.n_vocab
                && (mask.is_allowed(id) || (eos_allowed && v.eog.contains(&id)));
            if !allowed {
                *l = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    /// Advances past `token`, the one sampled.
    pub fn accept(&mut self, token: u32) -> Result<()> {
        self.matcher
            .consume_token(token)
            .map_err(|e| Error::InvalidArgument(format!("constraint: {e}")))
    }

    /// Whether the text so far is complete under the constraint.
    pub fn is_accepting(&mut self) -> bool {
        self.matcher.is_accepting().unwrap_or(false)
    }
}
