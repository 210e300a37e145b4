//! Byte-string comparison a word at a time: the `memcmp` and `bcmp` every
//! ring-3 program links.
//!
//! The compiler's fallback compares one byte per loop turn. Services order
//! byte-string keys in B-trees (storage's maps), where every lookup makes
//! a dozen or more comparisons; eight bytes per turn makes each one a few
//! instructions instead of a few dozen.

use core::cmp::Ordering;

/// How `a` orders against `b`, byte by byte as unsigned values, over their
/// common length. Written with explicit loops: `<[u8]>::cmp` would call
/// `memcmp`, which is this.
pub fn compare_prefix(a: &[u8], b: &[u8]) -> Ordering {
    let len = a.len().min(b.len());
    let (a, b) = (&a[..len], &b[..len]);
    let mut words_a = a.chunks_exact(8);
    let mut words_b = b.chunks_exact(8);
    for (x, y) in (&mut words_a).zip(&mut words_b) {
        let x = u64::from_be_bytes(word(x));
        let y = u64::from_be_bytes(word(y));
        if x != y {
            // Big-endian: the first differing byte is the most significant
            // difference.
            return if x < y {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
    }
    for (x, y) in words_a.remainder().iter().zip(words_b.remainder()) {
        if x != y {
            return if x < y {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
    }
    Ordering::Equal
}

/// The eight bytes of a `chunks_exact(8)` chunk.
fn word(chunk: &[u8]) -> [u8; 8] {
    let mut out = [0; 8];
    for (o, c) in out.iter_mut().zip(chunk) {
        *o = *c;
    }
    out
}

/// C's `memcmp`: negative, zero or positive as the first `n` bytes at `a`
/// order before, equal to or after those at `b`.
///
/// # Safety
/// `a` and `b` must each be valid for reads of `n` bytes.
#[cfg(target_os = "none")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> core::ffi::c_int {
    // SAFETY: the caller guarantees `n` readable bytes at each pointer,
    // which is what `from_raw_parts` needs; the slices live only for this
    // call and nothing writes through the pointers meanwhile.
    let (a, b) = unsafe {
        (
            core::slice::from_raw_parts(a, n),
            core::slice::from_raw_parts(b, n),
        )
    };
    compare_prefix(a, b) as core::ffi::c_int
}

/// C's `bcmp`: zero exactly when the first `n` bytes at `a` and `b` are
/// equal (slice equality compiles to it).
///
/// # Safety
/// As for [`memcmp`].
#[cfg(target_os = "none")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> core::ffi::c_int {
    // SAFETY: the same contract as `memcmp`, passed on unchanged.
    unsafe { memcmp(a, b, n) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pair of short strings over a small alphabet, both lengths and
    /// every position of the first difference, against the standard order.
    #[test]
    fn orders_like_the_standard_library() {
        let alphabet = [0u8, 1, 0x7f, 0x80, 0xff];
        let mut strings: alloc::vec::Vec<alloc::vec::Vec<u8>> = alloc::vec![alloc::vec![]];
        for len in 1..=3 {
            let mut next = alloc::vec::Vec::new();
            for s in strings.iter().filter(|s| s.len() == len - 1) {
                for &c in &alphabet {
                    let mut t = s.clone();
                    t.push(c);
                    next.push(t);
                }
            }
            strings.extend(next);
        }
        // Pad to straddle the word boundary: the difference falls in the
        // first word, the second word, or the remainder.
        for pad in [0usize, 6, 8, 13, 16] {
            for x in &strings {
                for y in &strings {
                    let mut a = alloc::vec![0x5a; pad];
                    a.extend_from_slice(x);
                    let mut b = alloc::vec![0x5a; pad];
                    b.extend_from_slice(y);
                    let len = a.len().min(b.len());
                    assert_eq!(
                        compare_prefix(&a, &b),
                        a[..len].cmp(&b[..len]),
                        "{a:?} vs {b:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_difference_in_any_byte_of_a_word_decides() {
        for i in 0..24 {
            let a = [7u8; 24];
            let mut b = a;
            b[i] = 8;
            assert_eq!(compare_prefix(&a, &b), Ordering::Less);
            assert_eq!(compare_prefix(&b, &a), Ordering::Greater);
            b[i] = 6;
            assert_eq!(compare_prefix(&a, &b), Ordering::Greater);
        }
        assert_eq!(compare_prefix(&[1; 24], &[1; 24]), Ordering::Equal);
    }
}
