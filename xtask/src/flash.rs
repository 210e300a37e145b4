//! `cargo xtask flash`: writes a disk image to a USB stick, then reads it
//! back to verify.
//!
//! Safety rules, checked before anything is written:
//! - the target must be a whole, removable block device
//!   (`/sys/block/<dev>/removable` is 1), not a partition;
//! - neither it nor any of its partitions may be mounted, used as swap, or
//!   held by another device (device-mapper, RAID);
//! - a regular file (or a path that does not exist yet) is accepted only
//!   with `--allow-file`, which exists for testing;
//! - the user confirms unless `--yes` is given.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use crate::fail;
use crate::process::TaskResult;

const CHUNK: usize = 1 << 20;

/// A validated place to write the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A regular file (existing or not), permitted by `--allow-file`.
    File(PathBuf),
    /// A whole removable disk.
    Disk {
        path: PathBuf,
        name: String,
        size_bytes: u64,
        model: String,
    },
}

impl Target {
    pub fn path(&self) -> &Path {
        match self {
            Target::File(p) => p,
            Target::Disk { path, .. } => path,
        }
    }
}

/// Why a target was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    Missing(PathBuf),
    RegularFileNeedsAllowFile(PathBuf),
    NotBlockDevice(PathBuf),
    Partition { part: String, disk: String },
    NotRemovable(String),
    Mounted { dev: String, mountpoint: String },
    Swap(String),
    Held { dev: String, holder: String },
    TooSmall { dev: String, size: u64, needed: u64 },
    IsTheImage(PathBuf),
    Sysfs(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Missing(p) if p.starts_with("/dev") => write!(
                f,
                "{} does not exist; list the disks with `lsblk` and give the whole stick, e.g. /dev/sdb",
                p.display()
            ),
            Refusal::Missing(p) => write!(
                f,
                "{} does not exist (pass --allow-file to create an image file there)",
                p.display()
            ),
            Refusal::RegularFileNeedsAllowFile(p) => write!(
                f,
                "{} is a regular file, not a block device (pass --allow-file to write an image file)",
                p.display()
            ),
            Refusal::NotBlockDevice(p) => {
                write!(f, "{} is neither a block device nor a regular file", p.display())
            }
            Refusal::Partition { part, disk } => write!(
                f,
                "/dev/{part} is a partition; give the whole disk (/dev/{disk})"
            ),
            Refusal::NotRemovable(d) => write!(
                f,
                "/dev/{d} is not a removable device (/sys/block/{d}/removable is not 1); refusing to overwrite a fixed disk"
            ),
            Refusal::Mounted { dev, mountpoint } => write!(
                f,
                "/dev/{dev} is mounted at {mountpoint}; unmount it first (umount {mountpoint})"
            ),
            Refusal::Swap(d) => write!(f, "/dev/{d} is in use as swap (swapoff it first)"),
            Refusal::Held { dev, holder } => {
                write!(f, "/dev/{dev} is in use by {holder} (device-mapper/RAID); release it first")
            }
            Refusal::TooSmall { dev, size, needed } => write!(
                f,
                "/dev/{dev} holds {size} bytes but the image needs {needed}"
            ),
            Refusal::IsTheImage(p) => write!(f, "{} is the image itself", p.display()),
            Refusal::Sysfs(msg) => write!(f, "cannot inspect the device: {msg}"),
        }
    }
}

/// What sysfs says about one block device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockInfo {
    /// Kernel name, e.g. `sdb` or `sdb1`.
    pub name: String,
    /// For a partition, the disk's name.
    pub parent_disk: Option<String>,
    pub removable: bool,
    pub size_bytes: u64,
    pub model: String,
    /// `(name, "major:minor")` of the disk itself and each of its partitions.
    pub members: Vec<(String, String)>,
    /// Devices stacked on the disk or a partition (`holders/`).
    pub holders: Vec<String>,
}

