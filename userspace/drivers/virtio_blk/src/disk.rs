//! The virtio-blk device as a [`BlockDevice`]: 512-byte sectors, each
//! request completed (polled) before it returns, `flush` a virtio flush
//! when the device offers one.

use pandagen_abi::block::BlockDevice;
use pandagen_abi::BlockError;
use virtio_drivers::device::blk::{VirtIOBlk, SECTOR_SIZE};
use virtio_drivers::transport::Transport;
use virtio_drivers::Hal;

pub struct VirtioDisk<H: Hal, T: Transport> {
    blk: VirtIOBlk<H, T>,
}

impl<H: Hal, T: Transport> VirtioDisk<H, T> {
    pub fn new(transport: T) -> Result<Self, virtio_drivers::Error> {
        Ok(VirtioDisk {
            blk: VirtIOBlk::new(transport)?,
        })
    }

    pub fn read_only(&self) -> bool {
        self.blk.readonly()
    }
}

fn device_error(_: virtio_drivers::Error) -> BlockError {
    BlockError::Device
}

impl<H: Hal, T: Transport> BlockDevice for VirtioDisk<H, T> {
    fn block_size(&self) -> u32 {
        SECTOR_SIZE as u32
    }

    fn block_count(&self) -> u64 {
        self.blk.capacity()
    }

    fn read_blocks(&mut self, first: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.blk
            .read_blocks(first as usize, buf)
            .map_err(device_error)
    }

    fn write_blocks(&mut self, first: u64, bytes: &[u8]) -> Result<(), BlockError> {
        if self.blk.readonly() {
            return Err(BlockError::NotPermitted);
        }
        self.blk
            .write_blocks(first as usize, bytes)
            .map_err(device_error)
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.blk.flush().map_err(device_error)
    }
}
