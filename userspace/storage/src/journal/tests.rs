use alloc::vec;
use alloc::vec::Vec;
use pandagen_abi::block::{byte_offset, BlockDevice};
use pandagen_abi::BlockError;

use super::*;
use crate::ids::{ObjectId, VersionId};
use crate::object::ObjectKind;
use crate::record::Change;
use crate::store::{ObjectStore, DURABLE_ANSWERS};
use crate::transaction::TransactionalStorage;

mod compaction;
mod driver_restart;
mod frames;
mod layout;
mod older_volumes;
mod power_cut;
mod superblock;

const BLOCK: usize = 128;

/// A disk in memory that can tear the next write after `keep` whole blocks
/// (plus, optionally, half of the next block), as power loss would, or
/// lose power after a budget of block writes.
#[derive(Clone)]
struct Disk {
    bytes: Vec<u8>,
    block: usize,
    tear: Option<(usize, bool)>,
    /// Blocks that may still be written before the power goes; the write
    /// that exceeds it is torn like `tear` with `budget_half`.
    budget: Option<usize>,
    budget_half: bool,
    fail_flush: bool,
}

impl Disk {
    fn new(blocks: usize) -> Self {
        Self::sized(blocks, BLOCK)
    }

    fn sized(blocks: usize, block: usize) -> Self {
        Disk {
            bytes: vec![0xA5; blocks * block],
            block,
            tear: None,
            budget: None,
            budget_half: false,
            fail_flush: false,
        }
    }

    fn blank(blocks: usize) -> Self {
        Disk {
            bytes: vec![0; blocks * BLOCK],
            ..Self::new(blocks)
        }
    }
}

impl BlockDevice for Disk {
    fn block_size(&self) -> u32 {
        self.block as u32
    }

    fn block_count(&self) -> u64 {
        (self.bytes.len() / self.block) as u64
    }

    fn read_blocks(&mut self, start: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let at = byte_offset(self.geometry(), start, buf.len())? as usize;
        buf.copy_from_slice(&self.bytes[at..at + buf.len()]);
        Ok(())
    }

    fn write_blocks(&mut self, start: u64, buf: &[u8]) -> Result<(), BlockError> {
        let block = self.block;
        let at = byte_offset(self.geometry(), start, buf.len())? as usize;
        if let Some(left) = self.budget {
            let blocks = buf.len() / block;
            if blocks <= left {
                self.budget = Some(left - blocks);
            } else if self.tear.is_none() {
                self.tear = Some((left, self.budget_half));
            }
        }
        match self.tear.take() {
            None => {
                self.bytes[at..at + buf.len()].copy_from_slice(buf);
                Ok(())
            }
            Some((keep, half)) => {
                let mut n = (keep * block).min(buf.len());
                if half && n < buf.len() {
                    n += block / 2;
                }
                self.bytes[at..at + n].copy_from_slice(&buf[..n]);
                // The power is gone: nothing else reaches the disk.
                self.tear = Some((0, false));
                Err(BlockError::Device)
            }
        }
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        if self.fail_flush || self.tear.is_some() {
            return Err(BlockError::Device);
        }
        Ok(())
    }
}

fn record(seq: u64, payload: usize) -> CommitRecord {
    CommitRecord {
        seq: CommitSeq::from_raw(seq),
        changes: vec![
            Change::Create {
                object: ObjectId::from_raw(seq),
                kind: ObjectKind::Blob,
                version: VersionId::from_raw(seq * 10),
            },
            Change::Blob {
                object: ObjectId::from_raw(seq),
                version: VersionId::from_raw(seq * 10 + 1),
                bytes: vec![seq as u8; payload],
            },
        ],
        origin: None,
    }
}

/// What replay must give back of `records` once compaction packed them:
/// the records with their changes but `Open`s, and the highest instance
/// opened.
pub(super) fn packed_view(records: &[CommitRecord]) -> (Vec<CommitRecord>, u32) {
    let mut instance = 0;
    let mut kept = Vec::new();
    for record in records {
        let mut record = record.clone();
        record.changes.retain(|change| match change {
            Change::Open { instance: i } => {
                instance = instance.max(*i);
                false
            }
            _ => true,
        });
        if !record.changes.is_empty() || record.origin.is_some() {
            kept.push(record);
        }
    }
    (kept, instance)
}

