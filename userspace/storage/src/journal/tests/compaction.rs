//! What compaction keeps: `compact_records` drops exactly what replay does
//! not need, and a checkpoint is only written where it fits with room for
//! the merged `Open` change.

use super::*;

fn rec(seq: u64, changes: Vec<Change>, origin: Option<(u64, u64)>) -> CommitRecord {
    CommitRecord {
        seq: CommitSeq::from_raw(seq),
        changes,
        origin: origin.map(|(task, message)| Origin {
            task,
            message,
            answer: vec![message as u8],
        }),
    }
}

fn create(object: u64) -> Change {
    Change::Create {
        object: ObjectId::from_raw(object),
        kind: ObjectKind::Blob,
        version: VersionId::from_raw(object),
    }
}

fn revoke(object: u64, epoch: u32) -> Change {
    Change::Revoke {
        object: ObjectId::from_raw(object),
        epoch,
    }
}

#[test]
fn nothing_compacts_to_nothing() {
    assert_eq!(compact_records(Vec::new()), Vec::new());
}

#[test]
fn open_changes_merge_into_the_last_record_which_always_stays() {
    let history = vec![
        rec(1, vec![Change::Open { instance: 1 }], None),
        rec(2, vec![create(1)], None),
        rec(3, vec![Change::Open { instance: 3 }], None),
        rec(4, vec![Change::Open { instance: 2 }], None),
        rec(5, vec![], None),
    ];
    assert_eq!(
        compact_records(history),
        vec![
            rec(2, vec![create(1)], None),
            // Empty but last: it keeps the last commit number.
            rec(5, vec![Change::Open { instance: 3 }], None),
        ]
    );
    // Without any `Open`, none is invented, and an empty last record
    // stays as it is.
    let history = vec![rec(1, vec![create(1)], None), rec(2, vec![], None)];
    assert_eq!(compact_records(history.clone()), history);
}

#[test]
fn only_the_last_revocation_of_each_object_stays() {
    let history = vec![
        rec(1, vec![create(1), create(2)], None),
        rec(2, vec![revoke(1, 1)], None),
        rec(3, vec![revoke(2, 1), revoke(1, 2)], None),
        rec(4, vec![create(3)], None),
    ];
    assert_eq!(
        compact_records(history),
        vec![
            rec(1, vec![create(1), create(2)], None),
            rec(3, vec![revoke(2, 1), revoke(1, 2)], None),
            rec(4, vec![create(3)], None),
        ]
    );
}

#[test]
fn only_the_origins_the_store_still_remembers_stay() {
    let extra = 5u64;
    let total = DURABLE_ANSWERS as u64 + extra;
    // Each commit answers a distinct request. The last one answers the
    // first request again after the store forgot it: it is remembered
    // anew and pushes out one more.
    let mut history: Vec<CommitRecord> = (1..=total)
        .map(|i| rec(i, vec![create(i)], Some((7, i))))
        .collect();
    history.push(rec(total + 1, vec![], Some((7, 1))));
    let compacted = compact_records(history.clone());
    assert_eq!(compacted.len(), history.len(), "every creation stays");
    let kept: Vec<bool> = compacted.iter().map(|r| r.origin.is_some()).collect();
    // The oldest `extra + 1` distinct origins were forgotten.
    let forgotten = (extra + 1) as usize;
    assert!(kept[..forgotten].iter().all(|k| !k), "{kept:?}");
    assert!(kept[forgotten..].iter().all(|k| *k));
    // A record left with nothing at all goes, unless it is the last.
    let mut history: Vec<CommitRecord> =
        (1..=total).map(|i| rec(i, vec![], Some((7, i)))).collect();
    history.push(rec(total + 1, vec![], None));
    let compacted = compact_records(history);
    let seqs: Vec<u64> = compacted.iter().map(|r| r.seq.as_raw()).collect();
    let expected: Vec<u64> = (extra + 1..=total + 1).collect();
    assert_eq!(seqs, expected);
}

