//! A journaled, crash-consistent backend on a block device.
//!
//! Layout: block 0 is the superblock (magic, block size, the capability
//! key, a checksum); blocks 1.. are the journal. Each commit record is one
//! *frame* starting on a block boundary:
//!
//! ```text
//! magic "PGJR" | seq u64 | len u32 | mac u64 | record (postcard) | padding
//! ```
//!
//! where `mac` is SipHash-2-4 under the volume's secret key over the
//! sequence number, the length and the record. `apply` writes the frame into
//! blocks past the tail — blocks that hold no committed data — and flushes;
//! committed blocks are never rewritten, so a torn write can only damage the
//! frame being written. Recovery reads frames from block 1 and stops at the
//! first one that does not verify or does not carry the next sequence
//! number: that is the torn tail, and the next `apply` overwrites it.
//!
//! Because the MAC is keyed with the secret key, no client data stored in a
//! record can ever pass for a frame, and frames from a previous format of
//! the device (another key) are never replayed.
//!
//! Not done yet: checkpoints and journal compaction. The journal grows
//! until the device is full, then `apply` answers `Full`.
//!
//! In ring 3 the device is the kernel's block device, reached through
//! [`crate::device::KernelBlockDevice`].

use alloc::vec;
use alloc::vec::Vec;
use pandagen_hal::BlockDevice;

use crate::backend::{BackendError, RecoveryReport, StorageBackend};
use crate::ids::CommitSeq;
use crate::record::CommitRecord;
use crate::siphash::{siphash24, SipKey};

const SUPER_MAGIC: &[u8; 8] = b"PGSTORE1";
const SUPER_KEY: SipKey = SipKey::from_bytes(*b"pandagen-superbk");
const FRAME_MAGIC: &[u8; 4] = b"PGJR";
const FRAME_HEADER: usize = 4 + 8 + 4 + 8;
/// The smallest block that holds the superblock and a frame header.
pub const MIN_BLOCK_SIZE: usize = 64;

/// A backend over a block device (see the module docs).
pub struct JournalBackend<D: BlockDevice> {
    device: D,
    key: SipKey,
    block_size: usize,
    /// The first block past the last good frame.
    tail: u64,
    last_seq: CommitSeq,
    /// `apply` is refused until `replay` has found the tail, and again
    /// after a failed write, until the next `replay`.
    ready: bool,
}

impl<D: BlockDevice> core::fmt::Debug for JournalBackend<D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("JournalBackend")
            .field("block_size", &self.block_size)
            .field("tail", &self.tail)
            .field("last_seq", &self.last_seq)
            .field("ready", &self.ready)
            .finish()
    }
}

fn io<T>(r: Result<T, pandagen_hal::BlockError>) -> Result<T, BackendError> {
    r.map_err(|_| BackendError::Io)
}

fn superblock_sum(bytes: &[u8]) -> u64 {
    siphash24(&SUPER_KEY, bytes)
}

impl<D: BlockDevice> JournalBackend<D> {
    /// Format `device` as an empty volume with capability key `key`.
    pub fn format(mut device: D, key: [u8; 16]) -> Result<Self, BackendError> {
        let block_size = device.block_size();
        if block_size < MIN_BLOCK_SIZE || device.block_count() < 2 {
            return Err(BackendError::Full);
        }
        let mut block = vec![0u8; block_size];
        block[..8].copy_from_slice(SUPER_MAGIC);
        block[8..12].copy_from_slice(&(block_size as u32).to_le_bytes());
        block[12..28].copy_from_slice(&key);
        let sum = superblock_sum(&block[..28]);
        block[28..36].copy_from_slice(&sum.to_le_bytes());
        io(device.write_blocks(0, &block))?;
        // Void whatever the first journal block held before.
        io(device.write_blocks(1, &vec![0u8; block_size]))?;
        io(device.flush())?;
        Ok(JournalBackend {
            device,
            key: SipKey::from_bytes(key),
            block_size,
            tail: 1,
            last_seq: CommitSeq::ZERO,
            ready: true,
        })
    }

    /// Open the volume on `device`, or format it with capability key `key`
    /// if the device is blank (its superblock all zeros, as a fresh RAM
    /// disk is). Returns whether it was formatted. A device that is not
    /// blank and holds no valid superblock is `Corrupt`, and is left as it
    /// is: data is never formatted away.
    pub fn open_or_format(mut device: D, key: [u8; 16]) -> Result<(Self, bool), BackendError> {
        let block_size = device.block_size();
        if block_size < MIN_BLOCK_SIZE || device.block_count() < 2 {
            return Err(BackendError::Full);
        }
        let mut block = vec![0u8; block_size];
        io(device.read_blocks(0, &mut block))?;
        if block.iter().all(|&b| b == 0) {
            Ok((Self::format(device, key)?, true))
        } else {
            Ok((Self::open(device)?, false))
        }
    }

