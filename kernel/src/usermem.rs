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
//! task), so [`UserMemory`] remembers the last few page translations: the
//! syscall buffers a task reuses call after call are walked once.

use pandagen_abi::error::UserMemoryError;
use pandagen_core::user_range::{pages, user_range, PAGE_SIZE};
use pandagen_hal::x86_64::paging::AddressSpace;

/// Translations remembered per task (the runtime's request and response
/// buffers span five pages each).
const CACHED_PAGES: usize = 8;

#[derive(Clone, Copy)]
struct Cached {
    /// The user page, or `u64::MAX` for an empty slot.
    page: u64,
    /// The kernel-window address of its frame.
    window: u64,
    writable: bool,
}

/// A task's address space, as the kernel reads and writes it.
pub struct UserMemory {
    space: AddressSpace,
    cache: [Cached; CACHED_PAGES],
    next: usize,
    /// The last range [`UserMemory::check_writable`] accepted, as
    /// (pointer, length): the response buffer a task passes every call.
    writable: (u64, u64),
}

impl UserMemory {
    pub fn new(space: AddressSpace) -> Self {
        UserMemory {
            space,
            cache: [Cached {
                page: u64::MAX,
                window: 0,
                writable: false,
            }; CACHED_PAGES],
            next: 0,
            writable: (0, 0),
        }
    }

    pub fn space(&self) -> &AddressSpace {
        &self.space
    }

    /// Give the address space back (to free it).
    pub fn into_space(self) -> AddressSpace {
        self.space
    }

    /// The window address and writability of user page `page`.
    fn page(&mut self, page: u64) -> Result<(u64, bool), UserMemoryError> {
        if let Some(c) = self.cache.iter().find(|c| c.page == page) {
            return Ok((c.window, c.writable));
        }
        let t = self
            .space
            .translate(page)
            .ok_or(UserMemoryError::Unmapped)?;
        if !t.flags.user {
            return Err(UserMemoryError::NotUserAddress);
        }
        let window = self.space.window().virt(t.phys & !(PAGE_SIZE - 1));
        self.cache[self.next] = Cached {
            page,
            window,
            writable: t.flags.writable,
        };
        self.next = (self.next + 1) % CACHED_PAGES;
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
    pub fn check_writable(&mut self, ptr: u64, len: u64) -> Result<(), UserMemoryError> {
        if ptr == self.writable.0 && len <= self.writable.1 {
            return Ok(());
        }
        self.walk(ptr, len, true, |_, _| {})?;
        self.writable = (ptr, len);
        Ok(())
    }

    /// Copy `dst.len()` bytes from the task's `ptr` into `dst`. A failure
    /// part-way leaves a partial copy in `dst`, which the caller discards
    /// with the error.
    pub fn copy_in(&mut self, ptr: u64, dst: &mut [u8]) -> Result<(), UserMemoryError> {
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
        let mut done = 0;
        self.walk(ptr, src.len() as u64, true, |dst, n| {
            // SAFETY: as in `copy_in`, with the page checked WRITABLE|USER;
            // the destination is a user frame, never kernel data.
            unsafe { core::ptr::copy_nonoverlapping(src[done..].as_ptr(), dst as *mut u8, n) };
            done += n;
        })
    }
}
