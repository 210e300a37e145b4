//! The executor's contract, driven against the in-process fake kernel and a
//! scripted stage handler (see `support`).

mod support;

use pandagen_abi::{Duration, KernelApi};
use pandagen_pipeline_executor::{
    ExecutorError, OutputViolation, PipelineError, PipelineExecutionResult, PipelineExecutor,
    PipelineSpec, Progress, RetryPolicy, StageExecutionResult, StageSpec,
};
use support::*;

fn stage(name: &str, action: &str) -> StageSpec {
    StageSpec::new(name, HANDLER, action, text(), text())
}

fn pipeline(stages: Vec<StageSpec>) -> PipelineSpec {
    let out = stages
        .last()
        .map(|s| s.output_schema.clone())
        .unwrap_or_else(text);
    stages.into_iter().fold(
        PipelineSpec::new("test", text(), out),
        PipelineSpec::add_stage,
    )
}

fn decode_text(payload: &pandagen_pipeline_executor::TypedPayload) -> String {
    payload.decode_as(&text()).unwrap()
}

#[test]
fn happy_path_runs_every_stage_and_flows_capabilities() {
    let (mut kernel, handler) = kernel_with_handler();
    let minted = stage("Mint", "mint");
    let guarded = stage("Guarded", "needs_cap").with_capabilities(vec![42]);
    let counted = StageSpec::new("Count", HANDLER, "count", text(), count());
    let p = pipeline(vec![minted, guarded, counted]);
    let ids: Vec<_> = p.stages.iter().map(|s| s.id).collect();
    p.validate().unwrap();

    let mut executor = PipelineExecutor::new();
    let (output, trace) = executor
        .execute(&mut kernel, &p, text_payload("hello"))
        .unwrap();

    assert_eq!(output.schema, count());
    assert_eq!(
        output.decode_as::<u32>(&count()).unwrap(),
        "HELLO (authorised)".len() as u32
    );
    assert_eq!(trace.final_result, PipelineExecutionResult::Success);
    assert_eq!(trace.pipeline_id, p.id);
    assert_eq!(trace.entries.len(), 3);
    for (entry, id) in trace.entries.iter().zip(&ids) {
        assert_eq!(entry.stage_id, *id);
        assert_eq!(entry.attempt, 0);
        assert_eq!(entry.result, StageExecutionResult::Success);
    }
    assert_eq!(trace.entries[0].capabilities_out, [42]);
    assert_eq!(trace.entries[1].capabilities_in, [42]);
    assert!(trace.entries[2].capabilities_in.is_empty());
    // The handler saw the capability only where it was declared.
    let h = handler.borrow();
    assert_eq!(
        h.calls.iter().map(|c| c.labels.clone()).collect::<Vec<_>>(),
        [vec![], vec![42], vec![]]
    );
    // The minted capability is in the pool; the handler kept nothing.
    assert_eq!(executor.capability_labels(), [42]);
    assert_eq!(kernel.held_by(HANDLER_TASK), 1, "only its service channel");
    assert_eq!(kernel.in_flight(), 0);
}

#[test]
fn a_permanent_failure_stops_the_pipeline_at_that_stage() {
    let (mut kernel, handler) = kernel_with_handler();
    let p = pipeline(vec![
        stage("A", "upper"),
        stage("B", "fail"),
        stage("C", "exclaim"),
    ]);
    let failing = p.stages[1].id;
    let run = PipelineExecutor::new().run(&mut kernel, &p, text_payload("x"));

    assert_eq!(run.output, None);
    assert_eq!(run.trace.entries.len(), 2);
    assert_eq!(run.trace.entries[1].stage_id, failing);
    assert_eq!(
        run.trace.entries[1].result,
        StageExecutionResult::Failure {
            error: "disk on fire".into()
        }
    );
    assert_eq!(
        run.trace.final_result,
        PipelineExecutionResult::Failed(ExecutorError::StageFailed {
            stage_id: failing,
            error: "disk on fire".into()
        })
    );
    assert_eq!(
        handler.borrow().calls_of("exclaim"),
        0,
        "later stages never run"
    );
}

#[test]
fn a_permanent_failure_is_not_retried_even_with_a_retry_policy() {
    let (mut kernel, handler) = kernel_with_handler();
    let p = pipeline(vec![
        stage("B", "fail").with_retry_policy(RetryPolicy::fixed_retries(3, 10))
    ]);
    let run = PipelineExecutor::new().run(&mut kernel, &p, text_payload("x"));
    assert_eq!(run.trace.entries.len(), 1);
    assert_eq!(handler.borrow().calls.len(), 1);
}

