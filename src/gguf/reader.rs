//! Parsing and validating a GGUF file.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::ops::Deref;
use std::path::Path;
use std::sync::OnceLock;

use memmap2::Mmap;

use super::{
    invalid, Value, ValueType, DEFAULT_ALIGNMENT, MAGIC, MAX_ARRAY_DEPTH, MAX_ARRAY_ELEMENTS,
    MAX_DIMS, MAX_TENSOR_NAME,
};
use crate::quant::GgmlType;
use crate::{Error, Result};

/// One entry of the tensor table.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// The tensor's name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions, innermost first: `dims[0]` is the row length (ggml's `ne`).
    pub dims: Vec<u64>,
    /// Element type.
    pub ty: GgmlType,
    /// Byte offset of the data from the start of the data section.
    pub offset: u64,
    /// Bytes of data.
    pub size: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Number of rows (the product of every dimension but the first).
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }
}

/// The bytes a [`GgufFile`] reads from: a read-only memory map, or an owned buffer (tests,
/// in-memory files).
enum Storage {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Deref for Storage {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// A metadata value as the parser keeps it.
enum StoredValue {
    Parsed(Value),
    /// A top-level array of strings or scalars, validated at parse but left in the file's
    /// bytes: the vocabulary, merge, score and token-type lists hold hundreds of thousands of
    /// elements, which the tokenizer reads in place ([`GgufFile::get_str_array`],
    /// [`GgufFile::get_f32_array`], [`GgufFile::get_i64_array`]). One `Value` per element (a
    /// 32-byte enum, and an allocation per string) is built only if the array is asked for as a
    /// [`Value`].
    InPlace {
        elem: ValueType,
        /// Offset of the first element in the file.
        start: usize,
        count: usize,
        value: OnceLock<Value>,
    },
}

/// A validated GGUF file: its metadata, its tensor table, and its bytes, from which tensor data
/// is borrowed.
pub struct GgufFile {
    storage: Storage,
    version: u32,
    metadata: Vec<(String, StoredValue)>,
    index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_start: usize,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("bytes", &self.storage.len())
            .finish()
    }
}

impl GgufFile {
    /// Maps the file at `path` read-only and validates it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // Mapping a directory fails with a bare "No such device"; say what is wrong instead.
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(Error::io(
                path,
                std::io::Error::other("is a directory, not a GGUF file"),
            ));
        }
        // SAFETY: the map is read-only and private to this process. Like every mmap-based loader
        // (llama.cpp included) we rely on the file not being truncated or rewritten while mapped;
        // all parsing is bounds-checked against the map's length, which is fixed at map time.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Self::parse(Storage::Mapped(map)).map_err(|e| match e {
            Error::InvalidGguf(what) => Error::InvalidGguf(format!("{}: {what}", path.display())),
            other => other,
        })
    }

    /// Validates a GGUF image held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        Self::parse(Storage::Owned(bytes))
    }

    fn parse(storage: Storage) -> Result<Self> {
        let header = Header::parse(&storage)?;
        let Header {
            version,
            metadata,
            index,
            tensors,
            alignment,
            data_start,
        } = header;
        let tensor_index = tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(GgufFile {
            storage,
            version,
            metadata,
            index,
            tensors,
            tensor_index,
            alignment,
            data_start,
        })
    }

    /// The format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of tensor data in bytes.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Offset of the data section from the start of the file.
    pub fn data_start(&self) -> usize {
        self.data_start
    }

    /// Total file size in bytes.
    pub fn file_size(&self) -> usize {
        self.storage.len()
    }

    /// Every metadata entry in file order.
    pub fn metadata(&self) -> Metadata<'_> {
        Metadata { file: self }
    }

    /// The value as a [`Value`], built on first use for an array kept in place.
    fn resolve<'a>(&'a self, stored: &'a StoredValue) -> &'a Value {
        match stored {
            StoredValue::Parsed(v) => v,
            StoredValue::InPlace {
                elem,
                start,
                count,
                value,
            } => value.get_or_init(|| {
                Value::Array(*elem, self.elements(*elem, *start, *count).collect())
            }),
        }
    }

    /// A cursor at `start`, for reading an in-place array.
    fn cursor_at(&self, start: usize) -> Cursor<'_> {
        Cursor {
            bytes: &self.storage,
            pos: start,
            array_elements_left: 0,
        }
    }

    /// The `count` strings of an in-place array. The parser validated every one of them and the
    /// bytes do not change, so this yields all `count`.
    fn strings(&self, start: usize, count: usize) -> impl Iterator<Item = &str> + '_ {
        let mut cur = self.cursor_at(start);
        (0..count).map_while(move |_| {
            let len = cur.u64(&"string").ok()?;
            let bytes = cur.take(len, &"string").ok()?;
            // SAFETY: `top_level_value` checked that these very bytes are UTF-8 when the file was
            // opened, and they cannot have changed since: an owned buffer is never written, and a
            // map is only sound while its file is not modified (the contract of `open`, without
            // which no byte of the map could be read safely). Validating again would cost a
            // tenth of building a 262k-token vocab.
            Some(unsafe { std::str::from_utf8_unchecked(bytes) })
        })
    }

    /// The `count` elements of type `elem` (not an array) of an in-place array, as values;
    /// validated at parse, as for [`GgufFile::strings`].
    fn elements(
        &self,
        elem: ValueType,
        start: usize,
        count: usize,
    ) -> impl Iterator<Item = Value> + '_ {
        let mut cur = self.cursor_at(start);
        (0..count).map_while(move |_| cur.value(elem, "", 1).ok())
    }

    /// The elements of the array under `key` as values, read in place when they can be.
    fn array_elements(
        &self,
        key: &str,
        expected: &'static str,
    ) -> Result<Box<dyn Iterator<Item = Value> + '_>> {
        if let Some(StoredValue::InPlace {
            elem, start, count, ..
        }) = self.stored(key)
        {
            return Ok(Box::new(self.elements(*elem, *start, *count)));
        }
        let v = self.require(key)?;
        let items = v
            .as_array()
            .ok_or_else(|| Self::wrong_type(key, expected, v))?;
        Ok(Box::new(items.iter().cloned()))
    }

    /// The tensor table in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// What tells this file from another, in hex: a SHA-256 over its metadata count, its tensor
    /// table (names, types, shapes, offsets) and the first 64 bytes of every tensor, so that
    /// two fine-tunes of one base differ without reading every weight.
    pub fn fingerprint_hex(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update((self.metadata().len() as u64).to_le_bytes());
        for t in &self.tensors {
            h.update((t.name.len() as u64).to_le_bytes());
            h.update(t.name.as_bytes());
            h.update(t.ty.to_string().as_bytes());
            t.dims.iter().for_each(|d| h.update(d.to_le_bytes()));
            h.update(t.offset.to_le_bytes());
            let data = self.tensor_data(t);
            h.update(&data[..data.len().min(64)]);
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw bytes of a tensor from this file's table, borrowed from the map.
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        // Validated at parse: data_start + offset + size <= file length for every table entry.
        let start = self.data_start + info.offset as usize;
        self.storage
            .get(start..start + info.size as usize)
            .unwrap_or(&[])
    }

    /// Drops this process's pages of a tensor's bytes (when the file is mapped): for weights the
    /// model has copied into another layout, so that the file's copy does not stay resident too.
    /// Reading the bytes again still works: the pages come back from the file.
    pub fn release(&self, info: &TensorInfo) {
        /// Pages are at least this big; a partial page at either end stays mapped (the
        /// neighbouring tensor may still be in use).
        const PAGE: usize = 4096;
        #[cfg(unix)]
        if let Storage::Mapped(map) = &self.storage {
            let start = (self.data_start + info.offset as usize).next_multiple_of(PAGE);
            let end = (self.data_start + (info.offset + info.size) as usize) / PAGE * PAGE;
            if end > start {
                // SAFETY: the map is private and read-only, so no page of it was ever written;
                // MADV_DONTNEED only unmaps the pages, and any later read faults in the same
                // bytes from the file (which, as for the map itself, must not change meanwhile).
                // The range is inside the map (validated at parse).
                let _ = unsafe {
                    map.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        start,
                        end - start,
                    )
                };
            }
        }
        #[cfg(not(unix))]
        let _ = info;
    }

    /// Whether there is a value under `key` (without building it).
    pub fn contains_key(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.stored(key).map(|v| self.resolve(v))
    }

    fn stored(&self, key: &str) -> Option<&StoredValue> {
        self.index.get(key).map(|&i| &self.metadata[i].1)
    }

    fn require(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| Error::MissingKey {
            key: key.to_string(),
        })
    }

    fn wrong_type(key: &str, expected: &'static str, found: &Value) -> Error {
        Error::WrongType {
            key: key.to_string(),
            expected,
            found: found.type_description(),
        }
    }

    /// The string under `key`.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| Self::wrong_type(key, "string", v))
    }

    /// The string under `key`, or `None` when absent.
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        self.optional(key, Self::get_str)
    }

    /// The integer under `key` (any integer type) as u64; negative values are a type error.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self.require(key)?;
        v.as_integer()
            .and_then(|i| u64::try_from(i).ok())
            .ok_or_else(|| Self::wrong_type(key, "unsigned integer", v))
    }

    /// The integer under `key` as u32.
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        let v = self.require(key)?;
        v.as_integer()
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| Self::wrong_type(key, "u32", v))
    }

    /// The integer under `key` as u32, or `None` when absent.
    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>> {
        self.optional(key, Self::get_u32)
    }

    /// The number under `key` (float or integer) as f32.
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        let v = self.require(key)?;
        v.as_f64()
            .map(|f| f as f32)
            .ok_or_else(|| Self::wrong_type(key, "f32", v))
    }

    /// The number under `key` as f32, or `None` when absent.
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        self.optional(key, Self::get_f32)
    }

    /// The bool under `key`.
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        match self.require(key)? {
            Value::Bool(b) => Ok(*b),
            v => Err(Self::wrong_type(key, "bool", v)),
        }
    }

    /// The bool under `key`, or `None` when absent.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        self.optional(key, Self::get_bool)
    }

    /// The array under `key`.
    pub fn get_array(&self, key: &str) -> Result<&[Value]> {
        let v = self.require(key)?;
        v.as_array()
            .ok_or_else(|| Self::wrong_type(key, "array", v))
    }

    /// The number of elements of the array under `key` (without building the elements).
    pub fn array_len(&self, key: &str) -> Result<usize> {
        match self.stored(key) {
            Some(StoredValue::InPlace { count, .. }) => Ok(*count),
            _ => self.get_array(key).map(<[Value]>::len),
        }
    }

    /// The array of strings under `key`.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        if let Some(StoredValue::InPlace {
            elem: ValueType::String,
            start,
            count,
            ..
        }) = self.stored(key)
        {
            return Ok(self.strings(*start, *count).collect());
        }
        let v = self.require(key)?;
        v.as_array()
            .and_then(|items| items.iter().map(Value::as_str).collect::<Option<Vec<_>>>())
            .ok_or_else(|| Self::wrong_type(key, "array of string", v))
    }

    /// The array of numbers under `key` as f32.
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>> {
        const EXPECTED: &str = "array of f32";
        self.array_elements(key, EXPECTED)?
            .map(|x| x.as_f64().map(|f| f as f32))
            .collect::<Option<Vec<f32>>>()
            .ok_or_else(|| self.wrong_type_of(key, EXPECTED))
    }

    /// The array of integers under `key` as i64.
    pub fn get_i64_array(&self, key: &str) -> Result<Vec<i64>> {
        const EXPECTED: &str = "array of integer";
        self.array_elements(key, EXPECTED)?
            .map(|x| x.as_integer().and_then(|i| i64::try_from(i).ok()))
            .collect::<Option<Vec<i64>>>()
            .ok_or_else(|| self.wrong_type_of(key, EXPECTED))
    }

    /// The type error for the value under `key` (which exists).
    fn wrong_type_of(&self, key: &str, expected: &'static str) -> Error {
        match self.require(key) {
            Ok(v) => Self::wrong_type(key, expected, v),
            Err(e) => e,
        }
    }

    fn optional<'a, T>(
        &'a self,
        key: &str,
        get: impl FnOnce(&'a Self, &str) -> Result<T>,
    ) -> Result<Option<T>> {
        if self.contains_key(key) {
            get(self, key).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// The metadata entries of a [`GgufFile`], in file order.
#[derive(Clone, Copy)]
pub struct Metadata<'a> {
    file: &'a GgufFile,
}

impl<'a> Metadata<'a> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.file.metadata.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.file.metadata.is_empty()
    }

    /// Entry `i`: its key and value.
    pub fn get(&self, i: usize) -> Option<(&'a str, &'a Value)> {
        let (key, stored) = self.file.metadata.get(i)?;
        Some((key.as_str(), self.file.resolve(stored)))
    }

    /// The entries in file order.
    pub fn iter(&self) -> MetadataIter<'a> {
        MetadataIter {
            file: self.file,
            entries: self.file.metadata.iter(),
        }
    }
}

