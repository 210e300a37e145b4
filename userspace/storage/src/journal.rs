//! A journaled, crash-consistent backend on a block device, compacted by
//! checkpoints.
//!
//! Layout: blocks 0 and 1 are two copies of the superblock; the rest is the
//! data area. A superblock holds the magic, the block size, the capability
//! key, a *generation*, where the current checkpoint lies (`cp_start`,
//! `cp_blocks`; no checkpoint is `cp_blocks == 0`) and a checksum.
//! Generation `g` is written to block `g % 2`, so writing a new superblock
//! never touches the current one: a torn superblock write leaves the other
//! copy intact, and recovery takes the valid copy with the highest
//! generation.
//!
//! The live part of the data area is one extent: the checkpoint at
//! `cp_start`, then the journal frames of the current generation. Each
//! commit record is one *frame* starting on a block boundary:
//!
//! ```text
//! magic "PGJR" | seq u64 | len u32 | mac u64 | record (postcard) | padding
//! ```
//!
//! where `mac` is SipHash-2-4 under the volume's secret key over the magic,
//! the generation, the sequence number, the length and the record. `apply`
//! writes the frame into blocks past the tail — blocks that hold no live
//! data — and flushes; live blocks are never rewritten, so a torn write can
//! only damage the frame being written. Recovery reads the checkpoint, then
//! frames from the block after it, and stops at the first frame that does
//! not verify or does not carry a newer sequence number: that is the torn
//! tail (or stale data of an older generation, whose MACs never verify
//! under the current one), and the next `apply` overwrites it.
//!
//! A *checkpoint* is the live history packed densely — `len u32 | record`
//! after a header `magic "PGCP" | generation u64 | last seq u64 | len u32 |
//! mac u64` — with what no longer matters left out: `Open` changes (only the
//! newest instance number is kept, on the last record), all but the last
//! revocation of each object, and origins whose answers the store no longer
//! remembers (see `compact_records`). Every version of every object stays,
//! so old versions remain readable, and replaying the checkpoint through
//! the store's own `Catalog::apply` rebuilds exactly the state the full
//! history did. Frames take at least a block each; packed, a small commit
//! takes a few dozen bytes.
//!
//! Compaction (`compact`, run by `apply` when the journal nears the end of
//! the device or could no longer be compacted after the next frame):
//! 1. pack the live records and write the checkpoint into free blocks —
//!    before the live extent if it fits there, else after it — and flush;
//! 2. write the superblock of generation `g + 1`, pointing at it, into the
//!    other superblock copy, and flush. That write is the switch.
//!
//! A crash before the switch completes leaves generation `g` as the newest
//! valid superblock and its extent untouched: the old state opens. After it,
//! the new checkpoint (flushed before) opens, and the old extent is free.
//! Never a mix: frames carry their generation in their MAC.
//!
//! An ordinary commit is refused with `Full` unless, after it, a checkpoint
//! of everything would still fit in free blocks, so compaction stays
//! possible; live data can therefore fill about half of the data area. The
//! small `Open` record of a restart may use the rest, so that a store that
//! answers `Full` can still be reopened and read.
//!
//! Because the MAC is keyed with the secret key, no client data stored in a
//! record can ever pass for a frame or a checkpoint, and data from a
//! previous format of the device (another key) is never replayed.
//!
//! In ring 3 the device is the kernel's block device, reached through
//! [`crate::device::BlockCallClient`].

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec;
use alloc::vec::Vec;
use pandagen_abi::block::BlockDevice;
use pandagen_abi::BlockError;

use crate::backend::{BackendError, RecoveryReport, StorageBackend};
use crate::ids::CommitSeq;
use crate::record::{Change, CommitRecord};
use crate::siphash::{siphash24, SipKey};
use crate::store::DURABLE_ANSWERS;

const SUPER_MAGIC: &[u8; 8] = b"PGSTORE2";
const SUPER_KEY: SipKey = SipKey::from_bytes(*b"pandagen-superbk");
/// magic | block size | key | generation | cp_start | cp_blocks
const SUPER_LEN: usize = 8 + 4 + 16 + 8 + 8 + 8;
const FRAME_MAGIC: &[u8; 4] = b"PGJR";
const FRAME_HEADER: usize = 4 + 8 + 4 + 8;
const CHECKPOINT_MAGIC: &[u8; 4] = b"PGCP";
const CHECKPOINT_HEADER: usize = 4 + 8 + 8 + 4 + 8;
/// The first block of the data area (blocks 0 and 1 are superblocks).
const DATA_START: u64 = 2;
/// What packing may add to the live records: the merged `Open` change.
const PACK_SLACK: u64 = 16;
/// The smallest block that holds a superblock and a frame header.
pub const MIN_BLOCK_SIZE: usize = 64;

