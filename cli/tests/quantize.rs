//! `llmrt quantize`: bit-exact with ggml's reference quantizers on the SmolLM2 model (the tensor
//! data digests in tests/reference/dequant-samples.json), and the conversion rules (which
//! tensors are quantized, metadata copied, `general.file_type` set) on small synthetic files.

use std::path::{Path, PathBuf};
use std::process::Command;

use llmrt::gguf::{GgufFile, GgufWriter, Value};
use llmrt::quant::{quantize::quantize_row, GgmlType};
use sha2::{Digest, Sha256};

#[path = "../../tests/common/models.rs"]
mod models;
use models::{model_path, reference_json};

const SOURCE_MODEL: &str = "smollm2-135m-instruct-q4_1.gguf";

/// A scratch directory for this test binary's outputs, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("llmrt-quantize-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

fn run_quantize(input: &Path, output: &Path, ty: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_llmrt"))
        .arg("quantize")
        .arg(input)
        .arg(output)
        .arg(ty)
        .output()
        .expect("run llmrt");
    assert!(
        out.status.success(),
        "llmrt quantize {ty} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// sha256 over every tensor's raw data bytes, in the file's tensor order.
fn tensor_data_sha256(file: &GgufFile) -> String {
    let mut hasher = Sha256::new();
    for t in file.tensors() {
        hasher.update(file.tensor_data(t));
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn reference_digest(file_name: &str) -> String {
    let json = reference_json("dequant-samples.json");
    json["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["file"] == file_name)
        .and_then(|m| m["tensor_data_sha256"].as_str())
        .unwrap_or_else(|| panic!("no tensor_data_sha256 for {file_name}"))
        .to_string()
}

/// Checks an output model against its source: same metadata except the file type, same tensor
/// names and shapes, 2-D tensors with whole-block rows in `target`, all others F32.
fn check_conversion(source: &GgufFile, output: &GgufFile, target: GgmlType, file_type: u32) {
    assert_eq!(output.get_u32("general.file_type").unwrap(), file_type);
    assert_eq!(output.metadata().len(), source.metadata().len());
    for ((k, v), (ok, ov)) in source.metadata().iter().zip(output.metadata()) {
        assert_eq!(k, ok);
        if k != "general.file_type" {
            assert_eq!(v, ov, "{k}");
        }
    }
    assert_eq!(output.tensors().len(), source.tensors().len());
    for (s, o) in source.tensors().iter().zip(output.tensors()) {
        assert_eq!((&s.name, &s.dims), (&o.name, &o.dims));
        let expected = if s.dims.len() == 2 && s.dims[0] % 32 == 0 {
            target
        } else {
            GgmlType::F32
        };
        assert_eq!(o.ty, expected, "{}", s.name);
    }
}

#[test]
fn smollm2_q4_0_and_q8_0_match_the_reference_digests() {
    let Some(source_path) = model_path(SOURCE_MODEL) else {
        return;
    };
    let source = GgufFile::open(&source_path).unwrap();
    let scratch = Scratch::new("smollm2");
    for (ty, target, file_type, name) in [
        ("q4_0", GgmlType::Q4_0, 2, "smollm2-135m-instruct-q4_0.gguf"),
        ("q8_0", GgmlType::Q8_0, 7, "smollm2-135m-instruct-q8_0.gguf"),
    ] {
        let made = scratch.path(name);
        run_quantize(&source_path, &made, ty);
        let output = GgufFile::open(&made).unwrap();
        check_conversion(&source, &output, target, file_type);
        let want = reference_digest(name);
        assert_eq!(tensor_data_sha256(&output), want, "{name} made now");
        // The copy the fetch script made, when there is one, must be the same.
        let fetched = source_path.with_file_name(name);
        if fetched.is_file() {
            let fetched = GgufFile::open(&fetched).unwrap();
            assert_eq!(tensor_data_sha256(&fetched), want, "models/{name}");
        }
    }
}

/// Deterministic values with a spread of magnitudes and both signs.
fn sample_values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let x = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
            (x as f32 / (1u32 << 24) as f32 - 0.5) * (1 + i % 7) as f32
        })
        .collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn every_type_quantizes_2d_tensors_and_keeps_others_f32() {
    let matrix = sample_values(64 * 3, 1);
    let odd_rows = sample_values(48 * 2, 2); // rows of 48: not whole blocks
    let vector = sample_values(64, 3);
    let cube = sample_values(32 * 2 * 2, 4);
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String("llama".into()))
        .set("general.file_type", Value::U32(0))
        .set(
            "tokenizer.ggml.tokens",
            Value::Array(
                llmrt::gguf::ValueType::String,
                vec![Value::String("a".into())],
            ),
        );
    w.add_tensor("matrix", vec![64, 3], GgmlType::F32, f32_bytes(&matrix))
        .unwrap();
    w.add_tensor("odd_rows", vec![48, 2], GgmlType::F32, f32_bytes(&odd_rows))
        .unwrap();
    w.add_tensor("vector", vec![64], GgmlType::F32, f32_bytes(&vector))
        .unwrap();
    w.add_tensor("cube", vec![32, 2, 2], GgmlType::F32, f32_bytes(&cube))
        .unwrap();
    let scratch = Scratch::new("synthetic");
    let input = scratch.path("in.gguf");
    w.write_file(&input).unwrap();
    let source = GgufFile::open(&input).unwrap();

    for (ty, target, file_type) in [
        ("q4_0", GgmlType::Q4_0, 2),
        ("q4_1", GgmlType::Q4_1, 3),
        ("q5_0", GgmlType::Q5_0, 8),
        ("q5_1", GgmlType::Q5_1, 9),
        ("q8_0", GgmlType::Q8_0, 7),
    ] {
        let out_path = scratch.path(&format!("{ty}.gguf"));
        run_quantize(&input, &out_path, ty);
        let output = GgufFile::open(&out_path).unwrap();
        check_conversion(&source, &output, target, file_type);
        let m = output.tensor("matrix").unwrap();
        let mut want = vec![0u8; target.row_bytes(64).unwrap() as usize * 3];
        quantize_row(target, &matrix, &mut want).unwrap();
        assert_eq!(output.tensor_data(m), &want[..], "{ty}");
        for (name, values) in [
            ("odd_rows", &odd_rows),
            ("vector", &vector),
            ("cube", &cube),
        ] {
            let t = output.tensor(name).unwrap();
            assert_eq!(output.tensor_data(t), &f32_bytes(values)[..], "{ty} {name}");
        }
    }
}

#[test]
fn unknown_target_type_is_refused() {
    let scratch = Scratch::new("refused");
    let out = Command::new(env!("CARGO_BIN_EXE_llmrt"))
        .args(["quantize", "in.gguf"])
        .arg(scratch.path("out.gguf"))
        .arg("q4_k")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("q4_k"));
    assert!(!scratch.path("out.gguf").exists());
}
