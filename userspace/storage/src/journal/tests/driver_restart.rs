//! The journal behind a disk driver that dies in mid-request and is
//! restarted: the commit in flight fails with an unknown outcome; once the
//! driver is back it is voided and never replayed, whatever of it reached
//! the disk, and the journal (and the store above it) carry on in place
//! with every acknowledged commit.

use super::*;

/// The journal's disk behind a ring-3 driver that can die: after `ops`
/// more requests (writes and flushes) the driver is gone, and every
/// request fails as its client sees it then (`Unavailable`), until
/// `restart`. A write torn by [`Disk::tear`] models the driver dying
/// while the device is writing.
#[derive(Clone)]
struct Driver {
    disk: Disk,
    ops: Option<usize>,
    dead: bool,
}

impl Driver {
    fn new(disk: Disk) -> Self {
        Driver {
            disk,
            ops: None,
            dead: false,
        }
    }

    fn die_after(&mut self, ops: usize) {
        self.ops = Some(ops);
    }

    fn restart(&mut self) {
        (self.ops, self.dead) = (None, false);
        self.disk.tear = None;
    }

    /// Whether the driver is still alive for one more request.
    fn serves(&mut self) -> bool {
        match self.ops {
            _ if self.dead => false,
            Some(0) => {
                self.dead = true;
                false
            }
            Some(n) => {
                self.ops = Some(n - 1);
                true
            }
            None => true,
        }
    }
}

impl BlockDevice for Driver {
    fn block_size(&self) -> u32 {
        self.disk.block_size()
    }

    fn block_count(&self) -> u64 {
        self.disk.block_count()
    }

    fn read_blocks(&mut self, first: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        if self.dead {
            return Err(BlockError::Unavailable);
        }
        self.disk.read_blocks(first, buf)
    }

    fn write_blocks(&mut self, first: u64, bytes: &[u8]) -> Result<(), BlockError> {
        if !self.serves() {
            return Err(BlockError::Unavailable);
        }
        let written = self.disk.write_blocks(first, bytes);
        if written.is_err() {
            // The device tore the write: the driver died with it.
            self.dead = true;
        }
        written
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        if !self.serves() {
            return Err(BlockError::Unavailable);
        }
        self.disk.flush()
    }
}

/// What a fresh open of the disk as it is now replays (the service
/// restarted, or the machine rebooted).
fn replayed_after_restart(driver: &Driver) -> Vec<CommitRecord> {
    let mut j = JournalBackend::open(driver.disk.clone()).unwrap();
    replay(&mut j)
}

/// A way for the driver to die, given how many whole blocks of a torn
/// write reach the disk.
type Death = fn(&mut Driver, usize);

/// Ways the driver dies in the middle of the commit of a 700-byte record:
/// before the frame is written, with the frame written whole but not
/// flushed, and with the frame torn after each of its blocks.
fn deaths() -> Vec<(&'static str, Death)> {
    vec![
        ("before the write", |d, _| d.die_after(0)),
        ("before the flush", |d, _| d.die_after(1)),
        ("mid-write", |d, keep| d.disk.tear = Some((keep, true))),
    ]
}

#[test]
fn a_commit_cut_by_a_driver_crash_is_never_replayed_and_the_journal_goes_on_in_place() {
    let frame_blocks =
        1 + (FRAME_HEADER + postcard::to_allocvec(&record(3, 700)).unwrap().len()) / BLOCK;
    for (how, die) in deaths() {
        for keep in 0..frame_blocks {
            let case = format!("{how}, keep={keep}");
            let mut j = JournalBackend::format(Driver::new(Disk::new(64)), [9; 16]).unwrap();
            j.apply(&record(1, 10)).unwrap();
            j.apply(&record(2, 300)).unwrap();
            die(j.device_mut(), keep);
            // The driver is gone, so the void cannot be written either.
            assert_eq!(
                j.apply(&record(3, 700)),
                Err(BackendError::OutcomeUnknown),
                "{case}"
            );
            // Nothing more is taken while the medium is in doubt.
            assert_eq!(
                j.apply(&record(3, 10)),
                Err(BackendError::Crashed),
                "{case}"
            );
            let last = CommitSeq::from_raw(2);
            assert_eq!(j.recover(last), Err(BackendError::Io), "{case}: still dead");
            j.device_mut().restart();
            j.recover(last).unwrap();
            assert_eq!(
                replayed_after_restart(j.device_mut()),
                vec![record(1, 10), record(2, 300)],
                "{case}: the failed commit must never be replayed"
            );
            // In place, without a reopen: a shorter commit 3, then more.
            j.apply(&record(3, 10)).unwrap();
            j.apply(&record(4, 500)).unwrap();
            assert_eq!(
                replayed_after_restart(j.device_mut()),
                vec![record(1, 10), record(2, 300), record(3, 10), record(4, 500)],
                "{case}"
            );
        }
    }
}

