//! Kernels of the 32-element block formats and the float types: dequantization against
//! llama.cpp's reference values from real model files, every SIMD level against its scalar twin,
//! activation quantization, and the parallel matmul against a naive loop.

use half::{bf16, f16};
use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::Value as Json;

use llmrt::gguf::GgufFile;
use llmrt::quant::dispatch::activations as q8;
use llmrt::quant::dispatch::float::{self, FloatProduct};
use llmrt::quant::formats::q4_0::BlockQ4_0;
use llmrt::quant::formats::q4_1::BlockQ4_1;
use llmrt::quant::formats::q5_0::BlockQ5_0;
use llmrt::quant::formats::q5_1::BlockQ5_1;
use llmrt::quant::formats::q8_0::BlockQ8_0;
use llmrt::quant::formats::q8_1::BlockQ8_1;
use llmrt::quant::{self, as_blocks, matmul, vec_dot_type, GgmlType, QMatrix, Simd, QK};

mod common;
use common::{act_block, packed_operands, same_bits, weight_block};

/// Relative tolerance of a dequantized tensor's sums against the reference (float64 sums of the
/// same float32 values, in another order).
const SUM_REL_TOL: f64 = 1e-6;
/// The float row dot products may differ from their f64 scalar twin by this much relative to the
/// sum of the absolute values of their terms.
const DOT_REL_TOL: f64 = 1e-5;

const BLOCK_TYPES: [GgmlType; 5] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
];
const FLOAT_TYPES: [GgmlType; 3] = [GgmlType::F32, GgmlType::F16, GgmlType::BF16];

fn has_kernels(ty: GgmlType) -> bool {
    BLOCK_TYPES.contains(&ty) || FLOAT_TYPES.contains(&ty)
}

fn dequantize(ty: GgmlType, src: &[u8], n: usize, simd: Simd) -> Vec<f32> {
    let mut out = vec![0.0f32; n];
    quant::dequantize_row(ty, src, &mut out, simd).unwrap();
    out
}

// ---------------------------------------------------------------------------------------------
// Real tensors against llama.cpp's dequantizer.

#[test]
fn dequantize_matches_reference_samples() {
    let text = std::fs::read_to_string("tests/reference/dequant-samples.json").unwrap();
    let reference: Json = serde_json::from_str(&text).unwrap();
    let mut checked = 0;
    for model in reference["models"].as_array().unwrap() {
        let file = model["file"].as_str().unwrap();
        let Some(path) = common::models::model_path(file) else {
            continue;
        };
        let gguf = GgufFile::open(&path).unwrap();
        for sample in model["samples"].as_array().unwrap() {
            let name = sample["tensor"].as_str().unwrap();
            let ty = GgmlType::from_name(sample["type"].as_str().unwrap()).unwrap();
            if !has_kernels(ty) {
                continue;
            }
            let info = gguf.tensor(name).unwrap();
            assert_eq!(info.ty, ty, "{file} {name}");
            let data = gguf.tensor_data(info);
            let n = info.dims[0] as usize;
            let rows = info.n_rows() as usize;
            let row_bytes = ty.row_bytes(n as u64).unwrap() as usize;

            for simd in Simd::all_supported() {
                for (r, key) in [(0, "row0_first64"), (1, "row1_first64")] {
                    let got = dequantize(ty, &data[r * row_bytes..][..row_bytes], n, simd);
                    let want: Vec<f32> = sample[key]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_f64().unwrap() as f32)
                        .collect();
                    assert_eq!(
                        &got[..want.len()],
                        &want[..],
                        "{file} {name} row {r} {simd:?}"
                    );
                }
                let row0 = dequantize(ty, &data[..row_bytes], n, simd);
                let row0_sum: f64 = row0.iter().map(|&v| v as f64).sum();
                let want = sample["row0_sum"].as_f64().unwrap();
                assert!(
                    (row0_sum - want).abs() <= SUM_REL_TOL * want.abs(),
                    "{file} {name} row 0 sum {row0_sum} vs {want} ({simd:?})"
                );
            }

            // Whole tensor with the detected level (the per-row comparison above covers the rest).
            let simd = Simd::detect();
            let mut row = vec![0.0f32; n];
            let (mut sum, mut abs_sum) = (0.0f64, 0.0f64);
            for r in 0..rows {
                quant::dequantize_row(ty, &data[r * row_bytes..][..row_bytes], &mut row, simd)
                    .unwrap();
                for &v in &row {
                    sum += v as f64;
                    abs_sum += (v as f64).abs();
                }
            }
            for (got, key) in [(sum, "sum"), (abs_sum, "abs_sum")] {
                let want = sample[key].as_f64().unwrap();
                assert!(
                    (got - want).abs() <= SUM_REL_TOL * want.abs(),
                    "{file} {name} {key} {got} vs {want}"
                );
            }
            println!("{file} {name} ({ty}): {rows} rows match");
            checked += 1;
        }
    }
    println!("{checked} reference tensors checked");
}

