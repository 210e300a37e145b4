//! The pipeline executor service and its client, over the in-process fake
//! kernel (see `support`): versioned requests, typed rejections, the
//! capability pool handed back, and the stepped server.

mod support;

use std::cell::RefCell;
use std::rc::Rc;

use pandagen_abi::services::PIPELINE_EXECUTOR;
use pandagen_abi::{
    Cap, Duration, EnvelopeError, KernelApi, MessageEnvelope, MessagePayload, Rights,
    SchemaMismatchError, SchemaVersion,
};
use pandagen_pipeline_executor::service::{EXECUTE_ACTION, RESPONSE_ACTION};
use pandagen_pipeline_executor::{
    ClientError, PipelineClient, PipelineExecutionResult, PipelineRequest, PipelineRequestError,
    PipelineResponse, PipelineService, PipelineSpec, ServiceStep, StageSpec,
};
use support::*;

const SERVICE_TASK: Task = 3;

fn setup() -> (FakeKernel, Rc<RefCell<TestHandler>>) {
    let (mut kernel, handler) = kernel_with_handler();
    let mut service = PipelineService::new().with_stage_timeout(Duration::from_millis(200));
    kernel.add_service(
        SERVICE_TASK,
        PIPELINE_EXECUTOR,
        Box::new(move |k, message| {
            service.handle(k, message);
        }),
    );
    (kernel, handler)
}

fn demo_pipeline(label: u64) -> PipelineSpec {
    PipelineSpec::new("demo", text(), text())
        .add_stage(
            StageSpec::new("Mint", HANDLER, "mint", text(), text()).with_capabilities(vec![label]),
        )
        .add_stage(
            StageSpec::new("Guarded", HANDLER, "needs_cap", text(), text())
                .with_capabilities(vec![42]),
        )
}

#[test]
fn a_submitted_pipeline_returns_output_trace_and_its_capabilities() {
    let (mut kernel, handler) = setup();
    let token = kernel.mint_token(CLIENT);
    let client = PipelineClient::connect(&mut kernel).unwrap();
    let client_caps_before = kernel.held_by(CLIENT);

    let result = client
        .submit(
            &mut kernel,
            &demo_pipeline(5),
            text_payload("hi"),
            vec![(5, token)],
        )
        .unwrap();

    assert_eq!(result.trace.final_result, PipelineExecutionResult::Success);
    let output: String = result.output.unwrap().decode_as(&text()).unwrap();
    assert_eq!(output, "HI (authorised)");
    assert_eq!(result.trace.entries.len(), 2);
    assert_eq!(result.trace.entries[0].capabilities_in, [5]);
    assert_eq!(result.trace.entries[0].capabilities_out, [42]);
    // The initial token comes back with the minted capability.
    let labels: Vec<u64> = result.capabilities.iter().map(|(l, _)| *l).collect();
    assert_eq!(labels, [5, 42]);
    assert_eq!(kernel.held_by(CLIENT), client_caps_before + 1);
    // The service and the handler keep nothing beyond their channels (the
    // service's lookups of the handler were dropped after each send).
    assert_eq!(kernel.held_by(SERVICE_TASK), 1);
    assert_eq!(kernel.held_by(HANDLER_TASK), 1);
    assert_eq!(handler.borrow().calls.len(), 2);
    assert_eq!(kernel.in_flight(), 0);
}

#[test]
fn a_failed_pipeline_still_returns_its_trace_and_capabilities() {
    let (mut kernel, _) = setup();
    let token = kernel.mint_token(CLIENT);
    let client = PipelineClient::connect(&mut kernel).unwrap();
    let p = PipelineSpec::new("f", text(), text()).add_stage(StageSpec::new(
        "Fail",
        HANDLER,
        "fail",
        text(),
        text(),
    ));
    let result = client
        .submit(&mut kernel, &p, text_payload("x"), vec![(9, token)])
        .unwrap();
    assert_eq!(result.output, None);
    assert!(matches!(
        result.trace.final_result,
        PipelineExecutionResult::Failed(_)
    ));
    assert_eq!(result.trace.entries.len(), 1);
    assert_eq!(result.capabilities.len(), 1);
}

/// Send a hand-made request and return the service's response.
fn raw_request(
    kernel: &mut FakeKernel,
    action: &str,
    version: SchemaVersion,
    payload: MessagePayload,
    extra_caps: Vec<Cap<()>>,
) -> PipelineResponse {
    let service = kernel.lookup_service(PIPELINE_EXECUTOR).unwrap();
    let reply = kernel.create_channel().unwrap();
    let reply_cap = kernel
        .clone_capability(&Cap::from(reply), Rights::SEND | Rights::TRANSFER)
        .unwrap();
    let request = MessageEnvelope::new(PIPELINE_EXECUTOR, action, version, payload);
    let id = request.id;
    let mut caps = vec![reply_cap];
    caps.extend(extra_caps);
    kernel
        .send_with_capabilities(service, request, caps)
        .unwrap();
    let response = kernel
        .receive_with_capabilities(reply, Some(Duration::ZERO))
        .unwrap();
    assert_eq!(response.envelope.correlation_id, Some(id));
    assert_eq!(response.envelope.action, RESPONSE_ACTION);
    assert!(response.capabilities.is_empty());
    response.envelope.payload.decode().unwrap()
}

