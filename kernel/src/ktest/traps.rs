//! Exception tests: breakpoints return, expected faults report correctly.

use super::{ensure, TestResult};
use crate::arch::x86_64::fault_probe::{self, CaughtFault};
use crate::arch::x86_64::idt::vector;
use crate::arch::x86_64::{exceptions, gdt, protection};
use crate::mem::{frame, paging};
use pandagen_hal::x86_64::paging::PageFlags;
use x86_64::instructions::interrupts;
use x86_64::instructions::segmentation::Segment;
use x86_64::registers::model_specific::{GsBase, KernelGsBase};

/// A kernel-half address nothing maps (the top PML4 entry's table is empty
/// apart from what tests map and remove).
const UNMAPPED: u64 = 0xFFFF_FF80_0000_1238;

// Page-fault error-code bits.
const PF_PRESENT: u64 = 1;
const PF_WRITE: u64 = 2;
const PF_USER: u64 = 4;

pub fn gdt_layout_fits_star() -> TestResult {
    let s = gdt::selectors();
    let star = gdt::STAR;
    let syscall_cs = (star >> 32) & 0xFFFF;
    let sysret_base = (star >> 48) & 0xFFFF;
    ensure!(
        syscall_cs == u64::from(s.kernel_code.0),
        "SYSCALL CS {syscall_cs:#x}"
    );
    ensure!(
        syscall_cs + 8 == u64::from(s.kernel_data.0),
        "SYSCALL SS is not kernel data"
    );
    ensure!(
        (sysret_base + 8) | 3 == u64::from(s.user_data.0),
        "SYSRET SS is not user data"
    );
    ensure!(
        (sysret_base + 16) | 3 == u64::from(s.user_code.0),
        "SYSRET CS is not user code"
    );
    let cs = x86_64::instructions::segmentation::CS::get_reg();
    ensure!(cs == s.kernel_code, "running with CS {:#x}", cs.0);
    Ok(())
}

pub fn breakpoint_returns() -> TestResult {
    let before = exceptions::breakpoints();
    // SAFETY: int3 traps to the #BP handler, which counts it and returns to
    // the next instruction.
    unsafe { core::arch::asm!("int3") };
    let after = exceptions::breakpoints();
    ensure!(after == before + 1, "breakpoint count {before} -> {after}");
    Ok(())
}

/// A trap taken in ring 0 while GS holds the user's base (as an NMI between
/// `syscall` and its `swapgs` would be) runs its handler on the kernel's GS
/// base, and returns to the interrupted code with the user's base back.
pub fn trap_with_user_gs_runs_on_kernel_gs() -> TestResult {
    let kernel_gs = GsBase::read().as_u64();
    let user_gs = KernelGsBase::read().as_u64();
    ensure!(
        kernel_gs != user_gs,
        "kernel and user GS bases are both {kernel_gs:#x}"
    );
    let before = exceptions::breakpoints();
    let gs_after_trap = interrupts::without_interrupts(|| {
        let gs: u64;
        // SAFETY: interrupts are off, so nothing but the breakpoint runs
        // while GS holds the user's base; the second `swapgs` restores the
        // kernel's. RAX, RCX and RDX are declared clobbered (RDMSR).
        unsafe {
            core::arch::asm!(
                "swapgs",
                "int3",
                "mov ecx, 0xC0000101",
                "rdmsr",
                "shl rdx, 32",
                "or rax, rdx",
                "swapgs",
                out("rax") gs,
                out("rcx") _,
                out("rdx") _,
            )
        };
        gs
    });
    ensure!(
        exceptions::breakpoints() == before + 1,
        "the breakpoint was not taken"
    );
    let handler_gs = exceptions::last_breakpoint_gs_base();
    ensure!(
        handler_gs == kernel_gs,
        "handler ran on GS base {handler_gs:#x}, not the kernel's {kernel_gs:#x}"
    );
    ensure!(
        gs_after_trap == user_gs,
        "the trap returned with GS base {gs_after_trap:#x}, not the user's {user_gs:#x}"
    );
    ensure!(GsBase::read().as_u64() == kernel_gs, "GS base not restored");
    Ok(())
}

fn expect_page_fault(fault: Result<(), CaughtFault>, addr: u64, error_code: u64) -> TestResult {
    let fault = match fault {
        Ok(()) => return Err(alloc::format!("access to {addr:#x} did not fault")),
        Err(f) => f,
    };
    ensure!(
        fault.vector == vector::PAGE_FAULT,
        "vector {} instead of #PF",
        fault.vector
    );
    ensure!(fault.cr2 == addr, "CR2 {:#x}, want {addr:#x}", fault.cr2);
    ensure!(
        fault.error_code & 0x7 == error_code,
        "error code {:#x}, want {error_code:#x} in the low bits",
        fault.error_code
    );
    Ok(())
}

pub fn page_fault_unmapped() -> TestResult {
    ensure!(
        paging::kernel_space().translate(UNMAPPED).is_none(),
        "{UNMAPPED:#x} is mapped"
    );
    // SAFETY: the address is unmapped, so the read can only fault.
    let read = unsafe { fault_probe::read_u64(UNMAPPED) }.map(|_| ());
    expect_page_fault(read, UNMAPPED, 0)?;
    // SAFETY: as above; the write can only fault.
    let write = unsafe { fault_probe::write_u64(UNMAPPED, 1) };
    expect_page_fault(write, UNMAPPED, PF_WRITE)
}