fn replay(j: &mut JournalBackend<Disk>) -> Vec<CommitRecord> {
    let mut out = Vec::new();
    j.replay(&mut |r| out.push(r)).unwrap();
    out
}

/// A map update written from its parts puts the bytes its record would
/// on the disk, fails as its record would before a replay and on a full
/// disk, and replays as its record.
#[test]
fn a_map_update_is_written_as_its_record() {
    let origin = crate::record::Origin {
        task: 3,
        message: 400,
        answer: vec![1, 2, 3],
    };
    // Puts and deletes, with and without an origin, small and large.
    let value = vec![7u8; 300];
    let update = |seq: u64| crate::record::MapUpdate {
        seq: CommitSeq::from_raw(seq),
        object: ObjectId::from_raw(1),
        version: VersionId::from_raw(seq * 10),
        key: b"key",
        value: seq
            .is_multiple_of(2)
            .then(|| &value[..if seq.is_multiple_of(4) { 300 } else { 10 }]),
        origin: seq.is_multiple_of(3).then_some(&origin),
    };
    // One journal by records, one by parts: the same disk after each.
    let mut by_record = JournalBackend::format(Disk::new(24), [9; 16]).unwrap();
    let mut by_parts = JournalBackend::format(Disk::new(24), [9; 16]).unwrap();
    let mut written = Vec::new();
    for seq in 1.. {
        let outcome = by_record.apply(&update(seq).to_record());
        assert_eq!(
            by_parts.apply_map_update(&update(seq)),
            outcome,
            "seq {seq}"
        );
        assert_eq!(
            by_parts.device_mut().bytes,
            by_record.device_mut().bytes,
            "seq {seq}"
        );
        match outcome {
            Ok(()) => written.push(update(seq).to_record()),
            Err(e) => {
                assert_eq!(e, BackendError::Full);
                break;
            }
        }
    }
    assert!(written.len() > 4);
    let mut reopened = JournalBackend::open(by_parts.into_device()).unwrap();
    assert_eq!(
        reopened.apply_map_update(&update(1)),
        Err(BackendError::Crashed),
        "replay first"
    );
    // What was written before the journal compacted itself is packed
    // (older answers dropped); the last records replay as written.
    let replayed = replay(&mut reopened);
    assert_eq!(replayed.last(), written.last());
    assert_eq!(replayed.len(), written.len());
}

#[test]
fn records_survive_a_reopen() {
    let mut j = JournalBackend::format(Disk::new(64), [9; 16]).unwrap();
    j.apply(&record(1, 10)).unwrap();
    j.apply(&record(2, 500)).unwrap(); // spans several blocks
    let mut j = JournalBackend::open(j.into_device()).unwrap();
    assert_eq!(j.cap_key(), SipKey::from_bytes([9; 16]));
    assert_eq!(
        j.apply(&record(3, 1)),
        Err(BackendError::Crashed),
        "replay first"
    );
    assert_eq!(replay(&mut j), vec![record(1, 10), record(2, 500)]);
    j.apply(&record(3, 1)).unwrap();
    let mut j = JournalBackend::open(j.into_device()).unwrap();
    assert_eq!(replay(&mut j).len(), 3);
}

#[test]
fn a_torn_frame_is_never_replayed_whatever_reached_the_disk() {
    let frame_blocks =
        1 + (FRAME_HEADER + postcard::to_allocvec(&record(2, 700)).unwrap().len()) / BLOCK;
    for keep in 0..frame_blocks {
        for half in [false, true] {
            let mut j = JournalBackend::format(Disk::new(64), [9; 16]).unwrap();
            j.apply(&record(1, 10)).unwrap();
            let mut disk = j.into_device();
            disk.tear = Some((keep, half));
            let mut j = JournalBackend::open(disk).unwrap();
            replay(&mut j);
            assert!(j.apply(&record(2, 700)).is_err());
            // Power returns; the service restarts on the same disk.
            let mut disk = j.into_device();
            disk.tear = None;
            let mut j = JournalBackend::open(disk).unwrap();
            assert_eq!(
                replay(&mut j),
                vec![record(1, 10)],
                "keep={keep} half={half}"
            );
            // The journal goes on from the last good frame, and a shorter
            // frame over the torn one leaves no stale frame behind it.
            j.apply(&record(2, 3)).unwrap();
            j.apply(&record(3, 3)).unwrap();
            let mut j = JournalBackend::open(j.into_device()).unwrap();
            assert_eq!(
                replay(&mut j),
                vec![record(1, 10), record(2, 3), record(3, 3)]
            );
        }
    }
}

