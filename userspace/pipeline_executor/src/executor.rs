//! The pipeline executor: runs a validated pipeline stage by stage over IPC.
//!
//! The executor holds a *pool* of capabilities, each under a `u64` label.
//! Initial capabilities are added by the caller (labelled with their
//! capability id); a stage's successful reply adds the capabilities it
//! carries under the labels it names. A stage's `required_capabilities` are
//! labels: before the stage runs, every one must be in the pool, or the
//! pipeline fails at once with [`ExecutorError::MissingCapability`] and the
//! stage never runs. The stage gets a *copy* of each (made with
//! `clone_capability`); the pool keeps the original, so later stages can
//! use it too. Nothing else is ever sent: a stage sees exactly the authority
//! it declared.
//!
//! Execution is bounded: at most [`MAX_STAGES`](crate::spec::MAX_STAGES)
//! stages, at most `max_retries + 1` attempts each (retries ≤
//! [`RetryPolicy::MAX_RETRIES`](crate::RetryPolicy::MAX_RETRIES)), each
//! attempt waiting at most the stage timeout for its reply, each backoff at
//! most [`RetryPolicy::MAX_BACKOFF_MS`](crate::RetryPolicy::MAX_BACKOFF_MS).
//!
//! Replies are matched by correlation id on a reply channel private to one
//! run. A reply to an earlier attempt (late, duplicated or reordered) is
//! discarded and its capabilities released, so a stage's result is taken at
//! most once and nothing it carries lingers.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use pandagen_abi::{
    Cap, CapHandle, ChannelId, Duration, KernelApi, KernelError, MessageEnvelope, MessagePayload,
    ReceivedMessage, Rights,
};

use crate::caps::drop_all;
use crate::error::{ExecutorError, OutputViolation};
use crate::ids::PipelineId;
use crate::payload::TypedPayload;
use crate::spec::{PipelineSpec, StageSpec};
use crate::stage::{StageReply, StageRequest, StageResult, STAGE_PROTOCOL};
use crate::trace::{
    ExecutionTrace, PipelineExecutionResult, StageExecutionResult, StageTraceEntry,
};

/// The most unrelated messages an attempt discards while waiting for its
/// reply before it gives up (guards against a flood of stale replies).
pub const MAX_DISCARDED_REPLIES: usize = 64;

/// The outcome of [`PipelineExecutor::run`]: the output if every stage
/// succeeded, and the trace either way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineRun {
    pub output: Option<TypedPayload>,
    pub trace: ExecutionTrace,
}

pub struct PipelineExecutor {
    pool: BTreeMap<u64, Cap<()>>,
    stage_timeout: Duration,
}

/// What one attempt produced.
struct Attempt {
    result: StageExecutionResult,
    output: Option<TypedPayload>,
    capabilities_out: Vec<u64>,
}

impl Attempt {
    fn failed(result: StageExecutionResult) -> Self {
        Attempt {
            result,
            output: None,
            capabilities_out: Vec::new(),
        }
    }
}

impl Default for PipelineExecutor {
    fn default() -> Self {
        Self::new()
    }
}

impl PipelineExecutor {
    /// How long an attempt waits for its reply unless configured otherwise.
    pub const DEFAULT_STAGE_TIMEOUT: Duration = Duration::from_secs(1);

    pub fn new() -> Self {
        PipelineExecutor {
            pool: BTreeMap::new(),
            stage_timeout: Self::DEFAULT_STAGE_TIMEOUT,
        }
    }

    pub fn with_stage_timeout(mut self, timeout: Duration) -> Self {
        self.stage_timeout = timeout;
        self
    }

    pub fn stage_timeout(&self) -> Duration {
        self.stage_timeout
    }

    /// Add capabilities the caller holds, each labelled with its id.
    pub fn add_capabilities(&mut self, capabilities: Vec<Cap<()>>) {
        for capability in capabilities {
            let label = capability.id();
            // Distinct capabilities in one space have distinct handles, so
            // the label is free.
            let _ = self.add_capability(label, capability);
        }
    }

