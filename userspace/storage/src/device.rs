//! [`BlockCallClient`]: the kernel's block device as a [`BlockDevice`] for
//! the journal. Block reads and writes become the block calls of
//! [`KernelApi`] (system calls in ring 3, the simulator on the host), split
//! into pieces of at most [`MAX_BLOCK_TRANSFER`] bytes.
//!
//! A write is complete when its call returns (the kernel's device is a RAM
//! disk with no cache), so `flush` has nothing to do. A request split into
//! pieces is not atomic — a crash between two pieces leaves the first on
//! the device — which is exactly the torn write the journal recovers from.

use alloc::vec::Vec;

use pandagen_abi::block::{on_device, whole_blocks, BlockDevice};
use pandagen_abi::syscall::MAX_BLOCK_TRANSFER;
use pandagen_abi::{BlockError, CapHandle, KernelApi, KernelError};

/// The client of the kernel's block calls: the device named by the
/// `BlockDevice` capability `device`, reached through `kernel`.
pub struct BlockCallClient<K: KernelApi> {
    kernel: K,
    device: CapHandle,
    block_size: u32,
    block_count: u64,
    /// The last kernel error, for diagnostics (a [`BlockError`] cannot
    /// carry it).
    last_error: Option<KernelError>,
}

impl<K: KernelApi> core::fmt::Debug for BlockCallClient<K> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BlockCallClient")
            .field("device", &self.device)
            .field("block_size", &self.block_size)
            .field("block_count", &self.block_count)
            .finish()
    }
}

/// A block call's refusal as the device's error: the kernel's own block
/// errors unchanged, a missing right as `NotPermitted`, anything else
/// (the capability is gone, the call failed) as `Device`.
fn block_error(error: KernelError) -> BlockError {
    match error {
        KernelError::Block(e) => e,
        KernelError::InsufficientAuthority => BlockError::NotPermitted,
        _ => BlockError::Device,
    }
}

impl<K: KernelApi> BlockCallClient<K> {
    /// Ask the kernel for the device's geometry (needs `READ`).
    pub fn open(mut kernel: K, device: CapHandle) -> Result<Self, KernelError> {
        let info = kernel.block_info(device)?;
        Ok(BlockCallClient {
            kernel,
            device,
            block_size: info.block_size,
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
        let block_size = self.block_size as usize;
        (MAX_BLOCK_TRANSFER / block_size).max(1) * block_size
    }

    /// The device's rules, checked here so that a request the kernel would
    /// refuse is refused whole, before any piece of it is written.
    fn check(&self, first: u64, len: usize) -> Result<(), BlockError> {
        let count = whole_blocks(len as u64, self.block_size)?;
        on_device(first, count, self.block_count)
    }

    fn fail(&mut self, error: KernelError) -> BlockError {
        self.last_error = Some(error);
        block_error(error)
    }
}

impl<K: KernelApi> BlockDevice for BlockCallClient<K> {
    fn block_size(&self) -> u32 {
        self.block_size
    }

    fn block_count(&self) -> u64 {
        self.block_count
    }

    fn read_blocks(&mut self, first: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.check(first, buf.len())?;
        let piece = self.piece_bytes();
        let mut block = first;
        for chunk in buf.chunks_mut(piece) {
            let count = (chunk.len() / self.block_size as usize) as u32;
            let bytes: Vec<u8> = match self.kernel.block_read(self.device, block, count) {
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

    fn write_blocks(&mut self, first: u64, bytes: &[u8]) -> Result<(), BlockError> {
        self.check(first, bytes.len())?;
        let piece = self.piece_bytes();
        let mut block = first;
        for chunk in bytes.chunks(piece) {
            if let Err(e) = self.kernel.block_write(self.device, block, chunk) {
                return Err(self.fail(e));
            }
            block += (chunk.len() / self.block_size as usize) as u64;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }
}
