//! A driver that dies holding devices, for the devices suite: it asks for
//! more DMA memory than its frames budget holds (within its capability's
//! allowance), then binds an interrupt line, allocates DMA memory and maps
//! device memory, reports what happened on its report channel and waits
//! to be killed. The suite then checks that its death gave everything
//! back: the line binds again, the frames are free again.
//!
//! Start-up capabilities: the report channel (`SEND`), a DMA allowance,
//! an interrupt line, a device-memory range (one page).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use pandagen_abi::device::PhysRange;
use pandagen_abi::error::Resource;
use pandagen_abi::{
    ChannelId, Duration, KernelApi, KernelError, MessageEnvelope, MessagePayload, ServiceId,
};
use pandagen_rt::device::{DeviceMemory, Dma, Interrupt};
use pandagen_rt::Kernel;
use pandagen_scenarios::{DEVICE_HOLDER_REPORT, DEVICE_HOLDER_SCHEMA};

pandagen_rt::entry!(main);

/// More than the default 16 MiB frames budget of a spawned task.
const BEYOND_BUDGET: u64 = 32 << 20;

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let info = kernel.startup()?;
    let caps = &info.capabilities;
    let report = ChannelId::from_handle(caps[0]);
    let dma = Dma::new(caps[1]);
    let line = Interrupt::new(caps[2], DEVICE_HOLDER_LINE);
    let memory = DeviceMemory::new(caps[3]);
    let outcome = (|| -> Result<(), String> {
        match dma.allocate(BEYOND_BUDGET) {
            Err(KernelError::ResourceExhausted(Resource::FrameBudget)) => {}
            other => return Err(format!("DMA beyond the budget: {other:?}")),
        }
        let channel = kernel.create_channel().map_err(|e| format!("{e:?}"))?;
        line.bind(channel.handle())
            .map_err(|e| format!("bind: {e:?}"))?;
        dma.allocate(0x10000).map_err(|e| format!("DMA: {e:?}"))?;
        memory
            .map(PhysRange::new(DEVICE_HOLDER_PAGE, 0x1000), false, None)
            .map_err(|e| format!("map: {e:?}"))?;
        Ok(())
    })();
    let text = match outcome {
        Ok(()) => String::from("ok"),
        Err(e) => e,
    };
    kernel.send_message(
        report,
        MessageEnvelope::new(
            ServiceId::from_raw(0),
            DEVICE_HOLDER_REPORT,
            DEVICE_HOLDER_SCHEMA,
            MessagePayload::new(&text)?,
        ),
    )?;
    loop {
        kernel.sleep(Duration::from_secs(60))?;
    }
}

/// The line and page the suite grants (see `suite_devices`).
const DEVICE_HOLDER_LINE: u8 = pandagen_scenarios::DEVICE_HOLDER_LINE;
const DEVICE_HOLDER_PAGE: u64 = pandagen_scenarios::DEVICE_HOLDER_PAGE;