// ---------------------------------------------------------------------------------------------
// Random blocks.

/// `(weights, activations)` of `1..=8` blocks.
fn dot_operands(ty: GgmlType) -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    (1usize..=8).prop_flat_map(move |n| {
        (
            vec(weight_block(ty), n).prop_map(|b| b.concat()),
            vec(act_block(vec_dot_type(ty)), n).prop_map(|b| b.concat()),
        )
    })
}

/// Per block: scale, minimum (0 for symmetric types) and integer quants.
fn weight_terms(ty: GgmlType, w: &[u8]) -> Vec<(f64, f64, [i8; QK])> {
    let f = |h: f16| h.to_f64();
    match ty {
        GgmlType::Q4_0 => as_blocks::<BlockQ4_0>(w)
            .iter()
            .map(|b| (f(b.d()), 0.0, b.quants()))
            .collect(),
        GgmlType::Q4_1 => as_blocks::<BlockQ4_1>(w)
            .iter()
            .map(|b| (f(b.d()), f(b.m()), b.quants()))
            .collect(),
        GgmlType::Q5_0 => as_blocks::<BlockQ5_0>(w)
            .iter()
            .map(|b| (f(b.d()), 0.0, b.quants()))
            .collect(),
        GgmlType::Q5_1 => as_blocks::<BlockQ5_1>(w)
            .iter()
            .map(|b| (f(b.d()), f(b.m()), b.quants()))
            .collect(),
        GgmlType::Q8_0 => as_blocks::<BlockQ8_0>(w)
            .iter()
            .map(|b| (f(b.d()), 0.0, b.quants()))
            .collect(),
        _ => unreachable!(),
    }
}

/// Per block of activations: scale, stored scaled sum (0 for Q8_0) and quants.
fn act_terms(act_ty: GgmlType, a: &[u8]) -> Vec<(f64, f64, [i8; QK])> {
    match act_ty {
        GgmlType::Q8_0 => as_blocks::<BlockQ8_0>(a)
            .iter()
            .map(|b| (b.d().to_f64(), 0.0, b.qs))
            .collect(),
        GgmlType::Q8_1 => as_blocks::<BlockQ8_1>(a)
            .iter()
            .map(|b| (b.d().to_f64(), b.s().to_f64(), b.qs))
            .collect(),
        _ => unreachable!(),
    }
}

/// Σ over blocks of `|d_w d_a| Σ |q y| + |m_w s_a|`: the size of the terms a dot product sums,
/// which bounds its rounding error.
fn dot_magnitude(ty: GgmlType, w: &[u8], a: &[u8]) -> f64 {
    let acts = act_terms(vec_dot_type(ty), a);
    weight_terms(ty, w)
        .iter()
        .zip(&acts)
        .map(|((dw, mw, qw), (da, sa, qa))| {
            let sumi: i64 = qw
                .iter()
                .zip(qa)
                .map(|(&x, &y)| (x as i64 * y as i64).abs())
                .sum();
            (dw * da).abs() * sumi as f64 + (mw * sa).abs()
        })
        .sum()
}

/// Σ over blocks of `d_w d_a Σ q y + m_w s_a` in f64 (exact integer sums).
fn exact_dot(ty: GgmlType, w: &[u8], a: &[u8]) -> f64 {
    let acts = act_terms(vec_dot_type(ty), a);
    weight_terms(ty, w)
        .iter()
        .zip(&acts)
        .map(|((dw, mw, qw), (da, sa, qa))| {
            let sumi: i64 = qw.iter().zip(qa).map(|(&x, &y)| x as i64 * y as i64).sum();
            dw * da * sumi as f64 + mw * sa
        })
        .sum()
}

