//! The journal on a disk with a volatile write cache ([`CachedDisk`]): at a
//! power cut, every write not yet flushed is lost, kept or torn, in any
//! order. Whatever survives, the journal opens, every acknowledged commit
//! is there, and the state is exactly the one after the acknowledged
//! commits or after the one in flight — never part of a commit.

use pandagen_core::{CachedDisk, CutOutcome};

use super::*;

/// A [`CachedDisk`] that keeps a copy of itself before each write and
/// flush: every moment a power cut could come.
struct Recorder {
    disk: CachedDisk,
    moments: Vec<CachedDisk>,
}

impl BlockDevice for Recorder {
    fn block_size(&self) -> u32 {
        self.disk.block_size()
    }

    fn block_count(&self) -> u64 {
        self.disk.block_count()
    }

    fn read_blocks(&mut self, first: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.disk.read_blocks(first, buf)
    }

    fn write_blocks(&mut self, first: u64, bytes: &[u8]) -> Result<(), BlockError> {
        self.moments.push(self.disk.clone());
        self.disk.write_blocks(first, bytes)
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.moments.push(self.disk.clone());
        self.disk.flush()
    }
}

const MAP: ObjectId = ObjectId::from_raw(1);
const LOG: ObjectId = ObjectId::from_raw(2);
const BLOB: ObjectId = ObjectId::from_raw(3);

/// The seal of the volumes cut here: sealed, as in ring 3.
const CUT_SEAL: [u8; 16] = [0xE7; 16];

/// A store on `device` with the workload's three objects.
fn setup<D: BlockDevice>(device: D) -> ObjectStore<JournalBackend<D>> {
    let journal = JournalBackend::format_sealed(device, [7; 16], CUT_SEAL).unwrap();
    let (mut s, _) = ObjectStore::open(journal).unwrap();
    for kind in [ObjectKind::Map, ObjectKind::Log, ObjectKind::Blob] {
        s.create(kind).unwrap();
    }
    s
}

/// Step `i` of the workload: exactly one commit, with origin (1, `i`) —
/// a put of a value of varying size, now and then with an append and a
/// blob write of several blocks, or instead a revocation.
fn step<B: StorageBackend>(s: &mut ObjectStore<B>, i: u64) -> Result<(), StorageError> {
    let origin = Some(Origin {
        task: 1,
        message: i,
        answer: i.to_le_bytes().to_vec(),
    });
    if i.is_multiple_of(40) {
        return s.revoke_with_origin(MAP, |_| origin).map(|_| ());
    }
    let mut tx = s.begin_transaction()?;
    let key = format!("key{}", i % 16);
    let value = vec![i as u8; 1 + (i as usize * 7) % 24];
    s.put(&mut tx, MAP, key.as_bytes(), &value)?;
    if i.is_multiple_of(10) {
        s.append(&mut tx, LOG, format!("rec{i}").as_bytes())?;
    }
    if i.is_multiple_of(25) {
        s.write_blob(&mut tx, BLOB, &[i as u8; 300])?;
    }
    s.commit_with_origin(&mut tx, origin).map(|_| ())
}

/// What the store holds after each number of steps, without faults.
fn reference(steps: u64) -> Vec<Vec<Seen>> {
    let mut s = setup(CachedDisk::new(512, 4096));
    let mut dumps = vec![dump(&s)];
    for i in 1..=steps {
        step(&mut s, i).unwrap();
        dumps.push(dump(&s));
    }
    dumps
}

fn reopen_cached(disk: CachedDisk) -> ObjectStore<JournalBackend<CachedDisk>> {
    let journal = JournalBackend::open_sealed(disk, CUT_SEAL).expect("a superblock survives");
    ObjectStore::open(journal).expect("the journal opens").0
}

/// After a cut with `acked` steps acknowledged: the state is that of
/// `acked` steps, or of one more (the step in flight reached the medium
/// whole), and the answer of every acknowledged step is remembered.
/// Returns the steps the state holds.
fn check_recovered<B: StorageBackend>(
    s: &ObjectStore<B>,
    dumps: &[Vec<Seen>],
    acked: u64,
    context: &dyn Fn() -> String,
) -> u64 {
    let state = dump(s);
    let held = if state == dumps[acked as usize] {
        acked
    } else {
        assert!(
            dumps.get(acked as usize + 1) == Some(&state),
            "{}: neither {acked} nor {} steps",
            context(),
            acked + 1
        );
        acked + 1
    };
    let remembered = held.saturating_sub(DURABLE_ANSWERS as u64 / 2).max(1);
    for i in remembered..=held {
        assert_eq!(
            s.durable_answer(1, i),
            Some(&i.to_le_bytes()[..]),
            "{}: answer {i}",
            context()
        );
    }
    held
}

