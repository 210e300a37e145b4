//! The 8253/8254 programmable interval timer: channel 0 drives the periodic
//! tick (IRQ 0), channel 2 serves as a stopwatch to calibrate the TSC.

use x86_64::instructions::port::Port;

/// The PIT's input clock in Hz.
pub const PIT_INPUT_HZ: u64 = 1_193_182;

const CHANNEL0: u16 = 0x40;
const CHANNEL2: u16 = 0x42;
const COMMAND: u16 = 0x43;
/// Keyboard-controller port B: bit 0 gates channel 2, bit 1 drives the
/// speaker, bit 5 reads channel 2's output.
const PORT_B: u16 = 0x61;

/// The periodic rate the PIT was programmed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodicRate {
    /// The reload value loaded into channel 0.
    pub divisor: u16,
    /// The resulting interrupt rate in millihertz (the divisor rarely divides
    /// the input clock exactly).
    pub millihertz: u64,
}

/// The reload value closest to `hz`, and the rate it really gives.
pub fn periodic_rate(hz: u32) -> PeriodicRate {
    let hz = u64::from(hz.max(1));
    let divisor = ((PIT_INPUT_HZ + hz / 2) / hz).clamp(1, 65535);
    PeriodicRate {
        divisor: divisor as u16,
        millihertz: PIT_INPUT_HZ * 1000 / divisor,
    }
}

/// Starts channel 0 as a rate generator (mode 2) firing IRQ 0 at about `hz`.
///
/// # Safety
/// Ring 0; IRQ 0 must be handled (or masked).
pub unsafe fn start_periodic(hz: u32) -> PeriodicRate {
    let rate = periodic_rate(hz);
    let [lo, hi] = rate.divisor.to_le_bytes();
    // SAFETY: the caller guarantees ring 0; these ports belong to the PIT.
    unsafe {
        // Channel 0, low byte then high byte, mode 2, binary.
        Port::<u8>::new(COMMAND).write(0x34);
        let mut data = Port::<u8>::new(CHANNEL0);
        data.write(lo);
        data.write(hi);
    }
    rate
}

/// Runs channel 2 for `count` input-clock cycles (at most 65535, about
/// 54.9 ms) and returns how many TSC ticks passed, or `None` if the output
/// never rose within `max_tsc` TSC ticks (no working channel 2).
///
/// # Safety
/// Ring 0; nothing else may use channel 2 or the PC speaker meanwhile.
pub unsafe fn measure_tsc(count: u16, max_tsc: u64) -> Option<u64> {
    let mut port_b = Port::<u8>::new(PORT_B);
    let [lo, hi] = count.to_le_bytes();
    // SAFETY: the caller guarantees ring 0 and exclusive use of channel 2.
    unsafe {
        let saved = port_b.read();
        // Gate on, speaker off.
        port_b.write((saved & !0x02) | 0x01);
        // Channel 2, low byte then high byte, mode 0 (one-shot), binary.
        Port::<u8>::new(COMMAND).write(0xB0);
        let mut data = Port::<u8>::new(CHANNEL2);
        data.write(lo);
        data.write(hi);
        let start = super::cpu::rdtsc();
        let mut elapsed = 0;
        let mut done = false;
        while elapsed < max_tsc {
            elapsed = super::cpu::rdtsc() - start;
            if port_b.read() & 0x20 != 0 {
                done = true;
                break;
            }
        }
        port_b.write(saved);
        done.then_some(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_rate_is_close_to_request() {
        let rate = periodic_rate(1000);
        assert_eq!(rate.divisor, 1193);
        assert_eq!(rate.millihertz, 1_000_152);
        assert_eq!(periodic_rate(1).divisor, 65535);
        assert_eq!(periodic_rate(u32::MAX).divisor, 1);
    }
}
