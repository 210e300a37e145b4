//! Device capabilities in QEMU: a small driver, as the root task, cuts its
//! own narrower capabilities from the root's and uses each — the CMOS real
//! time clock through ports 0x70/0x71, the I/O APIC's registers as device
//! memory, the RTC's interrupt (line 8) bound to a channel, DMA memory —
//! and checks the refusals: wrong kind, outside the grant, RAM as device
//! memory, a line bound twice, a device mapping as a system-call buffer,
//! and a storm on a line never acknowledged (the kernel keeps running, the
//! fires are coalesced into one notification). Last, the framebuffer: only
//! its own capability maps it or takes the screen over.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use pandagen_abi::device::{
    DeviceError, DeviceResource, InterruptLines, InterruptNotification, PhysRange, PortRange,
    INTERRUPT_ACTION,
};
use pandagen_abi::info::{InfoReply, InfoRequest};
use pandagen_abi::syscall::{Syscall, ROOT_CAPABILITIES};
use pandagen_abi::{Cap, ExitReason, TaskDescriptor};
use pandagen_abi::{CapHandle, CapKind, ChannelId, Duration, KernelApi, KernelError, Rights};
use pandagen_rt::device::{self, DeviceMemory, Dma, Framebuffer, Interrupt, Ports};
use pandagen_rt::Kernel;
use pandagen_scenarios::rtc::{rtc_read, rtc_write, RTC_DATA, RTC_INDEX, RTC_LINE};
use pandagen_scenarios::{
    wait_exit, Tally, DEVICE_HOLDER_LINE, DEVICE_HOLDER_PAGE, DEVICE_HOLDER_REPORT,
};

pandagen_rt::entry!(main);

/// The I/O APIC of QEMU's PC machines.
const IOAPIC: PhysRange = PhysRange::new(0xfec0_0000, 0x1000);

fn expect_error<T: core::fmt::Debug>(
    outcome: Result<T, KernelError>,
    wanted: KernelError,
) -> Result<(), String> {
    match outcome {
        Err(e) if e == wanted => Ok(()),
        other => Err(format!("expected {wanted:?}, got {other:?}")),
    }
}

fn root_cap(info: &pandagen_abi::syscall::StartupInfo, kind: CapKind) -> CapHandle {
    let index = ROOT_CAPABILITIES
        .iter()
        .position(|k| *k == kind)
        .expect("a root device capability");
    info.capabilities[index]
}

