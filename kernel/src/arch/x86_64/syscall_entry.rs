//! The `syscall` instruction's entry point, the per-CPU block it finds
//! by its address, and the first jump into ring 3.
//!
//! `syscall` switches neither stack nor GS. The stub leaves GS as it is
//! (the user's: a system call runs with it, see below), reaches the
//! per-CPU block ([`PerCpu`]) by its address (one CPU), parks the user
//! RSP there, and writes a
//! [`TrapFrame`] in exactly the layout the interrupt stubs build (RIP
//! from RCX, RFLAGS from R11; the vector and error code, the RCX and R11
//! that `syscall` overwrote, and CS and SS, always the user selectors in
//! a record, are left as the record holds them: see `save_call`; a call
//! with a direct entry leaves RAX too, see `save_direct_call`) — not on the kernel stack but
//! straight into the running task's record, whose address the per-CPU
//! block holds ([`save_calls_into`], set at every switch). Then it loads
//! the kernel stack top and calls the safe dispatcher (`Exchange` and
//! `CallObject` go to their direct path's entry first,
//! `syscall::direct_entry`, which hands what it declines to the
//! dispatcher and leaves the kernel itself through [`leave_to`], the same
//! exit, without returning) with the record's address. The dispatcher returns the
//! frame to resume — the caller's record, or another task's after a
//! block or an exit — which the stub restores and leaves with `iretq`:
//! no frame is copied on a system call, whether it switches or not.
//! `iretq` rather than `sysretq`: every resumed frame, whether it came
//! from a syscall, an interrupt or a fresh task, leaves the same way, and
//! there is no non-canonical-RCX hazard. (RIP values only ever come from
//! the CPU or from a validated ELF entry point.)
//!
//! While the stub writes the record, RSP points at it, in the kernel heap:
//! the stub writes with moves, not pushes, interrupts are off (FMASK), and
//! NMI, #DF and #MC run on their own stacks (IST), so nothing else is
//! written there.
//!
//! GS. A system call runs with the user's GS base from `syscall` to
//! `iretq` (no `swapgs`: the stub addresses the per-CPU block directly,
//! and no kernel code but the entry stubs uses GS). Only the interrupt
//! and exception handlers run with the per-CPU block in GS: their entry
//! swaps by the live GS base, not by the saved CS (`trap_entry`), so an
//! interrupt in the idle loop a system call entered (`schedule` halts
//! there with interrupts on) swaps in and back out, and one from ring 3
//! swaps as always. A task's GS base is 0: nothing lets ring 3 change it
//! (the kernel never enables CR4.FSGSBASE), and nothing in the kernel
//! trusts it.
//!
//! FMASK clears every RFLAGS bit ring 3 can leave set that changes how the
//! kernel runs: IF (the dispatcher runs with interrupts off), TF (no single
//! step trap in ring 0), DF (string instructions go up), AC (SMAP stays
//! armed), NT (with NT set, the `iretq` back to ring 3 would be a task
//! return and raise #GP in ring 0) and IOPL (ring 3 cannot set it, but the
//! kernel does not rely on that). The interrupt and exception gates clear
//! TF, NT and RF themselves; `protection::rearm_smap` handles AC there.

use super::gdt;
use super::trap::{pop_gprs, TrapFrame};
use core::arch::naked_asm;
use core::mem::offset_of;
use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
use x86_64::registers::model_specific::{
    Efer, EferFlags, GsBase, KernelGsBase, LStar, Msr, SFMask,
};
use x86_64::registers::rflags::RFlags;
use x86_64::VirtAddr;

/// The boot CPU's per-CPU block: what GS points at while an interrupt or
/// exception handler runs; the syscall stub reaches it by its address.
#[repr(C)]
pub struct PerCpu {
    /// Top of the kernel stack used for entries from ring 3.
    kernel_rsp: u64,
    /// The user RSP, parked by the syscall stub until the frame is built.
    user_rsp: u64,
    /// The running task's saved registers (its record's [`TrapFrame`]):
    /// where the syscall stub writes a call's frame (see
    /// [`save_calls_into`]).
    record_frame: u64,
}

const KERNEL_RSP: usize = offset_of!(PerCpu, kernel_rsp);
const USER_RSP: usize = offset_of!(PerCpu, user_rsp);
const RECORD_FRAME: usize = offset_of!(PerCpu, record_frame);

/// The boot CPU's block. The trap stubs compare the live GS base with its
/// address to decide whether to `swapgs`.
pub(super) static mut PER_CPU: PerCpu = PerCpu {
    kernel_rsp: 0,
    user_rsp: 0,
    record_frame: 0,
};

