//! The process manager's service manifest parser (the manifest comes from
//! the boot ramdisk).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pandagen_process_manager::manifest::parse(data);
});
