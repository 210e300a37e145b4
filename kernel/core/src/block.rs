//! The kernel's block device: fixed-size blocks that belong to the kernel,
//! not to any task, so that what one task writes outlives it.
//!
//! Each kernel provides the device behind its block calls as a
//! [`BlockDevice`] (the bare-metal kernel a RAM disk of physical frames,
//! the simulator a [`VecDisk`]); the checks every call passes — the
//! capability, then whole blocks, the transfer limit, the device's bounds
//! ([`check_transfer`]) — are the [`KernelCore::block_info`],
//! [`KernelCore::block_read`] and [`KernelCore::block_write`] methods, so
//! they exist once.
//!
//! [`KernelCore::block_info`]: crate::KernelCore::block_info
//! [`KernelCore::block_read`]: crate::KernelCore::block_read
//! [`KernelCore::block_write`]: crate::KernelCore::block_write

use alloc::vec;
use alloc::vec::Vec;
use pandagen_abi::block::{byte_offset, on_device, whole_blocks, BlockDevice};
use pandagen_abi::error::BlockError;
use pandagen_abi::syscall::{BlockInfo, MAX_BLOCK_TRANSFER};

/// Check a block call's transfer of `len` bytes from block `first` on a
/// device of `geometry`: a positive whole number of blocks, within the
/// transfer limit, and on the device — in that order, so that the error
/// names the first rule broken.
pub fn check_transfer(geometry: BlockInfo, first: u64, len: u64) -> Result<(), BlockError> {
    let count = whole_blocks(len, geometry.block_size)?;
    if len > MAX_BLOCK_TRANSFER as u64 {
        return Err(BlockError::TooLarge {
            len,
            max: MAX_BLOCK_TRANSFER as u32,
        });
    }
    on_device(first, count, geometry.block_count)
}

/// A block device in a `Vec`: the simulator's device, and a test double.
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

impl BlockDevice for VecDisk {
    fn block_size(&self) -> u32 {
        self.block_size
    }

    fn block_count(&self) -> u64 {
        (self.bytes.len() / self.block_size as usize) as u64
    }

    fn read_blocks(&mut self, first: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let at = byte_offset(self.geometry(), first, buf.len())? as usize;
        buf.copy_from_slice(&self.bytes[at..at + buf.len()]);
        Ok(())
    }

    fn write_blocks(&mut self, first: u64, bytes: &[u8]) -> Result<(), BlockError> {
        let at = byte_offset(self.geometry(), first, bytes.len())? as usize;
        self.bytes[at..at + bytes.len()].copy_from_slice(bytes);
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
    fn transfers_are_whole_blocks_within_the_limit_and_on_the_device() {
        let disk = VecDisk::new(512, 64).geometry();
        assert_eq!(check_transfer(disk, 0, 512), Ok(()));
        assert_eq!(check_transfer(disk, 63, 512), Ok(()));
        assert_eq!(check_transfer(disk, 32, 32 * 512), Ok(()));
        assert_eq!(
            check_transfer(disk, 0, 0),
            Err(BlockError::BadLength {
                len: 0,
                block_size: 512
            })
        );
        assert_eq!(
            check_transfer(disk, 0, 100),
            Err(BlockError::BadLength {
                len: 100,
                block_size: 512
            })
        );
        assert_eq!(
            check_transfer(disk, 0, MAX_BLOCK_TRANSFER as u64 + 512),
            Err(BlockError::TooLarge {
                len: MAX_BLOCK_TRANSFER as u64 + 512,
                max: MAX_BLOCK_TRANSFER as u32
            })
        );
        // A length that breaks two rules is named by the first.
        assert_eq!(
            check_transfer(disk, 0, MAX_BLOCK_TRANSFER as u64 + 100),
            Err(BlockError::BadLength {
                len: MAX_BLOCK_TRANSFER as u64 + 100,
                block_size: 512
            })
        );
        assert_eq!(
            check_transfer(disk, 63, 1024),
            Err(BlockError::OutOfRange {
                first: 63,
                count: 2,
                blocks: 64
            })
        );
        assert_eq!(
            check_transfer(disk, u64::MAX, 512),
            Err(BlockError::OutOfRange {
                first: u64::MAX,
                count: 1,
                blocks: 64
            })
        );
    }

    #[test]
    fn a_vec_disk_reads_back_what_was_written_and_refuses_bad_requests() {
        let mut disk = VecDisk::new(512, 4);
        let data = [0xABu8; 1024];
        disk.write_blocks(2, &data).unwrap();
        let mut out = [0u8; 1024];
        disk.read_blocks(2, &mut out).unwrap();
        assert_eq!(out, data);
        let mut first = [1u8; 512];
        disk.read_blocks(0, &mut first).unwrap();
        assert_eq!(first, [0u8; 512]);

        let before = disk.clone();
        assert!(matches!(
            disk.write_blocks(3, &data),
            Err(BlockError::OutOfRange { .. })
        ));
        assert!(matches!(
            disk.write_blocks(0, &data[..100]),
            Err(BlockError::BadLength { .. })
        ));
        assert_eq!(disk, before, "a refused write writes nothing");
        assert!(matches!(
            disk.read_blocks(4, &mut first),
            Err(BlockError::OutOfRange { .. })
        ));
    }
}
