//! The storage server: decodes requests, checks capabilities, runs them on
//! the [`ObjectStore`] and answers.
//!
//! [`StorageServer::respond`] is the pure step (envelope and kernel stamp
//! in, [`Answer`] out); [`StorageServer::handle`] adds the kernel side of
//! one request (take the reply capability, mint the capability the answer
//! grants, send, drop the reply capability); [`StorageServer::serve`]
//! loops.
//!
//! # Authority
//!
//! A request about one object is authorized by the badge the kernel
//! stamped on it (see [`cap`](crate::cap)): the badge names the object and
//! its capability epoch, the stamp's rights say what the sender's
//! capability allows. Nothing in the payload names an object, so nothing a
//! client writes can point the server at another one.
//!
//! # Idempotent retries
//!
//! The server remembers the answers to the last [`ANSWER_CACHE`] requests,
//! keyed by (sending task, message id). A client that timed out and re-sends
//! the same envelope gets the remembered answer: a commit or an append is
//! never executed twice because a reply was lost. A `Transact` that wrote
//! nothing (a read) is not remembered: its re-send runs it again, which
//! changes nothing either.
//!
//! Requests that commit (`Create`, `Commit`, a writing `Transact`,
//! `Revoke`) store their answer in the commit record itself (see
//! [`Origin`]), so the guarantee survives a restart of the service: if the
//! storage task dies after a commit became durable but before its answer
//! reached the client, the re-sent request is answered from the journal by
//! the next instance, not executed again. The journal keeps the answers of
//! the last [`DURABLE_ANSWERS`](crate::store::DURABLE_ANSWERS) such commits
//! (more than [`ANSWER_CACHE`]), so a writing `Commit` or `Transact`, whose
//! answer is in its record, is not remembered twice.
//!
//! # Transactions over IPC
//!
//! A transaction belongs to the task that began it (the kernel-stamped
//! sender); another task naming its id gets `NotActive`. A failed operation
//! leaves the transaction active (the client may go on or roll back),
//! except a conflict, which rolls it back. Transactions idle for longer
//! than the server's timeout are rolled back, so a client that dies
//! mid-transaction cannot pin server memory.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use core::cell::Cell;
use pandagen_abi::envelope::{MAX_PAYLOAD_BYTES, PAYLOAD_START_CAPACITY};
use pandagen_abi::services::STORAGE;
use pandagen_abi::{
    Badge, Cap, CapHandle, ChannelId, Duration, EnvelopeError, Instant, KernelApi, KernelError,
    MessageEnvelope, MessageId, MessagePayload, ReceivedMessage, Rights, TaskId,
};
use serde::Serialize;

use crate::backend::{RecoveryReport, StorageBackend};
use crate::cap::{CapAuthority, ObjectBadge, ObjectGrant, OBJECT_CAP_RIGHTS};
use crate::error::StorageError;
use crate::ids::{ObjectId, VersionId};
use crate::limits;
use crate::object::ObjectKind;

/// The rights of a capability for the home map (see `Request::Home`).
const HOME_RIGHTS: Rights =
    Rights::from_bits(Rights::READ.bits() | Rights::WRITE.bits() | Rights::TRANSFER.bits());
use crate::protocol::{
    actions, frame_reply_header, push_get_answer, push_put_answer, OneOpPayload, Op, OpRef,
    OpResult, OpResultRef, Reply, Request, RequestPayload, Response, StorageInfo, TransactedRef,
    FRAME_HEADROOM, GET_ANSWER_OVERHEAD, MAX_VERSIONS_PER_REPLY, PUT_ANSWER_MAX, VERSION_POLICY,
};
use crate::record::Origin;
use crate::store::ObjectStore;
use crate::transaction::Transaction as StoreTx;
use crate::transaction::TransactionalStorage;

/// How many answers the server remembers for retried requests.
pub const ANSWER_CACHE: usize = 64;
/// How many client sessions (standing reply capabilities, see the
/// protocol's *Sessions*) the server keeps; opening one more drops the
/// longest-open one.
pub const MAX_SESSIONS: usize = 64;

/// How many of [`MAX_SESSIONS`] one task may hold (a client uses one per
/// `StorageClient`); opening more closes that task's own oldest.
pub const MAX_SESSIONS_PER_TASK: usize = 4;
/// The default idle timeout of a transaction, in kernel time.
pub const DEFAULT_TX_TIMEOUT: Duration = Duration::from_secs(30);

/// Why one request could not be answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandleError {
    /// The request carried no reply capability; it was not executed.
    NoReplyChannel,
    /// The answer could not be sent (the client's queue is full or gone).
    Send(KernelError),
}

/// The answer to one request: the envelope to send and the capability it
/// grants (minted by [`StorageServer::handle`] and attached to it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub envelope: MessageEnvelope,
    pub grant: Option<ObjectGrant>,
}

/// A remembered answer's payload (a [`Response`] from an earlier
/// execution) and the grant read back from it.
fn remembered(payload: MessagePayload) -> (MessagePayload, Option<ObjectGrant>) {
    let grant = payload
        .decode::<Response>()
        .ok()
        .and_then(|r| r.ok())
        .and_then(|reply| reply.grant());
    (payload, grant)
}

impl Answer {
    /// The answer to `request` with payload `payload`, granting `grant`.
    fn new(request: &MessageEnvelope, payload: MessagePayload, grant: Option<ObjectGrant>) -> Self {
        Answer {
            envelope: MessageEnvelope::reply_to(request, actions::REPLY, payload),
            grant,
        }
    }

