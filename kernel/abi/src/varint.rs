//! postcard's varints (and byte strings), read and written by hand.
//!
//! postcard writes every integer wider than a byte (and every length and
//! enum tag) as a LEB128 varint: seven bits per byte, lowest first, the
//! high bit set on every byte but the last. The hand-written codecs of
//! the hot paths (the receive reply's framing, the message envelope, the
//! storage client's request and answer) read and write them here, with
//! exactly postcard's rules (the tests compare with postcard for every
//! width): a reader accepts what postcard accepts (non-shortest forms
//! included) and refuses what it refuses (input cut short, more bytes than
//! the type has, or bits beyond the type's width in the last byte).

/// Write `value` as a postcard varint at `out[at..]`, as far as `out`
/// reaches; returns the index after what was written.
#[inline]
pub fn put(out: &mut [u8], mut at: usize, mut value: u64) -> usize {
    while let Some(slot) = out.get_mut(at) {
        at += 1;
        if value < 0x80 {
            *slot = value as u8;
            break;
        }
        *slot = value as u8 | 0x80;
        value >>= 7;
    }
    at
}

/// Read a postcard varint of a `bits`-bit integer from `bytes[at..]`: the
/// value and the index after it, or `None` where postcard fails
/// (`DeserializeUnexpectedEnd` or `DeserializeBadVarint`): cut short, a
/// byte past the type's last with its high bit set, or a last byte with
/// bits beyond the type.
#[inline(always)]
fn take(bytes: &[u8], mut at: usize, bits: u32) -> Option<(u64, usize)> {
    let first = *bytes.get(at)?;
    at += 1;
    if first < 0x80 {
        return Some((u64::from(first), at));
    }
    let mut value = u64::from(first & 0x7f);
    let mut shift = 7;
    while shift < bits {
        let byte = *bytes.get(at)?;
        at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            // The type's last byte carries only its remaining bits.
            let fits = shift + 7 <= bits || u32::from(byte) < 1 << (bits - shift);
            return fits.then_some((value, at));
        }
        shift += 7;
    }
    None
}

/// Read a postcard varint `u64` (or `usize`, on a 64-bit target) from
/// `bytes[at..]`: the value and the index after it, or `None` where
/// postcard fails.
#[inline]
pub fn take_u64(bytes: &[u8], at: usize) -> Option<(u64, usize)> {
    take(bytes, at, 64)
}

/// Read a postcard varint `u32` from `bytes[at..]`, as [`take_u64`].
#[inline]
pub fn take_u32(bytes: &[u8], at: usize) -> Option<(u32, usize)> {
    take(bytes, at, 32).map(|(value, at)| (value as u32, at))
}

/// A byte string at `bytes[at..]` as postcard reads one (a `usize`
/// varint length, then that many bytes) and the index after it, or `None`
/// where postcard fails (either cut short).
#[inline]
pub fn take_bytes(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let (len, at) = take_u64(bytes, at)?;
    let end = at.checked_add(usize::try_from(len).ok()?)?;
    Some((bytes.get(at..end)?, end))
}

/// The bytes postcard's varint of `value` takes: seven bits per byte, at
/// least one. The index of the highest bit set (of `value | 1`, so 0 for
/// both 0 and 1), over seven, plus one; `h / 7` is `h * 37 >> 8` for every
/// bit index `h` below 64 (`len_divides_by_seven` checks them all).
#[inline(always)]
pub const fn len(value: u64) -> usize {
    let high = 63 - (value | 1).leading_zeros() as usize;
    ((high * 37) >> 8) + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    #[test]
    fn len_divides_by_seven() {
        assert_eq!(len(0), 1);
        for bits in 1..=64u32 {
            let value = u64::MAX >> (64 - bits);
            assert_eq!(len(value), bits.div_ceil(7) as usize, "{bits} bits");
            let lowest = 1u64 << (bits - 1);
            assert_eq!(len(lowest), bits.div_ceil(7) as usize, "{bits} bits");
        }
    }

    /// Values at every width's edges.
    fn edges() -> Vec<u64> {
        let mut values = Vec::new();
        for bits in 0..64 {
            let bit = 1u64 << bits;
            values.extend([bit - 1, bit, bit + 1]);
        }
        values.push(u64::MAX);
        values
    }

    #[test]
    fn put_writes_postcards_bytes_and_take_reads_them() {
        for value in edges() {
            let expected = postcard::to_allocvec(&value).unwrap();
            let mut out = [0xee; 12];
            let end = put(&mut out, 1, value);
            assert_eq!(&out[1..end], &expected[..], "{value}");
            assert_eq!(end - 1, len(value), "{value}");
            assert_eq!(take_u64(&out, 1), Some((value, end)), "{value}");
            if let Ok(narrow) = u32::try_from(value) {
                assert_eq!(take_u32(&out, 1), Some((narrow, end)), "{value}");
            } else {
                assert_eq!(take_u32(&out, 1), None, "{value}");
            }
            // Cut anywhere: refused.
            for cut in 1..end {
                assert_eq!(take_u64(&out[..cut], 1), None, "{value} cut at {cut}");
            }
        }
    }

    #[test]
    fn byte_strings_are_read_as_postcard_reads_them() {
        let encoded = postcard::to_allocvec(&(1u8, b"bytes".as_slice())).unwrap();
        assert_eq!(
            take_bytes(&encoded, 1),
            Some((&b"bytes"[..], encoded.len()))
        );
        for cut in 1..encoded.len() {
            assert_eq!(take_bytes(&encoded[..cut], 1), None, "cut at {cut}");
        }
        // A length of u64::MAX, or one past the end: refused.
        let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 0];
        assert_eq!(take_bytes(&huge, 0), None);
        assert_eq!(take_bytes(&[2, 0], 0), None);
        assert_eq!(take_bytes(&[0], 0), Some((&[][..], 1)));
    }

    #[test]
    fn put_stops_where_the_buffer_ends() {
        let mut out = [0u8; 3];
        assert_eq!(put(&mut out, 1, u64::MAX), 3);
        assert_eq!(out, [0, 0xff, 0xff]);
        assert_eq!(put(&mut out, 3, 5), 3);
    }

    proptest! {
        /// Any bytes, at any offset: read as postcard reads them, or
        /// refused where postcard refuses them.
        #[test]
        fn any_bytes_read_as_postcard_reads_them(
            bytes in proptest::collection::vec(any::<u8>(), 0..12),
            high in proptest::collection::vec(0x80u8..=0xff, 0..11),
            last: u8,
        ) {
            // Long runs of continuation bytes are rare at random: add them.
            let mut crafted = high.clone();
            crafted.push(last);
            for input in [&bytes, &crafted] {
                let wide = postcard::take_from_bytes::<u64>(input)
                    .ok()
                    .map(|(v, rest)| (v, input.len() - rest.len()));
                prop_assert_eq!(take_u64(input, 0), wide);
                let narrow = postcard::take_from_bytes::<u32>(input)
                    .ok()
                    .map(|(v, rest)| (v, input.len() - rest.len()));
                prop_assert_eq!(take_u32(input, 0), narrow);
            }
        }
    }
}
