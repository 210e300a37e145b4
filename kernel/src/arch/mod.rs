//! Architecture-specific code. Only x86_64 exists.

pub mod x86_64;

pub use self::x86_64::halt_forever;
