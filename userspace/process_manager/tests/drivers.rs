//! Driver sections: nothing starts before the bus service reports; a
//! report is taken only from the holder of the configuration ports; a
//! driver starts once its device is enabled, with exactly that device's
//! capabilities; its clients get the capability it hands over, or start
//! without it when there is no device.

mod support;

use pandagen_abi::device::{DeviceResource, InterruptLines, PhysRange, PortRange};
use pandagen_abi::{Cap, CapKind, Duration, KernelApi, Rights, ServiceId};
use pandagen_core::ObjectRef;
use pandagen_process_manager::devices::{
    BarSpace, PciAddress, PciBar, PciDevice, CONFIG_BYTES, DEVICES_ENABLED_ACTION,
    DEVICES_FOUND_ACTION, DRIVER_READY_ACTION,
};
use pandagen_process_manager::{ClientError, LifecycleState, PmClient, PmError, PmReply};
use support::World;

const MANIFEST: &str = "[pci]\nid = 20\ncapabilities = registry\nports = 0xcf8-0xcff\n\
    [blk]\nid = 21\ncapabilities = registry\npci = 1af4:1001\ndma = 64K\n\
    [user]\nid = 22\ncapabilities = registry, driver:blk\n";

fn device(vendor: u16, device: u16, slot: u8) -> PciDevice {
    PciDevice {
        address: PciAddress {
            bus: 0,
            device: slot,
            function: 0,
        },
        vendor,
        device,
        class: 1,
        subclass: 0,
        interface: 0,
        bars: vec![
            PciBar {
                index: 0,
                space: BarSpace::Io {
                    port: 0xc000,
                    size: 0x80,
                },
            },
            PciBar {
                index: 4,
                space: BarSpace::Memory {
                    base: 0xfe00_0000,
                    size: 0x4000,
                    wide: true,
                },
            },
        ],
        interrupt_line: Some(11),
        config: vec![0; CONFIG_BYTES],
    }
}

/// Send a device request as `name`'s live instance and collect the answer.
fn ask_as<T: serde::Serialize>(
    world: &mut World,
    name: &str,
    action: &str,
    payload: &T,
    hand_over: Option<u64>,
) -> Result<PmReply, ClientError> {
    let task = world.info(name).task_id.expect("running");
    let client = world
        .kernel()
        .as_task(task, PmClient::connect)
        .expect("connect");
    let sent = world.kernel().as_task(task, |k| {
        // A capability for the asker's own service, as a driver mints.
        let caps = match hand_over {
            Some(service) => {
                let served = k
                    .mint_object_capability(ServiceId::from_raw(service), 7, Rights::ALL)
                    .expect("a registered service mints");
                vec![Cap::erase(served)]
            }
            None => Vec::new(),
        };
        client.send_with(k, action, payload, caps)
    })?;
    world.run_for(Duration::from_millis(2));
    world
        .kernel()
        .as_task(task, |k| client.receive(k, sent, Some(Duration::ZERO)))
}

fn device_caps(world: &mut World, name: &str) -> Vec<DeviceResource> {
    let task = world.info(name).task_id.unwrap();
    world
        .kernel()
        .capabilities_of(task)
        .into_iter()
        .filter_map(|(_, info)| match info.object {
            ObjectRef::Device(resource) => Some(resource),
            _ => None,
        })
        .collect()
}

