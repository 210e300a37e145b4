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
//! which can strike when the current stack is unusable (each with a guard
//! page, see [`stacks`](super::stacks)), and RSP0, the stack
//! the CPU switches to on an interrupt from ring 3 ([`set_kernel_stack`]).
//!
//! Behind the TSS lies the I/O permission bitmap, one bit per port (set:
//! `in`/`out` from ring 3 faults with #GP), covering all 65,536 ports and
//! all set, so ring 3 reaches no port, until the scheduler opens the ports
//! of the running task's windows ([`set_port_access`]; see
//! `crate::device`'s port windows).

use core::ptr::{addr_of, addr_of_mut};
use pandagen_abi::device::PortRange;
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

/// Bytes of the I/O permission bitmap: a bit per port, then the byte of
/// ones the CPU requires after it.
const IO_BITMAP_BYTES: usize = 65536 / 8 + 1;

/// The TSS with its I/O permission bitmap right behind it (`iomap_base`
/// is the TSS's size, as `TaskStateSegment::new` sets it).
#[repr(C)]
struct TssWithIoBitmap {
    tss: TaskStateSegment,
    io_bitmap: [u8; IO_BITMAP_BYTES],
}

static mut TSS: TssWithIoBitmap = TssWithIoBitmap {
    tss: TaskStateSegment::new(),
    io_bitmap: [0xff; IO_BITMAP_BYTES],
};
static GDT: Once<(GlobalDescriptorTable, Selectors)> = Once::new();

/// Builds and loads the GDT and TSS, and reloads every segment register.
pub fn init() {
    // SAFETY: only a raw pointer to the static is made here; every access
    // through it below says why it holds.
    let tss = unsafe { addr_of_mut!(TSS.tss) };
    for (slot, ist) in [IST_DOUBLE_FAULT, IST_NMI, IST_MACHINE_CHECK]
        .into_iter()
        .enumerate()
    {
        let top = super::stacks::ist_stack_top(slot);
        // SAFETY: runs once on the boot CPU before the TSS is loaded, so
        // nothing else reads it.
        // The TSS is packed, so its arrays are copied out, edited and
        // written back rather than indexed in place.
        unsafe {
            let mut table = (*tss).interrupt_stack_table;
            table[usize::from(ist - 1)] = VirtAddr::new(top);
            (*tss).interrupt_stack_table = table;
        }
    }
    let (gdt, selectors) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let kernel_code = gdt.append(Descriptor::kernel_code_segment());
        let kernel_data = gdt.append(Descriptor::kernel_data_segment());
        let user_data = gdt.append(Descriptor::user_data_segment());
        let user_code = gdt.append(Descriptor::user_code_segment());
        // SAFETY: TSS is a static that lives forever; the references live
        // only for this call (which reads the TSS's `iomap_base` and the
        // bitmap's address, length and last byte), and after this point it
        // is only changed through `set_kernel_stack` and
        // `set_port_access`, field by field.
        let descriptor = unsafe {
            Descriptor::tss_segment_with_iomap(&*addr_of!(TSS.tss), &*addr_of!(TSS.io_bitmap))
        }
        .expect("the I/O bitmap follows the TSS, with its closing byte");
        let tss = gdt.append(descriptor);
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
        let tss = addr_of_mut!(TSS.tss);
        let mut table = (*tss).privilege_stack_table;
        table[0] = top;
        (*tss).privilege_stack_table = table;
    }
}

/// Let ring 3 use the ports of `range` with `in` and `out` (`allowed`), or
/// make them fault again. The bitmap is read by the CPU at each `in` or
/// `out` in ring 3, so a change applies to the next one.
pub fn set_port_access(range: PortRange, allowed: bool) {
    for port in range.first..=range.last {
        let (byte, bit) = (usize::from(port / 8), 1u8 << (port % 8));
        // SAFETY: `byte` < 8192 (a port is below 65,536), inside the
        // bitmap, never the closing byte; only the kernel writes it, with
        // interrupts off under the kernel state's lock, and no interrupt
        // handler touches it. The access is by raw pointer, never a
        // reference, since the CPU reads the bitmap too.
        unsafe {
            let at = addr_of_mut!(TSS.io_bitmap).cast::<u8>().add(byte);
            let old = at.read_volatile();
            at.write_volatile(if allowed { old & !bit } else { old | bit });
        }
    }
}
