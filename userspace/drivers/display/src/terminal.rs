//! The terminal: a grid of character cells drawn into a framebuffer.

extern crate alloc;

use crate::font::{glyph, CELL_HEIGHT, CELL_WIDTH};
use crate::format::{FormatError, FramebufferFormat, Rgb, MAX_BYTES_PER_PIXEL};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

/// The colours the screen uses.
pub mod palette {
    use crate::Rgb;

    pub const BACKGROUND: Rgb = Rgb(0x00, 0x00, 0x00);
    /// Ordinary text, and the cursor.
    pub const TEXT: Rgb = Rgb(0xcc, 0xcc, 0xcc);
    pub const ERROR: Rgb = Rgb(0xff, 0x55, 0x55);
    pub const WARN: Rgb = Rgb(0xff, 0xd7, 0x00);
    pub const DEBUG: Rgb = Rgb(0x88, 0x88, 0x88);
    /// `ESC [ 30..=37 m`.
    pub const ANSI: [Rgb; 8] = [
        Rgb(0x00, 0x00, 0x00),
        Rgb(0xcd, 0x31, 0x31),
        Rgb(0x0d, 0xbc, 0x79),
        Rgb(0xe5, 0xe5, 0x10),
        Rgb(0x24, 0x72, 0xc8),
        Rgb(0xbc, 0x3f, 0xbc),
        Rgb(0x11, 0xa8, 0xcd),
        Rgb(0xe5, 0xe5, 0xe5),
    ];
    /// `ESC [ 90..=97 m`.
    pub const BRIGHT: [Rgb; 8] = [
        Rgb(0x66, 0x66, 0x66),
        Rgb(0xf1, 0x4c, 0x4c),
        Rgb(0x23, 0xd1, 0x8b),
        Rgb(0xf5, 0xf5, 0x43),
        Rgb(0x3b, 0x8e, 0xea),
        Rgb(0xd6, 0x70, 0xd6),
        Rgb(0x29, 0xb8, 0xdb),
        Rgb(0xff, 0xff, 0xff),
    ];
}

/// Pixel rows at the bottom of a cell that the cursor fills.
const CURSOR_ROWS: usize = 2;
/// Parameters kept of one `ESC [` sequence; later ones are ignored.
const MAX_PARAMS: usize = 4;
const TAB: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cell {
    c: char,
    colour: Rgb,
}

const BLANK: Cell = Cell {
    c: ' ',
    colour: palette::TEXT,
};

/// Where the byte parser is.
#[derive(Clone, Copy, Debug)]
enum Parser {
    Ground,
    /// After `ESC`.
    Escape,
    /// Inside `ESC [`, before the final byte.
    Csi {
        params: [u16; MAX_PARAMS],
        count: usize,
    },
    /// Inside a UTF-8 sequence: bytes so far and bytes it needs.
    Utf8 {
        bytes: [u8; 4],
        have: usize,
        need: usize,
    },
}

