//! Every bound exactly at its edge: the largest value is accepted, one
//! more is refused with a typed error and changes nothing.

mod common;

use common::*;
use pandagen_abi::api::limits::{MAX_SPAWN_CAPS, MAX_TASK_NAME};
use pandagen_abi::error::{ReceiveError, Resource, SendError, SpawnError};
use pandagen_abi::{CapHandle, KernelError, Rights, ServiceId};
use pandagen_core::{CoreConfig, KernelCore, Mintable, SpawnArgs, TaskSpec};

fn with(config: CoreConfig) -> KernelCore {
    KernelCore::new(config)
}

#[test]
fn the_largest_message_is_delivered_and_one_byte_more_is_refused() {
    let mut k = kernel();
    let max = k.config().max_message_bytes;
    let t = spawn(&mut k, "t");
    let h = k.create_channel(t, T0).unwrap();
    k.send(t, h, vec![1; max], &[], T0).unwrap();
    assert_eq!(
        k.send(t, h, vec![1; max + 1], &[], T0),
        Err(KernelError::SendFailed(SendError::MessageTooLarge {
            len: max as u32 + 1,
            max: max as u32,
        }))
    );
    let ch = k.channel_of(t, h, T0).unwrap();
    assert_eq!(
        k.send_from_kernel(ch, vec![2; max], t, T0).map(|_| ()),
        Ok(())
    );
    assert!(matches!(
        k.send_from_kernel(ch, vec![2; max + 1], t, T0),
        Err(KernelError::SendFailed(SendError::MessageTooLarge { .. }))
    ));
    assert!(matches!(
        k.prepare_send(t, h, vec![1; max + 1], &[], T0),
        Err(KernelError::SendFailed(SendError::MessageTooLarge { .. }))
    ));
    assert_eq!(k.queue_len(ch), Some(2));
    assert_eq!(k.receive(t, h, T0).unwrap().unwrap().bytes.len(), max);
}

#[test]
fn the_most_capabilities_a_message_may_carry_travel_and_one_more_is_refused() {
    let mut k = kernel();
    let most = k.config().max_caps_per_message;
    let t = spawn(&mut k, "t");
    let h = k.create_channel(t, T0).unwrap();
    let caps: Vec<CapHandle> = (0..=most)
        .map(|_| k.mint(t, Mintable::KernelInfo, Rights::ALL, T0).unwrap())
        .collect();
    assert_eq!(
        k.send(t, h, vec![], &caps, T0),
        Err(KernelError::SendFailed(SendError::TooManyCapabilities))
    );
    assert_eq!(k.cap_count(t), most + 2, "nothing moved");
    k.send(t, h, vec![], &caps[..most], T0).unwrap();
    assert_eq!(k.cap_count(t), 2);
    let got = k.receive(t, h, T0).unwrap().unwrap();
    assert_eq!(got.caps.len(), most);
    k.check_invariants().unwrap();
}

#[test]
fn capabilities_that_exactly_fill_the_receivers_space_are_delivered() {
    let room = 4;
    let mut k = with(CoreConfig {
        max_caps_per_task: room,
        ..CoreConfig::default()
    });
    let sender = spawn(&mut k, "sender");
    let receiver = spawn(&mut k, "receiver");
    let inbox = k.create_channel(receiver, T0).unwrap();
    let over = authorise(&mut k, receiver, sender);
    let to_receiver = k.grant(receiver, inbox, sender, T0).unwrap();
    k.drop_cap(receiver, over, T0).unwrap();
    // The receiver holds one capability; three more fill its space.
    let gifts: Vec<CapHandle> = (0..3)
        .map(|_| {
            k.mint(sender, Mintable::KernelInfo, Rights::ALL, T0)
                .unwrap()
        })
        .collect();
    k.send(sender, to_receiver, b"3".to_vec(), &gifts, T0)
        .unwrap();
    let got = k.receive(receiver, inbox, T0).unwrap().unwrap();
    assert_eq!(got.caps.len(), 3);
    assert_eq!(k.cap_count(receiver), room as usize);

    // Now it is full: a message carrying one more is refused to it and
    // dropped, and the receiver is told how many it lost; the next one
    // still arrives.
    let one = k
        .mint(sender, Mintable::KernelInfo, Rights::ALL, T0)
        .unwrap();
    k.send(sender, to_receiver, b"1".to_vec(), &[one], T0)
        .unwrap();
    k.send(sender, to_receiver, b"0".to_vec(), &[], T0).unwrap();
    assert_eq!(
        k.receive(receiver, inbox, T0),
        Err(KernelError::ReceiveFailed(
            ReceiveError::NoRoomForCapabilities { carried: 1 }
        ))
    );
    assert_eq!(k.cap_count(receiver), room as usize);
    assert_eq!(k.receive(receiver, inbox, T0).unwrap().unwrap().bytes, b"0");
    k.check_invariants().unwrap();
}

