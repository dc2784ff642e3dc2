//! Text ↔ token ids, rebuilt from GGUF metadata. (Placeholder.)
