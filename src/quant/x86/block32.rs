//! x86-64 kernels of the 32-element block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0).
//!
//! Every kernel is a named `#[target_feature]` function, one per format and level
//! (`dequantize_q5_0_avx2`, `vec_dot_q5_0_avx2`, `vec_dot_q5_0_avx512`, …: the `kernels!` lines at
//! the end of this file), and a thin instance of one of the generic bodies here:
//! - [`dequantize`]: exact (`q · d`, or `q · d` then `+ m`, each rounded as ggml rounds them), so
//!   one AVX2 version serves both levels;
//! - [`tile_lanes`]: `R` weight rows × `N` activation columns in llama.cpp's eight-lane arithmetic
//!   (Q5_0, Q8_0, Q4_1, Q5_1);
//! - [`tile_whole_blocks`]: the same tile with every block's 32 products summed exactly as
//!   integers first, the arithmetic of llama.cpp's repacked Q4_0 kernels (Q4_0);
//! - [`tile_paired`]: two rows at once in 512-bit registers where the tile has two or four rows
//!   (AVX-512; [`pair_signed`], [`pair_unsigned`]).
//!
//! The bodies are generic over the format ([`X86Block`], [`PairBlock`]: how a block's quants are
//! loaded) and the level ([`Level`]), which differ only in the 8-bit dot primitive and in how the
//! fifth bits of Q5 blocks become byte masks:
//! - [`Avx2`]: `vpmaddubsw` (u8 × i8 → pairs of i16) then `vpmaddwd` with ones (→ i32);
//! - [`Avx512`]: one `vpdpbusd` (AVX-512 VNNI on 256-bit registers: u8 × i8 summed in fours into
//!   i32), and `vpmovm2b` to expand the fifth bits.
//!
//! Signed weights (Q4_0, Q5_0, Q8_0) use the sign trick both instructions need, as ggml does:
//! `x·y = |x| · (y with the sign of x)`, so the unsigned operand is `|x|` and the signed one
//! `sign(y, x)`. This is exact because activations lie in -127..=127 (see
//! [`activations::q8`](crate::quant::activations::q8)), so negating them never overflows, and
//! `|x| <= 128` keeps every `vpmaddubsw` pair sum within i16 (`2 · 128 · 127 < 32767`). Unsigned
//! weights (Q4_1, Q5_1) feed the instruction directly.
//!
//! The tile bodies carry the AVX2 features, which both levels have, so that their register
//! intrinsics are safe calls; the level's primitives carry the level's. An instance is the only
//! caller of its body's instantiation, so LLVM inlines the body into it and the level's
//! primitives inline there too (`#[inline(always)]` cannot be combined with `#[target_feature]`
//! on stable Rust; the disassembly shows no call left in the instances).
//!
//! Every kernel is `unsafe`: the caller guarantees the CPU has the level's features (it obtained
//! the level from `Simd::or_supported`) and that the slices hold whole blocks with matching
//! counts (checked by `dispatch`).

use std::arch::x86_64::*;
use std::mem::offset_of;

use super::{
    bits_to_bytes_avx2, f16_at, f16_splat, hsum_epi32, hsum_ps, nibbles, q5_0_values, q5_1_values,
};
use crate::quant::block::{ByteBlock, QK};
use crate::quant::formats::q4_0::BlockQ4_0;
use crate::quant::formats::q4_1::BlockQ4_1;
use crate::quant::formats::q5_0::BlockQ5_0;
use crate::quant::formats::q5_1::BlockQ5_1;
use crate::quant::formats::q8_0::BlockQ8_0;
use crate::quant::formats::q8_1::BlockQ8_1;
use crate::quant::types::GgmlType;

/// Where the minimum `m` of a Q4_1 or Q5_1 block lies (every format's scale `d` is at 0).
const MIN_AT: usize = offset_of!(BlockQ4_1, m);
const _: () = assert!(
    offset_of!(BlockQ4_0, d) == 0
        && offset_of!(BlockQ4_1, d) == 0
        && offset_of!(BlockQ5_0, d) == 0
        && offset_of!(BlockQ5_1, d) == 0
        && offset_of!(BlockQ8_0, d) == 0
        && offset_of!(BlockQ5_1, m) == MIN_AT
        && offset_of!(BlockQ8_1, d) == 0
);

// ---------------------------------------------------------------------------------------------
// Levels and formats.

/// What the two levels of the tile kernels do differently. The types implementing it name a
/// level and are never built.
pub(in crate::quant) trait Level {
    /// Σ of four adjacent u8·i8 products into each i32 lane.
    ///
    /// # Safety
    /// The CPU has the level's features.
    unsafe fn dot_u8_i8(a: __m256i, b: __m256i) -> __m256i;

    /// Byte `j` = 0xFF where bit `j` of `bits` is set, else 0.
    ///
    /// # Safety
    /// The CPU has the level's features.
    unsafe fn bits_to_bytes(bits: u32) -> __m256i;
}

/// AVX2 + FMA + F16C.
pub(in crate::quant) enum Avx2 {}

/// AVX-512 F/BW/VL with VNNI, on 256-bit registers (which avoid the frequency drop 512-bit code
/// causes on older Xeons and need no cross-block shuffles for 32-element blocks) except in the
/// paired kernels.
pub(in crate::quant) enum Avx512 {}

impl Level for Avx2 {
    /// `vpmaddubsw` (pairs into i16, no saturation for our operand ranges, see the module doc)
    /// then `vpmaddwd` with ones.
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
}

