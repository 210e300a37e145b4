//! Volumes of the previous layout (superblock `PGSTORE2`, or `PGSTORE3`
//! once sealed: one checkpoint and frames) open, read back whole, and are
//! moved to the current layout, sealed, by their first compaction; one
//! too full for that stays readable and refuses what needs it with `Full`.
//!
//! `pgstore2-volume.img` was written by the journal of that layout: the
//! workload of `workload_step` 1..=51 on a 64-block `Disk` (128-byte
//! blocks), which compacted it twice, so that it holds a checkpoint at
//! block 2 and frames after it (superblock generation 2).
//!
//! `pgstore3-tiny.img` and `pgstore3-full.img` were written by the sealed
//! journal of that layout on 40 blocks of 64 bytes (the smallest block),
//! with key [`TINY_KEY`] and seal [`TINY_SEAL`], from `record(seq, 10)`
//! for seq 1, 2, …: the first up to the commit after its second
//! compaction (checkpoint at block 2, frames after it), the second until
//! that journal answered `Full` (a checkpoint of 19 blocks at block 2,
//! frames to block 21: the segment packing it all fits neither after the
//! tail nor before the checkpoint).

use super::*;

const IMAGE: &[u8] = include_bytes!("pgstore2-volume.img");
const STEPS: u64 = 51;
const TINY_IMAGE: &[u8] = include_bytes!("pgstore3-tiny.img");
const TINY_RECORDS: u64 = 28;
const FULL_IMAGE: &[u8] = include_bytes!("pgstore3-full.img");
const FULL_RECORDS: u64 = 43;
const TINY_KEY: [u8; 16] = [0x77; 16];
const TINY_SEAL: [u8; 16] = [0x3C; 16];

fn image_disk(image: &[u8], block: usize) -> Disk {
    Disk {
        bytes: image.to_vec(),
        ..Disk::sized(image.len() / block, block)
    }
}

fn legacy_disk() -> Disk {
    image_disk(IMAGE, BLOCK)
}

fn superblock_magics(disk: &Disk) -> Vec<&[u8]> {
    disk.bytes
        .chunks(disk.block)
        .take(2)
        .map(|b| &b[..8])
        .collect()
}

#[test]
fn a_volume_of_the_previous_layout_opens_reads_back_and_is_rewritten_in_the_current_one() {
    assert!(IMAGE.starts_with(b"PGSTORE2") || IMAGE[BLOCK..].starts_with(b"PGSTORE2"));
    // The same history, written by this version.
    let mut fresh = workload_store(Disk::new(64));
    for i in 1..=STEPS {
        workload_step(&mut fresh, i).unwrap();
    }
    let journal = JournalBackend::open(legacy_disk()).unwrap();
    assert_eq!(journal.generation(), 2);
    let (mut s, report) = ObjectStore::open(journal).unwrap();
    assert!(report.records > 0);
    assert_eq!(dump(&s), dump(&fresh));
    assert_eq!(answers(&s, STEPS), answers(&fresh, STEPS));
    // It goes on, and its first compaction moves it to the current layout.
    for i in STEPS + 1..=STEPS + 60 {
        workload_step(&mut s, i).unwrap();
        workload_step(&mut fresh, i).unwrap();
    }
    assert!(s.backend().generation() > 2, "{:?}", s.backend());
    let disk = s.into_backend().into_device();
    assert_eq!(superblock_magics(&disk), [SUPER_MAGIC, SUPER_MAGIC]);
    let s = reopen_store(disk);
    assert_eq!(dump(&s), dump(&fresh));
    assert_eq!(answers(&s, STEPS + 60), answers(&fresh, STEPS + 60));
}

/// A crash at every write of the first compaction of `disk` (a volume of
/// the previous layout at generation `old`) opens at a generation in
/// `old..=old + 2` with the same contents (as `view` sees them), and every
/// one of them is reached; the finished compaction reaches `old + 2`, with
/// both superblock copies in the current layout.
fn a_crash_at_any_write_of_the_upgrade_keeps_everything<T: PartialEq + core::fmt::Debug>(
    base: Disk,
    seal: [u8; 16],
    old: u64,
    view: impl Fn(JournalBackend<Disk>) -> T,
) {
    let expected = view(JournalBackend::open_sealed(base.clone(), seal).unwrap());
    let mut outcomes = [false; 3];
    'budgets: for budget in 0.. {
        for half in [false, true] {
            let mut j = JournalBackend::open_sealed(base.clone(), seal).unwrap();
            j.replay(&mut |_| {}).unwrap();
            j.device_mut().budget = Some(budget);
            j.device_mut().budget_half = half;
            let compacted = j.compact();
            let mut disk = j.into_device();
            disk.budget = None;
            disk.tear = None;
            let j = JournalBackend::open_sealed(disk.clone(), seal).unwrap();
            let generation = j.generation();
            assert!(
                (old..=old + 2).contains(&generation),
                "budget={budget} half={half}"
            );
            outcomes[(generation - old) as usize] = true;
            assert_eq!(view(j), expected, "budget={budget} half={half}");
            if compacted.is_ok() {
                assert_eq!(compacted, Ok(true));
                assert_eq!(generation, old + 2);
                assert_eq!(superblock_magics(&disk), [SUPER_MAGIC, SUPER_MAGIC]);
                break 'budgets;
            }
        }
        assert!(budget < 1000);
    }
    assert_eq!(outcomes, [true; 3]);
}

