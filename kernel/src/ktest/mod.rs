//! The ring-0 self-test suite (`mode=ktest`).
//!
//! A static registry of named tests, each a plain `fn() -> TestResult`, so
//! it works on stable Rust without `custom_test_frameworks`. The runner
//! prints one line per test and a summary in a fixed format that the host
//! harness reads:
//!
//! ```text
//! [TEST] PASS <name>
//! [TEST] FAIL <name>: <reason>
//! [SUITE] DONE passed=<n> failed=<m>
//! ```
//!
//! then exits QEMU with 0x10 (all passed) or 0x11. A test that panics or
//! takes an unexpected exception ends the run at once with 0x11.

mod copies;
mod entropy;
mod hal;
mod memory;
mod stacks;
mod time;
mod traps;

use crate::{println, qemu};
use alloc::string::String;

/// A test's verdict: `Err` carries the reason.
pub type TestResult = Result<(), String>;

/// One registered test.
pub struct KernelTest {
    pub name: &'static str,
    pub run: fn() -> TestResult,
}

/// Fails the current test with a formatted reason unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($reason:tt)+) => {
        if !$cond {
            return Err(alloc::format!($($reason)+));
        }
    };
}
pub(crate) use ensure;

/// Every test, in the order they run.
pub static TESTS: &[KernelTest] = &[
    KernelTest {
        name: "trap_frame_copy_is_every_word_and_nothing_else",
        run: copies::trap_frame_copy_is_every_word_and_nothing_else,
    },
    KernelTest {
        name: "message_copy_matches_copy_from_slice",
        run: copies::message_copy_matches_copy_from_slice,
    },
    KernelTest {
        name: "short_reply_header_is_the_abis",
        run: copies::short_reply_header_is_the_abis,
    },
    KernelTest {
        name: "layout_bootloader_mappings_in_upper_half",
        run: memory::layout_is_upper_half,
    },
    KernelTest {
        name: "frame_allocator_never_hands_out_twice",
        run: memory::frames_are_unique,
    },
    KernelTest {
        name: "frame_allocator_freed_frames_come_back",
        run: memory::freed_frames_come_back,
    },
    KernelTest {
        name: "heap_small_and_large_allocations",
        run: memory::heap_small_and_large,
    },
    KernelTest {
        name: "heap_freed_memory_is_reused",
        run: memory::heap_reuses_memory,
    },
    KernelTest {
        name: "paging_map_unmap_in_new_address_space",
        run: memory::map_unmap_new_space,
    },
    KernelTest {
        name: "paging_kernel_half_shared_with_new_space",
        run: memory::kernel_half_is_shared,
    },
    KernelTest {
        name: "reply_goes_where_the_last_check_found_the_buffer",
        run: memory::reply_goes_where_the_last_check_found_the_buffer,
    },
    KernelTest {
        name: "gdt_layout_fits_syscall_sysret",
        run: traps::gdt_layout_fits_star,
    },
    KernelTest {
        name: "trap_breakpoint_returns",
        run: traps::breakpoint_returns,
    },
    KernelTest {
        name: "trap_with_user_gs_runs_on_kernel_gs",
        run: traps::trap_with_user_gs_runs_on_kernel_gs,
    },
    KernelTest {
        name: "trap_page_fault_unmapped_reports_cr2",
        run: traps::page_fault_unmapped,
    },
    KernelTest {
        name: "trap_page_fault_read_only_write",
        run: traps::page_fault_read_only,
    },
    KernelTest {
        name: "trap_smap_blocks_kernel_access_to_user_page",
        run: traps::smap_blocks_user_access,
    },
    KernelTest {
        name: "trap_general_protection_non_canonical",
        run: traps::general_protection,
    },
    KernelTest {
        name: "stacks_guard_pages_are_unmapped",
        run: stacks::guard_pages_are_unmapped,
    },
    KernelTest {
        name: "stacks_boot_stack_overflow_double_faults_with_report",
        run: stacks::boot_stack_overflow_is_reported,
    },
    KernelTest {
        name: "stacks_entry_stack_overflow_double_faults_with_report",
        run: stacks::entry_stack_overflow_is_reported,
    },
    KernelTest {
        name: "irq_registered_handler_runs_through_idt",
        run: traps::irq_handler_runs_through_idt,
    },
    KernelTest {
        name: "hal_cpu_reports_kernel_addresses",
        run: hal::cpu_hal_reports_kernel_addresses,
    },
    KernelTest {
        name: "hal_timer_reports_programmed_rate",
        run: hal::timer_hal_reports_the_programmed_rate,
    },
    KernelTest {
        name: "hal_memory_maps_user_pages",
        run: hal::memory_hal_maps_user_pages,
    },
    KernelTest {
        name: "entropy_source_is_the_best_available",
        run: entropy::source_is_the_best_available,
    },
    KernelTest {
        name: "entropy_program_secrets_are_per_program",
        run: entropy::program_secrets_are_per_program,
    },
    KernelTest {
        name: "entropy_random_bytes_never_repeat",
        run: entropy::random_bytes_never_repeat,
    },
    KernelTest {
        name: "entropy_timer_jitter_varies",
        run: entropy::timer_jitter_varies,
    },
    KernelTest {
        name: "time_ticks_advance",
        run: time::ticks_advance,
    },
    KernelTest {
        name: "time_now_is_monotonic",
        run: time::now_is_monotonic,
    },
];

/// Runs every test, prints the summary and exits QEMU with the verdict.
pub fn run_all() -> ! {
    log::info!("running {} kernel tests", TESTS.len());
    let mut passed = 0;
    let mut failed = 0;
    for test in TESTS {
        match (test.run)() {
            Ok(()) => {
                passed += 1;
                println!("[TEST] PASS {}", test.name);
            }
            Err(reason) => {
                failed += 1;
                println!("[TEST] FAIL {}: {}", test.name, reason);
            }
        }
    }
    println!("[SUITE] DONE passed={passed} failed={failed}");
    qemu::exit(if failed == 0 {
        qemu::ExitCode::Success
    } else {
        qemu::ExitCode::Failure
    })
}
