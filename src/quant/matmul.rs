//! Matrix multiply: quantized weights × f32 activations.
//!
//! The activations are quantized once per call into the weight type's `vec_dot_type` (Q8_0, Q8_1,
//! or Q8_K) in `scratch`, then the weight rows are split
//! into chunks that run in parallel on the caller's pool. With one activation column (token generation) each task streams its rows once: the work
//! is bound by memory bandwidth. With many columns (prompt batches) each task walks its rows in
//! tiles of [`ROW_TILE`] rows and, for each group of [`COL_TILE`] columns, dots the tile's rows
//! [`REG_ROWS`] at a time with the group: a weight block is unpacked once and reused for all
//! columns of the group, an activation block is loaded once for both rows, and the tile's weights
//! stay in L1 while all column groups pass over it, so the work becomes bound by arithmetic
//! instead of memory.

use rayon::prelude::*;

use super::dispatch::block32::{self, Block32};
use super::dispatch::float::{self, FloatProduct};
use super::dispatch::{k_quants, quantize_activations, vec_dot, vec_dot_type, vec_dot_wide};
use super::formats::q8_0::BlockQ8_0;
use super::formats::{q4_0::BlockQ4_0, q4_1::BlockQ4_1, q5_0::BlockQ5_0, q5_1::BlockQ5_1};
use super::packed::lanes::{self, LaneSums};
use super::packed::q4_0::{self as packed_q4_0, ActivationSums};
use super::packed::q4_k::{self as packed_q4_k, ActivationSumsK};
use super::packed::q6_k as packed_q6_k;
use super::packed::{grouped, PackedCopy};
use super::simd::Simd;
use super::types::GgmlType;
use crate::{Error, Result};

/// A weight matrix of `rows` rows of `cols` elements of `ty`, borrowed from the model file.
#[derive(Debug, Clone, Copy)]
pub struct QMatrix<'a> {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
    /// The same weights repacked for the AVX-512 kernels ([`PackedCopy`]), if the model made a
    /// copy.
    pub packed: Option<&'a PackedCopy>,
}

