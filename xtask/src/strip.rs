//! Stripping debug info from the ELF files that go into disk images.
//!
//! The BIOS bootloader reads the kernel and ramdisk through real-mode disk
//! calls, which under TCG cost seconds per megabyte, and unoptimised builds
//! carry several megabytes of DWARF each. Images therefore get copies
//! without debug sections (`llvm-objcopy --strip-debug`, from the pinned
//! nightly's `llvm-tools`); the symbol table stays, and the unstripped ELF
//! under `target/` remains the one to give gdb or addr2line.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fail;
use crate::layout::{Layout, PINNED_NIGHTLY};
use crate::process::{probe, run_checked, TaskResult};

/// Finds `llvm-objcopy` in the pinned nightly's sysroot.
pub fn objcopy() -> TaskResult<PathBuf> {
    let sysroot =
        probe(Command::new("rustc").args([&format!("+{PINNED_NIGHTLY}"), "--print", "sysroot"]))
            .ok_or_else(|| fail!("cannot ask rustc +{PINNED_NIGHTLY} for its sysroot"))?;
    let rustlib = Path::new(sysroot.trim()).join("lib").join("rustlib");
    std::fs::read_dir(&rustlib)
        .map_err(|e| fail!("{}: {e}", rustlib.display()))?
        .flatten()
        .map(|entry| entry.path().join("bin").join("llvm-objcopy"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            fail!(
                "llvm-objcopy not found under {}; install it with \
                 `rustup component add llvm-tools --toolchain {PINNED_NIGHTLY}`",
                rustlib.display()
            )
        })
}

/// Writes a debug-stripped copy of `elf` to `target/stripped/<rel>` and
/// returns its path.
pub fn stripped(layout: &Layout, objcopy: &Path, elf: &Path, rel: &str) -> TaskResult<PathBuf> {
    let out = layout.target().join("stripped").join(rel);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    run_checked(
        Command::new(objcopy)
            .arg("--strip-debug")
            .arg(elf)
            .arg(&out),
    )?;
    Ok(out)
}
