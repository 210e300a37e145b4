//! The in-memory backend: an append-only journal of framed commit records
//! in a byte vector, laid out the way a block-device journal would be.
//!
//! Frame: `len: u32 LE | checksum: u64 LE | record: len bytes (postcard)`,
//! where the checksum is SipHash-2-4 under a fixed public key over the
//! length and the record. A crash during `apply` can leave a torn final
//! frame; `replay` recognises it (short, or failing its checksum) and cuts it
//! off. Fault injection reproduces exactly that: a torn write followed by a
//! crash, so tests exercise the same recovery path a disk would.

use alloc::vec::Vec;
use core::mem;

use crate::backend::{BackendError, RecoveryReport, StorageBackend};
use crate::ids::CommitSeq;
use crate::record::{CommitRecord, MapUpdate};
use crate::siphash::{siphash24, SipKey};

const HEADER: usize = 4 + 8;
/// The bytes a frame buffer is made with room for after its header: a
/// one-key commit record and its recorded answer fit.
const TYPICAL_RECORD: usize = 244;
/// Checksums detect torn writes; they are not secret, so the key is fixed.
const FRAME_KEY: SipKey = SipKey::from_bytes(*b"pandagen-journal");

/// Push `record`'s encoding onto `body`.
fn encode(record: &CommitRecord, body: &mut Vec<u8>) -> Result<(), BackendError> {
    crate::wire_bytes::encode_into(record, body).map_err(|_| BackendError::Io)
}

/// A fault to inject into the next `apply`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyFault {
    /// Fail cleanly with this error: nothing is written.
    Fail(BackendError),
    /// Write only the first `keep` bytes of the frame (clamped so that the
    /// frame is always torn), then "crash": the backend accepts nothing more
    /// until `replay`.
    TornWrite { keep: usize },
}

/// Commit records in memory. Survives service restarts when shared (see
/// the `Rc<RefCell<_>>` impl of [`StorageBackend`]), not process exit.
#[derive(Debug)]
pub struct MemoryBackend {
    key: SipKey,
    journal: Vec<u8>,
    /// The most journal bytes kept; `apply` answers `Full` beyond it.
    capacity: usize,
    crashed: bool,
    fault: Option<ApplyFault>,
    /// The buffer the next frame is made in.
    frame: Vec<u8>,
}

impl MemoryBackend {
    /// An empty backend whose capability key is `key`. The key must come
    /// from a secret, unpredictable source (tests may use a constant).
    pub fn new(key: [u8; 16]) -> Self {
        MemoryBackend {
            key: SipKey::from_bytes(key),
            journal: Vec::new(),
            capacity: usize::MAX,
            crashed: false,
            fault: None,
            frame: Vec::new(),
        }
    }

    /// Refuse (with `Full`) any commit that would grow the journal past
    /// `bytes` — for a service whose heap is small, so that a client cannot
    /// exhaust it.
    pub fn with_capacity(mut self, bytes: usize) -> Self {
        self.capacity = bytes;
        self
    }

    /// Make the next `apply` fail in the given way.
    pub fn inject(&mut self, fault: ApplyFault) {
        self.fault = Some(fault);
    }

    /// Bytes in the journal, torn tail included.
    pub fn journal_len(&self) -> usize {
        self.journal.len()
    }

    /// The journal's bytes, torn tail included (for tests that compare
    /// two journals).
    #[cfg(test)]
    pub(crate) fn journal_bytes(&self) -> &[u8] {
        &self.journal
    }

    fn checksum(record: &[u8]) -> u64 {
        let mut buf = Vec::with_capacity(4 + record.len());
        buf.extend_from_slice(&(record.len() as u32).to_le_bytes());
        buf.extend_from_slice(record);
        siphash24(&FRAME_KEY, &buf)
    }

    /// The framed record: `len | checksum | body`, in a buffer of its own
    /// (see [`Self::frame_with`]).
    #[cfg(test)]
    fn frame(record: &CommitRecord) -> Result<Vec<u8>, BackendError> {
        let mut frame = Vec::new();
        Self::frame_with(&mut frame, |body| encode(record, body))?;
        Ok(frame)
    }

    /// Write the framed record whose body `encode` pushes, `len | checksum
    /// | body`, into `frame` (emptied first). The body is encoded in place
    /// after the header; the checksum covers `len | body`, which the buffer
    /// holds contiguously once `len` is written just before the body, so
    /// nothing is copied.
    fn frame_with(
        frame: &mut Vec<u8>,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        frame.clear();
        // Room for a typical record from the start, so that encoding does
        // not grow the buffer step by step.
        frame.reserve(HEADER + TYPICAL_RECORD);
        frame.resize(HEADER, 0);
        encode(frame)?;
        let len = u32::try_from(frame.len() - HEADER).map_err(|_| BackendError::Full)?;
        let len = len.to_le_bytes();
        // `len | body` as the checksum reads it: `len` in the last 4 bytes
        // of the header for a moment.
        frame[HEADER - 4..HEADER].copy_from_slice(&len);
        let sum = siphash24(&FRAME_KEY, &frame[HEADER - 4..]);
        frame[..4].copy_from_slice(&len);
        frame[4..HEADER].copy_from_slice(&sum.to_le_bytes());
        Ok(())
    }

