//! The boot ramdisk's files: program images (`bin/<name>`) for spawning,
//! and top-level data files (the service manifest) for `ReadBootFile`.

use spin::Once;
use tar_no_std::TarArchiveRef;

static RAMDISK: Once<Option<&'static [u8]>> = Once::new();

/// Remember the boot ramdisk, where program images come from.
pub fn init(ramdisk: Option<&'static [u8]>) {
    RAMDISK.call_once(|| ramdisk);
}

/// The ELF image of program `name` (`bin/<name>` in the ramdisk).
pub fn image(name: &str) -> Option<&'static [u8]> {
    ramdisk_file("bin/", name)
}

/// A top-level data file of the ramdisk, such as `manifest`. Programs
/// (under `bin/`) and nested paths are not reachable this way.
pub fn boot_file(name: &str) -> Option<&'static [u8]> {
    ramdisk_file("", name)
}

fn ramdisk_file(directory: &str, name: &str) -> Option<&'static [u8]> {
    if name.is_empty() || name.contains('/') {
        return None;
    }
    let bytes = (*RAMDISK.get()?)?;
    let archive = TarArchiveRef::new(bytes).ok()?;
    let found = archive.entries().find(|entry| {
        entry.filename().as_str().is_ok_and(|f| {
            let f = f.strip_prefix("./").unwrap_or(f);
            f.strip_prefix(directory) == Some(name)
        })
    });
    found.map(|entry| entry.data())
}