pub fn page_fault_read_only() -> TestResult {
    let virt = UNMAPPED & !0xFFF;
    let phys = frame::allocate().ok_or("no frame")?;
    paging::map_kernel_page(virt, phys, PageFlags::KERNEL_READ_ONLY)
        .map_err(|e| alloc::format!("{e:?}"))?;
    // SAFETY: ordinary RAM this test owns, mapped read-only: reading is
    // harmless and writing can only fault (CR0.WP is on).
    let read = unsafe { fault_probe::read_u64(virt + 8) };
    // SAFETY: as above.
    let write = unsafe { fault_probe::write_u64(virt + 8, 0xDEAD) };
    paging::unmap_kernel_page(virt).map_err(|e| alloc::format!("{e:?}"))?;
    frame::free(phys).map_err(|e| alloc::format!("{e:?}"))?;
    ensure!(read.is_ok(), "read of a read-only page faulted: {read:?}");
    expect_page_fault(write, virt + 8, PF_PRESENT | PF_WRITE)
}

pub fn smap_blocks_user_access() -> TestResult {
    let protections_cpu = pandagen_hal::x86_64::cpu::detect_features();
    ensure!(
        protection::smap_enabled() == protections_cpu.smap,
        "SMAP is {} but CPUID says {}",
        protection::smap_enabled(),
        protections_cpu.smap
    );
    if !protections_cpu.smap {
        log::warn!("CPU has no SMAP; only checked that it is reported off");
        return Ok(());
    }
    const USER_PAGE: u64 = 0x0000_0000_0040_0000;
    let space = paging::new_user_space().map_err(|e| alloc::format!("{e:?}"))?;
    let phys = frame::allocate().ok_or("no frame")?;
    space
        .map(
            &mut frame::GlobalFrames,
            USER_PAGE,
            phys,
            PageFlags::USER_DATA,
        )
        .map_err(|e| alloc::format!("{e:?}"))?;
    let (plain, allowed) = interrupts::without_interrupts(|| {
        // SAFETY: the space shares the kernel half; restored right after.
        let old = unsafe { paging::switch_to(&space) };
        // SAFETY: a user page of ours; SMAP makes this read fault.
        let plain = unsafe { fault_probe::read_u64(USER_PAGE) };
        // SAFETY: same page, read with SMAP lifted: ordinary RAM.
        let allowed = protection::with_user_access(|| unsafe { fault_probe::read_u64(USER_PAGE) });
        // SAFETY: back to the kernel space that was active.
        unsafe { paging::switch_to(&paging::kernel_space()) };
        assert_eq!(old, paging::kernel_space().root());
        (plain, allowed)
    });
    space
        .destroy(&mut frame::GlobalFrames, |_| {})
        .map_err(|e| alloc::format!("{e:?}"))?;
    frame::free(phys).map_err(|e| alloc::format!("{e:?}"))?;
    ensure!(
        allowed.is_ok(),
        "read inside with_user_access faulted: {allowed:?}"
    );
    expect_page_fault(plain.map(|_| ()), USER_PAGE, PF_PRESENT)?;
    ensure!(
        PF_USER & plain.unwrap_err().error_code == 0,
        "fault claims user mode"
    );
    Ok(())
}

pub fn general_protection() -> TestResult {
    const NON_CANONICAL: u64 = 0x0000_8000_0000_0000;
    // SAFETY: a non-canonical address cannot be accessed; the read faults.
    let result = unsafe { fault_probe::read_u64(NON_CANONICAL) };
    match result {
        Ok(v) => Err(alloc::format!("non-canonical read returned {v:#x}")),
        Err(f) => {
            ensure!(
                f.vector == vector::GENERAL_PROTECTION,
                "vector {} instead of #GP",
                f.vector
            );
            Ok(())
        }
    }
}

static IRQ_HITS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

fn count_irq() {
    IRQ_HITS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
}

pub fn irq_handler_runs_through_idt() -> TestResult {
    use pandagen_hal::interrupt::{InterruptError, InterruptHal};
    use pandagen_hal::x86_64::X86Interrupts;
    // IRQ 12 (PS/2 mouse): no device raises it on the test machine.
    const VECTOR: u8 = 44;
    let mut hal = X86Interrupts;
    ensure!(hal.interrupts_enabled(), "interrupts are off after boot");
    ensure!(
        hal.register_handler(32, count_irq) == Err(InterruptError::InvalidVector),
        "the timer vector could be taken over"
    );
    hal.register_handler(VECTOR, count_irq)
        .map_err(|e| alloc::format!("{e:?}"))?;
    let before = IRQ_HITS.load(core::sync::atomic::Ordering::Relaxed);
    // SAFETY: vector 44 has a gate to the common stub; the dispatcher runs
    // the registered handler and returns here.
    unsafe { core::arch::asm!("int 44") };
    let after = IRQ_HITS.load(core::sync::atomic::Ordering::Relaxed);
    ensure!(after == before + 1, "handler ran {} times", after - before);
    ensure!(
        hal.register_handler(VECTOR, count_irq) == Err(InterruptError::VectorInUse),
        "a second handler replaced the first"
    );
    Ok(())
}
