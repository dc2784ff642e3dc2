//! The kernels against the portable path, bit for bit, and the portable path's own pieces.

use half::f16;

use super::layout::{widen_rows, widen_tiled};
use super::portable::{dot_lanes, dot_steps, reduce_steps};
use super::*;
#[cfg(target_arch = "x86_64")]
use super::{avx512_batch, avx512_single};
use crate::model::kv_cache::{BlockTable, HeadRows};

#[test]
fn reductions_sum_every_lane_once() {
    let a: [f32; 16] = std::array::from_fn(|i| (1 << i) as f32);
    assert_eq!(reduce16(a), 65535.0);
    let r: [[f32; 16]; 4] = std::array::from_fn(|j| std::array::from_fn(|l| (j * 16 + l) as f32));
    assert_eq!(reduce_steps(r), (0..64).sum::<i32>() as f64);
    let x: Vec<f32> = (0..96).map(|i| i as f32 * 0.5).collect();
    let exact: f32 = x.iter().map(|v| v * v).sum();
    assert_eq!(dot_steps(&x, &x), exact);
    assert_eq!(dot_lanes(&x, &x), exact);
}

#[test]
fn softmax_sums_to_one_and_masks_nothing_it_is_given() {
    let mut x: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin() * 4.0).collect();
    softmax_chunked(&mut x, 5);
    let sum: f32 = x.iter().sum();
    assert!((sum - 1.0).abs() < 1e-5, "{sum}");
    assert!(x.iter().all(|&v| v > 0.0));
}

/// xorshift64*: deterministic pseudo-random numbers for the twin tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in `[-r, r)`.
    fn float(&mut self, r: f32) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * r
    }
}

#[cfg(target_arch = "x86_64")]
fn have_avx512() -> bool {
    Simd::Avx512.is_supported()
}

/// Asserts that `vector` (16 lanes at once) gives `scalar`'s result bit for bit on each of
/// `xs` (NaN where `scalar` gives NaN). Only whole groups of 16 are checked.
#[cfg(target_arch = "x86_64")]
fn assert_lanewise(
    xs: impl IntoIterator<Item = f32>,
    vector: unsafe fn(std::arch::x86_64::__m512) -> std::arch::x86_64::__m512,
    scalar: fn(f32) -> f32,
) {
    use std::arch::x86_64::*;
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    fn check(xs: &[f32; 16], vector: unsafe fn(__m512) -> __m512, scalar: fn(f32) -> f32) {
        let mut out = [0.0f32; 16];
        // SAFETY: both arrays hold 16 floats; the caller checked the CPU has the features
        // `vector` needs.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), vector(_mm512_loadu_ps(xs.as_ptr()))) };
        for (&x, &y) in xs.iter().zip(&out) {
            let want = scalar(x);
            assert!(
                want.to_bits() == y.to_bits() || (want.is_nan() && y.is_nan()),
                "{x:e}: scalar {want:e}, vector {y:e}"
            );
        }
    }
    if !have_avx512() {
        return;
    }
    let mut group = [0.0f32; 16];
    for (i, x) in xs.into_iter().enumerate() {
        group[i % 16] = x;
        if i % 16 == 15 {
            // SAFETY: the CPU has the features (checked above).
            unsafe { check(&group, vector, scalar) };
        }
    }
}

/// Every 61st f32 bit pattern, NaNs and infinities included.
fn sparse_bit_patterns() -> impl Iterator<Item = f32> {
    (0..=u32::MAX).step_by(61).map(f32::from_bits)
}

#[cfg(target_arch = "x86_64")]
#[test]
fn vexp16_is_vexp_to_the_bit() {
    // Densely where the result turns subnormal, underflows and overflows, 3 ulps apart.
    let mut dense = Vec::new();
    for (lo, hi) in [
        (-106.0f32, -85.0f32),
        (85.0, 90.0),
        (-134.0, -132.0),
        (132.0, 134.0),
    ] {
        let mut x = lo;
        while x < hi {
            dense.push(x);
            x = f32::from_bits(x.to_bits() + if x < 0.0 { -3i32 as u32 } else { 3 });
            if x.to_bits() == 0 {
                break;
            }
        }
    }
    let special = [
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        1.0,
        -1.0,
    ];
    let mut xs: Vec<f32> = sparse_bit_patterns().chain(dense).chain(special).collect();
    // Whole groups of 16: pad with zeros.
    xs.resize(xs.len().next_multiple_of(16), 0.0);
    assert_lanewise(xs, avx512_batch::vexp16, vexp);
}

