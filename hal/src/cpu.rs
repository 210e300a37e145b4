//! The processor itself: halting and identifying the current CPU.

/// Operations on the CPU that executes the caller.
pub trait CpuHal {
    /// Stops the CPU until the next interrupt arrives.
    fn halt(&self);
    /// The caller's current stack pointer.
    fn stack_pointer(&self) -> usize;
    /// An instruction address inside the caller.
    fn instruction_pointer(&self) -> usize;
    /// A small number identifying this CPU (its local APIC id on x86_64).
    fn cpu_id(&self) -> u32;
}