impl Level for Avx512 {
    /// One `vpdpbusd`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn dot_u8_i8(a: __m256i, b: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), a, b)
    }

    /// One `vpmovm2b`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn bits_to_bytes(bits: u32) -> __m256i {
        _mm256_movm_epi8(bits)
    }
}

/// A 32-element weight format as the x86 kernels read its blocks: the f16 scale `d` at offset 0,
/// the unsigned formats' f16 minimum `m` at [`MIN_AT`], and the quants.
pub(in crate::quant) trait X86Block: ByteBlock {
    /// Signed quants dotted with Q8_0 activations (Q4_0, Q5_0, Q8_0), or unsigned quants with a
    /// minimum dotted with Q8_1 activations, whose block sum carries the minimum's term (Q4_1,
    /// Q5_1).
    const SIGNED: bool;

    /// The 32 quants of the block at `p` as bytes in element order: signed (Q4_0 `q - 8`, Q5_0
    /// `q - 16`, Q8_0 `q`) or unsigned (Q4_1 0..=15, Q5_1 0..=31).
    ///
    /// # Safety
    /// The CPU has `S`'s features; `p` points at a whole block.
    unsafe fn quants<S: Level>(p: *const u8) -> __m256i;
}

impl X86Block for BlockQ4_0 {
    const SIGNED: bool = true;

    #[inline(always)]
    unsafe fn quants<S: Level>(p: *const u8) -> __m256i {
        // SAFETY: the nibbles lie inside the block at `p`, and the CPU has `S`'s features, AVX2
        // among them (the caller's contract).
        unsafe {
            let q = nibbles(p.add(offset_of!(BlockQ4_0, qs)));
            _mm256_sub_epi8(q, _mm256_set1_epi8(8))
        }
    }
}

impl X86Block for BlockQ4_1 {
    const SIGNED: bool = false;

    #[inline(always)]
    unsafe fn quants<S: Level>(p: *const u8) -> __m256i {
        // SAFETY: as for Q4_0.
        unsafe { nibbles(p.add(offset_of!(BlockQ4_1, qs))) }
    }
}

/// The fifth bits of a Q5 block (the little-endian u32 at `qh`) as byte masks.
///
/// # Safety
/// The CPU has `S`'s features; `qh` must be valid for reading four bytes.
#[inline(always)]
unsafe fn fifth_bits<S: Level>(qh: *const u8) -> __m256i {
    // SAFETY: the caller's contract.
    unsafe { S::bits_to_bytes(u32::from_le(qh.cast::<u32>().read_unaligned())) }
}

impl X86Block for BlockQ5_0 {
    const SIGNED: bool = true;

    #[inline(always)]
    unsafe fn quants<S: Level>(p: *const u8) -> __m256i {
        // SAFETY: the fifth bits and the nibbles lie inside the block at `p`, and the CPU has
        // `S`'s features (the caller's contract).
        unsafe {
            let fifth = fifth_bits::<S>(p.add(offset_of!(BlockQ5_0, qh)));
            q5_0_values(nibbles(p.add(offset_of!(BlockQ5_0, qs))), fifth)
        }
    }
}

impl X86Block for BlockQ5_1 {
    const SIGNED: bool = false;

    #[inline(always)]
    unsafe fn quants<S: Level>(p: *const u8) -> __m256i {
        // SAFETY: the fifth bits and the nibbles lie inside the block at `p`, and the CPU has
        // `S`'s features (the caller's contract).
        unsafe {
            let fifth = fifth_bits::<S>(p.add(offset_of!(BlockQ5_1, qh)));
            q5_1_values(nibbles(p.add(offset_of!(BlockQ5_1, qs))), fifth)
        }
    }
}

impl X86Block for BlockQ8_0 {
    const SIGNED: bool = true;

    #[inline(always)]
    unsafe fn quants<S: Level>(p: *const u8) -> __m256i {
        // SAFETY: the 32 quants lie inside the block at `p`, and the CPU has AVX (the caller's
        // contract).
        unsafe { _mm256_loadu_si256(p.add(offset_of!(BlockQ8_0, qs)).cast()) }
    }
}

/// The activation format a weight format dots with: its block size and where its quants start.
const fn activation_layout<B: X86Block>() -> (usize, usize) {
    if B::SIGNED {
        (size_of::<BlockQ8_0>(), offset_of!(BlockQ8_0, qs))
    } else {
        (size_of::<BlockQ8_1>(), offset_of!(BlockQ8_1, qs))
    }
}

// ---------------------------------------------------------------------------------------------
// Dequantization.

/// Stores the 32 i8 quants of `q` times `d` (plus `m` when given) at `dst`.
///
/// # Safety
/// `dst` must be valid for writing 32 f32.
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
        // SAFETY: values `8k..8k + 8` of the 32 at `dst` (the caller's contract).
        unsafe { _mm256_storeu_ps(dst.add(8 * k), v) };
    }
}

