//! Adversary (issue 13, finding 7): a child tries to make its own exit
//! notification disappear. Its parent receives its exit notification on a
//! channel the child can also send on (as the process manager's public
//! channel is for its children), so it fills that channel, then exits
//! with a reason far longer than a message may be. The kernel must still
//! deliver the notification: the reason is bounded, and the route is the
//! kernel channel bound to that channel, which no task can send on. The
//! suite checks that it arrives.
//!
//! Capabilities: the suite's inbox (send).
#![no_std]
#![no_main]

extern crate alloc;

use pandagen_abi::envelope::MAX_MESSAGE_BYTES;
use pandagen_abi::{
    ChannelId, ExitReason, KernelApi, KernelError, MessageEnvelope, MessagePayload, SchemaVersion,
    ServiceId,
};
use pandagen_rt::Kernel;

pandagen_rt::entry!(main, heap = 4 << 20);

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let info = kernel.startup()?;
    let inbox = ChannelId::from_handle(info.capabilities[0]);
    let noise = || {
        MessageEnvelope::new(
            ServiceId::from_raw(0),
            "attack.noise",
            SchemaVersion::new(1, 0),
            MessagePayload::empty(),
        )
    };
    // Fill the exit route until the kernel refuses.
    while kernel.send_message(inbox, noise()).is_ok() {}
    let reason = "x".repeat(MAX_MESSAGE_BYTES - 64);
    kernel.exit(ExitReason::Failure {
        error: reason.into(),
    })
}
