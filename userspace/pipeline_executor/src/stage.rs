//! The stage protocol: how the executor asks a handler service to run one
//! stage, and the adapter that turns any service into a stage handler.
//!
//! A stage attempt is one request on the handler's service channel:
//! * action: the stage's `action`;
//! * schema version: [`STAGE_PROTOCOL`]'s current version;
//! * payload: a [`StageRequest`] (the typed input plus the labels of the
//!   capabilities attached);
//! * capabilities: first, a send-only capability for the executor's reply
//!   channel (the request/response convention of `pandagen_abi::api`); then
//!   one copy of each capability the stage requires, in label order.
//!
//! A service that serves its own protocol on the same channel tells stage
//! requests apart by action: pipelines name such a service's stage actions
//! with the [`STAGE_ACTION_PREFIX`] (for example storage's
//! `stage.create_blob`), and the service routes every action for which
//! [`is_stage_action`] holds to [`handle_stage_request`] with its
//! [`StageHandler`] — typically a small adapter struct borrowing the
//! service's state. A service that only runs stages (like the transformer)
//! needs no prefix.
//!
//! The handler answers on the reply channel with action
//! [`STAGE_RESULT_ACTION`], the request's id as correlation id, and a
//! [`StageReply`]. A successful result attaches the capabilities it names,
//! in order. The handler then drops the reply capability and the input
//! capabilities: a stage borrows authority for one attempt, it does not keep
//! it. [`handle_stage_request`] does all of this for a [`StageHandler`].

use alloc::string::String;
use alloc::vec::Vec;
use pandagen_abi::{
    Answer, Cap, ChannelId, EnvelopeError, KernelApi, KernelError, MessageEnvelope, MessagePayload,
    ReceivedMessage, ServiceId, TaskId, VersionPolicy,
};
use serde::{Deserialize, Serialize};

use crate::caps::drop_all;
use crate::ids::{PipelineId, StageId};
use crate::payload::TypedPayload;

/// Versions of the stage protocol a handler accepts (current major only:
/// there is no older major yet).
pub const STAGE_PROTOCOL: VersionPolicy = VersionPolicy::current(1, 0);
/// The action of every stage reply.
pub const STAGE_RESULT_ACTION: &str = "pipeline.stage_result";
/// The prefix of stage actions on a channel that also serves another
/// protocol (see the module docs).
pub const STAGE_ACTION_PREFIX: &str = "stage.";

/// True if `action` names a stage on a channel shared with another
/// protocol.
pub fn is_stage_action(action: &str) -> bool {
    action.len() > STAGE_ACTION_PREFIX.len() && action.starts_with(STAGE_ACTION_PREFIX)
}

/// One stage attempt, as sent to the handler.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRequest {
    pub pipeline_id: PipelineId,
    pub stage_id: StageId,
    /// 0 for the first attempt, n for the n-th retry. Handlers may use
    /// `(pipeline_id, stage_id, attempt)` to recognise a duplicate.
    pub attempt: u32,
    pub input: TypedPayload,
    /// Labels of the capabilities attached after the reply capability.
    pub capabilities: Vec<u64>,
}

/// The outcome of one stage attempt (docs/interfaces.md, "Pipelines").
/// `capabilities` are the labels of the capabilities attached to the reply,
/// under which they join the executor's pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StageResult {
    Success {
        output: TypedPayload,
        capabilities: Vec<u64>,
    },
    /// Permanent: the pipeline stops.
    Failure { error: String },
    /// Transient: the executor retries as the stage's policy allows.
    Retryable { error: String },
}

/// What a handler sends back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StageReply {
    /// The stage ran (or decided not to) and this is its result.
    Completed(StageResult),
    /// The request itself was unacceptable; the stage did not run.
    Rejected(StageRequestError),
}

/// Why a handler refused a stage request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StageRequestError {
    /// Wrong protocol version or malformed payload (checked in that order).
    Envelope(EnvelopeError),
    /// The handler has no such action.
    UnknownAction,
    /// The labels in the request do not match the capabilities attached.
    CapabilityCountMismatch { declared: u32, attached: u32 },
    /// Never sent: a refusal of a newer handler that this version does not
    /// know, with its variant index (see [`pandagen_abi::evolve`]).
    Unrecognized { variant: u32 },
}

impl Answer for StageReply {
    const ERROR_VARIANT: u32 = 1;

    fn unrecognized_error(variant: u32) -> Self {
        StageReply::Rejected(StageRequestError::Unrecognized { variant })
    }
}

/// One stage invocation, as a handler sees it. The capabilities are lent:
/// the adapter drops them after the handler returns, so a handler that
/// needs one beyond the attempt must `clone_capability` it.
#[derive(Debug)]
pub struct StageCall {
    pub action: String,
    pub source: Option<TaskId>,
    pub pipeline_id: PipelineId,
    pub stage_id: StageId,
    pub attempt: u32,
    pub input: TypedPayload,
    pub capabilities: Vec<(u64, Cap<()>)>,
}

/// What a handler decides. Capabilities in `Success` are moved to the
/// executor under the given labels.
#[derive(Debug)]
pub enum StageOutcome {
    Success {
        output: TypedPayload,
        capabilities: Vec<(u64, Cap<()>)>,
    },
    Failure {
        error: String,
    },
    Retryable {
        error: String,
    },
    /// The action is not one this handler implements.
    UnknownAction,
}

/// A service that can run pipeline stages. Implement this (directly or in a
/// small adapter struct around a service's own logic) and serve it with
/// [`handle_stage_request`] or [`serve_stages`].
pub trait StageHandler {
    fn run_stage<K: KernelApi>(&mut self, kernel: &mut K, call: &StageCall) -> StageOutcome;
}

