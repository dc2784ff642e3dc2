//! Reading back the explain heatmap figure: its size, its text chunks (title, grid geometry),
//! the colours of its cells, their causal shape, and that labels and a colour bar were drawn
//! around the grid.

// Each test crate compiles this module and uses only part of it.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};

/// A decoded PNG: size, RGB bytes and every text chunk (tEXt and iTXt) by keyword.
pub struct Png {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
    pub text: HashMap<String, String>,
}

impl Png {
    fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let at = (y * self.width + x) * 3;
        [self.rgb[at], self.rgb[at + 1], self.rgb[at + 2]]
    }
}

/// Decodes an 8-bit RGB PNG.
pub fn decode_png(bytes: &[u8]) -> Png {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut buf).expect("PNG data");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.buffer_size());
    let mut text = HashMap::new();
    let meta = reader.info();
    for chunk in &meta.uncompressed_latin1_text {
        text.insert(chunk.keyword.clone(), chunk.text.clone());
    }
    for chunk in &meta.utf8_text {
        text.insert(chunk.keyword.clone(), chunk.get_text().expect("iTXt text"));
    }
    Png {
        width: info.width as usize,
        height: info.height as usize,
        rgb: buf,
        text,
    }
}

/// Where the grid of cells is, from the figure's `llmrt:grid` chunk: (left, top, cell, n).
pub fn grid(png: &Png) -> (usize, usize, usize, usize) {
    let g = png
        .text
        .get("llmrt:grid")
        .expect("the llmrt:grid text chunk");
    let v: Vec<usize> = g
        .split(' ')
        .map(|x| x.parse().expect("grid number"))
        .collect();
    assert_eq!(v.len(), 4, "grid chunk {g:?}");
    (v[0], v[1], v[2], v[3])
}

/// Checks a heatmap figure of `n` tokens: the grid has `n` × `n` cells, the cells above the
/// diagonal share one colour distinct from every cell on it, the cells are many colours, the
/// figure is larger than the grid, and there is dark ink (labels, ticks) left of the grid, below
/// it and right of it. Returns the decoded figure and its cell size.
pub fn assert_heatmap(bytes: &[u8], n: usize) -> (Png, usize) {
    let png = decode_png(bytes);
    let (left, top, cell, grid_n) = grid(&png);
    assert_eq!(grid_n, n, "tokens in the grid");
    assert!(cell > 0);
    let side = n * cell;
    assert!(
        png.width > left + side + 30 && png.height > top + side + 30 && left > 30 && top > 10,
        "room for labels, title and colour bar: {}×{} around a {side}-pixel grid at ({left}, {top})",
        png.width,
        png.height
    );
    let cell_colour = |row: usize, col: usize| {
        png.pixel(left + col * cell + cell / 2, top + row * cell + cell / 2)
    };
    let mut colours = HashSet::new();
    let future = cell_colour(0, n - 1);
    for i in 0..n {
        for j in 0..n {
            colours.insert(cell_colour(i, j));
        }
        for j in i + 1..n {
            assert_eq!(
                cell_colour(i, j),
                future,
                "cell [{i}][{j}] above the diagonal"
            );
        }
        assert_ne!(cell_colour(i, i), future, "diagonal cell {i}");
    }
    assert!(
        n < 4 || colours.len() > 4,
        "only {} cell colours",
        colours.len()
    );
    let ink = |x0: usize, x1: usize, y0: usize, y1: usize| {
        let mut dark = 0;
        for y in y0..y1 {
            for x in x0..x1 {
                let [r, g, b] = png.pixel(x, y);
                dark += usize::from(u32::from(r) + u32::from(g) + u32::from(b) < 200);
            }
        }
        dark
    };
    assert!(ink(0, left, top, top + side) > 20, "row labels");
    assert!(
        ink(left, left + side, top + side, png.height) > 20,
        "column labels"
    );
    assert!(
        ink(left + side, png.width, top, top + side) > 20,
        "colour bar ticks"
    );
    assert!(ink(0, png.width, 0, top) > 20, "title");
    (png, cell)
}
