//! The persistent disk `cargo xtask run` attaches, and the QEMU arguments
//! for a virtio-blk disk.
//!
//! The image is a raw file under `target/` (by default
//! `target/pandagen-disk.img`), created sparse and zeroed on first use;
//! the storage service formats its journal on it at first boot. It keeps
//! its size once created; `--fresh-disk` replaces it with an empty one (of
//! `--disk-size`, default [`DEFAULT_DISK_MIB`] MiB).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use crate::fail;
use crate::layout::Layout;
use crate::process::TaskResult;

/// The size of a new disk image, in MiB.
pub const DEFAULT_DISK_MIB: u64 = 64;
/// The smallest disk the journal is given (smaller sizes are refused).
pub const MIN_DISK_MIB: u64 = 4;

/// Where `cargo xtask run` keeps its disk.
pub fn run_disk_path(layout: &Layout) -> PathBuf {
    layout.target().join("pandagen-disk.img")
}

/// A size argument: MiB, or with an `M` or `G` suffix.
pub fn parse_size_mib(text: &str) -> TaskResult<u64> {
    let (digits, scale) = match text.as_bytes().last() {
        Some(b'G' | b'g') => (&text[..text.len() - 1], 1024),
        Some(b'M' | b'm') => (&text[..text.len() - 1], 1),
        _ => (text, 1),
    };
    let mib = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| fail!("`--disk-size` takes MiB (or an M/G suffix), not `{text}`"))?;
    if mib < MIN_DISK_MIB {
        return Err(fail!("`--disk-size` must be at least {MIN_DISK_MIB} MiB"));
    }
    Ok(mib)
}

/// Make sure a disk image exists at `path`: created (sparse, zeroed) when
/// absent or when `fresh`, else left as it is. Returns whether it was
/// created.
pub fn prepare(path: &Path, size_mib: u64, fresh: bool) -> TaskResult<bool> {
    if path.is_file() && !fresh {
        return Ok(false);
    }
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| fail!("creating the disk image {}: {e}", path.display()))?;
    file.set_len(size_mib << 20)
        .map_err(|e| fail!("sizing the disk image {}: {e}", path.display()))?;
    Ok(true)
}

/// The QEMU arguments that attach `path` as a virtio-blk PCI disk.
pub fn qemu_args(path: &Path) -> Vec<String> {
    vec![
        "-drive".into(),
        format!("if=none,id=disk0,format=raw,file={}", path.display()),
        "-device".into(),
        "virtio-blk-pci,drive=disk0".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes_and_small_ones_are_refused() {
        assert_eq!(parse_size_mib("64").unwrap(), 64);
        assert_eq!(parse_size_mib("256M").unwrap(), 256);
        assert_eq!(parse_size_mib("1G").unwrap(), 1024);
        assert!(parse_size_mib("1").is_err());
        assert!(parse_size_mib("lots").is_err());
    }

    #[test]
    fn an_image_is_created_once_and_replaced_only_when_fresh() {
        let dir = std::env::temp_dir().join(format!("pandagen-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("d.img");
        assert!(prepare(&path, 4, false).unwrap());
        std::fs::write(&path, b"kept").unwrap();
        assert!(!prepare(&path, 8, false).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"kept");
        assert!(prepare(&path, 8, true).unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8 << 20);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_disk_is_a_virtio_blk_pci_device() {
        let args = qemu_args(Path::new("/t/d.img"));
        assert_eq!(
            args,
            [
                "-drive",
                "if=none,id=disk0,format=raw,file=/t/d.img",
                "-device",
                "virtio-blk-pci,drive=disk0"
            ]
        );
    }
}