    /// Add one capability under `label`. If the label is taken, the
    /// capability is handed back untouched.
    pub fn add_capability(&mut self, label: u64, capability: Cap<()>) -> Result<(), Cap<()>> {
        if self.pool.contains_key(&label) {
            return Err(capability);
        }
        self.pool.insert(label, capability);
        Ok(())
    }

    /// Labels currently in the pool.
    pub fn capability_labels(&self) -> Vec<u64> {
        self.pool.keys().copied().collect()
    }

    /// Empty the pool, handing every capability to the caller.
    pub fn take_capabilities(&mut self) -> Vec<(u64, Cap<()>)> {
        core::mem::take(&mut self.pool).into_iter().collect()
    }

    /// Empty the pool, dropping every capability.
    pub fn release_capabilities<K: KernelApi>(&mut self, kernel: &mut K) {
        for (_, capability) in self.take_capabilities() {
            let _ = kernel.drop_capability(capability);
        }
    }

    /// Run `pipeline` on `input` and return the output with its trace, or
    /// the error (see [`PipelineExecutor::run`] to keep the trace on failure).
    pub fn execute<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        pipeline: &PipelineSpec,
        input: TypedPayload,
    ) -> Result<(TypedPayload, ExecutionTrace), ExecutorError> {
        let mut entries = Vec::new();
        let output = self.run_stages(kernel, pipeline, input, &mut entries)?;
        let trace = ExecutionTrace {
            pipeline_id: pipeline.id,
            entries,
            final_result: PipelineExecutionResult::Success,
        };
        Ok((output, trace))
    }

    /// Run `pipeline` on `input`. Always returns the trace; `output` is
    /// `Some` exactly when `trace.final_result` is `Success`.
    pub fn run<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        pipeline: &PipelineSpec,
        input: TypedPayload,
    ) -> PipelineRun {
        let mut entries = Vec::new();
        let result = self.run_stages(kernel, pipeline, input, &mut entries);
        let (output, final_result) = match result {
            Ok(output) => (Some(output), PipelineExecutionResult::Success),
            Err(e) => (None, PipelineExecutionResult::Failed(e)),
        };
        PipelineRun {
            output,
            trace: ExecutionTrace {
                pipeline_id: pipeline.id,
                entries,
                final_result,
            },
        }
    }

    fn run_stages<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        pipeline: &PipelineSpec,
        input: TypedPayload,
        entries: &mut Vec<StageTraceEntry>,
    ) -> Result<TypedPayload, ExecutorError> {
        pipeline.validate()?;
        if input.schema != pipeline.initial_input_schema {
            return Err(ExecutorError::InputSchemaMismatch {
                expected: pipeline.initial_input_schema.clone(),
                found: input.schema,
            });
        }
        let reply = kernel.create_channel().map_err(ExecutorError::Kernel)?;
        let mut current = input;
        let mut outcome = Ok(());
        for stage in &pipeline.stages {
            match self.run_stage(kernel, pipeline.id, stage, &current, reply, entries) {
                Ok(output) => current = output,
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        // Closing the private reply channel releases anything still queued
        // on it (late replies and the capabilities they carry).
        let _ = kernel.drop_capability(Cap::from(reply));
        outcome.map(|()| current)
    }

    fn run_stage<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        pipeline_id: PipelineId,
        stage: &StageSpec,
        input: &TypedPayload,
        reply: ChannelId,
        entries: &mut Vec<StageTraceEntry>,
    ) -> Result<TypedPayload, ExecutorError> {
        // Fail fast, before anything is sent.
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
        let attempts = stage.retry_policy.max_attempts();
        let mut attempt = 0;
        loop {
            let backoff = stage.retry_policy.backoff_before(attempt);
            if !backoff.is_zero() {
                kernel.sleep(backoff).map_err(ExecutorError::Kernel)?;
            }
            let start_time_ms = kernel.now().as_millis();
            let outcome = self.attempt(kernel, pipeline_id, stage, attempt, input, reply)?;
            entries.push(StageTraceEntry {
                stage_id: stage.id,
                stage_name: stage.name.clone(),
                start_time_ms,
                end_time_ms: kernel.now().as_millis(),
                attempt,
                result: outcome.result.clone(),
                capabilities_in: stage.required_capabilities.clone(),
                capabilities_out: outcome.capabilities_out,
            });
            if let Some(output) = outcome.output {
                return Ok(output);
            }
            attempt += 1;
            if !outcome.result.is_transient() || attempt >= attempts {
                return Err(final_error(stage, attempts, outcome.result));
            }
        }
    }

    /// One attempt: copy the lent capabilities, send, wait for the matching
    /// reply, and take it apart. `Err` only when the stage cannot run at all
    /// (a lent capability cannot be copied).
    fn attempt<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        pipeline_id: PipelineId,
        stage: &StageSpec,
        attempt: u32,
        input: &TypedPayload,
        reply: ChannelId,
    ) -> Result<Attempt, ExecutorError> {
        let handler = match kernel.lookup_service(stage.handler) {
            Ok(channel) => channel,
            Err(e) => return Ok(Attempt::failed(StageExecutionResult::Unreachable(e))),
        };
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
                let error = KernelError::Envelope(e);
                return Ok(Attempt::failed(StageExecutionResult::Unreachable(error)));
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
        match kernel.clone_capability(&Cap::from(reply), Rights::SEND) {
            Ok(reply_cap) => attached.push(reply_cap),
            Err(e) => return Err(ExecutorError::Kernel(e)),
        }
        for &label in &stage.required_capabilities {
            let original = &self.pool[&label];
            match kernel.clone_capability(original, Rights::ALL) {
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
            return Ok(Attempt::failed(StageExecutionResult::Unreachable(e)));
        }

        match self.await_reply(kernel, reply, request_id) {
            Ok(received) => Ok(self.accept_reply(kernel, stage, received)),
            Err(result) => Ok(Attempt::failed(result)),
        }
    }

    /// Wait up to the stage timeout for the reply correlated with
    /// `request_id`, discarding (and releasing) anything else.
    fn await_reply<K: KernelApi>(
        &self,
        kernel: &mut K,
        reply: ChannelId,
        request_id: pandagen_abi::MessageId,
    ) -> Result<ReceivedMessage, StageExecutionResult> {
        let deadline = kernel.now() + self.stage_timeout;
        for _ in 0..=MAX_DISCARDED_REPLIES {
            let now = kernel.now();
            if now >= deadline {
                return Err(StageExecutionResult::TimedOut);
            }
            match kernel.receive_with_capabilities(reply, Some(deadline - now)) {
                Ok(received) if received.envelope.correlation_id == Some(request_id) => {
                    return Ok(received);
                }
                Ok(stale) => drop_all(kernel, stale.capabilities),
                Err(KernelError::Timeout) => return Err(StageExecutionResult::TimedOut),
                Err(e) => return Err(StageExecutionResult::Unreachable(e)),
            }
        }
        Err(StageExecutionResult::TimedOut)
    }

    /// Interpret a reply. Every capability it carries either joins the pool
    /// or is released here.
    fn accept_reply<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        stage: &StageSpec,
        received: ReceivedMessage,
    ) -> Attempt {
        let ReceivedMessage {
            envelope,
            capabilities,
        } = received;
        let reply: StageReply = match envelope.decode_payload(&STAGE_PROTOCOL, stage.handler) {
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

fn final_error(stage: &StageSpec, attempts: u32, last: StageExecutionResult) -> ExecutorError {
    let stage_id = stage.id;
    if last.is_transient() {
        return ExecutorError::RetriesExhausted {
            stage_id,
            attempts,
            last,
        };
    }
    match last {
        StageExecutionResult::Failure { error } => ExecutorError::StageFailed { stage_id, error },
        StageExecutionResult::Rejected(error) => ExecutorError::StageRejected { stage_id, error },
        StageExecutionResult::Unreachable(error) => {
            ExecutorError::StageUnreachable { stage_id, error }
        }
        StageExecutionResult::InvalidOutput(violation) => ExecutorError::InvalidStageOutput {
            stage_id,
            violation,
        },
        // Success and the transient results are handled above.
        other => ExecutorError::RetriesExhausted {
            stage_id,
            attempts,
            last: other,
        },
    }
}