/// Dequantizes the first `dst.len() / 32` blocks of `B` in `src` into `dst`.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `src` holds at least `dst.len() / 32` blocks of `B`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dequantize<B: X86Block>(src: &[u8], dst: &mut [f32]) {
    for i in 0..dst.len() / QK {
        // SAFETY: block `i` is one of the blocks `src` holds (the caller's contract), and its 32
        // values fit in `dst` (`i < dst.len() / 32`).
        unsafe {
            let p = src.as_ptr().add(i * size_of::<B>());
            let min = if B::SIGNED {
                None
            } else {
                Some(f16_at(p.add(MIN_AT)))
            };
            store_block(
                B::quants::<Avx2>(p),
                f16_at(p),
                min,
                dst.as_mut_ptr().add(i * QK),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Block dot products, 256 bits per block.
//
// A tile dots `R` weight rows with `N` activation columns at once (matmul uses 2 × 4 and 4 × 4
// and 4 × 8): each weight block is unpacked once per row and reused for all columns, and each
// activation block is loaded and its scale converted once per column and reused for all rows.

/// `R` weight rows of `B` dotted with `N` activation columns (Q8_0 for a signed `B`, Q8_1 for an
/// unsigned one), `out[r][c] = ws[r] · acts[c]`, in llama.cpp's eight-lane arithmetic: each
/// block's integer dot (eight i32 lanes) is converted to f32 and fused-multiply-added with
/// `d_w · d_a` into eight f32 lanes per output, and an unsigned `B`'s minimum terms `m_w · s_a`
/// into one f32 running sum per output; at the end each output's lanes are summed and its
/// minimum sum added. One fused multiply-add chain per output, as llama.cpp's kernels, so that
/// the result is theirs to the bit.
///
/// # Safety
/// The CPU has `S`'s features; `R > 0`; every row holds the same whole number of blocks of `B`,
/// and every column as many activation blocks.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_lanes<B: X86Block, S: Level, const R: usize, const N: usize>(
    ws: [&[u8]; R],
    acts: [&[u8]; N],
) -> [[f32; N]; R] {
    let (act_bytes, act_quants) = const { activation_layout::<B>() };
    let mut lanes = [[_mm256_setzero_ps(); N]; R];
    let mut mins = [[0.0f32; N]; R];
    for i in 0..ws[0].len() / size_of::<B>() {
        // Each row's quants `x`, scale `dw` and minimum `mw`.
        let mut x = [_mm256_setzero_si256(); R];
        let (mut dw, mut mw) = ([0.0f32; R], [0.0f32; R]);
        for r in 0..R {
            // SAFETY: every row holds more than `i` blocks (the loop's bound, and the caller's
            // contract that the rows have one length), and the CPU has `S`'s features.
            unsafe {
                let wp = ws[r].as_ptr().add(i * size_of::<B>());
                x[r] = B::quants::<S>(wp);
                dw[r] = f16_at(wp);
                if !B::SIGNED {
                    mw[r] = f16_at(wp.add(MIN_AT));
                }
            }
        }
        // The unsigned operand of the dot: `|x|` for the sign trick, else the quants.
        let mut ux = x;
        let mut vdw = [_mm256_setzero_ps(); R];
        for r in 0..R {
            if B::SIGNED {
                ux[r] = _mm256_sign_epi8(x[r], x[r]);
            }
            vdw[r] = _mm256_set1_ps(dw[r]);
        }
        for c in 0..N {
            // SAFETY: every column holds as many activation blocks as the rows hold weight
            // blocks (the caller's contract), so block `i` is in bounds.
            let (y, da, sa) = unsafe {
                let ap = acts[c].as_ptr().add(i * act_bytes);
                let y = _mm256_loadu_si256(ap.add(act_quants).cast());
                let sa = if B::SIGNED {
                    0.0
                } else {
                    f16_at(ap.add(offset_of!(BlockQ8_1, s)))
                };
                (y, f16_splat(ap), sa)
            };
            for r in 0..R {
                let sy = if B::SIGNED {
                    _mm256_sign_epi8(y, x[r])
                } else {
                    y
                };
                // SAFETY: the CPU has `S`'s features (the caller's contract).
                let p = unsafe { S::dot_u8_i8(ux[r], sy) };
                let scale = _mm256_mul_ps(vdw[r], da);
                lanes[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), scale, lanes[r][c]);
                if !B::SIGNED {
                    mins[r][c] = mw[r].mul_add(sa, mins[r][c]);
                }
            }
        }
    }
    let mut out = [[0.0f32; N]; R];
    for r in 0..R {
        for c in 0..N {
            out[r][c] = hsum_ps(lanes[r][c]) + mins[r][c];
        }
    }
    out
}

/// `R` rows of a signed `B` × `N` Q8_0 columns in the arithmetic of llama.cpp's repacked Q4_0
/// kernels: each block's 32 products summed exactly as integers, then one fused multiply-add by
/// `d_w · d_a` per output and block. Four rows go through [`rows4_whole_blocks`].
///
/// # Safety
/// As [`tile_lanes`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_whole_blocks<B: X86Block, S: Level, const R: usize, const N: usize>(
    ws: [&[u8]; R],
    acts: [&[u8]; N],
) -> [[f32; N]; R] {
    const { assert!(B::SIGNED) };
    if let &[w0, w1, w2, w3] = ws.as_slice() {
        // SAFETY: the caller's contract, for these four rows.
        let four = unsafe { rows4_whole_blocks::<B, S, N>([w0, w1, w2, w3], &acts) };
        let mut out = [[0.0f32; N]; R];
        out.copy_from_slice(&four);
        return out;
    }
    let mut sums = [[0.0f32; N]; R];
    for i in 0..ws[0].len() / size_of::<B>() {
        let mut x = [_mm256_setzero_si256(); R];
        let mut dw = [0.0f32; R];
        for r in 0..R {
            // SAFETY: as in `tile_lanes`: every row holds more than `i` blocks.
            unsafe {
                let wp = ws[r].as_ptr().add(i * size_of::<B>());
                x[r] = B::quants::<S>(wp);
                dw[r] = f16_at(wp);
            }
        }
        let mut ax = [_mm256_setzero_si256(); R];
        for r in 0..R {
            ax[r] = _mm256_sign_epi8(x[r], x[r]);
        }
        for c in 0..N {
            // SAFETY: as in `tile_lanes`: every column holds more than `i` blocks.
            let (y, da) = unsafe {
                let ap = acts[c].as_ptr().add(i * size_of::<BlockQ8_0>());
                let y = _mm256_loadu_si256(ap.add(offset_of!(BlockQ8_0, qs)).cast());
                (y, f16_at(ap))
            };
            for r in 0..R {
                // SAFETY: the CPU has `S`'s features (the caller's contract).
                let p = unsafe { S::dot_u8_i8(ax[r], _mm256_sign_epi8(y, x[r])) };
                sums[r][c] = (hsum_epi32(p) as f32).mul_add(dw[r] * da, sums[r][c]);
            }
        }
    }
    sums
}

