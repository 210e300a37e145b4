//! Starting ring 3: the boot ramdisk's programs, the root task for each
//! boot mode, and the verdict when a test run's root task ends.
//!
//! | mode     | root task                                    | when the root exits            |
//! |----------|----------------------------------------------|--------------------------------|
//! | `suite`  | `bin/suite_<suite>`                          | invariants checked, QEMU exits |
//! | `bench`  | `bin/bench`, or `bin/bench_<suite>` if named | invariants checked, QEMU exits |
//! | `system` | `bin/process_manager`                        | the system idles on            |
//!
//! The root holds the capabilities of `ROOT_CAPABILITIES`, minted by the
//! core. A test run passes when the root exits `Normal` and
//! [`KernelCore::check_invariants`] holds afterwards.

use alloc::string::String;
use pandagen_abi::syscall::ROOT_CAPABILITIES;
use pandagen_core::KernelCore;
use pandagen_hal::boot_config::BootMode;
use spin::Once;
use tar_no_std::TarArchiveRef;

use crate::qemu;
use crate::task::{self, Kernel, RootPolicy, KERNEL};

static RAMDISK: Once<Option<&'static [u8]>> = Once::new();

/// Remember the boot ramdisk, where program images come from.
pub fn init(ramdisk: Option<&'static [u8]>) {
    RAMDISK.call_once(|| ramdisk);
}

/// The ELF image of program `name` (`bin/<name>` in the ramdisk).
pub fn image(name: &str) -> Option<&'static [u8]> {
    ramdisk_file("bin/", name)
}

/// A top-level data file of the ramdisk, such as `manifest`. Programs
/// (under `bin/`) and nested paths are not reachable this way.
pub fn boot_file(name: &str) -> Option<&'static [u8]> {
    ramdisk_file("", name)
}

fn ramdisk_file(directory: &str, name: &str) -> Option<&'static [u8]> {
    if name.is_empty() || name.contains('/') {
        return None;
    }
    let bytes = (*RAMDISK.get()?)?;
    let archive = TarArchiveRef::new(bytes).ok()?;
    let found = archive.entries().find(|entry| {
        entry.filename().as_str().is_ok_and(|f| {
            let f = f.strip_prefix("./").unwrap_or(f);
            f.strip_prefix(directory) == Some(name)
        })
    });
    found.map(|entry| entry.data())
}

/// Start the root task for `mode` and schedule for good. Returns only if
/// there is no root program to run (system mode without a process
/// manager).
pub fn start(mode: BootMode, suite: Option<&str>) {
    crate::blockdev::init();
    let (name, policy) = match mode {
        BootMode::Suite => (
            alloc::format!("suite_{}", suite.unwrap_or("")),
            RootPolicy::ExitQemu,
        ),
        // `suite=<name>` picks a service's own bench program.
        BootMode::Bench => (
            suite.map_or_else(|| String::from("bench"), |s| alloc::format!("bench_{s}")),
            RootPolicy::ExitQemu,
        ),
        BootMode::System | BootMode::Ktest => {
            (String::from("process_manager"), RootPolicy::KeepRunning)
        }
    };
    let Some(image) = image(&name) else {
        if policy == RootPolicy::ExitQemu {
            crate::println!("[TEST] FAIL kernel/root_program: bin/{name} is not in the ramdisk");
            qemu::exit(qemu::ExitCode::Failure);
        }
        log::info!("no bin/{name} in the ramdisk: nothing to run");
        return;
    };
    let mut kernel = Kernel::new(policy);
    let now = task::now();
    let root = kernel.start(image, &name, |core, frames| {
        let root = core.create_root_task(name.as_str(), now)?;
        core.charge_frames(root.task, frames)?;
        Ok(root)
    });
    match root {
        Ok(root) => {
            debug_assert_eq!(root.capabilities.len(), ROOT_CAPABILITIES.len());
            log::info!("root task {} runs bin/{name}", root.task);
            if let Some(budget) = kernel.core.budget(root.task) {
                log::info!(
                    "root budget: {} bytes of kernel memory, {} frames ({} used by its image)",
                    budget.limit.memory,
                    budget.limit.frames,
                    budget.used.frames
                );
            }
            kernel.root = Some(root.task);
        }
        Err(e) => {
            crate::println!("[TEST] FAIL kernel/root_program: cannot start bin/{name}: {e}");
            if policy == RootPolicy::ExitQemu {
                qemu::exit(qemu::ExitCode::Failure);
            }
            return;
        }
    }
    *KERNEL.lock() = Some(kernel);
    task::run_first()
}

/// The root of a test run ended: check the object model and exit QEMU with
/// the verdict.
pub fn finish(core: &KernelCore, root_exited_normally: bool) -> ! {
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
    if !root_exited_normally {
        log::error!("the root task did not exit normally");
    }
    let pass = root_exited_normally && invariants.is_ok();
    qemu::exit(if pass {
        qemu::ExitCode::Success
    } else {
        qemu::ExitCode::Failure
    })
}