#[test]
fn compaction_frees_the_blocks_of_dropped_records() {
    let mut j = JournalBackend::format(Disk::new(64), [9; 16]).unwrap();
    for seq in 1..=10 {
        let restart = rec(
            seq,
            vec![Change::Open {
                instance: seq as u32,
            }],
            None,
        );
        j.apply(&restart).unwrap();
    }
    assert_eq!(j.tail(), DATA_START + 10, "a block per frame");
    assert_eq!(j.compact(), Ok(true));
    // Ten frames became one checkpoint block holding one record.
    assert_eq!(j.tail() - j.cp_start, 1);
    let mut j = JournalBackend::open(j.into_device()).unwrap();
    assert_eq!(
        replay(&mut j),
        vec![rec(10, vec![Change::Open { instance: 10 }], None)]
    );
}

#[test]
fn a_checkpoint_needs_room_for_its_header_records_and_slack() {
    let j = JournalBackend::format(Disk::new(64), [9; 16]).unwrap();
    let block = BLOCK as u64;
    let fixed = CHECKPOINT_HEADER as u64 + PACK_SLACK;
    assert_eq!(j.checkpoint_blocks(0), 1);
    assert_eq!(j.checkpoint_blocks(block - fixed), 1, "exactly one block");
    assert_eq!(j.checkpoint_blocks(block - fixed + 1), 2);
    assert_eq!(j.blocks_for(0), 0);
    assert_eq!(j.blocks_for(block), 1);
    assert_eq!(j.blocks_for(block + 1), 2);
}

#[test]
fn a_checkpoint_goes_before_the_live_extent_only_where_it_fits() {
    let mut j = JournalBackend::format(Disk::new(16), [9; 16]).unwrap();
    // Live extent from block 2: nothing fits before it.
    assert_eq!(j.checkpoint_place(1, 5), Some(5));
    assert_eq!(j.checkpoint_place(11, 5), Some(5), "ends on the last block");
    assert_eq!(j.checkpoint_place(12, 5), None);
    // Live extent from block 6: four blocks fit before it, five do not.
    j.cp_start = 6;
    assert_eq!(j.checkpoint_place(4, 10), Some(DATA_START));
    assert_eq!(j.checkpoint_place(5, 10), Some(10));
    assert_eq!(j.checkpoint_place(7, 10), None);
}

/// How many commits of `payload` bytes a 12-block volume takes before it
/// answers `Full`, reopening (as after a restart) after every `reopen`
/// commits; `None`: never.
fn capacity(payload: usize, reopen: Option<u64>) -> u64 {
    let mut j = JournalBackend::format(Disk::new(12), [9; 16]).unwrap();
    let mut seq = 1;
    loop {
        match j.apply(&record(seq, payload)) {
            Ok(()) => {}
            Err(BackendError::Full) => return seq - 1,
            Err(e) => panic!("commit {seq}: {e:?}"),
        }
        if reopen.is_some_and(|n| seq % n == 0) {
            j = JournalBackend::open(j.into_device()).unwrap();
            j.replay(&mut |_| {}).unwrap();
        }
        seq += 1;
    }
}

#[test]
fn a_reopened_journal_holds_exactly_as_much_as_one_never_closed() {
    // Recovery recomputes the packed size of the live records from the
    // checkpoint and the frames: neither more nor less than the running
    // journal counted, so `Full` comes at the same commit.
    for payload in [10, 40] {
        let never = capacity(payload, None);
        assert!(never > 3, "{never}");
        for every in [1, 2, 3, 5] {
            assert_eq!(
                capacity(payload, Some(every)),
                never,
                "{payload} bytes, every {every}"
            );
        }
    }
}

#[test]
fn recovery_counts_the_records_it_replays() {
    let mut j = JournalBackend::format(Disk::new(32), [9; 16]).unwrap();
    for seq in 1..=3 {
        j.apply(&record(seq, 10)).unwrap();
    }
    assert_eq!(j.compact(), Ok(true));
    for seq in 4..=5 {
        j.apply(&record(seq, 10)).unwrap();
    }
    let mut j = JournalBackend::open(j.into_device()).unwrap();
    let mut seen = 0;
    let report = j.replay(&mut |_| seen += 1).unwrap();
    assert_eq!((report.records, seen), (5, 5), "three packed, two framed");
}