    /// Frame the body `encode` pushes and append it to the journal (see
    /// [`StorageBackend::apply`]).
    fn apply_with(
        &mut self,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        if self.crashed {
            return Err(BackendError::Crashed);
        }
        // The frame is made in a buffer kept from one record to the next
        // (so that a commit allocates nothing here), then copied to the
        // journal whole.
        let mut frame = mem::take(&mut self.frame);
        let result = Self::frame_with(&mut frame, encode).and_then(|()| self.append(&frame));
        // A record far larger than usual does not keep its block.
        frame.clear();
        frame.shrink_to(HEADER + TYPICAL_RECORD);
        self.frame = frame;
        result
    }

    /// Append `frame` to the journal, or fail as the injected fault says.
    fn append(&mut self, frame: &[u8]) -> Result<(), BackendError> {
        if self.journal.len().saturating_add(frame.len()) > self.capacity {
            return Err(BackendError::Full);
        }
        match self.fault.take() {
            None => {
                self.journal.extend_from_slice(frame);
                Ok(())
            }
            Some(ApplyFault::Fail(e)) => Err(e),
            Some(ApplyFault::TornWrite { keep }) => {
                let keep = keep.min(frame.len() - 1);
                self.journal.extend_from_slice(&frame[..keep]);
                self.crashed = true;
                Err(BackendError::Crashed)
            }
        }
    }
}

impl StorageBackend for MemoryBackend {
    fn cap_key(&self) -> SipKey {
        self.key
    }

    fn apply(&mut self, record: &CommitRecord) -> Result<(), BackendError> {
        self.apply_with(|body| encode(record, body))
    }

    fn apply_map_update(&mut self, update: &MapUpdate<'_>) -> Result<(), BackendError> {
        self.apply_with(|body| {
            update.encode_into(body);
            Ok(())
        })
    }

    fn replay(
        &mut self,
        visit: &mut dyn FnMut(CommitRecord),
    ) -> Result<RecoveryReport, BackendError> {
        let mut report = RecoveryReport::default();
        let mut at = 0;
        while at < self.journal.len() {
            let rest = &self.journal[at..];
            if rest.len() < HEADER {
                break; // torn header
            }
            let mut len = [0u8; 4];
            len.copy_from_slice(&rest[..4]);
            let len = u32::from_le_bytes(len) as usize;
            let Some(body) = rest.get(HEADER..HEADER + len) else {
                break; // torn body
            };
            let mut sum = [0u8; 8];
            sum.copy_from_slice(&rest[4..HEADER]);
            if u64::from_le_bytes(sum) != Self::checksum(body) {
                if HEADER + len < rest.len() {
                    // A bad frame with good data after it is not a torn
                    // tail: the medium is corrupt.
                    return Err(BackendError::Corrupt);
                }
                break;
            }
            let record: CommitRecord =
                pandagen_abi::evolve::from_bytes(body).map_err(|_| BackendError::Corrupt)?;
            visit(record);
            report.records += 1;
            at += HEADER + len;
        }
        report.discarded_bytes = (self.journal.len() - at) as u64;
        self.journal.truncate(at);
        self.crashed = false;
        self.fault = None;
        Ok(report)
    }

    /// The journal in memory is never compacted.
    fn compactions(&self) -> u64 {
        0
    }