/// Why a commit cut by a driver crash is reported as of unknown outcome:
/// its frame reached the disk whole, and a service restarted before the
/// driver is back (so before the frame could be voided) replays it.
#[test]
fn a_restart_before_the_driver_is_back_may_replay_the_commit_in_flight() {
    let mut j = JournalBackend::format(Driver::new(Disk::new(64)), [9; 16]).unwrap();
    j.apply(&record(1, 10)).unwrap();
    // The frame's write is served, the flush is not.
    j.device_mut().die_after(1);
    assert_eq!(j.apply(&record(2, 300)), Err(BackendError::OutcomeUnknown));
    assert_eq!(
        replayed_after_restart(j.device_mut()),
        vec![record(1, 10), record(2, 300)]
    );
}

#[test]
fn recovery_refuses_a_history_that_does_not_end_at_the_last_acknowledged_commit() {
    let mut j = JournalBackend::format(Driver::new(Disk::new(64)), [9; 16]).unwrap();
    j.apply(&record(1, 10)).unwrap();
    j.device_mut().die_after(0);
    assert!(j.apply(&record(2, 10)).is_err());
    j.device_mut().restart();
    assert_eq!(
        j.recover(CommitSeq::from_raw(2)),
        Err(BackendError::Corrupt)
    );
    assert_eq!(j.apply(&record(2, 10)), Err(BackendError::Crashed));
    j.recover(CommitSeq::from_raw(1)).unwrap();
    j.apply(&record(2, 10)).unwrap();
}

#[test]
fn the_store_carries_on_after_its_disk_driver_restarts_and_keeps_every_acknowledged_commit() {
    for (how, die) in deaths() {
        let journal = JournalBackend::format(Driver::new(Disk::new(256)), [9; 16]).unwrap();
        let (mut s, _) = ObjectStore::open(journal).unwrap();
        let (m, _) = s.create(ObjectKind::Map).unwrap();
        let put = |s: &mut ObjectStore<JournalBackend<Driver>>, key: &[u8], value: &[u8]| {
            let mut tx = s.begin_transaction().unwrap();
            s.put(&mut tx, m, key, value).unwrap();
            s.commit(&mut tx)
        };
        for i in 0..5u8 {
            put(&mut s, &[b'k', i], &[i; 200]).unwrap();
        }
        die(s.backend_mut().device_mut(), 1);
        assert!(
            matches!(
                put(&mut s, b"lost", &[9; 700]),
                Err(StorageError::Backend(BackendError::OutcomeUnknown))
            ),
            "{how}: the commit in flight fails, typed"
        );
        // While the driver is down, every commit fails, typed.
        assert!(put(&mut s, b"also lost", b"x").is_err(), "{how}");
        s.backend_mut().device_mut().restart();
        // The same store, not reopened, takes commits again.
        put(&mut s, b"after", b"the restart").unwrap();
        let mut disk = s.into_backend().into_device().disk;
        disk.tear = None;
        let (mut s, _) = ObjectStore::open(JournalBackend::open(disk).unwrap()).unwrap();
        let tx = s.begin_transaction().unwrap();
        for i in 0..5u8 {
            assert_eq!(
                s.get(&tx, m, &[b'k', i], None).unwrap().value,
                Some(vec![i; 200]),
                "{how}: acknowledged commit {i}"
            );
        }
        assert_eq!(s.get(&tx, m, b"lost", None).unwrap().value, None, "{how}");
        assert_eq!(
            s.get(&tx, m, b"also lost", None).unwrap().value,
            None,
            "{how}"
        );
        assert_eq!(
            s.get(&tx, m, b"after", None).unwrap().value,
            Some(b"the restart".to_vec()),
            "{how}"
        );
    }
}

