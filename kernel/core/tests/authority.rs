//! Authority: what a handle lets its holder do, checked before any work,
//! and exactly what the root task starts with.

mod common;

use common::*;
use pandagen_abi::syscall::ROOT_CAPABILITIES;
use pandagen_abi::{CapKind, IdentityKind, KernelError, Priority, Rights, TrustDomain};
use pandagen_core::{CapabilityEvent, InvalidUse, Mintable, SchedState, DEVICE_RIGHTS};

#[test]
fn a_send_only_handle_is_refused_for_receiving_and_the_refusal_is_audited() {
    let mut k = kernel();
    let owner = spawn(&mut k, "owner");
    let peer = spawn(&mut k, "peer");
    let chan = k.create_channel(owner, T0).unwrap();
    let weak = k
        .clone_cap(owner, chan, Rights::SEND | Rights::TRANSFER, T0)
        .unwrap();
    authorise(&mut k, owner, peer);
    let peer_send = k.delegate(owner, weak, peer, T0).unwrap();
    k.send(owner, chan, b"secret".to_vec(), &[], T0).unwrap();

    let before = invalid_uses(&k);
    assert_eq!(
        k.check_receive(peer, peer_send, T0),
        Err(KernelError::InsufficientAuthority)
    );
    assert_eq!(invalid_uses(&k), before + 1, "the refusal is audited");
    assert!(k.audit_log().has_event(|e| matches!(
        e,
        CapabilityEvent::InvalidUseAttempt {
            task,
            handle,
            reason: InvalidUse::MissingRights(_),
            ..
        } if *task == peer && *handle == peer_send
    )));
    // Nor can the peer take the message some other way.
    assert_eq!(
        k.receive(peer, peer_send, T0),
        Err(KernelError::InsufficientAuthority)
    );
    assert_eq!(
        k.discard_next(peer, peer_send, T0),
        Err(KernelError::InsufficientAuthority)
    );
    assert_eq!(
        k.receive_or_block(peer, peer_send, None, T0),
        Err(KernelError::InsufficientAuthority)
    );
    assert_eq!(k.task_state(peer), Some(SchedState::Ready), "never blocked");

    // The holder of the receive right passes the same check, which
    // changes nothing: the message is still there.
    let audited = k.audit_log().total();
    assert_eq!(k.check_receive(owner, chan, T0), Ok(()));
    assert_eq!(k.audit_log().total(), audited);
    let ch = k.channel_of(owner, chan, T0).unwrap();
    assert_eq!(k.queue_len(ch), Some(1));
    assert_eq!(
        k.receive(owner, chan, T0).unwrap().unwrap().bytes,
        b"secret"
    );
    k.check_invariants().unwrap();
}

#[test]
fn check_receive_refuses_other_kinds_forged_handles_and_dead_callers() {
    let mut k = kernel();
    let t = spawn(&mut k, "t");
    let info = k.mint(t, Mintable::KernelInfo, Rights::ALL, T0).unwrap();
    assert!(matches!(
        k.check_receive(t, info, T0),
        Err(KernelError::WrongCapabilityKind {
            expected: CapKind::Channel,
            found: CapKind::KernelInfo
        })
    ));
    let chan = k.create_channel(t, T0).unwrap();
    k.drop_cap(t, chan, T0).unwrap();
    assert_eq!(
        k.check_receive(t, chan, T0),
        Err(KernelError::InvalidCapability)
    );
    let other = spawn(&mut k, "other");
    let theirs = k.create_channel(other, T0).unwrap();
    k.terminate(t, pandagen_abi::ExitReason::Normal, T0)
        .unwrap();
    assert_eq!(
        k.check_receive(t, theirs, T0),
        Err(KernelError::TaskNotFound(t))
    );
    assert_eq!(invalid_uses(&k), 3);
}

