//! The HAL traits, exercised through their x86_64 implementations.

use super::{ensure, TestResult};
use crate::layout;
use crate::mem::{frame, paging};
use pandagen_hal::memory::{MemoryError, MemoryHal};
use pandagen_hal::x86_64::paging::PageFlags;
use pandagen_hal::x86_64::{X86Cpu, X86Memory, X86Timer};
use pandagen_hal::{CpuHal, TimerHal};

pub fn cpu_hal_reports_kernel_addresses() -> TestResult {
    let cpu = X86Cpu;
    let sp = cpu.stack_pointer() as u64;
    let ip = cpu.instruction_pointer() as u64;
    ensure!(
        layout::in_bootloader_range(sp),
        "stack pointer {sp:#x} outside the kernel stack range"
    );
    ensure!(
        layout::in_bootloader_range(ip),
        "instruction pointer {ip:#x} outside the kernel image"
    );
    ensure!(cpu.cpu_id() == 0, "boot CPU has APIC id {}", cpu.cpu_id());
    Ok(())
}

pub fn timer_hal_reports_the_programmed_rate() -> TestResult {
    let timer = X86Timer;
    ensure!(
        timer.tick_frequency_hz() == crate::time::TIMER_HZ,
        "tick rate {} Hz",
        timer.tick_frequency_hz()
    );
    let (a, b) = (timer.now_ns(), timer.now_ns());
    ensure!(b >= a && a > 0, "now_ns {a} then {b}");
    Ok(())
}

pub fn memory_hal_maps_user_pages() -> TestResult {
    const VIRT: usize = 0x0000_0000_1000_0000;
    let (_, free_before) = frame::counts();
    let space = paging::new_user_space().map_err(|e| alloc::format!("{e:?}"))?;
    let mut frames = frame::GlobalFrames;
    let result = (|| {
        let mut hal = X86Memory::new(space, &mut frames, false);
        let page = hal.allocate_page().map_err(|e| alloc::format!("{e:?}"))?;
        hal.map_page(VIRT, page, true, false)
            .map_err(|e| alloc::format!("{e:?}"))?;
        let t = space
            .translate(VIRT as u64)
            .ok_or("mapped page does not translate")?;
        ensure!(t.phys == page as u64, "maps to {:#x}", t.phys);
        ensure!(
            t.flags == PageFlags::USER_DATA,
            "lower-half page flags {:?}",
            t.flags
        );
        ensure!(
            hal.map_page(VIRT, page, true, false) == Err(MemoryError::AlreadyMapped),
            "double map accepted"
        );
        hal.unmap_page(VIRT).map_err(|e| alloc::format!("{e:?}"))?;
        ensure!(
            hal.unmap_page(VIRT) == Err(MemoryError::NotMapped),
            "double unmap accepted"
        );
        hal.free_page(page).map_err(|e| alloc::format!("{e:?}"))?;
        ensure!(
            hal.free_page(page) == Err(MemoryError::InvalidFrame),
            "double free accepted"
        );
        Ok(())
    })();
    space
        .destroy(&mut frames, |_| {})
        .map_err(|e| alloc::format!("{e:?}"))?;
    result?;
    ensure!(frame::counts().1 == free_before, "frames leaked");
    Ok(())
}
