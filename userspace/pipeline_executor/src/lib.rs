//! # pandagen-pipeline-executor — typed, capability-safe pipelines
//!
//! A pipeline ([`PipelineSpec`]) is a chain of stages ([`StageSpec`]); each
//! stage is an IPC request — an action plus a [`TypedPayload`] — to a
//! handler service, named by [`ServiceId`](pandagen_abi::ServiceId). The
//! crate provides:
//!
//! * the specification types and [`PipelineSpec::validate`] (schema
//!   chaining and the executor's bounds);
//! * [`RetryPolicy`] with backoff on kernel time;
//! * the [`stage`] protocol and an adapter ([`stage::StageHandler`],
//!   [`stage::handle_stage_request`]) that makes any service a stage handler;
//! * [`PipelineExecutor`], generic over [`KernelApi`](pandagen_abi::KernelApi),
//!   which runs a pipeline and returns the output and an [`ExecutionTrace`];
//! * the pipeline executor *service* ([`service`]) that accepts pipeline
//!   submissions over versioned IPC, and its typed [`client`].
//!
//! ## Capability labels
//!
//! Pipelines name capabilities by `u64` id (docs/interfaces.md). A capability
//! handle, though, means something only in its holder's space, and a
//! capability returned by a stage gets its handle only when it arrives. So
//! the ids in `required_capabilities`, in [`StageResult::Success`] and in the
//! trace are *labels*: names in the executor's pool, chosen by whoever puts
//! the capability there — the caller for initial capabilities (by default
//! the capability's own id), the stage handler for capabilities it returns
//! (for example a label derived from the object's name, so the pipeline's
//! author can refer to it in advance). A label is a name, never authority:
//! the executor only forwards capabilities it actually holds.
//!
//! ## Choices docs/interfaces.md leaves open
//!
//! * Errors in [`StageResult`] stay strings (docs/interfaces.md says why)
//!   (a stage's domain is open-ended); everything the executor itself
//!   decides is a typed [`ExecutorError`] or [`StageExecutionResult`].
//! * A reply that does not come within the stage timeout is a retryable
//!   attempt ([`StageExecutionResult::TimedOut`]), as are transient kernel
//!   errors (full queue, handler not registered yet, injected faults). A
//!   handler may therefore see a request again after a lost *reply*; each
//!   request names its `(pipeline, stage, attempt)` so it can tell.
//! * Submissions to the service are at most once: the client does not
//!   resend, because a resent pipeline would run its stages again.
//! * A stage that never ran (missing capability) has no trace entry; the
//!   final result names it.
//! * Stages get copies of their capabilities; the pool keeps the originals
//!   and, in the service, hands them all back to the submitter at the end.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod caps;
pub mod client;
pub mod error;
pub mod executor;
pub mod ids;
pub mod payload;
pub mod retry;
pub mod service;
pub mod spec;
pub mod stage;
pub mod trace;

pub use client::{ClientError, PendingSubmission, PipelineClient, PipelineSubmission};
pub use error::{ExecutorError, OutputViolation};
pub use executor::{PipelineExecution, PipelineExecutor, PipelineRun, Progress, Wait};
pub use ids::{PipelineId, StageId};
pub use payload::{PayloadError, PayloadSchemaId, TypedPayload};
pub use retry::RetryPolicy;
pub use service::{
    PipelineHandled, PipelineRequest, PipelineRequestError, PipelineResponse, PipelineService,
    ServiceStep,
};
pub use spec::{PipelineError, PipelineSpec, SchemaLink, StageSpec};
pub use stage::{StageCall, StageHandler, StageOutcome, StageResult};
pub use trace::{ExecutionTrace, PipelineExecutionResult, StageExecutionResult, StageTraceEntry};