/// Make `record` (the saved registers in the record of the task about to
/// run in ring 3) where that task's system calls save their registers:
/// the syscall stub writes each call's frame straight into the record,
/// which the dispatcher then treats as the live frame. Every switch to a
/// task calls this (`task::schedule`), and so does whatever moves the
/// running task's record.
///
/// # Safety
/// `record` must stay valid — neither moved nor freed — for as long as its
/// task is the one that runs in ring 3, that is, until this is called
/// again for its new place or for the next task to run. Interrupts must
/// be off.
#[inline(always)]
pub unsafe fn save_calls_into(record: *mut TrapFrame) {
    // SAFETY: one CPU with interrupts off (the caller's promise): nothing
    // else reads or writes the block now; the syscall stub reads this
    // field only on the next entry from ring 3.
    unsafe { (*core::ptr::addr_of_mut!(PER_CPU)).record_frame = record as u64 };
}

/// The record [`save_calls_into`] was last given: where the syscall stub
/// saved the running task's registers on this call (the stub's argument,
/// found again without keeping it in a register).
#[inline(always)]
pub fn saved_record() -> *mut TrapFrame {
    // SAFETY: one CPU, and the kernel runs with interrupts off while it
    // handles a call: nothing writes the block while it is read here.
    unsafe { (*core::ptr::addr_of!(PER_CPU)).record_frame as *mut TrapFrame }
}

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

/// Where each register goes in a [`TrapFrame`] (its offset).
const F_R15: usize = offset_of!(TrapFrame, r15);
const F_R14: usize = offset_of!(TrapFrame, r14);
const F_R13: usize = offset_of!(TrapFrame, r13);
const F_R12: usize = offset_of!(TrapFrame, r12);
const F_R11: usize = offset_of!(TrapFrame, r11);
const F_R10: usize = offset_of!(TrapFrame, r10);
const F_R9: usize = offset_of!(TrapFrame, r9);
const F_R8: usize = offset_of!(TrapFrame, r8);
const F_RBP: usize = offset_of!(TrapFrame, rbp);
const F_RDI: usize = offset_of!(TrapFrame, rdi);
const F_RSI: usize = offset_of!(TrapFrame, rsi);
const F_RDX: usize = offset_of!(TrapFrame, rdx);
const F_RCX: usize = offset_of!(TrapFrame, rcx);
const F_RBX: usize = offset_of!(TrapFrame, rbx);
const F_RAX: usize = offset_of!(TrapFrame, rax);
const F_RIP: usize = offset_of!(TrapFrame, rip);
const F_RFLAGS: usize = offset_of!(TrapFrame, rflags);
const F_RSP: usize = offset_of!(TrapFrame, rsp);

/// Assembly that saves a system call's registers into the running task's
/// record (at the address the per-CPU block holds, see
/// [`save_calls_into`]) and leaves its address in RDI and the kernel
/// stack's top in RSP. The frame is written with moves from its start,
/// RSP being the one register free (every other holds the caller's
/// value until it is saved): no push, so nothing is written outside the
/// record. The hardware part is written as an interrupt from ring 3 would
/// have pushed it (RIP from RCX, RFLAGS from R11, RSP). Not written: the
/// vector and error code (only frames on the kernel stack are read for
/// them; the exits skip them); RCX and R11 themselves, which `syscall`
/// has overwritten with RIP and RFLAGS (the ABI gives them back
/// undefined): the record keeps whatever it held for them, this task's
/// own values from before (zero, its last interrupted state, or what it
/// last left there), never another task's; and CS and SS, which every
/// record holds as the user selectors already ([`user_selectors`]).
///
/// [`user_selectors`]: super::trap::TrapFrame::has_user_selectors
macro_rules! save_call {
    () => {
        concat!(
            "mov [rip + {per_cpu} + {user_rsp}], rsp\n",
            "mov rsp, [rip + {per_cpu} + {record_frame}]\n",
            "mov [rsp + {f_rax}], rax\n",
            "mov [rsp + {f_rbx}], rbx\n",
            "mov [rsp + {f_rdx}], rdx\n",
            "mov [rsp + {f_rsi}], rsi\n",
            "mov [rsp + {f_rdi}], rdi\n",
            "mov [rsp + {f_rbp}], rbp\n",
            "mov [rsp + {f_r8}], r8\n",
            "mov [rsp + {f_r9}], r9\n",
            "mov [rsp + {f_r10}], r10\n",
            "mov [rsp + {f_r12}], r12\n",
            "mov [rsp + {f_r13}], r13\n",
            "mov [rsp + {f_r14}], r14\n",
            "mov [rsp + {f_r15}], r15\n",
            "mov [rsp + {f_rip}], rcx\n",
            "mov [rsp + {f_rflags}], r11\n",
            "mov rcx, [rip + {per_cpu} + {user_rsp}]\n",
            "mov [rsp + {f_rsp}], rcx\n",
            // The record's address is the dispatcher's argument; the
            // kernel stack is empty. FMASK has cleared DF.
            "mov rdi, rsp\n",
            "mov rsp, [rip + {per_cpu} + {kernel_rsp}]\n",
        )
    };
}

