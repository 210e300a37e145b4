//! Message envelopes: the unit of IPC.
//!
//! The kernel treats an encoded envelope as opaque bytes plus moved
//! capabilities; it never decodes one. Sender identity is stamped by the
//! kernel beside the bytes (the receiving runtime fills in
//! [`MessageEnvelope::source`]), so a task cannot claim to be another.
//! Payloads are postcard-encoded, bounded in size, and decoded only after
//! the receiver has checked the schema version.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::de::{self, DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::evolve::{self, Answer, DecodeFailure};
use crate::ids::{MessageId, ServiceId, TaskId};
use crate::schema::{SchemaMismatchError, SchemaVersion, VersionPolicy};

/// The largest payload a message may carry.
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024;
/// The longest action name.
pub const MAX_ACTION_LEN: usize = 64;
/// The largest encoded envelope the kernel accepts on a channel: a full
/// payload plus room for the header fields.
pub const MAX_MESSAGE_BYTES: usize = MAX_PAYLOAD_BYTES + 256;

/// Why an envelope or payload could not be built, encoded or decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnvelopeError {
    PayloadTooLarge {
        len: u32,
        max: u32,
    },
    ActionTooLong {
        len: u32,
        max: u32,
    },
    MessageTooLarge {
        len: u32,
        max: u32,
    },
    /// The value could not be serialized.
    EncodeFailed,
    /// The bytes are not a valid encoding of the expected type.
    Malformed,
    /// The schema version is outside what the receiver accepts.
    SchemaMismatch(SchemaMismatchError),
    /// The bytes name an enum variant (an action, a reply or an error)
    /// that this version does not know: the sender speaks a newer minor
    /// version. `variant` is the unknown index.
    UnknownVariant {
        variant: u32,
    },
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvelopeError::PayloadTooLarge { len, max } => {
                write!(f, "payload of {len} bytes exceeds the {max}-byte limit")
            }
            EnvelopeError::ActionTooLong { len, max } => {
                write!(f, "action name of {len} bytes exceeds the {max}-byte limit")
            }
            EnvelopeError::MessageTooLarge { len, max } => {
                write!(f, "message of {len} bytes exceeds the {max}-byte limit")
            }
            EnvelopeError::EncodeFailed => f.write_str("value could not be encoded"),
            EnvelopeError::Malformed => f.write_str("malformed message bytes"),
            EnvelopeError::SchemaMismatch(e) => write!(f, "{e}"),
            EnvelopeError::UnknownVariant { variant } => {
                write!(f, "unknown variant {variant} (sent by a newer version)")
            }
        }
    }
}

impl core::error::Error for EnvelopeError {}

impl EnvelopeError {
    /// Whether the bytes named something this version does not know (a
    /// newer peer's action, request or error), as opposed to being broken.
    pub const fn is_unknown_variant(&self) -> bool {
        matches!(self, EnvelopeError::UnknownVariant { .. })
    }
}

/// The most bytes an envelope's fields take encoded, apart from the
/// action's and the payload's own bytes: postcard writes each of the eight
/// integers (four ids, two version numbers, two lengths) as a varint of at
/// most 10 bytes, plus one tag byte for each of the two options.
const MAX_HEADER_BYTES: usize = 8 * 10 + 2;

use crate::varint::len as varint_len;

/// The action's length takes one varint byte: `check_bounds` holds it
/// to `MAX_ACTION_LEN`, below 128.
const ACTION_LEN_BYTES: usize = 1;
const _: () = assert!(varint_len(MAX_ACTION_LEN as u64) == ACTION_LEN_BYTES);

/// An envelope within `check_bounds` always fits the message limit, so
/// the hand-written encoder's order of checks (bounds, room, then length)
/// gives what postcard's gave.
const _: () = assert!(MAX_HEADER_BYTES + MAX_ACTION_LEN + MAX_PAYLOAD_BYTES <= MAX_MESSAGE_BYTES);

fn check_message_len(len: usize) -> Result<(), EnvelopeError> {
    if len > MAX_MESSAGE_BYTES {
        let (len, max) = too_large(len, MAX_MESSAGE_BYTES);
        return Err(EnvelopeError::MessageTooLarge { len, max });
    }
    Ok(())
}

fn too_large(len: usize, max: usize) -> (u32, u32) {
    (u32::try_from(len).unwrap_or(u32::MAX), max as u32)
}

impl From<DecodeFailure> for EnvelopeError {
    fn from(failure: DecodeFailure) -> Self {
        match failure {
            DecodeFailure::UnknownVariant { variant, .. } => {
                EnvelopeError::UnknownVariant { variant }
            }
            DecodeFailure::Malformed => EnvelopeError::Malformed,
        }
    }
}

/// The buffer [`MessagePayload::new`] starts with: room for the small
/// requests and replies that make up most traffic.
pub const PAYLOAD_START_CAPACITY: usize = 128;

/// The largest payload block [`MessageEnvelope::decode_reusing`] keeps
/// for the payload it decodes (a larger one is freed).
pub const REUSED_PAYLOAD_CAPACITY: usize = 4 * PAYLOAD_START_CAPACITY;

/// A postcard-encoded payload of at most [`MAX_PAYLOAD_BYTES`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct MessagePayload {
    bytes: Vec<u8>,
}

impl MessagePayload {
    /// Encode `value` with postcard, into a buffer that starts at
    /// [`PAYLOAD_START_CAPACITY`] bytes, so that a typical request or reply
    /// is written with one allocation and no regrowth.
    pub fn new<T: Serialize + ?Sized>(value: &T) -> Result<Self, EnvelopeError> {
        let buffer = Vec::with_capacity(PAYLOAD_START_CAPACITY);
        let bytes = postcard::to_extend(value, buffer).map_err(|_| EnvelopeError::EncodeFailed)?;
        Self::from_bytes(bytes)
    }

    /// An empty payload (for actions that carry no data).
    pub fn empty() -> Self {
        MessagePayload { bytes: Vec::new() }
    }

    /// Wrap already-encoded bytes, checking the size bound.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, EnvelopeError> {
        if bytes.len() > MAX_PAYLOAD_BYTES {
            let (len, max) = too_large(bytes.len(), MAX_PAYLOAD_BYTES);
            return Err(EnvelopeError::PayloadTooLarge { len, max });
        }
        Ok(MessagePayload { bytes })
    }

    /// Decode the payload as `T`. Trailing bytes are rejected, so a payload
    /// of another type is rarely mistaken for this one. A payload written
    /// by an older minor version decodes with its added trailing fields at
    /// their defaults; a variant this version does not know is
    /// [`EnvelopeError::UnknownVariant`] (see [`evolve`](crate::evolve)).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, EnvelopeError> {
        evolve::from_bytes(&self.bytes).map_err(EnvelopeError::from)
    }

    /// Decode a response payload: as [`MessagePayload::decode`], except
    /// that an error variant this version does not know becomes the
    /// answer's `Unrecognized` error instead of a failure.
    pub fn decode_answer<A: Answer>(&self) -> Result<A, EnvelopeError> {
        evolve::answer_from_bytes(&self.bytes).map_err(EnvelopeError::from)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The encoded bytes, without a copy.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl fmt::Debug for MessagePayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessagePayload({} bytes)", self.bytes.len())
    }
}

