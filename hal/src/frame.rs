//! Physical frame allocator: a bitmap over the usable RAM the firmware reports.
//!
//! Two bitmaps cover the span from the lowest to the highest usable frame:
//! `usable` (set once at start-up from the memory map) and `free`. A frame is
//! handed out only if it is usable and free, and freeing a frame that is not
//! usable or is already free is an error. So no frame is ever handed out
//! twice, and a double free is caught instead of corrupting the allocator.
//!
//! Frames below [`LOW_MEMORY_END`] are never managed: physical page 0 must
//! never look like a valid allocation, and the first megabyte is kept for
//! firmware structures and future SMP start-up trampolines.

use pandagen_abi::memory::PAGE_SIZE;

/// Physical memory below this address is never handed out.
pub const LOW_MEMORY_END: u64 = 0x10_0000;

/// Allocation starts here and moves up, wrapping around to the memory below
/// only when everything above is taken. The first 16 MiB is the legacy
/// ISA-DMA zone, and it is where BIOS boot stages ran: under QEMU's TCG,
/// pages that once held executed code stay very slow to write, so the
/// kernel's hot data should not live there.
pub const PREFERRED_START: u64 = 0x100_0000;

const BITS: u64 = 64;

/// A half-open range `[start, end)` of physical addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhysRange {
    pub start: u64,
    pub end: u64,
}

impl PhysRange {
    /// The whole frames inside this range, above [`LOW_MEMORY_END`], as a
    /// range of frame numbers.
    fn frames(self) -> core::ops::Range<u64> {
        let start = self.start.max(LOW_MEMORY_END).div_ceil(PAGE_SIZE);
        let end = self.end / PAGE_SIZE;
        start..end.max(start)
    }
}

/// Why a frame operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The address is not a multiple of [`PAGE_SIZE`](pandagen_abi::memory::PAGE_SIZE).
    Misaligned,
    /// The frame is not usable RAM managed by this allocator.
    NotManaged,
    /// The frame is already free (double free).
    AlreadyFree,
    /// The bitmap storage handed to [`FrameBitmap::new`] is too small.
    StorageTooSmall,
    /// The memory map contains no usable frame.
    NoUsableMemory,
}

/// The frame range `[first, first + count)` the bitmaps must cover.
fn span<I: IntoIterator<Item = PhysRange>>(usable: I) -> Option<(u64, u64)> {
    let mut lo = u64::MAX;
    let mut hi = 0;
    for range in usable {
        let frames = range.frames();
        if !frames.is_empty() {
            lo = lo.min(frames.start);
            hi = hi.max(frames.end);
        }
    }
    (lo < hi).then(|| (lo, hi - lo))
}

/// The bitmap allocator. `'a` is the lifetime of its storage.
pub struct FrameBitmap<'a> {
    first_frame: u64,
    frame_count: u64,
    usable: &'a mut [u64],
    free: &'a mut [u64],
    total: u64,
    free_count: u64,
    /// Word index where the next search starts: next-fit keeps allocation
    /// O(1) amortised while memory is plentiful.
    hint: usize,
}

impl<'a> FrameBitmap<'a> {
    /// How many `u64` words of storage [`FrameBitmap::new`] needs for this
    /// memory map.
    pub fn storage_words<I: IntoIterator<Item = PhysRange>>(usable: I) -> usize {
        match span(usable) {
            Some((_, count)) => 2 * count.div_ceil(BITS) as usize,
            None => 0,
        }
    }

    /// Finds a place for the bitmap storage itself: page-aligned, in the
    /// lowest usable range at or above [`PREFERRED_START`] that can hold
    /// `words` words, else in the first one below. The caller must then
    /// [`FrameBitmap::reserve`] it.
    pub fn find_storage<I>(usable: I, words: usize) -> Option<u64>
    where
        I: IntoIterator<Item = PhysRange> + Clone,
    {
        let bytes = (words as u64 * 8).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let fit = |floor: u64| {
            usable.clone().into_iter().find_map(move |range| {
                let frames = range.frames();
                let start = (frames.start * PAGE_SIZE).max(floor);
                let end = frames.end * PAGE_SIZE;
                (bytes > 0 && end >= start && end - start >= bytes).then_some(start)
            })
        };
        fit(PREFERRED_START).or_else(|| fit(0))
    }

