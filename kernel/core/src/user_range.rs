//! User-memory range arithmetic: the checks the kernel makes on every
//! pointer and length ring 3 hands it, before it looks at a page table.
//!
//! A range is acceptable when its end does not wrap around the address
//! space and it lies entirely in the user half. Only then does the kernel
//! walk the task's page tables, page by page ([`pages`]), to check that
//! each page is mapped with the permissions the access needs.

use core::ops::Range;
use pandagen_abi::error::UserMemoryError;
use pandagen_abi::memory::{PAGE_SIZE, USER_END};

/// Check `len` bytes at `ptr`: `Overflow` if the end wraps,
/// `NotUserAddress` if any byte lies outside the user half. An empty range
/// is always acceptable (nothing will be touched).
pub fn user_range(ptr: u64, len: u64) -> Result<Range<u64>, UserMemoryError> {
    if len == 0 {
        return Ok(ptr..ptr);
    }
    let end = ptr.checked_add(len).ok_or(UserMemoryError::Overflow)?;
    if ptr >= USER_END || end > USER_END {
        return Err(UserMemoryError::NotUserAddress);
    }
    Ok(ptr..end)
}

/// The pieces of `range` that fall in successive pages: `(address, len)`
/// with no piece crossing a page boundary.
pub fn pages(range: Range<u64>) -> impl Iterator<Item = (u64, usize)> {
    let mut at = range.start;
    core::iter::from_fn(move || {
        if at >= range.end {
            return None;
        }
        let page_end = (at & !(PAGE_SIZE - 1)) + PAGE_SIZE;
        let end = page_end.min(range.end);
        let piece = (at, (end - at) as usize);
        at = end;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    #[test]
    fn wrapping_kernel_and_straddling_ranges_are_refused() {
        assert_eq!(user_range(u64::MAX - 8, 64), Err(UserMemoryError::Overflow));
        assert_eq!(user_range(0x1000, u64::MAX), Err(UserMemoryError::Overflow));
        assert_eq!(
            user_range(0xffff_8000_0000_0000, 16),
            Err(UserMemoryError::NotUserAddress)
        );
        assert_eq!(
            user_range(0x0000_7fff_ffff_fff0, 64),
            Err(UserMemoryError::NotUserAddress)
        );
        assert_eq!(
            user_range(0x0000_7fff_ffff_fff0, 16),
            Ok(0x0000_7fff_ffff_fff0..USER_END)
        );
        assert_eq!(
            user_range(USER_END, 1),
            Err(UserMemoryError::NotUserAddress)
        );
        assert_eq!(
            user_range(0xffff_ffff_ffff_0000, 0),
            Ok(0xffff_ffff_ffff_0000..0xffff_ffff_ffff_0000)
        );
    }

    #[test]
    fn pages_split_at_page_boundaries() {
        let v: Vec<_> = pages(0xff0..0x2010).collect();
        assert_eq!(v, [(0xff0, 0x10), (0x1000, 0x1000), (0x2000, 0x10)]);
        assert_eq!(pages(0x5000..0x5000).count(), 0);
    }

    proptest! {
        #[test]
        fn accepted_ranges_are_user_ranges_and_pages_cover_them(ptr in any::<u64>(), len in 0u64..(1 << 20)) {
            if let Ok(r) = user_range(ptr, len) {
                if len > 0 {
                    prop_assert!(r.end <= USER_END && r.start < r.end);
                    let mut next = r.start;
                    for (at, n) in pages(r.clone()) {
                        prop_assert_eq!(at, next);
                        prop_assert!(n > 0 && (at % PAGE_SIZE) + n as u64 <= PAGE_SIZE);
                        next = at + n as u64;
                    }
                    prop_assert_eq!(next, r.end);
                }
            } else {
                prop_assert!(ptr.checked_add(len).is_none_or(|e| e > USER_END));
            }
        }
    }
}
