//! Scenario client "writer": creates a map, writes it, and moves a
//! read-only copy of its kernel capability to the reader
//! (`storage_reader`), whose inbox it finds through the service registry.
//! After the move it checks that the kernel no longer lets it use the copy.
#![no_std]
#![no_main]

extern crate alloc;

use pandagen_rt::abi::services::STORAGE;
use pandagen_rt::abi::{Cap, Duration, KernelError, Rights, ServiceId};
use pandagen_rt::Kernel;
use pandagen_scenarios::{fail, lookup_with_retry, wait_registered};
use pandagen_storage::client::{attenuate, delegate};
use pandagen_storage::{ClientError, ObjectCap, ObjectKind, StorageClient};

pandagen_rt::entry!(main);

/// The reader's inbox (the same constant is in `storage_reader`).
const READER_INBOX: ServiceId = ServiceId::from_raw(0x5701);

fn ok<T>(kernel: &mut Kernel, what: &str, result: Result<T, ClientError>) -> T {
    match result {
        Ok(value) => value,
        Err(e) => fail(kernel, alloc::format!("writer: {what}: {e}")),
    }
}

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    wait_registered(kernel, STORAGE)?;
    let connected = StorageClient::connect(kernel);
    let mut client = ok(kernel, "connect", connected).with_retry(Duration::from_secs(2), 3);
    let created = client.create(kernel, ObjectKind::Map);
    let (map, _) = ok(kernel, "create", created);
    let put = client.put(kernel, &map, b"greeting", b"hello from ring 3");
    ok(kernel, "put", put);
    // Read, and move: the copy has to travel in a message.
    let copy = attenuate(kernel, &map, Rights::READ | Rights::TRANSFER);
    let read_only = ok(kernel, "attenuate", copy);
    let moved = read_only.handle();
    let inbox = lookup_with_retry(kernel, READER_INBOX)?;
    let sent = delegate(kernel, inbox, read_only);
    ok(kernel, "delegate", sent);
    // The kernel moved it: the handle is dead in this task now.
    let gone: ObjectCap = Cap::from_handle(moved).assume_kind();
    match client.get(kernel, &gone, b"greeting") {
        Err(ClientError::Kernel(KernelError::InvalidCapability)) => Ok(()),
        other => fail(
            kernel,
            alloc::format!("writer: the moved capability still worked: {other:?}"),
        ),
    }
}
