//! QEMU suite `persistence`: storage survives its own crash. The root task
//! runs the process manager's supervisor over
//! `manifests/suite-persistence.manifest` (storage with the kernel's block
//! device) and is also a storage client: it commits objects, has the
//! process manager crash the storage task with a `pm.crash` request (sent
//! through the control capability it mints as the holder of the process
//! manager's registration; a plain request is refused first), waits
//! for the supervisor to restart it, and reads the same objects back from
//! the new instance through the same kernel object capabilities it held
//! before the crash (they name the storage *service*, not the task, so the
//! kernel routes them to whichever instance is registered), with the same
//! client and reply channel. Before the crash it commits enough small
//! map versions to make the journal on the RAM disk compact itself into a
//! checkpoint (observed with the storage `Info` request, whose compaction
//! count is the journal's superblock generation), and after the restart it
//! reads back both the newest of them and versions from before the
//! compaction. One `[TEST]` line per check, then
//! `[SUITE] DONE` (see `qemu/README.md`).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use pandagen_process_manager::{
    parse_manifest, BootCapabilities, ClientError, InstanceEnd, LifecycleState, PmClient, PmError,
    PmReply, PmRequest, ServiceInfo, ServiceRef, Supervisor, SupervisorConfig,
};
use pandagen_rt::abi::services::STORAGE;
use pandagen_rt::abi::{Duration, ExitReason, KernelApi, KernelError, Rights};
use pandagen_rt::{println, Kernel};
use pandagen_scenarios::{wait_registered, Tally};
use pandagen_storage::{
    ClientError as StorageClientError, ObjectCap, ObjectKind, Op, OpResult, StorageClient,
    VersionId,
};

pandagen_rt::entry!(main, heap = 4 << 20);

const MANIFEST: &[u8] =
    include_bytes!("../../../process_manager/manifests/suite-persistence.manifest");
/// Where the root capabilities put the block device (`ROOT_CAPABILITIES`).
const BLOCK_DEVICE_SLOT: usize = 4;
/// How long any one phase may take on a loaded machine.
const PHASE: Duration = Duration::from_secs(30);
const GREETING: &[u8] = b"written before the crash";
const AFTER: &[u8] = b"written after the restart";

/// The map key the compaction phase rewrites.
const COUNTER: &[u8] = b"counter";
/// The most commits the compaction phase makes. Each takes a block of the
/// 4096-block RAM disk, so the journal compacts after about 3800.
const MAX_COUNTER_COMMITS: u32 = 6000;
/// How often (in commits) the compaction phase asks storage for `Info`.
const INFO_EVERY: u32 = 64;

/// A blob larger than one journal block, with a recognisable pattern.
fn blob() -> Vec<u8> {
    (0..5000u32).map(|i| (i * 7 % 251) as u8).collect()
}

/// Step the supervisor until storage is `Running` with `restarts`
/// restarts behind it.
fn run_until_storage_runs(
    kernel: &mut Kernel,
    supervisor: &mut Supervisor,
    restarts: u32,
) -> Result<ServiceInfo, String> {
    let start = kernel.now();
    loop {
        let _ = supervisor.step(kernel);
        for (at, event) in supervisor.events_mut().drain() {
            println!("persistence: [{} ms] {event:?}", at.as_millis());
        }
        if let Some(info) = supervisor.service(STORAGE) {
            if info.state == LifecycleState::Running && info.restart_count == restarts {
                return Ok(info);
            }
            if info.gave_up {
                return Err(alloc::format!(
                    "the supervisor gave up on storage: {info:?}"
                ));
            }
        }
        if kernel.now().saturating_duration_since(start) > PHASE {
            return Err(alloc::format!(
                "storage not running after {restarts} restarts: {:?}",
                supervisor.service(STORAGE)
            ));
        }
    }
}

fn connect(kernel: &mut Kernel) -> Result<StorageClient, String> {
    wait_registered(kernel, STORAGE).map_err(|e| alloc::format!("lookup: {e}"))?;
    let client = StorageClient::connect(kernel).map_err(|e| alloc::format!("connect: {e}"))?;
    Ok(client.with_retry(Duration::from_secs(2), 3))
}

fn failed(what: &str, e: StorageClientError) -> String {
    alloc::format!("{what}: {e}")
}

