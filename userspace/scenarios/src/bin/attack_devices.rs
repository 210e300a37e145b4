//! Adversary (device calls): a driver holding one device's capabilities —
//! the RTC's two ports and its interrupt line, a page range of device
//! memory and a DMA allowance, all lent by the suite — tries to reach past
//! them, and to make the kernel hold memory nobody pays for.
//!
//! * Wrong kinds: each capability used as each other kind, and the device
//!   memory one to take the screen over.
//! * Forged and stale handles: 256 guessed handles (not its own) and a
//!   dropped one, for a port read, a binding, a mapping and DMA.
//! * Ranges: ports beside, straddling and far from its two (the kernel's
//!   own among them), bad widths; device memory in RAM, straddling the
//!   grant's end, wrapping, unaligned or empty, at addresses it may not
//!   use; minting anything (it holds no `GRANT`).
//! * Budgets: its DMA allowance allocated page by page until refused, then
//!   more; its device memory mapped 256 times over.
//! * Interrupts: lines outside its grant (the kernel's timer, cascade and
//!   serial among them), the line bound twice, acknowledged unbound.
//!   Then it binds the RTC's line to a channel of its own that it never
//!   reads, makes the RTC interrupt 1,024 times a second, and acknowledges
//!   every notification without reading it: each acknowledgement must
//!   pay for the next notification, so its memory budget must run out
//!   (`ResourceExhausted(MemoryBudget)`) before it has acknowledged more
//!   notifications than its budget could hold at 64 bytes each.
//!
//! It returns the lent capabilities with its report and parks holding the
//! binding, its queued notifications, its DMA memory and its mappings;
//! the suite checks that the kernel's heap and frames come back when it
//! kills it.
//!
//! Capabilities: the suite's inbox (send), then the RTC's ports
//! (`0x70-0x71`), device memory, interrupt line 8 and a DMA allowance, as
//! `[adversary]` in `suite-adversary.manifest` lists them.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use pandagen_abi::device::{DeviceError, DeviceResource, PhysRange, PortRange};
use pandagen_abi::error::Resource;
use pandagen_abi::syscall::{PortReadRequest, Syscall};
use pandagen_abi::{Cap, CapHandle, ChannelId, Duration, KernelApi, KernelError, Rights};
use pandagen_rt::device::{self, DeviceMemory, Dma, Framebuffer, Interrupt, Ports};
use pandagen_rt::syscall::call_small;
use pandagen_rt::Kernel;
use pandagen_scenarios::adversary::{
    guessed_handles, no_capability, park, report, Breaches, DEVICE_ATTACKER_BUDGET as BUDGET,
};
use pandagen_scenarios::rtc::{rtc_read, rtc_write, RTC_DATA, RTC_INDEX, RTC_LINE};

pandagen_rt::entry!(main);

/// The device memory and the DMA allowance the manifest lends (checked
/// against what the kernel reports where it can be).
const DEVICE_MEMORY: PhysRange = PhysRange::new(0xfe00_0000, 0x4000);
const DMA_ALLOWANCE: u64 = 64 << 10;
const PAGE: u64 = 4096;

fn outside(e: &KernelError) -> bool {
    *e == KernelError::Device(DeviceError::OutsideGrant)
}

fn wrong_kind(e: &KernelError) -> bool {
    matches!(e, KernelError::WrongCapabilityKind { .. })
}

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let info = kernel.startup()?;
    let caps = &info.capabilities;
    let inbox = ChannelId::from_handle(caps[0]);
    let (ports, memory, line, dma) = (caps[1], caps[2], caps[3], caps[4]);
    let mut b = Breaches::default();
    let sink = kernel.create_channel()?;

    wrong_kinds(&mut b, ports, memory, line, dma, sink.handle());
    forged_handles(kernel, &mut b, caps)?;
    port_ranges(&mut b, ports);
    memory_ranges(&mut b, memory);
    dma_budget(&mut b, dma);
    interrupts(kernel, &mut b, ports, line, sink)?;

    let lent: Vec<Cap<()>> = [ports, memory, line, dma]
        .into_iter()
        .map(Cap::from_handle)
        .collect();
    report(kernel, inbox, b, lent)?;
    park(kernel)
}

