//! The scenario runner: rounds, quiescence, deadlines, timers, launches
//! of spawned images, and faults across services.

use std::cell::RefCell;
use std::rc::Rc;

use pandagen_abi::api::EXIT_NOTIFICATION_ACTION;
use pandagen_abi::error::SpawnError;
use pandagen_abi::{
    CapKind, ChannelId, Duration, ExitNotification, ExitReason, Instant, KernelApi, KernelError,
    MessageEnvelope, MessagePayload, Rights, SchemaVersion, ServiceId, TaskDescriptor,
};
use pandagen_sim::{
    ChannelServer, FaultPlan, Scenario, SimService, SimulatedKernel, StepOutcome, StopReason,
    TraceEvent,
};

fn at(ms: u64) -> Instant {
    Instant::ZERO + Duration::from_millis(ms)
}

#[test]
fn timers_advance_virtual_time_and_exits_end_the_run() {
    let mut scenario = Scenario::new(SimulatedKernel::new());
    let mut ticks = 0;
    let mut next = at(0);
    scenario
        .spawn(TaskDescriptor::new("ticker".into()), move |_, _| {
            Ok(move |k: &mut SimulatedKernel| {
                if k.now() < next {
                    return StepOutcome::WaitUntil(next);
                }
                ticks += 1;
                if ticks == 5 {
                    return StepOutcome::Exit(ExitReason::Normal);
                }
                next = k.now() + Duration::from_millis(10);
                StepOutcome::WaitUntil(next)
            })
        })
        .unwrap();
    let report = scenario.run_until(at(1_000));
    assert_eq!(report.stop, StopReason::AllExited);
    assert_eq!(report.end, at(40));
    assert_eq!(scenario.kernel().exit_notifications().len(), 1);
}

#[test]
fn a_pending_timer_past_the_deadline_stops_at_the_deadline() {
    let mut scenario = Scenario::new(SimulatedKernel::new());
    scenario
        .spawn(TaskDescriptor::new("sleeper".into()), |_, _| {
            Ok(|k: &mut SimulatedKernel| {
                if k.now() >= at(5_000) {
                    StepOutcome::Exit(ExitReason::Normal)
                } else {
                    StepOutcome::WaitUntil(at(5_000))
                }
            })
        })
        .unwrap();
    let report = scenario.run_until(at(100));
    assert_eq!(report.stop, StopReason::Deadline);
    assert_eq!(scenario.kernel().now(), at(100));
    // Running on picks up where it stopped.
    let report = scenario.run_until(at(10_000));
    assert_eq!(report.stop, StopReason::AllExited);
    assert_eq!(scenario.kernel().now(), at(5_000));
}

#[test]
fn idle_services_with_nothing_in_flight_are_quiescent() {
    let mut scenario = Scenario::new(SimulatedKernel::new());
    scenario
        .spawn(TaskDescriptor::new("idle".into()), |_, _| Ok(()))
        .unwrap();
    let report = scenario.run_until(at(1_000));
    assert_eq!(report.stop, StopReason::Quiescent);
    assert_eq!(report.end, Instant::ZERO);
    assert_eq!(report.rounds, 1);
}

#[test]
fn a_service_that_never_settles_hits_the_step_limit() {
    let mut scenario = Scenario::new(SimulatedKernel::new()).with_step_limit(100);
    scenario
        .spawn(TaskDescriptor::new("spinner".into()), |_, _| {
            Ok(|_: &mut SimulatedKernel| StepOutcome::Progress)
        })
        .unwrap();
    let report = scenario.run_until(at(1_000));
    assert_eq!(report.stop, StopReason::StepLimit);
    assert_eq!(report.steps, 100);
}

#[test]
fn services_are_tasks_with_their_own_capabilities() {
    let mut scenario = Scenario::new(SimulatedKernel::new());
    let channel = scenario.kernel_mut().create_channel().unwrap();
    let a = scenario
        .spawn(
            TaskDescriptor::new("a".into()).with_capability(channel.into()),
            |k, startup| {
                assert_eq!(startup.capabilities.len(), 1);
                assert_eq!(k.current_task(), startup.task);
                Ok(())
            },
        )
        .unwrap();
    let b = scenario
        .spawn(TaskDescriptor::new("b".into()), |k, startup| {
            assert!(startup.capabilities.is_empty());
            assert!(k.capabilities_of(k.current_task()).is_empty());
            Ok(())
        })
        .unwrap();
    assert_ne!(a.task_id, b.task_id);
    assert_eq!(scenario.kernel().capabilities_of(a.task_id).len(), 1);
    assert_eq!(scenario.task_of("b"), Some(b.task_id));
    // The root's handle was moved to `a`.
    assert!(scenario
        .kernel_mut()
        .send_message(
            channel,
            MessageEnvelope::new(
                ServiceId::from_raw(1),
                "x",
                SchemaVersion::new(1, 0),
                MessagePayload::empty()
            )
        )
        .is_err());
}

