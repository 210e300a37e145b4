//! Adversary (issue 13, finding 2): a task that holds a registration for
//! its own id tries to take the ids of the system services — and so their
//! requests and the right to mint their object capabilities. Every attempt
//! must be refused: a registration names one id.
//!
//! Capabilities: the suite's inbox (send), a `ServiceRegistration` for an
//! id of its own, which it hands back with its report.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use pandagen_abi::services::{PIPELINE_EXECUTOR, PROCESS_MANAGER, STORAGE, TRANSFORMER};
use pandagen_abi::{Cap, ChannelId, KernelApi, KernelError, Rights};
use pandagen_rt::Kernel;
use pandagen_scenarios::adversary::{park, report, Breaches};

pandagen_rt::entry!(main);

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let info = kernel.startup()?;
    let inbox = ChannelId::from_handle(info.capabilities[0]);
    let registration: Cap<()> = Cap::from_handle(info.capabilities[1]);
    let mut breaches = Breaches::default();
    let refused = |e: &KernelError| *e == KernelError::InsufficientAuthority;
    for target in [PROCESS_MANAGER, STORAGE, PIPELINE_EXECUTOR, TRANSFORMER] {
        let channel = kernel.create_channel()?;
        let what = alloc::format!("register {target}");
        breaches.expect_refused(&what, kernel.register_service(target, channel), refused);
        let what = alloc::format!("mint an object capability of {target}");
        let minted = kernel.mint_object_capability(target, u64::MAX, Rights::ALL);
        breaches.expect_refused(&what, minted, refused);
        let what = alloc::format!("mint a registration for {target}");
        let widened = kernel.mint_registration_capability(&registration, target);
        breaches.expect_refused(&what, widened, |e| {
            matches!(e, KernelError::WrongCapabilityKind { .. })
        });
        kernel.drop_capability(Cap::from(channel))?;
    }
    report(kernel, inbox, breaches, vec![registration])?;
    park(kernel)
}
