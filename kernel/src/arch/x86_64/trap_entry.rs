//! Interrupt entry stubs (naked functions) and the common entry/exit path.
//!
//! Each vector has a stub that makes the stack uniform (pushes a zero error
//! code where the CPU pushes none), pushes its vector number and jumps to
//! [`trap_common`]. That saves every general-purpose register, making a
//! [`TrapFrame`](super::trap::TrapFrame), calls
//! [`trap_dispatch`], then restores the
//! registers of the frame the dispatcher returned and `iretq`s into it.
//!
//! # GS
//!
//! In the interrupt and exception handlers GS points at the per-CPU
//! block, in ring 3 at the user's value; a system call runs with the
//! user's throughout (the syscall stub reaches the per-CPU block by its
//! address), so an interrupt in the idle loop a system call entered
//! arrives in ring 0 with the user's GS. Entry decides whether to `swapgs` from the GS base itself
//! (IA32_GS_BASE compared with the per-CPU block), not from the saved CS:
//! an NMI, #MC, #DF or a #GP raised by `iretq` can arrive in ring 0 while
//! GS still (or already) holds the user's base, between `syscall` and its
//! `swapgs` or between the exit's `swapgs` and `iretq`. Trusting the saved
//! CS there would run the handler on the user's GS base. When such an entry
//! from ring 0 had to swap, it sets bit [`USER_GS_AT_ENTRY_BIT`] of the frame's
//! vector word, and the exit swaps back before resuming that ring-0 code.
//! A frame resumed in ring 3 always leaves through `swapgs`.

use super::syscall_entry::PER_CPU;
use super::trap::{pop_gprs, push_gprs, trap_dispatch, USER_GS_AT_ENTRY_BIT};
use core::arch::naked_asm;

/// IA32_GS_BASE: the GS base in effect (not the swapped-out one).
const IA32_GS_BASE: u32 = 0xC000_0101;

/// The number of vectors with a stub: the 32 exceptions and 16 legacy IRQs.
pub const STUB_COUNT: usize = 48;

/// The common path all stubs jump to.
#[unsafe(naked)]
unsafe extern "C" fn trap_common() {
    naked_asm!(
        // [rsp] = vector, [rsp + 8] = error code, [rsp + 24] = saved CS.
        // Paranoid GS: read the live GS base and swap only when it is not
        // the per-CPU block. RAX, RCX and RDX are saved first (RDMSR).
        "push rax",
        "push rcx",
        "push rdx",
        "mov ecx, {gs_base_msr}",
        "rdmsr",
        "shl rdx, 32",
        "or rax, rdx",
        "lea rcx, [rip + {per_cpu}]",
        "cmp rax, rcx",
        "je 2f",
        "swapgs",
        // Swapped on an entry from ring 0: remember to swap back at exit.
        "test byte ptr [rsp + 24 + 24], 3",
        "jnz 2f",
        "bts qword ptr [rsp + 24], {user_gs_bit}",
        "2:",
        "pop rdx",
        "pop rcx",
        "pop rax",
        push_gprs!(),
        // The SysV ABI wants the direction flag clear at every call.
        "cld",
        "mov rdi, rsp",
        "call {dispatch}",
        // Resume whichever frame the dispatcher chose.
        "mov rsp, rax",
        pop_gprs!(),
        // [rsp] = vector, [rsp + 8] = error code, [rsp + 24] = saved CS.
        // To ring 3: always swap. To ring 0: swap back only if entry did.
        "test byte ptr [rsp + 24], 3",
        "jnz 4f",
        "btr qword ptr [rsp], {user_gs_bit}",
        "jnc 3f",
        "4:",
        "swapgs",
        "3:",
        // Drop vector and error code.
        "add rsp, 16",
        "iretq",
        gs_base_msr = const IA32_GS_BASE,
        per_cpu = sym PER_CPU,
        user_gs_bit = const USER_GS_AT_ENTRY_BIT,
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
