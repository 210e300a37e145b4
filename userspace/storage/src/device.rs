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
use core::ops::Range;

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

/// Split a transfer of `len` bytes (whole blocks of `block_size`) from
/// block `first` into pieces of at most `max` bytes (at least one block),
/// and run `each(block, bytes)` on them in order, stopping at the first
/// error: the block it starts at and its range of the caller's buffer.
pub(crate) fn for_each_piece(
    first: u64,
    len: usize,
    block_size: u32,
    max: usize,
    mut each: impl FnMut(u64, Range<usize>) -> Result<(), BlockError>,
) -> Result<(), BlockError> {
    let block_size = block_size as usize;
    let piece = (max / block_size).max(1) * block_size;
    let (mut block, mut at) = (first, 0);
    while at < len {
        let end = len.min(at + piece);
        each(block, at..end)?;
        block += ((end - at) / block_size) as u64;
        at = end;
    }
    Ok(())
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
        let block_size = self.block_size;
        for_each_piece(
            first,
            buf.len(),
            block_size,
            MAX_BLOCK_TRANSFER,
            |block, range| {
                let count = (range.len() / block_size as usize) as u32;
                let bytes: Vec<u8> = match self.kernel.block_read(self.device, block, count) {
                    Ok(bytes) => bytes,
                    Err(e) => return Err(self.fail(e)),
                };
                let chunk = &mut buf[range];
                if bytes.len() != chunk.len() {
                    return Err(BlockError::Device);
                }
                chunk.copy_from_slice(&bytes);
                Ok(())
            },
        )
    }

    fn write_blocks(&mut self, first: u64, bytes: &[u8]) -> Result<(), BlockError> {
        self.check(first, bytes.len())?;
        for_each_piece(
            first,
            bytes.len(),
            self.block_size,
            MAX_BLOCK_TRANSFER,
            |block, range| {
                self.kernel
                    .block_write(self.device, block, &bytes[range])
                    .map_err(|e| self.fail(e))
            },
        )
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn pieces(
        first: u64,
        len: usize,
        max: usize,
        fail_at: Option<u64>,
    ) -> Vec<(u64, Range<usize>)> {
        let mut seen = Vec::new();
        let result = for_each_piece(first, len, 512, max, |block, range| {
            seen.push((block, range));
            if Some(block) == fail_at {
                return Err(BlockError::Device);
            }
            Ok(())
        });
        assert_eq!(result.is_err(), fail_at.is_some());
        seen
    }

    #[test]
    fn a_transfer_is_split_into_whole_block_pieces_in_order() {
        assert_eq!(
            pieces(10, 5 * 512, 1024, None),
            vec![(10, 0..1024), (12, 1024..2048), (14, 2048..2560)]
        );
        // A limit that is not a whole number of blocks rounds down, but
        // never below one block.
        assert_eq!(
            pieces(0, 2 * 512, 700, None),
            vec![(0, 0..512), (1, 512..1024)]
        );
        assert_eq!(pieces(0, 0, 1024, None), vec![]);
    }

    #[test]
    fn the_first_failed_piece_ends_the_transfer() {
        assert_eq!(
            pieces(0, 6 * 512, 1024, Some(2)),
            vec![(0, 0..1024), (2, 1024..2048)]
        );
    }
}
