//! The execution state machine shared by the blocking and the stepped
//! drivers: one [`PipelineExecution`] moves through attempts, backoffs and
//! reply waits until it is done.

use alloc::vec::Vec;
use pandagen_abi::{Cap, ChannelId, Duration, Instant, KernelApi, KernelError, MessageId};

use super::attempt::{Attempt, Sent};
use super::PipelineExecutor;
use crate::caps::drop_all;
use crate::error::ExecutorError;
use crate::payload::TypedPayload;
use crate::spec::{PipelineSpec, StageSpec};
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
    pub(super) pipeline: PipelineSpec,
    pub(super) current: TypedPayload,
    pub(super) entries: Vec<StageTraceEntry>,
    pub(super) state: State,
}

pub(super) enum State {
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

/// How a run ended: the final output or error, and every entry.
pub(super) struct Finished {
    pub(super) output: Result<TypedPayload, ExecutorError>,
    pub(super) entries: Vec<StageTraceEntry>,
}

impl Finished {
    pub(super) fn into_run(self, pipeline: &PipelineSpec) -> PipelineRun {
        let (output, final_result) = match self.output {
            Ok(output) => (Some(output), PipelineExecutionResult::Success),
            Err(e) => (None, PipelineExecutionResult::Failed(e)),
        };
        PipelineRun {
            output,
            trace: ExecutionTrace {
                pipeline_id: pipeline.id,
                entries: self.entries,
                final_result,
            },
        }
    }
}

/// What [`PipelineExecutor::drive`] stopped at.
pub(super) enum Driven {
    Waiting(Wait),
    Finished(Finished),
}

impl PipelineExecutor {
    /// The state machine: do all the work the run allows, then say what it
    /// waits for, or how it ended. With `blocking`, it sleeps and waits in
    /// the kernel instead of returning `Waiting`.
    pub(super) fn drive<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        execution: &mut PipelineExecution,
        blocking: bool,
    ) -> Driven {
        loop {
            match execution.state {
                State::Done {
                    ref output,
                    ref entries,
                } => {
                    return Driven::Finished(Finished {
                        output: output.clone(),
                        entries: entries.clone(),
                    })
                }
                State::Attempt {
                    reply,
                    stage,
                    attempt,
                    not_before,
                } => {
                    let now = kernel.now();
                    if now < not_before {
                        if !blocking {
                            return Driven::Waiting(Wait::Until(not_before));
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
                                return Driven::Waiting(Wait::Reply {
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
}

/// End the run: close the private reply channel (which releases anything
/// still queued on it) and record the result.
pub(super) fn finish<K: KernelApi>(
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
        StageExecutionResult::Unreachable(error) if !crate::error::is_transient(&error) => {
            ExecutorError::StageUnreachable { stage_id, error }
        }
        last => ExecutorError::RetriesExhausted {
            stage_id,
            attempts,
            last,
        },
    }
}