    /// [`Answer::new`] to a request the server is done with: its action
    /// string's block holds the answer's action (no allocation for it,
    /// none freed with the request).
    fn replacing(
        mut request: MessageEnvelope,
        payload: MessagePayload,
        grant: Option<ObjectGrant>,
    ) -> Self {
        let mut action = core::mem::take(&mut request.action);
        action.clear();
        action.push_str(actions::REPLY);
        Answer {
            envelope: MessageEnvelope::reply_to(&request, action, payload),
            grant,
        }
    }

    /// The typed answer, for tests and scenario drivers.
    pub fn response(&self) -> Result<Response, pandagen_abi::EnvelopeError> {
        self.envelope.payload.decode()
    }
}

/// `MessagePayload::new(value)`: the same bytes, encoded with
/// [`wire_bytes::encode_with_capacity`](crate::wire_bytes::encode_with_capacity).
fn payload_of<T: Serialize + ?Sized>(value: &T) -> Result<MessagePayload, EnvelopeError> {
    let bytes = crate::wire_bytes::encode_with_capacity(value, PAYLOAD_START_CAPACITY)
        .map_err(|_| EnvelopeError::EncodeFailed)?;
    MessagePayload::from_bytes(bytes)
}

/// The origin to record with a commit answered by `reply` (none for a
/// request without a kernel-stamped sender).
fn origin(asker: Option<(u64, u64)>, reply: &Reply) -> Option<Origin> {
    let (task, message) = asker?;
    // Encoded as the `Response` `Ok(reply)` (a reference encodes as what
    // it refers to), without copying the reply into one.
    let response: Result<&Reply, StorageError> = Ok(reply);
    let answer = payload_of(&response).ok()?;
    Some(Origin {
        task,
        message,
        answer: answer.into_bytes(),
    })
}

/// The origin to record with a commit answered by `reply`, if the commit
/// writes anything: a read-only commit leaves no record to keep it in, so
/// its answer is not encoded for one.
fn writes_origin(asker: Option<(u64, u64)>, reply: &Reply) -> Option<Origin> {
    let versions = match reply {
        Reply::Committed { versions } | Reply::Transacted { versions, .. } => versions,
        _ => return origin(asker, reply),
    };
    if versions.is_empty() {
        None
    } else {
        origin(asker, reply)
    }
}

/// Whether `reply` fits in an answer's payload (with room for the
/// `Response` around it).
fn fits<R: Serialize + ?Sized>(reply: &R) -> bool {
    let counter = postcard::ser_flavors::Size::default();
    let size = postcard::serialize_with_flavor::<_, _, usize>(reply, counter).unwrap_or(usize::MAX);
    size <= MAX_PAYLOAD_BYTES - 64
}

/// A one-`Get` reply whose value is within [`limits::MAX_VALUE_BYTES`]
/// fits without being measured: the value and its length prefix, the
/// version and a few tag bytes.
const _: () = assert!(limits::MAX_VALUE_BYTES + 64 <= MAX_PAYLOAD_BYTES - 64);

/// Remembered answers, oldest evicted first.
#[derive(Debug, Default)]
struct AnswerCache {
    answers: BTreeMap<(TaskId, MessageId), MessagePayload>,
    order: VecDeque<(TaskId, MessageId)>,
    /// The largest message id ever remembered (never lowered): a request
    /// with a larger one, a counting client's usual case, has no answer
    /// here and needs no search (as the durable answers' `Answers`).
    newest: u64,
}

impl AnswerCache {
    fn get(&self, key: &(TaskId, MessageId)) -> Option<&MessagePayload> {
        if key.1.as_raw() > self.newest {
            return None;
        }
        self.answers.get(key)
    }

    fn insert(&mut self, key: (TaskId, MessageId), answer: MessagePayload) {
        self.newest = self.newest.max(key.1.as_raw());
        if self.answers.insert(key, answer).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > ANSWER_CACHE {
            if let Some(old) = self.order.pop_front() {
                self.answers.remove(&old);
            }
        }
    }
}

/// The standing reply capability of each open session, keyed by the
/// kernel-stamped sending task and the client's session number.
#[derive(Debug, Default)]
struct Sessions {
    replies: BTreeMap<(TaskId, u32), Cap<()>>,
    /// Opening order, oldest first: the one dropped to make room.
    order: VecDeque<(TaskId, u32)>,
    /// The session `get` last found, while no session opens or closes:
    /// a client's requests come one after another on one session, and
    /// each but the first then needs no search.
    last: Cell<Option<((TaskId, u32), CapHandle)>>,
}

impl Sessions {
    fn get(&self, key: &(TaskId, u32)) -> Option<CapHandle> {
        if let Some((last, handle)) = self.last.get() {
            if last == *key {
                return Some(handle);
            }
        }
        let handle = self.replies.get(key).map(Cap::handle)?;
        self.last.set(Some((*key, handle)));
        Some(handle)
    }

    /// Make `reply` the session's reply capability. Returns the
    /// capabilities it replaces or evicts, for the caller to drop.
    fn open(&mut self, key: (TaskId, u32), reply: Cap<()>) -> Vec<Cap<()>> {
        self.last.set(None);
        let mut released = Vec::new();
        match self.replies.insert(key, reply) {
            Some(old) => released.push(old),
            None => self.order.push_back(key),
        }
        // A task past its share closes its own oldest session, so no one
        // task can push the others' sessions out.
        let task = key.0;
        if self.order.iter().filter(|k| k.0 == task).count() > MAX_SESSIONS_PER_TASK {
            if let Some(at) = self.order.iter().position(|k| k.0 == task) {
                let oldest = self.order.remove(at).expect("position is in range");
                released.extend(self.replies.remove(&oldest));
            }
        }
        while self.order.len() > MAX_SESSIONS {
            if let Some(old) = self.order.pop_front() {
                released.extend(self.replies.remove(&old));
            }
        }
        released
    }

