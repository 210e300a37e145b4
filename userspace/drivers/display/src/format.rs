//! How pixels are laid out in a framebuffer.

/// The widest pixel drawn on.
pub const MAX_BYTES_PER_PIXEL: usize = 8;

/// A colour, 8 bits per channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// This colour at `intensity`/255 of its brightness (glyph edges are
    /// anti-aliased).
    pub fn scaled(self, intensity: u8) -> Rgb {
        let scale = |c: u8| ((u16::from(c) * u16::from(intensity)) / 255) as u8;
        Rgb(scale(self.0), scale(self.1), scale(self.2))
    }
}

/// The order of the colour bytes in one pixel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelLayout {
    /// Red, green, blue, then any padding byte.
    Rgb,
    /// Blue, green, red, then any padding byte (what QEMU's `-vga std`
    /// and most UEFI GOP modes give).
    Bgr,
    /// One grey byte per pixel.
    Gray,
}

/// A framebuffer's geometry, in pixels and bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FramebufferFormat {
    pub width: usize,
    pub height: usize,
    /// Pixels from the start of one row to the start of the next.
    pub stride: usize,
    pub bytes_per_pixel: usize,
    pub layout: PixelLayout,
}

/// Why a framebuffer cannot be drawn on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatError {
    /// Narrower or lower than one character cell, or a stride below the width.
    TooSmall,
    /// Fewer bytes per pixel than the layout needs, or more than 8.
    BytesPerPixel,
    /// The buffer is shorter than `stride * height * bytes_per_pixel`.
    BufferTooShort { needed: usize, have: usize },
}

impl FramebufferFormat {
    /// Bytes from the start of one row to the start of the next.
    pub fn row_bytes(&self) -> usize {
        self.stride * self.bytes_per_pixel
    }

    /// Checks that this format describes `buffer_len` bytes sensibly.
    pub fn validate(&self, buffer_len: usize) -> Result<(), FormatError> {
        if self.width < crate::CELL_WIDTH
            || self.height < crate::CELL_HEIGHT
            || self.stride < self.width
        {
            return Err(FormatError::TooSmall);
        }
        let needed_bpp = match self.layout {
            PixelLayout::Rgb | PixelLayout::Bgr => 3,
            PixelLayout::Gray => 1,
        };
        if self.bytes_per_pixel < needed_bpp || self.bytes_per_pixel > MAX_BYTES_PER_PIXEL {
            return Err(FormatError::BytesPerPixel);
        }
        let needed = self
            .row_bytes()
            .checked_mul(self.height)
            .ok_or(FormatError::TooSmall)?;
        if buffer_len < needed {
            return Err(FormatError::BufferTooShort {
                needed,
                have: buffer_len,
            });
        }
        Ok(())
    }

    /// Writes one pixel's bytes for `colour` into `out` (at least
    /// `bytes_per_pixel` long). Padding bytes are zeroed.
    pub fn encode(&self, colour: Rgb, out: &mut [u8]) {
        let Rgb(r, g, b) = colour;
        out[..self.bytes_per_pixel].fill(0);
        match self.layout {
            PixelLayout::Rgb => out[..3].copy_from_slice(&[r, g, b]),
            PixelLayout::Bgr => out[..3].copy_from_slice(&[b, g, r]),
            PixelLayout::Gray => {
                out[0] = ((u16::from(r) * 77 + u16::from(g) * 150 + u16::from(b) * 29) >> 8) as u8
            }
        }
    }

    /// The colour of the pixel whose bytes start `out` (the inverse of
    /// [`encode`](Self::encode), grey read back as grey).
    pub fn decode(&self, bytes: &[u8]) -> Rgb {
        match self.layout {
            PixelLayout::Rgb => Rgb(bytes[0], bytes[1], bytes[2]),
            PixelLayout::Bgr => Rgb(bytes[2], bytes[1], bytes[0]),
            PixelLayout::Gray => Rgb(bytes[0], bytes[0], bytes[0]),
        }
    }
}
