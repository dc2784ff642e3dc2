//! The attention heatmap as a figure that reads on its own: title, token pieces on both axes,
//! the grid of weights and a colour bar, drawn with plotters into an RGB buffer and encoded as a
//! PNG whose text chunks repeat the title and record where the grid is.
//!
//! Layout, left to right: row labels, the grid, the colour bar and its tick labels; top to bottom:
//! the title, the grid, the column labels (rotated). Cells keep the size asked for; when a cell is
//! smaller than a line of text only every k-th token is labelled.

use std::sync::Once;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle, FontTransform};

use super::{visible_piece, weight_colour, Explanation, FUTURE_RGB, MAX_PNG_SIDE};
use crate::{Error, Result};

/// DejaVu Sans: free to redistribute (Bitstream Vera licence, `assets/fonts/`), and it covers
/// Latin, Greek, Cyrillic, Armenian, Hebrew, Arabic and many symbols, which token pieces use.
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const FAMILY: &str = "llmrt-sans";

const TEXT_PX: u32 = 12;
const TITLE_PX: u32 = 15;
const MARGIN: u32 = 8;
/// Labels are cut to this many characters (an ellipsis marks the cut).
const LABEL_CHARS: usize = 14;
/// Room one character of a label takes: generous for the widest glyphs at `TEXT_PX`.
const LABEL_CHAR_PX: u32 = 8;
const TITLE_BAND: u32 = TITLE_PX + 2 * MARGIN;
const BAR_GAP: u32 = 14;
const BAR_WIDTH: u32 = 16;
const BAR_LABELS: u32 = 40;
/// Weights at which the colour bar is labelled (the colour follows √weight, so small weights get
/// room).
const BAR_TICKS: [f32; 6] = [0.0, 0.01, 0.05, 0.2, 0.5, 1.0];

/// PNG `tEXt` keyword under which the grid's geometry is stored: `left top cell n`, in pixels
/// and tokens, so tools (and our tests) can read the cells back.
pub const GRID_KEYWORD: &str = "llmrt:grid";

/// Where the grid sits in the figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    pub left: u32,
    pub top: u32,
    pub cell: u32,
    pub n: u32,
}

impl Explanation {
    /// The attention matrix as a PNG figure: one `cell_px` × `cell_px` square per (token, token)
    /// pair, row = the attending token, column = the attended one, the viridis colour of the
    /// square root of the weight (so that small weights stay visible), positions a token cannot
    /// attend to (after it) light grey; token pieces label the rows and columns, a colour bar
    /// gives the scale and the title names the layer, head and model. The PNG's `Title` text
    /// chunk holds the title, [`GRID_KEYWORD`] the grid's place.
    pub fn heatmap_png(&self, cell_px: usize) -> Result<Vec<u8>> {
        let n = self.attention.len();
        let too_big = || {
            Error::InvalidArgument(format!(
                "heatmap of {n} tokens with {cell_px}-pixel cells: the grid side must be 1..={MAX_PNG_SIDE} pixels"
            ))
        };
        let side = n
            .checked_mul(cell_px)
            .filter(|&s| s > 0 && s <= MAX_PNG_SIDE)
            .ok_or_else(too_big)? as u32;
        // The label bands are as wide as the longest label needs.
        let longest = self
            .attention_tokens()
            .iter()
            .map(|t| short_label(&t.piece).chars().count() as u32)
            .max()
            .unwrap_or(0);
        let label_px = (longest * LABEL_CHAR_PX + 6).max(24);
        let grid = Grid {
            left: MARGIN + label_px,
            top: TITLE_BAND,
            cell: cell_px as u32,
            n: n as u32,
        };
        let width = grid.left + side + BAR_GAP + BAR_WIDTH + BAR_LABELS + MARGIN;
        let height = grid.top + side + label_px + MARGIN;
        let mut pixels = Vec::new();
        let bytes = width as usize * height as usize * 3;
        pixels.try_reserve_exact(bytes).map_err(|_| {
            Error::InvalidArgument(format!("no memory for a {width}×{height} heatmap"))
        })?;
        pixels.resize(bytes, 0);
        let title = self.heatmap_title();
        self.draw(&mut pixels, (width, height), grid, &title)
            .map_err(|e| Error::InvalidArgument(format!("cannot draw the heatmap: {e}")))?;
        encode_png(&pixels, (width, height), &title, grid)
    }

