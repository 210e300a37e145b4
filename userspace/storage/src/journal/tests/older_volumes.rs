//! A volume of the previous layout (superblock `PGSTORE2`, one checkpoint
//! and frames) opens, reads back whole, and is moved to the current layout
//! by its first compaction.
//!
//! `pgstore2-volume.img` was written by the journal of that layout: the
//! workload of `workload_step` 1..=51 on a 64-block `Disk` (128-byte
//! blocks), which compacted it twice, so that it holds a checkpoint at
//! block 2 and frames after it (superblock generation 2).

use super::*;

const IMAGE: &[u8] = include_bytes!("pgstore2-volume.img");
const STEPS: u64 = 51;

fn legacy_disk() -> Disk {
    Disk {
        bytes: IMAGE.to_vec(),
        ..Disk::new(IMAGE.len() / BLOCK)
    }
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
    let superblocks = &disk.bytes[..2 * BLOCK];
    assert!(superblocks
        .chunks(BLOCK)
        .any(|block| block.starts_with(SUPER_MAGIC)));
    let s = reopen_store(disk);
    assert_eq!(dump(&s), dump(&fresh));
    assert_eq!(answers(&s, STEPS + 60), answers(&fresh, STEPS + 60));
}

#[test]
fn a_crash_at_any_write_of_the_rewrite_opens_the_old_layout_or_the_new_one() {
    let journal = JournalBackend::open(legacy_disk()).unwrap();
    let (s, _) = ObjectStore::open(journal).unwrap();
    let expected = dump(&s);
    let base = s.into_backend().into_device();
    // Generation 2 is the old layout; 3 (packed) and 4 (settled) the new.
    let mut outcomes = [false; 3];
    'budgets: for budget in 0.. {
        for half in [false, true] {
            let mut j = JournalBackend::open(base.clone()).unwrap();
            j.replay(&mut |_| {}).unwrap();
            j.device_mut().budget = Some(budget);
            j.device_mut().budget_half = half;
            let compacted = j.compact();
            let mut disk = j.into_device();
            disk.budget = None;
            disk.tear = None;
            let j = JournalBackend::open(disk).unwrap();
            let generation = j.generation();
            assert!((2..=4).contains(&generation), "budget={budget} half={half}");
            outcomes[generation as usize - 2] = true;
            let (s, _) = ObjectStore::open(j).unwrap();
            assert_eq!(dump(&s), expected, "budget={budget} half={half}");
            if compacted.is_ok() {
                assert_eq!(generation, 4);
                break 'budgets;
            }
        }
        assert!(budget < 1000);
    }
    assert_eq!(outcomes, [true; 3]);
}
