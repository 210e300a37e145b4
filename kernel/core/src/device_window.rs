//! Where the kernel places a device or DMA mapping whose address the
//! driver left to it: the first run of unmapped pages in a window of the
//! driver's address space, searched from where the kernel's last placement
//! in that space ended (next fit), and from the window's start only if
//! nothing is free above it.
//!
//! A driver's mappings are never unmapped while it lives, so the kernel's
//! own placements fill the window upwards and the search normally starts
//! at free pages: placing a mapping probes its own pages, however many the
//! driver has mapped before (with interrupts off, so this matters).
//! Mappings the driver placed itself ahead of the search are skipped once,
//! as the search moves past them. A run is refused only when no free run
//! of that length is left anywhere in the window, as a search from the
//! window's start would find.
//!
//! The page tables are the kernel's; the search asks them through
//! `is_mapped(page address)`.

use pandagen_abi::memory::PAGE_SIZE;

/// A window of an address space, `[start, end)`, page-aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceWindow {
    pub start: u64,
    pub end: u64,
}

impl DeviceWindow {
    /// The address of a run of `len` bytes whose pages (`len / PAGE_SIZE`
    /// of them) are all unmapped: the first at or after `next` (where the
    /// last placement ended; a value outside the window, or not
    /// page-aligned, means its start), else the first from the window's
    /// start. `None` if the window has no such run.
    pub fn place(
        &self,
        next: u64,
        len: u64,
        mut is_mapped: impl FnMut(u64) -> bool,
    ) -> Option<u64> {
        let from = if (self.start..self.end).contains(&next) && next.is_multiple_of(PAGE_SIZE) {
            next
        } else {
            self.start
        };
        self.first_free_run(from, u64::MAX, len, &mut is_mapped)
            .or_else(|| {
                // Only runs that start below `from` are left to try.
                let below = from.checked_sub(PAGE_SIZE).filter(|&b| b >= self.start)?;
                self.first_free_run(self.start, below, len, &mut is_mapped)
            })
    }

