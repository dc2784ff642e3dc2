//! x86-64 kernels for the 32-element block formats and the float types.
//!
//! Two levels share one body (the `block_dot_kernels!` macro), differing only in the 8-bit dot
//! primitive and in how the fifth bits of Q5 blocks become byte masks:
//! - [`avx2`]: `vpmaddubsw` (u8 × i8 → pairs of i16) then `vpmaddwd` with ones (→ i32);
//! - [`avx512`]: one `vpdpbusd` (AVX-512 VNNI on 256-bit registers: u8 × i8 summed in fours into
//!   i32), and `vpmovm2b` to expand the fifth bits.
//!
//! Signed weights (Q4_0, Q5_0, Q8_0) use the sign trick both instructions need, as ggml does:
//! `x·y = |x| · (y with the sign of x)`, so the unsigned operand is `|x|` and the signed one
//! `sign(y, x)`. This is exact because activations lie in -127..=127 (see [`super::q8`]), so
//! negating them never overflows, and `|x| <= 128` keeps every `vpmaddubsw` pair sum within i16
//! (`2 · 128 · 127 < 32767`). Unsigned weights (Q4_1, Q5_1) feed the instruction directly.
//!
//! Each block's integer dot (eight i32 lanes) is converted to f32 and fused-multiply-added with
//! `d_w · d_a` into one f32 accumulator per (weight row, activation column); the lanes are summed
//! at the end.
//! Dequantization, activation quantization and the float kernels are exact or order-independent,
//! so one AVX2 version serves both levels.
//!
//! Every function here is `unsafe`: the caller guarantees the CPU has the target features (it
//! obtained the level from `Simd::or_supported`) and that the slices hold whole blocks with
//! matching counts (checked by the safe wrappers in the per-type modules).

use std::arch::x86_64::*;
use std::mem::size_of;

use super::{
    bits_to_bytes_avx2, f16_at, f16_splat, hsum_epi32, hsum_ps, nibbles, q5_0_values, q5_1_values,
};
use crate::quant::block::QK;
use crate::quant::formats::q4_0::BlockQ4_0;
use crate::quant::formats::q4_1::BlockQ4_1;
use crate::quant::formats::q5_0::BlockQ5_0;
use crate::quant::formats::q5_1::BlockQ5_1;
use crate::quant::formats::q8_0::BlockQ8_0;
use crate::quant::formats::q8_1::BlockQ8_1;
use crate::quant::types::GgmlType;

const Q4_0_BYTES: usize = size_of::<BlockQ4_0>();
const Q4_1_BYTES: usize = size_of::<BlockQ4_1>();
const Q5_0_BYTES: usize = size_of::<BlockQ5_0>();
const Q5_1_BYTES: usize = size_of::<BlockQ5_1>();
const Q8_0_BYTES: usize = size_of::<BlockQ8_0>();
const Q8_1_BYTES: usize = size_of::<BlockQ8_1>();

// ---------------------------------------------------------------------------------------------
// Dequantization: exact (`q * d`, or `q * d` then `+ m`, each rounded as ggml rounds them).

/// Stores the 32 i8 quants of `q` times `d` (plus `m` when given) at `dst`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn store_block(q: __m256i, d: f32, m: Option<f32>, dst: *mut f32) {
    let lo = _mm256_castsi256_si128(q);
    let hi = _mm256_extracti128_si256(q, 1);
    let parts = [lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)];
    let vd = _mm256_set1_ps(d);
    for (k, part) in parts.into_iter().enumerate() {
        let mut v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(part)), vd);
        if let Some(m) = m {
            // A separate add (no FMA): ggml rounds the product before adding the minimum.
            v = _mm256_add_ps(v, _mm256_set1_ps(m));
        }
        _mm256_storeu_ps(dst.add(8 * k), v);
    }
}

/// A dequantizer of a 32-element type: `$quants` gives the 32 i8 quants of the block at `$p` and
/// `$min` its minimum if it has one (its scale is the f16 at offset 0).
macro_rules! dequantize_kernel {
    ($name:ident, $bytes:expr, |$p:ident| $quants:expr, $min:expr) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(in crate::quant) unsafe fn $name(src: &[u8], dst: &mut [f32]) {
            for i in 0..dst.len() / QK {
                let $p = src.as_ptr().add(i * $bytes);
                store_block($quants, f16_at($p), $min, dst.as_mut_ptr().add(i * QK));
            }
        }
    };
}

