//! What `DebugWrite` prints: a task's log lines on the operator's serial
//! console, marked so that they cannot pass for the console's own output.
//!
//! The root task (the process manager, or a test run's suite program) is
//! the run's own voice: its lines are printed as they are, and a suite's
//! verdict lines (`[TEST] ...`, see `qemu/README.md`) come from it. Every
//! other task's line starts with [`TASK_OUTPUT_TAG`], its id and its name,
//! and xtask's harness takes nothing after that tag as a protocol marker.
//! For every task, line breaks start a new (again tagged) line, and
//! control characters — ANSI escapes, carriage returns, backspaces — and
//! the Unicode marks that reorder or hide text are printed escaped
//! (`\u{1b}`), so no task can move the cursor, clear the screen or forge
//! a prompt.

use core::fmt::{self, Write};
use pandagen_abi::TaskId;

use crate::task::KernelState;

/// How the line of a task other than the root begins; xtask's serial
/// harness (`xtask/src/serial.rs`) knows it.
pub const TASK_OUTPUT_TAG: &str = "[task ";

/// Print `text` from task `from`.
pub fn write(k: &KernelState, from: TaskId, text: &str) {
    // The root is the one task created without a parent.
    let info = k.core().task_info(from);
    let name = match &info {
        Some(info) if info.parent.is_none() => None,
        _ => Some(info.map(|info| info.name)),
    };
    for line in text.split('\n') {
        match &name {
            None => crate::println!("{}", Escaped(line)),
            Some(name) => crate::println!(
                "{TASK_OUTPUT_TAG}{} {}] {}",
                from.as_raw(),
                Escaped(name.as_deref().unwrap_or("?")),
                Escaped(line)
            ),
        }
    }
}

/// Text with every character that could steer a terminal escaped.
struct Escaped<'a>(&'a str);

/// Characters printed as `\u{..}`: C0 and C1 controls and DEL, and the
/// invisible or bidirectional format marks that make text read differently
/// from its bytes.
fn steers_terminal(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if steers_terminal(c) {
                write!(f, "{}", c.escape_unicode())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}
