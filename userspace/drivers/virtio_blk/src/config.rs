//! The device's configuration space as the `virtio-drivers` PCI transport
//! reads it, served from the snapshot the `pci` service took: a driver
//! holds no configuration-space ports, only its device's description.
//!
//! The transport sizes BARs the usual way (write all ones, read back,
//! restore); the snapshot answers that from the sizes the `pci` service
//! measured. Every other write is kept locally and reaches no hardware:
//! decoding and bus mastering were set up by the `pci` service.

use pandagen_process_manager::devices::{BarSpace, PciDevice, CONFIG_BYTES};
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction};

/// Offset of BAR 0.
const BAR0: u8 = 0x10;

#[derive(Clone, Debug)]
pub struct SnapshotConfig {
    registers: [u32; CONFIG_BYTES / 4],
    /// Per BAR slot, the address bits software can write (0: none).
    writable: [u32; 6],
    /// Slots holding the upper half of a 64-bit BAR (no flag bits).
    upper: [bool; 6],
}

impl SnapshotConfig {
    pub fn new(device: &PciDevice) -> Self {
        let mut registers = [0u32; CONFIG_BYTES / 4];
        for (i, register) in registers.iter_mut().enumerate() {
            *register = device.config_word(i * 4);
        }
        let mut writable = [0u32; 6];
        let mut upper = [false; 6];
        for bar in &device.bars {
            let slot = usize::from(bar.index);
            match bar.space {
                BarSpace::Memory { size, wide, .. } if size.is_power_of_two() => {
                    let mask = !(size - 1);
                    writable[slot] = mask as u32;
                    if wide && slot + 1 < 6 {
                        writable[slot + 1] = (mask >> 32) as u32;
                        upper[slot + 1] = true;
                    }
                }
                BarSpace::Io { size, .. } if size.is_power_of_two() => {
                    writable[slot] = !(u32::from(size) - 1);
                }
                _ => {}
            }
        }
        SnapshotConfig {
            registers,
            writable,
            upper,
        }
    }

    fn bar_slot(offset: u8) -> Option<usize> {
        let slot = usize::from(offset.checked_sub(BAR0)? / 4);
        (slot < 6).then_some(slot)
    }
}

impl ConfigurationAccess for SnapshotConfig {
    fn read_word(&self, _: DeviceFunction, register_offset: u8) -> u32 {
        self.registers[usize::from(register_offset / 4)]
    }

    fn write_word(&mut self, _: DeviceFunction, register_offset: u8, data: u32) {
        let index = usize::from(register_offset / 4);
        match Self::bar_slot(register_offset) {
            Some(slot) => {
                // Flag bits (I/O, type, prefetchable) are read-only.
                let flag_bits = if self.upper[slot] {
                    0
                } else if self.registers[index] & 1 == 1 {
                    0b11
                } else {
                    0b1111
                };
                let flags = self.registers[index] & flag_bits;
                self.registers[index] = (data & self.writable[slot] & !flag_bits) | flags;
            }
            None => self.registers[index] = data,
        }
    }

    unsafe fn unsafe_clone(&self) -> Self {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use pandagen_process_manager::devices::{PciAddress, PciBar};
    use virtio_drivers::transport::pci::bus::{BarInfo, MemoryBarType, PciRoot};

    fn device() -> PciDevice {
        let mut config = vec![0u8; CONFIG_BYTES];
        let mut put = |offset: usize, value: u32| {
            config[offset..offset + 4].copy_from_slice(&value.to_le_bytes())
        };
        put(0, 0x1001_1af4);
        put(4, 0x0010_0007);
        put(0x10, 0xc081);
        put(0x20, 0xfe00_000c);
        put(0x24, 0);
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
            bars: vec![
                PciBar {
                    index: 0,
                    space: BarSpace::Io {
                        port: 0xc080,
                        size: 0x80,
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
            ],
            interrupt_line: Some(11),
            config,
        }
    }

    #[test]
    fn bar_sizing_reads_back_the_measured_sizes() {
        let mut root = PciRoot::new(SnapshotConfig::new(&device()));
        let function = DeviceFunction {
            bus: 0,
            device: 3,
            function: 0,
        };
        match root.bar_info(function, 4).unwrap() {
            Some(BarInfo::Memory { address, size, .. }) => {
                assert_eq!((address, size), (0xfe00_0000, 0x4000))
            }
            other => panic!("{other:?}"),
        }
        match root.bar_info(function, 0).unwrap() {
            Some(BarInfo::IO { address, size }) => assert_eq!((address, size), (0xc080, 0x80)),
            other => panic!("{other:?}"),
        }
        assert_eq!(root.bar_info(function, 2).unwrap(), None);
        // Sizing restored the BAR: asking again gives the same answer.
        // Its type and prefetch bits included: a 64-bit BAR must not come
        // back as a 32-bit one.
        assert_eq!(
            root.bar_info(function, 4).unwrap(),
            Some(BarInfo::Memory {
                address_type: MemoryBarType::Width64,
                prefetchable: true,
                address: 0xfe00_0000,
                size: 0x4000,
            })
        );
        assert_eq!(
            root.bar_info(function, 0).unwrap(),
            Some(BarInfo::IO {
                address: 0xc080,
                size: 0x80
            })
        );
    }

    #[test]
    fn a_small_io_bar_is_sized_by_its_own_port_bits() {
        // An 8-port I/O BAR: bits 2 and 3 are address bits, not flags.
        let mut device = device();
        device.config[0x14..0x18].copy_from_slice(&0xc001u32.to_le_bytes());
        device.bars.push(PciBar {
            index: 1,
            space: BarSpace::Io {
                port: 0xc000,
                size: 8,
            },
        });
        let mut root = PciRoot::new(SnapshotConfig::new(&device));
        let function = DeviceFunction {
            bus: 0,
            device: 3,
            function: 0,
        };
        match root.bar_info(function, 1).unwrap() {
            Some(BarInfo::IO { address, size }) => assert_eq!((address, size), (0xc000, 8)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn registers_past_the_bars_keep_what_is_written() {
        let mut config = SnapshotConfig::new(&device());
        let function = DeviceFunction {
            bus: 0,
            device: 3,
            function: 0,
        };
        // CardBus CIS pointer and the subsystem ids: plain registers.
        config.write_word(function, 0x28, 0x1234_5678);
        config.write_word(function, 0x2c, 0xffff_ffff);
        assert_eq!(config.read_word(function, 0x28), 0x1234_5678);
        assert_eq!(config.read_word(function, 0x2c), 0xffff_ffff);
    }
}
