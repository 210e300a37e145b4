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
}
