//! The periodic timer and the calibrated clock.
//!
//! Choice: the legacy PIC and the PIT (channel 0, rate generator) at
//! [`TIMER_HZ`]. Every PC and every QEMU machine has them, and they need no
//! ACPI/MADT parsing; a local-APIC timer can replace them when SMP arrives.
//! The TSC is measured against PIT channel 2 over [`CALIBRATION_MS`] ms
//! before interrupts are enabled; if channel 2 does not respond the TSC is
//! timed over timer ticks instead. `now()` is TSC-based (see
//! [`pandagen_hal::x86_64::clock`]).

use pandagen_hal::x86_64::{clock, cpu::rdtsc, pic, pit};

/// Periodic timer rate.
pub const TIMER_HZ: u32 = 1000;
/// Length of the TSC calibration interval.
pub const CALIBRATION_MS: u64 = 20;

/// How the TSC was calibrated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calibration {
    PitChannel2,
    TimerTicks,
}

/// Remaps the PIC, starts the PIT, calibrates the TSC, unmasks the timer
/// and enables interrupts. `entry_tsc` (the TSC at kernel entry) becomes
/// time zero.
pub fn init(entry_tsc: u64) -> Calibration {
    clock::set_base(entry_tsc);
    // SAFETY: ring 0, interrupts still disabled, and the IDT has gates for
    // vectors 32..48.
    unsafe { pic::init() };
    // SAFETY: IRQ 0 is masked until the handler path is ready below.
    let rate = unsafe { pit::start_periodic(TIMER_HZ) };
    clock::set_tick_rate(rate.millihertz);

    let measured = calibrate_with_stopwatch();
    // SAFETY: vector 32 is handled by the trap dispatcher (the tick).
    unsafe { pic::unmask(0) };
    x86_64::instructions::interrupts::enable();
    match measured {
        Some(hz) => {
            clock::set_tsc_hz(hz);
            Calibration::PitChannel2
        }
        None => {
            clock::set_tsc_hz(calibrate_with_ticks(rate.millihertz));
            Calibration::TimerTicks
        }
    }
}

/// Measures the TSC against PIT channel 2 running as a stopwatch: a
/// sample of the PIT counter near the start and one [`CALIBRATION_MS`]
/// later, each bracketed by TSC reads. Under emulation the guest can stall
/// at any instruction (host preemption, the emulator's device lock), which
/// skews any single "start, wait, stop" measurement. Here a stall only
/// widens a sample's bracket, so each end takes the narrowest of several
/// samples, and a whole attempt is retried if it went wrong.
fn calibrate_with_stopwatch() -> Option<u64> {
    for _ in 0..3 {
        // SAFETY: ring 0 at boot; nothing else uses channel 2 or the speaker.
        unsafe { pit::start_stopwatch() };
        let hz = stopwatch_attempt();
        // SAFETY: as above.
        unsafe { pit::stop_stopwatch() };
        if hz.is_some() {
            return hz;
        }
    }
    None
}

fn stopwatch_attempt() -> Option<u64> {
    const SAMPLES: usize = 8;
    // Bound on the wait, in TSC cycles (seconds on any CPU): only reached
    // if channel 2 does not count at all.
    const MAX_WAIT: u64 = 1 << 34;
    let best = || {
        (0..SAMPLES)
            // SAFETY: the stopwatch is running and ours (see caller).
            .map(|_| unsafe { pit::sample_stopwatch() })
            .min_by_key(|s| s.width())
    };
    let first = best()?;
    let target = first
        .count
        .checked_sub((pit::PIT_INPUT_HZ * CALIBRATION_MS / 1000) as u16)?;
    loop {
        // SAFETY: as above.
        let now = unsafe { pit::sample_stopwatch() };
        if now.count <= target || now.count > first.count {
            break;
        }
        if now.tsc_after - first.tsc_after > MAX_WAIT {
            return None;
        }
    }
    let second = best()?;
    pit::tsc_hz_between(first, second)
}

/// Times the TSC over 50 timer ticks.
fn calibrate_with_ticks(tick_millihertz: u64) -> u64 {
    const TICKS: u64 = 50;
    let start_tick = wait_for_next_tick();
    let start = rdtsc();
    while clock::ticks() < start_tick + TICKS {
        x86_64::instructions::hlt();
    }
    let cycles = rdtsc() - start;
    // cycles / (TICKS / rate) = cycles * rate / TICKS.
    (u128::from(cycles) * u128::from(tick_millihertz) / (u128::from(TICKS) * 1000)) as u64
}

fn wait_for_next_tick() -> u64 {
    let now = clock::ticks();
    while clock::ticks() == now {
        x86_64::instructions::hlt();
    }
    clock::ticks()
}

/// Nanoseconds since kernel entry, monotonic.
pub fn now() -> u64 {
    clock::now_ns()
}

/// Timer ticks since the timer started.
#[cfg(feature = "test-harness")]
pub fn ticks() -> u64 {
    clock::ticks()
}
