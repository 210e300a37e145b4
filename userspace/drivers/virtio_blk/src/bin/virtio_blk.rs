//! The virtio-blk driver as a ring-3 program.
//!
//! Start-up capabilities, in order: its service registration, then its
//! device's (see `pandagen_process_manager::devices::driver_resources`):
//! each assigned BAR, the interrupt line, the DMA allowance. It registers,
//! mints the block capability and hands it to the process manager, which
//! answers with the device's description (configuration-space snapshot
//! included). It maps the BARs, allocates one DMA region, opens the device
//! with the `virtio-drivers` PCI transport, and serves the block protocol
//! to holders of the block capability. Reads and writes wait for the
//! device's interrupt line (legacy INTx through the PIC, bound to a
//! channel of its own), with a bounded poll of the used ring behind each
//! wait in case an interrupt is lost; flushes poll (the crate has no
//! non-blocking flush). Without a routed line, everything polls.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::time::Duration;

use pandagen_abi::api::EXIT_NOTIFICATION_ACTION;
use pandagen_abi::device::DeviceResource;
use pandagen_abi::services::VIRTIO_BLK;
use pandagen_abi::{
    BlockError, Cap, ChannelId, ExitReason, KernelApi, KernelError, MessageEnvelope,
    MessagePayload, Rights,
};
use pandagen_process_manager::devices::PciDevice;
use pandagen_process_manager::protocol::SHUTDOWN_ACTION;
use pandagen_process_manager::PmClient;
use pandagen_rt::device::{release_dma_quarantine, DeviceMemory, Dma, Interrupt};
use pandagen_rt::{println, Kernel};
use pandagen_virtio_blk::config::SnapshotConfig;
use pandagen_virtio_blk::disk::{Completion, Polling, VirtioDisk};
use pandagen_virtio_blk::hal::{self, CapabilityHal, Window};
use pandagen_virtio_blk::pool::DmaPool;
use pandagen_virtio_blk::protocol::{
    BlockRequest, BlockResponse, BLOCK_BADGE, REQUEST_ACTION, RESPONSE_ACTION, SCHEMA,
};
use pandagen_virtio_blk::server::{authorize, serve};
use virtio_drivers::transport::pci::bus::{DeviceFunction, PciRoot};
use virtio_drivers::transport::pci::PciTransport;

pandagen_rt::entry!(main, heap = 1 << 20);

/// DMA memory the driver allocates: the virtqueue plus bounce pages for
/// the largest request.
const DMA_BYTES: u64 = 128 << 10;
/// The rights of the block capability handed to the process manager:
/// `GRANT` lets it copy the capability for clients, whose copies lack it.
const BLOCK_RIGHTS: Rights = Rights::from_bits(
    Rights::READ.bits() | Rights::WRITE.bits() | Rights::GRANT.bits() | Rights::TRANSFER.bits(),
);

/// The device capabilities, by what they are.
struct DeviceCaps {
    memory: Vec<(DeviceResource, pandagen_abi::CapHandle)>,
    /// The interrupt line and its capability, if the device has one.
    interrupt: Option<(u8, pandagen_abi::CapHandle)>,
    /// Every BAR's capability (ports and memory): what a reset of the
    /// device is proved with.
    registers: Vec<pandagen_abi::CapHandle>,
    dma: Option<pandagen_abi::CapHandle>,
}

/// Sort the start-up capabilities after the registration by the rule the
/// process manager gave them out by.
fn device_caps(device: &PciDevice, handles: &[pandagen_abi::CapHandle]) -> DeviceCaps {
    let mut rest = handles.iter().copied();
    let mut memory = Vec::new();
    let mut registers = Vec::new();
    for resource in device.bars.iter().filter_map(|b| b.resource()) {
        if let Some(handle) = rest.next() {
            registers.push(handle);
            if matches!(resource, DeviceResource::Memory(_)) {
                memory.push((resource, handle));
            }
        }
    }
    let interrupt = device
        .interrupt_line
        .and_then(|line| rest.next().map(|handle| (line, handle)));
    DeviceCaps {
        memory,
        interrupt,
        registers,
        dma: rest.next(),
    }
}

/// The longest wait for an interrupt before the used ring is looked at
/// anyway: bounds what a lost interrupt costs.
const INTERRUPT_FALLBACK: Duration = Duration::from_millis(20);

/// Waits for one request on the line before the device is taken to have
/// stopped: 500 fallbacks are ten seconds.
const LINE_PATIENCE: u32 = 500;

/// How requests are waited for: the device's line, or polling.
enum Waiter {
    Line {
        interrupt: Interrupt,
        channel: pandagen_abi::CapHandle,
    },
    Polling(Polling),
}

impl Completion for Waiter {
    fn wait(&mut self) -> bool {
        match self {
            Waiter::Line { interrupt, channel } => {
                matches!(interrupt.wait(*channel, INTERRUPT_FALLBACK), Ok(true))
            }
            Waiter::Polling(polling) => polling.wait(),
        }
    }

    fn rearm(&mut self) {
        if let Waiter::Line { interrupt, .. } = self {
            let _ = interrupt.acknowledge();
        }
    }

    fn patience(&self) -> u32 {
        match self {
            Waiter::Line { .. } => LINE_PATIENCE,
            Waiter::Polling(polling) => polling.patience(),
        }
    }
}

