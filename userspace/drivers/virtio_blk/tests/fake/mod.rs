//! A fake virtio-blk device for host tests, behind the `virtio-drivers`
//! `Transport` trait, kept to the virtio 1.x spec where a driver could
//! tell: the status handshake (reset by writing 0, FEATURES_OK kept only
//! for features it offered, queues served only after DRIVER_OK), feature
//! negotiation, one split virtqueue (descriptor table, available ring,
//! used ring; direct and indirect descriptors), block requests as a
//! header, data and a status byte, the capacity in configuration space,
//! and an interrupt status register the driver reads to lower the line.
//!
//! Faults a broken or hostile device could show are injected through
//! [`Faults`]. The device reads and writes memory only through
//! [`memory`], which fails the test if the driver ever handed it an
//! address outside what it shared.

pub mod memory;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use pandagen_virtio_blk::disk::Completion;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{Error, PhysAddr};

pub const SECTOR: usize = 512;

/// Feature bits (virtio 1.x, 5.2.3 and 6).
pub const F_RO: u64 = 1 << 5;
pub const F_FLUSH: u64 = 1 << 9;
pub const F_INDIRECT_DESC: u64 = 1 << 28;
pub const F_VERSION_1: u64 = 1 << 32;

/// Request types and status bytes (5.2.6).
pub const T_IN: u32 = 0;
pub const T_OUT: u32 = 1;
pub const T_FLUSH: u32 = 4;
pub const S_OK: u8 = 0;
pub const S_IOERR: u8 = 1;
pub const S_UNSUPP: u8 = 2;

const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;
const DESC_F_INDIRECT: u16 = 4;
const AVAIL_F_NO_INTERRUPT: u16 = 1;

/// virtio-blk's configuration space (5.2.4) up to `blk_size` and a bit.
const CONFIG_BYTES: usize = 36;

/// What a broken or hostile device does.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Answer every request with this status byte, without doing it.
    pub status: Option<u8>,
    /// Take requests from the available ring and never complete them.
    pub stopped: bool,
    /// Put this id in the used ring instead of the request's head.
    pub used_id: Option<u32>,
    /// Put this length in the used ring instead of the bytes written.
    pub used_len: Option<u32>,
    /// Reset itself when the next request arrives: the request is lost,
    /// the queue forgotten, the status 0.
    pub reset_on_request: bool,
    /// Refuse the driver's features: FEATURES_OK does not stick.
    pub refuse_features: bool,
    /// Change the capacity to this right after the driver's next read of
    /// configuration space (a disk resized under the driver's feet).
    pub resize_on_config_read: Option<u64>,
}

/// One request as the device understood it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub kind: u32,
    pub sector: u64,
    pub data_len: usize,
}

/// A buffer of a descriptor chain: its address and length.
type Buffer = (PhysAddr, usize);

struct Queue {
    size: u16,
    desc: PhysAddr,
    avail: PhysAddr,
    used: PhysAddr,
}

/// The device's state, shared by its transport, its interrupt line and
/// the test.
pub struct Device {
    offered: u64,
    accepted: u64,
    status: u32,
    /// Every value the driver wrote to the status register.
    pub status_writes: Vec<u32>,
    capacity: u64,
    sectors: BTreeMap<u64, [u8; SECTOR]>,
    max_queue: u32,
    queue: Option<Queue>,
    next_avail: u16,
    used_idx: u16,
    /// Interrupt status: bit 0, a buffer was used (4.1.4.5).
    isr: u32,
    pub isr_reads: u32,
    pub notifications: u32,
    /// The interrupt line's count of the driver's waits on it.
    pub waits: u32,
    /// Interrupts delivered to the driver.
    pub deliveries: u32,
    /// Rearms while the device still held its line up: the interrupt
    /// was not acknowledged to the device first, and fires again at once.
    pub rearmed_while_raised: u32,
    /// Requests taken from the available ring, in order.
    pub requests: Vec<Request>,
    pub faults: Faults,
    /// Whether requests are served when notified (else only when the
    /// driver waits on the line, or by the device's own thread).
    serve_on_notify: bool,
    /// Changed with every change of configuration space (4.1.4.3).
    config_generation: u32,
    /// A legacy device (2.6.2): it finds its queue from the descriptor
    /// table's page number, in units of the guest page size the driver
    /// set, with the rings where the legacy layout puts them.
    legacy: bool,
    guest_page_size: u32,
}