/// The storage objects this task created, by the kernel capabilities it
/// holds for them.
struct Objects {
    map: ObjectCap,
    blob: ObjectCap,
}

/// Commit a map entry and a multi-block blob; returns their capabilities.
fn write_objects(kernel: &mut Kernel, client: &mut StorageClient) -> Result<Objects, String> {
    let e = failed;
    let (map, _) = client
        .create(kernel, ObjectKind::Map)
        .map_err(|x| e("create map", x))?;
    client
        .put(kernel, &map, b"greeting", GREETING)
        .map_err(|x| e("put", x))?;
    let (blob_cap, _) = client
        .create(kernel, ObjectKind::Blob)
        .map_err(|x| e("create blob", x))?;
    client
        .write_blob(kernel, &blob_cap, &blob())
        .map_err(|x| e("write blob", x))?;
    Ok(Objects {
        map,
        blob: blob_cap,
    })
}

/// What the compaction phase committed: the version of `COUNTER` after
/// its first and its middle commit (both before the compaction), and the
/// number of commits (the newest value).
struct Counted {
    first: VersionId,
    middle: VersionId,
    middle_value: u32,
    last_value: u32,
}

/// Commit `COUNTER = 1, 2, ...` through the map's capability, one small
/// commit each, until storage reports a completed compaction.
fn commit_until_compaction(
    kernel: &mut Kernel,
    client: &mut StorageClient,
    objects: &Objects,
) -> Result<Counted, String> {
    let e = failed;
    let start = kernel.now();
    let before = client.info(kernel).map_err(|x| e("info", x))?;
    if before.compactions != 0 {
        return Err(alloc::format!("compacted already: {before:?}"));
    }
    let mut versions = Vec::new();
    for n in 1..=MAX_COUNTER_COMMITS {
        let value = alloc::format!("{n}");
        let version = client
            .put(kernel, &objects.map, COUNTER, value.as_bytes())
            .map_err(|x| e("put counter", x))?;
        versions.push(version);
        if n % INFO_EVERY != 0 {
            continue;
        }
        let info = client.info(kernel).map_err(|x| e("info", x))?;
        if info.compactions > 0 {
            println!(
                "persistence: {n} commits, {info:?}, in {} ms",
                kernel.now().saturating_duration_since(start).as_millis()
            );
            let middle_value = n / 2;
            return Ok(Counted {
                first: versions[0],
                middle: versions[middle_value as usize - 1],
                middle_value,
                last_value: n,
            });
        }
    }
    Err(alloc::format!(
        "no compaction after {MAX_COUNTER_COMMITS} commits"
    ))
}

/// `COUNTER` as of `version`.
fn counter_at(
    kernel: &mut Kernel,
    client: &mut StorageClient,
    objects: &Objects,
    version: VersionId,
) -> Result<Option<Vec<u8>>, String> {
    let op = Op::Get {
        key: COUNTER.to_vec(),
        at: Some(version),
    };
    match client.transact(kernel, &objects.map, alloc::vec![op]) {
        Ok((results, _)) => match results.as_slice() {
            [OpResult::Value { value, .. }] => Ok(value.clone()),
            other => Err(alloc::format!("get at {version:?} answered {other:?}")),
        },
        Err(x) => Err(failed("get at", x)),
    }
}

/// After the restart: the volume still counts the compaction, and the
/// newest `COUNTER` and the versions from before the compaction read back
/// through the map's capability.
fn read_counter(
    kernel: &mut Kernel,
    client: &mut StorageClient,
    objects: &Objects,
    counted: &Counted,
) -> Result<(), String> {
    let info = client.info(kernel).map_err(|x| failed("info", x))?;
    if info.compactions == 0 {
        return Err(alloc::format!("the restarted storage reports {info:?}"));
    }
    let newest = client
        .get(kernel, &objects.map, COUNTER)
        .map_err(|x| failed("get", x))?;
    let expect = alloc::format!("{}", counted.last_value);
    if newest.as_deref() != Some(expect.as_bytes()) {
        return Err(alloc::format!("newest counter read back as {newest:?}"));
    }
    for (version, value) in [(counted.first, 1), (counted.middle, counted.middle_value)] {
        let old = counter_at(kernel, client, objects, version)?;
        let expect = alloc::format!("{value}");
        if old.as_deref() != Some(expect.as_bytes()) {
            return Err(alloc::format!(
                "counter at {version:?} read back as {old:?}, not {expect}"
            ));
        }
    }
    Ok(())
}

