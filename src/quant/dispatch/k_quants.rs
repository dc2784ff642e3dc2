//! Safe entry points of the K-quants (Q2_K … Q6_K), IQ4_NL/IQ4_XS and the Q8_K quantizer, by
//! type over raw bytes. Each checks its operands with the `block` length checks, then runs the
//! level [`Simd::or_supported`] returns.

use crate::quant::activations::q8_k::quantize_block;
use crate::quant::block::{as_blocks, as_blocks_mut, check_dot, check_elements, ByteBlock};
use crate::quant::formats::iq4::{self, BlockIq4Nl, BlockIq4Xs};
use crate::quant::formats::q8_0::BlockQ8_0;
use crate::quant::formats::{q2_k, q3_k, q4_k, q5_k, q6_k, q8_k};
use crate::quant::formats::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K};
use crate::quant::simd::Simd;
use crate::quant::types::{GgmlType, QK_K};
#[cfg(target_arch = "x86_64")]
use crate::quant::x86;

/// Views `w` and `act` as matching blocks of `W` and `A`, after the length check.
#[track_caller]
#[inline(always)]
fn operands<'a, W: ByteBlock, A: ByteBlock>(w: &'a [u8], act: &'a [u8]) -> (&'a [W], &'a [A]) {
    check_dot::<W, A>(w.len(), act.len());
    (as_blocks(w), as_blocks(act))
}

/// Dequantizes whole super-blocks of `ty` (a K-quant, IQ4_NL or IQ4_XS) in `src` into `dst`.
/// Q2_K, Q3_K, Q5_K and the IQ4 types use their scalar twin at every level: dequantization is off
/// the hot path for them.
///
/// # Panics
/// If `src` is not exactly `dst.len()` elements of whole blocks of `ty`.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32], simd: Simd) {
    let simd = simd.or_supported();
    let x86 = cfg!(target_arch = "x86_64") && matches!(simd, Simd::Avx2 | Simd::Avx512);
    match ty {
        GgmlType::Q2_K => {
            check_elements::<BlockQ2K>(src.len(), dst.len());
            q2_k::dequantize_scalar(as_blocks(src), dst);
        }
        GgmlType::Q3_K => {
            check_elements::<BlockQ3K>(src.len(), dst.len());
            q3_k::dequantize_scalar(as_blocks(src), dst);
        }
        GgmlType::Q4_K => {
            check_elements::<BlockQ4K>(src.len(), dst.len());
            #[cfg(target_arch = "x86_64")]
            if x86 {
                // SAFETY: `or_supported` returned a level with AVX2, FMA and F16C; lengths
                // checked above.
                return unsafe { x86::q4_k::dequantize_avx2(as_blocks(src), dst) };
            }
            q4_k::dequantize_scalar(as_blocks(src), dst);
        }
        GgmlType::Q5_K => {
            check_elements::<BlockQ5K>(src.len(), dst.len());
            q5_k::dequantize_scalar(as_blocks(src), dst);
        }
        GgmlType::Q6_K => {
            check_elements::<BlockQ6K>(src.len(), dst.len());
            #[cfg(target_arch = "x86_64")]
            if x86 {
                // SAFETY: as for Q4_K.
                return unsafe { x86::q6_k::dequantize_avx2(as_blocks(src), dst) };
            }
            q6_k::dequantize_scalar(as_blocks(src), dst);
        }
        GgmlType::Q8_K => {
            check_elements::<BlockQ8K>(src.len(), dst.len());
            q8_k::dequantize_scalar(as_blocks(src), dst);
        }
        GgmlType::IQ4_NL => {
            check_elements::<BlockIq4Nl>(src.len(), dst.len());
            iq4::dequantize_nl_scalar(as_blocks(src), dst);
        }
        GgmlType::IQ4_XS => {
            check_elements::<BlockIq4Xs>(src.len(), dst.len());
            iq4::dequantize_xs_scalar(as_blocks(src), dst);
        }
        _ => panic!("{ty} is not a K-quant or IQ4 type"),
    }
    let _ = x86;
}

/// Dot product of whole weight super-blocks of `ty` with activations in its `vec_dot_type`
/// (Q8_K; Q8_0 for IQ4_NL), the same number of elements, in the arithmetic of llama.cpp's
/// one-column kernel for the type (for Q2_K and Q4_K, its repacked `gemv`).
///
/// # Panics
/// If `ty` is not a K-quant or IQ4 type, or the lengths are not matching whole blocks.
pub fn vec_dot(ty: GgmlType, w: &[u8], act: &[u8], simd: Simd) -> f32 {
    let simd = simd.or_supported();
    match ty {
        GgmlType::Q2_K => q2_k_dot::<false>(operands(w, act), simd),
        GgmlType::Q3_K => q3_k_dot::<false>(operands(w, act), simd),
        GgmlType::Q4_K => q4_k_dot::<false>(operands(w, act), simd),
        GgmlType::Q5_K => q5_k_dot::<false>(operands(w, act), simd),
        GgmlType::Q6_K => q6_k_dot::<false>(operands(w, act), simd),
        GgmlType::IQ4_NL => iq4_nl_dot(operands(w, act), simd),
        GgmlType::IQ4_XS => iq4_xs_dot::<false>(operands(w, act), simd),
        _ => panic!("{ty} is not a K-quant or IQ4 type"),
    }
}

