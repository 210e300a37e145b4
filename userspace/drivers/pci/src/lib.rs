//! # pandagen-pci
//!
//! Enumeration of the PCI buses (bus 0 and every bus behind a bridge)
//! through a [`ConfigSpace`] (in ring 3:
//! configuration mechanism #1 over an `IoPorts` capability for
//! 0xCF8..=0xCFF, see [`mechanism1`]). The register layouts are the
//! `pci_types` crate's; this crate walks every reachable bus, device and
//! function,
//! sizes the BARs with decoding switched off, and describes each function
//! as a [`PciDevice`] for the process manager.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod mechanism1;

use alloc::vec::Vec;

use pandagen_process_manager::devices::{BarSpace, PciAddress, PciBar, PciDevice, CONFIG_BYTES};
use pci_types::{
    Bar, CommandRegister, ConfigRegionAccess, EndpointHeader, HeaderType, PciAddress as Location,
    PciHeader,
};

/// Read and write 32-bit configuration registers. Implementations decide
/// how (ports, ECAM, a test's model); offsets are 4-byte aligned and below
/// 256.
pub trait ConfigSpace {
    fn read32(&self, address: PciAddress, offset: u8) -> u32;
    fn write32(&self, address: PciAddress, offset: u8, value: u32);
}

/// A [`ConfigSpace`] as `pci_types` wants it (segment 0 only).
struct Access<'a, C: ConfigSpace>(&'a C);

fn short(location: Location) -> PciAddress {
    PciAddress {
        bus: location.bus(),
        device: location.device(),
        function: location.function(),
    }
}

impl<C: ConfigSpace> ConfigRegionAccess for Access<'_, C> {
    unsafe fn read(&self, address: Location, offset: u16) -> u32 {
        // Offsets past the legacy space read as absent, never wrap.
        u8::try_from(offset).map_or(u32::MAX, |o| self.0.read32(short(address), o & !3))
    }

    unsafe fn write(&self, address: Location, offset: u16, value: u32) {
        if let Ok(o) = u8::try_from(offset) {
            self.0.write32(short(address), o & !3, value);
        }
    }
}

fn location(address: PciAddress) -> Location {
    Location::new(0, address.bus, address.device, address.function)
}

/// Offset of BAR 0.
const BAR0: u8 = 0x10;

/// Every function on every bus reachable from bus 0, in address order.
///
/// The walk starts at bus 0 (and, if the host bridge at 00:00.0 has more
/// functions, at the bus each of them roots) and descends through every
/// PCI-to-PCI bridge's secondary bus, as firmware numbered them. It finds
/// every function a probe of all 256 buses finds, at a fraction of the
/// configuration reads: each probe is two port calls, and under emulation
/// 8,192 probes take seconds of boot.
pub fn enumerate<C: ConfigSpace>(space: &C) -> Vec<PciDevice> {
    let access = Access(space);
    let mut found = Vec::new();
    let mut pending: Vec<u8> = alloc::vec![0];
    let mut visited = [false; 256];
    let host = PciHeader::new(location(PciAddress {
        bus: 0,
        device: 0,
        function: 0,
    }));
    if present(host.id(&access).0) && host.has_multiple_functions(&access) {
        pending.extend(1..8u8);
    }
    while let Some(bus) = pending.pop() {
        if core::mem::replace(&mut visited[usize::from(bus)], true) {
            continue;
        }
        for device in scan_bus(space, bus) {
            if let Some(secondary) = secondary_bus(space, &device) {
                pending.push(secondary);
            }
            found.push(device);
        }
    }
    found.sort_by_key(|d| d.address);
    found
}

/// Vendor ids that mean "nothing here" (no device answers all ones; some
/// chipsets answer zeros for absent buses).
fn present(vendor: u16) -> bool {
    vendor != 0xffff && vendor != 0
}

/// Every function on one bus.
pub fn scan_bus<C: ConfigSpace>(space: &C, bus: u8) -> Vec<PciDevice> {
    let access = Access(space);
    let mut found = Vec::new();
    for device in 0..32u8 {
        let first = PciAddress {
            bus,
            device,
            function: 0,
        };
        let header = PciHeader::new(location(first));
        if !present(header.id(&access).0) {
            continue;
        }
        let functions = if header.has_multiple_functions(&access) {
            8
        } else {
            1
        };
        for function in 0..functions {
            let address = PciAddress {
                bus,
                device,
                function,
            };
            if let Some(found_device) = describe(space, address) {
                found.push(found_device);
            }
        }
    }
    found
}

