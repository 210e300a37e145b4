//! The driver against a fake virtio-blk device (`fake`): what a user of
//! the disk sees from a working device, and what a broken or hostile one
//! can and cannot make it do.

mod fake;

use fake::memory::{shared_buffers, TestHal};
use fake::{
    FakeBlk, FakeLine, Request, F_FLUSH, F_INDIRECT_DESC, F_RO, F_VERSION_1, SECTOR, S_IOERR,
    S_UNSUPP, T_FLUSH, T_IN, T_OUT,
};
use std::time::Duration;

use pandagen_abi::block::BlockDevice;
use pandagen_abi::BlockError;
use pandagen_virtio_blk::disk::{Polling, VirtioDisk};
use pandagen_virtio_blk::protocol::{BlockReply, BlockRequest};
use pandagen_virtio_blk::server::serve;

type Disk<C> = VirtioDisk<TestHal, fake::FakeTransport, C>;

const PATIENCE: u32 = 40;

fn open(device: &FakeBlk) -> Disk<FakeLine> {
    VirtioDisk::new(device.transport(), device.line(PATIENCE)).expect("the device starts")
}

/// `sectors` sectors of bytes that differ from sector to sector and from
/// `seed` to `seed`.
fn pattern(seed: u8, sectors: usize) -> Vec<u8> {
    (0..sectors * SECTOR)
        .map(|i| seed.wrapping_mul(31).wrapping_add((i / 7) as u8) ^ (i / SECTOR) as u8)
        .collect()
}

#[test]
fn what_is_written_is_read_back_with_direct_and_indirect_descriptors() {
    for features in [
        F_VERSION_1 | F_FLUSH,
        F_VERSION_1 | F_FLUSH | F_INDIRECT_DESC,
    ] {
        let device = FakeBlk::new(64, features);
        let mut disk = open(&device);
        assert!(!disk.read_only());
        let data = pattern(1, 3);
        disk.write_blocks(10, &data).unwrap();
        disk.write_blocks(63, &pattern(2, 1)).unwrap();

        let mut back = vec![0u8; 3 * SECTOR];
        disk.read_blocks(10, &mut back).unwrap();
        assert_eq!(back, data);
        let mut last = vec![0u8; SECTOR];
        disk.read_blocks(63, &mut last).unwrap();
        assert_eq!(last, pattern(2, 1));

        // On the device: exactly those sectors, nothing around them.
        let stored = device.device();
        assert_eq!(stored.sector(10).to_vec(), data[..SECTOR]);
        assert_eq!(stored.sector(12).to_vec(), data[2 * SECTOR..]);
        assert_eq!(stored.written(), 4);
        assert_eq!(
            stored.requests,
            [
                Request {
                    kind: T_OUT,
                    sector: 10,
                    data_len: 3 * SECTOR
                },
                Request {
                    kind: T_OUT,
                    sector: 63,
                    data_len: SECTOR
                },
                Request {
                    kind: T_IN,
                    sector: 10,
                    data_len: 3 * SECTOR
                },
                Request {
                    kind: T_IN,
                    sector: 63,
                    data_len: SECTOR
                },
            ]
        );
        // The device was told of each request, and every bounce copy
        // went back to the driver.
        assert_eq!(stored.notifications, 4);
        assert_eq!(shared_buffers(), 0);
    }
}

#[test]
fn a_read_returns_what_the_device_holds_not_what_the_buffer_held() {
    let device = FakeBlk::new(8, F_VERSION_1);
    device.device().put_sector(5, [0x5a; SECTOR]);
    let mut disk = open(&device);
    let mut buf = vec![0xffu8; 2 * SECTOR];
    disk.read_blocks(4, &mut buf).unwrap();
    assert!(buf[..SECTOR].iter().all(|&b| b == 0));
    assert!(buf[SECTOR..].iter().all(|&b| b == 0x5a));
}

#[test]
fn the_geometry_is_the_devices_capacity_in_512_byte_sectors() {
    // More sectors than 32 bits hold: the capacity's high word counts.
    let capacity = (3 << 32) + 5;
    let device = FakeBlk::new(capacity, F_VERSION_1);
    let mut disk = open(&device);
    assert_eq!(disk.block_size(), 512);
    assert_eq!(disk.block_count(), capacity);
    let geometry = disk.geometry();
    assert_eq!((geometry.block_size, geometry.block_count), (512, capacity));
    // The last sector is on the disk.
    disk.write_blocks(capacity - 1, &pattern(3, 1)).unwrap();
    assert_eq!(device.device().sector(capacity - 1).to_vec(), pattern(3, 1));
}

