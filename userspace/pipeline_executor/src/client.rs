//! A typed client for the pipeline executor service.

use alloc::vec::Vec;
use pandagen_abi::services::PIPELINE_EXECUTOR;
use pandagen_abi::{
    Cap, CapHandle, ChannelId, Duration, EnvelopeError, Instant, KernelApi, KernelError,
    MessageEnvelope, MessageId, MessagePayload,
};

use crate::caps::{drop_all, REPLY_RIGHTS};
use crate::payload::TypedPayload;
use crate::service::{PipelineRequest, PipelineRequestError, PipelineResponse, PIPELINE_PROTOCOL};
use crate::spec::PipelineSpec;
use crate::trace::ExecutionTrace;

/// The most unrelated messages a call discards while waiting for its
/// response.
const MAX_DISCARDED: usize = 64;

/// What a submission returns: the output (if the pipeline succeeded), the
/// trace, and the run's capability pool, now in the caller's space.
#[derive(Debug)]
pub struct PipelineSubmission {
    pub output: Option<TypedPayload>,
    pub trace: ExecutionTrace,
    pub capabilities: Vec<(u64, Cap<()>)>,
    /// Oldest trace entries the service left out to fit the response.
    pub omitted_entries: u32,
    pub output_omitted: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    Kernel(KernelError),
    /// The request could not be encoded (for example, it is too large).
    Encode(EnvelopeError),
    /// The service refused the request.
    Rejected(PipelineRequestError),
    /// The response was not a decodable response of a supported version.
    MalformedResponse(EnvelopeError),
    /// No response within the client's timeout.
    TimedOut,
}

impl From<KernelError> for ClientError {
    fn from(e: KernelError) -> Self {
        ClientError::Kernel(e)
    }
}

pub struct PipelineClient {
    service: ChannelId,
    reply: ChannelId,
    timeout: Duration,
}

impl PipelineClient {
    /// How long a submission waits for its response by default. Pipelines
    /// are bounded, but a long one with retries can take a while.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

    /// Look the service up and create a private reply channel.
    pub fn connect<K: KernelApi>(kernel: &mut K) -> Result<Self, KernelError> {
        let service = kernel.lookup_service(PIPELINE_EXECUTOR)?;
        let reply = kernel.create_channel()?;
        Ok(PipelineClient {
            service,
            reply,
            timeout: Self::DEFAULT_TIMEOUT,
        })
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Release the reply channel.
    pub fn close<K: KernelApi>(self, kernel: &mut K) {
        let _ = kernel.drop_capability(Cap::from(self.reply));
    }

    /// Submit `pipeline` with `input` and initial `capabilities` (moved to
    /// the service under their labels) and wait for the result.
    pub fn submit<K: KernelApi>(
        &self,
        kernel: &mut K,
        pipeline: &PipelineSpec,
        input: TypedPayload,
        capabilities: Vec<(u64, Cap<()>)>,
    ) -> Result<PipelineSubmission, ClientError> {
        let pending = self.send(kernel, pipeline, input, capabilities)?;
        loop {
            let now = kernel.now();
            if now >= pending.deadline {
                return Err(ClientError::TimedOut);
            }
            if let Some(result) = self.receive(kernel, &pending, pending.deadline - now)? {
                return Ok(result);
            }
        }
    }

    /// Send a submission without waiting; collect the result with
    /// [`PipelineClient::poll`]. For clients driven step by step.
    pub fn send<K: KernelApi>(
        &self,
        kernel: &mut K,
        pipeline: &PipelineSpec,
        input: TypedPayload,
        capabilities: Vec<(u64, Cap<()>)>,
    ) -> Result<PendingSubmission, ClientError> {
        let (labels, caps): (Vec<u64>, Vec<Cap<()>>) = capabilities.into_iter().unzip();
        let request = PipelineRequest::Execute {
            pipeline: pipeline.clone(),
            input,
            capabilities: labels,
        };
        let payload = match MessagePayload::new(&request) {
            Ok(payload) => payload,
            Err(e) => {
                drop_all(kernel, caps);
                return Err(ClientError::Encode(e));
            }
        };
        let envelope = MessageEnvelope::new(
            PIPELINE_EXECUTOR,
            request.action(),
            PIPELINE_PROTOCOL.current_version(),
            payload,
        );
        let request_id = envelope.id;
        let reply_cap = match kernel.clone_capability(&Cap::from(self.reply), REPLY_RIGHTS) {
            Ok(cap) => cap,
            Err(e) => {
                drop_all(kernel, caps);
                return Err(e.into());
            }
        };
        let mut attached = Vec::with_capacity(caps.len() + 1);
        attached.push(reply_cap);
        attached.extend(caps);
        let handles: Vec<CapHandle> = attached.iter().map(Cap::handle).collect();
        if let Err(e) = kernel.send_with_capabilities(self.service, envelope, attached) {
            // The caller's capabilities were not sent; they are released
            // rather than handed back half-labelled.
            drop_all(kernel, handles.into_iter().map(Cap::from_handle));
            return Err(e.into());
        }
        Ok(PendingSubmission {
            request_id,
            deadline: kernel.now() + self.timeout,
        })
    }

    /// Check, without blocking, whether the result of `pending` arrived.
    /// `Err(TimedOut)` once its deadline has passed.
    pub fn poll<K: KernelApi>(
        &self,
        kernel: &mut K,
        pending: &PendingSubmission,
    ) -> Result<Option<PipelineSubmission>, ClientError> {
        match self.receive(kernel, pending, Duration::ZERO)? {
            Some(result) => Ok(Some(result)),
            None if kernel.now() >= pending.deadline => Err(ClientError::TimedOut),
            None => Ok(None),
        }
    }

    /// Wait up to `timeout` for the response to `pending`, discarding (and
    /// releasing) unrelated messages.
    fn receive<K: KernelApi>(
        &self,
        kernel: &mut K,
        pending: &PendingSubmission,
        timeout: Duration,
    ) -> Result<Option<PipelineSubmission>, ClientError> {
        for _ in 0..=MAX_DISCARDED {
            let received = match kernel.receive_with_capabilities(self.reply, Some(timeout)) {
                Ok(received) => received,
                Err(KernelError::Timeout) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            if received.envelope.correlation_id != Some(pending.request_id) {
                drop_all(kernel, received.capabilities);
                continue;
            }
            let response: PipelineResponse = match received
                .envelope
                .decode_answer(&PIPELINE_PROTOCOL, PIPELINE_EXECUTOR)
            {
                Ok(response) => response,
                Err(e) => {
                    drop_all(kernel, received.capabilities);
                    return Err(ClientError::MalformedResponse(e));
                }
            };
            return match response {
                PipelineResponse::Executed {
                    output,
                    trace,
                    capabilities,
                    omitted_entries,
                    output_omitted,
                } if capabilities.len() == received.capabilities.len() => {
                    Ok(Some(PipelineSubmission {
                        output,
                        trace,
                        capabilities: capabilities
                            .into_iter()
                            .zip(received.capabilities)
                            .collect(),
                        omitted_entries,
                        output_omitted,
                    }))
                }
                PipelineResponse::Executed { .. } => {
                    drop_all(kernel, received.capabilities);
                    Err(ClientError::MalformedResponse(EnvelopeError::Malformed))
                }
                PipelineResponse::Rejected(e) => {
                    drop_all(kernel, received.capabilities);
                    Err(ClientError::Rejected(e))
                }
            };
        }
        Ok(None)
    }
}

/// A submission sent and not yet answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingSubmission {
    pub request_id: MessageId,
    pub deadline: Instant,
}
