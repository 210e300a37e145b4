//! Storage journal recovery from a damaged disk. The input chooses a few
//! commits, written through the real store onto a freshly formatted
//! volume, then bytes of the disk to corrupt (as a failing disk or another
//! holder of the device might); reopening must refuse or recover, never
//! panic, and a recovered store must answer reads.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pandagen_abi::BlockDevice;
use pandagen_core::VecDisk;
use pandagen_storage::store::ObjectStore;
use pandagen_storage::transaction::TransactionalStorage;
use pandagen_storage::{JournalBackend, ObjectKind};

const BLOCK: usize = 128;
const BLOCKS: usize = 48;

#[derive(Arbitrary, Debug)]
struct Input {
    commits: Vec<(u8, Vec<u8>)>,
    corruptions: Vec<(u16, u8)>,
}

fuzz_target!(|input: Input| {
    let disk = VecDisk::new(BLOCK as u32, BLOCKS as u64);
    let mut disk = {
        let Ok(journal) = JournalBackend::format(disk, [7; 16]) else {
            return;
        };
        let Ok((mut store, _)) = ObjectStore::open(journal) else {
            return;
        };
        let Ok((map, _)) = store.create(ObjectKind::Map) else {
            return;
        };
        for (key, value) in input.commits.iter().take(16) {
            let Ok(mut tx) = store.begin_transaction() else {
                break;
            };
            let _ = store.put(&mut tx, map, &[*key], value);
            let _ = store.commit(&mut tx);
        }
        store.into_backend().into_device()
    };
    for &(offset, xor) in input.corruptions.iter().take(32) {
        let at = usize::from(offset) % (BLOCK * BLOCKS);
        let first = (at / BLOCK) as u64;
        let mut block = [0u8; BLOCK];
        if disk.read_blocks(first, &mut block).is_ok() {
            block[at % BLOCK] ^= xor;
            let _ = disk.write_blocks(first, &block);
        }
    }
    let Ok(journal) = JournalBackend::open(disk) else {
        return;
    };
    if let Ok((store, _)) = ObjectStore::open(journal) {
        let _ = store.object_count();
        let _ = store.last_commit();
    }
});