    /// Forget the session (its reply channel failed); its capability, for
    /// the caller to drop.
    fn close(&mut self, key: &(TaskId, u32)) -> Option<Cap<()>> {
        self.last.set(None);
        let reply = self.replies.remove(key)?;
        self.order.retain(|k| k != key);
        Some(reply)
    }
}

/// Where the answer to one request goes.
#[derive(Debug)]
enum ReplyTo {
    /// The reply capability the request carried: used once, then dropped.
    Once(Cap<()>),
    /// The standing reply capability of the requester's session: kept.
    Session((TaskId, u32), CapHandle),
}

/// What a request's execution answers.
enum Executed {
    /// A reply, to be encoded (or copied from its journal record).
    Reply(Reply),
    /// The answer already encoded, granting nothing (a put or a get by
    /// its own path: the same bytes as its reply's), in the server's
    /// frame buffer after [`FRAME_HEADROOM`], within `MAX_PAYLOAD_BYTES`;
    /// `read_only` for a transaction that wrote nothing.
    Framed { read_only: bool },
}

/// An answer's payload: its own, or in the server's frame buffer (see
/// [`Executed::Framed`]).
enum Payload {
    Owned(MessagePayload),
    Framed,
}

/// What goes back for a request: an answer envelope, or the request
/// itself (its allocations to be reused) with the answer's payload in the
/// frame buffer, granting nothing.
enum Outgoing {
    Answer(Answer),
    Framed(MessageEnvelope),
}

/// A request's payload, decoded once, or why it cannot be executed.
enum Decoded<'a> {
    /// A `Transact` of one put or get, read in place from the payload.
    One(OneOpPayload<'a>),
    /// Any request, decoded into its own values.
    Full(Result<RequestPayload, StorageError>),
}

impl Decoded<'_> {
    /// The client's session number, if the request names one.
    fn session(&self) -> Option<u32> {
        match self {
            Decoded::One(one) => one.session,
            Decoded::Full(Ok(payload)) => payload.session,
            Decoded::Full(Err(_)) => None,
        }
    }
}

/// Decode the request in `envelope`: a one-operation put or get in
/// place, if it is one of the current schema, else [`decode_full`].
fn decode_request(envelope: &MessageEnvelope) -> Decoded<'_> {
    let current = VERSION_POLICY
        .check(STORAGE, envelope.schema_version)
        .is_ok();
    if current && envelope.action == actions::TRANSACT {
        if let Some(one) = OneOpPayload::decode(envelope.payload.as_bytes()) {
            return Decoded::One(one);
        }
    }
    Decoded::Full(decode_full(envelope))
}

/// Decode the request in `envelope`: its schema version, its action and
/// its payload, which must agree.
fn decode_full(envelope: &MessageEnvelope) -> Result<RequestPayload, StorageError> {
    VERSION_POLICY
        .check(STORAGE, envelope.schema_version)
        .map_err(StorageError::SchemaMismatch)?;
    if !actions::REQUESTS.contains(&envelope.action.as_str()) {
        return Err(StorageError::UnknownAction);
    }
    // A request variant this version does not know (a newer client's
    // operation) is an unknown action, not a broken payload.
    let payload: RequestPayload = envelope.payload.decode().map_err(|e| {
        if e.is_unknown_variant() {
            StorageError::UnknownAction
        } else {
            StorageError::MalformedPayload
        }
    })?;
    if payload.request.action() != envelope.action {
        return Err(StorageError::ActionMismatch);
    }
    Ok(payload)
}

/// The storage service.
#[derive(Debug)]
pub struct StorageServer<B: StorageBackend> {
    store: ObjectStore<B>,
    caps: CapAuthority,
    answered: AnswerCache,
    sessions: Sessions,
    /// The latest clock reading, in nanoseconds (see [`Self::execute`]).
    clock: u64,
    /// Whether the request being executed committed a record that keeps
    /// its answer (so the answer cache need not).
    answer_in_journal: bool,
    tx_timeout: Duration,
    /// An answer framed in place: [`FRAME_HEADROOM`] bytes for the
    /// envelope's header, then the payload (see [`Executed::Framed`]).
    frame: Vec<u8>,
    /// Tests only: send one-operation `Transact`s down the general path.
    #[cfg(test)]
    general_only: bool,
    /// Mixed into the task half of every durable answer's key: task and
    /// message ids restart at every boot, and a journal on a disk outlives
    /// the boot, so without it a request after a reboot could be taken for
    /// the retry of one before (and answered with that one's answer).
    boot: u64,
}

impl<B: StorageBackend> StorageServer<B> {
    /// Open `backend`, replaying its journal (see [`ObjectStore::open`]).
    pub fn open(backend: B) -> Result<(Self, RecoveryReport), StorageError> {
        let caps = CapAuthority::new(backend.cap_key());
        let (store, report) = ObjectStore::open(backend)?;
        let server = StorageServer {
            store,
            caps,
            answered: AnswerCache::default(),
            sessions: Sessions::default(),
            clock: 0,
            answer_in_journal: false,
            tx_timeout: DEFAULT_TX_TIMEOUT,
            frame: alloc::vec![0; FRAME_HEADROOM],
            #[cfg(test)]
            general_only: false,
            boot: 0,
        };
        Ok((server, report))
    }

    /// Tell the server which boot this is (a value that differs between
    /// boots and is the same for every instance within one): durable
    /// answers are keyed by it, so a retry reaches a restarted instance's
    /// remembered answer but a request of a later boot never does.
    pub fn with_boot(mut self, boot: u32) -> Self {
        self.boot = u64::from(boot) << 32;
        self
    }

    /// Bound the heap bytes the store's committed state may hold (see
    /// [`ObjectStore::with_memory_limit`]).
    pub fn with_memory_limit(mut self, limit: u64) -> Self {
        self.store = self.store.with_memory_limit(limit);
        self
    }

