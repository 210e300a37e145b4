//! Scenario client "reader": registers an inbox, waits for the read-only
//! object capability the writer moves to it, and checks what the kernel
//! and the service let it do with it: read, but not write, copy or export;
//! and that a request naming no capability is refused.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use pandagen_rt::abi::services::STORAGE;
use pandagen_rt::abi::{Duration, KernelApi, KernelError, Rights, ServiceId};
use pandagen_rt::Kernel;
use pandagen_scenarios::{fail, wait_registered};
use pandagen_storage::client::{attenuate, received_cap};
use pandagen_storage::{ClientError, Op, Request, StorageClient, StorageError};

pandagen_rt::entry!(main);

/// This task's inbox (the same constant is in `storage_writer`).
const READER_INBOX: ServiceId = ServiceId::from_raw(0x5701);

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let inbox = kernel.create_channel()?;
    kernel.register_service(READER_INBOX, inbox)?;
    wait_registered(kernel, STORAGE)?;
    let mut client = match StorageClient::connect(kernel) {
        Ok(client) => client.with_retry(Duration::from_secs(2), 3),
        Err(e) => fail(kernel, alloc::format!("reader: connect: {e}")),
    };
    let message = kernel.receive_with_capabilities(inbox, Some(Duration::from_secs(60)))?;
    if message.envelope.source.is_none() {
        fail(kernel, "reader: the capability came from nowhere".into());
    }
    let cap = match received_cap(kernel, message) {
        Ok(cap) => cap,
        Err(e) => fail(kernel, alloc::format!("reader: bad delegation: {e}")),
    };
    match client.get(kernel, &cap, b"greeting") {
        Ok(Some(value)) if value == b"hello from ring 3" => {}
        other => fail(kernel, alloc::format!("reader: read gave {other:?}")),
    }
    // The service sees the rights the kernel stamped: READ and TRANSFER.
    match client.put(kernel, &cap, b"greeting", b"defaced") {
        Err(ClientError::Storage(StorageError::MissingRights { held, .. }))
            if held == Rights::READ | Rights::TRANSFER => {}
        other => fail(kernel, alloc::format!("reader: write gave {other:?}")),
    }
    // Without GRANT the kernel refuses a copy, and the service an export.
    match attenuate(kernel, &cap, Rights::READ) {
        Err(ClientError::Kernel(KernelError::InsufficientAuthority)) => {}
        other => fail(kernel, alloc::format!("reader: copy gave {other:?}")),
    }
    match client.export(kernel, &cap) {
        Err(ClientError::Storage(StorageError::MissingRights { .. })) => {}
        other => fail(kernel, alloc::format!("reader: export gave {other:?}")),
    }
    // The same request on the plain service channel names no object.
    let get = Op::Get {
        key: b"greeting".to_vec(),
        at: None,
    };
    match client.call(kernel, &Request::Transact { ops: vec![get] }) {
        Err(ClientError::Storage(StorageError::CapabilityRequired)) => Ok(()),
        other => fail(kernel, alloc::format!("reader: unstamped gave {other:?}")),
    }
}