#[test]
fn a_frame_that_wholly_reached_the_disk_before_the_power_went_is_durable() {
    // The service died with the write: nobody was told it failed, and the
    // frame verifies, so it is replayed.
    let mut j = JournalBackend::format(Disk::new(64), [9; 16]).unwrap();
    let mut disk = j.into_device();
    disk.tear = Some((64, false));
    j = JournalBackend::open(disk).unwrap();
    replay(&mut j);
    assert!(j.apply(&record(1, 700)).is_err());
    let mut disk = j.into_device();
    disk.tear = None;
    let mut j = JournalBackend::open(disk).unwrap();
    assert_eq!(replay(&mut j), vec![record(1, 700)]);
}

/// A disk whose next write lands whole but is reported as failed (a
/// transient controller error); the device keeps working.
#[derive(Clone)]
struct FailsOneWrite {
    disk: Disk,
    fail_next_write: bool,
}

impl BlockDevice for FailsOneWrite {
    fn block_size(&self) -> u32 {
        self.disk.block_size()
    }

    fn block_count(&self) -> u64 {
        self.disk.block_count()
    }

    fn read_blocks(&mut self, start: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.disk.read_blocks(start, buf)
    }

    fn write_blocks(&mut self, start: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.disk.write_blocks(start, buf)?;
        if core::mem::take(&mut self.fail_next_write) {
            return Err(BlockError::Device);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.disk.flush()
    }
}

#[test]
fn a_commit_reported_as_failed_is_never_replayed_even_by_a_restart() {
    let device = FailsOneWrite {
        disk: Disk::new(64),
        fail_next_write: false,
    };
    let mut j = JournalBackend::format(device, [9; 16]).unwrap();
    j.apply(&record(1, 10)).unwrap();
    j.device_mut().fail_next_write = true;
    assert_eq!(j.apply(&record(2, 10)), Err(BackendError::Io));
    // The service restarts at once, without recovering in place.
    let mut j = JournalBackend::open(j.into_device().disk).unwrap();
    assert_eq!(replay(&mut j), vec![record(1, 10)]);
}

#[test]
fn a_commit_whose_failure_cannot_be_made_durable_is_reported_as_unknown() {
    let mut j = JournalBackend::format(Disk::new(64), [9; 16]).unwrap();
    j.apply(&record(1, 10)).unwrap();
    let mut disk = j.into_device();
    disk.fail_flush = true;
    let mut j = JournalBackend::open(disk).unwrap();
    replay(&mut j);
    // The frame's write and the void's write both reached the medium,
    // but neither flush was acknowledged.
    assert_eq!(j.apply(&record(2, 10)), Err(BackendError::OutcomeUnknown));
    let mut disk = j.into_device();
    disk.fail_flush = false;
    let mut j = JournalBackend::open(disk).unwrap();
    assert_eq!(replay(&mut j), vec![record(1, 10)]);
}

#[test]
fn a_full_device_refuses_cleanly() {
    // Two superblocks and six data blocks.
    let mut j = JournalBackend::format(Disk::new(8), [9; 16]).unwrap();
    j.apply(&record(1, 10)).unwrap();
    assert_eq!(j.apply(&record(2, 1000)), Err(BackendError::Full));
    let mut seq = 2;
    while j.apply(&record(seq, 10)).is_ok() {
        seq += 1;
    }
    // Compaction packs several records into a block (the space to write
    // the next segment, and a restart's record, stays free).
    assert!(seq > 4, "{seq}");
    assert_eq!(j.apply(&record(seq, 10)), Err(BackendError::Full));
    let mut j = JournalBackend::open(j.into_device()).unwrap();
    let all: Vec<_> = (1..seq).map(|s| record(s, 10)).collect();
    assert_eq!(replay(&mut j), all);
}

#[test]
fn frames_of_another_format_are_not_replayed() {
    let mut j = JournalBackend::format(Disk::new(64), [9; 16]).unwrap();
    j.apply(&record(1, 10)).unwrap();
    let mut disk = j.into_device();
    // Re-format with another key: the old frame is behind block 1, which
    // format voids, and its MAC is under the old key anyway.
    let mut j = JournalBackend::format(disk, [8; 16]).unwrap();
    assert!(replay(&mut j).is_empty());
    disk = j.into_device();
    assert!(JournalBackend::open(Disk::blank(64)).is_err());
    let mut j = JournalBackend::open(disk).unwrap();
    assert!(replay(&mut j).is_empty());
}

#[test]
fn the_store_runs_on_a_journal_and_recovers_from_it() {
    let journal = JournalBackend::format(Disk::new(256), [9; 16]).unwrap();
    let (mut s, _) = ObjectStore::open(journal).unwrap();
    let (m, _) = s.create(ObjectKind::Map).unwrap();
    let (l, _) = s.create(ObjectKind::Log).unwrap();
    let mut tx = s.begin_transaction().unwrap();
    s.put(&mut tx, m, b"k", b"v").unwrap();
    s.append(&mut tx, l, b"r").unwrap();
    s.commit(&mut tx).unwrap();
    // A multi-object commit torn by power loss.
    let mut tx = s.begin_transaction().unwrap();
    s.put(&mut tx, m, b"k", &[7; 300]).unwrap();
    s.append(&mut tx, l, &[7; 300]).unwrap();
    s.backend_mut().device_mut().tear = Some((0, true));
    assert!(s.commit(&mut tx).is_err());
    let mut disk = s.into_backend().into_device();
    disk.tear = None;
    let (mut s, report) = ObjectStore::open(JournalBackend::open(disk).unwrap()).unwrap();
    // Open, two creations, one commit.
    assert_eq!(report.records, 4);
    let tx = s.begin_transaction().unwrap();
    assert_eq!(
        s.get(&tx, m, b"k", None).unwrap().value,
        Some(b"v".to_vec())
    );
    assert_eq!(s.read_log(&tx, l, None, 0, 10).unwrap().total, 1);
}

#[test]
fn a_blank_device_is_formatted_and_a_formatted_one_is_opened_never_reformatted() {
    let blank = Disk::blank(64);
    let (mut j, formatted) = JournalBackend::open_or_format(blank, [4; 16]).unwrap();
    assert!(formatted);
    assert!(replay(&mut j).is_empty());
    j.apply(&record(1, 10)).unwrap();
    // Another key offered on reopen is ignored: the volume keeps its own.
    let (mut j, formatted) = JournalBackend::open_or_format(j.into_device(), [5; 16]).unwrap();
    assert!(!formatted);
    assert_eq!(j.cap_key(), SipKey::from_bytes([4; 16]));
    assert_eq!(replay(&mut j), vec![record(1, 10)]);
    // Not blank, not a volume: refused rather than formatted.
    let disk = Disk::new(64);
    assert_eq!(
        JournalBackend::open_or_format(disk, [6; 16]).map(|(_, f)| f),
        Err(BackendError::Corrupt)
    );
}

// Compaction.

use crate::error::StorageError;
use crate::record::Origin;
use alloc::format;
use alloc::string::String;

/// A map's live keys at one version, each with what a reader gets for it.
type MapEntries = Vec<(Vec<u8>, Option<Option<Vec<u8>>>)>;

/// One thing a reader can see: an object (its id, kind and capability
/// epoch), or the content of one of its versions.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Object(u64, ObjectKind, u32),
    Blob(VersionId, Option<Vec<u8>>),
    Log(VersionId, Vec<Vec<u8>>),
    Map(VersionId, MapEntries),
}