fn valid_payload(labels: Vec<u64>) -> MessagePayload {
    MessagePayload::new(&PipelineRequest::Execute {
        pipeline: demo_pipeline(5),
        input: text_payload("x"),
        capabilities: labels,
    })
    .unwrap()
}

#[test]
fn every_bad_request_gets_its_own_typed_rejection() {
    let (mut kernel, handler) = setup();

    let future = raw_request(
        &mut kernel,
        EXECUTE_ACTION,
        SchemaVersion::new(2, 0),
        valid_payload(vec![]),
        vec![],
    );
    assert!(matches!(
        future,
        PipelineResponse::Rejected(PipelineRequestError::Envelope(
            EnvelopeError::SchemaMismatch(SchemaMismatchError::Unsupported { .. })
        ))
    ));

    let unknown = raw_request(
        &mut kernel,
        "pipeline.explode",
        SchemaVersion::new(1, 0),
        valid_payload(vec![]),
        vec![],
    );
    assert_eq!(
        unknown,
        PipelineResponse::Rejected(PipelineRequestError::UnknownAction)
    );

    let garbage = MessagePayload::from_bytes(vec![0xff; 7]).unwrap();
    let malformed = raw_request(
        &mut kernel,
        EXECUTE_ACTION,
        SchemaVersion::new(1, 0),
        garbage,
        vec![],
    );
    assert_eq!(
        malformed,
        PipelineResponse::Rejected(PipelineRequestError::Envelope(EnvelopeError::Malformed))
    );

    // A newer minor version of the same major is accepted.
    let token = kernel.mint_token(CLIENT);
    let minor = raw_request(
        &mut kernel,
        EXECUTE_ACTION,
        SchemaVersion::new(1, 3),
        valid_payload(vec![]),
        vec![token],
    );
    assert_eq!(
        minor,
        PipelineResponse::Rejected(PipelineRequestError::CapabilityCountMismatch {
            declared: 0,
            attached: 1
        })
    );
    // The attached capability was released, not kept by the service.
    assert_eq!(kernel.held_by(SERVICE_TASK), 1);
    assert!(
        handler.borrow().calls.is_empty(),
        "no rejected request ran a stage"
    );
}

#[test]
fn a_request_without_a_reply_capability_runs_nothing() {
    let (mut kernel, handler) = setup();
    let service = kernel.lookup_service(PIPELINE_EXECUTOR).unwrap();
    let request = MessageEnvelope::new(
        PIPELINE_EXECUTOR,
        EXECUTE_ACTION,
        SchemaVersion::new(1, 0),
        valid_payload(vec![]),
    );
    kernel.send_message(service, request).unwrap();
    assert!(handler.borrow().calls.is_empty());
    assert_eq!(kernel.held_by(SERVICE_TASK), 1);
}

#[test]
fn the_stepped_service_answers_like_the_blocking_one() {
    let (mut kernel, handler) = kernel_with_handler();
    handler.borrow_mut().flaky_failures = 1;
    // The service is registered without an auto-run handler: the test steps it.
    let channel = kernel.as_task(SERVICE_TASK, |k| PipelineService::register(k).unwrap());
    let mut service = PipelineService::new();

    let client = PipelineClient::connect(&mut kernel).unwrap();
    let p = PipelineSpec::new("stepped", text(), text()).add_stage(
        StageSpec::new("Flaky", HANDLER, "flaky", text(), text()).with_retry_policy(
            pandagen_pipeline_executor::RetryPolicy::fixed_retries(1, 75),
        ),
    );
    let pending = client
        .send(&mut kernel, &p, text_payload("abc"), vec![])
        .unwrap();
    assert!(client.poll(&mut kernel, &pending).unwrap().is_none());

    let mut steps = 0;
    let result = loop {
        steps += 1;
        assert!(steps < 50, "the stepped service must finish");
        let step = kernel.as_task(SERVICE_TASK, |k| service.step(k, channel));
        if let ServiceStep::WaitUntil(t) = step {
            let now = kernel.now();
            kernel.advance(t - now);
        }
        if let Some(result) = client.poll(&mut kernel, &pending).unwrap() {
            break result;
        }
    };
    assert!(!service.is_busy());
    assert_eq!(result.trace.entries.len(), 2);
    assert_eq!(result.trace.entries[1].start_time_ms, 75);
    let output: String = result.output.unwrap().decode_as(&text()).unwrap();
    assert_eq!(output, "ABC");
    assert_eq!(
        kernel.as_task(SERVICE_TASK, |k| service.step(k, channel)),
        ServiceStep::Idle
    );
}

#[test]
fn a_client_gives_up_at_its_timeout() {
    let mut kernel = FakeKernel::new();
    // Registered but never served.
    kernel.as_task(SERVICE_TASK, |k| PipelineService::register(k).unwrap());
    let client = PipelineClient::connect(&mut kernel)
        .unwrap()
        .with_timeout(Duration::from_millis(500));
    let p = demo_pipeline(5);
    let err = client
        .submit(&mut kernel, &p, text_payload("x"), vec![])
        .unwrap_err();
    assert_eq!(err, ClientError::TimedOut);
    assert_eq!(kernel.now().as_millis(), 500);
}
