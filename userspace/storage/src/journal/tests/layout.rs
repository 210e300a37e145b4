//! The on-disk layout, pinned by committed images: a volume written by
//! this code must stay byte-for-byte what `layout.img` holds, and that
//! image must open with its records. A deliberate change of layout needs a
//! new `SUPER_MAGIC` (volumes of an unknown layout are then refused, never
//! misread) and a new image: run this test once with
//! `PANDAGEN_BLESS_JOURNAL_IMAGE=1`.
//!
//! `layout-pgstore2.img` and `layout-pgstore3.img` are the images the
//! previous layout wrote for the same records, before sealing (`PGSTORE2`)
//! and sealed with no seal (`PGSTORE3`): they must keep opening with them,
//! and go on taking commits.

use super::*;
use crate::record::Origin;

const IMAGE: &[u8] = include_bytes!("layout.img");
const PGSTORE2_IMAGE: &[u8] = include_bytes!("layout-pgstore2.img");
const PGSTORE3_IMAGE: &[u8] = include_bytes!("layout-pgstore3.img");
const BLOCKS: usize = 12;
const KEY: [u8; 16] = [0x5A; 16];
const SEAL: [u8; 16] = [0xC3; 16];

/// Two frames (one spanning blocks), a commit with an origin, a
/// revocation and an `Open`, a compaction, and one frame after it.
fn records() -> [CommitRecord; 4] {
    let third = CommitRecord {
        seq: CommitSeq::from_raw(3),
        changes: vec![
            Change::Revoke {
                object: ObjectId::from_raw(1),
                epoch: 2,
            },
            Change::Open { instance: 4 },
        ],
        origin: Some(Origin {
            task: 5,
            message: 6,
            answer: b"ok".to_vec(),
        }),
    };
    [record(1, 10), record(2, 200), third, record(4, 3)]
}

fn written() -> Disk {
    let [a, b, c, d] = records();
    let mut j = JournalBackend::format_sealed(Disk::new(BLOCKS), KEY, SEAL).unwrap();
    j.apply(&a).unwrap();
    j.apply(&b).unwrap();
    j.apply(&c).unwrap();
    assert_eq!(j.compact(), Ok(true));
    j.apply(&d).unwrap();
    j.into_device()
}

fn image_disk(image: &[u8]) -> Disk {
    Disk {
        bytes: image.to_vec(),
        ..Disk::new(BLOCKS)
    }
}

#[test]
fn a_volume_is_written_byte_for_byte_as_the_committed_image() {
    let disk = written();
    if std::env::var_os("PANDAGEN_BLESS_JOURNAL_IMAGE").is_some() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/journal/tests/layout.img");
        std::fs::write(path, &disk.bytes).unwrap();
    }
    assert_eq!(disk.bytes.len(), IMAGE.len());
    if let Some(at) = (0..IMAGE.len()).find(|&i| disk.bytes[i] != IMAGE[i]) {
        panic!(
            "the layout changed: first difference at byte {at} (block {}, offset {})",
            at / BLOCK,
            at % BLOCK
        );
    }
}

#[test]
fn the_committed_image_opens_with_its_records_and_only_with_its_seal() {
    let mut j = JournalBackend::open_sealed(image_disk(IMAGE), SEAL).unwrap();
    // Packed (generation 1), then settled (generation 2).
    assert_eq!(j.generation(), 2);
    assert_eq!(j.cap_key(), SipKey::from_bytes(KEY));
    assert_eq!(replay(&mut j), records());
    // Where things are: superblock generation 2 in block 0, the key
    // sealed, with the segment area from the first data block to
    // `seg_end`, nothing pending, and a frame right after the area.
    assert_eq!(&IMAGE[..8], SUPER_MAGIC);
    assert_eq!(IMAGE[8..24], xor(KEY, SEAL));
    assert!(!IMAGE.windows(16).any(|w| w == KEY), "the key is sealed");
    assert_eq!(le_u64(&IMAGE[24..]), 2);
    let cp_start = le_u64(&IMAGE[32..]);
    let cp_blocks = le_u64(&IMAGE[40..]);
    let seg_end = le_u64(&IMAGE[48..]);
    assert_eq!((cp_start, cp_blocks), (seg_end, 0));
    assert!(seg_end > DATA_START);
    assert_eq!(&IMAGE[DATA_START as usize * BLOCK..][..4], SEGMENT_MAGIC);
    assert_eq!(&IMAGE[seg_end as usize * BLOCK..][..4], FRAME_MAGIC);
    assert_eq!(j.segment_end(), seg_end);
    assert_eq!(j.tail(), seg_end + 1);
    // Another seal, or none, finds no superblock.
    for seal in [NO_SEAL, [0xC2; 16]] {
        assert_eq!(
            JournalBackend::open_sealed(image_disk(IMAGE), seal).err(),
            Some(BackendError::Corrupt)
        );
    }
}

