//! The PCI service as a ring-3 program.
//!
//! Start-up capabilities, in order: its service registration, then an
//! `IoPorts` capability for exactly 0xCF8..=0xCFF (manifest
//! `ports = 0xcf8-0xcff`). It registers (its supervisor counts it as up;
//! services that need devices wait for the drivers instead), enumerates
//! bus 0 and every bus behind a bridge, reports every function to the
//! process manager, lets the devices that were given a driver decode and
//! master the bus, says so (their drivers start then), and serves nothing
//! more.
#![no_std]
#![no_main]

extern crate alloc;

use pandagen_abi::services::PCI;
use pandagen_pci::mechanism1::{Mechanism1, PortIo};
use pandagen_pci::{enable_driver_access, enumerate};
use pandagen_process_manager::PmClient;
use pandagen_rt::abi::{KernelApi, KernelError};
use pandagen_rt::device::Ports;
use pandagen_rt::{println, Kernel};

pandagen_rt::entry!(main);

/// Where the configuration ports are among the start-up capabilities.
const PORTS_SLOT: usize = 1;

struct CapabilityPorts(Ports);

impl PortIo for CapabilityPorts {
    fn read32(&self, port: u16) -> Option<u32> {
        self.0.read32(port).ok()
    }

    fn write32(&self, port: u16, value: u32) -> bool {
        self.0.write32(port, value).is_ok()
    }
}

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let startup = kernel.startup()?;
    let ports = *startup
        .capabilities
        .get(PORTS_SLOT)
        .ok_or(KernelError::InvalidCapability)?;
    let space = Mechanism1::new(CapabilityPorts(Ports::new(ports)));
    let channel = kernel.create_channel()?;
    kernel.register_service(PCI, channel)?;
    let devices = enumerate(&space);
    for device in &devices {
        println!(
            "pci: {} {:04x}:{:04x} class {:02x}:{:02x} irq {:?} bars {}",
            device.address,
            device.vendor,
            device.device,
            device.class,
            device.subclass,
            device.interrupt_line,
            device.bars.len()
        );
    }
    let pm = PmClient::connect(kernel)?;
    match pm.report_devices(kernel, &devices) {
        Ok(bound) => {
            for index in bound {
                if let Some(device) = devices.get(usize::from(index)) {
                    enable_driver_access(&space, device.address);
                }
            }
            if let Err(error) = pm.devices_enabled(kernel) {
                println!("pci: the process manager did not start the drivers: {error:?}");
            }
        }
        Err(error) => println!("pci: the process manager refused the report: {error:?}"),
    }
    loop {
        // Nothing is served: every request is dropped with its capabilities.
        if let Ok(message) = kernel.receive_with_capabilities(channel, None) {
            for capability in message.capabilities {
                let _ = kernel.drop_capability(capability);
            }
        }
    }
}
