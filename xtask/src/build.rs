//! Building the pieces of a boot image: the kernel, ring-3 programs, the
//! image builder tool, and the images themselves.

use std::path::{Path, PathBuf};

use crate::bootcfg::BootConfig;
use crate::fail;
use crate::layout::{
    KernelKind, Layout, Profile, BARE_METAL_TARGET, KERNEL_PACKAGE, PINNED_NIGHTLY,
    TEST_HARNESS_FEATURE,
};
use crate::process::{cargo, run_checked, TaskResult};
use crate::programs;
use crate::qemu::Firmware;
use crate::ramdisk;
use crate::strip;

/// Builds the kernel ELF of `kind` and returns its path.
pub fn kernel(layout: &Layout, profile: Profile, kind: KernelKind) -> TaskResult<PathBuf> {
    let mut cmd = cargo();
    cmd.current_dir(&layout.root)
        .args(["build", "-p", KERNEL_PACKAGE, "--target", BARE_METAL_TARGET])
        .args(profile.cargo_args());
    if kind == KernelKind::Test {
        cmd.args(["--features", TEST_HARNESS_FEATURE]);
    }
    run_checked(&mut cmd)?;
    let built = layout.built_kernel_elf(profile);
    if !built.is_file() {
        return Err(fail!(
            "kernel build succeeded but {} is missing",
            built.display()
        ));
    }
    let elf = layout.kernel_elf(profile, kind);
    std::fs::copy(&built, &elf)
        .map_err(|e| fail!("copying {} to {}: {e}", built.display(), elf.display()))?;
    Ok(elf)
}

/// Builds the named ring-3 programs; returns `(name, elf)` pairs.
pub fn user_programs(
    layout: &Layout,
    profile: Profile,
    names: &[&str],
) -> TaskResult<Vec<(String, PathBuf)>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let wanted = programs::resolve(&programs::discover(layout)?, names)?;
    let script = layout.user_linker_script();
    if !script.is_file() {
        return Err(fail!(
            "ring-3 linker script {} is missing (the ring-3 runtime provides it)",
            script.display()
        ));
    }
    // RUSTFLAGS is split on whitespace, so the script's path cannot hold any.
    if script.to_string_lossy().contains(char::is_whitespace) {
        return Err(fail!(
            "the repository path {} contains whitespace, which RUSTFLAGS cannot carry; \
             move the checkout",
            layout.root.display()
        ));
    }
    let rustflags = format!(
        "-C relocation-model=static -C link-arg=-T{}",
        script.display()
    );
    // One cargo invocation for all of them: cargo then schedules the
    // shared dependencies once.
    let mut packages: Vec<&str> = wanted.iter().map(|p| p.package.as_str()).collect();
    packages.sort_unstable();
    packages.dedup();
    let features: Vec<String> = packages
        .iter()
        .map(|p| format!("{p}/{}", programs::RING3_FEATURE))
        .collect();
    let mut cmd = cargo();
    cmd.current_dir(&layout.root)
        .env("CARGO_TARGET_X86_64_UNKNOWN_NONE_RUSTFLAGS", &rustflags)
        .arg("build");
    for package in &packages {
        cmd.args(["-p", package]);
    }
    for program in &wanted {
        cmd.args(["--bin", &program.bin]);
    }
    cmd.args(["--features", &features.join(",")])
        .args(["--target", BARE_METAL_TARGET])
        .arg("--target-dir")
        .arg(layout.user_target_dir())
        .args(profile.cargo_args());
    run_checked(&mut cmd)?;
    wanted
        .iter()
        .map(|program| {
            let elf = layout.user_elf(&program.bin, profile);
            if elf.is_file() {
                Ok((program.bin.clone(), elf))
            } else {
                Err(fail!(
                    "{} built but {} is missing",
                    program.bin,
                    elf.display()
                ))
            }
        })
        .collect()
}

/// Builds (or reuses) the host image-builder tool on the pinned nightly.
pub fn bootimage_tool(layout: &Layout) -> TaskResult<PathBuf> {
    let tool = layout.bootimage_tool();
    if !tool.is_file() {
        println!(
            "xtask: building the boot image builder with {PINNED_NIGHTLY} \
             (first time only; this takes a few minutes)"
        );
    }
    let mut cmd = cargo();
    cmd.current_dir(&layout.root)
        .arg(format!("+{PINNED_NIGHTLY}"))
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(layout.bootimage_manifest())
        .arg("--target-dir")
        .arg(layout.bootimage_target_dir());
    run_checked(&mut cmd)?;
    Ok(tool)
}

/// What goes into one bootable image.
pub struct ImageSpec<'a> {
    pub boot_cfg: BootConfig,
    pub programs: &'a [&'a str],
    pub manifest: Option<&'a Path>,
}

/// Packs the ramdisk for `spec` into `ramdisk_out` and writes one disk
/// image per `(firmware, path)` in `outputs`. The kernel and programs in
/// the image are stripped of debug info (see `strip.rs`).
pub fn images(
    layout: &Layout,
    profile: Profile,
    kernel: &Path,
    spec: &ImageSpec<'_>,
    ramdisk_out: &Path,
    outputs: &[(Firmware, PathBuf)],
) -> TaskResult<()> {
    let objcopy = strip::objcopy()?;
    let built = user_programs(layout, profile, spec.programs)?;
    let stripped = built
        .iter()
        .map(|(name, elf)| {
            let rel = format!("{}/bin/{name}", profile.dir());
            Ok((name, strip::stripped(layout, &objcopy, elf, &rel)?))
        })
        .collect::<TaskResult<Vec<_>>>()?;
    let contents = ramdisk::Contents {
        boot_cfg: spec.boot_cfg,
        manifest: spec.manifest,
        programs: stripped
            .iter()
            .map(|(name, elf)| ramdisk::Program { name, elf })
            .collect(),
    };
    let archive = ramdisk::pack(&contents)?;
    for path in std::iter::once(ramdisk_out).chain(outputs.iter().map(|(_, p)| p.as_path())) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
    }
    std::fs::write(ramdisk_out, archive)?;

    let kernel = strip::stripped(
        layout,
        &objcopy,
        kernel,
        &format!("{}/kernel", profile.dir()),
    )?;
    let tool = bootimage_tool(layout)?;
    let mut cmd = std::process::Command::new(&tool);
    cmd.arg("--kernel")
        .arg(&kernel)
        .arg("--ramdisk")
        .arg(ramdisk_out);
    for (fw, path) in outputs {
        cmd.arg(format!("--{}", fw.name())).arg(path);
    }
    run_checked(&mut cmd)
}
