//! Throughput of the K-quant and IQ4 kernels per type and SIMD level, in weight bytes per second.
//!
//! `cargo bench --bench kquant -- --warm-up-time 1 --measurement-time 2`

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use llmrt::quant::dispatch::k_quants;
use llmrt::quant::{GgmlType, Simd, QK_K};

/// Row length and row count of the benchmarked matrix: a typical hidden size, and enough rows
/// that the weights (100-200 KiB) come from L2 as in a real matmul slice.
const N_PER_ROW: usize = 4096;
const N_ROWS: usize = 32;

/// (type, byte offsets of its f16 scale fields).
const TYPES: &[(GgmlType, &[usize])] = &[
    (GgmlType::Q4_K, &[0, 2]),
    (GgmlType::Q6_K, &[208]),
    (GgmlType::Q5_K, &[0, 2]),
    (GgmlType::Q3_K, &[108]),
    (GgmlType::Q2_K, &[80, 82]),
    (GgmlType::IQ4_NL, &[0]),
    (GgmlType::IQ4_XS, &[0]),
];

/// Deterministic pseudo-random bytes (xorshift), so runs compare.
fn random_bytes(n: usize, mut state: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn weights(ty: GgmlType, f16_fields: &[usize]) -> Vec<u8> {
    let bytes = N_ROWS * ty.row_bytes(N_PER_ROW as u64).expect("whole blocks") as usize;
    let mut w = random_bytes(bytes, 0x9E37_79B9_7F4A_7C15);
    let scale = half::f16::from_f32(0.01).to_le_bytes();
    for b in w.chunks_exact_mut(ty.block_bytes()) {
        for &off in f16_fields {
            b[off..off + 2].copy_from_slice(&scale);
        }
    }
    w
}

fn activations(ty: GgmlType) -> Vec<u8> {
    let x: Vec<f32> = random_bytes(N_PER_ROW, 7)
        .into_iter()
        .map(|b| b as f32 / 128.0 - 1.0)
        .collect();
    if ty == GgmlType::IQ4_NL {
        // Q8_0 blocks: f16 d + 32 i8 (quants within ±127 as ggml's quantizer makes them).
        x.chunks_exact(32)
            .flat_map(|b| {
                let mut blk = half::f16::from_f32(1.0 / 127.0).to_le_bytes().to_vec();
                blk.extend(b.iter().map(|&v| (v * 127.0).round() as i8 as u8));
                blk
            })
            .collect()
    } else {
        let mut a = vec![0u8; N_PER_ROW / QK_K * GgmlType::Q8_K.block_bytes()];
        k_quants::quantize_row_q8_k(&x, &mut a, Simd::Scalar);
        a
    }
}

fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32], simd: Simd) {
    k_quants::dequantize_row(ty, src, dst, simd)
}

fn vec_dot(ty: GgmlType, w: &[u8], a: &[u8], simd: Simd) -> f32 {
    k_quants::vec_dot(ty, w, a, simd)
}

fn bench(c: &mut Criterion) {
    for &(ty, f16_fields) in TYPES {
        let w = weights(ty, f16_fields);
        let a = activations(ty);
        let row_bytes = w.len() / N_ROWS;

        let mut g = c.benchmark_group(format!("vec_dot/{ty}"));
        g.throughput(Throughput::Bytes(w.len() as u64));
        for simd in Simd::all_supported() {
            g.bench_function(BenchmarkId::from_parameter(simd.name()), |b| {
                b.iter(|| {
                    let mut s = 0.0f32;
                    for row in w.chunks_exact(row_bytes) {
                        s += vec_dot(ty, black_box(row), black_box(&a), simd);
                    }
                    s
                })
            });
        }
        g.finish();

        let mut g = c.benchmark_group(format!("dequantize/{ty}"));
        g.throughput(Throughput::Bytes(w.len() as u64));
        let mut out = vec![0f32; N_PER_ROW];
        for simd in Simd::all_supported() {
            g.bench_function(BenchmarkId::from_parameter(simd.name()), |b| {
                b.iter(|| {
                    for row in w.chunks_exact(row_bytes) {
                        dequantize(ty, black_box(row), &mut out, simd);
                    }
                    black_box(&out);
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
