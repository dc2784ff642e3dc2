//! F16 and BF16 conversion, and the two arithmetics of float-weight dot products (see
//! `formats::float`) in 16 lanes: one AVX-512 register, or two AVX2 registers side by side (the
//! same lanes, so the same bits).

use std::arch::x86_64::*;

use crate::quant::dispatch::float::{TILE_COLS, TILE_ROWS};
use crate::quant::formats::float::{
    dequantize_row_scalar, finish_row, reduce16, FloatProduct, LANES, ROW_STEP,
};
use crate::quant::types::GgmlType;

/// A float weight type as the x86 kernels read it: eight elements at a time, as f32.
trait FloatWeights {
    /// The type.
    const TY: GgmlType;
    /// Bytes per element.
    const BYTES: usize;

    /// The eight elements at `p`, as f32.
    ///
    /// # Safety
    /// The CPU has AVX2 and F16C; `p` must be valid for reading eight elements.
    unsafe fn load8(p: *const u8) -> __m256;
}

/// F16 weights.
enum F16 {}
/// BF16 weights.
enum Bf16 {}

impl FloatWeights for F16 {
    const TY: GgmlType = GgmlType::F16;
    const BYTES: usize = 2;

    /// One F16C conversion.
    #[inline(always)]
    unsafe fn load8(p: *const u8) -> __m256 {
        // SAFETY: the caller's contract.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
    }
}

impl FloatWeights for Bf16 {
    const TY: GgmlType = GgmlType::BF16;
    const BYTES: usize = 2;

    /// bf16 is the high half of an f32: widen to 32 bits and shift left 16.
    #[inline(always)]
    unsafe fn load8(p: *const u8) -> __m256 {
        // SAFETY: the caller's contract.
        unsafe {
            let h = _mm_loadu_si128(p.cast());
            _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Float weights.

/// Converts the F16 `src` into `dst`, eight at a time, the tail by the scalar twin.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `src` holds `dst.len()` elements.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) unsafe fn dequantize_f16(src: &[u8], dst: &mut [f32]) {
    // SAFETY: the caller's contract.
    unsafe { dequantize::<F16>(src, dst) }
}

/// Converts the BF16 `src` into `dst`, as [`dequantize_f16`].
///
/// # Safety
/// As [`dequantize_f16`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) unsafe fn dequantize_bf16(src: &[u8], dst: &mut [f32]) {
    // SAFETY: the caller's contract.
    unsafe { dequantize::<Bf16>(src, dst) }
}

/// The body of [`dequantize_f16`] and [`dequantize_bf16`].
///
/// # Safety
/// As [`dequantize_f16`], for `T`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dequantize<T: FloatWeights>(src: &[u8], dst: &mut [f32]) {
    let n = dst.len();
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: elements `i..i + 8 <= n` of both (`src` holds `n`: the caller's contract).
        unsafe {
            let v = T::load8(src.as_ptr().add(T::BYTES * i));
            _mm256_storeu_ps(dst.as_mut_ptr().add(i), v);
        }
        i += 8;
    }
    dequantize_row_scalar(T::TY, &src[T::BYTES * i..], &mut dst[i..]);
}

// ---------------------------------------------------------------------------------------------
// Dot products of float weights with converted activations.

/// Sixteen f32 lanes, as the float dot products accumulate them.
///
/// # Safety
/// Every method needs the CPU features of its implementation (AVX-512F and BW for [`Zmm`]; AVX2,
/// FMA and F16C for [`YmmPair`]); loads read 64 bytes (f32, bf16 pairs) or 32 bytes (f16) at `p`.
trait Lanes16: Copy {
    unsafe fn zero() -> Self;
    /// Sixteen f32 at `p`.
    unsafe fn load_f32(p: *const u8) -> Self;
    /// Sixteen f16 at `p`, widened (exactly).
    unsafe fn load_f16(p: *const u8) -> Self;
    /// `a · b + c` per lane, rounded once.
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
    unsafe fn add(a: Self, b: Self) -> Self;
    unsafe fn lanes(self) -> [f32; LANES];
    /// Thirty-two bf16 at `p` as two vectors of f32: the even elements and the odd ones, each
    /// subnormal read as zero of its sign.
    unsafe fn load_bf16_pairs(p: *const u8) -> (Self, Self);
    /// Subnormal lanes flushed to zero of their sign.
    unsafe fn flush_subnormals(self) -> Self;
}

