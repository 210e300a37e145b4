//! The block-device calls on the simulated kernel: the same checks as the
//! bare-metal kernel (they are the core's), and a device that outlives the
//! tasks that write it.

use pandagen_abi::error::BlockError;
use pandagen_abi::syscall::{BlockInfo, MAX_BLOCK_TRANSFER};
use pandagen_abi::{
    CapHandle, CapKind, ExitReason, KernelApi, KernelError, Rights, TaskDescriptor, TaskId,
};
use pandagen_sim::blockdev::{BLOCK_COUNT, BLOCK_SIZE};
use pandagen_sim::SimulatedKernel;

const BS: usize = BLOCK_SIZE as usize;

fn root_device(kernel: &SimulatedKernel) -> CapHandle {
    kernel.root_capability(CapKind::BlockDevice).unwrap()
}

/// Spawn a task holding a copy of the device with `rights`; returns the
/// task and the handle in its space.
fn child_with(kernel: &mut SimulatedKernel, name: &str, rights: Rights) -> (TaskId, CapHandle) {
    let copy = kernel.root_copy(CapKind::BlockDevice, rights).unwrap();
    let descriptor = TaskDescriptor::new(name.into()).with_capability(copy);
    let root = kernel.root_task();
    let task = kernel
        .as_task(root, |k| k.spawn_task(descriptor))
        .unwrap()
        .task_id;
    let handle = kernel.as_task(task, |k| k.startup()).unwrap().capabilities[0];
    (task, handle)
}

#[test]
fn the_root_task_holds_the_device_and_reads_back_what_it_wrote() {
    let mut k = SimulatedKernel::new();
    let dev = root_device(&k);
    assert_eq!(
        k.block_info(dev),
        Ok(BlockInfo {
            block_size: BLOCK_SIZE,
            block_count: BLOCK_COUNT
        })
    );
    assert_eq!(k.block_read(dev, 5, 1).unwrap(), vec![0; BS]);
    let data: Vec<u8> = (0..3 * BS).map(|i| (i % 251) as u8).collect();
    k.block_write(dev, 4, &data).unwrap();
    assert_eq!(k.block_read(dev, 4, 3).unwrap(), data);
    assert_eq!(k.block_read(dev, 5, 1).unwrap(), data[BS..2 * BS]);
    let last = BLOCK_COUNT - 1;
    k.block_write(dev, last, &[7; BS]).unwrap();
    assert_eq!(k.block_read(dev, last, 1).unwrap(), vec![7; BS]);
}

#[test]
fn out_of_range_and_badly_sized_requests_are_typed_errors_and_change_nothing() {
    let mut k = SimulatedKernel::new();
    let dev = root_device(&k);
    let out_of_range = |first, count| {
        KernelError::Block(BlockError::OutOfRange {
            first,
            count,
            blocks: BLOCK_COUNT,
        })
    };
    assert_eq!(
        k.block_read(dev, BLOCK_COUNT, 1),
        Err(out_of_range(BLOCK_COUNT, 1))
    );
    assert_eq!(
        k.block_read(dev, BLOCK_COUNT - 1, 2),
        Err(out_of_range(BLOCK_COUNT - 1, 2))
    );
    assert_eq!(
        k.block_read(dev, u64::MAX, 1),
        Err(out_of_range(u64::MAX, 1))
    );
    assert_eq!(
        k.block_write(dev, BLOCK_COUNT - 1, &[1; 2 * BS]),
        Err(out_of_range(BLOCK_COUNT - 1, 2))
    );
    // The block that does exist was not written by the refused write.
    assert_eq!(k.block_read(dev, BLOCK_COUNT - 1, 1).unwrap(), vec![0; BS]);

    let bad_length = |len| {
        KernelError::Block(BlockError::BadLength {
            len,
            block_size: BLOCK_SIZE,
        })
    };
    assert_eq!(k.block_read(dev, 0, 0), Err(bad_length(0)));
    assert_eq!(k.block_write(dev, 0, &[]), Err(bad_length(0)));
    assert_eq!(
        k.block_write(dev, 0, &[1; BS + 1]),
        Err(bad_length(BS as u64 + 1))
    );
    assert_eq!(k.block_write(dev, 0, &[1; 100]), Err(bad_length(100)));
    assert_eq!(k.block_read(dev, 0, 1).unwrap(), vec![0; BS]);

    let too_large = MAX_BLOCK_TRANSFER + BS;
    assert_eq!(
        k.block_write(dev, 0, &vec![1; too_large]),
        Err(KernelError::Block(BlockError::TooLarge {
            len: too_large as u64,
            max: MAX_BLOCK_TRANSFER as u32
        }))
    );
    assert!(matches!(
        k.block_read(dev, 0, u32::MAX),
        Err(KernelError::Block(BlockError::TooLarge { .. }))
    ));
    // The largest transfer works.
    let blocks = (MAX_BLOCK_TRANSFER / BS) as u32;
    k.block_write(dev, 0, &vec![9; MAX_BLOCK_TRANSFER]).unwrap();
    assert_eq!(
        k.block_read(dev, 0, blocks).unwrap(),
        vec![9; MAX_BLOCK_TRANSFER]
    );
}

