//! The GGUF reader and writer: one test per class of malformed file (each must be refused with
//! an `InvalidGguf` message naming the problem, never a panic), property tests (writer → reader
//! round trips; byte flips and truncations never panic) and the real test models (`llmrt inspect`
//! is tested with the CLI, in cli/tests/inspect.rs).

use std::borrow::Cow;

use llmrt::gguf::{GgufFile, GgufWriter, Value, ValueType};
use llmrt::quant::GgmlType;
use llmrt::Error;

#[path = "common/models.rs"]
mod models;
use models::model_path;

// ---------------------------------------------------------------------------------------------
// Building files: the writer for valid ones, a raw byte builder for malformed ones.
// ---------------------------------------------------------------------------------------------

/// A GGUF image assembled field by field, so that any field can hold any value.
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        Raw(b"GGUF".to_vec()).u32(version).u64(n_tensors).u64(n_kv)
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    fn str(self, s: &str) -> Self {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }
    /// A metadata key and value type tag; the value follows.
    fn kv(self, key: &str, tag: u32) -> Self {
        self.str(key).u32(tag)
    }
    fn kv_u32(self, key: &str, v: u32) -> Self {
        self.kv(key, ValueType::U32 as u32).u32(v)
    }
    fn kv_str(self, key: &str, v: &str) -> Self {
        self.kv(key, ValueType::String as u32).str(v)
    }
    fn tensor(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Self {
        let mut r = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            r = r.u64(d);
        }
        r.u32(ty).u64(offset)
    }
    /// Pads to the default alignment of 32, then `len` data bytes.
    fn data(mut self, len: usize) -> Self {
        let padded = self.0.len().div_ceil(32) * 32;
        self.0.resize(padded + len, 0);
        self
    }
    fn build(self) -> Vec<u8> {
        self.0
    }
}

/// A valid file with metadata of several types and three tensors; the last tensor's data ends
/// exactly at the end of the file (no trailing padding), so any truncation cuts real data.
fn sample_file() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String("llama".into()))
        .set("general.alignment", Value::U32(32))
        .set("llama.context_length", Value::U32(2048))
        .set(
            "tokenizer.ggml.tokens",
            Value::Array(
                ValueType::String,
                vec![Value::String("<s>".into()), Value::String("hi".into())],
            ),
        )
        .set(
            "tokenizer.ggml.scores",
            Value::Array(ValueType::F32, vec![Value::F32(0.0), Value::F32(-1.5)]),
        );
    let a: Vec<u8> = (0..16u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
    w.add_tensor("a", vec![8, 2], GgmlType::F32, a).unwrap();
    w.add_tensor("b", vec![64, 2], GgmlType::Q4_0, vec![7u8; 4 * 18])
        .unwrap();
    w.add_tensor("c", vec![32], GgmlType::F32, vec![1u8; 128])
        .unwrap();
    w.to_bytes()
}

/// The reader's message for `bytes`, which must be refused as invalid GGUF.
fn invalid_message(bytes: Vec<u8>) -> String {
    match GgufFile::from_bytes(bytes) {
        Err(Error::InvalidGguf(msg)) => msg,
        Err(other) => panic!("expected InvalidGguf, got another error: {other}"),
        Ok(f) => panic!("expected InvalidGguf, the file was accepted: {f:?}"),
    }
}

/// Asserts that `bytes` is refused with a message containing every one of `words`.
fn assert_invalid(bytes: Vec<u8>, words: &[&str]) {
    let msg = invalid_message(bytes);
    for w in words {
        assert!(
            msg.to_lowercase().contains(&w.to_lowercase()),
            "message {msg:?} does not mention {w:?}"
        );
    }
}

/// Overwrites bytes at `at`.
fn patch(mut bytes: Vec<u8>, at: usize, with: &[u8]) -> Vec<u8> {
    bytes[at..at + with.len()].copy_from_slice(with);
    bytes
}