/// One AVX-512 register.
#[derive(Clone, Copy)]
struct Zmm(__m512);

/// Two AVX2 registers: lanes 0–7, then 8–15.
#[derive(Clone, Copy)]
struct YmmPair(__m256, __m256);

const EXPONENT_BITS: i32 = 0x7F80_0000;
const SIGN_BIT: i32 = i32::MIN;
const UPPER_HALVES: i32 = 0xFFFF_0000_u32 as i32;

impl Lanes16 for Zmm {
    #[inline(always)]
    unsafe fn zero() -> Self {
        // SAFETY: the trait's contract (AVX-512F).
        unsafe { Zmm(_mm512_setzero_ps()) }
    }
    #[inline(always)]
    unsafe fn load_f32(p: *const u8) -> Self {
        // SAFETY: the trait's contract (64 bytes at `p`).
        unsafe { Zmm(_mm512_loadu_ps(p.cast())) }
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const u8) -> Self {
        // SAFETY: the trait's contract (32 bytes at `p`).
        unsafe { Zmm(_mm512_cvtph_ps(_mm256_loadu_si256(p.cast()))) }
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        // SAFETY: the trait's contract.
        unsafe { Zmm(_mm512_fmadd_ps(a.0, b.0, c.0)) }
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        // SAFETY: the trait's contract.
        unsafe { Zmm(_mm512_add_ps(a.0, b.0)) }
    }
    #[inline(always)]
    unsafe fn lanes(self) -> [f32; LANES] {
        let mut out = [0f32; LANES];
        // SAFETY: the trait's contract; `out` holds 16 f32.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), self.0) };
        out
    }
    #[inline(always)]
    unsafe fn load_bf16_pairs(p: *const u8) -> (Self, Self) {
        // SAFETY: the trait's contract (64 bytes at `p`).
        unsafe {
            let v = _mm512_loadu_si512(p.cast());
            let even = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
            let odd = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(UPPER_HALVES)));
            (Zmm(even).flush_subnormals(), Zmm(odd).flush_subnormals())
        }
    }
    #[inline(always)]
    unsafe fn flush_subnormals(self) -> Self {
        // SAFETY: the trait's contract.
        unsafe {
            let bits = _mm512_castps_si512(self.0);
            let normal = _mm512_test_epi32_mask(bits, _mm512_set1_epi32(EXPONENT_BITS));
            let zero = _mm512_castsi512_ps(_mm512_and_si512(bits, _mm512_set1_epi32(SIGN_BIT)));
            Zmm(_mm512_mask_blend_ps(normal, zero, self.0))
        }
    }
}

/// `v` with subnormal lanes flushed to zero of their sign.
///
/// # Safety
/// The CPU has AVX2.
#[inline(always)]
unsafe fn flush_subnormals_ymm(v: __m256) -> __m256 {
    // SAFETY: the caller's contract.
    unsafe {
        let bits = _mm256_castps_si256(v);
        let exponent = _mm256_and_si256(bits, _mm256_set1_epi32(EXPONENT_BITS));
        let tiny = _mm256_cmpeq_epi32(exponent, _mm256_setzero_si256());
        let zero = _mm256_and_si256(bits, _mm256_set1_epi32(SIGN_BIT));
        _mm256_castsi256_ps(_mm256_blendv_epi8(bits, zero, tiny))
    }
}

