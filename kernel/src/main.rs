//! PandaGen kernel: boot entry and bring-up sequence.
//!
//! The bootloader maps everything it places (kernel image, stack, boot
//! info, physical-memory map, framebuffer, ramdisk) into the upper half
//! (see [`layout`]); the kernel then builds its own descriptor tables,
//! memory management and timer, prints the banner and enters the mode that
//! `boot.cfg` asks for.
#![no_std]
#![no_main]

extern crate alloc;

mod arch;
mod blockdev;
mod boot_files;
mod boot_mode;
mod console;
mod console_input;
mod debug_output;
mod device;
mod early_display;
mod entropy;
#[cfg(feature = "test-harness")]
mod harness;
#[cfg(feature = "test-harness")]
mod ktest;
mod layout;
mod loader;
mod mem;
mod panic;
mod power;
mod qemu;
mod root_task;
mod screen_output;
mod syscall;
mod task;
mod time;
mod usermem;

use arch::x86_64::{gdt, idt, protection, syscall_entry};
use bootloader_api::config::Mapping;
use bootloader_api::{entry_point, BootInfo, BootloaderConfig};
use log::LevelFilter;
use pandagen_abi::memory::PAGE_SIZE;
use pandagen_hal::boot_config::{BootMode, LogLevel};
use pandagen_hal::x86_64::clock;
use pandagen_hal::x86_64::cpu::rdtsc;
use pandagen_hal::x86_64::paging::PhysWindow;

/// Size of the boot CPU's kernel stack.
const KERNEL_STACK_SIZE: u64 = 256 * 1024;

/// What the bootloader must set up for us.
pub static BOOTLOADER_CONFIG: BootloaderConfig = {
    let mut config = BootloaderConfig::new_default();
    config.mappings.physical_memory = Some(Mapping::Dynamic);
    config.mappings.dynamic_range_start = Some(layout::BOOTLOADER_RANGE_START);
    config.mappings.dynamic_range_end = Some(layout::BOOTLOADER_RANGE_END);
    config.kernel_stack_size = KERNEL_STACK_SIZE;
    config
};

entry_point!(kernel_main, config = &BOOTLOADER_CONFIG);

fn kernel_main(boot_info: &'static mut BootInfo) -> ! {
    let entry_tsc = rdtsc();
    let mut profile = BootProfile::new(entry_tsc);
    console::init();
    gdt::init();
    idt::init();
    let protections = protection::enable();
    // The syscall MSRs and the per-CPU block GS points at: every trap from
    // here on finds the kernel's GS base (the ring-0 self-tests rely on it).
    syscall_entry::init();
    profile.mark("serial, GDT, IDT, CPU protections");

    let ramdisk = ramdisk(boot_info);
    match boot_mode::init(ramdisk) {
        Ok(source) => log::debug!("boot config: {source:?}"),
        Err(err) => {
            boot_mode::force_test_mode();
            panic!("cannot read the boot configuration: {err:?}");
        }
    }
    let config = boot_mode::config();
    console::set_level(level_filter(config.log_level));
    profile.mark("boot.cfg");

    check_layout(boot_info);
    // Until a scheduler sets per-task stacks, interrupts from ring 3 would
    // land on the boot stack.
    gdt::set_kernel_stack(x86_64::VirtAddr::new(
        boot_info.kernel_stack_bottom + boot_info.kernel_stack_len,
    ));
    let phys_offset = boot_info
        .physical_memory_offset
        .into_option()
        .expect("the bootloader did not map physical memory");
    // SAFETY: the bootloader maps all physical memory at this offset (we
    // asked for it in BOOTLOADER_CONFIG) and the mapping is never removed.
    let window = unsafe { PhysWindow::new(phys_offset) };
    let regions = &boot_info.memory_regions;
    let firmware = mem::frame::firmware(regions);
    mem::frame::init(regions, window).expect("cannot build the frame allocator");
    profile.mark("frame allocator");
    let paging = mem::paging::init(window).expect("cannot set up the kernel address space");
    arch::x86_64::stacks::set_boot_stack(boot_info.kernel_stack_bottom);
    arch::x86_64::stacks::arm_guards();
    log::debug!(
        "paging: {} kernel-half tables added, {} bootloader lower-half entries removed",
        paging.kernel_tables_added,
        paging.lower_half_entries_removed
    );
    profile.mark("kernel address space");
    mem::heap::init().expect("cannot map the kernel heap");
    profile.mark("heap");
    let calibration = time::init(entry_tsc);
    profile.mark("PIC, PIT, TSC calibration");
    match entropy::init() {
        pandagen_abi::syscall::EntropySource::TimerJitter => log::warn!(
            "entropy: no RDSEED or RDRAND; seeded from TSC jitter against the PIT (weaker)"
        ),
        source => log::info!("entropy: seeded from {source:?}"),
    }
    profile.mark("entropy pool");
    profile.log();
    device::set_reserved(never_device_memory(boot_info));
    match power::init(boot_info.rsdp_addr.into_option(), phys_offset) {
        Ok(info) => log::info!("power: {}", info.describe()),
        Err(e) => log::warn!("power: no ACPI power control ({e}); shutdown halts"),
    }
    // From the banner on, the console is mirrored on the screen.
    let framebuffer_physical = framebuffer_physical(boot_info);
    let display = early_display::init(boot_info.framebuffer.take(), framebuffer_physical);

    print_banner(
        firmware.name(),
        &protections,
        calibration,
        entry_tsc,
        display,
    );

    boot_files::init(ramdisk);
    match config.mode {
        BootMode::System => system(),
        #[cfg(feature = "test-harness")]
        BootMode::Ktest => harness::run_ktest(),
        #[cfg(feature = "test-harness")]
        BootMode::Suite => harness::run_suite(config.suite),
        #[cfg(feature = "test-harness")]
        BootMode::Bench => harness::run_bench(config.suite),
        #[cfg(not(feature = "test-harness"))]
        mode => without_harness(mode),
    }
}

