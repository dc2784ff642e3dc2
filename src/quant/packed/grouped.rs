//! What every packed form shares: [`GroupedRows`], the storage of a matrix's rows in groups of
//! [`GROUP_ROWS`], its anonymous-memory buffer, and the per-column activation sums the kernels
//! read.

use std::fmt;

use crate::quant::block::as_blocks;
use crate::quant::formats::q8_0::BlockQ8_0;
use crate::quant::simd::Simd;

/// Rows per interleaved group (the f32 lanes of a 512-bit register).
pub const GROUP_ROWS: usize = 16;

/// Bytes of one interleaved chunk, the layout every packed form gives its quants: four bytes of
/// each of the 16 rows, row `r`'s at `4r..4r + 4` (one 512-bit register, whose lane `r` a
/// `vpdpbusd` then advances by four of row `r`'s products).
pub(crate) const CHUNK_BYTES: usize = 4 * GROUP_ROWS;

/// Puts row `r`'s bytes `words` into the interleaved chunks at the start of `chunks`: its bytes
/// `4k..4k + 4` into chunk `k`.
#[inline(always)]
pub(crate) fn interleave_row(chunks: &mut [u8], r: usize, words: &[u8]) {
    for (k, word) in words.chunks_exact(4).enumerate() {
        chunks[CHUNK_BYTES * k + 4 * r..][..4].copy_from_slice(word);
    }
}

/// The inverse of [`interleave_row`]: appends row `r`'s bytes from the first `n_chunks` chunks
/// at the start of `chunks` to `out`.
pub(crate) fn deinterleave_row(chunks: &[u8], r: usize, n_chunks: usize, out: &mut Vec<u8>) {
    for k in 0..n_chunks {
        out.extend_from_slice(&chunks[CHUNK_BYTES * k + 4 * r..][..4]);
    }
}

/// Copies at least this large are backed by huge pages if the system has them: the weights
/// streamed by generation then cost fewer TLB misses (SmolLM2 Q4_0's 16 MiB vocabulary:
/// generation ~5 % faster), while smaller copies paid the huge pages' slower first touch at load
/// for no measurable gain (Qwen2.5's load 0.26-0.33 s without, 0.37-0.45 s with).
const HUGE_PAGE_MIN_BYTES: usize = 8 << 20;

/// Zeroed anonymous memory of `len` bytes for a repacked copy (the kernel zeroes it, so the
/// copy needs no memset), huge pages hinted for large copies. `None` if the system refuses.
pub(crate) fn packed_buffer(len: usize) -> Option<memmap2::MmapMut> {
    let bytes = memmap2::MmapMut::map_anon(len).ok()?;
    // Only a hint: without huge pages the copy works the same.
    #[cfg(target_os = "linux")]
    if len >= HUGE_PAGE_MIN_BYTES {
        let _ = bytes.advise(memmap2::Advice::HugePage);
    }
    Some(bytes)
}

/// A matrix's rows repacked in groups of [`GROUP_ROWS`]: the storage all packed forms share.
/// Group `g` holds rows `16g..16g + 16` as `n_blocks` group blocks (the 16 rows' block `i`, in the
/// form's own layout), the groups one after another.
pub struct GroupedRows {
    rows: usize,
    cols: usize,
    n_blocks: usize,
    group_block_bytes: usize,
    /// Anonymous memory rather than a `Vec` ([`packed_buffer`]): it arrives zeroed by the kernel
    /// (no memset of the whole copy at load), and large copies can be backed by huge pages.
    bytes: memmap2::MmapMut,
}

