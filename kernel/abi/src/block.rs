//! The block-device calls as a trait, so that code written once — the
//! storage service's journal adapter — runs over system calls in ring 3
//! (`pandagen-rt`) and over the `SimulatedKernel` on the host.
//!
//! Semantics shared by both kernels (see [`Syscall::BlockInfo`],
//! [`Syscall::BlockRead`], [`Syscall::BlockWrite`]):
//! * `device` is a `BlockDevice` capability of the caller: `READ` for
//!   `block_info` and `block_read`, `WRITE` for `block_write`; anything else
//!   is `InvalidCapability`, `WrongCapabilityKind` or
//!   `InsufficientAuthority`, and nothing is read or written.
//! * Requests cover whole blocks, at most
//!   [`MAX_BLOCK_TRANSFER`](crate::syscall::MAX_BLOCK_TRANSFER) bytes, all
//!   on the device; otherwise `KernelError::Block` says why.
//! * The device belongs to the kernel, not to a task: what a task wrote is
//!   still there after it ends, for the next holder of the capability.
//!
//! [`Syscall::BlockInfo`]: crate::syscall::Syscall::BlockInfo
//! [`Syscall::BlockRead`]: crate::syscall::Syscall::BlockRead
//! [`Syscall::BlockWrite`]: crate::syscall::Syscall::BlockWrite

use alloc::vec::Vec;

use crate::cap::CapHandle;
use crate::error::KernelError;
use crate::syscall::BlockInfo;

/// The block-device calls, acting as the calling task.
pub trait BlockApi {
    /// The device's block size and block count.
    fn block_info(&mut self, device: CapHandle) -> Result<BlockInfo, KernelError>;

    /// `count` blocks from block `first`.
    fn block_read(
        &mut self,
        device: CapHandle,
        first: u64,
        count: u32,
    ) -> Result<Vec<u8>, KernelError>;

    /// Write `bytes`, a whole number of blocks, from block `first` on.
    fn block_write(
        &mut self,
        device: CapHandle,
        first: u64,
        bytes: &[u8],
    ) -> Result<(), KernelError>;
}
