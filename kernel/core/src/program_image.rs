//! Validating a ring-3 program image (a static x86_64 ELF executable)
//! before anything is allocated for it.
//!
//! The bytes come from the boot ramdisk, chosen by whoever spawns, so the
//! parse must refuse anything malformed with a typed error and never
//! panic. Only `PT_LOAD` segments count. Each must lie in the user half
//! below `limit`, must not be both writable and executable (W^X), and must
//! carry no more file bytes than memory; together they may ask for at most
//! `max_memory` bytes, and the entry point must lie in an executable one.
//! Mapping the pages is the kernel's business (`kernel/src/loader.rs`).

use alloc::vec::Vec;
use elf::abi::{EM_X86_64, ET_EXEC, PF_W, PF_X, PT_LOAD};
use elf::endian::LittleEndian;
use elf::ElfBytes;

use crate::user_range::user_range;

/// Why an image was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Not a well-formed 64-bit little-endian ELF file.
    Malformed,
    /// Not an x86_64 executable (`ET_EXEC`, `EM_X86_64`).
    NotAnExecutable,
    /// A segment is writable and executable, has more file bytes than
    /// memory, or is empty.
    BadSegment,
    /// A segment lies outside the user half or reaches `limit`.
    OutOfRange,
    /// A segment's file bytes lie outside the file.
    Truncated,
    /// The segments ask for more than `max_memory` bytes.
    TooLarge,
    /// No loadable segment, or the entry point is in no executable one.
    BadEntry,
}

/// One loadable segment, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSegment<'a> {
    pub vaddr: u64,
    pub memsz: u64,
    /// The file bytes (at most `memsz`); the rest is zero.
    pub bytes: &'a [u8],
    pub writable: bool,
    pub executable: bool,
}

/// A program image that may be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramImage<'a> {
    pub entry: u64,
    pub segments: Vec<ImageSegment<'a>>,
}

