//! The boot mode, read from `boot.cfg` in the boot ramdisk.
//!
//! The ramdisk is a ustar archive; `boot.cfg` (or `./boot.cfg`) in it holds
//! `key=value` lines parsed by [`pandagen_hal::boot_config`]. Without a
//! ramdisk, or without `boot.cfg` in it, the kernel boots in `system` mode.

use core::sync::atomic::{AtomicBool, Ordering};
use pandagen_hal::boot_config::{self, BootConfig, BootConfigError};
use spin::Once;
use tar_no_std::TarArchiveRef;

static CONFIG: Once<BootConfig<'static>> = Once::new();
static TEST_MODE: AtomicBool = AtomicBool::new(false);

/// Why the boot configuration could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootModeError {
    /// The ramdisk is not a valid tar archive.
    CorruptRamdisk,
    /// `boot.cfg` was found but rejected.
    BadConfig(BootConfigError),
}

/// Where the configuration came from, for the boot log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    NoRamdisk,
    NoConfigFile,
    File,
}

/// Finds and parses `boot.cfg` in `ramdisk`, then records the result.
pub fn init(ramdisk: Option<&'static [u8]>) -> Result<ConfigSource, BootModeError> {
    let (config, source) = match ramdisk {
        None => (BootConfig::default(), ConfigSource::NoRamdisk),
        Some(bytes) => {
            let archive = TarArchiveRef::new(bytes).map_err(|_| BootModeError::CorruptRamdisk)?;
            let file = archive.entries().find(|entry| {
                matches!(entry.filename().as_str(), Ok("boot.cfg") | Ok("./boot.cfg"))
            });
            match file {
                None => (BootConfig::default(), ConfigSource::NoConfigFile),
                Some(entry) => (
                    boot_config::parse_bytes(entry.data()).map_err(BootModeError::BadConfig)?,
                    ConfigSource::File,
                ),
            }
        }
    };
    TEST_MODE.store(config.mode.is_test(), Ordering::Relaxed);
    CONFIG.call_once(|| config);
    Ok(source)
}

/// The boot configuration (the default until [`init`] has run).
pub fn config() -> BootConfig<'static> {
    CONFIG.get().copied().unwrap_or_default()
}

/// Whether this boot reports a verdict through the QEMU exit device.
pub fn is_test() -> bool {
    TEST_MODE.load(Ordering::Relaxed)
}

/// Marks the run as a test run even though `boot.cfg` could not be read,
/// so that the failure exits QEMU instead of hanging the harness.
pub fn force_test_mode() {
    TEST_MODE.store(true, Ordering::Relaxed);
}
