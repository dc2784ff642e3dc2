//! Reading back the explain heatmap PNG: its size, its colours, its causal shape.

// Each test crate compiles this module and uses only part of it.
#![allow(dead_code)]

use std::collections::HashSet;

/// Decodes a PNG into (width, height, RGB bytes).
pub fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut buf).expect("PNG data");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

/// Checks a heatmap PNG of `n` tokens with `cell`-pixel cells: its size, that it is not flat,
/// and that the cells above the diagonal share one colour distinct from every cell on it.
pub fn assert_heatmap(bytes: &[u8], n: usize, cell: usize) {
    let (w, h, rgb) = decode_png(bytes);
    assert_eq!((w as usize, h as usize), (n * cell, n * cell), "PNG size");
    let pixel = |row: usize, col: usize| {
        let at = ((row * cell + cell / 2) * n * cell + col * cell + cell / 2) * 3;
        [rgb[at], rgb[at + 1], rgb[at + 2]]
    };
    let colours: HashSet<[u8; 3]> = rgb.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect();
    assert!(colours.len() > 8, "only {} colours", colours.len());
    let future = pixel(0, n - 1);
    for i in 0..n {
        for j in i + 1..n {
            assert_eq!(pixel(i, j), future, "cell [{i}][{j}] above the diagonal");
        }
        assert_ne!(pixel(i, i), future, "diagonal cell {i}");
    }
}
