//! The terminal model and its pixels.

use pandagen_display::{
    palette, FormatError, FramebufferFormat, PixelLayout, Rgb, TextScreen, CELL_HEIGHT, CELL_WIDTH,
};

fn format(cols: usize, rows: usize, layout: PixelLayout) -> FramebufferFormat {
    FramebufferFormat {
        width: cols * CELL_WIDTH + 3,
        height: rows * CELL_HEIGHT + 5,
        stride: cols * CELL_WIDTH + 10,
        bytes_per_pixel: 4,
        layout,
    }
}

fn screen(cols: usize, rows: usize) -> TextScreen<Vec<u8>> {
    let f = format(cols, rows, PixelLayout::Bgr);
    TextScreen::new(vec![0xaa; f.row_bytes() * f.height], f).unwrap()
}

/// The colours of the pixels of one character cell.
fn cell_pixels(s: &TextScreen<Vec<u8>>, col: usize, row: usize) -> Vec<Rgb> {
    let f = *s.format();
    let mut out = Vec::new();
    for y in 0..CELL_HEIGHT {
        for x in 0..CELL_WIDTH {
            let at =
                ((row * CELL_HEIGHT + y) * f.stride + col * CELL_WIDTH + x) * f.bytes_per_pixel;
            out.push(f.decode(&s.pixels()[at..]));
        }
    }
    out
}

fn is_blank(pixels: &[Rgb]) -> bool {
    pixels.iter().all(|&p| p == palette::BACKGROUND)
}

#[test]
fn text_lands_in_cells_and_the_cursor_follows() {
    let mut s = screen(20, 4);
    s.write_str("hi");
    assert_eq!(s.row_text(0), "hi");
    assert_eq!(s.cursor(), (2, 0));
    assert!(!is_blank(&cell_pixels(&s, 0, 0)));
    assert!(!is_blank(&cell_pixels(&s, 1, 0)));
    // The cursor is drawn under its cell; the cell after it is empty.
    assert!(!is_blank(&cell_pixels(&s, 2, 0)));
    assert!(is_blank(&cell_pixels(&s, 3, 0)));
}

#[test]
fn a_fresh_screen_is_background_everywhere_but_the_cursor() {
    let s = screen(10, 3);
    let f = *s.format();
    let cursor = cell_pixels(&s, 0, 0);
    assert!(cursor.contains(&palette::TEXT));
    for row in 0..3 {
        for col in 0..10 {
            if (col, row) != (0, 0) {
                assert!(is_blank(&cell_pixels(&s, col, row)), "cell {col},{row}");
            }
        }
    }
    // Pixels beyond the text grid (the ragged right and bottom) are cleared too.
    let at = ((f.height - 1) * f.stride + f.width - 1) * f.bytes_per_pixel;
    assert_eq!(f.decode(&s.pixels()[at..]), palette::BACKGROUND);
}

#[test]
fn colours_follow_the_pixel_layout() {
    for layout in [PixelLayout::Rgb, PixelLayout::Bgr] {
        let f = format(4, 2, layout);
        let mut s = TextScreen::new(vec![0; f.row_bytes() * f.height], f).unwrap();
        s.set_colour(palette::ERROR);
        s.write_str("M");
        // The most lit pixel of the glyph is the error colour at some
        // intensity, its bytes in the layout's order.
        let mut brightest_px = [0u8; 3];
        for y in 0..CELL_HEIGHT - 2 {
            for x in 0..CELL_WIDTH {
                let at = (y * f.stride + x) * 4;
                let px = &s.pixels()[at..at + 3];
                if px.iter().map(|&b| u32::from(b)).sum::<u32>()
                    > brightest_px.iter().map(|&b| u32::from(b)).sum::<u32>()
                {
                    brightest_px.copy_from_slice(px);
                }
            }
        }
        let lit = f.decode(&brightest_px);
        assert!(
            (1..=255).any(|i| palette::ERROR.scaled(i) == lit),
            "{layout:?}: brightest pixel {lit:?} is not the error colour"
        );
        let order_ok = match layout {
            PixelLayout::Rgb => brightest_px[0] > brightest_px[2],
            _ => brightest_px[2] > brightest_px[0],
        };
        assert!(order_ok, "{layout:?}: bytes {brightest_px:?}");
        assert_eq!(s.colour_at(0, 0), palette::ERROR);
    }
}