impl<'a> IntoIterator for Metadata<'a> {
    type Item = (&'a str, &'a Value);
    type IntoIter = MetadataIter<'a>;
    fn into_iter(self) -> MetadataIter<'a> {
        self.iter()
    }
}

/// The metadata entries of a [`GgufFile`] as (key, value), in file order.
pub struct MetadataIter<'a> {
    file: &'a GgufFile,
    entries: std::slice::Iter<'a, (String, StoredValue)>,
}

impl<'a> Iterator for MetadataIter<'a> {
    type Item = (&'a str, &'a Value);
    fn next(&mut self) -> Option<Self::Item> {
        let (key, stored) = self.entries.next()?;
        Some((key.as_str(), self.file.resolve(stored)))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.entries.size_hint()
    }
}

impl ExactSizeIterator for MetadataIter<'_> {}

/// Everything before the data section.
struct Header {
    version: u32,
    metadata: Vec<(String, StoredValue)>,
    index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    alignment: u64,
    data_start: usize,
}

/// Fewest bytes one metadata entry takes: key length (8), a 1-byte key, type (4), a 1-byte value.
const MIN_KV_BYTES: u64 = 8 + 1 + 4 + 1;
/// Fewest bytes one tensor info takes: name length (8), 1-byte name, n_dims (4), one dim (8),
/// type (4), offset (8).
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 1 + 4 + 8 + 4 + 8;