fn store_view(j: JournalBackend<Disk>) -> Vec<Seen> {
    dump(&ObjectStore::open(j).unwrap().0)
}

fn journal_view(mut j: JournalBackend<Disk>) -> Vec<CommitRecord> {
    replay(&mut j)
}

#[test]
fn a_crash_at_any_write_of_the_rewrite_opens_the_old_layout_or_the_new_one() {
    // Packed at the tail (3), then settled (4).
    let (s, _) = ObjectStore::open(JournalBackend::open(legacy_disk()).unwrap()).unwrap();
    let disk = s.into_backend().into_device();
    a_crash_at_any_write_of_the_upgrade_keeps_everything(disk, NO_SEAL, 2, store_view);
}

#[test]
fn a_crash_at_any_write_of_a_rewrite_before_the_checkpoint_opens_the_old_layout_or_the_new_one() {
    // `layout-pgstore2.img` has no room after its tail: packed into the
    // dead blocks before the checkpoint (2), then the other superblock
    // copy rewritten in the current layout (3).
    let disk = image_disk(include_bytes!("layout-pgstore2.img"), BLOCK);
    let mut j = JournalBackend::open(disk.clone()).unwrap();
    j.replay(&mut |_| {}).unwrap();
    assert!(j.tail() + j.segment_blocks(j.pack_bytes) > j.device_mut().block_count());
    a_crash_at_any_write_of_the_upgrade_keeps_everything(disk, [0x11; 16], 1, |mut j| {
        packed_view(&replay(&mut j))
    });
}

fn tiny_records(last: u64) -> Vec<CommitRecord> {
    (1..=last).map(|seq| record(seq, 10)).collect()
}

#[test]
fn a_sealed_volume_of_the_previous_layout_on_the_smallest_blocks_upgrades_and_stays_sealed() {
    let disk = image_disk(TINY_IMAGE, MIN_BLOCK_SIZE);
    assert_eq!(superblock_magics(&disk), [SEALED_LEGACY_SUPER_MAGIC; 2]);
    for seal in [NO_SEAL, [0x3D; 16]] {
        assert_eq!(
            JournalBackend::open_sealed(disk.clone(), seal).err(),
            Some(BackendError::Corrupt),
            "only its seal opens it"
        );
    }
    let mut j = JournalBackend::open_sealed(disk, TINY_SEAL).unwrap();
    assert_eq!(j.generation(), 2);
    assert_eq!(j.cap_key(), SipKey::from_bytes(TINY_KEY));
    assert_eq!(replay(&mut j), tiny_records(TINY_RECORDS));
    // It upgrades and goes on until the device is full.
    let mut last = TINY_RECORDS;
    while j.apply(&record(last + 1, 10)).is_ok() {
        last += 1;
    }
    // More than the previous layout held on the same device.
    assert!(last > FULL_RECORDS, "{last}");
    let disk = j.into_device();
    assert_eq!(superblock_magics(&disk), [SUPER_MAGIC, SUPER_MAGIC]);
    assert!(!disk.bytes.windows(16).any(|w| w == TINY_KEY));
    let mut j = JournalBackend::open_sealed(disk.clone(), TINY_SEAL).unwrap();
    assert_eq!(replay(&mut j), tiny_records(last));
    assert_eq!(
        JournalBackend::open(disk).err(),
        Some(BackendError::Corrupt)
    );
}

#[test]
fn a_crash_at_any_write_of_the_upgrade_of_a_sealed_volume_on_the_smallest_blocks_keeps_everything()
{
    // Packed at the tail (3); the packed segment is larger than the
    // checkpoint and frames it replaces (segment entries carry a MAC), so
    // it cannot settle: the other superblock copy is rewritten (4).
    let disk = image_disk(TINY_IMAGE, MIN_BLOCK_SIZE);
    a_crash_at_any_write_of_the_upgrade_keeps_everything(disk, TINY_SEAL, 2, journal_view);
}

