//! Ring-3 programs xtask can put into a ramdisk.
//!
//! To add one: append a line to [`USER_PROGRAMS`]. The package needs a
//! `[[bin]]` with `required-features = ["ring3"]`; xtask builds it for
//! `x86_64-unknown-none` with the ring-3 runtime's linker script.

/// A ring-3 program: a cargo package and one of its binaries. The binary
/// name is also the ramdisk entry name (`bin/<bin>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserProgram {
    pub package: &'static str,
    pub bin: &'static str,
}

/// Every ring-3 program the system image carries. Suites pick a subset.
pub const USER_PROGRAMS: &[UserProgram] = &[];

/// Looks a program up by its binary name.
pub fn find(bin: &str) -> Option<&'static UserProgram> {
    USER_PROGRAMS.iter().find(|p| p.bin == bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_names_are_unique_and_plain() {
        for (i, p) in USER_PROGRAMS.iter().enumerate() {
            assert!(!p.bin.is_empty() && !p.bin.contains('/'), "{p:?}");
            assert!(
                USER_PROGRAMS[i + 1..].iter().all(|q| q.bin != p.bin),
                "duplicate program {}",
                p.bin
            );
        }
    }
}