    /// The task half of a durable answer's key.
    fn durable_task(&self, task: TaskId) -> u64 {
        task.as_raw() ^ self.boot
    }

    pub fn with_tx_timeout(mut self, timeout: Duration) -> Self {
        self.tx_timeout = timeout;
        self
    }

    pub fn store(&self) -> &ObjectStore<B> {
        &self.store
    }

    /// Stop serving and hand back the backend (for a restart on it).
    pub fn into_backend(self) -> B {
        self.store.into_backend()
    }

    /// Create the service channel and register it as [`STORAGE`].
    pub fn register<K: KernelApi>(kernel: &mut K) -> Result<ChannelId, KernelError> {
        let channel = kernel.create_channel()?;
        kernel.register_service(STORAGE, channel)?;
        Ok(channel)
    }

    /// Serve requests on `channel` until receiving fails (the channel is
    /// closed or revoked); returns that error.
    ///
    /// An answer that grants no capability goes out with the wait for the
    /// next request in one system call (an `Exchange`, which the kernel
    /// completes by switching straight to the waiting client): on a
    /// session's standing reply capability, which is kept, or on the
    /// request's own reply capability, which the call releases before the
    /// next request arrives. Other answers take [`StorageServer::handle`]'s
    /// way.
    pub fn serve<K: KernelApi>(&mut self, kernel: &mut K, channel: ChannelId) -> KernelError {
        let mut next = kernel.receive_with_capabilities(channel, None);
        loop {
            next = match next {
                // A client that cannot be answered only hurts itself; the
                // server goes on with the next request.
                Ok(request) => match self.answer_and_wait(kernel, request, channel) {
                    Some(next) => next,
                    None => kernel.receive_with_capabilities(channel, None),
                },
                Err(e) if e.ends_receiving() => return e,
                // That message is lost (not an envelope, say); the next is
                // served.
                Err(_) => kernel.receive_with_capabilities(channel, None),
            };
        }
    }

