//! Block storage: fixed-size blocks addressed by number.

/// Why a block operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockError {
    /// The request reaches past the last block.
    OutOfRange,
    /// The buffer length is not a whole number of blocks.
    BadBufferLength,
    /// The device does not accept writes.
    ReadOnly,
    /// The device reported an I/O failure.
    Device,
}

/// A block device. Requests cover whole blocks: `buf.len()` must be a
/// multiple of [`BlockDevice::block_size`].
pub trait BlockDevice {
    /// Bytes per block.
    fn block_size(&self) -> usize;
    /// Number of blocks on the device.
    fn block_count(&self) -> u64;
    /// Reads `buf.len() / block_size` blocks starting at block `start`.
    fn read_blocks(&mut self, start: u64, buf: &mut [u8]) -> Result<(), BlockError>;
    /// Writes `buf.len() / block_size` blocks starting at block `start`.
    fn write_blocks(&mut self, start: u64, buf: &[u8]) -> Result<(), BlockError>;
    /// Makes previous writes durable.
    fn flush(&mut self) -> Result<(), BlockError>;
}

/// A block device over a byte slice in memory (for example the boot ramdisk,
/// or a scratch disk in tests).
pub struct RamBlockDevice<'a> {
    bytes: &'a mut [u8],
    block_size: usize,
    read_only: bool,
}

impl<'a> RamBlockDevice<'a> {
    /// Wraps `bytes`; a trailing partial block is not addressable.
    /// `block_size` must be non-zero.
    pub fn new(bytes: &'a mut [u8], block_size: usize, read_only: bool) -> Self {
        assert!(block_size > 0, "block size must be non-zero");
        Self {
            bytes,
            block_size,
            read_only,
        }
    }

    /// The byte range a request covers, after checking it.
    fn span(&self, start: u64, len: usize) -> Result<core::ops::Range<usize>, BlockError> {
        if !len.is_multiple_of(self.block_size) {
            return Err(BlockError::BadBufferLength);
        }
        let blocks = (len / self.block_size) as u64;
        let end_block = start.checked_add(blocks).ok_or(BlockError::OutOfRange)?;
        if end_block > self.block_count() {
            return Err(BlockError::OutOfRange);
        }
        let begin = start as usize * self.block_size;
        Ok(begin..begin + len)
    }
}

impl BlockDevice for RamBlockDevice<'_> {
    fn block_size(&self) -> usize {
        self.block_size
    }

    fn block_count(&self) -> u64 {
        (self.bytes.len() / self.block_size) as u64
    }

    fn read_blocks(&mut self, start: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let span = self.span(start, buf.len())?;
        buf.copy_from_slice(&self.bytes[span]);
        Ok(())
    }

    fn write_blocks(&mut self, start: u64, buf: &[u8]) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        let span = self.span(start, buf.len())?;
        self.bytes[span].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_round_trips() {
        let mut backing = [0u8; 512 * 4 + 100];
        let mut dev = RamBlockDevice::new(&mut backing, 512, false);
        assert_eq!(dev.block_count(), 4);
        let data = [0xABu8; 1024];
        dev.write_blocks(2, &data).unwrap();
        let mut out = [0u8; 1024];
        dev.read_blocks(2, &mut out).unwrap();
        assert_eq!(out, data);
        let mut first = [1u8; 512];
        dev.read_blocks(0, &mut first).unwrap();
        assert_eq!(first, [0u8; 512]);
    }

    #[test]
    fn rejects_bad_requests() {
        let mut backing = [0u8; 2048];
        let mut dev = RamBlockDevice::new(&mut backing, 512, false);
        let mut buf = [0u8; 512];
        assert_eq!(dev.read_blocks(4, &mut buf), Err(BlockError::OutOfRange));
        assert_eq!(
            dev.read_blocks(u64::MAX, &mut buf),
            Err(BlockError::OutOfRange)
        );
        let mut odd = [0u8; 100];
        assert_eq!(
            dev.read_blocks(0, &mut odd),
            Err(BlockError::BadBufferLength)
        );
        let mut ro_backing = [0u8; 512];
        let mut ro = RamBlockDevice::new(&mut ro_backing, 512, true);
        assert_eq!(ro.write_blocks(0, &buf), Err(BlockError::ReadOnly));
    }
}