impl Header {
    fn parse(bytes: &[u8]) -> Result<Header> {
        let mut cur = Cursor {
            bytes,
            pos: 0,
            array_elements_left: MAX_ARRAY_ELEMENTS,
        };
        if bytes.len() < MAGIC.len() {
            return Err(invalid(format!(
                "not a GGUF file: {} bytes long, shorter than the 4-byte \"GGUF\" magic",
                bytes.len()
            )));
        }
        let magic = cur.take(4, &"magic")?;
        if magic != MAGIC {
            return Err(invalid(format!(
                "not a GGUF file: it starts with \"{}\" (a GGUF file's magic is \"GGUF\")",
                magic.escape_ascii()
            )));
        }
        let version = cur.u32(&"version")?;
        match version {
            2 | 3 => {}
            1 => {
                return Err(invalid(
                    "version 1 is not supported (32-bit counts); re-convert the model",
                ))
            }
            0 => return Err(invalid("version 0 is not a valid GGUF version")),
            v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
                return Err(invalid("big-endian GGUF files are not supported"))
            }
            v => {
                return Err(invalid(format!(
                    "version {v} is newer than this reader (2 and 3 are supported)"
                )))
            }
        }
        let tensor_count = cur.u64(&"tensor count")?;
        let kv_count = cur.u64(&"metadata count")?;
        // Both counts must fit in the bytes that remain, before anything is reserved for them.
        let remaining = cur.remaining() as u64;
        let needed = kv_count.checked_mul(MIN_KV_BYTES).and_then(|kv| {
            tensor_count
                .checked_mul(MIN_TENSOR_INFO_BYTES)?
                .checked_add(kv)
        });
        if needed.is_none_or(|n| n > remaining) {
            return Err(invalid(format!(
                "{tensor_count} tensors and {kv_count} metadata entries cannot fit in the {remaining} bytes that follow the header"
            )));
        }

