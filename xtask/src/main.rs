//! PandaGen developer tasks. Run `cargo xtask help`.

mod bench;
mod bootcfg;
mod build;
mod cargo_test;
mod disk;
mod disk_suites;
mod failed_runs;
mod flash;
mod fuzz;
mod gdb;
mod keyboard;
mod layout;
mod lock;
mod mutants;
mod process;
mod profile;
mod programs;
mod qemu;
mod qmp;
mod ramdisk;
mod screen;
mod serial;
mod setup;
mod strip;
mod suites;
mod testing;

use std::path::PathBuf;
use std::process::ExitCode;

use crate::bootcfg::BootConfig;
use crate::build::ImageSpec;
use crate::layout::{KernelKind, Layout, Profile};
use crate::process::TaskResult;
use crate::qemu::{Accel, Firmware, Machine};
use crate::setup::Needs;
use pandagen_hal::boot_config::BootMode;
use pandagen_ps2_keyboard::keymap::Layout as KeyboardLayout;

const HELP: &str = "\
usage: cargo xtask <command> [options]

commands:
  setup                       install the Rust target, pinned nightly, QEMU and OVMF if missing
  image [--release] [--keyboard us|uk|de]
                              build target/pandagen-bios.img and target/pandagen-uefi.img
  run [--uefi] [--display] [--kvm] [--gdb] [--release] [--keyboard us|uk|de]
      [--fresh-disk] [--disk-size MIB] [--no-disk]
                              boot the system image in QEMU as a PC (reboot reboots, shutdown
                              powers off), serial console on this terminal; --display also
                              shows the screen in a window, whose keyboard the console reads;
                              storage keeps its journal on the virtio-blk disk
                              target/pandagen-disk.img (created on first run, 64 MiB unless
                              --disk-size says; --fresh-disk empties it)
  test [--release] [--host-only | --qemu-only] [--suite NAME]... [--cuts N] [--seed S]
                              host tests, then the QEMU suites; ends with `N passed, M failed`;
                              --cuts sets the power-cut suite's cuts (25), --seed repeats a run
  flash --device PATH [--bios | --uefi] [--yes] [--allow-file] [--release] [--keyboard L]
                              write the image (UEFI by default) to a USB stick and verify it
  fuzz [--time SECONDS] [--target NAME]
                              coverage-guided fuzzing (libFuzzer) of the core and of every
                              decoder of ring-3 or disk bytes; 60 s per target by default
  bench                       kernel benchmarks (release build) under QEMU TCG -icount;
                              results in target/bench/results.json
    --qemu-only               only the QEMU benchmarks (no host benchmarks)
    --suite NAME              only this QEMU benchmark (repeatable; e.g. bench-storage-disk)
  profile --suite NAME [--per N] [--top N] [--until FIGURE] [--inlined]
                              where a QEMU benchmark's instructions go, per function of the
                              kernel and of each ring-3 program, per measured loop (loops are
                              cut at the benchmark's rdtsc); --per N: the loop's iterations
                              per window (200 for `bench`, 100 for `bench-storage`), to get
                              figures per iteration; --until stops after that [BENCH] figure;
                              --inlined gives each instruction to the innermost function
                              inlined there (debug info, addr2line) instead of its symbol
  clippy                      clippy on the host crates and on the kernel for x86_64-unknown-none
  mutants [--crate NAME]... [--file GLOB]... [--re REGEX]...
                              mutation testing (cargo-mutants) of pandagen-core, the storage
                              journal, pandagen-pci, pandagen-virtio-blk and pandagen-ps2-keyboard;
                              prints each score and the surviving mutants, fails below 95%;
                              results in target/mutants/ (1-2.5 hours for the core or the
                              journal on 2 cores, minutes for a driver)
  help                        this text
";

/// Command-line flags, parsed by hand to keep xtask quick to build.
#[derive(Debug, Default)]
struct Flags {
    release: bool,
    uefi: bool,
    bios: bool,
    kvm: bool,
    gdb: bool,
    display: bool,
    yes: bool,
    allow_file: bool,
    host_only: bool,
    qemu_only: bool,
    device: Option<PathBuf>,
    suites: Vec<String>,
    crates: Vec<String>,
    files: Vec<String>,
    regexes: Vec<String>,
    time: Option<u64>,
    target: Option<String>,
    fresh_disk: bool,
    no_disk: bool,
    disk_size: Option<String>,
    cuts: Option<u64>,
    seed: Option<u64>,
    keyboard: Option<KeyboardLayout>,
    per: Option<u64>,
    top: Option<usize>,
    until: Option<String>,
    inlined: bool,
}

fn parse_flags(args: &[String], allowed: &[&str]) -> TaskResult<Flags> {
    let mut flags = Flags::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if !allowed.contains(&arg.as_str()) {
            return Err(fail!("unexpected argument `{arg}`\n\n{HELP}"));
        }
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| fail!("`{arg}` needs a value"))
        };
        match arg.as_str() {
            "--release" => flags.release = true,
            "--uefi" => flags.uefi = true,
            "--bios" => flags.bios = true,
            "--kvm" => flags.kvm = true,
            "--gdb" => flags.gdb = true,
            "--display" => flags.display = true,
            "--yes" => flags.yes = true,
            "--allow-file" => flags.allow_file = true,
            "--host-only" => flags.host_only = true,
            "--qemu-only" => flags.qemu_only = true,
            "--device" => flags.device = Some(PathBuf::from(value()?)),
            "--suite" => flags.suites.push(value()?),
            "--crate" => flags.crates.push(value()?),
            "--file" => flags.files.push(value()?),
            "--re" => flags.regexes.push(value()?),
            "--time" => {
                let v = value()?;
                let secs = v
                    .parse()
                    .map_err(|_| fail!("`--time` needs a number of seconds, not `{v}`"))?;
                flags.time = Some(secs);
            }
            "--target" => flags.target = Some(value()?),
            "--fresh-disk" => flags.fresh_disk = true,
            "--no-disk" => flags.no_disk = true,
            "--disk-size" => flags.disk_size = Some(value()?),
            "--cuts" => flags.cuts = Some(number(arg, &value()?)?),
            "--seed" => flags.seed = Some(number(arg, &value()?)?),
            "--per" => flags.per = Some(number(arg, &value()?)?),
            "--top" => flags.top = Some(number(arg, &value()?)?),
            "--until" => flags.until = Some(value()?),
            "--inlined" => flags.inlined = true,
            "--keyboard" => {
                let v = value()?;
                flags.keyboard = Some(KeyboardLayout::from_name(&v).ok_or_else(|| {
                    let names: Vec<&str> = KeyboardLayout::ALL.iter().map(|l| l.name()).collect();
                    fail!("`--keyboard` takes one of {}, not `{v}`", names.join(", "))
                })?);
            }
            _ => unreachable!("checked against `allowed`"),
        }
    }
    Ok(flags)
}

