//! Copying to and from a task's memory without ever dereferencing a user
//! pointer.
//!
//! Every access first passes the range arithmetic of
//! [`pandagen_core::user_range`] (no wrap, entirely in the user half), then
//! walks the task's own page tables page by page, requiring a present
//! USER mapping (and WRITABLE for writes), and copies through the kernel's
//! window onto physical memory. So SMAP stays armed all the time, a bad
//! pointer is a typed error rather than a kernel fault, and the kernel can
//! complete a blocked task's call while another address space is active.

use pandagen_abi::error::UserMemoryError;
use pandagen_core::user_range::{pages, user_range};
use pandagen_hal::x86_64::paging::AddressSpace;

/// The permission an access needs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

/// Check that `len` bytes at `ptr` are user memory mapped with `access`;
/// calls `each(window address, len)` for each piece, page by page.
fn walk(
    space: &AddressSpace,
    ptr: u64,
    len: u64,
    access: Access,
    mut each: impl FnMut(u64, usize),
) -> Result<(), UserMemoryError> {
    let range = user_range(ptr, len)?;
    if range.is_empty() {
        return Ok(());
    }
    let window = space.window();
    let mut error = UserMemoryError::Unmapped;
    let mut pieces = pages(range.clone());
    let complete = space.for_each_page(range.start, range.end, |_, t| {
        if !t.flags.user {
            error = UserMemoryError::NotUserAddress;
            return false;
        }
        if access == Access::Write && !t.flags.writable {
            error = UserMemoryError::NotWritable;
            return false;
        }
        if let Some((at, n)) = pieces.next() {
            each(window.virt(t.phys) + (at & 0xfff), n);
        }
        true
    });
    if complete {
        Ok(())
    } else {
        Err(error)
    }
}

/// Check without copying that `len` bytes at `ptr` may be written.
pub fn check_writable(space: &AddressSpace, ptr: u64, len: u64) -> Result<(), UserMemoryError> {
    walk(space, ptr, len, Access::Write, |_, _| {})
}

/// Copy `dst.len()` bytes from the task's `ptr` into `dst`.
pub fn copy_in(space: &AddressSpace, ptr: u64, dst: &mut [u8]) -> Result<(), UserMemoryError> {
    // A failure part-way leaves a partial copy in `dst`, which the caller
    // discards with the error.
    let mut done = 0;
    walk(space, ptr, dst.len() as u64, Access::Read, |src, n| {
        // SAFETY: `src` is the kernel-window address of a present user
        // page, with `n` bytes to the end of the piece inside that page;
        // the window maps all physical memory and `dst` is kernel memory,
        // so the two cannot overlap.
        unsafe { core::ptr::copy_nonoverlapping(src as *const u8, dst[done..].as_mut_ptr(), n) };
        done += n;
    })
}

/// Copy `src` into the task's memory at `ptr`.
pub fn copy_out(space: &AddressSpace, ptr: u64, src: &[u8]) -> Result<(), UserMemoryError> {
    // A failure part-way leaves part of `src` in the task's own buffer:
    // harmless, and the call reports the error.
    let mut done = 0;
    walk(space, ptr, src.len() as u64, Access::Write, |dst, n| {
        // SAFETY: as in `copy_in`, with the page checked WRITABLE|USER; the
        // destination is a user frame, never kernel data.
        unsafe { core::ptr::copy_nonoverlapping(src[done..].as_ptr(), dst as *mut u8, n) };
        done += n;
    })
}
