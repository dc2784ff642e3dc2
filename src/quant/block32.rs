//! What the five 32-element weight types (`q4_0`, `q4_1`, `q5_0`, `q5_1`, `q8_0`) share: their
//! public entry points, which dispatch on the [`super::Simd`] level the same way for every type
//! ([`block32_entry_points!`]), and the scalar twins whose arithmetic is the same for several
//! types (generic over [`WeightBlock`]). Each type's module keeps its block layout, its own
//! scalar twins where its arithmetic differs, and names its x86 kernels.

use super::q8::BlockQ8_1;
use super::q8_0::BlockQ8_0;
use super::{as_blocks, hsum8, lane_sums, ByteBlock, QK};

/// Defines a 32-element weight type's `dequantize_row`, `vec_dot` and `vec_dot_tile`:
/// `dequantize_row` runs the AVX2 dequantizer `x86::$dequantize` on either x86 level (exact, so
/// one version serves both) and the module's `dequantize_row_scalar` elsewhere; `vec_dot_tile`
/// runs the level's `x86::avx2::$vec_dot` or `x86::avx512::$vec_dot` and the module's
/// `vec_dot_scalar` per row and column elsewhere. The doc comments given are
/// `dequantize_row`'s.
macro_rules! block32_entry_points {
    (
        $(#[$dequantize_doc:meta])*
        weights: $block:ty,
        activations: $act:ty,
        activation_name: $act_name:literal,
        x86_dequantize: $dequantize:ident,
        x86_vec_dot: $vec_dot:ident $(,)?
    ) => {
        $(#[$dequantize_doc])*
        ///
        /// # Panics
        /// If `src` is not exactly `dst.len()` elements in whole blocks.
        pub fn dequantize_row(src: &[u8], dst: &mut [f32], simd: $crate::quant::Simd) {
            use $crate::quant::Simd;
            $crate::quant::check_blocks::<$block>(src.len(), dst.len());
            match simd.or_supported() {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `or_supported` returned a level whose features (AVX2, FMA, F16C) this
                // CPU has; the lengths were checked above.
                Simd::Avx2 | Simd::Avx512 => unsafe { $crate::quant::x86::$dequantize(src, dst) },
                _ => dequantize_row_scalar(src, dst),
            }
        }

        #[doc = concat!(
            "Dot product of whole weight blocks `w` with ",
            $act_name,
            " activations `act` (same element count)."
        )]
        ///
        /// # Panics
        /// If the lengths are not matching whole blocks.
        pub fn vec_dot(w: &[u8], act: &[u8], simd: $crate::quant::Simd) -> f32 {
            vec_dot_tile([w], [act], simd)[0][0]
        }

        /// [`vec_dot`] of `R` weight rows (same length) with `N` activation columns at once,
        /// `out[r][c] = ws[r] · acts[c]`: each weight block is unpacked once and reused for every
        /// column, and each activation block is loaded once and reused for every row (the
        /// matmul's prompt path).
        ///
        /// # Panics
        /// If the lengths are not matching whole blocks.
        pub fn vec_dot_tile<const R: usize, const N: usize>(
            ws: [&[u8]; R],
            acts: [&[u8]; N],
            simd: $crate::quant::Simd,
        ) -> [[f32; N]; R] {
            use $crate::quant::Simd;
            $crate::quant::check_tile::<$block, $act, R, N>(&ws, &acts);
            match simd.or_supported() {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `or_supported` returned a level this CPU supports; lengths checked above.
                Simd::Avx2 if R > 0 => unsafe { $crate::quant::x86::avx2::$vec_dot(ws, acts) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above, for the AVX-512 VNNI features.
                Simd::Avx512 if R > 0 => unsafe { $crate::quant::x86::avx512::$vec_dot(ws, acts) },
                _ => ws.map(|w| acts.map(|act| vec_dot_scalar(w, act))),
            }
        }
    };
}

/// A 32-element weight block as the scalar twins read it, `w = q · d` (plus `m` for a
/// [`MinWeightBlock`]).
pub(crate) trait WeightBlock: ByteBlock {
    /// The scale `d`.
    fn scale(&self) -> f32;
    /// The integer quants `q` in element order.
    fn values(&self) -> [i8; QK];
}

/// A [`WeightBlock`] with a minimum, `w = q · d + m`.
pub(crate) trait MinWeightBlock: WeightBlock {
    /// The minimum `m`.
    fn min(&self) -> f32;
}

/// Plain-Rust dequantizer of a type without minimum (ggml `dequantize_row_q4_0`, `_q5_0`,
/// `_q8_0`): `q * d`, one rounding.
pub(crate) fn dequantize_scaled<B: WeightBlock>(src: &[u8], dst: &mut [f32]) {
    for (b, out) in as_blocks::<B>(src).iter().zip(dst.chunks_exact_mut(QK)) {
        let d = b.scale();
        for (o, &q) in out.iter_mut().zip(b.values().iter()) {
            *o = q as f32 * d;
        }
    }
}

/// Plain-Rust dequantizer of a type with minimum (ggml `dequantize_row_q4_1`, `_q5_1`):
/// `q * d + m`, a product then a sum, each rounded to f32; no fused multiply-add.
pub(crate) fn dequantize_with_min<B: MinWeightBlock>(src: &[u8], dst: &mut [f32]) {
    for (b, out) in as_blocks::<B>(src).iter().zip(dst.chunks_exact_mut(QK)) {
        let (d, m) = (b.scale(), b.min());
        for (o, &q) in out.iter_mut().zip(b.values().iter()) {
            *o = q as f32 * d + m;
        }
    }
}

/// Plain-Rust dot product of weight blocks `B` with Q8_0 activations in the order of llama.cpp's
/// x86 kernels (`ggml_vec_dot_q5_0_q8_0`, `_q8_0_q8_0`): eight lanes, lane `l` accumulating
/// `d_w·d_a · Σ(4 products)` of every block with a fused multiply-add, then reduced as [`hsum8`].
pub(crate) fn vec_dot_lanes<B: WeightBlock>(w: &[u8], act: &[u8]) -> f32 {
    let mut lanes = [0.0f32; 8];
    for (bw, ba) in as_blocks::<B>(w).iter().zip(as_blocks::<BlockQ8_0>(act)) {
        let scale = bw.scale() * ba.d().to_f32();
        for (lane, isum) in lanes.iter_mut().zip(lane_sums(&bw.values(), &ba.qs)) {
            *lane = scale.mul_add(isum as f32, *lane);
        }
    }
    hsum8(lanes)
}

/// Plain-Rust dot product of weight blocks `B` with Q8_1 activations in the order of llama.cpp's
/// x86 kernels (`ggml_vec_dot_q4_1_q8_1`, `_q5_1_q8_1`): eight lanes as [`vec_dot_lanes`], the
/// minimum terms `m_w · s_a` fused into one running sum, then the lanes reduced as [`hsum8`] and
/// the minimum sum added.
pub(crate) fn vec_dot_lanes_with_min<B: MinWeightBlock>(w: &[u8], act: &[u8]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut mins = 0.0f32;
    for (bw, ba) in as_blocks::<B>(w).iter().zip(as_blocks::<BlockQ8_1>(act)) {
        let scale = bw.scale() * ba.d().to_f32();
        mins = bw.min().mul_add(ba.s().to_f32(), mins);
        for (lane, isum) in lanes.iter_mut().zip(lane_sums(&bw.values(), &ba.qs)) {
            *lane = scale.mul_add(isum as f32, *lane);
        }
    }
    hsum8(lanes) + mins
}
