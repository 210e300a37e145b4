//! Capability lifecycle contracts: mint, lookup, grant, delegate, clone,
//! drop, validation and its audit trail.

mod common;

use common::*;
use pandagen_abi::error::Resource;
use pandagen_abi::{CapHandle, CapKind, ExitReason, KernelError, Rights, TaskId, TrustDomain};
use pandagen_core::{CapabilityEvent, CoreConfig, InvalidUse, KernelCore, Mintable, ObjectRef};

#[test]
fn minted_capabilities_are_usable_by_their_owner_only() {
    let mut k = kernel();
    let root = spawn(&mut k, "root");
    let other = spawn(&mut k, "other");
    let h = k
        .mint(root, Mintable::BootImage, Rights::READ | Rights::SPAWN, T0)
        .unwrap();
    let info = k
        .lookup(root, h, CapKind::BootImage, Rights::SPAWN, T0)
        .unwrap();
    assert_eq!(info.object, ObjectRef::BootImage);
    assert!(k.audit_log().has_event(|e| matches!(
        e,
        CapabilityEvent::Granted { from: None, to, cap, .. } if *to == root && *cap == info.id
    )));
    // The same number in another task's space names nothing.
    assert_eq!(
        k.lookup(other, h, CapKind::BootImage, Rights::NONE, T0),
        Err(KernelError::InvalidCapability)
    );
    assert!(k.audit_log().has_event(|e| matches!(
        e,
        CapabilityEvent::InvalidUseAttempt { task, reason: InvalidUse::NoSuchCapability, .. } if *task == other
    )));
    k.check_invariants().unwrap();
}

#[test]
fn lookup_checks_kind_and_rights_and_audits_refusals() {
    let mut k = kernel();
    let t = spawn(&mut k, "t");
    let h = k.mint(t, Mintable::KernelInfo, Rights::READ, T0).unwrap();
    assert_eq!(
        k.lookup(t, h, CapKind::Channel, Rights::NONE, T0),
        Err(KernelError::WrongCapabilityKind {
            expected: CapKind::Channel,
            found: CapKind::KernelInfo
        })
    );
    assert_eq!(
        k.lookup(t, h, CapKind::KernelInfo, Rights::WRITE, T0),
        Err(KernelError::InsufficientAuthority)
    );
    assert_eq!(
        k.lookup(
            t,
            CapHandle::from_raw(0xdead_beef),
            CapKind::KernelInfo,
            Rights::NONE,
            T0
        ),
        Err(KernelError::InvalidCapability)
    );
    assert_eq!(invalid_uses(&k), 3);
    assert!(k
        .lookup(t, h, CapKind::KernelInfo, Rights::READ, T0)
        .is_ok());
    assert_eq!(invalid_uses(&k), 3);
}

#[test]
fn a_dead_caller_can_use_nothing() {
    let mut k = kernel();
    let t = spawn(&mut k, "t");
    let h = k.mint(t, Mintable::KernelInfo, Rights::READ, T0).unwrap();
    k.terminate(t, ExitReason::Normal, T0).unwrap();
    assert_eq!(
        k.lookup(t, h, CapKind::KernelInfo, Rights::NONE, T0),
        Err(KernelError::TaskNotFound(t))
    );
    assert_eq!(k.create_channel(t, T0), Err(KernelError::TaskNotFound(t)));
}

#[test]
fn grant_copies_and_needs_the_grant_right() {
    let mut k = kernel();
    let a = spawn(&mut k, "a");
    let b = spawn(&mut k, "b");
    let h = k
        .mint(
            a,
            Mintable::StorageObject(pandagen_core::ServiceObject::new(
                pandagen_abi::ServiceId::from_raw(0),
                9,
            )),
            Rights::READ | Rights::GRANT,
            T0,
        )
        .unwrap();
    let source = k.inspect(a, h).unwrap();
    assert_eq!(
        k.grant(a, h, b, T0),
        Err(KernelError::InsufficientAuthority),
        "a task id alone confers nothing"
    );
    assert_eq!(k.cap_count(b), 0);
    assert!(k.audit_log().has_event(|e| matches!(
        e,
        CapabilityEvent::InvalidUseAttempt {
            reason: pandagen_core::InvalidUse::NoAuthorityOver(t),
            ..
        } if *t == b
    )));
    authorise(&mut k, a, b);
    let copy = k.grant(a, h, b, T0).unwrap();
    let info = k
        .lookup(b, copy, CapKind::StorageObject, Rights::READ, T0)
        .unwrap();
    assert_ne!(info.id, source.id, "a grant is a new capability");
    assert_eq!(info.rights, source.rights);
    assert!(
        k.lookup(a, h, CapKind::StorageObject, Rights::READ, T0)
            .is_ok(),
        "the granter keeps its own"
    );
    assert!(k.audit_log().has_event(|e| matches!(
        e,
        CapabilityEvent::Granted { from: Some(f), to, source: Some(s), .. }
            if *f == a && *to == b && *s == source.id
    )));
    let no_grant = k
        .mint(
            a,
            Mintable::StorageObject(pandagen_core::ServiceObject::new(
                pandagen_abi::ServiceId::from_raw(0),
                1,
            )),
            Rights::READ,
            T0,
        )
        .unwrap();
    assert_eq!(
        k.grant(a, no_grant, b, T0),
        Err(KernelError::InsufficientAuthority)
    );
    assert_eq!(k.cap_count(b), 1);
    k.check_invariants().unwrap();
}