    fn draw(
        &self,
        pixels: &mut [u8],
        size: (u32, u32),
        grid: Grid,
        title: &str,
    ) -> std::result::Result<(), Box<dyn std::error::Error>> {
        register_font_once()?;
        let root = BitMapBackend::with_buffer(pixels, size).into_drawing_area();
        root.fill(&WHITE)?;
        let text = TextStyle::from((FAMILY, TEXT_PX).into_font()).color(&BLACK);
        let title_style = TextStyle::from((FAMILY, TITLE_PX).into_font()).color(&BLACK);
        root.draw(&Text::new(
            title.to_string(),
            (MARGIN as i32, MARGIN as i32),
            title_style,
        ))?;

        let (cell, n) = (grid.cell as i32, grid.n as usize);
        let (left, top) = (grid.left as i32, grid.top as i32);
        for (i, weights) in self.attention.iter().enumerate() {
            for j in 0..n {
                let rgb = weights.get(j).map_or(FUTURE_RGB, |&w| weight_colour(w));
                let (x, y) = (left + j as i32 * cell, top + i as i32 * cell);
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    RGBColor(rgb[0], rgb[1], rgb[2]).filled(),
                ))?;
            }
        }

        // Labels: every k-th token, so that labels never overlap.
        let every = ((TEXT_PX as i32 + 2 + cell - 1) / cell).max(1) as usize;
        let side = cell * n as i32;
        let row_label = text.clone().pos(Pos::new(HPos::Right, VPos::Center));
        let column_label = text
            .clone()
            .transform(FontTransform::Rotate90)
            .pos(Pos::new(HPos::Left, VPos::Center));
        for (i, token) in self.attention_tokens().into_iter().enumerate() {
            if i % every != 0 {
                continue;
            }
            let label = short_label(&token.piece);
            let middle = i as i32 * cell + cell / 2;
            root.draw(&Text::new(
                label.clone(),
                (left - 4, top + middle),
                row_label.clone(),
            ))?;
            root.draw(&Text::new(
                label,
                (left + middle, top + side + 4),
                column_label.clone(),
            ))?;
        }

        // The colour bar: weight 1 at the top, 0 at the bottom, on the same √ scale.
        let bar_left = left + side + BAR_GAP as i32;
        let bar_height = side.max(1);
        for y in 0..bar_height {
            let fraction = 1.0 - y as f32 / (bar_height - 1).max(1) as f32;
            let [r, g, b] = weight_colour(fraction * fraction);
            root.draw(&Rectangle::new(
                [
                    (bar_left, top + y),
                    (bar_left + BAR_WIDTH as i32, top + y + 1),
                ],
                RGBColor(r, g, b).filled(),
            ))?;
        }
        let tick_label = text.pos(Pos::new(HPos::Left, VPos::Center));
        for weight in BAR_TICKS {
            let y = top + ((1.0 - weight.sqrt()) * (bar_height - 1) as f32).round() as i32;
            let right = bar_left + BAR_WIDTH as i32;
            root.draw(&PathElement::new([(right, y), (right + 3, y)], BLACK))?;
            root.draw(&Text::new(
                format!("{weight}"),
                (right + 5, y),
                tick_label.clone(),
            ))?;
        }
        root.present()?;
        Ok(())
    }
}

/// A token piece as a label: whitespace made visible, cut to [`LABEL_CHARS`].
fn short_label(piece: &str) -> String {
    let visible = visible_piece(piece);
    if visible.chars().count() <= LABEL_CHARS {
        return visible;
    }
    let mut cut: String = visible.chars().take(LABEL_CHARS - 1).collect();
    cut.push('…');
    cut
}

fn register_font_once() -> std::result::Result<(), Box<dyn std::error::Error>> {
    static REGISTER: Once = Once::new();
    let mut outcome = Ok(());
    REGISTER.call_once(|| {
        outcome = register_font(FAMILY, FontStyle::Normal, FONT)
            .map_err(|_| "the bundled font does not parse".to_string());
    });
    Ok(outcome?)
}

/// RGB pixels as PNG bytes, with the title and the grid's geometry as text chunks.
fn encode_png(
    pixels: &[u8],
    (width, height): (u32, u32),
    title: &str,
    grid: Grid,
) -> Result<Vec<u8>> {
    let png_error = |e: png::EncodingError| {
        Error::InvalidArgument(format!("cannot encode the heatmap PNG: {e}"))
    };
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    // tEXt is Latin-1: the title goes in an international (UTF-8) chunk.
    encoder
        .add_itxt_chunk("Title".to_string(), title.to_string())
        .map_err(png_error)?;
    encoder
        .add_text_chunk(
            "Software".to_string(),
            format!("llmrt {}", env!("CARGO_PKG_VERSION")),
        )
        .map_err(png_error)?;
    encoder
        .add_text_chunk(
            GRID_KEYWORD.to_string(),
            format!("{} {} {} {}", grid.left, grid.top, grid.cell, grid.n),
        )
        .map_err(png_error)?;
    let mut writer = encoder.write_header().map_err(png_error)?;
    writer.write_image_data(pixels).map_err(png_error)?;
    writer.finish().map_err(png_error)?;
    Ok(out)
}
