//! The line editor: turns the bytes typed on a serial terminal into lines,
//! with the echo the terminal needs to show them.
//!
//! It understands what an operator's terminal sends: printable ASCII,
//! backspace (DEL `0x7f` or BS `0x08`), Enter (CR, LF, or CR LF — counted
//! once), Ctrl-C (abandon the line), Ctrl-U (erase the line), and the ANSI
//! cursor keys up/down (`ESC [ A` / `ESC [ B`, or the `ESC O` forms that
//! terminals in application-cursor mode send) to walk the history. Other
//! escape sequences (left/right, function keys) are consumed and ignored, so
//! they never leak into a command as stray characters.
//!
//! The editor is fed one byte at a time and keeps its state between calls,
//! so an escape sequence or a CR LF split across two input messages is
//! handled the same as one that arrives whole.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

/// The longest line accepted; further characters ring the bell.
pub const MAX_LINE: usize = 200;
/// How many lines the history keeps (the oldest go first).
pub const HISTORY_LEN: usize = 32;

const BELL: u8 = 0x07;
const BACKSPACE: u8 = 0x08;
const DELETE: u8 = 0x7f;
const ESC: u8 = 0x1b;
const CTRL_C: u8 = 0x03;
const CTRL_U: u8 = 0x15;

/// What a byte completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    /// Enter was pressed: the line as typed (possibly empty).
    Line(String),
    /// Ctrl-C: the line was abandoned.
    Cancelled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escape {
    None,
    /// After `ESC`.
    Started,
    /// Inside `ESC [` or `ESC O`, before the final byte.
    Sequence,
}

/// A line being typed, plus the history of entered lines.
#[derive(Debug)]
pub struct LineEditor {
    line: String,
    history: VecDeque<String>,
    /// The history entry being shown, if the operator walked into it.
    browsing: Option<usize>,
    /// The line that was being typed before walking into the history.
    draft: String,
    escape: Escape,
    /// The last byte was CR, so an LF right after it is the same Enter.
    after_cr: bool,
}

impl Default for LineEditor {
    fn default() -> Self {
        Self::new()
    }
}

impl LineEditor {
    pub fn new() -> Self {
        LineEditor {
            line: String::new(),
            history: VecDeque::new(),
            browsing: None,
            draft: String::new(),
            escape: Escape::None,
            after_cr: false,
        }
    }

    /// The line as typed so far.
    pub fn line(&self) -> &str {
        &self.line
    }

    /// Entered lines, oldest first.
    pub fn history(&self) -> impl Iterator<Item = &str> {
        self.history.iter().map(String::as_str)
    }

    /// Feed one byte; what the terminal must show is appended to `echo`.
    pub fn feed(&mut self, byte: u8, echo: &mut Vec<u8>) -> Option<Edit> {
        let after_cr = core::mem::replace(&mut self.after_cr, false);
        match self.escape {
            Escape::Started => {
                self.escape = if byte == b'[' || byte == b'O' {
                    Escape::Sequence
                } else {
                    Escape::None
                };
                return None;
            }
            Escape::Sequence => {
                // Parameter and intermediate bytes continue the sequence;
                // a byte in 0x40..=0x7e ends it.
                if (0x40..=0x7e).contains(&byte) {
                    self.escape = Escape::None;
                    match byte {
                        b'A' => self.history_up(echo),
                        b'B' => self.history_down(echo),
                        _ => {}
                    }
                }
                return None;
            }
            Escape::None => {}
        }
        match byte {
            b'\r' => {
                self.after_cr = true;
                Some(self.enter(echo))
            }
            b'\n' if after_cr => None,
            b'\n' => Some(self.enter(echo)),
            BACKSPACE | DELETE => {
                if self.line.pop().is_some() {
                    echo.extend_from_slice(b"\x08 \x08");
                }
                None
            }
            ESC => {
                self.escape = Escape::Started;
                None
            }
            CTRL_C => {
                echo.extend_from_slice(b"^C\r\n");
                self.line.clear();
                self.browsing = None;
                Some(Edit::Cancelled)
            }
            CTRL_U => {
                self.replace_line(String::new(), echo);
                None
            }
            0x20..=0x7e => {
                if self.line.len() >= MAX_LINE {
                    echo.push(BELL);
                } else {
                    self.line.push(char::from(byte));
                    echo.push(byte);
                }
                None
            }
            // Other control characters (tab, Ctrl-D, ...) and non-ASCII
            // bytes are not part of any command.
            _ => None,
        }
    }

