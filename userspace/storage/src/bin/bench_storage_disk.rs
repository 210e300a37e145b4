//! Storage Map put and get through the ring-3 virtio-blk driver, for
//! `cargo xtask bench`: a service of `manifests/bench-storage-disk.manifest`
//! beside storage, whose journal is on the disk (pci service, driver,
//! storage, as in the system image). Each put is a one-message transaction
//! that storage acknowledges after the journal frame is written and the
//! driver's flush has completed; each get is answered from storage's
//! indexes. Under QEMU TCG with `-icount shift=0` the TSC counts executed
//! instructions (the whole machine's: kernel, driver, storage and this
//! program), and the guest clock advances one nanosecond per instruction,
//! so operations per second are per second of that clock. Each figure is
//! the median of batches.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::vec::Vec;
use pandagen_rt::abi::services::STORAGE;
use pandagen_rt::abi::{Duration, KernelApi, KernelError};
use pandagen_rt::{println, Kernel};
use pandagen_scenarios::{rdtsc, wait_registered};
use pandagen_storage::{ObjectKind, StorageClient};

pandagen_rt::entry!(main, heap = 1 << 20);

const BATCHES: usize = 5;
const PER_BATCH: u64 = 40;

fn median(mut samples: Vec<u64>) -> u64 {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// Instructions per operation and operations per second of guest clock
/// for `PER_BATCH` runs of `op`, or the first error.
fn batch<E>(
    kernel: &mut Kernel,
    mut op: impl FnMut(&mut Kernel, u64) -> Result<(), E>,
) -> Result<(u64, u64), E> {
    let (ticks, started) = (rdtsc(), kernel.now());
    for i in 0..PER_BATCH {
        op(kernel, i)?;
    }
    let instructions = (rdtsc() - ticks) / PER_BATCH;
    let nanos = kernel.now().saturating_duration_since(started).as_nanos() as u64;
    Ok((instructions, PER_BATCH * 1_000_000_000 / nanos.max(1)))
}

fn fail(why: alloc::string::String) -> Result<(), KernelError> {
    println!("[TEST] FAIL bench/storage_disk: {why}");
    println!("[SUITE] DONE passed=0 failed=1");
    Err(KernelError::InvalidCapability)
}

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    wait_registered(kernel, STORAGE)?;
    let mut client = match StorageClient::connect(kernel) {
        Ok(client) => client.with_retry(Duration::from_secs(30), 1),
        Err(e) => return fail(format!("connect: {e}")),
    };
    let map = match client.create(kernel, ObjectKind::Map) {
        Ok((map, _)) => map,
        Err(e) => return fail(format!("create: {e}")),
    };
    let value = [0x5a_u8; 16];
    let (mut put_cost, mut put_rate, mut get_cost, mut get_rate) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..BATCHES as u64 {
        let key = |i: u64| (round * PER_BATCH + i).to_be_bytes();
        let puts = batch(kernel, |kernel, i| {
            client.put(kernel, &map, &key(i), &value).map(|_| ())
        });
        let (cost, rate) = match puts {
            Ok(figures) => figures,
            Err(e) => return fail(format!("put: {e}")),
        };
        put_cost.push(cost);
        put_rate.push(rate);
        let gets = batch(kernel, |kernel, i| {
            match client.get(kernel, &map, &key(i)) {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err(format!("key {} missing", round * PER_BATCH + i)),
                Err(e) => Err(format!("{e}")),
            }
        });
        let (cost, rate) = match gets {
            Ok(figures) => figures,
            Err(e) => return fail(format!("get: {e}")),
        };
        get_cost.push(cost);
        get_rate.push(rate);
    }
    println!(
        "[BENCH] storage_disk_map_put {} instructions",
        median(put_cost)
    );
    println!(
        "[BENCH] storage_disk_map_put_rate {} ops/s",
        median(put_rate)
    );
    println!(
        "[BENCH] storage_disk_map_get {} instructions",
        median(get_cost)
    );
    println!(
        "[BENCH] storage_disk_map_get_rate {} ops/s",
        median(get_rate)
    );
    println!("[SUITE] DONE passed=1 failed=0");
    Ok(())
}