impl Serialize for MessagePayload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.bytes)
    }
}

impl<'de> Deserialize<'de> for MessagePayload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BoundedBytes;

        impl<'de> Visitor<'de> for BoundedBytes {
            type Value = MessagePayload;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "at most {MAX_PAYLOAD_BYTES} payload bytes")
            }

            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                if v.len() > MAX_PAYLOAD_BYTES {
                    return Err(E::invalid_length(v.len(), &self));
                }
                Ok(MessagePayload { bytes: v.to_vec() })
            }

            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
                MessagePayload::from_bytes(v).map_err(|_| E::custom("payload too large"))
            }
        }

        deserializer.deserialize_bytes(BoundedBytes)
    }
}

/// A message: routing and versioning header plus a typed payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageEnvelope {
    pub id: MessageId,
    pub destination: ServiceId,
    /// The sending task, as stamped by the kernel on delivery. Whatever the
    /// sender puts here is overwritten by the receiving side.
    pub source: Option<TaskId>,
    pub action: String,
    pub schema_version: SchemaVersion,
    /// For a response: the id of the request it answers.
    pub correlation_id: Option<MessageId>,
    pub payload: MessagePayload,
}

impl MessageEnvelope {
    /// A new message with a fresh id. Bounds on the action name are checked
    /// when the envelope is encoded, so building one cannot fail.
    pub fn new(
        destination: ServiceId,
        action: impl Into<String>,
        schema_version: SchemaVersion,
        payload: MessagePayload,
    ) -> Self {
        MessageEnvelope {
            id: MessageId::new(),
            destination,
            source: None,
            action: action.into(),
            schema_version,
            correlation_id: None,
            payload,
        }
    }

    /// Mark this message as the response to `request`.
    pub fn with_correlation(mut self, request: MessageId) -> Self {
        self.correlation_id = Some(request);
        self
    }

    /// A response to `request`: same service, correlated to its id.
    pub fn reply_to(
        request: &MessageEnvelope,
        action: impl Into<String>,
        payload: MessagePayload,
    ) -> Self {
        MessageEnvelope::new(request.destination, action, request.schema_version, payload)
            .with_correlation(request.id)
    }

    fn check_bounds(&self) -> Result<(), EnvelopeError> {
        if self.action.len() > MAX_ACTION_LEN {
            let (len, max) = too_large(self.action.len(), MAX_ACTION_LEN);
            return Err(EnvelopeError::ActionTooLong { len, max });
        }
        if self.payload.len() > MAX_PAYLOAD_BYTES {
            let (len, max) = too_large(self.payload.len(), MAX_PAYLOAD_BYTES);
            return Err(EnvelopeError::PayloadTooLarge { len, max });
        }
        Ok(())
    }

    /// Encode for the wire, into one allocation of exactly the encoded
    /// length (see [`encode_into`](Self::encode_into)).
    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        let mut bytes = alloc::vec![0; self.encoded_len()?];
        self.encode_into(&mut bytes)?;
        Ok(bytes)
    }

    /// Encode for the wire into `out`, with [`encode`](Self::encode)'s
    /// checks, allocating nothing; returns the encoded bytes. An `out`
    /// too short for the envelope is `EncodeFailed`.
    ///
    /// Written by hand, field by field, in postcard's layout (the bytes
    /// of the derived `Serialize` through postcard: the tests compare
    /// them for any envelope): postcard's serializer costs a call per
    /// field and per varint.
    pub fn encode_into<'o>(&self, out: &'o mut [u8]) -> Result<&'o mut [u8], EnvelopeError> {
        self.check_bounds()?;
        let action = self.action.as_bytes();
        let payload = self.payload.as_bytes();
        // The worst case fits (the usual case: a buffer of the request
        // limit), or the exact length is measured; either way every write
        // below stays within `out`.
        if out.len() < MAX_HEADER_BYTES + action.len() + payload.len()
            && out.len() < self.encoded_len()?
        {
            return Err(EnvelopeError::EncodeFailed);
        }
        let put = crate::varint::put;
        let option = |out: &mut [u8], at: usize, value: Option<u64>| match value {
            None => put(out, at, 0),
            Some(value) => {
                let at = put(out, at, 1);
                put(out, at, value)
            }
        };
        let mut at = put(out, 0, self.id.as_raw());
        at = put(out, at, self.destination.as_raw());
        at = option(out, at, self.source.map(|t| t.as_raw()));
        at = put_bytes(out, at, action);
        at = put(out, at, u64::from(self.schema_version.major));
        at = put(out, at, u64::from(self.schema_version.minor));
        at = option(out, at, self.correlation_id.map(|m| m.as_raw()));
        at = put_bytes(out, at, payload);
        check_message_len(at)?;
        Ok(&mut out[..at])
    }

    /// The length [`encode`](Self::encode) would produce, with its checks,
    /// without encoding: for a carrier that moves the envelope itself (the
    /// simulator) yet must apply the same size limits as the wire.
    ///
    /// Computed field by field as postcard lays the envelope out (each
    /// integer a varint, an option a tag byte and its value, the action
    /// and the payload their length and bytes), which costs a few dozen
    /// instructions where a counting serializer costs a few hundred. The
    /// tests hold it equal to `encode().len()`.
    #[inline]
    pub fn encoded_len(&self) -> Result<usize, EnvelopeError> {
        self.check_bounds()?;
        let option = |value: Option<u64>| value.map_or(1, |v| 1 + varint_len(v));
        let len = varint_len(self.id.as_raw())
            + varint_len(self.destination.as_raw())
            + option(self.source.map(|t| t.as_raw()))
            + ACTION_LEN_BYTES
            + self.action.len()
            + varint_len(u64::from(self.schema_version.major))
            + varint_len(u64::from(self.schema_version.minor))
            + option(self.correlation_id.map(|m| m.as_raw()))
            + varint_len(self.payload.len() as u64)
            + self.payload.len();
        check_message_len(len)?;
        Ok(len)
    }

    /// Decode from the wire, rejecting oversized or malformed input.
    ///
    /// Read by hand ([`EnvelopeRef::read`]), with exactly the outcome of
    /// the derived `Deserialize` through [`evolve::from_bytes`] and the
    /// bounds check (the tests compare them on any bytes): an envelope
    /// has no field a minor version may add, so the tolerant decoder
    /// reads what plain postcard reads.
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let view = EnvelopeRef::checked(bytes)?;
        Ok(MessageEnvelope {
            id: view.id,
            destination: view.destination,
            source: view.source,
            action: String::from(view.action),
            schema_version: view.schema_version,
            correlation_id: view.correlation_id,
            payload: MessagePayload {
                bytes: view.payload.to_vec(),
            },
        })
    }

    /// [`decode`](Self::decode) into the allocations of `spare`, an
    /// envelope its owner is done with (a server's sent answer): its
    /// action's and payload's blocks take the decoded action and payload
    /// where they fit, so a receive right after a send allocates nothing.
    /// The same outcome as `decode` for any bytes; a payload block larger
    /// than [`REUSED_PAYLOAD_CAPACITY`] is not kept (the receiver may hold
    /// on to the payload it decodes).
    pub fn decode_reusing(bytes: &[u8], spare: MessageEnvelope) -> Result<Self, EnvelopeError> {
        let view = EnvelopeRef::checked(bytes)?;
        let MessageEnvelope {
            mut action,
            payload: MessagePayload { bytes: mut payload },
            ..
        } = spare;
        action.clear();
        action.push_str(view.action);
        if payload.capacity() > REUSED_PAYLOAD_CAPACITY.max(view.payload.len()) {
            payload = Vec::new();
        }
        payload.clear();
        payload.extend_from_slice(view.payload);
        Ok(MessageEnvelope {
            id: view.id,
            destination: view.destination,
            source: view.source,
            action,
            schema_version: view.schema_version,
            correlation_id: view.correlation_id,
            payload: MessagePayload { bytes: payload },
        })
    }

    /// Check the schema version against `policy` for `service`, and only then
    /// decode the payload. This is how services read requests.
    pub fn decode_payload<T: DeserializeOwned>(
        &self,
        policy: &VersionPolicy,
        service: ServiceId,
    ) -> Result<T, EnvelopeError> {
        policy
            .check(service, self.schema_version)
            .map_err(EnvelopeError::SchemaMismatch)?;
        self.payload.decode()
    }

    /// Check the schema version, then decode the payload as a response
    /// (see [`MessagePayload::decode_answer`]). This is how clients read
    /// answers.
    pub fn decode_answer<A: Answer>(
        &self,
        policy: &VersionPolicy,
        service: ServiceId,
    ) -> Result<A, EnvelopeError> {
        answer_of(
            policy,
            service,
            self.schema_version,
            self.payload.as_bytes(),
        )
    }

    /// This envelope read in place (see [`EnvelopeRef`]).
    pub fn borrowed(&self) -> EnvelopeRef<'_> {
        EnvelopeRef {
            id: self.id,
            destination: self.destination,
            source: self.source,
            action: &self.action,
            schema_version: self.schema_version,
            correlation_id: self.correlation_id,
            payload: self.payload.as_bytes(),
        }
    }
}

