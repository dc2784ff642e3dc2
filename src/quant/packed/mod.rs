//! Weights repacked at load for the AVX-512 VNNI matrix multiply: rows interleaved in groups of
//! 16 so that one 512-bit `vpdpbusd` advances 16 rows at once. Each form computes exactly what
//! the scalar twin of its type computes (in llama.cpp's arithmetic for that type and column
//! count), to the bit, and has its own kernels beside its layout:
//!
//! - `q4_0`: Q4_0, whole-block integer sums;
//! - `q4_k`, `q6_k`: the K-quants llama.cpp repacks or tiles;
//! - `lanes`: Q5_0 and Q8_0, interleaved with llama.cpp's eight lanes per block;
//! - `grouped`: the storage and activation sums they share.

pub mod grouped;
pub mod lanes;
pub mod q4_0;
pub mod q4_k;
pub mod q6_k;

pub use grouped::{avx512_vnni, GroupedRows, GROUP_ROWS};

use crate::quant::types::GgmlType;
use lanes::PackedLanes;
use q4_0::PackedQ4_0;
use q4_k::PackedQ4K;
use q6_k::PackedQ6K;

/// A matrix's weights repacked for the AVX-512 VNNI kernels, in the form its type takes.
#[derive(Debug)]
pub enum PackedCopy {
    /// Q4_0 ([`q4_0`]).
    Q4_0(PackedQ4_0),
    /// Q4_K ([`q4_k`]).
    Q4K(PackedQ4K),
    /// Q6_K ([`q6_k`]).
    Q6K(PackedQ6K),
    /// Q5_0 and Q8_0, interleaved with llama.cpp's lanes ([`lanes`]).
    Lanes(PackedLanes),
}

impl PackedCopy {
    /// Repacks `rows` rows of `cols` weights of type `ty` (`data`, row-major in whole blocks);
    /// `None` for the other types and for shapes outside the layouts (rows not a multiple of 16,
    /// partial blocks).
    pub fn pack(ty: GgmlType, data: &[u8], rows: usize, cols: usize) -> Option<PackedCopy> {
        Some(match ty {
            GgmlType::Q4_0 => PackedCopy::Q4_0(PackedQ4_0::pack(data, rows, cols)?),
            GgmlType::Q4_K => PackedCopy::Q4K(PackedQ4K::pack(data, rows, cols)?),
            GgmlType::Q6_K => PackedCopy::Q6K(PackedQ6K::pack(data, rows, cols)?),
            GgmlType::Q5_0 | GgmlType::Q8_0 => {
                PackedCopy::Lanes(PackedLanes::pack(ty, data, rows, cols)?)
            }
            _ => return None,
        })
    }

    /// The weight type packed.
    pub fn ty(&self) -> GgmlType {
        match self {
            PackedCopy::Q4_0(_) => GgmlType::Q4_0,
            PackedCopy::Q4K(_) => GgmlType::Q4_K,
            PackedCopy::Q6K(_) => GgmlType::Q6_K,
            PackedCopy::Lanes(p) => p.ty(),
        }
    }

    /// The rows, shape and bytes, whatever the form.
    pub fn grouped(&self) -> &GroupedRows {
        match self {
            PackedCopy::Q4_0(p) => p.grouped(),
            PackedCopy::Q4K(p) => p.grouped(),
            PackedCopy::Q6K(p) => p.grouped(),
            PackedCopy::Lanes(p) => p.grouped(),
        }
    }

    /// `(rows, elements per row)` of the matrix.
    pub fn shape(&self) -> (usize, usize) {
        (self.grouped().rows(), self.grouped().cols())
    }
}
