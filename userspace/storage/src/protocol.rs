//! The storage service's IPC protocol, schema v2.2.
//!
//! A request is a [`RequestPayload`] in a `MessageEnvelope` whose action
//! is [`Request::action`] and whose schema version is [`SCHEMA`]; its first
//! attached capability, if any, is a send-only capability for the client's
//! reply channel (see *Sessions* for requests that carry none). The answer is one envelope with action [`actions::REPLY`],
//! correlated to the request, whose payload is a [`Response`]: the reply or
//! the typed error. Every request gets exactly one answer, bad ones
//! included. An answer that grants a capability ([`Reply::Created`],
//! [`Reply::Cap`]) carries it as its one attached capability.
//!
//! # Where a request goes
//!
//! Requests about *one object* — [`Request::Op`], [`Request::Transact`],
//! [`Request::Versions`], [`Request::Revoke`], [`Request::Export`] — are
//! sent *through* that object's kernel capability (`send_to_object`): they
//! name no object, and the server acts on the object of the badge the
//! kernel stamped, with the rights the kernel stamped (see
//! [`cap`](crate::cap)). The others — `Create`, `Begin`, `Commit`,
//! `Rollback`, `Import`, `Info` — go to the service channel. An object request
//! that arrives without a badge is answered `CapabilityRequired`. A
//! transaction over several objects sends each `Op` through its object's
//! capability; `Transact` is one object's operations in one message.
//!
//! # Versions
//!
//! Versioning follows the "current + previous major" window. Schema v1
//! named objects by bearer tokens inside the payload; v2 names them by the
//! kernel capability a request travels through. v1 is *not* accepted:
//! serving it would keep the bearer-token access path open that v2 exists
//! to close, so the window is v2 alone (`Unsupported` for v1).
//!
//! Retries are idempotent: a request re-sent with the same message id gets
//! the answer of its first execution, not a second execution (see
//! [`server`](crate::server)).
//!
//! # Sessions (v2.2)
//!
//! A client that sends many requests need not attach a reply capability to
//! each. It numbers itself with a *session* ([`RequestPayload::session`],
//! unique among the sending task's clients) and attaches a reply
//! capability to its first request, and again to every re-send: the
//! server keeps that capability as the session's standing reply channel,
//! keyed by the kernel-stamped sending task and the session number, and
//! answers the session's later requests, which carry no capability, on
//! it. A task can only name its own sessions (the task half of the key is
//! the kernel's stamp), so an answer still goes only where the requester
//! asked. A session request that arrives without a capability while the
//! server keeps none for it (the server restarted, or dropped the session
//! to make room, or because its task opened a fifth, or after a failed
//! send) is not executed and gets no answer: the client's re-send, which
//! attaches a capability again, re-opens the session. A request without a session number is answered
//! on the capability it carries, once, as in v2.1.

use alloc::vec::Vec;
use pandagen_abi::{MessageEnvelope, MessageId, Rights, SchemaVersion, VersionPolicy};
use serde::{Deserialize, Serialize};

use crate::cap::{ObjectGrant, ObjectToken};
use crate::error::StorageError;
use crate::ids::{CommitSeq, ObjectId, TxId, VersionId};
use crate::object::ObjectKind;

/// The schema version clients send.
pub const SCHEMA: SchemaVersion = SchemaVersion::new(2, 2);

/// The versions the service accepts: v2.x only (see the module docs for
/// why v1 is refused).
pub const VERSION_POLICY: VersionPolicy = VersionPolicy::current(2, 2).with_min_major(2);

/// What a request envelope's payload holds: the [`Request`] and, since
/// v2.2, the number of the client's *session* (see the module docs). A
/// v2.0 or v2.1 payload is a bare `Request`, which decodes as this with
/// no session (the added field is last, with a default).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct RequestPayload {
    pub request: Request,
    #[serde(default)]
    pub session: Option<u32>,
}

/// [`RequestPayload`] as a client encodes it, borrowing the request (the
/// same bytes). `R` is a [`Request`] or a form of one that encodes the
/// same, such as [`TransactOne`].
#[derive(Debug, Serialize)]
pub struct RequestPayloadRef<'a, R: ?Sized = Request> {
    pub request: &'a R,
    pub session: Option<u32>,
}

/// A map operation borrowing its key and value, encoded exactly as the
/// [`Op`] it stands for: a client sends a put or a get without copying
/// the key and value into an owned `Op` first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpRef<'a> {
    /// [`Op::Put`].
    Put { key: &'a [u8], value: &'a [u8] },
    /// [`Op::Get`].
    Get {
        key: &'a [u8],
        at: Option<VersionId>,
    },
}

/// Where `Op::Put` and `Op::Get` stand in [`Op`], and `Request::Transact`
/// in [`Request`]: serde encodes a variant by its position. A test holds
/// these to the derived encodings.
pub(crate) const OP_PUT: u32 = 7;
pub(crate) const OP_GET: u32 = 8;
pub(crate) const REQUEST_TRANSACT: u32 = 5;

impl Serialize for OpRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStructVariant;
        match *self {
            OpRef::Put { key, value } => {
                let mut op = serializer.serialize_struct_variant("Op", OP_PUT, "Put", 2)?;
                op.serialize_field("key", &crate::wire_bytes::list::Borrowed(key))?;
                op.serialize_field("value", &crate::wire_bytes::list::Borrowed(value))?;
                op.end()
            }
            OpRef::Get { key, at } => {
                let mut op = serializer.serialize_struct_variant("Op", OP_GET, "Get", 2)?;
                op.serialize_field("key", &crate::wire_bytes::list::Borrowed(key))?;
                op.serialize_field("at", &at)?;
                op.end()
            }
        }
    }
}

/// `Request::Transact` of one operation, borrowing it: the same bytes as
/// `Request::Transact { ops: vec![op] }`.
#[derive(Clone, Copy, Debug)]
pub struct TransactOne<'a>(pub OpRef<'a>);

impl Serialize for TransactOne<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStructVariant;
        let mut request =
            serializer.serialize_struct_variant("Request", REQUEST_TRANSACT, "Transact", 1)?;
        request.serialize_field("ops", core::slice::from_ref(&self.0))?;
        request.end()
    }
}

/// A request payload that is a `Transact` of one `Put` or `Get` (what a
/// client's [`TransactOne`] sends), read in place: the key and value are
/// borrowed from the payload's bytes, and no `Vec<Op>` is made. It
/// decodes (with postcard, all bytes) only from a payload that
/// [`RequestPayload`] decodes to that request with a session field;
/// anything else fails to, and the server decodes it the general way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OneOpPayload<'a> {
    pub op: OpRef<'a>,
    pub session: Option<u32>,
}

