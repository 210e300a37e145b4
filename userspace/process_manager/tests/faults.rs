//! Supervision under fault injection and against impostors: lost and late
//! exit notifications, dropped requests and shutdowns, forged
//! notifications, other tasks' deaths, and a sweep of random fault plans.

mod support;

use pandagen_abi::api::EXIT_NOTIFICATION_ACTION;
use pandagen_abi::error::SendError;
use pandagen_abi::services::PROCESS_MANAGER;
use pandagen_abi::{
    Duration, ExitNotification, ExitReason, KernelApi, KernelError, MessageEnvelope,
    MessagePayload, SchemaVersion, ServiceId, TaskDescriptor,
};
use pandagen_process_manager::policy::RESTART_DELAY;
use pandagen_process_manager::protocol::SHUTDOWN_ACTION;
use pandagen_process_manager::{
    ClientError, InstanceEnd, LifecycleState, PmRequest, SupervisorEvent,
};
use pandagen_sim::{FaultPlan, LossReason, MessageFault, MessageFilter, MessageRule, TraceEvent};
use support::{config, spawn_times, Behaviour, World};

const MANIFEST: &str = "
[svc]
id = 50
restart = on-failure
capabilities = registry

[bystander]
id = 51
restart = on-failure
capabilities = registry
";

const SVC: ServiceId = ServiceId::from_raw(50);
const BYSTANDER: ServiceId = ServiceId::from_raw(51);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn once(action: &str, fault: MessageFault) -> FaultPlan {
    FaultPlan::new()
        .with_message_rule(MessageRule::new(MessageFilter::with_action(action), fault).times(1))
}

fn ended(world: &World, end: InstanceEnd) -> bool {
    world
        .events()
        .iter()
        .any(|(_, e)| matches!(e, SupervisorEvent::Ended { service, end: seen } if *service == SVC && *seen == end))
}

#[test]
fn a_lost_exit_notification_is_caught_by_the_liveness_check() {
    let mut world = World::build(
        MANIFEST,
        config(),
        once(EXIT_NOTIFICATION_ACTION, MessageFault::Drop),
        |s| {
            s.then("svc", Behaviour::CrashAfter(ms(30)));
        },
    );
    world.run_for(ms(1_000));
    assert!(
        ended(&world, InstanceEnd::Vanished),
        "{:#?}",
        world.events()
    );
    let info = world.info("svc");
    assert_eq!(info.state, LifecycleState::Running);
    assert_eq!(info.restart_count, 1);
    // Detected within one liveness interval of the crash, then restarted
    // after the usual delay.
    let crash = world.scripts.borrow().starts_of("svc")[0] + ms(30);
    let restart = spawn_times(&world.events(), SVC)[1];
    assert!(restart - crash <= config().liveness_interval + RESTART_DELAY);
    world.ping(SVC).unwrap();
}

#[test]
fn a_late_exit_notification_for_a_retired_instance_is_ignored() {
    // The first instance never registers, so it is given up at the startup
    // timeout (50 ms) and replaced; it dies later, and its notification
    // must not touch the new instance.
    let mut world = World::scripted(MANIFEST, |s| {
        s.then("svc", Behaviour::NeverRegisterThenCrash(ms(80)));
    });
    world.run_for(ms(1_000));
    let events = world.events();
    assert!(ended(&world, InstanceEnd::NeverReady));
    let stale: Vec<_> = events
        .iter()
        .filter(|(_, e)| matches!(e, SupervisorEvent::StaleNotification { .. }))
        .collect();
    assert_eq!(stale.len(), 1, "{events:#?}");
    let info = world.info("svc");
    assert_eq!(info.state, LifecycleState::Running);
    assert_eq!(info.restart_count, 1, "one failed start, one restart");
    world.ping(SVC).unwrap();
}

#[test]
fn a_dropped_request_times_out_at_the_client_and_a_retry_succeeds() {
    let mut world = World::build(
        MANIFEST,
        config(),
        once("pm.list", MessageFault::Drop),
        |_| {},
    );
    world.run_for(ms(50));
    assert_eq!(
        world.request(PmRequest::List),
        Err(ClientError::Kernel(KernelError::Timeout))
    );
    assert!(world.request(PmRequest::List).is_ok());
}

#[test]
fn a_dropped_shutdown_request_is_sent_again() {
    let mut world = World::build(
        MANIFEST,
        config(),
        once(SHUTDOWN_ACTION, MessageFault::Drop),
        |_| {},
    );
    world.run_for(ms(50));
    world.request(PmRequest::Stop(SVC.into())).unwrap();
    world.run_for(ms(200));
    let info = world.info("svc");
    assert_eq!(info.state, LifecycleState::Stopped);
    assert_eq!(info.last_end, Some(InstanceEnd::Exited(ExitReason::Normal)));
    let overdue = world
        .events()
        .iter()
        .filter(|(_, e)| *e == SupervisorEvent::StopOverdue { service: SVC })
        .count();
    assert_eq!(overdue, 1);
}