/// [`save_call`] for a call with a direct entry (`Exchange`,
/// `CallObject`), whose number the entry knows: RAX is not saved but
/// used as the record's address, so the user RSP goes straight into the
/// record (RSP keeps the user's value until the kernel stack is loaded:
/// nothing is pushed in between, interrupts being off and NMI, #DF and
/// #MC on their own stacks), and the record's RAX keeps this task's own
/// earlier value, never another task's. Every path that resumes the task
/// writes its RAX first (a taken call's answer, once its receive
/// completes or fails; a declined call's general path, after the entry
/// has written the call's number there for the dispatcher to read).
/// The registers the direct path decides on (RSI, R8, R9, R12, R13) are
/// also passed to the entry as arguments, so that it does not load them
/// back from the record it has just written.
macro_rules! save_direct_call {
    () => {
        concat!(
            "mov rax, [rip + {per_cpu} + {record_frame}]\n",
            "mov [rax + {f_rsp}], rsp\n",
            "mov [rax + {f_rbx}], rbx\n",
            "mov [rax + {f_rdx}], rdx\n",
            "mov [rax + {f_rsi}], rsi\n",
            "mov [rax + {f_rdi}], rdi\n",
            "mov [rax + {f_rbp}], rbp\n",
            "mov [rax + {f_r8}], r8\n",
            "mov [rax + {f_r9}], r9\n",
            "mov [rax + {f_r10}], r10\n",
            "mov [rax + {f_r12}], r12\n",
            "mov [rax + {f_r13}], r13\n",
            "mov [rax + {f_r14}], r14\n",
            "mov [rax + {f_r15}], r15\n",
            "mov [rax + {f_rip}], rcx\n",
            "mov [rax + {f_rflags}], r11\n",
            // The entry's arguments (`syscall::direct_entry`): the record,
            // then the call's registers the direct path decides on, as
            // the record now holds them: RSI, R8 and R9 where they are,
            // R12 and R13 in RDX and RCX (saved above).
            "mov rdi, rax\n",
            "mov rdx, r12\n",
            "mov rcx, r13\n",
            "mov rsp, [rip + {per_cpu} + {kernel_rsp}]\n",
        )
    };
}

/// Assembly that leaves a system call through the frame at RDI (a task's
/// record, with the user selectors): every general register loaded from
/// it, RDI last, RSP at its hardware part, `iretq`. Moves with RSP set
/// once, not 15 pops and a step over the vector and error code: one
/// instruction fewer. RSP points into the record while the registers
/// are loaded, as it did while they were popped: interrupts are off, and
/// NMI, #DF and #MC run on their own stacks.
macro_rules! leave_through_rdi {
    () => {
        concat!(
            "lea rsp, [rdi + {f_rip}]\n",
            "mov r15, [rdi + {f_r15}]\n",
            "mov r14, [rdi + {f_r14}]\n",
            "mov r13, [rdi + {f_r13}]\n",
            "mov r12, [rdi + {f_r12}]\n",
            "mov r11, [rdi + {f_r11}]\n",
            "mov r10, [rdi + {f_r10}]\n",
            "mov r9, [rdi + {f_r9}]\n",
            "mov r8, [rdi + {f_r8}]\n",
            "mov rbp, [rdi + {f_rbp}]\n",
            "mov rsi, [rdi + {f_rsi}]\n",
            "mov rdx, [rdi + {f_rdx}]\n",
            "mov rcx, [rdi + {f_rcx}]\n",
            "mov rbx, [rdi + {f_rbx}]\n",
            "mov rax, [rdi + {f_rax}]\n",
            "mov rdi, [rdi + {f_rdi}]\n",
            "iretq\n",
        )
    };
}

/// `core::arch::$asm!` (`asm` or `naked_asm`) with the template and
/// operands given, then the saved frame's offsets as the named constants
/// `leave_through_rdi!` and the save macros use (`f_r15` … `f_rip`), then
/// `$tail` (options): one list for the stub and for [`leave_to`].
macro_rules! with_frame_offsets {
    ($asm:ident { $($operands:tt)* } $($tail:tt)*) => {
        core::arch::$asm!(
            $($operands)*
            f_r15 = const F_R15,
            f_r14 = const F_R14,
            f_r13 = const F_R13,
            f_r12 = const F_R12,
            f_r11 = const F_R11,
            f_r10 = const F_R10,
            f_r9 = const F_R9,
            f_r8 = const F_R8,
            f_rbp = const F_RBP,
            f_rdi = const F_RDI,
            f_rsi = const F_RSI,
            f_rdx = const F_RDX,
            f_rcx = const F_RCX,
            f_rbx = const F_RBX,
            f_rax = const F_RAX,
            f_rip = const F_RIP,
            $($tail)*
        )
    };
}

