//! Kernel throughput: dequantize and vec_dot per type and SIMD level (bytes of weights per
//! second), and matmul at the shapes of the test models' FFN down projections, for one column
//! (generation) and 64 (a prompt batch).
//!
//! `cargo bench --bench quant -- --warm-up-time 1 --measurement-time 2`

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use half::f16;

use llmrt::quant::{self, matmul, vec_dot_type, GgmlType, QMatrix, Simd, QK};

const BLOCK_TYPES: [GgmlType; 5] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
];
const FLOAT_TYPES: [GgmlType; 3] = [GgmlType::F32, GgmlType::F16, GgmlType::BF16];

/// Elements per kernel call: 32 Ki weights (18 KiB of Q4_0) with their activations stay in L2,
/// so this measures the kernels, not DRAM.
const KERNEL_ELEMENTS: usize = 32 * 1024;

/// Deterministic pseudo-random values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Weights of `ty` for `n` elements: float types encoded directly, block types as plausible
/// blocks (small positive scale, negative minimum, pseudo-random quants).
fn weights(ty: GgmlType, n: usize, seed: u64) -> Vec<u8> {
    let v = values(n, seed);
    match ty {
        GgmlType::F32 => return v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        GgmlType::F16 => {
            return v
                .iter()
                .flat_map(|&x| f16::from_f32(x).to_le_bytes())
                .collect()
        }
        GgmlType::BF16 => {
            return v
                .iter()
                .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
                .collect()
        }
        _ => {}
    }
    let mut out = Vec::with_capacity(ty.row_bytes(n as u64).unwrap() as usize);
    let noise = values(n / QK * ty.block_bytes(), seed ^ 1);
    for (b, chunk) in noise.chunks_exact(ty.block_bytes()).enumerate() {
        let start = out.len();
        out.extend(f16::from_f32(0.01 + 0.001 * (b % 7) as f32).to_le_bytes());
        if matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1) {
            out.extend(f16::from_f32(-0.08).to_le_bytes());
        }
        let body = ty.block_bytes() - (out.len() - start);
        out.extend(chunk[..body].iter().map(|&r| ((r + 1.0) * 127.5) as u8));
    }
    out
}

fn kernels(c: &mut Criterion) {
    let x = values(KERNEL_ELEMENTS, 7);
    for ty in BLOCK_TYPES.iter().chain(&FLOAT_TYPES).copied() {
        let w = weights(ty, KERNEL_ELEMENTS, 3);
        let act_ty = vec_dot_type(ty);
        let mut act = vec![0u8; act_ty.row_bytes(KERNEL_ELEMENTS as u64).unwrap_or(0) as usize];
        quant::quantize_activations(act_ty, &x, &mut act, Simd::Scalar).unwrap();
        let mut out = vec![0.0f32; KERNEL_ELEMENTS];

        let mut g = c.benchmark_group(format!("dequantize/{ty}"));
        g.throughput(Throughput::Bytes(w.len() as u64));
        for simd in Simd::all_supported() {
            g.bench_function(BenchmarkId::from_parameter(simd.name()), |b| {
                b.iter(|| quant::dequantize_row(ty, black_box(&w), &mut out, simd).unwrap())
            });
        }
        g.finish();

        let mut g = c.benchmark_group(format!("vec_dot/{ty}"));
        g.throughput(Throughput::Bytes(w.len() as u64));
        for simd in Simd::all_supported() {
            g.bench_function(BenchmarkId::from_parameter(simd.name()), |b| {
                if FLOAT_TYPES.contains(&ty) {
                    // The one-column arithmetic, as token generation runs it.
                    let product = quant::dispatch::float::FloatProduct::Row;
                    b.iter(|| {
                        quant::dispatch::float::vec_dot(ty, black_box(&w), &act, product, simd)
                    })
                } else {
                    b.iter(|| quant::vec_dot(ty, black_box(&w), black_box(&act), simd))
                }
            });
        }
        g.finish();
    }

    let mut g = c.benchmark_group("quantize_activations");
    g.throughput(Throughput::Bytes((KERNEL_ELEMENTS * 4) as u64));
    for act_ty in [GgmlType::Q8_0, GgmlType::Q8_1] {
        let mut act = vec![0u8; act_ty.row_bytes(KERNEL_ELEMENTS as u64).unwrap() as usize];
        for simd in Simd::all_supported() {
            g.bench_function(BenchmarkId::new(act_ty.name(), simd.name()), |b| {
                b.iter(|| quant::quantize_activations(act_ty, black_box(&x), &mut act, simd))
            });
        }
    }
    g.finish();
}

fn matmuls(c: &mut Criterion) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let best = Simd::detect();
    // (rows, cols): FFN down projections of smollm2-135m, qwen2.5-0.5b, gemma-3-270m.
    for (rows, cols) in [(576, 1536), (896, 4864), (640, 2048)] {
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q8_0,
        ] {
            let data = weights(ty, rows * cols, 11);
            let w = QMatrix {
                ty,
                rows,
                cols,
                data: &data,
                packed: None,
            };
            let mut g = c.benchmark_group(format!("matmul/{ty}/{rows}x{cols}"));
            g.throughput(Throughput::Bytes(data.len() as u64));
            for n_cols in [1usize, 64] {
                let x = values(cols * n_cols, 5);
                let mut out = vec![0.0f32; rows * n_cols];
                let mut scratch = Vec::new();
                let levels: Vec<Simd> = if ty == GgmlType::Q4_0 {
                    Simd::all_supported()
                        .into_iter()
                        .filter(|s| *s != Simd::Scalar || n_cols == 1)
                        .collect()
                } else {
                    vec![best]
                };
                for simd in levels {
                    let id = BenchmarkId::new(format!("n{n_cols}"), simd.name());
                    g.bench_function(id, |b| {
                        b.iter(|| {
                            matmul(&pool, &w, &x, n_cols, &mut out, &mut scratch, simd).unwrap()
                        })
                    });
                }
            }
            g.finish();
        }
    }
}

criterion_group!(benches, kernels, matmuls);
criterion_main!(benches);
