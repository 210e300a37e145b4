//! Adversary (issue 13, finding 4): a task tries to fill other tasks'
//! capability spaces by granting and delegating into them by task id alone
//! (ids are small and predictable: the process manager is task 1). Every
//! attempt must be refused: putting a capability into a task needs a
//! capability naming it. Then it fills its own space and checks that a
//! message whose capabilities do not fit cannot wedge the channel: that
//! receive fails with a typed error and the next message still arrives.
//!
//! Capabilities: the suite's inbox (send).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;
use pandagen_abi::error::{ReceiveError, Resource};
use pandagen_abi::{
    Cap, ChannelId, Duration, KernelApi, KernelError, MessageEnvelope, MessagePayload,
    SchemaVersion, ServiceId, TaskId,
};
use pandagen_rt::Kernel;
use pandagen_scenarios::adversary::{park, report, Breaches};

pandagen_rt::entry!(main);

/// Task ids tried: every task the system has started so far and more.
const TARGETS: u64 = 48;

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let info = kernel.startup()?;
    let inbox = ChannelId::from_handle(info.capabilities[0]);
    let mut breaches = Breaches::default();
    let refused = |e: &KernelError| {
        matches!(
            e,
            KernelError::InsufficientAuthority | KernelError::TaskNotFound(_)
        )
    };
    let gift = kernel.create_channel()?;
    for id in 1..=TARGETS {
        let target = TaskId::from_raw(id);
        if target == info.task {
            continue;
        }
        let what = alloc::format!("grant into task {id}");
        let granted = kernel.grant_capability(target, Cap::from(gift));
        breaches.expect_refused(&what, granted, refused);
        let what = alloc::format!("delegate into task {id}");
        let moved = kernel.delegate_capability(Cap::from(gift), target);
        breaches.expect_refused(&what, moved, refused);
    }
    no_wedge(kernel, gift, &mut breaches)?;
    report(kernel, inbox, breaches, vec![])?;
    park(kernel)
}

/// Queue a message carrying a capability and a plain one behind it on
/// `channel`, fill the capability space, and receive: the first receive
/// must fail with `NoRoomForCapabilities`, the second must get the plain
/// message. The filler is released afterwards.
fn no_wedge(
    kernel: &mut Kernel,
    channel: ChannelId,
    breaches: &mut Breaches,
) -> Result<(), KernelError> {
    let carried = kernel.create_channel()?;
    let message = |text: &str| {
        MessageEnvelope::new(
            ServiceId::from_raw(0),
            "attack.fill",
            SchemaVersion::new(1, 0),
            MessagePayload::new(&alloc::string::String::from(text)).expect("a short string"),
        )
    };
    kernel.send_with_capabilities(channel, message("carrier"), vec![Cap::from(carried)])?;
    kernel.send_message(channel, message("behind"))?;
    let mut filler: Vec<ChannelId> = Vec::new();
    loop {
        match kernel.create_channel() {
            Ok(c) => filler.push(c),
            Err(KernelError::ResourceExhausted(Resource::CapabilitySlots)) => break,
            Err(e) => {
                breaches.record(alloc::format!("filling the space: {e}"));
                break;
            }
        }
    }
    let first = kernel.receive_with_capabilities(channel, Some(Duration::ZERO));
    match first {
        Err(KernelError::ReceiveFailed(ReceiveError::NoRoomForCapabilities { carried: 1 })) => {}
        other => breaches.record(alloc::format!("receive with a full space: {other:?}")),
    }
    match kernel.receive_message(channel, Some(Duration::ZERO)) {
        Ok(envelope)
            if envelope
                .payload
                .decode::<alloc::string::String>()
                .ok()
                .as_deref()
                == Some("behind") => {}
        other => breaches.record(alloc::format!("the message behind it: {other:?}")),
    }
    for c in filler {
        kernel.drop_capability(Cap::from(c))?;
    }
    Ok(())
}
