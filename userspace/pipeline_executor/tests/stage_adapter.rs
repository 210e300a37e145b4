//! The stage adapter's side of the protocol: version checked before
//! decoding, typed rejections, lent capabilities released.

mod support;

use pandagen_abi::{
    Cap, Duration, EnvelopeError, KernelApi, MessageEnvelope, MessagePayload, Rights,
    SchemaMismatchError, SchemaVersion,
};
use pandagen_pipeline_executor::stage::{
    StageReply, StageRequest, StageRequestError, StageResult, STAGE_RESULT_ACTION,
};
use pandagen_pipeline_executor::{PipelineId, StageId};
use support::*;

fn request(labels: Vec<u64>) -> StageRequest {
    StageRequest {
        pipeline_id: PipelineId::from_raw(1),
        stage_id: StageId::from_raw(1),
        attempt: 0,
        input: text_payload("abc"),
        capabilities: labels,
    }
}

/// Send a raw stage request as the client and return the handler's reply.
fn exchange(
    kernel: &mut FakeKernel,
    action: &str,
    version: SchemaVersion,
    payload: MessagePayload,
    lent: Vec<Cap<()>>,
) -> StageReply {
    let handler = kernel.lookup_service(HANDLER).unwrap();
    let reply = kernel.create_channel().unwrap();
    let reply_cap = kernel
        .clone_capability(&Cap::from(reply), Rights::SEND | Rights::TRANSFER)
        .unwrap();
    let envelope = MessageEnvelope::new(HANDLER, action, version, payload);
    let id = envelope.id;
    let mut caps = vec![reply_cap];
    caps.extend(lent);
    kernel
        .send_with_capabilities(handler, envelope, caps)
        .unwrap();
    let answer = kernel
        .receive_with_capabilities(reply, Some(Duration::ZERO))
        .unwrap();
    assert_eq!(answer.envelope.correlation_id, Some(id));
    assert_eq!(answer.envelope.action, STAGE_RESULT_ACTION);
    for cap in answer.capabilities {
        kernel.drop_capability(cap).unwrap();
    }
    answer.envelope.payload.decode().unwrap()
}

#[test]
fn a_well_formed_request_runs_and_answers() {
    let (mut kernel, handler) = kernel_with_handler();
    let payload = MessagePayload::new(&request(vec![])).unwrap();
    let reply = exchange(
        &mut kernel,
        "upper",
        SchemaVersion::new(1, 0),
        payload,
        vec![],
    );
    let StageReply::Completed(StageResult::Success {
        output,
        capabilities,
    }) = reply
    else {
        panic!("{reply:?}");
    };
    assert_eq!(output.decode_as::<String>(&text()).unwrap(), "ABC");
    assert!(capabilities.is_empty());
    assert_eq!(handler.borrow().calls.len(), 1);
}

#[test]
fn bad_requests_are_rejected_without_running_the_stage() {
    let (mut kernel, handler) = kernel_with_handler();

    let payload = MessagePayload::new(&request(vec![])).unwrap();
    let newer = exchange(
        &mut kernel,
        "upper",
        SchemaVersion::new(2, 0),
        payload,
        vec![],
    );
    assert!(matches!(
        newer,
        StageReply::Rejected(StageRequestError::Envelope(EnvelopeError::SchemaMismatch(
            SchemaMismatchError::Unsupported { .. }
        )))
    ));

    let garbage = MessagePayload::from_bytes(vec![0xff; 3]).unwrap();
    let malformed = exchange(
        &mut kernel,
        "upper",
        SchemaVersion::new(1, 0),
        garbage,
        vec![],
    );
    assert_eq!(
        malformed,
        StageReply::Rejected(StageRequestError::Envelope(EnvelopeError::Malformed))
    );

    // Two labels, one capability: refused, and the lent capability released.
    let token = kernel.mint_token(CLIENT);
    let payload = MessagePayload::new(&request(vec![1, 2])).unwrap();
    let mismatch = exchange(
        &mut kernel,
        "upper",
        SchemaVersion::new(1, 0),
        payload,
        vec![token],
    );
    assert_eq!(
        mismatch,
        StageReply::Rejected(StageRequestError::CapabilityCountMismatch {
            declared: 2,
            attached: 1
        })
    );
    assert!(handler.borrow().calls.is_empty());

    let payload = MessagePayload::new(&request(vec![])).unwrap();
    let unknown = exchange(
        &mut kernel,
        "explode",
        SchemaVersion::new(1, 0),
        payload,
        vec![],
    );
    assert_eq!(
        unknown,
        StageReply::Rejected(StageRequestError::UnknownAction)
    );
    assert_eq!(kernel.held_by(HANDLER_TASK), 1, "only the service channel");
}

#[test]
fn lent_capabilities_are_released_after_the_stage() {
    let (mut kernel, handler) = kernel_with_handler();
    let token = kernel.mint_token(CLIENT);
    let payload = MessagePayload::new(&request(vec![42])).unwrap();
    let reply = exchange(
        &mut kernel,
        "needs_cap",
        SchemaVersion::new(1, 0),
        payload,
        vec![token],
    );
    assert!(matches!(
        reply,
        StageReply::Completed(StageResult::Success { .. })
    ));
    assert_eq!(handler.borrow().calls[0].labels, [42]);
    assert_eq!(kernel.held_by(HANDLER_TASK), 1);
}
