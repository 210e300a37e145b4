//! Service registry contracts.

mod common;

use common::*;
use pandagen_abi::{CapKind, ExitReason, KernelError, Rights, ServiceId};
use pandagen_core::Mintable;

const SVC: ServiceId = ServiceId::from_raw(1);

#[test]
fn registering_needs_a_registry_capability_and_a_receive_right() {
    let mut k = kernel();
    let s = spawn(&mut k, "server");
    let chan = k.create_channel(s, T0).unwrap();
    let info = k.mint(s, Mintable::KernelInfo, Rights::ALL, T0).unwrap();
    assert!(matches!(
        k.register_service(s, info, SVC, chan, T0),
        Err(KernelError::WrongCapabilityKind {
            expected: CapKind::ServiceRegistration,
            ..
        })
    ));
    let weak = k
        .mint(s, Mintable::ServiceRegistry, Rights::READ, T0)
        .unwrap();
    assert_eq!(
        k.register_service(s, weak, SVC, chan, T0),
        Err(KernelError::InsufficientAuthority)
    );
    let reg = k
        .mint(s, Mintable::ServiceRegistry, Rights::REGISTER, T0)
        .unwrap();
    let send_only = k.clone_cap(s, chan, Rights::SEND, T0).unwrap();
    assert_eq!(
        k.register_service(s, reg, SVC, send_only, T0),
        Err(KernelError::InsufficientAuthority)
    );
    assert_eq!(invalid_uses(&k), 3);
    k.register_service(s, reg, SVC, chan, T0).unwrap();
    assert_eq!(k.service(SVC).unwrap().owner, s);
    k.check_invariants().unwrap();
}

#[test]
fn duplicate_registration_is_refused() {
    let mut k = kernel();
    let s = spawn(&mut k, "server");
    let reg = k
        .mint(s, Mintable::ServiceRegistry, Rights::REGISTER, T0)
        .unwrap();
    let a = k.create_channel(s, T0).unwrap();
    let b = k.create_channel(s, T0).unwrap();
    k.register_service(s, reg, SVC, a, T0).unwrap();
    assert_eq!(
        k.register_service(s, reg, SVC, b, T0),
        Err(KernelError::ServiceAlreadyRegistered(SVC))
    );
    assert_eq!(k.services().len(), 1);
}

#[test]
fn lookup_yields_a_new_send_only_capability_each_time() {
    let mut k = kernel();
    let s = spawn(&mut k, "server");
    let c = spawn(&mut k, "client");
    let chan = serve(&mut k, s, SVC);
    assert_eq!(
        k.lookup_service(c, ServiceId::from_raw(2), T0),
        Err(KernelError::ServiceNotFound(ServiceId::from_raw(2)))
    );
    let h = k.lookup_service(c, SVC, T0).unwrap();
    assert_eq!(k.inspect(c, h).unwrap().rights, Rights::SEND);
    let again = k.lookup_service(c, SVC, T0).unwrap();
    assert_ne!(again, h, "every lookup is its own capability");
    assert_eq!(k.cap_count(c), 2);
    // Dropping one leaves the other usable: no caller's drop can take a
    // capability away from another part of the same task.
    k.drop_cap(c, again, T0).unwrap();
    assert_eq!(k.cap_count(c), 1);
    k.send(c, h, b"hello".to_vec(), &[], T0).unwrap();
    let m = k.receive(s, chan, T0).unwrap().unwrap();
    assert_eq!((m.sender, m.bytes), (c, b"hello".to_vec()));
    assert_eq!(k.receive(c, h, T0), Err(KernelError::InsufficientAuthority));
    k.check_invariants().unwrap();
}

#[test]
fn a_dead_tasks_registrations_are_removed() {
    let mut k = kernel();
    let s = spawn(&mut k, "server");
    let c = spawn(&mut k, "client");
    serve(&mut k, s, SVC);
    let h = k.lookup_service(c, SVC, T0).unwrap();
    k.terminate(
        s,
        ExitReason::Failure {
            error: "crash".into(),
        },
        T0,
    )
    .unwrap();
    assert_eq!(
        k.lookup_service(c, SVC, T0),
        Err(KernelError::ServiceNotFound(SVC))
    );
    assert!(k.services().is_empty());
    assert!(matches!(
        k.send(c, h, vec![], &[], T0),
        Err(KernelError::SendFailed(_))
    ));
    k.check_invariants().unwrap();
    // A restarted server can take the name again.
    let s2 = spawn(&mut k, "server2");
    serve(&mut k, s2, SVC);
    let h2 = k.lookup_service(c, SVC, T0).unwrap();
    assert_ne!(h2, h);
    k.check_invariants().unwrap();
}

