//! The pipeline services under the process manager on the SimulatedKernel:
//! started from a manifest in dependency order, each with only the
//! registry capability. When the transformer crashes mid-pipeline, the
//! process manager restarts it and the executor's retry finds the new
//! instance.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use pandagen_abi::syscall::ROOT_CAPABILITIES;
use pandagen_abi::{
    Duration, ExitReason, FailureCause, KernelApi, KernelError, Rights, TaskDescriptor,
};
use pandagen_pipeline_executor::{
    PendingSubmission, PipelineClient, PipelineExecutionResult, PipelineService,
    PipelineSubmission, RetryPolicy, ServiceStep, StageExecutionResult,
};
use pandagen_process_manager::{
    parse_manifest, Activity, BootCapabilities, Supervisor, SupervisorConfig,
};
use pandagen_sim::{Scenario, SimService, SimulatedKernel, StepOutcome, StopReason};
use pandagen_transformer::demo::{pipeline, scenarios, stage};
use pandagen_transformer::{blob_cap_label, blob_params_payload, Action, Transformer};

const MANIFEST: &str = "
[transformer]
id = 4
image = transformer
restart = on-failure
capabilities = registry
trust = user

[pipeline-executor]
id = 3
image = pipeline_executor
restart = on-failure
capabilities = registry
depends = transformer
trust = core
";

fn config() -> SupervisorConfig {
    SupervisorConfig {
        ready_poll: Duration::from_millis(1),
        startup_timeout: Duration::from_millis(50),
        liveness_interval: Duration::from_millis(100),
        stop_timeout: Duration::from_millis(20),
    }
}

/// The transformer as a runner service; the first instance fails after
/// handling `crash_after` requests (if set).
struct TransformerTask {
    transformer: Transformer,
    channel: pandagen_abi::ChannelId,
    crash_after: Option<u32>,
    handled: u32,
}

impl SimService for TransformerTask {
    fn step(&mut self, k: &mut SimulatedKernel) -> StepOutcome {
        if self.crash_after == Some(self.handled) {
            return StepOutcome::Exit(ExitReason::Failure {
                error: FailureCause::Panic,
            });
        }
        match k.receive_with_capabilities(self.channel, Some(Duration::ZERO)) {
            Ok(request) => {
                self.transformer.handle(k, request);
                self.handled += 1;
                StepOutcome::Progress
            }
            Err(_) => StepOutcome::Idle,
        }
    }
}

struct System {
    scenario: Scenario,
    transformer_starts: Rc<Cell<u32>>,
    outcome: Rc<RefCell<Option<PipelineSubmission>>>,
}

