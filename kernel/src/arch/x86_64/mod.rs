//! x86_64: descriptor tables, trap entry, CPU protection features.
//!
//! Boot order: [`gdt::init`] (segments, TSS, IST stacks), [`idt::init`]
//! (all exception and IRQ gates), [`protection::enable`] (NXE, WP, SMEP,
//! SMAP).
//!
//! # Seams for ring 3
//!
//! - **Segments**: the GDT is laid out for SYSCALL/SYSRET; write
//!   [`gdt::STAR`] to the STAR MSR. User selectors are [`gdt::USER_CODE`]
//!   (0x23) and [`gdt::USER_DATA`] (0x1B). FMASK should clear IF, TF, DF
//!   and AC.
//! - **Kernel stack on entry from ring 3**: [`gdt::set_kernel_stack`] sets
//!   TSS.RSP0; the scheduler calls it on every switch (boot sets it to the
//!   boot stack). The SYSCALL path has no hardware stack switch: keep the
//!   same value in the per-CPU block that GS points at after `swapgs`.
//! - **GS**: the trap stubs already `swapgs` on entry from and exit to ring
//!   3 (decided by the saved CS). Nothing sets GS base yet: the syscall work
//!   points IA32_KERNEL_GS_BASE at the per-CPU block before the first
//!   `iretq`/`sysretq` to user mode. NMI and #MC arrive on IST stacks and
//!   may interrupt the kernel between SYSCALL and its `swapgs`; their
//!   handlers must not trust GS (today they only log or stop).
//! - **Context switch**: [`trap::trap_dispatch`] returns the frame to
//!   resume. A scheduler saves the current frame pointer for the current
//!   task and returns another task's [`trap::TrapFrame`] (which lives on that
//!   task's kernel stack); the common exit pops it and `iretq`s. A new task
//!   starts by building a frame with `cs = USER_CODE`, `ss = USER_DATA`,
//!   `rflags = 0x202` on its kernel stack.
//! - **User faults**: [`exceptions`] sees [`trap::TrapFrame::is_from_user`];
//!   that is where a ring-3 fault ends the task instead of the kernel.
//! - **User memory**: [`protection::with_user_access`] is the only window in
//!   which ring 0 may touch user pages (SMAP); [`fault_probe`] turns a bad
//!   user pointer's fault into an error instead of a crash; the page-table
//!   code's `translate` gives the effective USER/WRITABLE/NX permissions to
//!   check a user range before copying.
//! - **Address spaces**: `mem::paging::new_user_space` gives an empty user
//!   half sharing the kernel half; `switch_to` loads it; `AddressSpace::destroy`
//!   frees its tables. User programs link in the lower half (below
//!   `0x0000_8000_0000_0000`); nothing of the kernel is mapped there.

pub mod exceptions;
pub mod fault_probe;
pub mod gdt;
pub mod idt;
pub mod protection;
pub mod syscall_entry;
pub mod trap;
mod trap_entry;

/// Halts this CPU for good, with interrupts off.
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