#[test]
fn lines_scroll_up_pixel_for_pixel() {
    // Eight rows scroll by a quarter screen: two lines at a time.
    let rows = 8;
    let mut s = screen(12, rows);
    for k in 0..rows {
        s.write_str(&format!("line {k}\n"));
    }
    // Eight lines and a final newline on eight rows: the last newline
    // scrolled by two, leaving lines 2..=7 and the cursor on the first of
    // the two opened rows.
    for row in 0..6 {
        assert_eq!(s.row_text(row), format!("line {}", row + 2));
    }
    assert_eq!(
        (s.row_text(6), s.row_text(7)),
        (String::new(), String::new())
    );
    assert_eq!(s.cursor(), (0, 6));
    // The scrolled pixels equal those of the same text written in place.
    let mut fresh = screen(12, rows);
    for k in 2..rows {
        fresh.write_str(&format!("line {k}\n"));
    }
    for col in 0..12 {
        for row in 0..rows {
            assert_eq!(
                cell_pixels(&s, col, row),
                cell_pixels(&fresh, col, row),
                "cell {col},{row}"
            );
        }
    }
    // A screen of fewer than four rows scrolls one line at a time.
    let mut small = screen(12, 3);
    small.write_str("a\nb\nc\nd");
    assert_eq!(
        (small.row_text(0), small.row_text(1), small.row_text(2)),
        ("b".into(), "c".into(), "d".into())
    );
}

#[test]
fn long_lines_wrap() {
    let mut s = screen(5, 3);
    s.write_str("abcdefg");
    assert_eq!(s.row_text(0), "abcde");
    assert_eq!(s.row_text(1), "fg");
    // Exactly full: the wrap waits for the next character.
    let mut s = screen(5, 3);
    s.write_str("abcde");
    assert_eq!(s.row_text(1), "");
    s.write_str("\n");
    assert_eq!(s.cursor(), (0, 1));
}

#[test]
fn the_console_line_editor_sequences_work() {
    let mut s = screen(20, 2);
    // History recall: cursor left over the shown text, erase, new text.
    s.write_str("pandagen> abc\x1b[3D\x1b[Kuptime");
    assert_eq!(s.row_text(0), "pandagen> uptime");
    s.write_str("\r\x1b[K");
    assert_eq!(s.row_text(0), "");
    s.write_str("ab\x08c");
    assert_eq!(s.row_text(0), "ac");
    s.write_str("\x1b[5Cx");
    assert_eq!(s.row_text(0), "ac     x");
    s.write_str("\x1b[2J");
    assert_eq!((s.row_text(0), s.cursor()), (String::new(), (0, 0)));
}

#[test]
fn colour_sequences_select_and_reset() {
    let mut s = screen(20, 2);
    s.write_str("\x1b[31mr\x1b[0mn\x1b[92mg\x1b[39md");
    assert_eq!(s.colour_at(0, 0), palette::ANSI[1]);
    assert_eq!(s.colour_at(1, 0), palette::TEXT);
    assert_eq!(s.colour_at(2, 0), palette::BRIGHT[2]);
    assert_eq!(s.colour_at(3, 0), palette::TEXT);
    // A level colour set from outside is what a reset returns to.
    s.set_colour(palette::WARN);
    s.write_str("\x1b[32mx\x1b[0my");
    assert_eq!(s.colour_at(5, 0), palette::WARN);
}

#[test]
fn tabs_and_unicode() {
    let mut s = screen(20, 2);
    s.write_str("a\tb");
    assert_eq!(s.row_text(0), "a       b");
    let mut s = screen(20, 2);
    s.write_str("caf\u{e9} \u{1F600}");
    assert_eq!(s.row_text(0), "caf\u{e9} \u{1F600}");
    // A broken sequence becomes '?', and the byte that broke it is kept.
    let mut s = screen(20, 2);
    s.write_bytes(b"x\xc3y");
    assert_eq!(s.row_text(0), "x?y");
}

