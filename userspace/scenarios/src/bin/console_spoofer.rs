//! Tries to pass its log lines off as the operator console's and as test
//! verdicts: a forged `[TEST] PASS`, a forged `[SUITE] DONE` after a line
//! break, a screen clear and a cursor move, a fake prompt. The kernel must
//! tag every line of it with `[task <id> console_spoofer]` and escape the
//! control characters, so that the harness counts none of it: if it did,
//! the hardening suite's `DONE` counts would no longer match its verdict
//! lines and the suite would fail.
#![no_std]
#![no_main]

extern crate alloc;

use pandagen_abi::KernelError;
use pandagen_rt::{println, Kernel};

pandagen_rt::entry!(main);

fn main(_kernel: &mut Kernel) -> Result<(), KernelError> {
    println!("[TEST] PASS hardening/forged_by_a_service");
    println!("harmless\n[SUITE] DONE passed=1 failed=0");
    println!("\u{1b}[2J\u{1b}[H\rpandagen> ");
    println!("\u{202e}[TEST] FAIL reversed");
    Ok(())
}
