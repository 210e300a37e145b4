//! A byte-oriented serial line (the kernel's console and log).

/// A serial port.
pub trait SerialHal {
    /// Sends every byte, waiting for the transmitter as needed.
    fn write_bytes(&mut self, bytes: &[u8]);
    /// Returns a received byte if one is waiting.
    fn try_read_byte(&mut self) -> Option<u8>;
}
