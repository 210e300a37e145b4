//! `cargo xtask bench`: kernel benchmarks in QEMU (TCG with `-icount`, so
//! the guest TSC counts executed instructions) plus host benchmarks.
//!
//! Everything reports through `[BENCH] <name> <value> <unit>` lines, and
//! all results land in `target/bench/results.json`. One host figure is
//! counted rather than timed: the simulator's instructions per message,
//! under valgrind's callgrind (see [`SIM_MESSAGE_COST`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::bootcfg::BootConfig;
use crate::build::{self, ImageSpec};
use crate::fail;
use crate::layout::{KernelKind, Layout, Profile};
use crate::process::{cargo, display, TaskResult};
use crate::qemu::{self, Accel, Firmware, Machine, EXIT_PASS};
use crate::serial::{self, Bench};
use crate::setup::{self, Needs};
use pandagen_hal::boot_config::BootMode;

/// A host benchmark: `cargo bench -p <package> --bench <bench>`, whose
/// output must contain `[BENCH]` lines. Add host benchmarks here.
pub struct HostBench {
    pub package: &'static str,
    pub bench: &'static str,
}

pub const HOST_BENCHES: &[HostBench] = &[
    HostBench {
        package: "pandagen-core",
        bench: "core_bench",
    },
    HostBench {
        package: "pandagen-sim",
        bench: "sim_bench",
    },
    HostBench {
        package: "pandagen-storage",
        bench: "storage_bench",
    },
];

/// Ring-3 programs the kernel bench image carries (`bench` is the root
/// program; it measures IPC against `ipc_echo`, through the whole
/// `KernelApi` stack, and against `raw_echo`, through raw system calls).
const BENCH_PROGRAMS: &[&str] = &["bench", "ipc_echo", "raw_echo"];

const BENCH_TIMEOUT: Duration = Duration::from_secs(300);

/// The simulator's instruction count per message: the `sim_message_cost`
/// example of `pandagen-sim`, run under callgrind counting only its
/// `send_and_receive` (one send and one receive of a 64-byte envelope,
/// trace on), once with `MESSAGES.0` and once with `MESSAGES.1` messages.
/// The difference of the two counts over the difference of the message
/// counts is the steady-state cost of one message: warm-up and one-time
/// costs cancel out.
pub struct CallgrindBench {
    pub name: &'static str,
    pub package: &'static str,
    pub example: &'static str,
    pub function: &'static str,
    pub messages: (u64, u64),
}

pub const SIM_MESSAGE_COST: CallgrindBench = CallgrindBench {
    name: "sim_send_receive_64b_instructions",
    package: "pandagen-sim",
    example: "sim_message_cost",
    function: "send_and_receive",
    messages: (10_000, 30_000),
};

/// One QEMU benchmark run: a bench-mode image whose root program prints
/// `[BENCH]` lines.
pub struct QemuBench {
    /// Names the image and the log (`target/qemu-logs/<name>.log`).
    pub name: &'static str,
    boot_cfg: BootConfig,
    pub programs: &'static [&'static str],
    /// A service manifest (repository-relative) for a system-mode run.
    manifest: Option<&'static str>,
    /// For a run on a fresh virtio-blk disk, whose root (the process
    /// manager) never ends it: the task whose `[BENCH]` lines count. The
    /// run ends when that task prints `[SUITE] DONE`. Such a run uses
    /// `qemu/bench-io.args`: idle time counts host nanoseconds.
    pub disk_task: Option<&'static str>,
}

/// The disk of a benchmark run, in MiB.
const BENCH_DISK_MIB: u64 = 32;

const QEMU_BENCHES: &[QemuBench] = &[
    QemuBench {
        name: "bench",
        boot_cfg: BootConfig::mode(BootMode::Bench),
        programs: BENCH_PROGRAMS,
        manifest: None,
        disk_task: None,
    },
    // Storage Map put/get through ring-3 IPC: root `bench_storage`.
    QemuBench {
        name: "bench-storage",
        boot_cfg: BootConfig::bench("storage"),
        programs: &["bench_storage", "storage"],
        manifest: None,
        disk_task: None,
    },
    // The same with storage's journal on the virtio-blk disk, through the
    // ring-3 driver (puts wait for the driver's flush).
    QemuBench {
        name: "bench-storage-disk",
        boot_cfg: BootConfig::mode(BootMode::System),
        programs: &[
            "process_manager",
            "pci",
            "virtio_blk",
            "storage",
            "bench_storage_disk",
        ],
        manifest: Some("userspace/process_manager/manifests/bench-storage-disk.manifest"),
        disk_task: Some("bench-storage-disk"),
    },
];

