//! Checking what the screen shows: a QEMU screenshot against the text the
//! console wrote, rendered with the same terminal model and font the kernel
//! draws with (`pandagen-display`), pixel for pixel.
//!
//! Everything the kernel writes to the serial port from its banner on is
//! also drawn on the screen, log lines in their level's colour: by the
//! kernel's early console until the ring-3 display service takes the
//! screen over, then by that service, in the same order. Replaying
//! that serial output through a [`TextScreen`] of the screenshot's size
//! therefore gives the exact image the screen must show.

use std::path::Path;
use std::time::{Duration, Instant};

use pandagen_display::{palette, FramebufferFormat, PixelLayout, Rgb, TextScreen};

use crate::fail;
use crate::process::TaskResult;
use crate::qemu::{find_bytes, Session};
use crate::qmp::Qmp;

/// How long the serial output must stay unchanged before a screenshot: the
/// kernel draws a write on the screen right after sending it to the port.
const QUIET: Duration = Duration::from_millis(750);

/// When a suite takes its screenshot, and what it types afterwards.
#[derive(Clone, Copy, Debug)]
pub struct ScreenCheck {
    /// The screenshot is taken once this text has appeared `count` times
    /// in the serial output and the output has then gone quiet.
    pub wait_for: &'static str,
    pub count: usize,
    /// Typed on the PS/2 keyboard after the screenshot, step by step
    /// (e.g. `shutdown\r` once the screenshot is taken).
    pub then: &'static [crate::keyboard::KeyStep],
}

/// A screenshot and the serial output that had been written when it was
/// taken.
pub struct Taken {
    pub shot: Screenshot,
    pub serial: Vec<u8>,
}

/// Takes `check`'s screenshot through `monitor`, keeping it as `ppm` and
/// `png`, once the console has gone quiet.
pub fn take(
    check: &ScreenCheck,
    session: &Session,
    monitor: &mut Qmp,
    ppm: &Path,
    png: &Path,
) -> Result<Taken, String> {
    let serial = wait_until_quiet(check, session)?;
    monitor.screendump(ppm).map_err(|e| e.0)?;
    if session.serial() != serial {
        return Err("the console wrote while the screenshot was taken".into());
    }
    let shot = Screenshot::read_ppm(ppm).map_err(|e| e.0)?;
    write_png(png, shot.width, shot.height, &shot.rgb).map_err(|e| e.0)?;
    Ok(Taken { shot, serial })
}