/// A volume whose only checkpoint holds `r`; returns the disk and the
/// checkpoint's first byte.
fn checkpointed(r: &CommitRecord) -> (Disk, usize) {
    let mut j = JournalBackend::format(Disk::new(32), [9; 16]).unwrap();
    j.apply(r).unwrap();
    assert_eq!(j.compact(), Ok(true));
    let at = j.cp_start as usize * BLOCK;
    (j.into_device(), at)
}

fn reopened(disk: Disk) -> Result<Vec<CommitRecord>, BackendError> {
    let mut j = JournalBackend::open(disk)?;
    let mut out = Vec::new();
    j.replay(&mut |r| out.push(r))?;
    Ok(out)
}

#[test]
fn a_checkpoint_with_another_magic_generation_or_length_is_corrupt() {
    let r = record(1, 10);
    let (disk, at) = checkpointed(&r);
    assert_eq!(reopened(disk.clone()), Ok(vec![r]));
    // The MAC covers the record bytes; the header fields are checked on
    // their own, each of them.
    let cases: [(&str, usize, &[u8]); 4] = [
        ("magic", 0, b"PGCQ"),
        ("generation", 4, &7u64.to_le_bytes()),
        ("a length past the checkpoint", 20, &1000u32.to_le_bytes()),
        ("the largest length", 20, &u32::MAX.to_le_bytes()),
    ];
    for (what, offset, bytes) in cases {
        let mut bad = disk.clone();
        bad.bytes[at + offset..at + offset + bytes.len()].copy_from_slice(bytes);
        assert_eq!(reopened(bad), Err(BackendError::Corrupt), "{what}");
    }
}

#[test]
fn a_checkpoint_that_exactly_fills_its_blocks_opens() {
    // Find a record whose checkpoint ends on a block boundary.
    let r = (0..4 * BLOCK)
        .map(|payload| record(1, payload))
        .find(|r| {
            let len = 4 + postcard::to_allocvec(r).unwrap().len();
            (CHECKPOINT_HEADER + len).is_multiple_of(BLOCK)
        })
        .unwrap();
    let (disk, at) = checkpointed(&r);
    let len = le_u32(&disk.bytes[at + 20..]) as usize;
    assert!((CHECKPOINT_HEADER + len).is_multiple_of(BLOCK));
    assert_eq!(reopened(disk), Ok(vec![r]));
}

#[test]
fn a_commit_compacts_only_when_that_can_help() {
    let mut j = JournalBackend::format(Disk::new(16), [9; 16]).unwrap();
    for seq in 1..=3 {
        j.apply(&record(seq, 10)).unwrap();
    }
    // Packed behind the frames (nothing fits in front of them).
    assert_eq!(j.compact(), Ok(true));
    assert!(j.cp_start > DATA_START);
    assert_eq!(j.generation(), 1);
    // A commit too large for the device: compacting moves the checkpoint
    // to the front (that frees the rest), once, and the commit is refused.
    let huge = record(4, 16 * BLOCK);
    assert_eq!(j.apply(&huge), Err(BackendError::Full));
    assert_eq!((j.generation(), j.cp_start), (2, DATA_START));
    // Nothing is left to gain: refused again without compacting.
    assert_eq!(j.apply(&huge), Err(BackendError::Full));
    assert_eq!((j.generation(), j.cp_start), (2, DATA_START));
    // Everything is still there, and the journal goes on.
    j.apply(&record(4, 10)).unwrap();
    let mut j = JournalBackend::open(j.into_device()).unwrap();
    let all: Vec<_> = (1..=4).map(|s| record(s, 10)).collect();
    assert_eq!(replay(&mut j), all);
}
