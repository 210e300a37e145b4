//! The entropy pool: the source it reports is the best the CPU has,
//! program secrets are per program, random bytes never repeat, and the
//! timer-jitter fallback varies.

use super::{ensure, TestResult};
use crate::arch::x86_64::random;
use crate::entropy;
use pandagen_abi::syscall::EntropySource;

pub fn source_is_the_best_available() -> TestResult {
    let best = if random::rdseed().is_some() {
        EntropySource::Rdseed
    } else if random::rdrand().is_some() {
        EntropySource::Rdrand
    } else {
        EntropySource::TimerJitter
    };
    ensure!(
        entropy::source() == best,
        "seeded from {:?}, but {best:?} is available",
        entropy::source()
    );
    Ok(())
}

pub fn program_secrets_are_per_program() -> TestResult {
    let storage = entropy::program_secret("storage");
    ensure!(
        storage == entropy::program_secret("storage"),
        "one program, two secrets"
    );
    ensure!(
        storage != entropy::program_secret("transformer"),
        "two programs share a secret"
    );
    ensure!(storage != [0; 16], "an all-zero secret");
    Ok(())
}

pub fn random_bytes_never_repeat() -> TestResult {
    let draws: alloc::vec::Vec<[u8; 32]> = (0..16).map(|_| entropy::random_bytes()).collect();
    for (i, a) in draws.iter().enumerate() {
        ensure!(draws[i + 1..].iter().all(|b| b != a), "draw {i} came back");
    }
    Ok(())
}

pub fn timer_jitter_varies() -> TestResult {
    let samples = entropy::timer_jitter();
    let cycles: alloc::vec::Vec<u64> = samples.iter().step_by(2).copied().collect();
    let distinct = cycles.iter().filter(|&&c| c != cycles[0]).count();
    ensure!(
        distinct > 0,
        "{} ticks, all {} cycles apart",
        cycles.len(),
        cycles[0]
    );
    Ok(())
}
