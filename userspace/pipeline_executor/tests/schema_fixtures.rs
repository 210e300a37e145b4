//! Bytes written by version 1.0 of the pipeline protocol (client to
//! executor) and of the stage protocol (executor to handler), committed
//! under `tests/fixtures/v1.0/`, decoded by this version (see
//! `pandagen_sim::fixtures`).

use std::path::PathBuf;

use pandagen_abi::envelope::MessagePayload;
use pandagen_abi::{EnvelopeError, KernelError, SchemaVersion, ServiceId};
use pandagen_pipeline_executor::stage::{StageReply, StageRequest, STAGE_PROTOCOL};
use pandagen_pipeline_executor::{
    ExecutionTrace, ExecutorError, PayloadSchemaId, PipelineExecutionResult, PipelineId,
    PipelineRequest, PipelineRequestError, PipelineResponse, PipelineSpec, RetryPolicy,
    StageExecutionResult, StageId, StageResult, StageSpec, StageTraceEntry, TypedPayload,
};
use pandagen_sim::fixtures::assert_decodes_to;
use serde::de::DeserializeOwned;
use serde::Serialize;

const WRITTEN_AT: SchemaVersion = SchemaVersion::new(1, 0);

fn decodes_to<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(name: &str, value: T) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1.0");
    assert_decodes_to(&dir, name, value);
}

fn text() -> PayloadSchemaId {
    PayloadSchemaId::versioned("text", 1)
}

fn stage(id: u64) -> StageSpec {
    StageSpec::new(
        "upper",
        ServiceId::from_raw(103),
        "transform.upper",
        text(),
        text(),
    )
    .with_id(StageId::from_raw(id))
}

fn trace(final_result: PipelineExecutionResult) -> ExecutionTrace {
    ExecutionTrace {
        pipeline_id: PipelineId::from_raw(1),
        entries: vec![StageTraceEntry {
            stage_id: StageId::from_raw(2),
            stage_name: "upper".into(),
            start_time_ms: 10,
            end_time_ms: 12,
            attempt: 1,
            result: StageExecutionResult::Unreachable(KernelError::ServiceNotFound(
                ServiceId::from_raw(104),
            )),
            capabilities_in: vec![7],
            capabilities_out: vec![],
        }],
        final_result,
    }
}

#[test]
fn the_fixtures_are_inside_the_current_version_windows() {
    let service = ServiceId::from_raw(0);
    assert!(pandagen_pipeline_executor::service::PIPELINE_PROTOCOL
        .check(service, WRITTEN_AT)
        .is_ok());
    assert!(STAGE_PROTOCOL.check(service, WRITTEN_AT).is_ok());
}

#[test]
fn pipeline_requests_and_responses_written_at_v1_0_decode() {
    let pipeline = PipelineSpec::new("shout", text(), text())
        .with_id(PipelineId::from_raw(1))
        .add_stage(stage(2).with_retry_policy(RetryPolicy::exponential_backoff(3, 50)))
        .add_stage(stage(3).with_capabilities(vec![7]));
    decodes_to(
        "pipeline-request-execute.bin",
        PipelineRequest::Execute {
            pipeline,
            input: TypedPayload::new(text(), "hello").unwrap(),
            capabilities: vec![7],
        },
    );
    decodes_to(
        "pipeline-response-executed.bin",
        PipelineResponse::Executed {
            output: Some(TypedPayload::new(text(), "HELLO").unwrap()),
            trace: trace(PipelineExecutionResult::Success),
            capabilities: vec![7],
            omitted_entries: 0,
            output_omitted: false,
        },
    );
    decodes_to(
        "pipeline-response-failed.bin",
        PipelineResponse::Executed {
            output: None,
            trace: trace(PipelineExecutionResult::Failed(
                ExecutorError::RetriesExhausted {
                    stage_id: StageId::from_raw(2),
                    attempts: 4,
                    last: StageExecutionResult::TimedOut,
                },
            )),
            capabilities: vec![],
            omitted_entries: 3,
            output_omitted: false,
        },
    );
    decodes_to(
        "pipeline-response-rejected.bin",
        PipelineResponse::Rejected(PipelineRequestError::CapabilityCountMismatch {
            declared: 2,
            attached: 1,
        }),
    );
}

#[test]
fn stage_requests_and_replies_written_at_v1_0_decode() {
    decodes_to(
        "stage-request.bin",
        StageRequest {
            pipeline_id: PipelineId::from_raw(1),
            stage_id: StageId::from_raw(2),
            attempt: 0,
            input: TypedPayload::new(text(), "hello").unwrap(),
            capabilities: vec![7, 8],
        },
    );
    decodes_to(
        "stage-reply-success.bin",
        StageReply::Completed(StageResult::Success {
            output: TypedPayload::new(text(), "HELLO").unwrap(),
            capabilities: vec![9],
        }),
    );
    decodes_to(
        "stage-reply-retryable.bin",
        StageReply::Completed(StageResult::Retryable {
            error: "flaky".into(),
        }),
    );
}

#[test]
fn refusals_this_version_does_not_know_are_unrecognized_not_malformed() {
    // Variant 1 (`Rejected`), then a refusal index past the last one this
    // version has, then its fields.
    let newer = MessagePayload::from_bytes(vec![1, 30, 5]).unwrap();
    assert_eq!(
        newer.decode_answer::<PipelineResponse>(),
        Ok(PipelineResponse::Rejected(
            PipelineRequestError::Unrecognized { variant: 30 }
        ))
    );
    assert_eq!(
        newer.decode_answer::<StageReply>(),
        Ok(StageReply::Rejected(
            pandagen_pipeline_executor::stage::StageRequestError::Unrecognized { variant: 30 }
        ))
    );
    assert_eq!(
        newer.decode::<PipelineResponse>(),
        Err(EnvelopeError::UnknownVariant { variant: 30 })
    );
}
