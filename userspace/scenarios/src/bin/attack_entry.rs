//! Adversary (issue 13, findings 1 and 5): attacks on the kernel's entry
//! and on the work it does before checking authority.
//!
//! * Finding 1: system calls made with RFLAGS.NT and DF set (`pushfq; or;
//!   popfq; syscall`). Unmasked NT made the kernel's `iretq` back to ring
//!   3 raise #GP in ring 0 and halt the machine. Every call must be
//!   answered normally and ring 3 must get its own flags back.
//! * Finding 5: spawns of the system's largest programs without a
//!   `BootImage` capability. The kernel used to load the whole image
//!   before checking; each must be refused (`InsufficientAuthority`) and,
//!   repeated many times, must not stall anyone (the suite checks that
//!   the services answer afterwards).
//!
//! Capabilities: the suite's inbox (send).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use pandagen_abi::error::SyscallError;
use pandagen_abi::syscall::{decode_status, Syscall, SYSCALL_COUNT};
use pandagen_abi::{ChannelId, KernelApi, KernelError, TaskDescriptor};
use pandagen_rt::syscall::{syscall_with_flags_set, RFLAGS_DF, RFLAGS_NT};
use pandagen_rt::Kernel;
use pandagen_scenarios::adversary::{park, report, Breaches};

pandagen_rt::entry!(main);

/// Refused spawns per image.
const SPAWN_TRIES: usize = 50;

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let info = kernel.startup()?;
    let inbox = ChannelId::from_handle(info.capabilities[0]);
    let mut breaches = Breaches::default();
    let hostile = RFLAGS_NT | RFLAGS_DF;
    let mut response = [0u8; 256];
    // An unknown call, a call that answers, and one that blocks briefly:
    // each leaves the kernel by a different path.
    for number in [SYSCALL_COUNT, Syscall::Now as u64, Syscall::Yield as u64] {
        for _ in 0..100 {
            let (status, flags) = syscall_with_flags_set(number, hostile, &[], &mut response);
            let answer = decode_status(status).map(|len| &response[..len]);
            let wrong = if flags & hostile != hostile {
                Some(alloc::format!("ring 3 got RFLAGS {flags:#x} back"))
            } else if number == SYSCALL_COUNT {
                let expected = KernelError::Syscall(SyscallError::UnknownSyscall(SYSCALL_COUNT));
                let got = answer.map(postcard::from_bytes::<Result<(), KernelError>>);
                (got != Ok(Ok(Err(expected)))).then(|| alloc::format!("answered {got:?}"))
            } else {
                answer.err().map(|e| alloc::format!("failed {e:?}"))
            };
            if let Some(wrong) = wrong {
                breaches.record(alloc::format!("call {number} with NT and DF set: {wrong}"));
                break;
            }
        }
    }
    for image in ["storage", "process_manager", "pipeline_executor"] {
        for _ in 0..SPAWN_TRIES {
            let spawned = kernel.spawn_task(TaskDescriptor::new(image.into()).with_image(image));
            if spawned != Err(KernelError::InsufficientAuthority) {
                let what = alloc::format!("spawn {image} without a boot-image capability");
                breaches.record(alloc::format!("{what}: {spawned:?}"));
                break;
            }
        }
    }
    report(kernel, inbox, breaches, vec![])?;
    park(kernel)
}