#[test]
fn the_root_task_holds_exactly_the_root_capabilities_with_exactly_their_rights() {
    let mut k = kernel();
    let root = k.create_root_task("root", at(3)).unwrap();
    let transferable = Rights::GRANT | Rights::TRANSFER;
    let expected = [
        (CapKind::ServiceRegistry, Rights::REGISTER | transferable),
        (
            CapKind::BootImage,
            Rights::SPAWN | Rights::READ | transferable,
        ),
        (
            CapKind::KernelInfo,
            Rights::READ | Rights::CONTROL | transferable,
        ),
        (
            CapKind::SerialInput,
            Rights::READ | Rights::WRITE | Rights::RECEIVE | transferable,
        ),
        (
            CapKind::BlockDevice,
            Rights::READ | Rights::WRITE | transferable,
        ),
        (CapKind::IoPorts, DEVICE_RIGHTS),
        (CapKind::DeviceMemory, DEVICE_RIGHTS),
        (CapKind::Interrupt, DEVICE_RIGHTS),
        (CapKind::DmaMemory, DEVICE_RIGHTS),
    ];
    assert_eq!(
        expected.map(|(kind, _)| kind),
        ROOT_CAPABILITIES,
        "in the ABI's order"
    );
    let held: Vec<(CapKind, Rights)> = root
        .capabilities
        .iter()
        .map(|&h| {
            let info = k.inspect(root.task, h).unwrap();
            (info.kind(), info.rights)
        })
        .collect();
    assert_eq!(held, expected);
    assert_eq!(k.cap_count(root.task), expected.len(), "and nothing else");

    let info = k.task_info(root.task).unwrap();
    assert_eq!(info.kind, IdentityKind::System);
    assert_eq!(info.trust_domain, TrustDomain::core());
    assert_eq!(info.priority, Priority::HIGH);
    assert_eq!(info.parent, None);
    assert_eq!(info.execution, root.execution);
    let identity = k.identity(root.execution).unwrap();
    assert_eq!(identity.created_at_nanos, 3);
    assert_eq!(identity.name, "root");
    k.check_invariants().unwrap();
}

#[test]
fn a_send_or_receive_through_another_kind_is_refused_for_its_kind_before_its_rights() {
    // A capability of another kind that also lacks the right the use needs
    // is refused (and audited) for its kind, as every use check orders it.
    let mut k = kernel();
    let t = spawn(&mut k, "t");
    let info = k.mint(t, Mintable::KernelInfo, Rights::READ, T0).unwrap();
    let wrong_kind = Err(KernelError::WrongCapabilityKind {
        expected: CapKind::Channel,
        found: CapKind::KernelInfo,
    });
    assert_eq!(k.send(t, info, vec![1], &[], T0), wrong_kind);
    let handed = k.send_or_hand_off(t, info, &[1u8][..], &[], T0, |_| true);
    assert_eq!(handed.map(|_| ()), wrong_kind.map(|_| ()));
    assert_eq!(
        k.receive_or_block(t, info, None, T0).map(|_| ()),
        wrong_kind.map(|_| ())
    );
    assert_eq!(k.receive(t, info, T0).map(|_| ()), wrong_kind.map(|_| ()));
    let kinds_refused = k.audit_log().count_events(|e| {
        matches!(
            e,
            CapabilityEvent::InvalidUseAttempt {
                reason: InvalidUse::WrongKind { .. },
                ..
            }
        )
    });
    assert_eq!(kinds_refused, 4);

    // A channel capability without the right is refused for its rights.
    let ch = k.create_channel(t, T0).unwrap();
    let receive_only = k.clone_cap(t, ch, Rights::RECEIVE, T0).unwrap();
    let send_only = k.clone_cap(t, ch, Rights::SEND, T0).unwrap();
    assert_eq!(
        k.send(t, receive_only, vec![1], &[], T0),
        Err(KernelError::InsufficientAuthority)
    );
    assert_eq!(
        k.receive_or_block(t, send_only, None, T0).map(|_| ()),
        Err(KernelError::InsufficientAuthority)
    );
}
