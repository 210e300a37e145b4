//! The pipeline executor as a service.
//!
//! Protocol (version [`PIPELINE_PROTOCOL`], current major only):
//! * request action [`EXECUTE_ACTION`], payload [`PipelineRequest::Execute`];
//!   capabilities: the client's reply capability first (the request/response
//!   convention), then the pipeline's initial capabilities, labelled in order
//!   by `capabilities`;
//! * response action [`RESPONSE_ACTION`] with the request's id as
//!   correlation id, payload [`PipelineResponse`]. `Executed` carries the
//!   output (if every stage succeeded), the trace, and — attached, labelled
//!   in order — every capability left in the run's pool: the initial ones and
//!   those the stages produced. The service keeps nothing between requests.
//!
//! Every bad request gets a typed `Rejected` response: the version is
//! checked first, then the action, then the payload is decoded.
//!
//! The service runs one pipeline at a time; a request waits in the channel
//! queue while another pipeline runs. It is driven either by the blocking
//! [`PipelineService::serve`] loop (ring 3) or step by step with
//! [`PipelineService::step`] (a cooperative scheduler such as the
//! simulator's scenario runner); both share every decision.

use alloc::vec::Vec;
use pandagen_abi::envelope::MAX_PAYLOAD_BYTES;
use pandagen_abi::services::PIPELINE_EXECUTOR;
use pandagen_abi::{
    Answer, Cap, CapHandle, ChannelId, Duration, EnvelopeError, Instant, KernelApi, KernelError,
    MessageEnvelope, MessagePayload, ReceivedMessage, VersionPolicy,
};
use serde::{Deserialize, Serialize};

use crate::caps::drop_all;
use crate::executor::{PipelineExecution, PipelineExecutor, PipelineRun, Progress};
use crate::payload::TypedPayload;
use crate::spec::PipelineSpec;
use crate::trace::ExecutionTrace;

pub const PIPELINE_PROTOCOL: VersionPolicy = VersionPolicy::current(1, 0);
pub const EXECUTE_ACTION: &str = "pipeline.execute";
pub const RESPONSE_ACTION: &str = "pipeline.response";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PipelineRequest {
    Execute {
        pipeline: PipelineSpec,
        input: TypedPayload,
        /// Labels of the attached initial capabilities, in order.
        capabilities: Vec<u64>,
    },
}

