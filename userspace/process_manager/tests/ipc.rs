//! The versioned IPC interface: list, status, start, stop, restart, and a
//! typed error for every bad request.

mod support;

use pandagen_abi::cap::kinds;
use pandagen_abi::services::PROCESS_MANAGER;
use pandagen_abi::{
    Cap, Duration, ExitReason, KernelApi, KernelError, MessageEnvelope, MessagePayload, Rights,
    SchemaMismatchError, SchemaVersion, ServiceId, TrustDomain,
};
use pandagen_process_manager::protocol::{self, SCHEMA};
use pandagen_process_manager::{
    ClientError, IllegalTransition, InstanceEnd, LifecycleState, PmError, PmReply, PmRequest,
    ServiceInfo, ServiceRef, SupervisorEvent,
};
use support::{Behaviour, World};

const MANIFEST: &str = "
[db]
id = 40
restart = always
capabilities = registry
trust = core

[app]
id = 41
restart = on-failure
capabilities = registry
depends = db
";

const DB: ServiceId = ServiceId::from_raw(40);
const APP: ServiceId = ServiceId::from_raw(41);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn booted(script: impl FnOnce(&mut support::Scripts)) -> World {
    let mut world = World::scripted(MANIFEST, script);
    world.run_for(ms(50));
    world
}

fn service(reply: Result<PmReply, ClientError>) -> ServiceInfo {
    match reply {
        Ok(PmReply::Service(info)) => info,
        other => panic!("expected one service, got {other:?}"),
    }
}

#[test]
fn list_reports_state_restarts_identity_and_trust_domain() {
    let mut world = booted(|_| {});
    let Ok(PmReply::Services(services)) = world.request(PmRequest::List) else {
        panic!("list failed");
    };
    assert_eq!(services.len(), 2);
    let db = &services[0];
    assert_eq!((db.service_id, db.name.as_str()), (DB, "db"));
    assert_eq!(db.state, LifecycleState::Running);
    assert_eq!(db.restart_count, 0);
    assert_eq!(db.trust_domain, TrustDomain::core());
    assert_eq!(services[1].trust_domain, TrustDomain::user());
    // The identity is the kernel's: the execution id of the running task.
    let task = db.task_id.unwrap();
    let execution = world.kernel().task_identity(task);
    assert_eq!(execution, db.execution_id);
    // And its identity's parent is the process manager.
    let pm_task = world.pm_task;
    let pm_execution = world.kernel().task_identity(pm_task).unwrap();
    let identity = world.kernel().identity(db.execution_id.unwrap()).unwrap();
    assert!(identity.is_child_of(pm_execution));
}

#[test]
fn status_by_id_and_by_name_agree() {
    let mut world = booted(|_| {});
    let by_id = service(world.request(PmRequest::Status(APP.into())));
    let by_name = service(world.request(PmRequest::Status("app".into())));
    assert_eq!(by_id, by_name);
    assert_eq!(by_id.state, LifecycleState::Running);
}

#[test]
fn stop_shuts_a_service_down_and_it_stays_down_even_under_always() {
    let mut world = booted(|_| {});
    let before = world.info("db");
    let reply = service(world.request(PmRequest::Stop(DB.into())));
    assert_eq!(reply.state, LifecycleState::Stopping);
    world.run_for(ms(500));
    let after = world.info("db");
    assert_eq!(after.state, LifecycleState::Stopped);
    assert_eq!(
        after.last_end,
        Some(InstanceEnd::Exited(ExitReason::Normal))
    );
    assert_eq!(after.restart_count, 0);
    assert!(!world.kernel().task_is_alive(before.task_id.unwrap()));
    assert_eq!(world.ping(DB), Err(KernelError::ServiceNotFound(DB)));
}

#[test]
fn start_brings_a_stopped_service_back_with_a_new_identity() {
    let mut world = booted(|_| {});
    let first = world.info("db").execution_id;
    world.request(PmRequest::Stop(DB.into())).unwrap();
    world.run_for(ms(100));
    let reply = service(world.request(PmRequest::Start("db".into())));
    assert!(
        matches!(
            reply.state,
            LifecycleState::Starting | LifecycleState::Running
        ),
        "{reply:?}"
    );
    world.run_for(ms(100));
    let info = world.info("db");
    assert_eq!(info.state, LifecycleState::Running);
    assert_ne!(info.execution_id, first);
    world.ping(DB).unwrap();
}

