//! The block device of the simulated kernel: the calls of
//! [`BlockApi`](pandagen_abi::BlockApi) over a [`VecDisk`] of
//! [`BLOCK_SIZE`]-byte blocks, checked by the core exactly as the bare-metal
//! kernel's RAM disk is. Like that disk it belongs to the kernel, so what a
//! task wrote survives the task (a storage service restarted on the same
//! kernel finds its journal), and it is zeroed when the kernel is made.
//!
//! The root task holds its capability (`READ | WRITE`, transferable) in
//! [`ROOT_CAPABILITIES`](pandagen_abi::syscall::ROOT_CAPABILITIES) order; a
//! copy for a child comes from
//! [`SimulatedKernel::root_copy`](crate::SimulatedKernel::root_copy)
//! (`CapKind::BlockDevice`).

use pandagen_abi::syscall::BlockInfo;
use pandagen_abi::{BlockApi, CapHandle, KernelError};
use pandagen_core::VecDisk;

use crate::kernel::SimulatedKernel;

/// Bytes per block, as on the bare-metal RAM disk.
pub const BLOCK_SIZE: u32 = 512;
/// Blocks on the device: 1 MiB (half the bare-metal disk; plenty for
/// host tests, and quick to allocate for every kernel that uses it).
pub const BLOCK_COUNT: u64 = 2048;

fn new_disk() -> VecDisk {
    VecDisk::new(BLOCK_SIZE, BLOCK_COUNT)
}

impl BlockApi for SimulatedKernel {
    fn block_info(&mut self, device: CapHandle) -> Result<BlockInfo, KernelError> {
        let (caller, now) = (self.current, self.clock_now());
        let disk = self.disk.get_or_insert_with(new_disk);
        self.core.block_info(caller, device, disk, now)
    }

    fn block_read(
        &mut self,
        device: CapHandle,
        first: u64,
        count: u32,
    ) -> Result<Vec<u8>, KernelError> {
        let (caller, now) = (self.current, self.clock_now());
        let disk = self.disk.get_or_insert_with(new_disk);
        self.core
            .block_read(caller, device, disk, first, count, now)
    }

    fn block_write(
        &mut self,
        device: CapHandle,
        first: u64,
        bytes: &[u8],
    ) -> Result<(), KernelError> {
        let (caller, now) = (self.current, self.clock_now());
        let disk = self.disk.get_or_insert_with(new_disk);
        self.core
            .block_write(caller, device, disk, first, bytes, now)
    }
}
