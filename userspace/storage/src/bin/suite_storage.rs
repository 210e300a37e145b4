//! Storage suite: the storage service and two clients in their own address
//! spaces, through real system calls. The writer moves a read-only kernel
//! capability for its map to the reader (a kernel move: the writer can no
//! longer use it), who can read but not write, copy or export with it; the
//! root checks versions, a conflicting pair of transactions, and
//! revocation itself. The service
//! keeps its journal on the kernel's block device, as in the system.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use pandagen_rt::abi::services::STORAGE;
use pandagen_rt::abi::{Duration, ExitReason, KernelApi, KernelError, Rights, ServiceId, TaskId};

/// The id `storage_reader` registers its inbox under.
const READER_INBOX: ServiceId = ServiceId::from_raw(0x5701);
use pandagen_rt::Kernel;
use pandagen_scenarios::{spawn, startup_caps, wait_exit, wait_registered, Tally};
use pandagen_storage::client::attenuate;
use pandagen_storage::{ClientError, ObjectKind, Op, StorageClient, StorageError};

pandagen_rt::entry!(main);

fn exited_normally(reasons: &BTreeMap<TaskId, ExitReason>, task: TaskId) -> Result<(), String> {
    match reasons.get(&task) {
        Some(ExitReason::Normal) => Ok(()),
        Some(other) => Err(alloc::format!("exited with {other:?}")),
        None => Err("did not exit".into()),
    }
}

/// Two transactions write one map; the second to commit must fail with a
/// conflict and leave nothing behind. Old versions stay readable.
fn conflict_and_versions(kernel: &mut Kernel, client: &mut StorageClient) -> Result<(), String> {
    let e = |what: &str, e: ClientError| alloc::format!("{what}: {e}");
    let (map, _) = client
        .create(kernel, ObjectKind::Map)
        .map_err(|x| e("create", x))?;
    let first = client
        .put(kernel, &map, b"k", b"v1")
        .map_err(|x| e("put", x))?;
    let t1 = client.begin(kernel).map_err(|x| e("begin", x))?;
    let t2 = client.begin(kernel).map_err(|x| e("begin", x))?;
    for (tx, value) in [(t1, b"v2"), (t2, b"v3")] {
        let put = Op::Put {
            key: b"k".to_vec(),
            value: value.to_vec(),
        };
        client.op(kernel, tx, &map, put).map_err(|x| e("op", x))?;
    }
    client.commit(kernel, t1).map_err(|x| e("commit", x))?;
    match client.commit(kernel, t2) {
        Err(ClientError::Storage(StorageError::Conflict { .. })) => {}
        other => return Err(alloc::format!("second commit gave {other:?}")),
    }
    let latest = client.get(kernel, &map, b"k").map_err(|x| e("get", x))?;
    if latest.as_deref() != Some(&b"v2"[..]) {
        return Err(alloc::format!("latest value {latest:?}"));
    }
    let old = Op::Get {
        key: b"k".to_vec(),
        at: Some(first),
    };
    match client.transact(kernel, &map, vec![old]) {
        Ok((results, _)) => match results.as_slice() {
            [pandagen_storage::OpResult::Value { value: Some(v), .. }] if v == b"v1" => Ok(()),
            other => Err(alloc::format!("old version read {other:?}")),
        },
        Err(x) => Err(e("read old version", x)),
    }
}

/// Revoking through a capability with CONTROL voids every capability for
/// the object, copies included, and answers with a fresh one.
fn revocation(kernel: &mut Kernel, client: &mut StorageClient) -> Result<(), String> {
    let e = |what: &str, e: ClientError| alloc::format!("{what}: {e}");
    let (map, _) = client
        .create(kernel, ObjectKind::Map)
        .map_err(|x| e("create", x))?;
    let copy = attenuate(kernel, &map, Rights::READ).map_err(|x| e("copy", x))?;
    client
        .put(kernel, &map, b"k", b"v")
        .map_err(|x| e("put", x))?;
    let fresh = client.revoke(kernel, &map).map_err(|x| e("revoke", x))?;
    for old in [&map, &copy] {
        match client.get(kernel, old, b"k") {
            Err(ClientError::Storage(StorageError::InvalidCapability(_))) => {}
            other => return Err(alloc::format!("revoked capability read {other:?}")),
        }
    }
    match client.get(kernel, &fresh, b"k") {
        Ok(Some(v)) if v == b"v" => Ok(()),
        other => Err(alloc::format!("fresh capability read {other:?}")),
    }
}

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let info = kernel.startup()?;
    let root_caps = startup_caps(&info);
    let mut tally = Tally::default();
    let exits = kernel.create_channel()?;

    let for_storage = kernel
        .mint_registration_capability(&root_caps[0], STORAGE)?
        .erase();
    let disk = Rights::READ | Rights::WRITE | Rights::TRANSFER;
    let device = kernel.clone_capability(&root_caps[4], disk)?;
    let for_reader = kernel
        .mint_registration_capability(&root_caps[0], READER_INBOX)?
        .erase();
    spawn(
        kernel,
        "storage",
        "storage",
        vec![for_storage, device],
        exits,
    )?;
    let reader = spawn(
        kernel,
        "storage_reader",
        "storage_reader",
        vec![for_reader],
        exits,
    )?;
    let writer = spawn(kernel, "storage_writer", "storage_writer", vec![], exits)?;

    let mut reasons = BTreeMap::new();
    for _ in 0..2 {
        match wait_exit(kernel, exits, Duration::from_secs(300)) {
            Ok(notification) => {
                if let Some(task) = notification.task_id {
                    reasons.insert(task, notification.reason);
                }
            }
            Err(reason) => tally.check("storage/clients_exit", Err(reason)),
        }
    }
    tally.check(
        "storage/writer_moves_a_read_only_capability_and_loses_it",
        exited_normally(&reasons, writer.task_id),
    );
    tally.check(
        "storage/reader_reads_but_cannot_write_copy_or_export",
        exited_normally(&reasons, reader.task_id),
    );

    let connected = wait_registered(kernel, STORAGE)
        .map_err(|e| alloc::format!("lookup: {e}"))
        .and_then(|_| StorageClient::connect(kernel).map_err(|e| alloc::format!("connect: {e}")));
    match connected {
        Ok(client) => {
            let mut client = client.with_retry(Duration::from_secs(2), 3);
            let outcome = conflict_and_versions(kernel, &mut client);
            tally.check(
                "storage/first_committer_wins_and_old_versions_read",
                outcome,
            );
            let outcome = revocation(kernel, &mut client);
            tally.check("storage/revocation_voids_every_copy", outcome);
        }
        Err(reason) => tally.check("storage/connect", Err(reason)),
    }
    tally.finish(kernel)
}
