//! Sessions saved to a file and restored, in this process or another, on the same model: the
//! tokens the cache holds, their keys and values (the positions held only), and the logits of
//! the last one, so that a generation from the restored session continues exactly as one from
//! the original would, without evaluating anything again.
//!
//! The file, little-endian:
//!
//! | bytes | what |
//! |---|---|
//! | 8 | magic `LLMRTSES` |
//! | 4 | format version (1) |
//! | 4 | length of the header |
//! | header | JSON: the model's fingerprint and shape, the cache's element type, the token count |
//! | 4 × tokens | the tokens |
//! | 4 × n_vocab | the logits after the last token |
//! | tokens × bytes per position | keys then values of each layer in turn |
//! | 32 | SHA-256 of everything before |
//!
//! Restoring reads the whole file, checks its length against the header, the checksum, and the
//! header against the session before anything of the session changes: a truncated or altered
//! file, another model's, another format version or one that does not fit the context is
//! refused with [`Error::InvalidSessionFile`] and the session is as it was.

use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Session;
use crate::model::KvType;
use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"LLMRTSES";
const VERSION: u32 = 1;
const CHECKSUM_BYTES: usize = 32;
/// A header longer than this is not one we wrote.
const MAX_HEADER_BYTES: usize = 1 << 16;

/// What a saved session says about where it came from and what it holds.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Header {
    /// [`crate::Model::fingerprint`] of the model, in hex.
    model: String,
    n_vocab: usize,
    bytes_per_position: usize,
    kv_type: String,
    n_tokens: usize,
    /// Whether the logits are those of the last token (else they are not restored).
    logits: bool,
    /// The LoRA adapters the cache was computed with: each one's fingerprint and scale.
    loras: Vec<(String, f32)>,
}

fn kv_type_name(ty: KvType) -> &'static str {
    match ty {
        KvType::F16 => "f16",
        KvType::F32 => "f32",
    }
}

fn invalid(why: impl Into<String>) -> Error {
    Error::InvalidSessionFile(why.into())
}