/// Four rows of [`tile_whole_blocks`] with their block sums reduced together: the rows'
/// eight-lane integer dots are folded by three horizontal adds into one vector of four exact
/// block sums, then one four-lane fused multiply-add per column. Same arithmetic per output.
///
/// # Safety
/// As [`tile_lanes`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows4_whole_blocks<B: X86Block, S: Level, const N: usize>(
    ws: [&[u8]; 4],
    acts: &[&[u8]; N],
) -> [[f32; N]; 4] {
    let mut acc = [_mm_setzero_ps(); N];
    for i in 0..ws[0].len() / size_of::<B>() {
        let mut x = [_mm256_setzero_si256(); 4];
        let mut ax = [_mm256_setzero_si256(); 4];
        let mut dw = [0.0f32; 4];
        for r in 0..4 {
            // SAFETY: as in `tile_lanes`: every row holds more than `i` blocks.
            unsafe {
                let wp = ws[r].as_ptr().add(i * size_of::<B>());
                x[r] = B::quants::<S>(wp);
                dw[r] = f16_at(wp);
            }
            ax[r] = _mm256_sign_epi8(x[r], x[r]);
        }
        // SAFETY: `dw` holds four f32.
        let dw = unsafe { _mm_loadu_ps(dw.as_ptr()) };
        for c in 0..N {
            // SAFETY: as in `tile_lanes`: every column holds more than `i` blocks.
            let (y, da) = unsafe {
                let ap = acts[c].as_ptr().add(i * size_of::<BlockQ8_0>());
                let y = _mm256_loadu_si256(ap.add(offset_of!(BlockQ8_0, qs)).cast());
                (y, f16_at(ap))
            };
            let mut p = [_mm256_setzero_si256(); 4];
            for r in 0..4 {
                // SAFETY: the CPU has `S`'s features (the caller's contract).
                p[r] = unsafe { S::dot_u8_i8(ax[r], _mm256_sign_epi8(y, x[r])) };
            }
            // [r0 r0 r1 r1 | r0 r0 r1 r1] … → [r0 r1 r2 r3 | r0 r1 r2 r3], then halves.
            let s = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
            let isum = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
            let scale = _mm_mul_ps(dw, _mm_set1_ps(da));
            acc[c] = _mm_fmadd_ps(_mm_cvtepi32_ps(isum), scale, acc[c]);
        }
    }
    let mut out = [[0.0f32; N]; 4];
    for c in 0..N {
        let mut lanes = [0.0f32; 4];
        // SAFETY: `lanes` holds four f32.
        unsafe { _mm_storeu_ps(lanes.as_mut_ptr(), acc[c]) };
        for r in 0..4 {
            out[r][c] = lanes[r];
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// AVX-512: two weight rows at once in 512-bit registers, row 0's block in the low half and row
// 1's in the high half, each activation block broadcast to both halves. Every lane computes
// exactly what the 256-bit tile computes for its row (same integer dot, same `d_w · d_a`, same
// fused multiply-add), so the results are bit-identical to it, with half the instructions.

/// A format with AVX-512 paired-row kernels (Q5_0, Q8_0, Q4_1, Q5_1).
pub(in crate::quant) trait PairBlock: X86Block {
    /// The 32 quants of the block at `w0` in the low half and those of the block at `w1` in the
    /// high half (what [`join`] of the two blocks' [`X86Block::quants`] gives).
    ///
    /// # Safety
    /// The CPU has the AVX-512 features; `w0` and `w1` point at whole blocks.
    unsafe fn pair_quants(w0: *const u8, w1: *const u8) -> __m512i;
}

impl PairBlock for BlockQ5_0 {
    #[inline(always)]
    unsafe fn pair_quants(w0: *const u8, w1: *const u8) -> __m512i {
        let (qh, qs) = (offset_of!(BlockQ5_0, qh), offset_of!(BlockQ5_0, qs));
        // SAFETY: the fifth bits and nibbles lie inside the blocks at `w0` and `w1`, and the CPU
        // has the AVX-512 features (the caller's contract).
        unsafe {
            // A clear fifth bit means `nibble - 16`, which as i8 is `nibble | 0xF0`.
            let fifth = pair_bits(w0.add(qh), w1.add(qh));
            _mm512_or_si512(
                pair_nibbles(w0.add(qs), w1.add(qs)),
                _mm512_andnot_si512(fifth, _mm512_set1_epi8(0xF0_u8 as i8)),
            )
        }
    }
}

impl PairBlock for BlockQ8_0 {
    #[inline(always)]
    unsafe fn pair_quants(w0: *const u8, w1: *const u8) -> __m512i {
        let qs = offset_of!(BlockQ8_0, qs);
        // SAFETY: as for Q5_0: the quants lie inside the blocks.
        unsafe {
            join(
                _mm256_loadu_si256(w0.add(qs).cast()),
                _mm256_loadu_si256(w1.add(qs).cast()),
            )
        }
    }
}

impl PairBlock for BlockQ4_1 {
    #[inline(always)]
    unsafe fn pair_quants(w0: *const u8, w1: *const u8) -> __m512i {
        let qs = offset_of!(BlockQ4_1, qs);
        // SAFETY: as for Q5_0: the nibbles lie inside the blocks.
        unsafe { pair_nibbles(w0.add(qs), w1.add(qs)) }
    }
}

impl PairBlock for BlockQ5_1 {
    #[inline(always)]
    unsafe fn pair_quants(w0: *const u8, w1: *const u8) -> __m512i {
        let (qh, qs) = (offset_of!(BlockQ5_1, qh), offset_of!(BlockQ5_1, qs));
        // SAFETY: as for Q5_0.
        unsafe {
            let fifth = pair_bits(w0.add(qh), w1.add(qh));
            _mm512_or_si512(
                pair_nibbles(w0.add(qs), w1.add(qs)),
                _mm512_and_si512(fifth, _mm512_set1_epi8(0x10)),
            )
        }
    }
}

/// `lo` in the low 256 bits and `hi` in the high 256 bits.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn join(lo: __m256i, hi: __m256i) -> __m512i {
    _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1)
}

/// Two rows' 16 bytes of packed nibbles (at `lo` and `hi`) as 64 bytes: row `lo`'s 32 quants in
/// element order in the low half, row `hi`'s in the high half (what `join` of two `nibbles`
/// gives, in two fewer instructions).
///
/// # Safety
/// `lo` and `hi` must be valid for reading 16 bytes each.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn pair_nibbles(lo: *const u8, hi: *const u8) -> __m512i {
    // SAFETY: 16 readable bytes at each (the caller's contract).
    let (lo, hi) = unsafe { (_mm_loadu_si128(lo.cast()), _mm_loadu_si128(hi.cast())) };
    let q = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
    // 128-bit lanes [lo, hi, lo >> 4, hi >> 4] -> [lo, lo >> 4, hi, hi >> 4].
    let both = _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1);
    let ordered = _mm512_shuffle_i64x2(both, both, 0b11_01_10_00);
    _mm512_and_si512(ordered, _mm512_set1_epi8(0x0F))
}