#[test]
fn a_failing_setup_ends_the_task_and_reports_the_error() {
    let mut scenario = Scenario::new(SimulatedKernel::new());
    let result = scenario.spawn(TaskDescriptor::new("no-registry".into()), |k, _| {
        let ch = k.create_channel()?;
        k.register_service(ServiceId::from_raw(9), ch)?;
        Ok(())
    });
    assert_eq!(result.unwrap_err(), KernelError::InsufficientAuthority);
    assert!(scenario.live_services().is_empty());
    let notifications = scenario.kernel().exit_notifications();
    assert_eq!(notifications.len(), 1);
    assert!(notifications[0].reason.is_failure());
}

/// A supervisor that spawns a worker image and restarts it once when it
/// fails, using exit notifications on its exit channel.
struct Supervisor {
    exits: Option<ChannelId>,
    starts: u32,
    seen: Rc<RefCell<Vec<ExitNotification>>>,
}

impl SimService for Supervisor {
    fn step(&mut self, k: &mut SimulatedKernel) -> StepOutcome {
        let exits = match self.exits {
            Some(ch) => ch,
            None => *self.exits.insert(k.create_channel().unwrap()),
        };
        if self.starts == 0 {
            self.start(k, exits);
            return StepOutcome::Progress;
        }
        match k.receive_message(exits, Some(Duration::ZERO)) {
            Ok(message) => {
                assert_eq!(message.action, EXIT_NOTIFICATION_ACTION);
                assert_eq!(message.source, None, "only the kernel sends these");
                let notification: ExitNotification = message.payload.decode().unwrap();
                let failed = notification.reason.is_failure();
                self.seen.borrow_mut().push(notification);
                if failed && self.starts < 2 {
                    self.start(k, exits);
                }
                StepOutcome::Progress
            }
            Err(_) => StepOutcome::Idle,
        }
    }
}

impl Supervisor {
    fn start(&mut self, k: &mut SimulatedKernel, exits: ChannelId) {
        self.starts += 1;
        k.spawn_task(
            TaskDescriptor::new(format!("worker{}", self.starts))
                .with_image("worker")
                .with_exit_channel(exits),
        )
        .unwrap();
    }
}

#[test]
fn spawned_images_are_started_and_supervised_through_exit_notifications() {
    let mut scenario = Scenario::new(SimulatedKernel::new());
    let mut generation = 0;
    scenario.register_image("worker", move |_, startup| {
        generation += 1;
        let first = generation == 1;
        assert!(startup.name.starts_with("worker"));
        Ok(Box::new(move |_: &mut SimulatedKernel| {
            StepOutcome::Exit(if first {
                ExitReason::Failure {
                    error: "first run fails".into(),
                }
            } else {
                ExitReason::Normal
            })
        }))
    });
    let seen = Rc::new(RefCell::new(Vec::new()));
    let boot = scenario
        .kernel_mut()
        .root_copy(CapKind::BootImage, Rights::SPAWN)
        .unwrap();
    let supervisor = Supervisor {
        exits: None,
        starts: 0,
        seen: seen.clone(),
    };
    let pm = scenario
        .spawn(
            TaskDescriptor::new("supervisor".into()).with_capability(boot),
            move |_, _| Ok(supervisor),
        )
        .unwrap();
    let report = scenario.run_until(at(1_000));
    assert_eq!(report.stop, StopReason::Quiescent);
    let seen = seen.borrow();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].reason.is_failure());
    assert_eq!(seen[1].reason, ExitReason::Normal);
    // Both workers were children of the supervisor.
    for notification in seen.iter() {
        let identity = scenario
            .kernel()
            .identity(notification.execution_id)
            .unwrap();
        assert!(identity.is_child_of(pm.execution_id));
    }
}

