//! Q8_K activation quantization: every SIMD level against the plain-Rust twin, bit for bit, on
//! inputs chosen to hit each branch of ggml's `quantize_row_q8_K_ref` (zeros, rounding ties,
//! largest magnitudes shared by values of both signs, negative maxima, huge, tiny and subnormal
//! magnitudes, infinities and NaN); and the twin against the definition it implements.
//!
//! Run with `cargo test --release --test q8k`.

use llmrt::quant::dispatch::k_quants;
use llmrt::quant::{GgmlType, Simd, QK_K};
use proptest::collection::vec;
use proptest::prelude::*;

/// Bytes of one Q8_K block: d f32, qs\[256\] i8, bsums\[16\] i16.
const BLOCK_BYTES: usize = 292;
/// Offset of the quants in a block.
const QS: usize = 4;
/// Offset of the block sums in a block.
const BSUMS: usize = QS + QK_K;

/// Quantizes `x` (whole blocks) at `simd`.
fn quantize(x: &[f32], simd: Simd) -> Vec<u8> {
    let mut out = vec![0u8; x.len() / QK_K * BLOCK_BYTES];
    k_quants::quantize_row_q8_k(x, &mut out, simd);
    out
}

/// Any f32 at all: every bit pattern, NaN payloads and subnormals included.
fn any_bits() -> impl Strategy<Value = f32> {
    any::<u32>().prop_map(f32::from_bits)
}

/// Magnitudes at the edges: zeros, the largest and smallest normal and subnormal values,
/// infinities, NaN.
fn special() -> impl Strategy<Value = f32> {
    prop::sample::select(vec![
        0.0,
        -0.0,
        f32::MAX,
        -f32::MAX,
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        f32::from_bits(1),
        -f32::from_bits(1),
        f32::from_bits(0x0040_0000),
        1e38,
        -1e-38,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ])
}

/// A block of ordinary activations `m · 2^e` (`m` in ±[0, 2), one `e` per block from -40 to 40,
/// so `iscale` ranges from tiny to huge), with some exact zeros and, sometimes, the largest
/// magnitude repeated with the other sign.
fn scaled_block() -> impl Strategy<Value = Vec<f32>> {
    (
        -40i32..=40,
        vec(
            prop_oneof![8 => -2.0f32..2.0, 1 => Just(0.0f32), 1 => Just(-0.0f32)],
            QK_K,
        ),
        any::<bool>(),
        0..QK_K,
    )
        .prop_map(|(e, mut x, mirror, at)| {
            let scale = 2f32.powi(e);
            x.iter_mut().for_each(|v| *v *= scale);
            if mirror {
                // The first of two values of equal magnitude and opposite sign sets the sign.
                let i = (0..QK_K)
                    .max_by(|&a, &b| x[a].abs().total_cmp(&x[b].abs()))
                    .unwrap_or(0);
                x[at] = -x[i];
            }
            x
        })
}

/// A block whose values land exactly on `k + 0.5` after scaling: the largest magnitude is
/// `±127 · 2^e` (so `iscale = ∓2^-e` exactly) and the others are halves and integers times `2^e`.
fn tie_block() -> impl Strategy<Value = Vec<f32>> {
    (
        -30i32..=30,
        any::<bool>(),
        0..QK_K,
        vec((-127i32..127, any::<bool>()), QK_K),
    )
        .prop_map(|(e, negative, at, halves)| {
            let scale = 2f32.powi(e);
            let mut x: Vec<f32> = halves
                .into_iter()
                .map(|(k, half)| (k as f32 + if half { 0.5 } else { 0.0 }) * scale)
                .collect();
            x[at] = if negative { -127.0 } else { 127.0 } * scale;
            x
        })
}

/// A block mixing ordinary values with the edge cases and arbitrary bit patterns.
fn wild_block() -> impl Strategy<Value = Vec<f32>> {
    vec(
        prop_oneof![6 => -1000.0f32..1000.0, 2 => special(), 1 => any_bits()],
        QK_K,
    )
}