impl Lanes16 for YmmPair {
    #[inline(always)]
    unsafe fn zero() -> Self {
        // SAFETY: the trait's contract (AVX2).
        unsafe { YmmPair(_mm256_setzero_ps(), _mm256_setzero_ps()) }
    }
    #[inline(always)]
    unsafe fn load_f32(p: *const u8) -> Self {
        // SAFETY: the trait's contract (64 bytes at `p`).
        unsafe { YmmPair(_mm256_loadu_ps(p.cast()), _mm256_loadu_ps(p.add(32).cast())) }
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const u8) -> Self {
        // SAFETY: the trait's contract (32 bytes at `p`, F16C).
        unsafe {
            YmmPair(
                _mm256_cvtph_ps(_mm_loadu_si128(p.cast())),
                _mm256_cvtph_ps(_mm_loadu_si128(p.add(16).cast())),
            )
        }
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        // SAFETY: the trait's contract (FMA).
        unsafe {
            YmmPair(
                _mm256_fmadd_ps(a.0, b.0, c.0),
                _mm256_fmadd_ps(a.1, b.1, c.1),
            )
        }
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        // SAFETY: the trait's contract.
        unsafe { YmmPair(_mm256_add_ps(a.0, b.0), _mm256_add_ps(a.1, b.1)) }
    }
    #[inline(always)]
    unsafe fn lanes(self) -> [f32; LANES] {
        let mut out = [0f32; LANES];
        // SAFETY: the trait's contract; `out` holds 16 f32.
        unsafe {
            _mm256_storeu_ps(out.as_mut_ptr(), self.0);
            _mm256_storeu_ps(out.as_mut_ptr().add(8), self.1);
        }
        out
    }
    #[inline(always)]
    unsafe fn load_bf16_pairs(p: *const u8) -> (Self, Self) {
        // SAFETY: the trait's contract (64 bytes at `p`).
        unsafe {
            let (lo, hi) = (
                _mm256_loadu_si256(p.cast()),
                _mm256_loadu_si256(p.add(32).cast()),
            );
            let even = YmmPair(
                _mm256_castsi256_ps(_mm256_slli_epi32(lo, 16)),
                _mm256_castsi256_ps(_mm256_slli_epi32(hi, 16)),
            );
            let upper = _mm256_set1_epi32(UPPER_HALVES);
            let odd = YmmPair(
                _mm256_castsi256_ps(_mm256_and_si256(lo, upper)),
                _mm256_castsi256_ps(_mm256_and_si256(hi, upper)),
            );
            (even.flush_subnormals(), odd.flush_subnormals())
        }
    }
    #[inline(always)]
    unsafe fn flush_subnormals(self) -> Self {
        // SAFETY: the trait's contract (AVX2).
        unsafe { YmmPair(flush_subnormals_ymm(self.0), flush_subnormals_ymm(self.1)) }
    }
}

/// How 32 bf16 weights and 32 bf16 activations are fused into 16 lanes, as `vdpbf16ps` does
/// (see `formats::float::dp_bf16_lane`): operands loaded once ([`Bf16Pairs::load`]) and then
/// fused into any number of accumulators.
///
/// # Safety
/// As [`Lanes16`]; [`NativePairs`] also needs AVX512_BF16.
trait Bf16Pairs<V: Lanes16> {
    /// Thirty-two bf16 values as the fusing reads them.
    type Loaded: Copy;
    unsafe fn load(p: *const u8) -> Self::Loaded;
    unsafe fn dot_pairs(acc: V, w: Self::Loaded, a: Self::Loaded) -> V;
}

/// `vdpbf16ps` itself.
enum NativePairs {}
/// Its arithmetic in fused multiply-adds and flushes.
enum EmulatedPairs {}

impl Bf16Pairs<Zmm> for NativePairs {
    type Loaded = __m512bh;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> __m512bh {
        // SAFETY: the trait's contract (64 bytes at `p`); a bf16 vector is the same 512 bits
        // reinterpreted.
        unsafe { std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(p.cast())) }
    }
    #[inline(always)]
    unsafe fn dot_pairs(acc: Zmm, w: __m512bh, a: __m512bh) -> Zmm {
        // SAFETY: the trait's contract (AVX512_BF16).
        unsafe { Zmm(_mm512_dpbf16_ps(acc.0, w, a)) }
    }
}

