//! Kernel stacks have guard pages, and overflowing one ends in a clear
//! double-fault report rather than silent corruption.

use super::{ensure, TestResult};
use crate::arch::x86_64::fault_probe;
use crate::arch::x86_64::idt::vector;
use crate::arch::x86_64::stacks;

/// Every stack's guard page is unmapped: reading it faults "not present"
/// at exactly that address.
pub fn guard_pages_are_unmapped() -> TestResult {
    for (name, guard) in stacks::guards() {
        // SAFETY: a read; if the page were mapped it would be stack memory.
        let read = unsafe { fault_probe::read_u64(guard) };
        let fault = match read {
            Ok(_) => {
                return Err(alloc::format!(
                    "the {name} stack's guard {guard:#x} is mapped"
                ))
            }
            Err(fault) => fault,
        };
        ensure!(
            fault.vector == vector::PAGE_FAULT && fault.error_code & 1 == 0 && fault.cr2 == guard,
            "the {name} stack's guard faulted oddly: {fault:?}"
        );
    }
    Ok(())
}

/// Running the boot stack (the one these tests run on) down to its guard
/// page double-faults, and the handler names the boot stack.
pub fn boot_stack_overflow_is_reported() -> TestResult {
    // SAFETY: the boot stack below this frame is free.
    let caught = unsafe { stacks::overflow_probe(None) };
    overflow_named(caught, "boot")
}

/// The same for the stack every entry from ring 3 uses (idle in this
/// mode: no task runs).
pub fn entry_stack_overflow_is_reported() -> TestResult {
    // SAFETY: no task runs in ktest mode, so nothing uses the entry stack.
    let caught = unsafe { stacks::overflow_probe(Some(stacks::entry_stack_top())) };
    overflow_named(caught, "entry")
}

fn overflow_named(caught: Option<stacks::Overflow>, stack: &str) -> TestResult {
    let overflow = caught.ok_or("the overflow was not caught")?;
    ensure!(
        overflow.stack == stack,
        "reported as the {} stack, not the {stack} stack",
        overflow.stack
    );
    ensure!(
        stacks::overflowed_stack(overflow.address) == Some(overflow.stack),
        "the faulting address {:#x} is not in the guard page",
        overflow.address
    );
    Ok(())
}
