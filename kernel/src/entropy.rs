//! The kernel's entropy pool: seeded once at boot from the best source the
//! machine has, then used as a keyed PRF (SipHash-2-4 under two 128-bit
//! keys drawn from the seed) for fresh random bytes ([`Syscall::Random`])
//! and for per-program secrets ([`Syscall::ProgramSecret`]).
//!
//! Sources, best first: RDSEED, RDRAND (16 words each), or, on CPUs with
//! neither (QEMU's default CPU model, older PCs), the jitter of the TSC
//! against the PIT: the cycle count between successive timer interrupts
//! and the spins of the wait for each, over [`JITTER_SAMPLES`] ticks. The
//! TSC at boot is mixed in whatever the source. The source is logged at
//! boot and returned with every reply, so a service can say how good its
//! keys are.
//!
//! A program secret is `PRF("program", image name)`: every task running
//! `bin/storage` gets the same 16 bytes during a boot, and nothing running
//! another image can compute them. It lives as long as the boot, as does
//! the RAM disk it protects today; a disk that outlives a reboot will need
//! the seed itself kept where only the kernel reads it.
//!
//! [`Syscall::Random`]: pandagen_abi::syscall::Syscall::Random
//! [`Syscall::ProgramSecret`]: pandagen_abi::syscall::Syscall::ProgramSecret

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use pandagen_abi::siphash::{siphash24, SipKey};
use pandagen_abi::syscall::EntropySource;
use pandagen_hal::x86_64::cpu::rdtsc;
use spin::Once;

use crate::arch::x86_64::random;

/// Hardware words taken at boot.
const HARDWARE_WORDS: usize = 16;
/// Timer ticks sampled when there is no hardware generator (at 1 kHz,
/// this many milliseconds of boot time).
pub const JITTER_SAMPLES: usize = 64;

/// Fixed keys that condense the raw seed into the pool's keys (any
/// distinct constants do: they only separate the four outputs).
const CONDENSE: [SipKey; 4] = [
    SipKey::from_bytes(*b"pandagen-pool-k0"),
    SipKey::from_bytes(*b"pandagen-pool-k1"),
    SipKey::from_bytes(*b"pandagen-pool-k2"),
    SipKey::from_bytes(*b"pandagen-pool-k3"),
];

struct Pool {
    keys: [SipKey; 2],
    source: EntropySource,
}

static POOL: Once<Pool> = Once::new();
/// Blocks of random bytes handed out so far (each reply uses new ones).
static DRAWN: AtomicU64 = AtomicU64::new(0);

/// Seed the pool. Needs the timer running (for the jitter fallback).
pub fn init() -> EntropySource {
    POOL.call_once(|| {
        let mut seed: Vec<u64> = alloc::vec![rdtsc()];
        let source = if let Some(words) = hardware(random::rdseed) {
            seed.extend(words);
            EntropySource::Rdseed
        } else if let Some(words) = hardware(random::rdrand) {
            seed.extend(words);
            EntropySource::Rdrand
        } else {
            seed.extend(timer_jitter());
            EntropySource::TimerJitter
        };
        seed.push(rdtsc());
        let bytes: Vec<u8> = seed.iter().flat_map(|w| w.to_le_bytes()).collect();
        let word = |i: usize| siphash24(&CONDENSE[i], &bytes).to_le_bytes();
        let key = |a: [u8; 8], b: [u8; 8]| {
            let mut k = [0u8; 16];
            k[..8].copy_from_slice(&a);
            k[8..].copy_from_slice(&b);
            SipKey::from_bytes(k)
        };
        Pool {
            keys: [key(word(0), word(1)), key(word(2), word(3))],
            source,
        }
    })
    .source
}

fn hardware(read: fn() -> Option<u64>) -> Option<Vec<u64>> {
    (0..HARDWARE_WORDS).map(|_| read()).collect()
}

/// Per timer tick: the TSC cycles since the previous tick and the spins
/// the wait took. Their low bits vary with bus and cache timing, SMIs and
/// (under emulation) the host's scheduling.
pub fn timer_jitter() -> Vec<u64> {
    let mut samples = Vec::with_capacity(2 * JITTER_SAMPLES);
    let mut last_tick = crate::time::ticks();
    let mut last_tsc = rdtsc();
    for _ in 0..JITTER_SAMPLES {
        let mut spins = 0u64;
        while crate::time::ticks() == last_tick {
            spins += 1;
            core::hint::spin_loop();
        }
        let tsc = rdtsc();
        samples.push(tsc.wrapping_sub(last_tsc));
        samples.push(spins);
        last_tick = crate::time::ticks();
        last_tsc = tsc;
    }
    samples
}

fn pool() -> &'static Pool {
    POOL.get().expect("entropy pool seeded at boot")
}

/// 16 bytes of `PRF(label, input)`.
fn derive(label: &[u8], input: &[u8]) -> [u8; 16] {
    let mut message = Vec::with_capacity(label.len() + 1 + input.len());
    message.extend_from_slice(label);
    message.push(0);
    message.extend_from_slice(input);
    let [k0, k1] = &pool().keys;
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&siphash24(k0, &message).to_le_bytes());
    out[8..].copy_from_slice(&siphash24(k1, &message).to_le_bytes());
    out
}

/// The secret of program image `image` for this boot.
pub fn program_secret(image: &str) -> [u8; 16] {
    derive(b"program", image.as_bytes())
}

/// 32 bytes never handed out before.
pub fn random_bytes() -> [u8; 32] {
    let block = DRAWN.fetch_add(2, Ordering::Relaxed);
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(&derive(b"random", &block.to_le_bytes()));
    out[16..].copy_from_slice(&derive(b"random", &(block + 1).to_le_bytes()));
    out
}

/// Where the pool's seed came from.
pub fn source() -> EntropySource {
    pool().source
}
