//! Reference quantizers for the 32-element block types, bit for bit what ggml's
//! `quantize_row_{q4_0,q4_1,q5_0,q5_1,q8_0}_ref` produce (and what the `gguf` Python package's
//! numpy ports produce), so that a model quantized by `llmrt quantize` has the same tensor bytes
//! as one quantized by llama.cpp's tooling.
//!
//! Block layouts written here (all little-endian, `d`/`m` are IEEE half floats):
//! ```text
//! Q4_0  18 bytes: d, qs[16]          x[j] -> low nibble of qs[j], x[j+16] -> high nibble
//! Q4_1  20 bytes: d, m, qs[16]       as Q4_0, value = q*d + m
//! Q5_0  22 bytes: d, qh[4], qs[16]   low 4 bits as Q4_0; bit 4 of element j is bit j of qh (u32)
//! Q5_1  24 bytes: d, m, qh[4], qs[16]
//! Q8_0  34 bytes: d, qs[32] (i8)
//! ```
//! The arithmetic is kept exactly as upstream: f32 throughout, the scale divided (not multiplied
//! by a reciprocal constant), an `id = 1/d` reciprocal that is 0 for an all-zero block,
//! truncation toward zero after adding 0.5 (or the offset + 0.5), and the f32 → f16 conversion
//! rounding to nearest even (ggml's `GGML_FP32_TO_FP16`, `half::f16::from_f32`).

use half::f16;

use crate::quant::types::GgmlType;
use crate::{Error, Result};

/// Elements per block of every type quantized here.
const QK: usize = 32;

/// Quantizes the f32 values `x` into whole blocks of `ty` written to `dst`.
///
/// `ty` is one of Q4_0, Q4_1, Q5_0, Q5_1, Q8_0; `x.len()` must be a multiple of 32 and
/// `dst.len()` exactly the bytes of that many blocks.
pub fn quantize_row(ty: GgmlType, x: &[f32], dst: &mut [u8]) -> Result<()> {
    let quantize_block: fn(&[f32; QK], &mut [u8]) = match ty {
        GgmlType::Q4_0 => block_q4_0,
        GgmlType::Q4_1 => block_q4_1,
        GgmlType::Q5_0 => block_q5_0,
        GgmlType::Q5_1 => block_q5_1,
        GgmlType::Q8_0 => block_q8_0,
        _ => {
            return Err(Error::InvalidArgument(format!(
                "no reference quantizer for {ty} (Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 have one)"
            )))
        }
    };
    let expected = ty.row_bytes(x.len() as u64);
    if expected != Some(dst.len() as u64) {
        return Err(Error::InvalidArgument(format!(
            "{} f32 values do not quantize to {} bytes of {ty} (whole blocks of {QK} needed)",
            x.len(),
            dst.len()
        )));
    }
    for (src, out) in x
        .chunks_exact(QK)
        .zip(dst.chunks_exact_mut(ty.block_bytes()))
    {
        // chunks_exact(QK) yields slices of exactly QK elements.
        let block: &[f32; QK] = src.try_into().unwrap_or(&[0.0; QK]);
        quantize_block(block, out);
    }
    Ok(())
}

fn put_f16(out: &mut [u8], v: f32) {
    out.copy_from_slice(&f16::from_f32(v).to_le_bytes());
}