#[test]
fn a_volume_too_full_to_upgrade_stays_readable_and_refuses_commits_with_full() {
    let disk = image_disk(FULL_IMAGE, MIN_BLOCK_SIZE);
    let mut j = JournalBackend::open_sealed(disk, TINY_SEAL).unwrap();
    let mut expected = tiny_records(FULL_RECORDS);
    assert_eq!(replay(&mut j), expected);
    let mut seq = FULL_RECORDS + 1;
    assert_eq!(j.apply(&record(seq, 10)), Err(BackendError::Full));
    assert_eq!(j.compact(), Ok(false), "no room for the packed segment");
    let mut disk = j.into_device();
    assert_eq!(disk.bytes, FULL_IMAGE, "nothing was rewritten");
    // Restarts still go on (their `Open` records are frames in the old
    // journal), everything reads back, and a commit is refused with `Full`.
    for _ in 0..3 {
        let mut j = JournalBackend::open_sealed(disk, TINY_SEAL).unwrap();
        assert_eq!(replay(&mut j), expected);
        let open = CommitRecord {
            seq: CommitSeq::from_raw(seq),
            changes: vec![Change::Open {
                instance: seq as u32,
            }],
            origin: None,
        };
        j.apply(&open).unwrap();
        expected.push(open);
        seq += 1;
        assert_eq!(j.apply(&record(seq, 10)), Err(BackendError::Full));
        disk = j.into_device();
        assert_eq!(superblock_magics(&disk), [SEALED_LEGACY_SUPER_MAGIC; 2]);
    }
    let mut j = JournalBackend::open_sealed(disk, TINY_SEAL).unwrap();
    assert_eq!(replay(&mut j), expected);
}

#[test]
fn a_checkpoint_of_the_previous_layout_with_a_damaged_magic_or_generation_is_corrupt() {
    // The checkpoint's MAC covers its records, not its magic, and is
    // computed with the volume's generation, not read from the block:
    // those two fields are checked on their own. The superblock points at
    // the checkpoint only once it was flushed, so either damaged is
    // corruption, not a checkpoint to read.
    let journal = JournalBackend::open(legacy_disk()).unwrap();
    let (at, generation) = (journal.cp_start as usize * BLOCK, journal.generation());
    assert!(journal.cp_blocks > 0, "the image holds a checkpoint");
    let disk = journal.into_device();
    assert_eq!(&disk.bytes[at..at + 4], LEGACY_CHECKPOINT_MAGIC);
    assert_eq!(le_u64(&disk.bytes[at + 4..]), generation);
    let cases: [(&str, usize, &[u8]); 3] = [
        ("magic", 0, b"PGCQ"),
        ("an older generation", 4, &(generation - 1).to_le_bytes()),
        ("a newer generation", 4, &(generation + 1).to_le_bytes()),
    ];
    for (what, offset, bytes) in cases {
        let mut bad = disk.clone();
        bad.bytes[at + offset..at + offset + bytes.len()].copy_from_slice(bytes);
        let opened = JournalBackend::open(bad).and_then(|mut j| j.replay(&mut |_| {}));
        assert_eq!(opened.err(), Some(BackendError::Corrupt), "{what}");
    }
}

#[test]
fn a_checkpoint_of_the_previous_layout_that_exactly_fills_its_blocks_opens() {
    // The image's checkpoint rewritten, as that layout's writer would
    // have, to hold one record whose entry ends on the last byte of the
    // checkpoint's blocks.
    let j = JournalBackend::open(legacy_disk()).unwrap();
    let (start, blocks, generation, volume) = (j.cp_start, j.cp_blocks, j.generation(), j.volume());
    let mut disk = j.into_device();
    let at = start as usize * BLOCK;
    let last = le_u64(&disk.bytes[at + 12..]);
    let room = blocks as usize * BLOCK - LEGACY_CHECKPOINT_HEADER - 4;
    let filling = (0..)
        .map(|payload| record(last, payload))
        .find(|r| encode(r).unwrap().len() >= room)
        .unwrap();
    let encoded = encode(&filling).unwrap();
    assert_eq!(encoded.len(), room, "a record that fills the checkpoint");
    let mut body = (encoded.len() as u32).to_le_bytes().to_vec();
    body.extend_from_slice(&encoded);
    let mac = volume.mac(LEGACY_CHECKPOINT_MAGIC, generation, last, &body);
    let checkpoint = &mut disk.bytes[at..at + blocks as usize * BLOCK];
    checkpoint[..4].copy_from_slice(LEGACY_CHECKPOINT_MAGIC);
    checkpoint[4..12].copy_from_slice(&generation.to_le_bytes());
    checkpoint[12..20].copy_from_slice(&last.to_le_bytes());
    checkpoint[20..24].copy_from_slice(&(body.len() as u32).to_le_bytes());
    checkpoint[24..32].copy_from_slice(&mac.to_le_bytes());
    checkpoint[32..].copy_from_slice(&body);
    let mut j = JournalBackend::open(disk).unwrap();
    let replayed = replay(&mut j);
    assert_eq!(replayed.first(), Some(&filling));
    assert!(replayed.len() > 1, "the frames after it follow");
}