#[cfg(target_arch = "x86_64")]
#[test]
fn vector_f16_rounding_is_half() {
    assert_lanewise(sparse_bit_patterns(), avx512_batch::round_f16, |x| {
        f16::from_f32(x).to_f32()
    });
}

/// Keys and values of one KV head over `n` positions, stored as the cache stores them (f16
/// or f32, rows `stride` apart), and random queries with the windows of a batch.
struct Case {
    keys16: Vec<f16>,
    values16: Vec<f16>,
    keys32: Vec<f32>,
    values32: Vec<f32>,
    stride: usize,
    precision: AttentionPrecision,
}

impl Case {
    fn new(rng: &mut Rng, n: usize, dim: usize, dim_v: usize, f16: bool) -> Case {
        let stride = dim.max(dim_v) + 16;
        let mut draw =
            |spread: f32| -> Vec<f32> { (0..n * stride).map(|_| rng.float(spread)).collect() };
        let (keys32, values32) = (draw(2.0), draw(3.0));
        let half = |v: &[f32]| v.iter().map(|&x| f16::from_f32(x)).collect();
        Case {
            keys16: half(&keys32),
            values16: half(&values32),
            keys32,
            values32,
            stride,
            precision: if f16 {
                AttentionPrecision::F16
            } else {
                AttentionPrecision::F32
            },
        }
    }

    fn rows(&self, key: bool) -> HeadRows<'_> {
        let stride = self.stride;
        match (self.precision, key) {
            (AttentionPrecision::F16, true) => HeadRows::F16 {
                data: &self.keys16,
                stride,
                blocks: BlockTable::InOrder,
            },
            (AttentionPrecision::F16, false) => HeadRows::F16 {
                data: &self.values16,
                stride,
                blocks: BlockTable::InOrder,
            },
            (AttentionPrecision::F32, true) => HeadRows::F32 {
                data: &self.keys32,
                stride,
                blocks: BlockTable::InOrder,
            },
            (AttentionPrecision::F32, false) => HeadRows::F32 {
                data: &self.values32,
                stride,
                blocks: BlockTable::InOrder,
            },
        }
    }
}

