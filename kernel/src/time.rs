//! The periodic timer and the calibrated clock.
//!
//! Choice: the legacy PIC and the PIT (channel 0, rate generator) at
//! [`TIMER_HZ`]. Every PC and every QEMU machine has them, and they need no
//! ACPI/MADT parsing; a local-APIC timer can replace them when SMP arrives.
//! The TSC is measured against PIT channel 2 (the median of
//! [`CALIBRATION_RUNS`] runs of [`CALIBRATION_MS`] ms) before interrupts
//! are enabled; if channel 2 does not respond the TSC is
//! timed over timer ticks instead. `now()` is TSC-based (see
//! [`pandagen_hal::x86_64::clock`]).

use pandagen_hal::x86_64::{clock, cpu::rdtsc, pic, pit};

/// Periodic timer rate.
pub const TIMER_HZ: u32 = 1000;
/// Length of one TSC calibration run.
pub const CALIBRATION_MS: u64 = 5;
/// Number of calibration runs (the median is used).
const CALIBRATION_RUNS: usize = 5;

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

    let count = pit::PIT_INPUT_HZ * CALIBRATION_MS / 1000;
    let measured = measure_median(count as u16);
    // SAFETY: vector 32 is handled by the trap dispatcher (the tick).
    unsafe { pic::unmask(0) };
    x86_64::instructions::interrupts::enable();
    match measured {
        Some(cycles) => {
            clock::set_tsc_hz(clock::tsc_hz_from(cycles, count, pit::PIT_INPUT_HZ));
            Calibration::PitChannel2
        }
        None => {
            clock::set_tsc_hz(calibrate_with_ticks(rate.millihertz));
            Calibration::TimerTicks
        }
    }
}

/// Times [`CALIBRATION_RUNS`] PIT intervals of `count` cycles and returns
/// the median TSC cycles, after one short warm-up run. Under emulation the
/// host may stall the guest between the PIT start and the first TSC read
/// (translating code, or being preempted), which skews single runs either
/// way; the warm-up removes the translation cost and the median drops
/// stalled runs.
fn measure_median(count: u16) -> Option<u64> {
    const MAX_TSC: u64 = 1 << 34;
    // SAFETY (all three calls): ring 0; nothing else uses channel 2 or the
    // speaker. The bound (2^34 cycles, seconds on any CPU) only matters
    // when there is no working channel 2.
    unsafe { pit::measure_tsc(count / 8, MAX_TSC) }?;
    let mut runs = [0u64; CALIBRATION_RUNS];
    for run in runs.iter_mut() {
        // SAFETY: as above.
        *run = unsafe { pit::measure_tsc(count, MAX_TSC) }?;
    }
    runs.sort_unstable();
    Some(runs[CALIBRATION_RUNS / 2])
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
pub fn ticks() -> u64 {
    clock::ticks()
}