impl<'a> OneOpPayload<'a> {
    /// The payload `bytes`, if it is one of these: read by hand, field by
    /// field, accepting and refusing exactly the bytes postcard's decode
    /// of this type (its serde `Deserialize`, [`Self::decode_serde`])
    /// accepts and refuses, with the same result (a property test holds
    /// the two together for any bytes). Serde's reader costs a call per
    /// field, per varint and per byte string.
    pub fn decode(bytes: &'a [u8]) -> Option<Self> {
        let mut r = Reader(bytes);
        // `Request::Transact` of a sequence of exactly one operation.
        if r.varint_u32()? != REQUEST_TRANSACT || r.varint_u64()? != 1 {
            return None;
        }
        let op = match r.varint_u32()? {
            OP_PUT => {
                let key = r.bytes()?;
                let value = r.bytes()?;
                OpRef::Put { key, value }
            }
            OP_GET => {
                let key = r.bytes()?;
                let at = match r.option()? {
                    true => Some(VersionId::from_raw(r.varint_u64()?)),
                    false => None,
                };
                OpRef::Get { key, at }
            }
            _ => return None,
        };
        let session = match r.option()? {
            true => Some(r.varint_u32()?),
            false => None,
        };
        r.0.is_empty().then_some(OneOpPayload { op, session })
    }

    /// [`Self::decode`] by serde and postcard: what the hand-written reader
    /// is held to.
    pub fn decode_serde(bytes: &'a [u8]) -> Option<Self> {
        match postcard::take_from_bytes::<OneOpPayload<'a>>(bytes) {
            Ok((payload, [])) => Some(payload),
            _ => None,
        }
    }
}

/// Postcard's encodings read from the front of a byte slice, refusing
/// what postcard refuses (see [`OneOpPayload::decode`]).
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    /// A varint of at most `max_bytes` bytes, whose last byte is at most
    /// `last_max` if it has all of them (postcard's `try_take_varint_*`:
    /// a longer or overflowing one is refused; a non-minimal one is not).
    /// Most are one byte (tags, short lengths), read without a loop.
    #[inline(always)]
    fn varint(&mut self, max_bytes: u32, last_max: u8) -> Option<u64> {
        let (value, rest) = match self.0 {
            [first, rest @ ..] if *first < 0x80 => (u64::from(*first), rest),
            bytes => long_varint(bytes, max_bytes, last_max)?,
        };
        self.0 = rest;
        Some(value)
    }

    #[inline(always)]
    fn varint_u32(&mut self) -> Option<u32> {
        // Five bytes; the fifth carries the top four bits. What passes
        // fits in 32 bits.
        self.varint(5, 0x0f).map(|v| v as u32)
    }

    #[inline(always)]
    fn varint_u64(&mut self) -> Option<u64> {
        self.varint(10, 0x01)
    }

    /// A byte string: its length (a `usize`, a `u64` varint here), then
    /// that many bytes, borrowed.
    #[inline(always)]
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint_u64()?).ok()?;
        if len > self.0.len() {
            return None;
        }
        let (bytes, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(bytes)
    }

    /// An option's tag: 0 for `None`, 1 for `Some`, anything else refused.
    fn option(&mut self) -> Option<bool> {
        match self.byte()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
}

impl OpRef<'_> {
    /// The rights the capability must hold (as [`Op::required_rights`]).
    pub fn required_rights(&self) -> Rights {
        match self {
            OpRef::Put { .. } => Rights::WRITE,
            OpRef::Get { .. } => Rights::READ,
        }
    }

    /// The owned operation it stands for.
    pub fn to_op(&self) -> Op {
        match *self {
            OpRef::Put { key, value } => Op::Put {
                key: key.to_vec(),
                value: value.to_vec(),
            },
            OpRef::Get { key, at } => Op::Get {
                key: key.to_vec(),
                at,
            },
        }
    }
}

impl<'de> Deserialize<'de> for OneOpPayload<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{self, EnumAccess, SeqAccess, VariantAccess, Visitor};

        /// The fields of `Op::Put` (postcard: a struct variant's fields
        /// are laid out as a struct's).
        #[derive(Deserialize)]
        struct PutFields<'a> {
            key: &'a [u8],
            value: &'a [u8],
        }
        /// The fields of `Op::Get`.
        #[derive(Deserialize)]
        struct GetFields<'a> {
            key: &'a [u8],
            at: Option<VersionId>,
        }

        /// One `Op`: only `Put` and `Get` are accepted.
        struct OneOp<'a>(OpRef<'a>);
        impl<'de> Deserialize<'de> for OneOp<'de> {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Variant;
                impl<'de> Visitor<'de> for Variant {
                    type Value = OneOp<'de>;
                    fn expecting(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
                        f.write_str("Op::Put or Op::Get")
                    }
                    fn visit_enum<A: EnumAccess<'de>>(
                        self,
                        data: A,
                    ) -> Result<Self::Value, A::Error> {
                        let (variant, fields) = data.variant::<u32>()?;
                        match variant {
                            OP_PUT => {
                                let PutFields { key, value } = fields.newtype_variant()?;
                                Ok(OneOp(OpRef::Put { key, value }))
                            }
                            OP_GET => {
                                let GetFields { key, at } = fields.newtype_variant()?;
                                Ok(OneOp(OpRef::Get { key, at }))
                            }
                            other => Err(de::Error::invalid_value(
                                de::Unexpected::Unsigned(other.into()),
                                &self,
                            )),
                        }
                    }
                }
                deserializer.deserialize_enum("Op", &["Put", "Get"], Variant)
            }
        }

        /// `Request::Transact`'s `ops`: exactly one.
        struct Ops;
        impl<'de> Visitor<'de> for Ops {
            type Value = OpRef<'de>;
            fn expecting(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
                f.write_str("one operation")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let OneOp(op) = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                if seq.next_element::<OneOp>()?.is_some() {
                    return Err(de::Error::invalid_length(2, &self));
                }
                Ok(op)
            }
        }
        /// The fields of `Request::Transact`.
        struct TransactFields;
        impl<'de> Visitor<'de> for TransactFields {
            type Value = OpRef<'de>;
            fn expecting(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
                f.write_str("the fields of Request::Transact")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                struct OpsSeed;
                impl<'de> de::DeserializeSeed<'de> for OpsSeed {
                    type Value = OpRef<'de>;
                    fn deserialize<D: serde::Deserializer<'de>>(
                        self,
                        deserializer: D,
                    ) -> Result<Self::Value, D::Error> {
                        deserializer.deserialize_seq(Ops)
                    }
                }
                seq.next_element_seed(OpsSeed)?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))
            }
        }
        /// The request: only `Transact` is accepted.
        struct Transact<'a>(OpRef<'a>);
        impl<'de: 'a, 'a> Deserialize<'de> for Transact<'a> {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Variant;
                impl<'de> Visitor<'de> for Variant {
                    type Value = Transact<'de>;
                    fn expecting(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
                        f.write_str("Request::Transact")
                    }
                    fn visit_enum<A: EnumAccess<'de>>(
                        self,
                        data: A,
                    ) -> Result<Self::Value, A::Error> {
                        let (variant, fields) = data.variant::<u32>()?;
                        if variant != REQUEST_TRANSACT {
                            return Err(de::Error::invalid_value(
                                de::Unexpected::Unsigned(variant.into()),
                                &self,
                            ));
                        }
                        fields
                            .struct_variant(&["ops"], TransactFields)
                            .map(Transact)
                    }
                }
                let Transact(op) =
                    deserializer.deserialize_enum("Request", &["Transact"], Variant)?;
                Ok(Transact(op))
            }
        }

        /// The payload: the request, then the session (required here).
        #[derive(Deserialize)]
        struct Payload<'a> {
            #[serde(borrow)]
            request: Transact<'a>,
            session: Option<u32>,
        }
        let Payload { request, session } = Payload::deserialize(deserializer)?;
        Ok(OneOpPayload {
            op: request.0,
            session,
        })
    }
}

