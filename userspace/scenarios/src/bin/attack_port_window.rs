//! Adversary (device calls): running with the I/O ports another task
//! opened. The suite holds a port capability (the RTC's two ports) and
//! opens it to its own `in` and `out` instructions; then it calls this
//! program with a send-then-receive, which the kernel completes by
//! switching straight to the waiting receiver. The kernel must show each
//! task only its own port windows, on every way into ring 3: here this
//! program holds no port capability, so its `in` must fault.
//!
//! It sends the suite a send capability for a channel of its own (action
//! [`READY_ACTION`]), waits there, and when the suite's call arrives reads
//! the RTC's data port with a bare `in`. If that read returns, it reports
//! the breach; if it faults, the kernel ends it (the suite expects a
//! general-protection fault in its exit notification).
//!
//! Capabilities: the suite's inbox (send).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use pandagen_abi::{
    Cap, ChannelId, KernelApi, KernelError, MessageEnvelope, MessagePayload, Rights,
};
use pandagen_rt::device::raw_in8;
use pandagen_rt::Kernel;
use pandagen_scenarios::adversary::{park, report, Breaches, READY_ACTION, REPORT_SCHEMA};

pandagen_rt::entry!(main);

/// The RTC's data port, one of the two the suite opens.
const RTC_DATA: u16 = 0x71;

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let info = kernel.startup()?;
    let inbox = ChannelId::from_handle(info.capabilities[0]);
    let own = kernel.create_channel()?;
    let to_me = kernel.clone_capability(&Cap::from(own), Rights::SEND | Rights::TRANSFER)?;
    let ready = MessageEnvelope::new(
        pandagen_abi::ServiceId::from_raw(0),
        READY_ACTION,
        REPORT_SCHEMA,
        MessagePayload::empty(),
    );
    kernel.send_with_capabilities(inbox, ready, vec![to_me])?;
    // The suite's call: the kernel switches straight here from the suite,
    // whose ports are open.
    kernel.receive_message(own, None)?;
    // SAFETY: reading the RTC's data port has no effect beyond returning
    // the selected register; without a window of this task's own the CPU
    // faults here, which is the expected outcome.
    let value = unsafe { raw_in8(RTC_DATA) };
    let mut breaches = Breaches::default();
    breaches.record(alloc::format!(
        "read port {RTC_DATA:#x} ({value:#x}) through the window of the task that called it"
    ));
    report(kernel, inbox, breaches, vec![])?;
    park(kernel)
}