dequantize_kernel!(
    dequantize_q4_0,
    Q4_0_BYTES,
    |p| _mm256_sub_epi8(nibbles(p.add(2)), _mm256_set1_epi8(8)),
    None
);
dequantize_kernel!(
    dequantize_q4_1,
    Q4_1_BYTES,
    |p| nibbles(p.add(4)),
    Some(f16_at(p.add(2)))
);
dequantize_kernel!(
    dequantize_q5_0,
    Q5_0_BYTES,
    |p| {
        let qh = p.add(2).cast::<u32>().read_unaligned();
        q5_0_values(nibbles(p.add(6)), bits_to_bytes_avx2(u32::from_le(qh)))
    },
    None
);
dequantize_kernel!(
    dequantize_q5_1,
    Q5_1_BYTES,
    |p| {
        let qh = p.add(4).cast::<u32>().read_unaligned();
        q5_1_values(nibbles(p.add(8)), bits_to_bytes_avx2(u32::from_le(qh)))
    },
    Some(f16_at(p.add(2)))
);
dequantize_kernel!(
    dequantize_q8_0,
    Q8_0_BYTES,
    |p| _mm256_loadu_si256(p.add(2).cast()),
    None
);

// ---------------------------------------------------------------------------------------------
// Block dot products, one body for both levels.
//
// A kernel dots `R` weight rows with `N` activation columns at once (matmul uses 2 × 4): each
// weight block is unpacked once per row and reused for all columns, and each activation block is
// loaded and its scale converted once per column and reused for all rows.

/// Per (row, column): eight f32 lanes of scaled integer dots, and the scalar sum of the
/// `m_w * s_a` terms (Q4_1, Q5_1).
#[derive(Clone, Copy)]
struct Acc<const R: usize, const N: usize> {
    lanes: [[__m256; N]; R],
    mins: [[f32; N]; R],
}

/// Runs `$body` for every block index `$i` with `$acc: &mut Acc<R, N>` and returns the sums.
/// Runs `$body` for every block with one accumulator set, then reduces each output's lanes and
/// adds its minimum sum: one fused multiply-add chain per output, as llama.cpp's kernels do, so
/// that the result is theirs to the bit.
macro_rules! tile_loop {
    ($n_blocks:expr, |$i:ident, $acc:ident| $body:block) => {{
        let mut acc = Acc {
            lanes: [[_mm256_setzero_ps(); N]; R],
            mins: [[0.0f32; N]; R],
        };
        for $i in 0..$n_blocks {
            let $acc = &mut acc;
            $body
        }
        let mut out = [[0.0f32; N]; R];
        for r in 0..R {
            for c in 0..N {
                out[r][c] = hsum_ps(acc.lanes[r][c]) + acc.mins[r][c];
            }
        }
        out
    }};
}

/// Returns from a `vec_dot_*` kernel of `R` rows × `N` columns with the paired-row kernel
/// `$pair`'s result when `R` is two or four and the level has a paired kernel for the type
/// (`$pair` answers `None` where it has none).
macro_rules! return_if_paired {
    ($pair:ident, $ws:ident, $acts:ident) => {
        if let &[w0, w1] = $ws.as_slice() {
            if let Some([pair]) = $pair::<1, N, false>([[w0, w1]], &$acts, &[&[]; N]) {
                let mut out = [[0.0f32; N]; R];
                out.copy_from_slice(&pair);
                return out;
            }
        }
        if let &[w0, w1, w2, w3] = $ws.as_slice() {
            if let Some([a, b]) = $pair::<2, N, false>([[w0, w1], [w2, w3]], &$acts, &[&[]; N]) {
                let mut out = [[0.0f32; N]; R];
                out[..2].copy_from_slice(&a);
                out[2..].copy_from_slice(&b);
                return out;
            }
        }
    };
}

