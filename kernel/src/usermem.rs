//! Copying to and from a task's memory without ever dereferencing a user
//! pointer.
//!
//! Every access first passes the range arithmetic of
//! [`pandagen_core::user_range`] (no wrap, entirely in the user half), then
//! looks each page up in the task's own page tables, requiring a present
//! USER mapping (and WRITABLE for writes), and copies through the kernel's
//! window onto physical memory. So SMAP stays armed all the time, a bad
//! pointer is a typed error rather than a kernel fault, and the kernel can
//! complete a blocked task's call while another address space is active.
//!
//! A task's user mappings never change after its image is loaded (there is
//! no call that maps or unmaps user memory; they are freed only with the
//! task), so [`UserMemory`] remembers page translations in a small
//! direct-mapped cache, and the last few ranges accepted as writable: the
//! syscall buffers a task reuses call after call are walked once.

use pandagen_abi::error::UserMemoryError;
use pandagen_abi::memory::PAGE_SIZE;
use pandagen_core::user_range::{pages, user_range};
use pandagen_hal::x86_64::paging::AddressSpace;

/// Page translations remembered per task, indexed by the low bits of the
/// page number (a power of two). The runtime's request and response
/// buffers span five pages each, and a server may alternate between two.
const CACHED_PAGES: usize = 32;

/// Writable ranges remembered per task (response buffers).
const CACHED_RANGES: usize = 4;

#[derive(Clone, Copy)]
struct Cached {
    /// The user page, or `u64::MAX` for an empty slot.
    page: u64,
    /// The kernel-window address of its frame less the page's address
    /// (wrapping): a user address in the page plus this is its window
    /// address, with no offset to keep apart.
    delta: u64,
    writable: bool,
}

/// A range [`UserMemory::check_writable`] accepted, and where its first
/// bytes are: `room` (at most the range's length, 0 for an empty range)
/// bytes from `ptr` lie in one page, at `window` in the kernel's window
/// onto its frame.
/// An entry of [`UserMemory`]'s `writable` ranges: an index the compiler
/// knows is in bounds (one of four values), so that reading the entry
/// checked last needs neither a bounds test nor a mask.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum RangeIndex {
    First,
    Second,
    Third,
    Fourth,
}

impl RangeIndex {
    /// Each, at its own position.
    const ALL: [RangeIndex; CACHED_RANGES] = [
        RangeIndex::First,
        RangeIndex::Second,
        RangeIndex::Third,
        RangeIndex::Fourth,
    ];
}

#[derive(Clone, Copy)]
struct Checked {
    ptr: u64,
    len: u64,
    window: u64,
    room: u64,
}

impl Checked {
    /// No range: it matches only an empty range, at any pointer.
    const NONE: Checked = Checked::empty(0);

    /// The empty range at `ptr`, before its walk. Its `window` is a
    /// dangling address (not null, and aligned for bytes), where an empty
    /// slice may be.
    const fn empty(ptr: u64) -> Checked {
        Checked {
            ptr,
            len: 0,
            window: 1,
            room: 0,
        }
    }
}

/// A task's address space, as the kernel reads and writes it.
pub struct UserMemory {
    space: AddressSpace,
    /// The CR3 value that loads `space` (`paging::cr3_of`), kept so that
    /// a switch to the task loads it as it is.
    cr3: u64,
    cache: [Cached; CACHED_PAGES],
    /// Ranges [`UserMemory::check_writable`] accepted, the one accepted
    /// last first: a new range goes in front and the last one out (the
    /// same ranges round-robin replacement keeps, in the order the inline
    /// check compares them). The empty `NONE` entries match only an
    /// empty range, which every pointer passes.
    writable: [Checked; CACHED_RANGES],
    /// The entry of `writable` the last check found or made (0 before
    /// any: a `NONE` entry): a task's last check is of its receive's
    /// response buffer, which a reply handed to it while it waits is then
    /// written into without a lookup
    /// ([`UserMemory::writable_where_checked`]). Every check sets it, and
    /// only a check moves the entries.
    last_checked: RangeIndex,
    /// Where the kernel's last device or DMA placement in this space
    /// ended: the next one searches from here (see `device::place`).
    next_placement: u64,
}

