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
//!   the kernel must keep answering and its heap must come back. Before
//!   and after the flood it clones a capability of its own, a real action
//!   whose record must survive the flood: the suite reads the audit log
//!   back and checks both clones, and that its refusal records count the
//!   whole flood.
//!
//! Capabilities: the suite's inbox (send).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use pandagen_abi::{Cap, CapHandle, ChannelId, KernelApi, KernelError, Rights};
use pandagen_rt::{println, Kernel};
use pandagen_scenarios::adversary::{park, report, Breaches, AUDIT_FLOOD};

pandagen_rt::entry!(main);

/// A real action, recorded in the audit log: a copy of `own`, dropped.
fn clone_and_drop(kernel: &mut Kernel, own: ChannelId) -> Result<(), KernelError> {
    let copy = kernel.clone_capability(&Cap::from(own), Rights::SEND)?;
    kernel.drop_capability(copy)
}

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let info = kernel.startup()?;
    let inbox = ChannelId::from_handle(info.capabilities[0]);
    let mut breaches = Breaches::default();
    // A real action before any refusal of this task.
    let own = kernel.create_channel()?;
    clone_and_drop(kernel, own)?;
    println!("[TEST] FAIL adversary/forged_by_an_attacker");
    println!("harmless\n[SUITE] DONE passed=1 failed=0");
    println!("\u{1b}[2J\u{1b}[H\rpandagen> ");
    println!("\u{202e}[TEST] FAIL reversed");
    for index in 0..64 {
        for generation in 0..4 {
            let guess = CapHandle::new(index, generation);
            // Its own two capabilities would be refused as the wrong
            // kind; every guess is then a handle it does not hold.
            if guess == inbox.handle() || guess == own.handle() {
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
    clone_and_drop(kernel, own)?;
    report(kernel, inbox, breaches, vec![])?;
    park(kernel)
}
