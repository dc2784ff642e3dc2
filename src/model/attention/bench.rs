//! A microbenchmark, not a test (ignored): 16 queries (three per range, as the query heads of a
//! token) over one KV head, AVX-512 kernel against the portable path, best of 7, in GMAC/s.
//! `cargo test --release --lib attend_speed -- --ignored --nocapture`.

use half::f16;

use super::layout::{widen_rows, widen_tiled};
use super::*;
use crate::model::kv_cache::{BlockTable, HeadRows};

#[test]
#[ignore]
fn attend_speed() {
    for &(n, dim) in &[(64usize, 64usize), (256, 64), (512, 64), (512, 256)] {
        let keys_h: Vec<f16> = (0..n * dim)
            .map(|i| f16::from_f32(((i * 7919) % 1000) as f32 / 1000.0 - 0.5))
            .collect();
        let vals_h: Vec<f16> = (0..n * dim)
            .map(|i| f16::from_f32(((i * 104729) % 1000) as f32 / 1000.0 - 0.5))
            .collect();
        let rows = |data| HeadRows::F16 {
            data,
            stride: dim,
            blocks: BlockTable::InOrder,
        };
        let (mut k, mut v) = (Vec::new(), Vec::new());
        let src = HeadSource::Tiled(widen_tiled(
            rows(&keys_h),
            rows(&vals_h),
            (dim, dim),
            0,
            n - 1,
            &mut k,
            &mut v,
        ));
        let (mut kw, mut vw) = (Vec::new(), Vec::new());
        widen_rows(rows(&keys_h), dim, 0, n - 1, &mut kw);
        widen_rows(rows(&vals_h), dim, 0, n - 1, &mut vw);
        let old = HeadSource::Widened {
            keys: &kw,
            values: &vw,
            base: 0,
            dim,
            dim_v: dim,
        };
        let q: Vec<f32> = (0..16 * dim).map(|i| (i as f32 * 0.1).sin()).collect();
        let mut out = vec![0.0; 16 * dim];
        let iters = 20_000_000 / (16 * n * dim);
        let mut rate = |source| {
            let t = std::time::Instant::now();
            for _ in 0..iters {
                let spans: Vec<Span> = (0..16)
                    .map(|i| Span {
                        source,
                        first: 0,
                        last: n - 1 - i / 3,
                        scale: 0.125,
                        softcap: 0.0,
                        precision: AttentionPrecision::F16,
                        kernel: AttentionKernel::Batched,
                    })
                    .collect();
                let queries: Vec<&[f32]> = q.chunks_exact(dim).collect();
                let mut outs: Vec<&mut [f32]> = out.chunks_exact_mut(dim).collect();
                attend_batch(Simd::Avx512, &spans, &queries, &mut outs);
            }
            (2 * 16 * iters * n * dim) as f64 / t.elapsed().as_secs_f64() / 1e9
        };
        let (mut new, mut old_rate) = (0.0f64, 0.0f64);
        for _ in 0..7 {
            new = new.max(rate(src));
            old_rate = old_rate.max(rate(old));
        }
        let old = old_rate;
        eprintln!("n {n} dim {dim}: new {new:.1} GMAC/s old {old:.1} GMAC/s");
    }
}
