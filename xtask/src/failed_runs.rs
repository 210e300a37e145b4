//! A failed QEMU suite's evidence, kept.
//!
//! Every run of a suite rewrites `target/qemu-logs/<suite>.log` (and a disk
//! suite re-creates its disk image), so a failure seen once and not
//! reproduced would leave nothing to read: `drivercrash-bios` failed that
//! way in session 11. A failed run's log and disk image are therefore
//! copied to `target/qemu-logs/failed/<suite>-<n>.log` and
//! `<suite>-<n>.disk.img`, `n` counting up per suite; only the newest
//! [`KEPT_PER_SUITE`] runs of a suite are kept, so that a suite failing in a
//! loop cannot fill the disk with 64 MiB images.

use std::path::{Path, PathBuf};

/// Failed runs kept per suite (the oldest beyond this are removed).
pub const KEPT_PER_SUITE: u32 = 3;

/// Copy a failed run's `log` (and `disk` image, if the suite has one) into
/// `dir`, numbered after the suite's newest kept run; returns the kept
/// log's path.
pub fn keep(dir: &Path, suite: &str, log: &Path, disk: Option<&Path>) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let kept = kept_numbers(dir, suite)?;
    let next = kept.last().map_or(1, |newest| newest + 1);
    let kept_log = dir.join(format!("{suite}-{next}.log"));
    std::fs::copy(log, &kept_log)?;
    if let Some(disk) = disk {
        std::fs::copy(disk, dir.join(format!("{suite}-{next}.disk.img")))?;
    }
    for old in kept.iter().filter(|n| **n + KEPT_PER_SUITE <= next) {
        for name in [
            format!("{suite}-{old}.log"),
            format!("{suite}-{old}.disk.img"),
        ] {
            match std::fs::remove_file(dir.join(name)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    Ok(kept_log)
}

/// The numbers of `suite`'s kept runs in `dir`, oldest first. Another
/// suite's name that starts with this one's (`storage` and `storage-disk`)
/// is not mistaken for it: the rest must be a number.
fn kept_numbers(dir: &Path, suite: &str) -> std::io::Result<Vec<u32>> {
    let prefix = format!("{suite}-");
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let number = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".log"))
            .and_then(|n| n.parse::<u32>().ok());
        numbers.extend(number);
    }
    numbers.sort_unstable();
    Ok(numbers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_failed_run_keeps_its_log_and_disk_under_the_next_number() {
        let scratch = tempfile::tempdir().unwrap();
        let (log, disk) = (scratch.path().join("s.log"), scratch.path().join("s.img"));
        let kept_dir = scratch.path().join("failed");
        std::fs::write(&log, "first run").unwrap();
        std::fs::write(&disk, "first disk").unwrap();
        let first = keep(&kept_dir, "drivercrash-bios", &log, Some(&disk)).unwrap();
        std::fs::write(&log, "second run").unwrap();
        let second = keep(&kept_dir, "drivercrash-bios", &log, None).unwrap();

        assert_eq!(std::fs::read_to_string(first).unwrap(), "first run");
        assert_eq!(std::fs::read_to_string(second).unwrap(), "second run");
        assert_eq!(
            std::fs::read_to_string(kept_dir.join("drivercrash-bios-1.disk.img")).unwrap(),
            "first disk"
        );
        assert_eq!(
            names(&kept_dir),
            [
                "drivercrash-bios-1.disk.img",
                "drivercrash-bios-1.log",
                "drivercrash-bios-2.log"
            ]
        );
    }

    #[test]
    fn only_the_newest_runs_of_a_suite_are_kept_and_other_suites_are_left_alone() {
        let scratch = tempfile::tempdir().unwrap();
        let (log, disk) = (scratch.path().join("s.log"), scratch.path().join("s.img"));
        let kept_dir = scratch.path().join("failed");
        std::fs::write(&log, "log").unwrap();
        std::fs::write(&disk, "disk").unwrap();
        keep(&kept_dir, "storage-disk-bios", &log, Some(&disk)).unwrap();
        for _ in 0..KEPT_PER_SUITE + 2 {
            keep(&kept_dir, "storage", &log, Some(&disk)).unwrap();
        }
        let oldest_kept = 3;
        let mut expected = vec![
            "storage-disk-bios-1.disk.img".to_string(),
            "storage-disk-bios-1.log".to_string(),
        ];
        for n in oldest_kept..oldest_kept + KEPT_PER_SUITE {
            expected.push(format!("storage-{n}.disk.img"));
            expected.push(format!("storage-{n}.log"));
        }
        expected.sort();
        assert_eq!(names(&kept_dir), expected);
    }
}
