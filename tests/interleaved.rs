//! Q5_0 and Q8_0 weights repacked into interleaved 16-row groups: the packing is lossless, and
//! every output of the AVX-512 kernel and of its scalar twin equals the type's `vec_dot_scalar`
//! (llama.cpp's eight-lane arithmetic) bit for bit.

use half::f16;
use proptest::prelude::*;

use llmrt::quant::formats::{q5_0, q8_0};
use llmrt::quant::packed::lanes::{self as interleaved, LaneSums, PackedLanes};
use llmrt::quant::{GgmlType, QK};

mod common;
use common::{packed_operands, same_bits};

/// Packs `rows`, checks the round trip, then runs the kernel (when the CPU has it) and the
/// scalar twin against `vec_dot_scalar` for every (row, column).
fn check(
    ty: GgmlType,
    n_blocks: usize,
    n_cols: usize,
    rows: &[u8],
    acts: &[u8],
) -> Result<(), TestCaseError> {
    let row_bytes = n_blocks * ty.block_bytes();
    let stride = n_blocks * GgmlType::Q8_0.block_bytes();
    let n_rows = rows.len() / row_bytes;
    let packed = PackedLanes::pack(ty, rows, n_rows, n_blocks * QK).expect("whole groups");
    prop_assert_eq!(packed.ty(), ty);
    for r in 0..n_rows {
        prop_assert_eq!(
            &packed.unpack_row(r)[..],
            &rows[r * row_bytes..][..row_bytes],
            "row {}",
            r
        );
    }
    let reference = |r: usize, c: usize| {
        let (w, a) = (
            &rows[r * row_bytes..][..row_bytes],
            &acts[c * stride..][..stride],
        );
        if ty == GgmlType::Q5_0 {
            q5_0::vec_dot_scalar(w, a)
        } else {
            q8_0::vec_dot_scalar(w, a)
        }
    };
    let sums = LaneSums::compute(ty, acts, stride, n_cols);
    let mut twin = vec![f32::NAN; n_rows * n_cols];
    interleaved::matmul_groups_scalar(
        &packed,
        0..packed.grouped().groups(),
        acts,
        stride,
        n_cols,
        &sums,
        |c, r, v| twin[c * n_rows + r] = v,
    );
    let mut out = vec![f32::NAN; n_rows * n_cols];
    let ran = interleaved::matmul_groups(
        &packed,
        0..packed.grouped().groups(),
        acts,
        stride,
        n_cols,
        &sums,
        |c, r, v| out[c * n_rows + r] = v,
    );
    prop_assert_eq!(ran, interleaved::avx512_vnni());
    for c in 0..n_cols {
        for r in 0..n_rows {
            let want = reference(r, c);
            let got = twin[c * n_rows + r];
            prop_assert!(
                same_bits(got, want),
                "scalar twin, row {} column {}: {} vs {}",
                r,
                c,
                got,
                want
            );
            if ran {
                let got = out[c * n_rows + r];
                prop_assert!(
                    same_bits(got, want),
                    "kernel, row {} column {}: {} vs {}",
                    r,
                    c,
                    got,
                    want
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn q5_0_matches_scalar((n_blocks, n_cols, rows, acts) in packed_operands(GgmlType::Q5_0)) {
        check(GgmlType::Q5_0, n_blocks, n_cols, &rows, &acts)?;
    }

    #[test]
    fn q8_0_matches_scalar((n_blocks, n_cols, rows, acts) in packed_operands(GgmlType::Q8_0)) {
        check(GgmlType::Q8_0, n_blocks, n_cols, &rows, &acts)?;
    }
}

#[test]
fn rejects_shapes_outside_the_layout() {
    let block = GgmlType::Q5_0.block_bytes();
    let data = vec![0u8; 32 * 2 * block];
    assert!(
        PackedLanes::pack(GgmlType::Q5_0, &data[..24 * 2 * block], 24, 64).is_none(),
        "24 rows are not whole groups"
    );
    assert!(PackedLanes::pack(GgmlType::Q5_0, &data[..16 * 2 * block - 1], 16, 64).is_none());
    assert!(PackedLanes::pack(GgmlType::Q4_0, &data[..16 * 2 * 18], 16, 64).is_none());
    assert!(PackedLanes::pack(GgmlType::Q5_0, &data[..16 * 2 * block], 16, 64).is_some());
}

/// The matmul with the interleaved copy attached gives the same bits as without it (the
/// file-layout kernels, which `tests/quant.rs` holds to the scalar twins), through the task
/// splitting, for one column (generation) and several (prompts).
#[test]
fn matmul_with_the_copy_matches_the_file_layout() {
    use llmrt::quant::repack::PackedCopy;
    use llmrt::quant::{matmul, QMatrix, Simd};
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let (rows, cols) = (80, 256);
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for ty in [GgmlType::Q5_0, GgmlType::Q8_0] {
        let n_blocks = rows * cols / QK;
        let mut data = Vec::with_capacity(n_blocks * ty.block_bytes());
        for _ in 0..n_blocks {
            let d = f16::from_f32(0.001 + (next() % 1000) as f32 * 5e-5);
            data.extend(d.to_le_bytes());
            data.extend((2..ty.block_bytes()).map(|_| next() as u8));
        }
        let packed =
            PackedCopy::Lanes(PackedLanes::pack(ty, &data, rows, cols).expect("whole groups"));
        let plain = QMatrix::new(ty, rows, cols, &data);
        let with_copy = QMatrix {
            packed: Some(&packed),
            ..plain
        };
        for n_cols in [1, 2, 3, 4, 7, 9, 16] {
            let x: Vec<f32> = (0..cols * n_cols)
                .map(|_| (next() % 2001) as f32 / 1000.0 - 1.0)
                .collect();
            let run = |w: &QMatrix<'_>| {
                let mut out = vec![0.0; rows * n_cols];
                let mut scratch = Vec::new();
                matmul(&pool, w, &x, n_cols, &mut out, &mut scratch, Simd::Avx512).unwrap();
                out
            };
            let (want, got) = (run(&plain), run(&with_copy));
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    same_bits(*a, *b),
                    "{ty} {n_cols} columns, output {i}: {a} vs {b}"
                );
            }
        }
    }
}