/// Everything a reader can see in `s`: every object, its kind, its
/// capability epoch and the content of each of its versions. Kept as
/// values, not text: the power-cut tests compare thousands of these.
fn dump<B: StorageBackend>(s: &ObjectStore<B>) -> Vec<Seen> {
    let mut out = Vec::new();
    for id in 1..=s.object_count() as u64 {
        let obj = s.object(ObjectId::from_raw(id)).unwrap();
        out.push(Seen::Object(id, obj.kind(), obj.cap_epoch()));
        for stamp in obj.versions() {
            let (at, version) = (stamp.seq, stamp.version);
            out.push(match obj.kind() {
                ObjectKind::Blob => Seen::Blob(version, obj.blob_at(at).map(<[u8]>::to_vec)),
                ObjectKind::Log => Seen::Log(
                    version,
                    obj.log_at(at)
                        .unwrap()
                        .iter()
                        .map(|(_, r)| r.clone())
                        .collect(),
                ),
                ObjectKind::Map => Seen::Map(
                    version,
                    obj.map_keys_at(None, at)
                        .map(|k| {
                            let value = obj.map_get_at(&k, at).map(|v| v.map(<[u8]>::to_vec));
                            (k, value)
                        })
                        .collect(),
                ),
            });
        }
    }
    out
}

