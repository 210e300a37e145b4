//! PCI configuration mechanism #1: write an address to port 0xCF8, then
//! read or write the selected register at port 0xCFC.

use crate::ConfigSpace;
use pandagen_process_manager::devices::PciAddress;

/// The address port.
pub const ADDRESS_PORT: u16 = 0xcf8;
/// The data port.
pub const DATA_PORT: u16 = 0xcfc;

/// 32-bit port access (in ring 3, an `IoPorts` capability). A failed access
/// reads as all ones, which enumeration takes for "no device".
pub trait PortIo {
    fn read32(&self, port: u16) -> Option<u32>;
    fn write32(&self, port: u16, value: u32) -> bool;
}

/// Configuration space through [`ADDRESS_PORT`] and [`DATA_PORT`].
pub struct Mechanism1<P: PortIo> {
    ports: P,
}

impl<P: PortIo> Mechanism1<P> {
    pub const fn new(ports: P) -> Self {
        Mechanism1 { ports }
    }
}

/// The value written to [`ADDRESS_PORT`] to select a register: the enable
/// bit, bus, device, function and the dword-aligned offset.
pub const fn config_address(address: PciAddress, offset: u8) -> u32 {
    0x8000_0000
        | (address.bus as u32) << 16
        | ((address.device & 0x1f) as u32) << 11
        | ((address.function & 0x7) as u32) << 8
        | (offset & 0xfc) as u32
}

impl<P: PortIo> ConfigSpace for Mechanism1<P> {
    fn read32(&self, address: PciAddress, offset: u8) -> u32 {
        if !self
            .ports
            .write32(ADDRESS_PORT, config_address(address, offset))
        {
            return u32::MAX;
        }
        self.ports.read32(DATA_PORT).unwrap_or(u32::MAX)
    }

    fn write32(&self, address: PciAddress, offset: u8, value: u32) {
        if self
            .ports
            .write32(ADDRESS_PORT, config_address(address, offset))
        {
            self.ports.write32(DATA_PORT, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_selects_bus_device_function_and_dword() {
        let address = PciAddress {
            bus: 0x12,
            device: 0x1f,
            function: 7,
        };
        assert_eq!(config_address(address, 0x3e), 0x8012_ff3c);
        assert_eq!(
            config_address(
                PciAddress {
                    bus: 0,
                    device: 3,
                    function: 0
                },
                0x10
            ),
            0x8000_1810
        );
    }

    /// Ports 0xCF8 and 0xCFC over a modelled bus with one register set,
    /// and a capability that may refuse the address port.
    struct Ports {
        selected: std::cell::Cell<Option<u32>>,
        registers: std::cell::RefCell<std::collections::BTreeMap<u32, u32>>,
        address_port_allowed: bool,
    }

    impl PortIo for Ports {
        fn read32(&self, port: u16) -> Option<u32> {
            assert_eq!(port, DATA_PORT);
            let selected = self.selected.get()?;
            Some(*self.registers.borrow().get(&selected).unwrap_or(&u32::MAX))
        }

        fn write32(&self, port: u16, value: u32) -> bool {
            match port {
                ADDRESS_PORT if self.address_port_allowed => self.selected.set(Some(value)),
                ADDRESS_PORT => return false,
                DATA_PORT => match self.selected.get() {
                    Some(selected) => {
                        self.registers.borrow_mut().insert(selected, value);
                    }
                    None => return false,
                },
                _ => panic!("port {port:#x} is not a configuration port"),
            }
            true
        }
    }

    fn ports(address_port_allowed: bool) -> Ports {
        Ports {
            selected: std::cell::Cell::new(None),
            registers: Default::default(),
            address_port_allowed,
        }
    }

    const VIRTIO: PciAddress = PciAddress {
        bus: 0,
        device: 3,
        function: 0,
    };

    #[test]
    fn registers_are_read_and_written_at_the_selected_address() {
        let space = Mechanism1::new(ports(true));
        space
            .ports
            .registers
            .borrow_mut()
            .insert(config_address(VIRTIO, 0), 0x1001_1af4);
        assert_eq!(space.read32(VIRTIO, 0), 0x1001_1af4);
        space.write32(VIRTIO, 0x3c, 0x010b);
        assert_eq!(
            space.ports.registers.borrow()[&config_address(VIRTIO, 0x3c)],
            0x010b
        );
        assert_eq!(space.read32(VIRTIO, 0x3c), 0x010b);
    }

    #[test]
    fn a_refused_address_port_reads_as_absent_and_writes_nothing() {
        let space = Mechanism1::new(ports(false));
        // A register selected before the capability was narrowed must not
        // be read or written through the data port.
        space.ports.selected.set(Some(config_address(VIRTIO, 4)));
        space
            .ports
            .registers
            .borrow_mut()
            .insert(config_address(VIRTIO, 4), 7);
        assert_eq!(space.read32(VIRTIO, 0), u32::MAX);
        space.write32(VIRTIO, 0x10, 0);
        assert_eq!(
            space.ports.registers.borrow()[&config_address(VIRTIO, 4)],
            7
        );
        assert_eq!(space.ports.registers.borrow().len(), 1);
    }
}
