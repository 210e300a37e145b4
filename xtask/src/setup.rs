//! Set-up on demand: installs what `run`, `test`, `image` and `bench` need,
//! prints what it installs, and stays quiet when everything is present.
//!
//! Rust pieces (the bare-metal target, the pinned nightly) are installed
//! through rustup everywhere. QEMU and OVMF (and valgrind, for `bench`)
//! come from the system package manager, which xtask drives only as root on
//! Debian/Ubuntu; elsewhere it stops and prints the exact command to run.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fail;
use crate::layout::{BARE_METAL_TARGET, PINNED_NIGHTLY};
use crate::process::{probe, run_checked, TaskResult};

/// Monolithic OVMF images, in the order they are looked for.
/// `PANDAGEN_OVMF` overrides the search.
const OVMF_CANDIDATES: &[&str] = &[
    "/usr/share/ovmf/OVMF.fd",
    "/usr/share/qemu/OVMF.fd",
    "/usr/share/OVMF/OVMF.fd",
    "/usr/share/edk2/ovmf/OVMF.fd",
    "/usr/share/edk2-ovmf/x64/OVMF.fd",
    "/usr/share/edk2/x64/OVMF.fd",
];

pub const QEMU_BINARY: &str = "qemu-system-x86_64";
pub const VALGRIND_BINARY: &str = "valgrind";

/// What the host needs for a given task.
#[derive(Clone, Copy, Debug, Default)]
pub struct Needs {
    /// The pinned nightly for the image builder.
    pub nightly: bool,
    /// QEMU and OVMF.
    pub qemu: bool,
}

/// Host tools xtask found, for the tasks that use them.
#[derive(Clone, Debug)]
pub struct Host {
    pub ovmf: Option<PathBuf>,
}

pub fn ensure(needs: Needs) -> TaskResult<Host> {
    ensure_target()?;
    if needs.nightly {
        ensure_nightly()?;
    }
    let mut host = Host { ovmf: find_ovmf() };
    if needs.qemu {
        ensure_qemu_and_ovmf()?;
        host.ovmf = find_ovmf();
    }
    Ok(host)
}

fn ensure_target() -> TaskResult<()> {
    let installed = probe(Command::new("rustup").args(["target", "list", "--installed"]))
        .ok_or_else(|| fail!("`rustup` is not available; install it from https://rustup.rs"))?;
    if installed.lines().any(|l| l.trim() == BARE_METAL_TARGET) {
        return Ok(());
    }
    println!("xtask: installing the Rust target {BARE_METAL_TARGET}");
    run_checked(Command::new("rustup").args(["target", "add", BARE_METAL_TARGET]))
}

/// The clippy component of the toolchain that builds the workspace, for
/// `cargo xtask clippy` (a minimal rustup profile leaves it out).
pub fn ensure_clippy() -> TaskResult<()> {
    let installed = probe(Command::new("rustup").args(["component", "list", "--installed"]))
        .ok_or_else(|| fail!("`rustup` is not available; install it from https://rustup.rs"))?;
    if installed
        .lines()
        .any(|l| l.trim() == "clippy" || l.trim().starts_with("clippy-"))
    {
        return Ok(());
    }
    println!("xtask: installing the Rust component clippy");
    run_checked(Command::new("rustup").args(["component", "add", "clippy"]))
}

fn ensure_nightly() -> TaskResult<()> {
    let toolchains = probe(Command::new("rustup").args(["toolchain", "list"])).unwrap_or_default();
    let present = toolchains.lines().any(|l| {
        l.split_whitespace()
            .next()
            .is_some_and(|t| t.starts_with(PINNED_NIGHTLY))
    });
    let components = if present {
        probe(Command::new("rustup").args([
            "component",
            "list",
            "--installed",
            "--toolchain",
            PINNED_NIGHTLY,
        ]))
        .unwrap_or_default()
    } else {
        String::new()
    };
    let has = |c: &str| components.lines().any(|l| l.starts_with(c));
    if present && has("rust-src") && has("llvm-tools") {
        return Ok(());
    }
    println!(
        "xtask: installing the Rust toolchain {PINNED_NIGHTLY} with rust-src and llvm-tools \
         (used only to build the boot image builder)"
    );
    run_checked(Command::new("rustup").args([
        "toolchain",
        "install",
        // Installing a toolchain must not replace the user's rustup binary.
        "--no-self-update",
        PINNED_NIGHTLY,
        "--profile",
        "minimal",
        "-c",
        "rust-src",
        "-c",
        "llvm-tools",
    ]))
}

/// Finds an OVMF firmware image for UEFI boots.
pub fn find_ovmf() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PANDAGEN_OVMF") {
        return Some(PathBuf::from(p));
    }
    OVMF_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

fn qemu_present() -> bool {
    probe(Command::new(QEMU_BINARY).arg("--version")).is_some()
}

fn ensure_qemu_and_ovmf() -> TaskResult<()> {
    let qemu = qemu_present();
    let ovmf = find_ovmf().is_some();
    if qemu && ovmf {
        return Ok(());
    }
    let missing = match (qemu, ovmf) {
        (false, false) => "QEMU and OVMF are",
        (false, true) => "QEMU is",
        _ => "OVMF (UEFI firmware for QEMU) is",
    };
    let platform = Platform::detect(&read_os_release());
    if platform == Platform::Debian && is_root() {
        apt_install(missing, &["qemu-system-x86", "ovmf"])?;
        if !qemu_present() || find_ovmf().is_none() {
            return Err(fail!("apt-get finished but QEMU or OVMF is still missing"));
        }
        return Ok(());
    }
    Err(fail!(
        "{missing} missing. Install with:\n    {}\n{}",
        platform.install_command(),
        "then run the command again (set PANDAGEN_OVMF=/path/to/OVMF.fd if your OVMF lives elsewhere)."
    ))
}

