//! Storage cost in ring 3, in instructions per operation: Map puts (each a
//! one-message transaction: begin, put, commit, journal append) and gets,
//! through real IPC to the storage task. Meant as a root program under
//! `cargo xtask bench` (QEMU TCG with `-icount shift=0`, where `rdtsc`
//! counts executed instructions). Each figure is the median of batches.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;
use pandagen_rt::abi::services::STORAGE;
use pandagen_rt::abi::{Duration, KernelApi, KernelError};
use pandagen_rt::{println, Kernel};
use pandagen_scenarios::{fail, rdtsc, spawn, startup_caps, wait_registered};
use pandagen_storage::{ObjectKind, StorageClient};

pandagen_rt::entry!(main);

const BATCHES: usize = 5;
const PER_BATCH: u64 = 100;

fn median(mut samples: Vec<u64>) -> u64 {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let info = kernel.startup()?;
    let root_caps = startup_caps(&info);
    let exits = kernel.create_channel()?;
    let registry = kernel.mint_registration_capability(&root_caps[0], STORAGE)?;
    spawn(kernel, "storage", "storage", vec![registry.erase()], exits)?;
    wait_registered(kernel, STORAGE)?;
    let mut client = match StorageClient::connect(kernel) {
        Ok(client) => client.with_retry(Duration::from_secs(10), 1),
        Err(e) => fail(kernel, alloc::format!("connect: {e}")),
    };
    let map = match client.create(kernel, ObjectKind::Map) {
        Ok((map, _)) => map,
        Err(e) => fail(kernel, alloc::format!("create: {e}")),
    };
    let value = [0x5a_u8; 16];
    let mut puts = Vec::new();
    let mut gets = Vec::new();
    for batch in 0..BATCHES as u64 {
        let start = rdtsc();
        for i in 0..PER_BATCH {
            let key = (batch * PER_BATCH + i).to_be_bytes();
            if let Err(e) = client.put(kernel, &map, &key, &value) {
                fail(kernel, alloc::format!("put: {e}"));
            }
        }
        puts.push((rdtsc() - start) / PER_BATCH);
        let start = rdtsc();
        for i in 0..PER_BATCH {
            let key = (batch * PER_BATCH + i).to_be_bytes();
            match client.get(kernel, &map, &key) {
                Ok(Some(_)) => {}
                other => fail(kernel, alloc::format!("get: {other:?}")),
            }
        }
        gets.push((rdtsc() - start) / PER_BATCH);
    }
    println!(
        "[BENCH] storage_ring3_map_put {} instructions",
        median(puts)
    );
    println!(
        "[BENCH] storage_ring3_map_get {} instructions",
        median(gets)
    );
    println!("[SUITE] DONE passed=1 failed=0");
    Ok(())
}
