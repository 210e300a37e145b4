//! The trap frame and the single Rust entry point for every interrupt and
//! exception.
//!
//! The assembly stubs in `trap_entry` push a complete [`TrapFrame`] on the
//! current kernel stack and call [`trap_dispatch`] with a pointer to it.
//! The dispatcher returns the frame to resume: the same one, or, after a
//! switch (preemption, a task's fault), the next task's saved registers in
//! its record, and the common exit path restores *that* task's registers
//! and `iretq`s into it. The syscall entry builds the same frame (in the
//! running task's record), so a task preempted in either path resumes the
//! same way.

use super::exceptions;
use core::mem::offset_of;
use pandagen_hal::x86_64::{clock, interrupts, pic};

/// Vector of the periodic timer (IRQ 0).
pub const TIMER_VECTOR: u8 = pic::IRQ_BASE;

/// Assembly that pushes the general-purpose registers in [`TrapFrame`]
/// order (the last pushed, r15, is the frame's first field). The interrupt
/// and the syscall entry both use it, so the layout is written once.
macro_rules! push_gprs {
    () => {
        concat!(
            "push rax\n",
            "push rbx\n",
            "push rcx\n",
            "push rdx\n",
            "push rsi\n",
            "push rdi\n",
            "push rbp\n",
            "push r8\n",
            "push r9\n",
            "push r10\n",
            "push r11\n",
            "push r12\n",
            "push r13\n",
            "push r14\n",
            "push r15\n",
        )
    };
}

/// The inverse of [`push_gprs`]: restores the registers of a [`TrapFrame`]
/// at RSP, leaving RSP at its vector field.
macro_rules! pop_gprs {
    () => {
        concat!(
            "pop r15\n",
            "pop r14\n",
            "pop r13\n",
            "pop r12\n",
            "pop r11\n",
            "pop r10\n",
            "pop r9\n",
            "pop r8\n",
            "pop rbp\n",
            "pop rdi\n",
            "pop rsi\n",
            "pop rdx\n",
            "pop rcx\n",
            "pop rbx\n",
            "pop rax\n",
        )
    };
}

pub(crate) use {pop_gprs, push_gprs};

/// The bit of [`TrapFrame::vector`] the trap entry sets when it arrived in
/// ring 0 with the user's GS base and had to `swapgs`, so the exit swaps
/// back before resuming that code.
pub const USER_GS_AT_ENTRY_BIT: u64 = 63;

/// Every register of an interrupted context, as the entry stubs lay it
/// out (lowest address first).
#[repr(C)]
#[derive(Debug, Clone, Default)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Interrupt vector, pushed by the stub, in the low byte (read it as
    /// `vector as u8`). Bit [`USER_GS_AT_ENTRY_BIT`] is the entry path's
    /// own mark (see `trap_entry`). The syscall entry writes neither this
    /// nor the error code into a task's record (nothing reads them there:
    /// the exits skip both, and only a frame on the kernel stack is
    /// dispatched by its vector).
    pub vector: u64,
    /// The CPU's error code, or 0 for vectors without one.
    pub error_code: u64,
    // What the CPU pushes (always all five in 64-bit mode).
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// Bytes from `vector` to `cs` (used by the stubs to test the privilege
/// level before any register is saved).
pub const VECTOR_TO_CS: usize = offset_of!(TrapFrame, cs) - offset_of!(TrapFrame, vector);
const _: () = assert!(VECTOR_TO_CS == 24);
const _: () = assert!(core::mem::size_of::<TrapFrame>() == 22 * 8);
// The CPU aligns RSP to 16 before pushing; 22 words keep the frame (and so
// the dispatcher's call) 16-byte aligned.
const _: () = assert!(core::mem::size_of::<TrapFrame>().is_multiple_of(16));

/// The frame's size in 8-byte words.
const TRAP_FRAME_WORDS: usize = core::mem::size_of::<TrapFrame>() / 8;

impl TrapFrame {
    /// Whether the interrupted code ran in ring 3.
    pub fn is_from_user(&self) -> bool {
        self.cs & 3 == 3
    }

    /// Whether CS and SS are the user selectors, as in every task's
    /// record: `attach` writes them, and the only other frames copied into
    /// a record are interrupts' from ring 3, whose CS and SS the CPU pushed
    /// and can be no others (the GDT's only DPL-3 segments are
    /// `USER_CODE` and `USER_DATA`, there is no LDT, and ring 3 cannot load
    /// a null SS in 64-bit mode). The syscall stub relies on it and does
    /// not write them; debug builds check it on every call.
    pub fn has_user_selectors(&self) -> bool {
        self.cs == u64::from(super::gdt::USER_CODE) && self.ss == u64::from(super::gdt::USER_DATA)
    }

    /// Overwrite `dst` with this frame: the saving of a caller's registers
    /// into its record on every direct `Exchange`. One `rep movsq`, where
    /// `clone_from` calls `memcpy`, which for the 22 words spends a
    /// dozen instructions more on its call and set-up.
    #[inline(always)]
    pub fn copy_into(&self, dst: &mut TrapFrame) {
        // SAFETY: `self` and `dst` are valid, 8-byte aligned frames of
        // `TRAP_FRAME_WORDS` words each and cannot overlap (a shared and an
        // exclusive borrow); the direction flag is clear in Rust code (the
        // ABI requires it; the entry stubs `cld`), so the copy runs upward
        // over exactly `dst`'s words.
        unsafe {
            core::arch::asm!(
                "rep movsq",
                inout("rcx") TRAP_FRAME_WORDS => _,
                inout("rdi") dst as *mut TrapFrame => _,
                inout("rsi") self as *const TrapFrame => _,
                options(nostack, preserves_flags),
            );
        }
    }
}

/// Handles one trap. Called only by the entry stubs, with interrupts off.
///
/// Returns the frame to resume.
pub(super) extern "C" fn trap_dispatch(frame: &mut TrapFrame) -> *mut TrapFrame {
    // A switch resumes another task's record instead of this frame.
    let mut switched = None;
    // Interrupt gates do not clear RFLAGS.AC: if the trap arrived inside a
    // `with_user_access` window, SMAP would stay lifted for the handler.
    // `iretq` restores the interrupted code's AC.
    super::protection::rearm_smap();
    let vector = frame.vector as u8;
    match vector {
        0..=31 => switched = exceptions::handle(frame),
        TIMER_VECTOR => {
            clock::tick();
            // SAFETY: acknowledging the IRQ we are handling, once.
            unsafe { pic::end_of_interrupt(vector) };
            crate::console_input::on_tick();
            crate::device::on_tick();
            crate::screen_output::on_tick();
            // A tick in ring 0 is the idle loop's wake-up, which looks at
            // the deadlines itself; a tick in ring 3 may preempt.
            if frame.is_from_user() {
                switched = crate::task::preempt_tick(frame);
            }
        }
        v if pic::is_irq_vector(v) => {
            // SAFETY: ring 0, inside the handler of vector v.
            if !unsafe { pic::is_spurious(v) } && !interrupts::dispatch(v) {
                log::warn!("unhandled IRQ {}", v - pic::IRQ_BASE);
            }
            // SAFETY: acknowledging the IRQ we are handling, once.
            unsafe { pic::end_of_interrupt(v) };
        }
        _ => log::warn!("unexpected interrupt vector {vector}"),
    }
    switched.unwrap_or(frame)
}
