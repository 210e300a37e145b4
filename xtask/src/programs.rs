//! Ring-3 programs xtask can put into a ramdisk, and what the system image
//! carries.
//!
//! To add a program: append a line to [`USER_PROGRAMS`]. The package needs a
//! `[[bin]]` with `required-features = ["ring3"]`; xtask builds it for
//! `x86_64-unknown-none` with the ring-3 runtime's linker script. Suites pick
//! programs by binary name (see `suites.rs`).

/// A ring-3 program: a cargo package and one of its binaries. The binary
/// name is also the ramdisk entry name (`bin/<bin>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserProgram {
    pub package: &'static str,
    pub bin: &'static str,
}

const fn program(package: &'static str, bin: &'static str) -> UserProgram {
    UserProgram { package, bin }
}

const SCENARIOS: &str = "pandagen-scenarios";

/// Every ring-3 program xtask knows how to build.
pub const USER_PROGRAMS: &[UserProgram] = &[
    program("pandagen-process-manager", "process_manager"),
    // Scenario programs for the ring-3 QEMU suites and benchmarks.
    program(SCENARIOS, "suite_ipc"),
    program(SCENARIOS, "ipc_echo"),
    program(SCENARIOS, "ipc_client"),
    program(SCENARIOS, "cap_transfer_client"),
    program(SCENARIOS, "suite_faults"),
    program(SCENARIOS, "faulter"),
    program(SCENARIOS, "suite_preempt"),
    program(SCENARIOS, "spinner"),
    program(SCENARIOS, "suite_hardening"),
    program(SCENARIOS, "handle_thief"),
    program(SCENARIOS, "bench"),
];

/// Programs in the system image (`cargo xtask image/run/flash`).
pub const SYSTEM_PROGRAMS: &[&str] = &["process_manager"];

/// The service manifest packed into the system image as `manifest`
/// (repository-relative).
pub const SYSTEM_MANIFEST: Option<&str> =
    Some("userspace/process_manager/manifests/system.manifest");

/// Looks a program up by its binary name.
pub fn find(bin: &str) -> Option<&'static UserProgram> {
    USER_PROGRAMS.iter().find(|p| p.bin == bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_names_are_unique_and_plain() {
        for (i, p) in USER_PROGRAMS.iter().enumerate() {
            assert!(!p.bin.is_empty() && !p.bin.contains('/'), "{p:?}");
            assert!(
                USER_PROGRAMS[i + 1..].iter().all(|q| q.bin != p.bin),
                "duplicate program {}",
                p.bin
            );
        }
    }

    #[test]
    fn system_image_names_known_programs_and_an_existing_manifest() {
        for p in SYSTEM_PROGRAMS {
            assert!(find(p).is_some(), "unknown system program {p}");
        }
        if let Some(m) = SYSTEM_MANIFEST {
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            assert!(root.join(m).is_file(), "{m} is missing");
        }
    }
}