fn check_block_type(ty: GgmlType, w: &[u8], a: &[u8]) -> Result<(), TestCaseError> {
    let n = w.len() / ty.block_bytes() * QK;
    let want_deq = dequantize(ty, w, n, Simd::Scalar);
    let want_dot = quant::vec_dot(ty, w, a, Simd::Scalar);
    let magnitude = dot_magnitude(ty, w, a);
    for simd in Simd::all_supported() {
        let got = dequantize(ty, w, n, simd);
        let same = got
            .iter()
            .zip(&want_deq)
            .all(|(x, y)| x.to_bits() == y.to_bits());
        prop_assert!(same, "{ty} dequantize {simd:?}: {got:?} vs {want_deq:?}");
        // Every level computes llama.cpp's arithmetic, in the same order: bit-identical.
        let got = quant::vec_dot(ty, w, a, simd);
        prop_assert_eq!(
            got.to_bits(),
            want_dot.to_bits(),
            "{} vec_dot {:?}: {} vs scalar {}",
            ty,
            simd,
            got,
            want_dot
        );
        // And that arithmetic is the dot product, up to f32 rounding.
        let exact = exact_dot(ty, w, a);
        prop_assert!(
            (want_dot as f64 - exact).abs() <= DOT_REL_TOL * magnitude,
            "{ty} vec_dot {want_dot} vs exact {exact} (magnitude {magnitude})"
        );
    }
    Ok(())
}

/// Q4_0 weights repacked into 16-row groups, dotted with `n_cols` columns by the AVX-512 kernel,
/// against the scalar twin of each (row, column), bit for bit.
fn check_packed_q4_0(
    n_blocks: usize,
    n_cols: usize,
    rows: &[u8],
    acts: &[u8],
) -> Result<(), TestCaseError> {
    use llmrt::quant::packed::q4_0::{self as repack, ActivationSums, PackedQ4_0};
    let row_bytes = n_blocks * size_of::<BlockQ4_0>();
    let stride = n_blocks * size_of::<BlockQ8_0>();
    let n_rows = rows.len() / row_bytes;
    let packed = PackedQ4_0::pack(rows, n_rows, n_blocks * QK).expect("whole groups");
    for r in 0..n_rows {
        prop_assert_eq!(
            &packed.unpack_row(r)[..],
            &rows[r * row_bytes..][..row_bytes]
        );
    }
    let sums = ActivationSums::compute(acts, stride, n_cols);
    let mut out = vec![f32::NAN; n_rows * n_cols];
    let ran = repack::matmul_groups(
        &packed,
        0..packed.grouped().groups(),
        acts,
        stride,
        n_cols,
        &sums,
        |c, r, v| out[c * n_rows + r] = v,
    );
    prop_assert_eq!(ran, quant::packed::avx512_vnni());
    if !ran {
        return Ok(());
    }
    for c in 0..n_cols {
        for r in 0..n_rows {
            let want = quant::formats::q4_0::vec_dot_scalar(
                &rows[r * row_bytes..][..row_bytes],
                &acts[c * stride..][..stride],
            );
            let got = out[c * n_rows + r];
            prop_assert!(
                same_bits(got, want),
                "row {} column {}: {} vs scalar {}",
                r,
                c,
                got,
                want
            );
        }
    }
    Ok(())
}

