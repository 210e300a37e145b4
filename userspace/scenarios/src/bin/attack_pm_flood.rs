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
//! Capabilities: the suite's inbox (send).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use pandagen_abi::services::PROCESS_MANAGER;
use pandagen_abi::{
    ChannelId, Duration, KernelApi, KernelError, MessageEnvelope, MessagePayload, SchemaVersion,
    ServiceId,
};
use pandagen_process_manager::demo::STEADY;
use pandagen_process_manager::protocol::SHUTDOWN_ACTION;
use pandagen_rt::Kernel;
use pandagen_scenarios::adversary::{park, report, Breaches};

pandagen_rt::entry!(main);

/// How long it floods, at most, waiting for the new instance.
const WATCH: Duration = Duration::from_secs(15);

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

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let info = kernel.startup()?;
    let inbox = ChannelId::from_handle(info.capabilities[0]);
    let mut breaches = Breaches::default();
    let pm = kernel.lookup_service(PROCESS_MANAGER)?;
    let before = kernel.service_registrant(STEADY)?;
    let steady = kernel.lookup_service(STEADY)?;
    let first = fill(kernel, pm);
    let shutdown = MessageEnvelope::new(
        STEADY,
        SHUTDOWN_ACTION,
        SchemaVersion::new(1, 0),
        MessagePayload::empty(),
    );
    kernel.send_message(steady, shutdown)?;
    let deadline = kernel.now() + WATCH;
    let mut refills = 0u32;
    let restarted = loop {
        kernel.sleep(Duration::from_millis(1))?;
        // Refilled the moment it runs again: full whenever the process
        // manager looks (it runs below this task's priority).
        refills += u32::from(fill(kernel, pm) > 0);
        match kernel.service_registrant(STEADY) {
            Ok(now) if now != before => break true,
            _ => {}
        }
        if kernel.now() >= deadline {
            break false;
        }
    };
    if first == 0 {
        breaches.record("the public channel never filled".into());
    }
    if !restarted {
        breaches.record(alloc::format!(
            "steady was not restarted within {WATCH:?} of a flood ({refills} refills)"
        ));
    }
    report(kernel, inbox, breaches, vec![])?;
    park(kernel)
}