#[test]
fn requests_off_the_disk_or_of_partial_sectors_are_refused_before_the_device_sees_them() {
    let device = FakeBlk::new(16, F_VERSION_1);
    let mut disk = open(&device);
    let out_of_range = |first, count| {
        Err(BlockError::OutOfRange {
            first,
            count,
            blocks: 16,
        })
    };
    let mut one = vec![0u8; SECTOR];
    let mut two = vec![0u8; 2 * SECTOR];
    assert_eq!(disk.read_blocks(16, &mut one), out_of_range(16, 1));
    assert_eq!(disk.read_blocks(15, &mut two), out_of_range(15, 2));
    assert_eq!(disk.write_blocks(u64::MAX, &one), out_of_range(u64::MAX, 1));
    assert_eq!(disk.write_blocks(15, &two), out_of_range(15, 2));
    let bad_length = |len| {
        Err(BlockError::BadLength {
            len,
            block_size: 512,
        })
    };
    assert_eq!(disk.read_blocks(0, &mut []), bad_length(0));
    assert_eq!(disk.read_blocks(0, &mut [0u8; 100]), bad_length(100));
    assert_eq!(disk.write_blocks(0, &[1u8; 513]), bad_length(513));
    assert!(device.device().requests.is_empty());
    assert_eq!(device.device().written(), 0);

    // Refusals are the caller's mistakes, not the device's: the disk
    // still works.
    assert!(!disk.broken());
    disk.write_blocks(14, &pattern(4, 2)).unwrap();

    // Through the block protocol as well.
    assert_eq!(
        serve(
            &mut disk,
            &BlockRequest::Read {
                first: 16,
                count: 1
            }
        ),
        Err(BlockError::OutOfRange {
            first: 16,
            count: 1,
            blocks: 16
        })
    );
    assert_eq!(
        serve(
            &mut disk,
            &BlockRequest::Read {
                first: 14,
                count: 2
            }
        ),
        Ok(BlockReply::Data(pattern(4, 2)))
    );
}

#[test]
fn a_device_error_is_a_typed_error_and_changes_nothing() {
    let device = FakeBlk::new(8, F_VERSION_1 | F_FLUSH);
    let mut disk = open(&device);
    disk.write_blocks(1, &pattern(5, 1)).unwrap();
    for status in [S_IOERR, S_UNSUPP, 0xee] {
        device.device().faults.status = Some(status);
        assert_eq!(
            disk.write_blocks(1, &pattern(6, 1)),
            Err(BlockError::Device)
        );
        let mut buf = vec![0u8; SECTOR];
        assert_eq!(disk.read_blocks(1, &mut buf), Err(BlockError::Device));
        assert_eq!(disk.flush(), Err(BlockError::Device));
    }
    assert_eq!(device.device().sector(1).to_vec(), pattern(5, 1));

    // An error the device reports is about that request: the next ones
    // are served.
    assert!(!disk.broken());
    device.device().faults.status = None;
    let mut buf = vec![0u8; SECTOR];
    disk.read_blocks(1, &mut buf).unwrap();
    assert_eq!(buf, pattern(5, 1));
    disk.flush().unwrap();
    assert_eq!(shared_buffers(), 0);
}

#[test]
fn a_read_only_device_is_never_sent_a_write() {
    let device = FakeBlk::new(8, F_VERSION_1 | F_RO);
    device.device().put_sector(2, [7; SECTOR]);
    let mut disk = open(&device);
    assert!(disk.read_only());
    assert_eq!(
        disk.write_blocks(2, &pattern(7, 1)),
        Err(BlockError::NotPermitted)
    );
    assert!(device.device().requests.is_empty());
    let mut buf = vec![0u8; SECTOR];
    disk.read_blocks(2, &mut buf).unwrap();
    assert_eq!(buf, [7; SECTOR]);
}

