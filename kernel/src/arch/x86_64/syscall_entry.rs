//! The `syscall` instruction's entry point, the per-CPU block it finds
//! through GS, and the first jump into ring 3.
//!
//! `syscall` switches neither stack nor GS. The stub swaps GS to the
//! per-CPU block ([`PerCpu`]), parks the user RSP there, loads the kernel
//! stack top from it, and pushes a [`TrapFrame`] in exactly the layout the
//! interrupt stubs build (vector [`SYSCALL_VECTOR`], CS/SS the user
//! selectors, RIP from RCX, RFLAGS from R11). The safe dispatcher
//! (`Exchange` goes to its own entry first, `syscall::exchange_entry`, which
//! hands what it declines to the dispatcher) gets that
//! frame and returns the frame to resume — the caller's, or another task's
//! after a block or an exit — which the stub restores and leaves with
//! `iretq`. `iretq` rather than `sysretq`: every resumed frame, whether it
//! came from a syscall, an interrupt or a fresh task, leaves the same way,
//! and there is no non-canonical-RCX hazard. (RIP values only ever come
//! from the CPU or from a validated ELF entry point.)
//!
//! FMASK clears every RFLAGS bit ring 3 can leave set that changes how the
//! kernel runs: IF (the dispatcher runs with interrupts off), TF (no single
//! step trap in ring 0), DF (string instructions go up), AC (SMAP stays
//! armed), NT (with NT set, the `iretq` back to ring 3 would be a task
//! return and raise #GP in ring 0) and IOPL (ring 3 cannot set it, but the
//! kernel does not rely on that). The interrupt and exception gates clear
//! TF, NT and RF themselves; `protection::rearm_smap` handles AC there.

use super::gdt;
use super::trap::{pop_gprs, push_gprs, TrapFrame};
use core::arch::naked_asm;
use core::mem::offset_of;
use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
use x86_64::registers::model_specific::{
    Efer, EferFlags, GsBase, KernelGsBase, LStar, Msr, SFMask,
};
use x86_64::registers::rflags::RFlags;
use x86_64::VirtAddr;

/// The `vector` recorded in a frame built by the syscall entry (beyond
/// every hardware vector).
pub const SYSCALL_VECTOR: u64 = 0x100;

/// What GS points at while the kernel runs.
#[repr(C)]
pub struct PerCpu {
    /// Top of the kernel stack used for entries from ring 3.
    kernel_rsp: u64,
    /// The user RSP, parked by the syscall stub until the frame is built.
    user_rsp: u64,
}

const KERNEL_RSP: usize = offset_of!(PerCpu, kernel_rsp);
const USER_RSP: usize = offset_of!(PerCpu, user_rsp);

/// The boot CPU's block. The trap stubs compare the live GS base with its
/// address to decide whether to `swapgs`.
pub(super) static mut PER_CPU: PerCpu = PerCpu {
    kernel_rsp: 0,
    user_rsp: 0,
};

/// The top of the kernel stack for entries from ring 3 (guarded, see
/// [`stacks`](super::stacks)).
fn kernel_stack_top() -> u64 {
    super::stacks::entry_stack_top()
}

/// Enables `syscall`: STAR/LSTAR/FMASK, EFER.SCE, the per-CPU block in GS
/// and the kernel stack in TSS.RSP0 and the per-CPU block.
pub fn init() {
    let top = kernel_stack_top();
    let per_cpu = core::ptr::addr_of_mut!(PER_CPU);
    // SAFETY: boot CPU, before ring 3 exists: nothing else reads PER_CPU.
    unsafe { (*per_cpu).kernel_rsp = top };
    gdt::set_kernel_stack(VirtAddr::new(top));
    // SAFETY: STAR holds the selectors the GDT was laid out for; LSTAR the
    // entry stub below; FMASK the flags cleared on entry (see the module
    // docs). GS base is the
    // per-CPU block while in the kernel and 0 (the user's) in the swapped
    // slot: the exit path swaps before `iretq` to ring 3.
    unsafe {
        Msr::new(0xC000_0081).write(gdt::STAR);
        LStar::write(VirtAddr::new(syscall_entry as *const () as u64));
        SFMask::write(
            RFlags::INTERRUPT_FLAG
                | RFlags::TRAP_FLAG
                | RFlags::DIRECTION_FLAG
                | RFlags::ALIGNMENT_CHECK
                | RFlags::NESTED_TASK
                | RFlags::IOPL_LOW
                | RFlags::IOPL_HIGH,
        );
        GsBase::write(VirtAddr::new(per_cpu as u64));
        KernelGsBase::write(VirtAddr::zero());
        Efer::update(|f| f.insert(EferFlags::SYSTEM_CALL_EXTENSIONS));
    }
    // SAFETY: AM makes misaligned accesses fault (#AC) in ring 3 when the
    // task sets RFLAGS.AC, which only affects that task; TSD clear lets
    // ring 3 read the TSC (the benchmarks count instructions with it).
    unsafe {
        Cr0::update(|f| f.insert(Cr0Flags::ALIGNMENT_MASK));
        Cr4::update(|f| f.remove(Cr4Flags::TIMESTAMP_DISABLE));
    }
}

