//! Byte fields of the protocol written as one byte string.
//!
//! Serde's default for `Vec<u8>` is a sequence, written and read one byte
//! at a time through the serializer. Postcard lays out a byte string and a
//! sequence of `u8` the same way (a length, then the bytes), so the wire
//! format does not change, but a byte string is one copy: on a Map put the
//! sequences cost about as much as the rest of the encoding.
//! Use as `#[serde(with = "crate::wire_bytes")]` on a `Vec<u8>`, or
//! `crate::wire_bytes::option` on an `Option<Vec<u8>>`.

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