/// Bind `line` to a channel of its own, so that waiting for the device
/// takes no client request off the service channel.
fn line_waiter(
    kernel: &mut Kernel,
    line: u8,
    handle: pandagen_abi::CapHandle,
) -> Result<Waiter, KernelError> {
    let channel = kernel.create_channel()?.handle();
    let interrupt = Interrupt::new(handle, line);
    interrupt.bind(channel)?;
    Ok(Waiter::Line { interrupt, channel })
}

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let startup = kernel.startup()?;
    let channel = kernel.create_channel()?;
    kernel.register_service(VIRTIO_BLK, channel)?;
    let block_cap = kernel.mint_object_capability(VIRTIO_BLK, BLOCK_BADGE, BLOCK_RIGHTS)?;
    let pm = PmClient::connect(kernel)?;
    let device = match pm.driver_ready(kernel, Cap::erase(block_cap)) {
        Ok(device) => device,
        Err(error) => {
            println!("virtio-blk: the process manager gave no device: {error:?}");
            return Err(KernelError::InvalidCapability);
        }
    };
    let caps = device_caps(&device, startup.capabilities.get(1..).unwrap_or(&[]));
    let mut windows = Vec::new();
    for (resource, handle) in &caps.memory {
        if let DeviceResource::Memory(range) = resource {
            let mapping = DeviceMemory::new(*handle).map(*range, true, None)?;
            windows.push(Window {
                phys: range.base,
                len: range.len,
                virt: mapping.address,
            });
        }
    }
    let region = Dma::new(caps.dma.ok_or(KernelError::InvalidCapability)?).allocate(DMA_BYTES)?;
    hal::install(
        DmaPool::new(region.address, region.physical, region.bytes),
        windows,
    );
    let mut root = PciRoot::new(SnapshotConfig::new(&device));
    let function = DeviceFunction {
        bus: device.address.bus,
        device: device.address.device,
        function: device.address.function,
    };
    let transport = match PciTransport::new::<CapabilityHal, _>(&mut root, function) {
        Ok(transport) => transport,
        Err(error) => {
            println!(
                "virtio-blk: {}: not a usable virtio device: {error}",
                device.address
            );
            return Err(KernelError::InvalidCapability);
        }
    };
    let waiter = match caps.interrupt {
        Some((line, handle)) => match line_waiter(kernel, line, handle) {
            Ok(waiter) => waiter,
            Err(error) => {
                println!("virtio-blk: line {line} unusable ({error:?}): polling");
                Waiter::Polling(Polling)
            }
        },
        None => Waiter::Polling(Polling),
    };
    let mut disk: VirtioDisk<CapabilityHal, PciTransport, Waiter> =
        match VirtioDisk::new(transport, waiter) {
            Ok(disk) => disk,
            Err(error) => {
                println!(
                    "virtio-blk: {}: the device did not start: {error}",
                    device.address
                );
                return Err(KernelError::InvalidCapability);
            }
        };
    // Opening the device reset it (status 0 before anything else): the
    // requests a dead instance left in it are gone, so the DMA frames the
    // kernel kept from that instance can be reused.
    match release_dma_quarantine(&caps.registers) {
        Ok(0) => {}
        Ok(frames) => {
            println!("virtio-blk: device reset; {frames} DMA frames of a dead instance released")
        }
        Err(error) => println!("virtio-blk: releasing the DMA quarantine: {error:?}"),
    }
    println!(
        "virtio-blk: {} ready: {} sectors of 512 bytes{}",
        device.address,
        pandagen_abi::block::BlockDevice::block_count(&disk),
        if disk.read_only() { ", read-only" } else { "" }
    );
    loop {
        let message = match kernel.receive_with_capabilities(channel, None) {
            Ok(message) => message,
            Err(error) if error.ends_receiving() => return Err(error),
            Err(_) => continue,
        };
        let mut capabilities = message.capabilities.into_iter();
        let reply = capabilities.next();
        for extra in capabilities {
            let _ = kernel.drop_capability(extra);
        }
        let envelope = message.envelope;
        if envelope.action == SHUTDOWN_ACTION {
            kernel.exit(ExitReason::Normal);
        }
        if envelope.action == EXIT_NOTIFICATION_ACTION {
            continue;
        }
        let Some(reply) = reply else {
            continue;
        };
        let response: BlockResponse = if envelope.action != REQUEST_ACTION {
            Err(BlockError::NotPermitted)
        } else {
            match envelope.payload.decode::<BlockRequest>() {
                Ok(request) => {
                    authorize(message.badge, &request).and_then(|()| serve(&mut disk, &request))
                }
                Err(_) => Err(BlockError::Malformed),
            }
        };
        if let Ok(payload) = MessagePayload::new(&response) {
            let answer = MessageEnvelope::new(VIRTIO_BLK, RESPONSE_ACTION, SCHEMA, payload)
                .with_correlation(envelope.id);
            let _ = kernel.send_message(ChannelId::from_handle(reply.handle()), answer);
        }
        let _ = kernel.drop_capability(reply);
        if disk.broken() {
            // The device broke the virtqueue protocol and may still hold
            // the abandoned request's bounce pages: end, so that the kernel
            // quarantines the DMA memory and the next instance resets the
            // device before using it.
            println!("virtio-blk: the device broke the virtqueue protocol; ending");
            kernel.exit(ExitReason::Failure {
                error: "virtio-blk: the device broke the virtqueue protocol".into(),
            });
        }
    }
}