#[test]
fn restart_replaces_a_running_instance() {
    let mut world = booted(|_| {});
    let first = world.info("app");
    let reply = service(world.request(PmRequest::Restart(APP.into())));
    assert_eq!(reply.state, LifecycleState::Stopping);
    world.run_for(ms(100));
    let second = world.info("app");
    assert_eq!(second.state, LifecycleState::Running);
    assert_ne!(second.execution_id, first.execution_id);
    assert_eq!(second.restart_count, 1);
    // The old instance exited cleanly because it was asked to.
    assert!(!world.kernel().task_is_alive(first.task_id.unwrap()));
    world.ping(APP).unwrap();
}

#[test]
fn start_revives_a_service_whose_policy_gave_up() {
    let text = MANIFEST.replace("restart = on-failure", "restart = backoff:1");
    let mut world = World::scripted(&text, |s| {
        s.then("app", Behaviour::CrashAtStart)
            .then("app", Behaviour::CrashAtStart);
    });
    world.run_for(ms(1_000));
    let gave_up = world.info("app");
    assert!(gave_up.gave_up && gave_up.state == LifecycleState::Failed);
    let reply = service(world.request(PmRequest::Start(APP.into())));
    assert!(!reply.gave_up);
    world.run_for(ms(100));
    assert_eq!(world.info("app").state, LifecycleState::Running);
}

#[test]
fn operations_that_do_not_apply_are_typed_errors() {
    let mut world = booted(|_| {});
    world.request(PmRequest::Stop(DB.into())).unwrap();
    world.run_for(ms(100));
    assert_eq!(
        world.request(PmRequest::Stop(DB.into())),
        Err(ClientError::Rejected(PmError::IllegalTransition(
            IllegalTransition {
                from: LifecycleState::Stopped,
                to: LifecycleState::Stopping
            }
        )))
    );
    assert_eq!(
        world.request(PmRequest::Start(APP.into())),
        Err(ClientError::Rejected(PmError::IllegalTransition(
            IllegalTransition {
                from: LifecycleState::Running,
                to: LifecycleState::Starting
            }
        )))
    );
    let ghost = ServiceRef::Name("ghost".into());
    assert_eq!(
        world.request(PmRequest::Status(ghost.clone())),
        Err(ClientError::Rejected(PmError::UnknownService(ghost)))
    );
}

/// Send a hand-made envelope to the process manager on its channel and
/// return its answer.
fn raw(world: &mut World, envelope: MessageEnvelope) -> MessageEnvelope {
    raw_through(world, envelope, None)
}

/// Send a hand-made envelope to the process manager, through `control` if
/// given, else on its channel, and return its answer.
fn raw_through(
    world: &mut World,
    envelope: MessageEnvelope,
    control: Option<&Cap<kinds::StorageObject>>,
) -> MessageEnvelope {
    let reply = world.as_client(|k| {
        let pm = k.lookup_service(PROCESS_MANAGER).unwrap();
        let reply = k.create_channel().unwrap();
        let cap = k
            .clone_capability(&Cap::from(reply), Rights::SEND | Rights::TRANSFER)
            .unwrap();
        match control {
            Some(control) => k.send_to_object(control, envelope, vec![cap]).unwrap(),
            None => k.send_with_capabilities(pm, envelope, vec![cap]).unwrap(),
        }
        reply
    });
    world.run_for(ms(1));
    world.as_client(|k| k.receive_message(reply, Some(Duration::ZERO)).unwrap())
}

fn error_of(answer: &MessageEnvelope) -> PmError {
    assert_eq!(answer.action, protocol::RESPONSE_ACTION);
    assert_eq!(answer.schema_version, SCHEMA);
    match answer.payload.decode::<protocol::PmResponse>().unwrap() {
        Err(error) => error,
        Ok(reply) => panic!("expected an error, got {reply:?}"),
    }
}

#[test]
fn a_newer_major_version_is_refused_before_decoding() {
    let mut world = booted(|_| {});
    let request = MessageEnvelope::new(
        PROCESS_MANAGER,
        protocol::LIST_ACTION,
        SchemaVersion::new(2, 0),
        MessagePayload::from_bytes(vec![0xff; 3]).unwrap(),
    );
    let id = request.id;
    let answer = raw(&mut world, request);
    assert_eq!(answer.correlation_id, Some(id));
    match error_of(&answer) {
        PmError::SchemaMismatch(SchemaMismatchError::Unsupported {
            service, received, ..
        }) => {
            assert_eq!(service, PROCESS_MANAGER);
            assert_eq!(received, SchemaVersion::new(2, 0));
        }
        other => panic!("expected a schema mismatch, got {other:?}"),
    }
}

