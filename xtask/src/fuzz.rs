//! `cargo xtask fuzz [--time SECONDS] [--target NAME]`: coverage-guided
//! fuzzing with libFuzzer (the `libfuzzer-sys` crate) of the code that
//! takes bytes from ring 3 or from disk, and the short smoke run of every
//! target that `cargo xtask test` counts as one test each.
//!
//! The targets live in `kernel/fuzz` (a crate outside the workspace). xtask
//! builds them itself with the pinned nightly and the sanitizer-coverage
//! flags cargo-fuzz would pass, so nothing beyond the nightly and a C++
//! compiler (libFuzzer is C++) is installed. `--target` keeps the flags off
//! build scripts and proc-macros.
//!
//! Corpora: `kernel/fuzz/corpus/<target>` is committed and only read; new
//! inputs a run finds go to `target/fuzz/corpus/<target>`, crashes to
//! `target/fuzz/artifacts/<target>/`. A crash is turned into a regression
//! test in the crate where the bug was, in the normal test suite.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::fail;
use crate::layout::{Layout, PINNED_NIGHTLY};
use crate::process::{cargo, probe, run_checked, TaskResult};
use crate::setup;

/// Every fuzz target (a `[[bin]]` of `kernel/fuzz`).
pub const TARGETS: &[&str] = &[
    "core",
    "syscall_requests",
    "envelope",
    "manifest",
    "boot_cfg",
    "elf",
    "journal",
];

/// Seconds each target runs in the smoke of `cargo xtask test`.
pub const SMOKE_SECS: u64 = 3;
/// Seconds each target runs by default under `cargo xtask fuzz`.
const DEFAULT_SECS: u64 = 60;
/// The host triple the targets are built for.
const HOST_TRIPLE: &str = "x86_64-unknown-linux-gnu";

const COVERAGE_FLAGS: &[&str] = &[
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
    "--cfg",
    "fuzzing",
    "-Cdebug-assertions",
    "-Coverflow-checks",
];

/// What one run of a target did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub executions: u64,
    pub per_second: u64,
    /// The input that crashed it, if any.
    pub crash: Option<PathBuf>,
}

fn fuzz_dir(layout: &Layout) -> PathBuf {
    layout.root.join("kernel").join("fuzz")
}

fn work_dir(layout: &Layout) -> PathBuf {
    layout.target().join("fuzz")
}