#[test]
fn rights_kind_and_ownership_are_checked_before_any_byte_moves() {
    let mut k = SimulatedKernel::new();
    let (reader, read_only) = child_with(&mut k, "reader", Rights::READ);
    let (writer, write_only) = child_with(&mut k, "writer", Rights::WRITE);
    k.as_task(reader, |k| {
        assert!(k.block_info(read_only).is_ok());
        assert!(k.block_read(read_only, 0, 1).is_ok());
        assert_eq!(
            k.block_write(read_only, 0, &[1; BS]),
            Err(KernelError::InsufficientAuthority)
        );
    });
    k.as_task(writer, |k| {
        assert_eq!(
            k.block_info(write_only),
            Err(KernelError::InsufficientAuthority)
        );
        assert_eq!(
            k.block_read(write_only, 0, 1),
            Err(KernelError::InsufficientAuthority)
        );
        // Authority is checked before geometry.
        assert_eq!(
            k.block_read(write_only, u64::MAX, 0),
            Err(KernelError::InsufficientAuthority)
        );
        k.block_write(write_only, 0, &[2; BS]).unwrap();
    });
    assert_eq!(k.block_read(root_device(&k), 0, 1).unwrap(), vec![2; BS]);

    // A channel is not a block device.
    let channel = k.create_channel().unwrap();
    assert_eq!(
        k.block_read(channel.handle(), 0, 1),
        Err(KernelError::WrongCapabilityKind {
            expected: CapKind::BlockDevice,
            found: CapKind::Channel
        })
    );
    // Another task's handle (the root's) means nothing in the reader's
    // space, and neither does a made-up one.
    let root_dev = root_device(&k);
    k.as_task(reader, |k| {
        assert_eq!(
            k.block_read(CapHandle::new(77, 3), 0, 1),
            Err(KernelError::InvalidCapability)
        );
        assert_eq!(
            k.block_read(root_dev, 0, 1),
            Err(KernelError::InvalidCapability)
        );
    });
    // A task holding nothing cannot use the device at all.
    let root = k.root_task();
    let nobody = k
        .as_task(root, |k| k.spawn_task(TaskDescriptor::new("nobody".into())))
        .unwrap()
        .task_id;
    k.as_task(nobody, |k| {
        assert_eq!(
            k.block_write(root_dev, 0, &[3; BS]),
            Err(KernelError::InvalidCapability)
        );
    });
    assert_eq!(k.block_read(root_dev, 0, 1).unwrap(), vec![2; BS]);
    k.check_invariants().unwrap();
}

#[test]
fn what_a_task_wrote_outlives_it_and_its_capability_does_not() {
    let mut k = SimulatedKernel::new();
    let (first, dev) = child_with(&mut k, "first", Rights::READ | Rights::WRITE);
    k.as_task(first, |k| k.block_write(dev, 10, &[0x5A; 2 * BS]))
        .unwrap();
    k.terminate_task_with_reason(
        first,
        ExitReason::Failure {
            error: "crashed on purpose".into(),
        },
    );
    let (second, dev2) = child_with(&mut k, "second", Rights::READ);
    assert_eq!(
        k.as_task(second, |k| k.block_read(dev2, 10, 2)).unwrap(),
        vec![0x5A; 2 * BS]
    );
    // The dead task can do nothing with what it held.
    assert_eq!(
        k.as_task(first, |k| k.block_read(dev, 10, 2)),
        Err(KernelError::TaskNotFound(first))
    );
    k.check_invariants().unwrap();
}