/// A file with no metadata and one tensor info as given, followed by `data_len` data bytes.
fn one_tensor(name: &str, dims: &[u64], ty: u32, offset: u64, data_len: usize) -> Vec<u8> {
    Raw::header(3, 1, 0)
        .tensor(name, dims, ty, offset)
        .data(data_len)
        .build()
}

// ---------------------------------------------------------------------------------------------
// Valid files.
// ---------------------------------------------------------------------------------------------

#[test]
fn sample_file_reads_back() {
    let f = GgufFile::from_bytes(sample_file()).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(f.get_u32("llama.context_length").unwrap(), 2048);
    assert_eq!(
        f.get_str_array("tokenizer.ggml.tokens").unwrap(),
        ["<s>", "hi"]
    );
    assert_eq!(
        f.get_f32_array("tokenizer.ggml.scores").unwrap(),
        [0.0, -1.5]
    );
    let names: Vec<&str> = f.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    let a = f.tensor("a").unwrap();
    assert_eq!(a.dims, [8, 2]);
    assert_eq!(a.size, 64);
    assert_eq!(&f.tensor_data(a)[4..8], &1.0f32.to_le_bytes());
    let b = f.tensor("b").unwrap();
    assert_eq!((b.ty, b.size, b.offset), (GgmlType::Q4_0, 72, 64));
    assert!(f.tensor_data(b).iter().all(|&x| x == 7));
    let c = f.tensor("c").unwrap();
    assert_eq!(
        c.offset + c.size + f.data_start() as u64,
        f.file_size() as u64
    );
    // Typed getters name the key on errors.
    match f.get_u32("general.architecture") {
        Err(Error::WrongType { key, .. }) => assert_eq!(key, "general.architecture"),
        other => panic!("expected WrongType, got {other:?}"),
    }
    match f.get_str("general.name") {
        Err(Error::MissingKey { key }) => assert_eq!(key, "general.name"),
        other => panic!("expected MissingKey, got {other:?}"),
    }
}

#[test]
fn writer_refuses_tensors_the_reader_would_refuse() {
    let mut w = GgufWriter::new();
    let long = "x".repeat(64);
    assert!(w
        .add_tensor(long, vec![1], GgmlType::F32, vec![0u8; 4])
        .is_err());
    assert!(w
        .add_tensor("", vec![1], GgmlType::F32, vec![0u8; 4])
        .is_err());
    assert!(w.add_tensor("t", vec![], GgmlType::F32, vec![]).is_err());
    assert!(w
        .add_tensor("t", vec![1, 0], GgmlType::F32, vec![])
        .is_err());
    assert!(w
        .add_tensor("t", vec![1; 5], GgmlType::F32, vec![0u8; 4])
        .is_err());
    assert!(w
        .add_tensor("t", vec![2], GgmlType::F32, vec![0u8; 4])
        .is_err());
    assert!(w
        .add_tensor("t", vec![1], GgmlType::F32, vec![0u8; 4])
        .is_ok());
    assert!(w
        .add_tensor("t", vec![1], GgmlType::F32, vec![0u8; 4])
        .is_err());
    // The longest name ggml accepts, and four dimensions, are fine.
    let longest = "y".repeat(63);
    w.add_tensor(
        longest.clone(),
        vec![1, 1, 1, 2],
        GgmlType::F32,
        vec![0u8; 8],
    )
    .unwrap();
    let f = GgufFile::from_bytes(w.to_bytes()).unwrap();
    assert_eq!(f.tensor(&longest).unwrap().dims, [1, 1, 1, 2]);
}

#[test]
fn version_2_and_files_without_tensors_are_accepted() {
    let v2 = patch(sample_file(), 4, &2u32.to_le_bytes());
    assert_eq!(GgufFile::from_bytes(v2).unwrap().version(), 2);
    let empty = Raw::header(3, 0, 1).kv_u32("k", 1).build();
    let f = GgufFile::from_bytes(empty).unwrap();
    assert!(f.tensors().is_empty());
    assert_eq!(f.get_u32("k").unwrap(), 1);
}

