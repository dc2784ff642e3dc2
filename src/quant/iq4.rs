//! IQ4_NL and IQ4_XS: 4-bit indices into a fixed non-linear table of 16 signed levels
//! (ggml `kvalues_iq4nl`), scaled per block.
//!
//! | type | bytes | layout |
//! |------|-------|--------|
//! | IQ4_NL | 18 | d f16, qs\[16\]: byte j holds element j (low nibble) and j+16 (high) |
//! | IQ4_XS | 136 | d f16, scales_h u16, scales_l\[4\], qs\[128\]: 8 sub-blocks of 32 laid out as IQ4_NL, each with a 6-bit scale stored +32 (low 4 bits in `scales_l`, top 2 in `scales_h`) |
//!
//! IQ4_NL dots with Q8_0 activations (f16 d + 32 i8, 34 bytes), IQ4_XS with Q8_K.

use super::k_quants::{as_blocks, f16_le, runnable, BlockQ8K, RawBlock};
use super::{GgmlType, Simd, QK_K};

/// ggml `kvalues_iq4nl`: the 16 levels an index selects.
pub const IQ4NL_LEVELS: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// ggml `block_iq4_nl`, 18 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockIq4Nl {
    /// Block scale (f16).
    pub d: [u8; 2],
    /// Indices: byte j holds element j (low nibble) and j + 16 (high nibble).
    pub qs: [u8; 16],
}

const _: () = assert!(std::mem::size_of::<BlockIq4Nl>() == 18);
const _: () = assert!(std::mem::align_of::<BlockIq4Nl>() == 1);
// SAFETY: repr(C) of byte arrays only: alignment 1, no padding, every bit pattern valid.
unsafe impl RawBlock for BlockIq4Nl {}

/// ggml `block_iq4_xs`, 136 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockIq4Xs {
    /// Super-block scale (f16).
    pub d: [u8; 2],
    /// Top 2 bits of the 8 sub-block scales, bits `2ib..2ib+2` (little-endian u16).
    pub scales_h: [u8; 2],
    /// Low 4 bits of the sub-block scales: nibble `ib % 2` of byte `ib / 2`.
    pub scales_l: [u8; 4],
    /// Indices: sub-block ib in bytes `16ib .. 16ib+16`, laid out as IQ4_NL.
    pub qs: [u8; QK_K / 2],
}

const _: () = assert!(std::mem::size_of::<BlockIq4Xs>() == 136);
const _: () = assert!(std::mem::align_of::<BlockIq4Xs>() == 1);
// SAFETY: repr(C) of byte arrays only: alignment 1, no padding, every bit pattern valid.
unsafe impl RawBlock for BlockIq4Xs {}

impl BlockIq4Xs {
    /// Signed scale of sub-block `ib` (0..8), -32..31.
    #[inline(always)]
    fn scale(&self, ib: usize) -> i32 {
        let h = u16::from_le_bytes(self.scales_h);
        let lo = (self.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF;
        let hi = ((h >> (2 * ib)) & 3) as u8;
        (lo | (hi << 4)) as i32 - 32
    }
}

/// ggml `block_q8_0` as IQ4_NL's activation format: f16 scale + 32 i8 quants, 34 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ8_0View {
    /// Block scale (f16).
    pub d: [u8; 2],
    /// Quants.
    pub qs: [i8; 32],
}

const _: () = assert!(std::mem::size_of::<BlockQ8_0View>() == 34);
const _: () = assert!(std::mem::align_of::<BlockQ8_0View>() == 1);
// SAFETY: repr(C) of byte arrays only: alignment 1, no padding, every bit pattern valid.
unsafe impl RawBlock for BlockQ8_0View {}

/// Dequantizes whole blocks of `ty` in `src` into `dst`.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32], _simd: Simd) {
    // Scalar at every level: dequantization is off the hot path for these types.
    match ty {
        GgmlType::IQ4_NL => dequantize_nl_scalar(as_blocks(src), dst),
        GgmlType::IQ4_XS => dequantize_xs_scalar(as_blocks(src), dst),
        // `quant::dequantize_row` routes only the types above here.
        _ => {}
    }
}

/// Dot product of whole weight blocks of `ty` with activations in its vec_dot_type (Q8_0 for
/// IQ4_NL, Q8_K for IQ4_XS), the same number of elements.
pub fn vec_dot(ty: GgmlType, w: &[u8], act: &[u8], simd: Simd) -> f32 {
    let simd = runnable(simd);
    match (ty, simd) {
        #[cfg(target_arch = "x86_64")]
        (GgmlType::IQ4_NL, Simd::Avx2 | Simd::Avx512) => {
            // SAFETY: `simd` passed `Simd::is_supported`: both levels include AVX2/FMA/F16C.
            unsafe { x86::vec_dot_nl_avx2(as_blocks(w), as_blocks(act)) }
        }
        #[cfg(target_arch = "x86_64")]
        (GgmlType::IQ4_XS, Simd::Avx2 | Simd::Avx512) => {
            // SAFETY: as above.
            unsafe { x86::vec_dot_xs_avx2::<false>(as_blocks(w), as_blocks(act)) }
        }
        (GgmlType::IQ4_NL, _) => vec_dot_nl_scalar(as_blocks(w), as_blocks(act)),
        (GgmlType::IQ4_XS, _) => vec_dot_xs_scalar(as_blocks(w), as_blocks(act)),
        // `quant::vec_dot` routes only the types above here.
        _ => 0.0,
    }
}

