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

/// The system image's root program (the kernel starts it in `mode=system`).
pub const SYSTEM_ROOT: &str = "process_manager";

/// The service manifest packed into the system image as `manifest`
/// (repository-relative).
pub const SYSTEM_MANIFEST: &str = "userspace/process_manager/manifests/system.manifest";

/// Program names a manifest refers to: the values of its `image = <name>`
/// lines, in order, without duplicates. Everything else in the manifest
/// belongs to the process manager and is not interpreted here.
pub fn manifest_images(manifest: &str) -> Vec<String> {
    let mut images: Vec<String> = Vec::new();
    for line in manifest.lines() {
        let line = line.split('#').next().unwrap_or("");
        if let Some((key, value)) = line.split_once('=') {
            let value = value.trim();
            if key.trim() == "image" && !value.is_empty() && !images.iter().any(|i| i == value) {
                images.push(value.to_string());
            }
        }
    }
    images
}

/// The programs of the system image: the root plus every image the
/// manifest names that exists in the workspace. Returns the names and the
/// manifest images no program provides (yet).
pub fn system_programs(all: &[UserProgram], manifest: &str) -> (Vec<String>, Vec<String>) {
    let mut names = vec![SYSTEM_ROOT.to_string()];
    let mut missing = Vec::new();
    for image in manifest_images(manifest) {
        if all.iter().any(|p| p.bin == image) {
            if !names.contains(&image) {
                names.push(image);
            }
        } else {
            missing.push(image);
        }
    }
    (names, missing)
}

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
    fn manifest_images_are_read_from_image_lines() {
        let text = "# comment image = nope\n[storage]\nid = 2\nimage = storage\n\n[b]\n image=console # x\n[c]\nimage = storage\n";
        assert_eq!(manifest_images(text), ["storage", "console"]);
        let all = [
            UserProgram {
                package: "pm".into(),
                bin: "process_manager".into(),
            },
            UserProgram {
                package: "st".into(),
                bin: "storage".into(),
            },
        ];
        let (names, missing) = system_programs(&all, text);
        assert_eq!(names, ["process_manager", "storage"]);
        assert_eq!(missing, ["console"]);
    }

    #[test]
    fn workspace_provides_the_system_root_and_manifest() {
        let layout = Layout::from_xtask_manifest();
        let all = discover(&layout).unwrap();
        resolve(&all, &[SYSTEM_ROOT]).unwrap();
        assert!(
            layout.root.join(SYSTEM_MANIFEST).is_file(),
            "{SYSTEM_MANIFEST} is missing"
        );
    }
}