#[test]
fn formats_that_cannot_be_drawn_on_are_refused() {
    let f = format(4, 2, PixelLayout::Rgb);
    let short = f.row_bytes() * f.height - 1;
    assert!(matches!(
        TextScreen::new(vec![0; short], f),
        Err(FormatError::BufferTooShort { .. })
    ));
    let tiny = FramebufferFormat {
        width: CELL_WIDTH - 1,
        ..f
    };
    assert_eq!(tiny.validate(usize::MAX), Err(FormatError::TooSmall));
    let narrow_stride = FramebufferFormat {
        stride: f.width - 1,
        ..f
    };
    assert_eq!(
        narrow_stride.validate(usize::MAX),
        Err(FormatError::TooSmall)
    );
    let thin = FramebufferFormat {
        bytes_per_pixel: 2,
        ..f
    };
    assert_eq!(thin.validate(usize::MAX), Err(FormatError::BytesPerPixel));
    let gray = FramebufferFormat {
        bytes_per_pixel: 1,
        layout: PixelLayout::Gray,
        ..f
    };
    assert_eq!(gray.validate(gray.row_bytes() * gray.height), Ok(()));
}

#[test]
fn any_byte_stream_is_safe() {
    let mut s = screen(9, 3);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut bytes = Vec::new();
    for _ in 0..50_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Bias towards the interesting bytes.
        bytes.push(match x % 8 {
            0 => 0x1b,
            1 => b'[',
            2 => b'\n',
            3 => (x >> 8) as u8 % 10 + b'0',
            _ => (x >> 16) as u8,
        });
    }
    for chunk in bytes.chunks(97) {
        s.write_bytes(chunk);
        let (col, row) = s.cursor();
        assert!(col < 9 && row < 3);
    }
}

#[test]
fn firmware_modes_from_640x480_to_1920x1080_fill_their_width_and_scroll() {
    // The modes BIOS (VESA, 3 bytes a pixel) and UEFI (GOP, 4) firmware
    // hand over, with the row padding some firmware adds to the stride.
    let modes = [
        (640, 480, 3, 0),
        (800, 600, 4, 0),
        (1024, 768, 4, 64),
        (1280, 720, 3, 0),
        (1280, 800, 4, 0),
        (1920, 1080, 4, 128),
    ];
    for (width, height, bytes_per_pixel, padding) in modes {
        let f = FramebufferFormat {
            width,
            height,
            stride: width + padding,
            bytes_per_pixel,
            layout: PixelLayout::Bgr,
        };
        let mut s = TextScreen::new(vec![0xaa; f.row_bytes() * height], f).unwrap();
        let (cols, rows) = s.size();
        assert_eq!(
            (cols, rows),
            (width / CELL_WIDTH, height / CELL_HEIGHT),
            "{width}x{height}"
        );
        // One more line than the screen holds: the first scrolls away,
        // and a full-width line keeps its last character.
        let full: String = (0..cols).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        for k in 0..rows {
            s.write_str(&format!("{k}\n"));
        }
        s.write_str(&full);
        assert_ne!(s.row_text(0), "0", "{width}x{height} did not scroll");
        // The full line wrapped the cursor to the next row (scrolling
        // again if that was the last), so look for where it landed.
        let at = (0..rows)
            .find(|&row| s.row_text(row) == full)
            .unwrap_or_else(|| panic!("{width}x{height}: the full-width line is not on screen"));
        assert!(!is_blank(&cell_pixels(&s, cols - 1, at)));
        // Nothing is drawn in a row's padding past the visible width.
        for y in 0..height {
            let row = &s.pixels()[y * f.row_bytes()..(y + 1) * f.row_bytes()];
            assert!(
                row[width * bytes_per_pixel..].iter().all(|&b| b == 0xaa),
                "{width}x{height}: row {y}'s padding was written"
            );
        }
    }
}