/// What ring 3 needs beside the scheduler and the `syscall` entry (set up
/// at boot): console input and the block device.
fn start_ring3_support() {
    console_input::init();
    blockdev::init();
    device::init();
}

/// `mode=system`: the process manager as the root task; without one,
/// nothing to run but the idle loop.
fn system() -> ! {
    start_ring3_support();
    let name = "process_manager";
    match root_task::run(name, None) {
        root_task::RootError::Missing => {
            log::info!("no bin/{name} in the ramdisk: nothing to run")
        }
        root_task::RootError::Failed(e) => log::error!("cannot start bin/{name}: {e}"),
    }
    log::info!("system ready");
    loop {
        x86_64::instructions::hlt();
    }
}

/// What is never device memory: every region of the firmware's map (RAM,
/// whatever it holds, and what the firmware reserves). The framebuffer is
/// not device memory either, but the core knows it apart: only its own
/// capability maps it (`KernelCore::set_framebuffer`).
fn never_device_memory(boot_info: &BootInfo) -> alloc::vec::Vec<pandagen_abi::device::PhysRange> {
    use pandagen_abi::device::PhysRange;
    use pandagen_abi::memory::PAGE_SIZE;
    let page_range = |start: u64, end: u64| {
        let base = start & !(PAGE_SIZE - 1);
        PhysRange::new(base, end.div_ceil(PAGE_SIZE) * PAGE_SIZE - base)
    };
    boot_info
        .memory_regions
        .iter()
        // UEFI's memory-mapped I/O entries (types 11 and 12) are device
        // ranges, not RAM.
        .filter(|r| {
            r.end > r.start
                && !matches!(
                    r.kind,
                    bootloader_api::info::MemoryRegionKind::UnknownUefi(11 | 12)
                )
        })
        .map(|r| page_range(r.start, r.end))
        .collect()
}

/// The physical address of the framebuffer's first byte, found through the
/// bootloader's mapping of it.
fn framebuffer_physical(boot_info: &BootInfo) -> Option<u64> {
    let virt = boot_info.framebuffer.as_ref()?.buffer().as_ptr() as u64;
    mem::paging::kernel_space().translate(virt).map(|t| t.phys)
}

/// A test mode in a kernel without the test harness: a fatal error (which
/// in a test mode ends the QEMU run with failure).
#[cfg(not(feature = "test-harness"))]
fn without_harness(mode: BootMode) -> ! {
    println!("kernel: mode {mode:?} needs a kernel built with the `test-harness` feature");
    panic::stop_after_fatal_error()
}

