//! The interrupt flag and the table of device-interrupt handlers.
//!
//! The kernel's trap dispatcher calls [`dispatch`] for every legacy IRQ
//! vector it does not handle itself (the timer is handled by the kernel
//! directly because it may switch tasks).

use super::pic;
use crate::interrupt::{InterruptError, InterruptHal};
use spin::Mutex;
use x86_64::instructions::interrupts;

type HandlerTable = [Option<fn()>; pic::IRQ_COUNT as usize];

static HANDLERS: Mutex<HandlerTable> = Mutex::new([None; pic::IRQ_COUNT as usize]);

/// The x86_64 [`InterruptHal`].
#[derive(Debug, Default)]
pub struct X86Interrupts;

impl InterruptHal for X86Interrupts {
    fn enable_interrupts(&mut self) {
        interrupts::enable();
    }

    fn disable_interrupts(&mut self) {
        interrupts::disable();
    }

    fn interrupts_enabled(&self) -> bool {
        interrupts::are_enabled()
    }

    fn register_handler(&mut self, vector: u8, handler: fn()) -> Result<(), InterruptError> {
        if !pic::is_irq_vector(vector) {
            return Err(InterruptError::InvalidVector);
        }
        // The table is read in interrupt context: update it with interrupts
        // off so the reader can never spin on a lock held by this CPU.
        interrupts::without_interrupts(|| {
            let mut table = HANDLERS.lock();
            let slot = &mut table[usize::from(vector - pic::IRQ_BASE)];
            if slot.is_some() {
                return Err(InterruptError::VectorInUse);
            }
            *slot = Some(handler);
            Ok(())
        })
    }
}

/// Runs the handler registered for `vector`. Returns `false` if there is
/// none. Call with interrupts disabled (as they are inside a trap).
pub fn dispatch(vector: u8) -> bool {
    if !pic::is_irq_vector(vector) {
        return false;
    }
    let handler = HANDLERS.lock()[usize::from(vector - pic::IRQ_BASE)];
    match handler {
        Some(handler) => {
            handler();
            true
        }
        None => false,
    }
}
