//! The storage service as a ring-3 program: open the backend, register as
//! `services::STORAGE`, serve until the channel goes away.
//!
//! Start-up capabilities, in order: the service registry, then optionally
//! the kernel's block device (`READ | WRITE`; manifest name
//! `block-device`, a RAM disk that outlives tasks but not a reboot), then
//! optionally a disk driver's block capability (manifest name
//! `driver:virtio-blk`, present only when a disk was found). The journal
//! goes on the disk when there is one — and storage fails rather than fall
//! back if the disk cannot be used, so the backend is always the one the
//! device list implies — else on the RAM disk. The journal is formatted on
//! first use and replayed at every start, so a restarted instance serves
//! what its predecessor committed and accepts the capability tokens it
//! issued. With neither device the objects live in memory and die with
//! the task.
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
use pandagen_rt::abi::block::BlockDevice;
use pandagen_rt::abi::error::Resource;
use pandagen_rt::abi::services::VIRTIO_BLK;
use pandagen_rt::abi::{Cap, CapHandle, KernelApi, KernelError};
use pandagen_rt::{println, Kernel};
use pandagen_storage::{
    BlockCallClient, DriverBlockClient, JournalBackend, MemoryBackend, StorageBackend,
    StorageServer,
};

/// Objects (and, without a block device, the journal) live in memory: give
/// the service room to hold them.
const HEAP_BYTES: usize = 10 << 20;
pandagen_rt::entry!(main, heap = HEAP_BYTES);

/// The most journal bytes kept in memory (of the heap above).
const JOURNAL_BYTES: usize = 2 * 1024 * 1024;
/// What the heap keeps beyond the committed state:
/// - the pending writes of open transactions, at most `MAX_PENDING_BYTES`
///   (more is refused with `PendingFull`);
/// - the encoding a commit or a replay holds beside the decoded changes
///   (which the state already counts): at most one largest transaction,
///   `MAX_TX_BYTES`;
/// - a mebibyte for the journal's buffers (two `IO_CHUNK`s and a block),
///   the server's message buffers and caches, and the holes the
///   linked-list heap leaves between large blocks.
///
/// The store's count is itself an upper bound (about a fifth above what
/// its state really holds, measured on the power-cut writer's records).
const RESERVE_BYTES: usize = pandagen_storage::limits::MAX_PENDING_BYTES
    + pandagen_storage::limits::MAX_TX_BYTES
    + (1 << 20);

/// The most heap bytes the store's committed state may hold, so that a
/// restarted instance can replay all of it: the heap less the reserve,
/// and less the journal when the journal is in the heap too.
const fn memory_limit(journal_in_heap: bool) -> u64 {
    let journal = if journal_in_heap { JOURNAL_BYTES } else { 0 };
    (HEAP_BYTES - RESERVE_BYTES - journal) as u64
}
/// Where the block device is among the start-up capabilities.
const BLOCK_DEVICE_SLOT: usize = 1;
/// Where the disk driver's block capability is, when there is a disk.
const DISK_SLOT: usize = 2;

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

/// The journal on the kernel's RAM disk `device`.
fn block_backend(device: CapHandle) -> Result<Box<dyn StorageBackend>, KernelError> {
    // The journal calls the kernel from inside the request loop, while the
    // program's own `Kernel` is borrowed by the server: it gets its own.
    let disk = BlockCallClient::open(Kernel::new(), device).inspect_err(|e| {
        println!("storage: the block device cannot be used: {e}");
    })?;
    println!("storage: no disk; the journal is on the kernel's RAM disk (lost at power-off)");
    let seal = pandagen_rt::syscall::program_secret()?.secret;
    journal_backend(disk, seal)
}

/// The journal on the disk behind the driver's block capability `driver`.
fn disk_backend(driver: CapHandle) -> Result<Box<dyn StorageBackend>, KernelError> {
    let disk = DriverBlockClient::open(
        Kernel::new(),
        VIRTIO_BLK,
        Cap::<()>::from_handle(driver).assume_kind(),
    )
    .map_err(|e| {
        println!("storage: the disk cannot be used: {e:?}");
        KernelError::Block(e)
    })?;
    println!(
        "storage: the journal is on the virtio-blk disk ({} MiB)",
        (disk.block_count() * u64::from(disk.block_size())) >> 20
    );
    // The kernel's program secret lasts one boot and the disk outlives
    // it, so the key on the disk is unsealed: it is guarded by the block
    // capability, which only this service holds.
    journal_backend(disk, pandagen_storage::journal::NO_SEAL)
}

/// The journal on `disk`, its capability key sealed with `seal` (all
/// zeros, `NO_SEAL`: unsealed).
fn journal_backend<D: BlockDevice + 'static>(
    disk: D,
    seal: [u8; 16],
) -> Result<Box<dyn StorageBackend>, KernelError> {
    let key = capability_key()?;
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
    let memory_only = startup.capabilities.get(DISK_SLOT).is_none()
        && startup.capabilities.get(BLOCK_DEVICE_SLOT).is_none();
    let backend: Box<dyn StorageBackend> = match (
        startup.capabilities.get(DISK_SLOT),
        startup.capabilities.get(BLOCK_DEVICE_SLOT),
    ) {
        (Some(&driver), _) => disk_backend(driver)?,
        (None, Some(&device)) => block_backend(device)?,
        (None, None) => {
            kernel.debug("storage: no block device; objects live in memory only");
            // The journal shares this task's heap with the indexes built
            // from it; bound it so that clients cannot exhaust the heap.
            Box::new(MemoryBackend::new(capability_key()?).with_capacity(JOURNAL_BYTES))
        }
    };
    // The program secret differs between boots and is the same for every
    // instance of this program within one: the server's boot tag.
    let secret = pandagen_rt::syscall::program_secret()?.secret;
    let boot = u32::from_le_bytes([secret[0], secret[1], secret[2], secret[3]]);
    let replay_started = kernel.now();
    let (mut server, report) = match StorageServer::open(backend) {
        Ok((server, report)) => (
            server
                .with_boot(boot)
                .with_memory_limit(memory_limit(memory_only)),
            report,
        ),
        Err(e) => {
            println!("storage: cannot open the backend: {e}");
            return Err(KernelError::ResourceExhausted(Resource::Memory));
        }
    };
    if report.records > 0 {
        println!(
            "storage: replayed {} commits in {} ms",
            report.records,
            kernel
                .now()
                .saturating_duration_since(replay_started)
                .as_millis()
        );
    }
    let channel = StorageServer::<Box<dyn StorageBackend>>::register(kernel)?;
    kernel.debug("storage: serving");
    Err(server.serve(kernel, channel))
}
