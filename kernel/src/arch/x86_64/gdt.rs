//! The GDT and the TSS.
//!
//! Segment layout (the order SYSCALL/SYSRET require):
//!
//! | selector | descriptor                                  |
//! |----------|---------------------------------------------|
//! | 0x00     | null                                        |
//! | 0x08     | kernel code (64-bit)                        |
//! | 0x10     | kernel data                                 |
//! | 0x18     | user data   (selector 0x1B with RPL 3)      |
//! | 0x20     | user code, 64-bit (selector 0x23 with RPL 3)|
//! | 0x28     | TSS (two slots)                             |
//!
//! SYSCALL loads CS = STAR bits 47..32 = 0x08 and SS = 0x08 + 8 = 0x10.
//! SYSRET (64-bit) loads SS = STAR bits 63..48 + 8 = 0x18|3 and
//! CS = STAR bits 63..48 + 16 = 0x20|3, so STAR bits 63..48 = 0x10: see [`STAR`].
//!
//! The TSS provides separate interrupt stacks (IST) for #DF, NMI and #MC,
//! which can strike when the current stack is unusable, and RSP0, the stack
//! the CPU switches to on an interrupt from ring 3 ([`set_kernel_stack`]).

use core::ptr::addr_of_mut;
use spin::Once;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

/// IST slot (1-based, as the IDT gate names it) for the double fault.
pub const IST_DOUBLE_FAULT: u8 = 1;
/// IST slot for NMI.
pub const IST_NMI: u8 = 2;
/// IST slot for the machine check.
pub const IST_MACHINE_CHECK: u8 = 3;

const IST_STACK_SIZE: usize = 16 * 1024;

/// The selectors of every segment.
#[derive(Debug, Clone, Copy)]
pub struct Selectors {
    pub kernel_code: SegmentSelector,
    pub kernel_data: SegmentSelector,
    pub user_data: SegmentSelector,
    pub user_code: SegmentSelector,
    pub tss: SegmentSelector,
}

/// Kernel code selector.
pub const KERNEL_CODE: u16 = 0x08;
/// Kernel data selector.
pub const KERNEL_DATA: u16 = 0x10;
/// User data selector, RPL 3.
pub const USER_DATA: u16 = 0x18 | 3;
/// User 64-bit code selector, RPL 3.
pub const USER_CODE: u16 = 0x20 | 3;
/// The value for the STAR MSR: SYSCALL base 0x08, SYSRET base 0x10.
pub const STAR: u64 = (0x10 << 48) | ((KERNEL_CODE as u64) << 32);

#[repr(C, align(16))]
struct IstStack([u8; IST_STACK_SIZE]);

static mut IST_STACKS: [IstStack; 3] = [const { IstStack([0; IST_STACK_SIZE]) }; 3];
static mut TSS: TaskStateSegment = TaskStateSegment::new();
static GDT: Once<(GlobalDescriptorTable, Selectors)> = Once::new();

/// Builds and loads the GDT and TSS, and reloads every segment register.
pub fn init() {
    let tss = addr_of_mut!(TSS);
    for (slot, ist) in [IST_DOUBLE_FAULT, IST_NMI, IST_MACHINE_CHECK]
        .into_iter()
        .enumerate()
    {
        // SAFETY: IST_STACKS is only ever used as raw stack memory by the
        // CPU; taking its address creates no reference.
        let base = unsafe { addr_of_mut!(IST_STACKS[slot]) } as u64;
        // SAFETY: runs once on the boot CPU before the TSS is loaded, so
        // nothing else reads it.
        // The TSS is packed, so its arrays are copied out, edited and
        // written back rather than indexed in place.
        unsafe {
            let mut table = (*tss).interrupt_stack_table;
            table[usize::from(ist - 1)] = VirtAddr::new(base + IST_STACK_SIZE as u64);
            (*tss).interrupt_stack_table = table;
        }
    }
    let (gdt, selectors) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let kernel_code = gdt.append(Descriptor::kernel_code_segment());
        let kernel_data = gdt.append(Descriptor::kernel_data_segment());
        let user_data = gdt.append(Descriptor::user_data_segment());
        let user_code = gdt.append(Descriptor::user_code_segment());
        // SAFETY: TSS is a static that lives forever, and after this point
        // it is only changed through `set_kernel_stack`, field by field.
        let tss = gdt.append(unsafe { Descriptor::tss_segment_unchecked(tss) });
        (
            gdt,
            Selectors {
                kernel_code,
                kernel_data,
                user_data,
                user_code,
                tss,
            },
        )
    });
    assert_eq!(selectors.kernel_code.0, KERNEL_CODE);
    assert_eq!(selectors.kernel_data.0, KERNEL_DATA);
    assert_eq!(selectors.user_data.0, USER_DATA);
    assert_eq!(selectors.user_code.0, USER_CODE);
    gdt.load();
    // SAFETY: the selectors index valid descriptors of the GDT just loaded.
    unsafe {
        CS::set_reg(selectors.kernel_code);
        SS::set_reg(selectors.kernel_data);
        DS::set_reg(selectors.kernel_data);
        ES::set_reg(selectors.kernel_data);
        load_tss(selectors.tss);
    }
}

/// The segment selectors (after [`init`]).
#[cfg(feature = "test-harness")]
pub fn selectors() -> Selectors {
    GDT.get().expect("GDT not initialised").1
}

/// Sets RSP0: the stack the CPU switches to when an interrupt or exception
/// arrives in ring 3. The scheduler calls this whenever it switches to a
/// task, with the top of that task's kernel stack.
pub fn set_kernel_stack(top: VirtAddr) {
    // SAFETY: a store into the static TSS (copied out and back because the
    // struct is packed); the CPU reads RSP0 only when it delivers an
    // interrupt from ring 3, which cannot happen while the kernel runs this.
    unsafe {
        let tss = addr_of_mut!(TSS);
        let mut table = (*tss).privilege_stack_table;
        table[0] = top;
        (*tss).privilege_stack_table = table;
    }
}