/// A backend over a block device (see the module docs).
pub struct JournalBackend<D: BlockDevice> {
    device: D,
    key: SipKey,
    block_size: usize,
    /// The generation of the current superblock.
    generation: u64,
    /// The current checkpoint's extent (`cp_blocks == 0`: none).
    cp_start: u64,
    cp_blocks: u64,
    /// The first block past the last good frame.
    tail: u64,
    last_seq: CommitSeq,
    /// An upper bound on the packed size of the live records.
    packed: u64,
    /// `apply` is refused until `replay` has found the tail, and again
    /// after a failed write, until the next `replay`.
    ready: bool,
}

impl<D: BlockDevice> core::fmt::Debug for JournalBackend<D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("JournalBackend")
            .field("block_size", &self.block_size)
            .field("generation", &self.generation)
            .field("cp_start", &self.cp_start)
            .field("cp_blocks", &self.cp_blocks)
            .field("tail", &self.tail)
            .field("last_seq", &self.last_seq)
            .field("ready", &self.ready)
            .finish()
    }
}

fn io<T>(r: Result<T, BlockError>) -> Result<T, BackendError> {
    r.map_err(|_| BackendError::Io)
}

fn superblock_sum(bytes: &[u8]) -> u64 {
    siphash24(&SUPER_KEY, bytes)
}

fn le_u64(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default())
}

fn le_u32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes[..4].try_into().unwrap_or_default())
}

/// One superblock's contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Superblock {
    key: [u8; 16],
    generation: u64,
    cp_start: u64,
    cp_blocks: u64,
}

impl Superblock {
    fn encode(&self, block_size: usize) -> Vec<u8> {
        let mut block = vec![0u8; block_size];
        block[..8].copy_from_slice(SUPER_MAGIC);
        block[8..12].copy_from_slice(&(block_size as u32).to_le_bytes());
        block[12..28].copy_from_slice(&self.key);
        block[28..36].copy_from_slice(&self.generation.to_le_bytes());
        block[36..44].copy_from_slice(&self.cp_start.to_le_bytes());
        block[44..52].copy_from_slice(&self.cp_blocks.to_le_bytes());
        let sum = superblock_sum(&block[..SUPER_LEN]);
        block[SUPER_LEN..SUPER_LEN + 8].copy_from_slice(&sum.to_le_bytes());
        block
    }

    fn decode(block: &[u8], block_count: u64) -> Option<Self> {
        let block_size = block.len();
        if &block[..8] != SUPER_MAGIC
            || le_u32(&block[8..]) as usize != block_size
            || le_u64(&block[SUPER_LEN..]) != superblock_sum(&block[..SUPER_LEN])
        {
            return None;
        }
        let mut key = [0u8; 16];
        key.copy_from_slice(&block[12..28]);
        let sb = Superblock {
            key,
            generation: le_u64(&block[28..]),
            cp_start: le_u64(&block[36..]),
            cp_blocks: le_u64(&block[44..]),
        };
        let end = sb.cp_start.checked_add(sb.cp_blocks)?;
        (sb.cp_start >= DATA_START && end <= block_count).then_some(sb)
    }

    /// The newest valid superblock on `device`.
    fn read<D: BlockDevice>(device: &mut D) -> Result<Self, BackendError> {
        let block_size = device.block_size() as usize;
        let count = device.block_count();
        let mut best: Option<Superblock> = None;
        for slot in 0..DATA_START {
            let mut block = vec![0u8; block_size];
            io(device.read_blocks(slot, &mut block))?;
            if let Some(sb) = Superblock::decode(&block, count) {
                if sb.generation % DATA_START == slot
                    && best.is_none_or(|b| sb.generation > b.generation)
                {
                    best = Some(sb);
                }
            }
        }
        best.ok_or(BackendError::Corrupt)
    }
}