impl<'a> QMatrix<'a> {
    /// A matrix over `data` as the file stores it (no repacked copy).
    pub fn new(ty: GgmlType, rows: usize, cols: usize, data: &'a [u8]) -> QMatrix<'a> {
        QMatrix {
            ty,
            rows,
            cols,
            data,
            packed: None,
        }
    }
}

/// Activation columns dotted at once in the multi-column path.
pub const COL_TILE: usize = 4;
/// Weight rows dotted at once in the multi-column path: with [`COL_TILE`] columns, 2 × 4 f32
/// accumulators plus the unpacked operands fill the 16 vector registers of AVX2.
pub const REG_ROWS: usize = 2;
/// Weight rows dotted at once in the multi-column path with AVX-512 (two 512-bit row pairs).
pub const QUAD_ROWS: usize = 4;
/// Activation columns dotted at once with [`QUAD_ROWS`] rows on AVX-512: 2 × 8 accumulators of
/// the 32 vector registers.
pub const WIDE_COLS: usize = 8;
/// Rows per cache tile in the multi-column path: 16 rows of 896 Q8_0 weights are 15 KiB.
pub const ROW_TILE: usize = 16;
/// Fewest activation columns for which llama.cpp multiplies K-quants with its tiled kernel (whose
/// arithmetic differs from its single-column dot product; we follow whichever it uses).
const TILED_MIN_COLS: usize = packed_q6_k::TILED_MIN_COLS;
/// How far ahead (bytes) the one-column path prefetches weight rows: this machine's hardware
/// prefetchers barely help (without the hints generation runs 3x slower); of 4.5, 6 and 8 KiB
/// ahead, 8 measured best overall (SmolLM2 Q8_0 159 -> 167 tok/s, Gemma 3 99 -> 103 against a
/// fixed 8 rows).
const PREFETCH_BYTES: usize = 8192;
/// Fewest rows a parallel task gets with one column: below this the task overhead (~1 µs)
/// outweighs the row dots.
const MIN_TASK_ROWS_GEN: usize = 32;
/// Parallel tasks per pool thread: a few more tasks than threads lets work stealing even out
/// threads that get descheduled (the machine is shared).
const TASKS_PER_THREAD: usize = 4;

/// Dots [`REG_ROWS`] weight rows with [`COL_TILE`] activation columns (a per-type
/// `vec_dot_tile`).
type TileDot = fn([&[u8]; REG_ROWS], [&[u8]; COL_TILE], Simd) -> [[f32; COL_TILE]; REG_ROWS];
/// Dots [`QUAD_ROWS`] weight rows with [`COL_TILE`] activation columns: the AVX-512 tile, which
/// has the 32 vector registers the bigger tile needs.
type QuadDot = fn([&[u8]; QUAD_ROWS], [&[u8]; COL_TILE], Simd) -> [[f32; COL_TILE]; QUAD_ROWS];
/// Dots [`QUAD_ROWS`] weight rows with one activation column (token generation with AVX-512:
/// the activation block and its scale are loaded once for four rows).
type QuadOneDot = fn([&[u8]; QUAD_ROWS], [&[u8]; 1], Simd) -> [[f32; 1]; QUAD_ROWS];
/// Dots [`QUAD_ROWS`] weight rows with [`WIDE_COLS`] activation columns (AVX-512: each unpacked
/// weight block serves twice as many columns as in [`QuadDot`]).
type WideDot = fn([&[u8]; QUAD_ROWS], [&[u8]; WIDE_COLS], Simd) -> [[f32; WIDE_COLS]; QUAD_ROWS];
/// Dots one weight row with [`COL_TILE`] activation columns (the odd row of a tile).
type RowDot = fn([&[u8]; 1], [&[u8]; COL_TILE], Simd) -> [[f32; COL_TILE]; 1];

/// Dots one K-quant weight row with four activation columns (`None`: no such kernel for the type).
type FourColumnDot = fn(GgmlType, &[u8], [&[u8]; 4], Simd) -> Option<[f32; 4]>;

/// How one weight row is dotted with activation columns.
#[derive(Clone, Copy)]
enum RowKernel {
    /// A 32-element block type with a multi-column kernel.
    Block32 {
        ty: GgmlType,
        one: fn(&[u8], &[u8], Simd) -> f32,
        row: RowDot,
        tile: TileDot,
        quad: QuadDot,
        wide: WideDot,
        quad_one: QuadOneDot,
    },
    /// Any other quantized type, through the per-type dispatch of [`vec_dot`].
    Other(GgmlType),
    /// Q3_K, Q5_K, Q6_K or IQ4_XS with 8 or more activation columns, in the arithmetic of
    /// llama.cpp's tiled K-quant matrix multiply ([`k_quants::vec_dot_tiled`]).
    KTiled(GgmlType),
    /// Q2_K or Q4_K, which llama.cpp repacks: columns in whole groups of four take its
    /// four-column kernel's arithmetic ([`k_quants::vec_dot_four_columns`]), the rest its
    /// one-column kernel's.
    /// Holds the number of columns in whole groups.
    KRepacked(GgmlType, usize),
    /// Float weights, dotted with the activations converted to their type in one of llama.cpp's
    /// two arithmetics (which one depends on the whole product's shape: [`float::takes_tiles`]).
    Float(GgmlType, FloatProduct),
}

impl RowKernel {
    /// The kernels of the 32-element format `B` (of type `ty`).
    fn block32<B: Block32>(ty: GgmlType) -> RowKernel {
        RowKernel::Block32 {
            ty,
            one: block32::vec_dot::<B>,
            row: block32::vec_dot_tile::<B, 1, COL_TILE>,
            tile: block32::vec_dot_tile::<B, REG_ROWS, COL_TILE>,
            quad: block32::vec_dot_tile::<B, QUAD_ROWS, COL_TILE>,
            wide: block32::vec_dot_tile::<B, QUAD_ROWS, WIDE_COLS>,
            quad_one: block32::vec_dot_tile::<B, QUAD_ROWS, 1>,
        }
    }