/// The QEMU benchmark named `name`.
pub fn qemu_bench(name: &str) -> TaskResult<&'static QemuBench> {
    QEMU_BENCHES
        .iter()
        .find(|qb| qb.name == name)
        .ok_or_else(|| crate::fail!("no QEMU benchmark is named `{name}`"))
}

/// Builds `qb`'s disk image (BIOS) around `kernel` and returns its path.
pub fn build_image(
    layout: &Layout,
    profile: Profile,
    kernel: &Path,
    qb: &QemuBench,
) -> TaskResult<PathBuf> {
    let manifest = qb.manifest.map(|m| layout.root.join(m));
    let spec = ImageSpec {
        boot_cfg: qb.boot_cfg,
        programs: qb.programs,
        manifest: manifest.as_deref(),
    };
    let image = layout.bench_dir().join(format!("{}.img", qb.name));
    build::images(
        layout,
        profile,
        kernel,
        &spec,
        &layout.bench_dir().join(format!("{}.ramdisk.tar", qb.name)),
        &[(Firmware::Bios, image.clone())],
    )?;
    Ok(image)
}

/// The machine `qb` runs on: TCG with instruction counting.
pub fn machine<'a>(qb: &QemuBench, image: &'a Path, ovmf: Option<&'a Path>) -> Machine<'a> {
    Machine {
        firmware: Firmware::Bios,
        accel: Accel::Tcg,
        image,
        ovmf,
        // A disk run waits for the device's interrupts: its idle
        // guest clock must keep the host's pace (see bench-io.args).
        extra_profiles: if qb.disk_task.is_some() {
            &["bench-io"]
        } else {
            &["bench"]
        },
    }
}

/// One row of `results.json`.
struct Row {
    source: &'static str,
    bench: Bench,
}

