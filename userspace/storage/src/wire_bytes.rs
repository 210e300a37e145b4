//! Byte fields of the protocol written as one byte string.
//!
//! Serde's default for `Vec<u8>` is a sequence, written and read one byte
//! at a time through the serializer. Postcard lays out a byte string and a
//! sequence of `u8` the same way (a length, then the bytes), so the wire
//! format does not change, but a byte string is one copy: on a Map put the
//! sequences cost about as much as the rest of the encoding.
//! Use as `#[serde(with = "crate::wire_bytes")]` on a `Vec<u8>`,
//! `crate::wire_bytes::option` on an `Option<Vec<u8>>`,
//! `crate::wire_bytes::list` on a `Vec<Vec<u8>>` and
//! `crate::wire_bytes::updates` on a map's `Vec<(Vec<u8>, Option<Vec<u8>>)>`
//! (commit records use them too: the journal's bytes stay the same).

use alloc::vec::Vec;
use core::fmt;
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserializer, Serializer};

pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(bytes)
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    deserializer.deserialize_byte_buf(ByteBuf)
}

/// The same for `Option<Vec<u8>>`.
pub mod option {
    use super::*;
    use serde::{Deserialize, Serialize};

    /// `Some(bytes)` as a byte string.
    struct AsBytes<'a>(&'a [u8]);

    impl Serialize for AsBytes<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(self.0)
        }
    }

    /// A byte string read with [`ByteBuf`].
    struct Owned(Vec<u8>);

    impl<'de> Deserialize<'de> for Owned {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            super::deserialize(deserializer).map(Owned)
        }
    }

    pub fn serialize<S: Serializer>(
        bytes: &Option<Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        bytes.as_deref().map(AsBytes).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<Owned>::deserialize(deserializer)?.map(|owned| owned.0))
    }
}

/// The same for `Vec<Vec<u8>>`: a sequence of byte strings.
pub mod list {
    use super::*;
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Serialize};

    pub fn serialize<S: Serializer>(items: &[Vec<u8>], serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(items.len()))?;
        for item in items {
            seq.serialize_element(&Borrowed(item))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Vec<u8>>, D::Error> {
        Ok(Vec::<Owned>::deserialize(deserializer)?
            .into_iter()
            .map(|owned| owned.0)
            .collect())
    }

    /// A byte string to write.
    pub(crate) struct Borrowed<'a>(pub(crate) &'a [u8]);

    impl Serialize for Borrowed<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(self.0)
        }
    }

    /// A byte string read with [`ByteBuf`].
    pub(super) struct Owned(pub(super) Vec<u8>);

    impl<'de> Deserialize<'de> for Owned {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            super::deserialize(deserializer).map(Owned)
        }
    }
}

/// The same for a map's updates, `Vec<(Vec<u8>, Option<Vec<u8>>)>`: a
/// sequence of (key, value or deleted) pairs.
pub mod updates {
    use super::list::{Borrowed, Owned};
    use super::*;
    use serde::ser::SerializeSeq;
    use serde::Deserialize;

    type Update = (Vec<u8>, Option<Vec<u8>>);

    pub fn serialize<S: Serializer>(items: &[Update], serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(items.len()))?;
        for (key, value) in items {
            seq.serialize_element(&(Borrowed(key), value.as_deref().map(Borrowed)))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Update>, D::Error> {
        Ok(Vec::<(Owned, Option<Owned>)>::deserialize(deserializer)?
            .into_iter()
            .map(|(key, value)| (key.0, value.map(|v| v.0)))
            .collect())
    }
}

/// Encode `value` with postcard after the bytes already in `out` (what
/// `postcard::to_extend` does, the same bytes), writing each short piece
/// (a varint, a tag) a byte at a time: postcard's `Vec` flavour copies
/// every piece with `extend_from_slice`, a `memcpy` call for one or two
/// bytes. Longer pieces (byte strings) are still copied in one go. On an
/// error, `out` may hold part of the encoding after its earlier bytes.
pub(crate) fn encode_into<T: serde::Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> postcard::Result<()> {
    postcard::serialize_with_flavor(value, Pieces(out))
}

/// [`encode_into`] a fresh buffer of `capacity` bytes.
pub(crate) fn encode_with_capacity<T: serde::Serialize + ?Sized>(
    value: &T,
    capacity: usize,
) -> postcard::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(capacity);
    encode_into(value, &mut out)?;
    Ok(out)
}

/// The longest piece written a byte at a time: a `u64` varint.
const SHORT_PIECE: usize = 10;

/// Push postcard's varint of `value` onto `out`: the bytes postcard writes
/// for any unsigned integer (`u32`, `u64`, a length) of that value, low
/// seven bits first.
pub(crate) fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The longest byte string [`push_bytes`] pushes a byte at a time: a
/// push costs about seven instructions a byte, a `memcpy` call about
/// twenty plus one per byte out of alignment.
const SHORT_BYTES: usize = 3;

/// Push a byte string as postcard writes one: its length, then its bytes
/// (a very short one a byte at a time).
pub(crate) fn push_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    push_varint(out, bytes.len() as u64);
    if bytes.len() <= SHORT_BYTES {
        for &byte in bytes {
            out.push(byte);
        }
    } else {
        out.extend_from_slice(bytes);
    }
}

/// A postcard flavour appending to a `Vec`, short pieces byte by byte.
struct Pieces<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Pieces<'_> {
    type Output = ();

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if data.len() <= SHORT_PIECE {
            for &byte in data {
                self.0.push(byte);
            }
        } else {
            self.0.extend_from_slice(data);
        }
        Ok(())
    }

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Accepts a byte string in any of its forms, and a sequence of bytes
/// (what a format without byte strings writes).
struct ByteBuf;