/// An answer's `payload` of `schema_version`, checked against `policy` for
/// `service` and decoded as [`MessagePayload::decode_answer`] decodes it.
fn answer_of<A: Answer>(
    policy: &VersionPolicy,
    service: ServiceId,
    schema_version: SchemaVersion,
    payload: &[u8],
) -> Result<A, EnvelopeError> {
    policy
        .check(service, schema_version)
        .map_err(EnvelopeError::SchemaMismatch)?;
    evolve::answer_from_bytes(payload).map_err(EnvelopeError::from)
}

/// Write `bytes` at `out[at..]` as postcard writes a byte string (its
/// length as a varint, then the bytes); returns the index after them.
/// The caller has made sure they fit.
#[inline]
fn put_bytes(out: &mut [u8], at: usize, bytes: &[u8]) -> usize {
    let at = crate::varint::put(out, at, bytes.len() as u64);
    let end = at + bytes.len();
    out[at..end].copy_from_slice(bytes);
    end
}

/// A request envelope written by its sender straight into a buffer it
/// keeps: the bytes of [`MessageEnvelope::encode`] of an envelope with no
/// `source` and no `correlation_id` (a request's), made only by
/// [`EnvelopeHead::write`], which guarantees that. For a sender that
/// writes its payload by hand and sends many small requests alike: no
/// `MessageEnvelope`, payload `Vec` or second encode per message (see
/// [`KernelApi::call_object_encoded`](crate::KernelApi::call_object_encoded)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedEnvelope {
    bytes: Vec<u8>,
    id: MessageId,
    /// Where the payload starts in `bytes`.
    payload_at: usize,
}

impl Default for EncodedEnvelope {
    fn default() -> Self {
        Self::new()
    }
}

impl EncodedEnvelope {
    /// No message yet (an empty buffer, which [`EnvelopeHead::write`]
    /// fills).
    pub fn new() -> Self {
        EncodedEnvelope {
            bytes: Vec::new(),
            id: MessageId::from_raw(0),
            payload_at: 0,
        }
    }

    /// The encoded envelope (empty before the first
    /// [`EnvelopeHead::write`]).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The message's id.
    pub fn id(&self) -> MessageId {
        self.id
    }

    /// The message again, under the id `id`, with a payload of
    /// `payload_len` bytes that `payload` rewrites in place (it is given
    /// the current payload's bytes): the bytes
    /// [`EnvelopeHead::write`] would give for `id` and that payload,
    /// written without touching the fixed fields or the payload's
    /// length. `false`, having changed nothing, unless there is a message
    /// whose payload is `payload_len` bytes long and whose id's varint is
    /// as long as `id`'s (then `write` it): a sender whose requests are
    /// alike (a client's gets of keys of one length) writes each in the
    /// last one's place.
    pub fn rewrite(
        &mut self,
        id: MessageId,
        payload_len: usize,
        payload: impl FnOnce(&mut [u8]),
    ) -> bool {
        if self.bytes.is_empty()
            || self.bytes.len() - self.payload_at != payload_len
            || varint_len(id.as_raw()) != varint_len(self.id.as_raw())
        {
            return false;
        }
        crate::varint::put(&mut self.bytes, 0, id.as_raw());
        payload(&mut self.bytes[self.payload_at..]);
        self.id = id;
        true
    }

    /// The envelope these bytes encode, decoded (for a sender that must
    /// hand it to a call taking a `MessageEnvelope`).
    pub fn decode(&self) -> Result<MessageEnvelope, EnvelopeError> {
        MessageEnvelope::decode(&self.bytes)
    }
}

/// The fields of a request envelope that stay the same from message to
/// message (`destination`, `action`, `schema_version`, and no `source`
/// or `correlation_id`), encoded once: [`write`](Self::write) then puts
/// a message's id, its payload's length and the payload around them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvelopeHead {
    /// The encoding of the fields from `destination` to `correlation_id`.
    middle: Vec<u8>,
}