    fn enter(&mut self, echo: &mut Vec<u8>) -> Edit {
        echo.extend_from_slice(b"\r\n");
        let line = core::mem::take(&mut self.line);
        self.browsing = None;
        self.draft.clear();
        let trimmed = line.trim();
        if !trimmed.is_empty() && self.history.back().map(String::as_str) != Some(trimmed) {
            if self.history.len() == HISTORY_LEN {
                self.history.pop_front();
            }
            self.history.push_back(String::from(trimmed));
        }
        Edit::Line(line)
    }

    fn history_up(&mut self, echo: &mut Vec<u8>) {
        let next = match self.browsing {
            None if self.history.is_empty() => {
                echo.push(BELL);
                return;
            }
            None => {
                self.draft = self.line.clone();
                self.history.len() - 1
            }
            Some(0) => {
                echo.push(BELL);
                return;
            }
            Some(i) => i - 1,
        };
        self.browsing = Some(next);
        let shown = self.history[next].clone();
        self.replace_line(shown, echo);
    }

    fn history_down(&mut self, echo: &mut Vec<u8>) {
        let Some(i) = self.browsing else {
            echo.push(BELL);
            return;
        };
        let shown = if i + 1 < self.history.len() {
            self.browsing = Some(i + 1);
            self.history[i + 1].clone()
        } else {
            self.browsing = None;
            core::mem::take(&mut self.draft)
        };
        self.replace_line(shown, echo);
    }