impl PipelineRequest {
    pub fn action(&self) -> &'static str {
        match self {
            PipelineRequest::Execute { .. } => EXECUTE_ACTION,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PipelineResponse {
    Executed {
        output: Option<TypedPayload>,
        trace: ExecutionTrace,
        /// Labels of the attached capabilities (the run's final pool).
        capabilities: Vec<u64>,
        /// Trace entries left out, oldest first, so the response fits in one
        /// message. 0 unless the trace was very long.
        omitted_entries: u32,
        /// True if the output was left out because it did not fit.
        output_omitted: bool,
    },
    Rejected(PipelineRequestError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PipelineRequestError {
    /// Wrong protocol version or malformed payload.
    Envelope(EnvelopeError),
    UnknownAction,
    /// The labels do not match the capabilities attached.
    CapabilityCountMismatch {
        declared: u32,
        attached: u32,
    },
    /// Two initial capabilities share a label.
    DuplicateCapabilityLabel(u64),
    /// Never sent: a refusal of a newer executor that this version does
    /// not know, with its variant index (see [`pandagen_abi::evolve`]).
    Unrecognized {
        variant: u32,
    },
}

impl Answer for PipelineResponse {
    const ERROR_VARIANT: u32 = 1;

    fn unrecognized_error(variant: u32) -> Self {
        PipelineResponse::Rejected(PipelineRequestError::Unrecognized { variant })
    }
}

/// What happened to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PipelineHandled {
    /// The pipeline ran (successfully or not) and the response was sent.
    Executed,
    Rejected(PipelineRequestError),
    /// No reply capability: nobody to answer. Nothing ran; the request's
    /// capabilities were released.
    NoReplyPath,
    /// The response could not be sent; its capabilities were released.
    ReplyFailed(KernelError),
}

/// What one [`PipelineService::step`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceStep {
    /// Something happened (a request was taken or answered, or a stage
    /// moved on); step again.
    Progress,
    /// Nothing to do until a message arrives.
    Idle,
    /// A pipeline is waiting for a stage reply or a backoff; step again by
    /// this instant (or when a message arrives).
    WaitUntil(Instant),
}

/// A pipeline accepted and in progress.
struct Job {
    executor: PipelineExecutor,
    execution: PipelineExecution,
    request: MessageEnvelope,
    reply_cap: Cap<()>,
}

/// The service: configuration, plus the one pipeline in progress when
/// driven step by step. Runs share nothing.
pub struct PipelineService {
    stage_timeout: Duration,
    job: Option<Job>,
}

impl Default for PipelineService {
    fn default() -> Self {
        Self::new()
    }
}

impl PipelineService {
    pub fn new() -> Self {
        PipelineService {
            stage_timeout: PipelineExecutor::DEFAULT_STAGE_TIMEOUT,
            job: None,
        }
    }

    pub fn with_stage_timeout(mut self, timeout: Duration) -> Self {
        self.stage_timeout = timeout;
        self
    }

    /// Create the service channel and register it as
    /// [`PIPELINE_EXECUTOR`].
    pub fn register<K: KernelApi>(kernel: &mut K) -> Result<ChannelId, KernelError> {
        let channel = kernel.create_channel()?;
        kernel.register_service(PIPELINE_EXECUTOR, channel)?;
        Ok(channel)
    }

    /// Serve requests on `channel`, blocking, until it can no longer
    /// deliver. This is the ring-3 server loop.
    pub fn serve<K: KernelApi>(&mut self, kernel: &mut K, channel: ChannelId) -> KernelError {
        loop {
            match kernel.receive_with_capabilities(channel, None) {
                Ok(received) => {
                    self.handle(kernel, received);
                }
                Err(e) if e.ends_receiving() => return e,
                Err(_) => {}
            }
        }
    }

    /// Handle one request, blocking until its pipeline has run and the
    /// response is sent.
    pub fn handle<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        received: ReceivedMessage,
    ) -> PipelineHandled {
        match self.accept(kernel, received) {
            Ok(mut job) => {
                let run = job.executor.complete(kernel, &mut job.execution);
                respond(kernel, job, run)
            }
            Err(handled) => handled,
        }
    }

    /// One cooperative step on `channel`, never blocking: advance the
    /// pipeline in progress (answering it when it ends), or take the next
    /// request. Requests arriving meanwhile wait in the channel's queue.
    pub fn step<K: KernelApi>(&mut self, kernel: &mut K, channel: ChannelId) -> ServiceStep {
        if let Some(mut job) = self.job.take() {
            return match job.executor.advance(kernel, &mut job.execution) {
                Progress::Finished(run) => {
                    respond(kernel, job, run);
                    ServiceStep::Progress
                }
                Progress::Pending(wait) => {
                    self.job = Some(job);
                    ServiceStep::WaitUntil(wait.wake_at())
                }
            };
        }
        match kernel.receive_with_capabilities(channel, Some(Duration::ZERO)) {
            Ok(received) => {
                if let Ok(job) = self.accept(kernel, received) {
                    self.job = Some(job);
                }
                ServiceStep::Progress
            }
            Err(KernelError::Timeout) => ServiceStep::Idle,
            Err(_) => ServiceStep::Progress,
        }
    }

    /// True while a pipeline accepted by [`PipelineService::step`] runs.
    pub fn is_busy(&self) -> bool {
        self.job.is_some()
    }

    /// Check a request and start its pipeline; a bad request is answered
    /// with its typed rejection here.
    fn accept<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        received: ReceivedMessage,
    ) -> Result<Job, PipelineHandled> {
        let ReceivedMessage {
            envelope,
            capabilities,
            ..
        } = received;
        let mut capabilities = capabilities.into_iter();
        let Some(reply_cap) = capabilities.next() else {
            return Err(PipelineHandled::NoReplyPath);
        };
        let initial: Vec<Cap<()>> = capabilities.collect();

        let checked = PIPELINE_PROTOCOL
            .check(PIPELINE_EXECUTOR, envelope.schema_version)
            .map_err(|e| PipelineRequestError::Envelope(EnvelopeError::SchemaMismatch(e)))
            .and_then(|()| {
                if envelope.action == EXECUTE_ACTION {
                    Ok(())
                } else {
                    Err(PipelineRequestError::UnknownAction)
                }
            })
            .and_then(|()| {
                envelope
                    .payload
                    .decode::<PipelineRequest>()
                    .map_err(PipelineRequestError::Envelope)
            });
        let (pipeline, input, labels) = match checked {
            Ok(PipelineRequest::Execute {
                pipeline,
                input,
                capabilities,
            }) => (pipeline, input, capabilities),
            Err(error) => return Err(reject(kernel, reply_cap, &envelope, initial, error)),
        };
        if labels.len() != initial.len() {
            let error = PipelineRequestError::CapabilityCountMismatch {
                declared: labels.len() as u32,
                attached: initial.len() as u32,
            };
            return Err(reject(kernel, reply_cap, &envelope, initial, error));
        }

        let mut executor = PipelineExecutor::new().with_stage_timeout(self.stage_timeout);
        for (&label, capability) in labels.iter().zip(initial) {
            if let Err(capability) = executor.add_capability(label, capability) {
                let _ = kernel.drop_capability(capability);
                executor.release_capabilities(kernel);
                let error = PipelineRequestError::DuplicateCapabilityLabel(label);
                return Err(reject(kernel, reply_cap, &envelope, Vec::new(), error));
            }
        }
        let execution = executor.start(kernel, &pipeline, input);
        Ok(Job {
            executor,
            execution,
            request: envelope,
            reply_cap,
        })
    }
}

