//! The two legacy 8259 interrupt controllers, remapped above the CPU
//! exception vectors.
//!
//! IRQ 0..7 arrive on vectors 32..39, IRQ 8..15 on 40..47. Everything
//! starts masked; [`unmask`] opens one line.

use pic8259::ChainedPics;
use spin::Mutex;
use x86_64::instructions::port::Port;

/// Vector of IRQ 0.
pub const IRQ_BASE: u8 = 32;
/// Number of legacy IRQ lines.
pub const IRQ_COUNT: u8 = 16;

// SAFETY: 32 and 40 are the vectors right above the 32 CPU exceptions and
// overlap nothing else.
static PICS: Mutex<ChainedPics> = Mutex::new(unsafe { ChainedPics::new(IRQ_BASE, IRQ_BASE + 8) });

/// Remaps both controllers and masks every line.
///
/// # Safety
/// Ring 0 with interrupts disabled, and the IDT must handle vectors 32..48.
pub unsafe fn init() {
    let mut pics = PICS.lock();
    // SAFETY: forwarded to the caller.
    unsafe {
        pics.initialize();
        pics.write_masks(0xFF, 0xFF);
    }
}

/// Opens IRQ line `irq` (0..16); opening a line on the secondary also opens
/// the cascade line 2 on the primary.
///
/// # Safety
/// Ring 0; the IDT must handle the line's vector.
pub unsafe fn unmask(irq: u8) {
    // SAFETY: forwarded to the caller.
    unsafe {
        update_masks(irq, |primary, secondary| {
            if irq < 8 {
                *primary &= !(1 << irq);
            } else {
                *secondary &= !(1 << (irq - 8));
                *primary &= !(1 << 2);
            }
        })
    }
}

/// Closes IRQ line `irq` (0..16): the controller holds its requests until
/// it is unmasked. The cascade stays open for the secondary's other lines.
///
/// # Safety
/// Ring 0.
pub unsafe fn mask(irq: u8) {
    // SAFETY: forwarded to the caller.
    unsafe {
        update_masks(irq, |primary, secondary| {
            if irq < 8 {
                *primary |= 1 << irq;
            } else {
                *secondary |= 1 << (irq - 8);
            }
        })
    }
}

/// Read both mask registers, let `change` edit them, write them back.
///
/// # Safety
/// Ring 0.
unsafe fn update_masks(irq: u8, change: impl FnOnce(&mut u8, &mut u8)) {
    assert!(irq < IRQ_COUNT, "IRQ {irq} does not exist");
    // The lock is also taken by `end_of_interrupt` in interrupt context, so
    // hold it only with interrupts off.
    x86_64::instructions::interrupts::without_interrupts(|| {
        let mut pics = PICS.lock();
        // SAFETY: forwarded to the caller; masks only change which lines fire.
        unsafe {
            let [mut primary, mut secondary] = pics.read_masks();
            change(&mut primary, &mut secondary);
            pics.write_masks(primary, secondary);
        }
    });
}

/// Whether `vector` is a legacy IRQ vector.
pub fn is_irq_vector(vector: u8) -> bool {
    (IRQ_BASE..IRQ_BASE + IRQ_COUNT).contains(&vector)
}

/// Whether an interrupt on `vector` is spurious: IRQ 7 or 15 raised by the
/// controller without the line really being in service. A spurious
/// interrupt must not be acknowledged on the controller that raised it.
///
/// # Safety
/// Ring 0.
pub unsafe fn is_spurious(vector: u8) -> bool {
    let (command, bit) = match vector - IRQ_BASE {
        7 => (0x20u16, 7),
        15 => (0xA0u16, 7),
        _ => return false,
    };
    let mut port: Port<u8> = Port::new(command);
    // SAFETY: OCW3 0x0B selects the in-service register for the next read;
    // reading it has no other effect.
    let in_service = unsafe {
        port.write(0x0B);
        port.read()
    };
    in_service & (1 << bit) == 0
}

/// Acknowledges the interrupt on `vector` so the line can fire again. For a
/// spurious IRQ 15 only the primary (which saw a real cascade) is told.
///
/// # Safety
/// Ring 0, called once per taken IRQ, from its handler.
pub unsafe fn end_of_interrupt(vector: u8) {
    // SAFETY: forwarded to the caller.
    unsafe {
        if is_spurious(vector) {
            if vector == IRQ_BASE + 15 {
                Port::<u8>::new(0x20).write(0x20);
            }
            return;
        }
        PICS.lock().notify_end_of_interrupt(vector);
    }
}
