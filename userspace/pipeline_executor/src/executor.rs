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

//!
//! ## Blocking and stepped execution
//!
//! [`PipelineExecutor::run`] blocks: it sleeps through backoffs
//! (`KernelApi::sleep`) and waits for replies with a receive timeout. That is
//! what a ring-3 service does. [`PipelineExecutor::start`] plus
//! [`PipelineExecutor::advance`] run the same state machine without ever
//! blocking: `advance` does all the work it can and then says what it waits
//! for ([`Wait`]), so a cooperative scheduler such as the simulator's
//! scenario runner can step it alongside the handler services. Both paths
//! share every decision, so their traces agree.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use pandagen_abi::{
    Cap, CapHandle, ChannelId, Duration, Instant, KernelApi, KernelError, MessageEnvelope,
    MessageId, MessagePayload, ReceivedMessage, Rights,
};

use crate::caps::{drop_all, REPLY_RIGHTS};
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
pub const MAX_DISCARDED_REPLIES: u32 = 64;

/// The outcome of a run: the output if every stage succeeded, and the trace
/// either way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineRun {
    pub output: Option<TypedPayload>,
    pub trace: ExecutionTrace,
}

/// What a stepped execution waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// A reply on `channel`, until `deadline` (then the attempt times out).
    Reply {
        channel: ChannelId,
        deadline: Instant,
    },
    /// A backoff that ends at this instant.
    Until(Instant),
}

impl Wait {
    /// The instant after which `advance` will make progress even if no
    /// message arrives.
    pub fn wake_at(&self) -> Instant {
        match *self {
            Wait::Reply { deadline, .. } => deadline,
            Wait::Until(t) => t,
        }
    }
}

/// The result of [`PipelineExecutor::advance`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    Pending(Wait),
    Finished(PipelineRun),
}

/// One pipeline run in progress. Created by [`PipelineExecutor::start`].
pub struct PipelineExecution {
    pipeline: PipelineSpec,
    current: TypedPayload,
    entries: Vec<StageTraceEntry>,
    state: State,
}

enum State {
    /// The next attempt of `stage` may start at `not_before`.
    Attempt {
        reply: ChannelId,
        stage: usize,
        attempt: u32,
        not_before: Instant,
    },
    /// The attempt's request is out; its reply is due by `deadline`.
    Awaiting {
        reply: ChannelId,
        stage: usize,
        attempt: u32,
        request: MessageId,
        start_time_ms: u64,
        deadline: Instant,
        discarded: u32,
    },
    /// Finished; the private reply channel is closed.
    Done {
        output: Result<TypedPayload, ExecutorError>,
        entries: Vec<StageTraceEntry>,
    },
}

impl PipelineExecution {
    pub fn pipeline(&self) -> &PipelineSpec {
        &self.pipeline
    }

    /// The trace entries recorded so far.
    pub fn entries(&self) -> &[StageTraceEntry] {
        match &self.state {
            State::Done { entries, .. } => entries,
            _ => &self.entries,
        }
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Done { .. })
    }

    /// The run's result so far: `None` while it is still in progress.
    pub fn result(&self) -> Option<PipelineRun> {
        let State::Done { output, entries } = &self.state else {
            return None;
        };
        let (output, final_result) = match output {
            Ok(output) => (Some(output.clone()), PipelineExecutionResult::Success),
            Err(e) => (None, PipelineExecutionResult::Failed(e.clone())),
        };
        Some(PipelineRun {
            output,
            trace: ExecutionTrace {
                pipeline_id: self.pipeline.id,
                entries: entries.clone(),
                final_result,
            },
        })
    }
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

/// Either the attempt is underway, or it ended before a reply was due.
enum Sent {
    Awaiting(MessageId),
    Ended(Attempt),
}

pub struct PipelineExecutor {
    pool: BTreeMap<u64, Cap<()>>,
    stage_timeout: Duration,
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
    /// Distinct capabilities of one task have distinct ids, so a label is
    /// taken only if the caller used it with [`PipelineExecutor::add_capability`];
    /// such capabilities are handed back, still the caller's.
    pub fn add_capabilities(&mut self, capabilities: Vec<Cap<()>>) -> Vec<Cap<()>> {
        capabilities
            .into_iter()
            .filter_map(|capability| self.add_capability(capability.id(), capability).err())
            .collect()
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
        drop_all(kernel, self.take_capabilities().into_iter().map(|(_, c)| c));
    }