/// Open an image of the previous layout, check its records, then go on
/// committing records of `payload` bytes (every fourth a restart's
/// `Open`) until one is refused or `max` are taken; reopen and check
/// that everything taken is there. Returns the records taken and the
/// volume's superblock magics after that.
fn goes_on_from(image: &[u8], seal: [u8; 16], payload: usize, max: u64) -> (u64, Vec<Vec<u8>>) {
    let mut j = JournalBackend::open_sealed(image_disk(image), seal).unwrap();
    assert_eq!(j.generation(), 1);
    assert_eq!(j.cap_key(), SipKey::from_bytes(KEY));
    let mut expected = replay(&mut j);
    assert_eq!(expected, records());
    let mut taken = 0;
    for seq in 5..5 + max {
        let next = if seq % 4 == 0 {
            CommitRecord {
                seq: CommitSeq::from_raw(seq),
                changes: vec![Change::Open {
                    instance: seq as u32,
                }],
                origin: None,
            }
        } else {
            record(seq, payload)
        };
        match j.apply(&next) {
            Ok(()) => expected.push(next),
            Err(e) => {
                assert_eq!(e, BackendError::Full, "seq {seq}");
                break;
            }
        }
        taken += 1;
    }
    let disk = j.into_device();
    let magics = disk.bytes.chunks(BLOCK).take(2).map(|b| b[..8].to_vec());
    let magics = magics.collect();
    let mut j = JournalBackend::open_sealed(disk, seal).unwrap();
    assert_eq!(packed_view(&replay(&mut j)), packed_view(&expected));
    (taken, magics)
}

#[test]
fn the_images_of_the_previous_layout_open_with_the_same_records_and_upgrade() {
    assert_eq!(&PGSTORE2_IMAGE[BLOCK..BLOCK + 8], LEGACY_SUPER_MAGIC);
    assert_eq!(&PGSTORE3_IMAGE[BLOCK..BLOCK + 8], SEALED_LEGACY_SUPER_MAGIC);
    // A volume from before sealing opens under any seal, and is sealed
    // with it from its first compaction on: both superblock copies are
    // then of the current layout, and the key is nowhere on the device.
    for (image, seal) in [(PGSTORE2_IMAGE, SEAL), (PGSTORE3_IMAGE, NO_SEAL)] {
        // The first commit needs a compaction, and the tail has no room
        // for the packed segment: it goes where the dead frames before the
        // checkpoint were. The commits then go on until the (twelve-block)
        // device is really full.
        let (taken, magics) = goes_on_from(image, seal, 10, 200);
        assert!((8..200).contains(&taken), "{taken}");
        assert_eq!(magics, vec![SUPER_MAGIC.to_vec(); 2]);
    }
    let mut j = JournalBackend::open_sealed(image_disk(PGSTORE2_IMAGE), SEAL).unwrap();
    replay(&mut j);
    assert_eq!(j.compact(), Ok(true));
    let disk = j.into_device();
    assert!(!disk.bytes.windows(16).any(|w| w == KEY));
    let mut j = JournalBackend::open_sealed(disk.clone(), SEAL).unwrap();
    assert_eq!(packed_view(&replay(&mut j)), packed_view(&records()));
    assert_eq!(
        JournalBackend::open(disk).err(),
        Some(BackendError::Corrupt),
        "sealed now"
    );
}

#[test]
fn a_sealed_image_of_the_previous_layout_opens_only_with_its_seal() {
    assert_eq!(
        JournalBackend::open_sealed(image_disk(PGSTORE3_IMAGE), SEAL).err(),
        Some(BackendError::Corrupt)
    );
}

#[test]
fn a_damaged_superblock_of_the_previous_layout_is_refused() {
    // Magic, block size, key, generation, checkpoint start and length, and
    // the checksum, in both copies: nothing to open.
    for image in [PGSTORE2_IMAGE, PGSTORE3_IMAGE] {
        for offset in [
            0,
            8,
            11,
            12,
            27,
            28,
            36,
            44,
            LEGACY_SUPER_LEN,
            LEGACY_SUPER_LEN + 7,
        ] {
            let mut disk = image_disk(image);
            disk.bytes[offset] ^= 0x10;
            disk.bytes[BLOCK + offset] ^= 0x10;
            assert_eq!(
                JournalBackend::open(disk).err(),
                Some(BackendError::Corrupt),
                "byte {offset}"
            );
        }
        // Read with blocks twice as large, its first copy (which says
        // otherwise) is not a superblock.
        let mut disk = Disk::sized(BLOCKS / 2, 2 * BLOCK);
        disk.bytes.copy_from_slice(image);
        assert_eq!(
            JournalBackend::open(disk).err(),
            Some(BackendError::Corrupt)
        );
    }
}

#[test]
fn a_superblock_of_the_unsealed_layout_under_another_magic_is_refused() {
    // The unsealed previous layout's checksum is under a fixed key that
    // anyone can compute: only its magic says what the block is. The same
    // block, checksummed correctly, under the magic of another (older or
    // unknown) format is not a superblock of this journal.
    let opened = JournalBackend::open(image_disk(PGSTORE2_IMAGE));
    assert!(opened.is_ok(), "the image opens as it is");
    for magic in [b"PGSTORE1", b"PGSTORE5", b"XXXXXXXX"] {
        let mut disk = image_disk(PGSTORE2_IMAGE);
        for copy in 0..2 {
            let block = &mut disk.bytes[copy * BLOCK..(copy + 1) * BLOCK];
            block[..8].copy_from_slice(magic);
            let sum = siphash24(
                &SipKey::from_bytes(LEGACY_SUPER_KEY),
                &block[..LEGACY_SUPER_LEN],
            );
            block[LEGACY_SUPER_LEN..LEGACY_SUPER_LEN + 8].copy_from_slice(&sum.to_le_bytes());
        }
        assert_eq!(
            JournalBackend::open(disk).err(),
            Some(BackendError::Corrupt),
            "{}",
            String::from_utf8_lossy(magic)
        );
    }
}
