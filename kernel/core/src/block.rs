//! The kernel's block device: fixed-size blocks that belong to the kernel,
//! not to any task, so that what one task writes outlives it.
//!
//! Each kernel provides the storage behind it as a [`BlockStore`] (the bare
//! -metal kernel a RAM disk of physical frames, the simulator a
//! [`VecDisk`]); the checks every call passes — the capability, then whole
//! blocks, the transfer limit, the device's bounds — are the
//! [`KernelCore::block_info`], [`KernelCore::block_read`] and
//! [`KernelCore::block_write`] methods, so they exist once. A store is only
//! ever asked for ranges those checks accepted.
//!
//! [`KernelCore::block_info`]: crate::KernelCore::block_info
//! [`KernelCore::block_read`]: crate::KernelCore::block_read
//! [`KernelCore::block_write`]: crate::KernelCore::block_write

use alloc::vec;
use alloc::vec::Vec;
use pandagen_abi::error::BlockError;
use pandagen_abi::syscall::{BlockInfo, MAX_BLOCK_TRANSFER};

/// The bytes behind a block device.
pub trait BlockStore {
    /// Bytes per block; non-zero.
    fn block_size(&self) -> u32;
    /// Blocks on the device.
    fn block_count(&self) -> u64;
    /// Copy `buf.len()` bytes from byte `offset`. Called only with ranges
    /// that lie on the device.
    fn read_at(&self, offset: u64, buf: &mut [u8]);
    /// Copy `bytes` to byte `offset`. Called only with ranges that lie on
    /// the device.
    fn write_at(&mut self, offset: u64, bytes: &[u8]);
}

/// The geometry of `store`.
pub fn info(store: &dyn BlockStore) -> BlockInfo {
    BlockInfo {
        block_size: store.block_size(),
        block_count: store.block_count(),
    }
}

/// The byte offset of a transfer of `len` bytes from block `first`, after
/// checking that it is a positive whole number of blocks, within the
/// transfer limit, and on the device.
pub fn span(store: &dyn BlockStore, first: u64, len: u64) -> Result<u64, BlockError> {
    let block_size = store.block_size();
    let size = u64::from(block_size);
    if len == 0 || size == 0 || !len.is_multiple_of(size) {
        return Err(BlockError::BadLength { len, block_size });
    }
    if len > MAX_BLOCK_TRANSFER as u64 {
        return Err(BlockError::TooLarge {
            len,
            max: MAX_BLOCK_TRANSFER as u32,
        });
    }
    let count = len / size;
    let blocks = store.block_count();
    match first.checked_add(count) {
        Some(end) if end <= blocks => Ok(first * size),
        _ => Err(BlockError::OutOfRange {
            first,
            count,
            blocks,
        }),
    }
}

/// A block store in a `Vec`: the simulator's device, and a test double.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VecDisk {
    bytes: Vec<u8>,
    block_size: u32,
}

impl VecDisk {
    /// `block_count` zeroed blocks of `block_size` bytes (which must not be
    /// zero).
    pub fn new(block_size: u32, block_count: u64) -> Self {
        assert!(block_size > 0, "block size must be non-zero");
        VecDisk {
            bytes: vec![0; block_size as usize * block_count as usize],
            block_size,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl BlockStore for VecDisk {
    fn block_size(&self) -> u32 {
        self.block_size
    }

    fn block_count(&self) -> u64 {
        (self.bytes.len() / self.block_size as usize) as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) {
        let at = offset as usize;
        buf.copy_from_slice(&self.bytes[at..at + buf.len()]);
    }

    fn write_at(&mut self, offset: u64, bytes: &[u8]) {
        let at = offset as usize;
        self.bytes[at..at + bytes.len()].copy_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_whole_blocks_within_the_limit_and_on_the_device() {
        let disk = VecDisk::new(512, 64);
        assert_eq!(span(&disk, 0, 512), Ok(0));
        assert_eq!(span(&disk, 63, 512), Ok(63 * 512));
        assert_eq!(span(&disk, 32, 32 * 512), Ok(32 * 512));
        assert_eq!(
            span(&disk, 0, 0),
            Err(BlockError::BadLength {
                len: 0,
                block_size: 512
            })
        );
        assert_eq!(
            span(&disk, 0, 100),
            Err(BlockError::BadLength {
                len: 100,
                block_size: 512
            })
        );
        assert_eq!(
            span(&disk, 0, MAX_BLOCK_TRANSFER as u64 + 512),
            Err(BlockError::TooLarge {
                len: MAX_BLOCK_TRANSFER as u64 + 512,
                max: MAX_BLOCK_TRANSFER as u32
            })
        );
        assert_eq!(
            span(&disk, 63, 1024),
            Err(BlockError::OutOfRange {
                first: 63,
                count: 2,
                blocks: 64
            })
        );
        assert_eq!(
            span(&disk, u64::MAX, 512),
            Err(BlockError::OutOfRange {
                first: u64::MAX,
                count: 1,
                blocks: 64
            })
        );
    }
}