impl UserMemory {
    pub fn new(space: AddressSpace) -> Self {
        UserMemory {
            space,
            cr3: crate::mem::paging::cr3_of(&space),
            cache: [Cached {
                page: u64::MAX,
                delta: 0,
                writable: false,
            }; CACHED_PAGES],
            writable: [Checked::NONE; CACHED_RANGES],
            last_checked: RangeIndex::First,
            next_placement: 0,
        }
    }

    /// The CR3 value that loads this space (see `paging::cr3_of`).
    #[inline(always)]
    pub fn cr3(&self) -> u64 {
        self.cr3
    }

    /// The space, and where the kernel's next device or DMA placement in
    /// it starts its search.
    pub fn space_and_placement(&mut self) -> (&AddressSpace, &mut u64) {
        (&self.space, &mut self.next_placement)
    }

    /// Give the address space back (to free it).
    pub fn into_space(self) -> AddressSpace {
        self.space
    }

    /// The window address and writability of user page `page`: a cached
    /// page inline, a page table walk out of line.
    #[inline(always)]
    fn page(&mut self, page: u64) -> Result<(u64, bool), UserMemoryError> {
        let slot = Self::slot(page);
        let c = self.cache[slot];
        if c.page == page {
            return Ok((page.wrapping_add(c.delta), c.writable));
        }
        self.page_uncached(page, slot)
    }

    /// The cache slot of user page `page`.
    #[inline(always)]
    fn slot(page: u64) -> usize {
        (page / PAGE_SIZE) as usize % CACHED_PAGES
    }

    #[inline(never)]
    fn page_uncached(&mut self, page: u64, slot: usize) -> Result<(u64, bool), UserMemoryError> {
        let t = self
            .space
            .translate(page)
            .ok_or(UserMemoryError::Unmapped)?;
        // Device registers are never a system call's buffer: the kernel
        // reaches memory through its window onto RAM, and reading a
        // register can change its device.
        if !t.flags.user || t.flags.uncached {
            return Err(UserMemoryError::NotUserAddress);
        }
        let window = self.space.window().virt(t.phys & !(PAGE_SIZE - 1));
        self.cache[slot] = Cached {
            page,
            delta: window.wrapping_sub(page),
            writable: t.flags.writable,
        };
        Ok((window, t.flags.writable))
    }

    /// Check `len` bytes at `ptr` and call `each(window address, len)` for
    /// each piece, page by page.
    fn walk(
        &mut self,
        ptr: u64,
        len: u64,
        write: bool,
        mut each: impl FnMut(u64, usize),
    ) -> Result<(), UserMemoryError> {
        for (at, n) in pages(user_range(ptr, len)?) {
            let (window, writable) = self.page(at & !(PAGE_SIZE - 1))?;
            if write && !writable {
                return Err(UserMemoryError::NotWritable);
            }
            each(window + (at & (PAGE_SIZE - 1)), n);
        }
        Ok(())
    }

    /// Check without copying that `len` bytes at `ptr` may be written.
    /// A range checked before is found in the cache inline (every call's
    /// response buffer); a new one is walked out of line. (An entry of
    /// length 0 needs no exclusion: it matches only an empty range, and
    /// the walk accepts every empty range.) The range accepted is the
    /// last checked (see [`UserMemory::writable_where_checked`]).
    #[inline(always)]
    pub fn check_writable(&mut self, ptr: u64, len: u64) -> Result<(), UserMemoryError> {
        if self.writable_as_checked_before(ptr, len) {
            return Ok(());
        }
        self.check_writable_uncached(ptr, len)
    }

    /// Whether `len` bytes at `ptr` lie in a range a check accepted
    /// before (kept among the last few: same pointer, at most as long),
    /// which is then the last checked, as after
    /// [`UserMemory::check_writable`]. `false` says only that no kept
    /// range covers it, having changed nothing: a caller that cannot
    /// afford the walk (the direct path, which then declines) leaves it
    /// to one that can, which checks and keeps it.
    #[inline(always)]
    pub fn writable_as_checked_before(&mut self, ptr: u64, len: u64) -> bool {
        for at in RangeIndex::ALL {
            let c = &self.writable[at as usize];
            if c.ptr == ptr && len <= c.len {
                self.last_checked = at;
                return true;
            }
        }
        false
    }