    /// Run `pipeline` on `input`, blocking, and return the output with its
    /// trace, or the error (see [`PipelineExecutor::run`] to keep the trace
    /// on failure).
    pub fn execute<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        pipeline: &PipelineSpec,
        input: TypedPayload,
    ) -> Result<(TypedPayload, ExecutionTrace), ExecutorError> {
        let mut execution = self.start(kernel, pipeline, input);
        let (output, entries) = self.run_to_end(kernel, &mut execution);
        let output = output?;
        let trace = ExecutionTrace {
            pipeline_id: pipeline.id,
            entries,
            final_result: PipelineExecutionResult::Success,
        };
        Ok((output, trace))
    }

    /// Run blocking until the end; the final output (or error) and entries.
    fn run_to_end<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        execution: &mut PipelineExecution,
    ) -> (Result<TypedPayload, ExecutorError>, Vec<StageTraceEntry>) {
        // In blocking mode `drive` waits in the kernel instead of returning
        // `Some`, so this loop runs once unless the run is abandoned midway.
        while self.drive(kernel, execution, true).is_some() {}
        match &mut execution.state {
            State::Done { output, entries } => (output.clone(), core::mem::take(entries)),
            _ => (Err(ExecutorError::Kernel(KernelError::Timeout)), Vec::new()),
        }
    }

    /// Drive a started execution to its end, blocking.
    pub fn complete<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        execution: &mut PipelineExecution,
    ) -> PipelineRun {
        while self.drive(kernel, execution, true).is_some() {}
        match execution.result() {
            Some(run) => run,
            None => PipelineRun {
                output: None,
                trace: ExecutionTrace {
                    pipeline_id: execution.pipeline.id,
                    entries: execution.entries.clone(),
                    final_result: PipelineExecutionResult::Failed(ExecutorError::Kernel(
                        KernelError::Timeout,
                    )),
                },
            },
        }
    }

    /// Run `pipeline` on `input`, blocking. Always returns the trace;
    /// `output` is `Some` exactly when `trace.final_result` is `Success`.
    pub fn run<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        pipeline: &PipelineSpec,
        input: TypedPayload,
    ) -> PipelineRun {
        let mut execution = self.start(kernel, pipeline, input);
        self.complete(kernel, &mut execution)
    }

    /// Begin a stepped run: validate and set up, without sending anything.
    /// Drive it with [`PipelineExecutor::advance`].
    pub fn start<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        pipeline: &PipelineSpec,
        input: TypedPayload,
    ) -> PipelineExecution {
        let setup = pipeline
            .validate()
            .map_err(ExecutorError::InvalidPipeline)
            .and_then(|()| {
                if input.schema == pipeline.initial_input_schema {
                    Ok(())
                } else {
                    Err(ExecutorError::InputSchemaMismatch {
                        expected: pipeline.initial_input_schema.clone(),
                        found: input.schema.clone(),
                    })
                }
            })
            .and_then(|()| kernel.create_channel().map_err(ExecutorError::Kernel));
        let state = match setup {
            Ok(reply) => State::Attempt {
                reply,
                stage: 0,
                attempt: 0,
                not_before: Instant::ZERO,
            },
            Err(e) => State::Done {
                output: Err(e),
                entries: Vec::new(),
            },
        };
        PipelineExecution {
            pipeline: pipeline.clone(),
            current: input,
            entries: Vec::new(),
            state,
        }
    }

    /// Do all the work `execution` allows without blocking, and say what it
    /// waits for next (or how it ended).
    pub fn advance<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        execution: &mut PipelineExecution,
    ) -> Progress {
        match self.drive(kernel, execution, false) {
            Some(wait) => Progress::Pending(wait),
            None => match execution.result() {
                Some(run) => Progress::Finished(run),
                // `drive` returns `None` only when the run is done.
                None => Progress::Pending(Wait::Until(kernel.now())),
            },
        }
    }

    /// The state machine. Returns what it waits for, or `None` once the run
    /// is done. With `blocking`, it sleeps and waits in the kernel instead of
    /// returning `Some`.
    fn drive<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        execution: &mut PipelineExecution,
        blocking: bool,
    ) -> Option<Wait> {
        loop {
            match execution.state {
                State::Done { .. } => return None,
                State::Attempt {
                    reply,
                    stage,
                    attempt,
                    not_before,
                } => {
                    let now = kernel.now();
                    if now < not_before {
                        if !blocking {
                            return Some(Wait::Until(not_before));
                        }
                        if let Err(e) = kernel.sleep(not_before - now) {
                            finish(kernel, execution, reply, Err(ExecutorError::Kernel(e)));
                            continue;
                        }
                    }
                    let spec = &execution.pipeline.stages[stage];
                    let start_time_ms = kernel.now().as_millis();
                    let sent = self.send_attempt(
                        kernel,
                        execution.pipeline.id,
                        spec,
                        attempt,
                        &execution.current,
                        reply,
                    );
                    match sent {
                        Err(e) => finish(kernel, execution, reply, Err(e)),
                        Ok(Sent::Ended(outcome)) => {
                            let at = (reply, stage, attempt, start_time_ms);
                            self.conclude(kernel, execution, at, outcome)
                        }
                        Ok(Sent::Awaiting(request)) => {
                            execution.state = State::Awaiting {
                                reply,
                                stage,
                                attempt,
                                request,
                                start_time_ms,
                                deadline: kernel.now() + self.stage_timeout,
                                discarded: 0,
                            };
                        }
                    }
                }
                State::Awaiting {
                    reply,
                    stage,
                    attempt,
                    request,
                    start_time_ms,
                    deadline,
                    ref mut discarded,
                } => {
                    let timeout = if blocking {
                        deadline - kernel.now()
                    } else {
                        Duration::ZERO
                    };
                    let outcome = match kernel.receive_with_capabilities(reply, Some(timeout)) {
                        Ok(received) if received.envelope.correlation_id == Some(request) => {
                            let spec = &execution.pipeline.stages[stage];
                            self.accept_reply(kernel, spec, received)
                        }
                        Ok(stale) => {
                            drop_all(kernel, stale.capabilities);
                            *discarded += 1;
                            if *discarded <= MAX_DISCARDED_REPLIES {
                                continue;
                            }
                            Attempt::failed(StageExecutionResult::TimedOut)
                        }
                        Err(KernelError::Timeout) => {
                            if !blocking && kernel.now() < deadline {
                                return Some(Wait::Reply {
                                    channel: reply,
                                    deadline,
                                });
                            }
                            Attempt::failed(StageExecutionResult::TimedOut)
                        }
                        Err(e) => Attempt::failed(StageExecutionResult::Unreachable(e)),
                    };
                    let at = (reply, stage, attempt, start_time_ms);
                    self.conclude(kernel, execution, at, outcome);
                }
            }
        }
    }

    /// Record an attempt and decide what follows it.
    fn conclude<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        execution: &mut PipelineExecution,
        (reply, stage, attempt, start_time_ms): (ChannelId, usize, u32, u64),
        outcome: Attempt,
    ) {
        let spec = &execution.pipeline.stages[stage];
        let now = kernel.now();
        execution.entries.push(StageTraceEntry {
            stage_id: spec.id,
            stage_name: spec.name.clone(),
            start_time_ms,
            end_time_ms: now.as_millis(),
            attempt,
            result: outcome.result.clone(),
            capabilities_in: spec.required_capabilities.clone(),
            capabilities_out: outcome.capabilities_out,
        });
        if let Some(output) = outcome.output {
            execution.current = output;
            if stage + 1 == execution.pipeline.stages.len() {
                finish(kernel, execution, reply, Ok(()));
            } else {
                execution.state = State::Attempt {
                    reply,
                    stage: stage + 1,
                    attempt: 0,
                    not_before: now,
                };
            }
            return;
        }
        let attempts = spec.retry_policy.max_attempts();
        let next = attempt + 1;
        if outcome.result.is_transient() && next < attempts {
            execution.state = State::Attempt {
                reply,
                stage,
                attempt: next,
                not_before: now + spec.retry_policy.backoff_before(next),
            };
        } else {
            let error = final_error(spec, attempts.min(next), outcome.result);
            finish(kernel, execution, reply, Err(error));
        }
    }

    /// Start one attempt: check and copy the lent capabilities, send the
    /// request. `Err` ends the pipeline before the stage runs.
    fn send_attempt<K: KernelApi>(
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
        let handler = match kernel.lookup_service(stage.handler) {
            Ok(channel) => channel,
            Err(e) => {
                return Ok(Sent::Ended(Attempt::failed(
                    StageExecutionResult::Unreachable(e),
                )))
            }
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

/// End the run: close the private reply channel (which releases anything
/// still queued on it) and record the result.
fn finish<K: KernelApi>(
    kernel: &mut K,
    execution: &mut PipelineExecution,
    reply: ChannelId,
    result: Result<(), ExecutorError>,
) {
    let _ = kernel.drop_capability(Cap::from(reply));
    execution.state = State::Done {
        output: result.map(|()| execution.current.clone()),
        entries: core::mem::take(&mut execution.entries),
    };
}

fn final_error(stage: &StageSpec, attempts: u32, last: StageExecutionResult) -> ExecutorError {
    let stage_id = stage.id;
    match last {
        StageExecutionResult::Failure { error } => ExecutorError::StageFailed { stage_id, error },
        StageExecutionResult::Rejected(error) => ExecutorError::StageRejected { stage_id, error },
        StageExecutionResult::InvalidOutput(violation) => ExecutorError::InvalidStageOutput {
            stage_id,
            violation,
        },
        StageExecutionResult::Unreachable(error) if !last_is_transient(&error) => {
            ExecutorError::StageUnreachable { stage_id, error }
        }
        last => ExecutorError::RetriesExhausted {
            stage_id,
            attempts,
            last,
        },
    }
}

fn last_is_transient(error: &KernelError) -> bool {
    crate::error::is_transient(error)
}
