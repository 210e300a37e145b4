//! The pipeline scenarios of docs/interfaces.md on the SimulatedKernel: the
//! transformer and the pipeline executor service are separate tasks,
//! stepped by the scenario runner; a client submits over versioned IPC.

mod common;

use common::*;
use pandagen_abi::{Duration, KernelError};
use pandagen_pipeline_executor::{
    ExecutorError, PipelineExecutionResult, RetryPolicy, StageExecutionResult,
};
use pandagen_sim::{FaultPlan, MessageFault, MessageFilter, MessageRule, StopReason};
use pandagen_transformer::{
    adler32, blob_cap_label, blob_params_payload, schemas, Action, BlobChecksum, FailureMode,
};

/// create_blob("greeting") -> uppercase (lent the blob handle) -> checksum.
fn blob_pipeline() -> pandagen_pipeline_executor::PipelineSpec {
    let handle = blob_cap_label("greeting");
    pipeline(
        "blob_pipeline",
        vec![
            stage("CreateBlob", Action::CreateBlob),
            stage("Uppercase", Action::Uppercase).with_capabilities(vec![handle]),
            stage("Checksum", Action::Checksum).with_capabilities(vec![handle]),
        ],
    )
}

fn input() -> pandagen_pipeline_executor::TypedPayload {
    blob_params_payload("greeting", b"hello, pipeline").unwrap()
}

#[test]
fn happy_path_runs_every_stage_across_services() {
    let p = blob_pipeline();
    let world = run(Setup::default(), p.clone(), input());
    assert_eq!(world.report.stop, StopReason::Quiescent);
    let result = world.submission();

    assert_eq!(result.trace.final_result, PipelineExecutionResult::Success);
    let output = result.output.as_ref().unwrap();
    assert_eq!(output.schema, schemas::checksum());
    let sum: BlobChecksum = output.decode_as(&schemas::checksum()).unwrap();
    assert_eq!(sum.adler32, adler32(b"HELLO, PIPELINE"));

    // One entry per stage, in order, with the capability flow visible.
    let handle = blob_cap_label("greeting");
    assert_eq!(result.trace.entries.len(), 3);
    for (entry, spec) in result.trace.entries.iter().zip(&p.stages) {
        assert_eq!(entry.stage_id, spec.id);
        assert_eq!(entry.attempt, 0);
        assert_eq!(entry.result, StageExecutionResult::Success);
        assert!(entry.end_time_ms >= entry.start_time_ms);
    }
    assert_eq!(result.trace.entries[0].capabilities_out, [handle]);
    assert_eq!(result.trace.entries[1].capabilities_in, [handle]);
    // The blob handle comes back to the client with the result.
    let labels: Vec<u64> = result.capabilities.iter().map(|(l, _)| *l).collect();
    assert_eq!(labels, [handle]);
    drop(result);

    assert_eq!(world.transformer.borrow().executions().len(), 3);
    world.assert_transformer_holds_nothing_extra();
    world.assert_executor_holds_nothing_extra();
    world.kernel().check_invariants().unwrap();
}

#[test]
fn a_stage_not_lent_the_blob_handle_cannot_touch_the_blob() {
    // No ambient authority: the same pipeline without the declared
    // capability fails at the transformer.
    let p = pipeline(
        "unlent",
        vec![
            stage("CreateBlob", Action::CreateBlob),
            stage("Uppercase", Action::Uppercase),
        ],
    );
    let world = run(Setup::default(), p, input());
    let result = world.submission();
    assert!(matches!(
        &result.trace.final_result,
        PipelineExecutionResult::Failed(ExecutorError::StageFailed { error, .. })
            if error.contains("handle capability")
    ));
}

#[test]
fn failure_path_stops_at_the_failing_stage() {
    let setup = Setup {
        failures: FailureMode::none().permanent(Action::Uppercase),
        ..Setup::default()
    };
    let p = blob_pipeline();
    let failing = p.stages[1].id;
    let world = run(setup, p, input());
    let result = world.submission();

    assert_eq!(result.output, None);
    assert_eq!(result.trace.entries.len(), 2, "trace stops at the failure");
    assert!(matches!(
        &result.trace.final_result,
        PipelineExecutionResult::Failed(ExecutorError::StageFailed { stage_id, .. }) if *stage_id == failing
    ));
    let executed: Vec<_> = world
        .transformer
        .borrow()
        .executions()
        .iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        executed,
        [Some(Action::CreateBlob), Some(Action::Uppercase)],
        "checksum never ran"
    );
    // The blob handle made before the failure is returned, not leaked.
    assert_eq!(result.capabilities.len(), 1);
    drop(result);
    world.assert_transformer_holds_nothing_extra();
    world.assert_executor_holds_nothing_extra();
}