#[test]
fn a_forged_exit_notification_is_ignored() {
    let mut world = World::new(MANIFEST);
    world.run_for(ms(50));
    let victim = world.info("svc");
    let forged = ExitNotification {
        execution_id: victim.execution_id.unwrap(),
        task_id: victim.task_id,
        reason: ExitReason::Timeout,
        terminated_at_nanos: 0,
    };
    world.as_client(|k| {
        let pm = k.lookup_service(PROCESS_MANAGER).unwrap();
        let envelope = MessageEnvelope::new(
            ServiceId::from_raw(0),
            EXIT_NOTIFICATION_ACTION,
            SchemaVersion::new(1, 0),
            MessagePayload::new(&forged).unwrap(),
        );
        k.send_message(pm, envelope).unwrap();
    });
    world.run_for(ms(50));
    assert!(world.events().iter().any(|(_, e)| matches!(
        e,
        SupervisorEvent::ForeignNotification { execution: Some(x) } if Some(*x) == victim.execution_id
    )));
    let after = world.info("svc");
    assert_eq!(after.state, LifecycleState::Running);
    assert_eq!(after.execution_id, victim.execution_id);
    assert!(world.kernel().task_is_alive(victim.task_id.unwrap()));
}

#[test]
fn only_its_own_children_concern_the_supervisor() {
    let mut world = World::new(MANIFEST);
    world.run_for(ms(50));
    // A task the root spawned (not the process manager) dies.
    let stranger = world
        .scenario
        .spawn(TaskDescriptor::new("stranger".into()), |_, _| Ok(()))
        .unwrap();
    world
        .kernel()
        .terminate_task_with_reason(stranger.task_id, ExitReason::Timeout);
    world.run_for(ms(200));
    assert!(!world.events().iter().any(|(_, e)| matches!(
        e,
        SupervisorEvent::Ended { .. } | SupervisorEvent::ForeignNotification { .. }
    )));
    // The kernel's own record shows the stranger is no child of the
    // process manager.
    let pm_task = world.pm_task;
    let pm = world.kernel().task_identity(pm_task).unwrap();
    let identity = world.kernel().identity(stranger.execution_id).unwrap();
    assert!(!identity.is_child_of(pm));
}

#[test]
fn a_client_of_a_restarted_service_gets_a_closed_channel_then_finds_the_new_one() {
    let mut world = World::scripted(MANIFEST, |s| {
        s.then("svc", Behaviour::CrashAfter(ms(40)));
    });
    world.run_for(ms(10));
    let old = world.as_client(|k| k.lookup_service(SVC)).unwrap();
    world.ping_over(old).unwrap();
    world.run_for(ms(40)); // the crash
    assert_eq!(
        world.ping_over(old),
        Err(KernelError::SendFailed(SendError::ChannelClosed))
    );
    assert_eq!(
        world.as_client(|k| k.lookup_service(SVC)),
        Err(KernelError::ServiceNotFound(SVC)),
        "not registered until the new instance is up"
    );
    world.run_for(ms(200)); // the restart
    let new = world.as_client(|k| k.lookup_service(SVC)).unwrap();
    world.ping_over(new).unwrap();
    assert_eq!(
        world.ping_over(old),
        Err(KernelError::SendFailed(SendError::ChannelClosed)),
        "the old channel stays closed"
    );
    world.ping(BYSTANDER).unwrap();
}

#[test]
fn under_random_faults_the_system_converges_once_they_stop() {
    let mut lost = 0;
    let mut vanished = 0;
    for seed in 0..24 {
        let mut world = World::build(MANIFEST, config(), FaultPlan::random(seed), |s| {
            s.then("svc", Behaviour::CrashAfter(ms(120)))
                .then("bystander", Behaviour::CrashAfter(ms(300)));
        });
        world.run_for(ms(2_000));
        lost += world.kernel().trace().count(|e| {
            matches!(
                e,
                TraceEvent::Lost {
                    reason: LossReason::InjectedDrop,
                    ..
                }
            )
        });
        vanished += world
            .events()
            .iter()
            .filter(|(_, e)| {
                matches!(
                    e,
                    SupervisorEvent::Ended {
                        end: InstanceEnd::Vanished,
                        ..
                    }
                )
            })
            .count();
        world.kernel().set_fault_plan(FaultPlan::new());
        world.run_for(ms(2_000));
        world
            .kernel()
            .check_invariants()
            .unwrap_or_else(|e| panic!("seed {seed}: {e:?}"));
        for (name, id) in [("svc", SVC), ("bystander", BYSTANDER)] {
            let info = world.info(name);
            assert_eq!(info.state, LifecycleState::Running, "seed {seed}: {info:?}");
            let task = info.task_id.unwrap();
            assert!(world.kernel().task_is_alive(task), "seed {seed}: {name}");
            world
                .ping(id)
                .unwrap_or_else(|e| panic!("seed {seed}: {name}: {e}"));
        }
        assert!(world.request(PmRequest::List).is_ok(), "seed {seed}");
    }
    // The sweep exercised what it claims to.
    assert!(lost > 0, "no message was dropped");
    assert!(vanished > 0, "no exit notification was lost: {lost} drops");
}

