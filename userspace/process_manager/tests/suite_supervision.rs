//! The QEMU supervision suite's scenario, on the SimulatedKernel: the same
//! manifest and the same demo services (`demo::DemoService`), driven by the
//! scenario runner instead of ring 3.

use std::cell::RefCell;
use std::rc::Rc;

use pandagen_abi::syscall::ROOT_CAPABILITIES;
use pandagen_abi::{Duration, Instant, KernelApi, KernelError, Rights, TaskDescriptor};
use pandagen_process_manager::demo::{DemoService, CRASHER, STEADY};
use pandagen_process_manager::policy::backoff_delay;
use pandagen_process_manager::{
    parse_manifest, Activity, BootCapabilities, LifecycleState, Supervisor, SupervisorConfig,
    SupervisorEvent,
};
use pandagen_sim::{Scenario, SimService, SimulatedKernel, StepOutcome};

struct Demo(DemoService);

impl SimService for Demo {
    fn step(&mut self, k: &mut SimulatedKernel) -> StepOutcome {
        if self.0.fail_at().is_some_and(|at| k.now() >= at) {
            return StepOutcome::Exit(DemoService::failure());
        }
        match k.receive_with_capabilities(self.0.channel(), Some(Duration::ZERO)) {
            Ok(message) => match self.0.handle(k, message) {
                Some(reason) => StepOutcome::Exit(reason),
                None => StepOutcome::Progress,
            },
            Err(_) => match self.0.fail_at() {
                Some(at) => StepOutcome::WaitUntil(at),
                None => StepOutcome::Idle,
            },
        }
    }
}

fn demo(
    id: pandagen_abi::ServiceId,
    fail_after: Option<Duration>,
) -> impl FnMut(
    &mut SimulatedKernel,
    &pandagen_abi::syscall::StartupInfo,
) -> Result<Box<dyn SimService>, KernelError> {
    move |k, _| Ok(Box::new(Demo(DemoService::start(k, id, fail_after)?)) as Box<dyn SimService>)
}

#[test]
fn the_supervision_suite_passes_on_the_simulator() {
    let manifest = parse_manifest(include_bytes!("../manifests/suite-supervision.manifest"))
        .expect("the suite manifest is valid");
    let mut scenario = Scenario::new(SimulatedKernel::new());
    scenario.register_image("pm_steady", demo(STEADY, None));
    scenario.register_image(
        "pm_crasher",
        demo(CRASHER, Some(Duration::from_millis(300))),
    );
    let mut descriptor =
        TaskDescriptor::new("suite".into()).with_budget(pandagen_sim::SUPERVISOR_BUDGET);
    for kind in ROOT_CAPABILITIES {
        descriptor =
            descriptor.with_capability(scenario.kernel_mut().root_copy(kind, Rights::ALL).unwrap());
    }
    let shared: Rc<RefCell<Option<Supervisor>>> = Rc::new(RefCell::new(None));
    let slot = shared.clone();
    scenario
        .spawn(descriptor, move |k, startup| {
            let config = SupervisorConfig {
                liveness_interval: Duration::from_millis(200),
                ..SupervisorConfig::default()
            };
            let caps = BootCapabilities::from_root_handles(&startup.capabilities);
            let mut supervisor = Supervisor::new(manifest, caps, config);
            supervisor.boot(k)?;
            *slot.borrow_mut() = Some(supervisor);
            let slot = slot.clone();
            Ok(
                move |k: &mut SimulatedKernel| match slot.borrow_mut().as_mut().unwrap().poll(k) {
                    Activity::Handled => StepOutcome::Progress,
                    Activity::Waiting(Some(at)) => StepOutcome::WaitUntil(at),
                    Activity::Waiting(None) => StepOutcome::Idle,
                },
            )
        })
        .unwrap();
    let client = scenario
        .spawn(TaskDescriptor::new("pinger".into()), |_, _| Ok(()))
        .unwrap()
        .task_id;

    // Ping the steady service every 100 ms while the crasher loops.
    let (mut pings, mut failures) = (0, 0);
    for _ in 0..30 {
        let deadline = scenario.kernel().now() + Duration::from_millis(100);
        scenario.run_until(deadline);
        scenario.kernel_mut().advance_time_to(deadline);
        let steady_up = shared
            .borrow()
            .as_ref()
            .unwrap()
            .service(STEADY)
            .unwrap()
            .state
            == LifecycleState::Running;
        if steady_up {
            pings += 1;
            // The reply needs the steady service to run: send, step, receive.
            let sent = scenario.kernel_mut().as_task(client, |k| {
                let channel = k.lookup_service(STEADY)?;
                let reply = k.create_channel()?;
                let cap = k.clone_capability(
                    &pandagen_abi::Cap::from(reply),
                    Rights::SEND | Rights::TRANSFER,
                )?;
                let request = pandagen_abi::MessageEnvelope::new(
                    STEADY,
                    "demo.ping",
                    pandagen_process_manager::protocol::SCHEMA,
                    pandagen_abi::MessagePayload::empty(),
                );
                k.send_with_capabilities(channel, request, vec![cap])?;
                Ok::<_, KernelError>(reply)
            });
            let now = scenario.kernel().now();
            scenario.run_until(now + Duration::from_millis(1));
            let answered = sent.and_then(|reply| {
                scenario
                    .kernel_mut()
                    .as_task(client, |k| k.receive_message(reply, Some(Duration::ZERO)))
            });
            if answered.is_err() {
                failures += 1;
            }
        }
    }
    let supervisor = shared.borrow();
    let supervisor = supervisor.as_ref().unwrap();
    let events: Vec<(Instant, SupervisorEvent)> = supervisor.events().iter().cloned().collect();
    let times = |spawned: bool| -> Vec<Instant> {
        events
            .iter()
            .filter_map(|(at, e)| match e {
                SupervisorEvent::Spawned { service, .. } if spawned && *service == CRASHER => {
                    Some(*at)
                }
                SupervisorEvent::Ended { service, .. } if !spawned && *service == CRASHER => {
                    Some(*at)
                }
                _ => None,
            })
            .collect()
    };
    let (spawned, ended) = (times(true), times(false));
    let crasher = supervisor.service(CRASHER).unwrap();
    assert_eq!(crasher.restart_count, 3);
    assert!(crasher.gave_up && crasher.state == LifecycleState::Failed);
    assert_eq!(spawned.len(), 4);
    for i in 0..3 {
        assert_eq!(ended[i] - spawned[i], Duration::from_millis(300));
        assert_eq!(spawned[i + 1] - ended[i], backoff_delay(i as u32 + 1));
    }
    let steady = supervisor.service(STEADY).unwrap();
    assert_eq!(
        (steady.state, steady.restart_count),
        (LifecycleState::Running, 0)
    );
    assert!(pings >= 25, "{pings}");
    assert_eq!(failures, 0);
}
