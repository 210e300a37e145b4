//! CPU protection features: no-execute pages, write protection in ring 0,
//! and SMEP/SMAP (ring 0 may neither execute nor, outside explicit
//! [`with_user_access`] windows, touch user pages).

use core::sync::atomic::{AtomicBool, Ordering};
use pandagen_hal::x86_64::cpu::{detect_features, CpuFeatures};
use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
use x86_64::registers::model_specific::{Efer, EferFlags};

static SMAP_ON: AtomicBool = AtomicBool::new(false);

/// Which protections ended up switched on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protections {
    pub nx: bool,
    pub write_protect: bool,
    pub smep: bool,
    pub smap: bool,
    pub cpu: CpuFeatures,
}

/// Turns on every protection the CPU offers. NX is required: the page-table
/// code sets the NX bit, which faults on a CPU without EFER.NXE.
pub fn enable() -> Protections {
    let cpu = detect_features();
    assert!(cpu.nx, "CPU lacks the NX bit, which PandaGen requires");
    // SAFETY: setting NXE makes bit 63 of page-table entries mean
    // no-execute; the bootloader's kernel mappings already rely on that.
    unsafe { Efer::update(|f| f.insert(EferFlags::NO_EXECUTE_ENABLE)) };
    // SAFETY: WP only makes ring 0 honour read-only pages; the kernel never
    // writes through read-only mappings.
    unsafe { Cr0::update(|f| f.insert(Cr0Flags::WRITE_PROTECT)) };
    // SAFETY: SMEP/SMAP forbid ring 0 executing or touching user pages. The
    // kernel half has no user pages, and user memory is only touched inside
    // `with_user_access`, which lifts SMAP for that window.
    unsafe {
        Cr4::update(|f| {
            f.set(Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION, cpu.smep);
            f.set(Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION, cpu.smap);
        })
    };
    SMAP_ON.store(cpu.smap, Ordering::Relaxed);
    Protections {
        nx: Efer::read().contains(EferFlags::NO_EXECUTE_ENABLE),
        write_protect: Cr0::read().contains(Cr0Flags::WRITE_PROTECT),
        smep: Cr4::read().contains(Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION),
        smap: Cr4::read().contains(Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION),
        cpu,
    }
}

/// Whether SMAP is on.
pub fn smap_enabled() -> bool {
    SMAP_ON.load(Ordering::Relaxed)
}

/// Runs `f` with ring-0 access to user pages allowed (STAC/CLAC when SMAP
/// is on). Keep `f` to the copy itself: every user access outside such a
/// window faults, which is what catches kernel bugs that follow user
/// pointers. Only the ring-0 self-tests touch user pages from ring 0.
#[cfg(feature = "test-harness")]
pub fn with_user_access<R>(f: impl FnOnce() -> R) -> R {
    let smap = smap_enabled();
    if smap {
        // SAFETY: STAC only sets RFLAGS.AC; CLAC below clears it again.
        unsafe { core::arch::asm!("stac", options(nomem, nostack)) };
    }
    let result = f();
    if smap {
        // SAFETY: CLAC only clears RFLAGS.AC, re-arming SMAP.
        unsafe { core::arch::asm!("clac", options(nomem, nostack)) };
    }
    result
}

/// Clears RFLAGS.AC if SMAP is on (trap entry calls this).
#[inline]
pub fn rearm_smap() {
    if smap_enabled() {
        // SAFETY: CLAC only clears RFLAGS.AC; SMAP is on, so CLAC exists.
        unsafe { core::arch::asm!("clac", options(nomem, nostack)) };
    }
}
