//! Decoding that lets a schema grow within a major version.
//!
//! postcard writes a struct as its fields in order, with no names and no
//! count, so on its own it cannot tell a payload written by an older minor
//! version (fewer fields) from a truncated one. [`from_bytes`] decodes
//! postcard with two additions, which make the minor-version rules of
//! `SchemaVersion` hold:
//!
//! * **Added fields take their defaults.** When the input ends before a
//!   struct's next field, that field and every later one are reported as
//!   absent, and serde fills each that is marked `#[serde(default)]` with
//!   its default. A field without `#[serde(default)]` is still required, so
//!   a truncated payload still fails. A minor version may therefore add
//!   `#[serde(default)]` fields at the end of the struct that is encoded
//!   *last* in a payload (the payload's own struct, or the last field's
//!   struct, and so on inwards). A struct encoded in the middle (an element
//!   of a list, a field followed by others) cannot grow that way: that is a
//!   major version, or a new action. The committed fixtures of each
//!   protocol (`tests/fixtures/`) fail when this rule is broken.
//! * **An unknown enum variant is named.** A variant index this version
//!   does not know fails as [`DecodeFailure::UnknownVariant`] with the
//!   index, not as a generic failure, so a receiver can answer "unknown
//!   action", and a client can turn a newer peer's unknown error into its
//!   own error type's `Unrecognized` variant (see [`Answer`]).

use core::cell::Cell;
use core::fmt;
use postcard::de_flavors::Flavor;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, MapAccess, SeqAccess, VariantAccess,
    Visitor,
};

/// Why [`from_bytes`] could not decode its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeFailure {
    /// An enum variant index this version does not know. `end` is the byte
    /// offset just past its tag.
    UnknownVariant { variant: u32, end: usize },
    /// Anything else: truncated input, trailing bytes, an invalid value.
    Malformed,
}

/// Decode all of `bytes` as `T`, letting added trailing fields take their
/// defaults and naming unknown variants (see the module docs). Trailing
/// bytes are rejected.
pub fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeFailure> {
    // Bytes of this very version decode with plain postcard, at its cost:
    // the tolerant decoder only differs where plain postcard fails (input
    // that ends early, or an unknown variant), so it runs only then.
    if let Ok((value, [])) = postcard::take_from_bytes::<T>(bytes) {
        return Ok(value);
    }
    tolerant_from_bytes(bytes)
}

/// [`from_bytes`] without the plain-postcard attempt first.
fn tolerant_from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeFailure> {
    let state = State {
        total: bytes.len(),
        remaining: Cell::new(bytes.len()),
        unknown: Cell::new(None),
    };
    let mut inner = postcard::Deserializer::from_flavor(Tracked {
        rest: bytes,
        state: &state,
    });
    let decoded = T::deserialize(Tolerant {
        inner: &mut inner,
        state: &state,
        context: Context::Plain,
    });
    match (decoded, inner.finalize()) {
        (Ok(value), Ok([])) => Ok(value),
        (Ok(_), _) => Err(DecodeFailure::Malformed),
        (Err(_), _) => Err(match state.unknown.get() {
            Some((variant, end)) => DecodeFailure::UnknownVariant { variant, end },
            None => DecodeFailure::Malformed,
        }),
    }
}

/// An error type a newer peer may extend with variants this version does
/// not know.
pub trait ExtensibleError {
    /// The value standing for the error variant with index `variant` that
    /// this version cannot decode.
    fn unrecognized(variant: u32) -> Self;
}

/// A response payload whose error side may hold an [`ExtensibleError`]
/// variant this version does not know. Decoded with
/// [`MessagePayload::decode_answer`](crate::MessagePayload::decode_answer),
/// such an answer becomes [`Answer::unrecognized_error`] instead of a
/// decode failure.
pub trait Answer: DeserializeOwned {
    /// The index of the variant of the answer's outer enum that carries the
    /// error (`Err` is 1 in a `Result`).
    const ERROR_VARIANT: u32;

    /// The answer for an error whose variant `variant` (its index in the
    /// error enum) this version does not know.
    fn unrecognized_error(variant: u32) -> Self;
}

impl<T: DeserializeOwned, E: DeserializeOwned + ExtensibleError> Answer for Result<T, E> {
    const ERROR_VARIANT: u32 = 1;

