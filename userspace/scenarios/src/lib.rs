//! Shared pieces of the ring-3 scenario programs.
//!
//! A scenario suite is a root program (`suite_*`) that the kernel starts as
//! its first task when `boot.cfg` says `mode=suite` and `suite=<name>`. The
//! root spawns helper programs, watches their exit notifications, prints one
//! `[TEST] PASS|FAIL` line per check and a final `[SUITE] DONE` line (the
//! serial protocol in `qemu/README.md`), and exits `Normal` only if every
//! check passed. The kernel turns the root's exit into QEMU's exit status.
#![no_std]
// One exception, `rdtsc`, which ring 3 needs for `cargo xtask bench`.
#![deny(unsafe_code)]

extern crate alloc;

pub mod adversary;
pub mod rtc;

use alloc::string::String;
use alloc::vec::Vec;

use pandagen_abi::api::EXIT_NOTIFICATION_ACTION;
use pandagen_abi::syscall::StartupInfo;
use pandagen_abi::{
    Cap, ChannelId, Duration, ExitNotification, ExitReason, KernelApi, KernelError, Rights,
    ServiceId, TaskDescriptor, TaskHandle,
};
use pandagen_rt::println;

/// The failure `faulter` reports when a misaligned access with RFLAGS.AC
/// set did not fault: the CPU (QEMU's TCG among them) does not enforce
/// alignment checks, so no #AC can be observed there.
pub const NO_ALIGNMENT_CHECK: &str = "alignment check not enforced by this CPU";

/// The echo service used by the IPC scenarios.
pub const ECHO: ServiceId = ServiceId::from_raw(100);

/// Request payload of the echo service: the server answers `value + 1`.
pub type EchoValue = u64;

/// The schema of the soak suite's own messages.
pub const SOAK_SCHEMA: pandagen_abi::SchemaVersion = pandagen_abi::SchemaVersion::new(1, 0);
/// The action of `attack_heap_cycles`'s report.
pub const ATTACK_REPORT_ACTION: &str = "attack.report";

/// `device_holder`'s report (a `String`: "ok" or what went wrong).
pub const DEVICE_HOLDER_REPORT: &str = "device_holder.report";
pub const DEVICE_HOLDER_SCHEMA: pandagen_abi::SchemaVersion =
    pandagen_abi::SchemaVersion::new(1, 0);
/// The interrupt line `device_holder` binds (free on QEMU's PC machines).
pub const DEVICE_HOLDER_LINE: u8 = 5;
/// The device page `device_holder` maps: the I/O APIC's registers.
pub const DEVICE_HOLDER_PAGE: u64 = 0xfec0_0000;

/// What `attack_heap_cycles` managed before the kernel refused it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttackReport {
    /// Channel pairs built, each a cycle of receive rights.
    pub pairs: u32,
    /// Payload bytes queued in them.
    pub bytes_queued: u64,
    /// The error that stopped it, as `Debug` text.
    pub refusal: String,
}

/// Counts checks and prints the serial protocol lines.
#[derive(Default)]
pub struct Tally {
    passed: u32,
    failed: u32,
}

impl Tally {
    pub fn check(&mut self, name: &str, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => {
                self.passed += 1;
                println!("[TEST] PASS {name}");
            }
            Err(reason) => {
                self.failed += 1;
                println!("[TEST] FAIL {name}: {reason}");
            }
        }
    }

    /// Print the suite summary line; true if every check passed. For a
    /// suite that is not the root task and ends the run itself.
    pub fn report(&self) -> bool {
        println!("[SUITE] DONE passed={} failed={}", self.passed, self.failed);
        self.failed == 0
    }

    /// Print the suite summary and end the root task: `Normal` if every
    /// check passed, otherwise a failure naming how many did not.
    pub fn finish(self, kernel: &mut pandagen_rt::Kernel) -> ! {
        if self.report() {
            kernel.exit(ExitReason::Normal)
        } else {
            let error = alloc::format!("{} checks failed", self.failed);
            kernel.exit(ExitReason::Failure {
                error: error.into(),
            })
        }
    }
}

/// Spawn `image` under `name`, moving `capabilities` into it, with exit
/// notifications sent to `exit_channel`.
pub fn spawn<K: KernelApi>(
    kernel: &mut K,
    name: &str,
    image: &str,
    capabilities: Vec<Cap<()>>,
    exit_channel: ChannelId,
) -> Result<TaskHandle, KernelError> {
    let mut descriptor = TaskDescriptor::new(name.into())
        .with_image(image)
        .with_exit_channel(exit_channel);
    for capability in capabilities {
        descriptor = descriptor.with_capability(capability);
    }
    kernel.spawn_task(descriptor)
}

