//! Where things live in the repository and under `target/`.
//!
//! Every path xtask reads or writes is derived here, so the README and
//! `qemu/README.md` can point at one place.

use std::path::{Path, PathBuf};

use pandagen_hal::boot_config::BootMode;

/// The bare-metal target both the kernel and ring-3 programs are built for.
pub const BARE_METAL_TARGET: &str = "x86_64-unknown-none";

/// The nightly the `bootloader` image builder needs (see DESIGN.md).
pub const PINNED_NIGHTLY: &str = "nightly-2026-10-01";

/// Cargo package of the kernel binary.
pub const KERNEL_PACKAGE: &str = "pandagen-kernel";
/// The kernel feature that adds the test harness (ring-0 self-tests and
/// the verdict of ring-3 test runs).
pub const TEST_HARNESS_FEATURE: &str = "test-harness";

/// Which kernel a boot image carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelKind {
    /// The kernel the system image ships: no test harness.
    System,
    /// With the test harness, for `mode=ktest`, `suite` and `bench`.
    Test,
}

impl KernelKind {
    /// The kernel a boot in `mode` needs: the test modes report a verdict,
    /// which only the test harness does.
    pub fn for_mode(mode: BootMode) -> Self {
        if mode.is_test() {
            KernelKind::Test
        } else {
            KernelKind::System
        }
    }
}

/// Build profile, chosen by `--release`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    Debug,
    Release,
}

impl Profile {
    pub fn from_release_flag(release: bool) -> Self {
        if release {
            Profile::Release
        } else {
            Profile::Debug
        }
    }

    /// Directory name cargo uses for this profile.
    pub fn dir(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }

    /// Extra cargo arguments selecting this profile.
    pub fn cargo_args(self) -> &'static [&'static str] {
        match self {
            Profile::Debug => &[],
            Profile::Release => &["--release"],
        }
    }
}

/// Repository layout rooted at the workspace directory.
#[derive(Clone, Debug)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    /// The workspace root: xtask lives one level below it.
    pub fn from_xtask_manifest() -> Self {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest
            .parent()
            .expect("xtask is one directory below the workspace root")
            .to_path_buf();
        Layout { root }
    }

    /// Cargo's target directory: `$CARGO_TARGET_DIR` if set (as cargo
    /// does), else `target/` in the workspace.
    pub fn target(&self) -> PathBuf {
        match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if !dir.is_empty() => self.root.join(dir),
            _ => self.root.join("target"),
        }
    }

    /// Where cargo leaves the kernel it built last, of either kind.
    pub fn built_kernel_elf(&self, profile: Profile) -> PathBuf {
        self.target()
            .join(BARE_METAL_TARGET)
            .join(profile.dir())
            .join(KERNEL_PACKAGE)
    }

    /// The kernel of `kind`, kept apart from the other kind (cargo puts
    /// both at [`Layout::built_kernel_elf`]).
    pub fn kernel_elf(&self, profile: Profile, kind: KernelKind) -> PathBuf {
        let name = match kind {
            KernelKind::System => format!("{KERNEL_PACKAGE}-system"),
            KernelKind::Test => format!("{KERNEL_PACKAGE}-test"),
        };
        self.built_kernel_elf(profile).with_file_name(name)
    }

    /// Target dir for ring-3 programs: separate from the kernel's because
    /// they are linked with different flags.
    pub fn user_target_dir(&self) -> PathBuf {
        self.target().join("user")
    }

    pub fn user_elf(&self, bin: &str, profile: Profile) -> PathBuf {
        self.user_target_dir()
            .join(BARE_METAL_TARGET)
            .join(profile.dir())
            .join(bin)
    }

    pub fn user_linker_script(&self) -> PathBuf {
        self.root.join("userspace").join("rt").join("link.ld")
    }

    pub fn bootimage_manifest(&self) -> PathBuf {
        self.root.join("bootimage").join("Cargo.toml")
    }

    pub fn bootimage_target_dir(&self) -> PathBuf {
        self.target().join("bootimage")
    }

    pub fn bootimage_tool(&self) -> PathBuf {
        self.bootimage_target_dir()
            .join("release")
            .join("pandagen-bootimage")
    }

    pub fn qemu_profiles(&self) -> PathBuf {
        self.root.join("qemu")
    }

    /// Where `image` puts the system images users boot and flash.
    pub fn system_image(&self, firmware: crate::qemu::Firmware) -> PathBuf {
        self.target()
            .join(format!("pandagen-{}.img", firmware.name()))
    }

    /// Scratch directory for per-suite ramdisks and images.
    pub fn suite_dir(&self) -> PathBuf {
        self.target().join("suites")
    }

    pub fn qemu_logs(&self) -> PathBuf {
        self.target().join("qemu-logs")
    }

    pub fn host_test_log(&self) -> PathBuf {
        self.target().join("test-logs").join("host.log")
    }

    pub fn bench_dir(&self) -> PathBuf {
        self.target().join("bench")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_system_mode_boots_the_kernel_without_the_test_harness() {
        assert_eq!(KernelKind::for_mode(BootMode::System), KernelKind::System);
        for mode in [BootMode::Ktest, BootMode::Suite, BootMode::Bench] {
            assert_eq!(KernelKind::for_mode(mode), KernelKind::Test, "{mode:?}");
        }
    }

    #[test]
    fn the_two_kernels_are_kept_apart_from_what_cargo_built_last() {
        let layout = Layout {
            root: PathBuf::from("/repo"),
        };
        let system = layout.kernel_elf(Profile::Debug, KernelKind::System);
        let test = layout.kernel_elf(Profile::Debug, KernelKind::Test);
        let built = layout.built_kernel_elf(Profile::Debug);
        assert_ne!(system, test);
        assert_ne!(system, built);
        assert_ne!(test, built);
        assert_eq!(system.parent(), built.parent());
    }
}
