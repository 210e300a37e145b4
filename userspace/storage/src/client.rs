//! The typed storage client, over any `KernelApi`.
//!
//! Each call sends one request and waits for the answer correlated to it,
//! on the client's reply channel. The client keeps a *session* with the
//! service (see the protocol's *Sessions*): its first request, and every
//! re-send, carries a send-only capability for the reply channel, which
//! the service keeps; the others carry none.
//! Requests about one object are sent through that object's kernel
//! capability ([`ObjectCap`], see [`cap`](crate::cap)); the others go to the
//! service channel. An answer that grants a capability carries it attached,
//! and the call returns it. If no
//! answer comes within the timeout, the *same* envelope (same message id)
//! is sent again, up to the configured number of attempts; the server
//! answers a repeated id from its memory instead of executing it twice, so
//! retries are idempotent. Answers to earlier, abandoned attempts that
//! arrive late are recognised by their correlation id and discarded.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::convert::Infallible;
use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};
use pandagen_abi::error::{ReceiveError, SendError};
use pandagen_abi::services::STORAGE;
use pandagen_abi::{
    Cap, CapHandle, ChannelId, Duration, EncodedEnvelope, EnvelopeError, EnvelopeHead, InPlace,
    Instant, KernelApi, KernelError, MessageEnvelope, MessageId, MessagePayload, ObjectCallError,
    ReceivedMessage, ReceivedRef, Rights,
};

use crate::cap::{ObjectCap, ObjectToken};
use crate::error::StorageError;
use crate::ids::{TxId, VersionId};
use crate::object::ObjectKind;
use crate::protocol::{
    actions, NewVersions, Op, OpRef, OpResult, Reply, Request, RequestPayloadRef, Response,
    StorageInfo, TransactedOne, OP_GET, OP_PUT, OP_RESULT_VALUE, OP_RESULT_WRITTEN,
    REPLY_TRANSACTED, REQUEST_TRANSACT, SCHEMA, VERSION_POLICY,
};
use pandagen_abi::varint::{len as varint_len, put as put_varint};

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// The service answered with an error.
    Storage(StorageError),
    /// The kernel refused a send or receive.
    Kernel(KernelError),
    /// No answer after every attempt. The request may or may not have been
    /// executed (each attempt carried the same id, so at most once). Re-send
    /// it later with [`StorageClient::call_as`] and this `request` id to
    /// learn its outcome without executing it twice.
    Timeout { attempts: u32, request: MessageId },
    /// The request or the answer could not be encoded or decoded.
    Envelope(EnvelopeError),
    /// The answer was of another kind than the request calls for, or
    /// lacked the capability it grants.
    UnexpectedReply,
}

impl From<StorageError> for ClientError {
    fn from(e: StorageError) -> Self {
        ClientError::Storage(e)
    }
}

impl From<KernelError> for ClientError {
    fn from(e: KernelError) -> Self {
        ClientError::Kernel(e)
    }
}

impl From<EnvelopeError> for ClientError {
    fn from(e: EnvelopeError) -> Self {
        ClientError::Envelope(e)
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Storage(e) => write!(f, "storage: {e}"),
            ClientError::Kernel(e) => write!(f, "kernel: {e}"),
            ClientError::Timeout { attempts, .. } => {
                write!(f, "no answer from storage after {attempts} attempts")
            }
            ClientError::Envelope(e) => write!(f, "message: {e}"),
            ClientError::UnexpectedReply => f.write_str("unexpected reply"),
        }
    }
}

/// The default wait for one answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
/// The default number of attempts per call.
pub const DEFAULT_ATTEMPTS: u32 = 3;
/// How long a request sent without the reply capability waits before it
/// is sent again with it (see [`StorageClient::attempt`]): far longer
/// than a request takes to serve, short beside a client's timeout.
pub const SESSION_PROBE: Duration = Duration::from_millis(100);

/// A request sent with [`StorageClient::start`] and not yet answered.
#[derive(Debug)]
pub struct PendingCall {
    envelope: MessageEnvelope,
    via: Option<CapHandle>,
    deadline: Instant,
    attempts_left: u32,
    granted: Option<ObjectCap>,
}

impl PendingCall {
    /// The request's message id.
    pub fn id(&self) -> MessageId {
        self.envelope.id
    }

    /// When the request is re-sent (or given up) if no answer has come.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The capability the answer granted (`Created`, `Cap`), once
    /// [`StorageClient::poll`] has returned the answer.
    pub fn take_granted(&mut self) -> Option<ObjectCap> {
        self.granted.take()
    }
}

fn as_object(handle: CapHandle) -> ObjectCap {
    Cap::from_handle(handle).assume_kind()
}

/// Split an answer: the decoded response, and the capability it grants
/// (any other attached capability is dropped).
fn unpack<K: KernelApi>(
    kernel: &mut K,
    answer: ReceivedMessage,
) -> Result<(Reply, Option<ObjectCap>), ClientError> {
    let mut caps = answer.capabilities.into_iter();
    let first = caps.next();
    for extra in caps {
        let _ = kernel.drop_capability(extra);
    }
    let response: Result<Response, _> = answer.envelope.decode_answer(&VERSION_POLICY, STORAGE);
    let reply = match response {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) => {
            if let Some(cap) = first {
                let _ = kernel.drop_capability(cap);
            }
            return Err(ClientError::Storage(e));
        }
        Err(e) => {
            if let Some(cap) = first {
                let _ = kernel.drop_capability(cap);
            }
            return Err(e.into());
        }
    };
    let granted = match (reply.grant(), first) {
        (Some(_), Some(cap)) => Some(cap.assume_kind()),
        (Some(_), None) => return Err(ClientError::UnexpectedReply),
        (None, Some(cap)) => {
            let _ = kernel.drop_capability(cap);
            None
        }
        (None, None) => None,
    };
    Ok((reply, granted))
}

/// The largest one-operation request whose buffer a client keeps for its
/// next (see [`StorageClient::single_ref`]).
const SPARE_REQUEST_MAX: usize = 1024;

/// A request to send: an envelope, or (a one-operation request) the
/// bytes of one, written by hand.
#[derive(Clone, Copy)]
enum Outgoing<'a> {
    Envelope(&'a MessageEnvelope),
    Encoded(&'a EncodedEnvelope),
}

impl Outgoing<'_> {
    fn id(&self) -> MessageId {
        match self {
            Outgoing::Envelope(envelope) => envelope.id,
            Outgoing::Encoded(encoded) => encoded.id(),
        }
    }
}

