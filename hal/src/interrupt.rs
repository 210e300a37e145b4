//! Masking interrupts and attaching handlers to hardware interrupt vectors.

/// Why an interrupt operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterruptError {
    /// The vector is not one that can carry a device interrupt (on x86_64,
    /// vectors 0..32 are CPU exceptions and are handled by the kernel).
    InvalidVector,
    /// Another handler is already attached to this vector.
    VectorInUse,
}

/// Control over the interrupt flag and the device-interrupt handler table.
pub trait InterruptHal {
    /// Lets the CPU take maskable interrupts.
    fn enable_interrupts(&mut self);
    /// Stops the CPU from taking maskable interrupts.
    fn disable_interrupts(&mut self);
    /// Whether maskable interrupts are currently enabled.
    fn interrupts_enabled(&self) -> bool;
    /// Attaches `handler` to `vector`. Handlers run in interrupt context with
    /// interrupts disabled: they must not block or allocate.
    fn register_handler(&mut self, vector: u8, handler: fn()) -> Result<(), InterruptError>;
}
