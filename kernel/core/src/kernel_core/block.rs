//! The block-device calls: the capability check, then the geometry check,
//! then the copy (see [`crate::block`]). A refused call reads or writes
//! nothing; a refused capability is audited like any other.

use alloc::vec;
use alloc::vec::Vec;
use pandagen_abi::syscall::BlockInfo;
use pandagen_abi::{BlockDevice, CapHandle, CapKind, Instant, KernelError, Rights, TaskId};

use super::KernelCore;
use crate::block::check_transfer;

impl KernelCore {
    /// The geometry of `disk`, for a holder of a `BlockDevice` capability
    /// with `READ`. Errors: those of [`KernelCore::lookup`].
    pub fn block_info(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        disk: &dyn BlockDevice,
        now: Instant,
    ) -> Result<BlockInfo, KernelError> {
        self.lookup(caller, handle, CapKind::BlockDevice, Rights::READ, now)?;
        Ok(disk.geometry())
    }

    /// `count` blocks of `disk` from block `first`, for a holder of a
    /// `BlockDevice` capability with `READ`. Errors: those of
    /// [`KernelCore::lookup`], then `Block(BadLength | TooLarge |
    /// OutOfRange)`, then the device's own.
    pub fn block_read(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        disk: &mut dyn BlockDevice,
        first: u64,
        count: u32,
        now: Instant,
    ) -> Result<Vec<u8>, KernelError> {
        self.lookup(caller, handle, CapKind::BlockDevice, Rights::READ, now)?;
        let len = u64::from(count) * u64::from(disk.block_size());
        check_transfer(disk.geometry(), first, len).map_err(KernelError::Block)?;
        let mut bytes = vec![0; len as usize];
        disk.read_blocks(first, &mut bytes)
            .map_err(KernelError::Block)?;
        Ok(bytes)
    }

    /// Write `bytes` (whole blocks) to `disk` from block `first`, for a
    /// holder of a `BlockDevice` capability with `WRITE`. Errors: those of
    /// [`KernelCore::lookup`], then `Block(BadLength | TooLarge |
    /// OutOfRange)`, then the device's own.
    pub fn block_write(
        &mut self,
        caller: TaskId,
        handle: CapHandle,
        disk: &mut dyn BlockDevice,
        first: u64,
        bytes: &[u8],
        now: Instant,
    ) -> Result<(), KernelError> {
        self.lookup(caller, handle, CapKind::BlockDevice, Rights::WRITE, now)?;
        check_transfer(disk.geometry(), first, bytes.len() as u64).map_err(KernelError::Block)?;
        disk.write_blocks(first, bytes).map_err(KernelError::Block)
    }
}
