//! The test harness (feature `test-harness`): what a test run's kernel
//! adds to the normal one. `mode=ktest` runs the ring-0 self-tests;
//! `mode=suite` and `mode=bench` run a ring-3 root program and end the
//! QEMU run with its verdict when it ends.
//!
//! | mode    | root task                                    | when the root ends             |
//! |---------|----------------------------------------------|--------------------------------|
//! | `suite` | `bin/suite_<suite>`                          | invariants checked, QEMU exits |
//! | `bench` | `bin/bench`, or `bin/bench_<suite>` if named | invariants checked, QEMU exits |
//!
//! A run passes when the root exits `Normal` and
//! [`KernelCore::check_invariants`] holds afterwards.

use alloc::string::String;
use pandagen_abi::ExitReason;
use pandagen_core::KernelCore;

use crate::qemu;
use crate::root_task::{self, RootError};

/// `mode=ktest`: the ring-0 self-tests.
pub fn run_ktest() -> ! {
    crate::ktest::run_all()
}

/// `mode=suite`: `bin/suite_<suite>`.
pub fn run_suite(suite: Option<&str>) -> ! {
    run_root(&alloc::format!("suite_{}", suite.unwrap_or("")))
}

/// `mode=bench`: `bin/bench`, or `suite=<name>` picks a service's own
/// bench program, `bin/bench_<name>`.
pub fn run_bench(suite: Option<&str>) -> ! {
    run_root(&suite.map_or_else(|| String::from("bench"), |s| alloc::format!("bench_{s}")))
}

/// Run `bin/<name>` as the root task, judged when it ends.
fn run_root(name: &str) -> ! {
    crate::start_ring3_support();
    match root_task::run(name, Some(root_ended)) {
        RootError::Missing => {
            crate::println!("[TEST] FAIL kernel/root_program: bin/{name} is not in the ramdisk")
        }
        RootError::Failed(e) => {
            crate::println!("[TEST] FAIL kernel/root_program: cannot start bin/{name}: {e}")
        }
    }
    qemu::exit(qemu::ExitCode::Failure)
}

/// The root of a test run ended: check the object model and exit QEMU with
/// the verdict.
fn root_ended(core: &KernelCore, reason: &ExitReason) {
    // Only a violation adds a `[TEST]` line: the suite's own `[SUITE] DONE`
    // counts must match the log, and an extra FAIL makes the run fail.
    let invariants = core.check_invariants();
    match &invariants {
        Err(violation) => crate::println!("[TEST] FAIL kernel/invariants: {violation:?}"),
        Ok(()) => log::info!(
            "invariants hold after the run ({} tasks, {} channels live)",
            core.task_count(),
            core.channel_count()
        ),
    }
    let normal = *reason == ExitReason::Normal;
    if !normal {
        log::error!("the root task did not exit normally");
    }
    let pass = normal && invariants.is_ok();
    qemu::exit(if pass {
        qemu::ExitCode::Success
    } else {
        qemu::ExitCode::Failure
    })
}