impl fmt::Debug for GroupedRows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupedRows")
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl GroupedRows {
    /// Repacks `rows` rows of `cols` elements stored as blocks `B` of `block_elems` elements
    /// (`data`, row-major in whole blocks; `view` reads a row as its blocks): `write(r, block,
    /// out)` puts row `16g + r`'s block `i` into group `g`'s block `i` (zeroed before, and
    /// shared by the 16 rows, each writing its own bytes). `None` if the shape does not fit the
    /// layout (no rows or columns, rows not a multiple of 16, a partial block), the sizes
    /// disagree or the system refuses the memory.
    pub(crate) fn pack<B, const GROUP_BLOCK_BYTES: usize>(
        data: &[u8],
        rows: usize,
        cols: usize,
        block_elems: usize,
        view: impl Fn(&[u8]) -> &[B],
        mut write: impl FnMut(usize, &B, &mut [u8; GROUP_BLOCK_BYTES]),
    ) -> Option<GroupedRows> {
        if rows == 0
            || !rows.is_multiple_of(GROUP_ROWS)
            || cols == 0
            || !cols.is_multiple_of(block_elems)
        {
            return None;
        }
        let n_blocks = cols / block_elems;
        let row_bytes = n_blocks * size_of::<B>();
        if rows.checked_mul(row_bytes) != Some(data.len()) {
            return None;
        }
        let group_bytes = n_blocks * GROUP_BLOCK_BYTES;
        let mut bytes = packed_buffer(rows / GROUP_ROWS * group_bytes)?;
        for (group, out) in data
            .chunks_exact(GROUP_ROWS * row_bytes)
            .zip(bytes.chunks_exact_mut(group_bytes))
        {
            // Fixed-size views: the writers' indexes are checked at compile time (packing is a
            // visible part of the load time).
            let (out, _) = out.as_chunks_mut::<GROUP_BLOCK_BYTES>();
            for (r, row) in group.chunks_exact(row_bytes).enumerate() {
                for (block, out) in view(row).iter().zip(out.iter_mut()) {
                    write(r, block, out);
                }
            }
        }
        Some(GroupedRows {
            rows,
            cols,
            n_blocks,
            group_block_bytes: GROUP_BLOCK_BYTES,
            bytes,
        })
    }

    /// Rows of the matrix.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Elements per row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row groups.
    pub fn groups(&self) -> usize {
        self.rows / GROUP_ROWS
    }

    /// Blocks per row.
    pub(crate) fn n_blocks(&self) -> usize {
        self.n_blocks
    }

    /// Group `g`'s bytes: its `n_blocks` group blocks.
    pub(crate) fn group(&self, g: usize) -> &[u8] {
        let n = self.n_blocks * self.group_block_bytes;
        &self.bytes[g * n..][..n]
    }

    /// Group `g`'s blocks one by one.
    pub(crate) fn group_blocks(&self, g: usize) -> std::slice::ChunksExact<'_, u8> {
        self.group(g).chunks_exact(self.group_block_bytes)
    }
}

/// A packed form's AVX-512 kernel, ready to run: see [`Avx512Kernel`].
#[cfg(target_arch = "x86_64")]
pub(crate) trait GroupDot {
    /// `group` (one row group's blocks, in the layout the kernel reads) dotted with the activation
    /// columns `first..first + NC`: `out[k][r]` is row `r` · column `first + k`.
    ///
    /// # Panics
    /// If `group` is not a whole group or a column is not one of the kernel's.
    fn dot<const NC: usize>(&self, group: &[u8], first: usize) -> [[f32; GROUP_ROWS]; NC];
}

/// The operands of a packed form's AVX-512 kernel: `n_cols` activation columns of `n_blocks`
/// blocks each, `stride` bytes apart in `acts`, and their per-block sums `S` as the form computes
/// them; `MODE` picks between a form's two arithmetics where it has two. Built only where the CPU
/// has the features [`avx512_vnni`] checks (`new`'s contract), which is what lets each form's
/// [`GroupDot::dot`] be safe.
#[cfg(target_arch = "x86_64")]
pub(crate) struct Avx512Kernel<'a, S, const MODE: bool = false> {
    n_blocks: usize,
    acts: &'a [u8],
    stride: usize,
    n_cols: usize,
    sums: &'a S,
}

#[cfg(target_arch = "x86_64")]
impl<'a, S, const MODE: bool> Avx512Kernel<'a, S, MODE> {
    /// The operands as described on the type.
    ///
    /// # Safety
    /// The CPU has the features [`avx512_vnni`] checks.
    pub(crate) unsafe fn new(
        n_blocks: usize,
        acts: &'a [u8],
        stride: usize,
        n_cols: usize,
        sums: &'a S,
    ) -> Self {
        Avx512Kernel {
            n_blocks,
            acts,
            stride,
            n_cols,
            sums,
        }
    }

    /// Blocks per column (and per row of the matrix).
    pub(crate) fn n_blocks(&self) -> usize {
        self.n_blocks
    }

