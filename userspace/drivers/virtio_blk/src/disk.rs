//! The virtio-blk device as a [`BlockDevice`]: 512-byte sectors, each
//! request completed before it returns. Reads and writes are submitted
//! and then waited for through a [`Completion`] (the device's interrupt
//! line, with a bounded poll behind it); `flush` is a virtio flush when
//! the device offers one, and polls: the `virtio-drivers` crate has no
//! non-blocking flush.
//!
//! The device is not trusted to keep the virtqueue protocol. A request is
//! checked against the block rules (whole sectors, on the device) before
//! the device sees it. A device that answers with a request that is not in
//! flight, or does not answer within the completion's patience, has
//! broken the protocol: the request is abandoned to it (its buffers are
//! bounce copies, see [`Bouncing`]), the disk answers every later request
//! with [`BlockError::Device`], and the driver's supervisor restarts it.

use alloc::rc::Rc;
use core::cell::Cell;

use pandagen_abi::block::{byte_offset, BlockDevice};
use pandagen_abi::BlockError;
use virtio_drivers::device::blk::{BlkReq, BlkResp, VirtIOBlk, SECTOR_SIZE};
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::PhysAddr;

use crate::hal::Bouncing;

/// How the driver waits for the device to complete a request.
pub trait Completion {
    /// Block until the device's interrupt arrives (`true`) or a bounded
    /// time passes (`false`: the caller looks at the used ring anyway,
    /// so a lost interrupt costs time, never a request).
    fn wait(&mut self) -> bool;
    /// The interrupt is handled (the device's interrupt status was read,
    /// which lowers its line): let the line fire again.
    fn rearm(&mut self);
    /// How many [`Completion::wait`]s one request may take before the
    /// device is taken to have stopped.
    fn patience(&self) -> u32;
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

    /// Every turn of the spin counts: about four billion of them, seconds
    /// on hardware and longer under emulation.
    fn patience(&self) -> u32 {
        u32::MAX
    }
}

pub struct VirtioDisk<H: Bouncing, T: Transport, C: Completion> {
    blk: VirtIOBlk<H, Handshake<T>>,
    completion: C,
    /// The device broke the virtqueue protocol: nothing more is sent to it.
    broken: bool,
}

impl<H: Bouncing, T: Transport, C: Completion> VirtioDisk<H, T, C> {
    /// Start the device. A device that refuses the features the driver
    /// accepts (clears FEATURES_OK) is marked FAILED and refused with
    /// `Unsupported`.
    pub fn new(transport: T, completion: C) -> Result<Self, virtio_drivers::Error> {
        let refused = Rc::new(Cell::new(false));
        let mut blk = VirtIOBlk::new(Handshake {
            transport,
            features_refused: refused.clone(),
        })?;
        if refused.get() {
            return Err(virtio_drivers::Error::Unsupported);
        }
        blk.enable_interrupts();
        Ok(VirtioDisk {
            blk,
            completion,
            broken: false,
        })
    }

    pub fn read_only(&self) -> bool {
        self.blk.readonly()
    }

    /// Whether the device broke the virtqueue protocol, so that the disk
    /// refuses everything: the driver should end and be restarted.
    pub fn broken(&self) -> bool {
        self.broken
    }

    fn usable(&self) -> Result<(), BlockError> {
        if self.broken {
            Err(BlockError::Device)
        } else {
            Ok(())
        }
    }

    /// Give up on the device.
    fn break_off(&mut self) -> BlockError {
        self.broken = true;
        BlockError::Device
    }

