//! Writing GGUF v3 files (tests build malformed and random files with it; the quantizer writes
//! its output with it).

use std::io::Write;

use super::{Value, DEFAULT_ALIGNMENT, MAGIC, MAX_DIMS, MAX_TENSOR_NAME};
use crate::quant::GgmlType;
use crate::{Error, Result};

/// A tensor to be written: name, dims (innermost first), type and raw data.
#[derive(Debug, Clone)]
pub struct TensorToWrite<'a> {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    pub data: std::borrow::Cow<'a, [u8]>,
}

/// Builds a GGUF v3 image: metadata in insertion order, then the tensor table, then the data,
/// each tensor aligned to `general.alignment` (or 32).
#[derive(Debug, Default)]
pub struct GgufWriter<'a> {
    metadata: Vec<(String, Value)>,
    tensors: Vec<TensorToWrite<'a>>,
}

impl<'a> GgufWriter<'a> {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a metadata entry. Values are written as given: a `general.alignment`
    /// that is not a non-zero power-of-two u32 is written too (tests use that), but tensor data
    /// is then aligned to the default 32 and the reader refuses the file.
    pub fn set(&mut self, key: impl Into<String>, value: Value) -> &mut Self {
        let key = key.into();
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.metadata.push((key, value)),
        }
        self
    }

    /// Adds a tensor. The name must be new, 1 to 63 bytes long; there must be 1 to 4 dims, none
    /// of them 0; and the data must be exactly the size the dims and type imply. (The writer only
    /// makes tensor tables the reader accepts; tests that need malformed ones patch the bytes.)
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: Vec<u64>,
        ty: GgmlType,
        data: impl Into<std::borrow::Cow<'a, [u8]>>,
    ) -> Result<&mut Self> {
        let name = name.into();
        let data = data.into();
        let refuse = |why: String| Err(Error::InvalidArgument(format!("tensor `{name}`: {why}")));
        if name.is_empty() || name.len() > MAX_TENSOR_NAME {
            return refuse(format!("name must be 1 to {MAX_TENSOR_NAME} bytes long"));
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return refuse("a tensor of that name was already added".into());
        }
        if dims.is_empty() || dims.len() > MAX_DIMS || dims.contains(&0) {
            return refuse(format!(
                "dims {dims:?} must be 1 to {MAX_DIMS} non-zero sizes"
            ));
        }
        let rows = dims
            .iter()
            .skip(1)
            .try_fold(1u64, |acc, &d| acc.checked_mul(d));
        let expected = rows.and_then(|rows| ty.row_bytes(dims[0])?.checked_mul(rows));
        if expected != Some(data.len() as u64) {
            return Err(Error::InvalidArgument(format!(
                "tensor `{name}`: {} bytes of data do not match {dims:?} of {ty}",
                data.len()
            )));
        }
        self.tensors.push(TensorToWrite {
            name,
            dims,
            ty,
            data,
        });
        Ok(self)
    }

    fn alignment(&self) -> u64 {
        match self.metadata.iter().find(|(k, _)| k == "general.alignment") {
            Some((_, Value::U32(a))) if a.is_power_of_two() => u64::from(*a),
            _ => DEFAULT_ALIGNMENT,
        }
    }

    /// The complete file as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = self.write_to(&mut out);
        out
    }

    /// Writes the file to `path`.
    pub fn write_file(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        let path = path.as_ref();
        let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        let mut w = std::io::BufWriter::new(file);
        self.write_to(&mut w)
            .and_then(|_| w.flush())
            .map_err(|e| Error::io(path, e))
    }

    /// Writes the file to any writer.
    pub fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        let alignment = self.alignment();
        let mut header = Vec::new();
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&3u32.to_le_bytes());
        header.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            encode_string(&mut header, key);
            header.extend_from_slice(&(value.value_type() as u32).to_le_bytes());
            encode_value(&mut header, value);
        }
        let mut offset = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            encode_string(&mut header, &t.name);
            header.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                header.extend_from_slice(&d.to_le_bytes());
            }
            header.extend_from_slice(&(t.ty as u32).to_le_bytes());
            header.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            offset = (offset + t.data.len() as u64).div_ceil(alignment) * alignment;
        }
        let pad = |n: u64| vec![0u8; ((alignment - n % alignment) % alignment) as usize];
        w.write_all(&header)?;
        w.write_all(&pad(header.len() as u64))?;
        let mut data_written = 0u64;
        for (t, &off) in self.tensors.iter().zip(&offsets) {
            w.write_all(&vec![0u8; (off - data_written) as usize])?;
            w.write_all(&t.data)?;
            data_written = off + t.data.len() as u64;
        }
        // Pad the end so that the file length is a multiple of the alignment, as ggml does.
        w.write_all(&pad(data_written))
    }
}

fn encode_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn encode_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => encode_string(out, s),
        Value::Array(elem, items) => {
            out.extend_from_slice(&(*elem as u32).to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                encode_value(out, item);
            }
        }
    }
}