        let mut metadata = Vec::with_capacity(initial_capacity(kv_count));
        let mut index = HashMap::with_capacity(initial_capacity(kv_count));
        for i in 0..kv_count {
            let key = cur.string(&format_args!("key of metadata entry {i}"))?;
            if key.is_empty() {
                return Err(invalid(format!("metadata entry {i} has an empty key")));
            }
            let tag = cur.u32(&format_args!("value type of `{key}`"))?;
            let ty = ValueType::from_u32(tag)
                .ok_or_else(|| invalid(format!("metadata `{key}` has unknown value type {tag}")))?;
            let value = cur.top_level_value(ty, &key)?;
            if index.insert(key.clone(), metadata.len()).is_some() {
                return Err(invalid(format!("duplicate metadata key `{key}`")));
            }
            metadata.push((key, value));
        }

        let alignment = match index.get("general.alignment").map(|&i| &metadata[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(StoredValue::Parsed(Value::U32(a))) if *a != 0 && a.is_power_of_two() => {
                u64::from(*a)
            }
            Some(StoredValue::Parsed(Value::U32(a))) => {
                return Err(invalid(format!(
                    "general.alignment {a} is not a non-zero power of two"
                )))
            }
            Some(StoredValue::Parsed(v)) => {
                return Err(invalid(format!(
                    "general.alignment has type {}, expected u32",
                    v.type_description()
                )))
            }
            Some(StoredValue::InPlace { elem, .. }) => {
                return Err(invalid(format!(
                    "general.alignment has type array of {}, expected u32",
                    elem.name()
                )))
            }
        };

        let mut tensors = Vec::with_capacity(initial_capacity(tensor_count));
        let mut names = HashMap::with_capacity(initial_capacity(tensor_count));
        for i in 0..tensor_count {
            let info = cur.tensor_info(i, alignment)?;
            if names.insert(info.name.clone(), i).is_some() {
                return Err(invalid(format!("duplicate tensor name `{}`", info.name)));
            }
            tensors.push(info);
        }

        let data_start = align_up(cur.pos as u64, alignment)
            .ok_or_else(|| invalid("data section offset overflows"))?;
        let file_len = bytes.len() as u64;
        // A file without tensors may end right after its header, without padding.
        let data_len = file_len.saturating_sub(data_start);
        if !tensors.is_empty() && data_start > file_len {
            return Err(invalid(format!(
                "data section starts at byte {data_start}, past the end of the {file_len}-byte file"
            )));
        }
        check_tensor_extents(&tensors, data_len)?;

        Ok(Header {
            version,
            metadata,
            index,
            tensors,
            alignment,
            data_start: data_start.min(file_len) as usize,
        })
    }
}