#[test]
fn grant_to_a_dead_task_fails_and_changes_nothing() {
    let mut k = kernel();
    let a = spawn(&mut k, "a");
    let b = spawn(&mut k, "b");
    authorise(&mut k, a, b);
    k.terminate(b, ExitReason::Normal, T0).unwrap();
    let h = k.mint(a, Mintable::KernelInfo, Rights::ALL, T0).unwrap();
    assert_eq!(k.grant(a, h, b, T0), Err(KernelError::TaskNotFound(b)));
    assert_eq!(k.delegate(a, h, b, T0), Err(KernelError::TaskNotFound(b)));
    assert!(k.inspect(a, h).is_some());
}

#[test]
fn delegate_moves_and_the_source_loses_access() {
    let mut k = kernel();
    let a = spawn(&mut k, "a");
    let b = spawn(&mut k, "b");
    let h = k.create_channel(a, T0).unwrap();
    let id = k.inspect(a, h).unwrap().id;
    assert_eq!(
        k.delegate(a, h, b, T0),
        Err(KernelError::InsufficientAuthority),
        "a task id alone confers nothing"
    );
    assert!(k.inspect(a, h).is_some(), "a refused move changes nothing");
    authorise(&mut k, a, b);
    let moved = k.delegate(a, h, b, T0).unwrap();
    assert_eq!(
        k.inspect(b, moved).unwrap().id,
        id,
        "a move keeps the identity"
    );
    assert_eq!(
        k.lookup(a, h, CapKind::Channel, Rights::NONE, T0),
        Err(KernelError::InvalidCapability)
    );
    assert_eq!(
        k.send(a, h, vec![1], &[], T0),
        Err(KernelError::InvalidCapability)
    );
    assert!(k.audit_log().has_event(|e| matches!(
        e,
        CapabilityEvent::Delegated { cap, from, to, via: None, .. } if *cap == id && *from == a && *to == b
    )));
    // The source cannot move it again either.
    assert_eq!(k.delegate(a, h, b, T0), Err(KernelError::InvalidCapability));
    assert_eq!(k.cap_count(a), 1, "only its task capability for b");
    assert_eq!(k.cap_count(b), 1);
    k.check_invariants().unwrap();
}

#[test]
fn delegate_needs_the_transfer_right() {
    let mut k = kernel();
    let a = spawn(&mut k, "a");
    let b = spawn(&mut k, "b");
    let h = k
        .mint(a, Mintable::KernelInfo, Rights::READ | Rights::GRANT, T0)
        .unwrap();
    assert_eq!(
        k.delegate(a, h, b, T0),
        Err(KernelError::InsufficientAuthority)
    );
    assert!(k.inspect(a, h).is_some());
    assert_eq!(k.cap_count(b), 0);
}

#[test]
fn delegate_all_is_all_or_nothing() {
    let mut k = kernel();
    let a = spawn(&mut k, "a");
    let b = spawn(&mut k, "b");
    let x = k.mint(a, Mintable::KernelInfo, Rights::ALL, T0).unwrap();
    let y = k.mint(a, Mintable::BootImage, Rights::READ, T0).unwrap();
    assert_eq!(
        k.delegate_all(a, &[x, y], b, T0),
        Err(KernelError::InsufficientAuthority)
    );
    assert_eq!(
        k.delegate_all(a, &[x, x], b, T0),
        Err(KernelError::InvalidCapability)
    );
    assert_eq!((k.cap_count(a), k.cap_count(b)), (2, 0));
    let z = k.mint(a, Mintable::SerialInput, Rights::ALL, T0).unwrap();
    let moved = k.delegate_all(a, &[x, z], b, T0).unwrap();
    assert_eq!(moved.len(), 2);
    assert_eq!(
        k.inspect(b, moved[1]).unwrap().object,
        ObjectRef::SerialInput
    );
    assert_eq!((k.cap_count(a), k.cap_count(b)), (1, 2));
    k.check_invariants().unwrap();
}