/// Drop from `records` (a store's whole durable history, in commit order)
/// what replaying them does not need, so that replaying the result builds
/// the same store (see `Catalog::apply`):
///
/// * `Open` changes only raise the instance number: one `Open` with the
///   highest, on the last record, does the same;
/// * only the last `Revoke` of an object sets its epoch;
/// * the store remembers the answers of the last [`DURABLE_ANSWERS`]
///   distinct origins, in the order each was first recorded and with its
///   latest answer. Exactly those entries are kept: for each, the origin
///   of the record that entered it and of the one that last set it. With
///   no more than that many keys, replay evicts nothing, so it rebuilds
///   the same entries in the same order;
/// * a record left with no change and no origin is dropped, but the last
///   record always stays, so the last commit number is kept.
///
/// Every creation and every version stays.
fn compact_records(mut records: Vec<CommitRecord>) -> Vec<CommitRecord> {
    let Some(last) = records.len().checked_sub(1) else {
        return records;
    };
    // Which origins to keep: replay the store's remembering.
    let mut entries: BTreeMap<(u64, u64), (usize, usize)> = BTreeMap::new();
    let mut order = VecDeque::new();
    for (i, record) in records.iter().enumerate() {
        if let Some(origin) = &record.origin {
            let key = (origin.task, origin.message);
            match entries.get_mut(&key) {
                Some(entry) => entry.1 = i,
                None => {
                    entries.insert(key, (i, i));
                    order.push_back(key);
                }
            }
            while order.len() > DURABLE_ANSWERS {
                if let Some(old) = order.pop_front() {
                    entries.remove(&old);
                }
            }
        }
    }
    let keep_origin: BTreeSet<usize> = entries.values().flat_map(|&(a, b)| [a, b]).collect();
    let mut instance = 0;
    let mut revoked = BTreeSet::new();
    // Backwards, so that the last revocation of each object is met first.
    for (i, record) in records.iter_mut().enumerate().rev() {
        record.changes.retain(|change| match change {
            Change::Open { instance: n } => {
                instance = instance.max(*n);
                false
            }
            Change::Revoke { object, .. } => revoked.insert(*object),
            _ => true,
        });
        if !keep_origin.contains(&i) {
            record.origin = None;
        }
    }
    if instance > 0 {
        records[last].changes.push(Change::Open { instance });
    }
    let mut i = 0;
    records.retain(|record| {
        i += 1;
        i == last + 1 || !record.changes.is_empty() || record.origin.is_some()
    });
    records
}

impl<D: BlockDevice> JournalBackend<D> {
    /// Format `device` as an empty volume with capability key `key`.
    pub fn format(mut device: D, key: [u8; 16]) -> Result<Self, BackendError> {
        let block_size = device.block_size() as usize;
        if block_size < MIN_BLOCK_SIZE || device.block_count() <= DATA_START {
            return Err(BackendError::Full);
        }
        let sb = Superblock {
            key,
            generation: 0,
            cp_start: DATA_START,
            cp_blocks: 0,
        };
        // Void the other superblock copy and whatever the first journal
        // block held before, then write the superblock.
        let void = vec![0u8; block_size];
        io(device.write_blocks(1, &void))?;
        io(device.write_blocks(DATA_START, &void))?;
        io(device.flush())?;
        io(device.write_blocks(0, &sb.encode(block_size)))?;
        io(device.flush())?;
        Ok(JournalBackend {
            device,
            key: SipKey::from_bytes(key),
            block_size,
            generation: 0,
            cp_start: DATA_START,
            cp_blocks: 0,
            tail: DATA_START,
            last_seq: CommitSeq::ZERO,
            packed: 0,
            ready: true,
        })
    }

    /// Open the volume on `device`, or format it with capability key `key`
    /// if the device is blank (both superblocks all zeros, as on a fresh
    /// RAM disk). Returns whether it was formatted. A device that is not
    /// blank and holds no valid superblock is `Corrupt`, and is left as it
    /// is: data is never formatted away.
    pub fn open_or_format(mut device: D, key: [u8; 16]) -> Result<(Self, bool), BackendError> {
        let block_size = device.block_size() as usize;
        if block_size < MIN_BLOCK_SIZE || device.block_count() <= DATA_START {
            return Err(BackendError::Full);
        }
        let mut blocks = vec![0u8; DATA_START as usize * block_size];
        io(device.read_blocks(0, &mut blocks))?;
        if blocks.iter().all(|&b| b == 0) {
            Ok((Self::format(device, key)?, true))
        } else {
            Ok((Self::open(device)?, false))
        }
    }

