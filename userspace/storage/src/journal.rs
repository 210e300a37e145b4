//! A journaled, crash-consistent backend on a block device whose live data
//! can fill most of the device, compacted in bounded memory.
//!
//! # Layout
//!
//! Blocks 0 and 1 are two copies of the superblock; the rest is the data
//! area. A superblock is `magic "PGSTORE4" | key XOR seal | generation u64
//! | cp_start u64 | cp_blocks u64 | seg_end u64 | sum u64` (64 bytes, so
//! it fits the smallest block): the capability key (sealed, see below), a
//! *generation*, where the pending segment lies (`cp_start`, `cp_blocks`;
//! none is `cp_blocks == 0`), the end of the segment area (`seg_end`), and
//! a checksum, SipHash-2-4 keyed with the key over the block size and the
//! fields (a superblock read with another block size does not verify).
//! Generation `g` is written to block `g % 2`, so writing a
//! new superblock never touches the current one: a torn superblock write
//! leaves the other copy intact, and recovery takes the valid copy with the
//! highest generation.
//!
//! The data area, in commit order:
//!
//! ```text
//! | segments ... | (dead) | pending segment | frames ... | free |
//! 2              seg_end  cp_start          tail
//! ```
//!
//! * **Frames.** Each commit record is one frame starting on a block
//!   boundary: `magic "PGJR" | seq u64 | len u32 | mac u64 | record
//!   (postcard) | padding`, where `mac` is SipHash-2-4 under the volume's
//!   secret key over the magic, the generation, the sequence number, the
//!   length and the record. `apply` writes the frame into free blocks past
//!   the tail and flushes *before* it returns: a commit is acknowledged
//!   only once it is on the medium. Recovery reads frames from the block
//!   after the pending segment and stops at the first frame that does not
//!   verify or does not carry a newer sequence number: that is the torn
//!   tail (or stale data of an older generation, whose MACs never verify
//!   under the current one), and the next `apply` overwrites it.
//! * **Segments.** A segment is records packed densely: a header `magic
//!   "PGSG" | generation u64 | first seq u64 | last seq u64 | body len u64 |
//!   mac u64`, then entries `len u32 | mac u64 | record`, each entry's MAC
//!   keyed like a frame's, so a record is verified before it is used. A
//!   segment is written once and then only ever copied byte for byte, so
//!   it verifies wherever it lies. The segment area `[2, seg_end)` holds
//!   segments back to back, oldest first; the superblock vouches for it.
//!
//! # Compaction
//!
//! Frames take at least a block each; packed, a small commit takes a few
//! dozen bytes. Compaction (`compact`, run by `apply` when the next frame
//! or the segment packing it would no longer fit) packs only what is not
//! yet in the segment area — the pending segment and the frames — and
//! never rewrites the segment area, so its cost and its space are bounded
//! by the journal since the last compaction, not by the live data:
//!
//! 1. *Pack*: stream the pending segment's records and the frames into a
//!    new segment written at the tail, and flush; then write the
//!    superblock of generation `g + 1` naming it the pending segment (the
//!    old pending segment and the frames are now dead), and flush.
//! 2. *Settle*: copy the pending segment to `seg_end` — over the dead
//!    blocks, which it fits into whenever packing did shrink them — and
//!    flush; then write the superblock of generation `g + 2` with the
//!    segment area grown by it and no pending segment, and flush. The
//!    journal starts again right after the segment area.
//!
//! Each superblock is written only after everything it points at was
//! flushed, and each commit is acknowledged only after its frame was
//! flushed, so a power cut that loses or reorders any unflushed writes
//! opens the last superblock that was flushed (or the one before it) with
//! everything it points at intact. Never a mix: frames carry their
//! generation in their MAC, and nothing a valid superblock points at is
//! written while that superblock may still be the newest on the medium.
//!
//! Packing drops what replay does not need: all but one `Open` change (the
//! highest instance, on the segment's last record), all but the last
//! revocation of each object in the segment, and records left with no
//! change and no origin (never the last). Every creation and version stays,
//! so old versions remain readable. Origins (the remembered answers) all
//! stay: which of them the store still remembers depends on the whole
//! history, and keeping them all makes replay rebuild exactly the answers
//! the full history did.
//!
//! **Memory.** Compaction streams: it reads records one at a time (a
//! segment in pieces of [`IO_CHUNK`] bytes) and writes the new segment in
//! pieces of `IO_CHUNK` bytes. It holds one piece of input, one piece of
//! output, the largest record, one block, and a map from each object
//! revoked since the last compaction to its last revocation (16 bytes
//! each); never the live records. Replay streams the same way.
//!
//! **Space.** An ordinary commit is refused with `Full` unless, after it,
//! the segment packing everything outside the segment area would still fit
//! after the tail, so compaction stays possible. The segment area itself
//! needs no spare copy, so live data can fill the data area but for about
//! twice the journal since the last compaction (its frames, then their
//! packing): with small commits, nearly the whole device. The small `Open`
//! record of a restart may use the rest, so that a store that answers
//! `Full` can still be reopened and read.
//!
//! Because the MAC is keyed with the secret key, no client data stored in a
//! record can ever pass for a frame or a segment, and data from a previous
//! format of the device (another key) is never replayed.
//!
//! **Sealing.** The key must not be readable by another holder of the
//! device. A volume opened with a *seal* (`*_sealed`: 16 bytes only its
//! owner can obtain — in ring 3, the kernel's secret for the storage
//! program) stores `key XOR seal` in the superblock, and the superblock's
//! checksum is keyed with the key itself: the bytes on the device reveal
//! nothing about the key, and opening with the wrong seal finds no valid
//! superblock (`Corrupt`) rather than an empty volume. The unsealed calls
//! use an all-zero seal.
//!
//! # Older volumes
//!
//! A volume of the previous layout opens as a volume with an empty segment
//! area whose pending segment is its checkpoint (`magic "PGCP" | generation
//! | last seq | len u32 | mac u64` of `len u32 | record` entries, MAC over
//! the whole body), followed by frames as today. Its superblock is
//! `magic | block size u32 | key | generation | cp_start | cp_blocks | sum`,
//! either `PGSTORE3` (sealed as above) or, from before sealing, `PGSTORE2`
//! (the key in the clear, the checksum under a fixed key). The first
//! compaction packs the checkpoint and the frames into a segment — at the
//! tail, or, when the tail has no room for it, in the free blocks before
//! the checkpoint — and writes both superblock copies in the current
//! layout, sealed. Such a checkpoint is read whole (it is at most half of
//! the device it was written on). A volume too full to hold that segment
//! anywhere stays readable and keeps taking what fits in its journal;
//! a commit that needs the compaction is refused with `Full`, and nothing
//! already on it is touched.
//!
//! In ring 3 the device is the kernel's block device, reached through
//! [`crate::device::BlockCallClient`].

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec;
use alloc::vec::Vec;
use pandagen_abi::block::BlockDevice;
use pandagen_abi::BlockError;