/// What a send that could not be made now means: a full queue, an
/// injected fault, or a service still away are a lost attempt (`Ok`); any
/// other refusal is the call's error.
fn not_sent_now(e: KernelError) -> Result<(), ClientError> {
    match e {
        KernelError::SendFailed(_) | KernelError::ServiceNotFound(_) => Ok(()),
        other => Err(other.into()),
    }
}

/// How [`StorageClient::call_object`] went.
enum Called<T> {
    /// The request could not be sent now (see [`not_sent_now`]).
    NotSent,
    /// The request was sent and its answer read in place (see
    /// [`Answered::Read`]).
    Read(T),
    /// The request was sent; its answer, if one came in time (boxed, as
    /// in [`InPlace::Owned`], so that the usual `Read` moves small).
    Sent(Option<Box<ReceivedMessage>>),
}

/// The answer to a request, as [`StorageClient::exchange_answer`] took it.
enum Answered<T> {
    /// Read in place by the caller's reader: an answer that correlates,
    /// carries no capabilities, came as the receive half of an object
    /// call, and that the reader took.
    Read(T),
    /// The whole answer, for the caller to decode (boxed, as in
    /// [`InPlace::Owned`]).
    Whole(Box<ReceivedMessage>),
}

/// The reader of a caller that reads no answer in place.
fn read_none(_: &ReceivedRef<'_>) -> Option<Infallible> {
    None
}

/// Session numbers, unique among the clients of one program (a task's
/// sessions are told apart by these; the service adds the task).
static NEXT_SESSION: AtomicU32 = AtomicU32::new(1);

/// A connection to the storage service.
#[derive(Debug)]
pub struct StorageClient {
    service: ChannelId,
    reply: ChannelId,
    timeout: Duration,
    attempts: u32,
    /// Look the service up again when its channel closes (a restarted
    /// storage task registers a new one). Set by [`StorageClient::connect`].
    relookup: bool,
    /// This client's session number.
    session: u32,
    /// Whether a request carrying the reply capability has been sent since
    /// the service was (re)found: until then every request carries one.
    opened: bool,
    /// Requests sent whose answers have not been received. While it is
    /// one (the request being waited for), no other answer can arrive, so
    /// the wait needs no deadline of its own and the clock is not read.
    unanswered: u32,
    /// The last one-operation request, whose buffer the next reuses
    /// (see [`StorageClient::single_ref`]).
    request: EncodedEnvelope,
    /// The fixed fields of a one-operation request's envelope, encoded
    /// once (on the first).
    head: Option<EnvelopeHead>,
}

impl StorageClient {
    /// Look the service up and create a reply channel.
    pub fn connect<K: KernelApi>(kernel: &mut K) -> Result<Self, ClientError> {
        let service = kernel.lookup_service(STORAGE)?;
        let reply = kernel.create_channel()?;
        let mut client = StorageClient::new(service, reply);
        client.relookup = true;
        Ok(client)
    }

    /// A client sending on `service` and receiving answers on `reply` (a
    /// channel the caller can receive on and clone send rights of).
    pub fn new(service: ChannelId, reply: ChannelId) -> Self {
        StorageClient {
            service,
            reply,
            timeout: DEFAULT_TIMEOUT,
            attempts: DEFAULT_ATTEMPTS,
            relookup: false,
            session: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
            opened: false,
            unanswered: 0,
            request: EncodedEnvelope::new(),
            head: None,
        }
    }

    /// Wait `timeout` for each answer and try `attempts` times (at least 1).
    pub fn with_retry(mut self, timeout: Duration, attempts: u32) -> Self {
        self.timeout = timeout;
        self.attempts = attempts.max(1);
        self
    }