    /// Open a formatted volume. Call `replay` (as `ObjectStore::open`
    /// does) before applying anything.
    pub fn open(mut device: D) -> Result<Self, BackendError> {
        let block_size = device.block_size() as usize;
        if block_size < MIN_BLOCK_SIZE || device.block_count() <= DATA_START {
            return Err(BackendError::Corrupt);
        }
        let sb = Superblock::read(&mut device)?;
        Ok(JournalBackend {
            device,
            key: SipKey::from_bytes(sb.key),
            block_size,
            generation: sb.generation,
            cp_start: sb.cp_start,
            cp_blocks: sb.cp_blocks,
            tail: sb.cp_start + sb.cp_blocks,
            last_seq: CommitSeq::ZERO,
            packed: 0,
            ready: false,
        })
    }

    /// Hand back the device (to reopen it, as after a restart).
    pub fn into_device(self) -> D {
        self.device
    }

    /// The device, e.g. to inject faults into it in tests.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// The first free journal block.
    pub fn tail(&self) -> u64 {
        self.tail
    }

    /// The current superblock generation: how many compactions completed.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The first journal block (just past the checkpoint).
    fn journal_start(&self) -> u64 {
        self.cp_start + self.cp_blocks
    }

    fn mac(&self, magic: &[u8; 4], seq: u64, body: &[u8]) -> u64 {
        let mut message = Vec::with_capacity(24 + body.len());
        message.extend_from_slice(magic);
        message.extend_from_slice(&self.generation.to_le_bytes());
        message.extend_from_slice(&seq.to_le_bytes());
        message.extend_from_slice(&(body.len() as u32).to_le_bytes());
        message.extend_from_slice(body);
        siphash24(&self.key, &message)
    }

    fn blocks_for(&self, bytes: u64) -> u64 {
        bytes.div_ceil(self.block_size as u64)
    }

    /// The blocks a checkpoint of `packed` record bytes takes.
    fn checkpoint_blocks(&self, packed: u64) -> u64 {
        self.blocks_for(CHECKPOINT_HEADER as u64 + packed + PACK_SLACK)
    }

    /// Where a checkpoint of `blocks` blocks can go while the live extent
    /// ends at `end`: before the live extent if it fits, else after it.
    fn checkpoint_place(&self, blocks: u64, end: u64) -> Option<u64> {
        if DATA_START + blocks <= self.cp_start {
            Some(DATA_START)
        } else if end + blocks <= self.device.block_count() {
            Some(end)
        } else {
            None
        }
    }

    /// The record in the frame at `at`, its blocks and its length, if a
    /// good frame of the current generation is there.
    fn read_frame(&mut self, at: u64) -> Result<Option<(CommitRecord, u64, u64)>, BackendError> {
        let count = self.device.block_count();
        if at >= count {
            return Ok(None);
        }
        let mut first = vec![0u8; self.block_size];
        io(self.device.read_blocks(at, &mut first))?;
        if &first[..4] != FRAME_MAGIC {
            return Ok(None);
        }
        let seq = le_u64(&first[4..]);
        let len = le_u32(&first[12..]) as usize;
        let mac = le_u64(&first[16..]);
        let blocks = self.blocks_for((FRAME_HEADER + len) as u64);
        if blocks > count - at {
            return Ok(None);
        }
        let mut frame = first;
        frame.resize(blocks as usize * self.block_size, 0);
        if blocks > 1 {
            io(self
                .device
                .read_blocks(at + 1, &mut frame[self.block_size..]))?;
        }
        let body = &frame[FRAME_HEADER..FRAME_HEADER + len];
        if mac != self.mac(FRAME_MAGIC, seq, body) {
            return Ok(None);
        }
        let record: CommitRecord = match pandagen_abi::evolve::from_bytes(body) {
            Ok(r) => r,
            // Verified but undecodable: written by an incompatible version.
            Err(_) => return Err(BackendError::Corrupt),
        };
        if record.seq.as_raw() != seq {
            return Err(BackendError::Corrupt);
        }
        Ok(Some((record, blocks, len as u64)))
    }

