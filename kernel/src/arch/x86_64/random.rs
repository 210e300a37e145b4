//! The CPU's random-number instructions, where the CPU has them.

use raw_cpuid::CpuId;

/// Attempts per word before a busy generator counts as absent (Intel
/// advises retrying RDSEED; it may run dry when drained quickly).
const RETRIES: u32 = 128;

/// A word from RDSEED, if the CPU has it and it delivers.
pub fn rdseed() -> Option<u64> {
    let present = CpuId::new()
        .get_extended_feature_info()
        .is_some_and(|f| f.has_rdseed());
    if !present {
        return None;
    }
    for _ in 0..RETRIES {
        let value: u64;
        let ok: u8;
        // SAFETY: CPUID says the CPU implements RDSEED; it only writes the
        // output register and CF.
        unsafe {
            core::arch::asm!(
                "rdseed {value}",
                "setc {ok}",
                value = out(reg) value,
                ok = out(reg_byte) ok,
                options(nomem, nostack),
            );
        }
        if ok == 1 {
            return Some(value);
        }
        core::hint::spin_loop();
    }
    None
}

/// A word from RDRAND, if the CPU has it and it delivers.
pub fn rdrand() -> Option<u64> {
    let generator = x86_64::instructions::random::RdRand::new()?;
    (0..RETRIES).find_map(|_| generator.get_u64())
}