fn number<T: std::str::FromStr>(flag: &str, text: &str) -> TaskResult<T> {
    text.parse()
        .map_err(|_| fail!("`{flag}` needs a number, not `{text}`"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let layout = Layout::from_xtask_manifest();
    let (cmd, rest) = match args.split_first() {
        Some((c, r)) => (c.as_str(), r),
        None => ("help", &[][..]),
    };
    let result = match cmd {
        "setup" => parse_flags(rest, &[]).and_then(|_| {
            setup::ensure(Needs {
                nightly: true,
                qemu: true,
            })
            .map(|_| {
                println!("xtask: everything PandaGen needs is installed");
                true
            })
        }),
        "image" => parse_flags(rest, &["--release", "--keyboard"])
            .and_then(|f| image(&layout, &f).map(|_| true)),
        "run" => parse_flags(
            rest,
            &[
                "--release",
                "--uefi",
                "--kvm",
                "--gdb",
                "--display",
                "--fresh-disk",
                "--disk-size",
                "--no-disk",
                "--keyboard",
            ],
        )
        .and_then(|f| run(&layout, &f)),
        "test" => parse_flags(
            rest,
            &[
                "--release",
                "--host-only",
                "--qemu-only",
                "--suite",
                "--cuts",
                "--seed",
            ],
        )
        .and_then(|f| test(&layout, &f)),
        "flash" => parse_flags(
            rest,
            &[
                "--release",
                "--device",
                "--bios",
                "--uefi",
                "--yes",
                "--allow-file",
                "--keyboard",
            ],
        )
        .and_then(|f| flash(&layout, &f)),
        "bench" => parse_flags(rest, &["--qemu-only", "--suite"])
            .and_then(|f| bench::run(&layout, f.qemu_only, &f.suites)),
        "profile" => parse_flags(rest, &["--suite", "--per", "--top", "--until", "--inlined"])
            .and_then(|f| {
                let [name] = f.suites.as_slice() else {
                    return Err(fail!("`profile` takes one `--suite NAME`\n\n{HELP}"));
                };
                profile::run(
                    &layout,
                    &profile::Options {
                        name: name.clone(),
                        per: f.per,
                        top: f.top.unwrap_or(25),
                        until: f.until,
                        inlined: f.inlined,
                    },
                )
            }),
        "clippy" => parse_flags(rest, &[]).and_then(|_| clippy(&layout)),
        "mutants" => parse_flags(rest, &["--crate", "--file", "--re"]).and_then(|f| {
            mutants::run(
                &layout,
                &mutants::Options {
                    only: f.crates,
                    files: f.files,
                    only_matching: f.regexes,
                },
            )
        }),
        "fuzz" => parse_flags(rest, &["--time", "--target"])
            .and_then(|f| fuzz::run(&layout, f.time, f.target.as_deref())),
        "help" | "-h" | "--help" => {
            print!("{HELP}");
            Ok(true)
        }
        other => Err(fail!("unknown command `{other}`\n\n{HELP}")),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The system's disk images (BIOS, UEFI) and the ring-3 programs in them.
struct SystemImages {
    images: Vec<PathBuf>,
    programs: Vec<String>,
}

fn build_system_images(
    layout: &Layout,
    profile: Profile,
    keyboard: Option<KeyboardLayout>,
) -> TaskResult<SystemImages> {
    let kernel = build::kernel(layout, profile, KernelKind::System)?;
    let manifest = layout.root.join(programs::SYSTEM_MANIFEST);
    let manifest_text = std::fs::read_to_string(&manifest)
        .map_err(|e| fail!("reading {}: {e}", manifest.display()))?;
    let all = programs::discover(layout)?;
    let (names, missing) = programs::system_programs(&all, &manifest_text);
    if !missing.is_empty() {
        println!(
            "xtask: no ring-3 program provides {} (named in the manifest); \
             the system image leaves it out",
            missing.join(", ")
        );
    }
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let spec = ImageSpec {
        boot_cfg: match keyboard {
            Some(layout) => BootConfig::mode(BootMode::System).with_keyboard(layout),
            None => BootConfig::mode(BootMode::System),
        },
        programs: &name_refs,
        manifest: Some(&manifest),
    };
    let images = vec![
        layout.system_image(Firmware::Bios),
        layout.system_image(Firmware::Uefi),
    ];
    build::images(
        layout,
        profile,
        &kernel,
        &spec,
        &layout.target().join("pandagen.ramdisk.tar"),
        &[
            (Firmware::Bios, images[0].clone()),
            (Firmware::Uefi, images[1].clone()),
        ],
    )?;
    Ok(SystemImages {
        images,
        programs: names,
    })
}

fn image(layout: &Layout, f: &Flags) -> TaskResult<()> {
    setup::ensure(Needs {
        nightly: true,
        qemu: false,
    })?;
    let _lock = lock::acquire(layout)?;
    let images =
        build_system_images(layout, Profile::from_release_flag(f.release), f.keyboard)?.images;
    println!("BIOS image: {}", images[0].display());
    println!("UEFI image: {}", images[1].display());
    Ok(())
}

fn run(layout: &Layout, f: &Flags) -> TaskResult<bool> {
    let host = setup::ensure(Needs {
        nightly: true,
        qemu: true,
    })?;
    let profile = Profile::from_release_flag(f.release);
    // Locked while building only: a long interactive session must not
    // block `cargo xtask test` in another terminal (tests use other images).
    let SystemImages { images, programs } = {
        let _lock = lock::acquire(layout)?;
        build_system_images(layout, profile, f.keyboard)?
    };
    let firmware = if f.uefi {
        Firmware::Uefi
    } else {
        Firmware::Bios
    };
    let image = if f.uefi { &images[1] } else { &images[0] };
    let mut extra: Vec<&str> = Vec::new();
    if f.gdb {
        extra.push("gdb");
    }
    if f.display {
        extra.push("display");
    }
    let machine = Machine {
        firmware,
        accel: if f.kvm { Accel::Kvm } else { Accel::Tcg },
        image,
        ovmf: host.ovmf.as_deref(),
        extra_profiles: &extra,
    };
    // As a PC: `reboot` reboots, `shutdown` powers off through ACPI (QEMU
    // then exits 0); no exit device.
    let mut cmd = std::process::Command::new(setup::QEMU_BINARY);
    cmd.args(qemu::as_a_pc(qemu::args(layout, &machine)?));
    if !f.no_disk {
        let disk = disk::run_disk_path(layout);
        let size = match &f.disk_size {
            Some(text) => disk::parse_size_mib(text)?,
            None => disk::DEFAULT_DISK_MIB,
        };
        if disk::prepare(&disk, size, f.fresh_disk)? {
            println!("disk: created {} ({size} MiB, empty)", disk.display());
        } else {
            println!(
                "disk: {} (kept from earlier runs; --fresh-disk starts empty)",
                disk.display()
            );
        }
        cmd.args(disk::qemu_args(&disk));
    }
    println!(
        "booting {} ({}); stop with Ctrl-C",
        image.display(),
        firmware.name()
    );
    if f.gdb {
        let script = gdb::write_script(layout, profile, &programs)?;
        println!("{}", gdb::instructions(layout, profile, &script, &programs));
    }
    // Ctrl-C reaches QEMU (same process group) and stops it; xtask outlives
    // it to report how it ended. A handler, unlike SIG_IGN, is reset to the
    // default in the child at exec.
    extern "C" fn ignore(_: libc::c_int) {}
    // SAFETY: installs an async-signal-safe handler that does nothing.
    unsafe {
        libc::signal(libc::SIGINT, ignore as *const () as libc::sighandler_t);
    }
    let status = cmd
        .status()
        .map_err(|e| fail!("cannot start {}: {e}", setup::QEMU_BINARY))?;
    match status.code() {
        Some(qemu::EXIT_PASS) | Some(0) => Ok(true),
        Some(qemu::EXIT_FAIL) => {
            eprintln!(
                "xtask: the kernel reported failure (QEMU exit {})",
                qemu::EXIT_FAIL
            );
            Ok(false)
        }
        _ => {
            eprintln!("xtask: QEMU ended with {status}");
            Ok(false)
        }
    }
}

fn test(layout: &Layout, f: &Flags) -> TaskResult<bool> {
    if f.host_only && f.qemu_only {
        return Err(fail!("--host-only and --qemu-only exclude each other"));
    }
    let opts = testing::Options {
        profile: Profile::from_release_flag(f.release),
        host: !f.qemu_only,
        qemu: !f.host_only,
        only: f.suites.clone(),
        cuts: disk_suites::CutOptions {
            cuts: f.cuts,
            seed: f.seed,
        },
    };
    testing::run(layout, &opts)
}

fn flash(layout: &Layout, f: &Flags) -> TaskResult<bool> {
    let device = f
        .device
        .as_ref()
        .ok_or_else(|| fail!("flash needs --device PATH (for example /dev/sdX)"))?;
    if f.bios && f.uefi {
        return Err(fail!("choose one of --bios, --uefi"));
    }
    // Refuse an obviously wrong target before spending time on a build.
    // A regular file gets the real check after the build, once the image
    // size is known.
    if let Err(refusal) = flash::validate(device, f.allow_file, &layout.target(), 0) {
        return Err(fail!("refusing to flash: {refusal}"));
    }
    setup::ensure(Needs {
        nightly: true,
        qemu: false,
    })?;
    let _lock = lock::acquire(layout)?;
    let images =
        build_system_images(layout, Profile::from_release_flag(f.release), f.keyboard)?.images;
    let image = if f.bios { &images[0] } else { &images[1] };
    let len = std::fs::metadata(image)?.len();
    let target = flash::validate(device, f.allow_file, image, len)
        .map_err(|r| fail!("refusing to flash: {r}"))?;
    if !f.yes && !flash::confirm(&target, image, &mut std::io::stdin().lock())? {
        println!("not confirmed; nothing written");
        return Ok(false);
    }
    let verified = flash::write_and_verify(image, &target, true)?;
    println!(
        "wrote {} to {}; synced; read back {verified} bytes: identical",
        image.display(),
        target.path().display()
    );
    Ok(true)
}

/// Lints everything: the host crates (default members, all targets) and
/// the kernel, which only builds for the bare-metal target.
fn clippy(layout: &Layout) -> TaskResult<bool> {
    setup::ensure(Needs::default())?;
    setup::ensure_clippy()?;
    let host = process::cargo()
        .current_dir(&layout.root)
        .args(["clippy", "--all-targets", "--", "-D", "warnings"])
        .status()?;
    // Both kernels: the system one, and the one with the test harness.
    let mut kernels_ok = true;
    for features in [&[][..], &["--features", layout::TEST_HARNESS_FEATURE][..]] {
        let kernel = process::cargo()
            .current_dir(&layout.root)
            .args(["clippy", "-p", layout::KERNEL_PACKAGE])
            .args(["--target", layout::BARE_METAL_TARGET])
            .args(features)
            .args(["--", "-D", "warnings"])
            .status()?;
        kernels_ok &= kernel.success();
    }
    Ok(host.success() && kernels_ok)
}
