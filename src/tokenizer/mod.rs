//! Text ↔ token ids, rebuilt from GGUF metadata. (Placeholder until the tokenizer lands.)

use crate::gguf::GgufFile;
use crate::Result;

/// Placeholder tokenizer.
#[derive(Debug)]
pub struct Tokenizer {}

impl Tokenizer {
    /// Placeholder.
    pub fn from_gguf(_file: &GgufFile) -> Result<Tokenizer> {
        Ok(Tokenizer {})
    }
}