/// [`Reader::varint`] of any length: the value and the bytes after it.
/// The slice goes in and out by value, so a reader's position stays in
/// registers.
#[inline(never)]
fn long_varint(bytes: &[u8], max_bytes: u32, last_max: u8) -> Option<(u64, &[u8])> {
    let mut out = 0u64;
    let mut rest = bytes;
    for i in 0..max_bytes {
        let (&byte, after) = rest.split_first()?;
        rest = after;
        out |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return (i + 1 < max_bytes || byte <= last_max).then_some((out, rest));
        }
    }
    None
}

/// The index of `Reply::Transacted` among the reply's variants.
pub(crate) const REPLY_TRANSACTED: u32 = 5;

/// `Reply::Transacted` borrowing its lists: the same bytes, for a server
/// that answers without building the reply's vectors. `R` is an
/// [`OpResult`] or a form of one that encodes the same
/// ([`OpResultRef`]).
#[derive(Clone, Copy, Debug)]
pub struct TransactedRef<'a, R = OpResult> {
    pub results: &'a [R],
    pub versions: &'a [(ObjectId, VersionId)],
}

/// An [`OpResult`] borrowing its bytes, encoded exactly as the result it
/// stands for.
#[derive(Clone, Copy, Debug)]
pub enum OpResultRef<'a> {
    /// [`OpResult::Value`].
    Value {
        version: VersionId,
        value: Option<&'a [u8]>,
    },
}

/// Where `OpResult::Value` stands in [`OpResult`] (a test holds it to the
/// derived encoding).
pub(crate) const OP_RESULT_VALUE: u32 = 6;

impl Serialize for OpResultRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStructVariant;
        let OpResultRef::Value { version, value } = *self;
        let mut result =
            serializer.serialize_struct_variant("OpResult", OP_RESULT_VALUE, "Value", 2)?;
        result.serialize_field("version", &version)?;
        result.serialize_field("value", &value.map(crate::wire_bytes::list::Borrowed))?;
        result.end()
    }
}

/// Where `OpResult::Written` stands in [`OpResult`].
pub(crate) const OP_RESULT_WRITTEN: u64 = 2;

/// The most bytes [`push_put_answer`] writes: five one-byte pieces and
/// three varints of up to ten bytes.
pub(crate) const PUT_ANSWER_MAX: usize = 35;

/// Push the answer to a `Transact` of one put that made `version` of
/// `object`: the bytes of the [`Response`] `Ok(Reply::Transacted {
/// results: [Written(version)], versions: [(object, version)] })`,
/// written by hand.
pub(crate) fn push_put_answer(out: &mut Vec<u8>, object: ObjectId, version: VersionId) {
    use crate::wire_bytes::push_varint;
    // `Ok`, then the reply's variant.
    out.push(0);
    push_varint(out, u64::from(REPLY_TRANSACTED));
    // One result.
    push_varint(out, 1);
    push_varint(out, OP_RESULT_WRITTEN);
    push_varint(out, version.as_raw());
    // One new version.
    push_varint(out, 1);
    push_varint(out, object.as_raw());
    push_varint(out, version.as_raw());
}

/// The most bytes [`push_get_answer`] writes besides the value's own:
/// five one-byte pieces and two varints of up to ten bytes.
pub(crate) const GET_ANSWER_OVERHEAD: usize = 25;

/// Push the answer to a `Transact` of one get that read `value` at
/// `version`: the bytes of the [`Response`] `Ok(Reply::Transacted {
/// results: [Value { version, value }], versions: [] })`, written by
/// hand.
pub(crate) fn push_get_answer(out: &mut Vec<u8>, version: VersionId, value: Option<&[u8]>) {
    use crate::wire_bytes::{push_bytes, push_varint};
    // `Ok`, then the reply's variant.
    out.push(0);
    push_varint(out, u64::from(REPLY_TRANSACTED));
    // One result.
    push_varint(out, 1);
    push_varint(out, u64::from(OP_RESULT_VALUE));
    push_varint(out, version.as_raw());
    match value {
        None => out.push(0),
        Some(value) => {
            out.push(1);
            push_bytes(out, value);
        }
    }
    // No new versions.
    push_varint(out, 0);
}

/// The room the storage server keeps before an answer's payload in its
/// frame buffer for the answer envelope's header (see
/// [`frame_reply_header`]); the longest header is 51 bytes.
pub(crate) const FRAME_HEADROOM: usize = 64;

/// Frame the answer to `request` in place: the header of the envelope
/// `MessageEnvelope::reply_to(request, actions::REPLY, payload)` with id
/// `id`, for a payload of `payload_len` bytes, written to end at
/// `frame[FRAME_HEADROOM]`, where the payload is. Returns where it starts:
/// from there to the payload's end, the bytes are that envelope's
/// `encode()` (its fields in order: id, destination, no source, the
/// action, the schema version, the correlation, the payload's length).
/// The caller has checked the payload's length against
/// `MAX_PAYLOAD_BYTES`, so the message is within its bound too.
pub(crate) fn frame_reply_header(
    frame: &mut [u8],
    id: MessageId,
    request: &MessageEnvelope,
    payload_len: usize,
) -> usize {
    use pandagen_abi::varint::{len as varint_len, put};
    // The header's length first, so that it is written once, in place.
    let fields = [
        id.as_raw(),
        request.destination.as_raw(),
        u64::from(request.schema_version.major),
        u64::from(request.schema_version.minor),
        request.id.as_raw(),
        payload_len as u64,
    ];
    let len = fields.iter().map(|&v| varint_len(v)).sum::<usize>()
        // No source (a tag), the action, the correlation's tag.
        + 1
        + REPLY_ACTION_FIELD.len()
        + 1;
    let start = FRAME_HEADROOM - len;
    let mut at = put(frame, start, id.as_raw());
    at = put(frame, at, request.destination.as_raw());
    // No source: the kernel stamps the sender on delivery.
    frame[at] = 0;
    at += 1;
    frame[at..at + REPLY_ACTION_FIELD.len()].copy_from_slice(&REPLY_ACTION_FIELD);
    at += REPLY_ACTION_FIELD.len();
    at = put(frame, at, u64::from(request.schema_version.major));
    at = put(frame, at, u64::from(request.schema_version.minor));
    frame[at] = 1;
    at = put(frame, at + 1, request.id.as_raw());
    put(frame, at, payload_len as u64);
    start
}

