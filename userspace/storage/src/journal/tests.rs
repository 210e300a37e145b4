use alloc::vec;
use alloc::vec::Vec;
use pandagen_hal::{BlockDevice, BlockError};

use super::*;
use crate::ids::{ObjectId, VersionId};
use crate::object::ObjectKind;
use crate::record::Change;
use crate::store::ObjectStore;
use crate::transaction::TransactionalStorage;

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
    fn block_size(&self) -> usize {
        self.block
    }

    fn block_count(&self) -> u64 {
        (self.bytes.len() / self.block) as u64
    }

    fn read_blocks(&mut self, start: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let at = start as usize * self.block;
        let src = self
            .bytes
            .get(at..at + buf.len())
            .ok_or(BlockError::OutOfRange)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_blocks(&mut self, start: u64, buf: &[u8]) -> Result<(), BlockError> {
        let block = self.block;
        let at = start as usize * block;
        if at + buf.len() > self.bytes.len() {
            return Err(BlockError::OutOfRange);
        }
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

fn replay(j: &mut JournalBackend<Disk>) -> Vec<CommitRecord> {
    let mut out = Vec::new();
    j.replay(&mut |r| out.push(r)).unwrap();
    out
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

#[test]
fn a_commit_reported_as_failed_is_not_replayed() {
    let mut j = JournalBackend::format(Disk::new(64), [9; 16]).unwrap();
    j.apply(&record(1, 10)).unwrap();
    let mut disk = j.into_device();
    disk.fail_flush = true;
    let mut j = JournalBackend::open(disk).unwrap();
    replay(&mut j);
    assert_eq!(j.apply(&record(2, 10)), Err(BackendError::Io));
    let mut disk = j.into_device();
    disk.fail_flush = false;
    let mut j = JournalBackend::open(disk).unwrap();
    assert_eq!(replay(&mut j), vec![record(1, 10)]);
}

#[test]
fn a_full_device_refuses_cleanly() {
    // Two superblocks and three data blocks.
    let mut j = JournalBackend::format(Disk::new(5), [9; 16]).unwrap();
    j.apply(&record(1, 10)).unwrap();
    assert_eq!(j.apply(&record(2, 1000)), Err(BackendError::Full));
    let mut seq = 2;
    while j.apply(&record(seq, 10)).is_ok() {
        seq += 1;
    }
    // Compaction keeps a one-block frame per data block (the space to write
    // the next checkpoint stays free).
    assert!(seq > 3, "{seq}");
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