#[test]
fn clone_attenuates_and_is_audited() {
    let mut k = kernel();
    let a = spawn(&mut k, "a");
    let h = k.create_channel(a, T0).unwrap();
    let source = k.inspect(a, h).unwrap();
    // Asking for rights the source lacks yields only the intersection.
    let c = k
        .clone_cap(a, h, Rights::SEND | Rights::WRITE | Rights::CONTROL, T0)
        .unwrap();
    let info = k.inspect(a, c).unwrap();
    assert_eq!(info.rights, Rights::SEND);
    assert_eq!(info.object, source.object);
    assert_ne!(info.id, source.id);
    assert!(k.audit_log().has_event(|e| matches!(
        e,
        CapabilityEvent::Cloned { cap, source: s, rights, .. }
            if *cap == info.id && *s == source.id && *rights == Rights::SEND
    )));
    // A send-only clone cannot be cloned further (no GRANT), nor receive.
    assert_eq!(
        k.clone_cap(a, c, Rights::ALL, T0),
        Err(KernelError::InsufficientAuthority)
    );
    assert_eq!(k.receive(a, c, T0), Err(KernelError::InsufficientAuthority));
    assert!(k.send(a, c, vec![], &[], T0).is_ok());
    k.check_invariants().unwrap();
}

#[test]
fn dropped_handles_are_stale_even_after_slot_reuse() {
    let mut k = kernel();
    let a = spawn(&mut k, "a");
    let h = k.mint(a, Mintable::KernelInfo, Rights::READ, T0).unwrap();
    let id = k.inspect(a, h).unwrap().id;
    k.drop_cap(a, h, T0).unwrap();
    assert!(k.audit_log().has_event(|e| matches!(
        e, CapabilityEvent::Dropped { cap, owner } if *cap == id && *owner == a
    )));
    assert_eq!(
        k.lookup(a, h, CapKind::KernelInfo, Rights::NONE, T0),
        Err(KernelError::InvalidCapability)
    );
    let reused = k.mint(a, Mintable::KernelInfo, Rights::READ, T0).unwrap();
    assert_eq!(reused.index(), h.index(), "the freed slot is reused");
    assert_ne!(reused.generation(), h.generation());
    assert_eq!(
        k.lookup(a, h, CapKind::KernelInfo, Rights::NONE, T0),
        Err(KernelError::InvalidCapability)
    );
    assert_eq!(k.drop_cap(a, h, T0), Err(KernelError::InvalidCapability));
    assert!(k.audit_log().has_event(|e| matches!(
        e,
        CapabilityEvent::InvalidUseAttempt { reason: InvalidUse::StaleHandle, handle, .. } if *handle == h
    )));
    assert!(k
        .lookup(a, reused, CapKind::KernelInfo, Rights::READ, T0)
        .is_ok());
}

#[test]
fn cross_domain_moves_are_allowed_and_audited() {
    let mut k = kernel();
    let core1 = spawn_in(&mut k, "core1", TrustDomain::core());
    let core2 = spawn_in(&mut k, "core2", TrustDomain::core());
    let user = spawn_in(&mut k, "user", TrustDomain::user());
    authorise(&mut k, core1, core2);
    authorise(&mut k, core2, user);
    let h = k
        .mint(core1, Mintable::KernelInfo, Rights::ALL, T0)
        .unwrap();
    let h = k.delegate(core1, h, core2, T0).unwrap();
    assert!(!k
        .audit_log()
        .has_event(|e| matches!(e, CapabilityEvent::CrossDomainDelegation { .. })));
    k.delegate(core2, h, user, T0).unwrap();
    let audit = k.audit_log();
    assert!(audit.has_event(|e| matches!(
        e,
        CapabilityEvent::CrossDomainDelegation { from_domain, to_domain, .. }
            if from_domain == "core" && to_domain == "user"
    )));
    // Grants across domains are recorded the same way.
    let g = k
        .mint(core1, Mintable::BootImage, Rights::GRANT, T0)
        .unwrap();
    authorise(&mut k, core1, user);
    k.grant(core1, g, user, T0).unwrap();
    assert_eq!(k.audit_log().counts().cross_domain, 2);
}

#[test]
fn list_caps_shows_kind_rights_and_handles() {
    let mut k = kernel();
    let a = spawn(&mut k, "a");
    let r = k
        .mint(a, Mintable::ServiceRegistry, Rights::REGISTER, T0)
        .unwrap();
    let c = k.create_channel(a, T0).unwrap();
    let caps = k.list_caps(a).unwrap();
    assert_eq!(caps.len(), 2);
    assert_eq!(caps[0].0, r);
    assert_eq!(caps[0].1.kind(), CapKind::ServiceRegistry);
    assert_eq!(caps[1].0, c);
    assert_eq!(
        caps[1].1.rights,
        Rights::SEND | Rights::RECEIVE | Rights::GRANT | Rights::TRANSFER
    );
    assert_eq!(
        k.find_cap(a, CapKind::ServiceRegistry, Rights::REGISTER),
        Some(r)
    );
    assert_eq!(k.find_cap(a, CapKind::ServiceRegistry, Rights::ALL), None);
    assert_eq!(
        k.list_caps(TaskId::from_raw(999)),
        Err(KernelError::TaskNotFound(TaskId::from_raw(999)))
    );
}

