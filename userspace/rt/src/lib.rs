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
        #[unsafe(no_mangle)]
        pub extern "C" fn __pandagen_main() -> ! {
            let mut kernel = $crate::Kernel::new();
            let result: ::core::result::Result<(), $crate::abi::KernelError> = $main(&mut kernel);
            kernel.exit_with(result)
        }
    };
}

/// Log a formatted line through the kernel's debug log.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::syscall::debug_write(&::alloc::format!($($arg)*))
    };
}