/// ggml `dequantize_row_iq4_nl`: `d * level`.
pub fn dequantize_nl_scalar(src: &[BlockIq4Nl], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(32)) {
        let d = f16_le(b.d);
        for j in 0..16 {
            y[j] = d * IQ4NL_LEVELS[(b.qs[j] & 0xF) as usize] as f32;
            y[j + 16] = d * IQ4NL_LEVELS[(b.qs[j] >> 4) as usize] as f32;
        }
    }
}

/// ggml `dequantize_row_iq4_xs`: `dl = d * (ls - 32)`, then `dl * level`.
pub fn dequantize_xs_scalar(src: &[BlockIq4Xs], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = f16_le(b.d);
        for ib in 0..8 {
            let dl = d * b.scale(ib) as f32;
            let q = &b.qs[16 * ib..16 * ib + 16];
            let y = &mut y[32 * ib..32 * ib + 32];
            for j in 0..16 {
                y[j] = dl * IQ4NL_LEVELS[(q[j] & 0xF) as usize] as f32;
                y[j + 16] = dl * IQ4NL_LEVELS[(q[j] >> 4) as usize] as f32;
            }
        }
    }
}

/// Integer dot of one 32-element group of indices with 32 activations.
#[inline(always)]
fn dot_levels(q: &[u8], a: &[i8]) -> i32 {
    (0..16)
        .map(|j| {
            IQ4NL_LEVELS[(q[j] & 0xF) as usize] as i32 * a[j] as i32
                + IQ4NL_LEVELS[(q[j] >> 4) as usize] as i32 * a[j + 16] as i32
        })
        .sum()
}

/// Plain-Rust reference for IQ4_NL's [`vec_dot`], in the arithmetic of llama.cpp's repacked
/// IQ4_NL kernels (`ggml_gemv/gemm_iq4_nl_8x8_q8_0`, Q4_0's with a table of levels, which it
/// uses on x86 for every matrix with a multiple of 8 rows): each block's 32 products summed
/// exactly as integers, then one fused multiply-add per block, `sum = isum · (d_w · d_a) + sum`.
pub fn vec_dot_nl_scalar(w: &[BlockIq4Nl], act: &[BlockQ8_0View]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(act) {
        let isum = dot_levels(&x.qs, &y.qs);
        sum = (isum as f32).mul_add(f16_le(x.d) * f16_le(y.d), sum);
    }
    sum
}

/// The integer lanes of llama.cpp's IQ4_XS kernels for one super-block: lane `k` holds
/// elements `4k..4k + 4` of every 32-element sub-block, times that sub-block's scale.
fn xs_lanes(x: &BlockIq4Xs, y: &BlockQ8K) -> [i32; 8] {
    let mut lanes = [0i32; 8];
    for ib in 0..8 {
        let q = &x.qs[16 * ib..16 * ib + 16];
        let a = &y.qs[32 * ib..32 * ib + 32];
        // Element e of the sub-block: low nibble of q[e] (e < 16), high nibble of q[e - 16].
        let level = |e: usize| {
            let nibble = if e < 16 { q[e] & 0xF } else { q[e - 16] >> 4 };
            IQ4NL_LEVELS[nibble as usize] as i32
        };
        for (k, lane) in lanes.iter_mut().enumerate() {
            let dot: i32 = (4 * k..4 * k + 4).map(|e| level(e) * a[e] as i32).sum();
            *lane += x.scale(ib) * dot;
        }
    }
    lanes
}

/// Plain-Rust reference for IQ4_XS's [`vec_dot`], in the arithmetic of llama.cpp's
/// `ggml_vec_dot_iq4_xs_q8_K` on x86: the eight integer lanes of [`xs_lanes`] per super-block,
/// each fused into its own float accumulator with `d_w·d_a`, summed in `hsum_float_8`'s order.
pub fn vec_dot_xs_scalar(w: &[BlockIq4Xs], act: &[BlockQ8K]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (x, y) in w.iter().zip(act) {
        let d = f16_le(x.d) * y.d();
        for (a, lane) in acc.iter_mut().zip(xs_lanes(x, y)) {
            *a = d.mul_add(lane as f32, *a);
        }
    }
    super::hsum8(acc)
}

