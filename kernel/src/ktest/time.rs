//! Timer and clock tests.

use super::{ensure, TestResult};
use crate::time;
use pandagen_hal::x86_64::clock;

pub fn ticks_advance() -> TestResult {
    ensure!(
        x86_64::instructions::interrupts::are_enabled(),
        "interrupts are off, the timer cannot tick"
    );
    const TICKS: u64 = 50;
    let (t0, n0) = (time::ticks(), time::now());
    // Wait for the ticks, with a generous bound measured by the clock.
    while time::ticks() < t0 + TICKS && time::now() - n0 < 2_000_000_000 {
        x86_64::instructions::hlt();
    }
    let (t1, n1) = (time::ticks(), time::now());
    ensure!(
        t1 >= t0 + TICKS,
        "only {} ticks in {} ms",
        t1 - t0,
        (n1 - n0) / 1_000_000
    );
    // 50 ticks at ~1000 Hz are ~50 ms by the TSC clock. The bounds catch a
    // miscalibrated clock (off by 3x or more) while tolerating the emulator
    // stalling the guest for up to 200 ms on a loaded host.
    let elapsed_ms = (n1 - n0) / 1_000_000;
    let expected_ms = (t1 - t0) * 1_000_000 / clock::tick_millihertz().max(1);
    ensure!(
        elapsed_ms * 3 >= expected_ms && elapsed_ms <= expected_ms * 3 + 200,
        "clock says {elapsed_ms} ms for {} ticks (~{expected_ms} ms)",
        t1 - t0
    );
    Ok(())
}

pub fn now_is_monotonic() -> TestResult {
    ensure!(clock::tsc_hz() > 0, "TSC not calibrated");
    let start = time::now();
    let mut last = start;
    for i in 0..100_000 {
        let t = time::now();
        ensure!(t >= last, "now() went back from {last} to {t} at read {i}");
        last = t;
    }
    ensure!(last > start, "now() did not advance over 100000 reads");
    Ok(())
}
