//! QEMU suite `drivercrash`: the virtio-blk driver dies while storage is
//! writing to it, and storage carries on with nothing acknowledged lost.
//!
//! This program is a service of `manifests/suite-drivercrash.manifest`,
//! beside storage on the virtio-blk disk. Its authority to kill the driver
//! is the process manager's control capability, which the manifest gives
//! it (`pm-control`) and no other task of the suite holds; a `pm.crash`
//! sent without it is refused first. It commits records to storage's home
//! map (each acknowledged one remembered), then, in rounds, starts a
//! commit and has the process manager crash the driver while storage is
//! serving it, until a commit in flight is refused (a typed error, never
//! an acknowledgement; a commit that beat the crash counts as
//! acknowledged). It then checks that the driver was restarted, that the
//! same storage instance (not a restarted one) commits again, and that
//! every acknowledged record reads back and no refused one does: first
//! from the running instance, then, after crashing storage too, from a
//! new instance that replays the journal from the disk. One `[TEST]` line
//! per check, then `[SUITE] DONE`.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use pandagen_process_manager::{
    ClientError as PmClientError, LifecycleState, PmClient, PmError, ServiceInfo,
};
use pandagen_rt::abi::services::{STORAGE, VIRTIO_BLK};
use pandagen_rt::abi::{Cap, Duration, KernelApi, KernelError, ServiceId};
use pandagen_rt::{println, Kernel};
use pandagen_scenarios::{wait_registered, Tally};
use pandagen_storage::{ClientError, ObjectCap, Op, Reply, Request, StorageClient};

pandagen_rt::entry!(main, heap = 2 << 20);

/// Where the manifest's `pm-control` is among the start-up capabilities
/// (after the registration).
const CONTROL_SLOT: usize = 1;
/// Records committed before the first crash.
const BEFORE: u64 = 8;
/// How long after starting a commit each crash round asks for the
/// driver's death: at once (storage has the commit, the driver has not
/// got its write yet), then later, as the write reaches the driver.
const CRASH_DELAYS_MS: [u64; 3] = [0, 1, 3];
/// Longer than the storage's wait for a dead driver (3 s), so that its
/// typed answer arrives before the client gives up.
const ANSWER_WAIT: Duration = Duration::from_secs(20);
/// How long a restart (of the driver or of storage) may take.
const RESTART_WAIT: Duration = Duration::from_secs(30);

fn key(i: u64) -> Vec<u8> {
    format!("rec-{i}").into_bytes()
}

/// Record `i`'s bytes: up to about three disk blocks, so that a commit
/// spans several blocks of the driver's write.
fn record(i: u64) -> Vec<u8> {
    let len = 60 + (i.wrapping_mul(2_654_435_761) % 1400) as usize;
    let mut bytes = format!("record {i}:").into_bytes();
    bytes.resize(len, b'a' + (i % 26) as u8);
    bytes
}

fn put_request(i: u64) -> Request {
    Request::Transact {
        ops: alloc::vec![Op::Put {
            key: key(i),
            value: record(i),
        }],
    }
}

/// The process manager's view of `service`, once it is `Running` after at
/// least `restarts` restarts.
fn wait_running(
    kernel: &mut Kernel,
    pm: &PmClient,
    service: ServiceId,
    restarts: u32,
) -> Result<ServiceInfo, String> {
    let deadline = kernel.now().saturating_add(RESTART_WAIT);
    loop {
        let info = pm
            .status(kernel, service)
            .map_err(|e| format!("pm.status: {e:?}"))?;
        if info.state == LifecycleState::Running && info.restart_count >= restarts {
            return Ok(info);
        }
        if info.gave_up || kernel.now() >= deadline {
            return Err(format!("not running: {:?}", info.state));
        }
        let _ = kernel.sleep(Duration::from_millis(20));
    }
}

/// What became of the records: acknowledged ones and refused ones.
#[derive(Default)]
struct Outcomes {
    acknowledged: Vec<u64>,
    refused: Vec<(u64, String)>,
    next: u64,
}

