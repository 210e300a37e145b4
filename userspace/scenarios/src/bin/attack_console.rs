//! Adversary (issue 13, finding 8): console spoofing and audit flooding.
//!
//! * It writes log lines built to pass for the operator console's and for
//!   this suite's verdicts: a forged `[TEST] FAIL`, a forged `[SUITE]
//!   DONE` after a line break, a screen clear and cursor move, a fake
//!   prompt, a right-to-left override. The kernel tags every line with
//!   `[task <id> attack_console]` and escapes control characters, so the
//!   harness (which reads verdicts only from untagged lines) counts none
//!   of them: had it counted the forged FAIL, or the forged DONE's counts,
//!   the adversary suite would fail.
//! * It tries the console's own output (`ConsoleWrite`) through every
//!   handle it could guess: all must be refused.
//! * It floods the audit log with refused uses, which must be folded into
//!   its own few records instead of pushing out everyone else's history:
//!   the kernel must keep answering and its heap must come back (checked
//!   by the suite).
//!
//! Capabilities: the suite's inbox (send).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use pandagen_abi::{Cap, CapHandle, ChannelId, KernelApi, KernelError};
use pandagen_rt::{println, Kernel};
use pandagen_scenarios::adversary::{park, report, Breaches};

pandagen_rt::entry!(main);

/// Refused uses in the audit flood.
const AUDIT_FLOOD: u32 = 20_000;

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let info = kernel.startup()?;
    let inbox = ChannelId::from_handle(info.capabilities[0]);
    let mut breaches = Breaches::default();
    println!("[TEST] FAIL adversary/forged_by_an_attacker");
    println!("harmless\n[SUITE] DONE passed=1 failed=0");
    println!("\u{1b}[2J\u{1b}[H\rpandagen> ");
    println!("\u{202e}[TEST] FAIL reversed");
    for index in 0..64 {
        for generation in 0..4 {
            let guess = CapHandle::new(index, generation);
            if guess == inbox.handle() {
                continue;
            }
            let written = kernel.console_write(guess, b"\x1b[2Jpandagen> ");
            if written.is_ok() {
                breaches.record(alloc::format!("console write through {guess:?}"));
            }
        }
    }
    for n in 0..AUDIT_FLOOD {
        let bogus = Cap::<()>::from_handle(CapHandle::new(1000 + n % 1000, n));
        if kernel.drop_capability(bogus).is_ok() {
            breaches.record(alloc::format!("dropped a capability it never held ({n})"));
            break;
        }
    }
    report(kernel, inbox, breaches, vec![])?;
    park(kernel)
}
