//! Expected faults: memory accesses that are allowed to fault.
//!
//! A probe arms a recovery record (the address of its one access
//! instruction and the address to resume at), performs the access, and
//! disarms. If that exact instruction faults with #PF or #GP, the exception
//! handler records the fault and resumes at the recovery point instead of
//! treating the fault as fatal. Any other fault is still fatal.
//!
//! The kernel tests use this to check that unmapped pages, read-only pages
//! and SMAP really fault, with the right CR2 and error code; the syscall
//! layer can use the same mechanism to copy from user pointers that turn
//! out to be bad.

use super::idt::vector;
use super::trap::TrapFrame;
use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;
use x86_64::registers::control::Cr2;

/// The armed probe: `[access instruction address, resume address]`.
/// Written by the probe's assembly, read and cleared by the handler.
static ARMED: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
static CAUGHT: Mutex<Option<CaughtFault>> = Mutex::new(None);

/// A fault a probe caught.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaughtFault {
    pub vector: u8,
    pub error_code: u64,
    /// CR2 at the time of the fault (meaningful for #PF).
    pub cr2: u64,
    pub rip: u64,
}

/// Called by the exception handler: resumes an armed probe that faulted.
pub(super) fn try_recover(frame: &mut TrapFrame) -> bool {
    let vec = frame.vector as u8;
    if frame.is_from_user() || !(vec == vector::PAGE_FAULT || vec == vector::GENERAL_PROTECTION) {
        return false;
    }
    let access = ARMED[0].load(Ordering::Relaxed);
    if access == 0 || access != frame.rip {
        return false;
    }
    let resume = ARMED[1].load(Ordering::Relaxed);
    ARMED[0].store(0, Ordering::Relaxed);
    ARMED[1].store(0, Ordering::Relaxed);
    *CAUGHT.lock() = Some(CaughtFault {
        vector: vec,
        error_code: frame.error_code,
        cr2: if vec == vector::PAGE_FAULT {
            Cr2::read_raw()
        } else {
            0
        },
        rip: frame.rip,
    });
    frame.rip = resume;
    true
}

fn take_caught() -> Option<CaughtFault> {
    CAUGHT.lock().take()
}

/// Reads the `u64` at `addr`, reporting a fault instead of dying of it.
///
/// # Safety
/// If `addr` is accessible, reading it must be harmless (ordinary memory,
/// not a device register with read side effects).
pub unsafe fn read_u64(addr: u64) -> Result<u64, CaughtFault> {
    take_caught();
    let mut value = 0u64;
    // SAFETY: the only access is the `mov` at label 2; if it faults, the
    // handler resumes at label 3 with every register but RIP unchanged, as
    // after a normal completion (the destination is left untouched).
    // Interrupts may arrive meanwhile; they do not fault at label 2.
    unsafe {
        asm!(
            "lea {tmp}, [rip + 2f]",
            "mov qword ptr [{armed}], {tmp}",
            "lea {tmp}, [rip + 3f]",
            "mov qword ptr [{armed} + 8], {tmp}",
            "2:",
            "mov {value}, qword ptr [{addr}]",
            "3:",
            "mov qword ptr [{armed}], 0",
            armed = in(reg) ARMED.as_ptr(),
            addr = in(reg) addr,
            value = inout(reg) value,
            tmp = out(reg) _,
            options(nostack),
        );
    }
    match take_caught() {
        Some(fault) => Err(fault),
        None => Ok(value),
    }
}

/// Writes `value` to the `u64` at `addr`, reporting a fault instead of
/// dying of it.
///
/// # Safety
/// If `addr` is writable, the caller must own the `u64` there.
pub unsafe fn write_u64(addr: u64, value: u64) -> Result<(), CaughtFault> {
    take_caught();
    // SAFETY: as in `read_u64`; the store at label 2 either completes or
    // faults without effect.
    unsafe {
        asm!(
            "lea {tmp}, [rip + 2f]",
            "mov qword ptr [{armed}], {tmp}",
            "lea {tmp}, [rip + 3f]",
            "mov qword ptr [{armed} + 8], {tmp}",
            "2:",
            "mov qword ptr [{addr}], {value}",
            "3:",
            "mov qword ptr [{armed}], 0",
            armed = in(reg) ARMED.as_ptr(),
            addr = in(reg) addr,
            value = in(reg) value,
            tmp = out(reg) _,
            options(nostack),
        );
    }
    match take_caught() {
        Some(fault) => Err(fault),
        None => Ok(()),
    }
}
