//! What compaction keeps: packing drops exactly what replay does not
//! need, a segment is packed after the tail and settled at the end of the
//! segment area, and damaged segment headers are refused.

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

/// `history` as one packing keeps it: a first pass notes what is there,
/// a second keeps what replay needs. `whole_history`: the records are all
/// there ever were (packing from the start of the segment area).
fn packed(history: Vec<CommitRecord>, whole_history: bool) -> Vec<CommitRecord> {
    let mut plan = PackPlan::new(whole_history);
    for r in &history {
        plan.note(r);
    }
    history.into_iter().filter_map(|r| plan.pack(r)).collect()
}

#[test]
fn nothing_packs_to_nothing() {
    assert_eq!(packed(Vec::new(), true), Vec::new());
    assert_eq!(packed(Vec::new(), false), Vec::new());
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
        packed(history, false),
        vec![
            rec(2, vec![create(1)], None),
            // Empty but last: it keeps the last commit number.
            rec(5, vec![Change::Open { instance: 3 }], None),
        ]
    );
    // Without any `Open`, none is invented, and an empty last record
    // stays as it is.
    let history = vec![rec(1, vec![create(1)], None), rec(2, vec![], None)];
    assert_eq!(packed(history.clone(), true), history);
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
        packed(history, false),
        vec![
            rec(1, vec![create(1), create(2)], None),
            rec(3, vec![revoke(2, 1), revoke(1, 2)], None),
            rec(4, vec![create(3)], None),
        ]
    );
}

#[test]
fn over_the_whole_history_only_the_origins_the_store_still_remembers_stay() {
    let extra = 5u64;
    let total = DURABLE_ANSWERS as u64 + extra;
    // Each commit answers a distinct request. The last one answers the
    // first request again after the store forgot it: it is remembered
    // anew and pushes out one more.
    let mut history: Vec<CommitRecord> = (1..=total)
        .map(|i| rec(i, vec![create(i)], Some((7, i))))
        .collect();
    history.push(rec(total + 1, vec![], Some((7, 1))));
    let compacted = packed(history.clone(), true);
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
    let compacted = packed(history, true);
    let seqs: Vec<u64> = compacted.iter().map(|r| r.seq.as_raw()).collect();
    let expected: Vec<u64> = (extra + 1..=total + 1).collect();
    assert_eq!(seqs, expected);
}

#[test]
fn over_part_of_the_history_every_origin_stays() {
    // Which answers the store remembers depends on the records before
    // these, which this packing does not see: it drops none.
    let total = DURABLE_ANSWERS as u64 + 5;
    let history: Vec<CommitRecord> = (1..=total).map(|i| rec(i, vec![], Some((7, i)))).collect();
    assert_eq!(packed(history.clone(), false), history);
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
    // Ten frames became one segment block holding one record, settled at
    // the start of the data area; the journal starts right after it.
    assert_eq!(j.segment_end(), DATA_START + 1);
    assert_eq!((j.tail(), j.cp_blocks), (DATA_START + 1, 0));
    let mut j = JournalBackend::open(j.into_device()).unwrap();
    assert_eq!(
        replay(&mut j),
        vec![rec(10, vec![Change::Open { instance: 10 }], None)]
    );
}

#[test]
fn a_segment_needs_room_for_its_header_entries_and_slack() {
    let j = JournalBackend::format(Disk::new(64), [9; 16]).unwrap();
    let block = BLOCK as u64;
    let fixed = SEGMENT_HEADER as u64 + PACK_SLACK;
    assert_eq!(j.segment_blocks(0), 1);
    assert_eq!(j.segment_blocks(block - fixed), 1, "exactly one block");
    assert_eq!(j.segment_blocks(block - fixed + 1), 2);
    assert_eq!(j.blocks_for(0), 0);
    assert_eq!(j.blocks_for(block), 1);
    assert_eq!(j.blocks_for(block + 1), 2);
}

