//! Block devices: fixed-size blocks addressed by number, and the one
//! interface every block device in the system offers, [`BlockDevice`].
//!
//! The same trait is implemented by the device behind the kernel's block
//! calls (a RAM disk on bare metal, a `VecDisk` in the simulator), by the
//! storage service's client of those calls, and by test disks; a client
//! of a block service reached over channels fits it too. Its one error is
//! [`BlockError`], which is also what the kernel's block calls answer
//! inside `KernelError::Block`.
//!
//! The rules every implementation keeps, checked by [`byte_offset`]:
//! * a request covers a positive whole number of blocks (`buf.len()` a
//!   non-zero multiple of [`BlockDevice::block_size`]), else `BadLength`;
//! * all of its blocks lie on the device, else `OutOfRange`;
//! * a refused request reads or writes nothing.

use crate::error::BlockError;
use crate::syscall::BlockInfo;

/// A block device: `block_count` blocks of `block_size` bytes, numbered
/// from 0, read and written whole (see the module docs for the rules).
pub trait BlockDevice {
    /// Bytes per block; never zero.
    fn block_size(&self) -> u32;

    /// Blocks on the device.
    fn block_count(&self) -> u64;

    /// Fill `buf` with the blocks from block `first` on.
    fn read_blocks(&mut self, first: u64, buf: &mut [u8]) -> Result<(), BlockError>;

    /// Write `bytes` to the blocks from block `first` on. A write that
    /// fails with [`BlockError::Device`] may have reached the device in
    /// part.
    fn write_blocks(&mut self, first: u64, bytes: &[u8]) -> Result<(), BlockError>;

    /// Make every write that has returned durable.
    fn flush(&mut self) -> Result<(), BlockError>;

    /// The device's geometry.
    fn geometry(&self) -> BlockInfo {
        BlockInfo {
            block_size: self.block_size(),
            block_count: self.block_count(),
        }
    }
}

/// The number of blocks in `len` bytes of `block_size`-byte blocks:
/// `BadLength` unless that is a positive whole number.
pub fn whole_blocks(len: u64, block_size: u32) -> Result<u64, BlockError> {
    let size = u64::from(block_size);
    if len == 0 || size == 0 || !len.is_multiple_of(size) {
        return Err(BlockError::BadLength { len, block_size });
    }
    Ok(len / size)
}

/// Whether blocks `first .. first + count` all lie on a device of
/// `blocks` blocks: `OutOfRange` if not.
pub fn on_device(first: u64, count: u64, blocks: u64) -> Result<(), BlockError> {
    match first.checked_add(count) {
        Some(end) if end <= blocks => Ok(()),
        _ => Err(BlockError::OutOfRange {
            first,
            count,
            blocks,
        }),
    }
}

/// The byte offset on a device of `geometry` of a request for `len` bytes
/// from block `first`, after checking it against the rules in the module
/// docs.
pub fn byte_offset(geometry: BlockInfo, first: u64, len: usize) -> Result<u64, BlockError> {
    let count = whole_blocks(len as u64, geometry.block_size)?;
    on_device(first, count, geometry.block_count)?;
    Ok(first * u64::from(geometry.block_size))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DISK: BlockInfo = BlockInfo {
        block_size: 512,
        block_count: 64,
    };

    #[test]
    fn requests_are_positive_whole_blocks_on_the_device() {
        assert_eq!(byte_offset(DISK, 0, 512), Ok(0));
        assert_eq!(byte_offset(DISK, 63, 512), Ok(63 * 512));
        assert_eq!(byte_offset(DISK, 32, 32 * 512), Ok(32 * 512));
        let bad_length = |len| {
            Err(BlockError::BadLength {
                len,
                block_size: 512,
            })
        };
        assert_eq!(byte_offset(DISK, 0, 0), bad_length(0));
        assert_eq!(byte_offset(DISK, 0, 100), bad_length(100));
        assert_eq!(byte_offset(DISK, 0, 513), bad_length(513));
        assert_eq!(
            byte_offset(DISK, 63, 1024),
            Err(BlockError::OutOfRange {
                first: 63,
                count: 2,
                blocks: 64
            })
        );
        assert_eq!(
            byte_offset(DISK, u64::MAX, 512),
            Err(BlockError::OutOfRange {
                first: u64::MAX,
                count: 1,
                blocks: 64
            })
        );
        assert_eq!(
            whole_blocks(512, 0),
            Err(BlockError::BadLength {
                len: 512,
                block_size: 0
            })
        );
    }
}