/// The bus behind a PCI-to-PCI bridge (header type 1), if it has one.
fn secondary_bus<C: ConfigSpace>(space: &C, device: &PciDevice) -> Option<u8> {
    let header_type = (device.config_word(0x0c) >> 16) as u8 & 0x7f;
    if header_type != 1 {
        return None;
    }
    let secondary = (space.read32(device.address, 0x18) >> 8) as u8;
    (secondary != 0).then_some(secondary)
}

/// One function, or `None` if nothing answers at `address`.
pub fn describe<C: ConfigSpace>(space: &C, address: PciAddress) -> Option<PciDevice> {
    let access = Access(space);
    let header = PciHeader::new(location(address));
    let (vendor, device) = header.id(&access);
    if !present(vendor) {
        return None;
    }
    let (_, class, subclass, interface) = header.revision_and_class(&access);
    let mut bars = Vec::new();
    let mut interrupt_line = None;
    if header.header_type(&access) == HeaderType::Endpoint {
        if let Some(mut endpoint) = EndpointHeader::from_header(header, &access) {
            bars = with_decoding_off(&mut endpoint, &access, |endpoint| {
                read_bars(space, address, endpoint)
            });
            let (pin, line) = endpoint.interrupt(&access);
            interrupt_line = (pin != 0 && line != 0xff).then_some(line);
        }
    }
    let mut config = Vec::with_capacity(CONFIG_BYTES);
    for offset in (0..CONFIG_BYTES).step_by(4) {
        // CONFIG_BYTES is 256, so every offset fits a u8.
        let word = space.read32(address, offset as u8);
        config.extend_from_slice(&word.to_le_bytes());
    }
    Some(PciDevice {
        address,
        vendor,
        device,
        class,
        subclass,
        interface,
        bars,
        interrupt_line,
        config,
    })
}

/// Run `f` with memory and I/O decoding switched off, as BAR sizing
/// needs (the all-ones probe would otherwise decode at a wild address).
fn with_decoding_off<C: ConfigSpace, T>(
    endpoint: &mut EndpointHeader,
    access: &Access<'_, C>,
    f: impl FnOnce(&EndpointHeader) -> T,
) -> T {
    let original = endpoint.command(access);
    endpoint.update_command(access, |c| {
        c - CommandRegister::IO_ENABLE - CommandRegister::MEMORY_ENABLE
    });
    let result = f(endpoint);
    endpoint.update_command(access, |_| original);
    result
}

fn read_bars<C: ConfigSpace>(
    space: &C,
    address: PciAddress,
    endpoint: &EndpointHeader,
) -> Vec<PciBar> {
    let access = Access(space);
    let mut bars = Vec::new();
    let mut slot = 0u8;
    while slot < 6 {
        let index = slot;
        slot += 1;
        let space_of = match endpoint.bar(index, &access) {
            Some(Bar::Memory32 { address, size, .. }) => BarSpace::Memory {
                base: u64::from(address),
                size: u64::from(size),
                wide: false,
            },
            Some(Bar::Memory64 { address, size, .. }) => {
                slot += 1;
                BarSpace::Memory {
                    base: address,
                    size,
                    wide: true,
                }
            }
            Some(Bar::Io { port }) => match io_bar_size(space, address, index) {
                Some(size) => BarSpace::Io {
                    port: port as u16,
                    size,
                },
                None => continue,
            },
            None => continue,
        };
        bars.push(PciBar {
            index,
            space: space_of,
        });
    }
    bars
}

/// The size of I/O BAR `index` (`pci_types` reports only its port): write
/// all ones, read which address bits stick, restore.
fn io_bar_size<C: ConfigSpace>(space: &C, address: PciAddress, index: u8) -> Option<u16> {
    let offset = BAR0 + 4 * index;
    let original = space.read32(address, offset);
    space.write32(address, offset, u32::MAX);
    let mask = space.read32(address, offset) & !0b11;
    space.write32(address, offset, original);
    let size = (!mask).wrapping_add(1) & 0xffff;
    (mask != 0 && size != 0).then_some(size as u16)
}

/// Let the function at `address` decode its BARs and master the bus (DMA):
/// done for the devices a driver was started for, and only those.
pub fn enable_driver_access<C: ConfigSpace>(space: &C, address: PciAddress) {
    let access = Access(space);
    let mut header = PciHeader::new(location(address));
    header.update_command(&access, |c| {
        c | CommandRegister::IO_ENABLE
            | CommandRegister::MEMORY_ENABLE
            | CommandRegister::BUS_MASTER_ENABLE
    });
}

#[cfg(test)]
mod tests;
