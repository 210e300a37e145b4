//! The adversary suite's shared vocabulary: how an attack program reports
//! to the suite (`suite_adversary`) and then waits to be killed.
//!
//! Every attack program is spawned with, as its first capability, a
//! send-only capability for the suite's inbox (to which the kernel channel
//! that is every attacker's exit route is bound, as the process manager's
//! is to its public channel). It tries what its finding describes, sends one
//! [`REPORT_ACTION`] message saying whether every attempt was refused, and
//! then parks until the suite kills it. The suite checks the outcome
//! independently as well (registrations, capability counts, the services
//! answering, the kernel's heap and frames).

use alloc::string::String;
use alloc::vec::Vec;

use pandagen_abi::{
    Cap, CapHandle, ChannelId, KernelApi, KernelError, MessageEnvelope, MessagePayload,
    SchemaVersion, ServiceId,
};

/// The action of an attacker's report; the payload is a `String`, empty
/// when every attempt was refused as it must be, else what got through.
pub const REPORT_ACTION: &str = "adversary.report";
/// The schema of the report.
pub const REPORT_SCHEMA: SchemaVersion = SchemaVersion::new(1, 0);
/// The action of an attacker's first message, for attacks the suite takes
/// part in: it carries the capability the suite needs (a send right to
/// the attacker's channel), with the report's schema and no payload.
pub const READY_ACTION: &str = "adversary.ready";
/// The budget of an attacker lent device capabilities (`attack_devices`):
/// small, so that an attack that makes the kernel hold memory for it runs
/// into it within seconds.
pub const DEVICE_ATTACKER_BUDGET: pandagen_abi::Budget = pandagen_abi::Budget::new(128 << 10, 8192);
/// Refused uses in `attack_console`'s audit flood.
pub const AUDIT_FLOOD: u32 = 20_000;
/// Refusal records the kernel keeps per task in its audit ring (the
/// core's `REFUSALS_KEPT_PER_TASK`; the suite checks the flood against it).
pub const REFUSALS_KEPT_PER_TASK: usize = 8;
/// The destination written on reports (the suite registers nothing).
const SUITE: ServiceId = ServiceId::from_raw(0);

/// Collects what got through during an attack.
#[derive(Default)]
pub struct Breaches(Vec<String>);

impl Breaches {
    /// Record `what` unless `outcome` is the refusal `expected` says.
    pub fn expect_refused<T: core::fmt::Debug>(
        &mut self,
        what: &str,
        outcome: Result<T, KernelError>,
        expected: impl Fn(&KernelError) -> bool,
    ) {
        match outcome {
            Err(ref e) if expected(e) => {}
            other => self.0.push(alloc::format!("{what}: {other:?}")),
        }
    }

    /// Record a breach described by `what`.
    pub fn record(&mut self, what: String) {
        self.0.push(what);
    }

    /// The report text: empty when nothing got through.
    pub fn into_text(self) -> String {
        self.0.join("; ")
    }
}

/// Send the report (moving `capabilities` back to the suite with it).
pub fn report<K: KernelApi>(
    kernel: &mut K,
    inbox: ChannelId,
    breaches: Breaches,
    capabilities: Vec<Cap<()>>,
) -> Result<(), KernelError> {
    let text = breaches.into_text();
    let payload = MessagePayload::new(&text)?;
    let envelope = MessageEnvelope::new(SUITE, REPORT_ACTION, REPORT_SCHEMA, payload);
    kernel.send_with_capabilities(inbox, envelope, capabilities)
}

/// Wait until killed: block receiving on a channel of one's own, which
/// stays open (the caller keeps its send right) and on which nothing is
/// ever sent.
pub fn park<K: KernelApi>(kernel: &mut K) -> Result<(), KernelError> {
    let nowhere = kernel.create_channel()?;
    loop {
        kernel.receive_message(nowhere, None)?;
    }
}

/// The refusals of a handle that names no capability the call may use:
/// nothing there, the wrong kind, or too few rights.
pub fn no_capability(e: &KernelError) -> bool {
    matches!(
        e,
        KernelError::InvalidCapability
            | KernelError::WrongCapabilityKind { .. }
            | KernelError::InsufficientAuthority
    )
}

/// Handles an attacker may try without holding them: the first 256 and
/// one it has just dropped (stale), except its own (`own`).
pub fn guessed_handles<K: KernelApi>(
    kernel: &mut K,
    own: &[CapHandle],
) -> Result<Vec<CapHandle>, KernelError> {
    let dropped = kernel.create_channel()?;
    kernel.drop_capability(Cap::<()>::from_handle(dropped.handle()))?;
    Ok((0..256u64)
        .map(CapHandle::from_raw)
        .chain([dropped.handle()])
        .filter(|h| !own.contains(h))
        .collect())
}