/// The LSTAR target.
///
/// `Exchange`, the call of the IPC round trip, is recognised first and
/// saved without a jump (`save_direct_call`: RAX, its number, is not
/// saved but holds the record's address); its entry leaves through
/// [`leave_to`]. Then
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
    with_frame_offsets!(naked_asm {
        "cmp rax, {exchange}",
        "jne 6f",
        save_direct_call!(),
        // Leaves through `leave_to`; it does not come back.
        "call {exchange_entry}",
        "6:",
        "test rax, rax",
        "jnz 2f",
        "mov rax, rcx",
        "shr rax, 47",
        "jnz 1f",
        "sysretq",
        "1:",
        "xor eax, eax",
        "2:",
        // `CallObject` goes to its own entry (as `Exchange`'s, it leaves
        // through `leave_to`), the rest to the dispatcher, which comes
        // back with the frame to resume.
        "cmp rax, {object_call}",
        "jne 5f",
        save_direct_call!(),
        "call {object_call_entry}",
        "5:",
        save_call!(),
        "call {dispatch}",
        "mov rdi, rax",
        leave_through_rdi!(),
        per_cpu = sym PER_CPU,
        user_rsp = const USER_RSP,
        kernel_rsp = const KERNEL_RSP,
        record_frame = const RECORD_FRAME,
        f_rflags = const F_RFLAGS,
        f_rsp = const F_RSP,
        exchange = const pandagen_abi::syscall::Syscall::Exchange as u64,
        dispatch = sym crate::syscall::syscall_dispatch,
        exchange_entry = sym crate::syscall::direct_entry::<pandagen_abi::syscall::ExchangeRegisters>,
        object_call = const pandagen_abi::syscall::Syscall::CallObject as u64,
        object_call_entry = sym crate::syscall::direct_entry::<pandagen_abi::syscall::ObjectCallRegisters>,
    })
}

/// Restores `frame` and returns to ring 3 with it: the exit of a system
/// call whose entry does not return to the stub (the direct entries,
/// `syscall::direct_entry`), as the stub's own exit does it
/// (`leave_through_rdi`), inlined where it is called (no `call`, the
/// frame's address put in RDI by the compiler). The kernel
/// stack is abandoned (every entry from ring 3 starts at its top), and
/// so is every register the caller of this kept: a system call's callee
/// leaves with the registers of `frame` alone.
///
/// # Safety
/// `frame` must be a valid ring-3 frame with the user selectors (a
/// task's record, the one [`save_calls_into`] was last given), which
/// nothing else uses any more: one CPU, interrupts off, the kernel lock
/// released. Only a system call's handler may call it (it runs with the
/// user's GS, which the exit leaves as it is).
#[inline(always)]
pub unsafe fn leave_to(frame: *mut TrapFrame) -> ! {
    // SAFETY: the caller's promise: `frame` is a valid ring-3 frame that
    // nothing else uses; `iretq` drops to ring 3 with its selectors and
    // never comes back here, so nothing the compiler kept (registers,
    // the stack) is needed again.
    unsafe {
        with_frame_offsets!(asm {
            leave_through_rdi!(),
            in("rdi") frame,
        } options(noreturn))
    }
}

/// Restores the frame at RSP and returns to ring 3 with it, swapping GS
/// to the user's (the boot context runs with the per-CPU block's; the
/// exit [`syscall_entry`] ends with is this without the swap: a system
/// call runs with the user's GS throughout).
#[unsafe(naked)]
unsafe extern "C" fn resume_user() {
    naked_asm!(pop_gprs!(), "add rsp, 16", "swapgs", "iretq",);
}

/// Leaves the boot context for good and runs `frame` (a ring-3 frame,
/// the first task's record); every later entry from ring 3 uses the
/// kernel stack (`init`).
///
/// # Safety
/// `frame` must be valid, a ring-3 frame, and the one [`save_calls_into`]
/// was last given.
pub unsafe fn enter_user(frame: *mut TrapFrame) -> ! {
    // SAFETY: valid (the caller's promise).
    let from_user = unsafe { (*frame).is_from_user() };
    assert!(from_user, "enter_user needs a ring-3 frame");
    // SAFETY: the frame's CS/SS are the user selectors, so `iretq` drops to
    // ring 3 and cannot resume kernel code; the boot stack is left for
    // good, and the exit path reads only the frame.
    unsafe {
        core::arch::asm!(
            "mov rsp, {frame}",
            "jmp {resume}",
            frame = in(reg) frame,
            resume = sym resume_user,
            options(noreturn),
        );
    }
}