fn valgrind_present() -> bool {
    probe(Command::new(VALGRIND_BINARY).arg("--version")).is_some()
}

/// valgrind, whose callgrind tool counts the simulator's instructions for
/// `cargo xtask bench`: installed from Debian's `valgrind` package like
/// QEMU, or named with the command to install it.
pub fn ensure_valgrind() -> TaskResult<()> {
    if valgrind_present() {
        return Ok(());
    }
    let platform = Platform::detect(&read_os_release());
    if platform == Platform::Debian && is_root() {
        apt_install("valgrind is", &["valgrind"])?;
        if !valgrind_present() {
            return Err(fail!("apt-get finished but valgrind is still missing"));
        }
        return Ok(());
    }
    Err(fail!(
        "valgrind is missing. Install with:\n    {}\nthen run the command again.",
        platform.valgrind_install_command()
    ))
}

/// Install Debian `packages` with apt-get (as root), saying why.
fn apt_install(missing: &str, packages: &[&str]) -> TaskResult<()> {
    let names = packages.join(" and ");
    println!("xtask: {missing} missing; installing {names} with apt-get");
    run_checked(Command::new("apt-get").arg("update"))?;
    run_checked(
        Command::new("apt-get")
            .args(["install", "-y"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    println!("xtask: installed {names}");
    Ok(())
}

/// Host platforms with a known QEMU/OVMF install command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    Debian,
    Fedora,
    Arch,
    Suse,
    MacOs,
    Other,
}

impl Platform {
    /// Classifies the host from `/etc/os-release` text (`ID`/`ID_LIKE`).
    pub fn detect(os_release: &str) -> Self {
        if cfg!(target_os = "macos") {
            return Platform::MacOs;
        }
        let mut ids = Vec::new();
        for line in os_release.lines() {
            if let Some(v) = line
                .strip_prefix("ID=")
                .or_else(|| line.strip_prefix("ID_LIKE="))
            {
                ids.extend(v.trim_matches('"').split_whitespace().map(str::to_owned));
            }
        }
        let any = |names: &[&str]| ids.iter().any(|i| names.contains(&i.as_str()));
        if any(&["debian", "ubuntu"]) {
            Platform::Debian
        } else if any(&["fedora", "rhel", "centos"]) {
            Platform::Fedora
        } else if any(&["arch"]) {
            Platform::Arch
        } else if any(&["suse", "opensuse", "opensuse-leap", "opensuse-tumbleweed"]) {
            Platform::Suse
        } else {
            Platform::Other
        }
    }

    pub fn install_command(self) -> &'static str {
        match self {
            Platform::Debian => {
                "sudo apt-get update && sudo apt-get install -y qemu-system-x86 ovmf"
            }
            Platform::Fedora => "sudo dnf install -y qemu-system-x86 edk2-ovmf",
            Platform::Arch => "sudo pacman -S --needed qemu-system-x86 edk2-ovmf",
            Platform::Suse => "sudo zypper install -y qemu-x86 qemu-ovmf-x86_64",
            Platform::MacOs => "brew install qemu   # OVMF: set PANDAGEN_OVMF to an OVMF.fd",
            Platform::Other => {
                "install qemu-system-x86_64 and OVMF with your package manager \
                 (Debian/Ubuntu: apt-get install qemu-system-x86 ovmf)"
            }
        }
    }
}

impl Platform {
    pub fn valgrind_install_command(self) -> &'static str {
        match self {
            Platform::Debian => "sudo apt-get update && sudo apt-get install -y valgrind",
            Platform::Fedora => "sudo dnf install -y valgrind",
            Platform::Arch => "sudo pacman -S --needed valgrind",
            Platform::Suse => "sudo zypper install -y valgrind",
            Platform::MacOs => {
                "valgrind does not run on current macOS; run `cargo xtask bench` on Linux"
            }
            Platform::Other => {
                "install valgrind with your package manager \
                 (Debian/Ubuntu: apt-get install valgrind)"
            }
        }
    }
}

fn read_os_release() -> String {
    std::fs::read_to_string(Path::new("/etc/os-release")).unwrap_or_default()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_debian_family() {
        assert_eq!(
            Platform::detect("ID=debian\nVERSION_ID=\"12\"\n"),
            Platform::Debian
        );
        assert_eq!(
            Platform::detect("ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n"),
            Platform::Debian
        );
        assert_eq!(Platform::detect("ID=\"fedora\"\n"), Platform::Fedora);
        assert_eq!(Platform::detect("ID=arch\n"), Platform::Arch);
        assert_eq!(Platform::detect("ID=gentoo\n"), Platform::Other);
    }

    #[test]
    fn every_platform_names_qemu() {
        for p in [
            Platform::Debian,
            Platform::Fedora,
            Platform::Arch,
            Platform::Suse,
            Platform::Other,
        ] {
            assert!(p.install_command().contains("qemu"), "{p:?}");
            assert!(p.valgrind_install_command().contains("valgrind"), "{p:?}");
        }
    }
}
