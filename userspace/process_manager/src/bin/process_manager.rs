//! The process manager as a ring-3 program: the root task.
//!
//! The kernel gives it the root capabilities (registry, boot image, kernel
//! info, serial input). It validates the manifest, logs the start order,
//! and supervises the services, logging every supervision event.
//!
//! The manifest is compiled in from `manifests/system.manifest` (the same
//! file xtask packs into the ramdisk as `manifest`): the system-call ABI
//! has no call yet for reading a ramdisk file, so the copy in the boot
//! image cannot be read from ring 3.
#![no_std]
#![no_main]

extern crate alloc;

use pandagen_process_manager::{parse_manifest, BootCapabilities, Supervisor, SupervisorConfig};
use pandagen_rt::abi::{ExitReason, FailureCause, KernelError};
use pandagen_rt::{println, Kernel};

const MANIFEST: &[u8] = include_bytes!("../../manifests/system.manifest");

pandagen_rt::entry!(main);

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let startup = kernel.startup()?;
    let manifest = match parse_manifest(MANIFEST) {
        Ok(manifest) => manifest,
        Err(error) => {
            println!("process-manager: manifest rejected: {error}");
            kernel.exit(ExitReason::Failure {
                error: FailureCause::Described(alloc::format!("manifest rejected: {error}")),
            });
        }
    };
    for (position, service) in manifest.start_order().iter().enumerate() {
        println!(
            "process-manager: start order {}: {} ({})",
            position + 1,
            service.name,
            service.service_id
        );
    }
    let caps = BootCapabilities::from_root_handles(&startup.capabilities);
    let mut supervisor = Supervisor::new(manifest, caps, SupervisorConfig::default())
        .with_terminator(pandagen_rt::syscall::terminate);
    if let Err(error) = supervisor.boot(kernel) {
        println!("process-manager: boot failed: {error:?}");
        kernel.exit(ExitReason::Failure {
            error: FailureCause::Described(alloc::format!("boot failed: {error:?}")),
        });
    }
    loop {
        for (at, event) in supervisor.events_mut().drain() {
            println!("process-manager: [{} ms] {event:?}", at.as_millis());
        }
        if supervisor.step(kernel).is_err() {
            let _ = pandagen_rt::abi::KernelApi::sleep(kernel, supervisor.config().ready_poll);
        }
    }
}