    fn for_type(ty: GgmlType, n_cols: usize) -> RowKernel {
        use GgmlType::*;
        match ty {
            Q4_0 => RowKernel::block32::<BlockQ4_0>(ty),
            Q4_1 => RowKernel::block32::<BlockQ4_1>(ty),
            Q5_0 => RowKernel::block32::<BlockQ5_0>(ty),
            Q5_1 => RowKernel::block32::<BlockQ5_1>(ty),
            Q8_0 => RowKernel::block32::<BlockQ8_0>(ty),
            F32 | F16 | BF16 => RowKernel::Float(ty, FloatProduct::Row),
            Q3_K | Q5_K | Q6_K | IQ4_XS if n_cols >= TILED_MIN_COLS => RowKernel::KTiled(ty),
            Q2_K | Q4_K => RowKernel::KRepacked(ty, n_cols - n_cols % 4),
            _ => RowKernel::Other(ty),
        }
    }
}

/// The activations as the kernels read them: in the weight type's `vec_dot_type` (quantized, or
/// converted to the float type), `stride` bytes per column.
#[derive(Clone, Copy)]
enum Acts<'a> {
    /// `scales`: every block's scale as f32 (column `c`'s at `c * n_blocks`), for the AVX-512
    /// prompt tiles; empty when not converted.
    Quantized {
        bytes: &'a [u8],
        stride: usize,
        scales: &'a [f32],
    },
}

/// Where the tasks write: `out` as a raw pointer, since tasks own disjoint row ranges of every
/// column, which are not contiguous slices when there are several columns.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: the pointer is only written through at indices `c * rows + r` for rows `r` owned by
// exactly one task (see `matmul`), so sending it to other threads creates no data race.
unsafe impl Send for OutPtr {}
// SAFETY: as above; shared references to `OutPtr` only hand out disjoint indices.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// Writes `v` at index `i`.
    ///
    /// # Safety
    /// `i` must be inside the output slice and written by no other task.
    unsafe fn write(&self, i: usize, v: f32) {
        // SAFETY: guaranteed by the caller.
        unsafe { *self.0.add(i) = v };
    }
}

/// `out[c * w.rows + r] = W[r] · x[c * w.cols ..][..w.cols]` for every row `r` and each of the
/// `n_cols` activation columns `c` (each column contiguous). `scratch` holds the quantized
/// activations and is grown as needed, so repeated calls do not allocate.
pub fn matmul(
    pool: &rayon::ThreadPool,
    w: &QMatrix<'_>,
    x: &[f32],
    n_cols: usize,
    out: &mut [f32],
    scratch: &mut Vec<u8>,
    simd: Simd,
) -> Result<()> {
    let whole = Arithmetic::Batch {
        first: 0,
        total: n_cols,
    };
    matmul_with(pool, w, x, n_cols, out, scratch, simd, whole)
}

/// [`matmul`] of columns `first..first + n_cols` of a product of `total` columns: every value
/// gets the bits [`matmul`] of all `total` columns gives it, but only these columns are
/// computed. A long prompt's batch can so be computed in pieces (in several forward passes,
/// or after a prefix computed by another sequence) in the arithmetic it has whole. `first` must
/// be a multiple of 4 (llama.cpp groups some types' columns by four).
#[allow(clippy::too_many_arguments)]
pub fn matmul_columns_of(
    pool: &rayon::ThreadPool,
    w: &QMatrix<'_>,
    x: &[f32],
    n_cols: usize,
    (first, total): (usize, usize),
    out: &mut [f32],
    scratch: &mut Vec<u8>,
    simd: Simd,
) -> Result<()> {
    if !first.is_multiple_of(4) || first.checked_add(n_cols).is_none_or(|end| end > total) {
        return Err(Error::InvalidArgument(format!(
            "columns {first}..{} of a product of {total} (the first a multiple of 4)",
            first.saturating_add(n_cols)
        )));
    }
    let piece = Arithmetic::Batch { first, total };
    matmul_with(pool, w, x, n_cols, out, scratch, simd, piece)
}