impl<V: Lanes16> Bf16Pairs<V> for EmulatedPairs {
    /// The even elements and the odd ones as f32, subnormals flushed.
    type Loaded = (V, V);
    #[inline(always)]
    unsafe fn load(p: *const u8) -> (V, V) {
        // SAFETY: the trait's contract.
        unsafe { V::load_bf16_pairs(p) }
    }
    #[inline(always)]
    unsafe fn dot_pairs(acc: V, (w_even, w_odd): (V, V), (a_even, a_odd): (V, V)) -> V {
        // SAFETY: the trait's contract.
        unsafe {
            let t = V::fma(w_odd, a_odd, acc.flush_subnormals()).flush_subnormals();
            V::fma(w_even, a_even, t).flush_subnormals()
        }
    }
}

/// F32 or F16 sixteen elements at `p`, as f32.
///
/// # Safety
/// As [`Lanes16`].
#[inline(always)]
unsafe fn load<V: Lanes16>(ty: GgmlType, p: *const u8) -> V {
    // SAFETY: the caller's contract.
    unsafe {
        if ty == GgmlType::F16 {
            V::load_f16(p)
        } else {
            V::load_f32(p)
        }
    }
}

/// The row arithmetic (`formats::float::vec_dot_row_scalar`) in `V`'s lanes, BF16 pairs by `P`.
///
/// # Safety
/// The features of `V` and `P`; `w` and `act` hold the same number of elements of `ty`.
#[inline(always)]
unsafe fn row_dot<V: Lanes16, P: Bf16Pairs<V>>(ty: GgmlType, w: &[u8], act: &[u8]) -> f32 {
    let eb = if ty == GgmlType::F32 { 4 } else { 2 };
    let steps = act.len() / eb / ROW_STEP;
    let step_bytes = ROW_STEP * eb;
    let (wp, ap) = (w.as_ptr(), act.as_ptr());
    // SAFETY: every load is inside the first `steps * step_bytes` bytes of both (the caller's
    // contract); the features are the caller's.
    let sums = unsafe {
        if ty == GgmlType::BF16 {
            let mut acc = [V::zero(); 2];
            for s in 0..steps {
                for (half, acc) in acc.iter_mut().enumerate() {
                    let off = s * step_bytes + half * step_bytes / 2;
                    *acc = P::dot_pairs(*acc, P::load(wp.add(off)), P::load(ap.add(off)));
                }
            }
            [reduce16(&acc[0].lanes()), reduce16(&acc[1].lanes())]
        } else {
            let mut acc = [V::zero(); 4];
            for s in 0..steps {
                for (j, acc) in acc.iter_mut().enumerate() {
                    let off = s * step_bytes + j * LANES * eb;
                    *acc = V::fma(load(ty, wp.add(off)), load(ty, ap.add(off)), *acc);
                }
            }
            let sum = V::add(V::add(acc[0], acc[2]), V::add(acc[1], acc[3]));
            [reduce16(&sum.lanes()), 0.0]
        }
    };
    let done = steps * step_bytes;
    finish_row(ty, sums, &w[done..], &act[done..])
}

