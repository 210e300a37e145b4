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

/// A reading of channel 2's counter, bracketed by TSC reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub tsc_before: u64,
    pub count: u16,
    pub tsc_after: u64,
}

impl Sample {
    /// TSC cycles the read took: how uncertain its timing is.
    pub fn width(&self) -> u64 {
        self.tsc_after - self.tsc_before
    }

    /// The TSC value the count most likely belongs to.
    pub fn midpoint(&self) -> u64 {
        self.tsc_before + self.width() / 2
    }
}

/// Starts channel 2 counting down from 0xFFFF (about 54.9 ms) as a free
/// stopwatch, with the speaker off.
///
/// # Safety
/// Ring 0; nothing else may use channel 2 or the PC speaker until
/// [`stop_stopwatch`].
pub unsafe fn start_stopwatch() {
    // SAFETY: the caller guarantees ring 0 and exclusive use of channel 2.
    unsafe {
        let mut port_b = Port::<u8>::new(PORT_B);
        let b = port_b.read();
        // Gate on, speaker off.
        port_b.write((b & !0x02) | 0x01);
        // Channel 2, low byte then high byte, mode 0 (one-shot), binary.
        Port::<u8>::new(COMMAND).write(0xB0);
        let mut data = Port::<u8>::new(CHANNEL2);
        data.write(0xFF);
        data.write(0xFF);
    }
}

/// Reads channel 2's counter (latched, so both bytes belong together).
///
/// # Safety
/// As for [`start_stopwatch`].
pub unsafe fn sample_stopwatch() -> Sample {
    // SAFETY: the caller guarantees ring 0 and exclusive use of channel 2;
    // the latch command freezes the count for the two reads.
    unsafe {
        let tsc_before = super::cpu::rdtsc();
        Port::<u8>::new(COMMAND).write(0x80);
        let mut data = Port::<u8>::new(CHANNEL2);
        let lo = data.read();
        let hi = data.read();
        let tsc_after = super::cpu::rdtsc();
        Sample {
            tsc_before,
            count: u16::from_le_bytes([lo, hi]),
            tsc_after,
        }
    }
}

/// Turns the channel 2 gate off again.
///
/// # Safety
/// Ring 0.
pub unsafe fn stop_stopwatch() {
    // SAFETY: clears only the gate and speaker bits of port B.
    unsafe {
        let mut port_b = Port::<u8>::new(PORT_B);
        let b = port_b.read();
        port_b.write(b & !0x03);
    }
}

/// The TSC frequency from two stopwatch samples (`first` taken before
/// `second`, within one countdown), or `None` if they are unusable.
pub fn tsc_hz_between(first: Sample, second: Sample) -> Option<u64> {
    let pit_cycles = u64::from(first.count.checked_sub(second.count)?);
    let tsc_cycles = second.midpoint().checked_sub(first.midpoint())?;
    if pit_cycles == 0 {
        return None;
    }
    Some(super::clock::tsc_hz_from(
        tsc_cycles,
        pit_cycles,
        PIT_INPUT_HZ,
    ))
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

    #[test]
    fn tsc_from_samples_uses_midpoints_and_rejects_bad_pairs() {
        let a = Sample {
            tsc_before: 1000,
            count: 60000,
            tsc_after: 1010,
        };
        // 11932 PIT cycles (10 ms) later, 25 million TSC cycles later.
        let b = Sample {
            tsc_before: 25_001_000,
            count: 60000 - 11932,
            tsc_after: 25_001_010,
        };
        assert_eq!(a.midpoint(), 1005);
        assert_eq!(a.width(), 10);
        let hz = tsc_hz_between(a, b).unwrap();
        assert!((2_499_000_000..2_501_000_000).contains(&hz), "{hz}");
        assert_eq!(tsc_hz_between(b, a), None);
        assert_eq!(tsc_hz_between(a, a), None);
    }
}