/// Tiny blocks and a small device, so that commits span blocks and the
/// journal packs and settles segments often (with a small last segment
/// merged, and without).
const CUT_BLOCK: u32 = 128;
const CUT_BLOCKS: u64 = 200;
const CUT_STEPS: u64 = 300;
const OUTCOME_SEEDS: u64 = 2;

#[test]
fn a_cut_before_any_write_or_flush_of_a_long_workload_loses_no_acknowledged_commit() {
    let dumps = reference(CUT_STEPS);
    let recorder = Recorder {
        disk: CachedDisk::new(CUT_BLOCK, CUT_BLOCKS),
        moments: Vec::new(),
    };
    let mut s = setup(recorder);
    let first = s.backend_mut().device_mut().moments.len();
    // acked_by[k]: steps acknowledged before moment k.
    let mut done_at = vec![];
    for i in 1..=CUT_STEPS {
        step(&mut s, i).unwrap_or_else(|e| panic!("step {i}: {e:?}"));
        done_at.push(s.backend_mut().device_mut().moments.len());
    }
    let generations = s.backend().generation();
    assert!(generations >= 6, "the workload compacts: {generations}");
    let moments = core::mem::take(&mut s.backend_mut().device_mut().moments);
    let mut opened = 0;
    for (k, moment) in moments.iter().enumerate().skip(first) {
        let acked = done_at.iter().filter(|&&at| at <= k).count() as u64;
        let outcomes = [CutOutcome::LoseAll, CutOutcome::KeepAll]
            .into_iter()
            .chain((0..OUTCOME_SEEDS).map(|seed| CutOutcome::Random(seed ^ (k as u64) << 8)));
        for outcome in outcomes {
            let context = || format!("cut before operation {k}, {outcome:?}");
            let mut s = reopen_cached(moment.after_cut(outcome));
            let held = check_recovered(&s, &dumps, acked, &context);
            opened += 1;
            // The journal goes on from what it opened.
            if k % 5 == 0 && held < CUT_STEPS {
                step(&mut s, held + 1).unwrap_or_else(|e| panic!("{}: {e:?}", context()));
                let after = dump(&s);
                assert_eq!(after, dumps[held as usize + 1], "{}", context());
                let disk = s.into_backend().into_device();
                assert_eq!(dump(&reopen_cached(disk)), after, "{}", context());
            }
        }
    }
    let cuts = moments.len() - first;
    assert!(cuts > 2 * CUT_STEPS as usize, "{cuts} cut points");
    std::println!(
        "{CUT_STEPS} steps, {generations} compaction steps, {cuts} cut points, {opened} recoveries"
    );
}

/// One run of the workload on a cached disk whose power is cut again and
/// again at seeded moments, each cut keeping a seeded set of the unflushed
/// writes; the journal recovers from a state recovered before, and goes
/// on. Returns the cuts made.
fn chained_cuts(seed: u64, dumps: &[Vec<Seen>]) -> u64 {
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut random = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let steps = dumps.len() as u64 - 1;
    let mut s = setup(CachedDisk::new(CUT_BLOCK, CUT_BLOCKS));
    let mut acked = 0;
    let mut cuts = 0;
    while acked < steps {
        let disk = s.backend_mut().device_mut();
        let at = disk.operations() + random(60);
        disk.cut_power_before(at);
        while acked < steps {
            if let Err(e) = step(&mut s, acked + 1) {
                let off = s.backend_mut().device_mut().is_off();
                assert!(
                    off,
                    "seed {seed}: step {} failed without a cut: {e:?}",
                    acked + 1
                );
                break;
            }
            acked += 1;
        }
        if acked == steps {
            break;
        }
        cuts += 1;
        let outcome = CutOutcome::Random(random(u64::MAX));
        let disk = s.into_backend().into_device().after_cut(outcome);
        let context = || format!("seed {seed}, cut {cuts} after {acked} steps, {outcome:?}");
        s = ObjectStore::open(
            JournalBackend::open_sealed(disk, CUT_SEAL).expect("a superblock survives"),
        )
        .unwrap_or_else(|e| panic!("{}: {e:?}", context()))
        .0;
        acked = check_recovered(&s, dumps, acked, &context);
    }
    assert_eq!(dump(&s), dumps[steps as usize]);
    cuts
}

