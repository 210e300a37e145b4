//! Typing on the guest's PS/2 keyboard through QEMU's QMP monitor, for
//! the suites that drive the system from the keyboard instead of the
//! serial line.
//!
//! A suite lists [`KeyStep`]s: once `wait_for` has appeared (after the
//! previous step's match), `text` is typed.
//!
//! How: one `input-send-event` per character (Shift down, key down, key
//! up, Shift up), which QEMU hands to the PS/2 keyboard at once. Not
//! `send-key`: QEMU plays those from a queue of its own, on a timer, and
//! silently drops events once about 50 wait (a key is 6 entries, a
//! shifted key 12); sent faster than that timer runs (which a loaded host
//! makes slower), keys vanish inside QEMU before the guest could see them
//! (measured: a 400-character burst lost most of its keys that way).
//!
//! How fast: at the speed of the PS/2 wire, which carries about one byte
//! a millisecond: after a character whose scancodes take `n` bytes, the
//! next is sent `n` ms later ([`WIRE_BYTE`]); a keyboard cannot send
//! faster. But never more than [`UNECHOED_BYTES`] scancode bytes ahead of
//! what the console has echoed: QEMU's keyboard keeps 16 bytes and drops
//! the rest, as a real one does, and a loaded host can stop the guest's
//! CPU for longer than 16 ms while QEMU's monitor thread keeps taking keys.
//! With this bound no key is ever dropped before the guest could read it,
//! so any key missing from the echo was lost by the guest (the driver or
//! the console).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::qemu::{find_bytes, Observer, Session};
use crate::qmp::Qmp;
use crate::screen::{self, ScreenCheck, Taken};
use pandagen_ps2_keyboard::keymap::Layout as KeyboardLayout;

/// One typed burst: once `wait_for` has appeared, the pieces of `text`
/// are typed one after the other, with no pause between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyStep {
    pub wait_for: &'static str,
    pub text: &'static [&'static str],
}

/// The QEMU key (`qcode`) that types `c` on a US keyboard, and whether
/// Shift is held. `None` for characters a US keyboard has no key for.
pub fn qcode(c: char) -> Option<(&'static str, bool)> {
    const PLAIN: [(char, &str); 16] = [
        (' ', "spc"),
        ('\r', "ret"),
        ('\n', "ret"),
        ('\t', "tab"),
        ('\u{7f}', "backspace"),
        ('-', "minus"),
        ('=', "equal"),
        ('[', "bracket_left"),
        (']', "bracket_right"),
        (';', "semicolon"),
        ('\'', "apostrophe"),
        ('`', "grave_accent"),
        ('\\', "backslash"),
        (',', "comma"),
        ('.', "dot"),
        ('/', "slash"),
    ];
    const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    const SHIFTED: [(char, &str); 21] = [
        ('!', "1"),
        ('@', "2"),
        ('#', "3"),
        ('$', "4"),
        ('%', "5"),
        ('^', "6"),
        ('&', "7"),
        ('*', "8"),
        ('(', "9"),
        (')', "0"),
        ('_', "minus"),
        ('+', "equal"),
        ('{', "bracket_left"),
        ('}', "bracket_right"),
        (':', "semicolon"),
        ('"', "apostrophe"),
        ('~', "grave_accent"),
        ('|', "backslash"),
        ('<', "comma"),
        ('>', "dot"),
        ('?', "slash"),
    ];
    const LETTERS: [&str; 26] = [
        "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r",
        "s", "t", "u", "v", "w", "x", "y", "z",
    ];
    if c.is_ascii_lowercase() {
        return Some((LETTERS[(c as u8 - b'a') as usize], false));
    }
    if c.is_ascii_uppercase() {
        return Some((LETTERS[(c as u8 - b'A') as usize], true));
    }
    if c.is_ascii_digit() {
        return Some((DIGITS[(c as u8 - b'0') as usize], false));
    }
    if let Some((_, q)) = PLAIN.iter().find(|(p, _)| *p == c) {
        return Some((q, false));
    }
    SHIFTED
        .iter()
        .find(|(s, _)| *s == c)
        .map(|(_, q)| (*q, true))
}