/// IQ4_XS in the arithmetic of llama.cpp's tiled K-quant kernels (8 or more activation
/// columns): see [`vec_dot_xs_tiled_scalar`].
pub fn vec_dot_xs_tiled(w: &[u8], act: &[u8], simd: Simd) -> f32 {
    let (w, act) = (as_blocks(w), as_blocks(act));
    match runnable(simd) {
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 | Simd::Avx512 => {
            // SAFETY: `runnable` keeps only supported levels; both include AVX2/FMA/F16C.
            unsafe { x86::vec_dot_xs_avx2::<true>(w, act) }
        }
        _ => vec_dot_xs_tiled_scalar(w, act),
    }
}

/// Plain-Rust reference for [`vec_dot_xs_tiled`]: per super-block the exact integer
/// `Σ_ib ls_ib Σ level·a`, then `acc = (isum · d_w) · d_a + acc` with the last multiply and the
/// add fused.
pub fn vec_dot_xs_tiled_scalar(w: &[BlockIq4Xs], act: &[BlockQ8K]) -> f32 {
    let mut acc = 0.0f32;
    for (x, y) in w.iter().zip(act) {
        let isum: i32 = xs_lanes(x, y).iter().sum();
        acc = (isum as f32 * f16_le(x.d)).mul_add(y.d(), acc);
    }
    acc
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::k_quants::x86::{f16c, f16c_pair, hsum_epi32, LaneDot};
    use super::*;
    use std::arch::x86_64::*;

    /// The 32 signed levels of one 32-element group (16 index bytes at `q`), in element order.
    ///
    /// # Safety
    /// `q` must be valid for reading 16 bytes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn levels32(q: *const u8, table: __m256i) -> __m256i {
        let mask = _mm_set1_epi8(0x0F);
        // SAFETY: the caller guarantees 16 readable bytes at `q`.
        let q = unsafe { _mm_loadu_si128(q.cast()) };
        let lo = _mm_and_si128(q, mask);
        let hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
        _mm256_shuffle_epi8(table, _mm256_set_m128i(hi, lo))
    }

    /// i8 × i8 products summed in pairs to i16 with `maddubs`, by moving the sign of the level
    /// onto the activation (`|w| · sign(a, w)`). Levels are within ±127 and activations from
    /// ggml's quantizers within ±127, so pair sums stay within 2·127·127 < 2^15.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn signed_pairs(w: __m256i, a: __m256i) -> __m256i {
        _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn vec_dot_nl_avx2(w: &[BlockIq4Nl], act: &[BlockQ8_0View]) -> f32 {
        // SAFETY: IQ4NL_LEVELS is 16 bytes.
        let table =
            unsafe { _mm256_broadcastsi128_si256(_mm_loadu_si128(IQ4NL_LEVELS.as_ptr().cast())) };
        let ones = _mm256_set1_epi16(1);
        let mut sum = 0.0f32;
        for (x, y) in w.iter().zip(act) {
            // SAFETY: `x.qs` has 16 bytes, `y.qs` 32.
            let (lv, a) = unsafe {
                (
                    levels32(x.qs.as_ptr(), table),
                    _mm256_loadu_si256(y.qs.as_ptr().cast()),
                )
            };
            let isum = hsum_epi32(_mm256_madd_epi16(signed_pairs(lv, a), ones));
            let (dx, dy) = f16c_pair(x.d, y.d);
            sum = (isum as f32).mul_add(dx * dy, sum);
        }
        sum
    }

    /// [`super::vec_dot_xs_scalar`]'s arithmetic (llama.cpp's one-column kernel); `TILED`:
    /// [`super::vec_dot_xs_tiled_scalar`]'s from the same integer lanes.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn vec_dot_xs_avx2<const TILED: bool>(
        w: &[BlockIq4Xs],
        act: &[BlockQ8K],
    ) -> f32 {
        // SAFETY: IQ4NL_LEVELS is 16 bytes.
        let table =
            unsafe { _mm256_broadcastsi128_si256(_mm_loadu_si128(IQ4NL_LEVELS.as_ptr().cast())) };
        let mut dot = LaneDot::<TILED>::new();
        for (x, y) in w.iter().zip(act) {
            let mut sumi = _mm256_setzero_si256();
            for ib in 0..8 {
                // SAFETY: ib < 8: index bytes 16ib .. +16 of 128, activations 32ib .. +32 of 256.
                let (lv, a) = unsafe {
                    (
                        levels32(x.qs.as_ptr().add(16 * ib), table),
                        _mm256_loadu_si256(y.qs.as_ptr().add(32 * ib).cast()),
                    )
                };
                let scale = _mm256_set1_epi16(x.scale(ib) as i16);
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(signed_pairs(lv, a), scale));
            }
            dot.add(sumi, f16c(x.d), y.d());
        }
        dot.total()
    }
}