#[test]
fn seeded_chains_of_cuts_with_random_survivors_lose_no_acknowledged_commit() {
    const SEEDS: u64 = 64;
    let dumps = reference(CUT_STEPS);
    let cuts: u64 = (1..=SEEDS).map(|seed| chained_cuts(seed, &dumps)).sum();
    assert!(cuts > SEEDS * 10, "{cuts}");
    std::println!("{SEEDS} seeds, {cuts} cuts");
}

/// The flush the journal issues before acknowledging is what makes a
/// commit durable: without the flush after a frame, a cut loses
/// acknowledged commits.
#[test]
fn acknowledged_means_flushed() {
    /// A device that drops every flush the journal asks for.
    struct NoFlush(CachedDisk);
    impl BlockDevice for NoFlush {
        fn block_size(&self) -> u32 {
            self.0.block_size()
        }
        fn block_count(&self) -> u64 {
            self.0.block_count()
        }
        fn read_blocks(&mut self, first: u64, buf: &mut [u8]) -> Result<(), BlockError> {
            self.0.read_blocks(first, buf)
        }
        fn write_blocks(&mut self, first: u64, bytes: &[u8]) -> Result<(), BlockError> {
            self.0.write_blocks(first, bytes)
        }
        fn flush(&mut self) -> Result<(), BlockError> {
            Ok(())
        }
    }
    let mut s = setup(CachedDisk::new(CUT_BLOCK, CUT_BLOCKS));
    step(&mut s, 1).unwrap();
    assert_eq!(s.backend_mut().device_mut().unflushed(), 0);
    let disk = s.into_backend().into_device();
    let journal = JournalBackend::open_sealed(NoFlush(disk), CUT_SEAL).unwrap();
    let (mut s, _) = ObjectStore::open(journal).unwrap();
    step(&mut s, 2).unwrap();
    let disk = s.into_backend().into_device().0;
    assert!(disk.unflushed() > 0);
    let mut s = reopen_cached(disk.after_cut(CutOutcome::LoseAll));
    let tx = s.begin_transaction().unwrap();
    let value = s.get(&tx, MAP, b"key2", None).unwrap().value;
    assert_eq!(value, None, "without its flush, step 2 was lost");
}

