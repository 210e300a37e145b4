//! Crash and restart under each restart policy, with backoff timings
//! checked in virtual time.

mod support;

use pandagen_abi::{Duration, Instant, KernelError, ServiceId};
use pandagen_process_manager::policy::{backoff_delay, RESTART_DELAY, STABLE_RUN};
use pandagen_process_manager::{InstanceEnd, LifecycleState, SupervisorEvent};
use support::{spawn_times, Behaviour, World};

const SVC: ServiceId = ServiceId::from_raw(20);
const OTHER: ServiceId = ServiceId::from_raw(21);

fn manifest(policy: &str) -> String {
    format!(
        "[svc]\nid = 20\nrestart = {policy}\ncapabilities = registry\n\
         [other]\nid = 21\nrestart = never\ncapabilities = registry\n"
    )
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Times of the `Ended` events of `service`.
fn end_times(world: &World, service: ServiceId) -> Vec<Instant> {
    world
        .events()
        .iter()
        .filter_map(|(at, e)| match e {
            SupervisorEvent::Ended { service: s, .. } if *s == service => Some(*at),
            _ => None,
        })
        .collect()
}

#[test]
fn on_failure_restarts_a_crash_with_a_fresh_identity_that_registers_again() {
    let mut world = World::scripted(&manifest("on-failure"), |s| {
        s.then("svc", Behaviour::CrashAfter(ms(30)));
    });
    world.run_for(ms(10));
    let first = world.info("svc");
    assert_eq!(first.state, LifecycleState::Running);
    world.run_for(ms(300));
    let second = world.info("svc");
    assert_eq!(second.state, LifecycleState::Running);
    assert_eq!(second.restart_count, 1);
    assert_ne!(second.execution_id, first.execution_id);
    assert_ne!(second.task_id, first.task_id);
    assert!(matches!(
        second.last_end,
        Some(InstanceEnd::Exited(ref reason)) if reason.is_failure()
    ));
    // The restart came exactly RESTART_DELAY after the crash was reported.
    let ends = end_times(&world, SVC);
    let spawns = spawn_times(&world.events(), SVC);
    assert_eq!(spawns.len(), 2);
    assert_eq!(spawns[1] - ends[0], RESTART_DELAY);
    // The new instance registered again and serves.
    world.ping(SVC).unwrap();
}

#[test]
fn on_failure_leaves_a_clean_exit_stopped() {
    let mut world = World::scripted(&manifest("on-failure"), |s| {
        s.then("svc", Behaviour::ExitAfter(ms(30)));
    });
    world.run_for(ms(500));
    let info = world.info("svc");
    assert_eq!(info.state, LifecycleState::Stopped);
    assert_eq!(info.restart_count, 0);
    assert!(!info.wanted);
    assert_eq!(spawn_times(&world.events(), SVC).len(), 1);
}

#[test]
fn always_restarts_after_a_clean_exit_too() {
    let mut world = World::scripted(&manifest("always"), |s| {
        s.then("svc", Behaviour::ExitAfter(ms(30)));
    });
    world.run_for(ms(500));
    let info = world.info("svc");
    assert_eq!(info.state, LifecycleState::Running);
    assert_eq!(info.restart_count, 1);
    world.ping(SVC).unwrap();
}

#[test]
fn never_leaves_a_failure_failed_while_the_rest_keeps_serving() {
    let mut world = World::scripted(&manifest("never"), |s| {
        s.then("svc", Behaviour::CrashAfter(ms(30)));
    });
    world.run_for(ms(1_000));
    let info = world.info("svc");
    assert_eq!(info.state, LifecycleState::Failed);
    assert_eq!(info.restart_count, 0);
    assert!(!info.gave_up, "Never does not give up; it never tries");
    assert_eq!(spawn_times(&world.events(), SVC).len(), 1);
    assert_eq!(
        world.ping(SVC),
        Err(KernelError::ServiceNotFound(SVC)),
        "a dead service is not registered"
    );
    world.ping(OTHER).unwrap();
}

#[test]
fn backoff_waits_100_200_400_ms_then_gives_up_and_says_so() {
    let mut world = World::scripted(&manifest("backoff:3"), |s| {
        s.always("svc", Behaviour::CrashAtStart);
    });
    world.run_for(ms(5_000));
    let info = world.info("svc");
    assert_eq!(info.state, LifecycleState::Failed);
    assert!(info.gave_up);
    assert!(!info.wanted);
    assert_eq!(info.restart_count, 3);
    let events = world.events();
    assert!(events.iter().any(|(_, e)| *e
        == SupervisorEvent::GaveUp {
            service: SVC,
            attempts: 3
        }));
    let spawns = spawn_times(&events, SVC);
    let ends = end_times(&world, SVC);
    assert_eq!(spawns.len(), 4, "the first start and three restarts");
    let waits: Vec<Duration> = (0..3).map(|i| spawns[i + 1] - ends[i]).collect();
    assert_eq!(waits, [ms(100), ms(200), ms(400)]);
    assert_eq!(waits, [1, 2, 3].map(backoff_delay));
}

#[test]
fn backoff_delays_are_measured_from_each_crash() {
    let mut world = World::scripted(&manifest("backoff:4"), |s| {
        s.always("svc", Behaviour::CrashAfter(ms(25)));
    });
    world.run_for(ms(10_000));
    let spawns = spawn_times(&world.events(), SVC);
    let ends = end_times(&world, SVC);
    assert_eq!(spawns.len(), 5);
    for i in 0..4 {
        // Each instance ran 25 ms (it registered first), then waited.
        assert_eq!(ends[i] - spawns[i], ms(25), "run {i}");
        assert_eq!(
            spawns[i + 1] - ends[i],
            backoff_delay(i as u32 + 1),
            "wait {i}"
        );
    }
    assert!(world.info("svc").gave_up);
}

#[test]
fn a_stable_run_resets_the_backoff_count() {
    // Each instance runs longer than STABLE_RUN before crashing, so a
    // one-attempt budget is never exhausted.
    let mut world = World::scripted(&manifest("backoff:1"), |s| {
        s.always("svc", Behaviour::CrashAfter(STABLE_RUN + ms(500)));
    });
    world.run_for(Duration::from_secs(60));
    let info = world.info("svc");
    assert!(!info.gave_up);
    assert!(info.restart_count >= 4, "{info:?}");
    assert_eq!(info.consecutive_restarts, 1);
    // Every wait was the first backoff step.
    let spawns = spawn_times(&world.events(), SVC);
    let ends = end_times(&world, SVC);
    for i in 0..ends.len().min(spawns.len() - 1) {
        assert_eq!(spawns[i + 1] - ends[i], backoff_delay(1));
    }
}

#[test]
fn a_start_that_never_becomes_ready_fails_and_is_retried() {
    let mut world = World::scripted(&manifest("on-failure"), |s| {
        s.then("svc", Behaviour::NeverRegister);
    });
    world.run_for(ms(500));
    let info = world.info("svc");
    assert_eq!(info.state, LifecycleState::Running);
    assert_eq!(info.restart_count, 1);
    assert!(world.events().iter().any(|(_, e)| *e
        == SupervisorEvent::Ended {
            service: SVC,
            end: InstanceEnd::NeverReady
        }));
    world.ping(SVC).unwrap();
}

#[test]
fn a_crash_loop_cannot_starve_the_system() {
    let mut world = World::scripted(
        "[looper]\nid = 30\nrestart = always\ncapabilities = registry\n\
         [steady]\nid = 31\nrestart = never\ncapabilities = registry\n",
        |s| {
            s.always("looper", Behaviour::CrashAtStart);
        },
    );
    // While the loop runs, the process manager and the steady service keep
    // answering.
    for _ in 0..10 {
        world.run_for(ms(97));
        world.ping(ServiceId::from_raw(31)).unwrap();
        let listed = world.request(pandagen_process_manager::PmRequest::List);
        assert!(listed.is_ok(), "{listed:?}");
    }
    // At most one spawn per RESTART_DELAY (100 ms): about ten in a second.
    let elapsed = world.now() - Instant::ZERO;
    let spawns = spawn_times(&world.events(), ServiceId::from_raw(30)).len() as u128;
    assert!(spawns >= 5, "the looper keeps being restarted: {spawns}");
    assert!(
        spawns <= elapsed.as_millis() / RESTART_DELAY.as_millis() + 1,
        "{spawns} spawns in {elapsed:?}"
    );
    assert_eq!(world.info("steady").state, LifecycleState::Running);
    assert_eq!(world.info("steady").restart_count, 0);
}

#[test]
fn a_service_whose_image_is_missing_is_not_retried() {
    let mut world = World::scripted(&manifest("always"), |s| {
        s.missing.push("svc".into());
    });
    world.run_for(ms(2_000));
    let info = world.info("svc");
    assert_eq!(info.state, LifecycleState::Failed);
    assert!(info.gave_up && !info.wanted);
    assert_eq!(info.restart_count, 0);
    assert!(matches!(
        info.last_end,
        Some(InstanceEnd::SpawnFailed(KernelError::SpawnFailed(
            pandagen_abi::error::SpawnError::ImageNotFound
        )))
    ));
    assert!(world.events().iter().any(|(_, e)| matches!(
        e,
        SupervisorEvent::Unstartable { service, .. } if *service == SVC
    )));
    assert_eq!(world.info("other").state, LifecycleState::Running);
    world.ping(OTHER).unwrap();
}
