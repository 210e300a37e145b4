//! Demonstration services for supervision scenarios (the QEMU suite and
//! host tests): a service that registers, answers every request that
//! carries a reply capability with an empty, correlated reply, exits
//! normally on the process manager's shutdown request, and — if told to —
//! fails on purpose after a while.

use core::time::Duration;

use pandagen_abi::{
    Cap, ChannelId, ExitReason, FailureCause, Instant, KernelApi, KernelError, MessageEnvelope,
    MessagePayload, ReceivedMessage, ServiceId,
};

use crate::protocol::SHUTDOWN_ACTION;

/// The steady demo service.
pub const STEADY: ServiceId = ServiceId::from_raw(60);
/// The demo service that fails on purpose.
pub const CRASHER: ServiceId = ServiceId::from_raw(61);
/// The action of a demo reply.
pub const PONG_ACTION: &str = "demo.pong";

pub struct DemoService {
    channel: ChannelId,
    fail_at: Option<Instant>,
}

impl DemoService {
    /// Create a channel and register `service`; fail `fail_after` from now
    /// if given.
    pub fn start<K: KernelApi>(
        kernel: &mut K,
        service: ServiceId,
        fail_after: Option<Duration>,
    ) -> Result<Self, KernelError> {
        let channel = kernel.create_channel()?;
        kernel.register_service(service, channel)?;
        let now = kernel.now();
        Ok(DemoService {
            channel,
            fail_at: fail_after.map(|d| now + d),
        })
    }

    pub fn channel(&self) -> ChannelId {
        self.channel
    }

    /// When it will fail on purpose, if it will.
    pub fn fail_at(&self) -> Option<Instant> {
        self.fail_at
    }

    /// The failure it ends with on purpose.
    pub fn failure() -> ExitReason {
        ExitReason::Failure {
            error: FailureCause::Described("failing on purpose".into()),
        }
    }

    /// Handle one message; `Some` means the service should end that way.
    pub fn handle<K: KernelApi>(
        &mut self,
        kernel: &mut K,
        message: ReceivedMessage,
    ) -> Option<ExitReason> {
        let mut capabilities = message.capabilities.into_iter();
        let reply = capabilities.next();
        for extra in capabilities {
            let _ = kernel.drop_capability(extra);
        }
        if message.envelope.action == SHUTDOWN_ACTION {
            if let Some(reply) = reply {
                let _ = kernel.drop_capability(reply);
            }
            return Some(ExitReason::Normal);
        }
        if let Some(reply) = reply {
            let answer =
                MessageEnvelope::reply_to(&message.envelope, PONG_ACTION, MessagePayload::empty());
            let _ = kernel.send_message(ChannelId::from_handle(reply.handle()), answer);
            let _ = kernel.drop_capability(reply);
        }
        None
    }

    /// Serve until shut down or until the failure time.
    pub fn run<K: KernelApi>(&mut self, kernel: &mut K) -> ExitReason {
        loop {
            let now = kernel.now();
            let timeout = match self.fail_at {
                Some(at) if now >= at => return Self::failure(),
                Some(at) => Some(at.saturating_duration_since(now)),
                None => None,
            };
            match kernel.receive_with_capabilities(self.channel, timeout) {
                Ok(message) => {
                    if let Some(reason) = self.handle(kernel, message) {
                        return reason;
                    }
                }
                Err(KernelError::Timeout) => {}
                Err(error) => {
                    return ExitReason::Failure {
                        error: FailureCause::Described(alloc::format!("receive failed: {error}")),
                    }
                }
            }
        }
    }
}

/// Look `service` up, send it a request and wait up to `timeout` for its
/// reply (what the suite uses to check that a service still serves). The
/// looked-up capability is dropped again.
pub fn ping<K: KernelApi>(
    kernel: &mut K,
    service: ServiceId,
    timeout: Duration,
) -> Result<(), KernelError> {
    let channel = kernel.lookup_service(service)?;
    let result = ping_over(kernel, channel, service, timeout);
    let _ = kernel.drop_capability(Cap::from(channel));
    result
}

