//! The power-cut suite's writer (a service of
//! `manifests/suite-powercut.manifest`, beside storage on the virtio-blk
//! disk).
//!
//! At every boot it first checks what the previous boots left: the home
//! map's `count` says how many records were committed; record `i` is at
//! key `rec-<i>` and must hold exactly [`record`]`(i)` (lengths vary from
//! a few bytes to three blocks, so a commit spans blocks and can tear).
//! `count` and the record it counts are written in one transaction, so a
//! half-applied commit shows as a `count` whose last record is missing or
//! a record past `count`. It prints `POWERCUT PRESENT <count>` when all is
//! well, `POWERCUT TORN <why>` otherwise. Then it commits record after
//! record, printing `POWERCUT ACK <i>` once storage has acknowledged each
//! (storage acknowledges after the disk's flush), until the power is cut —
//! or until storage answers that it is full (`StoreFull`: its memory holds
//! every version, and it takes no commit it could not rebuild after a
//! restart), when it prints `POWERCUT FULL <count>` and stops: the run is
//! over, not failed.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use pandagen_rt::abi::services::STORAGE;
use pandagen_rt::abi::{Duration, KernelError};
use pandagen_rt::{println, Kernel};
use pandagen_scenarios::wait_registered;
use pandagen_storage::{ClientError, ObjectCap, Op, StorageClient, StorageError};

pandagen_rt::entry!(main);

/// How many of the newest records each boot reads back in full (all of
/// them would make every boot slower than the last).
const CHECKED: u64 = 16;

/// Record `i`'s bytes: deterministic, 40 to about 1,500 bytes long.
fn record(i: u64) -> Vec<u8> {
    let len = 40 + (i.wrapping_mul(2_654_435_761) % 1500) as usize;
    let mut bytes = format!("record {i}:").into_bytes();
    let mut x = i ^ 0x9e37_79b9_7f4a_7c15;
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.push(b'a' + (x % 26) as u8);
    }
    bytes
}

fn key(i: u64) -> Vec<u8> {
    format!("rec-{i}").into_bytes()
}

/// What the previous boots committed: `Ok(count)` or why it is torn.
fn check(kernel: &mut Kernel, client: &mut StorageClient, home: &ObjectCap) -> Result<u64, String> {
    let count = match client.get(kernel, home, b"count") {
        Ok(None) => 0,
        Ok(Some(bytes)) => core::str::from_utf8(&bytes)
            .ok()
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or_else(|| format!("count is not a number: {bytes:?}"))?,
        Err(e) => return Err(format!("count unreadable: {e}")),
    };
    for i in count.saturating_sub(CHECKED)..count {
        match client.get(kernel, home, &key(i)) {
            Ok(Some(bytes)) if bytes == record(i) => {}
            Ok(Some(_)) => return Err(format!("record {i} differs from what was written")),
            Ok(None) => return Err(format!("record {i} is missing but count is {count}")),
            Err(e) => return Err(format!("record {i} unreadable: {e}")),
        }
    }
    match client.get(kernel, home, &key(count)) {
        Ok(None) => Ok(count),
        Ok(Some(_)) => Err(format!("record {count} is present past count {count}")),
        Err(e) => Err(format!("record {count} unreadable: {e}")),
    }
}

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    wait_registered(kernel, STORAGE)?;
    let mut client = match StorageClient::connect(kernel) {
        Ok(client) => client.with_retry(Duration::from_secs(5), 3),
        Err(e) => {
            println!("POWERCUT TORN cannot reach storage: {e}");
            return Err(KernelError::InvalidCapability);
        }
    };
    let home = match client.home(kernel) {
        Ok(home) => home,
        Err(e) => {
            println!("POWERCUT TORN no home map: {e}");
            return Err(KernelError::InvalidCapability);
        }
    };
    let mut next = match check(kernel, &mut client, &home) {
        Ok(count) => {
            println!("POWERCUT PRESENT {count}");
            count
        }
        Err(why) => {
            println!("POWERCUT TORN {why}");
            return Err(KernelError::InvalidCapability);
        }
    };
    loop {
        let ops = alloc::vec![
            Op::Put {
                key: key(next),
                value: record(next),
            },
            Op::Put {
                key: b"count".to_vec(),
                value: format!("{}", next + 1).into_bytes(),
            },
        ];
        match client.transact(kernel, &home, ops) {
            Ok(_) => {
                println!("POWERCUT ACK {next}");
                next += 1;
            }
            Err(ClientError::Storage(e @ StorageError::StoreFull { .. })) => {
                println!("POWERCUT FULL {next} ({e})");
                return Ok(());
            }
            Err(e) => println!("POWERCUT ERROR {next}: {e}"),
        }
    }
}
