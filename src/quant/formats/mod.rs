//! Block layouts and their plain-Rust twins: what every weight and activation format is, byte
//! for byte, and the reference arithmetic of every kernel (the SIMD kernels in `x86` are held to
//! these twins by property tests). Nothing here chooses a SIMD level.
//!
//! The 32-element formats (`q4_0`, `q4_1`, `q5_0`, `q5_1`, `q8_0`, and the activation format
//! `q8_1`) each define their block as a `#[repr(C)]` struct of byte arrays with ggml's layout;
//! what several share lives in `block32`.
//!
//! A K-quant super-block holds [`QK_K`](crate::quant::QK_K) = 256 weights split into sub-blocks
//! of 16 or 32, each with a small integer scale (and for Q2_K/Q4_K/Q5_K a small integer min),
//! themselves scaled by one or two f16 super-block factors. Byte layouts are ggml's
//! (`ggml-common.h`), checked at compile time:
//!
//! | type | bytes | layout |
//! |------|-------|--------|
//! | Q2_K | 84  | scales\[16\] (lo nibble scale, hi nibble min), qs\[64\] (2-bit), d f16, dmin f16 |
//! | Q3_K | 110 | hmask\[32\] (high bit), qs\[64\] (low 2 bits), scales\[12\] (16 × 6-bit), d f16 |
//! | Q4_K | 144 | d f16, dmin f16, scales\[12\] (8 × 6-bit scale + 8 × 6-bit min), qs\[128\] |
//! | Q5_K | 176 | d f16, dmin f16, scales\[12\], qh\[32\] (5th bit), qs\[128\] |
//! | Q6_K | 210 | ql\[128\] (low 4 bits), qh\[64\] (high 2 bits), scales\[16\] i8, d f16 |
//! | Q8_K | 292 | d f32, qs\[256\] i8, bsums\[16\] i16 (sums of 16 consecutive qs) |
//!
//! Each K-quant weight type has a dequantizer (float32-exact to ggml's `dequantize_row_*`: the
//! same products in the same order) and dot products against Q8_K activations: integer products
//! inside sub-blocks, one float multiply per super-block, and the min terms through the Q8_K
//! `bsums`, as ggml's `ggml_vec_dot_*_q8_K` do.
//!
//! All block structs are made of byte arrays only (alignment 1, [`ByteBlock`]), so any `&[u8]`
//! of whole blocks can be viewed as a block slice whatever its address; multi-byte fields are
//! little-endian, as in GGUF.
//!
//! [`ByteBlock`]: crate::quant::block::ByteBlock

pub mod block32;
pub mod float;
pub mod iq4;
pub mod q2_k;
pub mod q3_k;
pub mod q4_0;
pub mod q4_1;
pub mod q4_k;
pub mod q5_0;
pub mod q5_1;
pub mod q5_k;
pub mod q6_k;
pub mod q8_0;
pub mod q8_1;
pub mod q8_k;
pub mod quantize;

pub use q2_k::BlockQ2K;
pub use q3_k::BlockQ3K;
pub use q4_k::BlockQ4K;
pub use q5_k::BlockQ5K;
pub use q6_k::BlockQ6K;
pub use q8_k::BlockQ8K;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::types::{GgmlType, QK_K};

    #[test]
    fn block_sizes_match_the_type_table() {
        assert_eq!(size_of::<BlockQ2K>(), GgmlType::Q2_K.block_bytes());
        assert_eq!(size_of::<BlockQ3K>(), GgmlType::Q3_K.block_bytes());
        assert_eq!(size_of::<BlockQ4K>(), GgmlType::Q4_K.block_bytes());
        assert_eq!(size_of::<BlockQ5K>(), GgmlType::Q5_K.block_bytes());
        assert_eq!(size_of::<BlockQ6K>(), GgmlType::Q6_K.block_bytes());
        assert_eq!(size_of::<BlockQ8K>(), GgmlType::Q8_K.block_bytes());
        assert_eq!(QK_K, 256);
    }
}
