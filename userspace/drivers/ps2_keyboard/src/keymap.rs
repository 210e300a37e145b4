//! Scancodes to terminal bytes, through `pc-keyboard`.
//!
//! The controller translates the keyboard's set 2 into set 1, so the
//! decoder reads set 1. Keys become what a terminal would send, so the
//! console's line editor treats them exactly like serial input: text as
//! UTF-8, Enter as CR, Backspace as DEL (`0x7f`), the arrows and Home/End
//! as ANSI escape sequences. Ctrl+letter gives the control character.

use alloc::vec::Vec;
use pc_keyboard::layouts::{AnyLayout, De105Key, Uk105Key, Us104Key};
use pc_keyboard::{DecodedKey, HandleControl, KeyCode, PS2Keyboard, ScancodeSet1};

/// The layouts `boot.cfg` can choose with `keyboard=NAME`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `us` (the default): US 104-key.
    Us,
    /// `uk`: UK 105-key.
    Uk,
    /// `de`: German 105-key (QWERTZ).
    De,
}

impl Layout {
    pub const ALL: [Layout; 3] = [Layout::Us, Layout::Uk, Layout::De];

    pub const fn name(self) -> &'static str {
        match self {
            Layout::Us => "us",
            Layout::Uk => "uk",
            Layout::De => "de",
        }
    }

    pub fn from_name(name: &str) -> Option<Layout> {
        Layout::ALL.into_iter().find(|l| l.name() == name)
    }

    /// The `keyboard` key of `boot.cfg` text: the last `keyboard=` line
    /// wins, as for the kernel's keys. `Ok(Us)` without one; `Err(value)`
    /// for a name this driver does not know.
    pub fn from_boot_config(text: &str) -> Result<Layout, &str> {
        let mut layout = Ok(Layout::Us);
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') {
                continue;
            }
            if let Some((key, value)) = line.split_once('=') {
                if key.trim() == "keyboard" {
                    let value = value.trim();
                    layout = Layout::from_name(value).ok_or(value);
                }
            }
        }
        layout
    }

    fn any(self) -> AnyLayout {
        match self {
            Layout::Us => AnyLayout::Us104Key(Us104Key),
            Layout::Uk => AnyLayout::Uk105Key(Uk105Key),
            Layout::De => AnyLayout::De105Key(De105Key),
        }
    }
}

/// Scancode set 1 bytes in, terminal bytes out.
pub struct Decoder {
    keyboard: PS2Keyboard<AnyLayout, ScancodeSet1>,
    layout: Layout,
}

impl Decoder {
    pub fn new(layout: Layout) -> Self {
        Decoder {
            keyboard: PS2Keyboard::new(
                ScancodeSet1::new(),
                layout.any(),
                HandleControl::MapLettersToUnicode,
            ),
            layout,
        }
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Feed one scancode byte; the bytes of a completed key press (if any)
    /// are appended to `out`. Malformed sequences are dropped by the
    /// decoder, which resynchronises on the next byte.
    pub fn feed(&mut self, scancode: u8, out: &mut Vec<u8>) {
        let Ok(Some(event)) = self.keyboard.add_byte(scancode) else {
            return;
        };
        match self.keyboard.process_keyevent(event) {
            Some(DecodedKey::Unicode(c)) => push_char(c, out),
            Some(DecodedKey::RawKey(code)) => out.extend_from_slice(raw_key(code)),
            None => {}
        }
    }
}

fn push_char(c: char, out: &mut Vec<u8>) {
    match c {
        // Enter: what a terminal sends.
        '\n' => out.push(b'\r'),
        // Backspace: the DEL most terminals send.
        '\u{8}' => out.push(0x7f),
        _ => {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
}

/// Keys without a character: the VT100 sequences for those the line
/// editor knows, nothing for the rest (function keys, modifiers).
fn raw_key(code: KeyCode) -> &'static [u8] {
    match code {
        KeyCode::ArrowUp => b"\x1b[A",
        KeyCode::ArrowDown => b"\x1b[B",
        KeyCode::ArrowRight => b"\x1b[C",
        KeyCode::ArrowLeft => b"\x1b[D",
        KeyCode::Home => b"\x1b[H",
        KeyCode::End => b"\x1b[F",
        _ => b"",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set 1 make and break codes of a key.
    fn tap(code: u8) -> [u8; 2] {
        [code, code | 0x80]
    }

    fn decode(layout: Layout, bytes: &[u8]) -> Vec<u8> {
        let mut decoder = Decoder::new(layout);
        let mut out = Vec::new();
        for &b in bytes {
            decoder.feed(b, &mut out);
        }
        out
    }

    const LSHIFT: u8 = 0x2a;

    #[test]
    fn letters_enter_and_backspace_are_terminal_bytes() {
        // p s Enter Backspace
        let mut bytes = Vec::new();
        for code in [0x19, 0x1f, 0x1c, 0x0e] {
            bytes.extend_from_slice(&tap(code));
        }
        assert_eq!(decode(Layout::Us, &bytes), b"ps\r\x7f");
    }

    #[test]
    fn shift_gives_capitals_and_symbols_per_layout() {
        // Shift held, then `3` and `a`.
        let mut bytes = vec![LSHIFT];
        bytes.extend_from_slice(&tap(0x04));
        bytes.extend_from_slice(&tap(0x1e));
        bytes.push(LSHIFT | 0x80);
        assert_eq!(decode(Layout::Us, &bytes), b"#A");
        assert_eq!(decode(Layout::Uk, &bytes), "£A".as_bytes());
        assert_eq!(decode(Layout::De, &bytes), "§A".as_bytes());
    }

    #[test]
    fn german_layout_swaps_y_and_z() {
        let bytes = tap(0x15); // the key right of T
        assert_eq!(decode(Layout::Us, &bytes), b"y");
        assert_eq!(decode(Layout::De, &bytes), b"z");
    }

    #[test]
    fn arrows_are_escape_sequences() {
        // Extended (E0) up arrow, make and break.
        assert_eq!(decode(Layout::Us, &[0xe0, 0x48, 0xe0, 0xc8]), b"\x1b[A");
    }

    #[test]
    fn every_editing_key_is_the_sequence_the_line_editor_knows() {
        // Extended (E0) make codes: down, right, left, Home, End.
        for (code, sequence) in [
            (0x50, b"\x1b[B"),
            (0x4d, b"\x1b[C"),
            (0x4b, b"\x1b[D"),
            (0x47, b"\x1b[H"),
            (0x4f, b"\x1b[F"),
        ] {
            let bytes = [0xe0, code, 0xe0, code | 0x80];
            assert_eq!(decode(Layout::Us, &bytes), sequence, "E0 {code:#x}");
        }
        // F1 has no sequence the line editor knows: nothing is typed.
        assert_eq!(decode(Layout::Us, &tap(0x3b)), b"");
    }

    #[test]
    fn boot_config_chooses_the_layout() {
        assert_eq!(Layout::from_boot_config("mode=system\n"), Ok(Layout::Us));
        assert_eq!(
            Layout::from_boot_config("mode=system\nkeyboard = uk\n"),
            Ok(Layout::Uk)
        );
        assert_eq!(
            Layout::from_boot_config("keyboard=uk\n# keyboard=us\nkeyboard=de"),
            Ok(Layout::De)
        );
        assert_eq!(Layout::from_boot_config("keyboard=dvorak"), Err("dvorak"));
    }
}