#[test]
fn packed_q4_0_rejects_shapes_outside_the_layout() {
    use llmrt::quant::packed::q4_0::PackedQ4_0;
    let data = random_weights(GgmlType::Q4_0, 24, 64, 5);
    assert!(
        PackedQ4_0::pack(&data, 24, 64).is_none(),
        "24 rows are not whole groups"
    );
    assert!(PackedQ4_0::pack(&data[..16 * 36 - 1], 16, 64).is_none());
    assert!(PackedQ4_0::pack(&data[..16 * 36], 16, 64).is_some());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn packed_q4_0_matches_scalar((n_blocks, n_cols, rows, acts) in packed_operands(GgmlType::Q4_0)) {
        check_packed_q4_0(n_blocks, n_cols, &rows, &acts)?;
    }

    #[test]
    fn q4_0_simd_matches_scalar((w, a) in dot_operands(GgmlType::Q4_0)) {
        check_block_type(GgmlType::Q4_0, &w, &a)?;
    }

    #[test]
    fn q4_1_simd_matches_scalar((w, a) in dot_operands(GgmlType::Q4_1)) {
        check_block_type(GgmlType::Q4_1, &w, &a)?;
    }

    #[test]
    fn q5_0_simd_matches_scalar((w, a) in dot_operands(GgmlType::Q5_0)) {
        check_block_type(GgmlType::Q5_0, &w, &a)?;
    }

    #[test]
    fn q5_1_simd_matches_scalar((w, a) in dot_operands(GgmlType::Q5_1)) {
        check_block_type(GgmlType::Q5_1, &w, &a)?;
    }

    #[test]
    fn q8_0_simd_matches_scalar((w, a) in dot_operands(GgmlType::Q8_0)) {
        check_block_type(GgmlType::Q8_0, &w, &a)?;
    }

    /// Activation quantization is bit-identical at every level, for values from zero to large.
    #[test]
    fn activation_quantizers_match_scalar(
        x in (1usize..=8).prop_flat_map(|n| vec(prop_oneof![
            Just(0.0f32),
            -1.0f32..1.0,
            -1e4f32..1e4,
            (-1000i32..1000).prop_map(|k| k as f32 * 0.5),
        ], n * QK))
    ) {
        for act_ty in [GgmlType::Q8_0, GgmlType::Q8_1] {
            let bytes = act_ty.row_bytes(x.len() as u64).unwrap() as usize;
            let mut want = vec![0u8; bytes];
            quant::quantize_activations(act_ty, &x, &mut want, Simd::Scalar).unwrap();
            for simd in Simd::all_supported() {
                let mut got = vec![0u8; bytes];
                quant::quantize_activations(act_ty, &x, &mut got, simd).unwrap();
                prop_assert_eq!(&got, &want, "{} {:?}", act_ty, simd);
            }
        }
    }

    /// Float rows: exact conversion, and both dot arithmetics (one-column and tiled) equal to
    /// their scalar twins bit for bit at every level.
    #[test]
    fn float_simd_matches_scalar(values in (1usize..300).prop_flat_map(|n| vec(-1e3f32..1e3, n)),
                                 x_seed in any::<u64>()) {
        let x: Vec<f32> = (0..values.len()).map(|i| lcg_f32(x_seed, i)).collect();
        for ty in FLOAT_TYPES {
            let w = encode_float(ty, &values);
            let want_deq = dequantize(ty, &w, values.len(), Simd::Scalar);
            let act = convert_float(ty, &x);
            let products = [FloatProduct::Row, FloatProduct::Tiled];
            let want = products.map(|p| float::vec_dot(ty, &w, &act, p, Simd::Scalar));
            for simd in Simd::all_supported() {
                let got = dequantize(ty, &w, values.len(), simd);
                prop_assert!(got.iter().zip(&want_deq).all(|(a, b)| a.to_bits() == b.to_bits()));
                for (p, want) in products.iter().zip(want) {
                    let got = float::vec_dot(ty, &w, &act, *p, simd);
                    prop_assert!(same_bits(got, want),
                        "{} {:?} {:?}: {} vs {}", ty, p, simd, got, want);
                }
            }
        }
    }
}

/// `x` converted to the float type `ty`, as the float kernels read activations.
fn convert_float(ty: GgmlType, x: &[f32]) -> Vec<u8> {
    let mut act = vec![0u8; ty.row_bytes(x.len() as u64).unwrap() as usize];
    quant::quantize_activations(ty, x, &mut act, Simd::Scalar).unwrap();
    act
}