/// Byte `j` of the low half = 0xFF where bit `j` of the 32-bit mask at `lo` is set, the high
/// half likewise from `hi` (the fifth bits of two Q5 rows' blocks).
///
/// # Safety
/// `lo` and `hi` must be valid for reading four bytes each.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn pair_bits(lo: *const u8, hi: *const u8) -> __m512i {
    // SAFETY: four readable bytes at each (the caller's contract).
    let (lo, hi) = unsafe {
        (
            lo.cast::<u32>().read_unaligned(),
            hi.cast::<u32>().read_unaligned(),
        )
    };
    let (lo, hi) = (u32::from_le(lo), u32::from_le(hi));
    _mm512_movm_epi8(u64::from(lo) | (u64::from(hi) << 32))
}

/// The little-endian f16 at `p`, as f32 in all sixteen lanes.
///
/// # Safety
/// `p` must be valid for reading two bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn f16_splat512(p: *const u8) -> __m512 {
    // SAFETY: two readable bytes at `p` (the caller's contract).
    let bits = unsafe { p.cast::<u16>().read_unaligned() };
    _mm512_cvtph_ps(_mm256_set1_epi16(bits as i16))
}

/// The little-endian f16 at `lo` in the low eight lanes and the one at `hi` in the high eight, as
/// f32: two word broadcasts and one conversion (converting each to a scalar first costs three
/// times the instructions, which shows in token generation).
///
/// # Safety
/// `lo` and `hi` must be valid for reading two bytes each.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn pair_scales(lo: *const u8, hi: *const u8) -> __m512 {
    // SAFETY: two readable bytes at each (the caller's contract).
    let (lo, hi) = unsafe {
        (
            lo.cast::<i16>().read_unaligned(),
            hi.cast::<i16>().read_unaligned(),
        )
    };
    let (lo, hi) = (_mm_set1_epi16(lo), _mm_set1_epi16(hi));
    _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1))
}

/// The scale of block `i` of activation column `c` in all sixteen lanes: with `SCALED`, from the
/// table the caller converted once for the whole matrix (a broadcast load), else converted from
/// the block's f16 at `block` (a broadcast and a conversion per row tile: a tenth of a prompt
/// tile's instructions).
///
/// # Safety
/// The CPU has the AVX-512 features; with `SCALED`, `scales[c]` must hold at least `i + 1`
/// scales, else `block` must point at an activation block.
#[inline(always)]
unsafe fn activation_scale<const N: usize, const SCALED: bool>(
    scales: &[&[f32]; N],
    c: usize,
    i: usize,
    block: *const u8,
) -> __m512 {
    if SCALED {
        // SAFETY: scale `i` is in the table (the caller's contract).
        unsafe { _mm512_set1_ps(*scales[c].get_unchecked(i)) }
    } else {
        // SAFETY: the block's scale is its first two bytes (the caller's contract).
        unsafe { f16_splat512(block) }
    }
}

