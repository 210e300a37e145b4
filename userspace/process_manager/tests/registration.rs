//! Registration is bound to the instance the supervisor started: a
//! service's `registry` capability names its own id only, and a service is
//! ready only when that instance's task holds the registration.

mod support;

use pandagen_abi::{CapKind, ChannelId, Duration, KernelApi, KernelError, ServiceId};
use pandagen_process_manager::{InstanceEnd, LifecycleState, SupervisorEvent};
use support::{Behaviour, World};

const DB: ServiceId = ServiceId::from_raw(20);

/// Another task holding a registration for the id (here handed to it by
/// the harness, as if the instance had given its own away) registers it
/// while the real instance does not: the supervisor does not count the
/// impostor's registration as the service being ready.
#[test]
fn an_impostor_registrant_does_not_make_a_service_ready() {
    let mut world = World::scripted(
        "[db]\nid = 20\nrestart = never\ncapabilities = registry\n",
        |s| {
            s.always("db", Behaviour::NeverRegister);
        },
    );
    world.run_for(Duration::from_millis(5));
    let impostor = world.client_task;
    let root = world.kernel().root_task();
    let registration = world.kernel().registration_for_child(DB).unwrap();
    world
        .kernel()
        .delegate_capability(registration, root, impostor)
        .unwrap();
    world
        .as_client(|k| {
            let channel: ChannelId = k.create_channel()?;
            k.register_service(DB, channel)
        })
        .unwrap();
    world.run_for(Duration::from_millis(100));
    let info = world.info("db");
    assert_ne!(info.state, LifecycleState::Running);
    assert_eq!(info.last_end, Some(InstanceEnd::NeverReady));
    assert!(world.events().iter().any(|(_, e)| matches!(
        e,
        SupervisorEvent::ForeignRegistrant { service, task } if *service == DB && *task == impostor
    )));
}

/// The instance's own registration cannot take another service's id.
#[test]
fn a_services_registration_names_only_its_own_id() {
    let mut world = World::new("[db]\nid = 20\ncapabilities = registry\n");
    world.run_for(Duration::from_millis(20));
    assert_eq!(world.info("db").state, LifecycleState::Running);
    let db = world.info("db").task_id.unwrap();
    let caps = world.kernel().capabilities_of(db);
    let registration = caps
        .iter()
        .find(|(_, info)| info.kind() == CapKind::ServiceRegistration)
        .map(|(h, _)| *h)
        .expect("db holds its registration");
    let kernel = world.kernel();
    let other = ServiceId::from_raw(21);
    let refused = kernel.as_task(db, |k| {
        let channel = k.create_channel()?;
        k.register_service(other, channel)
    });
    assert_eq!(refused, Err(KernelError::InsufficientAuthority));
    assert!(kernel
        .capabilities_of(db)
        .iter()
        .any(|(h, _)| *h == registration));
    assert_eq!(kernel.service_registrant(DB), Ok(db));
}

/// While a service is down and being restarted, another service holding
/// its own registration cannot take the id; the restarted instance gets it
/// back.
#[test]
fn a_restarting_services_id_cannot_be_taken() {
    let mut world = World::scripted(
        "[db]\nid = 20\nrestart = always\ncapabilities = registry\n\
         [other]\nid = 21\ncapabilities = registry\n",
        |s| {
            s.then("db", Behaviour::CrashAfter(Duration::from_millis(30)));
        },
    );
    world.run_for(Duration::from_millis(20));
    let first = world.info("db").task_id.unwrap();
    let other = world.info("other").task_id.unwrap();
    assert_eq!(world.kernel().service_registrant(DB), Ok(first));
    // Step until db has died and its id is free.
    let mut squatted = Vec::new();
    for _ in 0..200 {
        world.run_for(Duration::from_millis(1));
        if world.kernel().service_registrant(DB).is_err() {
            squatted.push(world.kernel().as_task(other, |k| {
                let channel = k.create_channel()?;
                k.register_service(DB, channel)
            }));
        }
        if world.info("db").task_id != Some(first)
            && world.info("db").state == LifecycleState::Running
        {
            break;
        }
    }
    assert!(!squatted.is_empty(), "the id was never free");
    assert!(squatted
        .iter()
        .all(|r| *r == Err(KernelError::InsufficientAuthority)));
    let second = world.info("db").task_id.unwrap();
    assert_ne!(second, first);
    assert_eq!(world.info("db").state, LifecycleState::Running);
    assert_eq!(world.kernel().service_registrant(DB), Ok(second));
}
