//! The kernel's `boot.cfg` parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pandagen_hal::boot_config::parse_bytes(data);
});