/// Boot the manifest under the process manager, then let a client submit
/// `pipeline` once the executor is registered.
fn boot(crash_after: Option<u32>, demo: pandagen_transformer::demo::DemoScenario) -> System {
    let manifest = parse_manifest(MANIFEST.as_bytes()).expect("valid manifest");
    let mut scenario = Scenario::new(SimulatedKernel::new());

    let transformer_starts = Rc::new(Cell::new(0));
    let starts = transformer_starts.clone();
    scenario.register_image("transformer", move |k, _startup| {
        starts.set(starts.get() + 1);
        let transformer = Transformer::new();
        let channel = transformer.register(k)?;
        let first = starts.get() == 1;
        Ok(Box::new(TransformerTask {
            transformer,
            channel,
            crash_after: crash_after.filter(|_| first),
            handled: 0,
        }) as Box<dyn SimService>)
    });
    scenario.register_image("pipeline_executor", |k, _startup| {
        let channel = PipelineService::register(k)?;
        let mut service = PipelineService::new().with_stage_timeout(Duration::from_millis(100));
        Ok(Box::new(
            move |k: &mut SimulatedKernel| match service.step(k, channel) {
                ServiceStep::Progress => StepOutcome::Progress,
                ServiceStep::Idle => StepOutcome::Idle,
                ServiceStep::WaitUntil(t) => StepOutcome::WaitUntil(t),
            },
        ) as Box<dyn SimService>)
    });

    let mut descriptor =
        TaskDescriptor::new("process-manager".into()).with_budget(pandagen_sim::SUPERVISOR_BUDGET);
    for kind in ROOT_CAPABILITIES {
        let copy = scenario
            .kernel_mut()
            .root_copy(kind, Rights::ALL)
            .expect("root capability");
        descriptor = descriptor.with_capability(copy);
    }
    scenario
        .spawn(descriptor, move |k, startup| {
            let caps = BootCapabilities::from_root_handles(&startup.capabilities);
            let mut supervisor = Supervisor::new(manifest, caps, config());
            supervisor
                .boot(k)
                .map_err(|_| KernelError::InvalidCapability)?;
            Ok(move |k: &mut SimulatedKernel| match supervisor.poll(k) {
                Activity::Handled => StepOutcome::Progress,
                Activity::Waiting(Some(at)) => StepOutcome::WaitUntil(at),
                Activity::Waiting(None) => StepOutcome::Idle,
            })
        })
        .expect("process manager");

    let outcome = Rc::new(RefCell::new(None));
    let sink = outcome.clone();
    scenario
        .spawn(TaskDescriptor::new("client".into()), move |_, _| {
            let mut client: Option<PipelineClient> = None;
            let mut pending: Option<PendingSubmission> = None;
            Ok(move |k: &mut SimulatedKernel| {
                if sink.borrow().is_some() {
                    return StepOutcome::Idle;
                }
                let Some(c) = client.as_ref() else {
                    // The executor starts after the transformer: wait for it.
                    match PipelineClient::connect(k) {
                        Ok(c) => client = Some(c),
                        Err(_) => {
                            return StepOutcome::WaitUntil(k.now() + Duration::from_millis(5))
                        }
                    }
                    return StepOutcome::Progress;
                };
                let Some(p) = pending.as_ref() else {
                    let sent = c.send(k, &demo.pipeline, demo.input.clone(), Vec::new());
                    pending = Some(sent.expect("submission sent"));
                    return StepOutcome::Progress;
                };
                match c.poll(k, p).expect("answered in time") {
                    Some(result) => {
                        *sink.borrow_mut() = Some(result);
                        StepOutcome::Progress
                    }
                    None => StepOutcome::WaitUntil(p.deadline),
                }
            })
        })
        .expect("client");

    let report = scenario.run_for(Duration::from_secs(60));
    assert_ne!(report.stop, StopReason::StepLimit);
    System {
        scenario,
        transformer_starts,
        outcome,
    }
}

#[test]
fn the_happy_path_runs_on_services_the_process_manager_started() {
    let demo = scenarios().into_iter().next().expect("happy path");
    let check = demo.check;
    let spec = demo.pipeline.clone();
    let system = boot(None, demo);
    let outcome = system.outcome.borrow();
    let result = outcome.as_ref().expect("a result");
    assert_eq!(check(&spec, result), Ok(()));
    assert_eq!(system.transformer_starts.get(), 1);
    system.scenario.kernel().check_invariants().unwrap();
}

#[test]
fn a_restarted_handler_is_found_again_by_the_retry() {
    // The first transformer instance dies after create_blob, with the
    // uppercase request still queued (it is lost with the task, so that
    // attempt times out); the process manager restarts the transformer, and
    // the retry reaches the new instance (the blob handle is lent again
    // from the executor's pool).
    let handle = blob_cap_label("greeting");
    let spec = pipeline(
        "survives-restart",
        vec![
            stage(
                "CreateBlob",
                pandagen_abi::services::TRANSFORMER,
                Action::CreateBlob,
            ),
            stage(
                "Uppercase",
                pandagen_abi::services::TRANSFORMER,
                Action::Uppercase,
            )
            .with_capabilities(vec![handle])
            .with_retry_policy(RetryPolicy::exponential_backoff(5, 20)),
        ],
    );
    let demo = pandagen_transformer::demo::DemoScenario {
        name: "restart",
        pipeline: spec.clone(),
        input: blob_params_payload("greeting", b"abc").unwrap(),
        check: |_, _| Ok(()),
    };
    let system = boot(Some(1), demo);
    let outcome = system.outcome.borrow();
    let result = outcome.as_ref().expect("a result");
    assert_eq!(result.trace.final_result, PipelineExecutionResult::Success);
    assert_eq!(system.transformer_starts.get(), 2, "restarted once");
    let attempts: Vec<_> = result.trace.attempts_of(spec.stages[1].id).collect();
    assert!(
        attempts.len() >= 2,
        "the first attempt hit the dead instance"
    );
    assert!(attempts[0].result.is_transient());
    assert_eq!(
        attempts.last().unwrap().result,
        StageExecutionResult::Success
    );
    system.scenario.kernel().check_invariants().unwrap();
}