/// The next interrupt notification on `channel`, within `timeout`.
fn notification(
    kernel: &mut Kernel,
    channel: ChannelId,
    timeout: Duration,
) -> Result<InterruptNotification, String> {
    let message = kernel
        .receive_message(channel, Some(timeout))
        .map_err(|e| format!("no notification: {e:?}"))?;
    if message.action != INTERRUPT_ACTION {
        return Err(format!("unexpected action {}", message.action));
    }
    message
        .payload
        .decode()
        .map_err(|e| format!("undecodable notification: {e:?}"))
}

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let mut tally = Tally::default();
    let info = kernel.startup()?;
    let all_ports = root_cap(&info, CapKind::IoPorts);
    let all_memory = root_cap(&info, CapKind::DeviceMemory);
    let all_lines = root_cap(&info, CapKind::Interrupt);
    let all_dma = root_cap(&info, CapKind::DmaMemory);
    let driver_rights = Rights::READ | Rights::WRITE | Rights::RECEIVE;

    // Ports: the RTC's two, nothing more.
    let rtc = device::mint(
        all_ports,
        DeviceResource::Ports(PortRange::new(RTC_INDEX, RTC_DATA)),
        driver_rights,
    )?;
    let ports = Ports::new(rtc);
    tally.check(
        "devices/ports_read_the_rtc",
        (|| {
            let status_b = rtc_read(&ports, 0x0b).map_err(|e| format!("{e:?}"))?;
            let seconds = rtc_read(&ports, 0x00).map_err(|e| format!("{e:?}"))?;
            let limit = if status_b & 0x04 != 0 { 60 } else { 0x60 };
            if seconds < limit {
                Ok(())
            } else {
                Err(format!(
                    "seconds register {seconds:#x} (status B {status_b:#x})"
                ))
            }
        })(),
    );
    tally.check(
        "devices/ports_outside_the_grant_refused",
        expect_error(
            ports.read8(0x72),
            KernelError::Device(DeviceError::OutsideGrant),
        )
        .and(expect_error(
            ports.read16(RTC_DATA),
            KernelError::Device(DeviceError::OutsideGrant),
        )),
    );
    tally.check(
        "devices/kernel_ports_refused_even_to_the_root",
        expect_error(
            Ports::new(all_ports).write8(0xf4, 0x10),
            KernelError::Device(DeviceError::KernelPort { port: 0xf4 }),
        ),
    );
    tally.check(
        "devices/mint_only_narrower_with_grant",
        (|| {
            let grantable = device::mint(
                all_ports,
                DeviceResource::Ports(PortRange::new(RTC_INDEX, RTC_DATA)),
                Rights::READ | Rights::GRANT,
            )
            .map_err(|e| format!("{e:?}"))?;
            expect_error(
                device::mint(
                    grantable,
                    DeviceResource::Ports(PortRange::new(RTC_INDEX, 0x72)),
                    Rights::READ,
                ),
                KernelError::Device(DeviceError::OutsideGrant),
            )?;
            device::mint(
                grantable,
                DeviceResource::Ports(PortRange::new(RTC_DATA, RTC_DATA)),
                Rights::READ,
            )
            .map_err(|e| format!("narrower: {e:?}"))?;
            expect_error(
                device::mint(
                    rtc,
                    DeviceResource::Ports(PortRange::new(RTC_INDEX, RTC_INDEX)),
                    Rights::READ,
                ),
                KernelError::InsufficientAuthority,
            )?;
            expect_error(
                device::mint(
                    all_ports,
                    DeviceResource::Ports(PortRange::new(0x3f0, 0x3ff)),
                    Rights::READ,
                ),
                KernelError::Device(DeviceError::KernelPort { port: 0x3f8 }),
            )
        })(),
    );
    tally.check(
        "devices/wrong_kind_refused",
        match Ports::new(all_dma).read8(RTC_DATA) {
            Err(KernelError::WrongCapabilityKind {
                expected: CapKind::IoPorts,
                found: CapKind::DmaMemory,
            }) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );

    // Device memory: the I/O APIC's registers, uncached.
    let ioapic = device::mint(all_memory, DeviceResource::Memory(IOAPIC), driver_rights);
    tally.check(
        "devices/device_memory_maps_the_ioapic",
        (|| {
            let cap = ioapic.map_err(|e| format!("mint: {e:?}"))?;
            let mapping = DeviceMemory::new(cap)
                .map(IOAPIC, true, None)
                .map_err(|e| format!("map: {e:?}"))?;
            // IOREGSEL = 1 (the version register), then read IOWIN.
            mapping.write32(0, 1);
            let version = mapping.read32(0x10).unwrap_or(0);
            let entries = (version >> 16) & 0xff;
            if version & 0xff >= 0x11 && entries >= 15 {
                Ok(())
            } else {
                Err(format!("I/O APIC version register {version:#x}"))
            }
        })(),
    );
    tally.check(
        "devices/ram_refused_as_device_memory",
        expect_error(
            DeviceMemory::new(all_memory).map(PhysRange::new(0x10_0000, 0x1000), false, None),
            KernelError::Device(DeviceError::NotDeviceMemory {
                base: 0x10_0000,
                len: 0x1000,
            }),
        ),
    );
    tally.check(
        "devices/device_memory_outside_the_grant_refused",
        match ioapic {
            Ok(cap) => expect_error(
                DeviceMemory::new(cap).map(PhysRange::new(IOAPIC.base, 0x2000), false, None),
                KernelError::Device(DeviceError::OutsideGrant),
            ),
            Err(e) => Err(format!("mint: {e:?}")),
        },
    );
    tally.check(
        "devices/device_mapping_is_not_a_syscall_buffer",
        (|| {
            let cap = ioapic.map_err(|e| format!("mint: {e:?}"))?;
            let mapping = DeviceMemory::new(cap)
                .map(IOAPIC, false, None)
                .map_err(|e| format!("map: {e:?}"))?;
            let mut scratch = [0u8; 16];
            // SAFETY: the response slice names this task's own (mapped)
            // device page; the kernel must refuse it without touching it,
            // and nothing here reads it.
            let response =
                unsafe { core::slice::from_raw_parts_mut(mapping.address as *mut u8, 64) };
            match pandagen_rt::syscall::call::<_, u64>(Syscall::Now, &(), &mut scratch, response) {
                Err(KernelError::Syscall(_)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })(),
    );

    // Interrupts: the RTC's periodic interrupt on line 8.
    let line_cap = device::mint(
        all_lines,
        DeviceResource::Interrupts(InterruptLines::one(RTC_LINE)),
        driver_rights,
    )?;
    let irq = Interrupt::new(line_cap, RTC_LINE);
    let channel = kernel.create_channel()?;
    let channel_handle = channel.handle();
    tally.check(
        "devices/kernel_line_refused",
        expect_error(
            Interrupt::new(all_lines, 0).bind(channel_handle),
            KernelError::Device(DeviceError::KernelInterrupt { line: 0 }),
        ),
    );
    tally.check(
        "devices/line_outside_the_grant_refused",
        expect_error(
            Interrupt::new(line_cap, 1).bind(channel_handle),
            KernelError::Device(DeviceError::OutsideGrant),
        ),
    );
    let bound = irq.bind(channel_handle);
    tally.check(
        "devices/line_bound_twice_refused",
        bound
            .map_err(|e| format!("first bind: {e:?}"))
            .and_then(|()| {
                expect_error(
                    Interrupt::new(all_lines, RTC_LINE).bind(channel_handle),
                    KernelError::Device(DeviceError::AlreadyBound { line: RTC_LINE }),
                )
            }),
    );
    // Periodic interrupt at 1024 Hz: register A rate 6, register B PIE.
    let enable = (|| {
        let a = rtc_read(&ports, 0x8a)?;
        rtc_write(&ports, 0x8a, (a & 0xf0) | 0x06)?;
        let b = rtc_read(&ports, 0x8b)?;
        rtc_write(&ports, 0x8b, b | 0x40)?;
        // Reading register C re-arms the RTC's interrupt.
        rtc_read(&ports, 0x0c).map(drop)
    })();
    tally.check(
        "devices/interrupts_arrive_and_acknowledge",
        enable
            .map_err(|e| format!("RTC setup: {e:?}"))
            .and_then(|()| {
                for round in 0..3 {
                    let n = notification(kernel, channel, Duration::from_millis(2000))
                        .map_err(|e| format!("round {round}: {e}"))?;
                    if n.line != RTC_LINE {
                        return Err(format!("notification for line {}", n.line));
                    }
                    rtc_read(&ports, 0x0c).map_err(|e| format!("{e:?}"))?;
                    irq.acknowledge().map_err(|e| format!("ack: {e:?}"))?;
                }
                Ok(())
            }),
    );
    // A storm the driver never acknowledges: the RTC keeps asking, the
    // line stays masked, the kernel's timer (another line) keeps working.
    tally.check(
        "devices/unacknowledged_storm_is_coalesced",
        (|| {
            let first = notification(kernel, channel, Duration::from_millis(2000))?;
            // Re-arm the device but not the line, then keep the RTC busy.
            let before = kernel.now();
            kernel
                .sleep(Duration::from_millis(200))
                .map_err(|e| format!("sleep: {e:?}"))?;
            let slept = kernel.now() - before;
            if slept < Duration::from_millis(200) {
                return Err(format!("slept only {slept:?}"));
            }
            // Nothing more was queued while the line waited.
            if let Ok(m) = kernel.receive_message(channel, Some(Duration::ZERO)) {
                return Err(format!("a second notification queued: {}", m.action));
            }
            rtc_read(&ports, 0x0c).map_err(|e| format!("{e:?}"))?;
            irq.acknowledge().map_err(|e| format!("ack: {e:?}"))?;
            // After the acknowledgement the line works again.
            let next = notification(kernel, channel, Duration::from_millis(2000))?;
            rtc_read(&ports, 0x0c).map_err(|e| format!("{e:?}"))?;
            irq.acknowledge().map_err(|e| format!("ack: {e:?}"))?;
            if first.line == RTC_LINE && next.line == RTC_LINE {
                Ok(())
            } else {
                Err(format!("lines {} and {}", first.line, next.line))
            }
        })(),
    );
    // Quiet the RTC again.
    let _ = rtc_read(&ports, 0x8b).and_then(|b| rtc_write(&ports, 0x8b, b & !0x40));

    // DMA: contiguous, zeroed, its physical address never device memory.
    let allowance = device::mint(
        all_dma,
        DeviceResource::Dma { bytes: 0x4000 },
        driver_rights,
    )?;
    let dma = Dma::new(allowance);
    tally.check(
        "devices/dma_allocates_within_the_allowance",
        (|| {
            let region = dma.allocate(0x3000).map_err(|e| format!("{e:?}"))?;
            if region.physical == 0 || region.physical % 0x1000 != 0 || region.bytes != 0x3000 {
                return Err(format!("{region:?}"));
            }
            expect_error(
                dma.allocate(0x2000),
                KernelError::Device(DeviceError::DmaAllowance {
                    held: 0x3000,
                    allowed: 0x4000,
                }),
            )?;
            // DMA memory is RAM: never mappable as device memory.
            expect_error(
                DeviceMemory::new(all_memory).map(
                    PhysRange::new(region.physical, 0x1000),
                    false,
                    None,
                ),
                KernelError::Device(DeviceError::NotDeviceMemory {
                    base: region.physical,
                    len: 0x1000,
                }),
            )
        })(),
    );
    tally.check(
        "devices/port_window_reads_the_rtc",
        (|| {
            let window = ports.open().map_err(|e| format!("open: {e:?}"))?;
            window
                .write8(RTC_INDEX, 0x0b)
                .map_err(|e| format!("{e:?}"))?;
            let direct = window.read8(RTC_DATA).map_err(|e| format!("{e:?}"))?;
            let checked = rtc_read(&ports, 0x0b).map_err(|e| format!("{e:?}"))?;
            expect_error(
                window.read8(0x72),
                KernelError::Device(DeviceError::OutsideGrant),
            )?;
            if direct == checked {
                Ok(())
            } else {
                Err(format!("status B {direct:#x} direct, {checked:#x} checked"))
            }
        })(),
    );
    tally.check(
        "devices/port_window_refused_without_write",
        (|| {
            let read_only = device::mint(
                all_ports,
                DeviceResource::Ports(PortRange::new(RTC_INDEX, RTC_DATA)),
                Rights::READ,
            )
            .map_err(|e| format!("{e:?}"))?;
            expect_error(
                Ports::new(read_only).open().map(|w| w.range()),
                KernelError::InsufficientAuthority,
            )?;
            expect_error(
                Ports::new(all_dma).open().map(|w| w.range()),
                KernelError::WrongCapabilityKind {
                    expected: CapKind::IoPorts,
                    found: CapKind::DmaMemory,
                },
            )
        })(),
    );
    for mode in ["prober-dropped", "prober-outside"] {
        tally.check(
            &format!("devices/port_window_faults_{mode}"),
            prober_dies(kernel, all_ports, mode),
        );
    }
    tally.check(
        "devices/a_dead_holder_gives_everything_back",
        dead_holder(kernel, &info, all_lines, all_memory, all_dma),
    );
    tally.check(
        "devices/framebuffer_only_through_its_own_capability",
        framebuffer_is_its_capabilitys(kernel, &info, all_memory),
    );
    tally.finish(kernel)
}

/// The framebuffer (QEMU's VGA) is mapped only through the one capability
/// the kernel made for it, the root's last: the root's all-of-device-memory
/// capability neither maps it nor mints a capability for it, and does not
/// take the screen over; the framebuffer's own capability does both.
fn framebuffer_is_its_capabilitys(
    kernel: &mut Kernel,
    info: &pandagen_abi::syscall::StartupInfo,
    all_memory: CapHandle,
) -> Result<(), String> {
    let Some(&own) = info.capabilities.get(ROOT_CAPABILITIES.len()) else {
        return Err("no framebuffer capability after the root's nine".into());
    };
    let channel = kernel.create_channel().map_err(|e| format!("{e:?}"))?;
    expect_error(
        Framebuffer::new(all_memory).take_over(channel.handle()),
        KernelError::Device(DeviceError::NotFramebuffer),
    )?;
    let screen = Framebuffer::new(own);
    let hand_over = screen
        .take_over(channel.handle())
        .map_err(|e| format!("take over: {e:?}"))?;
    let refused = KernelError::Device(DeviceError::NotDeviceMemory {
        base: hand_over.range.base,
        len: hand_over.range.len,
    });
    expect_error(
        DeviceMemory::new(all_memory).map(hand_over.range, true, None),
        refused,
    )?;
    expect_error(
        device::mint(
            all_memory,
            DeviceResource::Memory(hand_over.range),
            Rights::READ | Rights::WRITE,
        ),
        refused,
    )?;
    let pixels = screen.map(&hand_over).map_err(|e| format!("map: {e:?}"))?;
    // The first pixel row is the screen's new owner's to draw.
    pixels[..16].fill(0xff);
    if pixels[..16].iter().all(|&b| b == 0xff) {
        Ok(())
    } else {
        Err("the mapped framebuffer did not keep a write".into())
    }
}

/// `port_prober` named `mode` opens a port window, reports, and must die
/// of a #GP at its probe (see its documentation).
fn prober_dies(kernel: &mut Kernel, all_ports: CapHandle, mode: &str) -> Result<(), String> {
    let report = kernel.create_channel().map_err(|e| format!("{e:?}"))?;
    let exits = kernel.create_channel().map_err(|e| format!("{e:?}"))?;
    let send = kernel
        .clone_capability(&Cap::from(report), Rights::SEND | Rights::TRANSFER)
        .map_err(|e| format!("{e:?}"))?;
    let rtc = device::mint(
        all_ports,
        DeviceResource::Ports(PortRange::new(RTC_INDEX, RTC_DATA)),
        Rights::READ | Rights::WRITE | Rights::TRANSFER,
    )
    .map_err(|e| format!("{e:?}"))?;
    let descriptor = TaskDescriptor::new(mode.into())
        .with_image("port_prober")
        .with_exit_channel(exits)
        .with_capability(Cap::from_handle(send.handle()))
        .with_capability(Cap::from_handle(rtc));
    kernel
        .spawn_task(descriptor)
        .map_err(|e| format!("spawn: {e}"))?;
    let first: String = kernel
        .receive_message(report, Some(Duration::from_secs(20)))
        .map_err(|e| format!("no report: {e}"))?
        .payload
        .decode()
        .map_err(|e| format!("{e}"))?;
    if first != "opened" {
        return Err(first);
    }
    let exit = wait_exit(kernel, exits, Duration::from_secs(20))?;
    if let Ok(m) = kernel.receive_message(report, Some(Duration::ZERO)) {
        let said: String = m.payload.decode().unwrap_or_default();
        return Err(said);
    }
    match exit.reason {
        ExitReason::Failure { .. } => Ok(()),
        other => Err(format!("ended {other:?}")),
    }
}

fn frames_free(kernel: &mut Kernel, info: CapHandle) -> Result<u64, String> {
    match kernel.kernel_info(info, InfoRequest::Memory) {
        Ok(InfoReply::Memory(summary)) => Ok(summary.frames_free),
        other => Err(format!("kernel info: {other:?}")),
    }
}

/// A driver (`device_holder`) is refused DMA beyond its frames budget,
/// binds a line, allocates DMA memory and maps a device page, and is
/// killed: the line binds again and every frame it held (its image, its
/// DMA memory, its page tables) is free again.
fn dead_holder(
    kernel: &mut Kernel,
    startup: &pandagen_abi::syscall::StartupInfo,
    all_lines: CapHandle,
    all_memory: CapHandle,
    all_dma: CapHandle,
) -> Result<(), String> {
    let info = root_cap(startup, CapKind::KernelInfo);
    let line = DEVICE_HOLDER_LINE;
    let before = frames_free(kernel, info)?;
    let report = kernel.create_channel().map_err(|e| format!("{e:?}"))?;
    let exits = kernel.create_channel().map_err(|e| format!("{e:?}"))?;
    let minted = (|| -> Result<_, KernelError> {
        // Spawn moves capabilities: each needs TRANSFER.
        let moved = Rights::TRANSFER;
        let send = kernel.clone_capability(&Cap::from(report), Rights::SEND | moved)?;
        let dma = device::mint(
            all_dma,
            DeviceResource::Dma { bytes: 64 << 20 },
            Rights::WRITE | moved,
        )?;
        let irq = device::mint(
            all_lines,
            DeviceResource::Interrupts(InterruptLines::one(line)),
            Rights::RECEIVE | moved,
        )?;
        let page = device::mint(
            all_memory,
            DeviceResource::Memory(PhysRange::new(DEVICE_HOLDER_PAGE, 0x1000)),
            Rights::READ | moved,
        )?;
        Ok([send.handle(), dma, irq, page])
    })()
    .map_err(|e| format!("minting: {e:?}"))?;
    let mut descriptor = TaskDescriptor::new("device-holder".into())
        .with_image("device_holder")
        .with_exit_channel(exits);
    for cap in minted {
        descriptor = descriptor.with_capability(Cap::from_handle(cap));
    }
    let holder = kernel
        .spawn_task(descriptor)
        .map_err(|e| format!("spawn: {e}"))?;
    let message = kernel
        .receive_message(report, Some(Duration::from_secs(20)))
        .map_err(|e| format!("no report: {e}"))?;
    let said: String = message.payload.decode().map_err(|e| format!("{e}"))?;
    if message.action != DEVICE_HOLDER_REPORT || said != "ok" {
        return Err(format!("the holder reported {said:?}"));
    }
    let probe = kernel.create_channel().map_err(|e| format!("{e:?}"))?;
    expect_error(
        Interrupt::new(all_lines, line).bind(probe.handle()),
        KernelError::Device(DeviceError::AlreadyBound { line }),
    )?;
    kernel
        .terminate(
            holder.task_id,
            ExitReason::Failure {
                error: "killed by the devices suite".into(),
            },
        )
        .map_err(|e| format!("terminate: {e}"))?;
    wait_exit(kernel, exits, Duration::from_secs(20))?;
    Interrupt::new(all_lines, line)
        .bind(probe.handle())
        .map_err(|e| format!("the dead holder's line: {e:?}"))?;
    let after = frames_free(kernel, info)?;
    if after == before {
        Ok(())
    } else {
        Err(format!("frames free {before} before, {after} after"))
    }
}