#[test]
fn a_flush_reaches_a_device_with_a_write_cache_and_no_other() {
    let device = FakeBlk::new(8, F_VERSION_1 | F_FLUSH);
    let mut disk = open(&device);
    disk.flush().unwrap();
    assert_eq!(
        device.device().requests,
        [Request {
            kind: T_FLUSH,
            sector: 0,
            data_len: 0
        }]
    );

    // Without VIRTIO_BLK_F_FLUSH every write is durable when it completes:
    // there is nothing to ask.
    let device = FakeBlk::new(8, F_VERSION_1);
    let mut disk = open(&device);
    disk.flush().unwrap();
    assert!(device.device().requests.is_empty());
}

#[test]
fn each_interrupt_is_taken_once_and_acknowledged_before_the_line_is_rearmed() {
    let device = FakeBlk::new(8, F_VERSION_1).slow();
    let mut disk = open(&device);
    for n in 0..4 {
        disk.write_blocks(n, &pattern(n as u8, 1)).unwrap();
        let mut buf = vec![0u8; SECTOR];
        disk.read_blocks(n, &mut buf).unwrap();
        assert_eq!(buf, pattern(n as u8, 1));
    }
    // One interrupt per request, each read from the device (which lowers
    // its line) before the line was unmasked: none fired twice.
    let device = device.device();
    assert_eq!(device.deliveries, 8);
    assert_eq!(device.isr_reads, 8);
    assert_eq!(device.rearmed_while_raised, 0);
    assert_eq!(device.waits, 8);
}

#[test]
fn a_polled_device_is_waited_for_without_touching_its_interrupt_register() {
    // A device without an interrupt line, answering in its own time.
    let device = FakeBlk::new(8, F_VERSION_1).slow();
    let mut disk: Disk<Polling> = VirtioDisk::new(device.transport(), Polling).unwrap();
    let _running = device.run_alone(Duration::from_millis(5));
    disk.write_blocks(3, &pattern(8, 2)).unwrap();
    let mut buf = vec![0u8; 2 * SECTOR];
    disk.read_blocks(3, &mut buf).unwrap();
    assert_eq!(buf, pattern(8, 2));
    // Polling costs no register read per turn (a VM exit each).
    assert_eq!(device.device().isr_reads, 0);
}

#[test]
fn a_used_entry_for_a_request_not_in_flight_breaks_the_disk_instead_of_hanging_it() {
    for bad_id in [1, 7, 15, 16, 0xffff, u32::MAX] {
        let device = FakeBlk::new(8, F_VERSION_1);
        let mut disk = open(&device);
        disk.write_blocks(0, &pattern(9, 1)).unwrap();
        device.device().faults.used_id = Some(bad_id);
        let mut buf = vec![0u8; SECTOR];
        assert_eq!(disk.read_blocks(0, &mut buf), Err(BlockError::Device));
        assert!(disk.broken());
        // Nothing more goes to a device that broke the protocol.
        device.device().faults.used_id = None;
        assert_eq!(disk.read_blocks(0, &mut buf), Err(BlockError::Device));
        assert_eq!(
            disk.write_blocks(1, &pattern(9, 1)),
            Err(BlockError::Device)
        );
        assert_eq!(disk.flush(), Err(BlockError::Device));
        assert_eq!(device.device().requests.len(), 2);
        assert_eq!(device.device().sector(1), [0; SECTOR]);
    }
}

#[test]
fn a_flush_answered_for_another_request_breaks_the_disk() {
    let device = FakeBlk::new(8, F_VERSION_1 | F_FLUSH);
    let mut disk = open(&device);
    device.device().faults.used_id = Some(5);
    assert_eq!(disk.flush(), Err(BlockError::Device));
    assert!(disk.broken());
    assert_eq!(disk.write_blocks(0, &[1; SECTOR]), Err(BlockError::Device));
    assert_eq!(device.device().requests.len(), 1);
}

