//! The storage service as a ring-3 program: open the backend, register as
//! `services::STORAGE`, serve until the channel goes away.
//!
//! Start-up capabilities, in order: the service registry, then optionally
//! the kernel's block device (`READ | WRITE`; manifest name
//! `block-device`). With a device the objects live in the crash-consistent
//! journal on it (formatted on first use, replayed at every start), so a
//! restarted instance serves what its predecessor committed and accepts
//! the capability tokens it issued. Without one they live in memory and
//! die with the task.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use pandagen_rt::abi::error::Resource;
use pandagen_rt::abi::{CapHandle, KernelApi, KernelError};
use pandagen_rt::{println, Kernel};
use pandagen_storage::{
    BlockCallClient, JournalBackend, MemoryBackend, StorageBackend, StorageServer,
};
use x86_64::instructions::random::RdRand;

// Objects (and, without a block device, the journal) live in memory: give
// the service room to hold them.
pandagen_rt::entry!(main, heap = 8 << 20);

/// The most journal bytes kept in memory (of the 8 MiB heap above).
const JOURNAL_BYTES: usize = 2 * 1024 * 1024;
/// Where the block device is among the start-up capabilities.
const BLOCK_DEVICE_SLOT: usize = 1;

/// A fresh capability key: RDRAND when the CPU has it, otherwise the clock
/// (weak, and logged as such). With a block device it is written to the
/// volume's superblock at format time and read back at every later start.
fn capability_key(kernel: &mut Kernel) -> [u8; 16] {
    let mut key = [0u8; 16];
    let rdrand = RdRand::new();
    for (i, half) in key.chunks_exact_mut(8).enumerate() {
        let word = match rdrand.and_then(RdRand::get_u64) {
            Some(word) => word,
            None => {
                kernel.debug("storage: no RDRAND; capability key derived from the clock");
                kernel.now().as_nanos().rotate_left(17 * i as u32) ^ 0x9e37_79b9_7f4a_7c15
            }
        };
        half.copy_from_slice(&word.to_le_bytes());
    }
    key
}

/// The journal on the block device `device`.
fn block_backend(
    kernel: &mut Kernel,
    device: CapHandle,
) -> Result<Box<dyn StorageBackend>, KernelError> {
    // The journal calls the kernel from inside the request loop, while the
    // program's own `Kernel` is borrowed by the server: it gets its own.
    let disk = BlockCallClient::open(Kernel::new(), device).inspect_err(|e| {
        println!("storage: the block device cannot be used: {e}");
    })?;
    let key = capability_key(kernel);
    match JournalBackend::open_or_format(disk, key) {
        Ok((journal, formatted)) => {
            println!(
                "storage: journal on the block device ({})",
                if formatted {
                    "formatted"
                } else {
                    "existing volume"
                }
            );
            Ok(Box::new(journal))
        }
        Err(e) => {
            println!("storage: cannot open the journal on the block device: {e:?}");
            Err(KernelError::ResourceExhausted(Resource::Memory))
        }
    }
}

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let startup = kernel.startup()?;
    let backend: Box<dyn StorageBackend> = match startup.capabilities.get(BLOCK_DEVICE_SLOT) {
        Some(&device) => block_backend(kernel, device)?,
        None => {
            kernel.debug("storage: no block device; objects live in memory only");
            // The journal shares this task's heap with the indexes built
            // from it; bound it so that clients cannot exhaust the heap.
            Box::new(MemoryBackend::new(capability_key(kernel)).with_capacity(JOURNAL_BYTES))
        }
    };
    let (mut server, report) = match StorageServer::open(backend) {
        Ok(opened) => opened,
        Err(e) => {
            println!("storage: cannot open the backend: {e}");
            return Err(KernelError::ResourceExhausted(Resource::Memory));
        }
    };
    if report.records > 0 {
        println!("storage: replayed {} commits", report.records);
    }
    let channel = StorageServer::<Box<dyn StorageBackend>>::register(kernel)?;
    kernel.debug("storage: serving");
    Err(server.serve(kernel, channel))
}
