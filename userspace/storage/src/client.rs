//! The typed storage client, over any `KernelApi`.
//!
//! Each call sends one request with a send-only capability for the
//! client's reply channel and waits for the answer correlated to it. If no
//! answer comes within the timeout, the *same* envelope (same message id)
//! is sent again, up to the configured number of attempts; the server
//! answers a repeated id from its memory instead of executing it twice, so
//! retries are idempotent. Answers to earlier, abandoned attempts that
//! arrive late are recognised by their correlation id and discarded.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use pandagen_abi::error::{ReceiveError, SendError};
use pandagen_abi::services::STORAGE;
use pandagen_abi::{
    Cap, ChannelId, Duration, EnvelopeError, Instant, KernelApi, KernelError, MessageEnvelope,
    MessageId, MessagePayload, Rights,
};

use crate::cap::ObjectCap;
use crate::error::StorageError;
use crate::ids::{TxId, VersionId};
use crate::object::ObjectKind;
use crate::protocol::{
    actions, NewVersions, Op, OpResult, Reply, Request, Response, SCHEMA, VERSION_POLICY,
};

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
    /// The answer was of another kind than the request calls for.
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

/// A request sent with [`StorageClient::start`] and not yet answered.
#[derive(Debug)]
pub struct PendingCall {
    envelope: MessageEnvelope,
    deadline: Instant,
    attempts_left: u32,
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
}

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
        }
    }

    /// Wait `timeout` for each answer and try `attempts` times (at least 1).
    pub fn with_retry(mut self, timeout: Duration, attempts: u32) -> Self {
        self.timeout = timeout;
        self.attempts = attempts.max(1);
        self
    }

    /// Send `request` and wait for its answer (see the module docs).
    pub fn call<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        request: &Request,
    ) -> Result<Reply, ClientError> {
        self.call_as(kernel, request, MessageId::new())
    }

    /// [`call`](Self::call) under the message id `id`. Re-sending a request
    /// under the id of an earlier call that timed out is answered with that
    /// call's outcome if it was executed (the service remembers recent
    /// answers, those of commits even across its restarts), and executes it
    /// otherwise.
    pub fn call_as<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        request: &Request,
        id: MessageId,
    ) -> Result<Reply, ClientError> {
        let mut envelope = MessageEnvelope::new(
            STORAGE,
            request.action(),
            SCHEMA,
            MessagePayload::new(request)?,
        );
        envelope.id = id;
        for _ in 0..self.attempts {
            if let Some(answer) = self.attempt(kernel, &envelope)? {
                let response: Response = answer.decode_payload(&VERSION_POLICY, STORAGE)?;
                return response.map_err(ClientError::Storage);
            }
        }
        Err(ClientError::Timeout {
            attempts: self.attempts,
            request: id,
        })
    }

    /// Send `envelope` with a fresh reply capability. `false` if it could
    /// not be sent now (the caller then spends the attempt waiting, as for
    /// a lost answer). A closed service channel is looked up again first: a
    /// restarted storage task has registered a new one.
    fn send<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        envelope: &MessageEnvelope,
    ) -> Result<bool, ClientError> {
        let mut looked_up = false;
        loop {
            let reply_cap = kernel.clone_capability(
                &Cap::<()>::from(self.reply),
                Rights::SEND | Rights::TRANSFER,
            )?;
            let handle = reply_cap.handle();
            let Err(e) =
                kernel.send_with_capabilities(self.service, envelope.clone(), vec![reply_cap])
            else {
                return Ok(true);
            };
            // A failed send leaves the capability with us.
            let _ = kernel.drop_capability(Cap::from_handle(handle));
            match e {
                KernelError::SendFailed(SendError::ChannelClosed)
                    if self.relookup && !looked_up =>
                {
                    looked_up = true;
                    match kernel.lookup_service(STORAGE) {
                        Ok(service) if service != self.service => self.service = service,
                        _ => return Ok(false),
                    }
                }
                // Full queue, an injected fault, or a service still away.
                KernelError::SendFailed(_) => return Ok(false),
                other => return Err(other.into()),
            }
        }
    }

    /// One send and one wait; `None` on timeout.
    fn attempt<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        envelope: &MessageEnvelope,
    ) -> Result<Option<MessageEnvelope>, ClientError> {
        if !self.send(kernel, envelope)? {
            kernel.sleep(self.timeout)?;
            return Ok(None);
        }
        let deadline = kernel.now().saturating_add(self.timeout);
        loop {
            let left = deadline.saturating_duration_since(kernel.now());
            if left.is_zero() {
                return Ok(None);
            }
            match kernel.receive_message(self.reply, Some(left)) {
                Ok(answer) if answer.correlation_id == Some(envelope.id) => {
                    return Ok(Some(answer))
                }
                // A late answer to an earlier call: drop it and keep waiting.
                Ok(_) => continue,
                // A lost or failed receive counts as a lost answer: the next
                // attempt re-sends under the same id.
                Err(KernelError::Timeout)
                | Err(KernelError::ReceiveFailed(ReceiveError::InjectedFault)) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Send `request` without waiting for the answer, for callers that must
    /// not block (event loops, services stepped by the simulator's scenario
    /// runner). Drive it with [`poll`](Self::poll).
    pub fn start<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        request: &Request,
    ) -> Result<PendingCall, ClientError> {
        let envelope = MessageEnvelope::new(
            STORAGE,
            request.action(),
            SCHEMA,
            MessagePayload::new(request)?,
        );
        // If it cannot be sent now, the first deadline re-sends it.
        self.send(kernel, &envelope)?;
        Ok(PendingCall {
            envelope,
            deadline: kernel.now().saturating_add(self.timeout),
            attempts_left: self.attempts - 1,
        })
    }

    /// The answer to `call` if it has arrived, without waiting. Past the
    /// call's deadline the request is re-sent under the same id, until the
    /// attempts are spent (then `Timeout`).
    pub fn poll<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        call: &mut PendingCall,
    ) -> Result<Option<Reply>, ClientError> {
        loop {
            match kernel.receive_message(self.reply, Some(Duration::ZERO)) {
                Ok(answer) if answer.correlation_id == Some(call.envelope.id) => {
                    let response: Response = answer.decode_payload(&VERSION_POLICY, STORAGE)?;
                    return response.map(Some).map_err(ClientError::Storage);
                }
                Ok(_) => continue,
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
            self.send(kernel, &call.envelope)?;
            call.deadline = kernel.now().saturating_add(self.timeout);
        }
        Ok(None)
    }

    /// Create an object; returns its full capability and first version.
    pub fn create<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        kind: ObjectKind,
    ) -> Result<(ObjectCap, VersionId), ClientError> {
        match self.call(kernel, &Request::Create { kind })? {
            Reply::Created { cap, version } => Ok((cap, version)),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    pub fn begin<K: KernelApi>(&mut self, kernel: &mut K) -> Result<TxId, ClientError> {
        match self.call(kernel, &Request::Begin)? {
            Reply::Begun { tx, .. } => Ok(tx),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// One operation in transaction `tx`.
    pub fn op<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        tx: TxId,
        op: Op,
    ) -> Result<OpResult, ClientError> {
        match self.call(kernel, &Request::Op { tx, op })? {
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

    /// Run `ops` as one transaction in one message.
    pub fn transact<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        ops: Vec<Op>,
    ) -> Result<(Vec<OpResult>, NewVersions), ClientError> {
        match self.call(kernel, &Request::Transact { ops })? {
            Reply::Transacted { results, versions } => Ok((results, versions)),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    fn single<K: KernelApi>(&mut self, kernel: &mut K, op: Op) -> Result<OpResult, ClientError> {
        let (mut results, _) = self.transact(kernel, vec![op])?;
        results.pop().ok_or(ClientError::UnexpectedReply)
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
        let op = Op::Put {
            cap: cap.clone(),
            key: key.to_vec(),
            value: value.to_vec(),
        };
        match self.single(kernel, op)? {
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
        let op = Op::Get {
            cap: cap.clone(),
            key: key.to_vec(),
            at: None,
        };
        match self.single(kernel, op)? {
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
        let op = Op::Delete {
            cap: cap.clone(),
            key: key.to_vec(),
        };
        match self.single(kernel, op)? {
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
            cap: cap.clone(),
            record: record.to_vec(),
        };
        match self.single(kernel, op)? {
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
            cap: cap.clone(),
            bytes: bytes.to_vec(),
        };
        match self.single(kernel, op)? {
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
                cap: cap.clone(),
                at,
                offset: out.len() as u64,
                max_len: u32::MAX,
            };
            match self.single(kernel, op)? {
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
            cap: cap.clone(),
            after: None,
            limit: u32::MAX,
        };
        match self.call(kernel, &request)? {
            Reply::Versions(versions) => Ok(versions),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// A token for the same object with only `rights` (of those `cap` has).
    pub fn attenuate<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        cap: &ObjectCap,
        rights: Rights,
    ) -> Result<ObjectCap, ClientError> {
        let request = Request::Attenuate {
            cap: cap.clone(),
            rights,
        };
        match self.call(kernel, &request)? {
            Reply::Cap(cap) => Ok(cap),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// Void every token for the object; returns a fresh full one.
    pub fn revoke<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        cap: &ObjectCap,
    ) -> Result<ObjectCap, ClientError> {
        match self.call(kernel, &Request::Revoke { cap: cap.clone() })? {
            Reply::Cap(cap) => Ok(cap),
            _ => Err(ClientError::UnexpectedReply),
        }
    }
}

/// Hand `cap` to whoever receives on `channel` (another client), moving it
/// out of the caller's hands. See [`cap`](crate::cap) for what "moving" a
/// token does and does not guarantee.
pub fn delegate<K: KernelApi>(
    kernel: &mut K,
    channel: ChannelId,
    cap: ObjectCap,
) -> Result<(), ClientError> {
    let envelope = MessageEnvelope::new(
        STORAGE,
        actions::CAP_DELEGATION,
        SCHEMA,
        MessagePayload::new(&cap)?,
    );
    kernel.send_message(channel, envelope)?;
    Ok(())
}

/// The token in a message sent with [`delegate`].
pub fn received_cap(envelope: &MessageEnvelope) -> Result<ObjectCap, ClientError> {
    if envelope.action != actions::CAP_DELEGATION {
        return Err(ClientError::UnexpectedReply);
    }
    Ok(envelope.decode_payload(&VERSION_POLICY, STORAGE)?)
}
