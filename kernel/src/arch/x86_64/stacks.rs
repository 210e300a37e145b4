//! The kernel's stacks, each with an unmapped guard page directly below it.
//!
//! | stack   | size    | used for                                        |
//! |---------|---------|-------------------------------------------------|
//! | boot    | 256 KiB | bring-up, the idle loop, the ring-0 self-tests  |
//! | entry   | 64 KiB  | every entry from ring 3 (syscall, trap)         |
//! | #DF     | 16 KiB  | double fault (IST 1)                            |
//! | NMI     | 16 KiB  | NMI (IST 2)                                     |
//! | #MC     | 16 KiB  | machine check (IST 3)                           |
//!
//! The bootloader leaves a page unmapped below the boot stack. The others
//! are statics whose first page is the guard: [`arm_guards`] unmaps it once
//! paging is up (before that, nothing has run deep enough to reach it).
//! A stack that overflows writes into its guard page; the page fault
//! cannot be delivered on the same stack, so the CPU raises a double
//! fault, which runs on its own IST stack and reports *which* stack
//! overflowed ([`overflowed_stack`]) instead of letting the overflow
//! corrupt whatever lies below.

use core::ptr::addr_of_mut;
use core::sync::atomic::{AtomicU64, Ordering};
#[cfg(feature = "test-harness")]
use spin::Mutex;

#[cfg(feature = "test-harness")]
use super::trap::TrapFrame;

const PAGE: usize = 4096;
/// Bytes of the stack every entry from ring 3 uses.
pub const ENTRY_STACK_SIZE: usize = 64 * 1024;
/// Bytes of each IST stack.
pub const IST_STACK_SIZE: usize = 16 * 1024;

/// A stack and the guard page below it.
#[repr(C, align(4096))]
struct Guarded<const N: usize> {
    guard: [u8; PAGE],
    stack: [u8; N],
}

impl<const N: usize> Guarded<N> {
    const fn new() -> Self {
        Guarded {
            guard: [0; PAGE],
            stack: [0; N],
        }
    }
}

static mut ENTRY_STACK: Guarded<ENTRY_STACK_SIZE> = Guarded::new();
static mut IST_STACKS: [Guarded<IST_STACK_SIZE>; 3] = [const { Guarded::new() }; 3];
/// Lowest address of the boot stack (the bootloader's guard is below it).
static BOOT_STACK_BOTTOM: AtomicU64 = AtomicU64::new(0);

/// The name of IST stack `slot` (0-based, in TSS order).
const IST_NAMES: [&str; 3] = [
    "double-fault (IST 1)",
    "NMI (IST 2)",
    "machine-check (IST 3)",
];

// Only addresses are taken (`addr_of_mut!` creates no reference): the
// stacks are used as raw memory by the CPU and the entry stubs.
fn entry_base() -> u64 {
    addr_of_mut!(ENTRY_STACK) as u64
}

fn ist_base(slot: usize) -> u64 {
    // SAFETY: as in `entry_base`.
    unsafe { addr_of_mut!(IST_STACKS[slot]) as u64 }
}

/// The top of the stack every entry from ring 3 uses.
pub fn entry_stack_top() -> u64 {
    entry_base() + (PAGE + ENTRY_STACK_SIZE) as u64
}

/// The top of IST stack `slot` (0-based).
pub fn ist_stack_top(slot: usize) -> u64 {
    ist_base(slot) + (PAGE + IST_STACK_SIZE) as u64
}

/// Remember where the bootloader put the boot stack.
pub fn set_boot_stack(bottom: u64) {
    BOOT_STACK_BOTTOM.store(bottom, Ordering::Relaxed);
}

