//! `boot.cfg`: the kernel's boot-time configuration inside the ramdisk.
//!
//! Format (the contract with the kernel, documented in `qemu/README.md`):
//! one `key=value` per line, `\n` line ends, no spaces around `=`. Keys:
//! `mode` (system | ktest | suite | bench), `suite` (a ring-3 suite name;
//! with `mode=bench`, the bench program `bench_<suite>`),
//! `seed` (a decimal u64). The kernel ignores unknown keys.

use pandagen_hal::boot_config::BootMode;

use pandagen_ps2_keyboard::keymap::Layout;

/// A boot configuration; `const` so suites can be declared in a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootConfig {
    pub mode: BootMode,
    pub suite: Option<&'static str>,
    pub seed: Option<u64>,
    /// `keyboard=`: the PS/2 keyboard driver's layout (read by the driver,
    /// not the kernel); `None` leaves the driver's default, US.
    pub keyboard: Option<Layout>,
}

#[allow(dead_code)] // constructors for suite table entries
impl BootConfig {
    pub const fn mode(mode: BootMode) -> Self {
        BootConfig {
            mode,
            suite: None,
            seed: None,
            keyboard: None,
        }
    }

    /// A ring-3 scenario suite: `mode=suite` plus `suite=<name>`.
    pub const fn suite(name: &'static str) -> Self {
        BootConfig {
            mode: BootMode::Suite,
            suite: Some(name),
            seed: None,
            keyboard: None,
        }
    }

    /// A service's own benchmark: `mode=bench` plus `suite=<name>`, whose
    /// root program is `bench_<name>` instead of `bench`.
    pub const fn bench(name: &'static str) -> Self {
        BootConfig {
            mode: BootMode::Bench,
            suite: Some(name),
            seed: None,
            keyboard: None,
        }
    }

    pub const fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    pub const fn with_keyboard(mut self, layout: Layout) -> Self {
        self.keyboard = Some(layout);
        self
    }

    /// The file's text. Keys appear in a fixed order so images are
    /// reproducible.
    pub fn render(&self) -> String {
        let mut out = format!("mode={}\n", self.mode.name());
        if let Some(suite) = self.suite {
            out.push_str(&format!("suite={suite}\n"));
        }
        if let Some(seed) = self.seed {
            out.push_str(&format!("seed={seed}\n"));
        }
        if let Some(layout) = self.keyboard {
            out.push_str(&format!("keyboard={}\n", layout.name()));
        }
        out
    }

    /// Checks values the line format cannot carry.
    pub fn validate(&self) -> Result<(), String> {
        match (self.mode, self.suite) {
            (BootMode::Suite, None) => return Err("mode=suite needs a suite name".into()),
            (_, Some(s)) if s.is_empty() || s.contains(['\n', '\r', '=']) => {
                return Err(format!("suite name {s:?} cannot be written to boot.cfg"))
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_mode_only() {
        assert_eq!(BootConfig::mode(BootMode::Ktest).render(), "mode=ktest\n");
        assert_eq!(BootConfig::mode(BootMode::System).render(), "mode=system\n");
        assert_eq!(BootConfig::mode(BootMode::Bench).render(), "mode=bench\n");
        assert_eq!(
            BootConfig::bench("storage").render(),
            "mode=bench\nsuite=storage\n"
        );
    }

    #[test]
    fn renders_suite_and_seed_in_fixed_order() {
        let cfg = BootConfig::suite("ipc").with_seed(42);
        assert_eq!(cfg.render(), "mode=suite\nsuite=ipc\nseed=42\n");
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn the_kernel_reads_back_what_xtask_writes() {
        let configs = BootMode::ALL.map(BootConfig::mode).into_iter().chain([
            BootConfig::suite("ipc").with_seed(42),
            BootConfig::bench("storage"),
        ]);
        for cfg in configs {
            let text = cfg.render();
            let parsed = pandagen_hal::boot_config::parse(&text).unwrap();
            assert_eq!(
                (parsed.mode, parsed.suite, parsed.seed),
                (cfg.mode, cfg.suite, cfg.seed),
                "{text}"
            );
        }
    }

    #[test]
    fn the_keyboard_driver_reads_back_its_layout() {
        for layout in Layout::ALL {
            let text = BootConfig::mode(BootMode::System)
                .with_keyboard(layout)
                .render();
            assert_eq!(Layout::from_boot_config(&text), Ok(layout), "{text}");
            // The kernel ignores the key.
            assert!(pandagen_hal::boot_config::parse(&text).is_ok());
        }
    }

    #[test]
    fn rejects_unwritable_configs() {
        assert!(BootConfig::mode(BootMode::Suite).validate().is_err());
        assert!(BootConfig::suite("a=b").validate().is_err());
        assert!(BootConfig::suite("a\nmode=system").validate().is_err());
        assert!(BootConfig::suite("").validate().is_err());
    }
}