/// The durable answers of origins (task 1, message 1..=`messages`).
fn answers<B: StorageBackend>(s: &ObjectStore<B>, messages: u64) -> Vec<Option<Vec<u8>>> {
    (1..=messages)
        .map(|m| s.durable_answer(1, m).map(<[u8]>::to_vec))
        .collect()
}

type Store = ObjectStore<JournalBackend<Disk>>;

fn reopen(s: Store) -> Store {
    let disk = s.into_backend().into_device();
    ObjectStore::open(JournalBackend::open(disk).unwrap())
        .unwrap()
        .0
}

/// Commit `i` of a deterministic workload over a map (1), a log (2) and a
/// blob (3): a small put, and now and then an append, a blob write or a
/// revocation. Each carries origin (1, i).
fn workload_step(s: &mut Store, i: u64) -> Result<(), StorageError> {
    let (map, log, blob) = (
        ObjectId::from_raw(1),
        ObjectId::from_raw(2),
        ObjectId::from_raw(3),
    );
    let mut tx = s.begin_transaction()?;
    let key = format!("key{}", i % 16);
    s.put(&mut tx, map, key.as_bytes(), format!("v{i}").as_bytes())?;
    if i.is_multiple_of(10) {
        s.append(&mut tx, log, format!("rec{i}").as_bytes())?;
    }
    if i.is_multiple_of(25) {
        s.write_blob(&mut tx, blob, &[i as u8; 40])?;
    }
    let origin = Origin {
        task: 1,
        message: i,
        answer: i.to_le_bytes().to_vec(),
    };
    s.commit_with_origin(&mut tx, Some(origin))?;
    if i.is_multiple_of(50) {
        s.revoke(map)?;
    }
    Ok(())
}

fn workload_store(disk: Disk) -> Store {
    let (mut s, _) = ObjectStore::open(JournalBackend::format(disk, [9; 16]).unwrap()).unwrap();
    s.create(ObjectKind::Map).unwrap();
    s.create(ObjectKind::Log).unwrap();
    s.create(ObjectKind::Blob).unwrap();
    s
}

#[test]
fn three_times_more_commits_than_blocks_all_survive_with_every_version() {
    const BLOCKS: u64 = 128;
    let mut s = workload_store(Disk::sized(BLOCKS as usize, 512));
    let commits = 3 * BLOCKS;
    for i in 1..=commits {
        workload_step(&mut s, i).unwrap_or_else(|e| panic!("commit {i}: {e:?} {:?}", s.backend()));
    }
    // Without compaction each commit would take a block of its own.
    assert!(s.backend().generation() >= 2, "{:?}", s.backend());
    let before = dump(&s);
    let answered = answers(&s, commits);
    // Only the most recent origins are remembered, and reopening keeps
    // exactly those.
    assert!(answered[..(commits as usize - DURABLE_ANSWERS)]
        .iter()
        .all(Option::is_none));
    assert!(answered[(commits as usize - DURABLE_ANSWERS)..]
        .iter()
        .all(Option::is_some));
    let instance = s.instance();
    let mut s = reopen(s);
    assert_eq!(dump(&s), before);
    assert_eq!(answers(&s, commits), answered);
    // Instance numbers (which prefix transaction ids) are never reused.
    assert_eq!(s.instance(), instance + 1);
    // Old versions read back through a transaction too.
    let map = ObjectId::from_raw(1);
    let first = s.object(map).unwrap().versions()[1].version;
    let tx = s.begin_transaction().unwrap();
    assert_eq!(
        s.get(&tx, map, b"key1", Some(first)).unwrap().value,
        Some(b"v1".to_vec())
    );
    assert_eq!(
        s.get(&tx, map, b"key1", None).unwrap().value,
        Some(format!("v{}", commits - 15).into_bytes())
    );
    // The store goes on, across further compactions and reopens.
    for i in commits + 1..=2 * commits {
        workload_step(&mut s, i).unwrap_or_else(|e| panic!("commit {i}: {e:?}"));
    }
    let before = dump(&s);
    assert_eq!(s.backend_mut().compact(), Ok(true));
    let s = reopen(reopen(s));
    assert_eq!(dump(&s), before);
    assert_eq!(s.instance(), instance + 3);
}