/// The element of largest magnitude, keeping the first one on ties (upstream compares with a
/// strict `<`), with its sign.
fn signed_absmax(x: &[f32; QK]) -> f32 {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

fn min_max(x: &[f32; QK]) -> (f32, f32) {
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

fn reciprocal(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

/// Symmetric quantization to `0..=2*half-1` with the largest-magnitude element mapped to 0:
/// `d = max / -half`, `q = trunc(x/d + half + 0.5)`, clamped to the top level.
///
/// The product and the sum are rounded separately, in f32, as the C code does when the compiler
/// does not fuse them into one multiply-add (x86-64 builds without `-mfma`, which made the
/// reference files; the `gguf` Python package's f64 emulation of a fused multiply-add gives
/// different bytes on a few blocks of SmolLM2). Rust never fuses on its own.
fn symmetric_levels(x: &[f32; QK], half: f32, levels: &mut [u8; QK]) -> f32 {
    let max = signed_absmax(x);
    let d = max / -half;
    let id = reciprocal(d);
    let top = 2.0 * half - 1.0;
    for (q, &v) in levels.iter_mut().zip(x) {
        let shifted = v * id + (half + 0.5);
        // `as u8` truncates toward zero (and saturates; the value is in 0..=2*half here).
        *q = shifted.min(top) as u8;
    }
    d
}

/// Asymmetric quantization to `0..=levels-1` from the block minimum: `d = (max-min)/(levels-1)`,
/// `q = trunc((x-min)/d + 0.5)`, in plain f32 as upstream.
fn asymmetric_levels(x: &[f32; QK], top: f32, levels: &mut [u8; QK]) -> (f32, f32) {
    let (min, max) = min_max(x);
    let d = (max - min) / top;
    let id = reciprocal(d);
    for (q, &v) in levels.iter_mut().zip(x) {
        let scaled = (v - min) * id + 0.5;
        *q = scaled.min(top) as u8;
    }
    (d, min)
}

/// Packs element j into the low nibble of byte j and element j+16 into its high nibble.
fn pack_nibbles(levels: &[u8; QK], qs: &mut [u8]) {
    for (j, byte) in qs.iter_mut().enumerate().take(QK / 2) {
        *byte = (levels[j] & 0x0F) | ((levels[j + QK / 2] & 0x0F) << 4);
    }
}

/// Bit 4 of every element, element j at bit j, as a little-endian u32.
fn fifth_bits(levels: &[u8; QK]) -> [u8; 4] {
    let qh = levels
        .iter()
        .enumerate()
        .fold(0u32, |acc, (j, &q)| acc | (u32::from((q >> 4) & 1) << j));
    qh.to_le_bytes()
}

/// ggml `quantize_row_q4_0_ref`: d = max/-8, q = trunc(x/d + 8.5) clamped to 15.
fn block_q4_0(x: &[f32; QK], out: &mut [u8]) {
    let mut levels = [0u8; QK];
    let d = symmetric_levels(x, 8.0, &mut levels);
    put_f16(&mut out[0..2], d);
    pack_nibbles(&levels, &mut out[2..18]);
}

/// ggml `quantize_row_q4_1_ref`: d = (max-min)/15, m = min, q = trunc((x-min)/d + 0.5).
fn block_q4_1(x: &[f32; QK], out: &mut [u8]) {
    let mut levels = [0u8; QK];
    let (d, min) = asymmetric_levels(x, 15.0, &mut levels);
    put_f16(&mut out[0..2], d);
    put_f16(&mut out[2..4], min);
    pack_nibbles(&levels, &mut out[4..20]);
}

/// ggml `quantize_row_q5_0_ref`: d = max/-16, q = trunc(x/d + 16.5) clamped to 31.
fn block_q5_0(x: &[f32; QK], out: &mut [u8]) {
    let mut levels = [0u8; QK];
    let d = symmetric_levels(x, 16.0, &mut levels);
    put_f16(&mut out[0..2], d);
    out[2..6].copy_from_slice(&fifth_bits(&levels));
    pack_nibbles(&levels, &mut out[6..22]);
}

/// ggml `quantize_row_q5_1_ref`: d = (max-min)/31, m = min, q = trunc((x-min)/d + 0.5).
fn block_q5_1(x: &[f32; QK], out: &mut [u8]) {
    let mut levels = [0u8; QK];
    let (d, min) = asymmetric_levels(x, 31.0, &mut levels);
    put_f16(&mut out[0..2], d);
    put_f16(&mut out[2..4], min);
    out[4..8].copy_from_slice(&fifth_bits(&levels));
    pack_nibbles(&levels, &mut out[8..24]);
}

/// ggml `quantize_row_q8_0_ref`: d = amax/127, q = round(x/d) half away from zero.
fn block_q8_0(x: &[f32; QK], out: &mut [u8]) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = reciprocal(d);
    put_f16(&mut out[0..2], d);
    for (q, &v) in out[2..34].iter_mut().zip(x) {
        // f32::round rounds half away from zero, as C's roundf; |v*id| <= 127 (+ rounding).
        *q = ((v * id).round() as i8) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dequantizes one block by hand (independently of the kernels in the sibling modules).
    fn dequantize(ty: GgmlType, block: &[u8]) -> Vec<f32> {
        let h = |b: &[u8]| f16::from_le_bytes([b[0], b[1]]).to_f32();
        let nib = |qs: &[u8], j: usize| {
            if j < 16 {
                qs[j] & 0x0F
            } else {
                qs[j - 16] >> 4
            }
        };
        let high =
            |qh: &[u8], j: usize| (u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]) >> j) & 1;
        (0..QK)
            .map(|j| match ty {
                GgmlType::Q4_0 => (f32::from(nib(&block[2..], j)) - 8.0) * h(block),
                GgmlType::Q4_1 => f32::from(nib(&block[4..], j)) * h(block) + h(&block[2..]),
                GgmlType::Q5_0 => {
                    let q = u32::from(nib(&block[6..], j)) | (high(&block[2..], j) << 4);
                    (q as f32 - 16.0) * h(block)
                }
                GgmlType::Q5_1 => {
                    let q = u32::from(nib(&block[8..], j)) | (high(&block[4..], j) << 4);
                    q as f32 * h(block) + h(&block[2..])
                }
                GgmlType::Q8_0 => f32::from(block[2 + j] as i8) * h(block),
                _ => unreachable!(),
            })
            .collect()
    }

    const TYPES: [GgmlType; 5] = [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
    ];

    fn quantize(ty: GgmlType, x: &[f32]) -> Vec<u8> {
        let mut out = vec![0u8; ty.row_bytes(x.len() as u64).unwrap() as usize];
        quantize_row(ty, x, &mut out).unwrap();
        out
    }

    #[test]
    fn q4_0_known_block() {
        // Largest magnitude is -8 (first), so d = 1 and q = trunc(x + 8.5) clamped to 15.
        let x: [f32; QK] = std::array::from_fn(|j| j as f32 * 0.5 - 8.0);
        let b = quantize(GgmlType::Q4_0, &x);
        assert_eq!(f16::from_le_bytes([b[0], b[1]]).to_f32(), 1.0);
        for j in 0..QK {
            let want = ((x[j] + 8.5).trunc() as u8).min(15);
            let got = if j < 16 {
                b[2 + j] & 0xF
            } else {
                b[2 + j - 16] >> 4
            };
            assert_eq!(got, want, "element {j}");
        }
        // A positive extreme flips the sign of d: the maximum maps to level 0.
        let b = quantize(GgmlType::Q4_0, &[2.0; QK]);
        assert_eq!(f16::from_le_bytes([b[0], b[1]]).to_f32(), -0.25);
        assert!(b[2..].iter().all(|&q| q == 0));
    }

    #[test]
    fn q5_0_known_block_and_first_extreme_wins_ties() {
        // Largest magnitude -16 → d = 1, level = x + 16, fifth bit set for the upper half.
        let x: [f32; QK] = std::array::from_fn(|j| j as f32 - 16.0);
        let b = quantize(GgmlType::Q5_0, &x);
        assert_eq!(f16::from_le_bytes([b[0], b[1]]).to_f32(), 1.0);
        assert_eq!(u32::from_le_bytes([b[2], b[3], b[4], b[5]]), 0xFFFF_0000);
        assert_eq!(dequantize(GgmlType::Q5_0, &b), x.to_vec());
        // Equal magnitudes of both signs: the first one sets the sign of d.
        let mut x = [0.0f32; QK];
        x[3] = 4.0;
        x[7] = -4.0;
        let d = |b: &[u8]| f16::from_le_bytes([b[0], b[1]]).to_f32();
        assert_eq!(d(&quantize(GgmlType::Q4_0, &x)), -0.5);
        x[3] = -4.0;
        x[7] = 4.0;
        assert_eq!(d(&quantize(GgmlType::Q4_0, &x)), 0.5);
        // And the other extreme, one level past the top, is clamped to 15 (value 7·d).
        let b = quantize(GgmlType::Q4_0, &x);
        assert_eq!(dequantize(GgmlType::Q4_0, &b)[7], 3.5);
    }

    #[test]
    fn q8_0_known_block_rounds_half_away_from_zero() {
        let mut x = [0.0f32; QK];
        x[0] = 127.0; // d = 1 exactly
        x[1] = 2.5;
        x[2] = -2.5;
        x[3] = -127.0;
        let b = quantize(GgmlType::Q8_0, &x);
        assert_eq!(f16::from_le_bytes([b[0], b[1]]).to_f32(), 1.0);
        assert_eq!(&b[2..6], &[127u8, 3, (-3i8) as u8, (-127i8) as u8]);
        assert!(b[6..].iter().all(|&q| q == 0));
    }

    #[test]
    fn q4_1_and_q5_1_known_blocks() {
        // min 1, max 16 → d = 1 (Q4_1): levels are x - 1.
        let x: [f32; QK] = std::array::from_fn(|j| (j % 16) as f32 + 1.0);
        let b = quantize(GgmlType::Q4_1, &x);
        assert_eq!(f16::from_le_bytes([b[0], b[1]]).to_f32(), 1.0);
        assert_eq!(f16::from_le_bytes([b[2], b[3]]).to_f32(), 1.0);
        assert_eq!(dequantize(GgmlType::Q4_1, &b), x.to_vec());
        // 0..31 → d = 1, the fifth bit set for 16..31.
        let x: [f32; QK] = std::array::from_fn(|j| j as f32);
        let b = quantize(GgmlType::Q5_1, &x);
        assert_eq!(u32::from_le_bytes([b[4], b[5], b[6], b[7]]), 0xFFFF_0000);
        assert_eq!(dequantize(GgmlType::Q5_1, &b), x.to_vec());
    }

    #[test]
    fn zero_block_quantizes_to_zero_scale_and_dequantizes_to_zero() {
        for ty in TYPES {
            let b = quantize(ty, &[0.0; QK]);
            // Q4_0/Q5_0 store -0.0 (0 / -8), as upstream does.
            assert_eq!(f16::from_le_bytes([b[0], b[1]]).to_f32(), 0.0, "{ty}");
            assert!(dequantize(ty, &b).iter().all(|&v| v == 0.0), "{ty}");
        }
    }

    #[test]
    fn round_trip_error_is_within_half_a_step() {
        // A deterministic spread of magnitudes and signs (xorshift), several blocks.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        let x: Vec<f32> = (0..QK * 64)
            .map(|i| next() * [0.01, 1.0, 300.0][i / QK % 3])
            .collect();
        // Rounding to the nearest level costs at most half a step; the symmetric types clamp the
        // top level (an element of the opposite sign to the extreme and nearly as large lands
        // on level 15 instead of 16), which costs at most one step. On top comes the f16
        // rounding of d (relative 2^-11) carried over the levels, and of m for Q4_1/Q5_1.
        const F16_REL: f32 = 1.0 / 2048.0;
        for ty in TYPES {
            let q = quantize(ty, &x);
            for (block, src) in q.chunks(ty.block_bytes()).zip(x.chunks(QK)) {
                let back = dequantize(ty, block);
                let amax = src.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let (min, max) = src
                    .iter()
                    .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
                let (step, rounding_steps, levels) = match ty {
                    GgmlType::Q4_0 => (amax / 8.0, 1.0, 16.0),
                    GgmlType::Q5_0 => (amax / 16.0, 1.0, 32.0),
                    GgmlType::Q4_1 => ((max - min) / 15.0, 0.5, 16.0),
                    GgmlType::Q5_1 => ((max - min) / 31.0, 0.5, 32.0),
                    _ => (amax / 127.0, 0.5, 128.0),
                };
                let bound = rounding_steps * step + step * levels * F16_REL + amax * F16_REL;
                for (a, b) in src.iter().zip(&back) {
                    assert!((a - b).abs() <= bound, "{ty}: {a} -> {b} (bound {bound})");
                }
            }
        }
    }

    #[test]
    fn rejects_other_types_and_partial_blocks() {
        let mut out = [0u8; 18];
        assert!(quantize_row(GgmlType::Q4_K, &[0.0; 256], &mut [0u8; 144]).is_err());
        assert!(quantize_row(GgmlType::Q4_0, &[0.0; 31], &mut out).is_err());
        assert!(quantize_row(GgmlType::Q4_0, &[0.0; 64], &mut out).is_err());
        assert!(quantize_row(GgmlType::Q4_0, &[0.0; 32], &mut out).is_ok());
    }
}