#[test]
fn a_space_one_short_refuses_every_operation_that_adds_a_capability() {
    let mut k = with(CoreConfig {
        max_caps_per_task: 3,
        ..CoreConfig::default()
    });
    let a = spawn(&mut k, "a");
    let svc = ServiceId::from_raw(4);
    let reg = k
        .mint(a, Mintable::ServiceRegistry, Rights::REGISTER, T0)
        .unwrap();
    let chan = k.create_channel(a, T0).unwrap();
    k.register_service(a, reg, svc, chan, T0).unwrap();
    let b = spawn(&mut k, "b");
    for _ in 0..3 {
        k.mint(b, Mintable::KernelInfo, Rights::READ, T0).unwrap();
    }
    let full = Err(KernelError::ResourceExhausted(Resource::CapabilitySlots));
    assert_eq!(k.lookup_service(b, svc, T0), full);
    assert_eq!(k.create_channel(b, T0), full);
    assert_eq!(k.create_channel_with_capacity(b, 1, T0), full);
    assert_eq!(k.cap_count(b), 3);
}

#[test]
fn channel_queue_bounds_clamp_to_the_configured_range() {
    let mut k = with(CoreConfig {
        max_queue_capacity: 8,
        default_queue_capacity: 3,
        ..CoreConfig::default()
    });
    let t = spawn(&mut k, "t");
    let capacity = |k: &mut KernelCore, h| {
        let ch = k.channel_of(t, h, T0).unwrap();
        k.queue_capacity(ch)
    };
    let h = k.create_channel(t, T0).unwrap();
    assert_eq!(capacity(&mut k, h), Some(3));
    for (asked, got) in [(0, 1), (1, 1), (7, 7), (8, 8), (9, 8), (u32::MAX, 8)] {
        let h = k.create_channel_with_capacity(t, asked, T0).unwrap();
        assert_eq!(capacity(&mut k, h), Some(got), "asked {asked}");
    }
    // A full queue of capacity 1: the second send is refused.
    let h = k.create_channel_with_capacity(t, 1, T0).unwrap();
    k.send(t, h, vec![], &[], T0).unwrap();
    assert_eq!(
        k.send(t, h, vec![], &[], T0),
        Err(KernelError::SendFailed(SendError::QueueFull))
    );
}

#[test]
fn the_channel_and_service_tables_are_bounded_exactly() {
    let mut k = with(CoreConfig {
        max_channels: 3,
        max_services: 2,
        ..CoreConfig::default()
    });
    let t = spawn(&mut k, "t");
    let reg = k
        .mint(t, Mintable::ServiceRegistry, Rights::REGISTER, T0)
        .unwrap();
    let chans: Vec<CapHandle> = (0..3).map(|_| k.create_channel(t, T0).unwrap()).collect();
    assert_eq!(k.channel_count(), 3);
    assert_eq!(
        k.create_channel(t, T0),
        Err(KernelError::ResourceExhausted(Resource::Channels))
    );
    k.register_service(t, reg, ServiceId::from_raw(1), chans[0], T0)
        .unwrap();
    k.register_service(t, reg, ServiceId::from_raw(2), chans[1], T0)
        .unwrap();
    assert_eq!(
        k.register_service(t, reg, ServiceId::from_raw(3), chans[2], T0),
        Err(KernelError::ResourceExhausted(Resource::ServiceSlots))
    );
    assert_eq!(k.services().len(), 2);
    // Freeing one makes room for exactly one.
    k.drop_cap(t, chans[2], T0).unwrap();
    assert_eq!(k.channel_count(), 2);
    k.create_channel(t, T0).unwrap();
    k.unregister_service(t, ServiceId::from_raw(1)).unwrap();
    k.register_service(t, reg, ServiceId::from_raw(3), chans[0], T0)
        .unwrap();
    k.check_invariants().unwrap();
}