/// A client fills the process manager's channel — which is also its
/// children's exit route — and a child then dies with a reason far longer
/// than a message: the notification still arrives (bounded, in room no
/// send can take), so the supervisor learns the real exit at once instead
/// of noticing a vanished registration a liveness interval later.
#[test]
fn an_exit_notification_survives_a_flooded_process_manager_channel() {
    let mut world = World::new(MANIFEST);
    world.run_for(ms(50));
    let victim = world.info("svc");
    let refused = world.as_client(|k| {
        let pm = k.lookup_service(PROCESS_MANAGER).unwrap();
        loop {
            let noise = MessageEnvelope::new(
                ServiceId::from_raw(0),
                "noise",
                SchemaVersion::new(1, 0),
                MessagePayload::empty(),
            );
            if let Err(e) = k.send_message(pm, noise) {
                return e;
            }
        }
    });
    assert_eq!(refused, KernelError::SendFailed(SendError::QueueFull));
    let reason = ExitReason::Failure {
        error: "x".repeat(100_000).into(),
    };
    world
        .kernel()
        .terminate_task_with_reason(victim.task_id.unwrap(), reason);
    // Well within the liveness interval.
    world.run_for(ms(20));
    let info = world.info("svc");
    assert!(
        matches!(
            info.last_end,
            Some(InstanceEnd::Exited(ExitReason::Failure { .. }))
        ),
        "{:?}",
        info.last_end
    );
}

/// The exit route is not the public channel at all: it is a kernel channel
/// bound to it, which no task can send on. An attacker that keeps the
/// public channel full the whole time, refilling it as the supervisor
/// drains it, still never pushes an exit notification out.
#[test]
fn exits_go_to_a_kernel_channel_that_a_flood_cannot_reach() {
    let mut world = World::new(MANIFEST);
    world.run_for(ms(50));
    let victim = world.info("svc").task_id.unwrap();
    let core = world.kernel().core();
    let public = core.service(PROCESS_MANAGER).unwrap().channel;
    let route = core
        .exit_route(victim)
        .expect("the supervisor named a route");
    assert_ne!(route, public, "not the channel anyone can send on");
    let flood = |world: &mut World| {
        world.as_client(|k| {
            let pm = k.lookup_service(PROCESS_MANAGER).unwrap();
            let noise = || {
                MessageEnvelope::new(
                    ServiceId::from_raw(0),
                    "noise",
                    SchemaVersion::new(1, 0),
                    MessagePayload::empty(),
                )
            };
            while k.send_message(pm, noise()).is_ok() {}
        })
    };
    flood(&mut world);
    world
        .kernel()
        .terminate_task_with_reason(victim, ExitReason::Normal);
    for _ in 0..5 {
        world.run_for(ms(2));
        flood(&mut world);
    }
    let info = world.info("svc");
    assert!(
        matches!(info.last_end, Some(InstanceEnd::Exited(ExitReason::Normal))),
        "{:?}",
        info.last_end
    );
    world.kernel().core().check_invariants().unwrap();
}

/// The kernel removes a dead instance's registration when it queues its
/// exit notification. If the liveness check comes due while that
/// notification still waits behind a flood of older messages, the
/// supervisor must take it from the exit route and learn how the instance
/// ended, not give it up as `Vanished`.
#[test]
fn a_liveness_check_during_a_flood_takes_the_queued_exit_notification() {
    let mut world = World::new(MANIFEST);
    world.run_for(ms(50));
    let victim = world.info("svc").task_id.unwrap();
    world.as_client(|k| {
        let pm = k.lookup_service(PROCESS_MANAGER).unwrap();
        let noise = || {
            MessageEnvelope::new(
                ServiceId::from_raw(0),
                "noise",
                SchemaVersion::new(1, 0),
                MessagePayload::empty(),
            )
        };
        while k.send_message(pm, noise()).is_ok() {}
    });
    world
        .kernel()
        .terminate_task_with_reason(victim, ExitReason::Normal);
    // The liveness check is due before the supervisor runs again: its
    // first step checks, with the notification behind the whole flood.
    let liveness = world.pm(|pm| pm.config().liveness_interval);
    let due = world.now() + liveness;
    world.kernel().advance_time_to(due);
    world.run_for(ms(1));
    let info = world.info("svc");
    assert!(
        matches!(info.last_end, Some(InstanceEnd::Exited(ExitReason::Normal))),
        "{:?}",
        info.last_end
    );
    assert!(!world.events().iter().any(|(_, e)| matches!(
        e,
        SupervisorEvent::Ended {
            end: InstanceEnd::Vanished,
            ..
        }
    )));
    world.kernel().core().check_invariants().unwrap();
}