// ---------------------------------------------------------------------------------------------
// One test per class of malformed file.
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_magic() {
    assert_invalid(patch(sample_file(), 0, b"GGML"), &["magic"]);
    assert_invalid(b"GG".to_vec(), &["magic"]);
}

#[test]
fn version_0() {
    assert_invalid(patch(sample_file(), 4, &0u32.to_le_bytes()), &["version 0"]);
}

#[test]
fn version_1() {
    assert_invalid(patch(sample_file(), 4, &1u32.to_le_bytes()), &["version 1"]);
}

#[test]
fn version_from_the_future() {
    assert_invalid(
        patch(sample_file(), 4, &4u32.to_le_bytes()),
        &["version 4", "newer"],
    );
    assert_invalid(
        patch(sample_file(), 4, &0x0300_0000u32.to_le_bytes()),
        &["big-endian"],
    );
}

#[test]
fn tensor_count_larger_than_the_file_could_hold() {
    for count in [1_000_000u64, u64::MAX / 2, u64::MAX] {
        assert_invalid(
            patch(sample_file(), 8, &count.to_le_bytes()),
            &["tensors", "cannot fit"],
        );
    }
}

#[test]
fn metadata_count_larger_than_the_file_could_hold() {
    for count in [1_000_000u64, u64::MAX / 14 + 1, u64::MAX] {
        assert_invalid(
            patch(sample_file(), 16, &count.to_le_bytes()),
            &["metadata entries", "cannot fit"],
        );
    }
}

#[test]
fn key_length_past_end_of_file() {
    let bytes = Raw::header(3, 0, 1).u64(1000).bytes(b"general").build();
    assert_invalid(bytes, &["key of metadata entry 0", "1000 bytes needed"]);
}

#[test]
fn key_length_absurdly_large() {
    let bytes = Raw::header(3, 0, 1)
        .u64(u64::MAX)
        .bytes(&[b'k'; 32])
        .build();
    assert_invalid(
        bytes,
        &[
            "key of metadata entry 0",
            &format!("{} bytes needed", u64::MAX),
        ],
    );
}

#[test]
fn string_value_length_past_end_of_file() {
    let bytes = Raw::header(3, 0, 1)
        .kv("general.name", ValueType::String as u32)
        .u64(1 << 40)
        .bytes(b"SmolLM2")
        .build();
    assert_invalid(bytes, &["value of `general.name`", "bytes needed"]);
}

#[test]
fn string_not_utf8() {
    let bytes = Raw::header(3, 0, 1)
        .kv("general.name", ValueType::String as u32)
        .u64(2)
        .bytes(&[0xC3, 0x28])
        .build();
    assert_invalid(bytes, &["general.name", "UTF-8"]);
}

/// Arrays of strings are validated at open although they are read in place later.
#[test]
fn string_array_element_not_utf8_or_truncated() {
    let bytes = Raw::header(3, 0, 1)
        .kv("tokenizer.ggml.tokens", ValueType::Array as u32)
        .u32(ValueType::String as u32)
        .u64(2)
        .u64(1)
        .bytes(b"a")
        .u64(2)
        .bytes(&[0xC3, 0x28])
        .build();
    assert_invalid(
        bytes,
        &["element 1 of the value of `tokenizer.ggml.tokens`", "UTF-8"],
    );
    let bytes = Raw::header(3, 0, 1)
        .kv("tokenizer.ggml.tokens", ValueType::Array as u32)
        .u32(ValueType::String as u32)
        .u64(2)
        .u64(1)
        .bytes(b"a")
        .u64(5)
        .bytes(b"ab")
        .build();
    assert_invalid(
        bytes,
        &[
            "element 1 of the value of `tokenizer.ggml.tokens`",
            "bytes needed",
        ],
    );
}

#[test]
fn empty_key() {
    let bytes = Raw::header(3, 0, 2).kv_u32("a", 1).kv_u32("", 1).build();
    assert_invalid(bytes, &["metadata entry 1", "empty key"]);
}

#[test]
fn duplicate_key() {
    let bytes = Raw::header(3, 0, 2)
        .kv_str("general.name", "a")
        .kv_str("general.name", "b")
        .build();
    assert_invalid(bytes, &["duplicate metadata key `general.name`"]);
}