    #[inline(never)]
    fn check_writable_uncached(&mut self, ptr: u64, len: u64) -> Result<(), UserMemoryError> {
        let mut checked = Checked {
            len,
            ..Checked::empty(ptr)
        };
        self.walk(ptr, len, true, |window, n| {
            if checked.room == 0 {
                // The first page's piece.
                checked.window = window;
                checked.room = n as u64;
            }
        })?;
        self.writable.copy_within(..CACHED_RANGES - 1, 1);
        self.writable[0] = checked;
        self.last_checked = RangeIndex::First;
        Ok(())
    }

    /// `len` bytes at `ptr` as a kernel slice to write in place, if `ptr`
    /// starts the range checked last ([`UserMemory::check_writable`]) and
    /// `len` is at most the bytes of that range in its first page; `None`
    /// otherwise (the caller then looks the page up).
    /// No lookup: the check found the page. (The caller keeps to the
    /// buffer's own capacity: the range checked may be longer.)
    #[inline(always)]
    pub fn writable_where_checked(&mut self, ptr: u64, len: usize) -> Option<&mut [u8]> {
        let c = self.writable[self.last_checked as usize];
        if c.ptr != ptr || len as u64 > c.room {
            return None;
        }
        // SAFETY: `last_checked` is a range this memory's walk found
        // present, USER and WRITABLE, and `window` the kernel-window
        // address of its first byte, `room` bytes of which lie in that
        // page: `len` of them are here. (An empty range, `NONE` among
        // them, has `room` 0 and a dangling `window`: only an empty slice,
        // which may be there.) A task's user mappings never change once made (module
        // docs), so the page and its frame are still the task's. The
        // frame belongs to the task, never to kernel data, and nothing
        // else reads or writes it while the slice lives: one CPU, the
        // task is not running, and the slice borrows `self`.
        Some(unsafe { core::slice::from_raw_parts_mut(c.window as *mut u8, len) })
    }

    /// The kernel-window address of `len` (> 0) bytes at `ptr` if they lie
    /// in one page and may be accessed (written, with `write`) — the common
    /// case of a small buffer, done with one cached lookup. `None` sends
    /// the caller to the general walk, which also reports every error.
    ///
    /// A cached page needs no range check: the cache holds only user pages
    /// (an empty slot's `u64::MAX` is no page address, and a walk caches
    /// only USER mappings), and bytes within one user page are within the
    /// user half and cannot wrap. A page not in the cache is checked as
    /// every access is, then walked out of line.
    #[inline(always)]
    fn within_page(&mut self, ptr: u64, len: u64, write: bool) -> Option<u64> {
        self.within_page_as::<true>(ptr, len, write)
    }

    /// [`UserMemory::within_page`], with `WALK`; without, a page not in
    /// the cache is `None` too, having walked nothing.
    #[inline(always)]
    fn within_page_as<const WALK: bool>(&mut self, ptr: u64, len: u64, write: bool) -> Option<u64> {
        let offset = ptr & (PAGE_SIZE - 1);
        // `PAGE_SIZE - offset` cannot wrap (`offset` < `PAGE_SIZE`), where
        // `offset + len` would for a huge `len`, and a page in the cache is
        // not walked again to catch it.
        // `len == 0 || len > PAGE_SIZE - offset` as one compare: 0 wraps
        // to the largest length.
        if len.wrapping_sub(1) >= PAGE_SIZE - offset {
            return None;
        }
        let page = ptr - offset;
        let slot = Self::slot(page);
        let c = self.cache[slot];
        let (delta, writable) = if c.page == page {
            (c.delta, c.writable)
        } else if !WALK {
            return None;
        } else {
            user_range(ptr, len).ok()?;
            let (window, writable) = self.page_uncached(page, slot).ok()?;
            (window.wrapping_sub(page), writable)
        };
        (writable || !write).then_some(ptr.wrapping_add(delta))
    }

    /// The `len` (> 0) bytes at `ptr` as a kernel slice to write in place,
    /// if they lie in one writable page; `None` otherwise (the caller then
    /// uses [`UserMemory::copy_out_parts`], which reports errors).
    pub fn writable_in_page(&mut self, ptr: u64, len: usize) -> Option<&mut [u8]> {
        let at = self.within_page(ptr, len as u64, true)?;
        // SAFETY: `at` is the kernel-window address of `len` bytes inside
        // one present, writable user page of this task (checked by
        // `within_page`). The frame belongs to the task, never to kernel
        // data, and nothing else reads or writes it while the slice lives:
        // one CPU, the task is not running, and the slice borrows `self`.
        Some(unsafe { core::slice::from_raw_parts_mut(at as *mut u8, len) })
    }