/// The two rows' sums from the paired accumulators (as `tile_lanes` sums each row's lanes).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn pair_sums<const N: usize>(acc: &[__m512; N], mins: &[[f32; N]; 2]) -> [[f32; N]; 2] {
    let mut out = [[0.0f32; N]; 2];
    for c in 0..N {
        let lo = _mm512_castps512_ps256(acc[c]);
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[c]), 1));
        out[0][c] = hsum_ps(lo) + mins[0][c];
        out[1][c] = hsum_ps(hi) + mins[1][c];
    }
    out
}

/// `P` pairs of rows of a signed `B` × `N` Q8_0 columns, each pair in 512-bit registers (the
/// activation scales from `scales` with `SCALED`, see [`activation_scale`]).
///
/// The activations enter `vpdpbusd` as unsigned bytes `y + 128` (one `xor` per column) and the
/// signed weights as they are; each lane's four products then carry `128 · Σ x` too, which the
/// accumulator starts from minus (computed once per row pair and block). Both are exact integers,
/// so every lane's sum is exactly `Σ x·y`, as with the sign trick, in one instruction less per
/// column and row pair.
///
/// # Safety
/// The CPU has the AVX-512 features; every row holds the same whole number of blocks of `B`,
/// every column as many Q8_0 blocks and, with `SCALED`, every scale table as many scales.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn pair_signed<B: PairBlock, const P: usize, const N: usize, const SCALED: bool>(
    ws: [[&[u8]; 2]; P],
    acts: &[&[u8]; N],
    scales: &[&[f32]; N],
) -> [[[f32; N]; 2]; P] {
    let offset = _mm512_set1_epi8(-128);
    let mut acc = [[_mm512_setzero_ps(); N]; P];
    for i in 0..ws[0][0].len() / size_of::<B>() {
        let mut x = [_mm512_setzero_si512(); P];
        let mut start = [_mm512_setzero_si512(); P];
        let mut dw = [_mm512_setzero_ps(); P];
        for p in 0..P {
            // SAFETY: every row holds more than `i` blocks (the loop's bound, and the caller's
            // contract that the rows have one length).
            unsafe {
                let p0 = ws[p][0].as_ptr().add(i * size_of::<B>());
                let p1 = ws[p][1].as_ptr().add(i * size_of::<B>());
                x[p] = B::pair_quants(p0, p1);
                dw[p] = pair_scales(p0, p1);
            }
            start[p] = _mm512_sub_epi32(
                _mm512_setzero_si512(),
                _mm512_dpbusd_epi32(_mm512_setzero_si512(), offset, x[p]),
            );
        }
        for c in 0..N {
            // SAFETY: every column holds as many blocks as the rows (the caller's contract), and
            // with `SCALED` its scale table as many scales.
            let (y, da) = unsafe {
                let ap = acts[c].as_ptr().add(i * size_of::<BlockQ8_0>());
                let y = _mm256_loadu_si256(ap.add(offset_of!(BlockQ8_0, qs)).cast());
                (y, activation_scale::<N, SCALED>(scales, c, i, ap))
            };
            let y_unsigned = _mm512_xor_si512(_mm512_broadcast_i64x4(y), offset);
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
    out
}

/// `P` pairs of rows of an unsigned `B` × `N` Q8_1 columns, as [`pair_signed`]: the quants feed
/// `vpdpbusd` directly, and the minimum terms of up to eight rows (lane `2p + k`: row `k` of pair
/// `p`) share one register per column, each lane its row's own fused multiply-add chain.
///
/// # Safety
/// As [`pair_signed`], with Q8_1 columns.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn pair_unsigned<B: PairBlock, const P: usize, const N: usize, const SCALED: bool>(
    ws: [[&[u8]; 2]; P],
    acts: &[&[u8]; N],
    scales: &[&[f32]; N],
) -> [[[f32; N]; 2]; P] {
    const { assert!(P <= 4) };
    let mut acc = [[_mm512_setzero_ps(); N]; P];
    let mut mins = [_mm256_setzero_ps(); N];
    for i in 0..ws[0][0].len() / size_of::<B>() {
        let mut x = [_mm512_setzero_si512(); P];
        let mut dw = [_mm512_setzero_ps(); P];
        // Each row's minimum broadcast, then blended into its lane: whole-register writes only
        // (inserting words would tie the register to whatever it last held, often the
        // accumulator of the previous block, serializing blocks).
        let mut m_bits = _mm_setzero_si128();
        for p in 0..P {
            // SAFETY: as in `pair_signed`: every row holds more than `i` blocks.
            let rows = unsafe {
                let p0 = ws[p][0].as_ptr().add(i * size_of::<B>());
                let p1 = ws[p][1].as_ptr().add(i * size_of::<B>());
                x[p] = B::pair_quants(p0, p1);
                dw[p] = pair_scales(p0, p1);
                [p0, p1]
            };
            for (k, row) in rows.into_iter().enumerate() {
                // SAFETY: the minimum lies inside the row's block `i` (above).
                let m = unsafe { row.add(MIN_AT).cast::<i16>().read_unaligned() };
                let lane = _mm_cmpeq_epi16(
                    _mm_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7),
                    _mm_set1_epi16((2 * p + k) as i16),
                );
                m_bits = _mm_blendv_epi8(m_bits, _mm_set1_epi16(m), lane);
            }
        }
        let mw = _mm256_cvtph_ps(m_bits);
        for c in 0..N {
            // SAFETY: as in `pair_signed`: every column holds more than `i` blocks (and scales).
            let (y, da, sa) = unsafe {
                let ap = acts[c].as_ptr().add(i * size_of::<BlockQ8_1>());
                let y = _mm256_loadu_si256(ap.add(offset_of!(BlockQ8_1, qs)).cast());
                let da = activation_scale::<N, SCALED>(scales, c, i, ap);
                (y, da, f16_splat(ap.add(offset_of!(BlockQ8_1, s))))
            };
            let y = _mm512_broadcast_i64x4(y);
            for p in 0..P {
                let prod = _mm512_dpbusd_epi32(_mm512_setzero_si512(), x[p], y);
                let scale = _mm512_mul_ps(dw[p], da);
                acc[p][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(prod), scale, acc[p][c]);
            }
            mins[c] = _mm256_fmadd_ps(mw, sa, mins[c]);
        }
    }
    let mut row_mins = [[[0.0f32; N]; 2]; P];
    for c in 0..N {
        let mut lanes = [0.0f32; 8];
        // SAFETY: `lanes` holds eight f32.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), mins[c]) };
        for p in 0..P {
            row_mins[p][0][c] = lanes[2 * p];
            row_mins[p][1][c] = lanes[2 * p + 1];
        }
    }
    let mut out = [[[0.0f32; N]; 2]; P];
    for p in 0..P {
        out[p] = pair_sums(&acc[p], &row_mins[p]);
    }
    out
}

