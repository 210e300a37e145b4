//! The bare-metal runtime: entry point, heap and panic handler. Compiled
//! only for `x86_64-unknown-none`.

use core::fmt::Write;
use core::panic::PanicInfo;
use pandagen_abi::syscall::{ExitRequest, Syscall, MAX_DEBUG_WRITE};
use pandagen_abi::{ExitReason, FailureCause, KernelError};
use pandagen_heap::LockedHeap;

use crate::syscall::call_small;

/// The kernel's own allocator (size classes in front of a linked-list
/// heap, from the HAL crate): message handling allocates and frees many
/// small blocks, which a plain linked-list heap serves slower the more
/// fragmented it gets.
#[global_allocator]
static ALLOCATOR: LockedHeap = LockedHeap::empty();

unsafe extern "Rust" {
    /// Defined by [`entry!`](crate::entry).
    safe fn __pandagen_main() -> !;
    /// Defined by [`entry!`](crate::entry): the program's heap area.
    safe fn __pandagen_heap() -> (*mut u8, usize);
}

/// The ELF entry point. The kernel enters with a 16-byte aligned stack and
/// nothing else set up; this aligns for the Rust ABI, initialises the heap
/// and runs the program.
#[unsafe(naked)]
#[unsafe(no_mangle)]
#[unsafe(link_section = ".text._start")]
pub extern "C" fn _start() -> ! {
    core::arch::naked_asm!(
        "and rsp, -16",
        "xor rbp, rbp",
        "call {init}",
        "ud2",
        init = sym start_rust,
    );
}

extern "C" fn start_rust() -> ! {
    let (start, size) = __pandagen_heap();
    // SAFETY: this runs once, before anything allocates, and the area
    // `entry!` defined is used by nothing but the allocator.
    unsafe {
        ALLOCATOR.lock().init(start, size);
    }
    __pandagen_main()
}

/// Log the panic and end the task with `Failure { Panic }`. Nothing here
/// allocates, so a panic caused by heap exhaustion still reports cleanly.
#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    let mut text = heapless::String::<{ MAX_DEBUG_WRITE }>::new();
    // A message longer than the buffer is cut short, which is fine for a log.
    let _ = write!(text, "panic: {info}");
    crate::syscall::debug_write(&text);
    let request = ExitRequest {
        reason: ExitReason::Failure {
            error: FailureCause::Panic,
        },
    };
    let _: Result<(), KernelError> = call_small(Syscall::Exit, &request);
    loop {
        core::hint::spin_loop();
    }
}