/// Reads [`BlockInfo`] for the device `major:minor` from a sysfs tree
/// rooted at `sys` (normally `/sys`).
pub fn read_block_info(sys: &Path, devnum: &str) -> Result<BlockInfo, String> {
    let link = sys.join("dev/block").join(devnum);
    let dir = std::fs::canonicalize(&link).map_err(|e| format!("{}: {e}", link.display()))?;
    let name = file_name(&dir)?;
    if dir.join("partition").exists() {
        let parent = dir.parent().ok_or("partition without a disk")?;
        return Ok(BlockInfo {
            name,
            parent_disk: Some(file_name(parent)?),
            ..BlockInfo::default()
        });
    }
    let read = |rel: &str| std::fs::read_to_string(dir.join(rel)).map(|s| s.trim().to_string());
    let removable = read("removable").map(|s| s == "1").unwrap_or(false);
    let sectors: u64 = read("size").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let vendor = read("device/vendor").unwrap_or_default();
    let model = read("device/model").unwrap_or_default();
    let mut members = vec![(
        name.clone(),
        read("dev").unwrap_or_else(|_| devnum.to_string()),
    )];
    let mut holders = list_dir(&dir.join("holders"));
    for entry in std::fs::read_dir(&dir)
        .map_err(|e| e.to_string())?
        .flatten()
    {
        let p = entry.path();
        if p.join("partition").exists() {
            let part = file_name(&p)?;
            let dev = std::fs::read_to_string(p.join("dev")).unwrap_or_default();
            members.push((part, dev.trim().to_string()));
            holders.extend(list_dir(&p.join("holders")));
        }
    }
    Ok(BlockInfo {
        name,
        parent_disk: None,
        removable,
        size_bytes: sectors * 512,
        model: format!("{vendor} {model}").trim().to_string(),
        members,
        holders,
    })
}

fn file_name(p: &Path) -> Result<String, String> {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| format!("{} has no name", p.display()))
}

fn list_dir(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A mounted (or swap) block device: `("major:minor", where)`.
pub type InUse = (String, String);

/// Block devices named in a `/proc/mounts` or `/proc/swaps` text, resolved
/// to `major:minor` through `devnum_of` (a `stat` in production).
pub fn devices_in_use(table: &str, devnum_of: impl Fn(&str) -> Option<String>) -> Vec<InUse> {
    let mut out = Vec::new();
    for line in table.lines() {
        let mut words = line.split_whitespace();
        let (Some(source), Some(second)) = (words.next(), words.next()) else {
            continue;
        };
        if !source.starts_with('/') {
            continue;
        }
        if let Some(devnum) = devnum_of(source) {
            out.push((devnum, unescape_mount(second)));
        }
    }
    out
}

/// `/proc/mounts` escapes space, tab, newline and backslash as octal.
fn unescape_mount(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The pure decision for a whole-disk target.
pub fn check_disk(
    info: &BlockInfo,
    mounts: &[InUse],
    swaps: &[InUse],
    image_len: u64,
) -> Result<(), Refusal> {
    if let Some(disk) = &info.parent_disk {
        return Err(Refusal::Partition {
            part: info.name.clone(),
            disk: disk.clone(),
        });
    }
    if !info.removable {
        return Err(Refusal::NotRemovable(info.name.clone()));
    }
    for (name, devnum) in &info.members {
        if let Some((_, mp)) = mounts.iter().find(|(d, _)| d == devnum) {
            return Err(Refusal::Mounted {
                dev: name.clone(),
                mountpoint: mp.clone(),
            });
        }
        if swaps.iter().any(|(d, _)| d == devnum) {
            return Err(Refusal::Swap(name.clone()));
        }
    }
    if let Some(holder) = info.holders.first() {
        return Err(Refusal::Held {
            dev: info.name.clone(),
            holder: holder.clone(),
        });
    }
    if info.size_bytes < image_len {
        return Err(Refusal::TooSmall {
            dev: info.name.clone(),
            size: info.size_bytes,
            needed: image_len,
        });
    }
    Ok(())
}

fn devnum_of_path(p: &str) -> Option<String> {
    let meta = std::fs::metadata(p).ok()?;
    if !meta.file_type().is_block_device() {
        return None;
    }
    let rdev = meta.rdev();
    Some(format!("{}:{}", libc::major(rdev), libc::minor(rdev)))
}

/// Validates `path` as a flash target on this machine.
pub fn validate(
    path: &Path,
    allow_file: bool,
    image: &Path,
    image_len: u64,
) -> Result<Target, Refusal> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(_) if allow_file => return Ok(Target::File(path.to_path_buf())),
        Err(_) => return Err(Refusal::Missing(path.to_path_buf())),
    };
    if meta.is_file() {
        if !allow_file {
            return Err(Refusal::RegularFileNeedsAllowFile(path.to_path_buf()));
        }
        if let Ok(img) = std::fs::metadata(image) {
            if img.dev() == meta.dev() && img.ino() == meta.ino() {
                return Err(Refusal::IsTheImage(path.to_path_buf()));
            }
        }
        return Ok(Target::File(path.to_path_buf()));
    }
    if !meta.file_type().is_block_device() {
        return Err(Refusal::NotBlockDevice(path.to_path_buf()));
    }
    let rdev = meta.rdev();
    let devnum = format!("{}:{}", libc::major(rdev), libc::minor(rdev));
    let info = read_block_info(Path::new("/sys"), &devnum).map_err(Refusal::Sysfs)?;
    let mounts = devices_in_use(
        &std::fs::read_to_string("/proc/mounts").unwrap_or_default(),
        devnum_of_path,
    );
    let swaps = devices_in_use(
        &std::fs::read_to_string("/proc/swaps").unwrap_or_default(),
        devnum_of_path,
    );
    check_disk(&info, &mounts, &swaps, image_len)?;
    Ok(Target::Disk {
        path: path.to_path_buf(),
        name: info.name,
        size_bytes: info.size_bytes,
        model: info.model,
    })
}

