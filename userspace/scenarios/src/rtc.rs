//! The CMOS real-time clock through a port capability: the device the
//! device suites use, because it interrupts on demand (register B's
//! periodic-interrupt enable) and reading its registers changes nothing
//! but register C's pending flags.

use pandagen_abi::KernelError;
use pandagen_rt::device::Ports;

/// The index port (bit 7 also masks NMI while set).
pub const RTC_INDEX: u16 = 0x70;
/// The data port of the selected register.
pub const RTC_DATA: u16 = 0x71;
/// The RTC's interrupt line.
pub const RTC_LINE: u8 = 8;

/// Register `register` of the RTC.
pub fn rtc_read(ports: &Ports, register: u8) -> Result<u8, KernelError> {
    ports.write8(RTC_INDEX, register)?;
    ports.read8(RTC_DATA)
}

/// Set register `register` of the RTC.
pub fn rtc_write(ports: &Ports, register: u8, value: u8) -> Result<(), KernelError> {
    ports.write8(RTC_INDEX, register)?;
    ports.write8(RTC_DATA, value)
}