/// A text console drawn into the framebuffer `B`.
pub struct TextScreen<B> {
    fb: B,
    format: FramebufferFormat,
    cols: usize,
    rows: usize,
    col: usize,
    row: usize,
    colour: Rgb,
    default_colour: Rgb,
    cells: Vec<Cell>,
    parser: Parser,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> TextScreen<B> {
    /// A cleared screen on `fb`, with the cursor at the top left.
    pub fn new(fb: B, format: FramebufferFormat) -> Result<Self, FormatError> {
        format.validate(fb.as_ref().len())?;
        let cols = format.width / CELL_WIDTH;
        let rows = format.height / CELL_HEIGHT;
        let mut screen = TextScreen {
            fb,
            format,
            cols,
            rows,
            col: 0,
            row: 0,
            colour: palette::TEXT,
            default_colour: palette::TEXT,
            cells: vec![BLANK; cols * rows],
            parser: Parser::Ground,
        };
        screen.clear_pixels(0, format.height);
        screen.draw_cursor(true);
        Ok(screen)
    }

    /// A screen on `fb` that already shows text the previous owner drew:
    /// nothing is cleared, and writing continues at column `col` (up to the
    /// number of columns: the next character wraps first) of row `row`,
    /// both clamped to the screen. The old text's pixels stay and scroll
    /// with the rest; its characters are not known, so they count as
    /// blanks to the cell redraws (which only the cursor's cell needs:
    /// the previous owner leaves its cursor past its last character).
    pub fn resume(
        fb: B,
        format: FramebufferFormat,
        col: usize,
        row: usize,
    ) -> Result<Self, FormatError> {
        format.validate(fb.as_ref().len())?;
        let cols = format.width / CELL_WIDTH;
        let rows = format.height / CELL_HEIGHT;
        Ok(TextScreen {
            fb,
            format,
            cols,
            rows,
            col: col.min(cols),
            row: row.min(rows - 1),
            colour: palette::TEXT,
            default_colour: palette::TEXT,
            cells: vec![BLANK; cols * rows],
            parser: Parser::Ground,
        })
    }

    /// Where the next character goes: the column (which may equal the
    /// number of columns, when the next character wraps first) and the row.
    pub fn position(&self) -> (usize, usize) {
        (self.col, self.row)
    }

    /// Columns and rows of text.
    pub fn size(&self) -> (usize, usize) {
        (self.cols, self.rows)
    }

    /// The cursor's column and row.
    pub fn cursor(&self) -> (usize, usize) {
        (self.col.min(self.cols - 1), self.row)
    }

    pub fn format(&self) -> &FramebufferFormat {
        &self.format
    }

    /// The framebuffer's bytes.
    pub fn pixels(&self) -> &[u8] {
        &self.fb.as_ref()[..self.format.row_bytes() * self.format.height]
    }

    /// The text of `row`, without trailing blanks.
    pub fn row_text(&self, row: usize) -> String {
        let cells = &self.cells[row * self.cols..(row + 1) * self.cols];
        let text: String = cells.iter().map(|c| c.c).collect();
        String::from(text.trim_end())
    }

    /// The colour of the character at (`col`, `row`).
    pub fn colour_at(&self, col: usize, row: usize) -> Rgb {
        self.cells[row * self.cols + col].colour
    }

    /// The colour text is written in from now on, until a colour escape
    /// sequence or [`reset_colour`](Self::reset_colour).
    pub fn set_colour(&mut self, colour: Rgb) {
        self.default_colour = colour;
        self.colour = colour;
    }

    /// Back to ordinary text colour.
    pub fn reset_colour(&mut self) {
        self.set_colour(palette::TEXT);
    }

    /// Writes `s`.
    pub fn write_str(&mut self, s: &str) {
        self.write_bytes(s.as_bytes());
    }

    /// Writes bytes as a terminal would: printable text (UTF-8), `\n`,
    /// `\r`, backspace, tab, and the escape sequences `ESC [ n m`
    /// (colours), `ESC [ n D`/`C` (cursor left/right), `ESC [ K` (erase to
    /// the end of the line) and `ESC [ 2 J` (clear). Anything else is
    /// dropped.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        self.draw_cursor(false);
        for &b in bytes {
            self.feed(b);
        }
        self.draw_cursor(true);
    }

    fn feed(&mut self, b: u8) {
        self.parser = match self.parser {
            Parser::Ground => self.ground(b),
            Parser::Escape if b == b'[' => Parser::Csi {
                params: [0; MAX_PARAMS],
                count: 0,
            },
            Parser::Escape => Parser::Ground,
            Parser::Csi { params, count } => self.csi(params, count, b),
            Parser::Utf8 { bytes, have, need } => self.utf8(bytes, have, need, b),
        };
    }

    fn ground(&mut self, b: u8) -> Parser {
        match b {
            0x1b => return Parser::Escape,
            b'\n' => self.newline(),
            b'\r' => self.col = 0,
            0x08 => self.col = self.col.min(self.cols).saturating_sub(1),
            b'\t' => {
                let stop = ((self.col / TAB) + 1) * TAB;
                while self.col < stop.min(self.cols) {
                    self.put(' ');
                }
            }
            0x20..=0x7e => self.put(char::from(b)),
            0xc0..=0xf7 => {
                let need = match b {
                    0xc0..=0xdf => 2,
                    0xe0..=0xef => 3,
                    _ => 4,
                };
                return Parser::Utf8 {
                    bytes: [b, 0, 0, 0],
                    have: 1,
                    need,
                };
            }
            // Other control characters, DEL, stray continuation bytes.
            _ => {}
        }
        Parser::Ground
    }

    fn utf8(&mut self, mut bytes: [u8; 4], have: usize, need: usize, b: u8) -> Parser {
        if b & 0xc0 != 0x80 {
            // Not a continuation: the sequence was broken; start over on b.
            self.put('?');
            return self.ground(b);
        }
        bytes[have] = b;
        if have + 1 < need {
            return Parser::Utf8 {
                bytes,
                have: have + 1,
                need,
            };
        }
        let c = core::str::from_utf8(&bytes[..need])
            .ok()
            .and_then(|s| s.chars().next())
            .unwrap_or('?');
        self.put(c);
        Parser::Ground
    }

    fn csi(&mut self, mut params: [u16; MAX_PARAMS], mut count: usize, b: u8) -> Parser {
        match b {
            b'0'..=b'9' if count < MAX_PARAMS => {
                let p = &mut params[count];
                *p = p.saturating_mul(10).saturating_add(u16::from(b - b'0'));
            }
            b';' => count += 1,
            0x40..=0x7e => {
                let given = (count + 1).min(MAX_PARAMS);
                self.execute_csi(&params[..given], b);
                return Parser::Ground;
            }
            // Intermediate and private-marker bytes (`?`, ` `, ...).
            _ => {}
        }
        Parser::Csi { params, count }
    }