    /// Open a formatted volume. Call `replay` (as `ObjectStore::open`
    /// does) before applying anything.
    pub fn open(mut device: D) -> Result<Self, BackendError> {
        let block_size = device.block_size();
        if block_size < MIN_BLOCK_SIZE {
            return Err(BackendError::Corrupt);
        }
        let mut block = vec![0u8; block_size];
        io(device.read_blocks(0, &mut block))?;
        let mut sum = [0u8; 8];
        sum.copy_from_slice(&block[28..36]);
        let sized = u32::from_le_bytes([block[8], block[9], block[10], block[11]]) as usize;
        if &block[..8] != SUPER_MAGIC
            || sized != block_size
            || u64::from_le_bytes(sum) != superblock_sum(&block[..28])
        {
            return Err(BackendError::Corrupt);
        }
        let mut key = [0u8; 16];
        key.copy_from_slice(&block[12..28]);
        Ok(JournalBackend {
            device,
            key: SipKey::from_bytes(key),
            block_size,
            tail: 1,
            last_seq: CommitSeq::ZERO,
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

    fn mac(&self, seq: u64, body: &[u8]) -> u64 {
        let mut message = Vec::with_capacity(12 + body.len());
        message.extend_from_slice(&seq.to_le_bytes());
        message.extend_from_slice(&(body.len() as u32).to_le_bytes());
        message.extend_from_slice(body);
        siphash24(&self.key, &message)
    }

    fn blocks_for(&self, len: usize) -> u64 {
        (FRAME_HEADER + len).div_ceil(self.block_size) as u64
    }

    /// The record in the frame at `at`, if a good one is there.
    fn read_frame(&mut self, at: u64) -> Result<Option<(CommitRecord, u64)>, BackendError> {
        let count = self.device.block_count();
        if at >= count {
            return Ok(None);
        }
        let mut first = vec![0u8; self.block_size];
        io(self.device.read_blocks(at, &mut first))?;
        if &first[..4] != FRAME_MAGIC {
            return Ok(None);
        }
        let seq = u64::from_le_bytes(first[4..12].try_into().unwrap_or_default());
        let len = u32::from_le_bytes(first[12..16].try_into().unwrap_or_default()) as usize;
        let mac = u64::from_le_bytes(first[16..24].try_into().unwrap_or_default());
        let blocks = self.blocks_for(len);
        if at + blocks > count {
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
        if mac != self.mac(seq, body) {
            return Ok(None);
        }
        let record: CommitRecord = match postcard::from_bytes(body) {
            Ok(r) => r,
            // Verified but undecodable: written by an incompatible version.
            Err(_) => return Err(BackendError::Corrupt),
        };
        if record.seq.as_raw() != seq {
            return Err(BackendError::Corrupt);
        }
        Ok(Some((record, blocks)))
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
        let blocks = self.blocks_for(body.len());
        if self.tail + blocks > self.device.block_count() {
            return Err(BackendError::Full);
        }
        let seq = record.seq.as_raw();
        let mut frame = vec![0u8; blocks as usize * self.block_size];
        frame[..4].copy_from_slice(FRAME_MAGIC);
        frame[4..12].copy_from_slice(&seq.to_le_bytes());
        frame[12..16].copy_from_slice(&len.to_le_bytes());
        frame[16..24].copy_from_slice(&self.mac(seq, &body).to_le_bytes());
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
        Ok(())
    }

    fn replay(
        &mut self,
        visit: &mut dyn FnMut(CommitRecord),
    ) -> Result<RecoveryReport, BackendError> {
        let mut report = RecoveryReport::default();
        let mut at = 1;
        let mut last = CommitSeq::ZERO;
        while let Some((record, blocks)) = self.read_frame(at)? {
            if record.seq <= last {
                break; // a stale frame from before a torn tail was rewritten
            }
            last = record.seq;
            visit(record);
            report.records += 1;
            at += blocks;
        }
        self.tail = at;
        self.last_seq = last;
        self.ready = true;
        Ok(report)
    }
}

#[cfg(test)]
mod tests;