/// [`matmul`] of one expert of a mixture with the tokens routed to it, in the arithmetic of
/// llama.cpp's `mul_mat_id`: each column as a one-column product, except for the K-quant types
/// its tiled multiply takes from 8 tokens on (those it does not repack: Q3_K, Q5_K, Q6_K,
/// IQ4_XS), which compute as [`matmul`] does. The columns share the weights' loads and the
/// threads either way.
pub fn matmul_expert(
    pool: &rayon::ThreadPool,
    w: &QMatrix<'_>,
    x: &[f32],
    n_cols: usize,
    out: &mut [f32],
    scratch: &mut Vec<u8>,
    simd: Simd,
) -> Result<()> {
    matmul_with(pool, w, x, n_cols, out, scratch, simd, Arithmetic::Expert)
}

/// [`matmul`] of `n_cols` columns each computed exactly as [`matmul`] computes it alone (one
/// column): the product of a batch of sequences that each decode one token, whose results must
/// not depend on which others share the step. The columns still share every load of the weights
/// and the threads, which is what makes decoding many sequences at once cheap.
pub fn matmul_columns_alone(
    pool: &rayon::ThreadPool,
    w: &QMatrix<'_>,
    x: &[f32],
    n_cols: usize,
    out: &mut [f32],
    scratch: &mut Vec<u8>,
    simd: Simd,
) -> Result<()> {
    matmul_with(
        pool,
        w,
        x,
        n_cols,
        out,
        scratch,
        simd,
        Arithmetic::EachColumnAlone,
    )
}

/// Which of llama.cpp's products a matmul computes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Arithmetic {
    /// `mul_mat`'s of `total` columns (some kernels change from 4 or 8 on), for the columns
    /// from `first` on.
    Batch { first: usize, total: usize },
    /// `mul_mat_id`'s for one expert (see [`matmul_expert`]).
    Expert,
    /// `mul_mat`'s for one column, for every column (see [`matmul_columns_alone`]).
    EachColumnAlone,
}

