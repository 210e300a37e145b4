//! The on-disk layout, pinned by committed images: a volume written by
//! this code must stay byte-for-byte what `layout.img` holds, and that
//! image must open with its records. A deliberate change of layout needs a
//! new `SUPER_MAGIC` (volumes of an unknown layout are then refused, never
//! misread) and a new image: run this test once with
//! `PANDAGEN_BLESS_JOURNAL_IMAGE=1`. `layout-pgstore2.img` is the image the
//! previous layout (`PGSTORE2`) wrote for the same records; it must keep
//! opening with them.

use super::*;
use crate::record::Origin;

const IMAGE: &[u8] = include_bytes!("layout.img");
const PGSTORE2_IMAGE: &[u8] = include_bytes!("layout-pgstore2.img");
const BLOCKS: usize = 12;

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
    let mut j = JournalBackend::format(Disk::new(BLOCKS), [0x5A; 16]).unwrap();
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
fn the_committed_image_opens_with_its_records() {
    let mut j = JournalBackend::open(image_disk(IMAGE)).unwrap();
    // Packed (generation 1), then settled (generation 2).
    assert_eq!(j.generation(), 2);
    assert_eq!(j.cap_key(), SipKey::from_bytes([0x5A; 16]));
    assert_eq!(replay(&mut j), records());
    // Where things are: superblock generation 2 in block 0, with the
    // segment area from the first data block to `seg_end`, nothing
    // pending, and a frame right after the area.
    assert_eq!(&IMAGE[..8], SUPER_MAGIC);
    assert_eq!(le_u64(&IMAGE[28..]), 2);
    let cp_start = le_u64(&IMAGE[36..]);
    let cp_blocks = le_u64(&IMAGE[44..]);
    let seg_end = le_u64(&IMAGE[52..]);
    assert_eq!((cp_start, cp_blocks), (seg_end, 0));
    assert!(seg_end > DATA_START);
    assert_eq!(&IMAGE[DATA_START as usize * BLOCK..][..4], SEGMENT_MAGIC);
    assert_eq!(&IMAGE[seg_end as usize * BLOCK..][..4], FRAME_MAGIC);
    assert_eq!(j.segment_end(), seg_end);
    assert_eq!(j.tail(), seg_end + 1);
}

#[test]
fn the_image_of_the_previous_layout_opens_with_the_same_records() {
    assert_eq!(&PGSTORE2_IMAGE[BLOCK..BLOCK + 8], LEGACY_SUPER_MAGIC);
    let mut j = JournalBackend::open(image_disk(PGSTORE2_IMAGE)).unwrap();
    assert_eq!(j.generation(), 1);
    assert_eq!(j.cap_key(), SipKey::from_bytes([0x5A; 16]));
    assert_eq!(replay(&mut j), records());
    // Moving such a volume to the current layout as it goes on is
    // `older_volumes`' business: this one is too small to hold its
    // records a second time while it is rewritten.
}