#[test]
fn a_crash_at_any_write_of_a_compaction_opens_the_old_or_the_new_state() {
    let mut s = workload_store(Disk::new(64));
    for i in 1..=30 {
        workload_step(&mut s, i).unwrap();
    }
    let expected = dump(&s);
    let expected_answers = answers(&s, 30);
    let base = s.into_backend().into_device();
    // Before packing, after packing, after settling.
    let mut outcomes = [false, false, false];
    'budgets: for budget in 0.. {
        for half in [false, true] {
            let mut s = ObjectStore::open(JournalBackend::open(base.clone()).unwrap())
                .unwrap()
                .0;
            let old = s.backend().generation();
            s.backend_mut().device_mut().budget = Some(budget);
            s.backend_mut().device_mut().budget_half = half;
            let compacted = s.backend_mut().compact();
            let mut disk = s.into_backend().into_device();
            disk.budget = None;
            disk.tear = None;
            let mut s = reopen_store(disk);
            let new = s.backend().generation();
            assert!(
                (old..=old + 2).contains(&new),
                "budget={budget} half={half}"
            );
            if compacted.is_ok() {
                assert_eq!(compacted, Ok(true));
                assert_eq!(new, old + 2);
            }
            outcomes[(new - old) as usize] = true;
            assert_eq!(dump(&s), expected, "budget={budget} half={half}");
            assert_eq!(answers(&s, 30), expected_answers);
            // The journal goes on from the state it opened.
            workload_step(&mut s, 31).unwrap();
            let after = dump(&s);
            let s = reopen(s);
            assert_eq!(dump(&s), after, "budget={budget} half={half}");
            if compacted.is_ok() {
                break 'budgets;
            }
        }
        assert!(budget < 1000);
    }
    assert_eq!(outcomes, [true, true, true], "every outcome was reached");
}

fn reopen_store(disk: Disk) -> Store {
    ObjectStore::open(JournalBackend::open(disk).unwrap())
        .unwrap()
        .0
}

#[test]
fn a_crash_in_the_compaction_a_commit_starts_loses_no_commit() {
    // Find the first commit that compacts, without faults.
    let mut s = workload_store(Disk::new(48));
    let mut dumps = vec![dump(&s)];
    let mut trigger = None;
    for i in 1..500 {
        let old = s.backend().generation();
        workload_step(&mut s, i).unwrap();
        dumps.push(dump(&s));
        if s.backend().generation() > old {
            trigger = Some(i);
            break;
        }
    }
    let trigger = trigger.expect("a commit compacts");
    let (pre, post) = (&dumps[trigger as usize - 1], &dumps[trigger as usize]);
    assert_ne!(pre, post);
    let mut outcomes = [false, false];
    'budgets: for budget in 0.. {
        for half in [false, true] {
            let mut s = workload_store(Disk::new(48));
            for i in 1..trigger {
                workload_step(&mut s, i).unwrap();
            }
            s.backend_mut().device_mut().budget = Some(budget);
            s.backend_mut().device_mut().budget_half = half;
            let committed = workload_step(&mut s, trigger);
            let mut disk = s.into_backend().into_device();
            disk.budget = None;
            disk.tear = None;
            let s = reopen_store(disk);
            let state = dump(&s);
            if committed.is_ok() {
                assert_eq!(&state, post, "budget={budget} half={half}");
            } else {
                // Not acknowledged: either outcome, never anything else.
                assert!(
                    &state == pre || &state == post,
                    "budget={budget} half={half}"
                );
            }
            outcomes[usize::from(&state == post)] = true;
            if committed.is_ok() {
                break 'budgets;
            }
        }
        assert!(budget < 1000);
    }
    assert_eq!(outcomes, [true, true]);
}