/// [`vec_dot`] in the arithmetic llama.cpp uses when 8 or more activation columns are multiplied
/// at once (its tiled K-quant matrix multiply, ggml-cpu/tiled): for Q3_K, Q6_K and IQ4_XS, per
/// super-block the exact integer dot, then `(isum · d_w) · d_a + acc` (the last multiply and add
/// fused); for Q5_K the same with the mins fused in before. Other types keep the single-column
/// arithmetic.
///
/// # Panics
/// As [`vec_dot`].
pub fn vec_dot_tiled(ty: GgmlType, w: &[u8], act: &[u8], simd: Simd) -> f32 {
    let simd = simd.or_supported();
    match ty {
        GgmlType::Q6_K => q6_k_dot::<true>(operands(w, act), simd),
        GgmlType::Q5_K => q5_k_dot::<true>(operands(w, act), simd),
        GgmlType::Q3_K => q3_k_dot::<true>(operands(w, act), simd),
        GgmlType::IQ4_XS => iq4_xs_dot::<true>(operands(w, act), simd),
        _ => vec_dot(ty, w, act, simd),
    }
}

/// [`vec_dot`] in the arithmetic llama.cpp uses for activation columns that fall in a whole
/// group of four (its repacked four-column kernels): the fused running sums step per 64 elements
/// (Q4_K) or per 128 (Q2_K) instead of per super-block. Other types keep the single-column
/// arithmetic.
///
/// # Panics
/// As [`vec_dot`].
pub fn vec_dot_four_columns(ty: GgmlType, w: &[u8], act: &[u8], simd: Simd) -> f32 {
    let simd = simd.or_supported();
    match ty {
        GgmlType::Q4_K => q4_k_dot::<true>(operands(w, act), simd),
        GgmlType::Q2_K => q2_k_dot::<true>(operands(w, act), simd),
        _ => vec_dot(ty, w, act, simd),
    }
}

/// [`vec_dot_four_columns`] of one Q4_K row with four activation columns at once (the weight
/// row unpacked once); `None` for other types.
///
/// # Panics
/// As [`vec_dot`], for each column.
pub fn vec_dot_four_columns_x4(
    ty: GgmlType,
    w: &[u8],
    acts: [&[u8]; 4],
    simd: Simd,
) -> Option<[f32; 4]> {
    if ty != GgmlType::Q4_K {
        return None;
    }
    let simd = simd.or_supported();
    for act in acts {
        check_dot::<BlockQ4K, BlockQ8K>(w.len(), act.len());
    }
    #[cfg(target_arch = "x86_64")]
    if simd == Simd::Avx512 {
        // SAFETY: `or_supported` returned AVX-512, whose features this CPU has; every column
        // holds as many blocks as the row (checked above).
        return Some(unsafe {
            x86::q4_k::vec_dot_chunked_x4_avx512(as_blocks(w), acts.map(as_blocks))
        });
    }
    Some(acts.map(|a| q4_k_dot::<true>((as_blocks(w), as_blocks(a)), simd)))
}

/// [`vec_dot_tiled`] of one Q6_K row with four activation columns at once (the weight row
/// unpacked once); `None` for other types.
///
/// # Panics
/// As [`vec_dot`], for each column.
pub fn vec_dot_tiled_x4(ty: GgmlType, w: &[u8], acts: [&[u8]; 4], simd: Simd) -> Option<[f32; 4]> {
    if ty != GgmlType::Q6_K {
        return None;
    }
    let simd = simd.or_supported();
    for act in acts {
        check_dot::<BlockQ6K, BlockQ8K>(w.len(), act.len());
    }
    #[cfg(target_arch = "x86_64")]
    if simd == Simd::Avx512 {
        // SAFETY: as in `vec_dot_four_columns_x4`.
        return Some(unsafe {
            x86::q6_k::vec_dot_tiled_x4_avx512(as_blocks(w), acts.map(as_blocks))
        });
    }
    Some(acts.map(|a| q6_k_dot::<true>((as_blocks(w), as_blocks(a)), simd)))
}