    /// A torn frame is at the end of the journal, where `replay` cuts it
    /// off.
    fn recover(&mut self, last: CommitSeq) -> Result<(), BackendError> {
        let mut found = CommitSeq::ZERO;
        self.replay(&mut |record| found = record.seq)?;
        if found != last {
            self.crashed = true;
            return Err(BackendError::Corrupt);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{CommitSeq, ObjectId, VersionId};
    use crate::object::ObjectKind;
    use crate::record::Change;
    use alloc::vec;

    fn record(seq: u64) -> CommitRecord {
        CommitRecord {
            seq: CommitSeq::from_raw(seq),
            changes: vec![
                Change::Create {
                    object: ObjectId::from_raw(seq),
                    kind: ObjectKind::Log,
                    version: VersionId::from_raw(seq),
                },
                Change::LogAppend {
                    object: ObjectId::from_raw(seq),
                    version: VersionId::from_raw(seq + 100),
                    records: vec![vec![seq as u8; 5]],
                },
            ],
            origin: None,
        }
    }

    fn replayed(backend: &mut MemoryBackend) -> (Vec<CommitRecord>, RecoveryReport) {
        let mut out = Vec::new();
        let report = backend.replay(&mut |r| out.push(r)).unwrap();
        (out, report)
    }

    #[test]
    fn records_replay_in_order() {
        let mut b = MemoryBackend::new([7; 16]);
        for seq in 1..=3 {
            b.apply(&record(seq)).unwrap();
        }
        let (records, report) = replayed(&mut b);
        assert_eq!(records, vec![record(1), record(2), record(3)]);
        assert_eq!(report.discarded_bytes, 0);
    }

    #[test]
    fn every_torn_write_is_discarded_and_the_journal_continues() {
        let full = MemoryBackend::frame(&record(2)).unwrap().len();
        for keep in 0..full {
            let mut b = MemoryBackend::new([7; 16]);
            b.apply(&record(1)).unwrap();
            b.inject(ApplyFault::TornWrite { keep });
            assert_eq!(b.apply(&record(2)), Err(BackendError::Crashed));
            assert_eq!(b.apply(&record(3)), Err(BackendError::Crashed));
            let (records, report) = replayed(&mut b);
            assert_eq!(records, vec![record(1)], "keep={keep}");
            assert_eq!(report.discarded_bytes, keep as u64);
            // After recovery the journal accepts records again.
            b.apply(&record(2)).unwrap();
            let (records, _) = replayed(&mut b);
            assert_eq!(records, vec![record(1), record(2)]);
        }
    }

    /// A map update written from its parts is the frame of its record,
    /// and fails as its record does (torn, then crashed; full).
    #[test]
    fn a_map_update_is_written_as_its_record() {
        use crate::record::{MapUpdate, Origin};
        let origin = Origin {
            task: 3,
            message: 400,
            answer: vec![1, 2, 3],
        };
        let update = |seq: u64| MapUpdate {
            seq: CommitSeq::from_raw(seq),
            object: ObjectId::from_raw(1),
            version: VersionId::from_raw(seq * 10),
            key: b"key",
            value: seq.is_multiple_of(2).then_some(&b"value"[..]),
            origin: seq.is_multiple_of(3).then_some(&origin),
        };
        let one = MemoryBackend::frame(&update(1).to_record()).unwrap().len();
        let mut by_record = MemoryBackend::new([7; 16]).with_capacity(6 * one);
        let mut by_parts = MemoryBackend::new([7; 16]).with_capacity(6 * one);
        let mut outcomes = Vec::new();
        for seq in 1..=9 {
            if seq == 4 {
                by_record.inject(ApplyFault::TornWrite { keep: 5 });
                by_parts.inject(ApplyFault::TornWrite { keep: 5 });
            }
            let outcome = by_record.apply(&update(seq).to_record());
            assert_eq!(by_parts.apply_map_update(&update(seq)), outcome, "{seq}");
            assert_eq!(by_parts.journal, by_record.journal, "{seq}");
            if seq == 5 {
                assert_eq!(outcome, Err(BackendError::Crashed));
                replayed(&mut by_record);
                replayed(&mut by_parts);
            }
            outcomes.push(outcome);
        }
        assert!(outcomes.contains(&Err(BackendError::Full)));
        let written: Vec<_> = (1..=9)
            .zip(&outcomes)
            .filter(|(_, outcome)| outcome.is_ok())
            .map(|(seq, _)| update(seq).to_record())
            .collect();
        assert_eq!(replayed(&mut by_parts).0, written);
    }

    #[test]
    fn a_clean_failure_writes_nothing() {
        let mut b = MemoryBackend::new([7; 16]);
        b.inject(ApplyFault::Fail(BackendError::Full));
        assert_eq!(b.apply(&record(1)), Err(BackendError::Full));
        assert_eq!(b.journal_len(), 0);
        b.apply(&record(1)).unwrap();
        assert_eq!(replayed(&mut b).0, vec![record(1)]);
    }

    #[test]
    fn a_full_backend_refuses_and_keeps_what_it_has() {
        let one = MemoryBackend::frame(&record(1)).unwrap().len();
        let mut b = MemoryBackend::new([7; 16]).with_capacity(one + 10);
        b.apply(&record(1)).unwrap();
        assert_eq!(b.apply(&record(2)), Err(BackendError::Full));
        assert_eq!(replayed(&mut b).0, vec![record(1)]);
    }

    #[test]
    fn corruption_before_the_tail_is_reported() {
        let mut b = MemoryBackend::new([7; 16]);
        b.apply(&record(1)).unwrap();
        b.apply(&record(2)).unwrap();
        b.journal[HEADER + 1] ^= 0xff;
        assert_eq!(b.replay(&mut |_| {}), Err(BackendError::Corrupt));
    }
}