#[test]
fn spawning_an_unknown_image_or_without_authority_fails() {
    let mut scenario = Scenario::new(SimulatedKernel::new());
    scenario.register_image("known", |_, _| Ok(Box::new(())));
    let k = scenario.kernel_mut();
    assert_eq!(
        k.spawn_task(TaskDescriptor::new("x".into()).with_image("unknown")),
        Err(KernelError::SpawnFailed(SpawnError::ImageNotFound))
    );
    // The root holds the boot image; a task without it cannot load images.
    let plain = k.spawn_task(TaskDescriptor::new("plain".into())).unwrap();
    let result = k.as_task(plain.task_id, |k| {
        k.spawn_task(TaskDescriptor::new("y".into()).with_image("known"))
    });
    assert_eq!(result, Err(KernelError::InsufficientAuthority));
    assert!(k
        .spawn_task(TaskDescriptor::new("z".into()).with_image("known"))
        .is_ok());
}

#[test]
fn a_crash_fault_ends_a_service_and_the_others_carry_on() {
    let mut scenario = Scenario::new(SimulatedKernel::new());
    let received = Rc::new(RefCell::new(0));
    let counter = received.clone();
    let registry = scenario
        .kernel_mut()
        .registry_capability_for_child()
        .unwrap();
    let server = scenario
        .spawn(
            TaskDescriptor::new("server".into()).with_capability(registry),
            move |k, _| {
                let ch = k.create_channel()?;
                k.register_service(ServiceId::from_raw(77), ch)?;
                Ok(ChannelServer::new(ch, move |_: &mut SimulatedKernel, _| {
                    *counter.borrow_mut() += 1;
                    Ok(())
                }))
            },
        )
        .unwrap();
    let mut sent = 0;
    scenario
        .spawn(TaskDescriptor::new("client".into()), move |_, _| {
            Ok(move |k: &mut SimulatedKernel| {
                if sent == 10 {
                    return StepOutcome::Exit(ExitReason::Normal);
                }
                let Ok(ch) = k.lookup_service(ServiceId::from_raw(77)) else {
                    return StepOutcome::Exit(ExitReason::Normal);
                };
                sent += 1;
                let m = MessageEnvelope::new(
                    ServiceId::from_raw(77),
                    "req",
                    SchemaVersion::new(1, 0),
                    MessagePayload::empty(),
                );
                match k.send_message(ch, m) {
                    Ok(()) => StepOutcome::Progress,
                    Err(_) => StepOutcome::Exit(ExitReason::Normal),
                }
            })
        })
        .unwrap();
    scenario
        .kernel_mut()
        .set_fault_plan(FaultPlan::new().crash_after_messages(server.task_id, 3));
    let report = scenario.run_until(at(1_000));
    assert_eq!(report.stop, StopReason::AllExited);
    assert_eq!(*received.borrow(), 3);
    assert!(!scenario.kernel().task_is_alive(server.task_id));
    assert!(scenario.kernel().trace().events().any(
        |e| matches!(e, TraceEvent::TaskCrashed { task, after: 3 } if *task == server.task_id)
    ));
    scenario.kernel().check_invariants().unwrap();
}

fn ping_pong_trace(seed: u64) -> String {
    let mut scenario = Scenario::new(SimulatedKernel::new());
    let registry = scenario
        .kernel_mut()
        .registry_capability_for_child()
        .unwrap();
    scenario
        .spawn(
            TaskDescriptor::new("pong".into()).with_capability(registry),
            |k, _| {
                let ch = k.create_channel()?;
                k.register_service(ServiceId::from_raw(5), ch)?;
                Ok(ChannelServer::new(ch, |_: &mut SimulatedKernel, _| Ok(())))
            },
        )
        .unwrap();
    let mut n = 0u32;
    scenario
        .spawn(TaskDescriptor::new("ping".into()), move |_, _| {
            Ok(move |k: &mut SimulatedKernel| {
                if n == 20 {
                    return StepOutcome::Exit(ExitReason::Normal);
                }
                n += 1;
                if let Ok(ch) = k.lookup_service(ServiceId::from_raw(5)) {
                    let m = MessageEnvelope::new(
                        ServiceId::from_raw(5),
                        "ping",
                        SchemaVersion::new(1, 0),
                        MessagePayload::new(&n).unwrap(),
                    );
                    let _ = k.send_message(ch, m);
                }
                StepOutcome::Progress
            })
        })
        .unwrap();
    scenario
        .kernel_mut()
        .set_fault_plan(FaultPlan::random(seed));
    scenario.run_until(at(10_000));
    scenario.kernel().trace().render()
}

#[test]
fn runner_traces_are_reproducible() {
    let a = ping_pong_trace(11);
    assert_eq!(a, ping_pong_trace(11));
    assert!(a.contains("step ping"));
    assert!(a.contains("step pong"));
}