fn spawn_args(spec: TaskSpec, capabilities: &[CapHandle]) -> SpawnArgs<'_> {
    SpawnArgs {
        spec,
        with_image: false,
        capabilities,
        exit_channel: None,
        frames: 0,
    }
}

#[test]
fn a_spawn_moves_at_most_the_spawn_capability_limit() {
    let mut k = kernel();
    let root = k.create_root_task("root", T0).unwrap().task;
    let caps: Vec<CapHandle> = (0..=MAX_SPAWN_CAPS)
        .map(|_| {
            k.mint(
                root,
                Mintable::KernelInfo,
                Rights::READ | Rights::TRANSFER,
                T0,
            )
            .unwrap()
        })
        .collect();
    let before = (k.task_count(), k.cap_count(root));
    assert_eq!(
        k.spawn(root, spawn_args(TaskSpec::new("c"), &caps), T0),
        Err(KernelError::SpawnFailed(SpawnError::TooManyCapabilities))
    );
    assert_eq!((k.task_count(), k.cap_count(root)), before);
    let child = k
        .spawn(
            root,
            spawn_args(TaskSpec::new("c"), &caps[..MAX_SPAWN_CAPS]),
            T0,
        )
        .unwrap();
    assert_eq!(child.capabilities.len(), MAX_SPAWN_CAPS);
    assert_eq!(k.cap_count(child.task), MAX_SPAWN_CAPS);
    assert_eq!(k.cap_count(root), before.1 - MAX_SPAWN_CAPS);
    k.check_invariants().unwrap();
}

#[test]
fn task_names_of_the_limit_are_accepted_and_longer_or_empty_ones_refused() {
    let mut k = kernel();
    let longest = "n".repeat(MAX_TASK_NAME);
    let (t, e) = k
        .create_task(None, TaskSpec::new(longest.clone()), T0)
        .unwrap();
    assert_eq!(k.task_info(t).unwrap().name, longest);
    assert_eq!(k.identity(e).unwrap().name, longest);
    for bad in ["n".repeat(MAX_TASK_NAME + 1), String::new()] {
        assert_eq!(
            k.create_task(None, TaskSpec::new(bad.clone()), T0),
            Err(KernelError::SpawnFailed(SpawnError::InvalidName)),
            "{} bytes",
            bad.len()
        );
    }
    let root = k.create_root_task("root", T0).unwrap().task;
    assert_eq!(
        k.spawn(
            root,
            spawn_args(TaskSpec::new("n".repeat(MAX_TASK_NAME + 1)), &[]),
            T0
        ),
        Err(KernelError::SpawnFailed(SpawnError::InvalidName))
    );
    assert_eq!(k.task_count(), 2);
}

#[test]
fn reordering_reaches_exactly_the_queued_positions() {
    let mut k = kernel();
    let t = spawn(&mut k, "t");
    let h = k.create_channel(t, T0).unwrap();
    let ch = k.channel_of(t, h, T0).unwrap();
    for i in 0..3u8 {
        k.send(t, h, vec![i], &[], T0).unwrap();
    }
    for (i, j) in [(3, 0), (0, 3), (3, 3), (usize::MAX, 1)] {
        assert!(!k.swap_queued(ch, i, j), "({i}, {j})");
    }
    assert!(k.swap_queued(ch, 2, 0), "the last and the first");
    let got: Vec<u8> = (0..3)
        .map(|_| k.receive(t, h, T0).unwrap().unwrap().bytes[0])
        .collect();
    assert_eq!(got, [2, 1, 0]);
}
