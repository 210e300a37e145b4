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

    /// Attaches `handler` to a legacy IRQ vector (33..48) and opens that
    /// line at the PIC. Vector 32 (IRQ 0) is the kernel's scheduler tick and
    /// cannot be taken over.
    fn register_handler(&mut self, vector: u8, handler: fn()) -> Result<(), InterruptError> {
        if !pic::is_irq_vector(vector) || vector == pic::IRQ_BASE {
            return Err(InterruptError::InvalidVector);
        }
        // The table is read in interrupt context: update it with interrupts
        // off so the reader can never spin on a lock held by this CPU.
        with_interrupts_off(|| {
            let mut table = HANDLERS.lock();
            let slot = &mut table[usize::from(vector - pic::IRQ_BASE)];
            if slot.is_some() {
                return Err(InterruptError::VectorInUse);
            }
            *slot = Some(handler);
            // SAFETY: the handler is in place, so the line may fire; the
            // kernel's IDT routes all IRQ vectors to the dispatcher.
            #[cfg(target_os = "none")]
            unsafe {
                pic::unmask(vector - pic::IRQ_BASE)
            };
            Ok(())
        })
    }
}

/// Runs `f` with interrupts disabled. Hosted builds (unit tests) run in
/// ring 3, where CLI is forbidden and there are no interrupts to mask.
fn with_interrupts_off<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_os = "none")]
    {
        interrupts::without_interrupts(f)
    }
    #[cfg(not(target_os = "none"))]
    {
        f()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn nothing() {}

    #[test]
    fn only_free_device_irq_vectors_can_be_registered() {
        let mut hal = X86Interrupts;
        assert_eq!(
            hal.register_handler(14, nothing),
            Err(InterruptError::InvalidVector)
        );
        assert_eq!(
            hal.register_handler(32, nothing),
            Err(InterruptError::InvalidVector)
        );
        assert_eq!(
            hal.register_handler(48, nothing),
            Err(InterruptError::InvalidVector)
        );
        assert_eq!(hal.register_handler(45, nothing), Ok(()));
        assert_eq!(
            hal.register_handler(45, nothing),
            Err(InterruptError::VectorInUse)
        );
        assert!(dispatch(45));
        assert!(!dispatch(46));
        assert!(!dispatch(3));
    }
}