/// The tiled arithmetic (`formats::float::vec_dot_tiled_scalar`) in `V`'s lanes, BF16 pairs by
/// `P`, for `R` weight rows and `C` activation columns at once (tinyBLAS's register tile: each
/// step loads every row and column once; each output keeps its own accumulator, so its bits do
/// not depend on the tile).
///
/// # Safety
/// The features of `V` and `P`; every row of `ws` and `acts` holds the same number of elements
/// of `ty`.
#[inline(always)]
unsafe fn tiled_tile<V: Lanes16, P: Bf16Pairs<V>, const R: usize, const C: usize>(
    ty: GgmlType,
    ws: [&[u8]; R],
    acts: [&[u8]; C],
) -> [[f32; C]; R] {
    // Sixteen f32 or f16 values, or 32 bf16 values, per step.
    let step_bytes = if ty == GgmlType::F16 { 32 } else { 64 };
    let steps = acts[0].len() / step_bytes;
    // SAFETY: every load is inside the first `steps * step_bytes` bytes of each row (the
    // caller's contract: all hold as many bytes as `acts[0]`); the features are the caller's.
    unsafe {
        let mut acc = [[V::zero(); C]; R];
        for s in 0..steps {
            let off = s * step_bytes;
            // Loops rather than closures: a closure would be compiled without the features.
            if ty == GgmlType::BF16 {
                let mut w = [P::load(ws[0].as_ptr().add(off)); R];
                for r in 1..R {
                    w[r] = P::load(ws[r].as_ptr().add(off));
                }
                for c in 0..C {
                    let a = P::load(acts[c].as_ptr().add(off));
                    for r in 0..R {
                        acc[r][c] = P::dot_pairs(acc[r][c], w[r], a);
                    }
                }
            } else {
                let mut w = [V::zero(); R];
                for r in 0..R {
                    w[r] = load(ty, ws[r].as_ptr().add(off));
                }
                for c in 0..C {
                    let a = load(ty, acts[c].as_ptr().add(off));
                    for r in 0..R {
                        acc[r][c] = V::fma(w[r], a, acc[r][c]);
                    }
                }
            }
        }
        let mut out = [[0f32; C]; R];
        for r in 0..R {
            for c in 0..C {
                out[r][c] = reduce16(&acc[r][c].lanes());
            }
        }
        out
    }
}

/// The dot product of a float weight row with converted activations, AVX-512 (BF16 pairs
/// emulated).
///
/// # Safety
/// The CPU has AVX-512F, BW and VL, AVX2, FMA and F16C; `w` and `act` hold the same number of
/// elements of `ty` (F32, F16 or BF16).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(in crate::quant) unsafe fn vec_dot_avx512(
    ty: GgmlType,
    product: FloatProduct,
    w: &[u8],
    act: &[u8],
) -> f32 {
    // SAFETY: the caller's contract.
    unsafe {
        match product {
            FloatProduct::Row => row_dot::<Zmm, EmulatedPairs>(ty, w, act),
            FloatProduct::Tiled => tiled_tile::<Zmm, EmulatedPairs, 1, 1>(ty, [w], [act])[0][0],
        }
    }
}

/// [`vec_dot_avx512`] with `vdpbf16ps` for BF16 pairs.
///
/// # Safety
/// As [`vec_dot_avx512`], and the CPU has AVX512_BF16.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512bf16")]
pub(in crate::quant) unsafe fn vec_dot_avx512_bf16(
    ty: GgmlType,
    product: FloatProduct,
    w: &[u8],
    act: &[u8],
) -> f32 {
    // SAFETY: the caller's contract.
    unsafe {
        match product {
            FloatProduct::Row => row_dot::<Zmm, NativePairs>(ty, w, act),
            FloatProduct::Tiled => tiled_tile::<Zmm, NativePairs, 1, 1>(ty, [w], [act])[0][0],
        }
    }
}

/// [`vec_dot_avx512`] in pairs of AVX2 registers.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; as [`vec_dot_avx512`] for the operands.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) unsafe fn vec_dot_avx2(
    ty: GgmlType,
    product: FloatProduct,
    w: &[u8],
    act: &[u8],
) -> f32 {
    // SAFETY: the caller's contract.
    unsafe {
        match product {
            FloatProduct::Row => row_dot::<YmmPair, EmulatedPairs>(ty, w, act),
            FloatProduct::Tiled => tiled_tile::<YmmPair, EmulatedPairs, 1, 1>(ty, [w], [act])[0][0],
        }
    }
}

/// [`TILE_ROWS`] weight rows by [`TILE_COLS`] activation columns in the tiled arithmetic, AVX-512 (BF16
/// pairs emulated).
///
/// # Safety
/// As [`vec_dot_avx512`], for every row of `ws` and `acts`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(in crate::quant) unsafe fn vec_dot_tile_avx512(
    ty: GgmlType,
    ws: [&[u8]; TILE_ROWS],
    acts: [&[u8]; TILE_COLS],
) -> [[f32; TILE_COLS]; TILE_ROWS] {
    // SAFETY: the caller's contract.
    unsafe { tiled_tile::<Zmm, EmulatedPairs, TILE_ROWS, TILE_COLS>(ty, ws, acts) }
}