/// The AVX-512 kernel (tiled source, queries in batches) against the portable path (rows,
/// one query at a time, plain Rust), bit for bit: outputs and weights, over head widths,
/// windows starting anywhere (first > 0, unaligned), causal ends, sharp softmaxes whose
/// weights underflow to zero, f16 and f32 caches.
#[cfg(target_arch = "x86_64")]
#[test]
fn tiled_kernel_is_the_portable_path_to_the_bit() {
    if !have_avx512() {
        return;
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let widths = [(64, 64), (128, 128), (256, 256), (64, 128), (16, 32)];
    let mut compared = 0;
    // Reused across cases, as the per-thread buffers are: stale contents must not leak.
    let (mut keys, mut values) = (Vec::new(), Vec::new());
    for case in 0..120 {
        let (dim, dim_v) = widths[case % widths.len()];
        let n = 1 + rng.below(if case % 3 == 0 { 40 } else { 700 });
        let data = Case::new(&mut rng, n, dim, dim_v, case % 4 != 3);
        // A batch: the task's first and last positions, its queries' windows inside.
        let base = rng.below(n);
        let last = base + rng.below(n - base);
        let tiled = HeadSource::Tiled(widen_tiled(
            data.rows(true),
            data.rows(false),
            (dim, dim_v),
            base,
            last,
            &mut keys,
            &mut values,
        ));
        let (mut keys_w, mut values_w) = (Vec::new(), Vec::new());
        widen_rows(data.rows(true), dim, base, last, &mut keys_w);
        widen_rows(data.rows(false), dim_v, base, last, &mut values_w);
        let rows = HeadSource::Widened {
            keys: &keys_w,
            values: &values_w,
            base,
            dim,
            dim_v,
        };
        let count = 1 + rng.below(40);
        // Runs of queries over the same positions (the query heads of one token) as well as
        // scattered ones.
        let mut heads: Vec<Span<'_>> = Vec::new();
        for _ in 0..count {
            let first = base + rng.below(last + 1 - base);
            let mut head = Span {
                source: tiled,
                first,
                last: first + rng.below(last + 1 - first),
                scale: [0.125, 1.0, 6.0, 40.0][rng.below(4)],
                softcap: [0.0, 0.0, 10.0, 50.0][rng.below(4)],
                precision: data.precision,
                kernel: AttentionKernel::Batched,
            };
            if let Some(previous) = heads.last().filter(|_| rng.below(3) != 0) {
                (head.first, head.last) = (previous.first, previous.last);
            }
            heads.push(head);
        }
        let spread = [0.5, 2.0, 8.0][rng.below(3)];
        let qs: Vec<f32> = (0..count * dim).map(|_| rng.float(spread)).collect();
        let mut outs = vec![0.0f32; count * dim_v];
        let queries: Vec<&[f32]> = qs.chunks_exact(dim).collect();
        let mut outputs: Vec<&mut [f32]> = outs.chunks_exact_mut(dim_v).collect();
        attend_batch(Simd::Avx512, &heads, &queries, &mut outputs);
        for (i, (head, q)) in heads.iter().zip(qs.chunks_exact(dim)).enumerate() {
            let plain = Span {
                source: rows,
                ..*head
            };
            let n_w = head.last + 1 - head.first;
            let (mut w_plain, mut lanes) = (vec![0.0; n_w], vec![0.0; LANES * dim_v]);
            let mut out_plain = vec![0.0; dim_v];
            plain.attend_any(false, q, &mut w_plain, &mut lanes, &mut out_plain);
            let out = &outs[i * dim_v..][..dim_v];
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let mut w_tiled = vec![0.0; n_w];
            head.weights(Simd::Avx512, q, &mut w_tiled);
            assert_eq!(
                bits(&w_tiled),
                bits(&w_plain),
                "case {case} query {i}: weights"
            );
            assert_eq!(
                bits(out),
                bits(&out_plain),
                "case {case} query {i}: outputs"
            );
            // The portable path reading the tiled layout (a CPU without AVX-512 never
            // builds one, but it must read it right).
            let mut out_rows = vec![0.0; dim_v];
            head.attend_any(false, q, &mut w_plain, &mut lanes, &mut out_rows);
            assert_eq!(
                bits(&out_rows),
                bits(&out_plain),
                "case {case} query {i}: rows"
            );
            compared += 1;
        }
    }
    assert!(compared > 1000);
}

/// The AVX-512 one-token kernel (several query heads of one KV head, rows read from the
/// cache's layout) against the portable one-token path (one head at a time, plain Rust),
/// bit for bit: head widths, contexts crossing multiples of 16 and 64, sliding windows
/// starting anywhere, 1 to 9 heads, sharp softmaxes whose f16 weights are zeros, infinite
/// values behind zero weights, f16 and f32 caches.
#[cfg(target_arch = "x86_64")]
#[test]
fn single_kernel_is_the_portable_path_to_the_bit() {
    if !have_avx512() {
        return;
    }
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let widths = [(64, 64), (128, 128), (256, 256), (64, 128), (128, 32)];
    let mut compared = 0;
    for case in 0..400 {
        let (dim, dim_v) = widths[case % widths.len()];
        let n = match case % 4 {
            0 => 1 + rng.below(300),
            1 => [1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 192, 255, 256, 257][rng.below(14)],
            2 => 1 + rng.below(70),
            _ => 1 + rng.below(1000),
        };
        let mut data = Case::new(&mut rng, n, dim, dim_v, case % 5 != 4);
        // Infinite values now and then: where their weight is zero the position must be
        // left out (not multiplied by zero, which gives NaN).
        if case % 7 == 6 {
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(n) * data.stride + rng.below(dim_v);
                data.values32[at] = f32::INFINITY;
                data.values16[at] = f16::INFINITY;
            }
        }
        let last = n - 1;
        let first = match rng.below(3) {
            0 => 0,
            1 => rng.below(n),
            _ => last.saturating_sub(rng.below(80)),
        };
        let heads = 1 + rng.below(9);
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        widen_rows(data.rows(true), dim, 0, last, &mut keys);
        widen_rows(data.rows(false), dim_v, 0, last, &mut values);
        let span = Span {
            source: HeadSource::Widened {
                keys: &keys,
                values: &values,
                base: 0,
                dim,
                dim_v,
            },
            first,
            last,
            scale: [0.125, 1.0, 6.0, 40.0][rng.below(4)],
            softcap: [0.0, 0.0, 10.0, 50.0][rng.below(4)],
            precision: data.precision,
            kernel: AttentionKernel::Single,
        };
        let spread = [0.5, 2.0, 8.0][rng.below(3)];
        let q: Vec<f32> = (0..heads * dim).map(|_| rng.float(spread)).collect();
        let mut out = vec![f32::NAN; heads * dim_v];
        assert!(avx512_single::attend_rows(
            data.rows(true),
            data.rows(false),
            &span,
            (dim, dim_v),
            &q,
            &mut out
        ));
        let same = |a: f32, b: f32| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
        for (h, (q, out)) in q.chunks_exact(dim).zip(out.chunks_exact(dim_v)).enumerate() {
            let n_w = last + 1 - first;
            let (mut w, mut lanes) = (vec![0.0; n_w], vec![0.0; STEP * dim_v]);
            let mut plain = vec![0.0; dim_v];
            span.attend_any(false, q, &mut w, &mut lanes, &mut plain);
            for (d, (&x, &y)) in out.iter().zip(&plain).enumerate() {
                assert!(
                    same(x, y),
                    "case {case} (n {n}, first {first}, dims {dim}/{dim_v}) head {h} dim {d}: {x:e} vs {y:e}"
                );
            }
            compared += 1;
        }
    }
    assert!(compared > 1000);
}

