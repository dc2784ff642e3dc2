//! Matrix multiply: quantized weights × f32 activations. (Placeholder.)

use super::{GgmlType, Simd};
use crate::Result;

/// A weight matrix of `rows` rows of `cols` elements of `ty`, borrowed from the model file.
#[derive(Debug, Clone, Copy)]
pub struct QMatrix<'a> {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

/// `out[c * w.rows + r] = W[r] · x[c * w.cols ..][..w.cols]` for every row `r` and each of the
/// `n_cols` activation columns `c` (each column contiguous). `scratch` holds the quantized
/// activations and is grown as needed, so repeated calls do not allocate.
pub fn matmul(
    _pool: &rayon::ThreadPool,
    _w: &QMatrix<'_>,
    _x: &[f32],
    _n_cols: usize,
    _out: &mut [f32],
    _scratch: &mut Vec<u8>,
    _simd: Simd,
) -> Result<()> {
    todo!("matmul")
}