/// Checks that every tensor lies inside the data section and no two overlap.
fn check_tensor_extents(tensors: &[TensorInfo], data_len: u64) -> Result<()> {
    for t in tensors {
        let end = t.offset.checked_add(t.size);
        if end.is_none_or(|e| e > data_len) {
            return Err(invalid(format!(
                "tensor `{}` ({} bytes at offset {}) extends past the end of the {data_len}-byte data section",
                t.name, t.size, t.offset
            )));
        }
    }
    let mut by_offset: Vec<&TensorInfo> = tensors.iter().collect();
    by_offset.sort_by_key(|t| t.offset);
    for pair in by_offset.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        // Cannot overflow: checked above.
        if a.offset + a.size > b.offset {
            return Err(invalid(format!(
                "tensors `{}` and `{}` overlap in the data section",
                a.name, b.name
            )));
        }
    }
    Ok(())
}

/// How many entries to reserve up front for a count read from the file. The count has been
/// checked against the bytes that remain, but an in-memory entry is larger than its smallest
/// encoding (a 1-byte `u8` array element becomes a 32-byte [`Value`]), so reserving it all at
/// once would let a file make us allocate many times its own size before a single entry is
/// parsed. Beyond this, vectors grow with the entries actually read.
fn initial_capacity(count: u64) -> usize {
    const MAX_RESERVED: u64 = 4096;
    count.min(MAX_RESERVED) as usize
}