/// Waits for `check.count` appearances of `check.wait_for`, then for the
/// output to stay unchanged for [`QUIET`]; returns the output.
fn wait_until_quiet(check: &ScreenCheck, session: &Session) -> Result<Vec<u8>, String> {
    let mut last = Vec::new();
    let mut since = Instant::now();
    loop {
        if Instant::now() >= session.deadline() {
            return Err(format!(
                "`{}` did not appear {} times before the timeout",
                check.wait_for, check.count
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
        let now = session.serial();
        if now != last {
            last = now;
            since = Instant::now();
            continue;
        }
        if count(&last, check.wait_for.as_bytes()) >= check.count && since.elapsed() >= QUIET {
            return Ok(last);
        }
    }
}

fn count(mut hay: &[u8], needle: &[u8]) -> usize {
    let mut n = 0;
    while let Some(at) = find_bytes(hay, needle) {
        n += 1;
        hay = &hay[at + needle.len()..];
    }
    n
}

/// What the display service prints once it has taken the screen over
/// from the kernel: everything drawn after it is the service's.
pub const TAKE_OVER_LINE: &str = "display: took the screen over from the kernel";

/// The first line the kernel draws on the screen (the banner's rule).
const BANNER_RULE: &str = "==============================================================";

/// A screenshot as QEMU's `screendump` writes it (binary PPM, RGB).
pub struct Screenshot {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

impl Screenshot {
    pub fn read_ppm(path: &Path) -> TaskResult<Screenshot> {
        let bytes = std::fs::read(path).map_err(|e| fail!("reading {}: {e}", path.display()))?;
        parse_ppm(&bytes).map_err(|e| fail!("{}: {e}", path.display()))
    }

    fn pixel(&self, x: usize, y: usize) -> Rgb {
        let at = (y * self.width + x) * 3;
        Rgb(self.rgb[at], self.rgb[at + 1], self.rgb[at + 2])
    }
}

/// Parses a binary (`P6`) PPM with 8-bit channels.
pub fn parse_ppm(bytes: &[u8]) -> Result<Screenshot, String> {
    let mut fields = Vec::new();
    let mut at = 0;
    // Magic, width, height, maxval: whitespace-separated, `#` comments.
    while fields.len() < 4 {
        while at < bytes.len() && (bytes[at].is_ascii_whitespace() || bytes[at] == b'#') {
            if bytes[at] == b'#' {
                while at < bytes.len() && bytes[at] != b'\n' {
                    at += 1;
                }
            } else {
                at += 1;
            }
        }
        let start = at;
        while at < bytes.len() && !bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        if start == at {
            return Err("truncated PPM header".into());
        }
        fields.push(String::from_utf8_lossy(&bytes[start..at]).into_owned());
    }
    if fields[0] != "P6" || fields[3] != "255" {
        return Err(format!(
            "not an 8-bit binary PPM ({} {})",
            fields[0], fields[3]
        ));
    }
    let number = |s: &str| s.parse::<usize>().map_err(|_| format!("bad size `{s}`"));
    let (width, height) = (number(&fields[1])?, number(&fields[2])?);
    // Exactly one whitespace byte separates the header from the pixels.
    let data = bytes.get(at + 1..).unwrap_or(&[]);
    let needed = width * height * 3;
    if data.len() < needed {
        return Err(format!("{} pixel bytes, {needed} needed", data.len()));
    }
    Ok(Screenshot {
        width,
        height,
        rgb: data[..needed].to_vec(),
    })
}

/// Writes RGB pixels as a PNG (stored, uncompressed deflate blocks: simple
/// and exact, and screenshots are only kept as test logs).
pub fn write_png(path: &Path, width: usize, height: usize, rgb: &[u8]) -> TaskResult<()> {
    let mut raw = Vec::with_capacity((width * 3 + 1) * height);
    for row in rgb.chunks_exact(width * 3).take(height) {
        raw.push(0); // filter: none
        raw.extend_from_slice(row);
    }
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(0xffff).collect();
    for (i, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    zlib.extend_from_slice(&adler32(&raw).to_be_bytes());
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&(width as u32).to_be_bytes());
    ihdr.extend_from_slice(&(height as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(b"IHDR", &ihdr), (b"IDAT", &zlib), (b"IEND", &Vec::new())] {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut chunk = kind.to_vec();
        chunk.extend_from_slice(data);
        png.extend_from_slice(&chunk);
        png.extend_from_slice(&crc32(&chunk).to_be_bytes());
    }
    std::fs::write(path, png).map_err(|e| fail!("writing {}: {e}", path.display()))
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The screen the kernel must have drawn, given its serial output, on a
/// `width`x`height` framebuffer.
pub fn expected_screen(
    serial: &[u8],
    width: usize,
    height: usize,
) -> Result<TextScreen<Vec<u8>>, String> {
    let start = find_bytes(serial, BANNER_RULE.as_bytes())
        .ok_or("the banner is not in the serial output")?;
    let format = FramebufferFormat {
        width,
        height,
        stride: width,
        bytes_per_pixel: 3,
        layout: PixelLayout::Rgb,
    };
    let mut screen = TextScreen::new(vec![0; width * height * 3], format)
        .map_err(|e| format!("{width}x{height}: {e:?}"))?;
    for (bytes, colour) in segments(&serial[start..]) {
        screen.set_colour(colour);
        screen.write_bytes(bytes);
        screen.reset_colour();
    }
    Ok(screen)
}

/// Splits console output into runs of one colour: each kernel log line
/// (`[   1.234567] WARN  target: text\n`) in its level's colour, the rest
/// as plain text.
fn segments(output: &[u8]) -> Vec<(&[u8], Rgb)> {
    let mut out = Vec::new();
    let mut plain_from = 0;
    let mut at = 0;
    while at < output.len() {
        match log_line_at(&output[at..]) {
            Some((len, colour)) => {
                if plain_from < at {
                    out.push((&output[plain_from..at], palette::TEXT));
                }
                out.push((&output[at..at + len], colour));
                at += len;
                plain_from = at;
            }
            None => at += 1,
        }
    }
    if plain_from < output.len() {
        out.push((&output[plain_from..], palette::TEXT));
    }
    out
}

/// If a kernel log line starts here: its length (through its newline) and
/// colour.
fn log_line_at(text: &[u8]) -> Option<(usize, Rgb)> {
    let rest = text.strip_prefix(b"[")?;
    let close = rest.iter().position(|&b| b == b']')?;
    let stamp = &rest[..close];
    let (secs, micros) = stamp.split_at(stamp.iter().position(|&b| b == b'.')?);
    let secs_ok = secs.iter().all(|b| b.is_ascii_digit() || *b == b' ')
        && secs.iter().any(u8::is_ascii_digit);
    let micros_ok = micros.len() == 7 && micros[1..].iter().all(u8::is_ascii_digit);
    if !secs_ok || !micros_ok {
        return None;
    }
    let after = rest.get(close + 1..)?.strip_prefix(b" ")?;
    let colour = match after.get(..6)? {
        b"ERROR " => palette::ERROR,
        b"WARN  " => palette::WARN,
        b"INFO  " => palette::TEXT,
        b"DEBUG " | b"TRACE " => palette::DEBUG,
        _ => return None,
    };
    let end = text
        .iter()
        .position(|&b| b == b'\n')
        .map_or(text.len(), |n| n + 1);
    Some((end, colour))
}

/// Compares a screenshot with the expected screen, pixel for pixel.
pub fn compare(shot: &Screenshot, expected: &TextScreen<Vec<u8>>) -> Result<(), String> {
    let format = *expected.format();
    if (shot.width, shot.height) != (format.width, format.height) {
        return Err(format!(
            "screenshot is {}x{}, expected {}x{}",
            shot.width, shot.height, format.width, format.height
        ));
    }
    let pixels = expected.pixels();
    let mut wrong = 0usize;
    let mut first = None;
    for y in 0..format.height {
        for x in 0..format.width {
            let at = (y * format.width + x) * 3;
            let want = format.decode(&pixels[at..at + 3]);
            if shot.pixel(x, y) != want {
                wrong += 1;
                first.get_or_insert((x, y));
            }
        }
    }
    match first {
        None => Ok(()),
        Some((x, y)) => {
            let row = y / pandagen_display::CELL_HEIGHT;
            Err(format!(
                "{wrong} pixels differ; first at ({x}, {y}), text row {row}: expected `{}`",
                expected.row_text(row.min(expected.size().1 - 1))
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_appearances() {
        assert_eq!(count(b"> a > b >", b">"), 3);
        assert_eq!(count(b"pandagen> x", b"pandagen> "), 1);
        assert_eq!(count(b"", b"x"), 0);
    }

    #[test]
    fn ppm_round_trip_and_comments() {
        let mut ppm = b"P6\n# made by a test\n2 1\n255\n".to_vec();
        ppm.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        let shot = parse_ppm(&ppm).unwrap();
        assert_eq!((shot.width, shot.height), (2, 1));
        assert_eq!(shot.pixel(1, 0), Rgb(4, 5, 6));
        assert!(parse_ppm(b"P6\n2 1\n255\n\x01").is_err());
        assert!(parse_ppm(b"P5\n2 1\n255\n\x01\x02").is_err());
    }

    #[test]
    fn png_has_valid_checksums() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.png");
        write_png(&path, 2, 2, &[255; 12]).unwrap();
        let png = std::fs::read(&path).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR's CRC covers its type and data.
        assert_eq!(
            u32::from_be_bytes(png[29..33].try_into().unwrap()),
            crc32(&png[12..29])
        );
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
    }

    #[test]
    fn log_lines_take_their_level_colour() {
        let out = b"hi\n[   1.234567] WARN  pm: late\nplain [  12.000001] ERROR x: y\nend";
        let segs = segments(out);
        let colours: Vec<(String, Rgb)> = segs
            .iter()
            .map(|(b, c)| (String::from_utf8_lossy(b).into_owned(), *c))
            .collect();
        assert_eq!(
            colours,
            vec![
                ("hi\n".into(), palette::TEXT),
                ("[   1.234567] WARN  pm: late\n".into(), palette::WARN),
                ("plain ".into(), palette::TEXT),
                ("[  12.000001] ERROR x: y\n".into(), palette::ERROR),
                ("end".into(), palette::TEXT),
            ]
        );
        // Not log lines: a bracket that is not a timestamp, an unknown level.
        assert_eq!(segments(b"[1.5] INFO  x").len(), 1);
        assert_eq!(segments(b"[   1.234567] NOTE  x\n").len(), 1);
    }

    #[test]
    fn the_expected_screen_starts_at_the_banner() {
        let serial = format!("bootloader noise\n{BANNER_RULE}\n PandaGen\n");
        let screen = expected_screen(serial.as_bytes(), 640, 480).unwrap();
        assert_eq!(screen.row_text(0), BANNER_RULE);
        assert_eq!(screen.row_text(1), " PandaGen");
        assert!(expected_screen(b"no banner", 640, 480).is_err());
        // A screenshot of exactly that screen matches; one changed pixel not.
        let mut shot = Screenshot {
            width: 640,
            height: 480,
            rgb: screen.pixels().to_vec(),
        };
        assert_eq!(compare(&shot, &screen), Ok(()));
        shot.rgb[(20 * 640 + 3) * 3] ^= 1;
        assert!(compare(&shot, &screen)
            .unwrap_err()
            .starts_with("1 pixels differ"));
    }
}