    /// The `len` bytes at `ptr` as a kernel slice to read in place, if
    /// they lie in one page the task may read that is in the cache (or
    /// are empty); `None` otherwise, having walked nothing (the general
    /// path's [`UserMemory::copy_in`] walks the page, keeps it and
    /// reports errors). For a caller that cannot afford the walk (the
    /// direct path, which then declines).
    #[inline(always)]
    pub fn readable_in_cached_page(&mut self, ptr: u64, len: usize) -> Option<&[u8]> {
        // The empty message after the lookup, which declines it: one test
        // fewer for every other.
        let Some(at) = self.within_page_as::<false>(ptr, len as u64, false) else {
            return (len == 0).then_some(&[]);
        };
        // SAFETY: `at` is the kernel-window address of `len` bytes inside
        // one present user page of this task (a cached page, checked by
        // `within_page_as`). The frame belongs to the task alone (the
        // kernel never maps one task's frame into another task or into
        // kernel data), so no kernel slice being written can overlap it,
        // and the task, which is in the kernel, cannot change it while
        // the slice borrows `self`.
        Some(unsafe { core::slice::from_raw_parts(at as *const u8, len) })
    }

    /// Copy `dst.len()` bytes from the task's `ptr` into `dst`. A failure
    /// part-way leaves a partial copy in `dst`, which the caller discards
    /// with the error.
    pub fn copy_in(&mut self, ptr: u64, dst: &mut [u8]) -> Result<(), UserMemoryError> {
        if let Some(src) = self.within_page(ptr, dst.len() as u64, false) {
            // SAFETY: `src` is the kernel-window address of `dst.len()`
            // bytes inside one present user page (checked by
            // `within_page`); `dst` is kernel memory, so they cannot
            // overlap.
            unsafe {
                core::ptr::copy_nonoverlapping(src as *const u8, dst.as_mut_ptr(), dst.len())
            };
            return Ok(());
        }
        let mut done = 0;
        self.walk(ptr, dst.len() as u64, false, |src, n| {
            // SAFETY: `src` is the kernel-window address of a present user
            // page, with `n` bytes to the end of the piece inside that
            // page; the window maps all physical memory and `dst` is kernel
            // memory, so the two cannot overlap.
            unsafe {
                core::ptr::copy_nonoverlapping(src as *const u8, dst[done..].as_mut_ptr(), n)
            };
            done += n;
        })
    }

    /// Copy `src` into the task's memory at `ptr`. A failure part-way
    /// leaves part of `src` in the task's own buffer: harmless, and the
    /// call reports the error.
    pub fn copy_out(&mut self, ptr: u64, src: &[u8]) -> Result<(), UserMemoryError> {
        self.copy_out_parts(ptr, &[src])
    }

    /// Copy `parts`, one after the other, into the task's memory at `ptr`
    /// (a reply assembled from pieces, without staging it). Failures as for
    /// [`UserMemory::copy_out`].
    pub fn copy_out_parts(&mut self, ptr: u64, parts: &[&[u8]]) -> Result<(), UserMemoryError> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if let Some(mut dst) = self.within_page(ptr, total as u64, true) {
            for part in parts {
                // SAFETY: the parts together are `total` bytes, all inside
                // one present, writable user page at `dst` (checked by
                // `within_page`); the destination is a user frame, never
                // kernel data, so it cannot overlap a kernel source.
                unsafe {
                    core::ptr::copy_nonoverlapping(part.as_ptr(), dst as *mut u8, part.len())
                };
                dst += part.len() as u64;
            }
            return Ok(());
        }
        let mut at = ptr;
        for part in parts {
            let mut done = 0;
            self.walk(at, part.len() as u64, true, |dst, n| {
                // SAFETY: as in `copy_in`, with the page checked
                // WRITABLE|USER; the destination is a user frame, never
                // kernel data.
                unsafe { core::ptr::copy_nonoverlapping(part[done..].as_ptr(), dst as *mut u8, n) };
                done += n;
            })?;
            at = at.wrapping_add(part.len() as u64);
        }
        Ok(())
    }
}
