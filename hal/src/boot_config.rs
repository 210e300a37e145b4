//! `boot.cfg`: the kernel's boot-time settings, read from the boot ramdisk.
//!
//! The file is plain text, one `key=value` per line. Blank lines and lines
//! starting with `#` are skipped, whitespace around keys and values is
//! ignored, and unknown keys are ignored so that older kernels boot images
//! made for newer ones. Known keys with bad values are errors: a typo in
//! `mode` must not silently boot a test image as a normal system.
//!
//! | key    | values                              | default  |
//! |--------|-------------------------------------|----------|
//! | `mode` | `system`, `ktest`, `suite`, `bench` | `system` |
//! | `suite`| the suite to run (or, with `bench`, the bench program `bench_<suite>`) | none |
//! | `seed` | decimal or `0x` hex `u64`           | none     |
//! | `log`  | `error` `warn` `info` `debug` `trace` | `info` |
//! | `keyboard` | `us`, `uk`, `de`: read by the PS/2 keyboard driver, not the kernel | `us` |

/// What the kernel does after it has booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootMode {
    /// Start the system normally.
    System,
    /// Run the ring-0 kernel self-tests, then exit QEMU with the verdict.
    Ktest,
    /// Run a named ring-3 scenario suite, then exit QEMU with the verdict.
    Suite,
    /// Run the benchmarks, then exit QEMU.
    Bench,
}

impl BootMode {
    /// Every mode, in the order the `mode` key's values are listed.
    pub const ALL: [BootMode; 4] = [
        BootMode::System,
        BootMode::Ktest,
        BootMode::Suite,
        BootMode::Bench,
    ];

    /// The mode's value for the `mode` key.
    pub const fn name(self) -> &'static str {
        match self {
            BootMode::System => "system",
            BootMode::Ktest => "ktest",
            BootMode::Suite => "suite",
            BootMode::Bench => "bench",
        }
    }

    /// The mode a `mode` value names.
    pub fn from_name(name: &str) -> Option<BootMode> {
        BootMode::ALL.into_iter().find(|mode| mode.name() == name)
    }

    /// Whether this mode ends by reporting a verdict through the QEMU exit
    /// device (so faults and panics must exit QEMU instead of halting).
    pub fn is_test(self) -> bool {
        !matches!(self, BootMode::System)
    }
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// The parsed settings. String values borrow from the file's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootConfig<'a> {
    pub mode: BootMode,
    pub suite: Option<&'a str>,
    pub seed: Option<u64>,
    pub log_level: LogLevel,
}

impl Default for BootConfig<'_> {
    fn default() -> Self {
        Self {
            mode: BootMode::System,
            suite: None,
            seed: None,
            log_level: LogLevel::Info,
        }
    }
}

/// Why `boot.cfg` was rejected. Line numbers start at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootConfigError {
    /// The file is not UTF-8.
    NotUtf8,
    /// A non-blank, non-comment line has no `=`.
    MissingEquals { line: usize },
    /// `mode` has a value other than the four known ones.
    UnknownMode { line: usize },
    /// `seed` is not a decimal or `0x`-hex `u64`.
    BadSeed { line: usize },
    /// `log` is not a known level.
    BadLogLevel { line: usize },
    /// `suite` is empty.
    EmptySuite { line: usize },
}

/// Parses `boot.cfg` bytes.
pub fn parse_bytes(bytes: &[u8]) -> Result<BootConfig<'_>, BootConfigError> {
    let text = core::str::from_utf8(bytes).map_err(|_| BootConfigError::NotUtf8)?;
    parse(text)
}

/// Parses `boot.cfg` text. Later lines override earlier ones.
pub fn parse(text: &str) -> Result<BootConfig<'_>, BootConfigError> {
    let mut config = BootConfig::default();
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or(BootConfigError::MissingEquals { line: line_no })?;
        let value = value.trim();
        match key.trim() {
            "mode" => {
                config.mode = BootMode::from_name(value)
                    .ok_or(BootConfigError::UnknownMode { line: line_no })?
            }
            "suite" => {
                if value.is_empty() {
                    return Err(BootConfigError::EmptySuite { line: line_no });
                }
                config.suite = Some(value);
            }
            "seed" => {
                let parsed = match value
                    .strip_prefix("0x")
                    .or_else(|| value.strip_prefix("0X"))
                {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => value.parse::<u64>(),
                };
                config.seed = Some(parsed.map_err(|_| BootConfigError::BadSeed { line: line_no })?);
            }
            "log" => {
                config.log_level = match value {
                    "error" => LogLevel::Error,
                    "warn" => LogLevel::Warn,
                    "info" => LogLevel::Info,
                    "debug" => LogLevel::Debug,
                    "trace" => LogLevel::Trace,
                    _ => return Err(BootConfigError::BadLogLevel { line: line_no }),
                }
            }
            _ => {}
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_system_mode() {
        assert_eq!(parse(""), Ok(BootConfig::default()));
        assert_eq!(parse("").unwrap().mode, BootMode::System);
        assert!(!BootMode::System.is_test());
    }

    #[test]
    fn parses_all_known_keys_with_whitespace_and_comments() {
        let text = "# test image\n\n mode = ktest \nsuite=ipc\r\nseed=0x2A\nlog=debug\n";
        let config = parse(text).unwrap();
        assert_eq!(config.mode, BootMode::Ktest);
        assert!(config.mode.is_test());
        assert_eq!(config.suite, Some("ipc"));
        assert_eq!(config.seed, Some(42));
        assert_eq!(config.log_level, LogLevel::Debug);
        assert_eq!(parse("seed=12345").unwrap().seed, Some(12345));
    }

    #[test]
    fn unknown_keys_are_ignored_and_later_lines_win() {
        let config = parse("colour=blue\nmode=bench\nmode=suite\n").unwrap();
        assert_eq!(config.mode, BootMode::Suite);
    }

    #[test]
    fn bad_values_are_reported_with_their_line() {
        assert_eq!(
            parse("mode=ktset"),
            Err(BootConfigError::UnknownMode { line: 1 })
        );
        assert_eq!(
            parse("\nseed=abc"),
            Err(BootConfigError::BadSeed { line: 2 })
        );
        assert_eq!(
            parse("seed=0xZZ"),
            Err(BootConfigError::BadSeed { line: 1 })
        );
        assert_eq!(parse("seed=-1"), Err(BootConfigError::BadSeed { line: 1 }));
        assert_eq!(
            parse("log=loud"),
            Err(BootConfigError::BadLogLevel { line: 1 })
        );
        assert_eq!(
            parse("suite= "),
            Err(BootConfigError::EmptySuite { line: 1 })
        );
        assert_eq!(
            parse("mode"),
            Err(BootConfigError::MissingEquals { line: 1 })
        );
        assert_eq!(parse_bytes(&[0xff, 0xfe]), Err(BootConfigError::NotUtf8));
    }
}