    fn unrecognized_error(variant: u32) -> Self {
        Err(E::unrecognized(variant))
    }
}

/// Decode an [`Answer`]: as [`from_bytes`], except that an unknown variant
/// anywhere inside the error side yields [`Answer::unrecognized_error`]
/// with the index of the error's own variant.
pub fn answer_from_bytes<A: Answer>(bytes: &[u8]) -> Result<A, DecodeFailure> {
    let failure = match from_bytes::<A>(bytes) {
        Err(failure @ DecodeFailure::UnknownVariant { end, .. }) => (failure, end),
        other => return other,
    };
    let (failure, end) = failure;
    let Some((side, after_side)) = take_varint(bytes) else {
        return Err(failure);
    };
    let error_start = bytes.len() - after_side.len();
    match take_varint(after_side) {
        Some((error_variant, _)) if side == A::ERROR_VARIANT && end > error_start => {
            Ok(A::unrecognized_error(error_variant))
        }
        _ => Err(failure),
    }
}

/// A postcard varint-encoded `u32` at the start of `bytes`, and the rest.
fn take_varint(bytes: &[u8]) -> Option<(u32, &[u8])> {
    postcard::take_from_bytes::<u32>(bytes).ok()
}

/// What the decoder learns while it reads.
struct State {
    total: usize,
    remaining: Cell<usize>,
    /// The first unknown variant met: its index and the offset past its tag.
    unknown: Cell<Option<(u32, usize)>>,
}

impl State {
    fn at_end(&self) -> bool {
        self.remaining.get() == 0
    }

    fn note_unknown(&self, variant: u32) {
        if self.unknown.get().is_none() {
            let end = self.total - self.remaining.get();
            self.unknown.set(Some((variant, end)));
        }
    }
}

/// A slice flavor that keeps [`State::remaining`] up to date.
struct Tracked<'s, 'de> {
    rest: &'de [u8],
    state: &'s State,
}

impl<'s: 'de, 'de> Flavor<'de> for Tracked<'s, 'de> {
    type Remainder = &'de [u8];
    type Source = &'de [u8];

    fn pop(&mut self) -> postcard::Result<u8> {
        let (&first, rest) = self
            .rest
            .split_first()
            .ok_or(postcard::Error::DeserializeUnexpectedEnd)?;
        self.rest = rest;
        self.state.remaining.set(rest.len());
        Ok(first)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.rest.len())
    }

    fn try_take_n(&mut self, ct: usize) -> postcard::Result<&'de [u8]> {
        if ct > self.rest.len() {
            return Err(postcard::Error::DeserializeUnexpectedEnd);
        }
        let (taken, rest) = self.rest.split_at(ct);
        self.rest = rest;
        self.state.remaining.set(rest.len());
        Ok(taken)
    }

    fn finalize(self) -> postcard::Result<&'de [u8]> {
        Ok(self.rest)
    }
}

/// Where a wrapped visitor is being driven from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    Plain,
    /// The fields of a struct (or struct variant): they may run out.
    Struct,
    /// An enum's variant tag.
    Identifier,
}

/// A deserializer that forwards to `inner` and wraps every visitor, so
/// that structs and variant tags anywhere in the value are seen.
struct Tolerant<'s, D> {
    inner: D,
    state: &'s State,
    context: Context,
}

struct Wrap<'s, V> {
    inner: V,
    state: &'s State,
    context: Context,
}

impl<'s, V> Wrap<'s, V> {
    fn new(inner: V, state: &'s State, context: Context) -> Self {
        Wrap {
            inner,
            state,
            context,
        }
    }
}

macro_rules! forward_deserialize {
    ($($method:ident),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.inner.$method(Wrap::new(visitor, self.state, Context::Plain))
        }
    )*};
}

impl<'de, 's, D: de::Deserializer<'de>> de::Deserializer<'de> for Tolerant<'s, D> {
    type Error = D::Error;

    forward_deserialize!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_ignored_any,
    );

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let context = if self.context == Context::Identifier {
            Context::Identifier
        } else {
            Context::Plain
        };
        self.inner
            .deserialize_identifier(Wrap::new(visitor, self.state, context))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner
            .deserialize_unit_struct(name, Wrap::new(visitor, self.state, Context::Plain))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner
            .deserialize_newtype_struct(name, Wrap::new(visitor, self.state, Context::Plain))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner
            .deserialize_tuple(len, Wrap::new(visitor, self.state, Context::Plain))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_tuple_struct(
            name,
            len,
            Wrap::new(visitor, self.state, Context::Plain),
        )
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_struct(
            name,
            fields,
            Wrap::new(visitor, self.state, Context::Struct),
        )
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_enum(
            name,
            variants,
            Wrap::new(visitor, self.state, Context::Plain),
        )
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// A seed whose deserializer is wrapped.
struct WrapSeed<'s, S> {
    inner: S,
    state: &'s State,
    context: Context,
}