impl Outcomes {
    fn commit(&mut self, kernel: &mut Kernel, client: &mut StorageClient, home: &ObjectCap) {
        let i = self.next;
        self.next += 1;
        match client.call_on(kernel, home, &put_request(i)) {
            Ok(Reply::Transacted { .. }) => self.acknowledged.push(i),
            Ok(other) => self.refused.push((i, format!("{other:?}"))),
            Err(e) => self.refused.push((i, format!("{e}"))),
        }
    }
}

/// One crash round: start a commit, have the driver crashed while storage
/// serves it, and collect the commit's answer. `Ok(true)`: the commit was
/// refused with a typed error; `Ok(false)`: it beat the crash and was
/// acknowledged.
fn crash_round(
    kernel: &mut Kernel,
    client: &mut StorageClient,
    home: &ObjectCap,
    pm: &PmClient,
    outcomes: &mut Outcomes,
    delay_ms: u64,
) -> Result<bool, String> {
    let i = outcomes.next;
    outcomes.next += 1;
    let mut pending = client
        .start_on(kernel, home, &put_request(i))
        .map_err(|e| format!("send: {e}"))?;
    if delay_ms > 0 {
        let _ = kernel.sleep(Duration::from_millis(delay_ms));
    }
    pm.crash(kernel, VIRTIO_BLK)
        .map_err(|e| format!("pm.crash: {e:?}"))?;
    loop {
        match client.poll(kernel, &mut pending) {
            Ok(None) => {
                let _ = kernel.sleep(Duration::from_millis(5));
            }
            Ok(Some(Reply::Transacted { .. })) => {
                println!("drivercrash: record {i} acknowledged before the driver died");
                outcomes.acknowledged.push(i);
                return Ok(false);
            }
            Ok(Some(other)) => return Err(format!("record {i}: answered {other:?}")),
            Err(ClientError::Storage(e)) => {
                println!("drivercrash: record {i} refused while the driver died: {e}");
                outcomes.refused.push((i, format!("{e}")));
                return Ok(true);
            }
            Err(e) => return Err(format!("record {i}: no typed answer: {e}")),
        }
    }
}