impl Session {
    /// The session's state as the bytes of a saved-session file.
    pub fn saved_bytes(&self) -> Vec<u8> {
        let n = self.tokens.len();
        let header = Header {
            model: self.model.fingerprint_hex(),
            n_vocab: self.logits.len(),
            bytes_per_position: self.kv.bytes_per_position(),
            kv_type: kv_type_name(self.kv.kv_type()).into(),
            n_tokens: n,
            logits: self.logits_current,
            loras: self.lora_fingerprints(),
        };
        // Serializing a struct of strings and integers cannot fail.
        let header = serde_json::to_vec(&header).unwrap_or_default();
        let mut out = Vec::with_capacity(
            24 + header.len() + 4 * (n + self.logits.len()) + n * self.kv.bytes_per_position(),
        );
        out.extend_from_slice(MAGIC);
        out.extend(VERSION.to_le_bytes());
        out.extend((header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        self.tokens.iter().for_each(|t| out.extend(t.to_le_bytes()));
        self.logits.iter().for_each(|l| out.extend(l.to_le_bytes()));
        self.kv.append_rows(n, &mut out);
        let checksum = Sha256::digest(&out);
        out.extend_from_slice(&checksum);
        out
    }

    /// Saves the session to `path` (written beside it first and renamed, so that a failure
    /// never leaves half a file under that name).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = Path::new(&partial);
        let mut file = std::fs::File::create(partial).map_err(io)?;
        file.write_all(&self.saved_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(partial, path).map_err(io)
    }

    /// Restores the state of a saved session from `path`; on any error the session is left as
    /// it was.
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = read_bounded(path, self.max_saved_bytes())?;
        self.restore(&bytes).map_err(|e| match e {
            Error::InvalidSessionFile(why) => {
                Error::InvalidSessionFile(format!("{}: {why}", path.display()))
            }
            other => other,
        })
    }

    /// The largest file a session of this model and context can have saved.
    fn max_saved_bytes(&self) -> u64 {
        let n = self.n_ctx() as u64;
        24 + MAX_HEADER_BYTES as u64
            + 4 * (n + self.logits.len() as u64)
            + n * self.kv.bytes_per_position() as u64
            + CHECKSUM_BYTES as u64
    }

    /// Restores the state `bytes` (a saved-session file) holds; every check comes before the
    /// session changes.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        let (body, checksum) = bytes
            .split_at_checked(bytes.len().saturating_sub(CHECKSUM_BYTES))
            .filter(|(body, _)| body.len() >= 16)
            .ok_or_else(|| invalid("too short to be a saved session"))?;
        if &body[..8] != MAGIC {
            return Err(invalid("not a saved llmrt session (wrong magic)"));
        }
        let version = u32::from_le_bytes([body[8], body[9], body[10], body[11]]);
        if version != VERSION {
            return Err(invalid(format!(
                "format version {version}; this llmrt reads version {VERSION}"
            )));
        }
        if Sha256::digest(body).as_slice() != checksum {
            return Err(invalid(
                "the checksum does not match: the file is damaged or truncated",
            ));
        }
        let header_len = u32::from_le_bytes([body[12], body[13], body[14], body[15]]) as usize;
        let header_bytes = body
            .get(16..16 + header_len)
            .filter(|_| header_len <= MAX_HEADER_BYTES)
            .ok_or_else(|| invalid(format!("a header of {header_len} bytes does not fit")))?;
        let header: Header = serde_json::from_slice(header_bytes)
            .map_err(|e| invalid(format!("the header: {e}")))?;
        let expected = Header {
            model: self.model.fingerprint_hex(),
            n_vocab: self.logits.len(),
            bytes_per_position: self.kv.bytes_per_position(),
            kv_type: kv_type_name(self.kv.kv_type()).into(),
            n_tokens: header.n_tokens,
            logits: header.logits,
            loras: self.lora_fingerprints(),
        };
        if header.model != expected.model {
            return Err(invalid("it was saved with another model"));
        }
        if header.loras != expected.loras {
            return Err(invalid(
                "it was saved with other LoRA adapters (or scales) than this session has",
            ));
        }
        if header != expected {
            return Err(invalid(format!(
                "its cache has another shape or type ({} bytes per position, {}; this session: \
                 {}, {})",
                header.bytes_per_position,
                header.kv_type,
                expected.bytes_per_position,
                expected.kv_type
            )));
        }
        let n = header.n_tokens;
        if n > self.n_ctx() {
            return Err(invalid(format!(
                "it holds {n} tokens; this session's context holds {}",
                self.n_ctx()
            )));
        }
        let n_vocab = self.logits.len();
        let data = &body[16 + header_len..];
        let kv_bytes = n * self.kv.bytes_per_position();
        if data.len() != 4 * (n + n_vocab) + kv_bytes {
            return Err(invalid(format!(
                "{} bytes of data where {n} tokens take {}",
                data.len(),
                4 * (n + n_vocab) + kv_bytes
            )));
        }
        let (token_bytes, rest) = data.split_at(4 * n);
        let (logit_bytes, kv) = rest.split_at(4 * n_vocab);
        let tokens: Vec<u32> = token_bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if let Some(bad) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(invalid(format!("token {bad} is outside the vocabulary")));
        }
        // Every check passed: only now does the session change.
        self.tokens = tokens;
        self.kv.set_rows(n, kv);
        self.saved.0 = None;
        self.logits_current = header.logits;
        if header.logits {
            for (l, b) in self.logits.iter_mut().zip(logit_bytes.chunks_exact(4)) {
                *l = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
            // A generation whose prompt is exactly these tokens starts from their logits, as
            // it would have in the saved session.
            self.save_logits();
        }
        Ok(())
    }
}

impl Session {
    fn lora_fingerprints(&self) -> Vec<(String, f32)> {
        self.loras
            .iter()
            .map(|l| (l.adapter.fingerprint_hex().to_string(), l.scale))
            .collect()
    }
}

/// The bytes of the file at `path`, refused without reading when longer than `max`.
fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>> {
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > max {
        return Err(Error::InvalidSessionFile(format!(
            "{}: {len} bytes, more than a session of this model and context can hold ({max})",
            path.display()
        )));
    }
    std::fs::read(path).map_err(io)
}