/// Start `raw_echo` under `name` (`call_echo` answers with `Exchange`)
/// with a fresh request channel and reply channel. Returns the send-only
/// capability for its requests and the channel its answers arrive on.
pub fn spawn_raw_echo<K: KernelApi>(
    kernel: &mut K,
    name: &str,
    exit_channel: ChannelId,
) -> Result<(Cap<()>, ChannelId), KernelError> {
    let requests = kernel.create_channel()?;
    // `GRANT` so that the caller can clone it (the hardening suite
    // consumes a copy in a call).
    let to_server = kernel.clone_capability(&Cap::from(requests), Rights::SEND | Rights::GRANT)?;
    let replies = kernel.create_channel()?;
    let to_client =
        kernel.clone_capability(&Cap::from(replies), Rights::SEND | Rights::TRANSFER)?;
    spawn(
        kernel,
        name,
        "raw_echo",
        alloc::vec![Cap::from(requests), to_client],
        exit_channel,
    )?;
    Ok((to_server, replies))
}

/// Wait for the next exit notification on `exit_channel`.
pub fn wait_exit<K: KernelApi>(
    kernel: &mut K,
    exit_channel: ChannelId,
    timeout: Duration,
) -> Result<ExitNotification, String> {
    let envelope = kernel
        .receive_message(exit_channel, Some(timeout))
        .map_err(|e| alloc::format!("no exit notification: {e}"))?;
    if envelope.action != EXIT_NOTIFICATION_ACTION {
        return Err(alloc::format!(
            "unexpected message {:?} on the exit channel",
            envelope.action
        ));
    }
    envelope
        .payload
        .decode()
        .map_err(|e| alloc::format!("bad exit notification: {e}"))
}

/// This task's start-up capabilities, as `Cap<()>` values.
pub fn startup_caps(info: &StartupInfo) -> Vec<Cap<()>> {
    info.capabilities
        .iter()
        .map(|h| Cap::from_handle(*h))
        .collect()
}

/// Read the time-stamp counter. Under QEMU TCG with `-icount shift=0` it
/// advances exactly once per instruction, which is how `cargo xtask bench`
/// counts instructions.
#[inline(always)]
#[allow(unsafe_code)]
pub fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no memory effects; ring 3 may execute it
        // because the kernel leaves CR4.TSD clear.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// End this task with a failure described by `reason`.
pub fn fail(kernel: &mut pandagen_rt::Kernel, reason: String) -> ! {
    kernel.exit(ExitReason::Failure {
        error: reason.into(),
    })
}

/// Look a service up, waiting for it to register (it may start after us).
pub fn lookup_with_retry<K: KernelApi>(
    kernel: &mut K,
    service: ServiceId,
) -> Result<ChannelId, KernelError> {
    let mut last = KernelError::ServiceNotFound(service);
    for _ in 0..2_000 {
        match kernel.lookup_service(service) {
            Ok(channel) => return Ok(channel),
            Err(e @ KernelError::ServiceNotFound(_)) => last = e,
            Err(other) => return Err(other),
        }
        kernel.sleep(Duration::from_millis(1))?;
    }
    Err(last)
}

/// Wait for `service` to register (see [`lookup_with_retry`]), keeping no
/// capability: every lookup is a new one, dropped here.
pub fn wait_registered<K: KernelApi>(
    kernel: &mut K,
    service: ServiceId,
) -> Result<(), KernelError> {
    let channel = lookup_with_retry(kernel, service)?;
    let _ = kernel.drop_capability(Cap::from(channel));
    Ok(())
}

/// The schema version of the echo protocol.
pub const ECHO_VERSION: pandagen_abi::SchemaVersion = pandagen_abi::SchemaVersion::new(1, 0);

/// Open a session with the echo server: create a reply channel and hand the
/// server a send-only capability for it. Returns (echo channel, reply channel).
pub fn open_echo_session<K: KernelApi>(
    kernel: &mut K,
) -> Result<(ChannelId, ChannelId), KernelError> {
    use pandagen_abi::{MessageEnvelope, MessagePayload};
    let echo = lookup_with_retry(kernel, ECHO)?;
    let reply = kernel.create_channel()?;
    let reply_send = kernel.clone_capability(&Cap::from(reply), Rights::SEND | Rights::TRANSFER)?;
    let open = MessageEnvelope::new(ECHO, "echo.open", ECHO_VERSION, MessagePayload::empty());
    kernel.send_with_capabilities(echo, open, alloc::vec![reply_send])?;
    kernel.receive_message(reply, Some(Duration::from_secs(10)))?;
    Ok((echo, reply))
}