    /// Builds the allocator: every whole frame of every `usable` range (above
    /// [`LOW_MEMORY_END`]) starts free. Ranges may overlap or touch.
    pub fn new<I>(usable: I, storage: &'a mut [u64]) -> Result<Self, FrameError>
    where
        I: IntoIterator<Item = PhysRange> + Clone,
    {
        let (first_frame, frame_count) = span(usable.clone()).ok_or(FrameError::NoUsableMemory)?;
        let words = frame_count.div_ceil(BITS) as usize;
        if storage.len() < 2 * words {
            return Err(FrameError::StorageTooSmall);
        }
        let (usable_bits, rest) = storage.split_at_mut(words);
        let free_bits = &mut rest[..words];
        usable_bits.fill(0);
        free_bits.fill(0);
        let mut bitmap = Self {
            first_frame,
            frame_count,
            usable: usable_bits,
            free: free_bits,
            total: 0,
            free_count: 0,
            hint: 0,
        };
        for range in usable {
            for frame in range.frames() {
                let (word, bit) = bitmap.position(frame);
                if bitmap.usable[word] & bit == 0 {
                    bitmap.usable[word] |= bit;
                    bitmap.free[word] |= bit;
                    bitmap.total += 1;
                    bitmap.free_count += 1;
                }
            }
        }
        let preferred = (PREFERRED_START / PAGE_SIZE).saturating_sub(first_frame) / BITS;
        bitmap.hint = (preferred as usize).min(words - 1);
        Ok(bitmap)
    }

    /// Removes `[range.start, range.end)` from managed memory for good (used
    /// for the bitmap's own storage). Frames in the range that are currently
    /// allocated stay with their owner but can no longer be freed here.
    pub fn reserve(&mut self, range: PhysRange) {
        let start = range.start / PAGE_SIZE;
        let end = range.end.div_ceil(PAGE_SIZE);
        for frame in start..end {
            if !self.contains(frame) {
                continue;
            }
            let (word, bit) = self.position(frame);
            if self.usable[word] & bit != 0 {
                self.usable[word] &= !bit;
                self.total -= 1;
                if self.free[word] & bit != 0 {
                    self.free[word] &= !bit;
                    self.free_count -= 1;
                }
            }
        }
    }

    /// Hands out a free frame, returning its physical address. The search
    /// starts at [`PREFERRED_START`] (see there) and moves up, wrapping.
    pub fn allocate(&mut self) -> Option<u64> {
        let words = self.free.len();
        for i in 0..words {
            let word = (self.hint + i) % words;
            let bits = self.free[word];
            if bits != 0 {
                let bit = u64::from(bits.trailing_zeros());
                self.free[word] &= !(1 << bit);
                self.free_count -= 1;
                self.hint = word;
                let frame = self.first_frame + word as u64 * BITS + bit;
                return Some(frame * PAGE_SIZE);
            }
        }
        None
    }

    /// Hands out `count` physically contiguous free frames (for DMA),
    /// returning the first one's address; each is freed on its own later.
    /// A first-fit scan from the bottom of managed memory: O(frames),
    /// which is fine for the rare allocations drivers make at start-up.
    pub fn allocate_contiguous(&mut self, count: u64) -> Option<u64> {
        if count == 0 || count > self.free_count {
            return None;
        }
        let mut run_start = self.first_frame;
        let mut run = 0;
        for frame in self.first_frame..self.first_frame + self.frame_count {
            let (word, bit) = self.position(frame);
            if self.free[word] & bit == 0 {
                run = 0;
                continue;
            }
            if run == 0 {
                run_start = frame;
            }
            run += 1;
            if run == count {
                for taken in run_start..run_start + count {
                    let (word, bit) = self.position(taken);
                    self.free[word] &= !bit;
                }
                self.free_count -= count;
                return Some(run_start * PAGE_SIZE);
            }
        }
        None
    }

    /// Returns the frame at `addr` to the pool.
    pub fn free(&mut self, addr: u64) -> Result<(), FrameError> {
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(FrameError::Misaligned);
        }
        let frame = addr / PAGE_SIZE;
        if !self.contains(frame) {
            return Err(FrameError::NotManaged);
        }
        let (word, bit) = self.position(frame);
        if self.usable[word] & bit == 0 {
            return Err(FrameError::NotManaged);
        }
        if self.free[word] & bit != 0 {
            return Err(FrameError::AlreadyFree);
        }
        self.free[word] |= bit;
        self.free_count += 1;
        Ok(())
    }