fn align_up(x: u64, alignment: u64) -> Option<u64> {
    Some(x.checked_add(alignment - 1)? / alignment * alignment)
}

/// Names a metadata value in messages; formatted only when an error is reported, because
/// the vocabulary arrays hold hundreds of thousands of values.
struct ValueOf<'k>(&'k str);

impl fmt::Display for ValueOf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "value of `{}`", self.0)
    }
}

/// A bounds-checked reader over the file's bytes. Every read names what it was reading so the
/// error says where the file went wrong.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// How many more array elements the metadata may hold (see [`MAX_ARRAY_ELEMENTS`]).
    array_elements_left: u64,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: u64, what: &dyn fmt::Display) -> Result<&'a [u8]> {
        if n > self.remaining() as u64 {
            return Err(invalid(format!(
                "{what}: {n} bytes needed at offset {}, only {} remain",
                self.pos,
                self.remaining()
            )));
        }
        let n = n as usize;
        let slice = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &dyn fmt::Display) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &dyn fmt::Display) -> Result<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &dyn fmt::Display) -> Result<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn string(&mut self, what: &dyn fmt::Display) -> Result<String> {
        self.str(what).map(str::to_string)
    }

    /// A string, borrowed from the file.
    fn str(&mut self, what: &dyn fmt::Display) -> Result<&'a str> {
        let len = self.u64(what)?;
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes).map_err(|_| invalid(format!("{what} is not valid UTF-8")))
    }

    /// A metadata entry's value: arrays of strings or scalars are validated and left in place,
    /// anything else is parsed.
    fn top_level_value(&mut self, ty: ValueType, key: &str) -> Result<StoredValue> {
        if ty == ValueType::Array {
            let what = ValueOf(key);
            let header_at = self.pos;
            let (elem, count) = self.array_header(&what)?;
            let start = self.pos;
            let in_place = match elem {
                ValueType::Array => false,
                ValueType::String => {
                    for i in 0..count {
                        self.str(&format_args!("element {i} of the {what}"))?;
                    }
                    true
                }
                ValueType::Bool => {
                    let bytes = self.take(count, &what)?;
                    if let Some(i) = bytes.iter().position(|&b| b > 1) {
                        return Err(invalid(format!(
                            "element {i} of the {what}: bool byte {} is neither 0 nor 1",
                            bytes[i]
                        )));
                    }
                    true
                }
                // Any bytes are a valid number; `array_header` checked that they fit.
                scalar => {
                    self.take(count * scalar.min_encoded_size(), &what)?;
                    true
                }
            };
            if in_place {
                return Ok(StoredValue::InPlace {
                    elem,
                    start,
                    // At most MAX_ARRAY_ELEMENTS (checked by `array_header`).
                    count: count as usize,
                    value: OnceLock::new(),
                });
            }
            // Any other array: parsed from its header again, with its elements' budget back.
            self.pos = header_at;
            self.array_elements_left += count;
        }
        self.value(ty, key, 0).map(StoredValue::Parsed)
    }

    /// An array's element type and length, checked against the bytes that remain and the
    /// elements the metadata may still hold (which the array's elements are charged to).
    fn array_header(&mut self, what: &dyn fmt::Display) -> Result<(ValueType, u64)> {
        let tag = self.u32(what)?;
        let elem = ValueType::from_u32(tag)
            .ok_or_else(|| invalid(format!("{what}: array of unknown value type {tag}")))?;
        let len = self.u64(what)?;
        let fits = len
            .checked_mul(elem.min_encoded_size())
            .is_some_and(|n| n <= self.remaining() as u64);
        if !fits {
            return Err(invalid(format!(
                "{what}: array of {len} {} elements cannot fit in the {} bytes that remain",
                elem.name(),
                self.remaining()
            )));
        }
        // Each element becomes a 32-byte Value, whatever its size in the file.
        if len > self.array_elements_left {
            return Err(invalid(format!(
                "{what}: metadata arrays hold more than {MAX_ARRAY_ELEMENTS} elements in total"
            )));
        }
        self.array_elements_left -= len;
        Ok((elem, len))
    }

    fn value(&mut self, ty: ValueType, key: &str, depth: usize) -> Result<Value> {
        let what = ValueOf(key);
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(&what)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(&what)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(&what)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(&what)?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.array(&what)?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(&what)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(&what)?)),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.array(&what)?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(&what)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(&what)?)),
            ValueType::Bool => match self.array::<1>(&what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(invalid(format!("{what}: bool byte {b} is neither 0 nor 1"))),
            },
            ValueType::String => Value::String(self.string(&what)?),
            ValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(invalid(format!(
                        "{what}: arrays nested more than {MAX_ARRAY_DEPTH} deep"
                    )));
                }
                let (elem, len) = self.array_header(&what)?;
                let mut items = Vec::with_capacity(initial_capacity(len));
                for _ in 0..len {
                    items.push(self.value(elem, key, depth + 1)?);
                }
                Value::Array(elem, items)
            }
        })
    }

    fn tensor_info(&mut self, i: u64, alignment: u64) -> Result<TensorInfo> {
        let name = self.string(&format_args!("name of tensor {i}"))?;
        if name.is_empty() {
            return Err(invalid(format!("tensor {i} has an empty name")));
        }
        if name.len() > MAX_TENSOR_NAME {
            return Err(invalid(format!(
                "tensor name `{name}` is {} bytes long (at most {MAX_TENSOR_NAME})",
                name.len()
            )));
        }
        let n_dims = self.u32(&format_args!("dimension count of `{name}`"))?;
        if n_dims == 0 || n_dims as usize > MAX_DIMS {
            return Err(invalid(format!(
                "tensor `{name}` has {n_dims} dimensions (1 to {MAX_DIMS} allowed)"
            )));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            let dim = self.u64(&format_args!("dimension {d} of `{name}`"))?;
            if dim == 0 {
                return Err(invalid(format!(
                    "tensor `{name}` has dimension {d} of size 0"
                )));
            }
            dims.push(dim);
        }
        let tag = self.u32(&format_args!("type of `{name}`"))?;
        let ty = GgmlType::from_u32(tag)
            .ok_or_else(|| invalid(format!("tensor `{name}` has unknown type id {tag}")))?;
        let offset = self.u64(&format_args!("offset of `{name}`"))?;

        // ggml keeps element counts in int64; the byte size must fit too.
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| {
                invalid(format!(
                    "tensor `{name}` has {dims:?} elements: the count overflows"
                ))
            })?;
        if dims[0] % ty.block_size() as u64 != 0 {
            return Err(invalid(format!(
                "tensor `{name}`: row length {} is not a multiple of {ty}'s block size {}",
                dims[0],
                ty.block_size()
            )));
        }
        let size = ty
            .row_bytes(dims[0])
            .and_then(|row_bytes| row_bytes.checked_mul(n_elements / dims[0]))
            .filter(|&s| s <= i64::MAX as u64)
            .ok_or_else(|| {
                invalid(format!(
                    "tensor `{name}`: byte size of {dims:?} {ty} overflows"
                ))
            })?;
        if offset % alignment != 0 {
            return Err(invalid(format!(
                "tensor `{name}` data offset {offset} is not a multiple of the alignment {alignment}"
            )));
        }
        Ok(TensorInfo {
            name,
            dims,
            ty,
            offset,
            size,
        })
    }
}