impl Device {
    fn negotiated(&self, feature: u64) -> bool {
        self.accepted & feature != 0
    }

    fn reset(&mut self) {
        self.status = 0;
        self.accepted = 0;
        self.queue = None;
        self.next_avail = 0;
        self.used_idx = 0;
        self.isr = 0;
    }

    /// The sector `n` as stored (zero if never written).
    pub fn sector(&self, n: u64) -> [u8; SECTOR] {
        self.sectors.get(&n).copied().unwrap_or([0; SECTOR])
    }

    pub fn put_sector(&mut self, n: u64, bytes: [u8; SECTOR]) {
        self.sectors.insert(n, bytes);
    }

    /// The features the driver accepted.
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Whether the device holds a queue's addresses.
    pub fn has_queue(&self) -> bool {
        self.queue.is_some()
    }

    /// Sectors written so far.
    pub fn written(&self) -> usize {
        self.sectors.len()
    }

    /// Serve every request in the available ring (2.7.13 on the device's
    /// side), if the driver has said DRIVER_OK.
    pub fn serve(&mut self) {
        if self.status & DeviceStatus::DRIVER_OK.bits() == 0 {
            return;
        }
        let Some(queue) = &self.queue else {
            return;
        };
        let (size, avail, used) = (queue.size, queue.avail, queue.used);
        loop {
            let avail_idx = u16_at(avail + 2);
            if self.next_avail == avail_idx {
                return;
            }
            let slot = u64::from(self.next_avail % size);
            let head = u16_at(avail + 4 + 2 * slot);
            self.next_avail = self.next_avail.wrapping_add(1);
            if self.faults.reset_on_request {
                self.faults.reset_on_request = false;
                self.reset();
                return;
            }
            let (readable, writable) = self.chain(head);
            let written = self.handle(&readable, &writable);
            if self.faults.stopped {
                continue;
            }
            let entry = used + 4 + 8 * u64::from(self.used_idx % size);
            let id = self.faults.used_id.unwrap_or(u32::from(head));
            let len = self.faults.used_len.unwrap_or(written);
            memory::device_write(entry, &id.to_le_bytes());
            memory::device_write(entry + 4, &len.to_le_bytes());
            self.used_idx = self.used_idx.wrapping_add(1);
            memory::device_write(used + 2, &self.used_idx.to_le_bytes());
            if u16_at(avail) & AVAIL_F_NO_INTERRUPT == 0 {
                self.isr |= InterruptStatus::QUEUE_INTERRUPT.bits();
            }
        }
    }

    /// The buffers of the descriptor chain at `head`: device-readable,
    /// then device-writable (2.7.4.2: readable ones come first).
    fn chain(&self, head: u16) -> (Vec<Buffer>, Vec<Buffer>) {
        let size = self.queue.as_ref().unwrap().size;
        let table = self.queue.as_ref().unwrap().desc;
        let mut readable = Vec::new();
        let mut writable = Vec::new();
        let mut push = |addr, len, flags: u16| {
            if flags & DESC_F_WRITE != 0 {
                writable.push((addr, len));
            } else {
                assert!(
                    writable.is_empty(),
                    "a readable buffer after a writable one"
                );
                readable.push((addr, len));
            }
        };
        let mut index = head;
        for _ in 0..size {
            let (addr, len, flags, next) = descriptor(table, index, size);
            if flags & DESC_F_INDIRECT != 0 {
                assert!(self.negotiated(F_INDIRECT_DESC), "indirect, not negotiated");
                assert_eq!(flags & DESC_F_NEXT, 0, "indirect and next (2.7.5.3.1)");
                assert!(len > 0 && len % 16 == 0, "indirect table of {len} bytes");
                let entries = (len / 16) as u16;
                let mut inner = 0;
                for _ in 0..entries {
                    let (addr, len, flags, next) = descriptor(addr, inner, entries);
                    assert_eq!(flags & DESC_F_INDIRECT, 0, "nested indirect table");
                    push(addr, len as usize, flags);
                    if flags & DESC_F_NEXT == 0 {
                        return (readable, writable);
                    }
                    inner = next;
                }
                panic!("indirect table loops");
            }
            push(addr, len as usize, flags);
            if flags & DESC_F_NEXT == 0 {
                return (readable, writable);
            }
            index = next;
        }
        panic!("descriptor chain loops");
    }