/// Every level the CPU runs gives the same bits through the public entry: the AVX-512 level
/// takes the batched kernel, the others the portable path reading the same tiled layout (so
/// that a session forced to a level really runs that level's attention).
#[test]
fn every_level_attends_to_the_same_bits() {
    let mut rng = Rng(0x51_7cc1_b727_220a);
    let (dim, dim_v, n) = (64, 64, 300);
    let data = Case::new(&mut rng, n, dim, dim_v, true);
    let (mut keys, mut values) = (Vec::new(), Vec::new());
    let source = HeadSource::Tiled(widen_tiled(
        data.rows(true),
        data.rows(false),
        (dim, dim_v),
        0,
        n - 1,
        &mut keys,
        &mut values,
    ));
    let spans: Vec<Span<'_>> = (0..24)
        .map(|i| Span {
            source,
            first: i * 7,
            last: n - 1 - i,
            scale: 0.125,
            softcap: 0.0,
            precision: data.precision,
            kernel: AttentionKernel::Batched,
        })
        .collect();
    let qs: Vec<f32> = (0..spans.len() * dim).map(|_| rng.float(2.0)).collect();
    let queries: Vec<&[f32]> = qs.chunks_exact(dim).collect();
    let outputs = |simd: Simd| {
        let mut out = vec![0.0f32; spans.len() * dim_v];
        let mut outs: Vec<&mut [f32]> = out.chunks_exact_mut(dim_v).collect();
        attend_batch(simd, &spans, &queries, &mut outs);
        out.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    };
    let scalar = outputs(Simd::Scalar);
    for simd in Simd::all_supported() {
        assert_eq!(outputs(simd), scalar, "{}", simd.name());
    }
}