#[test]
fn capability_spaces_are_bounded() {
    let mut k = KernelCore::new(CoreConfig {
        max_caps_per_task: 3,
        ..CoreConfig::default()
    });
    let a = spawn(&mut k, "a");
    let b = spawn(&mut k, "b");
    authorise(&mut k, a, b);
    let x = k.mint(a, Mintable::KernelInfo, Rights::ALL, T0).unwrap();
    k.mint(a, Mintable::KernelInfo, Rights::ALL, T0).unwrap();
    let full = Err(KernelError::ResourceExhausted(Resource::CapabilitySlots));
    assert_eq!(k.mint(a, Mintable::KernelInfo, Rights::ALL, T0), full);
    assert_eq!(k.clone_cap(a, x, Rights::ALL, T0), full);
    assert_eq!(k.create_channel(a, T0), full);
    k.grant(a, x, b, T0).unwrap();
    k.grant(a, x, b, T0).unwrap();
    k.grant(a, x, b, T0).unwrap();
    assert_eq!(k.grant(a, x, b, T0), full);
    assert_eq!(k.delegate(a, x, b, T0), full);
    k.check_invariants().unwrap();
}

#[test]
fn audit_counts_track_each_operation() {
    let mut k = kernel();
    let a = spawn(&mut k, "a");
    let b = spawn(&mut k, "b");
    authorise(&mut k, a, b); // granted 1
    let h = k.create_channel(a, T0).unwrap(); // granted 2
    let c = k
        .clone_cap(a, h, Rights::SEND | Rights::TRANSFER, T0)
        .unwrap(); // cloned 1
    k.grant(a, h, b, T0).unwrap(); // granted 3
    k.delegate(a, c, b, T0).unwrap(); // delegated 1
    k.drop_cap(a, h, T0).unwrap(); // dropped 1
    let _ = k.drop_cap(a, h, T0); // invalid use 1
    k.terminate(b, ExitReason::Normal, T0).unwrap(); // invalidated 2
    let counts = k.audit_log().counts();
    assert_eq!(
        (
            counts.granted,
            counts.cloned,
            counts.delegated,
            counts.dropped,
            counts.invalid_use_attempts,
            counts.invalidated
        ),
        (3, 1, 1, 1, 1, 2)
    );
    assert_eq!(k.channel_count(), 0, "every reference is gone");
    k.check_invariants().unwrap();
}

#[test]
fn one_capability_has_a_complete_trail() {
    let mut k = kernel();
    let a = spawn(&mut k, "a");
    let b = spawn_in(&mut k, "b", TrustDomain::core());
    authorise(&mut k, a, b);
    let h = k.mint(a, Mintable::KernelInfo, Rights::ALL, T0).unwrap();
    let id = k.inspect(a, h).unwrap().id;
    let h = k.delegate(a, h, b, at(1)).unwrap();
    let _ = k.lookup(a, h, CapKind::KernelInfo, Rights::NONE, at(2)); // not a's any more
    k.drop_cap(b, h, at(3)).unwrap();
    let trail = k.audit_log().events_for_cap(id);
    assert_eq!(trail.len(), 4, "{trail:?}");
    assert!(matches!(
        trail[0],
        CapabilityEvent::Granted { from: None, .. }
    ));
    assert!(matches!(trail[1], CapabilityEvent::Delegated { .. }));
    assert!(matches!(
        trail[2],
        CapabilityEvent::CrossDomainDelegation { .. }
    ));
    assert!(matches!(trail[3], CapabilityEvent::Dropped { .. }));
    let times: Vec<u64> = k.audit_log().records().map(|r| r.at.as_nanos()).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "records are in time order"
    );
}

#[test]
fn the_audit_ring_is_bounded_but_totals_are_exact() {
    let mut k = KernelCore::new(CoreConfig {
        audit_capacity: 8,
        ..CoreConfig::default()
    });
    let a = spawn(&mut k, "a");
    for _ in 0..20 {
        let h = k.mint(a, Mintable::KernelInfo, Rights::ALL, T0).unwrap();
        k.drop_cap(a, h, T0).unwrap();
    }
    let log = k.audit_log();
    assert_eq!(log.len(), 8);
    assert_eq!(log.dropped(), 32);
    assert_eq!((log.counts().granted, log.counts().dropped), (20, 20));
}
