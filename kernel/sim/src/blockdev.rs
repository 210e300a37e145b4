//! The block device of the simulated kernel: a [`VecDisk`] of
//! [`BLOCK_SIZE`]-byte blocks behind the block calls of
//! [`KernelApi`](pandagen_abi::KernelApi) (`block_info`, `block_read`,
//! `block_write`), checked by the core exactly as the bare-metal kernel's
//! RAM disk is. Like that disk it belongs to the kernel, so what a
//! task wrote survives the task (a storage service restarted on the same
//! kernel finds its journal), and it is zeroed when the kernel is made.
//!
//! The root task holds its capability (`READ | WRITE`, transferable) in
//! [`ROOT_CAPABILITIES`](pandagen_abi::syscall::ROOT_CAPABILITIES) order; a
//! copy for a child comes from
//! [`SimulatedKernel::root_copy`](crate::SimulatedKernel::root_copy)
//! (`CapKind::BlockDevice`).

use pandagen_core::VecDisk;

/// Bytes per block, as on the bare-metal RAM disk.
pub const BLOCK_SIZE: u32 = 512;
/// Blocks on the device: 1 MiB (half the bare-metal disk; plenty for
/// host tests, and quick to allocate for every kernel that uses it).
pub const BLOCK_COUNT: u64 = 2048;

/// The device as the kernel makes it: zeroed.
pub(crate) fn new_disk() -> VecDisk {
    VecDisk::new(BLOCK_SIZE, BLOCK_COUNT)
}