#[test]
fn retry_path_matches_the_policy_with_backoff_in_virtual_time() {
    let setup = Setup {
        failures: FailureMode::none().transient(Action::Uppercase, 2),
        ..Setup::default()
    };
    let handle = blob_cap_label("greeting");
    let p = pipeline(
        "retry",
        vec![
            stage("CreateBlob", Action::CreateBlob),
            stage("Uppercase", Action::Uppercase)
                .with_capabilities(vec![handle])
                .with_retry_policy(RetryPolicy::exponential_backoff(3, 100)),
        ],
    );
    let upper = p.stages[1].id;
    let world = run(setup, p, input());
    let result = world.submission();

    assert_eq!(result.trace.final_result, PipelineExecutionResult::Success);
    let attempts: Vec<_> = result.trace.attempts_of(upper).collect();
    assert_eq!(
        attempts.iter().map(|e| e.attempt).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert!(matches!(
        attempts[0].result,
        StageExecutionResult::Retryable { .. }
    ));
    assert_eq!(attempts[2].result, StageExecutionResult::Success);
    // Backoff before retry n is 100 * 2^(n-1) ms of virtual time; the
    // runner wakes the executor exactly then.
    let gaps: Vec<u64> = attempts
        .windows(2)
        .map(|w| w[1].start_time_ms - w[0].end_time_ms)
        .collect();
    assert_eq!(gaps, [100, 200]);
    drop(result);
    assert_eq!(world.transformer.borrow().executions().len(), 4);
    assert_eq!(world.transformer.borrow().duplicate_executions(), 0);
}

#[test]
fn retries_are_bounded_then_permanent() {
    let setup = Setup {
        failures: FailureMode::none().transient(Action::CreateBlob, 100),
        ..Setup::default()
    };
    let p = pipeline(
        "exhaust",
        vec![with_retries(
            stage("CreateBlob", Action::CreateBlob),
            RetryPolicy::fixed_retries(3, 50),
        )],
    );
    let world = run(setup, p, input());
    let result = world.submission();
    assert_eq!(result.trace.entries.len(), 4, "3 retries = 4 attempts");
    assert!(matches!(
        result.trace.final_result,
        PipelineExecutionResult::Failed(ExecutorError::RetriesExhausted { attempts: 4, .. })
    ));
    drop(result);
    assert_eq!(world.transformer.borrow().executions().len(), 4);
}

#[test]
fn a_missing_capability_fails_fast() {
    let p = pipeline(
        "missing",
        vec![
            stage("CreateBlob", Action::CreateBlob),
            stage("Uppercase", Action::Uppercase).with_capabilities(vec![blob_cap_label("other")]),
        ],
    );
    let blocked = p.stages[1].id;
    let world = run(Setup::default(), p, input());
    let result = world.submission();
    assert_eq!(
        result.trace.final_result,
        PipelineExecutionResult::Failed(ExecutorError::MissingCapability {
            stage_id: blocked,
            capability: blob_cap_label("other"),
        })
    );
    assert_eq!(result.trace.entries.len(), 1);
    drop(result);
    assert_eq!(
        world.transformer.borrow().executions().len(),
        1,
        "the blocked stage never ran"
    );
}

#[test]
fn initial_capabilities_flow_from_the_client() {
    let setup = Setup {
        initial_tokens: vec![7],
        ..Setup::default()
    };
    let p = pipeline(
        "initial",
        vec![
            stage("Uppercase", Action::Uppercase).with_capabilities(vec![7]),
            stage("Reverse", Action::Reverse).with_capabilities(vec![7]),
        ],
    );
    let world = run(
        setup,
        p,
        pandagen_transformer::blob_payload("b", b"abc").unwrap(),
    );
    let result = world.submission();
    assert_eq!(result.trace.final_result, PipelineExecutionResult::Success);
    let blob: pandagen_transformer::Blob = result
        .output
        .as_ref()
        .unwrap()
        .decode_as(&schemas::blob())
        .unwrap();
    assert_eq!(blob.content, b"CBA");
    assert_eq!(
        result
            .capabilities
            .iter()
            .map(|(l, _)| *l)
            .collect::<Vec<_>>(),
        [7]
    );
    drop(result);
    world.assert_transformer_holds_nothing_extra();
}

fn rule(action: &str, fault: MessageFault, times: u32) -> MessageRule {
    MessageRule::new(MessageFilter::with_action(action), fault).times(times)
}

#[test]
fn a_dropped_stage_request_times_out_and_is_retried() {
    let setup = Setup {
        plan: FaultPlan::new().with_message_rule(rule("uppercase", MessageFault::Drop, 1)),
        ..Setup::default()
    };
    let handle = blob_cap_label("greeting");
    let p = pipeline(
        "drop-request",
        vec![
            stage("CreateBlob", Action::CreateBlob),
            stage("Uppercase", Action::Uppercase)
                .with_capabilities(vec![handle])
                .with_retry_policy(RetryPolicy::fixed_retries(2, 20)),
        ],
    );
    let upper = p.stages[1].id;
    let world = run(setup, p, input());
    let result = world.submission();
    assert_eq!(result.trace.final_result, PipelineExecutionResult::Success);
    let attempts: Vec<_> = result.trace.attempts_of(upper).collect();
    assert_eq!(attempts[0].result, StageExecutionResult::TimedOut);
    assert_eq!(
        attempts[0].end_time_ms - attempts[0].start_time_ms,
        500,
        "the stage timeout"
    );
    assert_eq!(attempts[1].result, StageExecutionResult::Success);
    drop(result);
    // The lost request never reached the handler: one execution, not two.
    let t = world.transformer.borrow();
    assert_eq!(
        t.executions()
            .iter()
            .filter(|e| e.action == Some(Action::Uppercase))
            .count(),
        1
    );
    drop(t);
    world.assert_transformer_holds_nothing_extra();
    world.assert_executor_holds_nothing_extra();
    world.kernel().check_invariants().unwrap();
}

#[test]
fn a_dropped_reply_with_a_capability_leaks_nothing() {
    // The first create_blob reply (carrying the blob handle) is lost; the
    // retry creates the blob again. The lost handle dies with its message.
    let setup = Setup {
        plan: FaultPlan::new().with_message_rule(rule(
            "pipeline.stage_result",
            MessageFault::Drop,
            1,
        )),
        ..Setup::default()
    };
    let p = pipeline(
        "drop-reply",
        vec![with_retries(
            stage("CreateBlob", Action::CreateBlob),
            RetryPolicy::fixed_retries(1, 10),
        )],
    );
    let world = run(setup, p, input());
    let result = world.submission();
    assert_eq!(result.trace.final_result, PipelineExecutionResult::Success);
    assert_eq!(result.trace.entries.len(), 2);
    assert_eq!(
        result.capabilities.len(),
        1,
        "exactly one blob handle reaches the client"
    );
    drop(result);
    let t = world.transformer.borrow();
    assert_eq!(t.executions().len(), 2, "one execution per attempt");
    assert_eq!(t.duplicate_executions(), 0);
    drop(t);
    world.assert_transformer_holds_nothing_extra();
    world.assert_executor_holds_nothing_extra();
    world.kernel().check_invariants().unwrap();
}

#[test]
fn a_late_reply_is_discarded_not_taken_twice() {
    // The first reply arrives after its attempt timed out, while the retry
    // waits; the executor discards it (releasing its capability) and takes
    // the retry's reply.
    let setup = Setup {
        plan: FaultPlan::new().with_message_rule(rule(
            "pipeline.stage_result",
            MessageFault::Delay(Duration::from_millis(600)),
            1,
        )),
        ..Setup::default()
    };
    let p = pipeline(
        "late-reply",
        vec![with_retries(
            stage("CreateBlob", Action::CreateBlob),
            RetryPolicy::fixed_retries(1, 50),
        )],
    );
    let world = run(setup, p, input());
    let result = world.submission();
    assert_eq!(result.trace.final_result, PipelineExecutionResult::Success);
    let results: Vec<_> = result
        .trace
        .entries
        .iter()
        .map(|e| e.result.clone())
        .collect();
    assert_eq!(
        results,
        [
            StageExecutionResult::TimedOut,
            StageExecutionResult::Success
        ]
    );
    assert_eq!(result.capabilities.len(), 1);
    drop(result);
    world.assert_executor_holds_nothing_extra();
    world.assert_transformer_holds_nothing_extra();
    assert_eq!(world.kernel().held_count(), 0, "nothing left in flight");
    world.kernel().check_invariants().unwrap();
}

#[test]
fn reordered_and_delayed_messages_keep_the_pipeline_correct() {
    let setup = Setup {
        plan: FaultPlan::new()
            .reorder_next(6, 3)
            .delay_next(4, Duration::from_millis(30)),
        ..Setup::default()
    };
    let world = run(setup, blob_pipeline(), input());
    let result = world.submission();
    assert_eq!(result.trace.final_result, PipelineExecutionResult::Success);
    let sum: BlobChecksum = result
        .output
        .as_ref()
        .unwrap()
        .decode_as(&schemas::checksum())
        .unwrap();
    assert_eq!(sum.adler32, adler32(b"HELLO, PIPELINE"));
    drop(result);
    assert_eq!(world.transformer.borrow().duplicate_executions(), 0);
}

#[test]
fn a_handler_that_dies_mid_pipeline_fails_it_boundedly_without_leaks() {
    // The transformer dies after receiving create_blob and sending its
    // reply; the next stage finds its channel closed on every attempt.
    let setup = Setup {
        crash_transformer_after: Some(2),
        ..Setup::default()
    };
    let handle = blob_cap_label("greeting");
    let p = pipeline(
        "handler-dies",
        vec![
            stage("CreateBlob", Action::CreateBlob),
            with_retries(
                stage("Uppercase", Action::Uppercase).with_capabilities(vec![handle]),
                RetryPolicy::fixed_retries(2, 10),
            ),
        ],
    );
    let world = run(setup, p, input());
    assert!(!world.kernel().task_is_alive(world.transformer_task));
    let result = world.submission();
    assert_eq!(
        result.trace.entries.len(),
        4,
        "1 + max_retries + 1 attempts"
    );
    // The dead handler is unregistered, so each attempt finds no service
    // (a handler restarted under supervision would be found again).
    assert!(matches!(
        result.trace.final_result,
        PipelineExecutionResult::Failed(ExecutorError::RetriesExhausted {
            attempts: 3,
            last: StageExecutionResult::Unreachable(KernelError::ServiceNotFound(_)),
            ..
        })
    ));
    // The blob handle made before the crash still comes back.
    assert_eq!(result.capabilities.len(), 1);
    drop(result);
    world.assert_executor_holds_nothing_extra();
    world.kernel().check_invariants().unwrap();
}

/// Under random drop/delay/reorder/crash-on-send/receive faults the system
/// stays safe: the run ends, each stage ran at most as often as its policy
/// allows and never twice per attempt, and no task keeps a capability it
/// should not.
#[test]
fn random_fault_sweep_stays_safe_and_bounded() {
    let mut outcomes = [0usize; 3];
    for seed in 0..40 {
        let setup = Setup {
            plan: FaultPlan::random(seed),
            client_timeout: Duration::from_secs(30),
            ..Setup::default()
        };
        let handle = blob_cap_label("greeting");
        let p = pipeline(
            "sweep",
            vec![
                with_retries(
                    stage("CreateBlob", Action::CreateBlob),
                    RetryPolicy::fixed_retries(2, 10),
                ),
                with_retries(
                    stage("Uppercase", Action::Uppercase).with_capabilities(vec![handle]),
                    RetryPolicy::exponential_backoff(2, 10),
                ),
                stage("Checksum", Action::Checksum).with_capabilities(vec![handle]),
            ],
        );
        let world = run(setup, p.clone(), input());
        assert_ne!(world.report.stop, StopReason::StepLimit, "seed {seed}");
        world
            .kernel()
            .check_invariants()
            .unwrap_or_else(|e| panic!("seed {seed}: {e:?}"));

        let t = world.transformer.borrow();
        assert_eq!(t.duplicate_executions(), 0, "seed {seed}");
        for spec in &p.stages {
            let runs = t
                .executions()
                .iter()
                .filter(|e| e.stage_id == spec.id)
                .count();
            assert!(
                runs as u32 <= spec.retry_policy.max_attempts(),
                "seed {seed}: {} ran {runs}x",
                spec.name
            );
        }
        drop(t);
        world.assert_transformer_holds_nothing_extra();
        if world.kernel().task_is_alive(world.executor_task) {
            world.assert_executor_holds_nothing_extra();
        }

        let outcome = world.outcome.borrow();
        match &*outcome {
            Some(Ok(result)) => {
                for spec in &p.stages {
                    let n = result.trace.attempts_of(spec.id).count() as u32;
                    assert!(n <= spec.retry_policy.max_attempts(), "seed {seed}");
                }
                if result.trace.final_result == PipelineExecutionResult::Success {
                    let sum: BlobChecksum = result
                        .output
                        .as_ref()
                        .unwrap()
                        .decode_as(&schemas::checksum())
                        .unwrap();
                    assert_eq!(sum.adler32, adler32(b"HELLO, PIPELINE"), "seed {seed}");
                    outcomes[0] += 1;
                } else {
                    outcomes[1] += 1;
                }
            }
            // The request or its response was lost: the client gives up
            // at its deadline instead of waiting forever.
            Some(Err(_)) => outcomes[2] += 1,
            None => panic!("seed {seed}: the client neither got a result nor timed out"),
        }
        drop(outcome);
    }
    eprintln!("sweep outcomes (success, failed, client timeout): {outcomes:?}");
    assert!(
        outcomes[0] > 0,
        "some runs succeed despite faults: {outcomes:?}"
    );
}
