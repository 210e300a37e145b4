//! The on-disk layout, pinned by a committed image: a volume written by
//! this code must stay byte-for-byte what `layout.img` holds, and that
//! image must open with its records. A deliberate change of layout needs a
//! new `SUPER_MAGIC` (old volumes are then refused, never misread) and a
//! new image: run this test once with `PANDAGEN_BLESS_JOURNAL_IMAGE=1`.

use super::*;
use crate::record::Origin;

const IMAGE: &[u8] = include_bytes!("layout.img");
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
    let disk = Disk {
        bytes: IMAGE.to_vec(),
        ..Disk::new(BLOCKS)
    };
    let mut j = JournalBackend::open(disk).unwrap();
    assert_eq!(j.generation(), 1);
    assert_eq!(j.cap_key(), SipKey::from_bytes([0x5A; 16]));
    assert_eq!(replay(&mut j), records());
    // Where things are: superblock generation 1 in block 1, pointing at
    // the checkpoint after the first generation's frames; a frame after
    // the checkpoint.
    assert_eq!(&IMAGE[BLOCK..BLOCK + 8], SUPER_MAGIC);
    assert_eq!(le_u64(&IMAGE[BLOCK + 28..]), 1);
    let cp_start = le_u64(&IMAGE[BLOCK + 36..]) as usize;
    let cp_blocks = le_u64(&IMAGE[BLOCK + 44..]) as usize;
    assert_eq!(&IMAGE[cp_start * BLOCK..][..4], CHECKPOINT_MAGIC);
    assert_eq!(&IMAGE[(cp_start + cp_blocks) * BLOCK..][..4], FRAME_MAGIC);
    assert_eq!(&IMAGE[DATA_START as usize * BLOCK..][..4], FRAME_MAGIC);
    assert_eq!(j.tail(), (cp_start + cp_blocks + 1) as u64);
}