/// The QEMU key (`qcode`, named for its place on a US keyboard) that
/// types `c` in `layout`, and whether Shift is held. Outside the US layout
/// only characters whose key is certain are offered: letters, digits,
/// space and Enter, and the symbols listed for the layout (from the
/// layout's printed key caps, not from the decoder the guest uses, so
/// that a guest decoding the wrong layout echoes something else);
/// `None` for the rest.
pub fn qcode_in(layout: KeyboardLayout, c: char) -> Option<(&'static str, bool)> {
    // The keys whose characters differ from the US ones.
    const UK: [(char, &str, bool); 6] = [
        ('"', "2", true),
        ('@', "apostrophe", true),
        ('#', "backslash", false),
        ('~', "backslash", true),
        ('\\', "less", false),
        ('|', "less", true),
    ];
    const DE: [(char, &str, bool); 23] = [
        ('z', "y", false),
        ('Z', "y", true),
        ('y', "z", false),
        ('Y', "z", true),
        ('"', "2", true),
        ('&', "6", true),
        ('/', "7", true),
        ('(', "8", true),
        (')', "9", true),
        ('=', "0", true),
        ('?', "minus", true),
        ('+', "bracket_right", false),
        ('*', "bracket_right", true),
        ('#', "backslash", false),
        ('\'', "backslash", true),
        ('<', "less", false),
        ('>', "less", true),
        (';', "comma", true),
        (':', "dot", true),
        ('-', "slash", false),
        ('_', "slash", true),
        ('!', "1", true),
        ('%', "5", true),
    ];
    let table: &[(char, &str, bool)] = match layout {
        KeyboardLayout::Us => return qcode(c),
        KeyboardLayout::Uk => &UK,
        KeyboardLayout::De => &DE,
    };
    if let Some((_, key, shift)) = table.iter().find(|(t, _, _)| *t == c) {
        return Some((key, *shift));
    }
    let same_as_us = c.is_ascii_alphanumeric()
        || matches!(c, ' ' | '\r' | '\n' | '\u{7f}' | ',' | '.')
        || (layout == KeyboardLayout::Uk && c.is_ascii_graphic());
    same_as_us.then(|| qcode(c)).flatten()
}

/// The time the PS/2 wire takes for one byte (11 bits at 10-16.7 kHz).
pub const WIRE_BYTE: Duration = Duration::from_millis(1);
/// Scancode bytes typed but not yet echoed, at most (QEMU's keyboard
/// buffer holds 16).
pub const UNECHOED_BYTES: usize = 12;
/// With keys waiting for their echo and none arriving this long, they
/// were lost: the run's typing fails instead of waiting for its timeout.
pub const ECHO_STALL: Duration = Duration::from_secs(20);

/// Follows the console's echo of typed characters in the serial output.
struct Echo {
    /// Scanned up to here.
    at: usize,
    /// Typed characters not yet seen echoed, with their scancode bytes.
    pending: std::collections::VecDeque<(u8, usize)>,
}

impl Echo {
    fn new(session: &Session) -> Self {
        Echo {
            at: session.serial().len(),
            pending: Default::default(),
        }
    }

    fn unechoed_bytes(&self) -> usize {
        self.pending.iter().map(|(_, n)| n).sum()
    }

    /// Consume echoed characters, in order (other output in between, such
    /// as a command's answer, is skipped).
    fn update(&mut self, session: &Session) {
        let serial = session.serial();
        while let Some(&byte) = serial.get(self.at) {
            self.at += 1;
            if self.pending.front().is_some_and(|(c, _)| *c == byte) {
                self.pending.pop_front();
            }
        }
    }

