//! Devices the `pci` service found, the manifest's driver matches, and the
//! capabilities a driver gets for its device.
//!
//! The `pci` service (the holder of the configuration-space ports
//! 0xCF8..=0xCFF) reports every function it found with
//! [`DEVICES_FOUND_ACTION`]. The process manager binds each driver section
//! of the manifest (one with a `pci` key) to the first unbound device it
//! matches and starts the driver with exactly that device's resources
//! ([`driver_resources`]): each BAR as device memory or a port range, its
//! interrupt line, and the section's DMA allowance. A driver asks for its
//! device's description with [`DRIVER_READY_ACTION`], which also hands the
//! process manager the capability the driver serves its clients through.
//! [`DEVICES_ACTION`] lists devices and their drivers (the console's
//! `devices` command).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

use pandagen_abi::device::{DeviceResource, InterruptLines, PhysRange, PortRange};
use pandagen_abi::ServiceId;

use crate::lifecycle::LifecycleState;

/// `pci` → process manager: `Vec<PciDevice>`; answered with
/// `PmReply::Bound`, the indices of the devices a driver was bound to (the
/// `pci` service then lets them decode and master the bus).
pub const DEVICES_FOUND_ACTION: &str = "pm.devices-found";
/// `pci` → process manager: `()`, once the bound devices are enabled;
/// their drivers start then. Answered with `PmReply::Bound` again.
pub const DEVICES_ENABLED_ACTION: &str = "pm.devices-enabled";
/// Anyone → process manager: `()`; answered with `PmReply::Devices`.
pub const DEVICES_ACTION: &str = "pm.devices";
/// A driver → process manager: `()`, with the reply channel and then the
/// capability the driver's clients use (moved to the process manager);
/// answered with `PmReply::Device`, the driver's device.
pub const DRIVER_READY_ACTION: &str = "pm.driver-ready";

/// The configuration-space ports of PCI configuration mechanism #1: the
/// holder of a capability for exactly these may report devices.
pub const CONFIG_PORTS: PortRange = PortRange::new(0xcf8, 0xcff);

/// Bytes of configuration space a report carries per function (the
/// standard header and the capability list).
pub const CONFIG_BYTES: usize = 256;

/// A PCI function's address on segment 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PciAddress {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

/// Where a BAR decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BarSpace {
    Memory { base: u64, size: u64, wide: bool },
    Io { port: u16, size: u16 },
}

/// One implemented base address register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciBar {
    /// 0..=5 (a 64-bit BAR names its first slot).
    pub index: u8,
    pub space: BarSpace,
}

impl PciBar {
    /// The device resource this BAR is, rounded out to whole pages for
    /// memory; `None` for a BAR the firmware left unassigned (address 0)
    /// or that cannot be expressed (a port range past 0xffff).
    pub fn resource(&self) -> Option<DeviceResource> {
        match self.space {
            BarSpace::Memory { base, size, .. } if base != 0 && size != 0 => {
                let page = pandagen_abi::memory::PAGE_SIZE;
                let first = base - base % page;
                let end = base.checked_add(size)?.checked_next_multiple_of(page)?;
                Some(DeviceResource::Memory(PhysRange::new(first, end - first)))
            }
            BarSpace::Io { port, size } if port != 0 && size != 0 => {
                let last = port.checked_add(size - 1)?;
                Some(DeviceResource::Ports(PortRange::new(port, last)))
            }
            _ => None,
        }
    }
}

/// One function as the `pci` service found it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciDevice {
    pub address: PciAddress,
    pub vendor: u16,
    pub device: u16,
    pub class: u8,
    pub subclass: u8,
    pub interface: u8,
    pub bars: Vec<PciBar>,
    /// The legacy interrupt line the firmware routed (`None`: no pin, or
    /// 0xff, unrouted).
    pub interrupt_line: Option<u8>,
    /// The first [`CONFIG_BYTES`] of configuration space, as read at
    /// enumeration (drivers parse their capability lists from it).
    pub config: Vec<u8>,
}

impl PciDevice {
    /// The 32-bit configuration register at `offset` of the snapshot (0
    /// past its end).
    pub fn config_word(&self, offset: usize) -> u32 {
        let mut word = [0u8; 4];
        if let Some(bytes) = self.config.get(offset..offset + 4) {
            word.copy_from_slice(bytes);
        }
        u32::from_le_bytes(word)
    }
}

/// What a driver section matches: a vendor and device id, or a class and
/// subclass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceMatch {
    Id { vendor: u16, device: u16 },
    Class { class: u8, subclass: u8 },
}

impl DeviceMatch {
    pub fn matches(&self, device: &PciDevice) -> bool {
        match *self {
            DeviceMatch::Id { vendor, device: id } => {
                device.vendor == vendor && device.device == id
            }
            DeviceMatch::Class { class, subclass } => {
                device.class == class && device.subclass == subclass
            }
        }
    }

