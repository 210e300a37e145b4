//! CPU exceptions: report, recover where that was planned, otherwise stop.
//!
//! Policy today (ring 0 only):
//! - #BP returns (the breakpoint is counted and logged).
//! - NMI is logged and returns.
//! - In a kernel with the test harness, a fault armed through
//!   `fault_probe` resumes at the probe's recovery point.
//! - A double fault whose CR2 lies in a stack's guard page is reported as
//!   that stack's overflow (see [`stacks`]), then is fatal like any other
//!   (with the test harness, the self-test's overflow probe resumes
//!   instead).
//! - Anything else is fatal: a full register dump, then
//!   [`stop_after_fatal_error`](crate::panic::stop_after_fatal_error)
//!   (QEMU exits with failure in test modes, the CPU halts otherwise).
//!
//! A fault from ring 3 ([`TrapFrame::is_from_user`]) ends only the faulting
//! task, with `ExitReason::Failure` naming the fault (see
//! `task::user_fault`); the kernel prints one report line and runs on.

use super::idt::vector;
use super::stacks;
use super::trap::TrapFrame;
use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::registers::control::Cr2;
use x86_64::registers::model_specific::GsBase;

static BREAKPOINTS: AtomicU64 = AtomicU64::new(0);
/// The GS base the last ring-0 breakpoint's handler ran on (the self-tests
/// check that a trap from ring 0 with the user's GS base still runs on the
/// kernel's).
static BREAKPOINT_GS_BASE: AtomicU64 = AtomicU64::new(0);

/// Names of the 32 exception vectors.
const NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range exceeded",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor segment overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack-segment fault",
    "#GP general protection",
    "#PF page fault",
    "reserved (15)",
    "#MF x87 floating-point",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD floating-point",
    "#VE virtualization",
    "#CP control protection",
    "reserved (22)",
    "reserved (23)",
    "reserved (24)",
    "reserved (25)",
    "reserved (26)",
    "reserved (27)",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security",
    "reserved (31)",
];

/// The name of exception `vector` (0..32).
pub fn name(vector: u8) -> &'static str {
    NAMES
        .get(usize::from(vector))
        .copied()
        .unwrap_or("not an exception")
}

/// How many breakpoints have been taken.
#[cfg(feature = "test-harness")]
pub fn breakpoints() -> u64 {
    BREAKPOINTS.load(Ordering::Relaxed)
}

/// The GS base in effect while the last ring-0 breakpoint was handled.
#[cfg(feature = "test-harness")]
pub fn last_breakpoint_gs_base() -> u64 {
    BREAKPOINT_GS_BASE.load(Ordering::Relaxed)
}

/// Handles exception `frame`; returns the next task's saved registers
/// when a ring-3 fault ended the running task, `None` to resume `frame`.
pub(super) fn handle(frame: &mut TrapFrame) -> Option<*mut TrapFrame> {
    let vec = frame.vector as u8;
    if frame.is_from_user() && vec != vector::NMI && vec != vector::MACHINE_CHECK {
        // Ends only the faulting task; the next task's record is resumed.
        return Some(crate::task::user_fault(frame));
    }
    match vec {
        vector::BREAKPOINT => {
            BREAKPOINTS.fetch_add(1, Ordering::Relaxed);
            BREAKPOINT_GS_BASE.store(GsBase::read().as_u64(), Ordering::Relaxed);
            log::info!("breakpoint at {:#x}", frame.rip.wrapping_sub(1));
        }
        vector::NMI => log::warn!("NMI at {:#x}", frame.rip),
        vector::DOUBLE_FAULT => {
            let address = Cr2::read_raw();
            if let Some(stack) = stacks::overflowed_stack(address) {
                report_overflow(stack, address, frame);
                #[cfg(feature = "test-harness")]
                if stacks::try_recover(frame, stacks::Overflow { stack, address }) {
                    return None;
                }
            }
            report(frame);
            crate::panic::stop_after_fatal_error()
        }
        _ => {
            #[cfg(feature = "test-harness")]
            if super::fault_probe::try_recover(frame) {
                return None;
            }
            // An access far into a guard page is delivered as a plain
            // page fault when the exception frame still fits above it.
            if vec == vector::PAGE_FAULT {
                let address = Cr2::read_raw();
                if let Some(stack) = stacks::overflowed_stack(address) {
                    report_overflow(stack, address, frame);
                }
            }
            report(frame);
            crate::panic::stop_after_fatal_error()
        }
    }
    None
}

/// Names the stack that overflowed, before the register dump.
fn report_overflow(stack: &str, address: u64, frame: &TrapFrame) {
    crate::console::emergency(format_args!(
        "\nKERNEL STACK OVERFLOW: the {stack} stack ran into its guard page \
         (CR2={address:#018x}, RSP={:#018x}, RIP={:#018x})\n",
        frame.rsp, frame.rip
    ));
}

/// Prints one exception with all registers.
fn report(frame: &TrapFrame) {
    let vec = frame.vector as u8;
    let emit = crate::console::emergency;
    emit(format_args!(
        "\nEXCEPTION {} (vector {}) in ring {} error_code={:#x}\n",
        name(vec),
        vec,
        frame.cs & 3,
        frame.error_code
    ));
    if vec == vector::PAGE_FAULT {
        let e = frame.error_code;
        emit(format_args!(
            "  CR2={:#018x} ({}, {}, {} mode{}{})\n",
            Cr2::read_raw(),
            if e & 1 != 0 {
                "protection violation"
            } else {
                "not present"
            },
            if e & 2 != 0 { "write" } else { "read" },
            if e & 4 != 0 { "user" } else { "supervisor" },
            if e & 8 != 0 { ", reserved bit set" } else { "" },
            if e & 16 != 0 {
                ", instruction fetch"
            } else {
                ""
            },
        ));
    }
    emit(format_args!(
        "  RIP={:#018x} CS={:#06x} RFLAGS={:#010x} RSP={:#018x} SS={:#06x}\n",
        frame.rip, frame.cs, frame.rflags, frame.rsp, frame.ss
    ));
    emit(format_args!(
        "  RAX={:#018x} RBX={:#018x} RCX={:#018x} RDX={:#018x}\n",
        frame.rax, frame.rbx, frame.rcx, frame.rdx
    ));
    emit(format_args!(
        "  RSI={:#018x} RDI={:#018x} RBP={:#018x} R8 ={:#018x}\n",
        frame.rsi, frame.rdi, frame.rbp, frame.r8
    ));
    emit(format_args!(
        "  R9 ={:#018x} R10={:#018x} R11={:#018x} R12={:#018x}\n",
        frame.r9, frame.r10, frame.r11, frame.r12
    ));
    emit(format_args!(
        "  R13={:#018x} R14={:#018x} R15={:#018x}\n",
        frame.r13, frame.r14, frame.r15
    ));
}
