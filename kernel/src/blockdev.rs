//! The kernel's block device: a RAM disk of [`DISK_BYTES`] (2 MiB) in
//! [`BLOCK_SIZE`]-byte blocks. The system calls over it (`BlockInfo`,
//! `BlockRead`, `BlockWrite`) are in `crate::syscall::block`.
//!
//! The disk is physical frames the kernel takes at boot and never gives
//! back, zeroed then, and reached through the physical-memory window; it
//! belongs to the kernel, not to any task. So what a task writes survives
//! that task — a storage service restarted by the process manager finds
//! its journal — but not a reboot or power-off: the disk is RAM. The root
//! task receives its capability (`ROOT_CAPABILITIES`) and hands copies on.
//!
//! The checks (capability and rights, whole blocks, transfer limit, bounds)
//! are the core's, shared with the simulator (`pandagen_core::block`).

use alloc::vec::Vec;
use pandagen_abi::block::{byte_offset, BlockDevice};
use pandagen_abi::error::Resource;
use pandagen_abi::memory::PAGE_SIZE;
use pandagen_abi::{BlockError, KernelError};
use pandagen_hal::x86_64::paging::PhysWindow;
use spin::Mutex;

/// Bytes per block.
pub const BLOCK_SIZE: u32 = 512;
/// The size of the RAM disk.
pub const DISK_BYTES: u64 = 2 << 20;

/// The RAM disk, once [`init`] has allocated it.
static DISK: Mutex<Option<RamDisk>> = Mutex::new(None);

/// A disk made of whole frames, not necessarily contiguous.
struct RamDisk {
    /// Physical addresses of the frames, in disk order.
    frames: Vec<u64>,
    window: PhysWindow,
}

impl RamDisk {
    /// Call `each(window address, offset into the caller's buffer, length)`
    /// for the pieces of `len` bytes from byte `offset`, frame by frame.
    fn pieces(&self, offset: u64, len: usize, mut each: impl FnMut(u64, usize, usize)) {
        let mut done = 0;
        while done < len {
            let at = offset + done as u64;
            let frame = self.frames[(at / PAGE_SIZE) as usize];
            let within = at % PAGE_SIZE;
            let n = ((PAGE_SIZE - within) as usize).min(len - done);
            each(self.window.virt(frame) + within, done, n);
            done += n;
        }
    }
}

impl BlockDevice for RamDisk {
    fn block_size(&self) -> u32 {
        BLOCK_SIZE
    }

    fn block_count(&self) -> u64 {
        self.frames.len() as u64 * PAGE_SIZE / u64::from(BLOCK_SIZE)
    }

    fn read_blocks(&mut self, first: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let offset = byte_offset(self.geometry(), first, buf.len())?;
        self.pieces(offset, buf.len(), |src, at, n| {
            // SAFETY: `src` is the window address of a frame the disk owns
            // (allocated in `init`, never freed, never mapped elsewhere),
            // with `n` bytes to the end of the piece inside that frame;
            // `byte_offset` checked that the range lies on the disk, and
            // `buf` is kernel memory, so the two do not overlap.
            unsafe { core::ptr::copy_nonoverlapping(src as *const u8, buf[at..].as_mut_ptr(), n) };
        });
        Ok(())
    }

    fn write_blocks(&mut self, first: u64, bytes: &[u8]) -> Result<(), BlockError> {
        let offset = byte_offset(self.geometry(), first, bytes.len())?;
        self.pieces(offset, bytes.len(), |dst, at, n| {
            // SAFETY: as in `read_blocks`; the disk's frames are writable
            // through the window and referenced by nothing else.
            unsafe { core::ptr::copy_nonoverlapping(bytes[at..].as_ptr(), dst as *mut u8, n) };
        });
        Ok(())
    }

    /// A write is in RAM when it returns; there is nothing to flush.
    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }
}

/// Take and zero the disk's frames. If memory runs out, the frames taken
/// so far are given back and the block calls answer
/// `ResourceExhausted(Memory)`.
pub fn init() {
    let mut disk = DISK.lock();
    if disk.is_some() {
        return;
    }
    let window = crate::mem::paging::kernel_space().window();
    let count = (DISK_BYTES / PAGE_SIZE) as usize;
    let mut frames = Vec::with_capacity(count);
    for _ in 0..count {
        let Some(frame) = crate::mem::frame::allocate() else {
            for frame in frames {
                let _ = crate::mem::frame::free(frame);
            }
            log::error!("no memory for the {DISK_BYTES}-byte RAM disk: block calls will fail");
            return;
        };
        // SAFETY: the frame was just allocated for the disk alone and is
        // mapped read-write through the window.
        unsafe { core::ptr::write_bytes(window.virt(frame) as *mut u8, 0, PAGE_SIZE as usize) };
        frames.push(frame);
    }
    log::info!(
        "RAM disk: {} blocks of {BLOCK_SIZE} bytes",
        DISK_BYTES / u64::from(BLOCK_SIZE)
    );
    *disk = Some(RamDisk { frames, window });
}

/// Run `f` on the disk; without one (its frames could not be allocated at
/// boot) the block calls answer `ResourceExhausted(Memory)`.
pub fn with_disk<R>(
    f: impl FnOnce(&mut dyn BlockDevice) -> Result<R, KernelError>,
) -> Result<R, KernelError> {
    let mut disk = DISK.lock();
    let disk = disk
        .as_mut()
        .ok_or(KernelError::ResourceExhausted(Resource::Memory))?;
    f(disk)
}
