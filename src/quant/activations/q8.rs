//! Activation formats for the 32-element blocks: Q8_0 (scale) and Q8_1 (scale and scaled sum),
//! and their quantizers.
//!
//! The quantizers compute what llama.cpp's x86 build computes at run time (not its `_ref`
//! reference, which the weight quantizer in `formats/quantize.rs` follows): per block `d = amax / 127`,
//! `q = x * (127 / amax)` rounded half to even, so every `q` lies in -127..=127. Matching its
//! rounding bit for bit matters: a single quant that rounds the other way moves the matmul output
//! by a whole quantization step, and the difference then grows through the layers. The kernels
//! rely on the range (the sign trick negates activations, which would overflow for -128).

use half::f16;

use crate::quant::block::{as_blocks_mut, QK};
use crate::quant::formats::q8_0::BlockQ8_0;
use crate::quant::formats::q8_1::BlockQ8_1;

/// The block scale and the multiplier that quantizes: `d = amax / 127` and `127 / amax` (0 for
/// an all-zero block).
fn scale_of(x: &[f32]) -> (f32, f32) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    (d, id)
}

/// Plain-Rust twin of the Q8_0 quantizer (ggml `quantize_row_q8_0`).
pub fn quantize_row_q8_0_scalar(x: &[f32], dst: &mut [u8]) {
    for (b, xs) in as_blocks_mut::<BlockQ8_0>(dst)
        .iter_mut()
        .zip(x.chunks_exact(QK))
    {
        let (d, id) = scale_of(xs);
        b.d = f16::from_f32(d).to_le_bytes();
        for (q, &v) in b.qs.iter_mut().zip(xs) {
            // |v * id| <= 127.
            *q = (v * id).round_ties_even() as i8;
        }
    }
}

/// Plain-Rust twin of the Q8_1 quantizer (ggml `quantize_row_q8_1`).
pub fn quantize_row_q8_1_scalar(x: &[f32], dst: &mut [u8]) {
    for (b, xs) in as_blocks_mut::<BlockQ8_1>(dst)
        .iter_mut()
        .zip(x.chunks_exact(QK))
    {
        let (d, id) = scale_of(xs);
        let mut sum = 0i32;
        for (q, &v) in b.qs.iter_mut().zip(xs) {
            *q = (v * id).round_ties_even() as i8;
            sum += *q as i32;
        }
        b.d = f16::from_f32(d).to_le_bytes();
        b.s = f16::from_f32(sum as f32 * d).to_le_bytes();
    }
}
