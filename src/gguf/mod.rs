//! GGUF: the file format, and nothing about models.
//!
//! ```text
//! offset  field
//! 0       magic            "GGUF" (bytes 47 47 55 46)
//! 4       version          u32, 2 or 3 (v1 used 32-bit counts and is refused)
//! 8       tensor_count     u64
//! 16      metadata_count   u64
//! 24      metadata         metadata_count × { key: string, value_type: u32, value }
//!         tensor infos     tensor_count × { name: string, n_dims: u32, dims: u64 × n_dims,
//!                                           type: u32 (ggml type id), offset: u64 }
//!         padding          to `general.alignment` (u32, default 32)
//!         data             tensor bytes; each tensor at data_start + offset, offset aligned
//!
//! string  = { len: u64, bytes: [u8; len] }  (UTF-8, not NUL-terminated)
//! value   = scalar of value_type | string | array { elem_type: u32, len: u64, elems }
//! ```
//! All integers are little-endian. `dims[0]` is the row length (ggml's `ne[0]`), and must be a
//! whole number of blocks of the tensor's type.
//!
//! The reader checks every count, length and offset against the bytes that remain before it
//! allocates or slices, so a malformed file yields [`Error::InvalidGguf`] and never a panic, a huge
//! allocation or an out-of-bounds read. Tensor data is borrowed from the memory map.

mod reader;
mod value;
pub mod writer;

pub use reader::{GgufFile, Metadata, MetadataIter, TensorInfo};
pub use value::{Value, ValueType};
pub use writer::GgufWriter;

/// The four magic bytes every GGUF file starts with.
pub const MAGIC: &[u8; 4] = b"GGUF";
/// Alignment of the data section and of each tensor when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Longest tensor name ggml accepts (`GGML_MAX_NAME` is 64 including the NUL).
pub const MAX_TENSOR_NAME: usize = 63;
/// Most dimensions a ggml tensor has.
pub const MAX_DIMS: usize = 4;
/// Deepest nesting of arrays inside arrays the reader accepts.
pub const MAX_ARRAY_DEPTH: usize = 4;
/// Most array elements (nested ones included) the metadata of one file may hold. Each becomes a
/// 32-byte [`Value`] in memory, so without a cap a file of one-byte elements would cost 32 times
/// its size; the largest real vocabularies (tokens, scores, types, merges) use a few million.
pub const MAX_ARRAY_ELEMENTS: u64 = 1 << 24;

use crate::Error;

pub(crate) fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidGguf(msg.into())
}
