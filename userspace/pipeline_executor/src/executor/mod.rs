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

mod attempt;
mod machine;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use pandagen_abi::{Cap, Duration, Instant, KernelApi};

use machine::{Driven, State};
pub use machine::{PipelineExecution, PipelineRun, Progress, Wait, MAX_DISCARDED_REPLIES};

use crate::caps::drop_all;
use crate::error::ExecutorError;
use crate::payload::TypedPayload;
use crate::spec::PipelineSpec;
use crate::trace::{ExecutionTrace, PipelineExecutionResult};

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
        loop {
            if let Driven::Finished(finished) = self.drive(kernel, &mut execution, true) {
                let trace = ExecutionTrace {
                    pipeline_id: pipeline.id,
                    entries: finished.entries,
                    final_result: PipelineExecutionResult::Success,
                };
                return finished.output.map(|output| (output, trace));
            }
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

    /// Drive a started execution to its end, blocking.
    pub fn complete<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        execution: &mut PipelineExecution,
    ) -> PipelineRun {
        loop {
            // Blocking mode waits in the kernel rather than returning
            // `Waiting`; the loop only restates that nothing else can end it.
            if let Driven::Finished(finished) = self.drive(kernel, execution, true) {
                return finished.into_run(&execution.pipeline);
            }
        }
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
            Driven::Waiting(wait) => Progress::Pending(wait),
            Driven::Finished(finished) => {
                Progress::Finished(finished.into_run(&execution.pipeline))
            }
        }
    }
}
