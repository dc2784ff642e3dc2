//! K-quant and IQ4 kernels: dequantization against llama.cpp's reference values on real model
//! tensors, every SIMD level against its scalar twin, and the integer dot-product formulation
//! against float dot products of dequantized values.
//!
//! Run with `cargo test --release --test kquant`.

use std::ops::Range;
use std::path::Path;

use llmrt::gguf::GgufFile;
use llmrt::quant::dispatch::k_quants;
use llmrt::quant::{GgmlType, QMatrix, Simd, QK_K};
use proptest::prelude::*;
use serde_json::Value;

mod common;
use common::same_bits;

/// Dequantized sample values must equal the reference to float32 precision: we compare the f32
/// values exactly (the reference JSON holds the f32 values printed as f64).
/// Tensor sums are f64 sums of f32 values; any difference beyond rounding of the printed value
/// means a wrong element.
const SUM_REL_TOL: f64 = 1e-6;
/// The types whose kernels compute llama.cpp's arithmetic (the ones in the test models): their
/// SIMD kernels equal the scalar twins bit for bit, in every variant (one column, tiled, four
/// columns).
const LLAMA_CPP_ORDER: [GgmlType; 5] = [
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];
/// For the other types a SIMD dot product may sum in another order than its scalar twin: allowed
/// difference relative to the magnitude Σ|w_i a_i| of the terms (a few f32 roundings per
/// super-block).
const SIMD_DOT_REL_TOL: f64 = 1e-5;
/// The integer formulation (exact integer sums, one f32 scale product per block) against the
/// f64 dot product of the dequantized rows: allowed difference relative to the term magnitude.
const INT_FORMULATION_REL_TOL: f64 = 1e-5;

/// Q8_K round trip: extra error beyond half a quantization step, in steps (127 · a few f32
/// epsilons).
const Q8_K_ROUNDING_SLACK: f64 = 1e-4;

// ---------------------------------------------------------------------------------------------
// Reference values from llama.cpp (tests/reference/dequant-samples.json)
// ---------------------------------------------------------------------------------------------

fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32], simd: Simd) {
    k_quants::dequantize_row(ty, src, dst, simd)
}

fn f64_list(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

fn assert_rel(what: &str, got: f64, want: f64, tol: f64) {
    let diff = (got - want).abs();
    assert!(
        diff <= tol * want.abs().max(1e-30),
        "{what}: got {got}, want {want} (rel diff {:e})",
        diff / want.abs().max(1e-30)
    );
}

#[test]
fn dequantize_matches_llama_cpp_reference() {
    let text = std::fs::read_to_string("tests/reference/dequant-samples.json")
        .expect("tests/reference/dequant-samples.json");
    let json: Value = serde_json::from_str(&text).expect("valid JSON");
    let mut checked = 0;
    for model in json["models"].as_array().expect("models") {
        let file = model["file"].as_str().expect("file");
        let path = Path::new("models").join(file);
        let samples: Vec<&Value> = model["samples"]
            .as_array()
            .expect("samples")
            .iter()
            .filter(|s| matches!(s["type"].as_str(), Some("Q4_K" | "Q6_K")))
            .collect();
        if samples.is_empty() {
            continue;
        }
        if common::models::model_path(file).is_none() {
            continue;
        }
        let gguf = GgufFile::open(&path).expect("open model");
        for sample in samples {
            let name = sample["tensor"].as_str().expect("tensor");
            let info = gguf.tensor(name).expect("tensor in file");
            let ty = GgmlType::from_name(sample["type"].as_str().expect("type")).expect("type");
            assert_eq!(info.ty, ty, "{name}: type");
            let data = gguf.tensor_data(info);
            let n_per_row = info.dims[0] as usize;
            let n_rows = info.n_rows() as usize;
            let row_bytes = ty.row_bytes(n_per_row as u64).expect("whole blocks") as usize;
            assert_eq!(data.len(), row_bytes * n_rows, "{name}: data size");

            for simd in Simd::all_supported() {
                let ctx = format!("{file} {name} {simd:?}");
                let mut all = vec![0f32; n_per_row * n_rows];
                for (src, dst) in data
                    .chunks_exact(row_bytes)
                    .zip(all.chunks_exact_mut(n_per_row))
                {
                    dequantize(ty, src, dst, simd);
                }
                for (row, key) in [(0, "row0_first64"), (1, "row1_first64")] {
                    let want = f64_list(&sample[key]);
                    let got = &all[row * n_per_row..row * n_per_row + want.len()];
                    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                        assert_eq!(g, w as f32, "{ctx}: row {row} element {i}");
                    }
                }
                let row0_sum: f64 = all[..n_per_row].iter().map(|&v| v as f64).sum();
                let sum: f64 = all.iter().map(|&v| v as f64).sum();
                let abs_sum: f64 = all.iter().map(|&v| (v as f64).abs()).sum();
                let want = |k: &str| sample[k].as_f64().expect("number");
                assert_rel(
                    &format!("{ctx} row0_sum"),
                    row0_sum,
                    want("row0_sum"),
                    SUM_REL_TOL,
                );
                assert_rel(&format!("{ctx} sum"), sum, want("sum"), SUM_REL_TOL);
                assert_rel(
                    &format!("{ctx} abs_sum"),
                    abs_sum,
                    want("abs_sum"),
                    SUM_REL_TOL,
                );
            }
            checked += 1;
        }
    }
    println!("checked {checked} K-quant tensors against the reference");
}