/// A kernel of a signed weight type (Q5_0, Q8_0) with Q8_0 activations, `R` rows × `N` columns:
/// the paired-row kernel `$pair` where it applies, else `tile_loop!` over `signed_tile`, `$unpack`
/// giving the 32 signed quants of the weight block at `$wp` (its scale is the f16 at offset 0).
macro_rules! signed_kernel {
    ($(#[$doc:meta])* $features:literal, $name:ident, $pair:ident, $bytes:expr,
     |$wp:ident| $unpack:block) => {
        $(#[$doc])*
        #[target_feature(enable = $features)]
        pub(in crate::quant) unsafe fn $name<const R: usize, const N: usize>(
            ws: [&[u8]; R],
            acts: [&[u8]; N],
        ) -> [[f32; N]; R] {
            return_if_paired!($pair, ws, acts);
            tile_loop!(ws[0].len() / $bytes, |i, acc| {
                let mut x = [_mm256_setzero_si256(); R];
                let mut dw = [0.0f32; R];
                for r in 0..R {
                    let $wp = ws[r].as_ptr().add(i * $bytes);
                    x[r] = $unpack;
                    dw[r] = f16_at($wp);
                }
                signed_tile(acc, x, dw, &acts, i * Q8_0_BYTES);
            })
        }
    };
}

/// A kernel of an unsigned weight type (Q4_1, Q5_1) with Q8_1 activations, as `signed_kernel!`
/// over `unsigned_tile` (the minimum is the f16 at offset 2 of the weight block).
macro_rules! unsigned_kernel {
    ($(#[$doc:meta])* $features:literal, $name:ident, $pair:ident, $bytes:expr,
     |$wp:ident| $unpack:block) => {
        $(#[$doc])*
        #[target_feature(enable = $features)]
        pub(in crate::quant) unsafe fn $name<const R: usize, const N: usize>(
            ws: [&[u8]; R],
            acts: [&[u8]; N],
        ) -> [[f32; N]; R] {
            return_if_paired!($pair, ws, acts);
            tile_loop!(ws[0].len() / $bytes, |i, acc| {
                let mut x = [_mm256_setzero_si256(); R];
                let (mut dw, mut mw) = ([0.0f32; R], [0.0f32; R]);
                for r in 0..R {
                    let $wp = ws[r].as_ptr().add(i * $bytes);
                    x[r] = $unpack;
                    dw[r] = f16_at($wp);
                    mw[r] = f16_at($wp.add(2));
                }
                unsigned_tile(acc, x, dw, mw, &acts, i * Q8_1_BYTES);
            })
        }
    };
}

macro_rules! block_dot_kernels {
    ($features:literal) => {
        /// Adds one signed-weight block per row (quants `x[r]`, scale `dw[r]`) dotted with the
        /// Q8_0 block at byte `off` of each column.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn signed_tile<const R: usize, const N: usize>(
            acc: &mut Acc<R, N>,
            x: [__m256i; R],
            dw: [f32; R],
            acts: &[&[u8]; N],
            off: usize,
        ) {
            let mut ax = [_mm256_setzero_si256(); R];
            let mut vdw = [_mm256_setzero_ps(); R];
            for r in 0..R {
                ax[r] = _mm256_sign_epi8(x[r], x[r]);
                vdw[r] = _mm256_set1_ps(dw[r]);
            }
            for c in 0..N {
                let ap = acts[c].as_ptr().add(off);
                let y = _mm256_loadu_si256(ap.add(2).cast());
                let da = f16_splat(ap);
                for r in 0..R {
                    let p = dot_u8_i8(ax[r], _mm256_sign_epi8(y, x[r]));
                    let scale = _mm256_mul_ps(vdw[r], da);
                    acc.lanes[r][c] =
                        _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), scale, acc.lanes[r][c]);
                }
            }
        }

        /// Like `signed_tile`, but each block's 32 products are summed exactly as integers
        /// before one fused multiply-add by `d_w · d_a` per output, kept in `acc.mins` (the
        /// arithmetic of llama.cpp's repacked Q4_0 kernels).
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn signed_tile_whole_block<const R: usize, const N: usize>(
            acc: &mut Acc<R, N>,
            x: [__m256i; R],
            dw: [f32; R],
            acts: &[&[u8]; N],
            off: usize,
        ) {
            let mut ax = [_mm256_setzero_si256(); R];
            for r in 0..R {
                ax[r] = _mm256_sign_epi8(x[r], x[r]);
            }
            for c in 0..N {
                let ap = acts[c].as_ptr().add(off);
                let y = _mm256_loadu_si256(ap.add(2).cast());
                let da = f16_at(ap);
                for r in 0..R {
                    let isum = hsum_epi32(dot_u8_i8(ax[r], _mm256_sign_epi8(y, x[r])));
                    acc.mins[r][c] = (isum as f32).mul_add(dw[r] * da, acc.mins[r][c]);
                }
            }
        }

        /// Adds one unsigned-weight block per row (quants `x[r]`, scale `dw[r]`, minimum
        /// `mw[r]`) dotted with the Q8_1 block at byte `off` of each column.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn unsigned_tile<const R: usize, const N: usize>(
            acc: &mut Acc<R, N>,
            x: [__m256i; R],
            dw: [f32; R],
            mw: [f32; R],
            acts: &[&[u8]; N],
            off: usize,
        ) {
            let mut vdw = [_mm256_setzero_ps(); R];
            for r in 0..R {
                vdw[r] = _mm256_set1_ps(dw[r]);
            }
            for c in 0..N {
                let ap = acts[c].as_ptr().add(off);
                let y = _mm256_loadu_si256(ap.add(4).cast());
                let da = f16_splat(ap);
                let sa = f16_at(ap.add(2));
                for r in 0..R {
                    let p = dot_u8_i8(x[r], y);
                    let scale = _mm256_mul_ps(vdw[r], da);
                    acc.lanes[r][c] =
                        _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), scale, acc.lanes[r][c]);
                    acc.mins[r][c] = mw[r].mul_add(sa, acc.mins[r][c]);
                }
            }
        }

        /// Q4_0 weights · Q8_0 activations, `R` rows × `N` columns.
        #[target_feature(enable = $features)]
        pub(in crate::quant) unsafe fn vec_dot_q4_0<const R: usize, const N: usize>(
            ws: [&[u8]; R],
            acts: [&[u8]; N],
        ) -> [[f32; N]; R] {
            if let &[w0, w1, w2, w3] = ws.as_slice() {
                let four = q4_0_rows4([w0, w1, w2, w3], &acts);
                let mut out = [[0.0f32; N]; R];
                out.copy_from_slice(&four);
                return out;
            }
            tile_loop!(ws[0].len() / Q4_0_BYTES, |i, acc| {
                let mut x = [_mm256_setzero_si256(); R];
                let mut dw = [0.0f32; R];
                for r in 0..R {
                    let wp = ws[r].as_ptr().add(i * Q4_0_BYTES);
                    x[r] = _mm256_sub_epi8(nibbles(wp.add(2)), _mm256_set1_epi8(8));
                    dw[r] = f16_at(wp);
                }
                signed_tile_whole_block(acc, x, dw, &acts, i * Q8_0_BYTES);
            })
        }

        /// Four Q4_0 rows × `N` columns with the four rows' block sums reduced together: the
        /// rows' eight-lane integer dots are folded by three horizontal adds into one vector of
        /// four exact block sums, then one four-lane fused multiply-add per column. Same
        /// arithmetic per output as `signed_tile_whole_block`.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn q4_0_rows4<const N: usize>(ws: [&[u8]; 4], acts: &[&[u8]; N]) -> [[f32; N]; 4] {
            let mut acc = [_mm_setzero_ps(); N];
            for i in 0..ws[0].len() / Q4_0_BYTES {
                let mut x = [_mm256_setzero_si256(); 4];
                let mut ax = [_mm256_setzero_si256(); 4];
                let mut dw = [0.0f32; 4];
                for r in 0..4 {
                    let wp = ws[r].as_ptr().add(i * Q4_0_BYTES);
                    x[r] = _mm256_sub_epi8(nibbles(wp.add(2)), _mm256_set1_epi8(8));
                    ax[r] = _mm256_sign_epi8(x[r], x[r]);
                    dw[r] = f16_at(wp);
                }
                let dw = _mm_loadu_ps(dw.as_ptr());
                for c in 0..N {
                    let ap = acts[c].as_ptr().add(i * Q8_0_BYTES);
                    let y = _mm256_loadu_si256(ap.add(2).cast());
                    let p: [__m256i; 4] =
                        std::array::from_fn(|r| dot_u8_i8(ax[r], _mm256_sign_epi8(y, x[r])));
                    // [r0 r0 r1 r1 | r0 r0 r1 r1] … → [r0 r1 r2 r3 | r0 r1 r2 r3], then halves.
                    let s = _mm256_hadd_epi32(
                        _mm256_hadd_epi32(p[0], p[1]),
                        _mm256_hadd_epi32(p[2], p[3]),
                    );
                    let isum =
                        _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
                    let scale = _mm_mul_ps(dw, _mm_set1_ps(f16_at(ap)));
                    acc[c] = _mm_fmadd_ps(_mm_cvtepi32_ps(isum), scale, acc[c]);
                }
            }
            let mut out = [[0.0f32; N]; 4];
            for c in 0..N {
                let mut lanes = [0.0f32; 4];
                _mm_storeu_ps(lanes.as_mut_ptr(), acc[c]);
                for r in 0..4 {
                    out[r][c] = lanes[r];
                }
            }
            out
        }

        signed_kernel! {
            /// Q5_0 weights · Q8_0 activations, `R` rows × `N` columns.
            $features, vec_dot_q5_0, pair_q5_0, Q5_0_BYTES, |wp| {
                let qh = u32::from_le(wp.add(2).cast::<u32>().read_unaligned());
                q5_0_values(nibbles(wp.add(6)), bits_to_bytes(qh))
            }
        }
        signed_kernel! {
            /// Q8_0 weights · Q8_0 activations, `R` rows × `N` columns.
            $features, vec_dot_q8_0, pair_q8_0, Q8_0_BYTES, |wp| {
                _mm256_loadu_si256(wp.add(2).cast())
            }
        }
        unsigned_kernel! {
            /// Q4_1 weights · Q8_1 activations, `R` rows × `N` columns.
            $features, vec_dot_q4_1, pair_q4_1, Q4_1_BYTES, |wp| {
                nibbles(wp.add(4))
            }
        }
        unsigned_kernel! {
            /// Q5_1 weights · Q8_1 activations, `R` rows × `N` columns.
            $features, vec_dot_q5_1, pair_q5_1, Q5_1_BYTES, |wp| {
                let qh = u32::from_le(wp.add(4).cast::<u32>().read_unaligned());
                q5_1_values(nibbles(wp.add(8)), bits_to_bytes(qh))
            }
        }
    };
}

