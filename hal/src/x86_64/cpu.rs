//! CPU helpers: halt, registers, identity.

use crate::cpu::CpuHal;
use core::arch::asm;

/// The executing x86_64 CPU.
#[derive(Debug, Default, Clone, Copy)]
pub struct X86Cpu;

impl CpuHal for X86Cpu {
    fn halt(&self) {
        x86_64::instructions::hlt();
    }

    fn stack_pointer(&self) -> usize {
        let rsp: usize;
        // SAFETY: copies RSP into a register; touches no memory.
        unsafe { asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags)) };
        rsp
    }

    fn instruction_pointer(&self) -> usize {
        let rip: usize;
        // SAFETY: computes the address of the next instruction; touches no memory.
        unsafe { asm!("lea {}, [rip]", out(reg) rip, options(nomem, nostack, preserves_flags)) };
        rip
    }

    fn cpu_id(&self) -> u32 {
        // CPUID leaf 1, EBX bits 31..24: the initial local APIC id. CPUID is
        // unprivileged and present on every x86_64 CPU.
        let leaf = core::arch::x86_64::__cpuid(1);
        leaf.ebx >> 24
    }
}

/// Reads the time-stamp counter.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC is unprivileged unless CR4.TSD is set, which this kernel
    // never sets; it has no memory effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Processor features the kernel switches on when present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuFeatures {
    pub nx: bool,
    pub smep: bool,
    pub smap: bool,
    pub invariant_tsc: bool,
}

/// Queries CPUID for the features in [`CpuFeatures`].
pub fn detect_features() -> CpuFeatures {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    let max_ext = __cpuid(0x8000_0000).eax;
    let ext1 = if max_ext >= 0x8000_0001 {
        __cpuid(0x8000_0001).edx
    } else {
        0
    };
    let ext7 = if max_ext >= 0x8000_0007 {
        __cpuid(0x8000_0007).edx
    } else {
        0
    };
    let max_std = __cpuid(0).eax;
    let leaf7 = if max_std >= 7 {
        __cpuid_count(7, 0).ebx
    } else {
        0
    };
    CpuFeatures {
        nx: ext1 & (1 << 20) != 0,
        smep: leaf7 & (1 << 7) != 0,
        smap: leaf7 & (1 << 20) != 0,
        invariant_tsc: ext7 & (1 << 8) != 0,
    }
}