/// Benchmarks always use the release kernel: debug-build instruction
/// counts measure the compiler's unoptimised output, not the kernel.
/// `qemu_only` skips the host benchmarks (for iterating on the kernel);
/// a non-empty `only` runs just the QEMU benchmarks of those names.
pub fn run(layout: &Layout, qemu_only: bool, only: &[String]) -> TaskResult<bool> {
    for name in only {
        qemu_bench(name)?;
    }
    let profile = Profile::Release;
    let host = setup::ensure(Needs {
        nightly: true,
        qemu: true,
    })?;
    setup::ensure_valgrind()?;
    let _lock = crate::lock::acquire(layout)?;
    let mut rows = Vec::new();
    let mut ok = true;

    let kernel = build::kernel(layout, profile, KernelKind::Test)?;
    println!("== kernel benchmarks (QEMU TCG, -icount shift=0: 1 TSC tick = 1 instruction) ==");
    for qb in QEMU_BENCHES
        .iter()
        .filter(|qb| only.is_empty() || only.iter().any(|name| name == qb.name))
    {
        let image = build_image(layout, profile, &kernel, qb)?;
        let machine = machine(qb, &image, host.ovmf.as_deref());
        let log = qemu::log_path(layout, qb.name);
        let report = if let Some(task) = qb.disk_task {
            let disk_image = layout.bench_dir().join(format!("{}.disk.img", qb.name));
            crate::disk::prepare(&disk_image, BENCH_DISK_MIB, true)?;
            let (text, finished) = crate::disk_suites::run_until_done(
                qemu::command(layout, &machine)?,
                &disk_image,
                BENCH_TIMEOUT,
            )?;
            std::fs::write(&log, &text)?;
            let report = serial::parse_trusting(&text, Some(task));
            if finished.is_none() || report.done != Some((1, 0)) {
                ok = false;
                println!(
                    "{} run: {task} did not finish cleanly (log: {})",
                    qb.name,
                    log.display()
                );
            }
            report
        } else {
            let captured =
                qemu::run_captured(qemu::command(layout, &machine)?, BENCH_TIMEOUT, &log, &[])?;
            if captured.exit != qemu::Exit::Code(EXIT_PASS) {
                ok = false;
                println!(
                    "{} run: {} (log: {})",
                    qb.name,
                    captured.exit.describe(),
                    log.display()
                );
            }
            serial::parse(&captured.serial)
        };
        if report.benches.is_empty() {
            ok = false;
            println!(
                "{} printed no [BENCH] lines, so it has no numbers (log: {}).",
                qb.name,
                log.display()
            );
        }
        rows.extend(report.benches.into_iter().map(|bench| Row {
            source: "kernel",
            bench,
        }));
    }

    let host_benches = if qemu_only { &[][..] } else { HOST_BENCHES };
    for hb in host_benches {
        let mut cmd = cargo();
        cmd.current_dir(&layout.root)
            .args(["bench", "-p", hb.package, "--bench", hb.bench])
            .stderr(Stdio::inherit());
        println!("== host benchmark: {} ==", display(&cmd));
        let out = cmd
            .output()
            .map_err(|e| fail!("cannot run {}: {e}", display(&cmd)))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let found = serial::parse(&text).benches;
        if !out.status.success() || found.is_empty() {
            ok = false;
            println!("  {}: failed or printed no [BENCH] lines", hb.bench);
        }
        rows.extend(found.into_iter().map(|bench| Row {
            source: "host",
            bench,
        }));
    }

    if !qemu_only {
        println!(
            "== host benchmark: {} under callgrind ==",
            SIM_MESSAGE_COST.example
        );
        match callgrind(layout, &SIM_MESSAGE_COST) {
            Ok(bench) => rows.push(Row {
                source: "host",
                bench,
            }),
            Err(e) => {
                ok = false;
                println!("  {}: {e}", SIM_MESSAGE_COST.name);
            }
        }
    }

    let json_path = layout.bench_dir().join("results.json");
    std::fs::create_dir_all(layout.bench_dir())?;
    std::fs::write(&json_path, to_json(&rows))?;
    print_table(&rows);
    println!("results: {}", json_path.display());
    Ok(ok)
}

/// Build `cb`'s example in release and count its instructions per message
/// (see [`CallgrindBench`]).
fn callgrind(layout: &Layout, cb: &CallgrindBench) -> TaskResult<Bench> {
    let mut build = cargo();
    build.current_dir(&layout.root).args([
        "build",
        "--release",
        "-p",
        cb.package,
        "--example",
        cb.example,
    ]);
    crate::process::run_checked(&mut build)?;
    let exe = layout.target().join("release/examples").join(cb.example);
    let out_dir = layout.bench_dir();
    std::fs::create_dir_all(&out_dir)?;
    let (few, many) = cb.messages;
    let low = collected(&exe, cb, few, &out_dir)?;
    let high = collected(&exe, cb, many, &out_dir)?;
    let value = per_message(low, high, cb.messages)
        .ok_or_else(|| crate::fail!("callgrind counted {low} then {high} instructions"))?;
    Ok(Bench {
        name: cb.name.into(),
        value,
        unit: "instructions".into(),
    })
}

/// The instructions callgrind counted in `cb.function` over a run of
/// `messages` messages.
fn collected(exe: &Path, cb: &CallgrindBench, messages: u64, out_dir: &Path) -> TaskResult<u64> {
    let out_file = out_dir.join(format!("callgrind.{}.{messages}.out", cb.example));
    let mut cmd = Command::new(setup::VALGRIND_BINARY);
    cmd.arg("--tool=callgrind")
        .arg(format!("--toggle-collect=*{}*", cb.function))
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg(exe)
        .arg(messages.to_string())
        .stdout(Stdio::null());
    let out = cmd
        .output()
        .map_err(|e| crate::fail!("cannot run {}: {e}", display(&cmd)))?;
    let log = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(crate::fail!("{} failed:\n{log}", display(&cmd)));
    }
    parse_collected(&log)
        .ok_or_else(|| crate::fail!("no `Collected :` line from callgrind:\n{log}"))
}