/// Send a request over a channel the caller already holds (for example one
/// looked up before the service restarted) and wait up to `timeout` for
/// the reply.
pub fn ping_over<K: KernelApi>(
    kernel: &mut K,
    channel: ChannelId,
    service: ServiceId,
    timeout: Duration,
) -> Result<(), KernelError> {
    let reply = kernel.create_channel()?;
    let result = (|| {
        let cap = kernel.clone_capability(
            &Cap::from(reply),
            pandagen_abi::Rights::SEND | pandagen_abi::Rights::TRANSFER,
        )?;
        let request = MessageEnvelope::new(
            service,
            "demo.ping",
            crate::protocol::SCHEMA,
            MessagePayload::empty(),
        );
        let id = request.id;
        let cap_handle = cap.handle();
        if let Err(error) = kernel.send_with_capabilities(channel, request, alloc::vec![cap]) {
            let _ = kernel.drop_capability(Cap::from_handle(cap_handle));
            return Err(error);
        }
        loop {
            let answer = kernel.receive_message(reply, Some(timeout))?;
            if answer.correlation_id == Some(id) {
                return Ok(());
            }
        }
    })();
    let _ = kernel.drop_capability(Cap::from(reply));
    result
}

/// What a client of a restarting service must see, checked from the
/// client's side: it looks `service` up and is answered; once the instance
/// is gone, sending on that channel fails with `ChannelClosed` (never a
/// hang, never a silent drop); a new lookup finds the restarted instance,
/// which answers; and the old channel stays closed. Gives up after
/// `within`. Every lookup is a capability of its own, so the caller may
/// share its capability space with the service's supervisor.
pub fn observe_restart<K: KernelApi>(
    kernel: &mut K,
    service: ServiceId,
    within: Duration,
) -> Result<(), alloc::string::String> {
    use alloc::format;
    use pandagen_abi::error::SendError;

    let deadline = kernel.now() + within;
    let poll = Duration::from_millis(10);
    let timeout = Duration::from_millis(100);
    let wait = |kernel: &mut K, what: &str| {
        if kernel.now() >= deadline {
            return Err(format!("{what} within {within:?}"));
        }
        kernel.sleep(poll).map_err(|e| format!("sleep: {e}"))
    };
    // Every lookup is a new capability; once the old channel has closed,
    // a lookup can only find the new instance's.
    let lookup = |kernel: &mut K| match kernel.lookup_service(service) {
        Ok(channel) => Ok(Some(channel)),
        Err(KernelError::ServiceNotFound(_)) => Ok(None),
        Err(e) => Err(format!("lookup: {e}")),
    };

    // An instance that answered, then ended: its channel is `old`. An
    // instance found too late in its life to answer before it ended (or
    // while the host stalled) proves nothing; the next one is watched.
    let old = loop {
        let found = loop {
            if let Some(channel) = lookup(kernel)? {
                break channel;
            }
            wait(kernel, "no instance that answered and then ended")?;
        };
        let mut answered = false;
        loop {
            match ping_over(kernel, found, service, timeout) {
                Ok(()) => answered = true,
                // It died between our send and its reply (or the host stalled).
                Err(KernelError::Timeout) => {}
                Err(KernelError::SendFailed(SendError::ChannelClosed)) => break,
                Err(e) => return Err(format!("old channel before it closed: {e}")),
            }
            wait(kernel, "the instance did not end")?;
        }
        if answered {
            break found;
        }
        let _ = kernel.drop_capability(Cap::from(found));
    };
    let new = loop {
        if let Some(channel) = lookup(kernel)? {
            break channel;
        }
        wait(kernel, "no new instance registered")?;
    };
    let result = ping_over(kernel, new, service, timeout)
        .map_err(|e| format!("new instance: {e}"))
        .and_then(|()| match ping_over(kernel, old, service, timeout) {
            Err(KernelError::SendFailed(SendError::ChannelClosed)) => Ok(()),
            other => Err(format!("old channel after the restart: {other:?}")),
        });
    let _ = kernel.drop_capability(Cap::from(new));
    let _ = kernel.drop_capability(Cap::from(old));
    result
}