use crate::backend::{BackendError, RecoveryReport, StorageBackend};
use crate::ids::{CommitSeq, ObjectId};
use crate::record::{Change, CommitRecord, MapUpdate};
use crate::siphash::{siphash24, SipKey};
use crate::store::DURABLE_ANSWERS;

/// How a superblock of the current layout begins.
pub const SUPER_MAGIC: &[u8; 8] = b"PGSTORE4";
/// How a sealed superblock of the previous layout (one checkpoint) begins.
const SEALED_LEGACY_SUPER_MAGIC: &[u8; 8] = b"PGSTORE3";
/// How a superblock of the previous layout written before sealing began,
/// and the fixed key of its checksum (its key was in the clear).
const LEGACY_SUPER_MAGIC: &[u8; 8] = b"PGSTORE2";
const LEGACY_SUPER_KEY: [u8; 16] = *b"pandagen-superbk";
/// The seal of a volume opened without one.
pub const NO_SEAL: [u8; 16] = [0; 16];
/// magic | key XOR seal | generation | cp_start | cp_blocks | seg_end
const SUPER_LEN: usize = 8 + 16 + 8 + 8 + 8 + 8;
/// The previous layout's superblock: magic | block size u32 | key (XOR
/// seal) | generation | cp_start | cp_blocks.
const LEGACY_SUPER_LEN: usize = 8 + 4 + 16 + 8 + 8 + 8;
const FRAME_MAGIC: &[u8; 4] = b"PGJR";
const FRAME_HEADER: usize = 4 + 8 + 4 + 8;
const LEGACY_CHECKPOINT_MAGIC: &[u8; 4] = b"PGCP";
const LEGACY_CHECKPOINT_HEADER: usize = 4 + 8 + 8 + 4 + 8;
const SEGMENT_MAGIC: &[u8; 4] = b"PGSG";
/// magic | generation | first seq | last seq | body len | mac
const SEGMENT_HEADER: usize = 4 + 8 + 8 + 8 + 8 + 8;
const ENTRY_MAGIC: &[u8; 4] = b"PGSE";
/// len u32 | mac u64
const ENTRY_HEADER: usize = 4 + 8;
/// The first block of the data area (blocks 0 and 1 are superblocks).
const DATA_START: u64 = 2;
/// What packing may add to the records it packs: the merged `Open` change.
const PACK_SLACK: u64 = 16;
/// The smallest block that holds a superblock (of either layout) and a
/// segment header.
pub const MIN_BLOCK_SIZE: usize = 64;
/// The most bytes compaction, replay and settling read or write at once.
pub const IO_CHUNK: usize = 64 * 1024;
/// A last segment of the area no larger than this (body bytes), nor than
/// an eighth of the data area, is packed again with the next compaction,
/// so that small compactions (and the `Open` records of restarts) do not
/// each leave a segment behind.
pub const MERGE_BYTES: u64 = IO_CHUNK as u64;
/// What an ordinary commit leaves free for a restart's `Open` record: its
/// frame (one block) and its entry in the next segment.
const RESTART_RESERVE_BLOCKS: u64 = 1;
const RESTART_ENTRY: u64 = 32;

/// A backend over a block device (see the module docs).
pub struct JournalBackend<D: BlockDevice> {
    device: D,
    key: SipKey,
    /// XORed onto the key where the superblock stores it.
    seal: [u8; 16],
    block_size: usize,
    /// The generation of the current superblock.
    generation: u64,
    /// The end of the segment area `[DATA_START, seg_end)`.
    seg_end: u64,
    /// The pending segment's extent (`cp_blocks == 0`: none).
    cp_start: u64,
    cp_blocks: u64,
    /// The pending segment is a checkpoint of the previous layout.
    legacy: bool,
    /// The first block past the last good frame.
    tail: u64,
    /// The last segment of the area (its first block and body length),
    /// when known.
    last_segment: Option<(u64, u64)>,
    last_seq: CommitSeq,
    /// An upper bound on the body of a segment packing the pending segment
    /// and the frames.
    pack_bytes: u64,
    /// `apply` is refused until `replay` has found the tail, and again
    /// after a failed write, until the next `replay`.
    ready: bool,
    /// Where the frame of a commit reported as failed starts, until its
    /// header is known to be voided on the medium.
    failed_frame: Option<u64>,
}

impl<D: BlockDevice> core::fmt::Debug for JournalBackend<D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("JournalBackend")
            .field("block_size", &self.block_size)
            .field("generation", &self.generation)
            .field("seg_end", &self.seg_end)
            .field("cp_start", &self.cp_start)
            .field("cp_blocks", &self.cp_blocks)
            .field("legacy", &self.legacy)
            .field("tail", &self.tail)
            .field("last_seq", &self.last_seq)
            .field("ready", &self.ready)
            .finish()
    }
}

fn io<T>(r: Result<T, BlockError>) -> Result<T, BackendError> {
    r.map_err(|_| BackendError::Io)
}

/// The checksum of a current superblock whose fields are `fields`, on a
/// device of `block_size` blocks.
fn superblock_sum(key: [u8; 16], block_size: usize, fields: &[u8]) -> u64 {
    let mut message = Vec::with_capacity(4 + fields.len());
    message.extend_from_slice(&(block_size as u32).to_le_bytes());
    message.extend_from_slice(fields);
    siphash24(&SipKey::from_bytes(key), &message)
}

fn xor(a: [u8; 16], b: [u8; 16]) -> [u8; 16] {
    core::array::from_fn(|i| a[i] ^ b[i])
}

fn le_u64(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default())
}

fn le_u32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes[..4].try_into().unwrap_or_default())
}

fn encode(record: &CommitRecord) -> Result<Vec<u8>, BackendError> {
    postcard::to_allocvec(record).map_err(|_| BackendError::Io)
}

/// One superblock's contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Superblock {
    /// The key itself (the device holds it sealed).
    key: [u8; 16],
    generation: u64,
    cp_start: u64,
    cp_blocks: u64,
    seg_end: u64,
    /// Read from a superblock of the previous layout.
    legacy: bool,
}

