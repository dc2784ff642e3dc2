//! What the five 32-element weight types (`q4_0`, `q4_1`, `q5_0`, `q5_1`, `q8_0`) share: the
//! view of a block the scalar twins read (generic over [`WeightBlock`]) and the twins whose
//! arithmetic is the same for several types.

use crate::quant::block::{as_blocks, hsum8, lane_sums, ByteBlock, QK};

/// A 32-element weight block as the scalar twins read it, `w = q · d` (plus `m` for a
/// [`MinWeightBlock`]).
pub(crate) trait WeightBlock: ByteBlock {
    /// The scale `d`.
    fn scale(&self) -> f32;
    /// The integer quants `q` in element order.
    fn values(&self) -> [i8; QK];
}

/// A 32-element activation block as the scalar twins read it, `a = q · d` (Q8_0).
pub(crate) trait ActivationBlock: ByteBlock {
    /// The scale `d`.
    fn scale(&self) -> f32;
    /// The quants `q` in element order.
    fn qs(&self) -> &[i8; QK];
}

/// An [`ActivationBlock`] that also carries its scaled sum `s = d · Σ q` (Q8_1).
pub(crate) trait SummedActivationBlock: ActivationBlock {
    /// The scaled sum `s`.
    fn sum(&self) -> f32;
}

/// A [`WeightBlock`] with a minimum, `w = q · d + m`.
pub(crate) trait MinWeightBlock: WeightBlock {
    /// The minimum `m`.
    fn min(&self) -> f32;
}

/// The 32 quants of a Q4 or Q5 block in element order, unsigned: the packed nibbles `qs` (byte `j`
/// holds element `j` in its low nibble and element `j + 16` in its high nibble) plus, for Q5,
/// 16 where the element's fifth bit is set in `qh` (little-endian, bit `j`: element `j`).
pub(crate) fn nibble_quants(qs: &[u8; QK / 2], qh: Option<[u8; 4]>) -> [u8; QK] {
    let qh = qh.map_or(0, u32::from_le_bytes);
    let mut q = [0u8; QK];
    for (j, &b) in qs.iter().enumerate() {
        let hi0 = ((qh >> j) & 1) as u8;
        let hi1 = ((qh >> (j + QK / 2)) & 1) as u8;
        q[j] = (b & 0x0F) | (hi0 << 4);
        q[j + QK / 2] = (b >> 4) | (hi1 << 4);
    }
    q
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
pub(crate) fn vec_dot_lanes<B: WeightBlock, A: ActivationBlock>(w: &[u8], act: &[u8]) -> f32 {
    let mut lanes = [0.0f32; 8];
    for (bw, ba) in as_blocks::<B>(w).iter().zip(as_blocks::<A>(act)) {
        let scale = bw.scale() * ba.scale();
        for (lane, isum) in lanes.iter_mut().zip(lane_sums(&bw.values(), ba.qs())) {
            *lane = scale.mul_add(isum as f32, *lane);
        }
    }
    hsum8(lanes)
}

/// Plain-Rust dot product of weight blocks `B` with Q8_1 activations in the order of llama.cpp's
/// x86 kernels (`ggml_vec_dot_q4_1_q8_1`, `_q5_1_q8_1`): eight lanes as [`vec_dot_lanes`], the
/// minimum terms `m_w · s_a` fused into one running sum, then the lanes reduced as [`hsum8`] and
/// the minimum sum added.
pub(crate) fn vec_dot_lanes_with_min<B: MinWeightBlock, A: SummedActivationBlock>(
    w: &[u8],
    act: &[u8],
) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut mins = 0.0f32;
    for (bw, ba) in as_blocks::<B>(w).iter().zip(as_blocks::<A>(act)) {
        let scale = bw.scale() * ba.scale();
        mins = bw.min().mul_add(ba.sum(), mins);
        for (lane, isum) in lanes.iter_mut().zip(lane_sums(&bw.values(), ba.qs())) {
            *lane = scale.mul_add(isum as f32, *lane);
        }
    }
    hsum8(lanes) + mins
}