    /// `VVVV:DDDD` (hexadecimal ids) or `class:CC:SS`.
    pub fn parse(text: &str) -> Option<DeviceMatch> {
        let hex8 = |t: &str| u8::from_str_radix(t.trim(), 16).ok();
        let hex16 = |t: &str| u16::from_str_radix(t.trim(), 16).ok();
        if let Some(rest) = text.strip_prefix("class:") {
            let (class, subclass) = rest.split_once(':')?;
            return Some(DeviceMatch::Class {
                class: hex8(class)?,
                subclass: hex8(subclass)?,
            });
        }
        let (vendor, device) = text.split_once(':')?;
        Some(DeviceMatch::Id {
            vendor: hex16(vendor)?,
            device: hex16(device)?,
        })
    }
}

/// The device capabilities a driver for `device` receives after those its
/// manifest section names, in this order: each assigned BAR by index,
/// then the interrupt line (if routed), then `dma` bytes of DMA allowance
/// (if any). A driver finds its capabilities by the same rule.
pub fn driver_resources(device: &PciDevice, dma: Option<u64>) -> Vec<DeviceResource> {
    let mut resources: Vec<DeviceResource> =
        device.bars.iter().filter_map(PciBar::resource).collect();
    if let Some(line) = device.interrupt_line {
        resources.push(DeviceResource::Interrupts(InterruptLines::one(line)));
    }
    if let Some(bytes) = dma.filter(|b| *b > 0) {
        resources.push(DeviceResource::Dma { bytes });
    }
    resources
}

/// Where a driver section stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DriverBinding {
    /// The `pci` service has not reported yet.
    Waiting,
    /// Enumeration found no device it matches: it never starts, and
    /// services depending on it start without it.
    Absent,
    /// Bound to this device.
    Bound(PciDevice),
}

/// One device and its driver, as `pm.devices` reports them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceEntry {
    pub address: PciAddress,
    pub vendor: u16,
    pub device: u16,
    pub class: u8,
    pub subclass: u8,
    pub bars: Vec<PciBar>,
    pub interrupt_line: Option<u8>,
    /// The driver bound to it: its service, name and state.
    pub driver: Option<(ServiceId, String, LifecycleState)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn virtio_blk() -> PciDevice {
        PciDevice {
            address: PciAddress {
                bus: 0,
                device: 3,
                function: 0,
            },
            vendor: 0x1af4,
            device: 0x1001,
            class: 1,
            subclass: 0,
            interface: 0,
            bars: alloc::vec![
                PciBar {
                    index: 0,
                    space: BarSpace::Io {
                        port: 0xc000,
                        size: 0x80,
                    },
                },
                PciBar {
                    index: 1,
                    space: BarSpace::Memory {
                        base: 0xfebd_1000,
                        size: 0x1000,
                        wide: false,
                    },
                },
                PciBar {
                    index: 4,
                    space: BarSpace::Memory {
                        base: 0xfe00_0000,
                        size: 0x4000,
                        wide: true,
                    },
                },
                PciBar {
                    index: 5,
                    space: BarSpace::Memory {
                        base: 0,
                        size: 0x1000,
                        wide: false,
                    },
                },
            ],
            interrupt_line: Some(11),
            config: alloc::vec![0; CONFIG_BYTES],
        }
    }

    #[test]
    fn a_driver_gets_each_assigned_bar_its_line_and_its_dma() {
        assert_eq!(
            driver_resources(&virtio_blk(), Some(1 << 20)),
            alloc::vec![
                DeviceResource::Ports(PortRange::new(0xc000, 0xc07f)),
                DeviceResource::Memory(PhysRange::new(0xfebd_1000, 0x1000)),
                DeviceResource::Memory(PhysRange::new(0xfe00_0000, 0x4000)),
                DeviceResource::Interrupts(InterruptLines::one(11)),
                DeviceResource::Dma { bytes: 1 << 20 },
            ]
        );
        let mut unrouted = virtio_blk();
        unrouted.interrupt_line = None;
        assert_eq!(driver_resources(&unrouted, None).len(), 3);
    }

    #[test]
    fn a_small_memory_bar_is_rounded_out_to_its_page() {
        let bar = PciBar {
            index: 0,
            space: BarSpace::Memory {
                base: 0xfebf_1010,
                size: 0x20,
                wide: false,
            },
        };
        assert_eq!(
            bar.resource(),
            Some(DeviceResource::Memory(PhysRange::new(0xfebf_1000, 0x1000)))
        );
    }

    #[test]
    fn matches_parse_ids_and_classes() {
        let device = virtio_blk();
        assert!(DeviceMatch::parse("1af4:1001").unwrap().matches(&device));
        assert!(!DeviceMatch::parse("1af4:1042").unwrap().matches(&device));
        assert!(DeviceMatch::parse("class:01:00").unwrap().matches(&device));
        assert!(!DeviceMatch::parse("class:01:06").unwrap().matches(&device));
        assert_eq!(DeviceMatch::parse("1af4"), None);
        assert_eq!(DeviceMatch::parse("xyz:1"), None);
        assert_eq!(DeviceMatch::parse("class:100:0"), None);
    }

    #[test]
    fn config_words_are_little_endian_and_zero_past_the_snapshot() {
        let mut device = virtio_blk();
        device.config[0..4].copy_from_slice(&[0xf4, 0x1a, 0x01, 0x10]);
        assert_eq!(device.config_word(0), 0x1001_1af4);
        assert_eq!(device.config_word(CONFIG_BYTES), 0);
    }
}
