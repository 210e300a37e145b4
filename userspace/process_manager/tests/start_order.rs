//! Dependency-ordered start under the SimulatedKernel.

mod support;

use pandagen_abi::{CapKind, Duration, Rights, ServiceId};
use pandagen_core::{CapabilityEvent, ObjectRef};
use pandagen_process_manager::{LifecycleState, SupervisorEvent};
use support::{Behaviour, World};

const CHAIN: &str = "
[web]
id = 12
capabilities = registry
depends = db, cache

[db]
id = 10
capabilities = registry

[cache]
id = 11
capabilities = registry
depends = db
";

#[test]
fn services_start_in_dependency_order_each_after_its_dependencies_run() {
    let mut world = World::new(CHAIN);
    world.run_for(Duration::from_millis(100));
    for name in ["db", "cache", "web"] {
        assert_eq!(world.info(name).state, LifecycleState::Running, "{name}");
    }
    let events = world.events();
    let spawned: Vec<ServiceId> = events
        .iter()
        .filter_map(|(_, e)| match e {
            SupervisorEvent::Spawned { service, .. } => Some(*service),
            _ => None,
        })
        .collect();
    assert_eq!(
        spawned,
        [10, 11, 12].map(ServiceId::from_raw),
        "db, then cache, then web"
    );
    // Each spawn happens only after every dependency reached Running.
    let position = |wanted: &dyn Fn(&SupervisorEvent) -> bool| {
        events.iter().position(|(_, e)| wanted(e)).unwrap()
    };
    let running = |id: u64| {
        position(&move |e: &SupervisorEvent| {
            matches!(e, SupervisorEvent::Transition { service, to: LifecycleState::Running, .. }
                if *service == ServiceId::from_raw(id))
        })
    };
    let spawn = |id: u64| {
        position(
            &move |e: &SupervisorEvent| matches!(e, SupervisorEvent::Spawned { service, .. } if *service == ServiceId::from_raw(id)),
        )
    };
    assert!(running(10) < spawn(11));
    assert!(running(10) < spawn(12) && running(11) < spawn(12));
}

#[test]
fn a_dependency_that_never_starts_holds_its_dependents_back() {
    let text = CHAIN.replace("[db]\nid = 10\n", "[db]\nid = 10\nrestart = never\n");
    let mut world = World::scripted(&text, |s| {
        s.always("db", Behaviour::CrashAtStart);
    });
    world.run_for(Duration::from_secs(1));
    assert_eq!(world.info("db").state, LifecycleState::Failed);
    for name in ["cache", "web"] {
        let info = world.info(name);
        assert_eq!(info.state, LifecycleState::Stopped, "{name}");
        assert!(info.execution_id.is_none(), "{name} was never spawned");
    }
}

#[test]
fn every_service_registers_and_answers_once_running() {
    let mut world = World::new(CHAIN);
    world.run_for(Duration::from_millis(100));
    for id in [10, 11, 12] {
        world.ping(ServiceId::from_raw(id)).unwrap();
    }
}

#[test]
fn each_service_gets_exactly_its_named_capabilities_and_crossing_a_trust_domain_is_audited() {
    let mut world = World::new(
        "[plain]\nid = 13\nready = spawned\ntrust = core\n\
         [worker]\nid = 14\ncapabilities = registry, kernel-info\ntrust = sandbox\n",
    );
    world.run_for(Duration::from_millis(50));
    let plain = world.info("plain").task_id.unwrap();
    let worker = world.info("worker").task_id.unwrap();
    // `plain` asked for nothing and got nothing.
    assert!(world.kernel().capabilities_of(plain).is_empty());
    // `worker` holds its two copies (and the channel it created), none
    // with GRANT: it cannot mint copies for others.
    let kinds: Vec<CapKind> = world
        .kernel()
        .capabilities_of(worker)
        .iter()
        .map(|(_, info)| info.kind())
        .collect();
    // `registry` is a registration for the worker's own id, not the
    // whole registry.
    assert!(!kinds.contains(&CapKind::ServiceRegistry));
    let registrations: Vec<ObjectRef> = world
        .kernel()
        .capabilities_of(worker)
        .iter()
        .filter(|(_, info)| info.kind() == CapKind::ServiceRegistration)
        .map(|(_, info)| info.object)
        .collect();
    assert_eq!(
        registrations,
        [ObjectRef::ServiceRegistration(ServiceId::from_raw(14))]
    );
    assert!(kinds.contains(&CapKind::KernelInfo));
    assert!(!kinds.contains(&CapKind::BootImage) && !kinds.contains(&CapKind::SerialInput));
    for (_, info) in world.kernel().capabilities_of(worker) {
        if info.kind() != CapKind::Channel {
            assert!(!info.rights.contains(Rights::GRANT), "{info:?}");
        }
    }
    // The process manager runs in "core"; moving the copies into a
    // "sandbox" task is allowed and audited.
    assert!(world.kernel().audit_log().has_event(|e| matches!(
        e,
        CapabilityEvent::CrossDomainDelegation { to, from_domain, to_domain, .. }
            if *to == worker && from_domain == "core" && to_domain == "sandbox"
    )));
}