    /// Do one block request; the bytes written into its buffers.
    fn handle(&mut self, readable: &[Buffer], writable: &[Buffer]) -> u32 {
        let mut input = Vec::new();
        for &(addr, len) in readable {
            input.extend(memory::device_read(addr, len));
        }
        assert!(input.len() >= 16, "no request header");
        let kind = u32::from_le_bytes(input[0..4].try_into().unwrap());
        let sector = u64::from_le_bytes(input[8..16].try_into().unwrap());
        let out_data = &input[16..];
        let room: usize = writable.iter().map(|w| w.1).sum();
        assert!(room >= 1, "no status byte");
        let in_len = room - 1;
        let data_len = if kind == T_IN { in_len } else { out_data.len() };
        self.requests.push(Request {
            kind,
            sector,
            data_len,
        });
        if self.faults.stopped {
            return 0;
        }
        let mut answer = Vec::new();
        let status = match self.faults.status {
            Some(status) => status,
            None => match kind {
                T_IN => match self.range(sector, in_len) {
                    Some(sectors) => {
                        for n in sectors {
                            answer.extend(self.sector(n));
                        }
                        S_OK
                    }
                    None => S_IOERR,
                },
                T_OUT if self.negotiated(F_RO) => S_IOERR,
                T_OUT => match self.range(sector, out_data.len()) {
                    Some(sectors) => {
                        for (n, bytes) in sectors.zip(out_data.chunks(SECTOR)) {
                            self.sectors.insert(n, bytes.try_into().unwrap());
                        }
                        S_OK
                    }
                    None => S_IOERR,
                },
                T_FLUSH if self.negotiated(F_FLUSH) => S_OK,
                _ => S_UNSUPP,
            },
        };
        if status != S_OK {
            answer.clear();
        }
        answer.resize(in_len, 0);
        answer.push(status);
        // Data then status, across however many writable buffers there
        // are; a failed read writes only its status.
        let mut at = 0;
        let skip = if status == S_OK { 0 } else { in_len };
        for &(addr, len) in writable {
            let end = at + len;
            if end > skip {
                let from = at.max(skip);
                memory::device_write(addr + (from - at) as u64, &answer[from..end]);
            }
            at = end;
        }
        (answer.len() - skip) as u32
    }

    /// The sectors of a transfer of `len` bytes from `sector`, if it is
    /// whole sectors on the disk.
    fn range(&self, sector: u64, len: usize) -> Option<std::ops::Range<u64>> {
        if !len.is_multiple_of(SECTOR) {
            return None;
        }
        let end = sector.checked_add((len / SECTOR) as u64)?;
        (end <= self.capacity).then_some(sector..end)
    }
}

fn u16_at(phys: PhysAddr) -> u16 {
    u16::from_le_bytes(memory::device_read(phys, 2).try_into().unwrap())
}

