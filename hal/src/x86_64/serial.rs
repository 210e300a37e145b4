//! The first serial port (COM1, I/O base 0x3F8), a 16550 UART.

use crate::serial::SerialHal;
use uart_16550::SerialPort;

/// COM1.
pub struct Com1 {
    port: SerialPort,
}

impl Com1 {
    /// I/O port base of COM1.
    pub const BASE: u16 = 0x3F8;

    /// Programs the UART (115200 8N1, FIFOs on) and returns a handle.
    ///
    /// # Safety
    /// Must run in ring 0 on a PC-compatible machine, and the caller must
    /// make sure only one handle drives the port at a time.
    pub unsafe fn init() -> Self {
        // SAFETY: the caller guarantees port access and exclusivity.
        let mut port = unsafe { SerialPort::new(Self::BASE) };
        port.init();
        Self { port }
    }

    /// A handle to an already initialised COM1 that bypasses any lock held
    /// elsewhere; used only by fatal-error paths that must print even if the
    /// logger's lock is held by the code that failed.
    ///
    /// # Safety
    /// As for [`Com1::init`]; output may interleave with another handle's.
    pub unsafe fn steal() -> Self {
        Self {
            // SAFETY: forwarded to the caller (COM1 exists and is
            // initialised; interleaved output is accepted).
            port: unsafe { SerialPort::new(Self::BASE) },
        }
    }
}

impl SerialHal for Com1 {
    fn write_bytes(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.port.send_raw(byte);
        }
    }

    fn try_read_byte(&mut self) -> Option<u8> {
        self.port.try_receive().ok()
    }
}

impl core::fmt::Write for Com1 {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}