impl<'de, 's, S: DeserializeSeed<'de>> DeserializeSeed<'de> for WrapSeed<'s, S> {
    type Value = S::Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(Tolerant {
            inner: d,
            state: self.state,
            context: self.context,
        })
    }
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty)),* $(,)?) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, 's, V: Visitor<'de>> Visitor<'de> for Wrap<'s, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit!(
        visit_bool(bool),
        visit_i8(i8),
        visit_i16(i16),
        visit_i32(i32),
        visit_i64(i64),
        visit_i128(i128),
        visit_u8(u8),
        visit_u16(u16),
        visit_u64(u64),
        visit_u128(u128),
        visit_f32(f32),
        visit_f64(f64),
        visit_char(char),
        visit_str(&str),
        visit_borrowed_str(&'de str),
        visit_string(alloc::string::String),
        visit_bytes(&[u8]),
        visit_borrowed_bytes(&'de [u8]),
        visit_byte_buf(alloc::vec::Vec<u8>),
    );

    fn visit_u32<E: de::Error>(self, v: u32) -> Result<V::Value, E> {
        let result = self.inner.visit_u32(v);
        if result.is_err() && self.context == Context::Identifier {
            self.state.note_unknown(v);
        }
        result
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(Tolerant {
            inner: d,
            state: self.state,
            context: Context::Plain,
        })
    }

    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(Tolerant {
            inner: d,
            state: self.state,
            context: Context::Plain,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(WrapSeq {
            inner: seq,
            state: self.state,
            fields_may_run_out: self.context == Context::Struct,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(WrapMap {
            inner: map,
            state: self.state,
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(WrapEnum {
            inner: data,
            state: self.state,
        })
    }
}

struct WrapSeq<'s, A> {
    inner: A,
    state: &'s State,
    /// A struct's fields: at the end of the input the rest are absent
    /// (older writer). A length-prefixed sequence never ends early.
    fields_may_run_out: bool,
}

impl<'de, 's, A: SeqAccess<'de>> SeqAccess<'de> for WrapSeq<'s, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        if self.fields_may_run_out && self.state.at_end() {
            return Ok(None);
        }
        self.inner.next_element_seed(WrapSeed {
            inner: seed,
            state: self.state,
            context: Context::Plain,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

struct WrapMap<'s, A> {
    inner: A,
    state: &'s State,
}

impl<'de, 's, A: MapAccess<'de>> MapAccess<'de> for WrapMap<'s, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.inner.next_key_seed(WrapSeed {
            inner: seed,
            state: self.state,
            context: Context::Plain,
        })
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.next_value_seed(WrapSeed {
            inner: seed,
            state: self.state,
            context: Context::Plain,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

struct WrapEnum<'s, A> {
    inner: A,
    state: &'s State,
}

impl<'de, 's, A: EnumAccess<'de>> EnumAccess<'de> for WrapEnum<'s, A> {
    type Error = A::Error;
    type Variant = WrapVariant<'s, A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        let (tag, variant) = self.inner.variant_seed(WrapSeed {
            inner: seed,
            state: self.state,
            context: Context::Identifier,
        })?;
        Ok((
            tag,
            WrapVariant {
                inner: variant,
                state: self.state,
            },
        ))
    }
}

struct WrapVariant<'s, A> {
    inner: A,
    state: &'s State,
}

impl<'de, 's, A: VariantAccess<'de>> VariantAccess<'de> for WrapVariant<'s, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.newtype_variant_seed(WrapSeed {
            inner: seed,
            state: self.state,
            context: Context::Plain,
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.inner
            .tuple_variant(len, Wrap::new(visitor, self.state, Context::Plain))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner
            .struct_variant(fields, Wrap::new(visitor, self.state, Context::Struct))
    }
}

#[cfg(test)]
mod tests;
