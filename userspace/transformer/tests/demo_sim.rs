//! The demo scenarios (`pandagen_transformer::demo`, the same ones the
//! ring-3 `suite_pipeline` runs in QEMU) on the SimulatedKernel: three
//! services and a client, each its own task.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use pandagen_abi::{Duration, TaskDescriptor};
use pandagen_pipeline_executor::{PipelineClient, PipelineService, ServiceStep};
use pandagen_sim::{ChannelServer, Scenario, SimulatedKernel, StepOutcome, StopReason};
use pandagen_transformer::demo::{scenarios, DemoScenario};
use pandagen_transformer::{FailureMode, Transformer, FLAKY_TRANSFORMER};

/// Scenario name and check outcome, in the order they ran.
type Verdicts = Rc<RefCell<Vec<(&'static str, Result<(), String>)>>>;

fn spawn_transformer(scenario: &mut Scenario, name: &str, transformer: Transformer) {
    let registry = scenario
        .kernel_mut()
        .registry_capability_for_child()
        .unwrap();
    let mut transformer = transformer;
    scenario
        .spawn(
            TaskDescriptor::new(name.into()).with_capability(registry),
            move |k, _| {
                let channel = transformer.register(k)?;
                Ok(ChannelServer::new(
                    channel,
                    move |k: &mut SimulatedKernel, request| {
                        transformer.handle(k, request);
                        Ok(())
                    },
                ))
            },
        )
        .unwrap();
}

#[test]
fn the_demo_scenarios_pass_on_the_simulator() {
    let mut scenario = Scenario::new(SimulatedKernel::new());
    spawn_transformer(&mut scenario, "transformer", Transformer::new());
    spawn_transformer(
        &mut scenario,
        "flaky-transformer",
        Transformer::new()
            .with_service_id(FLAKY_TRANSFORMER)
            .with_failures(FailureMode::flaky()),
    );
    let registry = scenario
        .kernel_mut()
        .registry_capability_for_child()
        .unwrap();
    scenario
        .spawn(
            TaskDescriptor::new("pipeline-executor".into()).with_capability(registry),
            |k, _| {
                let channel = PipelineService::register(k)?;
                let mut service = PipelineService::new();
                Ok(
                    move |k: &mut SimulatedKernel| match service.step(k, channel) {
                        ServiceStep::Progress => StepOutcome::Progress,
                        ServiceStep::Idle => StepOutcome::Idle,
                        ServiceStep::WaitUntil(t) => StepOutcome::WaitUntil(t),
                    },
                )
            },
        )
        .unwrap();

    // The client runs the scenarios one after another, twice over: an
    // operator may run any demo again on the same system.
    let results: Verdicts = Rc::default();
    let sink = results.clone();
    scenario
        .spawn(TaskDescriptor::new("client".into()), move |k, _| {
            let client = PipelineClient::connect(k)?.with_timeout(Duration::from_secs(30));
            let mut queue: VecDeque<DemoScenario> =
                scenarios().into_iter().chain(scenarios()).collect();
            let mut current = None;
            Ok(move |k: &mut SimulatedKernel| {
                if current.is_none() {
                    let Some(next) = queue.pop_front() else {
                        return StepOutcome::Idle;
                    };
                    match client.send(k, &next.pipeline, next.input.clone(), Vec::new()) {
                        Ok(pending) => current = Some((next, pending)),
                        Err(e) => sink.borrow_mut().push((next.name, Err(format!("{e:?}")))),
                    }
                    return StepOutcome::Progress;
                }
                let (demo, pending) = current.as_ref().unwrap();
                match client.poll(k, pending) {
                    Ok(None) => StepOutcome::WaitUntil(pending.deadline),
                    Ok(Some(result)) => {
                        let verdict = (demo.check)(&demo.pipeline, &result);
                        sink.borrow_mut().push((demo.name, verdict));
                        current = None;
                        StepOutcome::Progress
                    }
                    Err(e) => {
                        sink.borrow_mut().push((demo.name, Err(format!("{e:?}"))));
                        current = None;
                        StepOutcome::Progress
                    }
                }
            })
        })
        .unwrap();

    let report = scenario.run_for(Duration::from_secs(300));
    assert_eq!(report.stop, StopReason::Quiescent);
    let results = results.borrow();
    let names: Vec<&str> = results.iter().map(|(n, _)| *n).collect();
    let once: Vec<&str> = scenarios().iter().map(|s| s.name).collect();
    assert_eq!(names, [once.clone(), once].concat());
    for (name, verdict) in results.iter() {
        assert_eq!(verdict, &Ok(()), "{name}");
    }
    scenario.kernel().check_invariants().unwrap();
}