/// Read both objects back through the capabilities in `objects`.
fn read_objects(
    kernel: &mut Kernel,
    client: &mut StorageClient,
    objects: &Objects,
) -> Result<(), String> {
    let e = failed;
    let value = client
        .get(kernel, &objects.map, b"greeting")
        .map_err(|x| e("get", x))?;
    if value.as_deref() != Some(GREETING) {
        return Err(alloc::format!("greeting read back as {value:?}"));
    }
    let bytes = client
        .read_blob(kernel, &objects.blob, None)
        .map_err(|x| e("read blob", x))?;
    if bytes != blob() {
        return Err(alloc::format!(
            "blob read back as {} other bytes",
            bytes.len()
        ));
    }
    Ok(())
}

/// Commit through the map's capability on the new instance and read it
/// back: the restarted service goes on where its predecessor stopped.
fn commit_after_restart(
    kernel: &mut Kernel,
    client: &mut StorageClient,
    objects: &Objects,
) -> Result<(), String> {
    let e = failed;
    client
        .put(kernel, &objects.map, b"greeting", AFTER)
        .map_err(|x| e("put", x))?;
    match client.get(kernel, &objects.map, b"greeting") {
        Ok(Some(value)) if value == AFTER => Ok(()),
        other => Err(alloc::format!("greeting read back as {other:?}")),
    }
}

/// `pm.crash` for storage, sent to the supervisor this task runs with
/// `pm`: send, let the supervisor handle it, take the answer.
fn crash_storage(
    kernel: &mut Kernel,
    supervisor: &mut Supervisor,
    pm: &PmClient,
) -> Result<PmReply, ClientError> {
    let id = pm.send(
        kernel,
        &PmRequest::Crash(ServiceRef::Name("storage".into())),
    )?;
    let start = kernel.now();
    loop {
        let _ = supervisor.step(kernel);
        match pm.receive(kernel, id, Some(Duration::ZERO)) {
            Err(ClientError::Kernel(KernelError::Timeout))
                if kernel.now().saturating_duration_since(start) <= PHASE => {}
            answer => return answer,
        }
    }
}

