//! One stage attempt: lend the declared capabilities, send the request,
//! and take the reply apart.

use alloc::vec::Vec;
use pandagen_abi::{
    Cap, CapHandle, ChannelId, KernelApi, KernelError, MessageEnvelope, MessageId, MessagePayload,
    ReceivedMessage, Rights,
};

use super::PipelineExecutor;
use crate::caps::{drop_all, REPLY_RIGHTS};
use crate::error::{ExecutorError, OutputViolation};
use crate::ids::PipelineId;
use crate::payload::TypedPayload;
use crate::spec::StageSpec;
use crate::stage::{StageReply, StageRequest, StageResult, STAGE_PROTOCOL};
use crate::trace::StageExecutionResult;

/// What one attempt produced.
pub(super) struct Attempt {
    pub(super) result: StageExecutionResult,
    pub(super) output: Option<TypedPayload>,
    pub(super) capabilities_out: Vec<u64>,
}

impl Attempt {
    pub(super) fn failed(result: StageExecutionResult) -> Self {
        Attempt {
            result,
            output: None,
            capabilities_out: Vec::new(),
        }
    }
}

/// Either the attempt is underway, or it ended before a reply was due.
pub(super) enum Sent {
    Awaiting(MessageId),
    Ended(Attempt),
}

impl PipelineExecutor {
    /// Start one attempt: check and copy the lent capabilities, send the
    /// request. `Err` ends the pipeline before the stage runs.
    pub(super) fn send_attempt<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        pipeline_id: PipelineId,
        stage: &StageSpec,
        attempt: u32,
        input: &TypedPayload,
        reply: ChannelId,
    ) -> Result<Sent, ExecutorError> {
        // Fail fast, before anything is sent. The pool only grows during a
        // run, so this can only trip on a stage's first attempt.
        if let Some(&capability) = stage
            .required_capabilities
            .iter()
            .find(|label| !self.pool.contains_key(label))
        {
            return Err(ExecutorError::MissingCapability {
                stage_id: stage.id,
                capability,
            });
        }
        // Each attempt looks the handler up afresh, so that a restarted
        // handler's new channel is found, and drops its capability once
        // the request is sent (or not).
        let handler = match kernel.lookup_service(stage.handler) {
            Ok(channel) => channel,
            Err(e) => {
                return Ok(Sent::Ended(Attempt::failed(
                    StageExecutionResult::Unreachable(e),
                )))
            }
        };
        let sent = self.send_request(kernel, pipeline_id, stage, attempt, input, reply, handler);
        let _ = kernel.drop_capability(Cap::from(handler));
        sent
    }

    /// Send one attempt's request to `handler`, with the reply capability
    /// and copies of the capabilities the stage is lent.
    #[allow(clippy::too_many_arguments)]
    fn send_request<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        pipeline_id: PipelineId,
        stage: &StageSpec,
        attempt: u32,
        input: &TypedPayload,
        reply: ChannelId,
        handler: ChannelId,
    ) -> Result<Sent, ExecutorError> {
        let request = StageRequest {
            pipeline_id,
            stage_id: stage.id,
            attempt,
            input: input.clone(),
            capabilities: stage.required_capabilities.clone(),
        };
        let payload = match MessagePayload::new(&request) {
            Ok(payload) => payload,
            Err(e) => {
                let result = StageExecutionResult::Unreachable(KernelError::Envelope(e));
                return Ok(Sent::Ended(Attempt::failed(result)));
            }
        };
        let envelope = MessageEnvelope::new(
            stage.handler,
            stage.action.as_str(),
            STAGE_PROTOCOL.current_version(),
            payload,
        );
        let request_id = envelope.id;

        let mut attached = Vec::with_capacity(stage.required_capabilities.len() + 1);
        let reply_cap = kernel
            .clone_capability(&Cap::from(reply), REPLY_RIGHTS)
            .map_err(ExecutorError::Kernel)?;
        attached.push(reply_cap);
        for &label in &stage.required_capabilities {
            match kernel.clone_capability(&self.pool[&label], Rights::ALL) {
                Ok(copy) => attached.push(copy),
                Err(error) => {
                    drop_all(kernel, attached);
                    return Err(ExecutorError::CapabilityTransfer {
                        stage_id: stage.id,
                        capability: label,
                        error,
                    });
                }
            }
        }
        let handles: Vec<CapHandle> = attached.iter().map(Cap::handle).collect();
        if let Err(e) = kernel.send_with_capabilities(handler, envelope, attached) {
            // A failed send leaves the copies with us: release them.
            drop_all(kernel, handles.into_iter().map(Cap::from_handle));
            return Ok(Sent::Ended(Attempt::failed(
                StageExecutionResult::Unreachable(e),
            )));
        }
        Ok(Sent::Awaiting(request_id))
    }

    /// Interpret a reply. Every capability it carries either joins the pool
    /// or is released here.
    pub(super) fn accept_reply<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        stage: &StageSpec,
        received: ReceivedMessage,
    ) -> Attempt {
        let ReceivedMessage {
            envelope,
            capabilities,
            ..
        } = received;
        let reply: StageReply = match envelope.decode_answer(&STAGE_PROTOCOL, stage.handler) {
            Ok(reply) => reply,
            Err(e) => {
                drop_all(kernel, capabilities);
                let violation = OutputViolation::MalformedReply(e);
                return Attempt::failed(StageExecutionResult::InvalidOutput(violation));
            }
        };
        let (output, labels) = match reply {
            StageReply::Completed(StageResult::Success {
                output,
                capabilities,
            }) => (output, capabilities),
            StageReply::Completed(StageResult::Failure { error }) => {
                drop_all(kernel, capabilities);
                return Attempt::failed(StageExecutionResult::Failure { error });
            }
            StageReply::Completed(StageResult::Retryable { error }) => {
                drop_all(kernel, capabilities);
                return Attempt::failed(StageExecutionResult::Retryable { error });
            }
            StageReply::Rejected(error) => {
                drop_all(kernel, capabilities);
                return Attempt::failed(StageExecutionResult::Rejected(error));
            }
        };
        let violation = if output.schema != stage.output_schema {
            Some(OutputViolation::WrongSchema {
                expected: stage.output_schema.clone(),
                found: output.schema.clone(),
            })
        } else if labels.len() != capabilities.len() {
            Some(OutputViolation::CapabilityCountMismatch {
                declared: labels.len() as u32,
                attached: capabilities.len() as u32,
            })
        } else {
            labels
                .iter()
                .enumerate()
                .find(|(i, label)| self.pool.contains_key(label) || labels[..*i].contains(label))
                .map(|(_, &label)| OutputViolation::DuplicateLabel(label))
        };
        if let Some(violation) = violation {
            drop_all(kernel, capabilities);
            return Attempt::failed(StageExecutionResult::InvalidOutput(violation));
        }
        for (&label, capability) in labels.iter().zip(capabilities) {
            self.pool.insert(label, capability);
        }
        Attempt {
            result: StageExecutionResult::Success,
            output: Some(output),
            capabilities_out: labels,
        }
    }
}
