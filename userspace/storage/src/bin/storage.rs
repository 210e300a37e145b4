//! The storage service as a ring-3 program: open the backend, register as
//! `services::STORAGE`, serve until the channel goes away.
#![no_std]
#![no_main]

extern crate alloc;

use pandagen_rt::abi::{KernelApi, KernelError};
use pandagen_rt::Kernel;
use pandagen_storage::{MemoryBackend, StorageServer};
use x86_64::instructions::random::RdRand;

// Objects and the journal live in memory: give the service room to hold them.
pandagen_rt::entry!(main, heap = 8 << 20);

/// The most journal bytes kept in memory (of the 8 MiB heap above).
const JOURNAL_BYTES: usize = 2 * 1024 * 1024;

/// A fresh capability key. The in-memory backend lives only as long as this
/// task, so the key only has to be unpredictable to other tasks: RDRAND
/// when the CPU has it, otherwise the clock (weak, and logged as such).
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

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    // The journal shares this task's heap with the indexes built from it;
    // bound it so that clients cannot exhaust the heap.
    let backend = MemoryBackend::new(capability_key(kernel)).with_capacity(JOURNAL_BYTES);
    let (mut server, _) = match StorageServer::open(backend) {
        Ok(opened) => opened,
        Err(e) => {
            pandagen_rt::println!("storage: cannot open the backend: {e}");
            return Err(KernelError::ResourceExhausted(
                pandagen_rt::abi::error::Resource::Memory,
            ));
        }
    };
    let channel = StorageServer::<MemoryBackend>::register(kernel)?;
    kernel.debug("storage: serving");
    Err(server.serve(kernel, channel))
}