impl EnvelopeHead {
    /// The fixed fields of requests to `destination` with `action` in
    /// `schema_version`. `ActionTooLong` as [`MessageEnvelope::encode`]
    /// refuses it.
    pub fn new(
        destination: ServiceId,
        action: &str,
        schema_version: SchemaVersion,
    ) -> Result<Self, EnvelopeError> {
        let envelope = MessageEnvelope {
            id: MessageId::from_raw(0),
            destination,
            source: None,
            action: String::from(action),
            schema_version,
            correlation_id: None,
            payload: MessagePayload::empty(),
        };
        let mut bytes = envelope.encode()?;
        // The id 0 is one byte, and the empty payload's length one byte.
        bytes.pop();
        bytes.remove(0);
        Ok(EnvelopeHead { middle: bytes })
    }

    /// Write into `out` the envelope of these fixed fields with `id` and
    /// a payload of `payload_len` bytes, which `payload` writes into the
    /// slice it is given (exactly that long, zeroed). The bytes are
    /// [`MessageEnvelope::encode`]'s for that envelope, whatever
    /// `payload` writes; the same errors in the same order
    /// (`PayloadTooLarge` past [`MAX_PAYLOAD_BYTES`]), and then `out` is
    /// left empty. Reuses `out`'s buffer: no allocation once it has
    /// grown to the size of the messages sent.
    pub fn write(
        &self,
        out: &mut EncodedEnvelope,
        id: MessageId,
        payload_len: usize,
        payload: impl FnOnce(&mut [u8]),
    ) -> Result<(), EnvelopeError> {
        out.bytes.clear();
        if payload_len > MAX_PAYLOAD_BYTES {
            let (len, max) = too_large(payload_len, MAX_PAYLOAD_BYTES);
            return Err(EnvelopeError::PayloadTooLarge { len, max });
        }
        let start = varint_len(id.as_raw()) + self.middle.len();
        let body = start + varint_len(payload_len as u64);
        let total = body + payload_len;
        // Within the action's and the payload's bounds an envelope always
        // fits the message limit (see `MAX_HEADER_BYTES`).
        check_message_len(total)?;
        out.bytes.resize(total, 0);
        let at = crate::varint::put(&mut out.bytes, 0, id.as_raw());
        out.bytes[at..start].copy_from_slice(&self.middle);
        crate::varint::put(&mut out.bytes, start, payload_len as u64);
        payload(&mut out.bytes[body..]);
        out.id = id;
        out.payload_at = body;
        Ok(())
    }
}

/// `a == b`, for the short strings an action is: from 8 to 16 bytes as
/// two (overlapping) words each, without a call to `memcmp`.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if (8..=16).contains(&a.len()) {
        return a.first_chunk::<8>() == b.first_chunk::<8>()
            && a.last_chunk::<8>() == b.last_chunk::<8>();
    }
    a == b
}

/// A [`MessageEnvelope`] read in place: the same fields, its action and
/// payload borrowed from the bytes it was decoded from instead of copied
/// into a fresh `String` and `Vec`. For a receiver that reads a message
/// and keeps nothing of it but what it decodes from the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct EnvelopeRef<'a> {
    pub id: MessageId,
    pub destination: ServiceId,
    /// As [`MessageEnvelope::source`]: the receiving side stamps it.
    pub source: Option<TaskId>,
    pub action: &'a str,
    pub schema_version: SchemaVersion,
    pub correlation_id: Option<MessageId>,
    pub payload: &'a [u8],
}

impl<'a> EnvelopeRef<'a> {
    /// `bytes` read as [`MessageEnvelope::decode`] reads them, in place:
    /// `Some` exactly when `decode` succeeds, with the same fields. `None`
    /// for everything `decode` refuses.
    pub fn decode(bytes: &'a [u8]) -> Option<Self> {
        Self::checked(bytes).ok()
    }

    /// [`decode`](Self::decode), for a reader that expects the action
    /// `action` (a client its answers'): an envelope with exactly that
    /// action takes it from `action` rather than checking the bytes'
    /// UTF-8 again (`from_utf8` of a short unaligned string is some
    /// eighty instructions). The same outcome as `decode` for any bytes.
    pub fn decode_expecting(bytes: &'a [u8], action: &'static str) -> Option<Self> {
        Self::checked_with(bytes, Some(action)).ok()
    }

    /// [`MessageEnvelope::decode`]'s checks and reading, in place.
    fn checked(bytes: &'a [u8]) -> Result<Self, EnvelopeError> {
        Self::checked_with(bytes, None)
    }

    /// [`checked`](Self::checked), an action equal to `expected` taken
    /// from it (see [`decode_expecting`](Self::decode_expecting)).
    #[inline(always)]
    fn checked_with(
        bytes: &'a [u8],
        expected: Option<&'static str>,
    ) -> Result<Self, EnvelopeError> {
        check_message_len(bytes.len())?;
        let envelope = Self::read(bytes, expected).ok_or(EnvelopeError::Malformed)?;
        if envelope.action.len() > MAX_ACTION_LEN {
            let (len, max) = too_large(envelope.action.len(), MAX_ACTION_LEN);
            return Err(EnvelopeError::ActionTooLong { len, max });
        }
        Ok(envelope)
    }

    /// All of `bytes` read as postcard reads the derived `Deserialize` of
    /// [`MessageEnvelope`] (a payload over [`MAX_PAYLOAD_BYTES`] refused as
    /// `MessagePayload`'s own `Deserialize` refuses it), or `None` where
    /// it fails: a varint cut short or too long for its type, an option's
    /// tag other than 0 or 1, a length past the end, an action that is not
    /// UTF-8 (one equal to `expected` is), or bytes left over.
    #[inline]
    fn read(bytes: &'a [u8], expected: Option<&'static str>) -> Option<Self> {
        use crate::varint::{take_bytes, take_u32, take_u64};
        let option = |at: usize| -> Option<(Option<u64>, usize)> {
            match *bytes.get(at)? {
                0 => Some((None, at + 1)),
                1 => take_u64(bytes, at + 1).map(|(value, at)| (Some(value), at)),
                _ => None,
            }
        };
        let (id, at) = take_u64(bytes, 0)?;
        let (destination, at) = take_u64(bytes, at)?;
        let (source, at) = option(at)?;
        let (action, at) = take_bytes(bytes, at)?;
        let action = match expected {
            // Equal bytes: valid UTF-8, and the same string.
            Some(expected) if same_bytes(expected.as_bytes(), action) => expected,
            _ => core::str::from_utf8(action).ok()?,
        };
        let (major, at) = take_u32(bytes, at)?;
        let (minor, at) = take_u32(bytes, at)?;
        let (correlation_id, at) = option(at)?;
        let (payload, at) = take_bytes(bytes, at)?;
        if payload.len() > MAX_PAYLOAD_BYTES || at != bytes.len() {
            return None;
        }
        Some(EnvelopeRef {
            id: MessageId::from_raw(id),
            destination: ServiceId::from_raw(destination),
            source: source.map(TaskId::from_raw),
            action,
            schema_version: SchemaVersion::new(major, minor),
            correlation_id: correlation_id.map(MessageId::from_raw),
            payload,
        })
    }