/// llama.cpp's x86 build rounds `x · (127 / amax)` half to even (`_mm256_round_ps`, not the
/// reference's `roundf`): with `amax = 127` the multiplier is exactly 1 and the quants are the
/// inputs rounded that way, at every level.
#[test]
fn activation_rounding_is_half_to_even() {
    let mut x = vec![0.0f32; QK];
    let cases = [
        (127.0, 127),
        (0.5, 0),
        (-0.5, 0),
        (1.5, 2),
        (2.5, 2),
        (-2.5, -2),
        (0.500_000_06, 1),
        (-0.499_999_97, 0),
        (126.5, 126),
        (-127.0, -127),
    ];
    for (i, &(v, _)) in cases.iter().enumerate() {
        x[i] = v;
    }
    for simd in Simd::all_supported() {
        let mut q = vec![0u8; GgmlType::Q8_1.block_bytes()];
        q8::quantize_row_q8_1(&x, &mut q, simd);
        let b = &as_blocks::<BlockQ8_1>(&q)[0];
        assert_eq!(b.d().to_f32(), 1.0, "{simd:?}");
        for (i, &(v, want)) in cases.iter().enumerate() {
            assert_eq!(b.qs[i], want, "{v} at {simd:?}");
        }
        let sum: i32 = b.qs.iter().map(|&q| q as i32).sum();
        assert_eq!(b.s().to_f32(), sum as f32, "{simd:?}");
    }
}

/// A deterministic pseudo-random value in [-1, 1) for element `i`.
fn lcg_f32(seed: u64, i: usize) -> f32 {
    let mut s = seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    s = s
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

fn encode_float(ty: GgmlType, values: &[f32]) -> Vec<u8> {
    match ty {
        GgmlType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect(),
        GgmlType::BF16 => values
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
            .collect(),
        _ => unreachable!(),
    }
}

// ---------------------------------------------------------------------------------------------
// Matmul.

/// Random weights of `ty` with realistic scales (so that columns share a magnitude).
fn random_weights(ty: GgmlType, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    let values: Vec<f32> = (0..rows * cols).map(|i| lcg_f32(seed, i)).collect();
    if FLOAT_TYPES.contains(&ty) {
        return encode_float(ty, &values);
    }
    let n_blocks = rows * cols / QK;
    let mut out = Vec::with_capacity(n_blocks * ty.block_bytes());
    for b in 0..n_blocks {
        let r = |k: usize| (lcg_f32(seed ^ 0xABCD, b * 64 + k) * 0.5 + 0.5) as f64;
        let d = f16::from_f64(0.001 + 0.05 * r(0));
        out.extend(d.to_le_bytes());
        if matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1) {
            out.extend(f16::from_f64(-0.5 * r(1)).to_le_bytes());
        }
        let body = ty.block_bytes() - out.len() % ty.block_bytes();
        for k in 0..body {
            out.push((r(k + 2) * 255.0) as u8);
        }
    }
    out
}

/// Naive product: each column quantized with the scalar quantizer, each row dotted with the
/// scalar kernel.
fn naive_matmul(w: &QMatrix<'_>, x: &[f32], n_cols: usize) -> Vec<f32> {
    let row_bytes = w.ty.row_bytes(w.cols as u64).unwrap() as usize;
    let mut out = vec![0.0; w.rows * n_cols];
    for c in 0..n_cols {
        let xc = &x[c * w.cols..][..w.cols];
        for r in 0..w.rows {
            let row = &w.data[r * row_bytes..][..row_bytes];
            let v = if FLOAT_TYPES.contains(&w.ty) {
                // One-column arithmetic for a single column or a shape tinyBLAS declines.
                let product = if float::takes_tiles(w.ty, w.rows, w.cols, n_cols) {
                    FloatProduct::Tiled
                } else {
                    FloatProduct::Row
                };
                let act = convert_float(w.ty, xc);
                float::vec_dot(w.ty, row, &act, product, Simd::Scalar)
            } else {
                let act_ty = vec_dot_type(w.ty);
                let mut act = vec![0u8; act_ty.row_bytes(w.cols as u64).unwrap() as usize];
                quant::quantize_activations(act_ty, xc, &mut act, Simd::Scalar).unwrap();
                quant::vec_dot(w.ty, row, &act, Simd::Scalar)
            };
            out[c * w.rows + r] = v;
        }
    }
    out
}