#[test]
fn unknown_actions_and_malformed_payloads_get_their_own_errors() {
    let mut world = booted(|_| {});
    let unknown = MessageEnvelope::new(
        PROCESS_MANAGER,
        "pm.reboot",
        SCHEMA,
        MessagePayload::empty(),
    );
    assert_eq!(error_of(&raw(&mut world, unknown)), PmError::UnknownAction);
    let stop_with = |bytes: Vec<u8>| {
        MessageEnvelope::new(
            PROCESS_MANAGER,
            protocol::STOP_ACTION,
            SCHEMA,
            MessagePayload::from_bytes(bytes).unwrap(),
        )
    };
    // `ServiceRef::Name` of 200 bytes, with none of them there.
    let malformed = || stop_with(vec![1, 200]);
    let task = world.client_task;
    let control = world
        .give_control(task, protocol::CHILD_CONTROL_RIGHTS)
        .unwrap();
    assert_eq!(
        error_of(&raw_through(&mut world, malformed(), Some(&control))),
        PmError::MalformedPayload
    );
    // A `ServiceRef` variant of a newer client (index 9): an action this
    // version does not know, not a broken payload.
    assert_eq!(
        error_of(&raw_through(
            &mut world,
            stop_with(vec![9, 9, 9]),
            Some(&control)
        )),
        PmError::UnknownAction
    );
    // Authority is checked before the payload is read.
    assert_eq!(
        error_of(&raw(&mut world, malformed())),
        PmError::ControlCapabilityRequired
    );
    // Nothing was stopped by the bad requests.
    assert_eq!(world.info("db").state, LifecycleState::Running);
}

#[test]
fn a_request_without_a_reply_capability_is_logged_and_the_server_carries_on() {
    let mut world = booted(|_| {});
    world.as_client(|k| {
        let pm = k.lookup_service(PROCESS_MANAGER).unwrap();
        let request = MessageEnvelope::new(
            PROCESS_MANAGER,
            protocol::LIST_ACTION,
            SCHEMA,
            MessagePayload::new(&()).unwrap(),
        );
        k.send_message(pm, request).unwrap();
    });
    world.run_for(ms(1));
    assert!(world
        .events()
        .iter()
        .any(|(_, e)| *e == SupervisorEvent::UnanswerableRequest));
    assert!(world.request(PmRequest::List).is_ok());
}

#[test]
fn a_service_that_ignores_shutdown_stays_stopping_and_is_reported_overdue() {
    let mut world = booted(|s| {
        s.then("db", Behaviour::IgnoreShutdown);
    });
    world.request(PmRequest::Stop(DB.into())).unwrap();
    world.run_for(ms(100));
    assert_eq!(world.info("db").state, LifecycleState::Stopping);
    let overdue = world
        .events()
        .iter()
        .filter(|(_, e)| *e == SupervisorEvent::StopOverdue { service: DB })
        .count();
    assert!(overdue >= 2, "re-asked on every stop timeout: {overdue}");
}

#[test]
fn the_typed_client_round_trips_over_the_kernel_api() {
    let mut world = booted(|_| {});
    // Reuse one client for several calls, as the console would.
    for _ in 0..3 {
        let info = service(world.request(PmRequest::Status(DB.into())));
        assert_eq!(info.name, "db");
    }
}

#[test]
fn stopping_a_service_that_is_still_starting_waits_for_it_and_shuts_it_down() {
    let mut world = World::scripted(MANIFEST, |s| {
        s.then("db", Behaviour::RegisterAfter(ms(30)));
    });
    world.run_for(ms(5));
    assert_eq!(world.info("db").state, LifecycleState::Starting);
    let reply = service(world.request(PmRequest::Stop(DB.into())));
    assert_eq!(reply.state, LifecycleState::Stopping);
    world.run_for(ms(200));
    let info = world.info("db");
    assert_eq!(info.state, LifecycleState::Stopped);
    assert_eq!(info.last_end, Some(InstanceEnd::Exited(ExitReason::Normal)));
    // Its dependent never started: it needs db running.
    assert_eq!(world.info("app").state, LifecycleState::Stopped);
    assert!(world.info("app").execution_id.is_none());
}