    /// The current checkpoint's records, its last commit and its packed
    /// length. The superblock points at it only after it was flushed, so
    /// one that does not verify is corruption.
    fn read_checkpoint(&mut self) -> Result<(Vec<CommitRecord>, CommitSeq, u64), BackendError> {
        if self.cp_blocks == 0 {
            return Ok((Vec::new(), CommitSeq::ZERO, 0));
        }
        let mut bytes = vec![0u8; self.cp_blocks as usize * self.block_size];
        io(self.device.read_blocks(self.cp_start, &mut bytes))?;
        let len = le_u32(&bytes[20..]) as usize;
        if &bytes[..4] != CHECKPOINT_MAGIC
            || le_u64(&bytes[4..]) != self.generation
            || CHECKPOINT_HEADER + len > bytes.len()
        {
            return Err(BackendError::Corrupt);
        }
        let last = le_u64(&bytes[12..]);
        let body = &bytes[CHECKPOINT_HEADER..CHECKPOINT_HEADER + len];
        if le_u64(&bytes[24..]) != self.mac(CHECKPOINT_MAGIC, last, body) {
            return Err(BackendError::Corrupt);
        }
        let mut records = Vec::new();
        let mut at = 0;
        while at < body.len() {
            let n = body
                .get(at..at + 4)
                .map(le_u32)
                .ok_or(BackendError::Corrupt)? as usize;
            let record = body
                .get(at + 4..at + 4 + n)
                .and_then(|b| pandagen_abi::evolve::from_bytes::<CommitRecord>(b).ok())
                .ok_or(BackendError::Corrupt)?;
            records.push(record);
            at += 4 + n;
        }
        Ok((records, CommitSeq::from_raw(last), len as u64))
    }

    /// Every live record: the checkpoint's, then the journal's.
    fn live_records(&mut self) -> Result<Vec<CommitRecord>, BackendError> {
        let (mut records, _, _) = self.read_checkpoint()?;
        let mut at = self.journal_start();
        while at < self.tail {
            match self.read_frame(at)? {
                Some((record, blocks, _)) => {
                    records.push(record);
                    at += blocks;
                }
                // `apply` wrote and flushed every frame before the tail.
                None => return Err(BackendError::Corrupt),
            }
        }
        Ok(records)
    }

    /// Write a checkpoint of everything and switch to it (see the module
    /// docs), freeing the space the old records took. Returns `false`,
    /// changing nothing, if no free extent can hold the checkpoint. On an
    /// error the volume holds the old state or the new one, and nothing
    /// more is accepted until `replay`.
    pub fn compact(&mut self) -> Result<bool, BackendError> {
        if !self.ready {
            return Err(BackendError::Crashed);
        }
        let records = compact_records(self.live_records()?);
        let mut body = Vec::new();
        for record in &records {
            let bytes = postcard::to_allocvec(record).map_err(|_| BackendError::Io)?;
            let n = u32::try_from(bytes.len()).map_err(|_| BackendError::Full)?;
            body.extend_from_slice(&n.to_le_bytes());
            body.extend_from_slice(&bytes);
        }
        let len = u32::try_from(body.len()).map_err(|_| BackendError::Full)?;
        let blocks = self.blocks_for((CHECKPOINT_HEADER + body.len()) as u64);
        let Some(start) = self.checkpoint_place(blocks, self.tail) else {
            return Ok(false);
        };
        let generation = self.generation + 1;
        let last = self.last_seq.as_raw();
        let mut image = vec![0u8; blocks as usize * self.block_size];
        image[..4].copy_from_slice(CHECKPOINT_MAGIC);
        image[4..12].copy_from_slice(&generation.to_le_bytes());
        image[12..20].copy_from_slice(&last.to_le_bytes());
        image[20..24].copy_from_slice(&len.to_le_bytes());
        let old = self.generation;
        self.generation = generation; // the MAC covers the new generation
        let mac = self.mac(CHECKPOINT_MAGIC, last, &body);
        self.generation = old;
        image[24..32].copy_from_slice(&mac.to_le_bytes());
        image[CHECKPOINT_HEADER..CHECKPOINT_HEADER + body.len()].copy_from_slice(&body);
        let sb = Superblock {
            key: self.key.to_bytes(),
            generation,
            cp_start: start,
            cp_blocks: blocks,
        };
        let written = self
            .device
            .write_blocks(start, &image)
            .and_then(|()| self.device.flush())
            .and_then(|()| {
                self.device
                    .write_blocks(generation % DATA_START, &sb.encode(self.block_size))
            })
            .and_then(|()| self.device.flush());
        if written.is_err() {
            // The switch may or may not have reached the medium; recovery
            // finds out which.
            self.ready = false;
            return Err(BackendError::Io);
        }
        self.generation = generation;
        self.cp_start = start;
        self.cp_blocks = blocks;
        self.tail = start + blocks;
        self.packed = body.len() as u64;
        Ok(true)
    }
}