/// Answer a finished job, handing the run's pool to the client.
fn respond<K: KernelApi>(kernel: &mut K, mut job: Job, run: PipelineRun) -> PipelineHandled {
    let (labels, pool): (Vec<u64>, Vec<Cap<()>>) =
        job.executor.take_capabilities().into_iter().unzip();
    let payload = fitting_response(run.output, run.trace, labels);
    match send_response(kernel, job.reply_cap, &job.request, payload, pool) {
        Ok(()) => PipelineHandled::Executed,
        Err(e) => PipelineHandled::ReplyFailed(e),
    }
}

fn reject<K: KernelApi>(
    kernel: &mut K,
    reply_cap: Cap<()>,
    request: &MessageEnvelope,
    capabilities: Vec<Cap<()>>,
    error: PipelineRequestError,
) -> PipelineHandled {
    drop_all(kernel, capabilities);
    let payload = MessagePayload::new(&PipelineResponse::Rejected(error));
    match send_response(kernel, reply_cap, request, payload, Vec::new()) {
        Ok(()) => PipelineHandled::Rejected(error),
        Err(e) => PipelineHandled::ReplyFailed(e),
    }
}

/// Encode the response, leaving out the oldest trace entries (and, as a
/// last resort, the output) until it fits in one message.
fn fitting_response(
    output: Option<TypedPayload>,
    mut trace: ExecutionTrace,
    capabilities: Vec<u64>,
) -> Result<MessagePayload, EnvelopeError> {
    // An output that cannot fit even alone goes first, so the trace is not
    // cut for nothing; otherwise the output is worth more than old entries.
    let hopeless = output
        .as_ref()
        .is_some_and(|o| o.data.len() + o.schema.name().len() + 32 > MAX_PAYLOAD_BYTES);
    let mut output_omitted = hopeless;
    let mut output = if hopeless { None } else { output };
    let mut omitted_entries = 0u32;
    loop {
        let response = PipelineResponse::Executed {
            output: output.clone(),
            trace: trace.clone(),
            capabilities: capabilities.clone(),
            omitted_entries,
            output_omitted,
        };
        match MessagePayload::new(&response) {
            Err(EnvelopeError::PayloadTooLarge { .. }) if !trace.entries.is_empty() => {
                let drop = trace.entries.len().div_ceil(4);
                trace.entries.drain(..drop);
                omitted_entries += drop as u32;
            }
            Err(EnvelopeError::PayloadTooLarge { .. }) if output.is_some() => {
                output = None;
                output_omitted = true;
            }
            other => return other,
        }
    }
}