    /// Waits until at most `limit` bytes are unechoed.
    fn wait_below(&mut self, session: &Session, limit: usize) -> Result<(), String> {
        let mut progress = Instant::now();
        loop {
            let waiting = self.pending.len();
            self.update(session);
            if self.pending.len() < waiting {
                progress = Instant::now();
            }
            if self.unechoed_bytes() <= limit {
                return Ok(());
            }
            if Instant::now() >= session.deadline() || progress.elapsed() >= ECHO_STALL {
                let missing: String = self.pending.iter().map(|(c, _)| *c as char).collect();
                return Err(format!("typed keys never echoed: {missing:?}"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Types `text` on a keyboard of `layout`, one `input-send-event` per
/// character.
pub fn type_text(
    qmp: &mut Qmp,
    session: &Session,
    layout: KeyboardLayout,
    text: &str,
) -> Result<(), String> {
    let mut echo = Echo::new(session);
    for c in text.chars() {
        let (key, shift) =
            qcode_in(layout, c).ok_or_else(|| format!("no {} key types {c:?}", layout.name()))?;
        let event = |key: &str, down: bool| json!({ "type": "key", "data": { "down": down, "key": { "type": "qcode", "data": key } } });
        let events = if shift {
            vec![
                event("shift", true),
                event(key, true),
                event(key, false),
                event("shift", false),
            ]
        } else {
            vec![event(key, true), event(key, false)]
        };
        // In scancode set 1 every one of these keys is one byte down and
        // one byte up.
        let bytes = events.len();
        echo.wait_below(session, UNECHOED_BYTES.saturating_sub(bytes))?;
        qmp.execute("input-send-event", json!({ "events": events }))
            .map_err(|e| e.0)?;
        echo.pending.push_back((c as u8, bytes));
        std::thread::sleep(WIRE_BYTE * bytes as u32);
    }
    Ok(())
}

/// What a keyboard-driven run saw.
#[derive(Default)]
pub struct Observed {
    /// Steps typed, in order; the first failure ends the run's typing.
    pub typed: usize,
    /// The longest burst: characters and how long typing them took.
    pub longest: (usize, Duration),
    pub error: Option<String>,
    /// The screenshot, for a suite with a screen check.
    pub taken: Option<Result<Taken, String>>,
    /// QMP events (`RESET`, `SHUTDOWN`, ...) with their data, in order.
    pub events: Vec<Value>,
}

/// What the observer does, in order: the key steps, then (if any) the
/// screenshot and the keys typed after it, then it collects QMP events
/// until QEMU exits.
pub struct Plan {
    pub qmp: PathBuf,
    pub steps: &'static [KeyStep],
    pub screen: Option<(ScreenCheck, PathBuf, PathBuf)>,
    /// The layout the guest's keyboard driver decodes (`keyboard=` in
    /// `boot.cfg`): text is typed on the keys that give it there.
    pub layout: KeyboardLayout,
}

pub fn observer(plan: Plan) -> Observer<Observed> {
    Box::new(move |session: &Session| {
        let mut observed = Observed::default();
        let mut monitor = match Qmp::connect(&plan.qmp, Duration::from_secs(20)) {
            Ok(m) => m,
            Err(e) => {
                observed.error = Some(e.0);
                return observed;
            }
        };
        if let Err(e) = run(&plan, session, &mut monitor, &mut observed) {
            observed.error = Some(e);
        }
        // Until QEMU exits (the monitor closes) or the run's time is up.
        observed.events = monitor.events_until_closed(session.deadline());
        observed
    })
}

fn run(
    plan: &Plan,
    session: &Session,
    monitor: &mut Qmp,
    observed: &mut Observed,
) -> Result<(), String> {
    let mut from = 0;
    for step in plan.steps {
        from = wait_for(session, step.wait_for, from)?;
        let started = Instant::now();
        for piece in step.text {
            type_text(monitor, session, plan.layout, piece)?;
        }
        let chars = step.text.iter().map(|p| p.chars().count()).sum();
        if chars > observed.longest.0 {
            observed.longest = (chars, started.elapsed());
        }
        observed.typed += 1;
    }
    if let Some((check, ppm, png)) = &plan.screen {
        let taken = screen::take(check, session, monitor, ppm, png);
        observed.taken = Some(taken);
        let mut from = session.serial().len();
        for step in check.then {
            from = wait_for(session, step.wait_for, from)?;
            for piece in step.text {
                type_text(monitor, session, plan.layout, piece)?;
            }
        }
    }
    Ok(())
}

/// Waits until `text` appears in the serial output at or after byte
/// `from`; returns the offset just past it.
fn wait_for(session: &Session, text: &str, from: usize) -> Result<usize, String> {
    loop {
        let serial = session.serial();
        if let Some(at) = serial
            .get(from..)
            .and_then(|tail| find_bytes(tail, text.as_bytes()))
        {
            return Ok(from + at + text.len());
        }
        if Instant::now() >= session.deadline() {
            return Err(format!("`{text}` did not appear before the timeout"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_move_the_keys_their_caps_say() {
        use KeyboardLayout::*;
        // The German z and y swap places; UK's @ and " swap with US's.
        assert_eq!(qcode_in(De, 'z'), Some(("y", false)));
        assert_eq!(qcode_in(De, 'Y'), Some(("z", true)));
        assert_eq!(qcode_in(De, '/'), Some(("7", true)));
        assert_eq!(qcode_in(Uk, '@'), Some(("apostrophe", true)));
        assert_eq!(qcode_in(Uk, '"'), Some(("2", true)));
        assert_eq!(qcode_in(Uk, '#'), Some(("backslash", false)));
        assert_eq!(qcode_in(Us, '@'), Some(("2", true)));
        // Unchanged keys are the US ones; keys the table does not know
        // in a layout are refused rather than guessed.
        assert_eq!(qcode_in(De, 'a'), qcode('a'));
        assert_eq!(qcode_in(Uk, '['), qcode('['));
        assert_eq!(qcode_in(De, '['), None);
        assert_eq!(qcode_in(De, '@'), None);
    }

    #[test]
    fn every_printable_ascii_character_has_a_key() {
        for c in ' '..='~' {
            assert!(qcode(c).is_some(), "{c:?}");
        }
        assert_eq!(qcode('A'), Some(("a", true)));
        assert_eq!(qcode('a'), Some(("a", false)));
        assert_eq!(qcode('7'), Some(("7", false)));
        assert_eq!(qcode('&'), Some(("7", true)));
        assert_eq!(qcode('\r'), Some(("ret", false)));
        assert_eq!(qcode('é'), None);
    }
}
