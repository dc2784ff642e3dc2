//! Text ↔ token ids, rebuilt from GGUF metadata. (Placeholder until the tokenizer lands: the
//! signatures are the agreed API.)

use crate::gguf::GgufFile;
use crate::Result;

/// Placeholder tokenizer.
#[derive(Debug)]
pub struct Tokenizer {}

impl Tokenizer {
    pub fn from_gguf(_file: &GgufFile) -> Result<Tokenizer> {
        Ok(Tokenizer {})
    }
    pub fn encode(
        &self,
        _text: &str,
        _add_special: bool,
        _parse_special: bool,
    ) -> Result<Vec<u32>> {
        todo!()
    }
    pub fn decode(&self, _ids: &[u32]) -> String {
        todo!()
    }
    pub fn token_to_piece(&self, _id: u32) -> Vec<u8> {
        todo!()
    }
    pub fn token_text(&self, _id: u32) -> Option<&str> {
        todo!()
    }
    pub fn vocab_size(&self) -> usize {
        todo!()
    }
    pub fn bos(&self) -> Option<u32> {
        todo!()
    }
    pub fn eos(&self) -> Option<u32> {
        todo!()
    }
    pub fn add_bos(&self) -> bool {
        todo!()
    }
    pub fn add_eos(&self) -> bool {
        todo!()
    }
    pub fn is_eog(&self, _id: u32) -> bool {
        todo!()
    }
    pub fn eog_tokens(&self) -> &[u32] {
        todo!()
    }
}

/// Placeholder.
#[derive(Debug, Default)]
pub struct StreamDecoder {}

impl StreamDecoder {
    pub fn new() -> Self {
        StreamDecoder {}
    }
    pub fn push(&mut self, _tok: &Tokenizer, _id: u32) -> String {
        todo!()
    }
    pub fn finish(&mut self) -> String {
        todo!()
    }
}
