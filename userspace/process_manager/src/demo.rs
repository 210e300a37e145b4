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

/// Send a request to `service` and wait up to `timeout` for its reply
/// (what the suite uses to check that a service still serves).
pub fn ping<K: KernelApi>(
    kernel: &mut K,
    service: ServiceId,
    timeout: Duration,
) -> Result<(), KernelError> {
    let channel = kernel.lookup_service(service)?;
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