#[test]
fn a_closed_channels_registrations_are_removed() {
    let mut k = kernel();
    let s = spawn(&mut k, "server");
    let chan = serve(&mut k, s, SVC);
    k.drop_cap(s, chan, T0).unwrap();
    assert!(k.service(SVC).is_none());
    assert_eq!(k.channel_count(), 0);
    k.check_invariants().unwrap();
}

#[test]
fn only_the_owner_can_unregister() {
    let mut k = kernel();
    let s = spawn(&mut k, "server");
    let other = spawn(&mut k, "other");
    serve(&mut k, s, SVC);
    assert_eq!(
        k.unregister_service(other, SVC),
        Err(KernelError::InsufficientAuthority)
    );
    k.unregister_service(s, SVC).unwrap();
    assert_eq!(
        k.unregister_service(s, SVC),
        Err(KernelError::ServiceNotFound(SVC))
    );
    k.check_invariants().unwrap();
}

/// A registry holder mints a registration for one id and moves it into
/// the task that will serve it; that task can register its id and no other,
/// so it can neither take another service's id nor mint that service's
/// object capabilities.
#[test]
fn a_registration_names_one_id_and_cannot_take_another() {
    let mut k = kernel();
    let pm = spawn(&mut k, "pm");
    let svc = spawn(&mut k, "svc");
    let registry = k
        .mint(
            pm,
            Mintable::ServiceRegistry,
            Rights::REGISTER | Rights::GRANT,
            T0,
        )
        .unwrap();
    let minted = k.mint_registration(pm, registry, SVC, T0).unwrap();
    let info = k.inspect(pm, minted).unwrap();
    assert_eq!(info.kind(), CapKind::ServiceRegistration);
    assert_eq!(info.rights, Rights::REGISTER | Rights::TRANSFER);
    let held = k.delegate_all(pm, &[minted], svc, T0).unwrap()[0];
    let chan = k.create_channel(svc, T0).unwrap();
    let other = ServiceId::from_raw(2);
    let before = invalid_uses(&k);
    assert_eq!(
        k.register_service(svc, held, other, chan, T0),
        Err(KernelError::InsufficientAuthority),
        "squatting another id is refused"
    );
    assert_eq!(invalid_uses(&k), before + 1);
    assert!(k.service(other).is_none());
    assert_eq!(
        k.mint_object_cap(svc, other, 1, Rights::READ, T0),
        Err(KernelError::ServiceNotFound(other))
    );
    assert_eq!(k.find_registration(svc, other), None);
    assert_eq!(k.find_registration(svc, SVC), Some(held));
    k.register_service(svc, held, SVC, chan, T0).unwrap();
    assert_eq!(k.service_registrant(SVC), Ok(svc));
    assert_eq!(
        k.service_registrant(other),
        Err(KernelError::ServiceNotFound(other))
    );
    k.check_invariants().unwrap();
}

#[test]
fn minting_a_registration_needs_register_and_grant_on_the_registry() {
    let mut k = kernel();
    let pm = spawn(&mut k, "pm");
    let no_grant = k
        .mint(pm, Mintable::ServiceRegistry, Rights::REGISTER, T0)
        .unwrap();
    assert_eq!(
        k.mint_registration(pm, no_grant, SVC, T0),
        Err(KernelError::InsufficientAuthority)
    );
    let full = k
        .mint(
            pm,
            Mintable::ServiceRegistry,
            Rights::REGISTER | Rights::GRANT,
            T0,
        )
        .unwrap();
    let own = k.mint_registration(pm, full, SVC, T0).unwrap();
    // A registration cannot mint further registrations.
    assert!(matches!(
        k.mint_registration(pm, own, ServiceId::from_raw(2), T0),
        Err(KernelError::WrongCapabilityKind { .. })
    ));
    assert_eq!(k.cap_count(pm), 3);
}