#[test]
fn live_data_beyond_capacity_answers_full_and_loses_nothing() {
    const BLOCKS: usize = 32;
    let (mut s, _) =
        ObjectStore::open(JournalBackend::format(Disk::new(BLOCKS), [9; 16]).unwrap()).unwrap();
    let (map, _) = s.create(ObjectKind::Map).unwrap();
    let mut accepted = 0u64;
    let error = loop {
        let mut tx = s.begin_transaction().unwrap();
        let key = accepted.to_le_bytes();
        s.put(&mut tx, map, &key, &[accepted as u8; 60]).unwrap();
        match s.commit(&mut tx) {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 10_000);
    };
    assert_eq!(error, StorageError::Backend(BackendError::Full));
    // Compaction ran before the device gave up; about half the data area
    // holds live data, the rest is for the checkpoint that replaces it.
    assert!(s.backend().generation() > 0);
    assert!(accepted > 8, "{accepted}");
    let before = dump(&s);
    // Still full, and a reopened store (more than once) has everything.
    let mut tx = s.begin_transaction().unwrap();
    s.put(&mut tx, map, b"more", &[1; 60]).unwrap();
    assert_eq!(
        s.commit(&mut tx),
        Err(StorageError::Backend(BackendError::Full))
    );
    let mut s = reopen(reopen(reopen(s)));
    assert_eq!(dump(&s), before);
    let tx = s.begin_transaction().unwrap();
    for i in 0..accepted {
        assert_eq!(
            s.get(&tx, map, &i.to_le_bytes(), None).unwrap().value,
            Some(vec![i as u8; 60])
        );
    }
    let mut tx = s.begin_transaction().unwrap();
    s.put(&mut tx, map, b"more", &[1; 60]).unwrap();
    assert_eq!(
        s.commit(&mut tx),
        Err(StorageError::Backend(BackendError::Full))
    );
}

/// One commit with origin (1, `message`) and an answer naming `i`.
fn answered_put<B: StorageBackend>(s: &mut ObjectStore<B>, i: u64, message: u64) {
    let map = ObjectId::from_raw(1);
    let mut tx = s.begin_transaction().unwrap();
    s.put(&mut tx, map, b"k", &i.to_le_bytes()).unwrap();
    let origin = Origin {
        task: 1,
        message,
        answer: i.to_le_bytes().to_vec(),
    };
    s.commit_with_origin(&mut tx, Some(origin)).unwrap();
}

#[test]
fn compaction_keeps_exactly_the_durable_answers_a_full_history_would() {
    // The same commits on a store that never compacts and on one that
    // compacts often; some requests are answered twice (the second answer
    // wins), and far more than DURABLE_ANSWERS are made.
    let (mut reference, _) = ObjectStore::open(crate::MemoryBackend::new([9; 16])).unwrap();
    reference.create(ObjectKind::Map).unwrap();
    let mut s = workload_store(Disk::sized(128, 512));
    let message = |i: u64| if i.is_multiple_of(7) { i - 3 } else { i };
    for i in 1..=700 {
        answered_put(&mut reference, i, message(i));
        answered_put(&mut s, i, message(i));
        if i % 97 == 0 {
            assert_eq!(s.backend_mut().compact(), Ok(true));
        }
    }
    assert_eq!(answers(&s, 800), answers(&reference, 800));
    let mut s = reopen(s);
    assert_eq!(answers(&s, 800), answers(&reference, 800));
    // Which answers are evicted next depends on the order they entered.
    for i in 701..=760 {
        answered_put(&mut reference, i, message(i));
        answered_put(&mut s, i, message(i));
        assert_eq!(answers(&s, 800), answers(&reference, 800), "{i}");
    }
}

