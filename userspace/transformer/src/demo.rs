//! The demo pipelines, with the outcome each must have. The same
//! definitions and checks run on the SimulatedKernel (host tests) and in
//! ring 3 under the real kernel (the `suite_pipeline` program), so both
//! kernels are held to one expected result.
//!
//! They need the transformer registered as `TRANSFORMER`, a second instance
//! with [`FailureMode::flaky`](crate::FailureMode::flaky) as
//! [`FLAKY_TRANSFORMER`], and the pipeline executor service. Every
//! scenario can run any number of times on one system: the flaky instance
//! fails the first two attempts of each run's stage, not its first two
//! requests ever.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use pandagen_abi::services::TRANSFORMER;
use pandagen_abi::ServiceId;
use pandagen_pipeline_executor::{
    ExecutorError, PipelineExecutionResult, PipelineSpec, PipelineSubmission, RetryPolicy,
    StageExecutionResult, StageSpec, TypedPayload,
};

use crate::schemas::{self, blob_cap_label, BlobChecksum};
use crate::service::FLAKY_TRANSFORMER;
use crate::transform::{adler32, blob_params_payload, Action};

/// The blob every demo pipeline starts from.
pub const BLOB_NAME: &str = "greeting";
pub const BLOB_CONTENT: &[u8] = b"hello, pipeline";
/// Backoff of the retry scenario's first retry.
pub const RETRY_BACKOFF_MS: u64 = 20;

pub type Check = fn(&PipelineSpec, &PipelineSubmission) -> Result<(), String>;

pub struct DemoScenario {
    /// The test name reported by suites.
    pub name: &'static str,
    pub pipeline: PipelineSpec,
    pub input: TypedPayload,
    pub check: Check,
}

/// A stage calling `action` on `handler`, with the action's schemas.
pub fn stage(name: &str, handler: ServiceId, action: Action) -> StageSpec {
    let (input, output) = match action {
        Action::CreateBlob => (schemas::blob_params(), schemas::blob()),
        Action::Uppercase | Action::Reverse => (schemas::blob(), schemas::blob()),
        Action::Checksum => (schemas::blob(), schemas::checksum()),
    };
    StageSpec::new(name, handler, action.name(), input, output)
}

/// A pipeline over `stages`, its schemas taken from the first and last.
pub fn pipeline(name: &str, stages: Vec<StageSpec>) -> PipelineSpec {
    let input = stages
        .first()
        .map(|s| s.input_schema.clone())
        .unwrap_or_else(schemas::blob_params);
    let output = stages
        .last()
        .map(|s| s.output_schema.clone())
        .unwrap_or_else(schemas::blob_params);
    stages.into_iter().fold(
        PipelineSpec::new(name, input, output),
        PipelineSpec::add_stage,
    )
}

fn input() -> TypedPayload {
    // A `BlobParams` of a short name and content always encodes.
    blob_params_payload(BLOB_NAME, BLOB_CONTENT)
        .unwrap_or_else(|_| TypedPayload::from_bytes(schemas::blob_params(), Vec::new()))
}

fn ensure(condition: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(what())
    }
}

/// Every demo scenario, in the order a suite runs them.
pub fn scenarios() -> Vec<DemoScenario> {
    let handle = blob_cap_label(BLOB_NAME);
    vec![
        DemoScenario {
            name: "pipeline/happy_path",
            pipeline: pipeline(
                "blob_pipeline",
                vec![
                    stage("CreateBlob", TRANSFORMER, Action::CreateBlob),
                    stage("Uppercase", TRANSFORMER, Action::Uppercase)
                        .with_capabilities(vec![handle]),
                    stage("Checksum", TRANSFORMER, Action::Checksum)
                        .with_capabilities(vec![handle]),
                ],
            ),
            input: input(),
            check: check_happy_path,
        },
        DemoScenario {
            name: "pipeline/failure_path",
            pipeline: pipeline(
                "unlent_handle",
                vec![
                    stage("CreateBlob", TRANSFORMER, Action::CreateBlob),
                    // Not lent the blob's handle: the transformer refuses.
                    stage("Uppercase", TRANSFORMER, Action::Uppercase),
                    stage("Checksum", TRANSFORMER, Action::Checksum),
                ],
            ),
            input: input(),
            check: check_failure_path,
        },
        DemoScenario {
            name: "pipeline/retry_path",
            pipeline: pipeline(
                "flaky",
                vec![
                    stage("CreateBlob", TRANSFORMER, Action::CreateBlob),
                    stage("Uppercase", FLAKY_TRANSFORMER, Action::Uppercase)
                        .with_capabilities(vec![handle])
                        .with_retry_policy(RetryPolicy::exponential_backoff(3, RETRY_BACKOFF_MS)),
                ],
            ),
            input: input(),
            check: check_retry_path,
        },
        DemoScenario {
            name: "pipeline/missing_capability",
            pipeline: pipeline(
                "missing_capability",
                vec![
                    stage("CreateBlob", TRANSFORMER, Action::CreateBlob),
                    stage("Uppercase", TRANSFORMER, Action::Uppercase)
                        .with_capabilities(vec![blob_cap_label("absent")]),
                ],
            ),
            input: input(),
            check: check_missing_capability,
        },
    ]
}