/// AVX2 + FMA + F16C kernels.
pub(in crate::quant) mod avx2 {
    use super::*;

    /// Σ of four adjacent u8·i8 products into each i32 lane: `vpmaddubsw` (pairs into i16, no
    /// saturation for our operand ranges, see the module doc) then `vpmaddwd` with ones.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_u8_i8(a: __m256i, b: __m256i) -> __m256i {
        _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn bits_to_bytes(bits: u32) -> __m256i {
        bits_to_bytes_avx2(bits)
    }

    /// AVX2 has no paired-row kernels: every tile goes through `tile_loop!`.
    macro_rules! no_pair {
        ($($name:ident),*) => {$(
            #[inline(always)]
            fn $name<const P: usize, const N: usize, const SCALED: bool>(
                _ws: [[&[u8]; 2]; P],
                _acts: &[&[u8]; N],
                _scales: &[&[f32]; N],
            ) -> Option<[[[f32; N]; 2]; P]> {
                None
            }
        )*};
    }
    no_pair!(pair_q5_0, pair_q8_0, pair_q4_1, pair_q5_1);

    block_dot_kernels!("avx2,fma,f16c");
}

/// AVX-512 VNNI kernels (on 256-bit registers, which avoid the frequency drop 512-bit code
/// causes on older Xeons and need no cross-block shuffles for 32-element blocks).
pub(in crate::quant) mod avx512 {
    use super::*;