impl Superblock {
    /// Always in the current layout, sealed with `seal`.
    fn encode(&self, block_size: usize, seal: [u8; 16]) -> Vec<u8> {
        let mut block = vec![0u8; block_size];
        block[..8].copy_from_slice(SUPER_MAGIC);
        block[8..24].copy_from_slice(&xor(self.key, seal));
        block[24..32].copy_from_slice(&self.generation.to_le_bytes());
        block[32..40].copy_from_slice(&self.cp_start.to_le_bytes());
        block[40..48].copy_from_slice(&self.cp_blocks.to_le_bytes());
        block[48..56].copy_from_slice(&self.seg_end.to_le_bytes());
        let sum = superblock_sum(self.key, block_size, &block[..SUPER_LEN]);
        block[SUPER_LEN..SUPER_LEN + 8].copy_from_slice(&sum.to_le_bytes());
        block
    }

    /// The superblock in `block`, if it is one of either layout that
    /// verifies under `seal` and describes extents inside the device.
    fn decode(block: &[u8], block_count: u64, seal: [u8; 16]) -> Option<Self> {
        let sb = match &block[..8] {
            m if m == SUPER_MAGIC => Self::decode_current(block, seal)?,
            m if m == SEALED_LEGACY_SUPER_MAGIC => Self::decode_legacy(block, Some(seal))?,
            m if m == LEGACY_SUPER_MAGIC => Self::decode_legacy(block, None)?,
            _ => return None,
        };
        let end = sb.cp_start.checked_add(sb.cp_blocks)?;
        (DATA_START <= sb.seg_end && sb.seg_end <= sb.cp_start && end <= block_count).then_some(sb)
    }

    fn decode_current(block: &[u8], seal: [u8; 16]) -> Option<Self> {
        let key = xor(block[8..24].try_into().ok()?, seal);
        let sum = superblock_sum(key, block.len(), &block[..SUPER_LEN]);
        (le_u64(&block[SUPER_LEN..]) == sum).then_some(Superblock {
            key,
            generation: le_u64(&block[24..]),
            cp_start: le_u64(&block[32..]),
            cp_blocks: le_u64(&block[40..]),
            seg_end: le_u64(&block[48..]),
            legacy: false,
        })
    }

    /// A superblock of the previous layout: sealed with `seal`
    /// (`PGSTORE3`), or from before sealing (`PGSTORE2`, no seal: the key
    /// in the clear, the checksum under a fixed key).
    fn decode_legacy(block: &[u8], seal: Option<[u8; 16]>) -> Option<Self> {
        if le_u32(&block[8..]) as usize != block.len() {
            return None;
        }
        let stored: [u8; 16] = block[12..28].try_into().ok()?;
        let (key, sum_key) = match seal {
            Some(seal) => {
                let key = xor(stored, seal);
                (key, key)
            }
            None => (stored, LEGACY_SUPER_KEY),
        };
        let sum = siphash24(&SipKey::from_bytes(sum_key), &block[..LEGACY_SUPER_LEN]);
        (le_u64(&block[LEGACY_SUPER_LEN..]) == sum).then_some(Superblock {
            key,
            generation: le_u64(&block[28..]),
            cp_start: le_u64(&block[36..]),
            cp_blocks: le_u64(&block[44..]),
            seg_end: DATA_START,
            legacy: true,
        })
    }