/// The pinned nightly and a C++ compiler, installed if missing.
fn ensure_tools() -> TaskResult<()> {
    setup::ensure_nightly()?;
    if probe(Command::new("c++").arg("--version")).is_some() {
        return Ok(());
    }
    if setup::is_root() && probe(Command::new("apt-get").arg("--version")).is_some() {
        println!("xtask: no C++ compiler (libFuzzer is C++); installing g++ with apt-get");
        run_checked(Command::new("apt-get").arg("update"))?;
        run_checked(
            Command::new("apt-get")
                .args(["install", "-y", "g++"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        return Ok(());
    }
    Err(fail!(
        "fuzzing needs a C++ compiler for libFuzzer: install g++ or clang++"
    ))
}

/// Build every target; returns the directory holding the binaries.
pub fn build(layout: &Layout) -> TaskResult<PathBuf> {
    ensure_tools()?;
    let target_dir = work_dir(layout).join("build");
    let status = cargo()
        .arg(format!("+{PINNED_NIGHTLY}"))
        .current_dir(fuzz_dir(layout))
        .args(["build", "--release", "--bins", "--target", HOST_TRIPLE])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTFLAGS", COVERAGE_FLAGS.join(" "))
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .map_err(|e| fail!("cannot start cargo: {e}"))?;
    if !status.success() {
        return Err(fail!("building the fuzz targets failed ({status})"));
    }
    Ok(target_dir.join(HOST_TRIPLE).join("release"))
}

/// Run `target` for `secs` seconds, new inputs going to `scratch`.
pub fn run_target(
    layout: &Layout,
    bins: &Path,
    target: &str,
    secs: u64,
    scratch: &Path,
) -> TaskResult<Outcome> {
    let seeds = fuzz_dir(layout).join("corpus").join(target);
    let artifacts = work_dir(layout).join("artifacts").join(target);
    std::fs::create_dir_all(scratch)?;
    std::fs::create_dir_all(&artifacts)?;
    let mut prefix = artifacts.into_os_string();
    prefix.push("/");
    let mut artifact_prefix = std::ffi::OsString::from("-artifact_prefix=");
    artifact_prefix.push(&prefix);
    let started = Instant::now();
    let output = Command::new(bins.join(target))
        .arg(scratch)
        .arg(&seeds)
        .arg(format!("-max_total_time={secs}"))
        .arg("-print_final_stats=1")
        .arg(artifact_prefix)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail!("cannot start fuzz target {target}: {e}"))?;
    let log = String::from_utf8_lossy(&output.stderr);
    let mut outcome = parse_stats(&log);
    if !output.status.success() {
        let crash = log
            .lines()
            .find_map(|l| l.split("Test unit written to ").nth(1))
            .map(|p| PathBuf::from(p.trim()));
        outcome.crash = Some(crash.unwrap_or_else(|| PathBuf::from("(no input written)")));
        let tail: Vec<&str> = log.lines().rev().take(25).collect();
        for line in tail.into_iter().rev() {
            println!("      | {line}");
        }
    }
    if outcome.per_second == 0 && outcome.executions > 0 {
        let secs = started.elapsed().as_secs().max(1);
        outcome.per_second = outcome.executions / secs;
    }
    Ok(outcome)
}

/// The counters of libFuzzer's `-print_final_stats=1`.
pub fn parse_stats(log: &str) -> Outcome {
    let stat = |name: &str| {
        log.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim_start_matches(':').trim().parse().ok())
            .unwrap_or(0)
    };
    Outcome {
        executions: stat("stat::number_of_executed_units"),
        per_second: stat("stat::average_exec_per_sec"),
        crash: None,
    }
}

/// `cargo xtask fuzz`: every target (or one) for `secs` seconds each.
pub fn run(layout: &Layout, secs: Option<u64>, only: Option<&str>) -> TaskResult<bool> {
    let targets: Vec<&str> = match only {
        Some(name) if TARGETS.contains(&name) => vec![name],
        Some(name) => {
            return Err(fail!(
                "no fuzz target `{name}`; targets: {}",
                TARGETS.join(", ")
            ))
        }
        None => TARGETS.to_vec(),
    };
    let secs = secs.unwrap_or(DEFAULT_SECS);
    let bins = build(layout)?;
    let mut clean = true;
    println!("\n== fuzzing, {secs} s per target ==");
    for target in targets {
        let corpus = work_dir(layout).join("corpus").join(target);
        let outcome = run_target(layout, &bins, target, secs, &corpus)?;
        report(target, &outcome);
        clean &= outcome.crash.is_none();
    }
    Ok(clean)
}

/// One line per target.
pub fn report(target: &str, outcome: &Outcome) {
    match &outcome.crash {
        None => println!(
            "  {target:<20} ok      {} executions, {} exec/s",
            outcome.executions, outcome.per_second
        ),
        Some(input) => println!(
            "  {target:<20} CRASHED after {} executions; input: {}",
            outcome.executions,
            input.display()
        ),
    }
}

/// The smoke run of `cargo xtask test`: every target for [`SMOKE_SECS`],
/// from the committed corpus, into a scratch corpus thrown away after.
/// Returns `(passed, failed)` targets.
pub fn smoke(layout: &Layout) -> (usize, usize) {
    println!("\n== fuzz smoke ({SMOKE_SECS} s per target) ==");
    let started = Instant::now();
    let bins = match build(layout) {
        Ok(bins) => bins,
        Err(e) => {
            println!("  fuzz targets did not build: {e}");
            return (0, TARGETS.len());
        }
    };
    let mut tally = (0, 0);
    for target in TARGETS {
        let scratch = work_dir(layout).join("smoke").join(target);
        let _ = std::fs::remove_dir_all(&scratch);
        match run_target(layout, &bins, target, SMOKE_SECS, &scratch) {
            Ok(outcome) => {
                report(target, &outcome);
                if outcome.crash.is_none() {
                    tally.0 += 1;
                } else {
                    tally.1 += 1;
                }
            }
            Err(e) => {
                println!("  {target:<20} FAILED  {e}");
                tally.1 += 1;
            }
        }
    }
    let elapsed = Duration::from_secs(started.elapsed().as_secs());
    println!(
        "fuzz smoke: {} passed, {} failed in {}s",
        tally.0,
        tally.1,
        elapsed.as_secs()
    );
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_stats_are_read() {
        let log = "INFO: Seed: 1\n#2 DONE cov: 5\nstat::number_of_executed_units: 59569\n\
                   stat::average_exec_per_sec:     9928\nstat::new_units_added: 3\n";
        assert_eq!(
            parse_stats(log),
            Outcome {
                executions: 59569,
                per_second: 9928,
                crash: None
            }
        );
    }

    #[test]
    fn every_target_has_a_binary_and_a_committed_corpus() {
        let layout = Layout::from_xtask_manifest();
        let manifest = std::fs::read_to_string(fuzz_dir(&layout).join("Cargo.toml")).unwrap();
        for target in TARGETS {
            assert!(
                manifest.contains(&format!("name = \"{target}\"")),
                "{target} is a [[bin]] of kernel/fuzz"
            );
            let corpus = fuzz_dir(&layout).join("corpus").join(target);
            assert!(
                std::fs::read_dir(&corpus).is_ok_and(|mut d| d.next().is_some()),
                "{} has seeds",
                corpus.display()
            );
        }
    }
}
