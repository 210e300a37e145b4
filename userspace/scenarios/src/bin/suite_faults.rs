//! Fault isolation suite: each misbehaving child dies with a failure that
//! names its fault, and the system carries on.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;
use alloc::vec;
use pandagen_abi::identity::CpuFault;
use pandagen_abi::{Duration, ExitReason, FailureCause, KernelApi, KernelError};
use pandagen_rt::Kernel;
use pandagen_scenarios::{spawn, wait_exit, Tally, NO_ALIGNMENT_CHECK};

pandagen_rt::entry!(main);

type Expectation = fn(&ExitReason) -> bool;

fn fault(reason: &ExitReason) -> Option<CpuFault> {
    match reason {
        ExitReason::Failure {
            error: FailureCause::Fault(f),
        } => Some(*f),
        _ => None,
    }
}

const CASES: &[(&str, Expectation)] = &[
    ("fault_pf_user", |r| {
        matches!(fault(r), Some(CpuFault::PageFault { address: 0x10, .. }))
    }),
    ("fault_pf_kernel", |r| {
        matches!(
            fault(r),
            Some(CpuFault::PageFault {
                address: 0xffff_8000_0000_1000,
                ..
            })
        )
    }),
    ("fault_write_rodata", |r| {
        matches!(fault(r), Some(CpuFault::PageFault { .. }))
    }),
    ("fault_exec_data", |r| {
        matches!(fault(r), Some(CpuFault::PageFault { .. }))
    }),
    ("fault_jump_kernel", |r| {
        matches!(
            fault(r),
            Some(CpuFault::PageFault {
                address: 0xffff_8000_0010_0000,
                ..
            })
        )
    }),
    ("fault_gp", |r| {
        matches!(fault(r), Some(CpuFault::GeneralProtection { .. }))
    }),
    ("fault_ud", |r| {
        matches!(fault(r), Some(CpuFault::InvalidOpcode))
    }),
    ("fault_de", |r| {
        matches!(fault(r), Some(CpuFault::DivideError))
    }),
    ("fault_bp", |r| {
        matches!(fault(r), Some(CpuFault::Breakpoint))
    }),
    // #AC where the CPU raises it; QEMU's TCG never does, and the faulter
    // then says so (see NO_ALIGNMENT_CHECK) rather than exiting normally.
    ("fault_ac", |r| match r {
        ExitReason::Failure {
            error: FailureCause::Described(text),
        } => text == NO_ALIGNMENT_CHECK,
        _ => matches!(fault(r), Some(CpuFault::AlignmentCheck)),
    }),
    ("fault_priv_hlt", |r| {
        matches!(fault(r), Some(CpuFault::GeneralProtection { .. }))
    }),
    ("fault_priv_cr3", |r| {
        matches!(fault(r), Some(CpuFault::GeneralProtection { .. }))
    }),
    ("fault_priv_out", |r| {
        matches!(fault(r), Some(CpuFault::GeneralProtection { .. }))
    }),
    ("fault_stack", |r| {
        matches!(fault(r), Some(CpuFault::StackOverflow { .. }))
    }),
    ("fault_panic", |r| {
        matches!(
            r,
            ExitReason::Failure {
                error: FailureCause::Panic
            }
        )
    }),
    ("well_behaved", |r| matches!(r, ExitReason::Normal)),
];

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let mut tally = Tally::default();
    let exits = kernel.create_channel()?;
    for (name, expected) in CASES {
        let outcome: Result<(), String> = spawn(kernel, name, "faulter", vec![], exits)
            .map_err(|e| alloc::format!("spawn failed: {e}"))
            .and_then(|child| {
                let notification = wait_exit(kernel, exits, Duration::from_secs(30))?;
                if notification.task_id != Some(child.task_id) {
                    return Err(alloc::format!(
                        "notification for {:?}, expected {}",
                        notification.task_id,
                        child.task_id
                    ));
                }
                if expected(&notification.reason) {
                    Ok(())
                } else {
                    Err(alloc::format!("exit reason {:?}", notification.reason))
                }
            });
        tally.check(&alloc::format!("faults/{name}"), outcome);
    }
    // The supervisor itself is still alive and the kernel still serves it.
    let alive = kernel
        .create_channel()
        .map(|_| ())
        .map_err(|e| alloc::format!("{e}"));
    tally.check("faults/system_keeps_running", alive);
    tally.finish(kernel)
}
