//! Random operands shared by the kernel tests (`tests/quant.rs`, `tests/interleaved.rs`,
//! `tests/kquant.rs`): blocks of the 32-element formats with their extreme scales and quant
//! patterns, and the bit-for-bit comparison.

// Each test crate compiles this module and uses only part of it.
#![allow(dead_code)]

use half::f16;
pub mod heatmap;
pub mod models;

use proptest::collection::vec;
use proptest::prelude::*;

use llmrt::quant::{GgmlType, QK};

/// Whether `a` and `b` are the same f32 bits (any NaN equal to any NaN).
pub fn same_bits(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// f16 scale bits: the extremes (largest finite, smallest normal, subnormals, zero, negative) and
/// random finite values.
pub fn weight_scale() -> impl Strategy<Value = u16> {
    prop_oneof![
        Just(f16::MAX.to_bits()),
        Just(f16::MIN.to_bits()),
        Just(f16::MIN_POSITIVE.to_bits()),
        Just(0x0001u16),
        Just(0x83FFu16),
        Just(0u16),
        0u16..0x7C00,
        0x8000u16..0xFC00,
    ]
}

/// f16 activation scales as the quantizer produces them (`amax / 127`, non-negative): zero,
/// subnormal, smallest normal, or random up to 16.
pub fn act_scale() -> impl Strategy<Value = u16> {
    prop_oneof![
        Just(0u16),
        Just(0x0001u16),
        Just(f16::MIN_POSITIVE.to_bits()),
        (0u16..=f16::from_f32(16.0).to_bits()),
    ]
}

/// `len` quant bytes: all zero, maximal patterns, or random.
pub fn quant_bytes(len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(vec![0u8; len]),
        Just(vec![0xFFu8; len]),
        Just(vec![0x80u8; len]),
        Just(vec![0x7Fu8; len]),
        vec(any::<u8>(), len),
    ]
}

/// One weight block of `ty` as bytes.
pub fn weight_block(ty: GgmlType) -> BoxedStrategy<Vec<u8>> {
    let (n_scales, body) = match ty {
        GgmlType::Q4_0 => (1, 16),
        GgmlType::Q4_1 => (2, 16),
        GgmlType::Q5_0 => (1, 20),
        GgmlType::Q5_1 => (2, 20),
        GgmlType::Q8_0 => (1, 32),
        _ => unreachable!("not a 32-element weight type: {ty}"),
    };
    (vec(weight_scale(), n_scales), quant_bytes(body))
        .prop_map(|(scales, body)| {
            let mut b: Vec<u8> = scales.iter().flat_map(|s| s.to_le_bytes()).collect();
            b.extend(body);
            b
        })
        .boxed()
}

/// One activation block of `act_ty` (Q8_0 or Q8_1) as bytes, quants in -127..=127 as the
/// quantizer guarantees, and for Q8_1 `s = d * Σ q` as f16.
pub fn act_block(act_ty: GgmlType) -> BoxedStrategy<Vec<u8>> {
    let qs = prop_oneof![
        Just(vec![127i8; QK]),
        Just(vec![-127i8; QK]),
        Just(vec![0i8; QK]),
        vec(-127i8..=127, QK),
    ];
    (act_scale(), qs)
        .prop_map(move |(d, qs)| {
            let mut b = d.to_le_bytes().to_vec();
            if act_ty == GgmlType::Q8_1 {
                let sum: i32 = qs.iter().map(|&q| q as i32).sum();
                let s = f16::from_f32(sum as f32 * f16::from_bits(d).to_f32());
                b.extend(s.to_le_bytes());
            }
            b.extend(qs.iter().map(|&q| q as u8));
            b
        })
        .boxed()
}

/// `(n_blocks, n_cols, weight rows of 16 or 32 rows, activation columns)`: operands of the
/// 16-row packed kernels for weights of `ty` and Q8_0 activations.
pub fn packed_operands(ty: GgmlType) -> impl Strategy<Value = (usize, usize, Vec<u8>, Vec<u8>)> {
    (1usize..=5, 1usize..=13, 1usize..=2).prop_flat_map(move |(n_blocks, n_cols, groups)| {
        (
            Just(n_blocks),
            Just(n_cols),
            vec(weight_block(ty), 16 * groups * n_blocks).prop_map(|b| b.concat()),
            vec(act_block(GgmlType::Q8_0), n_cols * n_blocks).prop_map(|b| b.concat()),
        )
    })
}