/// TSC timestamps of the boot phases, logged at debug level once the TSC
/// is calibrated.
struct BootProfile {
    start: u64,
    marks: [(&'static str, u64); 8],
    len: usize,
}

impl BootProfile {
    fn new(start: u64) -> Self {
        Self {
            start,
            marks: [("", 0); 8],
            len: 0,
        }
    }

    fn mark(&mut self, phase: &'static str) {
        if let Some(slot) = self.marks.get_mut(self.len) {
            *slot = (phase, rdtsc());
            self.len += 1;
        }
    }

    fn log(&self) {
        let mut previous = self.start;
        for &(phase, tsc) in &self.marks[..self.len] {
            let us = clock::cycles_to_ns(tsc - previous, clock::tsc_hz()) / 1000;
            log::debug!("boot phase {phase:<34} {us:>7} us");
            previous = tsc;
        }
    }
}

fn ramdisk(boot_info: &BootInfo) -> Option<&'static [u8]> {
    let addr = boot_info.ramdisk_addr.into_option()?;
    // SAFETY: the bootloader mapped the ramdisk read-only at `addr` for
    // `ramdisk_len` bytes and never unmaps it; nothing writes to it.
    Some(unsafe { core::slice::from_raw_parts(addr as *const u8, boot_info.ramdisk_len as usize) })
}

fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Error => LevelFilter::Error,
        LogLevel::Warn => LevelFilter::Warn,
        LogLevel::Info => LevelFilter::Info,
        LogLevel::Debug => LevelFilter::Debug,
        LogLevel::Trace => LevelFilter::Trace,
    }
}

/// Asserts that everything the bootloader placed is in its upper-half
/// range, leaving the lower half to user address spaces.
fn check_layout(boot_info: &BootInfo) {
    let stack_probe = 0u8;
    let places = [
        ("kernel image", boot_info.kernel_image_offset),
        ("kernel code", kernel_main as *const () as u64),
        ("kernel stack", boot_info.kernel_stack_bottom),
        ("current stack", &stack_probe as *const u8 as u64),
        ("boot info", boot_info as *const BootInfo as u64),
        (
            "physical memory map",
            boot_info.physical_memory_offset.into_option().unwrap_or(0),
        ),
        (
            "ramdisk",
            boot_info
                .ramdisk_addr
                .into_option()
                .unwrap_or(layout::BOOTLOADER_RANGE_START),
        ),
        (
            "framebuffer",
            boot_info
                .framebuffer
                .as_ref()
                .map(|fb| fb.buffer().as_ptr() as u64)
                .unwrap_or(layout::BOOTLOADER_RANGE_START),
        ),
    ];
    for (what, addr) in places {
        log::debug!("{what:<20} {addr:#018x}");
        assert!(
            layout::in_bootloader_range(addr),
            "{what} at {addr:#x} is outside the bootloader range"
        );
    }
}

fn print_banner(
    firmware: &str,
    protections: &protection::Protections,
    calibration: time::Calibration,
    entry_tsc: u64,
    display: early_display::Status,
) {
    let banner_tsc = rdtsc();
    let (total, free) = mem::frame::counts();
    let mib = |frames: u64| frames * PAGE_SIZE / 1024 / 1024;
    let tsc_hz = clock::tsc_hz();
    let tick_mhz = clock::tick_millihertz();
    let on = |b: bool| if b { "on" } else { "off" };
    println!("==============================================================");
    println!(
        " PandaGen {} ({})",
        env!("CARGO_PKG_VERSION"),
        env!("CARGO_PKG_NAME")
    );
    println!(" firmware : {firmware}");
    println!(
        " memory   : {} MiB total, {} MiB free",
        mib(total),
        mib(free)
    );
    println!(
        " heap     : {} MiB at {:#x}",
        layout::KERNEL_HEAP_SIZE >> 20,
        layout::KERNEL_HEAP_START
    );
    println!(
        " timer    : PIT {}.{:03} Hz; TSC {}.{:03} MHz ({:?})",
        tick_mhz / 1000,
        tick_mhz % 1000,
        tsc_hz / 1_000_000,
        tsc_hz % 1_000_000 / 1000,
        calibration
    );
    println!(
        " cpu      : NX {}, WP {}, SMEP {}, SMAP {}",
        on(protections.nx),
        on(protections.write_protect),
        on(protections.smep),
        on(protections.smap)
    );
    match display {
        early_display::Status::Active { width, height } => {
            println!(" display  : {width}x{height} framebuffer, early console")
        }
        early_display::Status::NoFramebuffer => println!(" display  : none (serial only)"),
        early_display::Status::Unsupported => {
            println!(" display  : framebuffer in an unsupported pixel format (serial only)")
        }
    }
    let to_us = |cycles: u64| clock::cycles_to_ns(cycles, tsc_hz) / 1000;
    println!(
        " boot     : {}.{:03} ms from kernel entry to banner",
        to_us(banner_tsc - entry_tsc) / 1000,
        to_us(banner_tsc - entry_tsc) % 1000,
    );
    println!("==============================================================");
}
