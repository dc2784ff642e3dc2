//! The activation quantizers' plain-Rust twins: f32 activations to Q8_0 / Q8_1 (`q8`) and Q8_K
//! (`q8_k`), rounded as llama.cpp's x86 build rounds them. Their SIMD versions are in `x86`;
//! `dispatch` chooses between them.

pub mod q8;
pub mod q8_k;