// ---------------------------------------------------------------------------------------------
// Property tests: random blocks
// ---------------------------------------------------------------------------------------------

/// What the tests need to know about a weight type's block bytes.
struct Layout {
    ty: GgmlType,
    /// Byte offsets of the f16 scale fields.
    f16_fields: &'static [usize],
    /// For types with mins: the quant bytes, which when zeroed leave only the min offset
    /// (`-dmin * m`), used to size the cancellation in the tolerance.
    quant_bytes: Option<Range<usize>>,
}

const LAYOUTS: &[Layout] = &[
    Layout {
        ty: GgmlType::Q4_K,
        f16_fields: &[0, 2],
        quant_bytes: Some(16..144),
    },
    Layout {
        ty: GgmlType::Q6_K,
        f16_fields: &[208],
        quant_bytes: None,
    },
    Layout {
        ty: GgmlType::Q5_K,
        f16_fields: &[0, 2],
        quant_bytes: Some(16..176),
    },
    Layout {
        ty: GgmlType::Q3_K,
        f16_fields: &[108],
        quant_bytes: None,
    },
    Layout {
        ty: GgmlType::Q2_K,
        f16_fields: &[80, 82],
        quant_bytes: Some(16..80),
    },
    Layout {
        ty: GgmlType::IQ4_NL,
        f16_fields: &[0],
        quant_bytes: None,
    },
    Layout {
        ty: GgmlType::IQ4_XS,
        f16_fields: &[0],
        quant_bytes: None,
    },
];

fn layout(ty: GgmlType) -> &'static Layout {
    LAYOUTS.iter().find(|l| l.ty == ty).expect("layout")
}

/// f16 scale bit patterns: extremes and ordinary values (finite only: the formats never store
/// NaN or infinity).
fn f16_bits() -> impl Strategy<Value = u16> {
    prop_oneof![
        Just(0x7BFF),        // f16 max, 65504
        Just(0xFBFF),        // -65504
        Just(0x0001),        // smallest subnormal
        Just(0x03FF),        // largest subnormal
        Just(0x0000),        // zero
        Just(0x8000),        // negative zero
        (0x1000u16..0x3C00), // ordinary magnitudes 2^-11 .. 1
        (0x9000u16..0xBC00), // and negative ones
    ]
}

/// How the non-scale bytes are filled.
#[derive(Debug, Clone, Copy)]
enum Fill {
    Random,
    Zero,
    Max,
}

#[derive(Debug, Clone)]
struct Case {
    ty: GgmlType,
    /// Weight row bytes.
    w: Vec<u8>,
    /// Activations, f32.
    x: Vec<f32>,
}