    /// Send `request` to the service channel and wait for its answer (see
    /// the module docs). A capability the answer grants is dropped: use the
    /// typed calls (`create`, `revoke`, `import`) to keep it.
    pub fn call<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        request: &Request,
    ) -> Result<Reply, ClientError> {
        self.call_as(kernel, None, request, MessageId::new())
    }

    /// Send `request` through `object` and wait for its answer.
    pub fn call_on<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        object: &ObjectCap,
        request: &Request,
    ) -> Result<Reply, ClientError> {
        self.call_as(kernel, Some(object), request, MessageId::new())
    }

    /// [`call`](Self::call) (or [`call_on`](Self::call_on) with `via`)
    /// under the message id `id`. Re-sending a request under the id of an
    /// earlier call that timed out is answered with that call's outcome if
    /// it was executed (the service remembers recent answers, those of
    /// commits even across its restarts), and executes it otherwise.
    pub fn call_as<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        via: Option<&ObjectCap>,
        request: &Request,
        id: MessageId,
    ) -> Result<Reply, ClientError> {
        let (reply, granted) = self.exchange(kernel, via, request, id)?;
        if let Some(cap) = granted {
            let _ = kernel.drop_capability(cap.erase());
        }
        Ok(reply)
    }

    /// Send and wait; the reply and the capability it grants.
    fn exchange<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        via: Option<&ObjectCap>,
        request: &Request,
        id: MessageId,
    ) -> Result<(Reply, Option<ObjectCap>), ClientError> {
        let mut envelope = self.envelope(request)?;
        envelope.id = id;
        self.exchange_envelope(kernel, via, envelope)
    }

    /// [`exchange`](Self::exchange) of a request already in its envelope.
    fn exchange_envelope<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        via: Option<&ObjectCap>,
        envelope: MessageEnvelope,
    ) -> Result<(Reply, Option<ObjectCap>), ClientError> {
        match self.exchange_answer(kernel, via, Outgoing::Envelope(&envelope), &read_none)? {
            Answered::Whole(answer) => unpack(kernel, *answer),
            Answered::Read(never) => match never {},
        }
    }

    /// Send `envelope` and wait for its answer, as [`Self::exchange_envelope`],
    /// but hand back the answer undecoded, or as `read` read it in place
    /// (see [`Answered`]; `read` sees only the answer to this request).
    fn exchange_answer<K: KernelApi, T>(
        &mut self,
        kernel: &mut K,
        via: Option<&ObjectCap>,
        message: Outgoing<'_>,
        read: &impl Fn(&ReceivedRef<'_>) -> Option<T>,
    ) -> Result<Answered<T>, ClientError> {
        let id = message.id();
        let via = via.map(Cap::handle);
        for attempt in 0..self.attempts {
            if let Some(answer) = self.attempt(kernel, via, message, attempt > 0, read)? {
                return Ok(answer);
            }
        }
        Err(ClientError::Timeout {
            attempts: self.attempts,
            request: id,
        })
    }

    /// Write the one-operation `Transact` of `op` in this client's
    /// session, under a fresh message id, into `out`, by hand
    /// ([`write_one_op_request`]): the bytes of
    /// [`envelope_of`](Self::envelope_of) of a [`TransactOne`], encoded,
    /// with no envelope, payload `Vec` or allocation (once `out` has
    /// grown).
    ///
    /// A request whose payload is as long as the last one's, and whose id
    /// is as long, is written in its place
    /// ([`EncodedEnvelope::rewrite`]: the id and the payload only; the
    /// envelope's fixed fields are this client's, the same for each).
    fn write_one_op(
        &mut self,
        out: &mut EncodedEnvelope,
        op: OpRef<'_>,
    ) -> Result<(), ClientError> {
        let session = self.session;
        let len = one_op_request_len(op, session);
        let id = MessageId::new();
        let payload = |payload: &mut [u8]| write_one_op_request(payload, op, session);
        if out.rewrite(id, len, payload) {
            return Ok(());
        }
        let head = match &mut self.head {
            Some(head) => head,
            empty => empty.insert(EnvelopeHead::new(STORAGE, actions::TRANSACT, SCHEMA)?),
        };
        head.write(out, id, len, payload)?;
        Ok(())
    }

    /// The envelope of `request`, in this client's session.
    fn envelope(&self, request: &Request) -> Result<MessageEnvelope, ClientError> {
        self.envelope_of(request.action(), request)
    }

    /// The envelope of a request with action `action` that `request`
    /// encodes (a [`Request`] or a borrowed form of one).
    fn envelope_of<R: serde::Serialize + ?Sized>(
        &self,
        action: &str,
        request: &R,
    ) -> Result<MessageEnvelope, ClientError> {
        let payload = RequestPayloadRef {
            request,
            session: Some(self.session),
        };
        Ok(MessageEnvelope::new(
            STORAGE,
            action,
            SCHEMA,
            MessagePayload::new(&payload)?,
        ))
    }

    /// Send `envelope` on the service channel or through the object
    /// capability `via`; with a fresh reply capability if `resend` or if
    /// the session is not open yet (a re-send re-opens a session the
    /// service may have dropped). `false` if it could not be sent now (the
    /// caller then spends the attempt waiting, as for a lost answer). A closed service channel is looked up again first
    /// (its capability dropped): a restarted storage task has registered a
    /// new one. Through an object
    /// capability no lookup is needed: the kernel finds the storage task
    /// registered at the moment, or answers `ServiceNotFound` while there
    /// is none.
    fn send<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        via: Option<CapHandle>,
        message: Outgoing<'_>,
        resend: bool,
    ) -> Result<bool, ClientError> {
        // Sent with a capability, or on the service channel: a request
        // written by hand is sent as the envelope its bytes encode.
        let decoded;
        let envelope = match message {
            Outgoing::Envelope(envelope) => envelope,
            Outgoing::Encoded(encoded) => {
                decoded = encoded.decode()?;
                &decoded
            }
        };
        let mut looked_up = false;
        loop {
            let attach = resend || !self.opened;
            let mut caps = Vec::new();
            if attach {
                caps.push(kernel.clone_capability(
                    &Cap::<()>::from(self.reply),
                    Rights::SEND | Rights::TRANSFER,
                )?);
            }
            let handle = caps.first().map(Cap::handle);
            let sent = match via {
                Some(object) => kernel.send_to_object_ref(&as_object(object), envelope, caps),
                None => kernel.send_with_capabilities(self.service, envelope.clone(), caps),
            };
            let Err(e) = sent else {
                self.opened |= attach;
                self.unanswered = self.unanswered.saturating_add(1);
                return Ok(true);
            };
            // A failed send leaves the capability with us.
            if let Some(handle) = handle {
                let _ = kernel.drop_capability(Cap::from_handle(handle));
            }
            match e {
                KernelError::SendFailed(SendError::ChannelClosed)
                    if via.is_none() && self.relookup && !looked_up =>
                {
                    looked_up = true;
                    match kernel.lookup_service(STORAGE) {
                        Ok(service) => {
                            let closed = core::mem::replace(&mut self.service, service);
                            let _ = kernel.drop_capability(Cap::from(closed));
                            // A new instance keeps no session of ours, and
                            // the old one's answers are not coming.
                            self.opened = false;
                            self.unanswered = 0;
                        }
                        Err(_) => return Ok(false),
                    }
                }
                other => return not_sent_now(other).map(|()| false),
            }
        }
    }

    /// Send `envelope` through the object capability `object`, without a
    /// reply capability (the session is open), and wait up to `timeout`
    /// for its answer, in one [`KernelApi::call_object_in_place`]: what
    /// [`send`](Self::send) and then [`wait`](Self::wait) do, with the
    /// same outcomes (see [`Called`]). The answer, if it correlates, is
    /// offered to `read` in place first.
    fn call_object<K: KernelApi, T>(
        &mut self,
        kernel: &mut K,
        object: CapHandle,
        message: Outgoing<'_>,
        timeout: Duration,
        read: &impl Fn(&ReceivedRef<'_>) -> Option<T>,
    ) -> Result<Called<T>, ClientError> {
        // As `wait` reads it after the send: the clock matters only with
        // an earlier request still unanswered.
        let deadline = (self.unanswered > 0).then(|| kernel.now().saturating_add(timeout));
        let id = message.id();
        let in_place = |answer: &ReceivedRef<'_>| {
            (answer.envelope.correlation_id == Some(id))
                .then(|| read(answer))
                .flatten()
        };
        let object = &as_object(object);
        let called = match message {
            Outgoing::Envelope(envelope) => {
                kernel.call_object_in_place(object, envelope, self.reply, Some(timeout), in_place)
            }
            Outgoing::Encoded(encoded) => kernel.call_object_encoded(
                object,
                encoded,
                self.reply,
                Some(timeout),
                actions::REPLY,
                in_place,
            ),
        };
        let first = match called {
            // The usual outcome, handed back as `wait_after` would.
            Ok(InPlace::Read(value)) => return Ok(Called::Read(value)),
            Ok(InPlace::Owned(answer)) if answer.envelope.correlation_id == Some(id) => {
                return Ok(Called::Sent(Some(answer)));
            }
            Ok(InPlace::Owned(answer)) => Ok(*answer),
            Err(ObjectCallError::Unanswered(e)) => Err(e),
            Err(ObjectCallError::NotSent(e)) => {
                not_sent_now(e)?;
                return Ok(Called::NotSent);
            }
        };
        self.unanswered = self.unanswered.saturating_add(1);
        self.wait_after(kernel, id, timeout, deadline, Some(first))
            .map(|answer| Called::Sent(answer.map(Box::new)))
    }

    /// One send and one wait; `None` on timeout.
    ///
    /// A request sent without the reply capability is answered only if
    /// the service still keeps this client's session; an instance started
    /// since keeps none and leaves it unanswered. So when no answer has
    /// come after [`SESSION_PROBE`], the same envelope is sent again with
    /// the capability (within this attempt), and the whole timeout is
    /// waited for either answer. If the first was only slow, both are
    /// answered (the second from the server's memory of the first, not
    /// executed again) and the later answer is dropped as late.
    fn attempt<K: KernelApi, T>(
        &mut self,
        kernel: &mut K,
        via: Option<CapHandle>,
        message: Outgoing<'_>,
        resend: bool,
        read: &impl Fn(&ReceivedRef<'_>) -> Option<T>,
    ) -> Result<Option<Answered<T>>, ClientError> {
        let with_capability = resend || !self.opened;
        let probe = !with_capability && SESSION_PROBE < self.timeout;
        match via {
            // Without a capability to move, through an object: one call
            // sends and makes the first wait.
            Some(object) if !with_capability => {
                let first_wait = if probe { SESSION_PROBE } else { self.timeout };
                match self.call_object(kernel, object, message, first_wait, read)? {
                    Called::NotSent => {
                        kernel.sleep(self.timeout)?;
                        return Ok(None);
                    }
                    Called::Read(value) => return Ok(Some(Answered::Read(value))),
                    Called::Sent(Some(answer)) => return Ok(Some(Answered::Whole(answer))),
                    Called::Sent(None) if !probe => return Ok(None),
                    Called::Sent(None) => {}
                }
            }
            _ => {
                if !self.send(kernel, via, message, resend)? {
                    kernel.sleep(self.timeout)?;
                    return Ok(None);
                }
                if probe {
                    if let Some(answer) = self.wait(kernel, message.id(), SESSION_PROBE)? {
                        return Ok(Some(Answered::Whole(Box::new(answer))));
                    }
                }
            }
        }
        if probe && !self.send(kernel, via, message, true)? {
            kernel.sleep(self.timeout)?;
            return Ok(None);
        }
        let answer = self.wait(kernel, message.id(), self.timeout)?;
        Ok(answer.map(|answer| Answered::Whole(Box::new(answer))))
    }

    /// Wait up to `timeout` for the answer to request `id`; `None` if none
    /// came.
    fn wait<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        id: MessageId,
        timeout: Duration,
    ) -> Result<Option<ReceivedMessage>, ClientError> {
        // The first wait is the whole timeout. The deadline matters only
        // if other answers arrive first, which needs an earlier request
        // still unanswered: only then is the clock read now.
        let deadline = (self.unanswered > 1).then(|| kernel.now().saturating_add(timeout));
        self.wait_after(kernel, id, timeout, deadline, None)
    }

    /// [`wait`](Self::wait) until `deadline` (if known) or for `timeout`,
    /// whose first receive has already been made if `first` holds its
    /// result (the receive half of an object call).
    fn wait_after<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        id: MessageId,
        timeout: Duration,
        mut deadline: Option<Instant>,
        mut first: Option<Result<ReceivedMessage, KernelError>>,
    ) -> Result<Option<ReceivedMessage>, ClientError> {
        let mut left = timeout;
        loop {
            let received = match first.take() {
                Some(received) => received,
                None if left.is_zero() => return Ok(None),
                None => kernel.receive_with_capabilities(self.reply, Some(left)),
            };
            match received {
                Ok(answer) if answer.envelope.correlation_id == Some(id) => {
                    self.unanswered = self.unanswered.saturating_sub(1);
                    return Ok(Some(answer));
                }
                // A late answer to an earlier call: drop it (and whatever
                // it carried) and keep waiting.
                Ok(late) => {
                    self.unanswered = self.unanswered.saturating_sub(1);
                    for cap in late.capabilities {
                        let _ = kernel.drop_capability(cap);
                    }
                    // An answer the count did not expect (the service
                    // answered one request twice): the deadline is taken
                    // from now, so the wait is at most this much longer.
                    let now = kernel.now();
                    let until = *deadline.get_or_insert(now.saturating_add(left));
                    left = until.saturating_duration_since(now);
                }
                // A lost or failed receive counts as a lost answer: the next
                // attempt re-sends under the same id.
                Err(KernelError::Timeout)
                | Err(KernelError::ReceiveFailed(ReceiveError::InjectedFault)) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Send `request` to the service channel without waiting for the
    /// answer, for callers that must not block (event loops, services
    /// stepped by the simulator's scenario runner). Drive it with
    /// [`poll`](Self::poll).
    pub fn start<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        request: &Request,
    ) -> Result<PendingCall, ClientError> {
        self.start_via(kernel, None, request)
    }

    /// [`start`](Self::start) through the object capability `object`.
    pub fn start_on<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        object: &ObjectCap,
        request: &Request,
    ) -> Result<PendingCall, ClientError> {
        self.start_via(kernel, Some(object.handle()), request)
    }

    fn start_via<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        via: Option<CapHandle>,
        request: &Request,
    ) -> Result<PendingCall, ClientError> {
        let envelope = self.envelope(request)?;
        // If it cannot be sent now, the first deadline re-sends it.
        self.send(kernel, via, Outgoing::Envelope(&envelope), false)?;
        Ok(PendingCall {
            envelope,
            via,
            deadline: kernel.now().saturating_add(self.timeout),
            attempts_left: self.attempts - 1,
            granted: None,
        })
    }

    /// The answer to `call` if it has arrived, without waiting (a granted
    /// capability is then in [`PendingCall::take_granted`]). Past the
    /// call's deadline the request is re-sent under the same id, until the
    /// attempts are spent (then `Timeout`).
    pub fn poll<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        call: &mut PendingCall,
    ) -> Result<Option<Reply>, ClientError> {
        loop {
            match kernel.receive_with_capabilities(self.reply, Some(Duration::ZERO)) {
                Ok(answer) if answer.envelope.correlation_id == Some(call.envelope.id) => {
                    self.unanswered = self.unanswered.saturating_sub(1);
                    let (reply, granted) = unpack(kernel, answer)?;
                    call.granted = granted;
                    return Ok(Some(reply));
                }
                Ok(late) => {
                    self.unanswered = self.unanswered.saturating_sub(1);
                    for cap in late.capabilities {
                        let _ = kernel.drop_capability(cap);
                    }
                }
                Err(KernelError::Timeout)
                | Err(KernelError::ReceiveFailed(ReceiveError::InjectedFault)) => break,
                Err(e) => return Err(e.into()),
            }
        }
        if kernel.now() >= call.deadline {
            if call.attempts_left == 0 {
                return Err(ClientError::Timeout {
                    attempts: self.attempts,
                    request: call.envelope.id,
                });
            }
            call.attempts_left -= 1;
            self.send(kernel, call.via, Outgoing::Envelope(&call.envelope), true)?;
            call.deadline = kernel.now().saturating_add(self.timeout);
        }
        Ok(None)
    }

    /// Create an object; returns its capability (every object right plus
    /// `GRANT` and `TRANSFER`) and first version.
    pub fn create<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        kind: ObjectKind,
    ) -> Result<(ObjectCap, VersionId), ClientError> {
        let request = Request::Create { kind };
        match self.exchange(kernel, None, &request, MessageId::new())? {
            (Reply::Created { version, .. }, Some(cap)) => Ok((cap, version)),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// A capability for the volume's home map (see `Request::Home`).
    pub fn home<K: KernelApi>(&mut self, kernel: &mut K) -> Result<ObjectCap, ClientError> {
        match self.exchange(kernel, None, &Request::Home, MessageId::new())? {
            (Reply::Cap(_), Some(cap)) => Ok(cap),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// Facts about the volume: its last commit and how many compactions
    /// its backend completed.
    pub fn info<K: KernelApi>(&mut self, kernel: &mut K) -> Result<StorageInfo, ClientError> {
        match self.call(kernel, &Request::Info)? {
            Reply::Info(info) => Ok(info),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    pub fn begin<K: KernelApi>(&mut self, kernel: &mut K) -> Result<TxId, ClientError> {
        match self.call(kernel, &Request::Begin)? {
            Reply::Begun { tx, .. } => Ok(tx),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// One operation on `object` in transaction `tx`.
    pub fn op<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        tx: TxId,
        object: &ObjectCap,
        op: Op,
    ) -> Result<OpResult, ClientError> {
        match self.call_on(kernel, object, &Request::Op { tx, op })? {
            Reply::Op(result) => Ok(result),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// Commit `tx`; returns each changed object's new version.
    pub fn commit<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        tx: TxId,
    ) -> Result<NewVersions, ClientError> {
        match self.call(kernel, &Request::Commit { tx })? {
            Reply::Committed { versions } => Ok(versions),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    pub fn rollback<K: KernelApi>(&mut self, kernel: &mut K, tx: TxId) -> Result<(), ClientError> {
        match self.call(kernel, &Request::Rollback { tx })? {
            Reply::RolledBack => Ok(()),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// Run `ops` on `object` as one transaction in one message.
    pub fn transact<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        object: &ObjectCap,
        ops: Vec<Op>,
    ) -> Result<(Vec<OpResult>, NewVersions), ClientError> {
        match self.call_on(kernel, object, &Request::Transact { ops })? {
            Reply::Transacted { results, versions } => Ok((results, versions)),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    fn single<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        object: &ObjectCap,
        op: Op,
    ) -> Result<OpResult, ClientError> {
        let (mut results, _) = self.transact(kernel, object, vec![op])?;
        results.pop().ok_or(ClientError::UnexpectedReply)
    }

    /// [`single`](Self::single) of an operation borrowing its bytes (the
    /// same request on the wire, without copying them into an `Op`).
    fn single_ref<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        object: &ObjectCap,
        op: OpRef<'_>,
    ) -> Result<OpResult, ClientError> {
        // Written into the last request's buffer.
        let mut request = core::mem::take(&mut self.request);
        self.write_one_op(&mut request, op)?;
        // The usual answer, one result, decodes without allocating the
        // reply's lists, and in place (not into an owned envelope) when it
        // comes as an object call's answer; anything else is judged as a
        // general reply.
        let read = |answer: &ReceivedRef<'_>| {
            let envelope = &answer.envelope;
            if envelope.schema_version == SCHEMA {
                if let Some(result) = one_result(envelope.payload) {
                    return Some(Ok(TransactedOne(result)));
                }
            }
            envelope
                .decode_answer::<Result<TransactedOne, StorageError>>(&VERSION_POLICY, STORAGE)
                .ok()
        };
        let answer = self.exchange_answer(kernel, Some(object), Outgoing::Encoded(&request), &read);
        // A large request's buffer is not kept for the next.
        if request.as_bytes().len() <= SPARE_REQUEST_MAX {
            self.request = request;
        }
        let answer = match answer? {
            Answered::Read(one) => {
                return one
                    .map(|TransactedOne(result)| result)
                    .map_err(ClientError::Storage)
            }
            Answered::Whole(answer) => *answer,
        };
        if let Ok(one) = answer
            .envelope
            .decode_answer::<Result<TransactedOne, StorageError>>(&VERSION_POLICY, STORAGE)
        {
            for cap in answer.capabilities {
                let _ = kernel.drop_capability(cap);
            }
            return one
                .map(|TransactedOne(result)| result)
                .map_err(ClientError::Storage);
        }
        let (reply, granted) = unpack(kernel, answer)?;
        if let Some(cap) = granted {
            let _ = kernel.drop_capability(cap.erase());
        }
        match reply {
            Reply::Transacted { mut results, .. } => {
                results.pop().ok_or(ClientError::UnexpectedReply)
            }
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// Set `key` in a map, in a transaction of its own; returns the new
    /// version.
    pub fn put<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        cap: &ObjectCap,
        key: &[u8],
        value: &[u8],
    ) -> Result<VersionId, ClientError> {
        match self.single_ref(kernel, cap, OpRef::Put { key, value })? {
            OpResult::Written(version) => Ok(version),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// The latest committed value of `key` in a map.
    pub fn get<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        cap: &ObjectCap,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, ClientError> {
        match self.single_ref(kernel, cap, OpRef::Get { key, at: None })? {
            OpResult::Value { value, .. } => Ok(value),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// Remove `key` from a map; returns whether it existed.
    pub fn delete<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        cap: &ObjectCap,
        key: &[u8],
    ) -> Result<bool, ClientError> {
        let op = Op::Delete { key: key.to_vec() };
        match self.single(kernel, cap, op)? {
            OpResult::Deleted { existed, .. } => Ok(existed),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// Append one record to a log; returns its index.
    pub fn append<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        cap: &ObjectCap,
        record: &[u8],
    ) -> Result<u64, ClientError> {
        let op = Op::Append {
            record: record.to_vec(),
        };
        match self.single(kernel, cap, op)? {
            OpResult::Appended { index, .. } => Ok(index),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// Replace a blob's content; returns the new version.
    pub fn write_blob<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        cap: &ObjectCap,
        bytes: &[u8],
    ) -> Result<VersionId, ClientError> {
        let op = Op::WriteBlob {
            bytes: bytes.to_vec(),
        };
        match self.single(kernel, cap, op)? {
            OpResult::Written(version) => Ok(version),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// The whole of a blob at `at` (or its latest version), read in ranges.
    pub fn read_blob<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        cap: &ObjectCap,
        at: Option<VersionId>,
    ) -> Result<Vec<u8>, ClientError> {
        let mut out = Vec::new();
        let mut at = at;
        loop {
            let op = Op::ReadBlob {
                at,
                offset: out.len() as u64,
                max_len: u32::MAX,
            };
            match self.single(kernel, cap, op)? {
                OpResult::Blob {
                    version,
                    total_len,
                    bytes,
                    ..
                } => {
                    // Later ranges read the same version as the first.
                    at = Some(version);
                    out.extend_from_slice(&bytes);
                    if out.len() as u64 >= total_len || bytes.is_empty() {
                        return Ok(out);
                    }
                }
                _ => return Err(ClientError::UnexpectedReply),
            }
        }
    }

    /// Committed versions of an object, oldest first.
    pub fn versions<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        cap: &ObjectCap,
    ) -> Result<Vec<VersionId>, ClientError> {
        let request = Request::Versions {
            after: None,
            limit: u32::MAX,
        };
        match self.call_on(kernel, cap, &request)? {
            Reply::Versions(versions) => Ok(versions),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// Void every capability and token for the object (`cap` needs
    /// `CONTROL`); returns a fresh full capability.
    pub fn revoke<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        cap: &ObjectCap,
    ) -> Result<ObjectCap, ClientError> {
        match self.exchange(kernel, Some(cap), &Request::Revoke, MessageId::new())? {
            (Reply::Cap(_), Some(fresh)) => Ok(fresh),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// Seal `cap` (which needs `GRANT`) into a storable token with its
    /// rights.
    pub fn export<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        cap: &ObjectCap,
    ) -> Result<ObjectToken, ClientError> {
        match self.call_on(kernel, cap, &Request::Export)? {
            Reply::Token(token) => Ok(token),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// A kernel capability for a token exported earlier (by any instance
    /// of the service on the same backend).
    pub fn import<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        token: &ObjectToken,
    ) -> Result<ObjectCap, ClientError> {
        let request = Request::Import {
            token: token.clone(),
        };
        match self.exchange(kernel, None, &request, MessageId::new())? {
            (Reply::Cap(_), Some(cap)) => Ok(cap),
            _ => Err(ClientError::UnexpectedReply),
        }
    }
}

/// A copy of `cap` in the caller's space with only `rights` (of those it
/// has): the kernel's `clone_capability`, which needs `GRANT`.
pub fn attenuate<K: KernelApi>(
    kernel: &mut K,
    cap: &ObjectCap,
    rights: Rights,
) -> Result<ObjectCap, ClientError> {
    let copy = kernel.clone_capability(&Cap::from_handle(cap.handle()), rights)?;
    Ok(copy.assume_kind())
}

/// Move `cap` to whoever receives on `channel` (another client): it rides
/// attached to a message, so the kernel moves it (it needs `TRANSFER`) and
/// the caller no longer holds it. On error the caller keeps it.
pub fn delegate<K: KernelApi>(
    kernel: &mut K,
    channel: ChannelId,
    cap: ObjectCap,
) -> Result<(), ClientError> {
    let envelope = MessageEnvelope::new(
        STORAGE,
        actions::CAP_DELEGATION,
        SCHEMA,
        MessagePayload::new(&())?,
    );
    kernel.send_with_capabilities(channel, envelope, vec![cap.erase()])?;
    Ok(())
}

/// The capability a message sent with [`delegate`] carried, now in the
/// receiver's space. Any other capability it carried is dropped.
pub fn received_cap<K: KernelApi>(
    kernel: &mut K,
    message: ReceivedMessage,
) -> Result<ObjectCap, ClientError> {
    let mut caps = message.capabilities.into_iter();
    let first = caps.next();
    for extra in caps {
        let _ = kernel.drop_capability(extra);
    }
    match first {
        Some(cap) if message.envelope.action == actions::CAP_DELEGATION => Ok(cap.assume_kind()),
        Some(cap) => {
            let _ = kernel.drop_capability(cap);
            Err(ClientError::UnexpectedReply)
        }
        None => Err(ClientError::UnexpectedReply),
    }
}

/// The length of the payload [`write_one_op_request`] writes for `op` in
/// session `session`.
fn one_op_request_len(op: OpRef<'_>, session: u32) -> usize {
    let bytes = |b: &[u8]| varint_len(b.len() as u64) + b.len();
    let operation = match op {
        OpRef::Put { key, value } => varint_len(u64::from(OP_PUT)) + bytes(key) + bytes(value),
        OpRef::Get { key, at } => {
            varint_len(u64::from(OP_GET))
                + bytes(key)
                + at.map_or(1, |version| 1 + varint_len(version.as_raw()))
        }
    };
    // The request's tag, one operation, the operation, `Some(session)`.
    varint_len(u64::from(REQUEST_TRANSACT)) + 1 + operation + 1 + varint_len(u64::from(session))
}

/// Write the payload of a one-operation `Transact` of `op` in session
/// `session` into `out`, which is [`one_op_request_len`] long: the bytes
/// of `RequestPayloadRef { request: &TransactOne(op), session:
/// Some(session) }` through postcard, written by hand (postcard's
/// serializer costs a call per field, tag and varint).
fn write_one_op_request(out: &mut [u8], op: OpRef<'_>, session: u32) {
    let put_bytes = |out: &mut [u8], at: usize, bytes: &[u8]| {
        let at = put_varint(out, at, bytes.len() as u64);
        out[at..at + bytes.len()].copy_from_slice(bytes);
        at + bytes.len()
    };
    let mut at = put_varint(out, 0, u64::from(REQUEST_TRANSACT));
    // One operation.
    at = put_varint(out, at, 1);
    match op {
        OpRef::Put { key, value } => {
            at = put_varint(out, at, u64::from(OP_PUT));
            at = put_bytes(out, at, key);
            at = put_bytes(out, at, value);
        }
        OpRef::Get { key, at: version } => {
            at = put_varint(out, at, u64::from(OP_GET));
            at = put_bytes(out, at, key);
            at = match version {
                None => put_varint(out, at, 0),
                Some(version) => {
                    let at = put_varint(out, at, 1);
                    put_varint(out, at, version.as_raw())
                }
            };
        }
    }
    // `Some(session)`.
    at = put_varint(out, at, 1);
    at = put_varint(out, at, u64::from(session));
    debug_assert_eq!(at, out.len());
}

/// The one result of a one-operation `Transact`'s usual answer, read by
/// hand from its `payload`: `Ok(Reply::Transacted)` with exactly one
/// result, `Written` or `Value`, and any new versions (read past). `Some`
/// only where `Result<TransactedOne, StorageError>`'s decode (postcard, all
/// bytes) gives `Ok(TransactedOne(result))` with this result; `None` for
/// anything else, which the caller decodes the general way.
fn one_result(payload: &[u8]) -> Option<OpResult> {
    use pandagen_abi::varint::{take_bytes, take_u32, take_u64};
    let (side, at) = take_u32(payload, 0)?;
    let (reply, at) = take_u32(payload, at)?;
    let (results, at) = take_u64(payload, at)?;
    if side != 0 || reply != REPLY_TRANSACTED || results != 1 {
        return None;
    }
    let (tag, at) = take_u32(payload, at)?;
    let (version, at) = take_u64(payload, at)?;
    let version = VersionId::from_raw(version);
    let (result, at) = if u64::from(tag) == OP_RESULT_WRITTEN {
        (OpResult::Written(version), at)
    } else if tag == OP_RESULT_VALUE {
        let (value, at) = match *payload.get(at)? {
            0 => (None, at + 1),
            1 => {
                let (value, at) = take_bytes(payload, at + 1)?;
                (Some(value.to_vec()), at)
            }
            _ => return None,
        };
        (OpResult::Value { version, value }, at)
    } else {
        return None;
    };
    // The new versions, (object, version) pairs, read past.
    let (versions, mut at) = take_u64(payload, at)?;
    for _ in 0..versions {
        (_, at) = take_u64(payload, at)?;
        (_, at) = take_u64(payload, at)?;
    }
    (at == payload.len()).then_some(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::TransactOne;
    use proptest::prelude::*;

    fn test_client() -> StorageClient {
        StorageClient::new(
            ChannelId::from_handle(CapHandle::new(1, 0)),
            ChannelId::from_handle(CapHandle::new(2, 0)),
        )
    }

    /// A one-operation request over the payload limit is refused as the
    /// serde path refuses it, and leaves the buffer empty.
    #[test]
    fn a_request_over_the_limit_is_refused_as_before() {
        let mut client = test_client();
        let value = vec![1u8; pandagen_abi::envelope::MAX_PAYLOAD_BYTES];
        let op = OpRef::Put {
            key: b"k",
            value: &value,
        };
        let mut out = EncodedEnvelope::new();
        client
            .write_one_op(
                &mut out,
                OpRef::Get {
                    key: b"k",
                    at: None,
                },
            )
            .unwrap();
        let refused = client.write_one_op(&mut out, op).unwrap_err();
        let expected = client
            .envelope_of(actions::TRANSACT, &TransactOne(op))
            .unwrap_err();
        assert_eq!(refused, expected);
        assert!(matches!(
            refused,
            ClientError::Envelope(EnvelopeError::PayloadTooLarge { .. })
        ));
        assert!(out.as_bytes().is_empty());
    }

    /// An operation as the tests draw it: a key, a put's value or none (a
    /// get), a get's version.
    type AnyOp = (Vec<u8>, Option<Vec<u8>>, Option<u64>);

    fn any_op() -> impl Strategy<Value = AnyOp> {
        (
            proptest::collection::vec(any::<u8>(), 0..140),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
            proptest::option::of(any::<u64>()),
        )
    }

    fn op_of<'a>((key, value, at): &'a AnyOp) -> OpRef<'a> {
        match value {
            Some(value) => OpRef::Put { key, value },
            None => OpRef::Get {
                key,
                at: at.map(VersionId::from_raw),
            },
        }
    }

    /// Any operation's result as the usual answer, with any new versions.
    fn any_answer() -> impl Strategy<Value = Response> {
        let result = prop_oneof![
            any::<u64>().prop_map(|v| OpResult::Written(VersionId::from_raw(v))),
            (
                any::<u64>(),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200))
            )
                .prop_map(|(v, value)| OpResult::Value {
                    version: VersionId::from_raw(v),
                    value
                }),
            any::<u64>().prop_map(|v| OpResult::Version(VersionId::from_raw(v))),
            (any::<u64>(), any::<bool>()).prop_map(|(v, existed)| OpResult::Deleted {
                version: VersionId::from_raw(v),
                existed
            }),
        ];
        let versions = proptest::collection::vec((any::<u64>(), any::<u64>()), 0..3);
        prop_oneof![
            8 => (proptest::collection::vec(result, 0..3), versions).prop_map(|(results, versions)| {
                Ok(Reply::Transacted {
                    results,
                    versions: versions
                        .into_iter()
                        .map(|(o, v)| (crate::ids::ObjectId::from_raw(o), VersionId::from_raw(v)))
                        .collect(),
                })
            }),
            1 => any::<u64>().prop_map(|v| Ok(Reply::Op(OpResult::Written(VersionId::from_raw(v))))),
            1 => any::<u64>().prop_map(|o| Err(StorageError::UnknownObject(crate::ids::ObjectId::from_raw(o)))),
        ]
    }

    proptest! {
        /// The request is written by hand with postcard's bytes, into a
        /// slice of exactly its length.
        #[test]
        fn a_one_operation_request_is_postcards(op in any_op(), session: u32) {
            let op = op_of(&op);
            let mut out = vec![0xee; one_op_request_len(op, session)];
            write_one_op_request(&mut out, op, session);
            let expected = postcard::to_allocvec(&RequestPayloadRef {
                request: &TransactOne(op),
                session: Some(session),
            })
            .unwrap();
            prop_assert_eq!(&out[..], &expected[..]);
        }

        /// One-operation requests written by hand, one after another into
        /// the same buffer, are each byte for byte the envelope of the
        /// same request through serde and the envelope's encoder (under
        /// the same id, a fresh one each), and decode to it.
        #[test]
        fn a_request_written_by_hand_is_its_envelope_encoded(
            ops in proptest::collection::vec(any_op(), 1..4),
            session: u32,
        ) {
            requests_written_by_hand_are_their_envelopes_encoded(&ops, session)?;
        }

        /// The same for requests alike (keys and values of few lengths,
        /// so that many are written in the last one's place).
        #[test]
        fn requests_alike_written_in_place_are_their_envelopes_encoded(
            ops in proptest::collection::vec(
                (
                    prop_oneof![Just(vec![]), Just(vec![1u8]), proptest::collection::vec(any::<u8>(), 8)],
                    proptest::option::of(prop_oneof![Just(vec![2u8; 16]), proptest::collection::vec(any::<u8>(), 16)]),
                    proptest::option::of(prop_oneof![Just(1u64), Just(2)]),
                ),
                1..12,
            ),
            session: u32,
        ) {
            requests_written_by_hand_are_their_envelopes_encoded(&ops, session)?;
        }
    }

    /// Each of `ops`, written one after another into one buffer, is byte
    /// for byte the envelope of the same request through serde and the
    /// envelope's encoder (under the same id, a fresh one each), and
    /// decodes to it.
    fn requests_written_by_hand_are_their_envelopes_encoded(
        ops: &[AnyOp],
        session: u32,
    ) -> Result<(), TestCaseError> {
        let mut client = test_client();
        client.session = session;
        let mut out = EncodedEnvelope::new();
        let mut ids = Vec::new();
        for op in ops {
            let op = op_of(op);
            client.write_one_op(&mut out, op).unwrap();
            let mut fresh = client
                .envelope_of(actions::TRANSACT, &TransactOne(op))
                .unwrap();
            fresh.id = out.id();
            prop_assert_eq!(out.as_bytes(), &fresh.encode().unwrap()[..]);
            prop_assert_eq!(out.decode().unwrap(), fresh);
            prop_assert!(!ids.contains(&out.id()));
            ids.push(out.id());
        }
        Ok(())
    }

    proptest! {

        /// An answer, whole or edited (cut, a byte set, a byte inserted),
        /// is read by hand only as the general decoder reads it, and the
        /// usual answer, whole, always is.
        #[test]
        fn an_answer_is_read_by_hand_as_the_general_decoder_reads_it(
            answer in any_answer(),
            cut: Option<usize>,
            set: Option<(usize, u8)>,
            insert: Option<(usize, u8)>,
        ) {
            let mut bytes = postcard::to_allocvec(&answer).unwrap();
            let usual = match &answer {
                Ok(Reply::Transacted { results, .. }) => matches!(
                    results[..],
                    [OpResult::Written(_)] | [OpResult::Value { .. }]
                ),
                _ => false,
            };
            if usual && cut.is_none() && set.is_none() && insert.is_none() {
                let Ok(Reply::Transacted { results, .. }) = &answer else { unreachable!() };
                prop_assert_eq!(one_result(&bytes), Some(results[0].clone()));
            }
            if let Some(cut) = cut {
                bytes.truncate(cut % (bytes.len() + 1));
            }
            if let Some((i, b)) = set {
                if !bytes.is_empty() {
                    let i = i % bytes.len();
                    bytes[i] = b;
                }
            }
            if let Some((i, b)) = insert {
                bytes.insert(i % (bytes.len() + 1), b);
            }
            if let Some(result) = one_result(&bytes) {
                let general = pandagen_abi::evolve::answer_from_bytes::<
                    Result<TransactedOne, StorageError>,
                >(&bytes);
                prop_assert_eq!(general, Ok(Ok(TransactedOne(result))));
            }
        }
    }

    /// What the general decoder refuses, the hand reader refuses too.
    #[test]
    fn an_answer_the_general_decoder_refuses_is_not_read_by_hand() {
        let version = VersionId::from_raw(3);
        let answer: Response = Ok(Reply::Transacted {
            results: vec![OpResult::Value {
                version,
                value: None,
            }],
            versions: Vec::new(),
        });
        let good = postcard::to_allocvec(&answer).unwrap();
        assert_eq!(good, [0, 5, 1, 6, 3, 0, 0]);
        let mut tag = good.clone();
        tag[5] = 2; // an option's tag of 2
        let mut trailing = good.clone();
        trailing.push(0);
        let mut two = good.clone();
        two[2] = 2; // two results
        two.extend([2, 3]);
        for bytes in [tag, trailing, two] {
            assert_eq!(one_result(&bytes), None, "{bytes:?}");
            assert!(
                pandagen_abi::evolve::answer_from_bytes::<Result<TransactedOne, StorageError>>(
                    &bytes
                )
                .is_err()
            );
        }
    }

    /// The hand-read answer is taken only under the schema version the
    /// client sends, which the version policy accepts.
    #[test]
    fn the_client_reads_answers_of_its_own_version_by_hand() {
        assert!(VERSION_POLICY.check(STORAGE, SCHEMA).is_ok());
    }
}