#[allow(clippy::too_many_arguments)]
fn matmul_with(
    pool: &rayon::ThreadPool,
    w: &QMatrix<'_>,
    x: &[f32],
    n_cols: usize,
    out: &mut [f32],
    scratch: &mut Vec<u8>,
    simd: Simd,
    arithmetic: Arithmetic,
) -> Result<()> {
    let simd = simd.or_supported();
    let (rows, cols) = (w.rows, w.cols);
    let row_bytes =
        w.ty.row_bytes(cols as u64)
            .and_then(|b| usize::try_from(b).ok())
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "a row of {cols} elements is not whole {} blocks",
                    w.ty
                ))
            })?;
    if !w.ty.is_supported() {
        return Err(Error::UnsupportedTensorType {
            tensor: String::new(),
            ty: w.ty.name().to_string(),
        });
    }
    if rows.checked_mul(row_bytes) != Some(w.data.len())
        || cols.checked_mul(n_cols) != Some(x.len())
        || rows.checked_mul(n_cols) != Some(out.len())
    {
        return Err(Error::InvalidArgument(format!(
            "matmul shapes: {rows}x{cols} {} weights in {} bytes, {} activations for {n_cols} \
             columns, {} outputs",
            w.ty,
            w.data.len(),
            x.len(),
            out.len()
        )));
    }
    if rows == 0 || n_cols == 0 {
        return Ok(());
    }

    // Of a piece of a batch: how many of its columns fall in the whole batch's groups of four.
    let (batch_cols, grouped) = match arithmetic {
        Arithmetic::Batch { first, total } => {
            let grouped = (total - total % 4).saturating_sub(first).min(n_cols);
            (total, grouped)
        }
        _ => (n_cols, n_cols - n_cols % 4),
    };
    let kernel = match (arithmetic, RowKernel::for_type(w.ty, batch_cols)) {
        (Arithmetic::Expert, kernel @ RowKernel::KTiled(_)) => kernel,
        (Arithmetic::Expert | Arithmetic::EachColumnAlone, _) => RowKernel::for_type(w.ty, 1),
        (Arithmetic::Batch { .. }, RowKernel::Float(ty, _))
            if float::takes_tiles(ty, rows, cols, batch_cols) =>
        {
            RowKernel::Float(ty, FloatProduct::Tiled)
        }
        (Arithmetic::Batch { .. }, RowKernel::KRepacked(ty, _)) => {
            RowKernel::KRepacked(ty, grouped)
        }
        (Arithmetic::Batch { .. }, kernel) => kernel,
    };
    let act_ty = vec_dot_type(w.ty);
    let mut act_scales = Vec::new();
    let act_scales = &mut act_scales;
    let acts = {
        let act_bytes = act_ty
            .row_bytes(cols as u64)
            .and_then(|b| usize::try_from(b).ok())
            .ok_or_else(|| Error::InvalidArgument(format!("{cols} columns of {act_ty}")))?;
        let need = act_bytes * n_cols;
        if scratch.len() < need {
            scratch
                .try_reserve(need - scratch.len())
                .map_err(|e| Error::InvalidArgument(format!("matmul scratch: {e}")))?;
            scratch.resize(need, 0);
        }
        let dst = &mut scratch[..need];
        if n_cols == 1 {
            quantize_activations(act_ty, x, dst, simd)?;
        } else {
            pool.install(|| {
                dst.par_chunks_mut(act_bytes)
                    .zip(x.par_chunks(cols))
                    .try_for_each(|(d, col)| quantize_activations(act_ty, col, d, simd))
            })?;
        }
        let bytes = &scratch[..need];
        // The AVX-512 prompt tiles read each activation block's scale once per row tile;
        // converting them all once here saves a tenth of those tiles' instructions.
        if matches!(kernel, RowKernel::Block32 { .. })
            && simd == Simd::Avx512
            && n_cols >= WIDE_COLS
            && w.packed.is_none()
        {
            let block_bytes = act_ty.block_bytes();
            act_scales.clear();
            act_scales.extend(
                bytes
                    .chunks_exact(block_bytes)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
            );
        }
        Acts::Quantized {
            bytes,
            stride: act_bytes,
            scales: act_scales,
        }
    };

    let n_threads = pool.current_num_threads().max(1);
    let out_ptr = &OutPtr(out.as_mut_ptr());
    let store = |c: usize, r: usize, v: f32| {
        // SAFETY: every task below stores only rows of its own range, which no other task
        // touches; `c < n_cols` and `r < rows`, so the index is inside `out` (length checked
        // above).
        unsafe { out_ptr.write(c * rows + r, v) };
    };

    // Weights repacked into groups of 16 rows: the AVX-512 kernels, each with the activation
    // sums its type needs, computed once per matmul (by the pool's threads for a batch). An
    // expert's columns take the file's layout, as llama.cpp's `mul_mat_id` does.
    let alone = arithmetic == Arithmetic::EachColumnAlone;
    if let (Some(packed), Simd::Avx512, Acts::Quantized { bytes, stride, .. }) = (
        w.packed.filter(|_| arithmetic != Arithmetic::Expert),
        simd,
        acts,
    ) {
        if packed.ty() == w.ty && packed.shape() == (rows, cols) && grouped::avx512_vnni() {
            let run = |groups: usize, task: &(dyn Fn(std::ops::Range<usize>) + Sync)| {
                run_groups(pool, groups, n_cols, n_threads, task)
            };
            match packed {
                PackedCopy::Q4_0(p) => {
                    let sums = if n_cols == 1 {
                        ActivationSums::compute(bytes, stride, n_cols)
                    } else {
                        pool.install(|| ActivationSums::compute(bytes, stride, n_cols))
                    };
                    run(p.grouped().groups(), &|range| {
                        packed_q4_0::matmul_groups(p, range, bytes, stride, n_cols, &sums, store);
                    });
                }
                PackedCopy::Lanes(p) => {
                    let sums = if n_cols == 1 {
                        LaneSums::compute(p.ty(), bytes, stride, n_cols)
                    } else {
                        pool.install(|| LaneSums::compute(p.ty(), bytes, stride, n_cols))
                    };
                    run(p.grouped().groups(), &|range| {
                        lanes::matmul_groups(p, range, bytes, stride, n_cols, &sums, store);
                    });
                }
                // Columns in whole groups of four take the four-column arithmetic, as
                // `RowKernel::KRepacked` (none when each column is computed as alone).
                PackedCopy::Q4K(p) => {
                    let sums = ActivationSumsK::compute(bytes, stride, n_cols);
                    let chunked = if alone { 0 } else { grouped };
                    run(p.grouped().groups(), &|range| {
                        packed_q4_k::matmul_groups(
                            p, range, bytes, stride, n_cols, chunked, &sums, store,
                        );
                    });
                }
                // The tiled arithmetic from `TILED_MIN_COLS` columns on, as `RowKernel::KTiled`.
                PackedCopy::Q6K(p) => {
                    let tiled = !alone && batch_cols >= TILED_MIN_COLS;
                    run(p.grouped().groups(), &|range| {
                        packed_q6_k::matmul_groups(p, range, bytes, stride, n_cols, tiled, store);
                    })
                }
            }
            return Ok(());
        }
    }

    let min_rows = if n_cols == 1 {
        MIN_TASK_ROWS_GEN
    } else {
        ROW_TILE
    };
    let chunk = rows
        .div_ceil(n_threads * TASKS_PER_THREAD)
        .max(min_rows)
        .next_multiple_of(COL_TILE);
    let n_chunks = rows.div_ceil(chunk);
    let weights = w.data;
    let task = |ci: usize| {
        let r0 = ci * chunk;
        let r1 = (r0 + chunk).min(rows);
        run_rows(
            kernel,
            weights,
            row_bytes,
            acts,
            n_cols,
            r0..r1,
            simd,
            store,
        );
    };
    if n_chunks == 1 {
        task(0);
    } else {
        pool.install(|| (0..n_chunks).into_par_iter().for_each(task));
    }
    Ok(())
}