fn weight_row(ty: GgmlType, n_super: usize) -> impl Strategy<Value = Vec<u8>> {
    let elems = n_super * QK_K;
    let n_blocks = elems / ty.block_size();
    let bytes = n_blocks * ty.block_bytes();
    (
        prop::collection::vec(any::<u8>(), bytes),
        prop::collection::vec(
            (
                prop_oneof![Just(Fill::Random), Just(Fill::Zero), Just(Fill::Max)],
                f16_bits(),
                f16_bits(),
            ),
            n_blocks,
        ),
    )
        .prop_map(move |(mut w, blocks)| {
            let l = layout(ty);
            for (b, (fill, d0, d1)) in w.chunks_exact_mut(ty.block_bytes()).zip(blocks) {
                match fill {
                    Fill::Random => {}
                    Fill::Zero => b.fill(0),
                    Fill::Max => b.fill(0xFF),
                }
                for (k, &off) in l.f16_fields.iter().enumerate() {
                    let bits = if k == 0 { d0 } else { d1 };
                    b[off..off + 2].copy_from_slice(&bits.to_le_bytes());
                }
            }
            w
        })
}

fn activations(n: usize) -> impl Strategy<Value = Vec<f32>> {
    (
        prop::collection::vec(-1.0f32..1.0, n),
        prop_oneof![Just(1e-3f32), Just(1.0), Just(300.0)],
        any::<bool>(),
    )
        .prop_map(|(mut x, scale, zero_first)| {
            for v in &mut x {
                *v *= scale;
            }
            if zero_first {
                x[..QK_K].fill(0.0);
            }
            x
        })
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::sample::select(LAYOUTS.iter().map(|l| l.ty).collect::<Vec<_>>()),
        1usize..=4,
    )
        .prop_flat_map(|(ty, n_super)| {
            (weight_row(ty, n_super), activations(n_super * QK_K)).prop_map(move |(w, x)| Case {
                ty,
                w,
                x,
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Columns multiplied together as each is alone (the sequences of a decoding batch) get the
    /// bits of the one-column product, with the file's layout and the repacked copy, also from
    /// 8 columns on, where the batch product of some types changes arithmetic.
    #[test]
    fn columns_together_equal_each_alone_and_pieces_equal_the_whole(
        (ty, n_super, n_cols, w, x) in (
            prop::sample::select(LAYOUTS.iter().map(|l| l.ty).collect::<Vec<_>>()),
            1usize..=3,
            2usize..=14,
        )
            .prop_flat_map(|(ty, n_super, n_cols)| {
                (
                    Just(ty),
                    Just(n_super),
                    Just(n_cols),
                    prop::collection::vec(weight_row(ty, n_super), 16).prop_map(|r| r.concat()),
                    activations(n_cols * n_super * QK_K),
                )
            })
    ) {
        let (rows, cols) = (16, n_super * QK_K);
        let packed = llmrt::quant::repack::PackedCopy::pack(ty, &w, rows, cols);
        for packed in [None, packed.as_ref()] {
            let m = QMatrix { ty, rows, cols, data: &w, packed };
            common::check_columns_alone(&m, &x, n_cols)?;
            common::check_pieces(&m, &x, n_cols)?;
        }
    }
}

/// ggml `quantize_row_q8_0_ref` (d = amax / 127, round half away from zero), local to the tests
/// because the crate's Q8_0 quantizer lives with the 32-element formats.
fn quantize_q8_0(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() / 32 * 34);
    for b in x.chunks_exact(32) {
        let amax = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&half::f16::from_f32(d).to_le_bytes());
        out.extend(b.iter().map(|&v| (v * id).round() as i8 as u8));
    }
    out
}

fn dequantize_q8_0(a: &[u8]) -> Vec<f32> {
    a.chunks_exact(34)
        .flat_map(|b| {
            let d = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
            b[2..].iter().map(move |&q| d * q as i8 as f32)
        })
        .collect()
}

/// The activations of `x` in `ty`'s activation format, and their dequantized values.
fn quantize_act(ty: GgmlType, x: &[f32]) -> (Vec<u8>, Vec<f32>) {
    if ty == GgmlType::IQ4_NL {
        let a = quantize_q8_0(x);
        let deq = dequantize_q8_0(&a);
        (a, deq)
    } else {
        let mut a = vec![0u8; x.len() / QK_K * GgmlType::Q8_K.block_bytes()];
        k_quants::quantize_row_q8_k(x, &mut a, Simd::Scalar);
        let mut deq = vec![0f32; x.len()];
        k_quants::dequantize_row(GgmlType::Q8_K, &a, &mut deq, Simd::Scalar);
        (a, deq)
    }
}

fn vec_dot(ty: GgmlType, w: &[u8], a: &[u8], simd: Simd) -> f32 {
    k_quants::vec_dot(ty, w, a, simd)
}

/// Σ (|w_i| + |offset_i|) · |a_i| in f64: the size of the terms a dot product adds, including the
/// min offsets that cancel inside `w_i` for types with mins.
fn term_magnitude(ty: GgmlType, w: &[u8], wf: &[f32], af: &[f32]) -> f64 {
    let mut offsets = vec![0f32; wf.len()];
    if let Some(range) = &layout(ty).quant_bytes {
        let mut zeroed = w.to_vec();
        for b in zeroed.chunks_exact_mut(ty.block_bytes()) {
            b[range.clone()].fill(0);
        }
        dequantize(ty, &zeroed, &mut offsets, Simd::Scalar);
    }
    wf.iter()
        .zip(&offsets)
        .zip(af)
        .map(|((&w, &o), &a)| ((w as f64).abs() + (o as f64).abs()) * (a as f64).abs())
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn simd_matches_scalar_and_integer_formulation(c in case()) {
        let n = c.x.len();
        let mut w_ref = vec![0f32; n];
        dequantize(c.ty, &c.w, &mut w_ref, Simd::Scalar);
        let (a, a_deq) = quantize_act(c.ty, &c.x);
        let dot_scalar = vec_dot(c.ty, &c.w, &a, Simd::Scalar);
        let magnitude = term_magnitude(c.ty, &c.w, &w_ref, &a_deq);

        // Integer formulation vs float dot of dequantized values.
        let dot_f64: f64 = w_ref.iter().zip(&a_deq).map(|(&w, &a)| w as f64 * a as f64).sum();
        prop_assert!(
            (dot_scalar as f64 - dot_f64).abs() <= INT_FORMULATION_REL_TOL * magnitude,
            "{:?}: scalar vec_dot {} vs dequantized dot {} (magnitude {})",
            c.ty, dot_scalar, dot_f64, magnitude
        );

        for simd in Simd::all_supported() {
            let mut w_simd = vec![0f32; n];
            dequantize(c.ty, &c.w, &mut w_simd, simd);
            for (i, (s, r)) in w_simd.iter().zip(&w_ref).enumerate() {
                prop_assert_eq!(s.to_bits(), r.to_bits(), "{:?} {:?} dequantize element {}", c.ty, simd, i);
            }
            let dot = vec_dot(c.ty, &c.w, &a, simd);
            if LLAMA_CPP_ORDER.contains(&c.ty) {
                // Kernels in llama.cpp's arithmetic: every level computes it in the same order.
                prop_assert_eq!(dot.to_bits(), dot_scalar.to_bits(), "{:?} {:?}: vec_dot {} vs scalar {}", c.ty, simd, dot, dot_scalar);
                let (tiled, tiled_scalar) = (
                    k_quants::vec_dot_tiled(c.ty, &c.w, &a, simd),
                    k_quants::vec_dot_tiled(c.ty, &c.w, &a, Simd::Scalar),
                );
                prop_assert_eq!(tiled.to_bits(), tiled_scalar.to_bits(), "{:?} {:?}: tiled", c.ty, simd);
                let (four, four_scalar) = (
                    k_quants::vec_dot_four_columns(c.ty, &c.w, &a, simd),
                    k_quants::vec_dot_four_columns(c.ty, &c.w, &a, Simd::Scalar),
                );
                prop_assert_eq!(four.to_bits(), four_scalar.to_bits(), "{:?} {:?}: four columns", c.ty, simd);
                if let Some(x4) = k_quants::vec_dot_tiled_x4(c.ty, &c.w, [&a, &a, &a, &a], simd) {
                    for v in x4 {
                        prop_assert_eq!(v.to_bits(), tiled_scalar.to_bits(), "{:?} {:?}: tiled, four columns at once", c.ty, simd);
                    }
                }
                if let Some(x4) = k_quants::vec_dot_four_columns_x4(c.ty, &c.w, [&a, &a, &a, &a], simd) {
                    for v in x4 {
                        prop_assert_eq!(v.to_bits(), four_scalar.to_bits(), "{:?} {:?}: four columns at once", c.ty, simd);
                    }
                }
                for v in [tiled, four] {
                    prop_assert!((v as f64 - dot_f64).abs() <= INT_FORMULATION_REL_TOL * magnitude);
                }
            } else if matches!(c.ty, GgmlType::IQ4_NL | GgmlType::IQ4_XS) {
                // Also llama.cpp's arithmetic (one column; IQ4_XS's tiled kernel too).
                prop_assert_eq!(dot.to_bits(), dot_scalar.to_bits(), "{:?} {:?}: vec_dot {} vs scalar {}", c.ty, simd, dot, dot_scalar);
                if c.ty == GgmlType::IQ4_XS {
                    let (tiled, tiled_scalar) = (
                        k_quants::vec_dot_tiled(GgmlType::IQ4_XS, &c.w, &a, simd),
                        k_quants::vec_dot_tiled(GgmlType::IQ4_XS, &c.w, &a, Simd::Scalar),
                    );
                    prop_assert_eq!(tiled.to_bits(), tiled_scalar.to_bits(), "{:?} {:?}: tiled", c.ty, simd);
                    prop_assert!((tiled as f64 - dot_f64).abs() <= INT_FORMULATION_REL_TOL * magnitude);
                }
            } else {
                prop_assert!(
                    (dot as f64 - dot_scalar as f64).abs() <= SIMD_DOT_REL_TOL * magnitude,
                    "{:?} {:?}: vec_dot {} vs scalar {} (magnitude {})",
                    c.ty, simd, dot, dot_scalar, magnitude
                );
            }
        }
    }

    #[test]
    fn q8_k_quantization_round_trips(x in (1usize..=4).prop_flat_map(|n| activations(n * QK_K))) {
        let n_blocks = x.len() / QK_K;
        let mut scalar = vec![0u8; n_blocks * GgmlType::Q8_K.block_bytes()];
        k_quants::quantize_row_q8_k(&x, &mut scalar, Simd::Scalar);
        for simd in Simd::all_supported() {
            let mut q = vec![0u8; scalar.len()];
            k_quants::quantize_row_q8_k(&x, &mut q, simd);
            prop_assert_eq!(&q, &scalar, "{:?}", simd);
        }
        let mut deq = vec![0f32; x.len()];
        k_quants::dequantize_row(GgmlType::Q8_K, &scalar, &mut deq, Simd::Scalar);
        for (b, blk) in scalar.chunks_exact(GgmlType::Q8_K.block_bytes()).enumerate() {
            let d = f32::from_le_bytes([blk[0], blk[1], blk[2], blk[3]]);
            let qs: Vec<i32> = blk[4..260].iter().map(|&q| q as i8 as i32).collect();
            let xs = &x[b * QK_K..(b + 1) * QK_K];
            let amax = xs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            if amax == 0.0 {
                prop_assert!(blk.iter().all(|&v| v == 0), "all-zero block quantizes to zeros");
                continue;
            }
            // The value of largest magnitude maps to -127 and nothing exceeds 127 in magnitude.
            prop_assert_eq!(qs.iter().map(|q| q.abs()).max(), Some(127));
            for j in 0..QK_K / 16 {
                let bsum = i16::from_le_bytes([blk[260 + 2 * j], blk[261 + 2 * j]]) as i32;
                prop_assert_eq!(bsum, qs[16 * j..16 * j + 16].iter().sum::<i32>());
            }
            // Round-trip error: at most half a step, plus the f32 rounding of `iscale * x` and of
            // `d = 1 / iscale` magnified by |q| <= 127.
            let bound = d.abs() as f64 * (0.5 + Q8_K_ROUNDING_SLACK);
            for (i, (&v, &r)) in xs.iter().zip(&deq[b * QK_K..]).enumerate() {
                prop_assert!(((v - r) as f64).abs() <= bound, "block {} element {}: {} vs {}", b, i, v, r);
            }
        }
    }
}

/// A 16-row packed K-quant form, as [`check_packed`] drives it.
trait PackedForm: Sized {
    /// The weight type packed.
    const TY: GgmlType;
    /// Columns up to which the property test goes (past the form's arithmetic switches).
    const MAX_COLS: usize;
    fn pack(data: &[u8], rows: usize, cols: usize) -> Option<Self>;
    fn groups(&self) -> usize;
    /// Checks that row `r`'s packing keeps what the file's row `row` holds.
    fn check_row(&self, r: usize, row: &[u8]) -> Result<(), TestCaseError>;
    /// The AVX-512 kernel over every group; `false` without computing when the CPU lacks it.
    fn matmul(
        &self,
        acts: &[u8],
        stride: usize,
        n_cols: usize,
        store: impl FnMut(usize, usize, f32),
    ) -> bool;
    /// The scalar twin that column `c` of `n_cols` must equal bit for bit.
    fn scalar_twin(n_cols: usize, c: usize, w: &[u8], a: &[u8]) -> f32;
}

/// Q4_K weights repacked into 16-row groups ([`llmrt::quant::packed::q4_k`]): the packing keeps
/// every row's scales and quants; the columns in whole groups of four equal the four-column
/// scalar twin, the rest the one-column twin.
impl PackedForm for llmrt::quant::packed::q4_k::PackedQ4K {
    const TY: GgmlType = GgmlType::Q4_K;
    const MAX_COLS: usize = 9;

    fn pack(data: &[u8], rows: usize, cols: usize) -> Option<Self> {
        Self::pack(data, rows, cols)
    }

    fn groups(&self) -> usize {
        self.grouped().groups()
    }

    fn check_row(&self, r: usize, row: &[u8]) -> Result<(), TestCaseError> {
        let bytes = Self::TY.block_bytes();
        for (i, (d, dmin, qs)) in self.unpack_row(r).into_iter().enumerate() {
            let b = &row[i * bytes..][..bytes];
            prop_assert_eq!(&d[..], &b[0..2]);
            prop_assert_eq!(&dmin[..], &b[2..4]);
            prop_assert_eq!(&qs[..], &b[16..]);
        }
        Ok(())
    }

    fn matmul(
        &self,
        acts: &[u8],
        stride: usize,
        n_cols: usize,
        store: impl FnMut(usize, usize, f32),
    ) -> bool {
        use llmrt::quant::packed::q4_k::{matmul_groups, ActivationSumsK};
        let sums = ActivationSumsK::compute(acts, stride, n_cols);
        let chunked = n_cols - n_cols % 4;
        let groups = 0..self.groups();
        matmul_groups(self, groups, acts, stride, n_cols, chunked, &sums, store)
    }

    fn scalar_twin(n_cols: usize, c: usize, w: &[u8], a: &[u8]) -> f32 {
        if c < n_cols - n_cols % 4 {
            k_quants::vec_dot_four_columns(Self::TY, w, a, Simd::Scalar)
        } else {
            k_quants::vec_dot(Self::TY, w, a, Simd::Scalar)
        }
    }
}

/// Q6_K weights repacked into 16-row groups ([`llmrt::quant::packed::q6_k`]): the packing keeps
/// every row's scale, sub-block scales and quants; from 8 columns on every output equals the
/// tiled scalar twin, below that the one-column twin.
impl PackedForm for llmrt::quant::packed::q6_k::PackedQ6K {
    const TY: GgmlType = GgmlType::Q6_K;
    const MAX_COLS: usize = 14;

    fn pack(data: &[u8], rows: usize, cols: usize) -> Option<Self> {
        Self::pack(data, rows, cols)
    }

    fn groups(&self) -> usize {
        self.grouped().groups()
    }

    fn check_row(&self, r: usize, row: &[u8]) -> Result<(), TestCaseError> {
        let bytes = Self::TY.block_bytes();
        let mut deq = vec![0f32; row.len() / bytes * QK_K];
        dequantize(Self::TY, row, &mut deq, Simd::Scalar);
        for (i, (d, scales, qs)) in self.unpack_row(r).into_iter().enumerate() {
            let b = &row[i * bytes..][..bytes];
            prop_assert_eq!(&d[..], &b[208..210]);
            prop_assert_eq!(&scales.map(|s| s as u8)[..], &b[192..208]);
            // The quants, through the dequantized values `d · sc · (q − 32)`.
            let d = half::f16::from_le_bytes(d).to_f32();
            for (e, &q) in qs.iter().enumerate() {
                let want = d * (scales[e / 16] as f32 * (q as i32 - 32) as f32);
                prop_assert_eq!(want.to_bits(), deq[i * QK_K + e].to_bits(), "element {}", e);
            }
        }
        Ok(())
    }

    fn matmul(
        &self,
        acts: &[u8],
        stride: usize,
        n_cols: usize,
        store: impl FnMut(usize, usize, f32),
    ) -> bool {
        let groups = 0..self.groups();
        llmrt::quant::packed::q6_k::matmul_groups(
            self,
            groups,
            acts,
            stride,
            n_cols,
            n_cols >= llmrt::quant::packed::q6_k::TILED_MIN_COLS,
            store,
        )
    }

    fn scalar_twin(n_cols: usize, _c: usize, w: &[u8], a: &[u8]) -> f32 {
        if n_cols >= llmrt::quant::packed::q6_k::TILED_MIN_COLS {
            k_quants::vec_dot_tiled(Self::TY, w, a, Simd::Scalar)
        } else {
            k_quants::vec_dot(Self::TY, w, a, Simd::Scalar)
        }
    }
}

/// Packs `rows` (16 or 32 rows of `P::TY`) and checks each row's packing, then dots them with
/// the `n_cols` columns of `x` (quantized to Q8_K) by the AVX-512 kernel, when the CPU has it,
/// and holds every output to its scalar twin bit for bit.
fn check_packed<P: PackedForm>(
    rows: &[Vec<u8>],
    x: &[f32],
    n_cols: usize,
) -> Result<(), TestCaseError> {
    use llmrt::quant::repack::avx512_vnni;
    let cols = x.len() / n_cols;
    let data = rows.concat();
    let packed = P::pack(&data, rows.len(), cols).expect("whole groups");
    for (r, row) in rows.iter().enumerate() {
        packed.check_row(r, row)?;
    }
    let acts: Vec<u8> = x
        .chunks_exact(cols)
        .flat_map(|c| quantize_act(P::TY, c).0)
        .collect();
    let stride = acts.len() / n_cols;
    let mut out = vec![f32::NAN; rows.len() * n_cols];
    let ran = packed.matmul(&acts, stride, n_cols, |c, r, v| out[c * rows.len() + r] = v);
    prop_assert_eq!(ran, avx512_vnni());
    if !ran {
        return Ok(());
    }
    for c in 0..n_cols {
        let a = &acts[c * stride..][..stride];
        for (r, w) in rows.iter().enumerate() {
            let want = P::scalar_twin(n_cols, c, w, a);
            let got = out[c * rows.len() + r];
            prop_assert!(
                same_bits(got, want),
                "{} row {} column {} of {}: {} vs scalar {}",
                P::TY,
                r,
                c,
                n_cols,
                got,
                want
            );
        }
    }
    Ok(())
}

/// `(rows, x, n_cols)` for [`check_packed`]: 16 or 32 rows of one or two super-blocks of
/// `P::TY`, and `1..=P::MAX_COLS` activation columns.
fn packed_operands<P: PackedForm>() -> impl Strategy<Value = (Vec<Vec<u8>>, Vec<f32>, usize)> {
    (1usize..=2, 1usize..=2, 1usize..=P::MAX_COLS).prop_flat_map(|(groups, n_super, n_cols)| {
        (
            prop::collection::vec(weight_row(P::TY, n_super), 16 * groups),
            activations(n_cols * n_super * QK_K),
            Just(n_cols),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn packed_q4_k_matches_scalar(
        (rows, x, n_cols) in packed_operands::<llmrt::quant::packed::q4_k::PackedQ4K>()
    ) {
        check_packed::<llmrt::quant::packed::q4_k::PackedQ4K>(&rows, &x, n_cols)?;
    }

    #[test]
    fn packed_q6_k_matches_scalar(
        (rows, x, n_cols) in packed_operands::<llmrt::quant::packed::q6_k::PackedQ6K>()
    ) {
        check_packed::<llmrt::quant::packed::q6_k::PackedQ6K>(&rows, &x, n_cols)?;
    }
}

#[test]
fn packed_q4_k_rejects_shapes_outside_the_layout() {
    use llmrt::quant::packed::q4_k::PackedQ4K;
    let row = vec![0u8; GgmlType::Q4_K.block_bytes()];
    let rows: Vec<u8> = (0..24).flat_map(|_| row.clone()).collect();
    assert!(
        PackedQ4K::pack(&rows, 24, QK_K).is_none(),
        "24 rows are not whole groups"
    );
    assert!(PackedQ4K::pack(&rows[..16 * 144 - 1], 16, QK_K).is_none());
    assert!(PackedQ4K::pack(&rows[..16 * 144], 16, QK_K).is_some());
    assert!(
        PackedQ4K::pack(&rows[..16 * 144], 16, 128).is_none(),
        "partial super-block"
    );
}

fn from_hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// llama.cpp's own x86 dot-product kernels (`ggml_vec_dot_<type>_<activation type>`, called
/// through its shared library by scripts/make_kernel_reference.py) on random blocks: our kernels
/// must return their results to the bit, at every SIMD level and in the scalar twin.
#[test]
fn vec_dot_matches_llama_cpp_kernels() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/kernel-dots.json");
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("reference")).expect("JSON");
    let cases = reference["cases"].as_array().expect("cases");
    let mut per_type = std::collections::BTreeMap::<String, usize>::new();
    for (i, case) in cases.iter().enumerate() {
        let name = case["type"].as_str().expect("type");
        let ty = (0..64)
            .filter_map(GgmlType::from_u32)
            .find(|t| format!("{t:?}") == name)
            .unwrap_or_else(|| panic!("unexpected type {name}"));
        let w = from_hex(case["w"].as_str().expect("w"));
        let a = from_hex(case["a"].as_str().expect("a"));
        let want = case["dot_bits"].as_u64().expect("dot_bits") as u32;
        for simd in Simd::all_supported() {
            let got = match ty {
                GgmlType::Q5_K | GgmlType::Q3_K | GgmlType::IQ4_XS => vec_dot(ty, &w, &a, simd),
                _ => llmrt::quant::vec_dot(ty, &w, &a, simd),
            };
            assert_eq!(
                got.to_bits(),
                want,
                "case {i} {ty:?} {simd:?}: {got} vs llama.cpp {}",
                f32::from_bits(want)
            );
        }
        *per_type.entry(name.to_string()).or_default() += 1;
    }
    // Every type the script writes is checked, each on many cases.
    assert_eq!(per_type.len(), 7, "{per_type:?}");
    assert!(per_type.values().all(|&n| n >= 32), "{per_type:?}");
}
