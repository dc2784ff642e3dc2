//! F32, F16 and BF16 weights: conversion to f32, and the plain-Rust twins of the two arithmetics
//! llama.cpp multiplies float matrices with on an x86 CPU with AVX-512 (lane for lane).
//!
//! The activations are first converted to the weight type (ggml's `vec_dot_type`): F16 and BF16
//! rounded to nearest even ([`convert_activations_scalar`]), F32 kept. Then each output is either
//!
//! - a **row** product ([`vec_dot_row_scalar`]), ggml's one-column `vec_dot`: for one activation
//!   column, for the experts of a mixture, and for shapes tinyBLAS declines. F32 and F16: four
//!   accumulators of 16 lanes over steps of [`ROW_STEP`] elements (element `i` of a step in
//!   accumulator `i / 16`, lane `i % 16`), summed as `(a0 + a2) + (a1 + a3)` and then across the
//!   lanes ([`reduce16`]); BF16: two accumulators of AVX512_BF16 pair products ([`dp_bf16_lane`]),
//!   over the two halves of each step. The elements past the last whole step follow one by one
//!   ([`finish_row`]);
//! - or a **tiled** product ([`vec_dot_tiled_scalar`]), llamafile's tinyBLAS, which llama.cpp
//!   runs for two or more columns when the shape allows ([`takes_tiles`]): one accumulator of 16
//!   lanes per output over steps of [`tile_step`] elements, then [`reduce16`].
//!
//! F16 products are exact in f32 (11-bit significands, exponents in range), so their fused
//! multiply-adds round once as a plain multiply and add do; F32 products need a real one.

use half::{bf16, f16};

use crate::quant::types::GgmlType;

/// Lanes of every accumulator: one 512-bit register of f32.
pub const LANES: usize = 16;
/// Elements per step of the row arithmetic: four registers of 16 f32 (F32, F16), or two of 32
/// bf16 (BF16).
pub const ROW_STEP: usize = 64;
/// tinyBLAS accepts a matrix only if its rows are a multiple of this.
pub const TILE_ROWS_MULTIPLE: usize = 4;

/// Which of llama.cpp's two arithmetics a float dot product computes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FloatProduct {
    /// ggml's one-column `vec_dot`.
    Row,
    /// llamafile's tinyBLAS.
    Tiled,
}

/// Bytes per element of a float type, or `None` for other types.
pub fn elem_bytes(ty: GgmlType) -> Option<usize> {
    match ty {
        GgmlType::F32 => Some(4),
        GgmlType::F16 | GgmlType::BF16 => Some(2),
        _ => None,
    }
}

/// Elements per step of the tiled arithmetic: one 512-bit register of the weight type as
/// tinyBLAS loads it (16 f32 or f16 values widened to f32, 32 bf16 values).
pub fn tile_step(ty: GgmlType) -> usize {
    if ty == GgmlType::BF16 {
        2 * LANES
    } else {
        LANES
    }
}

/// Whether llama.cpp multiplies a `rows × cols` matrix of float type `ty` by `n_cols` columns
/// (in one `mul_mat`) with tinyBLAS, which declines one column, rows that are not a multiple of
/// [`TILE_ROWS_MULTIPLE`] and rows whose length is not a multiple of [`tile_step`].
pub fn takes_tiles(ty: GgmlType, rows: usize, cols: usize, n_cols: usize) -> bool {
    n_cols >= 2 && rows.is_multiple_of(TILE_ROWS_MULTIPLE) && cols.is_multiple_of(tile_step(ty))
}

