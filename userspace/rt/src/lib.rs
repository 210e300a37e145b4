//! # pandagen-rt — the ring-3 runtime
//!
//! Everything a PandaGen program needs to run in its own address space:
//!
//! * [`entry!`] defines the ELF entry point, sets up the heap and calls the
//!   program's `main` with a [`Kernel`];
//! * [`Kernel`] implements [`pandagen_abi::KernelApi`] over system calls, so
//!   service logic written against the trait runs unchanged here and in the
//!   host-side `SimulatedKernel`;
//! * a panic ends the task with `ExitReason::Failure` after logging where;
//! * `link.ld` places programs in the user half with W^X segments.
//!
//! On the host (for `cargo test` of crates that depend on this one) only the
//! target-independent parts are compiled: the syscall instruction, the
//! allocator and the panic handler exist only for `target_os = "none"`.
#![no_std]

extern crate alloc;

mod block;
pub mod compare;
pub mod device;
mod kernel;
pub mod syscall;

#[cfg(target_os = "none")]
mod runtime;

pub use kernel::Kernel;
pub use pandagen_abi as abi;

/// Define the program's entry point. `main` takes `&mut Kernel` and
/// returns `Result<(), KernelError>`: `Ok` exits normally, `Err` exits with
/// a failure naming the error.
///
/// The heap lives in `.bss`, which the loader maps zeroed, read-write and
/// non-executable: 1 MiB unless the program asks for more with
/// `entry!(main, heap = 8 << 20)`.
///
/// ```ignore
/// #![no_std]
/// #![no_main]
/// pandagen_rt::entry!(main);
/// fn main(kernel: &mut pandagen_rt::Kernel) -> Result<(), pandagen_rt::abi::KernelError> {
///     kernel.debug("hello from ring 3");
///     Ok(())
/// }
/// ```
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        $crate::entry!($main, heap = $crate::DEFAULT_HEAP_BYTES);
    };
    ($main:path, heap = $bytes:expr) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn __pandagen_main() -> ! {
            let mut kernel = $crate::Kernel::new();
            let result: ::core::result::Result<(), $crate::abi::KernelError> = $main(&mut kernel);
            kernel.exit_with(result)
        }

        #[unsafe(no_mangle)]
        pub fn __pandagen_heap() -> (*mut u8, usize) {
            static mut HEAP: $crate::HeapArea<{ $bytes }> = $crate::HeapArea::new();
            (::core::ptr::addr_of_mut!(HEAP) as *mut u8, $bytes)
        }
    };
}

/// The heap of a program that does not choose its size.
pub const DEFAULT_HEAP_BYTES: usize = 1 << 20;

/// Page-aligned backing store for a program's heap (see [`entry!`]).
#[repr(C, align(4096))]
pub struct HeapArea<const BYTES: usize>([u8; BYTES]);

impl<const BYTES: usize> HeapArea<BYTES> {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        HeapArea([0; BYTES])
    }
}

/// Log a formatted line through the kernel's debug log.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::syscall::debug_write(&::alloc::format!($($arg)*))
    };
}