/// Descriptor `index` of the table at `table` of `size` entries: address,
/// length, flags, next.
fn descriptor(table: PhysAddr, index: u16, size: u16) -> (PhysAddr, u32, u16, u16) {
    assert!(index < size, "descriptor {index} of {size}");
    let raw = memory::device_read(table + 16 * u64::from(index), 16);
    (
        u64::from_le_bytes(raw[0..8].try_into().unwrap()),
        u32::from_le_bytes(raw[8..12].try_into().unwrap()),
        u16::from_le_bytes(raw[12..14].try_into().unwrap()),
        u16::from_le_bytes(raw[14..16].try_into().unwrap()),
    )
}

/// The device's state. A test that failed while holding it (an
/// assertion of the fake) leaves it as it was, for the driver's drop.
fn lock(device: &Mutex<Device>) -> MutexGuard<'_, Device> {
    device
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The test's handle on a device.
#[derive(Clone)]
pub struct FakeBlk(pub Arc<Mutex<Device>>);

impl FakeBlk {
    /// A device of `capacity` sectors offering `features`, with a queue
    /// of at most 16 entries, serving requests as soon as it is notified.
    pub fn new(capacity: u64, features: u64) -> Self {
        FakeBlk(Arc::new(Mutex::new(Device {
            offered: features,
            accepted: 0,
            status: 0,
            status_writes: Vec::new(),
            capacity,
            sectors: BTreeMap::new(),
            max_queue: 16,
            queue: None,
            next_avail: 0,
            used_idx: 0,
            isr: 0,
            isr_reads: 0,
            notifications: 0,
            waits: 0,
            deliveries: 0,
            rearmed_while_raised: 0,
            requests: Vec::new(),
            faults: Faults::default(),
            serve_on_notify: true,
            config_generation: 0,
            legacy: false,
            guest_page_size: 0,
        })))
    }

    /// Serve requests only when the driver waits on the line, as a device
    /// does that takes time.
    pub fn slow(self) -> Self {
        lock(&self.0).serve_on_notify = false;
        self
    }

    /// A legacy device (see [`Device::legacy`]).
    pub fn legacy(self) -> Self {
        lock(&self.0).legacy = true;
        self
    }

    pub fn max_queue(self, entries: u32) -> Self {
        lock(&self.0).max_queue = entries;
        self
    }

    pub fn device(&self) -> MutexGuard<'_, Device> {
        lock(&self.0)
    }

    /// Let the device work on a thread of its own, as hardware does: it
    /// looks at its available ring every `every` and serves what it
    /// finds, until the returned handle is dropped.
    pub fn run_alone(&self, every: Duration) -> Running {
        let device = self.0.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Acquire) {
                std::thread::sleep(every);
                lock(&device).serve();
            }
        });
        Running {
            stop,
            thread: Some(thread),
        }
    }

    pub fn transport(&self) -> FakeTransport {
        FakeTransport(self.0.clone())
    }

    /// The device's interrupt line, giving up after `patience` waits.
    pub fn line(&self, patience: u32) -> FakeLine {
        FakeLine {
            device: self.0.clone(),
            patience,
            masked: false,
        }
    }
}

/// A device running on a thread of its own: stopped when dropped.
pub struct Running {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub struct FakeTransport(Arc<Mutex<Device>>);

impl Transport for FakeTransport {
    fn device_type(&self) -> DeviceType {
        DeviceType::Block
    }

    fn read_device_features(&mut self) -> u64 {
        lock(&self.0).offered
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        lock(&self.0).accepted = driver_features;
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        if queue == 0 {
            lock(&self.0).max_queue
        } else {
            0
        }
    }

    fn notify(&mut self, queue: u16) {
        assert_eq!(queue, 0, "virtio-blk has one queue here");
        let mut device = lock(&self.0);
        device.notifications += 1;
        if device.serve_on_notify {
            device.serve();
        }
    }

    fn get_status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_retain(lock(&self.0).status)
    }

