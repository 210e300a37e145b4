//! The in-memory backend: an append-only journal of framed commit records
//! in a byte vector, laid out the way a block-device journal would be.
//!
//! Frame: `len: u32 LE | checksum: u64 LE | record: len bytes (postcard)`,
//! where the checksum ([`frame_sum`]) is over the length and the record. A
//! crash during `apply` can leave a torn final frame; `replay` recognises
//! it (short, or failing its checksum) and cuts it off. Fault injection
//! reproduces exactly that: a torn write followed by a crash, so tests
//! exercise the same recovery path a disk would.
//!
//! The journal never leaves the task's memory (a disk journal is
//! [`journal`](crate::journal)'s, with its own keyed checksum), so its
//! checksum is not a format kept across versions: it only has to tell a
//! damaged frame from the one written. A torn frame is the journal's last
//! and shorter than its length says; a frame damaged in place fails the
//! checksum, which is a chain of invertible steps over the record's
//! eight-byte words (see [`frame_sum`]). It was SipHash-2-4 under a fixed
//! public key (no secret, so no stronger against a deliberate change),
//! about 370 instructions a put; this is about a fifth of that.

use alloc::vec::Vec;
use core::mem;

use crate::backend::{BackendError, RecoveryReport, StorageBackend};
use crate::ids::CommitSeq;
use crate::record::{CommitRecord, MapUpdate};
use crate::siphash::SipKey;

const HEADER: usize = 4 + 8;
/// The bytes a frame buffer is made with room for after its header: a
/// one-key commit record and its recorded answer fit.
const TYPICAL_RECORD: usize = 244;
/// The checksum's odd multiplier (the golden ratio's 64 bits) and start.
const SUM_MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;
const SUM_START: u64 = u64::from_le_bytes(*b"pandagen");