/// Three rounds of a driver crash, each at any of the first six requests
/// of a commit (reads too, so also during the recovery that follows the
/// last crash), the driver staying down for up to two more commits and
/// then restarting: recovery never answers `Corrupt`, the store commits
/// again once the driver is back, and a reopened journal replays exactly
/// the acknowledged records (written while chasing a `drivercrash-bios`
/// failure seen once in session 11, not reproduced since; it fails at
/// once if a failed frame's first block is not blanked).
#[test]
fn repeated_driver_crashes_at_any_request_lose_and_corrupt_nothing() {
    struct Counting {
        inner: Driver,
        left: Option<usize>,
    }
    impl Counting {
        fn tick(&mut self) -> bool {
            match self.left {
                Some(0) => {
                    self.inner.dead = true;
                    false
                }
                Some(n) => {
                    self.left = Some(n - 1);
                    !self.inner.dead
                }
                None => !self.inner.dead,
            }
        }
    }
    impl BlockDevice for Counting {
        fn block_size(&self) -> u32 {
            self.inner.block_size()
        }
        fn block_count(&self) -> u64 {
            self.inner.block_count()
        }
        fn read_blocks(&mut self, first: u64, buf: &mut [u8]) -> Result<(), BlockError> {
            if !self.tick() {
                return Err(BlockError::Unavailable);
            }
            self.inner.read_blocks(first, buf)
        }
        fn write_blocks(&mut self, first: u64, bytes: &[u8]) -> Result<(), BlockError> {
            if !self.tick() {
                return Err(BlockError::Unavailable);
            }
            self.inner.write_blocks(first, bytes)
        }
        fn flush(&mut self) -> Result<(), BlockError> {
            if !self.tick() {
                return Err(BlockError::Unavailable);
            }
            self.inner.flush()
        }
    }
    let sizes = [700usize, 300, 1200, 60];
    for k1 in 0..6 {
        for k2 in 0..6 {
            for k3 in 0..6 {
                for late in 0..3usize {
                    let case = format!("{k1} {k2} {k3} late={late}");
                    let dev = Counting {
                        inner: Driver::new(Disk::new(256)),
                        left: None,
                    };
                    let mut j = JournalBackend::format(dev, [9; 16]).unwrap();
                    let mut acked: Vec<CommitRecord> = Vec::new();
                    let mut failed = false;
                    let commit = |j: &mut JournalBackend<Counting>,
                                  acked: &mut Vec<CommitRecord>,
                                  failed: &mut bool,
                                  size: usize| {
                        let last = acked.last().map_or(CommitSeq::ZERO, |r| r.seq);
                        if *failed {
                            match j.recover(last) {
                                Ok(()) => *failed = false,
                                Err(BackendError::Corrupt) => panic!("{case}: recover Corrupt"),
                                Err(_) => return,
                            }
                        }
                        let r = record(last.as_raw() + 1, size);
                        match j.apply(&r) {
                            Ok(()) => acked.push(r),
                            Err(BackendError::Full) => {}
                            Err(_) => *failed = true,
                        }
                    };
                    for i in 0..4 {
                        commit(&mut j, &mut acked, &mut failed, sizes[i % 4]);
                    }
                    for (round, k) in [k1, k2, k3].into_iter().enumerate() {
                        j.device_mut().left = Some(k);
                        commit(&mut j, &mut acked, &mut failed, sizes[round]);
                        // The driver may stay down for `late` more commits.
                        for _ in 0..late {
                            commit(&mut j, &mut acked, &mut failed, 100);
                        }
                        j.device_mut().left = None;
                        j.device_mut().inner.restart();
                    }
                    for i in 0..4 {
                        commit(&mut j, &mut acked, &mut failed, sizes[(i + 1) % 4]);
                        assert!(!failed, "{case}: still failing");
                    }
                    let disk = j.into_device().inner.disk;
                    let mut j2 = JournalBackend::open(disk).unwrap();
                    assert_eq!(replay(&mut j2), acked, "{case}");
                }
            }
        }
    }
}