/// The answer's action as its envelope field: its length (one varint
/// byte), then its bytes.
const REPLY_ACTION_FIELD: [u8; 1 + actions::REPLY.len()] = {
    let action = actions::REPLY.as_bytes();
    assert!(action.len() < 0x80);
    let mut field = [action.len() as u8; 1 + actions::REPLY.len()];
    let mut at = 0;
    while at < action.len() {
        field[1 + at] = action[at];
        at += 1;
    }
    field
};

impl<R: Serialize> Serialize for TransactedRef<'_, R> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStructVariant;
        let mut reply =
            serializer.serialize_struct_variant("Reply", REPLY_TRANSACTED, "Transacted", 2)?;
        reply.serialize_field("results", self.results)?;
        reply.serialize_field("versions", self.versions)?;
        reply.end()
    }
}

/// The answer to a [`TransactOne`] in its usual shape:
/// `Reply::Transacted` with exactly one result. It decodes from the same
/// bytes as that `Reply`, keeping the one result and reading past the new
/// versions, so neither list is allocated. Any other reply fails to decode
/// as this (the caller then decodes the general [`Reply`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactedOne(pub OpResult);

impl<'de> Deserialize<'de> for TransactedOne {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{self, EnumAccess, SeqAccess, VariantAccess, Visitor};

        /// The `results` list: exactly one element, taken out.
        struct OnlyResult;
        impl<'de> de::DeserializeSeed<'de> for OnlyResult {
            type Value = OpResult;
            fn deserialize<D: serde::Deserializer<'de>>(
                self,
                deserializer: D,
            ) -> Result<OpResult, D::Error> {
                deserializer.deserialize_seq(self)
            }
        }
        impl<'de> Visitor<'de> for OnlyResult {
            type Value = OpResult;
            fn expecting(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
                f.write_str("a list of one operation result")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OpResult, A::Error> {
                let only = seq
                    .next_element::<OpResult>()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                if seq.next_element::<OpResult>()?.is_some() {
                    return Err(de::Error::invalid_length(2, &self));
                }
                Ok(only)
            }
        }

        /// The `versions` list, read and dropped element by element.
        struct SkipVersions;
        impl<'de> de::DeserializeSeed<'de> for SkipVersions {
            type Value = ();
            fn deserialize<D: serde::Deserializer<'de>>(
                self,
                deserializer: D,
            ) -> Result<(), D::Error> {
                deserializer.deserialize_seq(self)
            }
        }
        impl<'de> Visitor<'de> for SkipVersions {
            type Value = ();
            fn expecting(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
                f.write_str("a list of new versions")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
                while seq.next_element::<(ObjectId, VersionId)>()?.is_some() {}
                Ok(())
            }
        }

        /// The fields of `Reply::Transacted`.
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = OpResult;
            fn expecting(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
                f.write_str("the fields of Reply::Transacted")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OpResult, A::Error> {
                let only = seq
                    .next_element_seed(OnlyResult)?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                seq.next_element_seed(SkipVersions)?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                Ok(only)
            }
        }

        /// The reply's variant: only `Transacted` is accepted.
        struct Variant;
        impl<'de> Visitor<'de> for Variant {
            type Value = OpResult;
            fn expecting(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
                f.write_str("Reply::Transacted")
            }
            fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<OpResult, A::Error> {
                let (variant, fields) = data.variant::<u32>()?;
                if variant != REPLY_TRANSACTED {
                    return Err(de::Error::invalid_value(
                        de::Unexpected::Unsigned(variant.into()),
                        &self,
                    ));
                }
                fields.struct_variant(TRANSACTED_FIELDS, Fields)
            }
        }

        const TRANSACTED_FIELDS: &[&str] = &["results", "versions"];
        deserializer
            .deserialize_enum("Reply", &["Transacted"], Variant)
            .map(TransactedOne)
    }
}

/// Action names, one per request, plus the reply's.
pub mod actions {
    pub const CREATE: &str = "storage.create";
    pub const BEGIN: &str = "storage.begin";
    pub const OP: &str = "storage.op";
    pub const COMMIT: &str = "storage.commit";
    pub const ROLLBACK: &str = "storage.rollback";
    pub const TRANSACT: &str = "storage.transact";
    pub const VERSIONS: &str = "storage.versions";
    pub const REVOKE: &str = "storage.revoke";
    pub const EXPORT: &str = "storage.export";
    pub const IMPORT: &str = "storage.import";
    pub const INFO: &str = "storage.info";
    pub const HOME: &str = "storage.home";
    pub const REPLY: &str = "storage.reply";
    /// Not a request: the action clients use when they move an
    /// [`ObjectCap`](crate::cap::ObjectCap) to each other (attached to the
    /// message, a kernel move).
    pub const CAP_DELEGATION: &str = "storage.cap";

    /// Every request action.
    pub const REQUESTS: [&str; 12] = [
        CREATE, BEGIN, OP, COMMIT, ROLLBACK, TRANSACT, VERSIONS, REVOKE, EXPORT, IMPORT, INFO, HOME,
    ];
}

