//! Adversary (issue 13, finding 7, the exit route): attacks on kernel
//! channels, the channels bound to a service channel that only the kernel
//! writes to (the process manager's exit route is one).
//!
//! * It tries to bind a kernel channel to a channel it can only send on
//!   (the suite's inbox): refused, binding needs `RECEIVE`.
//! * On a channel of its own it binds one, then tries to bind a second,
//!   to bind one to the kernel channel, to widen the kernel channel's
//!   capability to `SEND` by cloning it, and to send on it (plainly and as
//!   the send half of a send-and-receive): all refused.
//! * It floods the process manager's public channel until its queue or
//!   the attacker's budget is full; the suite checks that the process
//!   manager still answers, and the host tests that it still learns of
//!   every exit meanwhile.
//!
//! Capabilities: the suite's inbox (send).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use pandagen_abi::error::ChannelError;
use pandagen_abi::services::PROCESS_MANAGER;
use pandagen_abi::{
    Cap, ChannelId, Duration, KernelApi, KernelError, MessageEnvelope, MessagePayload, Rights,
    SchemaVersion, ServiceId,
};
use pandagen_rt::Kernel;
use pandagen_scenarios::adversary::{park, report, Breaches};

pandagen_rt::entry!(main);

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let info = kernel.startup()?;
    let inbox = ChannelId::from_handle(info.capabilities[0]);
    let mut breaches = Breaches::default();
    let no_authority = |e: &KernelError| *e == KernelError::InsufficientAuthority;
    let noise = || {
        MessageEnvelope::new(
            ServiceId::from_raw(0),
            "attack.noise",
            SchemaVersion::new(1, 0),
            MessagePayload::empty(),
        )
    };
    breaches.expect_refused(
        "bind a kernel channel to a send-only channel",
        kernel.bind_kernel_channel(inbox),
        no_authority,
    );
    let own = kernel.create_channel()?;
    let bound = kernel.bind_kernel_channel(own)?;
    breaches.expect_refused(
        "bind a second kernel channel",
        kernel.bind_kernel_channel(own),
        |e| *e == KernelError::ChannelError(ChannelError::AlreadyBound),
    );
    breaches.expect_refused(
        "bind a channel to a kernel channel",
        kernel.bind_kernel_channel(bound),
        |e| *e == KernelError::ChannelError(ChannelError::KernelOnly),
    );
    breaches.expect_refused(
        "send on a kernel channel",
        kernel.send_message(bound, noise()),
        no_authority,
    );
    breaches.expect_refused(
        "send on a kernel channel, then receive",
        kernel.send_then_receive(bound, noise(), own, Some(Duration::from_millis(1))),
        no_authority,
    );
    match kernel.clone_capability(&Cap::from(bound), Rights::ALL) {
        Ok(copy) => {
            let copy = ChannelId::from_handle(copy.handle());
            breaches.expect_refused(
                "send through a copy with all rights asked for",
                kernel.send_message(copy, noise()),
                no_authority,
            );
        }
        Err(e) if no_authority(&e) => {}
        Err(e) => breaches.record(alloc::format!("clone failed oddly: {e:?}")),
    }
    let pm = kernel.lookup_service(PROCESS_MANAGER)?;
    while kernel.send_message(pm, noise()).is_ok() {}
    report(kernel, inbox, breaches, vec![])?;
    park(kernel)
}
