//! Misbehaves in the way its task name says. Each of these must end only
//! this task, with `ExitReason::Failure` naming the fault.
#![no_std]
#![no_main]

extern crate alloc;

use core::arch::asm;
use pandagen_abi::{ExitReason, FailureCause, KernelError};
use pandagen_rt::Kernel;
use pandagen_scenarios::NO_ALIGNMENT_CHECK;

pandagen_rt::entry!(main);

static READ_ONLY: u64 = 7;

fn main(kernel: &mut Kernel) -> Result<(), KernelError> {
    let info = kernel.startup()?;
    // SAFETY (for every block below): these deliberately break the rules;
    // the point of the program is that the CPU faults and the kernel ends
    // this task. None of them can harm anything but this task.
    unsafe {
        match info.name.as_str() {
            "fault_pf_user" => {
                core::ptr::read_volatile(0x10 as *const u64);
            }
            "fault_pf_kernel" => {
                core::ptr::read_volatile(0xffff_8000_0000_1000u64 as *const u64);
            }
            "fault_write_rodata" => {
                let address = core::hint::black_box(core::ptr::addr_of!(READ_ONLY) as usize);
                asm!("mov qword ptr [{0}], 1", in(reg) address);
            }
            "fault_exec_data" => {
                let data: [u8; 4] = [0x90, 0x90, 0x90, 0xc3];
                let f: extern "C" fn() = core::mem::transmute(data.as_ptr());
                f();
            }
            "fault_jump_kernel" => {
                asm!("jmp {0}", in(reg) 0xffff_8000_0010_0000u64, options(noreturn));
            }
            "fault_gp" => {
                core::ptr::read_volatile(0x8000_0000_0000_0000u64 as *const u64);
            }
            "fault_ud" => asm!("ud2"),
            "fault_de" => {
                asm!("xor edx, edx", "xor eax, eax", "xor ecx, ecx", "div ecx", out("eax") _, out("ecx") _, out("edx") _)
            }
            "fault_bp" => asm!("int3"),
            "fault_ac" => {
                asm!(
                    "pushfq",
                    "or qword ptr [rsp], 0x40000",
                    "popfq",
                    "mov rax, rsp",
                    "add rax, 1",
                    "mov rax, [rax]",
                    "pushfq",
                    "and qword ptr [rsp], ~0x40000",
                    "popfq",
                    out("rax") _,
                );
                // Still here: this CPU does not enforce alignment checks
                // (QEMU's TCG does not emulate #AC). Say so explicitly, so
                // the suite can tell it from a kernel that ignored the fault.
                kernel.exit(ExitReason::Failure {
                    error: FailureCause::Described(NO_ALIGNMENT_CHECK.into()),
                });
            }
            "fault_priv_hlt" => asm!("hlt"),
            "fault_priv_cr3" => asm!("mov rax, cr3", out("rax") _),
            "fault_priv_out" => asm!("out 0xf4, al", in("al") 0x10u8),
            "fault_stack" => {
                recurse(0);
            }
            "fault_panic" => panic!("deliberate panic"),
            _ => return Ok(()),
        }
    }
    Ok(())
}

/// Unbounded recursion, on purpose: the stack runs into its guard page.
#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = [depth; 64];
    core::hint::black_box(&frame);
    recurse(depth + 1) + core::hint::black_box(frame[3])
}