/// One operation on the object a request is sent through, inside a
/// transaction.
///
/// `at: None` reads what the transaction sees (its snapshot plus its own
/// writes); `at: Some(v)` reads committed version `v`, which must be visible
/// in the snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// The version of the object the transaction sees (`READ`).
    Version,
    /// Fail with `VersionMismatch` unless the transaction sees `version`
    /// (`READ`).
    Expect { version: VersionId },
    /// A byte range of a blob (`READ`).
    ReadBlob {
        at: Option<VersionId>,
        offset: u64,
        max_len: u32,
    },
    /// Replace a blob's content (`WRITE`).
    WriteBlob {
        #[serde(with = "crate::wire_bytes")]
        bytes: Vec<u8>,
    },
    /// Append to the blob's next version, to build large blobs (`WRITE`).
    ExtendBlob {
        #[serde(with = "crate::wire_bytes")]
        bytes: Vec<u8>,
    },
    /// Append a record to a log (`WRITE`).
    Append {
        #[serde(with = "crate::wire_bytes")]
        record: Vec<u8>,
    },
    /// Records `start..` of a log (`READ`).
    ReadLog {
        at: Option<VersionId>,
        start: u64,
        max: u32,
    },
    /// Set a map key (`WRITE`).
    Put {
        #[serde(with = "crate::wire_bytes")]
        key: Vec<u8>,
        #[serde(with = "crate::wire_bytes")]
        value: Vec<u8>,
    },
    /// Read a map key (`READ`).
    Get {
        #[serde(with = "crate::wire_bytes")]
        key: Vec<u8>,
        at: Option<VersionId>,
    },
    /// Remove a map key (`WRITE`).
    Delete {
        #[serde(with = "crate::wire_bytes")]
        key: Vec<u8>,
    },
    /// Map keys after `start_after`, in order (`READ`).
    List {
        at: Option<VersionId>,
        #[serde(with = "crate::wire_bytes::option")]
        start_after: Option<Vec<u8>>,
        limit: u32,
    },
}

impl Op {
    /// The rights the capability must hold.
    pub fn required_rights(&self) -> Rights {
        match self {
            Op::WriteBlob { .. }
            | Op::ExtendBlob { .. }
            | Op::Append { .. }
            | Op::Put { .. }
            | Op::Delete { .. } => Rights::WRITE,
            _ => Rights::READ,
        }
    }
}

/// The result of one [`Op`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    /// `Version`.
    Version(VersionId),
    /// `Expect` held.
    Matched,
    /// `WriteBlob`, `ExtendBlob`, `Put`: the version the object gets at
    /// commit.
    Written(VersionId),
    /// `Append`: the version at commit and the record's index.
    Appended { version: VersionId, index: u64 },
    /// `ReadBlob`.
    Blob {
        version: VersionId,
        total_len: u64,
        offset: u64,
        #[serde(with = "crate::wire_bytes")]
        bytes: Vec<u8>,
    },
    /// `ReadLog`.
    Records {
        version: VersionId,
        total: u64,
        start: u64,
        #[serde(with = "crate::wire_bytes::list")]
        records: Vec<Vec<u8>>,
    },
    /// `Get`.
    Value {
        version: VersionId,
        #[serde(with = "crate::wire_bytes::option")]
        value: Option<Vec<u8>>,
    },
    /// `Delete`.
    Deleted { version: VersionId, existed: bool },
    /// `List`.
    Keys {
        version: VersionId,
        #[serde(with = "crate::wire_bytes::list")]
        keys: Vec<Vec<u8>>,
        more: bool,
    },
}

/// A request to the storage service. "Through a capability" means sent
/// with `send_to_object` on that object's capability (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Create an empty object; answers `Created` with a capability holding
    /// every object right plus `GRANT` and `TRANSFER`.
    Create { kind: ObjectKind },
    /// Begin a transaction owned by the sending task.
    Begin,
    /// Through a capability: one operation on its object in an active
    /// transaction of the sender's.
    Op { tx: TxId, op: Op },
    /// Commit; answers the new version of every object changed.
    Commit { tx: TxId },
    /// Discard the transaction.
    Rollback { tx: TxId },
    /// Through a capability: begin, run `ops` on its object in order,
    /// commit — in one message. If any op fails, the whole transaction is
    /// rolled back and the error returned.
    Transact { ops: Vec<Op> },
    /// Through a capability (`READ`): committed versions of its object
    /// after `after`, oldest first.
    Versions {
        after: Option<VersionId>,
        limit: u32,
    },
    /// Through a capability (`CONTROL`): void every capability and token
    /// for its object, and answer with a fresh full capability.
    Revoke,
    /// Through a capability (`GRANT`): a token with the capability's rights.
    Export,
    /// A kernel capability with the rights of `token` plus `TRANSFER` (it
    /// travels in the answer), if its tag verifies under the object's
    /// current epoch.
    Import { token: ObjectToken },
    /// Facts about the volume as a whole ([`StorageInfo`]); read-only, and
    /// it names no object (v2.1).
    Info,
    /// The volume's home map: its first Map object (the lowest id), made
    /// if it has none. It is the same object at every start of a volume on
    /// a disk, which is how the console finds what it stored before a
    /// reboot. Answers `Cap` with `READ | WRITE | TRANSFER` (never `GRANT`
    /// or `CONTROL`): it is a shared, well-known object, as readable and
    /// writable by every client of the service as `/tmp` is by every user;
    /// private data belongs in objects made with `Create`.
    Home,
}

impl Request {
    /// The envelope action for this request.
    pub fn action(&self) -> &'static str {
        match self {
            Request::Create { .. } => actions::CREATE,
            Request::Begin => actions::BEGIN,
            Request::Op { .. } => actions::OP,
            Request::Commit { .. } => actions::COMMIT,
            Request::Rollback { .. } => actions::ROLLBACK,
            Request::Transact { .. } => actions::TRANSACT,
            Request::Versions { .. } => actions::VERSIONS,
            Request::Revoke => actions::REVOKE,
            Request::Export => actions::EXPORT,
            Request::Import { .. } => actions::IMPORT,
            Request::Info => actions::INFO,
            Request::Home => actions::HOME,
        }
    }

    /// Whether the request must be sent through an object capability.
    pub fn needs_object(&self) -> bool {
        matches!(
            self,
            Request::Op { .. }
                | Request::Transact { .. }
                | Request::Versions { .. }
                | Request::Revoke
                | Request::Export
        )
    }
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The new object; its capability is attached.
    Created {
        grant: ObjectGrant,
        version: VersionId,
    },
    Begun {
        tx: TxId,
        snapshot: CommitSeq,
    },
    Op(OpResult),
    Committed {
        versions: Vec<(ObjectId, VersionId)>,
    },
    RolledBack,
    Transacted {
        results: Vec<OpResult>,
        versions: NewVersions,
    },
    Versions(Vec<VersionId>),
    /// A capability (`Revoke`, `Import`); it is attached.
    Cap(ObjectGrant),
    /// `Export`.
    Token(ObjectToken),
    /// `Info`.
    Info(StorageInfo),
}

/// The answer to [`Request::Info`]: facts about the volume, not about any
/// object, so any client of the service may ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageInfo {
    /// The last commit made durable.
    pub last_commit: CommitSeq,
    /// How many times the backend compacted its durable history (for the
    /// journal on a block device: its superblock generation). It survives
    /// restarts; a backend that never compacts answers 0.
    pub compactions: u64,
}

