//! Adversary (issue 13, finding 7, under QEMU): hiding a service's exit
//! from the process manager by flooding its public channel. The attacker
//! holds no `pm-control` capability; anyone may look the process manager
//! up and send to it.
//!
//! It fills the process manager's public channel until the kernel refuses
//! more, asks the demo service `steady` (a child of the process manager,
//! restarted always, running above it) to shut down, and from then on
//! refills the channel after every millisecond it lets the others run.
//! `steady` ends in the first of those milliseconds, before the process
//! manager has run, so its exit comes while the channel is full, and the
//! channel is full again whenever the process manager looks. The exit notification
//! goes to the kernel channel bound to that public channel, which no task
//! can send on: the process manager must learn of the exit and restart
//! `steady` while the flood goes on. The attacker watches the service's
//! registrant change (a new instance) while still flooding; if that does
//! not happen within `WATCH`, it reports it.
//!
//! The route matters: the process manager would also notice a vanished
//! registration at its next liveness check, and restart the service
//! without ever seeing the notification. So once the new instance is up,
//! the attacker asks the process manager (`pm.status`, which needs no
//! control capability) how the last instance ended: only the kernel's
//! exit notification tells it `Exited(Normal)`; a vanished one is
//! `Vanished`.
//!
//! Before it asks `steady` to shut down, it floods for `MEASURE` alone and
//! prints how many messages the process manager refused per second
//! (every refill sends exactly what was drained since the last): what
//! refusing a message costs it.
//!
//! Capabilities: the suite's inbox (send).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use pandagen_abi::error::SendError;
use pandagen_abi::services::PROCESS_MANAGER;
use pandagen_abi::ExitReason;
use pandagen_abi::{
    ChannelId, Duration, KernelApi, KernelError, MessageEnvelope, MessagePayload, SchemaVersion,
    ServiceId,
};
use pandagen_process_manager::demo::STEADY;
use pandagen_process_manager::protocol::{InstanceEnd, PmRequest, SHUTDOWN_ACTION};
use pandagen_process_manager::{ClientError, PmClient};
use pandagen_rt::{println, Kernel};
use pandagen_scenarios::adversary::{park, report, Breaches};

pandagen_rt::entry!(main);

/// How long it floods, at most, waiting for the new instance.
const WATCH: Duration = Duration::from_secs(15);
/// How long it floods first, alone, to measure what refusing costs.
const MEASURE: Duration = Duration::from_millis(500);

fn noise() -> MessageEnvelope {
    MessageEnvelope::new(
        ServiceId::from_raw(0),
        "attack.noise",
        SchemaVersion::new(1, 0),
        MessagePayload::empty(),
    )
}

/// Send until the kernel refuses (the queue is full); how many went.
fn fill(kernel: &mut Kernel, pm: ChannelId) -> u32 {
    let mut sent = 0;
    while kernel.send_message(pm, noise()).is_ok() {
        sent += 1;
    }
    sent
}

/// Keep the channel full for at most `time`, refilling it the moment this
/// task runs again after each millisecond it sleeps (it runs above the
/// process manager, so the channel is full whenever the process manager
/// looks), until `done`. Returns how many messages the process manager
/// drained meanwhile (each refill sends exactly that many), and whether
/// `done` was met.
fn flood(
    kernel: &mut Kernel,
    pm: ChannelId,
    time: Duration,
    mut done: impl FnMut(&mut Kernel) -> bool,
) -> Result<(u64, bool), KernelError> {
    let deadline = kernel.now() + time;
    let mut drained = 0u64;
    while kernel.now() < deadline {
        kernel.sleep(Duration::from_millis(1))?;
        drained += u64::from(fill(kernel, pm));
        if done(kernel) {
            return Ok((drained, true));
        }
    }
    Ok((drained, false))
}

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let info = kernel.startup()?;
    let inbox = ChannelId::from_handle(info.capabilities[0]);
    let mut breaches = Breaches::default();
    let pm = kernel.lookup_service(PROCESS_MANAGER)?;
    let before = kernel.service_registrant(STEADY)?;
    let steady = kernel.lookup_service(STEADY)?;
    let first = fill(kernel, pm);
    // First the flood alone, for `MEASURE`: what refusing costs.
    let (drained, _) = flood(kernel, pm, MEASURE, |_| false)?;
    println!(
        "attack_pm_flood: the process manager refused {drained} messages in {} ms ({} per second)",
        MEASURE.as_millis(),
        u128::from(drained) * 1000 / MEASURE.as_millis()
    );
    let shutdown = MessageEnvelope::new(
        STEADY,
        SHUTDOWN_ACTION,
        SchemaVersion::new(1, 0),
        MessagePayload::empty(),
    );
    kernel.send_message(steady, shutdown)?;
    let (_, restarted) = flood(
        kernel,
        pm,
        WATCH,
        |kernel| matches!(kernel.service_registrant(STEADY), Ok(now) if now != before),
    )?;
    if restarted {
        match last_end(kernel) {
            Ok(Some(InstanceEnd::Exited(ExitReason::Normal))) => {}
            other => breaches.record(alloc::format!(
                "the process manager did not learn of steady's exit from its notification \
                 (last end: {other:?})"
            )),
        }
    }
    if first == 0 {
        breaches.record("the public channel never filled".into());
    }
    if !restarted {
        breaches.record(alloc::format!(
            "steady was not restarted within {WATCH:?} of a flood"
        ));
    }
    report(kernel, inbox, breaches, vec![])?;
    park(kernel)
}

/// How the process manager says `steady`'s last instance ended. The
/// request waits its turn behind the flood still queued.
fn last_end(kernel: &mut Kernel) -> Result<Option<InstanceEnd>, ClientError> {
    let client = PmClient::connect(kernel)?;
    let deadline = kernel.now() + Duration::from_secs(5);
    let request = PmRequest::Status(STEADY.into());
    let id = loop {
        match client.send(kernel, &request) {
            Err(ClientError::Kernel(KernelError::SendFailed(SendError::QueueFull)))
                if kernel.now() < deadline =>
            {
                kernel.sleep(Duration::from_millis(1))?;
            }
            other => break other?,
        }
    };
    match client.receive(kernel, id, Some(Duration::from_secs(5)))? {
        pandagen_process_manager::PmReply::Service(info) => Ok(info.last_end),
        _ => Err(ClientError::UnexpectedReply),
    }
}
