//! The state-changing requests need the process manager's control
//! capability: refused without it (and nothing happens), honoured with it,
//! refused through an attenuated copy, usable by whoever it is moved to,
//! and handed to manifest services that name `pm-control`.

mod support;

use pandagen_abi::cap::kinds;
use pandagen_abi::services::PROCESS_MANAGER;
use pandagen_abi::{
    Cap, CapHandle, CapKind, Duration, ExitReason, KernelApi, KernelError, Rights, ServiceId,
    TaskDescriptor, TaskId,
};
use pandagen_core::{ObjectRef, ServiceObject};
use pandagen_process_manager::protocol::{CHILD_CONTROL_RIGHTS, CONTROL_BADGE};
use pandagen_process_manager::{
    ClientError, LifecycleState, PmClient, PmError, PmReply, PmRequest, ServiceInfo, ServiceRef,
    SupervisorEvent,
};
use support::World;

const MANIFEST: &str = "
[db]
id = 40
restart = always
capabilities = registry, pm-control
trust = core

[app]
id = 41
restart = on-failure
capabilities = registry
depends = db
";

const DB: ServiceId = ServiceId::from_raw(40);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

std::thread_local! {
    static TERMINATED: std::cell::RefCell<Vec<(TaskId, ExitReason)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

fn record_termination(task: TaskId, reason: ExitReason) -> Result<(), KernelError> {
    TERMINATED.with(|t| t.borrow_mut().push((task, reason)));
    Ok(())
}

/// Booted, with a terminator, so that an authorized `pm.crash` would act.
fn booted() -> World {
    let mut world = World::new(MANIFEST);
    world.run_for(ms(50));
    world.set_terminator(record_termination);
    world
}

fn service(reply: Result<PmReply, ClientError>) -> ServiceInfo {
    match reply {
        Ok(PmReply::Service(info)) => info,
        other => panic!("expected one service, got {other:?}"),
    }
}

fn rejected(error: PmError) -> Result<PmReply, ClientError> {
    Err(ClientError::Rejected(error))
}

/// What must not change when a request is refused.
fn snapshot(world: &World) -> Vec<(LifecycleState, Option<TaskId>, u32, bool)> {
    world.pm(|pm| {
        pm.services()
            .into_iter()
            .map(|s| (s.state, s.task_id, s.restart_count, s.wanted))
            .collect()
    })
}

/// The control requests for `target`.
fn control_requests(target: &str) -> [PmRequest; 4] {
    let t = || ServiceRef::from(target);
    [
        PmRequest::Stop(t()),
        PmRequest::Start(t()),
        PmRequest::Restart(t()),
        PmRequest::Crash(t()),
    ]
}

/// A second passive task acting as another operator.
fn spawn_task(world: &mut World, name: &str) -> TaskId {
    world
        .scenario
        .spawn(TaskDescriptor::new(name.into()), |_, _| Ok(()))
        .expect("spawn")
        .task_id
}

/// The process-manager object capabilities `task` holds: (handle, badge,
/// rights).
fn pm_objects(world: &World, task: TaskId) -> Vec<(CapHandle, u64, Rights)> {
    world
        .scenario
        .kernel()
        .capabilities_of(task)
        .into_iter()
        .filter_map(|(handle, info)| match info.object {
            ObjectRef::StorageObject(ServiceObject { service, badge })
                if service == PROCESS_MANAGER =>
            {
                Some((handle, badge, info.rights))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn control_requests_without_the_capability_are_refused_and_change_nothing() {
    let mut world = booted();
    let before = snapshot(&world);
    let events_before = world.events().len();
    for request in control_requests("db")
        .into_iter()
        .chain(control_requests("ghost"))
    {
        // Refused before the target is even looked up: an unknown service
        // gets the same answer, so nothing is learned either.
        assert_eq!(
            world.plain_request(request.clone()),
            rejected(PmError::ControlCapabilityRequired),
            "{request:?}"
        );
    }
    world.run_for(ms(500));
    assert_eq!(snapshot(&world), before);
    assert!(
        TERMINATED.with(|t| t.borrow().is_empty()),
        "nothing crashed"
    );
    // Each refusal is logged with the sender the kernel stamped; nothing
    // else happened.
    let client = world.client_task;
    let events = world.events();
    let after: Vec<_> = events[events_before..].iter().map(|(_, e)| e).collect();
    assert_eq!(after.len(), 8, "{after:?}");
    assert!(after.iter().all(|e| **e
        == SupervisorEvent::ControlRefused {
            from: Some(client),
            refusal: PmError::ControlCapabilityRequired,
        }));
    // The read-only requests stay open to anyone.
    assert!(matches!(
        world.plain_request(PmRequest::List),
        Ok(PmReply::Services(s)) if s.len() == 2
    ));
    assert_eq!(
        service(world.plain_request(PmRequest::Status("db".into()))).state,
        LifecycleState::Running
    );
}

#[test]
fn with_the_capability_the_same_requests_are_carried_out() {
    let mut world = booted();
    let first = world.info("db");
    assert_eq!(
        service(world.request(PmRequest::Stop("app".into()))).state,
        LifecycleState::Stopping
    );
    world.run_for(ms(100));
    assert_eq!(world.info("app").state, LifecycleState::Stopped);
    world.request(PmRequest::Start("app".into())).unwrap();
    world.run_for(ms(100));
    assert_eq!(world.info("app").state, LifecycleState::Running);
    world.request(PmRequest::Restart("db".into())).unwrap();
    world.run_for(ms(100));
    let restarted = world.info("db");
    assert_eq!(restarted.state, LifecycleState::Running);
    assert_ne!(restarted.execution_id, first.execution_id);
    let task = restarted.task_id.unwrap();
    world.request(PmRequest::Crash("db".into())).unwrap();
    assert_eq!(
        TERMINATED.with(|t| t.borrow_mut().pop()).map(|(t, _)| t),
        Some(task)
    );
    assert!(!world
        .events()
        .iter()
        .any(|(_, e)| matches!(e, SupervisorEvent::ControlRefused { .. })));
}

#[test]
fn an_attenuated_copy_without_control_is_refused() {
    let mut world = booted();
    let client = world.client_task;
    // A capability that may be copied (GRANT), minted with READ as well
    // as CONTROL...
    let full = world
        .give_control(
            client,
            Rights::READ | Rights::CONTROL | Rights::GRANT | Rights::TRANSFER,
        )
        .unwrap();
    // ...attenuated by its holder to READ: an invoke right, so the kernel
    // delivers the request and stamps the rights, but not CONTROL.
    let read_only = world.as_client(|k| {
        let copy = k
            .clone_capability(&Cap::from_handle(full.handle()), Rights::READ)
            .unwrap();
        copy.assume_kind::<kinds::StorageObject>()
    });
    let mut pm = world
        .as_client(PmClient::connect)
        .unwrap()
        .with_control(read_only);
    let before = snapshot(&world);
    for request in control_requests("db") {
        assert_eq!(
            world.request_with(client, &pm, request),
            rejected(PmError::MissingRights {
                required: Rights::CONTROL,
                held: Rights::READ,
            })
        );
    }
    // A copy with no invoke right at all is refused by the kernel itself.
    let inert = world.as_client(|k| {
        k.clone_capability(&Cap::from_handle(full.handle()), Rights::TRANSFER)
            .unwrap()
            .assume_kind::<kinds::StorageObject>()
    });
    // Swap it in for the read-only copy.
    assert!(pm.take_control().is_some());
    let pm = pm.with_control(inert);
    assert_eq!(
        world.request_with(client, &pm, PmRequest::Stop("db".into())),
        Err(ClientError::Kernel(KernelError::InsufficientAuthority))
    );
    world.run_for(ms(200));
    assert_eq!(snapshot(&world), before);
    // The original still works.
    let pm = world
        .as_client(PmClient::connect)
        .unwrap()
        .with_control(full);
    assert_eq!(
        service(world.request_with(client, &pm, PmRequest::Stop("app".into()))).state,
        LifecycleState::Stopping
    );
}

#[test]
fn the_childs_copy_cannot_be_copied_on() {
    let mut world = booted();
    let client = world.client_task;
    let control = world.give_control(client, CHILD_CONTROL_RIGHTS).unwrap();
    let copied = world
        .as_client(|k| k.clone_capability(&Cap::from_handle(control.handle()), Rights::CONTROL));
    assert!(copied.is_err(), "no GRANT, no copy: {copied:?}");
}

#[test]
fn a_badge_the_process_manager_does_not_honour_is_refused() {
    let mut world = booted();
    let (pm_task, client) = (world.pm_task, world.client_task);
    // Only the registration holder can mint for the process manager...
    let forged = world
        .as_client(|k| k.mint_object_capability(PROCESS_MANAGER, CONTROL_BADGE, Rights::CONTROL));
    assert_eq!(forged.err(), Some(KernelError::InsufficientAuthority));
    // ...and it honours only its control badge.
    let other = world
        .kernel()
        .as_task(pm_task, |k| {
            k.mint_object_capability(PROCESS_MANAGER, 7, Rights::CONTROL | Rights::TRANSFER)
        })
        .unwrap();
    let moved = world
        .kernel()
        .delegate_capability(&other, pm_task, client)
        .unwrap();
    let pm = world
        .as_client(PmClient::connect)
        .unwrap()
        .with_control(Cap::from_handle(moved).assume_kind());
    let before = snapshot(&world);
    assert_eq!(
        world.request_with(client, &pm, PmRequest::Stop("db".into())),
        rejected(PmError::UnknownBadge(7))
    );
    world.run_for(ms(100));
    assert_eq!(snapshot(&world), before);
}

#[test]
fn the_capability_moves_to_another_task_which_can_then_use_it() {
    let mut world = booted();
    let client = world.client_task;
    let operator = spawn_task(&mut world, "operator");
    let control = world.give_control(client, CHILD_CONTROL_RIGHTS).unwrap();
    let stale = control.handle();
    // The client moves it with the ordinary kernel call, which needs
    // authority over the operator's task.
    world.as_client(|k| k.task_capability(operator)).unwrap();
    world
        .as_client(|k| KernelApi::delegate_capability(k, control.erase(), operator))
        .unwrap();
    assert!(pm_objects(&world, client).is_empty());
    let held = pm_objects(&world, operator);
    assert_eq!(held.len(), 1);
    let (handle, badge, rights) = held[0];
    assert_eq!((badge, rights), (CONTROL_BADGE, CHILD_CONTROL_RIGHTS));
    // The client's handle is dead...
    let pm = world
        .as_client(PmClient::connect)
        .unwrap()
        .with_control(Cap::from_handle(stale).assume_kind());
    let refused = world.request_with(client, &pm, PmRequest::Stop("app".into()));
    assert!(
        matches!(refused, Err(ClientError::Kernel(_))),
        "{refused:?}"
    );
    assert_eq!(world.info("app").state, LifecycleState::Running);
    // ...and the operator's works.
    let pm = world
        .kernel()
        .as_task(operator, PmClient::connect)
        .unwrap()
        .with_control(Cap::from_handle(handle).assume_kind());
    assert_eq!(
        service(world.request_with(operator, &pm, PmRequest::Stop("app".into()))).state,
        LifecycleState::Stopping
    );
    world.run_for(ms(100));
    assert_eq!(world.info("app").state, LifecycleState::Stopped);
}

#[test]
fn a_service_naming_pm_control_gets_a_fresh_capability_at_every_spawn_and_can_use_it() {
    let mut world = booted();
    let db = world.info("db");
    let db_task = db.task_id.unwrap();
    let held = pm_objects(&world, db_task);
    assert_eq!(held.len(), 1, "{held:?}");
    let (handle, badge, rights) = held[0];
    assert_eq!((badge, rights), (CONTROL_BADGE, CHILD_CONTROL_RIGHTS));
    assert_eq!(
        world
            .scenario
            .kernel()
            .capabilities_of(db_task)
            .iter()
            .filter(|(_, info)| info.kind() == CapKind::StorageObject)
            .count(),
        1
    );
    // A service that does not name it has none.
    let app_task = world.info("app").task_id.unwrap();
    assert!(pm_objects(&world, app_task).is_empty());
    // The service uses it like the console does.
    let pm = world
        .kernel()
        .as_task(db_task, PmClient::connect)
        .unwrap()
        .with_control(Cap::from_handle(handle).assume_kind());
    world
        .request_with(db_task, &pm, PmRequest::Stop("app".into()))
        .unwrap();
    world.run_for(ms(100));
    assert_eq!(world.info("app").state, LifecycleState::Stopped);
    // A new instance gets its own.
    world.request(PmRequest::Restart(DB.into())).unwrap();
    world.run_for(ms(100));
    let new_task = world.info("db").task_id.unwrap();
    assert_ne!(new_task, db_task);
    assert_eq!(pm_objects(&world, new_task).len(), 1);
}