    fn execute_csi(&mut self, params: &[u16], command: u8) {
        let n = usize::from(params[0].max(1));
        match command {
            b'm' => params.iter().for_each(|&p| self.select_graphic(p)),
            b'D' => self.col = self.col.min(self.cols).saturating_sub(n),
            b'C' => self.col = (self.col + n).min(self.cols - 1),
            b'K' => {
                let from = match params[0] {
                    0 => self.col.min(self.cols),
                    _ => 0,
                };
                for col in from..self.cols {
                    self.set_cell(col, self.row, BLANK);
                }
            }
            b'J' if params[0] == 2 => {
                self.cells.fill(BLANK);
                self.clear_pixels(0, self.format.height);
                self.col = 0;
                self.row = 0;
            }
            _ => {}
        }
    }

    fn select_graphic(&mut self, p: u16) {
        self.colour = match p {
            0 | 39 => self.default_colour,
            30..=37 => palette::ANSI[usize::from(p - 30)],
            90..=97 => palette::BRIGHT[usize::from(p - 90)],
            _ => self.colour,
        };
    }

    /// Writes `c` at the cursor, wrapping first if the line is full.
    fn put(&mut self, c: char) {
        if self.col >= self.cols {
            self.newline();
        }
        let cell = Cell {
            c,
            colour: self.colour,
        };
        self.set_cell(self.col, self.row, cell);
        self.col += 1;
    }

    fn newline(&mut self) {
        self.col = 0;
        if self.row + 1 < self.rows {
            self.row += 1;
        } else {
            self.scroll();
        }
    }

    /// Lines one scroll moves the text up by: a quarter of the screen, so
    /// a burst of output moves the whole framebuffer once per quarter
    /// screen instead of once per line (a framebuffer copy is the costly
    /// part of drawing text, above all under emulation).
    fn scroll_jump(&self) -> usize {
        (self.rows / 4).max(1)
    }

    /// Moves the text up by [`scroll_jump`](Self::scroll_jump) lines, blanks
    /// the lines that opened at the bottom, and puts the cursor on the
    /// first of them.
    fn scroll(&mut self) {
        let jump = self.scroll_jump();
        let line = CELL_HEIGHT * self.format.row_bytes();
        let text_bytes = self.rows * line;
        self.fb.as_mut().copy_within(jump * line..text_bytes, 0);
        self.clear_pixels((self.rows - jump) * CELL_HEIGHT, self.rows * CELL_HEIGHT);
        self.cells.copy_within(jump * self.cols.., 0);
        let kept = (self.rows - jump) * self.cols;
        self.cells[kept..].fill(BLANK);
        self.row = self.rows - jump;
    }

    fn set_cell(&mut self, col: usize, row: usize, cell: Cell) {
        self.cells[row * self.cols + col] = cell;
        self.draw_cell(col, row, false);
    }

    fn draw_cursor(&mut self, visible: bool) {
        let (col, row) = self.cursor();
        self.draw_cell(col, row, visible);
    }

    fn draw_cell(&mut self, col: usize, row: usize, with_cursor: bool) {
        let cell = self.cells[row * self.cols + col];
        let format = self.format;
        let bpp = format.bytes_per_pixel;
        let raster = glyph(cell.c);
        let fb = self.fb.as_mut();
        for y in 0..CELL_HEIGHT {
            let cursor_row = with_cursor && y >= CELL_HEIGHT - CURSOR_ROWS;
            let start = ((row * CELL_HEIGHT + y) * format.stride + col * CELL_WIDTH) * bpp;
            let line = raster.get(y).copied().unwrap_or(&[]);
            for x in 0..CELL_WIDTH {
                let colour = if cursor_row {
                    palette::TEXT
                } else {
                    let intensity = line.get(x).copied().unwrap_or(0);
                    cell.colour.scaled(intensity)
                };
                let at = start + x * bpp;
                format.encode(colour, &mut fb[at..at + bpp]);
            }
        }
    }

    /// Paints pixel rows `from..to` with the background.
    fn clear_pixels(&mut self, from: usize, to: usize) {
        let format = self.format;
        let bpp = format.bytes_per_pixel;
        let mut pixel = [0u8; MAX_BYTES_PER_PIXEL];
        format.encode(palette::BACKGROUND, &mut pixel[..bpp]);
        let row_bytes = format.row_bytes();
        let visible = format.width * bpp;
        let fb = self.fb.as_mut();
        for y in from..to {
            let row = &mut fb[y * row_bytes..y * row_bytes + visible];
            if pixel.iter().all(|&b| b == 0) {
                // One memset: what clearing to black costs on a slow CPU.
                row.fill(0);
            } else {
                for px in row.chunks_exact_mut(bpp) {
                    px.copy_from_slice(&pixel[..bpp]);
                }
            }
        }
    }
}
