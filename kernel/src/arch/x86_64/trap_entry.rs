//! Interrupt entry stubs (naked functions) and the common entry/exit path.
//!
//! Each vector has a stub that makes the stack uniform (pushes a zero error
//! code where the CPU pushes none), pushes its vector number and jumps to
//! [`trap_common`]. That saves every general-purpose register, making a
//! [`TrapFrame`](super::trap::TrapFrame), calls
//! [`trap_dispatch`], then restores the
//! registers of the frame the dispatcher returned and `iretq`s into it.
//!
//! `swapgs` runs on entry from and on exit to ring 3 (tested through the
//! saved CS), so that in the kernel GS always points at the per-CPU block
//! and in user mode at the user's value.

use super::trap::{pop_gprs, push_gprs, trap_dispatch};
use core::arch::naked_asm;

/// The number of vectors with a stub: the 32 exceptions and 16 legacy IRQs.
pub const STUB_COUNT: usize = 48;

/// The common path all stubs jump to.
#[unsafe(naked)]
unsafe extern "C" fn trap_common() {
    naked_asm!(
        // [rsp] = vector, [rsp + 8] = error code, [rsp + 24] = saved CS.
        "test byte ptr [rsp + 24], 3",
        "jz 2f",
        "swapgs",
        "2:",
        push_gprs!(),
        // The SysV ABI wants the direction flag clear at every call.
        "cld",
        "mov rdi, rsp",
        "call {dispatch}",
        // Resume whichever frame the dispatcher chose.
        "mov rsp, rax",
        pop_gprs!(),
        // Drop vector and error code; [rsp + 8] is now the saved CS.
        "add rsp, 16",
        "test byte ptr [rsp + 8], 3",
        "jz 3f",
        "swapgs",
        "3:",
        "iretq",
        dispatch = sym trap_dispatch,
    );
}

/// A stub for a vector where the CPU pushes no error code.
macro_rules! stub {
    ($vector:literal) => {{
        #[unsafe(naked)]
        unsafe extern "C" fn stub() {
            naked_asm!("push 0", "push {v}", "jmp {common}", v = const $vector, common = sym trap_common);
        }
        stub as unsafe extern "C" fn()
    }};
    ($vector:literal, error_code) => {{
        #[unsafe(naked)]
        unsafe extern "C" fn stub() {
            naked_asm!("push {v}", "jmp {common}", v = const $vector, common = sym trap_common);
        }
        stub as unsafe extern "C" fn()
    }};
}

/// Entry points by vector. The CPU pushes an error code for vectors 8, 10-14,
/// 17, 21, 29 and 30.
pub static STUBS: [unsafe extern "C" fn(); STUB_COUNT] = [
    stub!(0),
    stub!(1),
    stub!(2),
    stub!(3),
    stub!(4),
    stub!(5),
    stub!(6),
    stub!(7),
    stub!(8, error_code),
    stub!(9),
    stub!(10, error_code),
    stub!(11, error_code),
    stub!(12, error_code),
    stub!(13, error_code),
    stub!(14, error_code),
    stub!(15),
    stub!(16),
    stub!(17, error_code),
    stub!(18),
    stub!(19),
    stub!(20),
    stub!(21, error_code),
    stub!(22),
    stub!(23),
    stub!(24),
    stub!(25),
    stub!(26),
    stub!(27),
    stub!(28),
    stub!(29, error_code),
    stub!(30, error_code),
    stub!(31),
    stub!(32),
    stub!(33),
    stub!(34),
    stub!(35),
    stub!(36),
    stub!(37),
    stub!(38),
    stub!(39),
    stub!(40),
    stub!(41),
    stub!(42),
    stub!(43),
    stub!(44),
    stub!(45),
    stub!(46),
    stub!(47),
];