/// Every guard page: `(stack name, guard page address)`.
pub fn guards() -> [(&'static str, u64); 5] {
    let boot = BOOT_STACK_BOTTOM.load(Ordering::Relaxed);
    [
        ("boot", boot.wrapping_sub(PAGE as u64)),
        ("entry", entry_base()),
        (IST_NAMES[0], ist_base(0)),
        (IST_NAMES[1], ist_base(1)),
        (IST_NAMES[2], ist_base(2)),
    ]
}

/// Unmap the guard pages of the kernel's own stacks (the boot stack's is
/// the bootloader's, unmapped already). Their frames stay with the kernel
/// image. Call once, after paging is set up.
pub fn arm_guards() {
    for (name, guard) in guards().into_iter().skip(1) {
        if let Err(e) = crate::mem::paging::unmap_kernel_page(guard) {
            panic!("cannot unmap the guard page of the {name} stack at {guard:#x}: {e:?}");
        }
    }
}

/// The stack whose guard page holds `address`, if any.
pub fn overflowed_stack(address: u64) -> Option<&'static str> {
    guards()
        .into_iter()
        .find(|&(_, guard)| (guard..guard + PAGE as u64).contains(&address))
        .map(|(name, _)| name)
}

#[cfg(feature = "test-harness")]
/// An overflow [`overflow_probe`] caught.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overflow {
    pub stack: &'static str,
    /// The address that faulted (CR2).
    pub address: u64,
}

#[cfg(feature = "test-harness")]
/// Where an armed probe resumes, and its stack pointer then.
static PROBE_RESUME: AtomicU64 = AtomicU64::new(0);
#[cfg(feature = "test-harness")]
static PROBE_RSP: AtomicU64 = AtomicU64::new(0);
#[cfg(feature = "test-harness")]
static CAUGHT: Mutex<Option<Overflow>> = Mutex::new(None);

#[cfg(feature = "test-harness")]
/// Called by the double-fault handler after it reported `overflow`:
/// resumes an armed probe.
pub(super) fn try_recover(frame: &mut TrapFrame, overflow: Overflow) -> bool {
    let resume = PROBE_RESUME.swap(0, Ordering::Relaxed);
    if resume == 0 || frame.is_from_user() {
        return false;
    }
    *CAUGHT.lock() = Some(overflow);
    frame.rip = resume;
    frame.rsp = PROBE_RSP.load(Ordering::Relaxed);
    true
}

#[cfg(feature = "test-harness")]
/// Overflow a stack on purpose (a ring-0 self-test): from `top` (or from
/// the current stack pointer if `None`), touch one word every 512 bytes
/// downwards, as a chain of calls with 512-byte frames would, until the
/// stack's guard page faults. Returns what the double-fault
/// handler caught, or `None` if it did not resume the probe (it then
/// stopped the machine, so this never returns `None` in practice).
///
/// # Safety
/// Everything from the start point down to the guard page is overwritten:
/// `top` must be the top of a stack nothing else is using, and with `None`
/// the caller's own stack below the current frame must be free.
pub unsafe fn overflow_probe(top: Option<u64>) -> Option<Overflow> {
    CAUGHT.lock().take();
    let were_enabled = x86_64::instructions::interrupts::are_enabled();
    x86_64::instructions::interrupts::disable();
    // SAFETY: the callee-saved registers are pushed before and popped after
    // the walk; the double-fault handler resumes at label 3 with RSP back
    // at the value saved before the walk, so the pops find them. Only the
    // pages below the start point are written (the caller's promise).
    unsafe {
        core::arch::asm!(
            "push rbx",
            "push rbp",
            "push r12",
            "push r13",
            "push r14",
            "push r15",
            "mov qword ptr [rip + {rsp}], rsp",
            "lea rax, [rip + 3f]",
            "mov qword ptr [rip + {resume}], rax",
            "test rdi, rdi",
            "jz 2f",
            "mov rsp, rdi",
            "2:",
            "sub rsp, 512",
            "mov qword ptr [rsp], 0",
            "jmp 2b",
            "3:",
            "pop r15",
            "pop r14",
            "pop r13",
            "pop r12",
            "pop rbp",
            "pop rbx",
            rsp = sym PROBE_RSP,
            resume = sym PROBE_RESUME,
            in("rdi") top.unwrap_or(0),
            out("rax") _,
        );
    }
    if were_enabled {
        x86_64::instructions::interrupts::enable();
    }
    CAUGHT.lock().take()
}