/// Every acknowledged record reads back whole, and no refused one.
fn read_back(
    kernel: &mut Kernel,
    client: &mut StorageClient,
    home: &ObjectCap,
    outcomes: &Outcomes,
) -> Result<(), String> {
    for &i in &outcomes.acknowledged {
        match client.get(kernel, home, &key(i)) {
            Ok(Some(bytes)) if bytes == record(i) => {}
            Ok(Some(_)) => return Err(format!("record {i} differs")),
            Ok(None) => return Err(format!("acknowledged record {i} is missing")),
            Err(e) => return Err(format!("record {i}: {e}")),
        }
    }
    for (i, why) in &outcomes.refused {
        match client.get(kernel, home, &key(*i)) {
            Ok(None) => {}
            Ok(Some(_)) => return Err(format!("record {i} was refused ({why}) but is present")),
            Err(e) => return Err(format!("record {i}: {e}")),
        }
    }
    Ok(())
}

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let startup = kernel.startup()?;
    let mut tally = Tally::default();
    let plain = PmClient::connect(kernel)?.with_timeout(Some(RESTART_WAIT));
    // Without the control capability the process manager kills nothing.
    tally.check(
        "drivercrash/pm_crash_without_the_control_capability_refused",
        match plain.crash(kernel, VIRTIO_BLK) {
            Err(PmClientError::Rejected(PmError::ControlCapabilityRequired)) => Ok(()),
            other => Err(format!("answered {other:?}")),
        },
    );
    let Some(&control) = startup.capabilities.get(CONTROL_SLOT) else {
        tally.check("drivercrash/control", Err(String::from("no pm-control")));
        tally.report();
        return Err(KernelError::InvalidCapability);
    };
    let pm = plain.with_control(Cap::<()>::from_handle(control).assume_kind());

    wait_registered(kernel, STORAGE)?;
    let mut client = match StorageClient::connect(kernel) {
        Ok(client) => client.with_retry(ANSWER_WAIT, 1),
        Err(e) => {
            tally.check("drivercrash/storage", Err(format!("{e}")));
            tally.report();
            return Err(KernelError::InvalidCapability);
        }
    };
    let home = match client.home(kernel) {
        Ok(home) => home,
        Err(e) => {
            tally.check("drivercrash/home_map", Err(format!("{e}")));
            tally.report();
            return Err(KernelError::InvalidCapability);
        }
    };
    let storage_before = wait_running(kernel, &pm, STORAGE, 0).map(|i| i.execution_id);
    let mut outcomes = Outcomes::default();
    for _ in 0..BEFORE {
        outcomes.commit(kernel, &mut client, &home);
    }
    tally.check(
        "drivercrash/commits_acknowledged_before_the_crash",
        if outcomes.refused.is_empty() {
            Ok(())
        } else {
            Err(format!("refused: {:?}", outcomes.refused))
        },
    );

    // Crash rounds: at least one must catch a commit in flight.
    let mut caught = Ok(false);
    let mut crashes = 0;
    let mut restarted = Ok(());
    for delay in CRASH_DELAYS_MS {
        let round = crash_round(kernel, &mut client, &home, &pm, &mut outcomes, delay);
        crashes += 1;
        caught = match (caught, round) {
            (Err(why), _) | (_, Err(why)) => Err(why),
            (Ok(a), Ok(b)) => Ok(a || b),
        };
        restarted = wait_running(kernel, &pm, VIRTIO_BLK, crashes).map(|_| ());
        if caught.is_err() || restarted.is_err() {
            break;
        }
    }
    println!(
        "drivercrash: {crashes} driver crashes, {} records acknowledged, {} refused",
        outcomes.acknowledged.len(),
        outcomes.refused.len()
    );
    tally.check(
        "drivercrash/the_commit_in_flight_gets_a_typed_error",
        match caught {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!("every commit beat the crash in {crashes} rounds")),
            Err(why) => Err(why),
        },
    );
    tally.check("drivercrash/the_driver_is_restarted", restarted);

    // The same storage instance takes commits again once the driver is
    // back: it recovers its journal in place at the next commit.
    let refused_before = outcomes.refused.len();
    for _ in 0..BEFORE {
        outcomes.commit(kernel, &mut client, &home);
    }
    let storage_after = wait_running(kernel, &pm, STORAGE, 0).map(|i| i.execution_id);
    tally.check(
        "drivercrash/the_same_storage_instance_commits_again",
        match (&storage_before, &storage_after) {
            (Ok(a), Ok(b)) if a == b && outcomes.refused.len() == refused_before => Ok(()),
            (Ok(a), Ok(b)) if a == b => Err(format!(
                "commits still refused after the restart: {:?}",
                &outcomes.refused[refused_before..]
            )),
            other => Err(format!("storage instances: {other:?}")),
        },
    );
    tally.check(
        "drivercrash/acknowledged_records_read_back_and_refused_ones_do_not",
        read_back(kernel, &mut client, &home, &outcomes),
    );

    // From the disk: a new storage instance replays the journal.
    let replayed = pm
        .crash(kernel, STORAGE)
        .map_err(|e| format!("pm.crash storage: {e:?}"))
        .and_then(|_| wait_running(kernel, &pm, STORAGE, 1))
        .and_then(|_| wait_registered(kernel, STORAGE).map_err(|e| format!("{e}")))
        .and_then(|()| read_back(kernel, &mut client, &home, &outcomes));
    tally.check(
        "drivercrash/after_a_storage_restart_the_disk_holds_every_acknowledged_record",
        replayed,
    );
    tally.report();
    Ok(())
}