/// Without the control capability the crash is refused and storage keeps
/// running; through it, it is carried out.
fn crash_storage_with_control(
    kernel: &mut Kernel,
    supervisor: &mut Supervisor,
) -> (Result<(), String>, Result<ServiceInfo, String>) {
    let Some(channel) = supervisor.channel() else {
        let none = String::from("the supervisor has no channel");
        return (Err(none.clone()), Err(none));
    };
    let pm = match PmClient::with_channel(kernel, channel) {
        Ok(pm) => pm,
        Err(e) => return (Err(alloc::format!("{e}")), Err(alloc::format!("{e}"))),
    };
    let before = supervisor.service(STORAGE).and_then(|s| s.execution_id);
    let refused = match crash_storage(kernel, supervisor, &pm) {
        Err(ClientError::Rejected(PmError::ControlCapabilityRequired)) => {
            match supervisor.service(STORAGE) {
                Some(info)
                    if info.state == LifecycleState::Running
                        && info.execution_id == before
                        && info.restart_count == 0 =>
                {
                    Ok(())
                }
                other => Err(alloc::format!("storage changed anyway: {other:?}")),
            }
        }
        other => Err(alloc::format!("a plain pm.crash was answered {other:?}")),
    };
    let control = match supervisor.control_capability(kernel, Rights::CONTROL) {
        Ok(control) => control,
        Err(e) => return (refused, Err(alloc::format!("mint: {e}"))),
    };
    let pm = pm.with_control(control);
    let crashed = match crash_storage(kernel, supervisor, &pm) {
        Ok(PmReply::Service(info)) => Ok(info),
        other => Err(alloc::format!("pm.crash answered {other:?}")),
    };
    (refused, crashed)
}

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let startup = kernel.startup()?;
    let mut tally = Tally::default();
    let manifest = match parse_manifest(MANIFEST) {
        Ok(manifest) => manifest,
        Err(error) => {
            tally.check("persistence/manifest", Err(alloc::format!("{error}")));
            tally.finish(kernel)
        }
    };
    let caps = BootCapabilities::from_root_handles(&startup.capabilities);
    let mut supervisor = Supervisor::new(manifest, caps, SupervisorConfig::default())
        .with_terminator(pandagen_rt::syscall::terminate);
    if let Err(error) = supervisor.boot(kernel) {
        tally.check("persistence/boot", Err(alloc::format!("{error:?}")));
        tally.finish(kernel)
    }

    let first = run_until_storage_runs(kernel, &mut supervisor, 0);
    let first_execution = first.as_ref().ok().and_then(|i| i.execution_id);
    tally.check("persistence/storage_starts", first.map(|_| ()));
    // One client for the whole run: it keeps its reply channel and its
    // object capabilities across the storage restart.
    let mut client = connect(kernel);
    let written = match &mut client {
        Ok(client) => write_objects(kernel, client),
        Err(reason) => Err(reason.clone()),
    };
    let (written, objects) = match written {
        Ok(objects) => (Ok(()), Some(objects)),
        Err(reason) => (Err(reason), None),
    };
    tally.check("persistence/client_commits_objects", written);

    // The journal is on the kernel's block device: its superblock is there.
    let device = startup.capabilities.get(BLOCK_DEVICE_SLOT).copied();
    tally.check(
        "persistence/journal_is_on_the_block_device",
        match device.map(|d| kernel.block_read(d, 0, 1)) {
            Some(Ok(block)) if block.starts_with(pandagen_storage::journal::SUPER_MAGIC) => Ok(()),
            Some(Ok(block)) => Err(alloc::format!("block 0 begins {:?}", &block[..8])),
            Some(Err(e)) => Err(alloc::format!("block read: {e}")),
            None => Err(String::from("no block-device root capability")),
        },
    );

    let counted = match (client.as_mut(), objects.as_ref()) {
        (Ok(client), Some(objects)) => commit_until_compaction(kernel, client, objects),
        (Err(reason), _) => Err(reason.clone()),
        (_, None) => Err(String::from("nothing was written")),
    };
    let (compacted, counted) = match counted {
        Ok(counted) => (Ok(()), Some(counted)),
        Err(reason) => (Err(reason), None),
    };
    tally.check("persistence/small_commits_compact_the_journal", compacted);

    let (refused, crashed) = crash_storage_with_control(kernel, &mut supervisor);
    tally.check(
        "persistence/pm_crash_without_the_control_capability_refused",
        refused,
    );
    tally.check("persistence/pm_crash_accepted", crashed.map(|_| ()));
    let second = run_until_storage_runs(kernel, &mut supervisor, 1);
    tally.check(
        "persistence/storage_restarted_as_a_new_instance_after_a_failure",
        match &second {
            Ok(info)
                if info.execution_id.is_some()
                    && info.execution_id != first_execution
                    && matches!(
                        info.last_end,
                        Some(InstanceEnd::Exited(ExitReason::Failure { .. }))
                    ) =>
            {
                Ok(())
            }
            other => Err(alloc::format!("{other:?}")),
        },
    );
    // Wait for the new instance to register (until then a send through an
    // object capability has nowhere to go).
    let registered = wait_registered(kernel, STORAGE).map_err(|e| alloc::format!("lookup: {e}"));
    let ready = match (registered, client.as_mut(), objects.as_ref()) {
        (Err(reason), _, _) => Err(reason),
        (_, Err(reason), _) => Err(reason.clone()),
        (_, _, None) => Err(String::from("nothing was written")),
        (Ok(()), Ok(client), Some(objects)) => Ok((client, objects)),
    };
    let (read, compacted, committed) = match ready {
        Ok((client, objects)) => (
            read_objects(kernel, client, objects),
            match &counted {
                Some(counted) => read_counter(kernel, client, objects, counted),
                None => Err(String::from("the journal was not compacted")),
            },
            commit_after_restart(kernel, client, objects),
        ),
        Err(reason) => (Err(reason.clone()), Err(reason.clone()), Err(reason)),
    };
    tally.check(
        "persistence/objects_read_back_through_the_same_capabilities",
        read,
    );
    tally.check(
        "persistence/newest_and_pre_compaction_versions_read_back_after_the_restart",
        compacted,
    );
    tally.check(
        "persistence/the_new_instance_commits_through_the_same_capability",
        committed,
    );
    tally.finish(kernel)
}
