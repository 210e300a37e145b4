//! Journal frames: a length field that is torn, oversized or runs past the
//! device ends the journal there; a frame that ends exactly at the end of
//! the device is replayed.

use super::*;

/// The block where the frame of the `n`-th commit (from 0) starts, when
/// every commit before it took `blocks` blocks.
fn frame_at(n: u64, blocks: u64) -> usize {
    (DATA_START + n * blocks) as usize * BLOCK
}

fn set_len(disk: &mut Disk, frame: usize, len: u32) {
    disk.bytes[frame + 12..frame + 16].copy_from_slice(&len.to_le_bytes());
}

fn two_commits() -> Disk {
    let mut j = JournalBackend::format(Disk::new(32), [9; 16]).unwrap();
    j.apply(&record(1, 10)).unwrap();
    j.apply(&record(2, 10)).unwrap();
    assert_eq!(j.tail(), DATA_START + 2, "one block each");
    j.into_device()
}

#[test]
fn a_frame_length_that_is_torn_or_runs_past_the_device_ends_the_journal() {
    let total = 32 * BLOCK as u32;
    let good = postcard::to_allocvec(&record(2, 10)).unwrap().len() as u32;
    for len in [
        0,
        good - 1,
        good + 1,
        // Past the end of the device by one block, by far, and the most a
        // length can say.
        total - (frame_at(1, 1) as u32) - FRAME_HEADER as u32 + 1,
        total,
        u32::MAX,
    ] {
        let mut disk = two_commits();
        set_len(&mut disk, frame_at(1, 1), len);
        let mut j = JournalBackend::open(disk).unwrap();
        assert_eq!(replay(&mut j), vec![record(1, 10)], "len {len}");
        // The journal goes on over the bad frame.
        assert_eq!(j.tail(), DATA_START + 1, "len {len}");
        j.apply(&record(2, 20)).unwrap();
        let mut j = JournalBackend::open(j.into_device()).unwrap();
        assert_eq!(replay(&mut j), vec![record(1, 10), record(2, 20)]);
    }
}

#[test]
fn a_frame_ending_on_the_last_block_is_replayed() {
    // Fill the device: ordinary commits until refused, then the restart
    // records a full store may still write, up to the very last block.
    const BLOCKS: u64 = 8;
    let mut j = JournalBackend::format(Disk::new(BLOCKS as usize), [9; 16]).unwrap();
    let mut seq = 1;
    while j.apply(&record(seq, 10)).is_ok() {
        seq += 1;
    }
    let open = |seq: u64| CommitRecord {
        seq: CommitSeq::from_raw(seq),
        changes: vec![Change::Open {
            instance: seq as u32,
        }],
        origin: None,
    };
    while j.apply(&open(seq)).is_ok() {
        seq += 1;
    }
    assert_eq!(j.tail(), BLOCKS, "the last frame ends the device");
    let last = CommitSeq::from_raw(seq - 1);
    let mut j = JournalBackend::open(j.into_device()).unwrap();
    let replayed = replay(&mut j);
    assert_eq!(replayed.last().map(|r| r.seq), Some(last));
    assert_eq!(j.tail(), BLOCKS);
    assert_eq!(j.apply(&open(seq)), Err(BackendError::Full));
}

#[test]
fn a_frame_spanning_blocks_is_read_whole() {
    // 500 bytes take several blocks; each of them is part of the MAC.
    let mut j = JournalBackend::format(Disk::new(32), [9; 16]).unwrap();
    j.apply(&record(1, 500)).unwrap();
    let blocks = j.tail() - DATA_START;
    assert!(blocks > 2, "{blocks}");
    j.apply(&record(2, 10)).unwrap();
    let disk = j.into_device();
    let mut j = JournalBackend::open(disk.clone()).unwrap();
    assert_eq!(replay(&mut j), vec![record(1, 500), record(2, 10)]);
    // Damage to the record's last byte, in the frame's last block, voids
    // it (and what follows).
    let len = postcard::to_allocvec(&record(1, 500)).unwrap().len();
    let last_byte = frame_at(0, 1) + FRAME_HEADER + len - 1;
    assert_eq!(last_byte / BLOCK, (DATA_START + blocks - 1) as usize);
    let mut damaged = disk;
    damaged.bytes[last_byte] ^= 1;
    let mut j = JournalBackend::open(damaged).unwrap();
    assert_eq!(replay(&mut j), vec![]);
}

#[test]
fn a_frame_spanning_blocks_deep_in_the_journal_is_replayed() {
    // A large frame late on the device: its blocks are checked against
    // what is left after it, not against anything smaller.
    let mut j = JournalBackend::format(Disk::new(32), [9; 16]).unwrap();
    let mut expected: Vec<CommitRecord> = (1..=10).map(|s| record(s, 10)).collect();
    for r in &expected {
        j.apply(r).unwrap();
    }
    expected.push(record(11, 600));
    j.apply(&expected[10]).unwrap();
    let at = DATA_START + 10;
    assert!(j.tail() - at > 4, "{} blocks", j.tail() - at);
    let mut j = JournalBackend::open(j.into_device()).unwrap();
    assert_eq!(replay(&mut j), expected);
}
