//! [`CachedDisk`]: a model of a disk with a volatile write cache, for
//! testing what survives a power cut.
//!
//! Real disks acknowledge a write once it is in their cache, and write the
//! cache to the medium in whatever order suits them; only a flush (a cache
//! flush command, or a write with FUA) promises that what was written
//! before it is on the medium. At a power cut, each write not yet flushed
//! may have reached the medium or not, in any order, and a block being
//! written may be torn (sectors of it old, sectors new).
//!
//! The model: the medium holds the flushed blocks (sparse — blocks never
//! written read as zeros, so a large disk costs only what was written);
//! writes go to a cache, in order, and reads see them; `flush` moves the
//! cache to the medium. A cut can be scheduled before any operation (a
//! write or a flush): from then on every request fails. The medium after
//! the cut is [`after_cut`](CachedDisk::after_cut): each cached block write
//! is lost, kept, or kept torn (its first half new, the rest as it was),
//! and the kept ones reach the medium in a shuffled order — all chosen by
//! a seed, so a failing case can be replayed.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use pandagen_abi::block::{byte_offset, BlockDevice};
use pandagen_abi::error::BlockError;

/// Which cached writes reach the medium at a cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutOutcome {
    /// None of them.
    LoseAll,
    /// All of them, whole, in order.
    KeepAll,
    /// Each lost, kept or kept torn, in a shuffled order, chosen by the
    /// seed.
    Random(u64),
}

/// A disk with a volatile write cache (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedDisk {
    block_size: u32,
    block_count: u64,
    /// The flushed blocks; a block not here reads as zeros.
    medium: BTreeMap<u64, Vec<u8>>,
    /// Block writes not yet flushed, oldest first.
    cache: Vec<(u64, Vec<u8>)>,
    /// For each cached block, its newest write in `cache`.
    newest: BTreeMap<u64, usize>,
    /// Writes and flushes so far.
    operations: u64,
    /// The power goes before operation number `cut_at`.
    cut_at: Option<u64>,
    off: bool,
}

/// SplitMix64: a small, well-mixed generator for seeded choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

impl CachedDisk {
    /// `block_count` zeroed blocks of `block_size` bytes (not zero).
    pub fn new(block_size: u32, block_count: u64) -> Self {
        assert!(block_size > 0, "block size must be non-zero");
        CachedDisk {
            block_size,
            block_count,
            medium: BTreeMap::new(),
            cache: Vec::new(),
            newest: BTreeMap::new(),
            operations: 0,
            cut_at: None,
            off: false,
        }
    }

    /// A disk whose medium is `bytes` (whole blocks of `block_size`).
    pub fn from_bytes(block_size: u32, bytes: &[u8]) -> Self {
        let size = block_size as usize;
        let mut disk = Self::new(block_size, (bytes.len() / size) as u64);
        for (i, block) in bytes.chunks_exact(size).enumerate() {
            if block.iter().any(|&b| b != 0) {
                disk.medium.insert(i as u64, block.to_vec());
            }
        }
        disk
    }

    /// Writes and flushes requested so far (refused ones included).
    pub fn operations(&self) -> u64 {
        self.operations
    }

    /// Cut the power before operation number `operation` (counted by
    /// [`operations`](Self::operations)).
    pub fn cut_power_before(&mut self, operation: u64) {
        self.cut_at = Some(operation);
        if operation <= self.operations {
            self.off = true;
        }
    }

    /// Whether the power is off.
    pub fn is_off(&self) -> bool {
        self.off
    }

    /// Block writes in the cache.
    pub fn unflushed(&self) -> usize {
        self.cache.len()
    }

    /// Blocks of memory the medium holds (written blocks only).
    pub fn blocks_held(&self) -> usize {
        self.medium.len()
    }

    /// The disk as it is when the power comes back after a cut now: the
    /// cache goes, and what it held reaches the medium as `outcome` says.
    pub fn after_cut(&self, outcome: CutOutcome) -> CachedDisk {
        let mut medium = self.medium.clone();
        let half = self.block_size as usize / 2;
        match outcome {
            CutOutcome::LoseAll => {}
            CutOutcome::KeepAll => {
                for (block, bytes) in &self.cache {
                    medium.insert(*block, bytes.clone());
                }
            }
            CutOutcome::Random(seed) => {
                let mut rng = Rng(seed);
                let mut kept: Vec<(u64, Vec<u8>, bool)> = Vec::new();
                for (block, bytes) in &self.cache {
                    match rng.below(8) {
                        0..=3 => {}
                        4..=6 => kept.push((*block, bytes.clone(), false)),
                        _ => kept.push((*block, bytes.clone(), true)),
                    }
                }
                for i in (1..kept.len()).rev() {
                    let j = rng.below(i as u64 + 1) as usize;
                    kept.swap(i, j);
                }
                for (block, bytes, torn) in kept {
                    if torn {
                        let old = medium.entry(block).or_insert_with(|| vec![0; bytes.len()]);
                        old[..half].copy_from_slice(&bytes[..half]);
                    } else {
                        medium.insert(block, bytes);
                    }
                }
            }
        }
        CachedDisk {
            medium,
            ..Self::new(self.block_size, self.block_count)
        }
    }

    /// Count an operation; refused if the power is (now) off.
    fn operate(&mut self) -> Result<(), BlockError> {
        if self.cut_at == Some(self.operations) {
            self.off = true;
        }
        self.operations += 1;
        if self.off {
            return Err(BlockError::Device);
        }
        Ok(())
    }
}