#[test]
fn unknown_value_type() {
    let bytes = Raw::header(3, 0, 1).kv("k", 13).u32(0).build();
    assert_invalid(bytes, &["`k`", "unknown value type 13"]);
    let in_array = Raw::header(3, 0, 1)
        .kv("k", ValueType::Array as u32)
        .u32(0xFFFF)
        .u64(0)
        .build();
    assert_invalid(in_array, &["`k`", "unknown value type 65535"]);
}

#[test]
fn array_length_past_end_of_file() {
    let bytes = Raw::header(3, 0, 1)
        .kv("tokenizer.ggml.scores", ValueType::Array as u32)
        .u32(ValueType::F32 as u32)
        .u64(1000)
        .bytes(&[0u8; 16])
        .build();
    assert_invalid(
        bytes,
        &["tokenizer.ggml.scores", "array of 1000 f32", "cannot fit"],
    );
    let absurd = Raw::header(3, 0, 1)
        .kv("k", ValueType::Array as u32)
        .u32(ValueType::U64 as u32)
        .u64(u64::MAX)
        .bytes(&[0u8; 16])
        .build();
    assert_invalid(absurd, &["`k`", "cannot fit"]);
}

#[test]
fn metadata_arrays_with_too_many_elements_in_total() {
    // Refused from the array header, before any element is read or reserved.
    let len = llmrt::gguf::MAX_ARRAY_ELEMENTS + 1;
    let bytes = Raw::header(3, 0, 1)
        .kv("k", ValueType::Array as u32)
        .u32(ValueType::U8 as u32)
        .u64(len)
        .bytes(&vec![0u8; len as usize])
        .build();
    assert_invalid(bytes, &["`k`", "elements in total"]);
}

/// An array value nested `depth` arrays deep, the innermost holding one u8.
fn nested_array(depth: usize) -> Vec<u8> {
    let mut r = Raw::header(3, 0, 1).kv("nested", ValueType::Array as u32);
    for _ in 1..depth {
        r = r.u32(ValueType::Array as u32).u64(1);
    }
    r.u32(ValueType::U8 as u32).u64(1).bytes(&[42]).build()
}

#[test]
fn arrays_nested_too_deep() {
    let f = GgufFile::from_bytes(nested_array(4)).unwrap();
    let mut v = f.get("nested").unwrap();
    for _ in 0..4 {
        v = &v.as_array().unwrap()[0];
    }
    assert_eq!(v, &Value::U8(42));
    assert_invalid(nested_array(5), &["`nested`", "nested more than 4 deep"]);
    assert_invalid(nested_array(10_000), &["nested more than 4 deep"]);
}

fn with_alignment_value(tag: u32, value: &[u8]) -> Vec<u8> {
    Raw::header(3, 1, 1)
        .kv("general.alignment", tag)
        .bytes(value)
        .tensor("t", &[8], GgmlType::F32 as u32, 0)
        .data(32)
        .build()
}

#[test]
fn alignment_zero() {
    assert_invalid(
        with_alignment_value(ValueType::U32 as u32, &0u32.to_le_bytes()),
        &["general.alignment 0", "power of two"],
    );
}

#[test]
fn alignment_not_a_power_of_two() {
    assert_invalid(
        with_alignment_value(ValueType::U32 as u32, &48u32.to_le_bytes()),
        &["general.alignment 48", "power of two"],
    );
    // The writer writes what it is given, and the reader refuses it.
    let mut w = GgufWriter::new();
    w.set("general.alignment", Value::U32(24));
    assert_invalid(w.to_bytes(), &["general.alignment 24"]);
}

#[test]
fn alignment_of_the_wrong_type() {
    assert_invalid(
        with_alignment_value(ValueType::U64 as u32, &32u64.to_le_bytes()),
        &["general.alignment", "type u64", "expected u32"],
    );
    assert_invalid(
        with_alignment_value(ValueType::I32 as u32, &32i32.to_le_bytes()),
        &["general.alignment", "type i32"],
    );
}

