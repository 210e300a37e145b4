//! The program-image (ELF) validation the kernel runs before it loads a
//! ring-3 program. Whatever it accepts must keep its promises: W^X, every
//! segment in range, file bytes inside the image, entry in an executable
//! segment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pandagen_core::program_image::parse_program;

const LIMIT: u64 = 0x0000_7fff_0000_0000;
const MAX_MEMORY: u64 = 64 << 20;

fuzz_target!(|data: &[u8]| {
    let Ok(program) = parse_program(data, LIMIT, MAX_MEMORY) else {
        return;
    };
    let mut total = 0u64;
    for s in &program.segments {
        assert!(!(s.writable && s.executable));
        assert!(s.vaddr.checked_add(s.memsz).is_some_and(|end| end <= LIMIT));
        assert!(s.bytes.len() as u64 <= s.memsz);
        total += s.memsz;
    }
    assert!(total <= MAX_MEMORY);
    assert!(program
        .segments
        .iter()
        .any(|s| s.executable && (s.vaddr..s.vaddr + s.memsz).contains(&program.entry)));
});