/// [`vec_dot_tile_avx512`] with `vdpbf16ps` for BF16 pairs.
///
/// # Safety
/// As [`vec_dot_avx512_bf16`], for every row of `ws` and `acts`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512bf16")]
pub(in crate::quant) unsafe fn vec_dot_tile_avx512_bf16(
    ty: GgmlType,
    ws: [&[u8]; TILE_ROWS],
    acts: [&[u8]; TILE_COLS],
) -> [[f32; TILE_COLS]; TILE_ROWS] {
    // SAFETY: the caller's contract.
    unsafe { tiled_tile::<Zmm, NativePairs, TILE_ROWS, TILE_COLS>(ty, ws, acts) }
}

/// [`vec_dot_tile_avx512`] in pairs of AVX2 registers: two rows by two columns per pass (their
/// 16 registers), so the same outputs in several passes.
///
/// # Safety
/// As [`vec_dot_avx2`], for every row of `ws` and `acts`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) unsafe fn vec_dot_tile_avx2(
    ty: GgmlType,
    ws: [&[u8]; TILE_ROWS],
    acts: [&[u8]; TILE_COLS],
) -> [[f32; TILE_COLS]; TILE_ROWS] {
    let mut out = [[0f32; TILE_COLS]; TILE_ROWS];
    for r in (0..TILE_ROWS).step_by(2) {
        for c in (0..TILE_COLS).step_by(2) {
            // SAFETY: the caller's contract.
            let v = unsafe {
                tiled_tile::<YmmPair, EmulatedPairs, 2, 2>(
                    ty,
                    [ws[r], ws[r + 1]],
                    [acts[c], acts[c + 1]],
                )
            };
            for (dr, row) in v.iter().enumerate() {
                out[r + dr][c..c + 2].copy_from_slice(row);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::formats::float::{vec_dot_row_scalar, vec_dot_tiled_scalar};

    /// The emulated `vdpbf16ps` (the AVX-512 path of CPUs without AVX512_BF16, which this one
    /// would not take) against the plain-Rust twin, with subnormal, huge and zero values mixed in.
    #[test]
    fn emulated_bf16_pairs_equal_the_scalar_twin() {
        if !(std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c"))
        {
            eprintln!("no AVX-512 on this CPU: the emulated AVX-512 kernel is not run");
            return;
        }
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for &n in &[32usize, 64, 96, 128, 200, 320] {
            let mut bits = || -> Vec<u8> {
                (0..n)
                    .flat_map(|_| {
                        let r = next();
                        let exponent = match r % 5 {
                            0 => 0,                   // zero or subnormal
                            1 => 1 + (r >> 8) % 4,    // near the smallest normal
                            2 => 200 + (r >> 8) % 50, // huge
                            _ => 120 + (r >> 8) % 14, // ordinary
                        } as u16;
                        let v = (((r >> 20) & 1) as u16) << 15
                            | exponent << 7
                            | (r >> 24) as u16 & 0x7F;
                        v.to_le_bytes()
                    })
                    .collect()
            };
            let (w, a) = (bits(), bits());
            for product in [FloatProduct::Row, FloatProduct::Tiled] {
                let want = match product {
                    FloatProduct::Row => vec_dot_row_scalar(GgmlType::BF16, &w, &a),
                    FloatProduct::Tiled => vec_dot_tiled_scalar(GgmlType::BF16, &w, &a),
                };
                // SAFETY: the features were detected above; `w` and `a` hold `n` elements each.
                let got = unsafe { vec_dot_avx512(GgmlType::BF16, product, &w, &a) };
                assert!(
                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                    "{n} {product:?}: {got} vs {want}"
                );
            }
        }
    }
}
