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
//!
//! The capability key comes from the kernel's entropy pool (seeded from
//! RDSEED, RDRAND or timer jitter; the log says which). On the device it
//! is sealed with the kernel's secret for this program
//! (`Syscall::ProgramSecret`), so another holder of the block device reads
//! only `key XOR secret`.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use pandagen_rt::abi::error::Resource;
use pandagen_rt::abi::{CapHandle, KernelError};
use pandagen_rt::{println, Kernel};
use pandagen_storage::{
    BlockCallClient, JournalBackend, MemoryBackend, StorageBackend, StorageServer,
};

// Objects (and, without a block device, the journal) live in memory: give
// the service room to hold them.
pandagen_rt::entry!(main, heap = 8 << 20);

/// The most journal bytes kept in memory (of the 8 MiB heap above).
const JOURNAL_BYTES: usize = 2 * 1024 * 1024;
/// Where the block device is among the start-up capabilities.
const BLOCK_DEVICE_SLOT: usize = 1;

/// A fresh capability key from the kernel's entropy pool. With a block
/// device it is written (sealed) to the volume's superblock at format time
/// and read back at every later start.
fn capability_key() -> Result<[u8; 16], KernelError> {
    let reply = pandagen_rt::syscall::random()?;
    println!(
        "storage: capability key from the kernel's entropy pool ({:?})",
        reply.source
    );
    let mut key = [0u8; 16];
    key.copy_from_slice(&reply.bytes[..16]);
    Ok(key)
}

/// The journal on the block device `device`.
fn block_backend(device: CapHandle) -> Result<Box<dyn StorageBackend>, KernelError> {
    // The journal calls the kernel from inside the request loop, while the
    // program's own `Kernel` is borrowed by the server: it gets its own.
    let disk = BlockCallClient::open(Kernel::new(), device).inspect_err(|e| {
        println!("storage: the block device cannot be used: {e}");
    })?;
    let key = capability_key()?;
    let seal = pandagen_rt::syscall::program_secret()?.secret;
    match JournalBackend::open_or_format_sealed(disk, key, seal) {
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
        Some(&device) => block_backend(device)?,
        None => {
            kernel.debug("storage: no block device; objects live in memory only");
            // The journal shares this task's heap with the indexes built
            // from it; bound it so that clients cannot exhaust the heap.
            Box::new(MemoryBackend::new(capability_key()?).with_capacity(JOURNAL_BYTES))
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