/// Runs `task` over `groups` row groups of a packed matrix, split into chunks for the pool's
/// threads (one-column calls in chunks large enough to outweigh a task's cost).
fn run_groups(
    pool: &rayon::ThreadPool,
    groups: usize,
    n_cols: usize,
    n_threads: usize,
    task: &(dyn Fn(std::ops::Range<usize>) + Sync),
) {
    let min_groups = if n_cols == 1 {
        MIN_TASK_ROWS_GEN / grouped::GROUP_ROWS
    } else {
        1
    };
    let chunk = groups
        .div_ceil(n_threads * TASKS_PER_THREAD)
        .max(min_groups)
        .max(1);
    let n_chunks = groups.div_ceil(chunk);
    let run = |ci: usize| task(ci * chunk..((ci + 1) * chunk).min(groups));
    if n_chunks == 1 {
        run(0);
    } else {
        pool.install(|| (0..n_chunks).into_par_iter().for_each(run));
    }
}

/// Computes rows `rows` of the product for every column, handing each value to `store`.
#[allow(clippy::too_many_arguments)]
fn run_rows(
    kernel: RowKernel,
    weights: &[u8],
    row_bytes: usize,
    acts: Acts<'_>,
    n_cols: usize,
    rows: std::ops::Range<usize>,
    simd: Simd,
    mut store: impl FnMut(usize, usize, f32),
) {
    let w_row = |r: usize| &weights[r * row_bytes..][..row_bytes];
    let dot_one = |r: usize, c: usize| -> f32 {
        match (kernel, acts) {
            (RowKernel::Block32 { one, .. }, Acts::Quantized { bytes, stride, .. }) => {
                one(w_row(r), &bytes[c * stride..][..stride], simd)
            }
            (RowKernel::Other(ty), Acts::Quantized { bytes, stride, .. }) => {
                vec_dot(ty, w_row(r), &bytes[c * stride..][..stride], simd)
            }
            (RowKernel::KTiled(ty), Acts::Quantized { bytes, stride, .. }) => {
                k_quants::vec_dot_tiled(ty, w_row(r), &bytes[c * stride..][..stride], simd)
            }
            (RowKernel::KRepacked(ty, grouped), Acts::Quantized { bytes, stride, .. }) => {
                let act = &bytes[c * stride..][..stride];
                if c < grouped {
                    k_quants::vec_dot_four_columns(ty, w_row(r), act, simd)
                } else {
                    vec_dot(ty, w_row(r), act, simd)
                }
            }
            (RowKernel::Float(ty, product), Acts::Quantized { bytes, stride, .. }) => {
                float::vec_dot(ty, w_row(r), &bytes[c * stride..][..stride], product, simd)
            }
        }
    };
    if n_cols == 1 {
        // Token generation streams each weight row once: ask for the rows a few iterations
        // ahead, so the loads of the rows at hand do not wait on memory.
        let prefetch = |r: usize| {
            if r < rows.end {
                prefetch_bytes(w_row(r));
            }
        };
        let ahead = (PREFETCH_BYTES / row_bytes).max(1);
        let mut r = rows.start;
        if let (RowKernel::Block32 { quad_one, .. }, Acts::Quantized { bytes, stride, .. }, true) =
            (kernel, acts, simd == Simd::Avx512)
        {
            let col = [&bytes[..stride]];
            while r + QUAD_ROWS <= rows.end {
                for k in 0..QUAD_ROWS {
                    prefetch(r + ahead + k);
                }
                let v = quad_one(std::array::from_fn(|k| w_row(r + k)), col, simd);
                for (dr, vr) in v.iter().enumerate() {
                    store(0, r + dr, vr[0]);
                }
                r += QUAD_ROWS;
            }
        }
        for r in r..rows.end {
            prefetch(r + ahead);
            store(0, r, dot_one(r, 0));
        }
        return;
    }
    let mut tile_start = rows.start;
    while tile_start < rows.end {
        let tile = tile_start..(tile_start + ROW_TILE).min(rows.end);
        let mut c = 0;
        if let (
            RowKernel::Block32 {
                ty: kernel_ty,
                row,
                tile: dot_tile,
                quad,
                wide,
                ..
            },
            Acts::Quantized {
                bytes,
                stride,
                scales,
            },
        ) = (kernel, acts)
        {
            if simd == Simd::Avx512 && tile.len() % QUAD_ROWS == 0 {
                let n_blocks = scales.len() / n_cols;
                while c + WIDE_COLS <= n_cols {
                    let cols: [&[u8]; WIDE_COLS] =
                        std::array::from_fn(|k| &bytes[(c + k) * stride..][..stride]);
                    let col_scales: [&[f32]; WIDE_COLS] =
                        std::array::from_fn(|k| &scales[(c + k) * n_blocks..][..n_blocks]);
                    for r in tile.clone().step_by(QUAD_ROWS) {
                        let ws = std::array::from_fn(|k| w_row(r + k));
                        let v = vec_dot_wide(kernel_ty, ws, cols, col_scales, simd)
                            .unwrap_or_else(|| wide(ws, cols, simd));
                        for (dr, vr) in v.iter().enumerate() {
                            for (k, &v) in vr.iter().enumerate() {
                                store(c + k, r + dr, v);
                            }
                        }
                    }
                    c += WIDE_COLS;
                }
            }
            while c + COL_TILE <= n_cols {
                let cols: [&[u8]; COL_TILE] =
                    std::array::from_fn(|k| &bytes[(c + k) * stride..][..stride]);
                let mut r = tile.start;
                if simd == Simd::Avx512 {
                    while r + QUAD_ROWS <= tile.end {
                        let v = quad(std::array::from_fn(|k| w_row(r + k)), cols, simd);
                        for (dr, vr) in v.iter().enumerate() {
                            for (k, &v) in vr.iter().enumerate() {
                                store(c + k, r + dr, v);
                            }
                        }
                        r += QUAD_ROWS;
                    }
                }
                while r + REG_ROWS <= tile.end {
                    let v = dot_tile(std::array::from_fn(|k| w_row(r + k)), cols, simd);
                    for (dr, vr) in v.iter().enumerate() {
                        for (k, &v) in vr.iter().enumerate() {
                            store(c + k, r + dr, v);
                        }
                    }
                    r += REG_ROWS;
                }
                for r in r..tile.end {
                    for (k, &v) in row([w_row(r)], cols, simd)[0].iter().enumerate() {
                        store(c + k, r, v);
                    }
                }
                c += COL_TILE;
            }
        }
        // Float weights in tinyBLAS's arithmetic: tiles of rows by columns, each weight and
        // activation step loaded once per tile.
        if let (RowKernel::Float(ty, FloatProduct::Tiled), Acts::Quantized { bytes, stride, .. }) =
            (kernel, acts)
        {
            const R: usize = float::TILE_ROWS;
            const T: usize = float::TILE_COLS;
            while c + T <= n_cols {
                let cols: [&[u8]; T] =
                    std::array::from_fn(|k| &bytes[(c + k) * stride..][..stride]);
                let mut r = tile.start;
                while r + R <= tile.end {
                    let ws = std::array::from_fn(|k| w_row(r + k));
                    let Some(v) = float::vec_dot_tile(ty, ws, cols, simd) else {
                        break;
                    };
                    for (dr, vr) in v.iter().enumerate() {
                        for (k, &v) in vr.iter().enumerate() {
                            store(c + k, r + dr, v);
                        }
                    }
                    r += R;
                }
                for r in r..tile.end {
                    for k in 0..T {
                        store(c + k, r, dot_one(r, c + k));
                    }
                }
                c += T;
            }
        }
        // K-quants in groups of four columns (each weight row unpacked once per group): all
        // columns with the tiled arithmetic, the columns in whole groups of four for Q4_K.
        let groups = match kernel {
            RowKernel::KTiled(ty) => {
                Some((ty, n_cols, k_quants::vec_dot_tiled_x4 as FourColumnDot))
            }
            RowKernel::KRepacked(ty, grouped) => Some((
                ty,
                grouped,
                k_quants::vec_dot_four_columns_x4 as FourColumnDot,
            )),
            _ => None,
        };
        if let (Some((ty, limit, dot4)), Acts::Quantized { bytes, stride, .. }) = (groups, acts) {
            while c + 4 <= limit {
                let cols: [&[u8]; 4] =
                    std::array::from_fn(|k| &bytes[(c + k) * stride..][..stride]);
                for r in tile.clone() {
                    match dot4(ty, w_row(r), cols, simd) {
                        Some(v) => {
                            for (k, &v) in v.iter().enumerate() {
                                store(c + k, r, v);
                            }
                        }
                        None => {
                            for k in 0..4 {
                                store(c + k, r, dot_one(r, c + k));
                            }
                        }
                    }
                }
                c += 4;
            }
        }
        for c in c..n_cols {
            for r in tile.clone() {
                store(c, r, dot_one(r, c));
            }
        }
        tile_start = tile.end;
    }
}

/// Hints the CPU to bring `bytes` into the cache (one hint per 64-byte line).
#[inline]
fn prefetch_bytes(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for line in bytes.chunks(64) {
        // SAFETY: a prefetch hint never faults and reads nothing architecturally; the pointer is
        // inside `bytes`.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr().cast(),
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}