fn wrong_kinds(
    b: &mut Breaches,
    ports: CapHandle,
    memory: CapHandle,
    line: CapHandle,
    dma: CapHandle,
    channel: CapHandle,
) {
    b.expect_refused(
        "ports through the interrupt capability",
        Ports::new(line).read8(RTC_INDEX),
        wrong_kind,
    );
    b.expect_refused(
        "bind through the port capability",
        Interrupt::new(ports, RTC_LINE).bind(channel),
        wrong_kind,
    );
    b.expect_refused(
        "DMA through the device-memory capability",
        Dma::new(memory).allocate(PAGE),
        wrong_kind,
    );
    b.expect_refused(
        "map through the DMA capability",
        DeviceMemory::new(dma).map(DEVICE_MEMORY, false, None),
        wrong_kind,
    );
    b.expect_refused(
        "map through a channel",
        DeviceMemory::new(channel).map(DEVICE_MEMORY, false, None),
        wrong_kind,
    );
    b.expect_refused(
        "take the screen over with device memory that is not the framebuffer",
        Framebuffer::new(memory).take_over(channel),
        |e| *e == KernelError::Device(DeviceError::NotFramebuffer),
    );
    // It holds no GRANT: nothing can be minted, not even narrower.
    for (parent, resource) in [
        (
            ports,
            DeviceResource::Ports(PortRange::new(RTC_INDEX, RTC_INDEX)),
        ),
        (ports, DeviceResource::Ports(PortRange::new(0x20, 0x21))),
        (memory, DeviceResource::Memory(PhysRange::new(0, PAGE))),
        (dma, DeviceResource::Dma { bytes: u64::MAX }),
    ] {
        b.expect_refused(
            "mint a device capability",
            device::mint(parent, resource, Rights::ALL),
            |e| *e == KernelError::InsufficientAuthority,
        );
    }
}

/// Guessed handles (skipping its own) and a stale one, as each device
/// capability.
fn forged_handles(
    kernel: &mut Kernel,
    b: &mut Breaches,
    own: &[CapHandle],
) -> Result<(), KernelError> {
    for guess in guessed_handles(kernel, own)? {
        b.expect_refused(
            "port read through a guessed handle",
            Ports::new(guess).read8(RTC_INDEX),
            no_capability,
        );
        b.expect_refused(
            "bind through a guessed handle",
            Interrupt::new(guess, RTC_LINE).bind(guess),
            no_capability,
        );
        b.expect_refused(
            "map through a guessed handle",
            DeviceMemory::new(guess).map(DEVICE_MEMORY, true, None),
            no_capability,
        );
        b.expect_refused(
            "DMA through a guessed handle",
            Dma::new(guess).allocate(PAGE),
            no_capability,
        );
    }
    Ok(())
}

fn port_ranges(b: &mut Breaches, ports: CapHandle) {
    let rtc = Ports::new(ports);
    for port in [
        0x6f, 0x72, 0x20, 0x21, 0x40, 0x43, 0xa0, 0x3f8, 0xf4, 0xcf8, 0xffff, 0,
    ] {
        b.expect_refused("a port outside the grant", rtc.read8(port), outside);
        b.expect_refused("a port outside the grant", rtc.write8(port, 0), outside);
    }
    b.expect_refused(
        "a word straddling the grant's end",
        rtc.read16(RTC_DATA),
        outside,
    );
    b.expect_refused(
        "a double word from the grant's start",
        rtc.read32(RTC_INDEX),
        outside,
    );
    b.expect_refused("a word below the grant", rtc.write16(0x6f, 0), outside);
    for width in [0u8, 3, 8, 255] {
        let read: Result<u32, KernelError> = call_small(
            Syscall::PortRead,
            &PortReadRequest {
                capability: ports,
                port: RTC_INDEX,
                width,
            },
        );
        b.expect_refused("a bad access width", read, |e| {
            *e == KernelError::Device(DeviceError::BadWidth { width })
        });
    }
}

fn memory_ranges(b: &mut Breaches, memory: CapHandle) {
    let device_memory = DeviceMemory::new(memory);
    let base = DEVICE_MEMORY.base;
    let end = DEVICE_MEMORY.end();
    for range in [
        PhysRange::new(0, PAGE),
        PhysRange::new(0x10_0000, 0x10_0000),
        PhysRange::new(base - PAGE, 2 * PAGE),
        PhysRange::new(end - PAGE, 2 * PAGE),
        PhysRange::new(end, PAGE),
        PhysRange::new(base + 1, PAGE),
        PhysRange::new(base, 0),
        PhysRange::new(base, PAGE + 1),
        PhysRange::new(base, u64::MAX - base + 1),
        PhysRange::new(u64::MAX & !(PAGE - 1), 2 * PAGE),
    ] {
        b.expect_refused(
            "device memory outside the grant",
            device_memory.map(range, true, None),
            outside,
        );
    }
    for at in [
        0,
        0x1001,
        0xffff_8000_0000_0000,
        0x0000_8000_0000_0000 - PAGE,
        u64::MAX & !(PAGE - 1),
    ] {
        b.expect_refused(
            "a mapping where it may not be",
            device_memory.map(DEVICE_MEMORY, true, Some(at)),
            |e| *e == KernelError::Device(DeviceError::BadMappingAddress { address: at }),
        );
    }
    // The grant itself, many times over: each mapping works or is refused
    // for its budget, nothing else.
    for _ in 0..256 {
        match device_memory.map(DEVICE_MEMORY, false, None) {
            Ok(_) | Err(KernelError::ResourceExhausted(_)) => {}
            Err(e) => b.record(alloc::format!("mapping its own device memory: {e:?}")),
        }
    }
}