/// Quantizes f32 activations to Q8_K (ggml `quantize_row_q8_K_ref`, see `activations::q8_k`).
///
/// # Panics
/// If `dst` is not exactly `x.len()` elements of whole Q8_K blocks.
pub fn quantize_row_q8_k(x: &[f32], dst: &mut [u8], simd: Simd) {
    check_elements::<BlockQ8K>(dst.len(), x.len());
    let simd = simd.or_supported();
    let dst: &mut [BlockQ8K] = as_blocks_mut(dst);
    for (xb, yb) in x.chunks_exact(QK_K).zip(dst.iter_mut()) {
        let Ok(xb) = <&[f32; QK_K]>::try_from(xb) else {
            // `chunks_exact` yields whole blocks only.
            continue;
        };
        match simd {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `or_supported` returned AVX-512, whose features this CPU has.
            Simd::Avx512 => unsafe { x86::q8_k::quantize_block_avx512(xb, yb) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `or_supported` returned AVX2: AVX2, FMA and F16C present.
            Simd::Avx2 => unsafe { x86::q8_k::quantize_block_avx2(xb, yb) },
            _ => quantize_block(xb, yb),
        }
    }
}

// The per-type dots below take operands that passed `check_dot` and a level from
// `or_supported`; `CHUNKED` / `TILED` choose llama.cpp's other arithmetic for the type.

fn q2_k_dot<const CHUNKED: bool>((w, act): (&[BlockQ2K], &[BlockQ8K]), simd: Simd) -> f32 {
    match simd {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the level has AVX2, FMA and F16C; the operands match.
        Simd::Avx2 | Simd::Avx512 => unsafe { x86::q2_k::vec_dot_avx2::<CHUNKED>(w, act) },
        _ if CHUNKED => q2_k::vec_dot_chunked_scalar(w, act),
        _ => q2_k::vec_dot_scalar(w, act),
    }
}

fn q3_k_dot<const TILED: bool>((w, act): (&[BlockQ3K], &[BlockQ8K]), simd: Simd) -> f32 {
    match simd {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the level has AVX2, FMA and F16C; the operands match.
        Simd::Avx2 | Simd::Avx512 => unsafe { x86::q3_k::vec_dot_avx2::<TILED>(w, act) },
        _ if TILED => q3_k::vec_dot_tiled_scalar(w, act),
        _ => q3_k::vec_dot_scalar(w, act),
    }
}

fn q4_k_dot<const CHUNKED: bool>((w, act): (&[BlockQ4K], &[BlockQ8K]), simd: Simd) -> f32 {
    match simd {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the level has the AVX-512 features; the operands match.
        Simd::Avx512 => unsafe { x86::q4_k::vec_dot_avx512::<CHUNKED>(w, act) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the level has AVX2, FMA and F16C; the operands match.
        Simd::Avx2 => unsafe { x86::q4_k::vec_dot_avx2::<CHUNKED>(w, act) },
        _ if CHUNKED => q4_k::vec_dot_chunked_scalar(w, act),
        _ => q4_k::vec_dot_scalar(w, act),
    }
}

fn q5_k_dot<const TILED: bool>((w, act): (&[BlockQ5K], &[BlockQ8K]), simd: Simd) -> f32 {
    match simd {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the level has AVX2, FMA and F16C; the operands match.
        Simd::Avx2 | Simd::Avx512 => unsafe { x86::q5_k::vec_dot_avx2::<TILED>(w, act) },
        _ if TILED => q5_k::vec_dot_tiled_scalar(w, act),
        _ => q5_k::vec_dot_scalar(w, act),
    }
}

fn q6_k_dot<const TILED: bool>((w, act): (&[BlockQ6K], &[BlockQ8K]), simd: Simd) -> f32 {
    match simd {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the level has the AVX-512 features; the operands match.
        Simd::Avx512 => unsafe { x86::q6_k::vec_dot_avx512::<TILED>(w, act) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the level has AVX2, FMA and F16C; the operands match.
        Simd::Avx2 => unsafe { x86::q6_k::vec_dot_avx2::<TILED>(w, act) },
        _ if TILED => q6_k::vec_dot_tiled_scalar(w, act),
        _ => q6_k::vec_dot_scalar(w, act),
    }
}

fn iq4_nl_dot((w, act): (&[BlockIq4Nl], &[BlockQ8_0]), simd: Simd) -> f32 {
    match simd {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the level has AVX2, FMA and F16C; the operands match.
        Simd::Avx2 | Simd::Avx512 => unsafe { x86::iq4::vec_dot_nl_avx2(w, act) },
        _ => iq4::vec_dot_nl_scalar(w, act),
    }
}

fn iq4_xs_dot<const TILED: bool>((w, act): (&[BlockIq4Xs], &[BlockQ8K]), simd: Simd) -> f32 {
    match simd {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the level has AVX2, FMA and F16C; the operands match.
        Simd::Avx2 | Simd::Avx512 => unsafe { x86::iq4::vec_dot_xs_avx2::<TILED>(w, act) },
        _ if TILED => iq4::vec_dot_xs_tiled_scalar(w, act),
        _ => iq4::vec_dot_xs_scalar(w, act),
    }
}