#[test]
fn matmul_matches_naive_loop() {
    for (rows, cols) in [(37, 160), (4, 256), (8, 256)] {
        let pools: Vec<rayon::ThreadPool> = [1, 2]
            .iter()
            .map(|&t| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(t)
                    .build()
                    .unwrap()
            })
            .collect();
        for (ti, ty) in BLOCK_TYPES.iter().chain(&FLOAT_TYPES).copied().enumerate() {
            let data = random_weights(ty, rows, cols, 17 + ti as u64);
            let w = QMatrix {
                ty,
                rows,
                cols,
                data: &data,
                packed: None,
            };
            for n_cols in [1, 3, 4, 9, 16, 33] {
                let x: Vec<f32> = (0..cols * n_cols).map(|i| lcg_f32(99, i) * 3.0).collect();
                let want = naive_matmul(&w, &x, n_cols);
                for pool in &pools {
                    for simd in Simd::all_supported() {
                        let mut out = vec![f32::NAN; rows * n_cols];
                        let mut scratch = Vec::new();
                        matmul(pool, &w, &x, n_cols, &mut out, &mut scratch, simd).unwrap();
                        for i in 0..out.len() {
                            // Every tile shape computes each output in the scalar twin's order.
                            assert_eq!(
                                out[i].to_bits(),
                                want[i].to_bits(),
                                "{ty} n_cols {n_cols} threads {} {simd:?} at {i}: {} vs {}",
                                pool.current_num_threads(),
                                out[i],
                                want[i]
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Columns multiplied together as each is alone (the sequences of a decoding batch) get the bits
/// of the one-column product, with the file's layout and with the repacked copy, whatever the
/// number of columns.
#[test]
fn columns_together_equal_each_alone_and_pieces_equal_the_whole() {
    for (rows, cols) in [(16, 256), (32, 64), (37, 160)] {
        for (ti, ty) in BLOCK_TYPES.iter().chain(&FLOAT_TYPES).copied().enumerate() {
            let data = random_weights(ty, rows, cols, 41 + ti as u64);
            let packed = quant::repack::PackedCopy::pack(ty, &data, rows, cols);
            for packed in [None, packed.as_ref()] {
                let w = QMatrix {
                    ty,
                    rows,
                    cols,
                    data: &data,
                    packed,
                };
                for n_cols in [2, 3, 5, 8, 9, 13] {
                    let x: Vec<f32> = (0..cols * n_cols).map(|i| lcg_f32(7, i) * 2.0).collect();
                    common::check_columns_alone(&w, &x, n_cols).unwrap();
                    common::check_pieces(&w, &x, n_cols).unwrap();
                }
            }
        }
    }
}

#[test]
fn matmul_reuses_scratch_and_rejects_bad_shapes() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let (rows, cols, n_cols) = (64, 256, 8);
    let data = random_weights(GgmlType::Q4_1, rows, cols, 5);
    let w = QMatrix {
        ty: GgmlType::Q4_1,
        rows,
        cols,
        data: &data,
        packed: None,
    };
    let x: Vec<f32> = (0..cols * n_cols).map(|i| lcg_f32(3, i)).collect();
    let mut out = vec![0.0; rows * n_cols];
    let mut scratch = Vec::new();
    let simd = Simd::detect();
    matmul(&pool, &w, &x, n_cols, &mut out, &mut scratch, simd).unwrap();
    let (ptr, cap) = (scratch.as_ptr(), scratch.capacity());
    let first = out.clone();
    matmul(&pool, &w, &x, n_cols, &mut out, &mut scratch, simd).unwrap();
    assert_eq!((scratch.as_ptr(), scratch.capacity()), (ptr, cap));
    assert_eq!(out, first, "repeated calls give identical results");
    // Fewer columns reuse the larger scratch too.
    matmul(
        &pool,
        &w,
        &x[..cols],
        1,
        &mut out[..rows],
        &mut scratch,
        simd,
    )
    .unwrap();
    assert_eq!(scratch.as_ptr(), ptr);

    assert!(matmul(&pool, &w, &x[1..], n_cols, &mut out, &mut scratch, simd).is_err());
    assert!(matmul(&pool, &w, &x, n_cols, &mut out[1..], &mut scratch, simd).is_err());
    let short = QMatrix {
        data: &data[1..],
        ..w
    };
    assert!(matmul(&pool, &short, &x, n_cols, &mut out, &mut scratch, simd).is_err());
    let ragged = QMatrix { cols: 250, ..w };
    assert!(matmul(&pool, &ragged, &x, n_cols, &mut out, &mut scratch, simd).is_err());
}
