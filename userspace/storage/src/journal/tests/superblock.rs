//! The superblock pair: a copy whose checksum, magic, block size, extent
//! or slot is wrong is never used, and the newest valid copy wins.

use super::*;

/// A volume with one commit, compacted once (generation 1 in block 1),
/// then one more commit; generation 0 stays valid in block 0.
fn compacted() -> Disk {
    let mut j = JournalBackend::format(Disk::new(32), [9; 16]).unwrap();
    j.apply(&record(1, 10)).unwrap();
    assert_eq!(j.compact(), Ok(true));
    j.apply(&record(2, 10)).unwrap();
    assert_eq!(j.generation(), 1);
    j.into_device()
}

fn opened(disk: Disk) -> Result<(u64, Vec<CommitRecord>), BackendError> {
    let mut j = JournalBackend::open(disk)?;
    let mut out = Vec::new();
    j.replay(&mut |r| out.push(r))?;
    Ok((j.generation(), out))
}

fn superblock(disk: &mut Disk, slot: usize) -> &mut [u8] {
    let block = disk.block;
    &mut disk.bytes[slot * block..(slot + 1) * block]
}

#[test]
fn a_change_to_any_checksummed_byte_voids_the_only_superblock() {
    let fresh = JournalBackend::format(Disk::new(16), [9; 16])
        .unwrap()
        .into_device();
    assert!(opened(fresh.clone()).is_ok());
    // Magic, block size, key, generation, checkpoint start and length, and
    // the checksum itself.
    for offset in [0, 7, 8, 12, 27, 29, 36, 44, SUPER_LEN, SUPER_LEN + 7] {
        let mut disk = fresh.clone();
        superblock(&mut disk, 0)[offset] ^= 0x02;
        assert_eq!(
            opened(disk).err(),
            Some(BackendError::Corrupt),
            "byte {offset}"
        );
    }
    // Bytes past the checksum are not part of the superblock.
    let mut disk = fresh;
    superblock(&mut disk, 0)[SUPER_LEN + 8] ^= 0x02;
    assert!(opened(disk).is_ok());
}

#[test]
fn the_newest_valid_copy_wins_and_a_damaged_one_falls_back_to_the_older() {
    let disk = compacted();
    assert_eq!(
        opened(disk.clone()),
        Ok((1, vec![record(1, 10), record(2, 10)]))
    );
    // Generation 1 damaged: generation 0, whose extent the compaction left
    // untouched, opens with what it held.
    let mut damaged = disk.clone();
    superblock(&mut damaged, 1)[12] ^= 1;
    assert_eq!(opened(damaged), Ok((0, vec![record(1, 10)])));
    // Both damaged: nothing to open.
    let mut both = disk;
    superblock(&mut both, 0)[12] ^= 1;
    superblock(&mut both, 1)[12] ^= 1;
    assert_eq!(opened(both), Err(BackendError::Corrupt));
}

#[test]
fn a_valid_superblock_in_the_other_slot_is_not_used() {
    // Generation g lives in block g % 2; a copy of generation 1 in block 0
    // (with block 1 unreadable) is not a superblock.
    let mut disk = compacted();
    let newest = superblock(&mut disk, 1).to_vec();
    superblock(&mut disk, 0).copy_from_slice(&newest);
    superblock(&mut disk, 1).fill(0);
    assert_eq!(opened(disk), Err(BackendError::Corrupt));
}

#[test]
fn a_checkpoint_extent_outside_the_data_area_is_refused() {
    let key = [3; 16];
    let blocks = 16u64;
    let write = |cp_start: u64, cp_blocks: u64| {
        let mut disk = Disk::new(blocks as usize);
        let sb = Superblock {
            key,
            generation: 0,
            cp_start,
            cp_blocks,
        };
        superblock(&mut disk, 0).copy_from_slice(&sb.encode(BLOCK));
        disk
    };
    // Over a superblock, past the end, or wrapping around.
    for (start, len) in [(1, 0), (0, 1), (blocks, 1), (2, blocks - 1), (u64::MAX, 2)] {
        assert_eq!(
            JournalBackend::open(write(start, len)).err(),
            Some(BackendError::Corrupt),
            "{start}+{len}"
        );
    }
    // Exactly the data area: accepted (the checkpoint is then read, and
    // this one, never written, does not verify).
    let mut j = JournalBackend::open(write(DATA_START, blocks - DATA_START)).unwrap();
    assert_eq!(j.replay(&mut |_| {}), Err(BackendError::Corrupt));
    // No checkpoint at the very end: an empty volume.
    assert_eq!(opened(write(blocks, 0)), Ok((0, vec![])));
}