/// Parse and validate `image`; segments must end at or below `limit` and
/// ask for at most `max_memory` bytes in all.
pub fn parse_program(
    image: &[u8],
    limit: u64,
    max_memory: u64,
) -> Result<ProgramImage<'_>, ImageError> {
    let file = ElfBytes::<LittleEndian>::minimal_parse(image).map_err(|_| ImageError::Malformed)?;
    if file.ehdr.e_type != ET_EXEC || file.ehdr.e_machine != EM_X86_64 {
        return Err(ImageError::NotAnExecutable);
    }
    let table = file.segments().ok_or(ImageError::Malformed)?;
    let mut segments = Vec::new();
    let mut total = 0u64;
    for ph in table.iter().filter(|ph| ph.p_type == PT_LOAD) {
        let writable = ph.p_flags & PF_W != 0;
        let executable = ph.p_flags & PF_X != 0;
        if (writable && executable) || ph.p_filesz > ph.p_memsz || ph.p_memsz == 0 {
            return Err(ImageError::BadSegment);
        }
        let range = user_range(ph.p_vaddr, ph.p_memsz).map_err(|_| ImageError::OutOfRange)?;
        if range.end > limit {
            return Err(ImageError::OutOfRange);
        }
        total = total.saturating_add(ph.p_memsz);
        if total > max_memory {
            return Err(ImageError::TooLarge);
        }
        let start = usize::try_from(ph.p_offset).map_err(|_| ImageError::Truncated)?;
        let len = usize::try_from(ph.p_filesz).map_err(|_| ImageError::Truncated)?;
        let end = start.checked_add(len).ok_or(ImageError::Truncated)?;
        let bytes = image.get(start..end).ok_or(ImageError::Truncated)?;
        segments.push(ImageSegment {
            vaddr: ph.p_vaddr,
            memsz: ph.p_memsz,
            bytes,
            writable,
            executable,
        });
    }
    let entry = file.ehdr.e_entry;
    let entry_ok = segments
        .iter()
        .any(|s| s.executable && (s.vaddr..s.vaddr + s.memsz).contains(&entry));
    if !entry_ok {
        return Err(ImageError::BadEntry);
    }
    Ok(ProgramImage { entry, segments })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u64 = 0x0000_7fff_0000_0000;
    const MAX: u64 = 64 << 20;

    /// A minimal ELF64 executable with the given program headers
    /// `(type, flags, offset, vaddr, filesz, memsz)` and entry point.
    pub(crate) fn elf(entry: u64, headers: &[(u32, u32, u64, u64, u64, u64)]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&ET_EXEC.to_le_bytes());
        out.extend_from_slice(&EM_X86_64.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&entry.to_le_bytes());
        out.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
        out.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
        out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
        out.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
        out.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
        out.extend_from_slice(&(headers.len() as u16).to_le_bytes());
        out.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
        out.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
        out.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
        for &(p_type, flags, offset, vaddr, filesz, memsz) in headers {
            out.extend_from_slice(&p_type.to_le_bytes());
            out.extend_from_slice(&flags.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            out.extend_from_slice(&vaddr.to_le_bytes());
            out.extend_from_slice(&vaddr.to_le_bytes());
            out.extend_from_slice(&filesz.to_le_bytes());
            out.extend_from_slice(&memsz.to_le_bytes());
            out.extend_from_slice(&4096u64.to_le_bytes());
        }
        out.resize(out.len().max(256), 0x90);
        out
    }

    #[test]
    fn a_well_formed_executable_parses() {
        let image = elf(0x40_0000, &[(PT_LOAD, PF_X | 4, 0, 0x40_0000, 200, 4096)]);
        let program = parse_program(&image, LIMIT, MAX).unwrap();
        assert_eq!(program.entry, 0x40_0000);
        assert_eq!(program.segments.len(), 1);
        assert_eq!(program.segments[0].bytes.len(), 200);
        assert!(program.segments[0].executable && !program.segments[0].writable);
    }

    #[test]
    fn limits_are_inclusive() {
        let x = PF_X | 4;
        // A segment whose file part fills its memory exactly, one that ends
        // exactly at the address limit, and images exactly at the memory
        // limit, in one segment and summed over two.
        let cases = [
            elf(0x40_0000, &[(PT_LOAD, x, 0, 0x40_0000, 256, 256)]),
            elf(LIMIT - 4096, &[(PT_LOAD, x, 0, LIMIT - 4096, 0, 4096)]),
            elf(0x40_0000, &[(PT_LOAD, x, 0, 0x40_0000, 0, MAX)]),
            elf(
                0x40_0000,
                &[
                    (PT_LOAD, x, 0, 0x40_0000, 0, MAX / 2),
                    (PT_LOAD, 4, 0, 0x40_0000 + MAX, 0, MAX / 2),
                ],
            ),
        ];
        for image in cases {
            assert!(parse_program(&image, LIMIT, MAX).is_ok());
        }
    }

    #[test]
    fn every_kind_of_bad_image_gets_its_error() {
        let x = PF_X | 4;
        let cases: &[(Vec<u8>, ImageError)] = &[
            (b"not an elf".to_vec(), ImageError::Malformed),
            (
                elf(0x40_0000, &[(PT_LOAD, PF_W | PF_X, 0, 0x40_0000, 0, 4096)]),
                ImageError::BadSegment,
            ),
            (
                elf(0x40_0000, &[(PT_LOAD, x, 0, 0x40_0000, 8192, 4096)]),
                ImageError::BadSegment,
            ),
            (
                elf(0x40_0000, &[(PT_LOAD, x, 0, u64::MAX - 10, 0, 4096)]),
                ImageError::OutOfRange,
            ),
            (
                elf(0x40_0000, &[(PT_LOAD, x, 0, LIMIT - 10, 0, 4096)]),
                ImageError::OutOfRange,
            ),
            (
                elf(0x40_0000, &[(PT_LOAD, x, u64::MAX, 0x40_0000, 16, 4096)]),
                ImageError::Truncated,
            ),
            (
                elf(0x40_0000, &[(PT_LOAD, x, 0, 0x40_0000, 0, MAX + 1)]),
                ImageError::TooLarge,
            ),
            (
                elf(0x50_0000, &[(PT_LOAD, x, 0, 0x40_0000, 0, 4096)]),
                ImageError::BadEntry,
            ),
            (
                elf(0x40_0000, &[(PT_LOAD, 4 | PF_W, 0, 0x40_0000, 0, 4096)]),
                ImageError::BadEntry,
            ),
            (elf(0x40_0000, &[]), ImageError::BadEntry),
        ];
        for (image, error) in cases {
            assert_eq!(parse_program(image, LIMIT, MAX), Err(*error));
        }
        let mut wrong_machine = elf(0x40_0000, &[(PT_LOAD, x, 0, 0x40_0000, 0, 4096)]);
        wrong_machine[18] = 3; // EM_386
        assert_eq!(
            parse_program(&wrong_machine, LIMIT, MAX),
            Err(ImageError::NotAnExecutable)
        );
    }
}