    /// Σ of four adjacent u8·i8 products into each i32 lane, in one `vpdpbusd`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn dot_u8_i8(a: __m256i, b: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), a, b)
    }

    /// Byte `j` = 0xFF where bit `j` is set, in one `vpmovm2b`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn bits_to_bytes(bits: u32) -> __m256i {
        _mm256_movm_epi8(bits)
    }

    block_dot_kernels!("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni");

    // Two weight rows at once in 512-bit registers: row 0's block in the low half, row 1's in
    // the high half, each activation block broadcast to both halves. Every lane computes exactly
    // what the 256-bit tile computes for its row (same integer dot, same `d_w · d_a`, same fused
    // multiply-add), so the results are bit-identical to it, with half the instructions.

    /// `lo` in the low 256 bits and `hi` in the high 256 bits.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn join(lo: __m256i, hi: __m256i) -> __m512i {
        _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1)
    }

    /// The little-endian f16 at `p`, as f32 in all sixteen lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn f16_splat512(p: *const u8) -> __m512 {
        let bits = p.cast::<u16>().read_unaligned();
        _mm512_cvtph_ps(_mm256_set1_epi16(bits as i16))
    }

    /// The scale of block `i` of activation column `c` in all sixteen lanes: with `SCALED`,
    /// from the table the caller converted once for the whole matrix (a broadcast load), else
    /// converted from the block's f16 at `block` (a broadcast and a conversion per row tile: a
    /// tenth of a prompt tile's instructions).
    ///
    /// # Safety
    /// With `SCALED`, `scales[c]` must hold at least `i + 1` scales.
    #[inline(always)]
    unsafe fn activation_scale<const N: usize, const SCALED: bool>(
        scales: &[&[f32]; N],
        c: usize,
        i: usize,
        block: *const u8,
    ) -> __m512 {
        if SCALED {
            _mm512_set1_ps(*scales[c].get_unchecked(i))
        } else {
            f16_splat512(block)
        }
    }

    /// Four rows × eight columns of a 32-element weight type with the activation scales
    /// converted in advance (`scales[c][i]`: block `i` of column `c`); `None` for a type
    /// without a paired kernel.
    ///
    /// # Safety
    /// The CPU must have the module's features; every row must be whole blocks of `ty`, every
    /// column as many blocks of its activation type, and every scale table that many scales.
    pub(in crate::quant) unsafe fn vec_dot_wide(
        ty: GgmlType,
        ws: [&[u8]; 4],
        acts: [&[u8]; 8],
        scales: [&[f32]; 8],
    ) -> Option<[[f32; 8]; 4]> {
        let pairs = [[ws[0], ws[1]], [ws[2], ws[3]]];
        let [a, b] = match ty {
            GgmlType::Q5_0 => pair_q5_0::<2, 8, true>(pairs, &acts, &scales),
            GgmlType::Q8_0 => pair_q8_0::<2, 8, true>(pairs, &acts, &scales),
            GgmlType::Q4_1 => pair_q4_1::<2, 8, true>(pairs, &acts, &scales),
            GgmlType::Q5_1 => pair_q5_1::<2, 8, true>(pairs, &acts, &scales),
            _ => None,
        }?;
        Some([a[0], a[1], b[0], b[1]])
    }

    /// The little-endian f16 at `lo` in the low eight lanes and the one at `hi` in the high
    /// eight, as f32: two word broadcasts and one conversion (converting each to a scalar first
    /// costs three times the instructions, which shows in token generation).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn pair_scales(lo: *const u8, hi: *const u8) -> __m512 {
        let lo = _mm_set1_epi16(lo.cast::<i16>().read_unaligned());
        let hi = _mm_set1_epi16(hi.cast::<i16>().read_unaligned());
        _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1))
    }

    /// The two rows' sums from the paired accumulators (as `tile_loop!` sums each row's lanes).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn pair_sums<const N: usize>(acc: &[__m512; N], mins: &[[f32; N]; 2]) -> [[f32; N]; 2] {
        let mut out = [[0.0f32; N]; 2];
        for c in 0..N {
            let lo = _mm512_castps512_ps256(acc[c]);
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[c]), 1));
            out[0][c] = hsum_ps(lo) + mins[0][c];
            out[1][c] = hsum_ps(hi) + mins[1][c];
        }
        out
    }

    /// A signed-weight paired kernel: `$unpack` turns the block at `$wp` into its 32 signed
    /// quants and scale.
    macro_rules! signed_pair {
        ($name:ident, $bytes:expr, |$w0:ident, $w1:ident| $unpack:block) => {
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
            unsafe fn $name<const P: usize, const N: usize, const SCALED: bool>(
                ws: [[&[u8]; 2]; P],
                acts: &[&[u8]; N],
                scales: &[&[f32]; N],
            ) -> Option<[[[f32; N]; 2]; P]> {
                // The activations enter `vpdpbusd` as unsigned bytes `y + 128` (one `xor` per
                // column) and the signed weights as they are; each lane's four products then
                // carry `128 · Σ x` too, which the accumulator starts from minus (computed once
                // per row pair and block). Both are exact integers, so every lane's sum is
                // exactly `Σ x·y`, as with the sign trick, in one instruction less per column
                // and row pair.
                let offset = _mm512_set1_epi8(-128);
                let mut acc = [[_mm512_setzero_ps(); N]; P];
                for i in 0..ws[0][0].len() / $bytes {
                    let mut x = [_mm512_setzero_si512(); P];
                    let mut start = [_mm512_setzero_si512(); P];
                    let mut dw = [_mm512_setzero_ps(); P];
                    for p in 0..P {
                        let (p0, p1) = (
                            ws[p][0].as_ptr().add(i * $bytes),
                            ws[p][1].as_ptr().add(i * $bytes),
                        );
                        x[p] = {
                            let ($w0, $w1) = (p0, p1);
                            $unpack
                        };
                        start[p] = _mm512_sub_epi32(
                            _mm512_setzero_si512(),
                            _mm512_dpbusd_epi32(_mm512_setzero_si512(), offset, x[p]),
                        );
                        dw[p] = pair_scales(p0, p1);
                    }
                    for c in 0..N {
                        let ap = acts[c].as_ptr().add(i * Q8_0_BYTES);
                        let y = _mm512_broadcast_i64x4(_mm256_loadu_si256(ap.add(2).cast()));
                        let y_unsigned = _mm512_xor_si512(y, offset);
                        let da = activation_scale::<N, SCALED>(scales, c, i, ap);
                        for p in 0..P {
                            let prod = _mm512_dpbusd_epi32(start[p], y_unsigned, x[p]);
                            let scale = _mm512_mul_ps(dw[p], da);
                            acc[p][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(prod), scale, acc[p][c]);
                        }
                    }
                }
                let mut out = [[[0.0f32; N]; 2]; P];
                for p in 0..P {
                    out[p] = pair_sums(&acc[p], &[[0.0; N]; 2]);
                }
                Some(out)
            }
        };
    }

    /// An unsigned-weight paired kernel: `$unpack` gives the block's 32 unsigned quants, scale
    /// and minimum.
    macro_rules! unsigned_pair {
        ($name:ident, $bytes:expr, |$w0:ident, $w1:ident| $unpack:block) => {
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
            unsafe fn $name<const P: usize, const N: usize, const SCALED: bool>(
                ws: [[&[u8]; 2]; P],
                acts: &[&[u8]; N],
                scales: &[&[f32]; N],
            ) -> Option<[[[f32; N]; 2]; P]> {
                // The minimum terms of up to eight rows (lane 2p + k: row k of pair p) in one
                // register per column: each lane is its row's own fused multiply-add chain.
                const { assert!(P <= 4) };
                let mut acc = [[_mm512_setzero_ps(); N]; P];
                let mut mins = [_mm256_setzero_ps(); N];
                for i in 0..ws[0][0].len() / $bytes {
                    let mut x = [_mm512_setzero_si512(); P];
                    let mut dw = [_mm512_setzero_ps(); P];
                    // Each row's minimum broadcast, then blended into its lane: whole-register
                    // writes only (inserting words would tie the register to whatever it last
                    // held, often the accumulator of the previous block, serializing blocks).
                    let mut m_bits = _mm_setzero_si128();
                    for p in 0..P {
                        let (p0, p1) = (
                            ws[p][0].as_ptr().add(i * $bytes),
                            ws[p][1].as_ptr().add(i * $bytes),
                        );
                        x[p] = {
                            let ($w0, $w1) = (p0, p1);
                            $unpack
                        };
                        dw[p] = pair_scales(p0, p1);
                        for (k, row) in [p0, p1].into_iter().enumerate() {
                            let m = _mm_set1_epi16(row.add(2).cast::<i16>().read_unaligned());
                            let lane = _mm_cmpeq_epi16(
                                _mm_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7),
                                _mm_set1_epi16((2 * p + k) as i16),
                            );
                            m_bits = _mm_blendv_epi8(m_bits, m, lane);
                        }
                    }
                    let mw = _mm256_cvtph_ps(m_bits);
                    for c in 0..N {
                        let ap = acts[c].as_ptr().add(i * Q8_1_BYTES);
                        let y = _mm512_broadcast_i64x4(_mm256_loadu_si256(ap.add(4).cast()));
                        let da = activation_scale::<N, SCALED>(scales, c, i, ap);
                        let sa = f16_splat(ap.add(2));
                        for p in 0..P {
                            let prod = _mm512_dpbusd_epi32(_mm512_setzero_si512(), x[p], y);
                            let scale = _mm512_mul_ps(dw[p], da);
                            acc[p][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(prod), scale, acc[p][c]);
                        }
                        mins[c] = _mm256_fmadd_ps(mw, sa, mins[c]);
                    }
                }
                let mut out = [[[0.0f32; N]; 2]; P];
                let mut row_mins = [[[0.0f32; N]; 2]; P];
                for c in 0..N {
                    let mut lanes = [0.0f32; 8];
                    _mm256_storeu_ps(lanes.as_mut_ptr(), mins[c]);
                    for p in 0..P {
                        row_mins[p][0][c] = lanes[2 * p];
                        row_mins[p][1][c] = lanes[2 * p + 1];
                    }
                }
                for p in 0..P {
                    out[p] = pair_sums(&acc[p], &row_mins[p]);
                }
                Some(out)
            }
        };
    }

    /// Two rows' 16 bytes of packed nibbles (at `lo` and `hi`) as 64 bytes: row `lo`'s 32
    /// quants in element order in the low half, row `hi`'s in the high half (what `join` of two
    /// `nibbles` gives, in two fewer instructions).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn pair_nibbles(lo: *const u8, hi: *const u8) -> __m512i {
        let q = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128(lo.cast())),
            _mm_loadu_si128(hi.cast()),
            1,
        );
        // 128-bit lanes [lo, hi, lo >> 4, hi >> 4] -> [lo, lo >> 4, hi, hi >> 4].
        let both = _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1);
        let ordered = _mm512_shuffle_i64x2(both, both, 0b11_01_10_00);
        _mm512_and_si512(ordered, _mm512_set1_epi8(0x0F))
    }

    /// Byte `j` of the low half = 0xFF where bit `j` of the 32-bit mask at `lo` is set, the
    /// high half likewise from `hi` (the fifth bits of two Q5 rows' blocks).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn pair_bits(lo: *const u8, hi: *const u8) -> __m512i {
        let lo = u32::from_le(lo.cast::<u32>().read_unaligned());
        let hi = u32::from_le(hi.cast::<u32>().read_unaligned());
        _mm512_movm_epi8(u64::from(lo) | (u64::from(hi) << 32))
    }

    // The unpacking of one block of two rows at `w0`, `w1` into their 64 quants (the scale `d`,
    // at offset 0 in every type, and the unsigned types' minimum at offset 2 are read by the
    // kernels).
    signed_pair!(pair_q5_0, Q5_0_BYTES, |w0, w1| {
        // A clear fifth bit means `nibble - 16`, which as i8 is `nibble | 0xF0`.
        let fifth = pair_bits(w0.add(2), w1.add(2));
        _mm512_or_si512(
            pair_nibbles(w0.add(6), w1.add(6)),
            _mm512_andnot_si512(fifth, _mm512_set1_epi8(0xF0_u8 as i8)),
        )
    });
    signed_pair!(pair_q8_0, Q8_0_BYTES, |w0, w1| {
        join(
            _mm256_loadu_si256(w0.add(2).cast()),
            _mm256_loadu_si256(w1.add(2).cast()),
        )
    });
    unsigned_pair!(pair_q4_1, Q4_1_BYTES, |w0, w1| {
        pair_nibbles(w0.add(4), w1.add(4))
    });
    unsigned_pair!(pair_q5_1, Q5_1_BYTES, |w0, w1| {
        let fifth = pair_bits(w0.add(4), w1.add(4));
        _mm512_or_si512(
            pair_nibbles(w0.add(8), w1.add(8)),
            _mm512_and_si512(fifth, _mm512_set1_epi8(0x10)),
        )
    });
}
