//! The process manager as a ring-3 program: the root task.
//!
//! The kernel gives it the root capabilities (registry, boot image, kernel
//! info, serial input). It validates the manifest, logs the start order,
//! and supervises the services, logging every supervision event.
//!
//! The manifest is the boot image's `manifest` file (xtask packs
//! `manifests/system.manifest` there), read with the boot-image capability.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use pandagen_process_manager::{
    parse_manifest, BootCapabilities, LifecycleState, Supervisor, SupervisorConfig, SupervisorEvent,
};
use pandagen_rt::abi::{ExitReason, FailureCause, Instant, KernelError, ServiceId};
use pandagen_rt::{println, Kernel};

pandagen_rt::entry!(main);

/// Where the root capabilities put the boot image (`ROOT_CAPABILITIES`).
const BOOT_IMAGE_SLOT: usize = 1;

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let startup = kernel.startup()?;
    let manifest_bytes = match startup.capabilities.get(BOOT_IMAGE_SLOT) {
        Some(&boot_image) => kernel.read_boot_file(boot_image, "manifest"),
        None => Err(KernelError::InvalidCapability),
    };
    let manifest_bytes = match manifest_bytes {
        Ok(bytes) => bytes,
        Err(error) => {
            println!("process-manager: cannot read the boot image's manifest: {error}");
            kernel.exit(ExitReason::Failure {
                error: FailureCause::Described(alloc::format!("no manifest: {error}")),
            });
        }
    };
    let manifest = match parse_manifest(&manifest_bytes) {
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
    let names: Vec<(ServiceId, String)> = manifest
        .start_order()
        .iter()
        .map(|s| (s.service_id, s.name.to_string()))
        .collect();
    let caps = BootCapabilities::from_root_handles(&startup.capabilities);
    let mut supervisor = Supervisor::new(manifest, caps, SupervisorConfig::default())
        .with_terminator(pandagen_rt::syscall::terminate);
    if let Err(error) = supervisor.boot(kernel) {
        println!("process-manager: boot failed: {error:?}");
        kernel.exit(ExitReason::Failure {
            error: FailureCause::Described(alloc::format!("boot failed: {error:?}")),
        });
    }
    let mut boot_reported = false;
    loop {
        for (at, event) in supervisor.events_mut().drain() {
            report(&name_lookup(&names), at, &event);
        }
        if !boot_reported {
            boot_reported = report_boot_if_settled(&supervisor, kernel);
        }
        if supervisor.step(kernel).is_err() {
            let _ = pandagen_rt::abi::KernelApi::sleep(kernel, supervisor.config().ready_poll);
        }
    }
}

/// Service names by id, for the log.
fn name_lookup(names: &[(ServiceId, String)]) -> impl Fn(ServiceId) -> String + '_ {
    move |id| {
        names
            .iter()
            .find(|(s, _)| *s == id)
            .map_or_else(|| alloc::format!("{id}"), |(_, n)| n.clone())
    }
}

/// One boot-log line per supervision event, naming the service.
fn report(name: &impl Fn(ServiceId) -> String, at: Instant, event: &SupervisorEvent) {
    let ms = at.as_millis();
    match event {
        SupervisorEvent::Transition { service, from, to } => {
            println!(
                "process-manager: [{ms} ms] {}: {from} -> {to}",
                name(*service)
            )
        }
        SupervisorEvent::Spawned {
            service,
            task,
            execution,
        } => println!(
            "process-manager: [{ms} ms] {}: spawned as {task} ({execution})",
            name(*service)
        ),
        SupervisorEvent::Ended { service, end } => {
            println!(
                "process-manager: [{ms} ms] {}: ended: {end:?}",
                name(*service)
            )
        }
        SupervisorEvent::RestartScheduled {
            service,
            attempt,
            delay,
            ..
        } => println!(
            "process-manager: [{ms} ms] {}: restart {attempt} in {} ms",
            name(*service),
            delay.as_millis()
        ),
        SupervisorEvent::GaveUp { service, attempts } => println!(
            "process-manager: [{ms} ms] {}: gave up after {attempts} restarts",
            name(*service)
        ),
        SupervisorEvent::Unstartable { service, error } => println!(
            "process-manager: [{ms} ms] {}: cannot be started: {error}",
            name(*service)
        ),
        SupervisorEvent::ControlRefused { from, refusal } => println!(
            "process-manager: [{ms} ms] control request from {} refused: {refusal:?}",
            from.map_or_else(
                || String::from("an unknown sender"),
                |t| alloc::format!("{t}")
            )
        ),
        SupervisorEvent::RefusalsCounted(summary) => {
            let senders: Vec<String> = summary
                .by_sender
                .iter()
                .map(|(sender, count)| match sender {
                    Some(task) => alloc::format!("{count} from {task}"),
                    None => alloc::format!("{count} unreadable"),
                })
                .collect();
            println!(
                "process-manager: [{ms} ms] {} more refused messages since {} ms, not logged one by one: {}{}",
                summary.total(),
                summary.since.as_millis(),
                senders.join(", "),
                if summary.other_senders > 0 {
                    alloc::format!(", {} from other senders", summary.other_senders)
                } else {
                    String::new()
                }
            )
        }
        other => println!("process-manager: [{ms} ms] {other:?}"),
    }
}

/// Once no service is still on its way up, say how boot went. Returns
/// whether it has been said.
fn report_boot_if_settled(supervisor: &Supervisor, kernel: &mut Kernel) -> bool {
    let services = supervisor.services();
    let settled = services.iter().all(|s| {
        s.state == LifecycleState::Running
            || (s.state == LifecycleState::Failed && s.gave_up)
            // A driver whose device is absent is never wanted.
            || (s.state == LifecycleState::Stopped && !s.wanted)
    });
    if settled {
        let running = services
            .iter()
            .filter(|s| s.state == LifecycleState::Running)
            .count();
        println!(
            "process-manager: boot complete at {} ms: {running} of {} services running",
            pandagen_rt::abi::KernelApi::now(kernel).as_millis(),
            services.len()
        );
    }
    settled
}