fn check_happy_path(p: &PipelineSpec, s: &PipelineSubmission) -> Result<(), String> {
    let trace = &s.trace;
    ensure(
        trace.final_result == PipelineExecutionResult::Success,
        || format!("final result {:?}", trace.final_result),
    )?;
    ensure(trace.entries.len() == p.stages.len(), || {
        format!("{} trace entries", trace.entries.len())
    })?;
    for (entry, spec) in trace.entries.iter().zip(&p.stages) {
        ensure(
            entry.stage_id == spec.id
                && entry.attempt == 0
                && entry.result == StageExecutionResult::Success
                && entry.end_time_ms >= entry.start_time_ms,
            || format!("entry {entry:?}"),
        )?;
    }
    let handle = blob_cap_label(BLOB_NAME);
    ensure(trace.entries[0].capabilities_out == [handle], || {
        "the blob handle is not in stage 1's output".into()
    })?;
    ensure(trace.entries[1].capabilities_in == [handle], || {
        "the blob handle was not lent to stage 2".into()
    })?;
    let output = s.output.as_ref().ok_or("no output")?;
    let sum: BlobChecksum = output
        .decode_as(&schemas::checksum())
        .map_err(|e| format!("output: {e}"))?;
    let mut expected = Vec::from(BLOB_CONTENT);
    expected.make_ascii_uppercase();
    ensure(sum.adler32 == adler32(&expected), || {
        format!("checksum {:#x}", sum.adler32)
    })?;
    let labels: Vec<u64> = s.capabilities.iter().map(|(l, _)| *l).collect();
    ensure(labels == [handle], || {
        format!("returned capabilities {labels:?}")
    })
}

fn check_failure_path(p: &PipelineSpec, s: &PipelineSubmission) -> Result<(), String> {
    let trace = &s.trace;
    let failing = p.stages[1].id;
    ensure(
        matches!(
            &trace.final_result,
            PipelineExecutionResult::Failed(ExecutorError::StageFailed { stage_id, .. })
                if *stage_id == failing
        ),
        || format!("final result {:?}", trace.final_result),
    )?;
    ensure(trace.entries.len() == 2, || {
        format!("trace has {} entries, not 2", trace.entries.len())
    })?;
    ensure(trace.attempts_of(p.stages[2].id).count() == 0, || {
        "a stage after the failure ran".into()
    })?;
    ensure(s.output.is_none(), || {
        "a failed pipeline produced output".into()
    })
}

fn check_retry_path(p: &PipelineSpec, s: &PipelineSubmission) -> Result<(), String> {
    let trace = &s.trace;
    ensure(
        trace.final_result == PipelineExecutionResult::Success,
        || format!("final result {:?}", trace.final_result),
    )?;
    let attempts: Vec<_> = trace.attempts_of(p.stages[1].id).collect();
    let numbers: Vec<u32> = attempts.iter().map(|e| e.attempt).collect();
    ensure(numbers == [0, 1, 2], || format!("attempts {numbers:?}"))?;
    ensure(
        matches!(attempts[0].result, StageExecutionResult::Retryable { .. })
            && attempts[2].result == StageExecutionResult::Success,
        || format!("attempt results {attempts:?}"),
    )?;
    // Backoff before retry n is RETRY_BACKOFF_MS * 2^(n-1), on kernel time.
    for (n, pair) in attempts.windows(2).enumerate() {
        let gap = pair[1].start_time_ms.saturating_sub(pair[0].end_time_ms);
        let min = RETRY_BACKOFF_MS << n;
        ensure(gap >= min, || {
            format!("backoff {gap} ms before retry {}, below {min}", n + 1)
        })?;
    }
    Ok(())
}

fn check_missing_capability(p: &PipelineSpec, s: &PipelineSubmission) -> Result<(), String> {
    let trace = &s.trace;
    let expected = ExecutorError::MissingCapability {
        stage_id: p.stages[1].id,
        capability: blob_cap_label("absent"),
    };
    ensure(
        trace.final_result == PipelineExecutionResult::Failed(expected),
        || format!("final result {:?}", trace.final_result),
    )?;
    ensure(trace.entries.len() == 1, || {
        format!("the blocked stage has {} entries", trace.entries.len() - 1)
    })
}