/// The count in callgrind's `==pid== Collected : N` line.
fn parse_collected(log: &str) -> Option<u64> {
    log.lines().find_map(|line| {
        let (_, count) = line.split_once("Collected :")?;
        count.trim().replace(',', "").parse().ok()
    })
}

/// Instructions per message from the counts of two runs.
fn per_message(low: u64, high: u64, (few, many): (u64, u64)) -> Option<f64> {
    let extra = high.checked_sub(low)?;
    let messages = many.checked_sub(few).filter(|&m| m > 0)?;
    Some((extra as f64 / messages as f64).round())
}

fn to_json(rows: &[Row]) -> String {
    let results: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.bench.name,
                "value": number(r.bench.value),
                "unit": r.bench.unit,
                "source": r.source,
            })
        })
        .collect();
    let doc = serde_json::json!({
        "machine": "qemu-system-x86_64 -accel tcg -cpu max -icount shift=0,align=off,sleep=off",
        "results": results,
    });
    serde_json::to_string_pretty(&doc).expect("JSON values serialize") + "\n"
}

/// Integers stay integers in the JSON (instruction counts), others stay floats.
fn number(v: f64) -> serde_json::Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        serde_json::Value::from(v as i64)
    } else {
        serde_json::Value::from(v)
    }
}

fn print_table(rows: &[Row]) {
    if rows.is_empty() {
        return;
    }
    let w = rows
        .iter()
        .map(|r| r.bench.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!("{:<6}  {:<w$}  {:>14}  unit", "source", "name", "value");
    for r in rows {
        println!(
            "{:<6}  {:<w$}  {:>14}  {}",
            r.source,
            r.bench.name,
            number(r.bench.value).to_string(),
            r.bench.unit
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_name_value_unit() {
        let rows = [Row {
            source: "kernel",
            bench: Bench {
                name: "ipc_call".into(),
                value: 189.0,
                unit: "instructions".into(),
            },
        }];
        let v: serde_json::Value = serde_json::from_str(&to_json(&rows)).unwrap();
        let r = &v["results"][0];
        assert_eq!(r["name"], "ipc_call");
        assert_eq!(r["value"], 189);
        assert_eq!(r["unit"], "instructions");
    }

    #[test]
    fn qemu_benches_carry_their_root_program() {
        let all = crate::programs::discover(&Layout::from_xtask_manifest()).unwrap();
        for qb in QEMU_BENCHES {
            qb.boot_cfg.validate().unwrap();
            let root = if qb.disk_task.is_some() {
                // A system run: the process manager starts the manifest's
                // services, the bench program among them.
                assert_eq!(qb.boot_cfg.mode, BootMode::System, "{}", qb.name);
                let manifest = qb.manifest.expect("a system run has a manifest");
                let text =
                    std::fs::read_to_string(Layout::from_xtask_manifest().root.join(manifest))
                        .unwrap();
                for image in crate::programs::manifest_images(&text) {
                    assert!(
                        qb.programs.contains(&image.as_str()),
                        "{}: no {image}",
                        qb.name
                    );
                }
                crate::programs::SYSTEM_ROOT.to_string()
            } else {
                assert_eq!(qb.boot_cfg.mode, BootMode::Bench, "{}", qb.name);
                qb.boot_cfg
                    .suite
                    .map_or_else(|| "bench".to_string(), |s| format!("bench_{s}"))
            };
            assert!(
                qb.programs.contains(&root.as_str()),
                "{}: no {root}",
                qb.name
            );
            crate::programs::resolve(&all, qb.programs).unwrap();
        }
    }

    #[test]
    fn callgrind_counts_become_instructions_per_message() {
        let log = "==123== Events    : Ir\n==123== Collected : 46147427\n==123==\n";
        assert_eq!(parse_collected(log), Some(46_147_427));
        assert_eq!(parse_collected("==1== I   refs: 5\n"), None);
        assert_eq!(
            per_message(46_147_427, 87_102_243, (10_000, 20_000)),
            Some(4_095.0)
        );
        assert_eq!(per_message(10, 5, (1, 2)), None);
        assert_eq!(per_message(5, 10, (2, 2)), None);
    }

    #[test]
    fn fractional_values_stay_fractional() {
        assert_eq!(number(1.5), serde_json::json!(1.5));
        assert_eq!(number(42.0), serde_json::json!(42));
    }
}