    /// Wait until the request `token` (the only one in flight) is in the
    /// used ring. Each interrupt is acknowledged to the device first (its
    /// status read lowers the line) and then to the kernel (which unmasks
    /// the line), so a completion after the read raises a fresh edge. A
    /// notification left over from a polled flush only costs a look at
    /// the ring. Any other entry in the used ring, or no answer within the
    /// completion's patience, breaks the disk.
    fn wait_for(&mut self, token: u16) -> Result<(), BlockError> {
        let mut waits = 0u32;
        loop {
            match self.blk.peek_used() {
                Some(used) if used == token => return Ok(()),
                Some(_) => return Err(self.break_off()),
                None if waits >= self.completion.patience() => return Err(self.break_off()),
                None => {}
            }
            waits += 1;
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

impl<H: Bouncing, T: Transport, C: Completion> BlockDevice for VirtioDisk<H, T, C> {
    fn block_size(&self) -> u32 {
        SECTOR_SIZE as u32
    }

    fn block_count(&self) -> u64 {
        self.blk.capacity()
    }

    fn read_blocks(&mut self, first: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.usable()?;
        byte_offset(self.geometry(), first, buf.len())?;
        let mut request = BlkReq::default();
        let mut response = BlkResp::default();
        // SAFETY: `request`, `buf` and `response` are not touched again
        // until `complete_read_blocks` below, after `wait_for` has seen
        // the device give them back; the same three are passed to it. If
        // the device never gives them back, the HAL is `Bouncing`: the
        // device holds only copies, which stay allocated.
        unsafe {
            let token = self
                .blk
                .read_blocks_nb(first as usize, &mut request, buf, &mut response)
                .map_err(device_error)?;
            self.wait_for(token)?;
            self.blk
                .complete_read_blocks(token, &request, buf, &mut response)
                .map_err(device_error)
        }
    }

    fn write_blocks(&mut self, first: u64, bytes: &[u8]) -> Result<(), BlockError> {
        if self.blk.readonly() {
            return Err(BlockError::NotPermitted);
        }
        self.usable()?;
        byte_offset(self.geometry(), first, bytes.len())?;
        let mut request = BlkReq::default();
        let mut response = BlkResp::default();
        // SAFETY: as in `read_blocks`.
        unsafe {
            let token = self
                .blk
                .write_blocks_nb(first as usize, &mut request, bytes, &mut response)
                .map_err(device_error)?;
            self.wait_for(token)?;
            self.blk
                .complete_write_blocks(token, &request, bytes, &mut response)
                .map_err(device_error)
        }
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.usable()?;
        match self.blk.flush() {
            Err(virtio_drivers::Error::WrongToken) => Err(self.break_off()),
            other => other.map_err(device_error),
        }
    }
}

/// The transport as `VirtIOBlk` sees it: every call passes through, and
/// the device's answer to the feature handshake is checked. The crate
/// writes FEATURES_OK and goes on without reading the status back, which
/// the virtio spec requires (3.1.1, step 6): a device that cleared the bit
/// does not support the features the driver chose. Such a device is told
/// FAILED instead of DRIVER_OK and is never driven.
struct Handshake<T> {
    transport: T,
    features_refused: Rc<Cell<bool>>,
}

impl<T: Transport> Transport for Handshake<T> {
    fn device_type(&self) -> DeviceType {
        self.transport.device_type()
    }

    fn read_device_features(&mut self) -> u64 {
        self.transport.read_device_features()
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        self.transport.write_driver_features(driver_features)
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.transport.max_queue_size(queue)
    }

    fn notify(&mut self, queue: u16) {
        self.transport.notify(queue)
    }

    fn get_status(&self) -> DeviceStatus {
        self.transport.get_status()
    }

    fn set_status(&mut self, status: DeviceStatus) {
        if self.features_refused.get() && status.contains(DeviceStatus::DRIVER_OK) {
            self.transport.set_status(DeviceStatus::FAILED);
            return;
        }
        self.transport.set_status(status);
        if status.contains(DeviceStatus::FEATURES_OK) {
            let kept = self.get_status().contains(DeviceStatus::FEATURES_OK);
            self.features_refused.set(!kept);
        }
    }

    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        self.transport.set_guest_page_size(guest_page_size)
    }

    fn requires_legacy_layout(&self) -> bool {
        self.transport.requires_legacy_layout()
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        self.transport
            .queue_set(queue, size, descriptors, driver_area, device_area)
    }

    fn queue_unset(&mut self, queue: u16) {
        self.transport.queue_unset(queue)
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.transport.queue_used(queue)
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        self.transport.ack_interrupt()
    }

    fn read_config_generation(&self) -> u32 {
        self.transport.read_config_generation()
    }

    fn read_config_space<V: zerocopy::FromBytes + zerocopy::IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<V> {
        self.transport.read_config_space(offset)
    }

    fn write_config_space<V: zerocopy::IntoBytes + zerocopy::Immutable>(
        &mut self,
        offset: usize,
        value: V,
    ) -> virtio_drivers::Result<()> {
        self.transport.write_config_space(offset, value)
    }
}