/// A disk of 256 MiB (sparse in memory) filled until it answers `Full`:
/// live data takes most of it, and all of it reads back.
#[test]
fn a_256_mib_disk_holds_live_data_on_most_of_it() {
    const BLOCK: u32 = 4096;
    const BLOCKS: u64 = 256 * 1024 * 1024 / BLOCK as u64;
    const PAYLOAD: usize = 60 * 1024;
    let started = std::time::Instant::now();
    let disk = CachedDisk::new(BLOCK, BLOCKS);
    let mut j = JournalBackend::format_sealed(disk, [5; 16], CUT_SEAL).unwrap();
    let mut seq = 1;
    let error = loop {
        match j.apply(&record(seq, PAYLOAD)) {
            Ok(()) => seq += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(error, BackendError::Full);
    let accepted = seq - 1;
    let filled = std::time::Instant::now();
    let live = accepted * PAYLOAD as u64;
    let device = BLOCKS * u64::from(BLOCK);
    let generation = j.generation();
    // Half the device was the cap before; now all but a few records' room.
    assert!(live * 10 > device * 9, "{live} of {device}");
    assert!(j.segment_end() * 10 > BLOCKS * 9, "{j:?}");
    let mut j = JournalBackend::open_sealed(j.into_device(), CUT_SEAL).unwrap();
    let mut next = 1;
    let report = j
        .replay(&mut |r| {
            assert_eq!(r, record(next, PAYLOAD));
            next += 1;
        })
        .unwrap();
    assert_eq!(report.records, accepted);
    assert_eq!(j.apply(&record(next, PAYLOAD)), Err(BackendError::Full));
    std::println!(
        "256 MiB: {accepted} records of {PAYLOAD} bytes ({} MiB live, {}%), {generation} \
         compaction steps, filled in {:?}, replayed in {:?}",
        live >> 20,
        live * 100 / device,
        filled - started,
        filled.elapsed()
    );
}

/// A disk that notes where each read and write went: (first block,
/// bytes).
struct Watched {
    disk: CachedDisk,
    reads: Vec<(u64, usize)>,
    writes: Vec<(u64, usize)>,
}

impl Watched {
    fn new(disk: CachedDisk) -> Self {
        Watched {
            disk,
            reads: Vec::new(),
            writes: Vec::new(),
        }
    }

    fn forget(&mut self) {
        self.reads.clear();
        self.writes.clear();
    }

    fn largest_read(&self) -> usize {
        self.reads.iter().map(|r| r.1).max().unwrap_or(0)
    }

    fn largest_write(&self) -> usize {
        self.writes.iter().map(|w| w.1).max().unwrap_or(0)
    }
}

impl BlockDevice for Watched {
    fn block_size(&self) -> u32 {
        self.disk.block_size()
    }
    fn block_count(&self) -> u64 {
        self.disk.block_count()
    }
    fn read_blocks(&mut self, first: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.reads.push((first, buf.len()));
        self.disk.read_blocks(first, buf)
    }
    fn write_blocks(&mut self, first: u64, bytes: &[u8]) -> Result<(), BlockError> {
        self.writes.push((first, bytes.len()));
        self.disk.write_blocks(first, bytes)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        self.disk.flush()
    }
}

/// Compaction of a journal far larger than a piece of I/O keeps memory
/// bounded: the cache of unflushed writes is the segment being written,
/// and no piece written at once is larger than `IO_CHUNK`. It also moves
/// the data in pieces of that size, not block by block: a device call per
/// 512-byte block would make compaction of megabytes thousands of calls.
#[test]
fn compaction_writes_and_reads_in_pieces_of_io_chunk() {
    let disk = Watched::new(CachedDisk::new(512, 16 * 1024));
    let mut j = JournalBackend::format(disk, [5; 16]).unwrap();
    // 2 MiB of small records: far more than one piece.
    for seq in 1..=4000 {
        j.apply(&record(seq, 400)).unwrap();
    }
    j.device_mut().forget();
    assert_eq!(j.compact(), Ok(true));
    let device = j.device_mut();
    assert_eq!(device.largest_read(), IO_CHUNK, "the largest read");
    assert_eq!(device.largest_write(), IO_CHUNK, "the largest write");
    let mut j = JournalBackend::open(j.into_device()).unwrap();
    let mut next = 1;
    j.replay(&mut |r| {
        assert_eq!(r, record(next, 400));
        next += 1;
    })
    .unwrap();
    assert_eq!(next, 4001);
    assert_eq!(
        j.device_mut().largest_read(),
        IO_CHUNK,
        "the largest read at replay"
    );
}

/// Settling copies the pending segment, in pieces, to the end of the
/// segment area, and writes nothing past where the copy ends: the blocks
/// after it may still hold the pending segment itself, which is all the
/// superblock knows of until the switch.
#[test]
fn settling_writes_only_where_the_segment_goes() {
    const BLOCK: u32 = 512;
    let chunk = (IO_CHUNK / BLOCK as usize) as u64;
    let disk = Watched::new(CachedDisk::new(BLOCK, 4096));
    let mut j = JournalBackend::format(disk, [5; 16]).unwrap();
    for seq in 1..=300 {
        j.apply(&record(seq, 400)).unwrap();
    }
    assert_eq!(j.pack(), Ok(true));
    assert!(j.settleable());
    let (to, blocks) = (j.segment_end(), j.cp_blocks);
    assert!(
        blocks > chunk && blocks % chunk != 0,
        "a segment of {blocks} blocks: more than a piece, and a last piece short"
    );
    j.device_mut().forget();
    assert_eq!(j.compact(), Ok(true));
    assert_eq!(j.segment_end(), to + blocks, "settled");
    let writes: Vec<(u64, u64)> = j
        .device_mut()
        .writes
        .iter()
        .map(|&(first, bytes)| (first, (bytes / BLOCK as usize) as u64))
        .collect();
    assert_eq!(
        writes
            .iter()
            .filter(|&&(first, _)| first >= DATA_START)
            .map(|w| w.1)
            .sum::<u64>(),
        blocks,
        "{writes:?}"
    );
    for &(first, n) in &writes {
        assert!(
            first + n <= DATA_START || (first >= to && first + n <= to + blocks),
            "a write of {n} blocks at {first}, outside the segment's {blocks} blocks at {to}"
        );
    }
    let mut j = JournalBackend::open(j.into_device()).unwrap();
    let mut next = 1;
    j.replay(&mut |r| {
        assert_eq!(r, record(next, 400));
        next += 1;
    })
    .unwrap();
    assert_eq!(next, 301);
}
