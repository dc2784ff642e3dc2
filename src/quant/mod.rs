//! Block formats and kernels: dequantize a row, quantize activations, dot a weight row with
//! quantized activations, and matrix multiply. Knows nothing about models.
//!
//! As in ggml, a matmul quantizes its f32 activations once into the weight type's
//! [`vec_dot_type`] (Q8_0, Q8_1 or Q8_K), then every weight row is dotted with them using integer
//! products inside a block and one float scale per block. Float weights (F32/F16/BF16) dot
//! directly with f32 activations.
//!
//! # Layout
//!
//! Each layer uses only the layers above it in this list, never one below:
//!
//! | module | holds |
//! |--------|-------|
//! | `types`, `simd`, `block` | the type table, the SIMD level, the block view ([`ByteBlock`], [`as_blocks`]) and length checks every kernel shares |
//! | `formats` | every block layout (`#[repr(C)]`, size checked at compile time) and the plain-Rust twin of every kernel; the weight quantizers (`quantize`) |
//! | `activations` | the plain-Rust activation quantizers (Q8_0, Q8_1, Q8_K) |
//! | `x86` | the SIMD kernels, AVX2 and AVX-512 VNNI, one file per format family; `unsafe`, no checks |
//! | `dispatch` | the safe entry point of every kernel: the one place the contract below is applied |
//! | `packed` | weights repacked at load into 16-row groups, with their AVX-512 kernels |
//! | `matmul` | the matrix multiply over all of the above |
//!
//! # Dispatch contract
//!
//! - **Level.** A [`Simd`] is chosen once ([`Simd::detect`]) and passed down. Every entry point
//!   runs `simd.or_supported()`: the level asked for if this CPU has it, else the best supported
//!   level below it (AVX-512 → AVX2 → scalar), so no value of `Simd` can execute an instruction
//!   the CPU lacks. Every level computes the same bits as the scalar twin, so the fallback never
//!   changes a result.
//! - **Lengths.** Every kernel entry point checks that its operands are whole, matching blocks
//!   (`block::check_dot`, `check_tile`, `check_elements`), the same way for every format, and
//!   panics otherwise: the `x86` kernels read through raw pointers, and this check is what keeps
//!   them in bounds. That panic is a caller's bug, never reachable from file data: the crate's
//!   own entry points for outside data ([`dequantize_row`], [`quantize_activations`],
//!   [`matmul`], [`repack::PackedCopy::pack`]) check shapes first and return
//!   [`Error::InvalidArgument`](crate::Error::InvalidArgument).
//!
//! aarch64 uses the scalar twins for now.

pub mod activations;
pub mod block;
pub mod dispatch;
pub mod formats;
pub mod matmul;
pub mod packed;
pub mod simd;
pub mod types;
#[cfg(target_arch = "x86_64")]
pub mod x86;

pub use block::{as_blocks, as_blocks_mut, hsum8, lane_sums, ByteBlock, QK};
pub use dispatch::{dequantize_row, quantize_activations, vec_dot, vec_dot_type, vec_dot_wide};
pub use formats::quantize;
pub use matmul::{matmul, matmul_columns_alone, matmul_columns_of, matmul_expert, QMatrix};
/// The packed forms under the name the model code knows them by.
pub use packed as repack;
pub use simd::Simd;
pub use types::{GgmlType, QK_K};
