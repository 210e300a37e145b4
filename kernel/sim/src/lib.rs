//! # pandagen-sim — the simulated kernel (work in progress)
pub mod clock;
pub mod fault;
mod held;
pub mod injector;
pub mod rng;
pub mod trace;

pub use fault::{ChannelKey, FaultPlan};
pub use injector::FaultInjector;
pub use trace::Trace;