#[test]
fn retries_follow_the_policy_with_backoff_on_kernel_time() {
    let (mut kernel, handler) = kernel_with_handler();
    handler.borrow_mut().flaky_failures = 2;
    let p = pipeline(vec![
        stage("Flaky", "flaky").with_retry_policy(RetryPolicy::exponential_backoff(3, 100))
    ]);
    let (output, trace) = PipelineExecutor::new()
        .execute(&mut kernel, &p, text_payload("ok"))
        .unwrap();

    assert_eq!(decode_text(&output), "OK");
    let attempts: Vec<u32> = trace.entries.iter().map(|e| e.attempt).collect();
    assert_eq!(attempts, [0, 1, 2]);
    assert!(trace.entries[0].result.is_transient());
    assert_eq!(trace.entries[2].result, StageExecutionResult::Success);
    // Backoff before retry n is initial * 2^(n-1): 100 ms, then 200 ms.
    let gaps: Vec<u64> = trace
        .entries
        .windows(2)
        .map(|w| w[1].start_time_ms - w[0].end_time_ms)
        .collect();
    assert_eq!(gaps, [100, 200]);
    assert_eq!(trace.entries[0].start_time_ms, 0);
    assert_eq!(handler.borrow().calls.len(), 3);
}

#[test]
fn retries_are_bounded_and_then_fail_permanently() {
    let (mut kernel, handler) = kernel_with_handler();
    handler.borrow_mut().flaky_failures = 100;
    let p = pipeline(vec![
        stage("Flaky", "flaky").with_retry_policy(RetryPolicy::fixed_retries(2, 50)),
        stage("Never", "exclaim"),
    ]);
    let stage_id = p.stages[0].id;
    let run = PipelineExecutor::new().run(&mut kernel, &p, text_payload("x"));

    assert_eq!(run.trace.entries.len(), 3, "max_retries + 1 attempts");
    let starts: Vec<u64> = run.trace.entries.iter().map(|e| e.start_time_ms).collect();
    assert_eq!(starts, [0, 50, 100]);
    assert_eq!(
        run.trace.final_result,
        PipelineExecutionResult::Failed(ExecutorError::RetriesExhausted {
            stage_id,
            attempts: 3,
            last: StageExecutionResult::Retryable {
                error: "busy".into()
            },
        })
    );
    assert_eq!(handler.borrow().calls.len(), 3);
}

#[test]
fn a_missing_capability_fails_fast_before_the_stage_runs() {
    let (mut kernel, handler) = kernel_with_handler();
    let p = pipeline(vec![
        stage("A", "upper"),
        stage("B", "needs_cap").with_capabilities(vec![42]),
    ]);
    let blocked = p.stages[1].id;
    let run = PipelineExecutor::new().run(&mut kernel, &p, text_payload("x"));

    assert_eq!(
        run.trace.final_result,
        PipelineExecutionResult::Failed(ExecutorError::MissingCapability {
            stage_id: blocked,
            capability: 42
        })
    );
    assert_eq!(
        run.trace.entries.len(),
        1,
        "the blocked stage has no attempt"
    );
    assert_eq!(handler.borrow().calls_of("needs_cap"), 0);
}

#[test]
fn initial_capabilities_are_lent_as_copies_and_stay_in_the_pool() {
    let (mut kernel, handler) = kernel_with_handler();
    let token = kernel.mint_token(CLIENT);
    let label = token.id();
    let p = pipeline(vec![
        stage("A", "upper").with_capabilities(vec![label]),
        stage("B", "exclaim").with_capabilities(vec![label]),
    ]);
    let mut executor = PipelineExecutor::new();
    assert!(executor.add_capabilities(vec![token]).is_empty());
    let before = kernel.held_by(CLIENT);
    let run = executor.run(&mut kernel, &p, text_payload("x"));

    assert_eq!(run.trace.final_result, PipelineExecutionResult::Success);
    assert_eq!(handler.borrow().calls[1].labels, [label]);
    assert_eq!(executor.capability_labels(), [label]);
    // The executor's task gained nothing: each attempt's lookup of the
    // handler is dropped once the request is sent.
    assert_eq!(kernel.held_by(CLIENT), before);
    assert_eq!(kernel.held_by(HANDLER_TASK), 1);
    executor.release_capabilities(&mut kernel);
    assert_eq!(kernel.held_by(CLIENT), before - 1, "the token is released");
}