    /// Whether the frame at `addr` is managed here and currently handed out.
    pub fn is_allocated(&self, addr: u64) -> bool {
        let frame = addr / PAGE_SIZE;
        if !addr.is_multiple_of(PAGE_SIZE) || !self.contains(frame) {
            return false;
        }
        let (word, bit) = self.position(frame);
        self.usable[word] & bit != 0 && self.free[word] & bit == 0
    }

    /// Frames under management (usable RAM minus reservations).
    pub fn total_frames(&self) -> u64 {
        self.total
    }

    /// Frames currently free.
    pub fn free_frames(&self) -> u64 {
        self.free_count
    }

    fn contains(&self, frame: u64) -> bool {
        frame >= self.first_frame && frame - self.first_frame < self.frame_count
    }

    fn position(&self, frame: u64) -> (usize, u64) {
        let index = frame - self.first_frame;
        ((index / BITS) as usize, 1 << (index % BITS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::vec;
    use std::vec::Vec;

    const MIB: u64 = 1 << 20;

    fn map() -> Vec<PhysRange> {
        vec![
            // Below 1 MiB: never managed.
            PhysRange {
                start: 0,
                end: 0x9_F000,
            },
            // Unaligned edges: only whole frames count.
            PhysRange {
                start: MIB + 100,
                end: 2 * MIB + 5,
            },
            // A gap, then more RAM.
            PhysRange {
                start: 4 * MIB,
                end: 5 * MIB,
            },
        ]
    }

    fn build(storage: &mut Vec<u64>) -> FrameBitmap<'_> {
        let words = FrameBitmap::storage_words(map());
        storage.resize(words, 0xFFFF_FFFF_FFFF_FFFF);
        FrameBitmap::new(map(), storage).unwrap()
    }

    #[test]
    fn counts_only_whole_usable_frames_above_low_memory() {
        let mut storage = Vec::new();
        let bitmap = build(&mut storage);
        // [1 MiB + 4 KiB, 2 MiB) = 255 frames, [4 MiB, 5 MiB) = 256 frames.
        assert_eq!(bitmap.total_frames(), 255 + 256);
        assert_eq!(bitmap.free_frames(), bitmap.total_frames());
    }

    #[test]
    fn never_hands_out_a_frame_twice_and_stays_in_usable_ranges() {
        let mut storage = Vec::new();
        let mut bitmap = build(&mut storage);
        let mut seen = HashSet::new();
        while let Some(frame) = bitmap.allocate() {
            assert_eq!(frame % PAGE_SIZE, 0);
            assert!(seen.insert(frame), "frame {frame:#x} handed out twice");
            let in_range = map()
                .iter()
                .any(|r| frame >= r.start && frame + PAGE_SIZE <= r.end);
            assert!(
                in_range && frame >= LOW_MEMORY_END,
                "frame {frame:#x} not usable"
            );
        }
        assert_eq!(seen.len() as u64, bitmap.total_frames());
        assert_eq!(bitmap.free_frames(), 0);
    }

    #[test]
    fn starts_above_the_preferred_boundary_then_wraps_below() {
        let usable = [
            PhysRange {
                start: MIB,
                end: 2 * MIB,
            },
            PhysRange {
                start: 16 * MIB,
                end: 16 * MIB + 2 * PAGE_SIZE,
            },
        ];
        let mut storage = vec![0; FrameBitmap::storage_words(usable)];
        let mut bitmap = FrameBitmap::new(usable, &mut storage).unwrap();
        assert_eq!(bitmap.allocate(), Some(16 * MIB));
        assert_eq!(bitmap.allocate(), Some(16 * MIB + PAGE_SIZE));
        assert_eq!(bitmap.allocate(), Some(MIB));
        let words = FrameBitmap::storage_words(usable);
        assert_eq!(FrameBitmap::find_storage(usable, words), Some(16 * MIB));
        assert_eq!(
            FrameBitmap::find_storage(map(), words),
            Some(MIB + PAGE_SIZE)
        );
    }

    #[test]
    fn freed_frames_come_back_and_double_free_is_rejected() {
        let mut storage = Vec::new();
        let mut bitmap = build(&mut storage);
        let a = bitmap.allocate().unwrap();
        let b = bitmap.allocate().unwrap();
        assert_ne!(a, b);
        let before = bitmap.free_frames();
        bitmap.free(a).unwrap();
        assert_eq!(bitmap.free_frames(), before + 1);
        assert_eq!(bitmap.free(a), Err(FrameError::AlreadyFree));
        // Exhaust everything: `a` must be among the frames handed out again.
        let mut again = HashSet::new();
        while let Some(frame) = bitmap.allocate() {
            again.insert(frame);
        }
        assert!(again.contains(&a));
        assert!(!again.contains(&b));
    }

    #[test]
    fn rejects_frees_outside_managed_memory() {
        let mut storage = Vec::new();
        let mut bitmap = build(&mut storage);
        assert_eq!(bitmap.free(MIB + 1), Err(FrameError::Misaligned));
        assert_eq!(bitmap.free(0), Err(FrameError::NotManaged));
        assert_eq!(bitmap.free(3 * MIB), Err(FrameError::NotManaged));
        assert_eq!(bitmap.free(64 * MIB), Err(FrameError::NotManaged));
    }

    #[test]
    fn reserved_frames_are_never_handed_out() {
        let mut storage = Vec::new();
        let mut bitmap = build(&mut storage);
        let total = bitmap.total_frames();
        bitmap.reserve(PhysRange {
            start: 4 * MIB,
            end: 4 * MIB + 3 * PAGE_SIZE,
        });
        assert_eq!(bitmap.total_frames(), total - 3);
        while let Some(frame) = bitmap.allocate() {
            assert!(!(4 * MIB..4 * MIB + 3 * PAGE_SIZE).contains(&frame));
        }
        assert_eq!(bitmap.free(4 * MIB), Err(FrameError::NotManaged));
    }

    #[test]
    fn storage_placement_fits_in_a_usable_range() {
        let words = FrameBitmap::storage_words(map());
        let at = FrameBitmap::find_storage(map(), words).unwrap();
        assert_eq!(at % PAGE_SIZE, 0);
        assert!(at >= LOW_MEMORY_END);
        assert!(FrameBitmap::find_storage(map(), 1 << 30).is_none());
        let mut too_small = vec![0u64; words - 1];
        assert!(matches!(
            FrameBitmap::new(map(), &mut too_small),
            Err(FrameError::StorageTooSmall)
        ));
        let mut empty = vec![0u64; 4];
        let nothing = [PhysRange {
            start: 0,
            end: 0x8_0000,
        }];
        assert!(matches!(
            FrameBitmap::new(nothing, &mut empty),
            Err(FrameError::NoUsableMemory)
        ));
    }

    #[test]
    fn contiguous_runs_skip_allocated_frames_and_are_freed_frame_by_frame() {
        let ranges = [PhysRange {
            start: 16 * MIB,
            end: 16 * MIB + 64 * PAGE_SIZE,
        }];
        let mut storage = vec![0u64; FrameBitmap::storage_words(ranges.iter().copied())];
        let mut b = FrameBitmap::new(ranges.iter().copied(), &mut storage).unwrap();
        let single = b.allocate().unwrap();
        let run = b.allocate_contiguous(8).unwrap();
        for i in 0..8 {
            assert!(b.is_allocated(run + i * PAGE_SIZE));
            assert_ne!(run + i * PAGE_SIZE, single);
        }
        assert_eq!(b.free_frames(), 64 - 9);
        assert_eq!(b.allocate_contiguous(64), None, "only 55 frames are free");
        for i in 0..8 {
            b.free(run + i * PAGE_SIZE).unwrap();
        }
        assert_eq!(b.free_frames(), 63);
        assert!(b.allocate_contiguous(63).is_some());
        assert_eq!(b.free_frames(), 0);
    }
}