    /// Answer `request` and, when the answer carries no capability, wait
    /// for the next request in the same call. `None` when the caller must
    /// receive the next request itself: the request had nowhere to be
    /// answered, the answer went out with [`StorageServer::send_answer`],
    /// or the combined call failed (its send or its receive; a failing
    /// receive fails again for the caller, which then sees its cause).
    fn answer_and_wait<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        request: ReceivedMessage,
        channel: ChannelId,
    ) -> Option<Result<ReceivedMessage, KernelError>> {
        let (reply_to, answer) = match self.answer(kernel, request)? {
            (reply_to, Outgoing::Framed(request)) => {
                return self.send_framed_and_wait(kernel, reply_to, request, channel);
            }
            (reply_to, Outgoing::Answer(answer)) => (reply_to, answer),
        };
        if let Some(grant) = answer.grant {
            let _ = self.send_answer(kernel, reply_to, answer.envelope, Some(grant));
            return None;
        }
        match reply_to {
            ReplyTo::Once(reply) => kernel
                .reply_then_receive(reply, answer.envelope, channel, None)
                .ok()
                .map(Ok),
            ReplyTo::Session(key, reply) => {
                let reply = ChannelId::from_handle(reply);
                match kernel.send_then_receive(reply, answer.envelope, channel, None) {
                    Ok(next) => Some(Ok(next)),
                    Err(_) => {
                        self.close_session(kernel, &key);
                        None
                    }
                }
            }
        }
    }

    /// [`Self::answer_and_wait`] of an answer framed in place: its header
    /// written before its payload in the frame buffer, the bytes sent from
    /// there (nothing encoded, nothing copied into an envelope), the next
    /// request decoded into `request`'s allocations.
    fn send_framed_and_wait<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        reply_to: ReplyTo,
        request: MessageEnvelope,
        channel: ChannelId,
    ) -> Option<Result<ReceivedMessage, KernelError>> {
        let len = self.frame.len() - FRAME_HEADROOM;
        // The id `MessageEnvelope::reply_to` would give the answer.
        let start = frame_reply_header(&mut self.frame, MessageId::new(), &request, len);
        let bytes = &self.frame[start..];
        match reply_to {
            ReplyTo::Once(reply) => kernel
                .send_encoded_then_receive(reply.handle(), true, bytes, request, channel, None)
                .ok()
                .map(Ok),
            ReplyTo::Session(key, reply) => {
                match kernel.send_encoded_then_receive(reply, false, bytes, request, channel, None)
                {
                    Ok(next) => Some(Ok(next)),
                    Err(_) => {
                        self.close_session(kernel, &key);
                        None
                    }
                }
            }
        }
    }

    /// The payload framed in the frame buffer, as its own.
    fn framed_payload(&self) -> MessagePayload {
        // Within `MAX_PAYLOAD_BYTES`, checked when it was written.
        MessagePayload::from_bytes(self.frame[FRAME_HEADROOM..].to_vec()).unwrap_or_default()
    }

    /// `payload` as its own.
    fn owned(&self, payload: Payload) -> MessagePayload {
        match payload {
            Payload::Owned(payload) => payload,
            Payload::Framed => self.framed_payload(),
        }
    }

    /// Handle one received request: answer it where [`Self::reply_to`]
    /// says, with the capability the answer grants attached.
    pub fn handle<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        request: ReceivedMessage,
    ) -> Result<(), HandleError> {
        let Some((reply_to, outgoing)) = self.answer(kernel, request) else {
            return Err(HandleError::NoReplyChannel);
        };
        let answer = match outgoing {
            Outgoing::Answer(answer) => answer,
            Outgoing::Framed(request) => Answer::replacing(request, self.framed_payload(), None),
        };
        self.send_answer(kernel, reply_to, answer.envelope, answer.grant)
    }

    /// Where to answer `request` and the answer; `None` when there is
    /// nowhere to answer it (then it is not executed).
    fn answer<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        request: ReceivedMessage,
    ) -> Option<(ReplyTo, Outgoing)> {
        let ReceivedMessage {
            envelope,
            capabilities,
            badge,
        } = request;
        let decoded = decode_request(&envelope);
        let reply_to = self.reply_to(kernel, &envelope, &decoded, capabilities)?;
        let (payload, grant) = self.respond_decoded(&envelope, decoded, badge, || kernel.now());
        let outgoing = match payload {
            Payload::Framed if grant.is_none() => Outgoing::Framed(envelope),
            payload => {
                let payload = self.owned(payload);
                Outgoing::Answer(Answer::replacing(envelope, payload, grant))
            }
        };
        Some((reply_to, outgoing))
    }

    /// Where to answer `envelope`, which carried `capabilities` (any beyond
    /// the first are dropped: storage takes none but a reply channel).
    /// - A reply capability with a session number opens (or re-opens) the
    ///   requester's session on it.
    /// - A reply capability without one is used for this answer only.
    /// - No capability: the session's standing one, if the server keeps
    ///   it; else `None`, and the request is not executed (the client's
    ///   re-send carries a capability).
    fn reply_to<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        envelope: &MessageEnvelope,
        decoded: &Decoded<'_>,
        capabilities: Vec<Cap<()>>,
    ) -> Option<ReplyTo> {
        let mut caps = capabilities.into_iter();
        let attached = caps.next();
        for extra in caps {
            let _ = kernel.drop_capability(extra);
        }
        // The task half of the key is the kernel's stamp: a client names
        // only its own task's sessions.
        let session = envelope.source.zip(decoded.session());
        match (attached, session) {
            (Some(reply), Some(key)) => {
                let handle = reply.handle();
                for released in self.sessions.open(key, reply) {
                    let _ = kernel.drop_capability(released);
                }
                Some(ReplyTo::Session(key, handle))
            }
            (Some(reply), None) => Some(ReplyTo::Once(reply)),
            (None, Some(key)) => self.sessions.get(&key).map(|h| ReplyTo::Session(key, h)),
            (None, None) => None,
        }
    }

    /// Forget session `key` and drop its reply capability.
    fn close_session<K: KernelApi>(&mut self, kernel: &mut K, key: &(TaskId, u32)) {
        if let Some(reply) = self.sessions.close(key) {
            let _ = kernel.drop_capability(reply);
        }
    }

    /// Send `envelope` to `reply_to` with the capability `grant` describes
    /// (minted now; a refused mint is answered as such). A one-time reply
    /// capability is dropped afterwards; a session whose reply channel
    /// refused the answer is closed.
    fn send_answer<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        reply_to: ReplyTo,
        mut envelope: MessageEnvelope,
        grant: Option<ObjectGrant>,
    ) -> Result<(), HandleError> {
        let mut attached = Vec::new();
        if let Some(grant) = grant {
            match mint(kernel, grant) {
                Ok(cap) => attached.push(cap),
                Err(e) => {
                    let refused: Response = Err(StorageError::MintRefused(e));
                    envelope.payload = MessagePayload::new(&refused).unwrap_or_default();
                }
            }
        }
        let minted = attached.first().map(Cap::handle);
        let channel = match &reply_to {
            ReplyTo::Once(reply) => reply.handle(),
            ReplyTo::Session(_, reply) => *reply,
        };
        let sent =
            kernel.send_with_capabilities(ChannelId::from_handle(channel), envelope, attached);
        if let (Err(_), Some(minted)) = (&sent, minted) {
            // A refused send leaves the capability with us: nobody got it.
            let _ = kernel.drop_capability(Cap::from_handle(minted));
        }
        match reply_to {
            // Dropping our copy cannot fail in a way that matters: the
            // answer is already queued (or refused) either way.
            ReplyTo::Once(reply) => {
                let _ = kernel.drop_capability(reply);
            }
            ReplyTo::Session(key, _) if sent.is_err() => self.close_session(kernel, &key),
            ReplyTo::Session(..) => {}
        }
        sent.map_err(HandleError::Send)
    }

    /// The answer to `request`, received at `now` with the kernel's stamp
    /// `badge` (`None` if it came on the service channel). Pure with
    /// respect to the kernel: this is the step a scenario runner can drive
    /// directly.
    pub fn respond(
        &mut self,
        request: &MessageEnvelope,
        badge: Option<Badge>,
        now: Instant,
    ) -> Answer {
        let decoded = decode_request(request);
        let (payload, grant) = self.respond_decoded(request, decoded, badge, || now);
        Answer::new(request, self.owned(payload), grant)
    }

    /// [`Self::respond`] with the request already decoded, reading the
    /// clock only if the request needs it (see [`Self::execute`]): the
    /// answer's payload and the capability it grants.
    fn respond_decoded(
        &mut self,
        request: &MessageEnvelope,
        decoded: Decoded<'_>,
        badge: Option<Badge>,
        clock: impl FnOnce() -> Instant,
    ) -> (Payload, Option<ObjectGrant>) {
        let key = request.source.map(|task| (task, request.id));
        if let Some(answer) = key.as_ref().and_then(|k| self.answered.get(k)) {
            let (payload, grant) = remembered(answer.clone());
            return (Payload::Owned(payload), grant);
        }
        let durable = key.and_then(|(task, id)| {
            let bytes = self
                .store
                .durable_answer(self.durable_task(task), id.as_raw())?;
            MessagePayload::from_bytes(bytes.to_vec()).ok()
        });
        if let Some(answer) = durable {
            let (payload, grant) = remembered(answer);
            return (Payload::Owned(payload), grant);
        }
        let (payload, grant, read_only) = match self.execute(request, decoded, badge, clock) {
            Ok(Executed::Framed { read_only }) => (Payload::Framed, None, read_only),
            Ok(Executed::Reply(reply)) => self.payload(key, Ok(reply)),
            Err(e) => self.payload(key, Err(e)),
        };
        // A writing commit's answer is in its journal record, which a
        // re-send finds (see the module docs); a transaction that wrote
        // nothing is simply run again.
        let kept_elsewhere = self.answer_in_journal || read_only;
        if let Some(key) = key.filter(|_| !kept_elsewhere) {
            let copy = match &payload {
                Payload::Owned(payload) => payload.clone(),
                Payload::Framed => self.framed_payload(),
            };
            self.answered.insert(key, copy);
        }
        (payload, grant)
    }

    /// The payload answering the request `key` with `response`, the
    /// capability it grants, and whether it is a transaction that wrote
    /// nothing.
    fn payload(
        &self,
        key: Option<(TaskId, MessageId)>,
        response: Response,
    ) -> (Payload, Option<ObjectGrant>, bool) {
        let grant = response.as_ref().ok().and_then(Reply::grant);
        let read_only =
            matches!(&response, Ok(Reply::Transacted { versions, .. }) if versions.is_empty());
        // A writing commit's record holds its answer encoded: copied, not
        // encoded a second time. (No answer was recorded under this key
        // before, or it would have been answered from it.)
        let recorded = key
            .filter(|_| self.answer_in_journal)
            .and_then(|(task, id)| {
                let bytes = self
                    .store
                    .durable_answer(self.durable_task(task), id.as_raw())?;
                MessagePayload::from_bytes(bytes.to_vec()).ok()
            });
        let payload = recorded.unwrap_or_else(|| {
            payload_of(&response).unwrap_or_else(|_| {
                // Replies are bounded below the payload limit (see
                // `limits`); should one not fit anyway, the client still
                // gets an answer.
                let too_large: Response = Err(StorageError::ReplyTooLarge);
                MessagePayload::new(&too_large).unwrap_or_default()
            })
        });
        (Payload::Owned(payload), grant, read_only)
    }

    /// Run the decoded request. The clock is read only when the request
    /// needs it: to roll back idle transactions, when any are open, and to
    /// stamp the use of an open transaction (`Begin`, `Op`). A `Transact`
    /// begins and ends within this call, so no expiry can see its stamp.
    fn execute(
        &mut self,
        envelope: &MessageEnvelope,
        decoded: Decoded<'_>,
        badge: Option<Badge>,
        clock: impl FnOnce() -> Instant,
    ) -> Result<Executed, StorageError> {
        self.answer_in_journal = false;
        let request = match decoded {
            Decoded::One(one) if self.one_op_path() => {
                return self.execute_one(envelope, one.op, badge, clock);
            }
            Decoded::One(one) => Request::Transact {
                ops: alloc::vec![one.op.to_op()],
            },
            Decoded::Full(full) => full?.request,
        };
        if request.needs_object() && badge.is_none() {
            return Err(StorageError::CapabilityRequired);
        }
        self.expire_if(
            matches!(request, Request::Begin | Request::Op { .. }),
            clock,
        );
        let now = self.clock;
        let (owner, asker) = self.requester(envelope);
        self.run_request(request, badge, now, owner, asker)
            .map(Executed::Reply)
    }

    /// [`Self::execute`] of a `Transact` of one put or get read in place:
    /// the same checks in the same order (a capability, the clock when
    /// transactions are open, the badge's object, epoch and rights), then
    /// [`Self::put_alone`] or [`Self::get_alone`].
    fn execute_one(
        &mut self,
        envelope: &MessageEnvelope,
        op: OpRef<'_>,
        badge: Option<Badge>,
        clock: impl FnOnce() -> Instant,
    ) -> Result<Executed, StorageError> {
        if badge.is_none() {
            return Err(StorageError::CapabilityRequired);
        }
        self.expire_if(false, clock);
        let (owner, asker) = self.requester(envelope);
        let object = self.authorize(badge, op.required_rights())?;
        match op {
            OpRef::Put { key, value } => {
                self.put_alone(object, key, value.to_vec(), owner, asker)?;
                Ok(Executed::Framed { read_only: false })
            }
            OpRef::Get { key, at } => {
                self.get_alone(object, key, at, owner)?;
                Ok(Executed::Framed { read_only: true })
            }
        }
    }

    /// Read the clock and roll back idle transactions, if `needed` or if
    /// any transaction is open (see [`Self::execute`]).
    fn expire_if(&mut self, needed: bool, clock: impl FnOnce() -> Instant) {
        if needed || self.store.active_transactions() > 0 {
            self.clock = clock().as_nanos();
            let timeout = u64::try_from(self.tx_timeout.as_nanos()).unwrap_or(u64::MAX);
            self.store.expire_idle(self.clock.saturating_sub(timeout));
        }
    }

    /// The requesting task as the store's transaction owner, and the key
    /// of its request's durable answer.
    fn requester(&self, envelope: &MessageEnvelope) -> (Option<u64>, Option<(u64, u64)>) {
        let owner = envelope.source.map(|t| t.as_raw());
        let asker = envelope
            .source
            .map(|t| (self.durable_task(t), envelope.id.as_raw()));
        (owner, asker)
    }

    /// Run the decoded request (see [`Self::execute`]) at `now` for the
    /// task `owner`, whose durable answer key is `asker`.
    fn run_request(
        &mut self,
        request: Request,
        badge: Option<Badge>,
        now: u64,
        owner: Option<u64>,
        asker: Option<(u64, u64)>,
    ) -> Response {
        match request {
            Request::Create { kind } => {
                let full = |object| ObjectGrant {
                    object,
                    epoch: 0,
                    rights: OBJECT_CAP_RIGHTS,
                };
                let (object, version) =
                    self.store.create_with_origin(kind, |object, version| {
                        let grant = full(object);
                        origin(asker, &Reply::Created { grant, version })
                    })?;
                Ok(Reply::Created {
                    grant: full(object),
                    version,
                })
            }
            Request::Begin => {
                let tx = self.store.begin_owned(owner, now)?;
                Ok(Reply::Begun {
                    tx: tx.id(),
                    snapshot: tx.snapshot(),
                })
            }
            Request::Op { tx, op } => {
                let object = self.authorize(badge, op.required_rights())?;
                let mut tx = self.store.transaction_of(tx, owner)?;
                self.store.touch(&tx, now);
                self.run(&mut tx, object, op).map(Reply::Op)
            }
            Request::Commit { tx } => {
                let mut tx = self.store.transaction_of(tx, owner)?;
                let reply = Reply::Committed {
                    versions: self.store.pending_versions(&tx)?,
                };
                let origin = writes_origin(asker, &reply);
                let durable = origin.is_some();
                self.store.commit_with_origin(&mut tx, origin)?;
                self.answer_in_journal = durable;
                Ok(reply)
            }
            Request::Rollback { tx } => {
                let mut tx = self.store.transaction_of(tx, owner)?;
                self.store.rollback(&mut tx)?;
                Ok(Reply::RolledBack)
            }
            Request::Transact { ops } => {
                // Every op's rights are checked before anything runs.
                let required = ops
                    .iter()
                    .fold(Rights::NONE, |r, op| r | op.required_rights());
                let object = self.authorize(badge, required)?;
                self.transact(object, ops, owner, asker, now)
            }
            Request::Versions { after, limit } => {
                let object = self.authorize(badge, Rights::READ)?;
                let limit = (limit as usize).min(MAX_VERSIONS_PER_REPLY);
                Ok(Reply::Versions(self.store.versions(object, after, limit)?))
            }
            Request::Revoke => {
                let object = self.authorize(badge, Rights::CONTROL)?;
                if self.store.object(object)?.cap_epoch() >= ObjectBadge::MAX_EPOCH {
                    return Err(StorageError::RevocationsExhausted(object));
                }
                let fresh = |epoch| ObjectGrant {
                    object,
                    epoch,
                    rights: OBJECT_CAP_RIGHTS,
                };
                let epoch = self
                    .store
                    .revoke_with_origin(object, |epoch| origin(asker, &Reply::Cap(fresh(epoch))))?;
                Ok(Reply::Cap(fresh(epoch)))
            }
            Request::Export => {
                let object = self.authorize(badge, Rights::GRANT)?;
                let epoch = self.store.object(object)?.cap_epoch();
                let rights = badge.map_or(Rights::NONE, |b| b.rights);
                Ok(Reply::Token(self.caps.mint(object, rights, epoch)))
            }
            Request::Import { token } => {
                let object = token.object();
                let epoch = self.store.object(object)?.cap_epoch();
                if !self.caps.verify(&token, epoch) {
                    return Err(StorageError::InvalidCapability(object));
                }
                // The capability travels in the answer, which needs
                // TRANSFER; the holder can clone it without (see `cap`).
                Ok(Reply::Cap(ObjectGrant {
                    object,
                    epoch,
                    rights: token.rights() | Rights::TRANSFER,
                }))
            }
            Request::Home => {
                let object = match self.store.first_of_kind(ObjectKind::Map) {
                    Some(object) => object,
                    None => {
                        self.store
                            .create_with_origin(ObjectKind::Map, |_, _| None)?
                            .0
                    }
                };
                Ok(Reply::Cap(ObjectGrant {
                    object,
                    epoch: self.store.object(object)?.cap_epoch(),
                    rights: HOME_RIGHTS,
                }))
            }
            Request::Info => Ok(Reply::Info(StorageInfo {
                last_commit: self.store.last_commit(),
                compactions: self.store.backend().compactions(),
            })),
        }
    }

    fn transact(
        &mut self,
        object: ObjectId,
        ops: Vec<Op>,
        owner: Option<u64>,
        asker: Option<(u64, u64)>,
        now: u64,
    ) -> Response {
        if ops.len() > limits::MAX_OPS_PER_REQUEST {
            return Err(StorageError::TooManyOps {
                len: u32::try_from(ops.len()).unwrap_or(u32::MAX),
                max: limits::MAX_OPS_PER_REQUEST as u32,
            });
        }
        let mut tx = self.store.begin_owned(owner, now)?;
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            match self.run(&mut tx, object, op) {
                Ok(result) => results.push(result),
                Err(e) => {
                    // A conflict has already rolled it back.
                    let _ = self.store.rollback(&mut tx);
                    return Err(e);
                }
            }
        }
        let reply = Reply::Transacted {
            results,
            versions: self.store.pending_versions(&tx)?,
        };
        // Check the answer fits before committing, so that a client never
        // gets an error for a transaction that did commit.
        if !fits(&reply) {
            let _ = self.store.rollback(&mut tx);
            return Err(StorageError::ReplyTooLarge);
        }
        let origin = writes_origin(asker, &reply);
        let durable = origin.is_some();
        self.store.commit_with_origin(&mut tx, origin)?;
        self.answer_in_journal = durable;
        Ok(reply)
    }

    /// A `Transact` of one `Put`: what [`Self::transact`] answers, by
    /// [`ObjectStore::put_alone`], encoded once for the commit record and
    /// the answer alike (no `Reply` is built: [`push_put_answer`]), into
    /// the frame buffer after its headroom (see [`Executed::Framed`]). Its
    /// answer always fits (a constant size, far below the payload limit).
    fn put_alone(
        &mut self,
        object: ObjectId,
        key: &[u8],
        value: Vec<u8>,
        owner: Option<u64>,
        asker: Option<(u64, u64)>,
    ) -> Result<(), StorageError> {
        let frame = &mut self.frame;
        frame.truncate(FRAME_HEADROOM);
        frame.reserve(PUT_ANSWER_MAX);
        self.store.put_alone(owner, object, key, value, |version| {
            push_put_answer(frame, object, version);
            let (task, message) = asker?;
            Some(Origin {
                task,
                message,
                answer: frame[FRAME_HEADROOM..].to_vec(),
            })
        })?;
        self.answer_in_journal = asker.is_some();
        Ok(())
    }

    /// A `Transact` of one `Get`: what [`Self::transact`] answers, by
    /// [`ObjectStore::get_alone`], encoded straight from the stored value
    /// (no copy of it, no `Reply` built: [`push_get_answer`]) into the
    /// frame buffer after its headroom (see [`Executed::Framed`]). It
    /// writes nothing, so no record keeps its answer.
    fn get_alone(
        &mut self,
        object: ObjectId,
        key: &[u8],
        at: Option<VersionId>,
        owner: Option<u64>,
    ) -> Result<(), StorageError> {
        let (version, value) = self.store.get_alone(owner, object, key, at)?;
        let results = [OpResultRef::Value { version, value }];
        let reply = TransactedRef {
            results: &results,
            versions: &[],
        };
        // A value within the limit always fits; one from an older, larger
        // limit is measured.
        let len = value.map_or(0, <[u8]>::len);
        if len > limits::MAX_VALUE_BYTES && !fits(&reply) {
            return Err(StorageError::ReplyTooLarge);
        }
        self.frame.truncate(FRAME_HEADROOM);
        self.frame.reserve(GET_ANSWER_OVERHEAD + len);
        push_get_answer(&mut self.frame, version, value);
        // `MessagePayload::from_bytes`'s bound.
        if self.frame.len() - FRAME_HEADROOM > MAX_PAYLOAD_BYTES {
            return Err(StorageError::ReplyTooLarge);
        }
        Ok(())
    }

    /// Whether one-operation `Transact`s take their own path
    /// ([`Self::put_alone`], [`Self::get_alone`]); tests turn it off to
    /// hold the general path to the same answers.
    #[cfg(not(test))]
    fn one_op_path(&self) -> bool {
        true
    }

    #[cfg(test)]
    fn one_op_path(&self) -> bool {
        !self.general_only
    }

    /// Check the kernel's stamp: the request came through an object
    /// capability, its object exists, its epoch is the object's current one
    /// (else the capability was revoked), and its rights include
    /// `required`.
    fn authorize(&self, badge: Option<Badge>, required: Rights) -> Result<ObjectId, StorageError> {
        let badge = badge.ok_or(StorageError::CapabilityRequired)?;
        let ObjectBadge { object, epoch } = ObjectBadge::decode(badge.value);
        if self.store.object(object)?.cap_epoch() != epoch {
            return Err(StorageError::InvalidCapability(object));
        }
        if !badge.rights.contains(required) {
            return Err(StorageError::MissingRights {
                object,
                required,
                held: badge.rights,
            });
        }
        Ok(object)
    }

    /// Run one operation on `object` (already authorized) in `tx`.
    fn run(
        &mut self,
        tx: &mut StoreTx,
        object: ObjectId,
        op: Op,
    ) -> Result<OpResult, StorageError> {
        let store = &mut self.store;
        Ok(match op {
            Op::Version => OpResult::Version(store.read(tx, object)?),
            Op::Expect { version } => {
                store.expect_version(tx, object, version)?;
                OpResult::Matched
            }
            Op::ReadBlob {
                at,
                offset,
                max_len,
            } => {
                let r = store.read_blob(tx, object, at, offset, max_len as usize)?;
                OpResult::Blob {
                    version: r.version,
                    total_len: r.total_len,
                    offset: r.offset,
                    bytes: r.bytes,
                }
            }
            Op::WriteBlob { bytes } => OpResult::Written(store.write_blob(tx, object, &bytes)?),
            Op::ExtendBlob { bytes } => OpResult::Written(store.extend_blob(tx, object, &bytes)?),
            Op::Append { record } => {
                let (version, index) = store.append(tx, object, &record)?;
                OpResult::Appended { version, index }
            }
            Op::ReadLog { at, start, max } => {
                let r = store.read_log(tx, object, at, start, max as usize)?;
                OpResult::Records {
                    version: r.version,
                    total: r.total,
                    start: r.start,
                    records: r.records,
                }
            }
            Op::Put { key, value } => OpResult::Written(store.put_owned(tx, object, key, value)?),
            Op::Get { key, at } => {
                let r = store.get(tx, object, &key, at)?;
                OpResult::Value {
                    version: r.version,
                    value: r.value,
                }
            }
            Op::Delete { key } => {
                let d = store.delete(tx, object, &key)?;
                OpResult::Deleted {
                    version: d.version,
                    existed: d.existed,
                }
            }
            Op::List {
                at,
                start_after,
                limit,
            } => {
                let r = store.list(tx, object, at, start_after.as_deref(), limit as usize)?;
                OpResult::Keys {
                    version: r.version,
                    keys: r.keys,
                    more: r.more,
                }
            }
        })
    }
}

/// Mint the capability `grant` describes, as the storage service.
fn mint<K: KernelApi>(kernel: &mut K, grant: ObjectGrant) -> Result<Cap<()>, KernelError> {
    // Badges out of range are refused by `encode`; the object ids and
    // epochs the store hands out stay in range (see `ObjectBadge`).
    let badge = grant
        .badge()
        .encode()
        .ok_or(KernelError::ResourceExhausted(
            pandagen_abi::error::Resource::CapabilitySlots,
        ))?;
    kernel
        .mint_object_capability(STORAGE, badge, grant.rights)
        .map(Cap::erase)
}

#[cfg(test)]
mod tests;