/// The `Info` request reports the journal's completed compactions, before
/// and after one, and after a restart on the same device.
#[test]
fn the_info_request_reports_completed_compactions_across_a_restart() {
    use crate::protocol::{Reply, Request, StorageInfo, SCHEMA};
    use crate::server::StorageServer;
    use pandagen_abi::services::STORAGE;
    use pandagen_abi::{Badge, Instant, MessageEnvelope, MessagePayload, TaskId};

    fn ask<B: StorageBackend>(
        server: &mut StorageServer<B>,
        request: &Request,
        badge: Option<Badge>,
    ) -> Reply {
        let mut envelope = MessageEnvelope::new(
            STORAGE,
            request.action(),
            SCHEMA,
            MessagePayload::new(request).unwrap(),
        );
        envelope.source = Some(TaskId::from_raw(7));
        let answer = server.respond(&envelope, badge, Instant::from_nanos(1));
        let response: crate::protocol::Response = answer.response().unwrap();
        response.unwrap()
    }
    fn info<B: StorageBackend>(server: &mut StorageServer<B>) -> StorageInfo {
        match ask(server, &Request::Info, None) {
            Reply::Info(info) => info,
            other => panic!("Info answered {other:?}"),
        }
    }

    let journal = JournalBackend::format(Disk::sized(64, 512), [3; 16]).unwrap();
    let (mut server, _) = StorageServer::open(journal).unwrap();
    let Reply::Created { grant, .. } = ask(
        &mut server,
        &Request::Create {
            kind: ObjectKind::Map,
        },
        None,
    ) else {
        panic!("no map");
    };
    let badge = Some(Badge {
        value: grant.badge().encode().unwrap(),
        rights: grant.rights,
    });
    assert_eq!(
        info(&mut server),
        StorageInfo {
            last_commit: server.store().last_commit(),
            compactions: 0,
        }
    );
    let mut commits = 0;
    while server.store().backend().generation() == 0 {
        commits += 1;
        assert!(commits < 200, "no compaction after {commits} commits");
        let put = crate::protocol::Op::Put {
            key: b"k".to_vec(),
            value: format!("v{commits}").into_bytes(),
        };
        let reply = ask(&mut server, &Request::Transact { ops: vec![put] }, badge);
        assert!(matches!(reply, Reply::Transacted { .. }), "{reply:?}");
    }
    let after = info(&mut server);
    assert!(after.compactions >= 1);
    assert_eq!(after.compactions, server.store().backend().generation());
    assert_eq!(after.last_commit, server.store().last_commit());
    // The count is durable: a restarted server on the same device reports
    // it too (and one more commit, its `Open`).
    let disk = server.into_backend().into_device();
    let (mut server, _) = StorageServer::open(JournalBackend::open(disk).unwrap()).unwrap();
    let reopened = info(&mut server);
    assert_eq!(reopened.compactions, after.compactions);
    assert!(reopened.last_commit > after.last_commit);
    // A backend that never compacts answers 0.
    let (mut server, _) = StorageServer::open(crate::memory::MemoryBackend::new([3; 16])).unwrap();
    assert_eq!(info(&mut server).compactions, 0);
}

#[test]
fn a_sealed_volume_keeps_its_key_off_the_device_and_opens_only_with_its_seal() {
    let (key, seal) = ([9; 16], [0x5c; 16]);
    let (j, formatted) = JournalBackend::open_or_format_sealed(Disk::blank(64), key, seal).unwrap();
    assert!(formatted);
    let disk = j.into_device();
    assert!(
        !disk.bytes.windows(16).any(|w| w == key),
        "the key is nowhere on the device"
    );
    let other_seal = JournalBackend::open_sealed(disk.clone(), [0x5d; 16]);
    assert!(matches!(other_seal, Err(BackendError::Corrupt)));
    assert!(matches!(
        JournalBackend::open(disk.clone()),
        Err(BackendError::Corrupt)
    ));
    let (j, formatted) = JournalBackend::open_or_format_sealed(disk, [1; 16], seal).unwrap();
    assert!(
        !formatted,
        "an existing sealed volume is opened, not formatted"
    );
    assert_eq!(j.cap_key(), SipKey::from_bytes(key));
}

#[test]
fn a_sealed_volume_survives_compaction_and_reopening() {
    let seal = [0x33; 16];
    // Three times more commits than blocks: the journal must compact.
    let disk = Disk::sized(128, 512);
    let journal = JournalBackend::format_sealed(disk, [9; 16], seal).unwrap();
    let (mut s, _) = ObjectStore::open(journal).unwrap();
    s.create(ObjectKind::Map).unwrap();
    s.create(ObjectKind::Log).unwrap();
    s.create(ObjectKind::Blob).unwrap();
    for i in 1..=3 * 128 {
        workload_step(&mut s, i).unwrap();
    }
    let before = dump(&s);
    let disk = s.into_backend().into_device();
    let (reopened, _) =
        ObjectStore::open(JournalBackend::open_sealed(disk, seal).unwrap()).unwrap();
    assert_eq!(dump(&reopened), before);
}
