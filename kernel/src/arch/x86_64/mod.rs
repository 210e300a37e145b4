//! x86_64: descriptor tables, trap entry, CPU protection features.
//!
//! Boot order: [`gdt::init`] (segments, TSS, IST stacks), [`idt::init`]
//! (all exception and IRQ gates), [`protection::enable`] (NXE, WP, SMEP,
//! SMAP).
//!
//! # Ring 3
//!
//! - **Segments**: the GDT is laid out for SYSCALL/SYSRET;
//!   [`syscall_entry::init`] writes [`gdt::STAR`], LSTAR and FMASK. User
//!   selectors are [`gdt::USER_CODE`] (0x23)
//!   and [`gdt::USER_DATA`] (0x1B).
//! - **One kernel stack**: every entry from ring 3 — interrupt, exception
//!   or `syscall` — runs on the same kernel stack (TSS.RSP0 and the
//!   per-CPU block hold its top; single CPU). An interrupt or exception
//!   builds its frame at the top of that stack; `syscall` saves the
//!   registers straight into the running task's record
//!   (`task::UserTask`), which is the live frame while the call runs. The
//!   kernel leaves through the record of the task that runs next; only a
//!   switch from an interrupt copies the frame on the stack into the
//!   interrupted task's record.
//! - **GS**: while the kernel runs, GS points at the per-CPU block. The
//!   syscall stub always swaps; the trap stubs swap when the live GS base
//!   is not the per-CPU block (paranoid entry, see `trap_entry`), so an
//!   NMI, #MC, #DF or an `iretq` #GP that lands between `syscall` and its
//!   `swapgs`, or between the exit's `swapgs` and `iretq`, still runs on
//!   the kernel's GS and returns to the GS state it found.
//! - **RFLAGS**: FMASK clears IF, TF, DF, AC, NT and IOPL on `syscall`
//!   (see `syscall_entry`); gates clear TF, NT and RF, and the trap
//!   dispatcher re-arms SMAP (AC).
//! - **Context switch**: [`trap::trap_dispatch`] and the syscall
//!   dispatcher return the frame to resume, another task's record after a
//!   switch (see `task::schedule`); the exits pop it and `iretq`.
//! - **User faults**: [`exceptions`] hands a fault with
//!   [`trap::TrapFrame::is_from_user`] to `task::user_fault`, which ends
//!   only that task.
//! - **User memory**: the kernel never dereferences user pointers: it
//!   copies through the task's page tables and the physical-memory window
//!   (`usermem`), so SMAP stays armed. `protection::with_user_access` and
//!   `fault_probe` remain for the ring-0 self-tests (feature
//!   `test-harness`).
//! - **Address spaces**: `mem::paging::new_user_space` gives an empty user
//!   half sharing the kernel half; `switch_to` loads it; `AddressSpace::destroy`
//!   frees its tables. User programs link in the lower half (below
//!   `0x0000_8000_0000_0000`); nothing of the kernel is mapped there.

pub mod copy;
pub mod exceptions;
#[cfg(feature = "test-harness")]
pub mod fault_probe;
pub mod gdt;
pub mod idt;
pub mod protection;
pub mod random;
pub mod stacks;
pub mod syscall_entry;
pub mod trap;
mod trap_entry;

/// Lets pending interrupts in for a moment if the caller runs with them
/// off, as every system call does; does nothing if they are on.
///
/// Long kernel work (loading a program image) calls this between bounded
/// steps, so interrupt latency is bounded by one step, not by the size of
/// the work. The caller must hold no lock an interrupt handler takes
/// without `try_lock` (the handlers take only the clock, the serial port
/// and the console input buffer, and the kernel state with `try_lock`).
/// Interrupts arriving in ring 0 never switch tasks, so the caller resumes
/// where it was.
pub fn let_interrupts_in() {
    if !x86_64::instructions::interrupts::are_enabled() {
        // SAFETY: `sti` takes effect after the next instruction, so the
        // `nop` is where pending interrupts are delivered; `cli` restores
        // the caller's state. Handlers run on this stack (the kernel is
        // built without a red zone) and return here; the asm clobbers
        // memory, so nothing read before is assumed unchanged.
        unsafe { core::arch::asm!("sti", "nop", "cli") };
    }
}

/// Halts this CPU for good, with interrupts off.
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
