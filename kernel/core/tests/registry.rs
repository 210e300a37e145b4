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
            expected: CapKind::ServiceRegistry,
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
fn lookup_yields_a_reused_send_only_capability() {
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
    assert_eq!(
        k.lookup_service(c, SVC, T0).unwrap(),
        h,
        "no slot leak on repeated lookups"
    );
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
