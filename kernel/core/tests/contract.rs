//! The core's contract tests, one module per concept, built as one test
//! binary: each file below is also readable on its own, and one binary
//! links once instead of twenty times (a mutation-testing run rebuilds
//! the tests for every mutant).
//!
//! A new test file goes in this list. Only three files are binaries of
//! their own (see `Cargo.toml`): `properties.rs` (slow property tests,
//! run after these pass) and the two that count every allocation of the
//! process. `every_test_file_is_built` below fails on a file in neither.

// Each file declares `mod common;` itself, so that it reads (and builds)
// as a whole on its own: the fixtures are compiled once per file.
#![allow(clippy::duplicate_mod)]

#[path = "accounting.rs"]
mod accounting;
#[path = "authority.rs"]
mod authority;
#[path = "block_device.rs"]
mod block_device;
#[path = "budgets.rs"]
mod budgets;
#[path = "capabilities.rs"]
mod capabilities;
#[path = "channels.rs"]
mod channels;
#[path = "devices.rs"]
mod devices;
#[path = "exit_routes.rs"]
mod exit_routes;
#[path = "fastpath.rs"]
mod fastpath;
#[path = "heap_charges.rs"]
mod heap_charges;
#[path = "limits.rs"]
mod limits;
#[path = "names.rs"]
mod names;
#[path = "objects.rs"]
mod objects;
#[path = "registry.rs"]
mod registry;
#[path = "scheduling.rs"]
mod scheduling;
#[path = "stale_ids.rs"]
mod stale_ids;
#[path = "tasks.rs"]
mod tasks;
#[path = "wakeups.rs"]
mod wakeups;

/// Test files are not found automatically (`autotests = false`): one that
/// is neither a module here nor a `[[test]]` of its own would never run.
#[test]
fn every_test_file_is_built() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
    let here = include_str!("contract.rs");
    let manifest = include_str!("../Cargo.toml");
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".rs") else {
            continue;
        };
        assert!(
            stem == "contract"
                || here.contains(&format!("#[path = \"{name}\"]"))
                || manifest.contains(&format!("path = \"tests/{name}\"")),
            "tests/{name} is not built: add it to tests/contract.rs"
        );
    }
}