    /// The first run of `len` unmapped bytes that starts between `from`
    /// and `last` and ends by the window's end.
    fn first_free_run(
        &self,
        from: u64,
        last: u64,
        len: u64,
        is_mapped: &mut impl FnMut(u64) -> bool,
    ) -> Option<u64> {
        let mut candidate = from;
        while candidate <= last && candidate.checked_add(len)? <= self.end {
            // Move past the first mapped page of the candidate run.
            match (0..len / PAGE_SIZE).find(|i| is_mapped(candidate + i * PAGE_SIZE)) {
                None => return Some(candidate),
                Some(i) => candidate += (i + 1) * PAGE_SIZE,
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeSet;

    const WINDOW: DeviceWindow = DeviceWindow {
        start: 0x4000_0000,
        end: 0x4000_0000 + 64 * PAGE_SIZE,
    };

    /// Pages mapped so far, and the search's probes.
    #[derive(Default)]
    struct Space {
        mapped: BTreeSet<u64>,
        probes: u64,
        next: u64,
    }

    impl Space {
        fn map(&mut self, at: u64, pages: u64) {
            for i in 0..pages {
                assert!(self.mapped.insert(at + i * PAGE_SIZE), "mapped twice");
            }
        }

        /// Place and map `pages`, as the kernel does; `None` if refused.
        fn place(&mut self, pages: u64) -> Option<u64> {
            let mapped = &self.mapped;
            let probes = &mut self.probes;
            let at = WINDOW.place(self.next, pages * PAGE_SIZE, |page| {
                *probes += 1;
                mapped.contains(&page)
            })?;
            self.map(at, pages);
            self.next = at + pages * PAGE_SIZE;
            Some(at)
        }

        /// Whether a search from the window's start finds a free run.
        fn has_room(&self, pages: u64) -> bool {
            (0..64 - pages + 1).any(|first| {
                (first..first + pages)
                    .all(|p| !self.mapped.contains(&(WINDOW.start + p * PAGE_SIZE)))
            })
        }
    }

    #[test]
    fn a_placement_probes_its_own_pages_however_many_came_before() {
        let mut space = Space::default();
        for n in 0..60 {
            let before = space.probes;
            assert_eq!(space.place(1), Some(WINDOW.start + n * PAGE_SIZE));
            assert_eq!(space.probes - before, 1, "placement {n}");
        }
        let before = space.probes;
        assert_eq!(space.place(4), Some(WINDOW.start + 60 * PAGE_SIZE));
        assert_eq!(space.probes - before, 4);
    }

    #[test]
    fn mappings_the_driver_placed_are_skipped_once() {
        let mut space = Space::default();
        // The driver maps pages 2..5 and 9 itself.
        space.map(WINDOW.start + 2 * PAGE_SIZE, 3);
        space.map(WINDOW.start + 9 * PAGE_SIZE, 1);
        assert_eq!(space.place(2), Some(WINDOW.start));
        assert_eq!(space.place(2), Some(WINDOW.start + 5 * PAGE_SIZE));
        assert_eq!(space.place(2), Some(WINDOW.start + 7 * PAGE_SIZE));
        assert_eq!(space.place(1), Some(WINDOW.start + 10 * PAGE_SIZE));
    }

    #[test]
    fn a_hole_below_is_used_once_nothing_is_free_above() {
        let mut space = Space::default();
        // A hole of 2 pages at 3..5, everything else taken, the search
        // past the hole.
        space.map(WINDOW.start, 3);
        space.map(WINDOW.start + 5 * PAGE_SIZE, 59);
        space.next = WINDOW.start + 40 * PAGE_SIZE;
        assert_eq!(space.place(3), None);
        assert_eq!(space.place(2), Some(WINDOW.start + 3 * PAGE_SIZE));
        assert_eq!(space.place(1), None);
    }

    #[test]
    fn a_run_straddling_where_the_search_began_is_found() {
        let mut space = Space::default();
        // Free: pages 30..34; the search begins at 32, with only 2 free
        // pages above it.
        space.map(WINDOW.start, 30);
        space.map(WINDOW.start + 34 * PAGE_SIZE, 30);
        space.next = WINDOW.start + 32 * PAGE_SIZE;
        assert_eq!(space.place(4), Some(WINDOW.start + 30 * PAGE_SIZE));
    }

    #[test]
    fn refused_exactly_when_no_run_is_free_anywhere_in_the_window() {
        // Driver-placed pages at every 5th page, then kernel placements
        // of varying lengths until refused: each refusal must match a
        // search from the window's start, whatever `next` says.
        for stride in [3u64, 5, 7] {
            let mut space = Space::default();
            for p in (0..64).step_by(stride as usize) {
                space.map(WINDOW.start + p * PAGE_SIZE, 1);
            }
            for pages in [
                1u64, 2, 3, 4, 2, 1, 6, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
            ] {
                let room = space.has_room(pages);
                assert_eq!(
                    space.place(pages).is_some(),
                    room,
                    "stride {stride}, {pages} pages"
                );
            }
        }
    }

    #[test]
    fn long_runs_and_stray_hints_are_handled() {
        let mut probes = 0;
        let mut count = |_| {
            probes += 1;
            false
        };
        assert_eq!(WINDOW.place(WINDOW.start, 65 * PAGE_SIZE, &mut count), None);
        assert_eq!(
            WINDOW.place(WINDOW.end, 64 * PAGE_SIZE, &mut count),
            Some(WINDOW.start)
        );
        assert_eq!(
            WINDOW.place(u64::MAX, PAGE_SIZE, &mut count),
            Some(WINDOW.start)
        );
        assert_eq!(
            WINDOW.place(WINDOW.start + 1, PAGE_SIZE, &mut count),
            Some(WINDOW.start)
        );
        assert_eq!(
            WINDOW.place(WINDOW.end - PAGE_SIZE, PAGE_SIZE, &mut count),
            Some(WINDOW.end - PAGE_SIZE)
        );
        // The end of the address space: no overflow.
        let top = DeviceWindow {
            start: u64::MAX - 4 * PAGE_SIZE + 1,
            end: u64::MAX - PAGE_SIZE + 1,
        };
        assert_eq!(top.place(0, 4 * PAGE_SIZE, |_| false), None);
        assert_eq!(top.place(0, 3 * PAGE_SIZE, |_| false), Some(top.start));
    }
}