#[test]
fn a_driver_starts_with_exactly_its_device_and_hands_its_capability_to_clients() {
    let mut world = World::new(MANIFEST);
    world.run_for(Duration::from_millis(20));
    assert_eq!(world.info("pci").state, LifecycleState::Running);
    assert_eq!(world.info("blk").state, LifecycleState::Stopped);
    assert_eq!(world.info("user").state, LifecycleState::Stopped);
    let devices = vec![device(0x8086, 0x29c0, 0), device(0x1af4, 0x1001, 3)];
    // Only the holder of the configuration ports may report.
    let client = world.as_client(|k| PmClient::connect(k).unwrap());
    let forged = world
        .as_client(|k| client.send_with(k, DEVICES_FOUND_ACTION, &devices, Vec::new()))
        .unwrap();
    world.run_for(Duration::from_millis(2));
    assert!(matches!(
        world.as_client(|k| client.receive(k, forged, Some(Duration::ZERO))),
        Err(ClientError::Rejected(PmError::NotTheBusService))
    ));
    match ask_as(&mut world, "pci", DEVICES_FOUND_ACTION, &devices, None) {
        Ok(PmReply::Bound(bound)) => assert_eq!(bound, vec![1]),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        ask_as(&mut world, "pci", DEVICES_FOUND_ACTION, &devices, None),
        Err(ClientError::Rejected(PmError::DevicesAlreadyReported))
    ));
    // Not before the bus service has enabled the device.
    world.run_for(Duration::from_millis(20));
    assert_eq!(world.info("blk").state, LifecycleState::Stopped);
    assert!(matches!(
        ask_as(&mut world, "pci", DEVICES_ENABLED_ACTION, &(), None),
        Ok(PmReply::Bound(_))
    ));
    world.run_for(Duration::from_millis(20));
    assert_ne!(world.info("blk").state, LifecycleState::Stopped);
    assert_eq!(
        device_caps(&mut world, "blk"),
        vec![
            DeviceResource::Ports(PortRange::new(0xc000, 0xc07f)),
            DeviceResource::Memory(PhysRange::new(0xfe00_0000, 0x4000)),
            DeviceResource::Interrupts(InterruptLines::one(11)),
            DeviceResource::Dma { bytes: 64 << 10 },
        ]
    );
    // Registered but not ready, and its client waits, until it hands over.
    assert_eq!(world.info("blk").state, LifecycleState::Starting);
    assert_eq!(world.info("user").state, LifecycleState::Stopped);
    assert!(matches!(
        ask_as(&mut world, "pci", DRIVER_READY_ACTION, &(), Some(20)),
        Err(ClientError::Rejected(PmError::NotADriver))
    ));
    match ask_as(&mut world, "blk", DRIVER_READY_ACTION, &(), Some(21)) {
        Ok(PmReply::Device(d)) => assert_eq!(d, devices[1]),
        other => panic!("{other:?}"),
    }
    world.run_for(Duration::from_millis(50));
    assert_eq!(world.info("blk").state, LifecycleState::Running);
    assert_eq!(world.info("user").state, LifecycleState::Running);
    let user = world.info("user").task_id.unwrap();
    let served: Vec<_> = world
        .kernel()
        .capabilities_of(user)
        .into_iter()
        .filter(|(_, info)| info.kind() == CapKind::StorageObject)
        .collect();
    assert_eq!(served.len(), 1);
    assert!(!served[0].1.rights.contains(Rights::GRANT));
    assert!(served[0].1.rights.contains(Rights::READ | Rights::WRITE));
}

#[test]
fn without_a_matching_device_the_driver_never_starts_and_its_clients_do() {
    let mut world = World::new(MANIFEST);
    world.run_for(Duration::from_millis(20));
    let devices = vec![device(0x8086, 0x29c0, 0)];
    match ask_as(&mut world, "pci", DEVICES_FOUND_ACTION, &devices, None) {
        Ok(PmReply::Bound(bound)) => assert!(bound.is_empty()),
        other => panic!("{other:?}"),
    }
    world.run_for(Duration::from_millis(50));
    assert_eq!(world.info("blk").state, LifecycleState::Stopped);
    assert!(!world.info("blk").wanted);
    assert_eq!(world.info("user").state, LifecycleState::Running);
    let user = world.info("user").task_id.unwrap();
    assert!(world
        .kernel()
        .capabilities_of(user)
        .iter()
        .all(|(_, info)| info.kind() != CapKind::StorageObject));
}
