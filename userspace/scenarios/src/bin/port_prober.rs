//! A driver that tests its own port window, for the devices suite: it
//! opens its port capability to its `in` and `out` (the RTC's ports
//! 0x70-0x71), reads through the window, reports, then does what its name
//! says and must die of a #GP for it:
//! - `prober-dropped`: gives the capability up and reads the port again
//!   (the window closed with the capability);
//! - `prober-outside`: reads port 0x72, past the window.
//!
//! If it survives, it reports so: the suite then fails.
//!
//! Start-up capabilities: the report channel (`SEND`), the port capability
//! (`READ | WRITE`).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use pandagen_abi::{
    Cap, ChannelId, Duration, KernelApi, KernelError, MessageEnvelope, MessagePayload, ServiceId,
};
use pandagen_rt::device::{raw_in8, Ports};
use pandagen_rt::Kernel;
use pandagen_scenarios::{DEVICE_HOLDER_REPORT, DEVICE_HOLDER_SCHEMA};

pandagen_rt::entry!(main);

fn report(kernel: &mut Kernel, to: ChannelId, text: String) -> Result<(), KernelError> {
    let payload = MessagePayload::new(&text)?;
    let envelope = MessageEnvelope::new(
        ServiceId::from_raw(0),
        DEVICE_HOLDER_REPORT,
        DEVICE_HOLDER_SCHEMA,
        payload,
    );
    kernel.send_message(to, envelope)
}

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let info = kernel.startup()?;
    let to = ChannelId::from_handle(info.capabilities[0]);
    let ports = Ports::new(info.capabilities[1]);
    let opened = ports.open().and_then(|window| window.read8(0x71));
    let text = match opened {
        Ok(_) => String::from("opened"),
        Err(e) => format!("open: {e:?}"),
    };
    report(kernel, to, text)?;
    let probe = match info.name.as_str() {
        "prober-dropped" => {
            kernel.drop_capability(Cap::<()>::from_handle(info.capabilities[1]))?;
            0x71
        }
        _ => 0x72,
    };
    // SAFETY: a CMOS read; the point is that the CPU refuses it.
    let value = unsafe { raw_in8(probe) };
    report(
        kernel,
        to,
        format!("survived: read {value:#x} from {probe:#x}"),
    )?;
    loop {
        kernel.sleep(Duration::from_secs(60))?;
    }
}
