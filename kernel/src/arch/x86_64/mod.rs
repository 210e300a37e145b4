//! x86_64: descriptor tables, trap entry, CPU protection features.
//!
//! Boot order: [`gdt::init`] (segments, TSS, IST stacks), [`idt::init`]
//! (all exception and IRQ gates), [`protection::enable`] (NXE, WP, SMEP,
//! SMAP).

pub mod exceptions;
pub mod fault_probe;
pub mod gdt;
pub mod idt;
pub mod protection;
pub mod trap;
mod trap_entry;

/// Halts this CPU for good, with interrupts off.
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