/// Two thread pools (one and two threads) shared by a test binary's cases.
pub fn pools() -> &'static [rayon::ThreadPool; 2] {
    static POOLS: std::sync::OnceLock<[rayon::ThreadPool; 2]> = std::sync::OnceLock::new();
    POOLS.get_or_init(|| {
        [1, 2].map(|t| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .expect("a test thread pool")
        })
    })
}

/// Checks that [`matmul_columns_alone`] gives every one of the `n_cols` columns of `x` the bits
/// [`matmul`] gives that column alone, at every SIMD level this CPU has, on one and two threads;
/// with `w`'s repacked copy when it has one.
///
/// [`matmul_columns_alone`]: llmrt::quant::matmul_columns_alone
/// [`matmul`]: llmrt::quant::matmul
pub fn check_columns_alone(
    w: &llmrt::quant::QMatrix<'_>,
    x: &[f32],
    n_cols: usize,
) -> Result<(), TestCaseError> {
    use llmrt::quant::{matmul, matmul_columns_alone, Simd};
    let (rows, cols) = (w.rows, w.cols);
    for pool in pools() {
        for simd in Simd::all_supported() {
            let mut scratch = Vec::new();
            let mut together = vec![f32::NAN; rows * n_cols];
            matmul_columns_alone(pool, w, x, n_cols, &mut together, &mut scratch, simd)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            for c in 0..n_cols {
                let mut alone = vec![f32::NAN; rows];
                let column = &x[c * cols..][..cols];
                matmul(pool, w, column, 1, &mut alone, &mut scratch, simd)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                for r in 0..rows {
                    let got = together[c * rows + r];
                    prop_assert!(
                        same_bits(got, alone[r]),
                        "{} {rows}x{cols} packed {}: column {c} of {n_cols}, row {r}, {simd:?}, \
                         {} threads: {got} together, {} alone",
                        w.ty,
                        w.packed.is_some(),
                        pool.current_num_threads(),
                        alone[r]
                    );
                }
            }
        }
    }
    Ok(())
}

/// Checks that the `n_cols` columns of `x` computed in pieces by [`matmul_columns_of`] (cut at
/// every multiple of 4 and at two cuts together) get the bits [`matmul`] of all of them gives,
/// at every SIMD level this CPU has, on one and two threads.
///
/// [`matmul_columns_of`]: llmrt::quant::matmul_columns_of
/// [`matmul`]: llmrt::quant::matmul
pub fn check_pieces(
    w: &llmrt::quant::QMatrix<'_>,
    x: &[f32],
    n_cols: usize,
) -> Result<(), TestCaseError> {
    use llmrt::quant::{matmul, matmul_columns_of, Simd};
    let (rows, cols) = (w.rows, w.cols);
    let cuts: Vec<Vec<usize>> = (4..n_cols)
        .step_by(4)
        .map(|c| vec![c])
        .chain((n_cols > 8).then(|| vec![4, 8]))
        .collect();
    for pool in pools() {
        for simd in Simd::all_supported() {
            let mut scratch = Vec::new();
            let mut whole = vec![f32::NAN; rows * n_cols];
            matmul(pool, w, x, n_cols, &mut whole, &mut scratch, simd)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            for cut in &cuts {
                let bounds: Vec<usize> = std::iter::once(0)
                    .chain(cut.iter().copied())
                    .chain(std::iter::once(n_cols))
                    .collect();
                for piece in bounds.windows(2) {
                    let (a, b) = (piece[0], piece[1]);
                    let mut out = vec![f32::NAN; rows * (b - a)];
                    let xs = &x[a * cols..b * cols];
                    matmul_columns_of(
                        pool,
                        w,
                        xs,
                        b - a,
                        (a, n_cols),
                        &mut out,
                        &mut scratch,
                        simd,
                    )
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    for (i, (&got, &want)) in out.iter().zip(&whole[a * rows..b * rows]).enumerate()
                    {
                        prop_assert!(
                            same_bits(got, want),
                            "{} {rows}x{cols} packed {}: columns {a}..{b} of {n_cols}, value {i}, \
                             {simd:?}, {} threads: {got} in the piece, {want} whole",
                            w.ty,
                            w.packed.is_some(),
                            pool.current_num_threads()
                        );
                    }
                }
            }
        }
    }
    Ok(())
}
