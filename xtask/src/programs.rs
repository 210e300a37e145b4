//! Ring-3 programs xtask can put into a ramdisk, and what the system image
//! carries.
//!
//! A ring-3 program is any `[[bin]]` in the workspace whose
//! `required-features` include `ring3`; xtask finds them with
//! `cargo metadata`, so adding a program needs no change here. xtask builds
//! them for `x86_64-unknown-none` with the ring-3 runtime's linker script.
//! Suites pick programs by binary name (see `suites.rs`); the binary name is
//! also the ramdisk entry (`bin/<name>`), so names must be unique.

use std::process::Command;

use crate::fail;
use crate::layout::Layout;
use crate::process::{cargo, display, TaskResult};

/// The feature that marks a binary as a ring-3 program.
pub const RING3_FEATURE: &str = "ring3";

/// A ring-3 program: a cargo package and one of its binaries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserProgram {
    pub package: String,
    pub bin: String,
}

/// Programs in the system image (`cargo xtask image/run/flash`): the
/// process manager and the services its manifest starts.
pub const SYSTEM_PROGRAMS: &[&str] = &[
    "process_manager",
    "storage",
    "transformer",
    "pipeline_executor",
];

/// The service manifest packed into the system image as `manifest`
/// (repository-relative).
pub const SYSTEM_MANIFEST: Option<&str> =
    Some("userspace/process_manager/manifests/system.manifest");

/// Every ring-3 program in the workspace, sorted by binary name.
pub fn discover(layout: &Layout) -> TaskResult<Vec<UserProgram>> {
    let mut cmd: Command = cargo();
    cmd.current_dir(&layout.root).args([
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
        "--offline",
    ]);
    let out = cmd
        .output()
        .map_err(|e| fail!("cannot run `{}`: {e}", display(&cmd)))?;
    if !out.status.success() {
        return Err(fail!(
            "`{}` failed: {}",
            display(&cmd),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| fail!("cargo metadata output is not JSON: {e}"))?;
    from_metadata(&metadata)
}

/// Extracts ring-3 programs from `cargo metadata` JSON.
pub fn from_metadata(metadata: &serde_json::Value) -> TaskResult<Vec<UserProgram>> {
    let mut programs = Vec::new();
    let packages = metadata["packages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for package in packages {
        let name = package["name"].as_str().unwrap_or_default();
        let targets = package["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for target in targets {
            let is_bin = target["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"));
            let ring3 = target["required-features"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f == RING3_FEATURE));
            if is_bin && ring3 {
                programs.push(UserProgram {
                    package: name.to_string(),
                    bin: target["name"].as_str().unwrap_or_default().to_string(),
                });
            }
        }
    }
    programs.sort_by(|a, b| a.bin.cmp(&b.bin));
    if let Some(pair) = programs.windows(2).find(|w| w[0].bin == w[1].bin) {
        return Err(fail!(
            "ring-3 program name `{}` is used by both {} and {}; ramdisk entries must be unique",
            pair[0].bin,
            pair[0].package,
            pair[1].package
        ));
    }
    Ok(programs)
}

/// Resolves binary names to programs, failing on an unknown name.
pub fn resolve(all: &[UserProgram], names: &[&str]) -> TaskResult<Vec<UserProgram>> {
    names
        .iter()
        .map(|n| {
            all.iter().find(|p| p.bin == *n).cloned().ok_or_else(|| {
                fail!("no ring-3 program `{n}` (a [[bin]] with required-features = [\"ring3\"])")
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bin(name: &str, features: &[&str]) -> serde_json::Value {
        json!({"name": name, "kind": ["bin"], "required-features": features})
    }

    #[test]
    fn only_ring3_binaries_are_programs() {
        let md = json!({"packages": [
            {"name": "svc", "targets": [
                {"name": "svc", "kind": ["lib"]},
                bin("svc", &["ring3"]),
                bin("tool", &[]),
            ]},
            {"name": "other", "targets": [bin("a_prog", &["std", "ring3"])]},
        ]});
        let got = from_metadata(&md).unwrap();
        assert_eq!(
            got,
            [
                UserProgram {
                    package: "other".into(),
                    bin: "a_prog".into()
                },
                UserProgram {
                    package: "svc".into(),
                    bin: "svc".into()
                },
            ]
        );
        assert_eq!(resolve(&got, &["svc"]).unwrap()[0].package, "svc");
        assert!(resolve(&got, &["tool"]).is_err());
    }

    #[test]
    fn duplicate_program_names_are_rejected() {
        let md = json!({"packages": [
            {"name": "a", "targets": [bin("x", &["ring3"])]},
            {"name": "b", "targets": [bin("x", &["ring3"])]},
        ]});
        assert!(from_metadata(&md).is_err());
    }

    #[test]
    fn workspace_programs_cover_the_system_image() {
        let all = discover(&Layout::from_xtask_manifest()).unwrap();
        resolve(&all, SYSTEM_PROGRAMS).unwrap();
        if let Some(m) = SYSTEM_MANIFEST {
            let root = Layout::from_xtask_manifest().root;
            assert!(root.join(m).is_file(), "{m} is missing");
        }
    }
}