/// [`pair_signed`] or [`pair_unsigned`], whichever `B` takes.
///
/// # Safety
/// As [`pair_signed`], with the columns in `B`'s activation format.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn pairs<B: PairBlock, const P: usize, const N: usize, const SCALED: bool>(
    ws: [[&[u8]; 2]; P],
    acts: &[&[u8]; N],
    scales: &[&[f32]; N],
) -> [[[f32; N]; 2]; P] {
    // SAFETY: the caller's contract is theirs.
    unsafe {
        if B::SIGNED {
            pair_signed::<B, P, N, SCALED>(ws, acts, scales)
        } else {
            pair_unsigned::<B, P, N, SCALED>(ws, acts, scales)
        }
    }
}

/// The AVX-512 tile of a format with paired kernels: two or four rows through [`pairs`], any
/// other count through [`tile_lanes`].
///
/// # Safety
/// As [`tile_lanes`], at the AVX-512 level.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_paired<B: PairBlock, const R: usize, const N: usize>(
    ws: [&[u8]; R],
    acts: [&[u8]; N],
) -> [[f32; N]; R] {
    let mut out = [[0.0f32; N]; R];
    if let &[w0, w1] = ws.as_slice() {
        // SAFETY: the caller's contract, for the two rows as a pair; without `SCALED` no scale
        // table is read.
        let [pair] = unsafe { pairs::<B, 1, N, false>([[w0, w1]], &acts, &[&[]; N]) };
        out.copy_from_slice(&pair);
    } else if let &[w0, w1, w2, w3] = ws.as_slice() {
        // SAFETY: as above, for two pairs.
        let [a, b] = unsafe { pairs::<B, 2, N, false>([[w0, w1], [w2, w3]], &acts, &[&[]; N]) };
        out[..2].copy_from_slice(&a);
        out[2..].copy_from_slice(&b);
    } else {
        // SAFETY: the caller's contract, at the AVX-512 level.
        out = unsafe { tile_lanes::<B, Avx512, R, N>(ws, acts) };
    }
    out
}

/// Four rows × eight columns of a 32-element weight type with the activation scales converted in
/// advance (`scales[c][i]`: block `i` of column `c`); `None` for a type without a paired kernel.
///
/// # Safety
/// The CPU has the AVX-512 features; every row must be whole blocks of `ty`, every column as many
/// blocks of its activation type, and every scale table that many scales.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(in crate::quant) unsafe fn vec_dot_wide_avx512(
    ty: GgmlType,
    ws: [&[u8]; 4],
    acts: [&[u8]; 8],
    scales: [&[f32]; 8],
) -> Option<[[f32; 8]; 4]> {
    let rows = [[ws[0], ws[1]], [ws[2], ws[3]]];
    // SAFETY: the caller's contract, for the type matched.
    let [a, b] = unsafe {
        match ty {
            GgmlType::Q5_0 => pairs::<BlockQ5_0, 2, 8, true>(rows, &acts, &scales),
            GgmlType::Q8_0 => pairs::<BlockQ8_0, 2, 8, true>(rows, &acts, &scales),
            GgmlType::Q4_1 => pairs::<BlockQ4_1, 2, 8, true>(rows, &acts, &scales),
            GgmlType::Q5_1 => pairs::<BlockQ5_1, 2, 8, true>(rows, &acts, &scales),
            _ => return None,
        }
    };
    Some([a[0], a[1], b[0], b[1]])
}

// ---------------------------------------------------------------------------------------------
// The kernels, by format and level.