    fn set_status(&mut self, status: DeviceStatus) {
        let mut device = lock(&self.0);
        device.status_writes.push(status.bits());
        if status.is_empty() {
            device.reset();
            return;
        }
        let mut bits = status.bits();
        let features_ok = DeviceStatus::FEATURES_OK.bits();
        if bits & features_ok != 0
            && (device.faults.refuse_features || device.accepted & !device.offered != 0)
        {
            bits &= !features_ok;
        }
        device.status = bits;
    }

    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        lock(&self.0).guest_page_size = guest_page_size;
    }

    fn requires_legacy_layout(&self) -> bool {
        lock(&self.0).legacy
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        let mut device = lock(&self.0);
        assert_eq!(queue, 0);
        assert!(size <= device.max_queue && size.is_power_of_two());
        if device.legacy {
            // Only the page number reaches a legacy device; without a
            // guest page size it cannot find the queue at all.
            let page = PhysAddr::from(device.guest_page_size);
            if page == 0 {
                return;
            }
            let desc = descriptors / page * page;
            let avail = desc + 16 * PhysAddr::from(size);
            let used = (avail + 6 + 2 * PhysAddr::from(size)).next_multiple_of(page);
            device.queue = Some(Queue {
                size: size as u16,
                desc,
                avail,
                used,
            });
            return;
        }
        device.queue = Some(Queue {
            size: size as u16,
            desc: descriptors,
            avail: driver_area,
            used: device_area,
        });
    }

    fn queue_unset(&mut self, _queue: u16) {
        lock(&self.0).queue = None;
    }

    fn queue_used(&mut self, _queue: u16) -> bool {
        lock(&self.0).queue.is_some()
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        let mut device = lock(&self.0);
        device.isr_reads += 1;
        InterruptStatus::from_bits_retain(std::mem::take(&mut device.isr))
    }

    fn read_config_generation(&self) -> u32 {
        lock(&self.0).config_generation
    }

    fn read_config_space<T: zerocopy::FromBytes + zerocopy::IntoBytes>(
        &self,
        offset: usize,
    ) -> Result<T, Error> {
        let size = std::mem::size_of::<T>();
        if offset + size > CONFIG_BYTES {
            return Err(Error::ConfigSpaceTooSmall);
        }
        let mut device = lock(&self.0);
        let mut config = [0u8; CONFIG_BYTES];
        config[0..8].copy_from_slice(&device.capacity.to_le_bytes());
        if let Some(capacity) = device.faults.resize_on_config_read.take() {
            device.capacity = capacity;
            device.config_generation += 1;
        }
        config[20..24].copy_from_slice(&(SECTOR as u32).to_le_bytes());
        Ok(T::read_from_bytes(&config[offset..offset + size]).unwrap())
    }

    fn write_config_space<T: zerocopy::IntoBytes + zerocopy::Immutable>(
        &mut self,
        _offset: usize,
        _value: T,
    ) -> Result<(), Error> {
        Err(Error::Unsupported)
    }
}

/// The device's interrupt line as the kernel delivers it: raised while
/// the interrupt status is not zero, masked from a delivery until the
/// driver rearms it. A slow device does its work while the driver
/// waits. The line counts the driver's waits (in the device's state), and
/// fails the test if the driver waits far past its patience (it would
/// never stop).
pub struct FakeLine {
    device: Arc<Mutex<Device>>,
    patience: u32,
    masked: bool,
}

impl Completion for FakeLine {
    fn wait(&mut self) -> bool {
        let mut device = lock(&self.device);
        device.waits += 1;
        assert!(
            device.waits <= self.patience.saturating_mul(4).max(1000),
            "the driver waits on a device that will never answer"
        );
        if !device.serve_on_notify {
            device.serve();
        }
        if !self.masked && device.isr != 0 {
            self.masked = true;
            device.deliveries += 1;
            true
        } else {
            false
        }
    }

    fn rearm(&mut self) {
        self.masked = false;
        let mut device = lock(&self.device);
        if device.isr != 0 {
            device.rearmed_while_raised += 1;
        }
    }

    fn patience(&self) -> u32 {
        self.patience
    }
}
