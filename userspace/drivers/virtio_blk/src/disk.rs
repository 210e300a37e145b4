//! The virtio-blk device as a [`BlockDevice`]: 512-byte sectors, each
//! request completed before it returns. Reads and writes are submitted
//! and then waited for through a [`Completion`] (the device's interrupt
//! line, with a bounded poll behind it); `flush` is a virtio flush when
//! the device offers one, and polls: the `virtio-drivers` crate has no
//! non-blocking flush.

use pandagen_abi::block::BlockDevice;
use pandagen_abi::BlockError;
use virtio_drivers::device::blk::{BlkReq, BlkResp, VirtIOBlk, SECTOR_SIZE};
use virtio_drivers::transport::Transport;
use virtio_drivers::Hal;

/// How the driver waits for the device to complete a request.
pub trait Completion {
    /// Block until the device's interrupt arrives (`true`) or a bounded
    /// time passes (`false`: the caller looks at the used ring anyway,
    /// so a lost interrupt costs time, never a request).
    fn wait(&mut self) -> bool;
    /// The interrupt is handled (the device's interrupt status was read,
    /// which lowers its line): let the line fire again.
    fn rearm(&mut self);
}

/// Waiting by spinning on the used ring: for a device without a usable
/// interrupt line.
pub struct Polling;

impl Completion for Polling {
    fn wait(&mut self) -> bool {
        core::hint::spin_loop();
        false
    }

    fn rearm(&mut self) {}
}

pub struct VirtioDisk<H: Hal, T: Transport, C: Completion> {
    blk: VirtIOBlk<H, T>,
    completion: C,
}

impl<H: Hal, T: Transport, C: Completion> VirtioDisk<H, T, C> {
    pub fn new(transport: T, completion: C) -> Result<Self, virtio_drivers::Error> {
        let mut blk = VirtIOBlk::new(transport)?;
        blk.enable_interrupts();
        Ok(VirtioDisk { blk, completion })
    }

    pub fn read_only(&self) -> bool {
        self.blk.readonly()
    }

    /// Wait until the request `token` (the only one in flight) is in the
    /// used ring. Each interrupt is acknowledged to the device first (its
    /// status read lowers the line) and then to the kernel (which unmasks
    /// the line), so a completion after the read raises a fresh edge. A
    /// notification left over from a polled flush only costs a look at
    /// the ring.
    fn wait_for(&mut self, token: u16) {
        while self.blk.peek_used() != Some(token) {
            if self.completion.wait() {
                self.blk.ack_interrupt();
                self.completion.rearm();
            }
        }
    }
}

fn device_error(_: virtio_drivers::Error) -> BlockError {
    BlockError::Device
}

impl<H: Hal, T: Transport, C: Completion> BlockDevice for VirtioDisk<H, T, C> {
    fn block_size(&self) -> u32 {
        SECTOR_SIZE as u32
    }

    fn block_count(&self) -> u64 {
        self.blk.capacity()
    }

    fn read_blocks(&mut self, first: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let mut request = BlkReq::default();
        let mut response = BlkResp::default();
        // SAFETY: `request`, `buf` and `response` are not touched again
        // until `complete_read_blocks` below, after `wait_for` has seen
        // the device give them back; the same three are passed to it.
        unsafe {
            let token = self
                .blk
                .read_blocks_nb(first as usize, &mut request, buf, &mut response)
                .map_err(device_error)?;
            self.wait_for(token);
            self.blk
                .complete_read_blocks(token, &request, buf, &mut response)
                .map_err(device_error)
        }
    }

    fn write_blocks(&mut self, first: u64, bytes: &[u8]) -> Result<(), BlockError> {
        if self.blk.readonly() {
            return Err(BlockError::NotPermitted);
        }
        let mut request = BlkReq::default();
        let mut response = BlkResp::default();
        // SAFETY: as in `read_blocks`.
        unsafe {
            let token = self
                .blk
                .write_blocks_nb(first as usize, &mut request, bytes, &mut response)
                .map_err(device_error)?;
            self.wait_for(token);
            self.blk
                .complete_write_blocks(token, &request, bytes, &mut response)
                .map_err(device_error)
        }
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.blk.flush().map_err(device_error)
    }
}