// The entry stub tests for the null call as `rax == 0`.
const _: () = assert!(pandagen_abi::syscall::Syscall::Null as u64 == 0);

/// The LSTAR target.
///
/// [`Syscall::Null`](pandagen_abi::syscall::Syscall::Null) is answered
/// before anything else: it reads no memory, needs no kernel state, and
/// returns 0 with `sysretq` without touching GS or the stack. `sysretq`
/// loads RIP from RCX, and on Intel CPUs a non-canonical RCX faults in
/// ring 0 with the user's RSP; RCX is the address after the caller's
/// `syscall`, which is canonical unless that instruction ended the user
/// half, so the path checks it (every bit from 47 up clear) and otherwise
/// takes the full path, which leaves with `iretq`. RFLAGS come back from
/// R11, where `syscall` put the caller's own.
#[unsafe(naked)]
unsafe extern "C" fn syscall_entry() {
    naked_asm!(
        "test rax, rax",
        "jnz 2f",
        "mov rax, rcx",
        "shr rax, 47",
        "jnz 1f",
        "sysretq",
        "1:",
        "xor eax, eax",
        "2:",
        "swapgs",
        "mov gs:[{user_rsp}], rsp",
        "mov rsp, gs:[{kernel_rsp}]",
        // The hardware part of the frame, as an interrupt from ring 3 would
        // have pushed it.
        "push {user_ss}",
        "push qword ptr gs:[{user_rsp}]",
        "push r11",
        "push {user_cs}",
        "push rcx",
        "push 0",
        "push {vector}",
        push_gprs!(),
        "cld",
        "mov rdi, rsp",
        // RAX still holds the call's number.
        "cmp rax, {exchange}",
        "je 3f",
        "cmp rax, {object_call}",
        "je 4f",
        "call {dispatch}",
        "mov rsp, rax",
        "jmp {resume}",
        "3:",
        "call {exchange_entry}",
        "mov rsp, rax",
        "jmp {resume}",
        "4:",
        "call {object_call_entry}",
        "mov rsp, rax",
        "jmp {resume}",
        user_rsp = const USER_RSP,
        kernel_rsp = const KERNEL_RSP,
        user_ss = const gdt::USER_DATA as u64,
        user_cs = const gdt::USER_CODE as u64,
        vector = const SYSCALL_VECTOR,
        exchange = const pandagen_abi::syscall::Syscall::Exchange as u64,
        dispatch = sym crate::syscall::syscall_dispatch,
        exchange_entry = sym crate::syscall::exchange_entry,
        object_call = const pandagen_abi::syscall::Syscall::CallObject as u64,
        object_call_entry = sym crate::syscall::object_call::object_call_entry,
        resume = sym resume_user,
    );
}

/// Restores the frame at RSP and returns to ring 3 with it.
#[unsafe(naked)]
unsafe extern "C" fn resume_user() {
    naked_asm!(pop_gprs!(), "add rsp, 16", "swapgs", "iretq",);
}

/// Leaves the boot context for good and runs `frame` (a ring-3 frame) on
/// the kernel stack every later entry from ring 3 uses.
pub fn enter_user(frame: &TrapFrame) -> ! {
    assert!(frame.is_from_user(), "enter_user needs a ring-3 frame");
    let slot = (kernel_stack_top() - core::mem::size_of::<TrapFrame>() as u64) as *mut TrapFrame;
    // SAFETY: the slot is the top of the kernel stack, which nothing uses
    // yet (we are still on the boot stack); the frame's CS/SS are the user
    // selectors, so `iretq` drops to ring 3 and cannot resume kernel code.
    unsafe {
        slot.write(frame.clone());
        core::arch::asm!(
            "mov rsp, {slot}",
            "jmp {resume}",
            slot = in(reg) slot,
            resume = sym resume_user,
            options(noreturn),
        );
    }
}
