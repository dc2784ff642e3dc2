//! Chat templates. (Placeholder until the templates land: the signatures are the agreed API.)

use crate::gguf::GgufFile;
use crate::Result;

/// One message of a conversation.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// Placeholder.
#[derive(Debug)]
pub struct ChatTemplate {}

impl ChatTemplate {
    pub fn from_gguf(_file: &GgufFile) -> Result<ChatTemplate> {
        todo!()
    }
    pub fn builtin(_name: &str) -> Result<ChatTemplate> {
        todo!()
    }
    pub fn from_source(_source: &str) -> Result<ChatTemplate> {
        todo!()
    }
    pub fn render(
        &self,
        _messages: &[ChatMessage],
        _add_generation_prompt: bool,
        _bos_token: &str,
        _eos_token: &str,
    ) -> Result<String> {
        todo!()
    }
    pub fn source(&self) -> &str {
        todo!()
    }
}