    /// The activation sums.
    pub(crate) fn sums(&self) -> &'a S {
        self.sums
    }

    /// Columns `first..first + NC` as the kernel reads them, each with its entries of the
    /// per-block tables `scales` and `sums` (column `c`, block `i` at `c * n_blocks + i`): every
    /// pointer is to `n_blocks` blocks or entries, checked here.
    ///
    /// # Panics
    /// If a column is not one of the kernel's or a table is short.
    #[inline(always)]
    pub(crate) fn columns<B, E, const NC: usize>(
        &self,
        first: usize,
        scales: &'a [f32],
        sums: &'a [E],
    ) -> [Column<E>; NC] {
        let n = self.n_blocks;
        std::array::from_fn(|k| {
            let c = first + k;
            Column {
                quants: self.column::<B>(c).as_ptr(),
                scales: scales[c * n..][..n].as_ptr(),
                sums: sums[c * n..][..n].as_ptr(),
            }
        })
    }

    /// Column `c`'s `n_blocks` activation blocks of `B`.
    ///
    /// # Panics
    /// If `c` is not below `n_cols` or the column is short.
    #[inline(always)]
    pub(crate) fn column<B>(&self, c: usize) -> &'a [u8] {
        assert!(c < self.n_cols);
        &self.acts[c * self.stride..][..self.n_blocks * size_of::<B>()]
    }
}

/// One activation column as a packed kernel reads it: its blocks, their scales as f32 and the
/// form's per-block sum `E` of them (Q4_0's offset term, Q4_K's min pairs, the lanes' starts).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct Column<E> {
    pub(crate) quants: *const u8,
    pub(crate) scales: *const f32,
    pub(crate) sums: *const E,
}

/// Dots `group` (group `g` of the matrix) with the columns from `first`, `NC` at a time while
/// `NC` of them remain before `end`, handing each value to `store(column, row, value)`; returns
/// the first column not done. Calls for decreasing `NC` cover all the columns with the widest
/// tiles first.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn column_tiles<const NC: usize>(
    kernel: &impl GroupDot,
    group: &[u8],
    g: usize,
    first: usize,
    end: usize,
    store: &mut impl FnMut(usize, usize, f32),
) -> usize {
    let mut c = first;
    while end - c >= NC {
        store_tile(g, c, &kernel.dot::<NC>(group, c), store);
        c += NC;
    }
    c
}

/// Hands a kernel's outputs for group `g`, columns `c..c + tile.len()`, to
/// `store(column, row, value)`.
#[inline]
pub(crate) fn store_tile(
    g: usize,
    c: usize,
    tile: &[[f32; GROUP_ROWS]],
    store: &mut impl FnMut(usize, usize, f32),
) {
    for (k, lanes) in tile.iter().enumerate() {
        for (r, &value) in lanes.iter().enumerate() {
            store(c + k, g * GROUP_ROWS + r, value);
        }
    }
}

/// Per Q8_0 activation block of the `n_cols` columns in `acts` (`stride` bytes each): its scale
/// as f32, and `extra(block)`; column `c`, block `i` at `c * n_blocks + i`. The columns are
/// shared among the threads of the current rayon pool (a serial step here would hold back every
/// thread of the matmul that follows).
pub(crate) fn q8_0_block_sums<T: Copy + Default + Send>(
    acts: &[u8],
    stride: usize,
    n_cols: usize,
    extra: impl Fn(&BlockQ8_0) -> T + Sync,
) -> (Vec<f32>, Vec<T>) {
    use rayon::prelude::*;
    let n_blocks = stride / size_of::<BlockQ8_0>();
    let mut scales = vec![0.0; n_cols * n_blocks];
    let mut extras = vec![T::default(); n_cols * n_blocks];
    if n_blocks == 0 {
        return (scales, extras);
    }
    let columns = acts
        .par_chunks_exact(stride)
        .take(n_cols)
        .zip(scales.par_chunks_exact_mut(n_blocks))
        .zip(extras.par_chunks_exact_mut(n_blocks));
    // Small batches in one piece: a task per column would cost more than the sums.
    columns
        .with_min_len(32)
        .for_each(|((col, scales), extras)| {
            for ((b, scale), e) in as_blocks::<BlockQ8_0>(col).iter().zip(scales).zip(extras) {
                *scale = b.d().to_f32();
                *e = extra(b);
            }
        });
    (scales, extras)
}

/// Whether this CPU runs the packed kernel: exactly the features of the AVX-512 level
/// (F, BW, VL, VNNI, with AVX2, FMA and F16C).
pub fn avx512_vnni() -> bool {
    Simd::Avx512.is_supported()
}