#[test]
fn format_and_open_take_the_smallest_devices_exactly() {
    // Two superblocks and one data block; a minimum-size block.
    let smallest = Disk::new(DATA_START as usize + 1);
    assert!(JournalBackend::format(smallest.clone(), [1; 16]).is_ok());
    let tiny_blocks = Disk::sized(8, MIN_BLOCK_SIZE);
    let j = JournalBackend::format(tiny_blocks, [1; 16]).unwrap();
    assert!(opened(j.into_device()).is_ok());
    let formatted = JournalBackend::format(smallest, [1; 16])
        .unwrap()
        .into_device();
    assert_eq!(opened(formatted), Ok((0, vec![])));
    let (_, fresh) = JournalBackend::open_or_format(Disk::blank(3), [1; 16]).unwrap();
    assert!(fresh);

    // One block fewer, one byte less per block: refused, by every entry.
    let few = || Disk::new(DATA_START as usize);
    let narrow = || Disk::sized(8, MIN_BLOCK_SIZE - 1);
    for disk in [few(), narrow()] {
        assert_eq!(
            JournalBackend::format(disk.clone(), [1; 16]).err(),
            Some(BackendError::Full)
        );
        assert_eq!(
            JournalBackend::open(disk.clone()).err(),
            Some(BackendError::Corrupt)
        );
        assert_eq!(
            JournalBackend::open_or_format(disk, [1; 16]).err(),
            Some(BackendError::Full)
        );
    }
}

#[test]
fn a_checksummed_superblock_of_another_format_or_block_size_is_refused() {
    // Well-formed and correctly checksummed, but not this format: an older
    // magic, or written for another block size.
    let reseal = |block: &mut [u8]| {
        let sum = superblock_sum(&block[..SUPER_LEN]);
        block[SUPER_LEN..SUPER_LEN + 8].copy_from_slice(&sum.to_le_bytes());
    };
    let fresh = JournalBackend::format(Disk::new(16), [9; 16])
        .unwrap()
        .into_device();
    let mut resealed = fresh.clone();
    reseal(superblock(&mut resealed, 0));
    assert!(opened(resealed).is_ok(), "resealing alone changes nothing");

    let mut old_format = fresh.clone();
    let block = superblock(&mut old_format, 0);
    block[..8].copy_from_slice(b"PGSTORE1");
    reseal(block);
    assert_eq!(opened(old_format), Err(BackendError::Corrupt));

    let mut other_size = fresh;
    let block = superblock(&mut other_size, 0);
    block[8..12].copy_from_slice(&(2 * BLOCK as u32).to_le_bytes());
    reseal(block);
    assert_eq!(opened(other_size), Err(BackendError::Corrupt));
}

#[test]
fn a_blank_device_of_minimum_block_size_is_formatted() {
    let blank = Disk {
        bytes: vec![0; 8 * MIN_BLOCK_SIZE],
        ..Disk::sized(8, MIN_BLOCK_SIZE)
    };
    let (mut j, formatted) = JournalBackend::open_or_format(blank, [2; 16]).unwrap();
    assert!(formatted);
    assert!(replay(&mut j).is_empty());
}

#[test]
fn a_volume_cut_short_below_the_minimum_is_refused() {
    // A valid volume on three blocks, then the device shrinks to two: its
    // superblock would still check out, but there is no data area.
    let disk = JournalBackend::format(Disk::new(3), [1; 16])
        .unwrap()
        .into_device();
    let mut cut = disk.clone();
    cut.bytes.truncate(DATA_START as usize * BLOCK);
    assert_eq!(JournalBackend::open(cut).err(), Some(BackendError::Corrupt));
    assert!(JournalBackend::open(disk).is_ok());
}

#[test]
fn the_superblock_says_where_the_journal_starts() {
    // After a compaction the checkpoint sits after the first generation's
    // frames; the journal starts right after it, before and after replay.
    let mut disk = compacted();
    let block = superblock(&mut disk, 1);
    let cp_start = le_u64(&block[36..]);
    let cp_blocks = le_u64(&block[44..]);
    assert!(cp_start > DATA_START && cp_blocks > 0);
    let mut j = JournalBackend::open(disk).unwrap();
    assert_eq!(j.tail(), cp_start + cp_blocks);
    replay(&mut j);
    assert_eq!(j.tail(), cp_start + cp_blocks + 1, "one frame after it");
}