/// Asks the user to type `yes`.
pub fn confirm(target: &Target, image: &Path, input: &mut impl BufRead) -> TaskResult<bool> {
    match target {
        Target::Disk {
            path,
            size_bytes,
            model,
            ..
        } => println!(
            "About to ERASE {} ({}, {:.1} GB) and write {}.",
            path.display(),
            if model.is_empty() {
                "unknown model"
            } else {
                model
            },
            *size_bytes as f64 / 1e9,
            image.display()
        ),
        Target::File(p) => println!(
            "About to overwrite the file {} with {}.",
            p.display(),
            image.display()
        ),
    }
    print!("Type 'yes' to continue: ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    input.read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>9} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )
        .expect("template is valid")
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// Writes `image` to `target`, syncs, and verifies by reading it back.
/// Returns the number of bytes verified.
pub fn write_and_verify(image: &Path, target: &Target, show_progress: bool) -> TaskResult<u64> {
    let mut src = File::open(image).map_err(|e| fail!("opening {}: {e}", image.display()))?;
    let len = src.metadata()?.len();
    let mut opts = OpenOptions::new();
    opts.write(true);
    match target {
        // A file must end up byte-identical to the image, so drop any tail.
        Target::File(_) => {
            opts.create(true).truncate(true);
        }
        // On a block device O_EXCL (without O_CREAT) makes the kernel refuse
        // with EBUSY if anything mounted or claimed the disk since we checked.
        Target::Disk { .. } => {
            use std::os::unix::fs::OpenOptionsExt;
            opts.custom_flags(libc::O_EXCL);
        }
    }
    let mut dst = opts.open(target.path()).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::PermissionDenied => " (writing a disk usually needs root)",
            _ if e.raw_os_error() == Some(libc::EBUSY) => " (the device is in use)",
            _ => "",
        };
        fail!("opening {} for writing: {e}{hint}", target.path().display())
    })?;

    let pb = if show_progress {
        bar(len, "writing")
    } else {
        ProgressBar::hidden()
    };
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n])
            .map_err(|e| fail!("writing {}: {e}", target.path().display()))?;
        pb.inc(n as u64);
    }
    pb.finish();
    dst.sync_all()
        .map_err(|e| fail!("syncing {}: {e}", target.path().display()))?;
    drop(dst);

    let mut back = File::open(target.path())?;
    // Read from the device, not the page cache we just filled.
    // SAFETY: the fd is valid for the life of `back`; fadvise only drops
    // clean cached pages and has no memory-safety effect.
    unsafe {
        libc::posix_fadvise(back.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
    src.seek(SeekFrom::Start(0))?;
    let pb = if show_progress {
        bar(len, "verifying")
    } else {
        ProgressBar::hidden()
    };
    let mut want = vec![0u8; CHUNK];
    let mut got = vec![0u8; CHUNK];
    let mut offset = 0u64;
    loop {
        let n = src.read(&mut want)?;
        if n == 0 {
            break;
        }
        back.read_exact(&mut got[..n]).map_err(|e| {
            fail!(
                "reading back {} at byte {offset}: {e}",
                target.path().display()
            )
        })?;
        if let Some(i) = want[..n].iter().zip(&got[..n]).position(|(a, b)| a != b) {
            return Err(fail!(
                "verification FAILED: {} differs from the image at byte {}",
                target.path().display(),
                offset + i as u64
            ));
        }
        offset += n as u64;
        pb.inc(n as u64);
    }
    pb.finish();
    Ok(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk() -> BlockInfo {
        BlockInfo {
            name: "sdb".into(),
            parent_disk: None,
            removable: true,
            size_bytes: 8 << 30,
            model: "Panda Stick".into(),
            members: vec![
                ("sdb".into(), "8:16".into()),
                ("sdb1".into(), "8:17".into()),
            ],
            holders: vec![],
        }
    }

    #[test]
    fn removable_unmounted_disk_is_accepted() {
        assert_eq!(check_disk(&disk(), &[], &[], 1 << 20), Ok(()));
    }

    #[test]
    fn fixed_disk_is_refused() {
        let info = BlockInfo {
            removable: false,
            ..disk()
        };
        assert_eq!(
            check_disk(&info, &[], &[], 1),
            Err(Refusal::NotRemovable("sdb".into()))
        );
    }

    #[test]
    fn partition_is_refused_naming_the_disk() {
        let info = BlockInfo {
            name: "sdb1".into(),
            parent_disk: Some("sdb".into()),
            ..disk()
        };
        let err = check_disk(&info, &[], &[], 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/dev/sdb1 is a partition; give the whole disk (/dev/sdb)"
        );
    }

    #[test]
    fn mounted_partition_refuses_the_disk() {
        let mounts = [("8:17".to_string(), "/media/usb stick".to_string())];
        let err = check_disk(&disk(), &mounts, &[], 1).unwrap_err();
        assert_eq!(
            err,
            Refusal::Mounted {
                dev: "sdb1".into(),
                mountpoint: "/media/usb stick".into()
            }
        );
    }

    #[test]
    fn swap_holder_and_size_are_checked() {
        let swaps = [("8:16".to_string(), "partition".to_string())];
        assert_eq!(
            check_disk(&disk(), &[], &swaps, 1),
            Err(Refusal::Swap("sdb".into()))
        );
        let held = BlockInfo {
            holders: vec!["dm-0".into()],
            ..disk()
        };
        assert!(matches!(
            check_disk(&held, &[], &[], 1),
            Err(Refusal::Held { .. })
        ));
        assert!(matches!(
            check_disk(&disk(), &[], &[], 9 << 30),
            Err(Refusal::TooSmall { .. })
        ));
    }

    #[test]
    fn proc_mounts_sources_resolve_to_devnums() {
        let table = "/dev/sdb1 /media/a\\040b vfat rw 0 0\nproc /proc proc rw 0 0\n/dev/sda2 / ext4 rw 0 0\n";
        let got = devices_in_use(table, |p| match p {
            "/dev/sdb1" => Some("8:17".into()),
            "/dev/sda2" => Some("8:2".into()),
            _ => None,
        });
        assert_eq!(
            got,
            [
                ("8:17".to_string(), "/media/a b".to_string()),
                ("8:2".to_string(), "/".to_string())
            ]
        );
    }

    #[test]
    fn reads_a_fake_sysfs_tree() {
        let sys = tempfile::tempdir().unwrap();
        let disk_dir = sys.path().join("devices/pci0/usb1/block/sdb");
        let part_dir = disk_dir.join("sdb1");
        std::fs::create_dir_all(part_dir.join("holders")).unwrap();
        std::fs::create_dir_all(disk_dir.join("holders")).unwrap();
        std::fs::create_dir_all(disk_dir.join("device")).unwrap();
        std::fs::write(disk_dir.join("removable"), "1\n").unwrap();
        std::fs::write(disk_dir.join("size"), "2048\n").unwrap();
        std::fs::write(disk_dir.join("dev"), "8:16\n").unwrap();
        std::fs::write(disk_dir.join("device/vendor"), "Panda  \n").unwrap();
        std::fs::write(disk_dir.join("device/model"), "Stick\n").unwrap();
        std::fs::write(part_dir.join("partition"), "1\n").unwrap();
        std::fs::write(part_dir.join("dev"), "8:17\n").unwrap();
        std::fs::create_dir_all(sys.path().join("dev/block")).unwrap();
        std::os::unix::fs::symlink(&disk_dir, sys.path().join("dev/block/8:16")).unwrap();
        std::os::unix::fs::symlink(&part_dir, sys.path().join("dev/block/8:17")).unwrap();

        let info = read_block_info(sys.path(), "8:16").unwrap();
        assert_eq!(info.name, "sdb");
        assert!(info.removable);
        assert_eq!(info.size_bytes, 2048 * 512);
        assert_eq!(info.model, "Panda Stick");
        assert_eq!(
            info.members,
            [
                ("sdb".into(), "8:16".into()),
                ("sdb1".into(), "8:17".into())
            ]
        );

        let part = read_block_info(sys.path(), "8:17").unwrap();
        assert_eq!(part.parent_disk.as_deref(), Some("sdb"));
    }

    #[test]
    fn regular_file_refused_without_allow_file() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("img");
        let target = dir.path().join("target");
        std::fs::write(&image, b"image").unwrap();
        std::fs::write(&target, b"precious").unwrap();
        let err = validate(&target, false, &image, 5).unwrap_err();
        assert_eq!(err, Refusal::RegularFileNeedsAllowFile(target.clone()));
        assert!(err.to_string().contains("--allow-file"));
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    }

    #[test]
    fn missing_path_refused_without_allow_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("sdz");
        assert_eq!(
            validate(&target, false, &target, 1),
            Err(Refusal::Missing(target.clone()))
        );
    }

    #[test]
    fn character_device_is_refused() {
        let err = validate(Path::new("/dev/null"), true, Path::new("/nonexistent"), 1).unwrap_err();
        assert_eq!(err, Refusal::NotBlockDevice("/dev/null".into()));
    }

    #[test]
    fn image_cannot_be_its_own_target() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("img");
        std::fs::write(&image, b"x").unwrap();
        assert_eq!(
            validate(&image, true, &image, 1),
            Err(Refusal::IsTheImage(image.clone()))
        );
    }

    #[test]
    fn flash_to_file_is_byte_identical() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("img");
        // Not a multiple of the chunk size, and a longer pre-existing target
        // whose tail must disappear.
        let bytes: Vec<u8> = (0..(CHUNK * 2 + 12345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        std::fs::write(&image, &bytes).unwrap();
        let out = dir.path().join("stick");
        std::fs::write(&out, vec![0xAA; CHUNK * 3]).unwrap();
        let target = validate(&out, true, &image, bytes.len() as u64).unwrap();
        assert_eq!(target, Target::File(out.clone()));
        let verified = write_and_verify(&image, &target, false).unwrap();
        assert_eq!(verified, bytes.len() as u64);
        assert_eq!(std::fs::read(&out).unwrap(), bytes);
    }

    #[test]
    fn confirmation_requires_yes() {
        let t = Target::File("/tmp/x".into());
        let img = Path::new("/tmp/img");
        assert!(confirm(&t, img, &mut &b"yes\n"[..]).unwrap());
        assert!(!confirm(&t, img, &mut &b"y\n"[..]).unwrap());
        assert!(!confirm(&t, img, &mut &b""[..]).unwrap());
    }
}
