//! What every block format shares: the in-place block view, the length check every kernel
//! entry point makes, and the reductions the scalar twins use to round as the SIMD kernels do.

/// Elements per block of the 32-element formats (ggml's `QK4_0`, `QK4_1`, `QK5_0`, `QK5_1`,
/// `QK8_0`, `QK8_1`: all 32).
pub const QK: usize = 32;

/// A `#[repr(C)]` block struct made only of byte arrays, so a byte slice of whole blocks can be
/// viewed as a block slice in place, at any address (model tensors are borrowed from the file map,
/// and a row of 18-byte Q4_0 blocks need not start at an even address).
///
/// # Safety
/// Implementors must have alignment 1, no padding, a non-zero size, and accept every bit pattern.
pub unsafe trait ByteBlock: Copy + 'static {
    /// Elements one block holds (32, or 256 for the K-quant super-blocks).
    const ELEMENTS: usize;
}

/// Views the whole blocks at the start of `bytes` as blocks (trailing partial bytes are ignored;
/// kernels check lengths with [`check_dot`] or [`check_elements`] first).
#[inline]
pub fn as_blocks<B: ByteBlock>(bytes: &[u8]) -> &[B] {
    let n = bytes.len() / size_of::<B>();
    // SAFETY: `ByteBlock` guarantees alignment 1, no padding and that any bytes form a valid `B`;
    // `n * size_of::<B>() <= bytes.len()`, so the view stays inside `bytes` and shares its lifetime.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<B>(), n) }
}

/// Mutable twin of [`as_blocks`].
#[inline]
pub fn as_blocks_mut<B: ByteBlock>(bytes: &mut [u8]) -> &mut [B] {
    let n = bytes.len() / size_of::<B>();
    // SAFETY: as in `as_blocks`; the exclusive borrow of `bytes` moves to the returned view.
    unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<B>(), n) }
}

/// The length check of every kernel that converts a row (dequantizers, quantizers): panics
/// unless `bytes` is exactly `n_elements` elements in whole blocks of `B`; returns the block
/// count. Kernels read through raw pointers, so this check is what keeps them in bounds. The
/// crate's `Result` entry points check the same first, so data from a file never reaches the
/// panic.
#[track_caller]
#[inline]
pub fn check_elements<B: ByteBlock>(bytes: usize, n_elements: usize) -> usize {
    let n_blocks = n_elements / B::ELEMENTS;
    assert!(
        n_elements.is_multiple_of(B::ELEMENTS) && bytes == n_blocks * size_of::<B>(),
        "{bytes} bytes are not {n_elements} elements of whole {}-byte blocks",
        size_of::<B>()
    );
    n_blocks
}

/// The length check of every dot-product kernel: panics unless `w` bytes are whole blocks of `W`
/// and `act` bytes the same number of blocks of `A`; returns the block count. As
/// [`check_elements`], it keeps raw-pointer kernels in bounds and is never reached from file data.
#[track_caller]
#[inline]
pub fn check_dot<W: ByteBlock, A: ByteBlock>(w: usize, act: usize) -> usize {
    const { assert!(W::ELEMENTS == A::ELEMENTS) };
    let n_blocks = w / size_of::<W>();
    assert!(
        w.is_multiple_of(size_of::<W>()) && act == n_blocks * size_of::<A>(),
        "vec_dot: {w} weight bytes and {act} activation bytes are not matching whole blocks"
    );
    n_blocks
}

/// [`check_dot`] for a tile of weight rows and activation columns: every row the same length,
/// every column matching it.
#[track_caller]
#[inline]
pub fn check_tile<W: ByteBlock, A: ByteBlock, const R: usize, const N: usize>(
    ws: &[&[u8]; R],
    acts: &[&[u8]; N],
) -> usize {
    let w_len = ws.first().map_or(0, |w| w.len());
    assert!(
        ws.iter().all(|w| w.len() == w_len),
        "vec_dot_tile: weight rows of different lengths"
    );
    let n_blocks = w_len / size_of::<W>();
    for act in acts {
        check_dot::<W, A>(w_len, act.len());
    }
    n_blocks
}

/// Reads a little-endian f16 stored as two bytes.
#[inline(always)]
pub fn f16_le(bytes: [u8; 2]) -> f32 {
    half::f16::from_le_bytes(bytes).to_f32()
}

/// The sum of eight f32 lanes in the order x86 kernels reduce a 256-bit register (upper half
/// onto lower, then pairs, then the last two): `((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7))`. Scalar
/// twins use it so that their result is the SIMD kernels' to the bit.
#[inline]
pub fn hsum8(a: [f32; 8]) -> f32 {
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

/// The integer dot product of 32 quants, as eight lane sums of four consecutive products (the
/// lanes a `vpdpbusd` or `vpmaddubsw` + `vpmaddwd` pair produces).
#[inline]
pub fn lane_sums(x: &[i8; QK], y: &[i8; QK]) -> [i32; 8] {
    std::array::from_fn(|l| {
        (0..4)
            .map(|k| i32::from(x[4 * l + k]) * i32::from(y[4 * l + k]))
            .sum()
    })
}