std::thread_local! {
    static TERMINATED: std::cell::RefCell<Vec<(pandagen_abi::TaskId, ExitReason)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

fn record_termination(task: pandagen_abi::TaskId, reason: ExitReason) -> Result<(), KernelError> {
    TERMINATED.with(|t| t.borrow_mut().push((task, reason)));
    Ok(())
}

#[test]
fn crash_needs_a_terminator_and_a_live_instance() {
    let mut world = booted(|_| {});
    assert_eq!(
        world.request(PmRequest::Crash("db".into())),
        Err(ClientError::Rejected(PmError::CannotTerminate(None)))
    );
    world.set_terminator(record_termination);
    world.request(PmRequest::Stop("app".into())).unwrap();
    world.run_for(ms(100));
    assert_eq!(world.info("app").state, LifecycleState::Stopped);
    assert_eq!(
        world.request(PmRequest::Crash("app".into())),
        Err(ClientError::Rejected(PmError::NotRunning))
    );
}

#[test]
fn crash_terminates_the_instance_with_a_failure_and_the_policy_restarts_it() {
    let mut world = booted(|_| {});
    world.set_terminator(record_termination);
    let before = world.info("db");
    let task = before.task_id.unwrap();
    let info = service(world.request(PmRequest::Crash("db".into())));
    assert_eq!(info.name, "db");
    let (crashed, reason) = TERMINATED
        .with(|t| t.borrow_mut().pop())
        .expect("terminated");
    assert_eq!(crashed, task);
    assert!(matches!(reason, ExitReason::Failure { .. }));
    // What the kernel does on Terminate: end the task, notify its parent.
    world.kernel().terminate_task_with_reason(task, reason);
    world.run_for(Duration::from_secs(2));
    let after = world.info("db");
    assert_eq!(after.state, LifecycleState::Running);
    assert_eq!(after.restart_count, 1);
    assert_ne!(after.task_id, Some(task));
    assert!(matches!(
        after.last_end,
        Some(InstanceEnd::Exited(ExitReason::Failure { .. }))
    ));
}

#[test]
fn with_a_terminator_a_service_that_ignores_shutdown_is_ended_after_the_stop_timeout() {
    let mut world = booted(|s| {
        s.then("db", Behaviour::IgnoreShutdown);
    });
    world.set_terminator(record_termination);
    let task = world.info("db").task_id.unwrap();
    world.request(PmRequest::Stop(DB.into())).unwrap();
    world.run_for(ms(100));
    let (ended, reason) = TERMINATED
        .with(|t| t.borrow_mut().pop())
        .expect("terminated after the stop timeout");
    assert_eq!(ended, task);
    // What the kernel does on Terminate; the stop then completes.
    world.kernel().terminate_task_with_reason(task, reason);
    world.run_for(ms(100));
    let db = world.info("db");
    assert_eq!(db.state, LifecycleState::Stopped);
    assert_eq!(db.restart_count, 0, "a stopped service is not restarted");
}

#[test]
fn a_flood_of_refused_requests_is_logged_a_few_times_then_counted() {
    use pandagen_process_manager::refusals::{REFUSALS_LOGGED_PER_INTERVAL, REFUSAL_INTERVAL};
    let mut world = booted(|_| {});
    let unanswerable = || {
        MessageEnvelope::new(
            PROCESS_MANAGER,
            protocol::LIST_ACTION,
            SCHEMA,
            MessagePayload::new(&()).unwrap(),
        )
    };
    let mut sent = 0u64;
    for _ in 0..10 {
        world.as_client(|k| {
            let pm = k.lookup_service(PROCESS_MANAGER).unwrap();
            for _ in 0..20 {
                k.send_message(pm, unanswerable()).unwrap();
                sent += 1;
            }
        });
        world.run_for(ms(1));
    }
    let logged = world
        .events()
        .iter()
        .filter(|(_, e)| *e == SupervisorEvent::UnanswerableRequest)
        .count();
    assert_eq!(logged, REFUSALS_LOGGED_PER_INTERVAL as usize);
    // The rest are summarised once the interval is over, without a new
    // message to wake the server: the summary is a deadline of its own.
    world.run_for(REFUSAL_INTERVAL);
    let summaries: Vec<_> = world
        .events()
        .iter()
        .filter_map(|(_, e)| match e {
            SupervisorEvent::RefusalsCounted(summary) => Some(summary.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    let summary = &summaries[0];
    assert_eq!(
        summary.total(),
        sent - u64::from(REFUSALS_LOGGED_PER_INTERVAL)
    );
    // One sender, the client the kernel stamped on every request.
    assert_eq!(summary.by_sender.len(), 1);
    assert!(summary.by_sender[0].0.is_some());
    assert!(world.request(PmRequest::List).is_ok());
}
