//! The interrupt descriptor table.
//!
//! Vectors 0..32 (CPU exceptions) and 32..48 (legacy IRQs) get interrupt
//! gates to the stubs in `trap_entry`; the rest stay not-present (a stray
//! `int n` then raises #GP/#NP, which is reported like any fault). All gates
//! are interrupt gates (IF cleared on entry). Only #BP has DPL 3, so `int3`
//! in ring 3 reports as a breakpoint rather than a protection fault.

use super::gdt;
use super::trap_entry::{STUBS, STUB_COUNT};
use spin::Once;
use x86_64::instructions::tables::lidt;
use x86_64::structures::DescriptorTablePointer;
use x86_64::VirtAddr;

/// One 16-byte IDT gate descriptor.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

const PRESENT: u8 = 0x80;
const INTERRUPT_GATE: u8 = 0x0E;

impl Gate {
    fn new(handler: u64, ist: u8, dpl: u8) -> Self {
        Self {
            offset_low: handler as u16,
            selector: gdt::KERNEL_CODE,
            ist,
            type_attr: PRESENT | (dpl << 5) | INTERRUPT_GATE,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static IDT: Once<Idt> = Once::new();

/// Vector numbers with a name of their own.
pub mod vector {
    pub const DIVIDE_ERROR: u8 = 0;
    pub const INVALID_OPCODE: u8 = 6;
    pub const ALIGNMENT_CHECK: u8 = 17;
    pub const NMI: u8 = 2;
    pub const BREAKPOINT: u8 = 3;
    pub const DOUBLE_FAULT: u8 = 8;
    pub const GENERAL_PROTECTION: u8 = 13;
    pub const PAGE_FAULT: u8 = 14;
    pub const MACHINE_CHECK: u8 = 18;
}

/// Builds and loads the IDT. Call after [`gdt::init`].
pub fn init() {
    let idt = IDT.call_once(|| {
        let mut gates = [Gate::default(); 256];
        for (vec, stub) in STUBS.iter().enumerate().take(STUB_COUNT) {
            let ist = match vec as u8 {
                vector::DOUBLE_FAULT => gdt::IST_DOUBLE_FAULT,
                vector::NMI => gdt::IST_NMI,
                vector::MACHINE_CHECK => gdt::IST_MACHINE_CHECK,
                _ => 0,
            };
            let dpl = if vec as u8 == vector::BREAKPOINT {
                3
            } else {
                0
            };
            gates[vec] = Gate::new(*stub as usize as u64, ist, dpl);
        }
        Idt(gates)
    });
    let pointer = DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: VirtAddr::new(idt as *const Idt as u64),
    };
    // SAFETY: the table is a static that is never changed after this, and
    // every present gate points at a stub that ends in `iretq`.
    unsafe { lidt(&pointer) };
}

/// Reset the CPU the one way every x86 machine honours: load an empty IDT
/// and raise an exception. No handler can be found, the double fault
/// cannot be delivered either, and the third fault resets the processor.
pub fn triple_fault() -> ! {
    let empty = DescriptorTablePointer {
        limit: 0,
        base: VirtAddr::new(0),
    };
    x86_64::instructions::interrupts::disable();
    // SAFETY: deliberately unusable: the point is that the next exception
    // cannot be delivered. Nothing runs after it.
    unsafe {
        lidt(&empty);
        core::arch::asm!("int3", options(nomem, nostack));
    }
    super::halt_forever()
}