/// One block of any of the kinds above, or all zeros.
fn block() -> impl Strategy<Value = Vec<f32>> {
    prop_oneof![
        4 => scaled_block(),
        3 => tie_block(),
        2 => wild_block(),
        1 => vec(any_bits(), QK_K),
        1 => prop::sample::select(vec![0.0f32, -0.0]).prop_map(|z| vec![z; QK_K]),
    ]
}

/// One to four blocks of any kinds.
fn row() -> impl Strategy<Value = Vec<f32>> {
    vec(block(), 1..=4).prop_map(|blocks| blocks.concat())
}

/// What the twin must compute on a block without NaN or infinities and with a finite
/// `iscale`, written from ggml's definition rather than its rounding trick.
fn by_definition(x: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; BLOCK_BYTES];
    let Some(max) = x
        .iter()
        .copied()
        .reduce(|m, v| if v.abs() > m.abs() { v } else { m })
        .filter(|m| *m != 0.0)
    else {
        return out;
    };
    let iscale = -127.0f32 / max;
    let q: Vec<i8> = x
        .iter()
        .map(|&v| (iscale * v).round_ties_even().min(127.0) as i8)
        .collect();
    out[..QS].copy_from_slice(&(1.0 / iscale).to_le_bytes());
    for (o, &q) in out[QS..BSUMS].iter_mut().zip(&q) {
        *o = q as u8;
    }
    for (j, group) in q.chunks_exact(16).enumerate() {
        let s: i32 = group.iter().map(|&q| i32::from(q)).sum();
        out[BSUMS + 2 * j..BSUMS + 2 * j + 2].copy_from_slice(&(s as i16).to_le_bytes());
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn simd_matches_scalar_bit_for_bit(x in row()) {
        let scalar = quantize(&x, Simd::Scalar);
        for simd in Simd::all_supported() {
            let got = quantize(&x, simd);
            for (b, (g, s)) in got
                .chunks_exact(BLOCK_BYTES)
                .zip(scalar.chunks_exact(BLOCK_BYTES))
                .enumerate()
            {
                prop_assert_eq!(&g[..QS], &s[..QS], "{:?} block {}: d", simd, b);
                prop_assert_eq!(&g[QS..BSUMS], &s[QS..BSUMS], "{:?} block {}: quants", simd, b);
                prop_assert_eq!(&g[BSUMS..], &s[BSUMS..], "{:?} block {}: bsums", simd, b);
            }
        }
    }

    #[test]
    fn scalar_matches_the_definition(x in prop_oneof![scaled_block(), tie_block()]) {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        // Skip blocks whose `iscale` overflows (largest magnitude below about 3.7e-37).
        prop_assume!((127.0f32 / amax).is_finite() || amax == 0.0);
        prop_assert_eq!(quantize(&x, Simd::Scalar), by_definition(&x));
    }
}

#[test]
fn ties_round_to_even_and_the_first_largest_value_sets_the_sign() {
    // 127 first: iscale = -1, so 0.5 -> -0.5 -> 0 (even), 1.5 -> -2, 2.5 -> -2, -0.5 -> 0.
    let mut x = vec![0.0f32; QK_K];
    x[..6].copy_from_slice(&[127.0, 0.5, 1.5, 2.5, -0.5, -127.0]);
    for simd in Simd::all_supported() {
        let q = quantize(&x, simd);
        assert_eq!(
            f32::from_le_bytes([q[0], q[1], q[2], q[3]]),
            -1.0,
            "{simd:?}"
        );
        let qs: Vec<i8> = q[QS..QS + 6].iter().map(|&b| b as i8).collect();
        assert_eq!(qs, [-127, 0, -2, -2, 0, 127], "{simd:?}");
    }
    assert_eq!(GgmlType::Q8_K.block_bytes(), BLOCK_BYTES);
}