#[test]
fn invalid_pipelines_never_run() {
    let (mut kernel, handler) = kernel_with_handler();
    let empty = PipelineSpec::new("empty", text(), text());
    let run = PipelineExecutor::new().run(&mut kernel, &empty, text_payload("x"));
    assert_eq!(
        run.trace.final_result,
        PipelineExecutionResult::Failed(ExecutorError::InvalidPipeline(
            PipelineError::EmptyPipeline
        ))
    );

    let mismatched = PipelineSpec::new("m", text(), text()).add_stage(StageSpec::new(
        "Count",
        HANDLER,
        "count",
        text(),
        count(),
    ));
    let err = PipelineExecutor::new()
        .execute(&mut kernel, &mismatched, text_payload("x"))
        .unwrap_err();
    assert!(matches!(
        err,
        ExecutorError::InvalidPipeline(PipelineError::SchemaMismatch { .. })
    ));

    let p = pipeline(vec![stage("A", "upper")]);
    let wrong_input = pandagen_pipeline_executor::TypedPayload::new(count(), &1u32).unwrap();
    let err = PipelineExecutor::new()
        .execute(&mut kernel, &p, wrong_input)
        .unwrap_err();
    assert!(matches!(err, ExecutorError::InputSchemaMismatch { .. }));
    assert!(handler.borrow().calls.is_empty());
}

#[test]
fn output_that_breaks_the_declared_schema_is_a_permanent_failure() {
    let (mut kernel, _) = kernel_with_handler();
    let p = pipeline(vec![
        stage("Bad", "bad_schema").with_retry_policy(RetryPolicy::fixed_retries(2, 1))
    ]);
    let run = PipelineExecutor::new().run(&mut kernel, &p, text_payload("x"));
    assert_eq!(run.trace.entries.len(), 1);
    assert!(matches!(
        run.trace.final_result,
        PipelineExecutionResult::Failed(ExecutorError::InvalidStageOutput {
            violation: OutputViolation::WrongSchema { .. },
            ..
        })
    ));
}

#[test]
fn a_stage_cannot_shadow_a_label_already_in_the_pool() {
    let (mut kernel, handler) = kernel_with_handler();
    let token = kernel.mint_token(CLIENT);
    handler.borrow_mut().mint_label = token.id();
    let mut executor = PipelineExecutor::new();
    executor.add_capabilities(vec![token]);
    let p = pipeline(vec![stage("Mint", "mint")]);
    let run = executor.run(&mut kernel, &p, text_payload("x"));
    assert!(matches!(
        run.trace.final_result,
        PipelineExecutionResult::Failed(ExecutorError::InvalidStageOutput {
            violation: OutputViolation::DuplicateLabel(_),
            ..
        })
    ));
    // The returned capability was released, not kept or leaked.
    assert_eq!(executor.capability_labels().len(), 1);
    assert_eq!(kernel.held_by(HANDLER_TASK), 1);
    assert_eq!(kernel.held_by(CLIENT), 1, "only the token");
}

#[test]
fn unknown_actions_are_rejected_by_the_handler() {
    let (mut kernel, _) = kernel_with_handler();
    let p = pipeline(vec![stage("Nope", "no_such_action")]);
    let run = PipelineExecutor::new().run(&mut kernel, &p, text_payload("x"));
    assert!(matches!(
        run.trace.final_result,
        PipelineExecutionResult::Failed(ExecutorError::StageRejected { .. })
    ));
}

#[test]
fn an_unregistered_handler_is_retried_then_reported() {
    let mut kernel = FakeKernel::new();
    let p = pipeline(vec![
        stage("A", "upper").with_retry_policy(RetryPolicy::fixed_retries(1, 5))
    ]);
    let run = PipelineExecutor::new().run(&mut kernel, &p, text_payload("x"));
    assert_eq!(run.trace.entries.len(), 2);
    assert!(matches!(
        run.trace.final_result,
        PipelineExecutionResult::Failed(ExecutorError::RetriesExhausted { attempts: 2, .. })
    ));
}

#[test]
fn a_lost_reply_times_out_and_the_retry_succeeds_without_leaks() {
    let (mut kernel, handler) = kernel_with_handler();
    kernel.faults.drop.insert("pipeline.stage_result".into(), 1);
    let p = pipeline(vec![
        stage("Mint", "mint").with_retry_policy(RetryPolicy::fixed_retries(2, 10))
    ]);
    let mut executor = PipelineExecutor::new().with_stage_timeout(Duration::from_millis(250));
    let run = executor.run(&mut kernel, &p, text_payload("x"));

    assert_eq!(run.trace.final_result, PipelineExecutionResult::Success);
    let results: Vec<_> = run.trace.entries.iter().map(|e| e.result.clone()).collect();
    assert_eq!(
        results,
        [
            StageExecutionResult::TimedOut,
            StageExecutionResult::Success
        ]
    );
    assert_eq!(run.trace.entries[0].end_time_ms, 250);
    assert_eq!(run.trace.entries[1].start_time_ms, 260);
    // The handler ran once per attempt; the capability in the lost reply
    // died with it.
    assert_eq!(handler.borrow().calls.len(), 2);
    assert_eq!(kernel.invalidated_in_flight, 1);
    assert_eq!(executor.capability_labels(), [42]);
}