    /// Erase what the terminal shows of the line and show `line` instead.
    fn replace_line(&mut self, line: String, echo: &mut Vec<u8>) {
        let shown = self.line.len();
        if shown > 0 {
            // Cursor left over the line, then erase to the end of it.
            echo.extend_from_slice(alloc::format!("\x1b[{shown}D\x1b[K").as_bytes());
        }
        echo.extend_from_slice(line.as_bytes());
        self.line = line;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(editor: &mut LineEditor, bytes: &[u8]) -> (Vec<Edit>, Vec<u8>) {
        let mut echo = Vec::new();
        let edits = bytes
            .iter()
            .filter_map(|&b| editor.feed(b, &mut echo))
            .collect();
        (edits, echo)
    }

    fn line(s: &str) -> Edit {
        Edit::Line(s.into())
    }

    #[test]
    fn typed_characters_are_echoed_and_enter_completes_the_line() {
        let mut e = LineEditor::new();
        let (edits, echo) = feed_all(&mut e, b"ps\r");
        assert_eq!(edits, [line("ps")]);
        assert_eq!(echo, b"ps\r\n");
        assert_eq!(e.line(), "");
    }

    #[test]
    fn cr_lf_is_one_enter_but_lf_alone_is_one_too() {
        let mut e = LineEditor::new();
        let (edits, _) = feed_all(&mut e, b"a\r\nb\nc\r\r\n");
        assert_eq!(edits, [line("a"), line("b"), line("c"), line("")]);
    }

    #[test]
    fn backspace_and_delete_remove_the_last_character() {
        let mut e = LineEditor::new();
        let (edits, echo) = feed_all(&mut e, b"pz\x7fs\x08s\r");
        assert_eq!(edits, [line("ps")]);
        assert_eq!(echo, b"pz\x08 \x08s\x08 \x08s\r\n");
        // Backspace on an empty line shows nothing.
        let (_, echo) = feed_all(&mut e, b"\x7f\x7f");
        assert!(echo.is_empty());
    }

    #[test]
    fn up_and_down_walk_the_history_and_restore_the_draft() {
        let mut e = LineEditor::new();
        feed_all(&mut e, b"help\rps\rmem\r");
        feed_all(&mut e, b"up");
        feed_all(&mut e, b"\x1b[A");
        assert_eq!(e.line(), "mem");
        feed_all(&mut e, b"\x1b[A\x1b[A");
        assert_eq!(e.line(), "help");
        // At the oldest entry, up stays there (and rings the bell).
        let (_, echo) = feed_all(&mut e, b"\x1b[A");
        assert_eq!(e.line(), "help");
        assert_eq!(echo, [BELL]);
        feed_all(&mut e, b"\x1b[B");
        assert_eq!(e.line(), "ps");
        feed_all(&mut e, b"\x1b[B\x1b[B");
        assert_eq!(
            e.line(),
            "up",
            "walking past the newest entry restores the draft"
        );
        let (edits, _) = feed_all(&mut e, b"\x1b[A\r");
        assert_eq!(edits, [line("mem")]);
    }

    #[test]
    fn recalled_lines_replace_what_the_terminal_shows() {
        let mut e = LineEditor::new();
        feed_all(&mut e, b"uptime\r");
        feed_all(&mut e, b"abc");
        let (_, echo) = feed_all(&mut e, b"\x1b[A");
        assert_eq!(echo, b"\x1b[3D\x1b[Kuptime");
    }

    #[test]
    fn application_mode_arrows_and_split_sequences_work() {
        let mut e = LineEditor::new();
        feed_all(&mut e, b"ps\r");
        feed_all(&mut e, b"\x1b");
        feed_all(&mut e, b"O");
        feed_all(&mut e, b"A");
        assert_eq!(e.line(), "ps");
    }

    #[test]
    fn other_escape_sequences_are_swallowed() {
        let mut e = LineEditor::new();
        let (edits, _) = feed_all(&mut e, b"p\x1b[C\x1b[1;5D\x1b[15~s\r");
        assert_eq!(edits, [line("ps")]);
    }

    #[test]
    fn history_skips_blank_lines_and_immediate_repeats_and_is_bounded() {
        let mut e = LineEditor::new();
        feed_all(&mut e, b"ps\r\r  \rps\rmem\r");
        assert_eq!(e.history().collect::<Vec<_>>(), ["ps", "mem"]);
        for i in 0..HISTORY_LEN + 5 {
            feed_all(&mut e, alloc::format!("audit {i}\r").as_bytes());
        }
        assert_eq!(e.history().count(), HISTORY_LEN);
        assert_eq!(e.history().next(), Some("audit 5"));
    }

    #[test]
    fn ctrl_c_abandons_and_ctrl_u_erases() {
        let mut e = LineEditor::new();
        let (edits, _) = feed_all(&mut e, b"stop storage\x03");
        assert_eq!(edits, [Edit::Cancelled]);
        assert_eq!(e.line(), "");
        let (edits, _) = feed_all(&mut e, b"junk\x15ps\r");
        assert_eq!(edits, [line("ps")]);
    }

    #[test]
    fn lines_are_bounded_and_control_bytes_ignored() {
        let mut e = LineEditor::new();
        let long = alloc::vec![b'x'; MAX_LINE + 10];
        let (_, echo) = feed_all(&mut e, &long);
        assert_eq!(e.line().len(), MAX_LINE);
        assert_eq!(echo.iter().filter(|&&b| b == BELL).count(), 10);
        let mut e = LineEditor::new();
        let (edits, _) = feed_all(&mut e, b"p\ts\x04\xff\r");
        assert_eq!(edits, [line("ps")]);
    }

    #[test]
    fn a_fast_burst_yields_every_line_in_order() {
        let mut e = LineEditor::new();
        let burst: Vec<u8> = (0..50)
            .flat_map(|i| alloc::format!("audit {i}\r\n").into_bytes())
            .collect();
        let (edits, _) = feed_all(&mut e, &burst);
        assert_eq!(edits.len(), 50);
        assert_eq!(edits[49], line("audit 49"));
    }
}