impl<'de> Visitor<'de> for ByteBuf {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bytes")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(byte) = seq.next_element()? {
            bytes.push(byte);
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct AsSeq {
        key: alloc::vec::Vec<u8>,
        value: Option<alloc::vec::Vec<u8>>,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct AsBytes {
        #[serde(with = "crate::wire_bytes")]
        key: alloc::vec::Vec<u8>,
        #[serde(with = "crate::wire_bytes::option")]
        value: Option<alloc::vec::Vec<u8>>,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct ListsAsSeq {
        list: alloc::vec::Vec<alloc::vec::Vec<u8>>,
        updates: alloc::vec::Vec<(alloc::vec::Vec<u8>, Option<alloc::vec::Vec<u8>>)>,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct ListsAsBytes {
        #[serde(with = "crate::wire_bytes::list")]
        list: alloc::vec::Vec<alloc::vec::Vec<u8>>,
        #[serde(with = "crate::wire_bytes::updates")]
        updates: alloc::vec::Vec<(alloc::vec::Vec<u8>, Option<alloc::vec::Vec<u8>>)>,
    }

    #[test]
    fn lists_of_byte_strings_keep_the_wire_format_of_sequences() {
        use alloc::vec;
        use alloc::vec::Vec;
        for len in [0usize, 1, 127, 128, 300] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let seq = ListsAsSeq {
                list: vec![bytes.clone(), vec![], bytes.clone()],
                updates: vec![
                    (bytes.clone(), Some(vec![7; len])),
                    (vec![1, 2], None),
                    (vec![], Some(bytes.clone())),
                ],
            };
            let as_bytes = ListsAsBytes {
                list: seq.list.clone(),
                updates: seq.updates.clone(),
            };
            let wire = postcard::to_allocvec(&seq).unwrap();
            assert_eq!(postcard::to_allocvec(&as_bytes).unwrap(), wire);
            assert_eq!(
                postcard::from_bytes::<ListsAsBytes>(&wire).unwrap(),
                as_bytes
            );
            let empty = ListsAsSeq {
                list: vec![],
                updates: vec![],
            };
            let empty_bytes = ListsAsBytes {
                list: vec![],
                updates: vec![],
            };
            assert_eq!(
                postcard::to_allocvec(&empty_bytes).unwrap(),
                postcard::to_allocvec(&empty).unwrap()
            );
        }
    }

    /// The piecewise flavour writes exactly postcard's bytes, after what
    /// the buffer held, for short and long pieces and every varint width.
    #[test]
    fn piecewise_encoding_is_postcards() {
        use alloc::vec;
        use alloc::vec::Vec;
        for len in [0usize, 1, 9, 10, 11, 127, 128, 300] {
            for number in [0u64, 1, 127, 128, 16_383, 16_384, 1 << 40, u64::MAX] {
                let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let value = (
                    number,
                    AsBytes {
                        key: bytes.clone(),
                        value: Some(bytes),
                    },
                    -7i32,
                );
                let mut out = vec![0xee; 3];
                let expected = postcard::to_extend(&value, out.clone()).unwrap();
                super::encode_into(&value, &mut out).unwrap();
                assert_eq!(out, expected);
                assert_eq!(
                    super::encode_with_capacity(&value, 1).unwrap(),
                    postcard::to_allocvec(&value).unwrap()
                );
            }
        }
    }

    /// Varints and byte strings pushed by hand are postcard's bytes, for
    /// every varint width and short and long strings.
    #[test]
    fn pushed_varints_and_byte_strings_are_postcards() {
        use alloc::vec;
        use alloc::vec::Vec;
        for number in [
            0u64,
            1,
            127,
            128,
            255,
            16_383,
            16_384,
            1 << 35,
            (1 << 56) - 1,
            1 << 56,
            (1 << 63) - 1,
            1 << 63,
            u64::MAX,
        ] {
            let mut out = vec![0xee];
            super::push_varint(&mut out, number);
            assert_eq!(out, postcard::to_extend(&number, vec![0xee]).unwrap());
            if let Ok(small) = u32::try_from(number) {
                assert_eq!(out, postcard::to_extend(&small, vec![0xee]).unwrap());
            }
        }
        for len in [0usize, 1, 10, 11, 127, 128, 300] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut out = vec![0xee];
            super::push_bytes(&mut out, &bytes);
            let expected = postcard::to_extend(&super::list::Borrowed(&bytes), vec![0xee]);
            assert_eq!(out, expected.unwrap());
        }
    }

    #[test]
    fn byte_strings_keep_the_wire_format_of_sequences() {
        for len in [0usize, 1, 127, 128, 300] {
            for value in [None, Some(alloc::vec![9u8; len])] {
                let key = (0..len).map(|i| i as u8).collect::<alloc::vec::Vec<_>>();
                let seq = AsSeq {
                    key: key.clone(),
                    value: value.clone(),
                };
                let bytes = AsBytes { key, value };
                let wire = postcard::to_allocvec(&seq).unwrap();
                assert_eq!(postcard::to_allocvec(&bytes).unwrap(), wire);
                assert_eq!(postcard::from_bytes::<AsBytes>(&wire).unwrap(), bytes);
                let back: AsSeq =
                    postcard::from_bytes(&postcard::to_allocvec(&bytes).unwrap()).unwrap();
                assert_eq!(back, seq);
            }
        }
    }
}