#[test]
fn a_larger_alignment_is_honoured() {
    let mut w = GgufWriter::new();
    w.set("general.alignment", Value::U32(256));
    w.add_tensor("x", vec![4], GgmlType::F32, vec![1u8; 16])
        .unwrap();
    w.add_tensor("y", vec![4], GgmlType::F32, vec![2u8; 16])
        .unwrap();
    let f = GgufFile::from_bytes(w.to_bytes()).unwrap();
    assert_eq!(f.alignment(), 256);
    assert_eq!(f.data_start() % 256, 0);
    assert_eq!(f.tensor("y").unwrap().offset, 256);
    assert!(f
        .tensor_data(f.tensor("y").unwrap())
        .iter()
        .all(|&b| b == 2));
    // An offset aligned to 32 but not to 256 is refused under this alignment.
    let bytes = Raw::header(3, 1, 1)
        .kv_u32("general.alignment", 256)
        .tensor("t", &[8], GgmlType::F32 as u32, 32)
        .data(512)
        .build();
    assert_invalid(bytes, &["offset 32", "alignment 256"]);
}

#[test]
fn tensor_name_too_long() {
    let name = "blk.0.".to_string() + &"x".repeat(58);
    assert_eq!(name.len(), 64);
    assert_invalid(
        one_tensor(&name, &[8], GgmlType::F32 as u32, 0, 32),
        &["tensor name", "64 bytes long"],
    );
    assert_invalid(
        one_tensor("", &[8], GgmlType::F32 as u32, 0, 32),
        &["tensor 0", "empty name"],
    );
}

#[test]
fn duplicate_tensor_name() {
    let bytes = Raw::header(3, 2, 0)
        .tensor("w", &[8], GgmlType::F32 as u32, 0)
        .tensor("w", &[8], GgmlType::F32 as u32, 32)
        .data(64)
        .build();
    assert_invalid(bytes, &["duplicate tensor name `w`"]);
}

#[test]
fn zero_dimensions() {
    assert_invalid(
        one_tensor("w", &[], GgmlType::F32 as u32, 0, 32),
        &["`w`", "0 dimensions"],
    );
}

#[test]
fn more_than_four_dimensions() {
    assert_invalid(
        one_tensor("w", &[1, 1, 1, 1, 8], GgmlType::F32 as u32, 0, 32),
        &["`w`", "5 dimensions"],
    );
    // A huge dimension count must not make the reader reserve memory for it.
    let bytes = Raw::header(3, 1, 0).str("w").u32(u32::MAX).data(64).build();
    assert_invalid(bytes, &["`w`", &format!("{} dimensions", u32::MAX)]);
}

#[test]
fn a_dimension_of_zero() {
    assert_invalid(
        one_tensor("w", &[8, 0], GgmlType::F32 as u32, 0, 32),
        &["`w`", "dimension 1 of size 0"],
    );
}

#[test]
fn element_count_overflows() {
    // 2^32 · 2^32 overflows u64; 2^32 · 2^31 = 2^63 fits u64 but not ggml's int64 counts.
    for dims in [[1u64 << 32, 1 << 32], [1 << 32, 1 << 31]] {
        assert_invalid(
            one_tensor("w", &dims, GgmlType::F32 as u32, 0, 32),
            &["`w`", "count overflows"],
        );
    }
}

#[test]
fn byte_size_overflows() {
    // 2^61 f32 elements are a valid count, but 2^63 bytes are not.
    assert_invalid(
        one_tensor("w", &[1 << 61], GgmlType::F32 as u32, 0, 32),
        &["`w`", "byte size", "overflows"],
    );
    // Likewise for a block type: 2^63 - 32 Q8_0 elements fit int64, but their 2^58 - 1 blocks
    // of 34 bytes do not.
    assert_invalid(
        one_tensor("w", &[(1 << 63) - 32], GgmlType::Q8_0 as u32, 0, 32),
        &["`w`", "byte size", "overflows"],
    );
}

