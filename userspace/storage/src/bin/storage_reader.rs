//! Scenario client "reader": registers an inbox, waits for a capability
//! from the writer, and checks that it can read with it but not write.
#![no_std]
#![no_main]

extern crate alloc;

use pandagen_rt::abi::services::STORAGE;
use pandagen_rt::abi::{Duration, KernelApi, KernelError, Rights, ServiceId};
use pandagen_rt::Kernel;
use pandagen_scenarios::{fail, lookup_with_retry};
use pandagen_storage::client::received_cap;
use pandagen_storage::{ClientError, StorageClient, StorageError};

pandagen_rt::entry!(main);

/// This task's inbox (the same constant is in `storage_writer`).
const READER_INBOX: ServiceId = ServiceId::from_raw(0x5701);

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let inbox = kernel.create_channel()?;
    kernel.register_service(READER_INBOX, inbox)?;
    lookup_with_retry(kernel, STORAGE)?;
    let mut client = match StorageClient::connect(kernel) {
        Ok(client) => client.with_retry(Duration::from_secs(2), 3),
        Err(e) => fail(kernel, alloc::format!("reader: connect: {e}")),
    };
    let message = kernel.receive_message(inbox, Some(Duration::from_secs(60)))?;
    if message.source.is_none() {
        fail(kernel, "reader: the capability came from nowhere".into());
    }
    let token = match received_cap(&message) {
        Ok(token) => token,
        Err(e) => fail(kernel, alloc::format!("reader: bad delegation: {e}")),
    };
    if token.rights() != Rights::READ {
        fail(
            kernel,
            alloc::format!("reader: got rights {}", token.rights()),
        );
    }
    match client.get(kernel, &token, b"greeting") {
        Ok(Some(value)) if value == b"hello from ring 3" => {}
        other => fail(kernel, alloc::format!("reader: read gave {other:?}")),
    }
    match client.put(kernel, &token, b"greeting", b"defaced") {
        Err(ClientError::Storage(StorageError::MissingRights { .. })) => Ok(()),
        other => fail(kernel, alloc::format!("reader: write gave {other:?}")),
    }
}
