//! Executor errors.

use alloc::string::String;
use core::fmt;
use pandagen_abi::error::{ReceiveError, SendError};
use pandagen_abi::{EnvelopeError, KernelError};
use serde::{Deserialize, Serialize};

use crate::ids::StageId;
use crate::payload::PayloadSchemaId;
use crate::spec::PipelineError;
use crate::stage::StageRequestError;
use crate::trace::StageExecutionResult;

/// Why a pipeline did not produce its output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecutorError {
    /// `validate` failed; nothing ran.
    InvalidPipeline(PipelineError),
    /// The input payload does not follow the pipeline's input schema.
    InputSchemaMismatch {
        expected: PayloadSchemaId,
        found: PayloadSchemaId,
    },
    /// The stage requires a capability the pool does not hold; the stage did
    /// not run (fail-fast).
    MissingCapability { stage_id: StageId, capability: u64 },
    /// A pool capability could not be copied for the stage (for example it
    /// lacks the right to be moved into a message). The stage did not run.
    CapabilityTransfer {
        stage_id: StageId,
        capability: u64,
        error: KernelError,
    },
    /// The handler reported a permanent failure.
    StageFailed { stage_id: StageId, error: String },
    /// Every attempt the retry policy allows failed transiently; `last` is
    /// the final attempt's outcome.
    RetriesExhausted {
        stage_id: StageId,
        attempts: u32,
        last: StageExecutionResult,
    },
    /// The handler refused the request.
    StageRejected {
        stage_id: StageId,
        error: StageRequestError,
    },
    /// The request could not be delivered, permanently.
    StageUnreachable {
        stage_id: StageId,
        error: KernelError,
    },
    /// The handler's reply broke the protocol.
    InvalidStageOutput {
        stage_id: StageId,
        violation: OutputViolation,
    },
    /// The executor's own kernel resources failed (e.g. no reply channel).
    Kernel(KernelError),
}

/// How a stage reply broke the protocol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutputViolation {
    /// The output payload follows another schema than the stage declared.
    WrongSchema {
        expected: PayloadSchemaId,
        found: PayloadSchemaId,
    },
    /// The reply names a different number of capabilities than it carries.
    CapabilityCountMismatch { declared: u32, attached: u32 },
    /// A returned capability's label is already in the pool or repeated; a
    /// stage cannot replace (or shadow) authority it was not given.
    DuplicateLabel(u64),
    /// The reply is not a decodable stage reply of a supported version.
    MalformedReply(EnvelopeError),
}

/// Kernel errors after which trying again may succeed. A closed handler
/// channel counts: the handler may be restarting under supervision and
/// register a new channel, which the next attempt looks up.
pub(crate) fn is_transient(error: &KernelError) -> bool {
    matches!(
        error,
        KernelError::SendFailed(
            SendError::QueueFull | SendError::InjectedFault | SendError::ChannelClosed
        ) | KernelError::ReceiveFailed(ReceiveError::InjectedFault)
            | KernelError::ServiceNotFound(_)
            | KernelError::Timeout
    )
}

impl fmt::Display for ExecutorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecutorError::InvalidPipeline(e) => write!(f, "invalid pipeline: {e}"),
            ExecutorError::InputSchemaMismatch { expected, found } => {
                write!(f, "input is {found}, pipeline expects {expected}")
            }
            ExecutorError::MissingCapability {
                stage_id,
                capability,
            } => write!(
                f,
                "{stage_id} requires capability {capability}, not in the pool"
            ),
            ExecutorError::CapabilityTransfer {
                stage_id,
                capability,
                error,
            } => write!(
                f,
                "{stage_id}: capability {capability} not transferable: {error}"
            ),
            ExecutorError::StageFailed { stage_id, error } => {
                write!(f, "{stage_id} failed: {error}")
            }
            ExecutorError::RetriesExhausted {
                stage_id, attempts, ..
            } => write!(f, "{stage_id} still failing after {attempts} attempts"),
            ExecutorError::StageRejected { stage_id, error } => {
                write!(f, "{stage_id} rejected: {error:?}")
            }
            ExecutorError::StageUnreachable { stage_id, error } => {
                write!(f, "{stage_id} unreachable: {error}")
            }
            ExecutorError::InvalidStageOutput {
                stage_id,
                violation,
            } => write!(f, "{stage_id} returned invalid output: {violation:?}"),
            ExecutorError::Kernel(e) => write!(f, "executor kernel error: {e}"),
        }
    }
}

impl From<PipelineError> for ExecutorError {
    fn from(e: PipelineError) -> Self {
        ExecutorError::InvalidPipeline(e)
    }
}