#[test]
fn a_device_that_stops_answering_is_given_up_on_after_the_patience() {
    for (name, stop) in [
        (
            "stopped",
            (|d: &mut fake::Device| d.faults.stopped = true) as fn(&mut _),
        ),
        ("reset itself", |d: &mut fake::Device| {
            d.faults.reset_on_request = true
        }),
    ] {
        let device = FakeBlk::new(8, F_VERSION_1).slow();
        let mut disk = open(&device);
        disk.write_blocks(0, &pattern(10, 1)).unwrap();
        stop(&mut device.device());
        let mut buf = vec![0u8; SECTOR];
        assert_eq!(
            disk.read_blocks(0, &mut buf),
            Err(BlockError::Device),
            "{name}"
        );
        assert!(disk.broken(), "{name}");
        assert_eq!(disk.read_blocks(0, &mut buf), Err(BlockError::Device));
        assert_eq!(
            device.device().requests.len(),
            2 - usize::from(name != "stopped")
        );
        // It waited its whole patience for the read: one wait for the
        // write, then PATIENCE more.
        assert_eq!(device.device().waits, 1 + PATIENCE, "{name}");
    }
}

#[test]
fn the_length_the_device_reports_is_not_trusted() {
    for used_len in [0, 1, 513, 0x1_0000, u32::MAX] {
        let device = FakeBlk::new(8, F_VERSION_1);
        device.device().put_sector(6, [0x66; SECTOR]);
        let mut disk = open(&device);
        device.device().faults.used_len = Some(used_len);
        let mut buf = vec![0u8; SECTOR];
        disk.read_blocks(6, &mut buf).unwrap();
        assert_eq!(buf, [0x66; SECTOR]);
        disk.write_blocks(7, &pattern(11, 1)).unwrap();
        assert_eq!(device.device().sector(7).to_vec(), pattern(11, 1));
        assert_eq!(shared_buffers(), 0);
    }
}

#[test]
fn a_device_that_refuses_the_features_is_failed_and_never_driven() {
    let device = FakeBlk::new(8, F_VERSION_1 | F_FLUSH);
    device.device().faults.refuse_features = true;
    let opened = VirtioDisk::<TestHal, _, _>::new(device.transport(), device.line(PATIENCE));
    assert!(matches!(opened, Err(virtio_drivers::Error::Unsupported)));
    let writes = device.device().status_writes.clone();
    let driver_ok = 4;
    let failed = 128;
    assert!(writes.iter().all(|s| s & driver_ok == 0), "{writes:?}");
    assert_eq!(writes.last(), Some(&failed), "{writes:?}");
    assert!(device.device().requests.is_empty());
}

#[test]
fn a_device_that_keeps_the_features_is_started_in_the_spec_order() {
    let device = FakeBlk::new(8, F_VERSION_1 | F_FLUSH | (1 << 6) | (1 << 12));
    let _disk = open(&device);
    // Reset, ACKNOWLEDGE | DRIVER, FEATURES_OK, DRIVER_OK (3.1.1).
    assert_eq!(device.device().status_writes, [0, 3, 11, 15]);
    // Only features the driver understands, and only offered ones.
    assert_eq!(device.device().accepted(), F_VERSION_1 | F_FLUSH);
}

#[test]
fn a_device_with_too_small_a_queue_is_refused() {
    let device = FakeBlk::new(8, F_VERSION_1).max_queue(8);
    let opened = VirtioDisk::<TestHal, _, _>::new(device.transport(), device.line(PATIENCE));
    assert!(opened.is_err());
}

#[test]
fn a_dropped_disk_leaves_the_device_no_queue_in_freed_memory() {
    let device = FakeBlk::new(8, F_VERSION_1);
    let disk = open(&device);
    assert!(device.device().has_queue());
    drop(disk);
    assert!(!device.device().has_queue());
}

#[test]
fn a_legacy_device_finds_the_queue_where_the_legacy_layout_puts_it() {
    let device = FakeBlk::new(8, F_FLUSH).legacy();
    let mut disk = open(&device);
    disk.write_blocks(2, &pattern(12, 1)).unwrap();
    let mut buf = vec![0u8; SECTOR];
    disk.read_blocks(2, &mut buf).unwrap();
    assert_eq!(buf, pattern(12, 1));
    disk.flush().unwrap();
}

#[test]
fn a_capacity_that_changes_while_it_is_read_is_never_read_torn() {
    // From just under 2^33 sectors to just over: a reading that mixed the
    // old low word with the new high word would be 2^33 sectors too many.
    let device = FakeBlk::new(0x1_ffff_ffff, F_VERSION_1);
    device.device().faults.resize_on_config_read = Some(0x2_0000_0000);
    let disk = open(&device);
    assert_eq!(disk.block_count(), 0x2_0000_0000);
}