/// The checksum of a frame whose record is `record`: its length, then
/// each eight-byte word of the record (the last one padded with zeros),
/// mixed in by `sum = rotl((sum ^ word) * odd, 31)`, then stirred. Every
/// step is invertible for a fixed word, and a word's step is invertible
/// in the word, so two records of the same length that differ in one word
/// only (any change to up to eight bytes in a row within a word) always
/// sum differently; other damage goes unnoticed with a chance of about
/// 2^-64, as with SipHash.
fn frame_sum(record: &[u8]) -> u64 {
    let step = |sum: u64, word: u64| (sum ^ word).wrapping_mul(SUM_MULTIPLIER).rotate_left(31);
    let mut sum = step(SUM_START, record.len() as u64);
    let mut words = record.chunks_exact(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        sum = step(sum, u64::from_le_bytes(bytes));
    }
    let last = words
        .remainder()
        .iter()
        .rev()
        .fold(0u64, |word, &byte| word << 8 | u64::from(byte));
    sum = step(sum, last);
    // Stir, so that every bit of the last word reaches every bit of the
    // sum (an invertible xor-shift and multiply).
    sum ^= sum >> 29;
    sum = sum.wrapping_mul(SUM_MULTIPLIER);
    sum ^ sum >> 32
}

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
    /// after the header, so nothing is copied.
    fn frame_with(
        frame: &mut Vec<u8>,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        frame.clear();
        // Room for a typical record from the start, so that encoding does
        // not grow the buffer step by step.
        frame.reserve(HEADER + TYPICAL_RECORD);
        Self::push_frame(frame, encode)
    }

    /// Push the framed record whose body `encode` pushes onto `out`, after
    /// the bytes it holds (see [`Self::frame_with`]). On an error, `out`
    /// may hold part of the frame after its earlier bytes.
    fn push_frame(
        out: &mut Vec<u8>,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        let start = out.len();
        out.resize(start + HEADER, 0);
        encode(out)?;
        let frame = &mut out[start..];
        let len = u32::try_from(frame.len() - HEADER).map_err(|_| BackendError::Full)?;
        let sum = frame_sum(&frame[HEADER..]);
        frame[..4].copy_from_slice(&len.to_le_bytes());
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

    /// [`Self::apply_with`] of a body of at most `max_len` bytes, framed
    /// in place at the journal's end rather than in the frame buffer and
    /// copied: the same checks in the same order (crashed, room, then the
    /// injected fault) and the same journal after, success or failure.
    /// The room is checked before the frame is written, so the journal
    /// never grows past its capacity: a body that may not fit takes
    /// [`Self::apply_with`]'s way, which checks its exact length.
    fn append_in_place(
        &mut self,
        max_len: usize,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), BackendError> {
        let start = self.journal.len();
        let fits = u32::try_from(max_len).is_ok()
            && start.saturating_add(HEADER.saturating_add(max_len)) <= self.capacity;
        if !fits || self.crashed {
            return self.apply_with(|body| {
                encode(body);
                Ok(())
            });
        }
        self.journal.reserve(HEADER + max_len);
        let framed = Self::push_frame(&mut self.journal, |body| {
            encode(body);
            Ok(())
        });
        if let Err(e) = framed {
            self.journal.truncate(start);
            return Err(e);
        }
        match self.fault.take() {
            None => Ok(()),
            Some(ApplyFault::Fail(e)) => {
                self.journal.truncate(start);
                Err(e)
            }
            Some(ApplyFault::TornWrite { keep }) => {
                let frame_len = self.journal.len() - start;
                self.journal.truncate(start + keep.min(frame_len - 1));
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
        // Its length is bounded before it is written: framed in place.
        self.append_in_place(update.max_encoded_len(), |body| update.encode_into(body))
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
            if u64::from_le_bytes(sum) != frame_sum(body) {
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

    /// A map update framed in place at the journal's end fails as its
    /// record framed apart does, under every fault: a clean failure, a
    /// torn write of any length, a crashed backend; and both journals
    /// replay and go on alike.
    #[test]
    fn a_map_update_in_place_fails_as_its_record() {
        use crate::record::{MapUpdate, Origin};
        let origin = Origin {
            task: 9,
            message: 1 << 40,
            answer: vec![7; 30],
        };
        let update = |seq: u64| MapUpdate {
            seq: CommitSeq::from_raw(seq),
            object: ObjectId::from_raw(2),
            version: VersionId::from_raw(seq + 200),
            key: b"a key of a map",
            value: Some(&[5; 40]),
            origin: Some(&origin),
        };
        let frame = MemoryBackend::frame(&update(2).to_record()).unwrap().len();
        let faults = [
            ApplyFault::Fail(BackendError::Io),
            ApplyFault::Fail(BackendError::Full),
        ]
        .into_iter()
        .chain((0..frame + 2).map(|keep| ApplyFault::TornWrite { keep }));
        for fault in faults {
            let mut by_record = MemoryBackend::new([7; 16]);
            let mut in_place = MemoryBackend::new([7; 16]);
            for backend in [&mut by_record, &mut in_place] {
                backend.apply(&update(1).to_record()).unwrap();
                backend.inject(fault);
            }
            for seq in [2, 3] {
                let outcome = by_record.apply(&update(seq).to_record());
                assert_eq!(
                    in_place.apply_map_update(&update(seq)),
                    outcome,
                    "{fault:?}"
                );
                assert_eq!(in_place.journal, by_record.journal, "{fault:?}");
            }
            assert_eq!(
                replayed(&mut in_place),
                replayed(&mut by_record),
                "{fault:?}"
            );
            by_record.apply(&update(4).to_record()).unwrap();
            in_place.apply_map_update(&update(4)).unwrap();
            assert_eq!(in_place.journal, by_record.journal, "{fault:?}");
        }
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

    /// Any change to a byte of a frame's checksum or record, followed by
    /// another frame, is reported as corruption; in the last frame it is
    /// cut off as a torn tail, as before.
    #[test]
    fn every_damaged_byte_is_caught() {
        let one = MemoryBackend::frame(&record(1)).unwrap().len();
        for at in 4..one {
            for flip in [0x01u8, 0x80, 0xff, 0x5a] {
                let mut b = MemoryBackend::new([7; 16]);
                b.apply(&record(1)).unwrap();
                b.apply(&record(2)).unwrap();
                b.journal[at] ^= flip;
                assert_eq!(
                    b.replay(&mut |_| {}),
                    Err(BackendError::Corrupt),
                    "{at} {flip}"
                );
                let mut b = MemoryBackend::new([7; 16]);
                b.apply(&record(1)).unwrap();
                b.journal[at] ^= flip;
                let (records, report) = replayed(&mut b);
                assert_eq!((records, report.discarded_bytes), (vec![], one as u64));
            }
        }
    }

    /// The checksum tells apart records that differ in any one word
    /// (several bytes of it at once) or only in their length (trailing
    /// zeros), and its bits depend on the last word's.
    #[test]
    fn the_frame_sum_tells_records_apart() {
        let base: Vec<u8> = (0..37u8).collect();
        let sum = frame_sum(&base);
        for word in 0..base.len().div_ceil(8) {
            let mut changed = base.clone();
            for byte in changed.iter_mut().skip(word * 8).take(8) {
                *byte ^= 0xa5;
            }
            assert_ne!(frame_sum(&changed), sum, "word {word}");
        }
        let mut longer = base.clone();
        longer.push(0);
        assert_ne!(frame_sum(&longer), sum);
        assert_ne!(frame_sum(&[]), frame_sum(&[0]));
        let mut last = base.clone();
        *last.last_mut().unwrap() ^= 1;
        assert!((frame_sum(&last) ^ sum).count_ones() > 8);
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
