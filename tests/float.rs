//! F32, F16 and BF16 weight matrices against llama.cpp's own `ggml_mul_mat`
//! (`tests/reference/float-matmuls.json`, made by scripts/make_float_matmul_reference.py on
//! random matrices whose shapes reach both of its arithmetics — tinyBLAS and the one-column
//! `vec_dot` — and their tails): every output to the bit, at every SIMD level.

use llmrt::quant::{self, GgmlType, QMatrix, Simd};

mod common;
use common::models::reference_json;

fn from_hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn float_type(name: &str) -> GgmlType {
    match name {
        "F32" => GgmlType::F32,
        "F16" => GgmlType::F16,
        "BF16" => GgmlType::BF16,
        other => panic!("unexpected type {other}"),
    }
}

#[test]
fn float_matmuls_match_llama_cpp() {
    let reference = reference_json("float-matmuls.json");
    let cases = reference["cases"].as_array().expect("cases");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("pool");
    let mut per_type = std::collections::BTreeMap::<&str, usize>::new();
    for (i, case) in cases.iter().enumerate() {
        let name = case["type"].as_str().expect("type");
        let ty = float_type(name);
        let dim = |key: &str| case[key].as_u64().expect(key) as usize;
        let (rows, cols, n_cols) = (dim("rows"), dim("cols"), dim("columns"));
        let w = from_hex(case["w"].as_str().expect("w"));
        let x: Vec<f32> = from_hex(case["x"].as_str().expect("x"))
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let want: Vec<u32> = case["out_bits"]
            .as_array()
            .expect("out_bits")
            .iter()
            .map(|v| v.as_u64().expect("bits") as u32)
            .collect();
        assert_eq!(want.len(), rows * n_cols);
        let matrix = QMatrix::new(ty, rows, cols, &w);
        for simd in Simd::all_supported() {
            let mut out = vec![f32::NAN; rows * n_cols];
            let mut scratch = Vec::new();
            quant::matmul(&pool, &matrix, &x, n_cols, &mut out, &mut scratch, simd)
                .expect("matmul");
            for (k, (&got, &want)) in out.iter().zip(&want).enumerate() {
                assert_eq!(
                    got.to_bits(),
                    want,
                    "case {i} {name} {rows}x{cols} × {n_cols} columns, {simd:?}, output {k}: \
                     {got} vs llama.cpp {}",
                    f32::from_bits(want)
                );
            }
        }
        *per_type.entry(name).or_default() += 1;
    }
    assert_eq!(per_type.len(), 3, "{per_type:?}");
    assert!(per_type.values().all(|&n| n >= 20), "{per_type:?}");
}

/// A mixture's float experts multiply each of their tokens with the one-column arithmetic, however
/// many tokens share the call: [`quant::matmul_expert`] equals one-column products.
#[test]
fn experts_multiply_float_columns_one_by_one() {
    let reference = reference_json("float-matmuls.json");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("pool");
    let mut checked = 0;
    for case in reference["cases"].as_array().expect("cases") {
        let ty = float_type(case["type"].as_str().expect("type"));
        let dim = |key: &str| case[key].as_u64().expect(key) as usize;
        let (rows, cols, n_cols) = (dim("rows"), dim("cols"), dim("columns"));
        if n_cols < 2 {
            continue;
        }
        let w = from_hex(case["w"].as_str().expect("w"));
        let x: Vec<f32> = from_hex(case["x"].as_str().expect("x"))
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let matrix = QMatrix::new(ty, rows, cols, &w);
        for simd in Simd::all_supported() {
            let mut scratch = Vec::new();
            let mut apart = vec![f32::NAN; rows * n_cols];
            quant::matmul_expert(&pool, &matrix, &x, n_cols, &mut apart, &mut scratch, simd)
                .expect("matmul");
            for c in 0..n_cols {
                let mut one = vec![f32::NAN; rows];
                let column = &x[c * cols..][..cols];
                quant::matmul(&pool, &matrix, column, 1, &mut one, &mut scratch, simd)
                    .expect("matmul");
                let apart = &apart[c * rows..][..rows];
                assert!(
                    one.iter()
                        .zip(apart)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{ty} {rows}x{cols} column {c} {simd:?}: {one:?} vs {apart:?}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 30, "{checked}");
}