fn send_response<K: KernelApi>(
    kernel: &mut K,
    reply_cap: Cap<()>,
    request: &MessageEnvelope,
    payload: Result<MessagePayload, EnvelopeError>,
    capabilities: Vec<Cap<()>>,
) -> Result<(), KernelError> {
    let result = match payload {
        Ok(payload) => {
            let envelope = MessageEnvelope::reply_to(request, RESPONSE_ACTION, payload);
            let channel = ChannelId::from_handle(reply_cap.handle());
            let handles: Vec<CapHandle> = capabilities.iter().map(Cap::handle).collect();
            let sent = kernel.send_with_capabilities(channel, envelope, capabilities);
            if sent.is_err() {
                drop_all(kernel, handles.into_iter().map(Cap::from_handle));
            }
            sent
        }
        Err(e) => {
            drop_all(kernel, capabilities);
            Err(KernelError::Envelope(e))
        }
    };
    let _ = kernel.drop_capability(reply_cap);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{PipelineId, StageId};
    use crate::payload::PayloadSchemaId;
    use crate::trace::{PipelineExecutionResult, StageExecutionResult, StageTraceEntry};
    use alloc::string::String;
    use alloc::vec;

    fn trace(entries: usize) -> ExecutionTrace {
        let entry = |i: usize| StageTraceEntry {
            stage_id: StageId::from_raw(i as u64),
            stage_name: String::from("a stage with a rather long descriptive name"),
            start_time_ms: i as u64,
            end_time_ms: i as u64 + 1,
            attempt: 0,
            result: StageExecutionResult::Retryable {
                error: String::from("transiently unavailable, try again later"),
            },
            capabilities_in: vec![1, 2, 3],
            capabilities_out: vec![],
        };
        ExecutionTrace {
            pipeline_id: PipelineId::from_raw(1),
            entries: (0..entries).map(entry).collect(),
            final_result: PipelineExecutionResult::Success,
        }
    }

    fn decode(payload: &MessagePayload) -> (usize, u32, bool) {
        match payload.decode::<PipelineResponse>().unwrap() {
            PipelineResponse::Executed {
                trace,
                omitted_entries,
                output_omitted,
                ..
            } => (trace.entries.len(), omitted_entries, output_omitted),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_small_response_is_sent_whole() {
        let payload = fitting_response(None, trace(3), vec![7]).unwrap();
        assert_eq!(decode(&payload), (3, 0, false));
    }

    #[test]
    fn a_long_trace_loses_its_oldest_entries_to_fit() {
        let full = trace(600);
        let last = full.entries.last().cloned();
        let payload = fitting_response(None, full, vec![]).unwrap();
        assert!(payload.len() <= MAX_PAYLOAD_BYTES);
        let (kept, omitted, output_omitted) = decode(&payload);
        assert!(omitted > 0 && !output_omitted);
        assert_eq!(kept + omitted as usize, 600);
        let PipelineResponse::Executed { trace, .. } = payload.decode().unwrap() else {
            unreachable!()
        };
        assert_eq!(
            trace.entries.last().cloned(),
            last,
            "the newest entries stay"
        );
    }

    #[test]
    fn an_output_too_large_for_a_message_is_left_out() {
        let big =
            TypedPayload::from_bytes(PayloadSchemaId::new("blob"), vec![7; MAX_PAYLOAD_BYTES]);
        let payload = fitting_response(Some(big), trace(2), vec![]).unwrap();
        let (kept, omitted, output_omitted) = decode(&payload);
        assert!(output_omitted);
        assert_eq!((kept, omitted), (2, 0), "the trace is kept whole");
    }
}