#[test]
fn unknown_tensor_type() {
    for id in [4u32, 5, 31, 40, u32::MAX] {
        assert_invalid(
            one_tensor("w", &[32], id, 0, 128),
            &["`w`", &format!("unknown type id {id}")],
        );
    }
}

#[test]
fn row_length_not_a_multiple_of_the_block_size() {
    assert_invalid(
        one_tensor("w", &[33, 2], GgmlType::Q4_0 as u32, 0, 64),
        &["`w`", "row length 33", "block size 32"],
    );
    assert_invalid(
        one_tensor("w", &[128], GgmlType::Q4_K as u32, 0, 256),
        &["row length 128", "block size 256"],
    );
}

#[test]
fn data_offset_not_aligned() {
    assert_invalid(
        one_tensor("w", &[8], GgmlType::F32 as u32, 8, 64),
        &["`w`", "offset 8", "alignment 32"],
    );
}

#[test]
fn offset_plus_size_past_end_of_file() {
    assert_invalid(
        one_tensor("w", &[8], GgmlType::F32 as u32, 32, 32),
        &["`w`", "past the end"],
    );
    // An offset so large that offset + size overflows.
    assert_invalid(
        one_tensor("w", &[8], GgmlType::F32 as u32, u64::MAX - 31, 32),
        &["`w`", "past the end"],
    );
    // Data section itself starts past the end of the file.
    let bytes = Raw::header(3, 1, 0)
        .tensor("w", &[8], GgmlType::F32 as u32, 0)
        .build();
    assert_invalid(bytes, &["past the end"]);
}

#[test]
fn overlapping_tensors() {
    let bytes = Raw::header(3, 2, 0)
        .tensor("first", &[16], GgmlType::F32 as u32, 0)
        .tensor("second", &[8], GgmlType::F32 as u32, 32)
        .data(128)
        .build();
    assert_invalid(bytes, &["`first`", "`second`", "overlap"]);
}

#[test]
fn truncated_at_each_sixteenth() {
    let full = sample_file();
    assert!(GgufFile::from_bytes(full.clone()).is_ok());
    for k in 0..16 {
        let len = full.len() * k / 16;
        let msg = invalid_message(full[..len].to_vec());
        // The message says what was being read (or which tensor's data is cut) and that the
        // bytes ran out.
        let names_the_problem = msg.contains("only") && msg.contains("remain")
            || msg.contains("past the end")
            || msg.contains("cannot fit")
            || msg.contains("magic");
        assert!(
            names_the_problem,
            "truncated at {k}/16 ({len} bytes): {msg:?}"
        );
    }
}

#[test]
fn real_model_truncated_at_each_sixteenth() {
    let Some(path) = model_path("smollm2-135m-instruct-q4_1.gguf") else {
        return;
    };
    let full = std::fs::read(path).unwrap();
    let whole = GgufFile::from_bytes(full.clone()).unwrap();
    assert_eq!(whole.tensors().len(), 272);
    for k in 0..16 {
        let len = full.len() * k / 16;
        let msg = invalid_message(full[..len].to_vec());
        assert!(
            msg.contains("remain")
                || msg.contains("past the end")
                || msg.contains("cannot fit")
                || (len < 4 && msg.contains("shorter than the 4-byte \"GGUF\" magic")),
            "truncated at {k}/16: {msg:?}"
        );
    }
}

#[test]
fn bool_byte_other_than_0_or_1() {
    let bytes = Raw::header(3, 0, 1)
        .kv("flag", ValueType::Bool as u32)
        .bytes(&[2])
        .build();
    assert_invalid(bytes, &["`flag`", "bool byte 2"]);
}