impl<D: BlockDevice> StorageBackend for JournalBackend<D> {
    fn cap_key(&self) -> SipKey {
        self.key
    }

    fn apply(&mut self, record: &CommitRecord) -> Result<(), BackendError> {
        if !self.ready {
            return Err(BackendError::Crashed);
        }
        let body = postcard::to_allocvec(record).map_err(|_| BackendError::Io)?;
        let len = u32::try_from(body.len()).map_err(|_| BackendError::Full)?;
        let blocks = self.blocks_for((FRAME_HEADER + body.len()) as u64);
        let packed = self.packed + 4 + body.len() as u64;
        let count = self.device.block_count();
        let fits = |j: &Self| j.tail + blocks <= count;
        // After this frame, a checkpoint of everything must still fit.
        let compactable = |j: &Self| {
            j.checkpoint_place(j.checkpoint_blocks(packed), j.tail + blocks)
                .is_some()
        };
        // Compact if that can help: there are frames to pack, or the
        // checkpoint can move to the front of the data area. A checkpoint
        // that had to go after the live extent moves to the front at once.
        for _ in 0..2 {
            let helps =
                self.tail > self.journal_start() || DATA_START + self.cp_blocks <= self.cp_start;
            if (fits(self) && compactable(self)) || !helps || !self.compact()? {
                break;
            }
        }
        let restart = record.origin.is_none()
            && record
                .changes
                .iter()
                .all(|c| matches!(c, Change::Open { .. }));
        if !fits(self) || !(compactable(self) || restart) {
            return Err(BackendError::Full);
        }
        let seq = record.seq.as_raw();
        let mut frame = vec![0u8; blocks as usize * self.block_size];
        frame[..4].copy_from_slice(FRAME_MAGIC);
        frame[4..12].copy_from_slice(&seq.to_le_bytes());
        frame[12..16].copy_from_slice(&len.to_le_bytes());
        frame[16..24].copy_from_slice(&self.mac(FRAME_MAGIC, seq, &body).to_le_bytes());
        frame[FRAME_HEADER..FRAME_HEADER + body.len()].copy_from_slice(&body);
        let written = self
            .device
            .write_blocks(self.tail, &frame)
            .and_then(|()| self.device.flush());
        if written.is_err() {
            // The frame may be partly, or even wholly, on the medium. Void
            // its header so that recovery cannot replay a commit reported
            // as failed; either way accept nothing more until recovery has
            // found the real tail. (If the process dies instead, nobody was
            // told the commit failed, and replaying a whole frame is right.)
            let void = vec![0u8; self.block_size];
            let _ = self
                .device
                .write_blocks(self.tail, &void)
                .and_then(|()| self.device.flush());
            self.ready = false;
            return Err(BackendError::Io);
        }
        self.tail += blocks;
        self.last_seq = record.seq;
        self.packed = packed;
        Ok(())
    }

    fn replay(
        &mut self,
        visit: &mut dyn FnMut(CommitRecord),
    ) -> Result<RecoveryReport, BackendError> {
        // A failed compaction may have switched the superblock or not.
        let sb = Superblock::read(&mut self.device)?;
        if SipKey::from_bytes(sb.key) != self.key {
            return Err(BackendError::Corrupt);
        }
        self.generation = sb.generation;
        self.cp_start = sb.cp_start;
        self.cp_blocks = sb.cp_blocks;
        let mut report = RecoveryReport::default();
        let (records, mut last, mut packed) = self.read_checkpoint()?;
        for record in records {
            if record.seq > last {
                return Err(BackendError::Corrupt);
            }
            visit(record);
            report.records += 1;
        }
        let mut at = self.journal_start();
        while let Some((record, blocks, len)) = self.read_frame(at)? {
            if record.seq <= last {
                break; // a stale frame from before a torn tail was rewritten
            }
            last = record.seq;
            visit(record);
            report.records += 1;
            packed += 4 + len;
            at += blocks;
        }
        self.tail = at;
        self.last_seq = last;
        self.packed = packed;
        self.ready = true;
        Ok(report)
    }

    /// The superblock generation: each completed compaction raises it.
    fn compactions(&self) -> u64 {
        self.generation
    }
}

#[cfg(test)]
mod tests;