/// Converts whole elements of `ty` (F32, F16 or BF16, little-endian) in `src` to f32 in `dst`:
/// the plain-Rust twin of the dequantizers. Every conversion is exact.
pub fn dequantize_row_scalar(ty: GgmlType, src: &[u8], dst: &mut [f32]) {
    match ty {
        GgmlType::F32 => {
            for (o, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::F16 => {
            let table = f16_table();
            for (o, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = table[usize::from(u16::from_le_bytes([b[0], b[1]]))];
            }
        }
        GgmlType::BF16 => {
            for (o, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        // Callers check that `ty` is a float type.
        _ => {}
    }
}

/// Every f16 value as f32, indexed by its bits: converting in software is several times slower
/// than this lookup, which the plain-Rust products make twice per element.
fn f16_table() -> &'static [f32] {
    static TABLE: std::sync::OnceLock<Vec<f32>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| (0..=u16::MAX).map(|b| f16::from_bits(b).to_f32()).collect())
}

/// Converts f32 activations `x` into `dst` as elements of the float weight type `ty`: F16 and
/// BF16 rounded to nearest even (a NaN stays a quiet NaN), F32 copied. Both roundings are the
/// ones ggml's converters compute.
pub fn convert_activations_scalar(ty: GgmlType, x: &[f32], dst: &mut [u8]) {
    match ty {
        GgmlType::F16 => {
            for (o, &v) in dst.chunks_exact_mut(2).zip(x) {
                o.copy_from_slice(&f16::from_f32(v).to_le_bytes());
            }
        }
        GgmlType::BF16 => {
            for (o, &v) in dst.chunks_exact_mut(2).zip(x) {
                o.copy_from_slice(&bf16::from_f32(v).to_le_bytes());
            }
        }
        _ => {
            for (o, &v) in dst.chunks_exact_mut(4).zip(x) {
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
    }
}

/// The 16 lanes summed as `_mm512_reduce_add_ps` does: the upper 8 onto the lower 8, the upper 4
/// of those onto the lower 4, then `(u0 + u2) + (u1 + u3)`.
#[inline]
pub fn reduce16(v: &[f32; LANES]) -> f32 {
    let t: [f32; 8] = std::array::from_fn(|i| v[i] + v[i + 8]);
    let u: [f32; 4] = std::array::from_fn(|i| t[i] + t[i + 4]);
    (u[0] + u[2]) + (u[1] + u[3])
}

/// A subnormal `v` as zero of its sign; every other value unchanged.
#[inline]
pub fn flush_subnormal(v: f32) -> f32 {
    let bits = v.to_bits();
    if bits & 0x7F80_0000 == 0 {
        f32::from_bits(bits & 0x8000_0000)
    } else {
        v
    }
}

/// `a · b + c` rounded once, for `a` and `b` that are bf16 values: their product is exact in f32
/// whenever it is normal or zero (8-bit significands), so a multiply and an add round once; the
/// rare others (underflow, overflow) take the fused multiply-add.
#[inline]
fn fma_bf16(a: f32, b: f32, c: f32) -> f32 {
    let p = a * b;
    if p.is_normal() || p == 0.0 {
        p + c
    } else {
        a.mul_add(b, c)
    }
}

/// One lane of AVX512_BF16's `vdpbf16ps`, as the CPU computes it: subnormal inputs read as zero,
/// the odd elements' product fused into the accumulator first, then the even ones', each result
/// rounded to nearest even and flushed to zero if subnormal, whatever MXCSR says. `w` and `a`
/// are the lane's two bf16 values (even, odd) as f32.
#[inline]
pub fn dp_bf16_lane(acc: f32, w: [f32; 2], a: [f32; 2]) -> f32 {
    let f = flush_subnormal;
    let t = f(fma_bf16(f(w[1]), f(a[1]), f(acc)));
    f(fma_bf16(f(w[0]), f(a[0]), t))
}

/// [`dp_bf16_lane`] on 16 lanes: `w` and `a` are 32 BF16 weights and activations as f32, lane
/// `l` taking elements `2l` and `2l + 1`. Products of bf16 values are exact when normal or zero,
/// so a step whose products all are takes plain adds (which the compiler vectorises); any other
/// step goes lane by lane through the fused multiply-add.
fn dp_bf16_step(acc: &mut [f32; LANES], w: &[f32], a: &[f32]) {
    let mut p = [0f32; 2 * LANES];
    for ((p, &w), &a) in p.iter_mut().zip(w).zip(a) {
        *p = flush_subnormal(w) * flush_subnormal(a);
    }
    if p.iter().all(|p| p.is_normal() || *p == 0.0) {
        for (l, lane) in acc.iter_mut().enumerate() {
            let t = flush_subnormal(p[2 * l + 1] + *lane);
            *lane = flush_subnormal(p[2 * l] + t);
        }
    } else {
        for (l, lane) in acc.iter_mut().enumerate() {
            *lane = dp_bf16_lane(*lane, [w[2 * l], w[2 * l + 1]], [a[2 * l], a[2 * l + 1]]);
        }
    }
}

/// `acc + w · a` rounded once: fused for F32; a multiply and an add for the exact products of
/// F16 values.
#[inline]
fn madd(ty: GgmlType, w: f32, a: f32, acc: f32) -> f32 {
    if ty == GgmlType::F32 {
        w.mul_add(a, acc)
    } else {
        w * a + acc
    }
}

/// The end of the row arithmetic, after its whole steps: `sums` are the reduced accumulators
/// (F32 and F16: one in `sums[0]`; BF16: its two), `w_tail` and `a_tail` the fewer than
/// [`ROW_STEP`] elements left (weights of `ty`, converted activations).
///
/// - F32 sums in f32, as GCC compiled ggml's tail loop: the elements in whole groups of 8 as
///   separately rounded products added in order, the last `len % 8` fused into the sum.
/// - F16 and BF16 sum in f64: the reduced sums widened, then each tail product (rounded to f32)
///   widened and added; the total rounded to f32.
pub fn finish_row(ty: GgmlType, sums: [f32; 2], w_tail: &[u8], a_tail: &[u8]) -> f32 {
    let Some(eb) = elem_bytes(ty) else {
        return 0.0;
    };
    let n = (w_tail.len() / eb).min(ROW_STEP);
    if n == 0 {
        return match ty {
            GgmlType::BF16 => (0.0 + f64::from(sums[0]) + f64::from(sums[1])) as f32,
            _ => sums[0],
        };
    }
    let (mut w, mut a) = ([0f32; ROW_STEP], [0f32; ROW_STEP]);
    let (w, a) = (&mut w[..n], &mut a[..n]);
    dequantize_row_scalar(ty, w_tail, w);
    dequantize_row_scalar(ty, a_tail, a);
    if ty == GgmlType::F32 {
        let unfused = n / 8 * 8;
        let mut s = sums[0];
        for (&w, &a) in w[..unfused].iter().zip(&a[..unfused]) {
            s += w * a;
        }
        for (&w, &a) in w[unfused..].iter().zip(&a[unfused..]) {
            s = w.mul_add(a, s);
        }
        return s;
    }
    let mut s = if ty == GgmlType::BF16 {
        0.0 + f64::from(sums[0]) + f64::from(sums[1])
    } else {
        f64::from(sums[0])
    };
    for (&w, &a) in w.iter().zip(a.iter()) {
        s += f64::from(w * a);
    }
    s as f32
}

/// The row arithmetic (see the module documentation): a weight row of `ty` dotted with
/// converted activations of the same length.
pub fn vec_dot_row_scalar(ty: GgmlType, w: &[u8], act: &[u8]) -> f32 {
    let Some(eb) = elem_bytes(ty) else {
        return 0.0;
    };
    let n = w.len() / eb;
    let steps = n / ROW_STEP;
    let step_bytes = ROW_STEP * eb;
    let (mut wv, mut av) = ([0f32; ROW_STEP], [0f32; ROW_STEP]);
    let mut acc = [[0f32; LANES]; 4];
    for s in 0..steps {
        dequantize_row_scalar(ty, &w[s * step_bytes..][..step_bytes], &mut wv);
        dequantize_row_scalar(ty, &act[s * step_bytes..][..step_bytes], &mut av);
        if ty == GgmlType::BF16 {
            for (half, acc) in acc[..2].iter_mut().enumerate() {
                let h = half * 2 * LANES..(half + 1) * 2 * LANES;
                dp_bf16_step(acc, &wv[h.clone()], &av[h]);
            }
        } else {
            for (i, (&w, &a)) in wv.iter().zip(&av).enumerate() {
                let lane = &mut acc[i / LANES][i % LANES];
                *lane = madd(ty, w, a, *lane);
            }
        }
    }
    let sums = if ty == GgmlType::BF16 {
        [reduce16(&acc[0]), reduce16(&acc[1])]
    } else {
        let lanes = std::array::from_fn(|l| (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]));
        [reduce16(&lanes), 0.0]
    };
    finish_row(
        ty,
        sums,
        &w[steps * step_bytes..],
        &act[steps * step_bytes..],
    )
}

/// The tiled arithmetic (see the module documentation): a weight row of `ty` dotted with
/// converted activations of the same length, a multiple of [`tile_step`] (other lengths: the
/// whole steps only, as tinyBLAS is never asked for them).
pub fn vec_dot_tiled_scalar(ty: GgmlType, w: &[u8], act: &[u8]) -> f32 {
    let Some(eb) = elem_bytes(ty) else {
        return 0.0;
    };
    let step = tile_step(ty);
    let step_bytes = step * eb;
    let (mut wv, mut av) = ([0f32; 2 * LANES], [0f32; 2 * LANES]);
    let (wv, av) = (&mut wv[..step], &mut av[..step]);
    let mut acc = [0f32; LANES];
    for (ws, a) in w.chunks_exact(step_bytes).zip(act.chunks_exact(step_bytes)) {
        dequantize_row_scalar(ty, ws, wv);
        dequantize_row_scalar(ty, a, av);
        if ty == GgmlType::BF16 {
            dp_bf16_step(&mut acc, wv, av);
        } else {
            for (l, lane) in acc.iter_mut().enumerate() {
                *lane = madd(ty, wv[l], av[l], *lane);
            }
        }
    }
    reduce16(&acc)
}
