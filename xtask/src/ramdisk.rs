//! Packs the boot ramdisk: a ustar archive the kernel reads at boot.
//!
//! Layout (documented in `qemu/README.md`):
//! - `boot.cfg`  — see [`crate::bootcfg`]
//! - `manifest`  — optional service manifest (format owned by the process manager)
//! - `bin/<name>` — ring-3 ELF programs
//!
//! Entries carry mtime 0, uid/gid 0 and fixed modes so the same inputs give
//! the same bytes.

use std::path::Path;

use crate::bootcfg::BootConfig;
use crate::fail;
use crate::process::TaskResult;

/// One ring-3 program to place at `bin/<name>`.
pub struct Program<'a> {
    pub name: &'a str,
    pub elf: &'a Path,
}

/// Everything that goes into one ramdisk.
pub struct Contents<'a> {
    pub boot_cfg: BootConfig,
    pub manifest: Option<&'a Path>,
    pub programs: Vec<Program<'a>>,
}

/// Builds the archive in memory.
pub fn pack(contents: &Contents<'_>) -> TaskResult<Vec<u8>> {
    contents
        .boot_cfg
        .validate()
        .map_err(|e| fail!("boot.cfg: {e}"))?;
    let mut builder = tar::Builder::new(Vec::new());
    append(
        &mut builder,
        "boot.cfg",
        contents.boot_cfg.render().as_bytes(),
        0o644,
    )?;
    if let Some(manifest) = contents.manifest {
        let bytes = std::fs::read(manifest)
            .map_err(|e| fail!("reading manifest {}: {e}", manifest.display()))?;
        append(&mut builder, "manifest", &bytes, 0o644)?;
    }
    for program in &contents.programs {
        if program.name.is_empty() || program.name.contains('/') {
            return Err(fail!("invalid program name {:?}", program.name));
        }
        let bytes = std::fs::read(program.elf)
            .map_err(|e| fail!("reading program {}: {e}", program.elf.display()))?;
        append(
            &mut builder,
            &format!("bin/{}", program.name),
            &bytes,
            0o755,
        )?;
    }
    builder
        .into_inner()
        .map_err(|e| fail!("finishing ramdisk archive: {e}"))
}

fn append(
    builder: &mut tar::Builder<Vec<u8>>,
    path: &str,
    data: &[u8],
    mode: u32,
) -> TaskResult<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    builder
        .append_data(&mut header, path, data)
        .map_err(|e| fail!("adding {path} to ramdisk: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pandagen_hal::boot_config::BootMode;
    use std::io::Read;

    fn entries(archive: &[u8]) -> Vec<(String, Vec<u8>, bool)> {
        let mut out = Vec::new();
        let mut ar = tar::Archive::new(archive);
        for entry in ar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let ustar = entry.header().as_ustar().is_some();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            out.push((path, data, ustar));
        }
        out
    }

    #[test]
    fn packs_boot_cfg_and_programs_as_ustar() {
        let dir = tempfile::tempdir().unwrap();
        let elf = dir.path().join("storage");
        std::fs::write(&elf, b"\x7fELF fake").unwrap();
        let manifest = dir.path().join("manifest");
        std::fs::write(&manifest, b"service storage\n").unwrap();
        let archive = pack(&Contents {
            boot_cfg: BootConfig::suite("ipc").with_seed(3),
            manifest: Some(&manifest),
            programs: vec![Program {
                name: "storage",
                elf: &elf,
            }],
        })
        .unwrap();
        assert_eq!(archive.len() % 512, 0);
        let got = entries(&archive);
        assert_eq!(
            got,
            vec![
                (
                    "boot.cfg".into(),
                    b"mode=suite\nsuite=ipc\nseed=3\n".to_vec(),
                    true
                ),
                ("manifest".into(), b"service storage\n".to_vec(), true),
                ("bin/storage".into(), b"\x7fELF fake".to_vec(), true),
            ]
        );
    }

    #[test]
    fn same_inputs_give_same_bytes() {
        let contents = Contents {
            boot_cfg: BootConfig::mode(BootMode::Ktest),
            manifest: None,
            programs: vec![],
        };
        assert_eq!(pack(&contents).unwrap(), pack(&contents).unwrap());
    }

    #[test]
    fn missing_program_is_an_error() {
        let err = pack(&Contents {
            boot_cfg: BootConfig::mode(BootMode::System),
            manifest: None,
            programs: vec![Program {
                name: "ghost",
                elf: Path::new("/nonexistent/ghost"),
            }],
        });
        assert!(err.is_err());
    }
}