impl BlockDevice for CachedDisk {
    fn block_size(&self) -> u32 {
        self.block_size
    }

    fn block_count(&self) -> u64 {
        self.block_count
    }

    fn read_blocks(&mut self, first: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        byte_offset(self.geometry(), first, buf.len())?;
        if self.off {
            return Err(BlockError::Device);
        }
        let size = self.block_size as usize;
        for (i, out) in buf.chunks_exact_mut(size).enumerate() {
            let block = first + i as u64;
            let bytes = match self.newest.get(&block) {
                Some(&at) => Some(&self.cache[at].1),
                None => self.medium.get(&block),
            };
            match bytes {
                Some(bytes) => out.copy_from_slice(bytes),
                None => out.fill(0),
            }
        }
        Ok(())
    }

    fn write_blocks(&mut self, first: u64, bytes: &[u8]) -> Result<(), BlockError> {
        byte_offset(self.geometry(), first, bytes.len())?;
        self.operate()?;
        let size = self.block_size as usize;
        for (i, block) in bytes.chunks_exact(size).enumerate() {
            let number = first + i as u64;
            self.newest.insert(number, self.cache.len());
            self.cache.push((number, block.to_vec()));
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.operate()?;
        for (block, bytes) in self.cache.drain(..) {
            self.medium.insert(block, bytes);
        }
        self.newest.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_splitmix64_so_a_seed_replays_the_same_cut_anywhere() {
        // SplitMix64's published outputs from state 0.
        let mut rng = Rng(0);
        assert_eq!(rng.next(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(rng.next(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn writes_are_read_back_at_once_and_durable_only_after_a_flush() {
        let mut disk = CachedDisk::new(512, 8);
        disk.write_blocks(1, &[1u8; 1024]).unwrap();
        let mut out = [0u8; 512];
        disk.read_blocks(2, &mut out).unwrap();
        assert_eq!(out, [1u8; 512]);
        let mut lost = disk.after_cut(CutOutcome::LoseAll);
        lost.read_blocks(2, &mut out).unwrap();
        assert_eq!(out, [0u8; 512], "unflushed writes can be lost");
        disk.flush().unwrap();
        disk.write_blocks(2, &[2u8; 512]).unwrap();
        let mut cut = disk.after_cut(CutOutcome::LoseAll);
        cut.read_blocks(1, &mut out).unwrap();
        assert_eq!(out, [1u8; 512], "flushed writes survive");
        cut.read_blocks(2, &mut out).unwrap();
        assert_eq!(out, [1u8; 512], "the unflushed rewrite is lost");
        let mut kept = disk.after_cut(CutOutcome::KeepAll);
        kept.read_blocks(2, &mut out).unwrap();
        assert_eq!(out, [2u8; 512]);
    }

    #[test]
    fn random_cuts_lose_keep_tear_and_reorder_and_repeat_by_seed() {
        let mut disk = CachedDisk::new(64, 4);
        for round in 1..=3u8 {
            for block in 0..4 {
                disk.write_blocks(block, &[round; 64]).unwrap();
            }
        }
        let mut seen = BTreeMap::new();
        for seed in 0..200 {
            let mut cut = disk.after_cut(CutOutcome::Random(seed));
            assert_eq!(cut, disk.after_cut(CutOutcome::Random(seed)));
            for block in 0..4 {
                let mut out = [0u8; 64];
                cut.read_blocks(block, &mut out).unwrap();
                let torn = out[0] != out[63];
                *seen.entry((out[0], torn)).or_insert(0) += 1;
            }
        }
        // Every round's write is sometimes what survives (so the last is
        // sometimes overtaken by an older one), none sometimes, and some
        // survive torn.
        for round in 0..=3u8 {
            assert!(seen.contains_key(&(round, false)), "{seen:?}");
        }
        assert!(seen.keys().any(|&(_, torn)| torn), "{seen:?}");
    }

    #[test]
    fn after_a_cut_every_request_fails_until_the_power_returns() {
        let mut disk = CachedDisk::new(512, 4);
        disk.cut_power_before(1);
        disk.write_blocks(0, &[1u8; 512]).unwrap();
        assert_eq!(disk.flush(), Err(BlockError::Device));
        assert!(disk.is_off());
        assert_eq!(disk.write_blocks(1, &[1u8; 512]), Err(BlockError::Device));
        let mut out = [0u8; 512];
        assert_eq!(disk.read_blocks(0, &mut out), Err(BlockError::Device));
        assert_eq!(disk.operations(), 3);
        let mut back = disk.after_cut(CutOutcome::KeepAll);
        back.read_blocks(0, &mut out).unwrap();
        assert_eq!(out, [1u8; 512]);
        assert_eq!(back.operations(), 0);
    }

    #[test]
    fn a_large_disk_holds_only_what_was_written() {
        let mut disk = CachedDisk::new(4096, 1 << 20);
        disk.write_blocks((1 << 20) - 1, &[7u8; 4096]).unwrap();
        disk.flush().unwrap();
        assert_eq!(disk.blocks_held(), 1);
        let mut out = [1u8; 4096];
        disk.read_blocks(12345, &mut out).unwrap();
        assert_eq!(out, [0u8; 4096]);
    }
}
