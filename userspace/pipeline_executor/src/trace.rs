//! The execution trace: one entry per stage attempt, stamped with kernel
//! time, plus the pipeline's final result.
//!
//! Capabilities appear in the trace by label only, never as handles anyone
//! could use. A stage that never ran (a missing capability is detected
//! before the attempt) has no entry; `final_result` says why it did not run.

use alloc::string::String;
use alloc::vec::Vec;
use pandagen_abi::KernelError;
use serde::{Deserialize, Serialize};

use crate::error::{ExecutorError, OutputViolation};
use crate::ids::{PipelineId, StageId};
use crate::stage::StageRequestError;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionTrace {
    pub pipeline_id: PipelineId,
    pub entries: Vec<StageTraceEntry>,
    pub final_result: PipelineExecutionResult,
}

impl ExecutionTrace {
    /// Entries for one stage, in attempt order.
    pub fn attempts_of(&self, stage: StageId) -> impl Iterator<Item = &StageTraceEntry> {
        self.entries.iter().filter(move |e| e.stage_id == stage)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageTraceEntry {
    pub stage_id: StageId,
    pub stage_name: String,
    /// Kernel time (ms) when the attempt's request was about to be sent,
    /// after any backoff.
    pub start_time_ms: u64,
    /// Kernel time (ms) when the attempt's outcome was known.
    pub end_time_ms: u64,
    /// 0 = first attempt, 1+ = retries.
    pub attempt: u32,
    pub result: StageExecutionResult,
    /// Labels of the pool capabilities lent to the attempt.
    pub capabilities_in: Vec<u64>,
    /// Labels of the capabilities the attempt added to the pool.
    pub capabilities_out: Vec<u64>,
}

/// The outcome of one attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StageExecutionResult {
    Success,
    /// The handler reported a permanent failure.
    Failure {
        error: String,
    },
    /// The handler reported a transient failure.
    Retryable {
        error: String,
    },
    /// No reply within the executor's stage timeout (request or reply lost,
    /// or the handler is slow). Retryable.
    TimedOut,
    /// The handler refused the request; the stage did not run. Permanent.
    Rejected(StageRequestError),
    /// The request could not be delivered. Retryable when the kernel error is
    /// transient (queue full, service not registered yet, injected fault).
    Unreachable(KernelError),
    /// The handler's reply broke the protocol (wrong output schema,
    /// capabilities not matching their labels, ...). Permanent; whatever
    /// capabilities it carried were released.
    InvalidOutput(OutputViolation),
}

impl StageExecutionResult {
    /// True if a retry may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            StageExecutionResult::Retryable { .. } | StageExecutionResult::TimedOut => true,
            StageExecutionResult::Unreachable(e) => crate::error::is_transient(e),
            _ => false,
        }
    }
}

/// How the whole pipeline ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PipelineExecutionResult {
    Success,
    Failed(ExecutorError),
}
