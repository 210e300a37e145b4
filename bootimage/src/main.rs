//! `pandagen-bootimage`: turns a kernel ELF and a ramdisk into bootable
//! BIOS (MBR) and UEFI (GPT) raw disk images.
//!
//! Usage:
//! `pandagen-bootimage --kernel K --ramdisk R --bios OUT_BIOS --uefi OUT_UEFI`
//!
//! Either output may be omitted, but at least one is required. The tool is
//! deliberately tiny: all policy (which kernel, which ramdisk) lives in
//! xtask; this binary only exists because the `bootloader` crate must be
//! built with a pinned nightly toolchain.

use std::path::PathBuf;
use std::process::ExitCode;

use bootloader::{BootConfig, DiskImageBuilder};
use bootloader_boot_config::LevelFilter;

/// Parsed command line.
#[derive(Debug, Default)]
struct Args {
    kernel: Option<PathBuf>,
    ramdisk: Option<PathBuf>,
    bios: Option<PathBuf>,
    uefi: Option<PathBuf>,
}

const USAGE: &str =
    "usage: pandagen-bootimage --kernel K [--ramdisk R] [--bios OUT_BIOS] [--uefi OUT_UEFI]";

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args::default();
    while let Some(flag) = it.next() {
        let slot = match flag.as_str() {
            "--kernel" => &mut args.kernel,
            "--ramdisk" => &mut args.ramdisk,
            "--bios" => &mut args.bios,
            "--uefi" => &mut args.uefi,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        };
        let value = it
            .next()
            .ok_or_else(|| format!("`{flag}` needs a path\n{USAGE}"))?;
        *slot = Some(PathBuf::from(value));
    }
    if args.kernel.is_none() {
        return Err(format!("--kernel is required\n{USAGE}"));
    }
    if args.bios.is_none() && args.uefi.is_none() {
        return Err(format!("give at least one of --bios, --uefi\n{USAGE}"));
    }
    Ok(args)
}

fn run(args: Args) -> Result<(), String> {
    let kernel = args.kernel.expect("checked by parse_args");
    if !kernel.is_file() {
        return Err(format!("kernel `{}` is not a file", kernel.display()));
    }
    let mut builder = DiskImageBuilder::new(kernel);
    builder.set_boot_config(&quiet_boot());
    if let Some(ramdisk) = args.ramdisk {
        if !ramdisk.is_file() {
            return Err(format!("ramdisk `{}` is not a file", ramdisk.display()));
        }
        builder.set_ramdisk(ramdisk);
    }
    if let Some(out) = args.bios {
        builder
            .create_bios_image(&out)
            .map_err(|e| format!("creating BIOS image `{}`: {e:#}", out.display()))?;
    }
    if let Some(out) = args.uefi {
        builder
            .create_uefi_image(&out)
            .map_err(|e| format!("creating UEFI image `{}`: {e:#}", out.display()))?;
    }
    Ok(())
}

/// The bootloader prints only warnings and errors: its step-by-step log
/// would otherwise fill the screen (slowly, under emulation) until the
/// kernel's own console takes it over, and on a PC its last line
/// ("Jumping to kernel entry point") reads like a hang.
fn quiet_boot() -> BootConfig {
    let mut config = BootConfig::default();
    config.log_level = LevelFilter::Warn;
    config
}

fn main() -> ExitCode {
    match parse_args(std::env::args().skip(1)).and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("pandagen-bootimage: {msg}");
            ExitCode::FAILURE
        }
    }
}