/// The x86 kernels of a 32-element format, as `dispatch` reaches them; each forwards to the
/// format's named kernel (`dequantize_q5_0_avx2`, `vec_dot_q5_0_avx2`, `vec_dot_q5_0_avx512`).
pub trait Kernels {
    /// The dequantizer (exact, so one AVX2 version serves both levels).
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C; `src` is exactly `dst.len()` elements in whole blocks.
    unsafe fn dequantize_avx2(src: &[u8], dst: &mut [f32]);

    /// The AVX2 tile of `R` rows × `N` columns, `out[r][c] = ws[r] · acts[c]`.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C; `R > 0`; the operands passed `block::check_tile`.
    unsafe fn vec_dot_avx2<const R: usize, const N: usize>(
        ws: [&[u8]; R],
        acts: [&[u8]; N],
    ) -> [[f32; N]; R];

    /// The AVX-512 VNNI tile of `R` rows × `N` columns.
    ///
    /// # Safety
    /// The CPU has the `Simd::Avx512` features; `R > 0`; the operands passed `block::check_tile`.
    unsafe fn vec_dot_avx512<const R: usize, const N: usize>(
        ws: [&[u8]; R],
        acts: [&[u8]; N],
    ) -> [[f32; N]; R];
}

/// Stamps one format's kernels: three named `#[target_feature]` functions, each only calling the
/// generic body given for its level, and the [`Kernels`] impl through which `dispatch` reaches
/// them.
macro_rules! kernels {
    ($block:ident {
        fn $dequantize:ident;
        fn $avx2:ident = $avx2_body:ident::<$($avx2_arg:ty),+>;
        fn $avx512:ident = $avx512_body:ident::<$($avx512_arg:ty),+>;
    }) => {
        #[doc = concat!("[`dequantize`] of ", stringify!($block), ".")]
        ///
        /// # Safety
        /// As [`Kernels::dequantize_avx2`].
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $dequantize(src: &[u8], dst: &mut [f32]) {
            // SAFETY: the caller's contract is the body's.
            unsafe { dequantize::<$block>(src, dst) }
        }

        #[doc = concat!("[`", stringify!($avx2_body), "`] of ", stringify!($block), ", AVX2.")]
        ///
        /// # Safety
        /// As [`Kernels::vec_dot_avx2`].
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $avx2<const R: usize, const N: usize>(
            ws: [&[u8]; R],
            acts: [&[u8]; N],
        ) -> [[f32; N]; R] {
            // SAFETY: the caller's contract is the body's.
            unsafe { $avx2_body::<$($avx2_arg,)+ R, N>(ws, acts) }
        }

        #[doc = concat!("[`", stringify!($avx512_body), "`] of ", stringify!($block), ", AVX-512.")]
        ///
        /// # Safety
        /// As [`Kernels::vec_dot_avx512`].
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        unsafe fn $avx512<const R: usize, const N: usize>(
            ws: [&[u8]; R],
            acts: [&[u8]; N],
        ) -> [[f32; N]; R] {
            // SAFETY: the caller's contract is the body's.
            unsafe { $avx512_body::<$($avx512_arg,)+ R, N>(ws, acts) }
        }

        impl Kernels for $block {
            #[inline(always)]
            unsafe fn dequantize_avx2(src: &[u8], dst: &mut [f32]) {
                // SAFETY: forwarded from the caller.
                unsafe { $dequantize(src, dst) }
            }

            #[inline(always)]
            unsafe fn vec_dot_avx2<const R: usize, const N: usize>(
                ws: [&[u8]; R],
                acts: [&[u8]; N],
            ) -> [[f32; N]; R] {
                // SAFETY: forwarded from the caller.
                unsafe { $avx2(ws, acts) }
            }

            #[inline(always)]
            unsafe fn vec_dot_avx512<const R: usize, const N: usize>(
                ws: [&[u8]; R],
                acts: [&[u8]; N],
            ) -> [[f32; N]; R] {
                // SAFETY: forwarded from the caller.
                unsafe { $avx512(ws, acts) }
            }
        }
    };
}

kernels!(BlockQ4_0 {
    fn dequantize_q4_0_avx2;
    fn vec_dot_q4_0_avx2 = tile_whole_blocks::<BlockQ4_0, Avx2>;
    fn vec_dot_q4_0_avx512 = tile_whole_blocks::<BlockQ4_0, Avx512>;
});
kernels!(BlockQ4_1 {
    fn dequantize_q4_1_avx2;
    fn vec_dot_q4_1_avx2 = tile_lanes::<BlockQ4_1, Avx2>;
    fn vec_dot_q4_1_avx512 = tile_paired::<BlockQ4_1>;
});
kernels!(BlockQ5_0 {
    fn dequantize_q5_0_avx2;
    fn vec_dot_q5_0_avx2 = tile_lanes::<BlockQ5_0, Avx2>;
    fn vec_dot_q5_0_avx512 = tile_paired::<BlockQ5_0>;
});
kernels!(BlockQ5_1 {
    fn dequantize_q5_1_avx2;
    fn vec_dot_q5_1_avx2 = tile_lanes::<BlockQ5_1, Avx2>;
    fn vec_dot_q5_1_avx512 = tile_paired::<BlockQ5_1>;
});
kernels!(BlockQ8_0 {
    fn dequantize_q8_0_avx2;
    fn vec_dot_q8_0_avx2 = tile_lanes::<BlockQ8_0, Avx2>;
    fn vec_dot_q8_0_avx512 = tile_paired::<BlockQ8_0>;
});