    /// The newest valid superblock on `device`.
    fn read<D: BlockDevice>(device: &mut D, seal: [u8; 16]) -> Result<Self, BackendError> {
        let block_size = device.block_size() as usize;
        let count = device.block_count();
        let mut best: Option<Superblock> = None;
        for slot in 0..DATA_START {
            let mut block = vec![0u8; block_size];
            io(device.read_blocks(slot, &mut block))?;
            if let Some(sb) = Superblock::decode(&block, count, seal) {
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

/// What reading and writing the volume needs besides the device.
#[derive(Clone, Copy)]
struct Volume {
    key: SipKey,
    block_size: usize,
    /// The current generation.
    generation: u64,
}

impl Volume {
    fn mac(&self, magic: &[u8; 4], generation: u64, seq: u64, body: &[u8]) -> u64 {
        let mut message = Vec::with_capacity(24 + body.len());
        message.extend_from_slice(magic);
        message.extend_from_slice(&generation.to_le_bytes());
        message.extend_from_slice(&seq.to_le_bytes());
        message.extend_from_slice(&(body.len() as u32).to_le_bytes());
        message.extend_from_slice(body);
        siphash24(&self.key, &message)
    }

    fn blocks_for(&self, bytes: u64) -> u64 {
        bytes.div_ceil(self.block_size as u64)
    }

    /// Whole blocks in one piece of I/O.
    fn chunk_blocks(&self) -> u64 {
        (IO_CHUNK / self.block_size).max(1) as u64
    }

    /// The record in the frame at `at`, its blocks and its length, if a
    /// good frame of the current generation is there.
    fn read_frame<D: BlockDevice>(
        &self,
        device: &mut D,
        at: u64,
    ) -> Result<Option<(CommitRecord, u64, u64)>, BackendError> {
        let count = device.block_count();
        if at >= count {
            return Ok(None);
        }
        let mut first = vec![0u8; self.block_size];
        io(device.read_blocks(at, &mut first))?;
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
            io(device.read_blocks(at + 1, &mut frame[self.block_size..]))?;
        }
        let body = &frame[FRAME_HEADER..FRAME_HEADER + len];
        if mac != self.mac(FRAME_MAGIC, self.generation, seq, body) {
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

    /// The records of the previous layout's checkpoint at `start`, with
    /// their encoded lengths. The superblock points at it only after it
    /// was flushed, so one that does not verify is corruption.
    fn read_legacy_checkpoint<D: BlockDevice>(
        &self,
        device: &mut D,
        start: u64,
        blocks: u64,
    ) -> Result<Vec<(CommitRecord, u64)>, BackendError> {
        let mut bytes = vec![0u8; blocks as usize * self.block_size];
        io(device.read_blocks(start, &mut bytes))?;
        let len = le_u32(&bytes[20..]) as usize;
        if &bytes[..4] != LEGACY_CHECKPOINT_MAGIC
            || le_u64(&bytes[4..]) != self.generation
            || LEGACY_CHECKPOINT_HEADER + len > bytes.len()
        {
            return Err(BackendError::Corrupt);
        }
        let last = le_u64(&bytes[12..]);
        let body = &bytes[LEGACY_CHECKPOINT_HEADER..LEGACY_CHECKPOINT_HEADER + len];
        let mac = self.mac(LEGACY_CHECKPOINT_MAGIC, self.generation, last, body);
        if le_u64(&bytes[24..]) != mac {
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
            if record.seq.as_raw() > last {
                return Err(BackendError::Corrupt);
            }
            records.push((record, n as u64));
            at += 4 + n;
        }
        Ok(records)
    }
}

/// Reads one segment's records in order, `IO_CHUNK` bytes at a time,
/// verifying each entry before decoding it.
struct SegmentReader {
    generation: u64,
    first: u64,
    last: u64,
    /// The block after the segment.
    end: u64,
    /// The body's length.
    len: u64,
    /// The next block to read.
    next_block: u64,
    /// Body bytes not yet read from the device.
    remaining: u64,
    /// Body bytes read and not yet decoded, from `used` on.
    carry: Vec<u8>,
    used: usize,
    /// The last record's commit number.
    previous: u64,
}

impl SegmentReader {
    /// The segment at `at`, which must end by `limit`.
    fn open<D: BlockDevice>(
        volume: &Volume,
        device: &mut D,
        at: u64,
        limit: u64,
    ) -> Result<Self, BackendError> {
        let mut block = vec![0u8; volume.block_size];
        io(device.read_blocks(at, &mut block))?;
        let generation = le_u64(&block[4..]);
        let first = le_u64(&block[12..]);
        let last = le_u64(&block[20..]);
        let len = le_u64(&block[28..]);
        let mac = volume.mac(SEGMENT_MAGIC, generation, last, &block[12..36]);
        let end = volume
            .blocks_for((SEGMENT_HEADER as u64).saturating_add(len))
            .checked_add(at);
        let Some(end) = end.filter(|&end| end <= limit) else {
            return Err(BackendError::Corrupt);
        };
        if &block[..4] != SEGMENT_MAGIC
            || le_u64(&block[36..]) != mac
            || generation > volume.generation
            || first > last
            || first == 0
        {
            return Err(BackendError::Corrupt);
        }
        let in_first = (volume.block_size - SEGMENT_HEADER).min(len as usize);
        let carry = block[SEGMENT_HEADER..SEGMENT_HEADER + in_first].to_vec();
        Ok(SegmentReader {
            generation,
            first,
            last,
            end,
            len,
            next_block: at + 1,
            remaining: len - in_first as u64,
            carry,
            used: 0,
            previous: first - 1,
        })
    }

    /// The next record and its encoded length; `None` after the last.
    fn next<D: BlockDevice>(
        &mut self,
        volume: &Volume,
        device: &mut D,
    ) -> Result<Option<(CommitRecord, u64)>, BackendError> {
        loop {
            let available = &self.carry[self.used..];
            if available.len() >= ENTRY_HEADER {
                let n = le_u32(available) as usize;
                if (n as u64) > (available.len() - ENTRY_HEADER) as u64 + self.remaining {
                    return Err(BackendError::Corrupt);
                }
                if available.len() >= ENTRY_HEADER + n {
                    let body = &available[ENTRY_HEADER..ENTRY_HEADER + n];
                    let mac = volume.mac(ENTRY_MAGIC, self.generation, self.first, body);
                    if le_u64(&available[4..]) != mac {
                        return Err(BackendError::Corrupt);
                    }
                    let record: CommitRecord = pandagen_abi::evolve::from_bytes(body)
                        .map_err(|_| BackendError::Corrupt)?;
                    let seq = record.seq.as_raw();
                    if seq <= self.previous || seq > self.last {
                        return Err(BackendError::Corrupt);
                    }
                    self.previous = seq;
                    self.used += ENTRY_HEADER + n;
                    return Ok(Some((record, n as u64)));
                }
            }
            if self.remaining == 0 {
                return if available.is_empty() && self.previous == self.last {
                    Ok(None)
                } else {
                    Err(BackendError::Corrupt)
                };
            }
            self.carry.drain(..self.used);
            self.used = 0;
            let blocks = volume.chunk_blocks().min(volume.blocks_for(self.remaining));
            let mut piece = vec![0u8; blocks as usize * volume.block_size];
            io(device.read_blocks(self.next_block, &mut piece))?;
            self.next_block += blocks;
            let take = (piece.len() as u64).min(self.remaining) as usize;
            self.carry.extend_from_slice(&piece[..take]);
            self.remaining -= take as u64;
        }
    }
}

/// Writes a segment at `start`, `IO_CHUNK` bytes at a time; its first
/// block, which holds the header, is written last. It writes nothing at or
/// past `end`: a segment that would reach it is `Full`.
struct SegmentWriter {
    start: u64,
    end: u64,
    generation: u64,
    /// The next block to write.
    next_block: u64,
    /// Bytes not yet written: while `next_block == start`, from the start
    /// of the segment (header space included).
    pending: Vec<u8>,
    /// The first block, once the bytes after it were written.
    head: Option<Vec<u8>>,
    len: u64,
    first: u64,
    last: u64,
}

impl SegmentWriter {
    fn new(start: u64, end: u64, generation: u64) -> Self {
        SegmentWriter {
            start,
            end,
            generation,
            next_block: start,
            pending: vec![0u8; SEGMENT_HEADER],
            head: None,
            len: 0,
            first: 0,
            last: 0,
        }
    }

    fn push<D: BlockDevice>(
        &mut self,
        volume: &Volume,
        device: &mut D,
        record: &CommitRecord,
    ) -> Result<(), BackendError> {
        let body = encode(record)?;
        let n = u32::try_from(body.len()).map_err(|_| BackendError::Full)?;
        if self.first == 0 {
            self.first = record.seq.as_raw();
        }
        self.last = record.seq.as_raw();
        let mac = volume.mac(ENTRY_MAGIC, self.generation, self.first, &body);
        self.pending.extend_from_slice(&n.to_le_bytes());
        self.pending.extend_from_slice(&mac.to_le_bytes());
        self.pending.extend_from_slice(&body);
        self.len += (ENTRY_HEADER + body.len()) as u64;
        let chunk = volume.chunk_blocks() as usize * volume.block_size;
        while self.pending.len() >= chunk {
            self.write_out(device, volume, chunk)?;
        }
        Ok(())
    }

    /// Write the first `bytes` (whole blocks) of `pending`.
    fn write_out<D: BlockDevice>(
        &mut self,
        device: &mut D,
        volume: &Volume,
        bytes: usize,
    ) -> Result<(), BackendError> {
        let blocks = (bytes / volume.block_size) as u64;
        if self.next_block + blocks > self.end {
            return Err(BackendError::Full);
        }
        let mut from = 0;
        if self.next_block == self.start {
            self.head = Some(self.pending[..volume.block_size].to_vec());
            from = volume.block_size;
            self.next_block += 1;
        }
        if bytes > from {
            io(device.write_blocks(self.next_block, &self.pending[from..bytes]))?;
            self.next_block += ((bytes - from) / volume.block_size) as u64;
        }
        self.pending.drain(..bytes);
        Ok(())
    }

    /// Write what is left and the header; the segment's blocks.
    fn finish<D: BlockDevice>(
        mut self,
        volume: &Volume,
        device: &mut D,
    ) -> Result<u64, BackendError> {
        let size = volume.block_size;
        let padded = self.pending.len().div_ceil(size) * size;
        self.pending.resize(padded, 0);
        if !self.pending.is_empty() {
            self.write_out(device, volume, padded)?;
        }
        let mut head = self.head.take().ok_or(BackendError::Io)?;
        head[..4].copy_from_slice(SEGMENT_MAGIC);
        head[4..12].copy_from_slice(&self.generation.to_le_bytes());
        head[12..20].copy_from_slice(&self.first.to_le_bytes());
        head[20..28].copy_from_slice(&self.last.to_le_bytes());
        head[28..36].copy_from_slice(&self.len.to_le_bytes());
        let mac = volume.mac(SEGMENT_MAGIC, self.generation, self.last, &head[12..36]);
        head[36..44].copy_from_slice(&mac.to_le_bytes());
        io(device.write_blocks(self.start, &head))?;
        Ok(self.next_block - self.start)
    }
}

/// The answers the store remembers, worked out as the store does: each
/// origin's first and latest commit, in the order the origins were first
/// recorded, the last [`DURABLE_ANSWERS`] of them.
struct Remembered {
    entries: BTreeMap<(u64, u64), (CommitSeq, CommitSeq)>,
    order: VecDeque<(u64, u64)>,
}

impl Remembered {
    fn note(&mut self, record: &CommitRecord) {
        let Some(origin) = &record.origin else {
            return;
        };
        let key = (origin.task, origin.message);
        match self.entries.get_mut(&key) {
            Some(entry) => entry.1 = record.seq,
            None => {
                self.entries.insert(key, (record.seq, record.seq));
                self.order.push_back(key);
            }
        }
        while self.order.len() > DURABLE_ANSWERS {
            if let Some(old) = self.order.pop_front() {
                self.entries.remove(&old);
            }
        }
    }

    /// Whether `record`'s origin is needed to rebuild the answers.
    fn keeps_origin(&self, record: &CommitRecord) -> bool {
        record.origin.as_ref().is_none_or(|origin| {
            self.entries
                .get(&(origin.task, origin.message))
                .is_some_and(|&(first, latest)| record.seq == first || record.seq == latest)
        })
    }
}

/// What packing drops (see the module docs), found by a first pass over
/// the records to pack.
struct PackPlan {
    /// Each revoked object's last revocation.
    last_revoke: BTreeMap<ObjectId, CommitSeq>,
    /// The highest instance opened.
    instance: u32,
    last: CommitSeq,
    /// Set when the records are the whole history: then which answers the
    /// store remembers is known.
    answers: Option<Remembered>,
}

impl PackPlan {
    fn new(whole_history: bool) -> Self {
        PackPlan {
            last_revoke: BTreeMap::new(),
            instance: 0,
            last: CommitSeq::ZERO,
            answers: whole_history.then(|| Remembered {
                entries: BTreeMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    fn note(&mut self, record: &CommitRecord) {
        if let Some(answers) = &mut self.answers {
            answers.note(record);
        }
        for change in &record.changes {
            match change {
                Change::Revoke { object, .. } => {
                    self.last_revoke.insert(*object, record.seq);
                }
                Change::Open { instance } => self.instance = self.instance.max(*instance),
                _ => {}
            }
        }
        self.last = record.seq;
    }

    /// `record` as packed, or `None` if it can go.
    fn pack(&self, mut record: CommitRecord) -> Option<CommitRecord> {
        let seq = record.seq;
        if self
            .answers
            .as_ref()
            .is_some_and(|a| !a.keeps_origin(&record))
        {
            record.origin = None;
        }
        record.changes.retain(|change| match change {
            Change::Open { .. } => false,
            Change::Revoke { object, .. } => self.last_revoke.get(object) == Some(&seq),
            _ => true,
        });
        if seq == self.last {
            if self.instance > 0 {
                record.changes.push(Change::Open {
                    instance: self.instance,
                });
            }
            return Some(record);
        }
        (!record.changes.is_empty() || record.origin.is_some()).then_some(record)
    }
}

/// The records to pack, in order: the last segment's if it is merged,
/// the pending segment's, then the frames'.
struct Unpacked {
    merged: Option<SegmentReader>,
    legacy: alloc::vec::IntoIter<(CommitRecord, u64)>,
    segment: Option<SegmentReader>,
    frame: u64,
    tail: u64,
}

impl Unpacked {
    fn next<D: BlockDevice>(
        &mut self,
        volume: &Volume,
        device: &mut D,
    ) -> Result<Option<(CommitRecord, u64)>, BackendError> {
        if let Some(segment) = &mut self.merged {
            if let Some(item) = segment.next(volume, device)? {
                return Ok(Some(item));
            }
            self.merged = None;
        }
        if let Some(item) = self.legacy.next() {
            return Ok(Some(item));
        }
        if let Some(segment) = &mut self.segment {
            if let Some(item) = segment.next(volume, device)? {
                return Ok(Some(item));
            }
            self.segment = None;
        }
        if self.frame >= self.tail {
            return Ok(None);
        }
        match volume.read_frame(device, self.frame)? {
            Some((record, blocks, len)) => {
                self.frame += blocks;
                Ok(Some((record, len)))
            }
            // `apply` wrote and flushed every frame before the tail.
            None => Err(BackendError::Corrupt),
        }
    }
}

impl<D: BlockDevice> JournalBackend<D> {
    /// Format `device` as an empty volume with capability key `key`,
    /// unsealed.
    pub fn format(device: D, key: [u8; 16]) -> Result<Self, BackendError> {
        Self::format_sealed(device, key, NO_SEAL)
    }

    /// Format `device` as an empty volume with capability key `key`,
    /// stored under `seal`.
    pub fn format_sealed(
        mut device: D,
        key: [u8; 16],
        seal: [u8; 16],
    ) -> Result<Self, BackendError> {
        let block_size = device.block_size() as usize;
        if block_size < MIN_BLOCK_SIZE || device.block_count() <= DATA_START {
            return Err(BackendError::Full);
        }
        let sb = Superblock {
            key,
            generation: 0,
            cp_start: DATA_START,
            cp_blocks: 0,
            seg_end: DATA_START,
            legacy: false,
        };
        // Void the other superblock copy and whatever the first journal
        // block held before, then write the superblock.
        let void = vec![0u8; block_size];
        io(device.write_blocks(1, &void))?;
        io(device.write_blocks(DATA_START, &void))?;
        io(device.flush())?;
        io(device.write_blocks(0, &sb.encode(block_size, seal)))?;
        io(device.flush())?;
        let mut journal = Self::described_by(device, &sb, seal);
        // Nothing to replay.
        journal.ready = true;
        Ok(journal)
    }

    /// A backend on `device` in the layout `sb` describes, not yet ready.
    fn described_by(device: D, sb: &Superblock, seal: [u8; 16]) -> Self {
        let mut journal = JournalBackend {
            block_size: device.block_size() as usize,
            device,
            key: SipKey::from_bytes(sb.key),
            seal,
            generation: 0,
            seg_end: DATA_START,
            cp_start: DATA_START,
            cp_blocks: 0,
            legacy: false,
            tail: DATA_START,
            last_segment: None,
            last_seq: CommitSeq::ZERO,
            pack_bytes: 0,
            ready: false,
            failed_frame: None,
        };
        journal.adopt(sb);
        journal
    }

    /// Open the volume on `device`, or format it with capability key `key`
    /// if the device is blank (both superblocks all zeros, as on a fresh
    /// RAM disk). Returns whether it was formatted. A device that is not
    /// blank and holds no valid superblock is `Corrupt`, and is left as it
    /// is: data is never formatted away.
    pub fn open_or_format(device: D, key: [u8; 16]) -> Result<(Self, bool), BackendError> {
        Self::open_or_format_sealed(device, key, NO_SEAL)
    }

    /// [`open_or_format`](Self::open_or_format) for a volume sealed with
    /// `seal`; a volume sealed with another seal is `Corrupt`.
    pub fn open_or_format_sealed(
        mut device: D,
        key: [u8; 16],
        seal: [u8; 16],
    ) -> Result<(Self, bool), BackendError> {
        let block_size = device.block_size() as usize;
        if block_size < MIN_BLOCK_SIZE || device.block_count() <= DATA_START {
            return Err(BackendError::Full);
        }
        let mut blocks = vec![0u8; DATA_START as usize * block_size];
        io(device.read_blocks(0, &mut blocks))?;
        if blocks.iter().all(|&b| b == 0) {
            Ok((Self::format_sealed(device, key, seal)?, true))
        } else {
            Ok((Self::open_sealed(device, seal)?, false))
        }
    }

    /// Open a formatted volume. Call `replay` (as `ObjectStore::open`
    /// does) before applying anything.
    pub fn open(device: D) -> Result<Self, BackendError> {
        Self::open_sealed(device, NO_SEAL)
    }

    /// [`open`](Self::open) for a volume sealed with `seal`.
    pub fn open_sealed(mut device: D, seal: [u8; 16]) -> Result<Self, BackendError> {
        let block_size = device.block_size() as usize;
        if block_size < MIN_BLOCK_SIZE || device.block_count() <= DATA_START {
            return Err(BackendError::Corrupt);
        }
        let sb = Superblock::read(&mut device, seal)?;
        Ok(Self::described_by(device, &sb, seal))
    }

    fn adopt(&mut self, sb: &Superblock) {
        self.generation = sb.generation;
        self.seg_end = sb.seg_end;
        self.cp_start = sb.cp_start;
        self.cp_blocks = sb.cp_blocks;
        self.legacy = sb.legacy;
        self.tail = sb.cp_start + sb.cp_blocks;
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

    /// The end of the segment area: the blocks before it hold packed live
    /// records.
    pub fn segment_end(&self) -> u64 {
        self.seg_end
    }

    /// The current superblock generation: each compaction step (packing,
    /// settling) raises it by one.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Void the header of the frame of a commit reported as failed, so
    /// that no recovery replays it, and forget it once that is on the
    /// medium.
    fn void_failed_frame(&mut self) -> Result<(), BackendError> {
        let Some(at) = self.failed_frame else {
            return Ok(());
        };
        let void = vec![0u8; self.block_size];
        io(self.device.write_blocks(at, &void))?;
        io(self.device.flush())?;
        self.failed_frame = None;
        Ok(())
    }

    /// The first journal block (just past the pending segment).
    fn journal_start(&self) -> u64 {
        self.cp_start + self.cp_blocks
    }

    fn volume(&self) -> Volume {
        Volume {
            key: self.key,
            block_size: self.block_size,
            generation: self.generation,
        }
    }

    fn blocks_for(&self, bytes: u64) -> u64 {
        bytes.div_ceil(self.block_size as u64)
    }

    /// An upper bound on the blocks of a segment of `body` entry bytes.
    fn segment_blocks(&self, body: u64) -> u64 {
        self.blocks_for(SEGMENT_HEADER as u64 + body + PACK_SLACK)
    }

    fn superblock(&self, generation: u64) -> Superblock {
        Superblock {
            key: self.key.to_bytes(),
            generation,
            cp_start: self.cp_start,
            cp_blocks: self.cp_blocks,
            seg_end: self.seg_end,
            legacy: false,
        }
    }

    /// Write the superblock of the next generation, describing the
    /// in-memory layout, and flush.
    fn switch(&mut self) -> Result<(), BlockError> {
        let generation = self.generation + 1;
        let sb = self
            .superblock(generation)
            .encode(self.block_size, self.seal);
        self.device
            .write_blocks(generation % DATA_START, &sb)
            .and_then(|()| self.device.flush())?;
        self.generation = generation;
        Ok(())
    }

    /// The records outside the segment area, after those of the last
    /// segment of the area if it starts at `merge`.
    fn unpacked(&mut self, merge: Option<u64>) -> Result<Unpacked, BackendError> {
        let volume = self.volume();
        let merged = match merge {
            Some(at) => {
                let reader = SegmentReader::open(&volume, &mut self.device, at, self.seg_end)?;
                if reader.end != self.seg_end {
                    return Err(BackendError::Corrupt);
                }
                Some(reader)
            }
            None => None,
        };
        let mut legacy = Vec::new();
        let mut segment = None;
        if self.cp_blocks > 0 {
            let end = self.journal_start();
            if self.legacy {
                legacy = volume.read_legacy_checkpoint(
                    &mut self.device,
                    self.cp_start,
                    self.cp_blocks,
                )?;
            } else {
                let reader = SegmentReader::open(&volume, &mut self.device, self.cp_start, end)?;
                if reader.end != end {
                    return Err(BackendError::Corrupt);
                }
                segment = Some(reader);
            }
        }
        Ok(Unpacked {
            merged,
            legacy: legacy.into_iter(),
            segment,
            frame: self.journal_start(),
            tail: self.tail,
        })
    }

    /// The body bytes of the last segment of the area if the next packing
    /// takes it in.
    fn merge_bytes(&self) -> u64 {
        self.merge_start()
            .and(self.last_segment)
            .map_or(0, |(_, body)| body)
    }

    /// Where the last segment of the area starts, if the next packing
    /// takes it in.
    fn merge_start(&self) -> Option<u64> {
        let area = (self.device.block_count() - DATA_START) * self.block_size as u64;
        let limit = MERGE_BYTES.min(area / 8);
        self.last_segment
            .filter(|&(_, body)| body <= limit)
            .map(|(at, _)| at)
    }

    /// The blocks the next packing may take, with `extra` more entry
    /// bytes to pack.
    fn pack_blocks(&self, extra: u64) -> u64 {
        self.segment_blocks(self.pack_bytes + self.merge_bytes() + extra)
    }

    /// Pack the pending segment and the frames (after a small last segment
    /// of the area, which then leaves the area) into a new pending segment
    /// at the tail and switch to it (step 1 in the module docs). When the
    /// tail has no room for it but the dead blocks between the segment area
    /// and the pending segment do (as before the checkpoint of an older
    /// volume), the new segment is written there and joins the area at
    /// once. `false`, changing nothing, if it fits in neither.
    fn pack(&mut self) -> Result<bool, BackendError> {
        let count = self.device.block_count();
        let mut merge = self.merge_start();
        let (mut start, mut end, mut into_area) = (self.tail, count, false);
        if start + self.pack_blocks(0) > count {
            merge = None;
            let blocks = self.segment_blocks(self.pack_bytes);
            if start + blocks > count {
                if self.seg_end + blocks > self.cp_start {
                    return Ok(false);
                }
                (start, end, into_area) = (self.seg_end, self.cp_start, true);
            }
        }
        let volume = self.volume();
        let whole_history = merge.unwrap_or(self.seg_end) == DATA_START;
        let mut plan = PackPlan::new(whole_history);
        let mut records = self.unpacked(merge)?;
        while let Some((record, _)) = records.next(&volume, &mut self.device)? {
            plan.note(&record);
        }
        let mut writer = SegmentWriter::new(start, end, self.generation + 1);
        let mut records = self.unpacked(merge)?;
        let mut pushed = Ok(());
        while let Some((record, _)) = records.next(&volume, &mut self.device)? {
            if let Some(packed) = plan.pack(record) {
                pushed = writer.push(&volume, &mut self.device, &packed);
                if pushed.is_err() {
                    break;
                }
            }
        }
        let body = writer.len;
        let written = pushed
            .and_then(|()| writer.finish(&volume, &mut self.device))
            .and_then(|blocks| io(self.device.flush()).map(|()| blocks));
        let blocks = match written {
            Ok(blocks) => blocks,
            // Only free blocks were written, and the superblock still
            // points where it did.
            Err(BackendError::Full) => return Ok(false),
            Err(e) => {
                self.ready = false;
                return Err(e);
            }
        };
        let old = (self.seg_end, self.cp_start, self.cp_blocks, self.legacy);
        if into_area {
            self.seg_end = start + blocks;
            (self.cp_start, self.cp_blocks) = (self.seg_end, 0);
        } else {
            self.seg_end = merge.unwrap_or(self.seg_end);
            (self.cp_start, self.cp_blocks) = (start, blocks);
        }
        self.legacy = false;
        if self.switch().is_err() {
            // The switch may or may not have reached the medium; recovery
            // finds out which.
            (self.seg_end, self.cp_start, self.cp_blocks, self.legacy) = old;
            self.ready = false;
            return Err(BackendError::Io);
        }
        if into_area {
            self.last_segment = Some((start, body));
            self.pack_bytes = 0;
        } else {
            if merge.is_some() {
                // The segment before it is not known without a walk.
                self.last_segment = None;
            }
            self.pack_bytes = body;
        }
        self.tail = start + blocks;
        Ok(true)
    }

    /// Copy the pending segment to the end of the segment area and switch
    /// to the grown area (step 2 in the module docs). Only with no frames
    /// after the pending segment and room before it.
    fn settle(&mut self) -> Result<(), BackendError> {
        let (from, blocks, to) = (self.cp_start, self.cp_blocks, self.seg_end);
        let chunk = self.volume().chunk_blocks();
        let mut piece = Vec::new();
        let mut done = 0;
        let mut copied = Ok(());
        while done < blocks && copied.is_ok() {
            let n = chunk.min(blocks - done);
            piece.resize(n as usize * self.block_size, 0);
            copied = self
                .device
                .read_blocks(from + done, &mut piece)
                .and_then(|()| self.device.write_blocks(to + done, &piece));
            done += n;
        }
        let old = (self.seg_end, self.cp_start, self.cp_blocks);
        self.seg_end = to + blocks;
        (self.cp_start, self.cp_blocks) = (self.seg_end, 0);
        if copied
            .and_then(|()| self.device.flush())
            .and_then(|()| self.switch())
            .is_err()
        {
            (self.seg_end, self.cp_start, self.cp_blocks) = old;
            self.ready = false;
            return Err(BackendError::Io);
        }
        self.tail = self.seg_end;
        self.last_segment = Some((to, self.pack_bytes));
        self.pack_bytes = 0;
        Ok(())
    }

    /// Whether the pending segment can be settled now.
    fn settleable(&self) -> bool {
        self.cp_blocks > 0
            && !self.legacy
            && self.tail == self.journal_start()
            && self.seg_end + self.cp_blocks <= self.cp_start
    }

    /// Move everything outside the segment area into it (see the module
    /// docs), freeing the space the frames took. Returns `false`, changing
    /// nothing, if no free extent can hold the packed segment. On an error
    /// the volume holds one of the states between the steps, and nothing
    /// more is accepted until `replay`.
    pub fn compact(&mut self) -> Result<bool, BackendError> {
        if !self.ready {
            return Err(BackendError::Crashed);
        }
        let (before, upgrading) = (self.generation, self.legacy);
        let unpacked = self.cp_blocks > 0 || self.tail > self.journal_start();
        if unpacked && !self.settleable() && !self.pack()? {
            return Ok(false);
        }
        if self.settleable() {
            self.settle()?;
        }
        if upgrading && self.generation == before + 1 {
            // The other superblock copy is still of the previous layout,
            // which may hold the key in the clear: overwrite it too.
            if self.switch().is_err() {
                self.ready = false;
                return Err(BackendError::Io);
            }
        }
        Ok(true)
    }

    /// Write the frame of record `record_seq`, whose encoding is `body`
    /// (`restart`: it is a restart's record, which may use the room kept
    /// for one), and wait until it is on the medium (see
    /// [`StorageBackend::apply`]).
    fn write_frame(
        &mut self,
        record_seq: CommitSeq,
        body: &[u8],
        restart: bool,
    ) -> Result<(), BackendError> {
        let len = u32::try_from(body.len()).map_err(|_| BackendError::Full)?;
        let blocks = self.blocks_for((FRAME_HEADER + body.len()) as u64);
        let entry = (ENTRY_HEADER + body.len()) as u64;
        let count = self.device.block_count();
        // After this frame, packing everything unpacked must still fit,
        // and, after an ordinary commit, a restart's record too.
        let reserve = if restart {
            (0, 0)
        } else {
            (RESTART_RESERVE_BLOCKS, RESTART_ENTRY)
        };
        let fits = |j: &Self| j.tail + blocks <= count;
        let compactable =
            |j: &Self| j.tail + blocks + reserve.0 + j.pack_blocks(entry + reserve.1) <= count;
        for _ in 0..2 {
            let unpacked = self.cp_blocks > 0 || self.tail > self.journal_start();
            if (fits(self) && compactable(self)) || !unpacked || !self.compact()? {
                break;
            }
        }
        if !fits(self) || !(compactable(self) || restart) {
            return Err(BackendError::Full);
        }
        let seq = record_seq.as_raw();
        let mut frame = vec![0u8; blocks as usize * self.block_size];
        frame[..4].copy_from_slice(FRAME_MAGIC);
        frame[4..12].copy_from_slice(&seq.to_le_bytes());
        frame[12..16].copy_from_slice(&len.to_le_bytes());
        let mac = self.volume().mac(FRAME_MAGIC, self.generation, seq, body);
        frame[16..24].copy_from_slice(&mac.to_le_bytes());
        frame[FRAME_HEADER..FRAME_HEADER + body.len()].copy_from_slice(body);
        // Acknowledged only once the frame is on the medium.
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
            // When the device is gone (its driver died mid-request) the
            // void fails too, and `recover` writes it once the device is
            // back; until then a restart could replay the frame, so the
            // caller is told the outcome is unknown, not that it failed.
            self.failed_frame = Some(self.tail);
            self.ready = false;
            return Err(match self.void_failed_frame() {
                Ok(()) => BackendError::Io,
                Err(_) => BackendError::OutcomeUnknown,
            });
        }
        self.tail += blocks;
        self.last_seq = record_seq;
        self.pack_bytes += entry;
        Ok(())
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
        let body = encode(record)?;
        let restart = record.origin.is_none()
            && record
                .changes
                .iter()
                .all(|c| matches!(c, Change::Open { .. }));
        self.write_frame(record.seq, &body, restart)
    }

    fn apply_map_update(&mut self, update: &MapUpdate<'_>) -> Result<(), BackendError> {
        if !self.ready {
            return Err(BackendError::Crashed);
        }
        let mut body = Vec::new();
        update.encode_into(&mut body);
        // A map's change is not a restart's record.
        self.write_frame(update.seq, &body, false)
    }

    fn replay(
        &mut self,
        visit: &mut dyn FnMut(CommitRecord),
    ) -> Result<RecoveryReport, BackendError> {
        // A failed compaction may have switched the superblock or not.
        let sb = Superblock::read(&mut self.device, self.seal)?;
        if SipKey::from_bytes(sb.key) != self.key {
            return Err(BackendError::Corrupt);
        }
        self.adopt(&sb);
        let volume = self.volume();
        let mut report = RecoveryReport::default();
        let mut last = CommitSeq::ZERO;
        let mut deliver = |record: CommitRecord, last: &mut CommitSeq| {
            if record.seq <= *last {
                return Err(BackendError::Corrupt);
            }
            *last = record.seq;
            visit(record);
            report.records += 1;
            Ok(())
        };
        let mut at = DATA_START;
        self.last_segment = None;
        while at < self.seg_end {
            let mut segment = SegmentReader::open(&volume, &mut self.device, at, self.seg_end)?;
            while let Some((record, _)) = segment.next(&volume, &mut self.device)? {
                deliver(record, &mut last)?;
            }
            self.last_segment = Some((at, segment.len));
            at = segment.end;
        }
        let mut pack_bytes = 0;
        let mut unpacked = self.unpacked(None)?;
        // The frames are read below rather than by `unpacked`, which takes
        // the tail as known: this finds it.
        unpacked.tail = 0;
        while let Some((record, len)) = unpacked.next(&volume, &mut self.device)? {
            pack_bytes += ENTRY_HEADER as u64 + len;
            deliver(record, &mut last)?;
        }
        let mut at = self.journal_start();
        while let Some((record, blocks, len)) = volume.read_frame(&mut self.device, at)? {
            if record.seq <= last {
                break; // a stale frame from before a torn tail was rewritten
            }
            pack_bytes += ENTRY_HEADER as u64 + len;
            deliver(record, &mut last)?;
            at += blocks;
        }
        self.tail = at;
        self.last_seq = last;
        self.pack_bytes = pack_bytes;
        self.ready = true;
        Ok(report)
    }

    /// The superblock generation: each compaction step raises it.
    fn compactions(&self) -> u64 {
        self.generation
    }

    fn recover(&mut self, last: CommitSeq) -> Result<(), BackendError> {
        self.void_failed_frame()?;
        self.replay(&mut |_| {})?;
        if self.last_seq != last {
            self.ready = false;
            return Err(BackendError::Corrupt);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