#[test]
fn a_segment_is_packed_at_the_tail_then_settled_at_the_end_of_the_area() {
    let mut j = JournalBackend::format(Disk::new(16), [9; 16]).unwrap();
    for seq in 1..=3 {
        j.apply(&record(seq, 10)).unwrap();
    }
    // Packing writes the new segment after the frames, never over them.
    assert_eq!(j.tail(), DATA_START + 3);
    assert_eq!(j.pack(), Ok(true));
    let blocks = j.cp_blocks;
    assert!(
        (1..3).contains(&blocks),
        "packed denser than frames: {blocks}"
    );
    assert_eq!(j.cp_start, DATA_START + 3);
    assert_eq!((j.segment_end(), j.generation()), (DATA_START, 1));
    assert_eq!(j.tail(), DATA_START + 3 + blocks);
    // The frames are dead now: settling copies the segment over them.
    assert!(j.settleable());
    j.settle().unwrap();
    assert_eq!(j.segment_end(), DATA_START + blocks);
    assert_eq!(
        (j.cp_blocks, j.tail(), j.generation()),
        (0, DATA_START + blocks, 2)
    );
    // The next frames go after the segment area, and their segment after
    // them, never over the area.
    for seq in 4..=6 {
        j.apply(&record(seq, 10)).unwrap();
    }
    assert_eq!(j.pack(), Ok(true));
    assert_eq!(j.cp_start, DATA_START + blocks + 3);
    j.settle().unwrap();
    assert!(j.segment_end() >= DATA_START + blocks);
    let mut j = JournalBackend::open(j.into_device()).unwrap();
    let all: Vec<_> = (1..=6).map(|s| record(s, 10)).collect();
    assert_eq!(replay(&mut j), all);
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

/// A volume whose only segment holds `r`; returns the disk and the
/// segment's first byte.
fn segmented(r: &CommitRecord) -> (Disk, usize) {
    let mut j = JournalBackend::format(Disk::new(32), [9; 16]).unwrap();
    j.apply(r).unwrap();
    assert_eq!(j.compact(), Ok(true));
    assert_eq!(j.cp_blocks, 0, "settled");
    let at = DATA_START as usize * BLOCK;
    (j.into_device(), at)
}

fn reopened(disk: Disk) -> Result<Vec<CommitRecord>, BackendError> {
    let mut j = JournalBackend::open(disk)?;
    let mut out = Vec::new();
    j.replay(&mut |r| out.push(r))?;
    Ok(out)
}

#[test]
fn a_segment_with_another_magic_generation_bounds_or_length_is_corrupt() {
    let r = record(1, 10);
    let (disk, at) = segmented(&r);
    assert_eq!(&disk.bytes[at..at + 4], SEGMENT_MAGIC);
    assert_eq!(reopened(disk.clone()), Ok(vec![r.clone()]));
    // The header's MAC covers the commit numbers and the length; the
    // magic and a generation newer than the volume's are checked on their
    // own, and a length running past the area before the MAC.
    let cases: [(&str, usize, &[u8]); 7] = [
        ("magic", 0, b"PGSQ"),
        ("a newer generation", 4, &7u64.to_le_bytes()),
        ("an older generation", 4, &0u64.to_le_bytes()),
        ("first commit", 12, &0u64.to_le_bytes()),
        ("last commit", 20, &2u64.to_le_bytes()),
        ("a length past the segment area", 28, &1000u64.to_le_bytes()),
        ("the largest length", 28, &u64::MAX.to_le_bytes()),
    ];
    for (what, offset, bytes) in cases {
        let mut bad = disk.clone();
        bad.bytes[at + offset..at + offset + bytes.len()].copy_from_slice(bytes);
        assert_eq!(reopened(bad), Err(BackendError::Corrupt), "{what}");
    }
    // The same segment, whole and verifying, but written for the next
    // generation (which the volume, at 2, has not reached): refused by the
    // generation check alone.
    for (generation, opens) in [(2, true), (3, false)] {
        let mut rewritten = disk.clone();
        let volume = Volume {
            key: SipKey::from_bytes([9; 16]),
            block_size: BLOCK,
            generation,
        };
        let mut writer = SegmentWriter::new(DATA_START, 32, generation);
        writer.push(&volume, &mut rewritten, &r).unwrap();
        writer.finish(&volume, &mut rewritten).unwrap();
        assert_eq!(
            reopened(rewritten).is_ok(),
            opens,
            "generation {generation}"
        );
    }
}

#[test]
fn a_verifying_segment_claiming_commit_0_is_corrupt_not_a_crash() {
    // Commit numbers start at 1. A segment written (with the volume's key,
    // so its MACs verify) as holding commit 0 comes from a broken writer:
    // opening it is refused as corruption, and the storage service lives.
    let (disk, _) = segmented(&record(1, 10));
    let volume = Volume {
        key: SipKey::from_bytes([9; 16]),
        block_size: BLOCK,
        generation: 2,
    };
    let mut forged = disk.clone();
    let mut writer = SegmentWriter::new(DATA_START, 32, 2);
    writer.push(&volume, &mut forged, &record(0, 10)).unwrap();
    writer.finish(&volume, &mut forged).unwrap();
    assert_eq!(reopened(forged), Err(BackendError::Corrupt));
}

#[test]
fn a_segment_that_exactly_fills_its_blocks_opens() {
    // Find a record whose segment ends on a block boundary.
    let r = (0..4 * BLOCK)
        .map(|payload| record(1, payload))
        .find(|r| {
            let len = ENTRY_HEADER + postcard::to_allocvec(r).unwrap().len();
            (SEGMENT_HEADER + len).is_multiple_of(BLOCK)
        })
        .unwrap();
    let (disk, at) = segmented(&r);
    let len = le_u64(&disk.bytes[at + 28..]) as usize;
    assert!((SEGMENT_HEADER + len).is_multiple_of(BLOCK));
    assert_eq!(reopened(disk), Ok(vec![r]));
}

#[test]
fn a_commit_compacts_only_when_that_can_help() {
    let mut j = JournalBackend::format(Disk::new(16), [9; 16]).unwrap();
    for seq in 1..=3 {
        j.apply(&record(seq, 10)).unwrap();
    }
    // A commit too large for the device: compacting packs and settles
    // the frames (that frees their blocks), once, and it is refused.
    let huge = record(4, 16 * BLOCK);
    assert_eq!(j.apply(&huge), Err(BackendError::Full));
    assert_eq!(j.generation(), 2);
    assert!(j.segment_end() < DATA_START + 3, "the frames were packed");
    assert_eq!(j.tail(), j.segment_end());
    // Nothing is left to gain: refused again without compacting.
    assert_eq!(j.apply(&huge), Err(BackendError::Full));
    assert_eq!(j.generation(), 2);
    // Everything is still there, and the journal goes on.
    j.apply(&record(4, 10)).unwrap();
    let mut j = JournalBackend::open(j.into_device()).unwrap();
    let all: Vec<_> = (1..=4).map(|s| record(s, 10)).collect();
    assert_eq!(replay(&mut j), all);
}

#[test]
fn a_segment_writer_writes_nothing_at_or_past_its_end() {
    let volume = Volume {
        key: SipKey::from_bytes([9; 16]),
        block_size: BLOCK,
        generation: 1,
    };
    let mut disk = Disk::new(16);
    let untouched = disk.bytes.clone();
    let (start, end) = (DATA_START, DATA_START + 3);
    let mut writer = SegmentWriter::new(start, end, 1);
    let mut pushed = Ok(());
    for seq in 1..=200 {
        pushed = writer.push(&volume, &mut disk, &record(seq, 100));
        if pushed.is_err() {
            break;
        }
    }
    let finished = pushed.and_then(|()| writer.finish(&volume, &mut disk));
    assert_eq!(finished, Err(BackendError::Full));
    let at = end as usize * BLOCK;
    assert!(disk.bytes[at..] == untouched[at..], "nothing past the end");
    // Exactly as much as fits is taken.
    let mut writer = SegmentWriter::new(start, end, 1);
    writer.push(&volume, &mut disk, &record(1, 100)).unwrap();
    assert_eq!(writer.finish(&volume, &mut disk), Ok(2));
    let mut writer = SegmentWriter::new(start, start + 1, 1);
    writer.push(&volume, &mut disk, &record(1, 10)).unwrap();
    assert_eq!(writer.finish(&volume, &mut disk), Ok(1));
}

#[test]
fn a_packing_that_outgrows_its_room_changes_nothing() {
    // Frames up to two blocks before the end of the device; the bound on
    // the packed size says one block, but the records need more: packing
    // stops at the end of the device, and the journal goes on as before.
    let mut j = JournalBackend::format(Disk::new(64), [9; 16]).unwrap();
    let expected: Vec<CommitRecord> = (1..=6).map(|s| record(s, 60)).collect();
    for r in &expected {
        j.apply(r).unwrap();
    }
    let blocks = j.tail() + 2;
    j.device_mut().bytes.truncate(blocks as usize * BLOCK);
    let before = j.device_mut().bytes.clone();
    j.pack_bytes = 1;
    assert_eq!(j.pack(), Ok(false));
    assert_eq!(j.generation(), 0);
    let used = j.tail() as usize * BLOCK;
    assert!(j.device_mut().bytes[..used] == before[..used]);
    let mut j = JournalBackend::open(j.into_device()).unwrap();
    assert_eq!(replay(&mut j), expected);
}

#[test]
fn a_tail_too_short_to_take_in_the_last_segment_still_packs_without_it() {
    // Packing takes the small last segment of the area in when there is
    // room for both at the tail. When the room after the tail holds the
    // pending records but not that segment too, it packs the records alone
    // and leaves the segment where it is, instead of giving up and leaving
    // the journal full.
    let mut found = 0;
    for frames in 1..24 {
        let mut j = JournalBackend::format(Disk::new(40), [9; 16]).unwrap();
        let expected: Vec<CommitRecord> = (1..=3 + frames).map(|s| record(s, 10)).collect();
        for r in &expected[..3] {
            j.apply(r).unwrap();
        }
        assert_eq!(j.compact(), Ok(true));
        let area_end = j.segment_end();
        for r in &expected[3..] {
            j.apply(r).unwrap();
        }
        assert_eq!(j.segment_end(), area_end, "no compaction in between");
        // The room after the tail: exactly the pending records' segment.
        let count = j.tail() + j.segment_blocks(j.pack_bytes);
        j.device_mut().bytes.truncate(count as usize * BLOCK);
        // (The last segment must be small for the area, which the
        // shortened device makes smaller.)
        if j.merge_start().is_none() || j.tail() + j.pack_blocks(0) <= count {
            continue;
        }
        found += 1;
        assert_eq!(j.pack(), Ok(true), "{frames} frames");
        assert_eq!(j.segment_end(), area_end, "the last segment stays");
        assert!(j.tail() <= count);
        let mut j = JournalBackend::open(j.into_device()).unwrap();
        assert_eq!(replay(&mut j), expected, "{frames} frames");
    }
    assert!(found > 0, "no tail was too short for the last segment");
}

#[test]
fn a_packing_that_exactly_fits_the_dead_blocks_before_the_pending_segment_goes_there() {
    // With no room at the tail, packing may use the dead blocks between
    // the segment area and the pending segment; a packing whose bound
    // needs exactly all of them fits, and the journal goes on instead of
    // answering full.
    let mut found = 0;
    for packed in 1..6 {
        for frames in 1..8 {
            let mut j = JournalBackend::format(Disk::new(40), [9; 16]).unwrap();
            let expected: Vec<CommitRecord> =
                (1..=packed + frames).map(|s| record(s, 10)).collect();
            for r in &expected[..packed as usize] {
                j.apply(r).unwrap();
            }
            assert_eq!(j.pack(), Ok(true));
            let (area_end, pending) = (j.segment_end(), j.cp_start);
            for r in &expected[packed as usize..] {
                j.apply(r).unwrap();
            }
            let count = j.tail();
            j.device_mut().bytes.truncate(count as usize * BLOCK);
            let blocks = j.segment_blocks(j.pack_bytes);
            if area_end + blocks != pending {
                continue;
            }
            found += 1;
            let context = format!("{packed} packed, {frames} frames");
            assert_eq!(j.pack(), Ok(true), "{context}");
            assert!(j.segment_end() > area_end, "{context}: joined the area");
            assert!(j.segment_end() <= pending, "{context}");
            let mut j = JournalBackend::open(j.into_device()).unwrap();
            assert_eq!(replay(&mut j), expected, "{context}");
        }
    }
    assert!(found > 0, "no packing fitted the dead blocks exactly");
}

#[test]
fn full_means_no_compaction_could_make_room() {
    // A commit is refused as `Full` only when compacting, as often as it
    // still changes something, would not make room for it: compacting
    // by hand afterwards and trying again is refused too.
    let mut fulls = 0;
    for blocks in 10..=24 {
        for payload in (1..=400).step_by(3) {
            let mut j = JournalBackend::format(Disk::new(blocks), [9; 16]).unwrap();
            let mut seq = 1;
            let error = loop {
                match j.apply(&record(seq, payload)) {
                    Ok(()) => seq += 1,
                    Err(e) => break e,
                }
                assert!(seq < 10_000, "{blocks} blocks never fill");
            };
            assert_eq!(
                error,
                BackendError::Full,
                "{blocks} blocks, {payload} bytes"
            );
            fulls += 1;
            for _ in 0..3 {
                let generation = j.generation();
                let _ = j.compact();
                assert_eq!(
                    j.apply(&record(seq, payload)),
                    Err(BackendError::Full),
                    "{blocks} blocks, {payload} bytes: commit {seq} fits after compacting"
                );
                if j.generation() == generation {
                    break;
                }
            }
        }
    }
    assert!(fulls > 0);
}

#[test]
fn a_commit_after_a_cut_between_packing_and_settling_settles_to_make_room() {
    // Power lost after the packed segment was switched to but before it
    // was settled: the reopened journal holds a pending segment and no
    // frames. A commit too large for the room after it settles the
    // segment first, which frees the frames' old blocks, and is taken.
    let mut j = JournalBackend::format(Disk::new(20), [9; 16]).unwrap();
    let mut expected: Vec<CommitRecord> = (1..=12).map(|s| record(s, 10)).collect();
    for r in &expected {
        j.apply(r).unwrap();
    }
    assert_eq!(j.pack(), Ok(true));
    assert!(j.settleable());
    let mut j = JournalBackend::open(j.into_device()).unwrap();
    assert_eq!(replay(&mut j), expected);
    let room = 20 - j.tail();
    // The smallest commit whose frame needs one block more than that.
    let frame_blocks =
        |r: &CommitRecord| j.blocks_for((FRAME_HEADER + encode(r).unwrap().len()) as u64);
    let large = (0..)
        .map(|payload| record(13, payload))
        .find(|r| frame_blocks(r) > room)
        .unwrap();
    assert_eq!(j.apply(&large), Ok(()));
    expected.push(large);
    let mut j = JournalBackend::open(j.into_device()).unwrap();
    assert_eq!(replay(&mut j), expected);
}

/// Recomputes the MAC of a segment header, as its writer would have.
fn reseal(volume: &Volume, header: &mut [u8]) {
    let (generation, last) = (le_u64(&header[4..]), le_u64(&header[20..]));
    let mac = volume.mac(SEGMENT_MAGIC, generation, last, &header[12..36]);
    header[36..44].copy_from_slice(&mac.to_le_bytes());
}

#[test]
fn a_segment_whose_entries_do_not_end_where_its_header_says_is_corrupt() {
    // The entries are whole and verify, but the header (its MAC right)
    // says the segment goes on: to a later last commit, or for a few
    // bytes more than the entries take. Commits were lost or the writer
    // was broken: opening it is refused, not read as complete.
    let (disk, at) = segmented(&record(1, 10));
    let volume = Volume {
        key: SipKey::from_bytes([9; 16]),
        block_size: BLOCK,
        generation: 2,
    };
    let length = le_u64(&disk.bytes[at + 28..]);
    let mut resealed = disk.clone();
    reseal(&volume, &mut resealed.bytes[at..at + SEGMENT_HEADER]);
    assert_eq!(
        reopened(resealed).map(|r| r.len()),
        Ok(1),
        "resealing alone changes nothing"
    );
    let cases: [(&str, usize, u64); 3] = [
        ("a later last commit", 20, 2),
        ("one byte more", 28, length + 1),
        (
            "an entry header's length less one more",
            28,
            length + ENTRY_HEADER as u64 - 1,
        ),
    ];
    for (what, offset, value) in cases {
        let mut forged = disk.clone();
        let header = &mut forged.bytes[at..at + SEGMENT_HEADER];
        header[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
        reseal(&volume, header);
        assert_eq!(reopened(forged), Err(BackendError::Corrupt), "{what}");
    }
}

#[test]
fn a_request_answered_twice_keeps_its_latest_answer_across_compaction() {
    // The store remembers a request's latest answer, in the place of its
    // first: compacting the whole history keeps the origin of both
    // commits, so that a retried request still gets the answer it was
    // given last, after a restart as before it.
    let answered = |seq: u64, changes: Vec<Change>, message: u64, answer: u8| CommitRecord {
        origin: Some(Origin {
            task: 7,
            message,
            answer: vec![answer],
        }),
        ..rec(seq, changes, None)
    };
    let history = [
        answered(1, vec![create(1)], 1, 10),
        answered(2, vec![create(2)], 2, 20),
        answered(3, vec![create(3)], 1, 11),
        rec(4, vec![create(4)], None),
    ];
    let mut j = JournalBackend::format(Disk::new(64), [9; 16]).unwrap();
    for r in &history {
        j.apply(r).unwrap();
    }
    let check = |j: JournalBackend<Disk>, when: &str| {
        let (s, _) = ObjectStore::open(j).unwrap();
        assert_eq!(s.durable_answer(7, 1), Some(&[11][..]), "{when}");
        assert_eq!(s.durable_answer(7, 2), Some(&[20][..]), "{when}");
        s.into_backend()
    };
    let mut j = check(JournalBackend::open(j.into_device()).unwrap(), "before");
    assert_eq!(j.compact(), Ok(true));
    assert_eq!(j.segment_end(), j.tail(), "the whole history was packed");
    check(
        JournalBackend::open(j.into_device()).unwrap(),
        "after compacting",
    );
}

#[test]
fn compacting_the_whole_history_drops_the_answers_the_store_forgot_and_no_others() {
    // The store remembers the last DURABLE_ANSWERS answers. The first
    // compaction packs every record there is, so it can tell which answers
    // are forgotten and free their space; a later one, packing only what
    // came after the segment area, cannot, and keeps every answer.
    let extra = 5u64;
    let total = DURABLE_ANSWERS as u64 + extra;
    // A block per frame, and room to pack them, on a device small enough
    // that the packed segment is too large to be merged again.
    let mut j = JournalBackend::format(Disk::new(total as usize + 100), [9; 16]).unwrap();
    let history: Vec<CommitRecord> = (1..=total)
        .map(|i| rec(i, vec![create(i)], Some((7, i))))
        .collect();
    for r in &history {
        j.apply(r).unwrap();
    }
    assert_eq!(j.generation(), 0, "not compacted before every record is in");
    assert_eq!(j.compact(), Ok(true));
    let mut j = JournalBackend::open(j.into_device()).unwrap();
    let kept: Vec<bool> = replay(&mut j).iter().map(|r| r.origin.is_some()).collect();
    assert_eq!(kept.len(), total as usize);
    assert!(
        kept[..extra as usize].iter().all(|k| !k),
        "forgotten: dropped"
    );
    assert!(
        kept[extra as usize..].iter().all(|k| *k),
        "remembered: kept"
    );
    // The next records, packed after the (large) area without it, keep
    // their answers, though the store will forget the oldest of them.
    let later: Vec<CommitRecord> = (total + 1..=total + extra)
        .map(|i| rec(i, vec![create(i)], Some((8, i))))
        .collect();
    for r in &later {
        j.apply(r).unwrap();
    }
    let area = j.segment_end();
    assert_eq!(j.merge_start(), None, "the area's segment is not merged");
    assert_eq!(j.compact(), Ok(true));
    assert!(j.segment_end() > area);
    let mut j = JournalBackend::open(j.into_device()).unwrap();
    let replayed = replay(&mut j);
    assert_eq!(&replayed[total as usize..], &later[..]);
}

#[test]
fn compacting_with_nothing_to_compact_writes_nothing() {
    // Once everything is in the segment area, compacting again has nothing
    // to move: it succeeds without a write (no new generation, no wear),
    // and the journal goes on.
    let mut j = JournalBackend::format(Disk::new(32), [9; 16]).unwrap();
    for seq in 1..=3 {
        j.apply(&record(seq, 10)).unwrap();
    }
    assert_eq!(j.compact(), Ok(true));
    assert_eq!(j.tail(), j.segment_end(), "everything is in the area");
    let (generation, before) = (j.generation(), j.device_mut().bytes.clone());
    assert_eq!(j.compact(), Ok(true));
    assert_eq!(j.generation(), generation);
    assert!(j.device_mut().bytes == before, "nothing was written");
    j.apply(&record(4, 10)).unwrap();
    let mut j = JournalBackend::open(j.into_device()).unwrap();
    let all: Vec<_> = (1..=4).map(|s| record(s, 10)).collect();
    assert_eq!(replay(&mut j), all);
}

#[test]
fn no_entry_past_the_last_commit_its_segment_names_is_handed_over() {
    // A segment's header (its MAC right) says commit 1 is its last, but a
    // second entry follows: replay refuses it as corrupt before handing
    // that entry to the store, not after.
    let mut j = JournalBackend::format(Disk::new(32), [9; 16]).unwrap();
    let records = [record(1, 10), record(2, 10)];
    for r in &records {
        j.apply(r).unwrap();
    }
    assert_eq!(j.compact(), Ok(true));
    let volume = j.volume();
    let mut disk = j.into_device();
    let at = DATA_START as usize * BLOCK;
    let header = &mut disk.bytes[at..at + SEGMENT_HEADER];
    assert_eq!((le_u64(&header[12..]), le_u64(&header[20..])), (1, 2));
    header[20..28].copy_from_slice(&1u64.to_le_bytes());
    reseal(&volume, header);
    let mut j = JournalBackend::open(disk).unwrap();
    let mut handed = Vec::new();
    assert_eq!(
        j.replay(&mut |r| handed.push(r)).err(),
        Some(BackendError::Corrupt)
    );
    assert_eq!(handed, records[..1]);
}
