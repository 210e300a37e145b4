//! The kernel's block device as the journal's [`BlockDevice`]: block reads
//! and writes become [`BlockApi`] calls (system calls in ring 3, the
//! simulator on the host), split into pieces of at most
//! [`MAX_BLOCK_TRANSFER`] bytes.
//!
//! A write is complete when its call returns (the kernel's device is a RAM
//! disk with no cache), so `flush` has nothing to do. A request split into
//! pieces is not atomic — a crash between two pieces leaves the first on
//! the device — which is exactly the torn write the journal recovers from.

use alloc::vec::Vec;

use pandagen_abi::error::BlockError as KernelBlockError;
use pandagen_abi::syscall::MAX_BLOCK_TRANSFER;
use pandagen_abi::{BlockApi, CapHandle, KernelError};
use pandagen_hal::{BlockDevice, BlockError};

/// A block device reached through `port` with the `BlockDevice`
/// capability `device`.
pub struct KernelBlockDevice<P: BlockApi> {
    port: P,
    device: CapHandle,
    block_size: usize,
    block_count: u64,
    /// The last kernel error, for diagnostics (the `BlockDevice` trait's
    /// errors are coarser).
    last_error: Option<KernelError>,
}

impl<P: BlockApi> core::fmt::Debug for KernelBlockDevice<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KernelBlockDevice")
            .field("device", &self.device)
            .field("block_size", &self.block_size)
            .field("block_count", &self.block_count)
            .finish()
    }
}

fn block_error(error: KernelError) -> BlockError {
    match error {
        KernelError::Block(KernelBlockError::OutOfRange { .. }) => BlockError::OutOfRange,
        KernelError::Block(_) => BlockError::BadBufferLength,
        KernelError::InsufficientAuthority => BlockError::ReadOnly,
        _ => BlockError::Device,
    }
}

impl<P: BlockApi> KernelBlockDevice<P> {
    /// Ask the kernel for the device's geometry (needs `READ`).
    pub fn open(mut port: P, device: CapHandle) -> Result<Self, KernelError> {
        let info = port.block_info(device)?;
        Ok(KernelBlockDevice {
            port,
            device,
            block_size: info.block_size as usize,
            block_count: info.block_count,
            last_error: None,
        })
    }

    /// The kernel error behind the last failed request.
    pub fn last_error(&self) -> Option<KernelError> {
        self.last_error
    }

    /// Whole blocks per call.
    fn piece_bytes(&self) -> usize {
        (MAX_BLOCK_TRANSFER / self.block_size).max(1) * self.block_size
    }

    fn check(&self, len: usize) -> Result<(), BlockError> {
        if self.block_size == 0 || !len.is_multiple_of(self.block_size) {
            return Err(BlockError::BadBufferLength);
        }
        Ok(())
    }

    fn fail(&mut self, error: KernelError) -> BlockError {
        self.last_error = Some(error);
        block_error(error)
    }
}

impl<P: BlockApi> BlockDevice for KernelBlockDevice<P> {
    fn block_size(&self) -> usize {
        self.block_size
    }

    fn block_count(&self) -> u64 {
        self.block_count
    }

    fn read_blocks(&mut self, start: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.check(buf.len())?;
        let piece = self.piece_bytes();
        let mut block = start;
        for chunk in buf.chunks_mut(piece) {
            let count = (chunk.len() / self.block_size) as u32;
            let bytes: Vec<u8> = match self.port.block_read(self.device, block, count) {
                Ok(bytes) => bytes,
                Err(e) => return Err(self.fail(e)),
            };
            if bytes.len() != chunk.len() {
                return Err(BlockError::Device);
            }
            chunk.copy_from_slice(&bytes);
            block += u64::from(count);
        }
        Ok(())
    }

    fn write_blocks(&mut self, start: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.check(buf.len())?;
        let piece = self.piece_bytes();
        let mut block = start;
        for chunk in buf.chunks(piece) {
            if let Err(e) = self.port.block_write(self.device, block, chunk) {
                return Err(self.fail(e));
            }
            block += (chunk.len() / self.block_size) as u64;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }
}