    /// [`MessageEnvelope::decode_answer`] of the envelope read in place.
    pub fn decode_answer<A: Answer>(
        &self,
        policy: &VersionPolicy,
        service: ServiceId,
    ) -> Result<A, EnvelopeError> {
        answer_of(policy, service, self.schema_version, self.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::VersionPolicy;
    use alloc::string::ToString;
    use alloc::vec;

    /// `same_bytes` is `==`, at every length around its words' and for
    /// a difference at any place.
    #[test]
    fn same_bytes_is_equality() {
        for len in 0..=20usize {
            let a: Vec<u8> = (0..len as u8).collect();
            assert!(same_bytes(&a, &a.clone()), "{len}");
            for at in 0..len {
                let mut b = a.clone();
                b[at] ^= 0x40;
                assert!(!same_bytes(&a, &b), "{len} {at}");
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(!same_bytes(&a, &longer) && !same_bytes(&longer, &a));
        }
    }

    #[test]
    fn encode_into_writes_what_encode_allocates() {
        let envelope = MessageEnvelope::new(
            ServiceId::from_raw(7),
            "map.put",
            SchemaVersion::new(1, 2),
            MessagePayload::from_bytes(vec![0xa5; 64]).unwrap(),
        )
        .with_correlation(MessageId::from_raw(300));
        let mut out = [0u8; 512];
        let expected = envelope.encode().unwrap();
        assert_eq!(envelope.encode_into(&mut out).unwrap(), &expected[..]);
        let mut short = [0u8; 16];
        assert_eq!(
            envelope.encode_into(&mut short),
            Err(EnvelopeError::EncodeFailed)
        );
        let mut long_action = envelope.clone();
        long_action.action = "a".repeat(MAX_ACTION_LEN + 1);
        assert!(matches!(
            long_action.encode_into(&mut out),
            Err(EnvelopeError::ActionTooLong { .. })
        ));
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct MyPayload {
        field: String,
    }

    fn sample() -> MessageEnvelope {
        let payload = MessagePayload::new(&MyPayload {
            field: "value".to_string(),
        })
        .unwrap();
        MessageEnvelope::new(
            ServiceId::from_raw(3),
            "action.name".to_string(),
            SchemaVersion::new(1, 0),
            payload,
        )
    }

    #[test]
    fn envelope_round_trips_through_postcard() {
        let envelope = sample().with_correlation(MessageId::from_raw(77));
        let decoded = MessageEnvelope::decode(&envelope.encode().unwrap()).unwrap();
        assert_eq!(decoded, envelope);
        assert_eq!(decoded.correlation_id, Some(MessageId::from_raw(77)));
        let payload: MyPayload = decoded.payload.decode().unwrap();
        assert_eq!(payload.field, "value");
    }

    proptest::proptest! {
        #[test]
        fn encoded_len_is_the_length_of_the_encoding(
            id: u64,
            destination: u64,
            source: Option<u64>,
            action in "[a-z.]{0,64}",
            major: u32,
            minor: u32,
            correlation: Option<u64>,
            payload in 0usize..=MAX_PAYLOAD_BYTES,
        ) {
            let envelope = MessageEnvelope {
                id: MessageId::from_raw(id),
                destination: ServiceId::from_raw(destination),
                source: source.map(TaskId::from_raw),
                action,
                schema_version: SchemaVersion::new(major, minor),
                correlation_id: correlation.map(MessageId::from_raw),
                payload: MessagePayload::from_bytes(vec![7; payload]).unwrap(),
            };
            let bytes = envelope.encode().unwrap();
            proptest::prop_assert_eq!(envelope.encoded_len(), Ok(bytes.len()));
            proptest::prop_assert!(
                bytes.len() <= MAX_HEADER_BYTES + envelope.action.len() + payload
            );
        }
    }

    /// Whatever `bytes` are, an envelope read in place is the envelope
    /// `decode` reads, field for field.
    fn read_in_place_as_decode_reads(bytes: &[u8]) -> Option<EnvelopeRef<'_>> {
        let in_place = EnvelopeRef::decode(bytes);
        if let Some(view) = in_place {
            let owned = MessageEnvelope::decode(bytes).expect("decode reads it too");
            assert_eq!(owned.borrowed(), view);
        }
        in_place
    }

    #[test]
    fn an_envelope_is_read_in_place_as_decode_reads_it_or_not_at_all() {
        let envelope = sample().with_correlation(MessageId::from_raw(900));
        let bytes = envelope.encode().unwrap();
        assert_eq!(
            read_in_place_as_decode_reads(&bytes),
            Some(envelope.borrowed())
        );
        // Cut anywhere, or with bytes after it: never read in place.
        for cut in 0..bytes.len() {
            assert_eq!(read_in_place_as_decode_reads(&bytes[..cut]), None, "{cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(read_in_place_as_decode_reads(&longer), None);
        // Beyond the bounds `decode` checks: refused by both.
        let mut long_action = envelope.clone();
        long_action.action = "a".repeat(MAX_ACTION_LEN + 1);
        let bytes = postcard::to_allocvec(&long_action).unwrap();
        assert!(MessageEnvelope::decode(&bytes).is_err());
        assert_eq!(EnvelopeRef::decode(&bytes), None);
        let mut big = envelope;
        big.payload = MessagePayload {
            bytes: vec![1; MAX_PAYLOAD_BYTES + 1],
        };
        let bytes = postcard::to_allocvec(&big).unwrap();
        assert!(MessageEnvelope::decode(&bytes).is_err());
        assert_eq!(EnvelopeRef::decode(&bytes), None);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_read_in_place_are_what_decode_reads(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            read_in_place_as_decode_reads(&bytes);
        }

        #[test]
        fn every_encoded_envelope_is_read_in_place(
            id: u64,
            source: Option<u64>,
            action in "[a-z.]{0,64}",
            correlation: Option<u64>,
            payload in 0usize..=MAX_PAYLOAD_BYTES,
        ) {
            let envelope = MessageEnvelope {
                id: MessageId::from_raw(id),
                destination: ServiceId::from_raw(4),
                source: source.map(TaskId::from_raw),
                action,
                schema_version: SchemaVersion::new(2, 1),
                correlation_id: correlation.map(MessageId::from_raw),
                payload: MessagePayload::from_bytes(vec![9; payload]).unwrap(),
            };
            let bytes = envelope.encode().unwrap();
            proptest::prop_assert_eq!(
                read_in_place_as_decode_reads(&bytes),
                Some(envelope.borrowed())
            );
        }
    }

    /// An envelope of fixed id (`sample`'s fresh ids would push the ids of
    /// other tests past one varint byte, which one of them assumes).
    fn fixed(action: &str, payload: Vec<u8>) -> MessageEnvelope {
        MessageEnvelope {
            id: MessageId::from_raw(1_000),
            destination: ServiceId::from_raw(3),
            source: None,
            action: action.to_string(),
            schema_version: SchemaVersion::new(1, 0),
            correlation_id: Some(MessageId::from_raw(5)),
            payload: MessagePayload::from_bytes(payload).unwrap(),
        }
    }

    /// `decode_reusing` with `spare` gives `decode`'s outcome on `bytes`.
    fn decodes_reusing_as_decode(bytes: &[u8], spare: MessageEnvelope) {
        assert_eq!(
            MessageEnvelope::decode_reusing(bytes, spare),
            MessageEnvelope::decode(bytes)
        );
    }

    #[test]
    fn decode_reusing_keeps_the_spare_blocks_that_fit() {
        let request = fixed("action.name", vec![4; 20]);
        let bytes = request.encode().unwrap();
        let mut spare = fixed("", Vec::with_capacity(PAYLOAD_START_CAPACITY));
        spare.action = String::with_capacity(64);
        spare.action.push_str("storage.reply");
        let (action, payload) = (spare.action.as_ptr(), spare.payload.as_bytes().as_ptr());
        let decoded = MessageEnvelope::decode_reusing(&bytes, spare).unwrap();
        assert_eq!(decoded, request);
        assert_eq!(decoded.action.as_ptr(), action);
        assert_eq!(decoded.payload.as_bytes().as_ptr(), payload);
        // A payload block over the bound is freed, not kept.
        let big = fixed("x", vec![3; REUSED_PAYLOAD_CAPACITY + 1]);
        let kept = big.payload.as_bytes().as_ptr();
        let decoded = MessageEnvelope::decode_reusing(&bytes, big).unwrap();
        assert_eq!(decoded, request);
        assert_ne!(decoded.payload.as_bytes().as_ptr(), kept);
        assert!(decoded.payload.bytes.capacity() <= REUSED_PAYLOAD_CAPACITY);
        // Refused bytes are refused as `decode` refuses them.
        for cut in 0..bytes.len() {
            decodes_reusing_as_decode(&bytes[..cut], fixed("y", vec![2; 8]));
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_reusing_as_decode_decodes_them(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            spare_action in "[a-z.]{0,64}",
            spare_payload in 0usize..=2 * REUSED_PAYLOAD_CAPACITY,
        ) {
            let spare = fixed(&spare_action, vec![1; spare_payload]);
            let good = fixed("action.name", bytes.clone()).encode().unwrap();
            decodes_reusing_as_decode(&bytes, spare.clone());
            let mut longer = good.clone();
            longer.extend_from_slice(&bytes);
            decodes_reusing_as_decode(&longer, spare.clone());
            decodes_reusing_as_decode(&good, spare);
        }
    }

    /// What `MessageEnvelope::decode` was before it was written by hand:
    /// the derived `Deserialize` through the evolving decoder, then the
    /// bounds. The hand-written decoder is held to it.
    fn decode_by_serde(bytes: &[u8]) -> Result<MessageEnvelope, EnvelopeError> {
        check_message_len(bytes.len())?;
        let envelope = evolve::from_bytes::<MessageEnvelope>(bytes)?;
        envelope.check_bounds()?;
        Ok(envelope)
    }

    /// What `EnvelopeRef::decode` was: the derived `Deserialize` through
    /// plain postcard, all bytes, within the bounds.
    fn read_in_place_by_serde(bytes: &[u8]) -> Option<EnvelopeRef<'_>> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return None;
        }
        match postcard::take_from_bytes::<EnvelopeRef<'_>>(bytes) {
            Ok((envelope, []))
                if envelope.action.len() <= MAX_ACTION_LEN
                    && envelope.payload.len() <= MAX_PAYLOAD_BYTES =>
            {
                Some(envelope)
            }
            _ => None,
        }
    }

    /// `bytes` decoded both ways, owned and in place: the same outcome.
    fn decodes_as_serde_does(bytes: &[u8]) {
        assert_eq!(MessageEnvelope::decode(bytes), decode_by_serde(bytes));
        let serde = read_in_place_by_serde(bytes);
        assert_eq!(EnvelopeRef::decode(bytes), serde);
        // Expecting any action, the one read among them (and one of its
        // length that differs in its last byte, or a prefix of it): the
        // same outcome.
        let leak = |s: String| -> &'static str { alloc::boxed::Box::leak(s.into_boxed_str()) };
        let mut expected = vec!["", "storage.reply", "\u{e9}"];
        if let Some(read) = serde {
            let action = read.action.to_string();
            let mut other = action.clone();
            if let Some(last) = other.pop() {
                expected.push(leak(other.clone()));
                other.push(if last == 'a' { 'b' } else { 'a' });
                expected.push(leak(other));
            }
            expected.push(leak(action));
        }
        for action in expected {
            assert_eq!(
                EnvelopeRef::decode_expecting(bytes, action),
                serde,
                "expecting {action:?}"
            );
        }
    }

    /// One change to an encoded envelope, as an attacker or a torn write
    /// would make it.
    #[derive(Clone, Debug)]
    enum Edit {
        Cut(usize),
        Set(usize, u8),
        Insert(usize, u8),
        Remove(usize),
        /// A byte made a longer varint of the same value (`b | 0x80, 0`),
        /// which postcard accepts.
        Widen(usize),
    }

    fn apply(bytes: &mut Vec<u8>, edit: &Edit) {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
        match *edit {
            Edit::Cut(i) => bytes.truncate(at(i, bytes.len() + 1)),
            Edit::Set(i, b) if !bytes.is_empty() => {
                let i = at(i, bytes.len());
                bytes[i] = b;
            }
            Edit::Insert(i, b) => bytes.insert(at(i, bytes.len() + 1), b),
            Edit::Remove(i) if !bytes.is_empty() => {
                bytes.remove(at(i, bytes.len()));
            }
            Edit::Widen(i) if !bytes.is_empty() => {
                let i = at(i, bytes.len());
                if bytes[i] < 0x80 {
                    bytes[i] |= 0x80;
                    bytes.insert(i + 1, 0);
                }
            }
            _ => {}
        }
    }

    fn edit() -> impl proptest::strategy::Strategy<Value = Edit> {
        use proptest::prelude::*;
        // The bytes that matter most (tags, continuation bits) often.
        let byte = || {
            prop_oneof![
                Just(0u8),
                Just(1),
                Just(2),
                Just(0x80),
                Just(0xff),
                any::<u8>()
            ]
        };
        prop_oneof![
            any::<usize>().prop_map(Edit::Cut),
            (any::<usize>(), byte()).prop_map(|(i, b)| Edit::Set(i, b)),
            (any::<usize>(), byte()).prop_map(|(i, b)| Edit::Insert(i, b)),
            any::<usize>().prop_map(Edit::Remove),
            any::<usize>().prop_map(Edit::Widen),
        ]
    }

    fn any_envelope() -> impl proptest::strategy::Strategy<Value = MessageEnvelope> {
        use proptest::prelude::*;
        (
            (any::<u64>(), 0u64..300, any::<u64>()),
            proptest::option::of(any::<u64>()),
            // Up to a little past the limit, ASCII or not.
            prop_oneof!["[a-z.]{0,66}", "\\PC{0,20}"],
            (any::<u32>(), 0u32..200),
            proptest::option::of(any::<u64>()),
            prop_oneof![0usize..40, MAX_PAYLOAD_BYTES - 1..=MAX_PAYLOAD_BYTES + 1],
        )
            .prop_map(
                |(
                    (id, small, destination),
                    source,
                    action,
                    (major, minor),
                    correlation,
                    payload,
                )| {
                    MessageEnvelope {
                        id: MessageId::from_raw(id),
                        destination: ServiceId::from_raw(if id % 2 == 0 {
                            small
                        } else {
                            destination
                        }),
                        source: source.map(TaskId::from_raw),
                        action,
                        schema_version: SchemaVersion::new(major, minor),
                        correlation_id: correlation.map(MessageId::from_raw),
                        payload: MessagePayload {
                            bytes: (0..payload).map(|i| i as u8).collect(),
                        },
                    }
                },
            )
    }

    proptest::proptest! {
        /// The hand-written encoder writes postcard's bytes of the derived
        /// `Serialize`, refuses what was refused, and fails on any buffer
        /// shorter than the encoding.
        #[test]
        fn the_envelope_is_encoded_as_postcard_encodes_it(
            envelope in any_envelope(),
            short in proptest::prelude::any::<usize>(),
        ) {
            let mut out = vec![0u8; MAX_MESSAGE_BYTES + 64];
            let encoded = envelope.encode_into(&mut out).map(|bytes| bytes.to_vec());
            match envelope.check_bounds() {
                Err(e) => proptest::prop_assert_eq!(encoded, Err(e)),
                Ok(()) => {
                    let expected = postcard::to_allocvec(&envelope).unwrap();
                    proptest::prop_assert_eq!(encoded.as_deref(), Ok(&expected[..]));
                    proptest::prop_assert_eq!(envelope.encode(), Ok(expected.clone()));
                    proptest::prop_assert_eq!(envelope.encoded_len(), Ok(expected.len()));
                    let short = short % expected.len();
                    proptest::prop_assert_eq!(
                        envelope.encode_into(&mut out[..short]),
                        Err(EnvelopeError::EncodeFailed)
                    );
                    let exact = expected.len();
                    proptest::prop_assert_eq!(
                        envelope.encode_into(&mut out[..exact]).map(|b| b.to_vec()),
                        Ok(expected)
                    );
                }
            }
        }

        /// Any envelope, changed in up to three ways (cut, bytes set,
        /// inserted or removed, a varint widened): decoded by hand with
        /// the outcome of the serde path, owned and in place.
        #[test]
        fn an_edited_envelope_decodes_as_serde_decodes_it(
            envelope in any_envelope(),
            edits in proptest::collection::vec(edit(), 0..3),
        ) {
            let mut bytes = postcard::to_allocvec(&envelope).unwrap();
            for edit in &edits {
                apply(&mut bytes, edit);
            }
            decodes_as_serde_does(&bytes);
        }

        /// A request written piece by piece ([`EnvelopeHead`]) into a
        /// reused buffer is the envelope's encoding (no source, no
        /// correlation), or refused as encoding refuses it; its bytes
        /// decode to that envelope.
        #[test]
        fn a_request_written_by_its_head_is_the_envelope_encoded(
            envelope in any_envelope(),
            before in 0usize..40,
        ) {
            let envelope = MessageEnvelope {
                source: None,
                correlation_id: None,
                ..envelope
            };
            let head = EnvelopeHead::new(
                envelope.destination,
                &envelope.action,
                envelope.schema_version,
            );
            let mut out = EncodedEnvelope::new();
            let expected = envelope.encode();
            let head = match head {
                Err(e) => {
                    proptest::prop_assert_eq!(expected, Err(e));
                    return Ok(());
                }
                Ok(head) => head,
            };
            // A message before, of another length, in the same buffer.
            head.write(&mut out, MessageId::from_raw(7), before, |p| p.fill(0xee))
                .unwrap();
            let payload = envelope.payload.as_bytes();
            let written = head.write(&mut out, envelope.id, payload.len(), |p| {
                p.copy_from_slice(payload)
            });
            match expected {
                Err(e) => {
                    proptest::prop_assert_eq!(written, Err(e));
                    proptest::prop_assert!(out.as_bytes().is_empty());
                }
                Ok(expected) => {
                    proptest::prop_assert_eq!(written, Ok(()));
                    proptest::prop_assert_eq!(out.as_bytes(), &expected[..]);
                    proptest::prop_assert_eq!(out.id(), envelope.id);
                    proptest::prop_assert_eq!(out.decode(), Ok(envelope));
                }
            }
        }

        /// A message rewritten in place under another id with another
        /// payload is what writing it afresh gives, when the payload and
        /// the id's varint are as long as the last; otherwise nothing
        /// changes and `rewrite` says so.
        #[test]
        fn a_message_rewritten_in_place_is_the_message_written_afresh(
            first in (proptest::prelude::any::<u64>(), proptest::collection::vec(proptest::prelude::any::<u8>(), 0..20)),
            second in (proptest::prelude::any::<u64>(), proptest::collection::vec(proptest::prelude::any::<u8>(), 0..20)),
            same_len in proptest::prelude::any::<bool>(),
            id_width in 0u32..4,
        ) {
            let head = EnvelopeHead::new(ServiceId::from_raw(7), "storage.transact", SchemaVersion::new(3, 1)).unwrap();
            let (first_id, first_payload) = first;
            let (second_id, mut second_payload) = second;
            if same_len {
                second_payload.resize(first_payload.len(), 0x5a);
            }
            // Ids of one, two, three bytes and any width, so that the
            // ids' lengths agree and differ.
            let narrow = |id: u64| match id_width {
                0 => id % 0x80,
                1 => 0x80 + id % 0x3f80,
                2 => 0x4000 + id % 0x1f_c000,
                _ => id,
            };
            let (first_id, second_id) = (MessageId::from_raw(narrow(first_id)), MessageId::from_raw(narrow(second_id)));
            let mut out = EncodedEnvelope::new();
            proptest::prop_assert!(!out.rewrite(first_id, 0, |_| {}), "nothing to rewrite yet");
            head.write(&mut out, first_id, first_payload.len(), |p| p.copy_from_slice(&first_payload)).unwrap();
            let before = out.clone();
            let rewritten = out.rewrite(second_id, second_payload.len(), |p| {
                p.copy_from_slice(&second_payload)
            });
            let fits = first_payload.len() == second_payload.len()
                && crate::varint::len(first_id.as_raw()) == crate::varint::len(second_id.as_raw());
            proptest::prop_assert_eq!(rewritten, fits);
            if fits {
                let mut fresh = EncodedEnvelope::new();
                head.write(&mut fresh, second_id, second_payload.len(), |p| p.copy_from_slice(&second_payload)).unwrap();
                proptest::prop_assert_eq!(out.as_bytes(), fresh.as_bytes());
                proptest::prop_assert_eq!(out.id(), second_id);
                // And again, from there.
                proptest::prop_assert!(out.rewrite(first_id, first_payload.len(), |p| p.copy_from_slice(&first_payload)));
                proptest::prop_assert_eq!(out, before);
            } else {
                proptest::prop_assert_eq!(out, before);
            }
        }

        #[test]
        fn any_bytes_decode_as_serde_decodes_them(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..48),
        ) {
            decodes_as_serde_does(&bytes);
        }
    }

    #[test]
    fn the_hand_written_decoder_refuses_what_postcard_refuses() {
        let envelope = sample().with_correlation(MessageId::from_raw(5));
        let good = envelope.encode().unwrap();
        // id, destination, source tag, action length and bytes, ...
        assert_eq!(good[2], 0, "source: None");
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("an option's tag of 2", {
                let mut with_source = envelope.clone();
                with_source.source = Some(TaskId::from_raw(3));
                let mut b = with_source.encode().unwrap();
                assert_eq!(b[2..4], [1, 3], "source: Some(3)");
                b[2] = 2;
                b
            }),
            ("an action that is not UTF-8", {
                let mut b = good.clone();
                b[4] = 0xff;
                b
            }),
            ("an action length past the end", {
                let mut b = good.clone();
                b[3] = 0x7f;
                b
            }),
            ("an action length of u64::MAX", {
                let mut b = good[..3].to_vec();
                b.extend([0xff; 9]);
                b.push(1);
                b.extend(&good[4..]);
                b
            }),
            ("an id of eleven varint bytes", {
                let mut b = vec![0x80; 10];
                b.push(0);
                b.extend(&good[1..]);
                b
            }),
            ("an id with bits beyond 64", {
                let mut b = vec![0xff; 9];
                b.push(2);
                b.extend(&good[1..]);
                b
            }),
            ("a byte left over", {
                let mut b = good.clone();
                b.push(0);
                b
            }),
        ];
        for (what, bytes) in cases {
            assert_eq!(
                MessageEnvelope::decode(&bytes),
                Err(EnvelopeError::Malformed),
                "{what}"
            );
            assert_eq!(
                decode_by_serde(&bytes),
                Err(EnvelopeError::Malformed),
                "{what}"
            );
            assert_eq!(EnvelopeRef::decode(&bytes), None, "{what}");
        }
        // A major version past u32 (its last byte with bits beyond 32).
        let mut wide = envelope.clone();
        wide.action = String::new();
        wide.schema_version = SchemaVersion::new(u32::MAX, 0);
        let mut bytes = wide.encode().unwrap();
        let major = bytes.iter().position(|&b| b == 0xff).unwrap();
        assert_eq!(bytes[major + 4], 0x0f);
        bytes[major + 4] = 0x1f;
        assert_eq!(
            MessageEnvelope::decode(&bytes),
            Err(EnvelopeError::Malformed)
        );
        assert_eq!(decode_by_serde(&bytes), Err(EnvelopeError::Malformed));
        // Non-shortest varints are postcard's too: accepted.
        let mut long = vec![0x80 | good[0], 0];
        long.extend(&good[1..]);
        assert_eq!(MessageEnvelope::decode(&long), Ok(envelope.clone()));
        // Too long a message, too long an action: their own errors.
        let huge = vec![0; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(
            MessageEnvelope::decode(&huge),
            Err(EnvelopeError::MessageTooLarge { .. })
        ));
        let mut long_action = envelope;
        long_action.action = "a".repeat(MAX_ACTION_LEN + 1);
        let bytes = postcard::to_allocvec(&long_action).unwrap();
        assert!(matches!(
            MessageEnvelope::decode(&bytes),
            Err(EnvelopeError::ActionTooLong { .. })
        ));
    }

    #[test]
    fn encoded_len_applies_the_encoding_limits() {
        let mut envelope = sample();
        for value in [0, 127, 128, 16_383, 16_384, u64::MAX >> 1, u64::MAX] {
            envelope.id = MessageId::from_raw(value);
            let len = envelope.encode().unwrap().len();
            assert_eq!(envelope.encoded_len(), Ok(len), "{value}");
        }
        envelope.action = "x".repeat(MAX_ACTION_LEN + 1);
        assert!(matches!(
            envelope.encoded_len(),
            Err(EnvelopeError::ActionTooLong { .. })
        ));
    }

    #[test]
    fn oversized_payload_is_a_typed_error() {
        let big = vec![0u8; MAX_PAYLOAD_BYTES + 1];
        assert!(matches!(
            MessagePayload::from_bytes(big),
            Err(EnvelopeError::PayloadTooLarge { .. })
        ));
        assert!(MessagePayload::from_bytes(vec![0u8; MAX_PAYLOAD_BYTES]).is_ok());
    }

    #[test]
    fn long_action_is_rejected_at_encode() {
        let mut envelope = sample();
        envelope.action = "x".repeat(MAX_ACTION_LEN + 1);
        assert!(matches!(
            envelope.encode(),
            Err(EnvelopeError::ActionTooLong { .. })
        ));
    }

    #[test]
    fn truncated_or_garbage_bytes_are_malformed() {
        let bytes = sample().encode().unwrap();
        for cut in 0..bytes.len() {
            assert!(
                MessageEnvelope::decode(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            MessageEnvelope::decode(&trailing),
            Err(EnvelopeError::Malformed)
        );
    }

    #[test]
    fn payload_of_the_wrong_type_does_not_decode() {
        let payload = MessagePayload::new(&(1u8, 2u8, 3u8)).unwrap();
        assert_eq!(payload.decode::<u8>(), Err(EnvelopeError::Malformed));
    }

    #[test]
    fn version_is_checked_before_the_payload_is_decoded() {
        let mut envelope = sample();
        envelope.schema_version = SchemaVersion::new(2, 0);
        envelope.payload = MessagePayload::from_bytes(vec![0xff; 4]).unwrap();
        let policy = VersionPolicy::current(1, 0);
        let err = envelope
            .decode_payload::<MyPayload>(&policy, ServiceId::from_raw(3))
            .unwrap_err();
        assert!(matches!(
            err,
            EnvelopeError::SchemaMismatch(SchemaMismatchError::Unsupported { .. })
        ));
    }

    #[test]
    fn reply_carries_the_request_id() {
        let request = sample();
        let reply = MessageEnvelope::reply_to(&request, "ok", MessagePayload::empty());
        assert_eq!(reply.correlation_id, Some(request.id));
        assert_ne!(reply.id, request.id);
    }
}