fn dma_budget(b: &mut Breaches, dma: CapHandle) {
    let allowance = Dma::new(dma);
    for bytes in [0, 100, PAGE + 1] {
        b.expect_refused(
            "a DMA size not in pages",
            allowance.allocate(bytes),
            outside,
        );
    }
    let beyond =
        |e: &KernelError| matches!(e, KernelError::Device(DeviceError::DmaAllowance { .. }));
    b.expect_refused(
        "more DMA than the allowance",
        allowance.allocate(DMA_ALLOWANCE + PAGE),
        beyond,
    );
    b.expect_refused(
        "DMA of nearly all of memory",
        allowance.allocate(u64::MAX & !(PAGE - 1)),
        beyond,
    );
    for page in 0..DMA_ALLOWANCE / PAGE {
        if let Err(e) = allowance.allocate(PAGE) {
            b.record(alloc::format!(
                "DMA page {page} within the allowance: {e:?}"
            ));
        }
    }
    b.expect_refused("DMA past the allowance", allowance.allocate(PAGE), beyond);
}

fn interrupts(
    kernel: &mut Kernel,
    b: &mut Breaches,
    ports: CapHandle,
    line: CapHandle,
    sink: ChannelId,
) -> Result<(), KernelError> {
    for other in [0, 1, 2, 4, 7, 9, 15, 16, 200, 255] {
        b.expect_refused(
            "bind a line outside the grant",
            Interrupt::new(line, other).bind(sink.handle()),
            outside,
        );
    }
    let rtc_line = Interrupt::new(line, RTC_LINE);
    b.expect_refused("acknowledge an unbound line", rtc_line.acknowledge(), |e| {
        *e == KernelError::Device(DeviceError::NotBound { line: RTC_LINE })
    });
    rtc_line.bind(sink.handle())?;
    b.expect_refused("bind the line twice", rtc_line.bind(sink.handle()), |e| {
        *e == KernelError::Device(DeviceError::AlreadyBound { line: RTC_LINE })
    });
    // The RTC interrupts 1,024 times a second (register A rate 6, register
    // B periodic enable); reading register C lets it interrupt again.
    let rtc = Ports::new(ports);
    let a = rtc_read(&rtc, 0x8a)?;
    rtc_write(&rtc, 0x8a, (a & 0xf0) | 0x06)?;
    let reg_b = rtc_read(&rtc, 0x8b)?;
    rtc_write(&rtc, 0x8b, reg_b | 0x40)?;
    // Each notification costs at least 64 bytes, so an honest kernel
    // refuses an acknowledgement before this many.
    let most = BUDGET.memory / 64;
    let mut acknowledged = 0u64;
    let refusal = loop {
        rtc_read(&rtc, 0x0c)?;
        // Several periods, so that a fire queues the re-armed
        // notification. Spun, not slept: the suite takes a blocked
        // attacker for one that has finished.
        let until = kernel.now() + Duration::from_millis(5);
        while kernel.now() < until {}
        match rtc_line.acknowledge() {
            Ok(_) => acknowledged += 1,
            Err(e) => break Some(e),
        }
        if acknowledged > most {
            break None;
        }
    };
    match refusal {
        Some(KernelError::ResourceExhausted(Resource::MemoryBudget)) => {}
        Some(other) => b.record(alloc::format!(
            "acknowledging unread notifications was refused with {other:?}"
        )),
        None => b.record(alloc::format!(
            "{acknowledged} unread notifications acknowledged without running out of budget"
        )),
    }
    // Read a few of the notifications: their charges come back, enough to
    // report and park; the rest stay queued, with the binding, until the
    // suite kills this task.
    for _ in 0..16 {
        let _ = kernel.receive_message(sink, Some(Duration::ZERO));
    }
    // Leave the RTC quiet for whoever comes next.
    let reg_b = rtc_read(&rtc, 0x8b)?;
    rtc_write(&rtc, 0x8b, reg_b & !0x40)?;
    rtc_read(&rtc, 0x0c)?;
    Ok(())
}