impl Reply {
    /// The capability this answer carries, if any.
    pub fn grant(&self) -> Option<ObjectGrant> {
        match self {
            Reply::Created { grant, .. } | Reply::Cap(grant) => Some(*grant),
            _ => None,
        }
    }
}

/// The new version of each object a commit changed.
pub type NewVersions = Vec<(ObjectId, VersionId)>;

/// The payload of every answer.
pub type Response = Result<Reply, StorageError>;

/// The most versions one `Versions` answer lists.
pub const MAX_VERSIONS_PER_REPLY: usize = 512;

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn encoded<R: Serialize + ?Sized>(request: &R) -> Vec<u8> {
        postcard::to_allocvec(&RequestPayloadRef {
            request,
            session: Some(3),
        })
        .unwrap()
    }

    /// A borrowed put or get is the same request on the wire as the owned
    /// `Transact` it stands for, and the server decodes it as that.
    #[test]
    fn a_borrowed_single_op_encodes_as_its_transact() {
        let key = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        let value = [0x5a; 16];
        let cases = [
            (
                OpRef::Put {
                    key: &key,
                    value: &value,
                },
                Op::Put {
                    key: key.to_vec(),
                    value: value.to_vec(),
                },
            ),
            (
                OpRef::Get {
                    key: &key,
                    at: None,
                },
                Op::Get {
                    key: key.to_vec(),
                    at: None,
                },
            ),
            (
                OpRef::Get {
                    key: &[],
                    at: Some(VersionId::from_raw(300)),
                },
                Op::Get {
                    key: Vec::new(),
                    at: Some(VersionId::from_raw(300)),
                },
            ),
        ];
        for (borrowed, owned) in cases {
            let request = Request::Transact { ops: vec![owned] };
            let bytes = encoded(&TransactOne(borrowed));
            assert_eq!(bytes, encoded(&request), "{borrowed:?}");
            let decoded: RequestPayload = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(decoded.request, request);
            assert_eq!(decoded.session, Some(3));
            // And the server reads it in place as what it is.
            let one = OneOpPayload::decode(&bytes).unwrap();
            assert_eq!(
                one,
                OneOpPayload {
                    op: borrowed,
                    session: Some(3)
                }
            );
            assert_eq!(one.op.to_op(), request_op(&request));
            assert_eq!(
                one.op.required_rights(),
                request_op(&request).required_rights()
            );
        }
    }

    fn request_op(request: &Request) -> Op {
        match request {
            Request::Transact { ops } => ops[0].clone(),
            other => panic!("{other:?}"),
        }
    }

    /// Only a `Transact` of exactly one put or get, with a session field
    /// and nothing after it, is read in place; the server decodes any
    /// other payload the general way.
    #[test]
    fn only_one_put_or_get_is_read_in_place() {
        let put = Op::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        };
        let transact = |ops| Request::Transact { ops };
        let refused = [
            transact(vec![]),
            transact(vec![put.clone(), put.clone()]),
            transact(vec![Op::Delete { key: b"k".to_vec() }]),
            transact(vec![Op::Version]),
            Request::Begin,
            Request::Op {
                tx: TxId::from_raw(1),
                op: put.clone(),
            },
        ];
        for request in &refused {
            assert_eq!(OneOpPayload::decode(&encoded(request)), None, "{request:?}");
        }
        let one = encoded(&transact(vec![put.clone()]));
        assert!(OneOpPayload::decode(&one).is_some());
        // Without its session (a v2.1 payload), cut short, or lengthened.
        let bare = postcard::to_allocvec(&transact(vec![put])).unwrap();
        assert_eq!(OneOpPayload::decode(&bare), None);
        assert_eq!(OneOpPayload::decode(&one[..one.len() - 1]), None);
        let mut longer = one.clone();
        longer.push(0);
        assert_eq!(OneOpPayload::decode(&longer), None);
        let no_session = encoded_with(
            &transact(vec![Op::Get {
                key: vec![],
                at: None,
            }]),
            None,
        );
        assert_eq!(
            OneOpPayload::decode(&no_session).map(|p| p.session),
            Some(None)
        );
    }

    fn encoded_with<R: Serialize + ?Sized>(request: &R, session: Option<u32>) -> Vec<u8> {
        postcard::to_allocvec(&RequestPayloadRef { request, session }).unwrap()
    }

    /// Postcard's varint of `value`, made `pad` bytes longer than it
    /// needs (continuation bits on zero groups), as a sender may write it.
    fn padded_varint(value: u64, pad: usize) -> Vec<u8> {
        let mut out = Vec::new();
        crate::wire_bytes::push_varint(&mut out, value);
        for _ in 0..pad {
            *out.last_mut().unwrap() |= 0x80;
            out.push(0);
        }
        out
    }

    /// A number near the edges the reader checks: the tags it wants and
    /// their neighbours, small lengths, the widths of `u32` and `u64`.
    fn number() -> impl proptest::strategy::Strategy<Value = u64> {
        use proptest::prelude::*;
        prop_oneof![
            4 => 0u64..10,
            1 => prop::sample::select(vec![
                127u64, 128, 300, u64::from(u32::MAX), u64::from(u32::MAX) + 1, u64::MAX,
            ]),
            1 => any::<u64>(),
        ]
    }

    /// One piece of a payload: a varint (padded or not), an option tag, a
    /// byte string with its (right or wrong) length, or raw bytes.
    fn piece() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        prop_oneof![
            3 => (number(), prop_oneof![4 => Just(0usize), 1 => 0usize..10])
                .prop_map(|(n, pad)| padded_varint(n, pad)),
            1 => prop::sample::select(vec![0u8, 1, 2, 0x80, 0xff]).prop_map(|b| vec![b]),
            2 => (prop::collection::vec(any::<u8>(), 0..20), prop_oneof![
                    4 => Just(None),
                    1 => number().prop_map(Some),
                ])
                .prop_map(|(bytes, len)| {
                    let mut out = padded_varint(len.unwrap_or(bytes.len() as u64), 0);
                    out.extend_from_slice(&bytes);
                    out
                }),
            1 => prop::collection::vec(any::<u8>(), 0..6),
        ]
    }

    /// Real request payloads: one-operation transacts among others, with
    /// and without their session field.
    fn real_payload() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let key = || prop::collection::vec(any::<u8>(), 0..12);
        let op = prop_oneof![
            (key(), key()).prop_map(|(key, value)| Op::Put { key, value }),
            (key(), prop::option::of(number())).prop_map(|(key, at)| Op::Get {
                key,
                at: at.map(VersionId::from_raw)
            }),
            key().prop_map(|key| Op::Delete { key }),
            Just(Op::Version),
        ];
        let request = prop_oneof![
            4 => prop::collection::vec(op.clone(), 1..2).prop_map(|ops| Request::Transact { ops }),
            1 => prop::collection::vec(op.clone(), 0..3).prop_map(|ops| Request::Transact { ops }),
            1 => op.prop_map(|op| Request::Op { tx: TxId::from_raw(1), op }),
            1 => Just(Request::Begin),
        ];
        (
            request,
            prop::option::of(number().prop_map(|n| n as u32)),
            prop::option::of(any::<bool>()),
        )
            .prop_map(|(request, session, with_field)| match with_field {
                // A v2.1 payload: the bare request.
                None => postcard::to_allocvec(&request).unwrap(),
                Some(_) => encoded_with(&request, session),
            })
    }

    /// Payloads the reader must judge as serde does: real requests, cut,
    /// lengthened or with a byte changed; payloads put together from the
    /// pieces it reads; and any bytes.
    fn payload() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let byte = prop_oneof![
            prop::sample::select(vec![0u8, 1, 2, 7, 8, 0x0f, 0x10, 0x7f, 0x80, 0xff]),
            any::<u8>(),
        ];
        let mutated = (real_payload(), any::<prop::sample::Index>(), byte, 0u8..5).prop_map(
            |(mut bytes, at, byte, how)| {
                match how {
                    0 => bytes.truncate(at.index(bytes.len() + 1)),
                    1 => bytes.push(byte),
                    2 | 3 if !bytes.is_empty() => {
                        let i = at.index(bytes.len());
                        // Another byte, or the next or previous value.
                        bytes[i] = match (how, byte % 2) {
                            (2, _) => byte,
                            (_, 0) => bytes[i].wrapping_add(1),
                            _ => bytes[i].wrapping_sub(1),
                        };
                    }
                    _ => bytes.insert(at.index(bytes.len() + 1), byte),
                }
                bytes
            },
        );
        let pieced = (
            prop_oneof![3 => Just(vec![5u8, 1]), 1 => Just(vec![5u8]), 1 => Just(vec![])],
            prop::collection::vec(piece(), 0..7),
        )
            .prop_map(|(head, pieces)| {
                let mut out = head;
                for piece in pieces {
                    out.extend_from_slice(&piece);
                }
                out
            });
        prop_oneof![
            3 => real_payload(),
            3 => mutated,
            3 => pieced,
            1 => prop::collection::vec(any::<u8>(), 0..40),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]
        /// The hand-written reader of a one-operation request accepts
        /// exactly the payloads serde's decode accepts, as the same
        /// request, and refuses the others.
        #[test]
        fn the_one_operation_reader_is_serdes(bytes in payload()) {
            proptest::prop_assert_eq!(
                OneOpPayload::decode(&bytes),
                OneOpPayload::decode_serde(&bytes)
            );
        }
    }

    /// The edges of postcard's varints, where the reader and serde must
    /// agree: padded, full-width and over-wide tags, lengths, versions and
    /// sessions.
    #[test]
    fn the_one_operation_reader_agrees_at_the_varints_edges() {
        // A put of key "k" and value "v" and a get of key "k" at version
        // 9, session 3, as parts: `None` is a varint (its value), `Some` is
        // raw bytes.
        let put: [(Option<&[u8]>, u64); 9] = [
            (None, 5),
            (None, 1),
            (None, 7),
            (None, 1),
            (Some(b"k"), 0),
            (None, 1),
            (Some(b"v"), 0),
            (Some(&[1]), 0),
            (None, 3),
        ];
        let get: [(Option<&[u8]>, u64); 8] = [
            (None, 5),
            (None, 1),
            (None, 8),
            (None, 1),
            (Some(b"k"), 0),
            (Some(&[1]), 0),
            (None, 9),
            (Some(&[1, 3]), 0),
        ];
        let values = [
            0u64,
            1,
            3,
            5,
            7,
            8,
            9,
            127,
            128,
            u64::from(u32::MAX),
            u64::from(u32::MAX) + 1,
            u64::MAX,
        ];
        let mut accepted = 0;
        for parts in [&put[..], &get[..]] {
            for field in 0..parts.len() {
                if parts[field].0.is_some() {
                    continue;
                }
                for value in values {
                    for pad in 0..11 {
                        // The field's varint as given, and with its last
                        // byte just over a `u64`'s or a `u32`'s top bits
                        // (when it has ten or five bytes).
                        let varint = padded_varint(value, pad);
                        let wide = |top: u8| {
                            let mut wide = varint.clone();
                            *wide.last_mut().unwrap() |= top;
                            wide
                        };
                        for varint in [&varint, &wide(0x02), &wide(0x10)] {
                            let mut bytes = Vec::new();
                            for (at, (raw, number)) in parts.iter().enumerate() {
                                match raw {
                                    Some(raw) => bytes.extend_from_slice(raw),
                                    None if at == field => bytes.extend_from_slice(varint),
                                    None => bytes.extend_from_slice(&padded_varint(*number, 0)),
                                }
                            }
                            let decoded = OneOpPayload::decode(&bytes);
                            assert_eq!(decoded, OneOpPayload::decode_serde(&bytes), "{bytes:x?}");
                            accepted += usize::from(decoded.is_some());
                        }
                    }
                }
            }
        }
        // Padded varints are accepted (by both), not only minimal ones.
        assert!(accepted > 11 * 11, "{accepted}");
    }

    proptest::proptest! {
        /// A put's answer written by hand is the `Response` postcard
        /// writes, within its bound.
        #[test]
        fn a_put_answer_is_the_response(
            object in proptest::prop_oneof![0u64..300, proptest::prelude::any::<u64>()],
            version in proptest::prop_oneof![0u64..300, proptest::prelude::any::<u64>()],
        ) {
            let (object, version) = (ObjectId::from_raw(object), VersionId::from_raw(version));
            let response: Response = Ok(Reply::Transacted {
                results: vec![OpResult::Written(version)],
                versions: vec![(object, version)],
            });
            let mut out = vec![0xee];
            push_put_answer(&mut out, object, version);
            proptest::prop_assert_eq!(&out, &postcard::to_extend(&response, vec![0xee]).unwrap());
            proptest::prop_assert!(out.len() - 1 <= PUT_ANSWER_MAX);
        }
    }

    proptest::proptest! {
        /// A get's answer written by hand is the `Response` postcard
        /// writes, within its bound.
        #[test]
        fn a_get_answer_is_the_response(
            version in proptest::prop_oneof![0u64..300, proptest::prelude::any::<u64>()],
            value in proptest::option::of(proptest::collection::vec(0u8..=255, 0..300)),
        ) {
            let version = VersionId::from_raw(version);
            let response: Response = Ok(Reply::Transacted {
                results: vec![OpResult::Value { version, value: value.clone() }],
                versions: Vec::new(),
            });
            let mut out = vec![0xee];
            push_get_answer(&mut out, version, value.as_deref());
            proptest::prop_assert_eq!(&out, &postcard::to_extend(&response, vec![0xee]).unwrap());
            let len = value.as_ref().map_or(0, Vec::len);
            proptest::prop_assert!(out.len() - 1 <= GET_ANSWER_OVERHEAD + len);
        }
    }

    proptest::proptest! {
        /// An answer framed in place is the encoding of the envelope
        /// `MessageEnvelope::reply_to` makes, for any request header and
        /// any payload up to the limit (lengths of one, two and three
        /// varint bytes).
        #[test]
        fn an_answer_framed_in_place_is_the_reply_envelope_encoded(
            id in proptest::prelude::any::<u64>(),
            destination in proptest::prelude::any::<u64>(),
            source in proptest::option::of(proptest::prelude::any::<u64>()),
            action in "[a-z.]{0,20}",
            major in proptest::prelude::any::<u32>(),
            minor in proptest::prelude::any::<u32>(),
            correlation in proptest::option::of(proptest::prelude::any::<u64>()),
            len in proptest::prop_oneof![
                0usize..300,
                16_000usize..=pandagen_abi::envelope::MAX_PAYLOAD_BYTES
            ],
            byte in proptest::prelude::any::<u8>(),
            reply_id in proptest::prelude::any::<u64>(),
        ) {
            use pandagen_abi::{MessagePayload, ServiceId, TaskId};
            let mut request = MessageEnvelope::new(
                ServiceId::from_raw(destination),
                action,
                SchemaVersion::new(major, minor),
                MessagePayload::from_bytes(vec![1, 2, 3]).unwrap(),
            );
            request.id = MessageId::from_raw(id);
            request.source = source.map(TaskId::from_raw);
            request.correlation_id = correlation.map(MessageId::from_raw);
            let payload = vec![byte; len];
            let mut expected = MessageEnvelope::reply_to(
                &request,
                actions::REPLY,
                MessagePayload::from_bytes(payload.clone()).unwrap(),
            );
            expected.id = MessageId::from_raw(reply_id);
            let mut frame = vec![0xee; FRAME_HEADROOM];
            frame.extend_from_slice(&payload);
            let start =
                frame_reply_header(&mut frame, MessageId::from_raw(reply_id), &request, len);
            proptest::prop_assert_eq!(&frame[start..], &expected.encode().unwrap()[..]);
        }
    }

    /// The borrowed `Transacted` encodes as the reply it stands for.
    #[test]
    fn a_borrowed_transacted_reply_encodes_as_the_reply() {
        let version = VersionId::from_raw(300);
        let results = [
            OpResult::Written(version),
            OpResult::Value {
                version,
                value: Some(b"v".to_vec()),
            },
        ];
        let versions = [
            (ObjectId::from_raw(1), version),
            (ObjectId::from_raw(2), version),
        ];
        for n in 0..=2 {
            let borrowed: Result<_, StorageError> = Ok(TransactedRef {
                results: &results[..n],
                versions: &versions[..n],
            });
            let owned: Response = Ok(Reply::Transacted {
                results: results[..n].to_vec(),
                versions: versions[..n].to_vec(),
            });
            assert_eq!(
                postcard::to_allocvec(&borrowed).unwrap(),
                postcard::to_allocvec(&owned).unwrap()
            );
        }
        // A value lent, or none, as the owned result.
        for value in [None, Some(&b""[..]), Some(&[7u8; 300][..])] {
            let lent = [OpResultRef::Value { version, value }];
            let borrowed: Result<_, StorageError> = Ok(TransactedRef {
                results: &lent,
                versions: &[],
            });
            let owned: Response = Ok(Reply::Transacted {
                results: vec![OpResult::Value {
                    version,
                    value: value.map(<[u8]>::to_vec),
                }],
                versions: Vec::new(),
            });
            assert_eq!(
                postcard::to_allocvec(&borrowed).unwrap(),
                postcard::to_allocvec(&owned).unwrap()
            );
        }
    }

    /// A one-result `Transacted` reply decodes as [`TransactedOne`] from
    /// the general reply's bytes, to the same result, whatever its new
    /// versions; every other answer fails to (or, an error, stays one).
    #[test]
    fn transacted_one_decodes_the_general_reply_of_one_result() {
        use pandagen_abi::evolve::answer_from_bytes;
        type One = Result<TransactedOne, StorageError>;
        let version = VersionId::from_raw(7);
        let results = [
            OpResult::Written(version),
            OpResult::Value {
                version,
                value: Some(b"value".to_vec()),
            },
            OpResult::Value {
                version,
                value: None,
            },
            OpResult::Records {
                version,
                total: 3,
                start: 1,
                records: vec![b"a".to_vec(), Vec::new()],
            },
        ];
        let version_lists = [
            Vec::new(),
            vec![(ObjectId::from_raw(1), version)],
            vec![
                (ObjectId::from_raw(1), version),
                (ObjectId::from_raw(300), VersionId::from_raw(1 << 40)),
            ],
        ];
        for result in &results {
            for versions in &version_lists {
                let reply: Response = Ok(Reply::Transacted {
                    results: vec![result.clone()],
                    versions: versions.clone(),
                });
                let bytes = postcard::to_allocvec(&reply).unwrap();
                let one: One = answer_from_bytes(&bytes).unwrap();
                assert_eq!(one, Ok(TransactedOne(result.clone())), "{reply:?}");
            }
        }
        let error: Response = Err(StorageError::UnknownObject(ObjectId::from_raw(9)));
        let bytes = postcard::to_allocvec(&error).unwrap();
        assert_eq!(
            answer_from_bytes::<One>(&bytes).unwrap(),
            Err(StorageError::UnknownObject(ObjectId::from_raw(9)))
        );
        // The second of these would read as a list of two versions if the
        // extra result were not refused.
        let one_version = vec![(ObjectId::from_raw(3), VersionId::from_raw(4))];
        let others: [Response; 5] = [
            Ok(Reply::Transacted {
                results: Vec::new(),
                versions: Vec::new(),
            }),
            Ok(Reply::Transacted {
                results: vec![
                    OpResult::Written(VersionId::from_raw(1)),
                    OpResult::Written(VersionId::from_raw(1)),
                ],
                versions: one_version,
            }),
            Ok(Reply::Transacted {
                results: vec![OpResult::Matched, OpResult::Written(version)],
                versions: Vec::new(),
            }),
            Ok(Reply::Op(OpResult::Written(version))),
            Ok(Reply::Versions(vec![version])),
        ];
        for other in others {
            let bytes = postcard::to_allocvec(&other).unwrap();
            assert!(answer_from_bytes::<One>(&bytes).is_err(), "{other:?}");
        }
    }
}
