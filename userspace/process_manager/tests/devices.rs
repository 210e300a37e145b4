//! Device capabilities through the manifest: each driver gets exactly the
//! ranges its section names, cut from the process manager's root ones,
//! without the right to mint more; what the kernel keeps is refused.

mod support;

use pandagen_abi::device::{DeviceResource, InterruptLines, PhysRange, PortRange};
use pandagen_abi::{CapKind, Duration, Rights};
use pandagen_core::ObjectRef;
use pandagen_process_manager::{parse_manifest, CapabilityName, LifecycleState, ManifestError};
use support::World;

fn devices_of(world: &mut World, name: &str) -> Vec<(DeviceResource, Rights)> {
    let task = world.info(name).task_id.unwrap();
    world
        .kernel()
        .capabilities_of(task)
        .into_iter()
        .filter_map(|(_, info)| match info.object {
            ObjectRef::Device(resource) => Some((resource, info.rights)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_driver_gets_exactly_the_ranges_its_section_names() {
    let mut world = World::new(
        "[kbd]\nid = 30\nready = spawned\nports = 0x60-0x60, 0x64\nirq = 1\n\
         device-memory = 0xfe000000+0x4000\ndma = 64K\n",
    );
    world.run_for(Duration::from_millis(20));
    assert_eq!(world.info("kbd").state, LifecycleState::Running);
    let devices = devices_of(&mut world, "kbd");
    let resources: Vec<DeviceResource> = devices.iter().map(|(r, _)| *r).collect();
    assert_eq!(
        resources,
        vec![
            DeviceResource::Ports(PortRange::new(0x60, 0x60)),
            DeviceResource::Ports(PortRange::new(0x64, 0x64)),
            DeviceResource::Memory(PhysRange::new(0xfe00_0000, 0x4000)),
            DeviceResource::Interrupts(InterruptLines::one(1)),
            DeviceResource::Dma { bytes: 64 << 10 },
        ]
    );
    for (resource, rights) in devices {
        assert!(!rights.contains(Rights::GRANT), "{resource:?} can mint");
        assert!(rights.contains(Rights::READ));
    }
}

#[test]
fn a_kernel_port_in_the_manifest_fails_the_spawn() {
    let mut world =
        World::new("[evil]\nid = 31\nready = spawned\nrestart = never\nports = 0x3f8-0x3ff\n");
    world.run_for(Duration::from_millis(20));
    assert_ne!(world.info("evil").state, LifecycleState::Running);
    assert!(world.info("evil").task_id.is_none());
}

#[test]
fn malformed_device_keys_are_refused_with_their_line() {
    for text in [
        "[d]\nid = 40\nports = 0x10000\n",
        "[d]\nid = 40\nports = 0x64-0x60\n",
        "[d]\nid = 40\nirq = 16\n",
        "[d]\nid = 40\ndevice-memory = 0xfe000001+0x1000\n",
        "[d]\nid = 40\ndevice-memory = 0xfe000000\n",
        "[d]\nid = 40\ndma = 0\n",
        "[d]\nid = 40\ndma = lots\n",
    ] {
        assert!(
            matches!(
                parse_manifest(text.as_bytes()),
                Err(ManifestError::Syntax { line: 3, .. })
            ),
            "{text:?} was accepted"
        );
    }
    let kinds: Vec<CapKind> = match parse_manifest(b"[d]\nid = 40\ndma = 4K\nirq = 1-3\n") {
        Ok(m) => m.start_order()[0]
            .capabilities
            .iter()
            .map(|c| match c {
                CapabilityName::Device(r) => r.kind(),
                other => panic!("{other:?}"),
            })
            .collect(),
        Err(e) => panic!("{e}"),
    };
    assert_eq!(kinds, vec![CapKind::Interrupt, CapKind::DmaMemory]);
}
