//! The one font: Noto Sans Mono, regular, rasterised at 16 pixels.

use noto_sans_mono_bitmap::{get_raster, get_raster_width, FontWeight, RasterHeight};

const WEIGHT: FontWeight = FontWeight::Regular;
const HEIGHT: RasterHeight = RasterHeight::Size16;

/// Width of one character cell in pixels.
pub const CELL_WIDTH: usize = get_raster_width(WEIGHT, HEIGHT);
/// Height of one character cell in pixels.
pub const CELL_HEIGHT: usize = HEIGHT.val();

/// The glyph for `c`, one intensity (0..=255) per pixel, row by row.
/// Characters the font lacks are drawn as `?`.
pub fn glyph(c: char) -> &'static [&'static [u8]] {
    get_raster(c, WEIGHT, HEIGHT)
        .or_else(|| get_raster('?', WEIGHT, HEIGHT))
        .map(|r| r.raster())
        .unwrap_or(&[])
}