// ---------------------------------------------------------------------------------------------
// Property tests.
// ---------------------------------------------------------------------------------------------

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn scalar_type() -> impl Strategy<Value = ValueType> {
        use ValueType::*;
        prop::sample::select(vec![
            U8, I8, U16, I16, U32, I32, F32, Bool, String, U64, I64, F64,
        ])
    }

    /// Any value of type `ty`; arrays hold `depth` more levels of nesting at most.
    fn value_of(ty: ValueType, depth: u32) -> BoxedStrategy<Value> {
        use ValueType as T;
        match ty {
            T::U8 => any::<u8>().prop_map(Value::U8).boxed(),
            T::I8 => any::<i8>().prop_map(Value::I8).boxed(),
            T::U16 => any::<u16>().prop_map(Value::U16).boxed(),
            T::I16 => any::<i16>().prop_map(Value::I16).boxed(),
            T::U32 => any::<u32>().prop_map(Value::U32).boxed(),
            T::I32 => any::<i32>().prop_map(Value::I32).boxed(),
            T::U64 => any::<u64>().prop_map(Value::U64).boxed(),
            T::I64 => any::<i64>().prop_map(Value::I64).boxed(),
            // Any bit pattern, NaNs included: the round trip compares bits.
            T::F32 => any::<u32>()
                .prop_map(|b| Value::F32(f32::from_bits(b)))
                .boxed(),
            T::F64 => any::<u64>()
                .prop_map(|b| Value::F64(f64::from_bits(b)))
                .boxed(),
            T::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
            T::String => ".{0,12}".prop_map(Value::String).boxed(),
            T::Array => {
                let elem = if depth > 0 {
                    prop_oneof![4 => scalar_type(), 1 => Just(T::Array)].boxed()
                } else {
                    scalar_type().boxed()
                };
                elem.prop_flat_map(move |e| {
                    prop::collection::vec(value_of(e, depth.saturating_sub(1)), 0..6)
                        .prop_map(move |items| Value::Array(e, items))
                })
                .boxed()
            }
        }
    }

    fn any_value() -> impl Strategy<Value = Value> {
        prop_oneof![3 => scalar_type(), 1 => Just(ValueType::Array)]
            .prop_flat_map(|t| value_of(t, 3))
    }

    /// Equality with floats compared by their bits (NaN payloads must survive).
    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::F32(x), Value::F32(y)) => x.to_bits() == y.to_bits(),
            (Value::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits(),
            (Value::Array(ta, xs), Value::Array(tb, ys)) => {
                ta == tb && xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| same(x, y))
            }
            _ => a == b,
        }
    }

    const TENSOR_TYPES: [GgmlType; 10] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::IQ4_XS,
    ];

    #[derive(Debug, Clone)]
    struct RandomTensor {
        dims: Vec<u64>,
        ty: GgmlType,
        data: Vec<u8>,
    }

    fn any_tensor() -> impl Strategy<Value = RandomTensor> {
        (
            prop::sample::select(TENSOR_TYPES.to_vec()),
            1u64..4,
            prop::collection::vec(1u64..4, 0..4),
        )
            .prop_flat_map(|(ty, blocks, outer)| {
                let mut dims = vec![blocks * ty.block_size() as u64];
                dims.extend(outer);
                let rows: u64 = dims[1..].iter().product();
                let len = ty.row_bytes(dims[0]).unwrap() * rows;
                prop::collection::vec(any::<u8>(), len as usize).prop_map(move |data| {
                    RandomTensor {
                        dims: dims.clone(),
                        ty,
                        data,
                    }
                })
            })
    }

    fn build(
        metadata: &[(String, Value)],
        tensors: &[RandomTensor],
        alignment: Option<u32>,
    ) -> Vec<u8> {
        let mut w = GgufWriter::new();
        if let Some(a) = alignment {
            w.set("general.alignment", Value::U32(a));
        }
        for (k, v) in metadata {
            w.set(k.clone(), v.clone());
        }
        for (i, t) in tensors.iter().enumerate() {
            w.add_tensor(
                format!("blk.{i}.weight"),
                t.dims.clone(),
                t.ty,
                Cow::Borrowed(&t.data[..]),
            )
            .unwrap();
        }
        w.to_bytes()
    }

    fn any_file() -> impl Strategy<Value = Vec<u8>> {
        (
            prop::collection::btree_map("[a-z][a-z._]{0,15}", any_value(), 0..8),
            prop::collection::vec(any_tensor(), 0..5),
        )
            .prop_map(|(kv, tensors)| build(&kv.into_iter().collect::<Vec<_>>(), &tensors, None))
    }

    /// Parsing must return (Ok or Err) and never panic; on Ok, every tensor's data is in bounds.
    fn parse_does_not_panic(bytes: Vec<u8>) {
        if let Ok(f) = GgufFile::from_bytes(bytes) {
            for t in f.tensors() {
                assert_eq!(f.tensor_data(t).len() as u64, t.size);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn writer_reader_round_trip(
            kv in prop::collection::btree_map("[a-z][a-z0-9._]{0,20}", any_value(), 0..12),
            tensors in prop::collection::vec(any_tensor(), 0..6),
            alignment in prop::option::of(prop::sample::select(vec![1u32, 8, 32, 64, 4096])),
        ) {
            let kv: Vec<(String, Value)> = kv.into_iter().collect();
            let f = GgufFile::from_bytes(build(&kv, &tensors, alignment)).unwrap();
            prop_assert_eq!(f.alignment(), u64::from(alignment.unwrap_or(32)));
            let read: Vec<(&str, &Value)> =
                f.metadata().iter().filter(|(k, _)| *k != "general.alignment").collect();
            prop_assert_eq!(read.len(), kv.len());
            for ((k, v), (rk, rv)) in kv.iter().zip(read) {
                prop_assert_eq!(k, rk);
                prop_assert!(same(v, rv), "{} : {:?} read back as {:?}", k, v, rv);
                // Arrays of strings are read in place by `get_str_array`, and built as values
                // by `get`: both must agree with what was written.
                if let Value::Array(ValueType::String, items) = v {
                    let strs = f.get_str_array(k).unwrap();
                    prop_assert_eq!(strs.len(), items.len());
                    prop_assert_eq!(f.array_len(k).unwrap(), items.len());
                    for (s, item) in strs.iter().zip(items) {
                        prop_assert_eq!(Some(*s), item.as_str());
                    }
                }
            }
            prop_assert_eq!(f.tensors().len(), tensors.len());
            for (t, info) in tensors.iter().zip(f.tensors()) {
                prop_assert_eq!(&t.dims, &info.dims);
                prop_assert_eq!(t.ty, info.ty);
                prop_assert_eq!(info.offset % f.alignment(), 0);
                prop_assert_eq!(f.tensor_data(info), &t.data[..]);
            }
        }

        #[test]
        fn byte_flips_never_panic(
            file in any_file(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut bytes = file;
            for (at, value) in flips {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            parse_does_not_panic(bytes);
        }

        #[test]
        fn truncations_never_panic(file in any_file(), cut in any::<prop::sample::Index>()) {
            let len = cut.index(file.len());
            parse_does_not_panic(file[..len].to_vec());
        }
    }

    /// The first 2 MB of the SmolLM2 model: its whole metadata (vocabulary, merges) and tensor
    /// table, without most of the data.
    fn smollm_header() -> Option<Vec<u8>> {
        const PREFIX: usize = 2 << 20;
        let path = model_path("smollm2-135m-instruct-q4_1.gguf")?;
        let mut bytes = std::fs::read(path).ok()?;
        bytes.truncate(PREFIX);
        Some(bytes)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn real_header_byte_flips_never_panic(
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
            // Flips concentrated on the first 64 KiB hit counts, lengths and type tags.
            near_start in any::<bool>(),
        ) {
            let Some(mut bytes) = smollm_header() else { return Ok(()) };
            let span = if near_start { 64 << 10 } else { bytes.len() };
            for (at, value) in flips {
                let i = at.index(span);
                bytes[i] = value;
            }
            parse_does_not_panic(bytes);
        }

        #[test]
        fn real_header_truncations_never_panic(cut in any::<prop::sample::Index>()) {
            let Some(bytes) = smollm_header() else { return Ok(()) };
            let len = cut.index(bytes.len());
            parse_does_not_panic(bytes[..len].to_vec());
        }
    }
}