/// How one request was dealt with, for the caller's bookkeeping and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageHandled {
    /// The handler ran and its result was sent.
    Ran,
    /// The request was refused with a typed error and the stage did not run.
    Rejected(StageRequestError),
    /// The request carried no reply capability, so nobody can be answered;
    /// its capabilities were dropped and the stage did not run.
    NoReplyPath,
    /// The reply could not be sent; the capabilities it would have carried
    /// were dropped.
    ReplyFailed(KernelError),
}

fn send_reply<K: KernelApi>(
    kernel: &mut K,
    reply_cap: Cap<()>,
    request: &MessageEnvelope,
    reply: &StageReply,
    capabilities: Vec<Cap<()>>,
) -> Result<(), KernelError> {
    let payload = match MessagePayload::new(reply) {
        Ok(payload) => payload,
        Err(e) => {
            drop_all(kernel, capabilities);
            let _ = kernel.drop_capability(reply_cap);
            return Err(KernelError::Envelope(e));
        }
    };
    let envelope = MessageEnvelope::reply_to(request, STAGE_RESULT_ACTION, payload);
    let channel = ChannelId::from_handle(reply_cap.handle());
    let handles: Vec<_> = capabilities.iter().map(Cap::handle).collect();
    let sent = kernel.send_with_capabilities(channel, envelope, capabilities);
    if sent.is_err() {
        // A failed send leaves the capabilities with us: release them.
        drop_all(kernel, handles.into_iter().map(Cap::from_handle));
    }
    let _ = kernel.drop_capability(reply_cap);
    sent
}

/// Handle one received stage request: check the version, decode, run the
/// handler, reply, and release every capability the request brought.
pub fn handle_stage_request<K: KernelApi, H: StageHandler>(
    kernel: &mut K,
    service: ServiceId,
    handler: &mut H,
    received: ReceivedMessage,
) -> StageHandled {
    let ReceivedMessage {
        envelope,
        capabilities,
        ..
    } = received;
    let mut capabilities = capabilities.into_iter();
    let Some(reply_cap) = capabilities.next() else {
        return StageHandled::NoReplyPath;
    };
    let lent: Vec<Cap<()>> = capabilities.collect();

    let request: StageRequest = match envelope.decode_payload(&STAGE_PROTOCOL, service) {
        Ok(request) => request,
        Err(e) => {
            return reject(
                kernel,
                reply_cap,
                &envelope,
                lent,
                StageRequestError::Envelope(e),
            )
        }
    };
    if request.capabilities.len() != lent.len() {
        let error = StageRequestError::CapabilityCountMismatch {
            declared: request.capabilities.len() as u32,
            attached: lent.len() as u32,
        };
        return reject(kernel, reply_cap, &envelope, lent, error);
    }

    let call = StageCall {
        action: envelope.action.clone(),
        source: envelope.source,
        pipeline_id: request.pipeline_id,
        stage_id: request.stage_id,
        attempt: request.attempt,
        input: request.input,
        capabilities: request.capabilities.into_iter().zip(lent).collect(),
    };
    let outcome = handler.run_stage(kernel, &call);
    drop_all(kernel, call.capabilities.into_iter().map(|(_, c)| c));

    let (reply, attached) = match outcome {
        StageOutcome::UnknownAction => {
            return reject(
                kernel,
                reply_cap,
                &envelope,
                Vec::new(),
                StageRequestError::UnknownAction,
            )
        }
        StageOutcome::Success {
            output,
            capabilities,
        } => {
            let (labels, caps): (Vec<u64>, Vec<Cap<()>>) = capabilities.into_iter().unzip();
            let result = StageResult::Success {
                output,
                capabilities: labels,
            };
            (StageReply::Completed(result), caps)
        }
        StageOutcome::Failure { error } => (
            StageReply::Completed(StageResult::Failure { error }),
            Vec::new(),
        ),
        StageOutcome::Retryable { error } => (
            StageReply::Completed(StageResult::Retryable { error }),
            Vec::new(),
        ),
    };
    match send_reply(kernel, reply_cap, &envelope, &reply, attached) {
        Ok(()) => StageHandled::Ran,
        Err(e) => StageHandled::ReplyFailed(e),
    }
}

fn reject<K: KernelApi>(
    kernel: &mut K,
    reply_cap: Cap<()>,
    request: &MessageEnvelope,
    lent: Vec<Cap<()>>,
    error: StageRequestError,
) -> StageHandled {
    drop_all(kernel, lent);
    match send_reply(
        kernel,
        reply_cap,
        request,
        &StageReply::Rejected(error),
        Vec::new(),
    ) {
        Ok(()) => StageHandled::Rejected(error),
        Err(e) => StageHandled::ReplyFailed(e),
    }
}

/// Serve stage requests on `channel` until receiving fails (the channel was
/// closed), returning that error.
pub fn serve_stages<K: KernelApi, H: StageHandler>(
    kernel: &mut K,
    service: ServiceId,
    channel: ChannelId,
    handler: &mut H,
) -> KernelError {
    loop {
        match kernel.receive_with_capabilities(channel, None) {
            Ok(received) => {
                handle_stage_request(kernel, service, handler, received);
            }
            Err(e) if e.ends_receiving() => return e,
            // Timeouts and injected faults are transient: keep serving.
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_actions_are_recognised_by_their_prefix() {
        assert!(is_stage_action("stage.create_blob"));
        assert!(!is_stage_action("stage."));
        assert!(!is_stage_action("storage.create"));
        assert!(!is_stage_action("create_blob"));
    }
}