#[test]
fn a_late_reply_to_an_earlier_attempt_is_discarded_and_released() {
    let (mut kernel, handler) = kernel_with_handler();
    // The first reply arrives (at 120 ms) after its attempt timed out (at
    // 100 ms), during the backoff, and sits on the reply channel when the
    // retry starts waiting (at 130 ms).
    kernel.faults.delay.insert(
        "pipeline.stage_result".into(),
        (1, Duration::from_millis(120)),
    );
    handler.borrow_mut().mint_label = 7;
    let p = pipeline(vec![
        stage("Mint", "mint").with_retry_policy(RetryPolicy::fixed_retries(1, 30))
    ]);
    let mut executor = PipelineExecutor::new().with_stage_timeout(Duration::from_millis(100));
    let run = executor.run(&mut kernel, &p, text_payload("x"));
    assert_eq!(kernel.invalidated_in_flight, 0);

    // Attempt 1's reply is taken; attempt 0's late reply (with its
    // capability) is dropped rather than taken twice.
    assert_eq!(run.trace.final_result, PipelineExecutionResult::Success);
    let results: Vec<_> = run.trace.entries.iter().map(|e| e.result.clone()).collect();
    assert_eq!(
        results,
        [
            StageExecutionResult::TimedOut,
            StageExecutionResult::Success
        ]
    );
    assert_eq!(run.trace.entries[1].start_time_ms, 130);
    assert_eq!(executor.capability_labels(), [7]);
    assert_eq!(handler.borrow().calls.len(), 2);
    assert_eq!(kernel.held_by(HANDLER_TASK), 1);
    assert_eq!(
        kernel.held_by(CLIENT),
        1,
        "only the minted capability: the handler lookups were dropped"
    );
    assert_eq!(kernel.in_flight(), 0);
}

#[test]
fn stepped_execution_produces_the_same_trace_as_blocking_execution() {
    let build = || {
        let mut p = pipeline(vec![
            stage("Flaky", "flaky").with_retry_policy(RetryPolicy::exponential_backoff(3, 40)),
            stage("Mint", "mint"),
            stage("Guarded", "needs_cap").with_capabilities(vec![42]),
        ]);
        p.id = pandagen_pipeline_executor::PipelineId::from_raw(1);
        for (i, s) in p.stages.iter_mut().enumerate() {
            s.id = pandagen_pipeline_executor::StageId::from_raw(i as u64 + 1);
        }
        p
    };

    let (mut kernel, handler) = kernel_with_handler();
    handler.borrow_mut().flaky_failures = 2;
    let blocking = PipelineExecutor::new().run(&mut kernel, &build(), text_payload("x"));

    let (mut kernel, handler) = kernel_with_handler();
    handler.borrow_mut().flaky_failures = 2;
    let mut executor = PipelineExecutor::new();
    let mut execution = executor.start(&mut kernel, &build(), text_payload("x"));
    let mut steps = 0;
    let stepped = loop {
        steps += 1;
        assert!(steps < 100, "stepped execution must terminate");
        match executor.advance(&mut kernel, &mut execution) {
            Progress::Finished(run) => break run,
            Progress::Pending(wait) => {
                let now = pandagen_abi::KernelApi::now(&kernel);
                kernel.advance(wait.wake_at() - now);
            }
        }
    };
    assert_eq!(stepped, blocking);
    assert_eq!(blocking.trace.entries.len(), 5);
}

#[test]
fn a_pool_capability_that_cannot_be_copied_stops_the_stage_before_it_runs() {
    let (mut kernel, handler) = kernel_with_handler();
    let token = kernel.mint_token(CLIENT);
    // A copy without GRANT cannot itself be copied for a stage.
    let weak = kernel
        .clone_capability(
            &token,
            pandagen_abi::Rights::SEND | pandagen_abi::Rights::TRANSFER,
        )
        .unwrap();
    let label = weak.id();
    let mut executor = PipelineExecutor::new();
    executor.add_capabilities(vec![weak]);
    let p = pipeline(vec![stage("A", "upper").with_capabilities(vec![label])]);
    let stage_id = p.stages[0].id;
    let before = kernel.held_by(CLIENT);
    let run = executor.run(&mut kernel, &p, text_payload("x"));
    assert!(matches!(
        run.trace.final_result,
        PipelineExecutionResult::Failed(ExecutorError::CapabilityTransfer { stage_id: s, capability, .. })
            if s == stage_id && capability == label
    ));
    assert!(run.trace.entries.is_empty());
    assert!(handler.borrow().calls.is_empty());
    // Nothing half-made is left behind: the reply channel is closed and
    // the lookup of the handler dropped.
    assert_eq!(kernel.held_by(CLIENT), before);
}
