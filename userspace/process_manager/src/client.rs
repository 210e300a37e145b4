//! A typed client for the process manager, over any `KernelApi`.
//!
//! [`PmClient::call`] sends and waits. In a step-driven simulation, where
//! the process manager only runs between the client's calls, use
//! [`PmClient::send`] and then [`PmClient::receive`].
//!
//! Read-only requests go on the process manager's channel. State-changing
//! ones go through the control capability given with
//! [`PmClient::with_control`]; without one they go on the channel too and
//! the process manager refuses them (`ControlCapabilityRequired`).

use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use pandagen_abi::cap::kinds;
use pandagen_abi::services::PROCESS_MANAGER;
use pandagen_abi::{
    Cap, ChannelId, EnvelopeError, KernelApi, KernelError, MessageEnvelope, MessageId,
    MessagePayload, Rights,
};

use crate::devices::{
    DeviceEntry, PciDevice, DEVICES_ACTION, DEVICES_ENABLED_ACTION, DEVICES_FOUND_ACTION,
    DRIVER_READY_ACTION,
};
use crate::protocol::{
    PmError, PmReply, PmRequest, PmResponse, ServiceInfo, ServiceRef, DESTINATION, POLICY,
    RESPONSE_ACTION, SCHEMA,
};

/// Why a call did not produce an answer from the process manager.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// A kernel call failed (including `Timeout` while waiting).
    Kernel(KernelError),
    /// The request could not be encoded, or the reply decoded.
    Envelope(EnvelopeError),
    /// The process manager refused the request.
    Rejected(PmError),
    /// The reply was not the kind the request calls for.
    UnexpectedReply,
}

impl From<KernelError> for ClientError {
    fn from(e: KernelError) -> Self {
        ClientError::Kernel(e)
    }
}

impl From<EnvelopeError> for ClientError {
    fn from(e: EnvelopeError) -> Self {
        ClientError::Envelope(e)
    }
}

pub struct PmClient {
    server: ChannelId,
    control: Option<Cap<kinds::StorageObject>>,
    reply: ChannelId,
    timeout: Option<Duration>,
}

impl PmClient {
    /// Look the process manager up and make a reply channel.
    pub fn connect<K: KernelApi>(kernel: &mut K) -> Result<Self, KernelError> {
        let server = kernel.lookup_service(PROCESS_MANAGER)?;
        Self::with_channel(kernel, server)
    }

    /// Use a channel to the process manager the caller already holds.
    pub fn with_channel<K: KernelApi>(
        kernel: &mut K,
        server: ChannelId,
    ) -> Result<Self, KernelError> {
        let reply = kernel.create_channel()?;
        Ok(PmClient {
            server,
            control: None,
            reply,
            timeout: Some(Duration::from_secs(5)),
        })
    }

    /// How long [`PmClient::call`] waits for an answer (`None`: forever).
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Send state-changing requests through `control`, the process
    /// manager's control capability (see [`crate::protocol`]).
    pub fn with_control(mut self, control: Cap<kinds::StorageObject>) -> Self {
        self.control = Some(control);
        self
    }

    /// The control capability this client holds, if any.
    pub fn control(&self) -> Option<&Cap<kinds::StorageObject>> {
        self.control.as_ref()
    }

    /// Give the control capability back (to move it elsewhere, say); the
    /// client then sends every request on the channel.
    pub fn take_control(&mut self) -> Option<Cap<kinds::StorageObject>> {
        self.control.take()
    }

    pub fn reply_channel(&self) -> ChannelId {
        self.reply
    }

    /// Send `request` with a reply capability; returns its id.
    pub fn send<K: KernelApi>(
        &self,
        kernel: &mut K,
        request: &PmRequest,
    ) -> Result<MessageId, ClientError> {
        let payload = match request.target() {
            Some(target) => MessagePayload::new(target)?,
            None => MessagePayload::new(&())?,
        };
        let envelope = MessageEnvelope::new(DESTINATION, request.action(), SCHEMA, payload);
        let id = envelope.id;
        // SEND to answer on, TRANSFER so the kernel lets it travel in the
        // request; no RECEIVE, so the server cannot read our replies.
        let reply =
            kernel.clone_capability(&Cap::from(self.reply), Rights::SEND | Rights::TRANSFER)?;
        let reply_handle = reply.handle();
        let sent = match (&self.control, request.is_control()) {
            (Some(control), true) => kernel.send_to_object(control, envelope, vec![reply]),
            _ => kernel.send_with_capabilities(self.server, envelope, vec![reply]),
        };
        if let Err(error) = sent {
            // A failed send leaves the copy with us.
            let _ = kernel.drop_capability(Cap::from_handle(reply_handle));
            return Err(error.into());
        }
        Ok(id)
    }

    /// Wait for the answer to `request`, skipping stale answers to earlier
    /// requests that timed out.
    pub fn receive<K: KernelApi>(
        &self,
        kernel: &mut K,
        request: MessageId,
        timeout: Option<Duration>,
    ) -> Result<PmReply, ClientError> {
        loop {
            let envelope = kernel.receive_message(self.reply, timeout)?;
            if envelope.correlation_id != Some(request) || envelope.action != RESPONSE_ACTION {
                continue;
            }
            let response: PmResponse = envelope.decode_answer(&POLICY, DESTINATION)?;
            return response.map_err(ClientError::Rejected);
        }
    }

    pub fn call<K: KernelApi>(
        &self,
        kernel: &mut K,
        request: &PmRequest,
    ) -> Result<PmReply, ClientError> {
        let id = self.send(kernel, request)?;
        self.receive(kernel, id, self.timeout)
    }

    pub fn list<K: KernelApi>(&self, kernel: &mut K) -> Result<Vec<ServiceInfo>, ClientError> {
        match self.call(kernel, &PmRequest::List)? {
            PmReply::Services(services) => Ok(services),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    fn one<K: KernelApi>(
        &self,
        kernel: &mut K,
        request: PmRequest,
    ) -> Result<ServiceInfo, ClientError> {
        match self.call(kernel, &request)? {
            PmReply::Service(info) => Ok(info),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    pub fn status<K: KernelApi>(
        &self,
        kernel: &mut K,
        service: impl Into<ServiceRef>,
    ) -> Result<ServiceInfo, ClientError> {
        self.one(kernel, PmRequest::Status(service.into()))
    }

    pub fn start<K: KernelApi>(
        &self,
        kernel: &mut K,
        service: impl Into<ServiceRef>,
    ) -> Result<ServiceInfo, ClientError> {
        self.one(kernel, PmRequest::Start(service.into()))
    }

    pub fn stop<K: KernelApi>(
        &self,
        kernel: &mut K,
        service: impl Into<ServiceRef>,
    ) -> Result<ServiceInfo, ClientError> {
        self.one(kernel, PmRequest::Stop(service.into()))
    }

    pub fn restart<K: KernelApi>(
        &self,
        kernel: &mut K,
        service: impl Into<ServiceRef>,
    ) -> Result<ServiceInfo, ClientError> {
        self.one(kernel, PmRequest::Restart(service.into()))
    }

    /// Make a service's live instance fail (see `pm.crash`).
    pub fn crash<K: KernelApi>(
        &self,
        kernel: &mut K,
        service: impl Into<ServiceRef>,
    ) -> Result<ServiceInfo, ClientError> {
        self.one(kernel, PmRequest::Crash(service.into()))
    }

    /// Send `action` with `payload` on the process manager's channel, the
    /// reply channel first and then `capabilities` (moved): the device
    /// requests of [`crate::devices`]. Collect the answer with
    /// [`PmClient::receive`].
    pub fn send_with<K: KernelApi, T: serde::Serialize>(
        &self,
        kernel: &mut K,
        action: &str,
        payload: &T,
        capabilities: Vec<Cap<()>>,
    ) -> Result<MessageId, ClientError> {
        let envelope =
            MessageEnvelope::new(DESTINATION, action, SCHEMA, MessagePayload::new(payload)?);
        let id = envelope.id;
        let reply =
            kernel.clone_capability(&Cap::from(self.reply), Rights::SEND | Rights::TRANSFER)?;
        let reply_handle = reply.handle();
        let mut moved = vec![reply];
        moved.extend(capabilities);
        if let Err(error) = kernel.send_with_capabilities(self.server, envelope, moved) {
            let _ = kernel.drop_capability(Cap::from_handle(reply_handle));
            return Err(error.into());
        }
        Ok(id)
    }

    fn call_with<K: KernelApi, T: serde::Serialize>(
        &self,
        kernel: &mut K,
        action: &str,
        payload: &T,
        capabilities: Vec<Cap<()>>,
    ) -> Result<PmReply, ClientError> {
        let id = self.send_with(kernel, action, payload, capabilities)?;
        self.receive(kernel, id, self.timeout)
    }

    /// Report the functions the `pci` service found; the answer lists the
    /// indices of those a driver was bound to. Only the holder of the
    /// configuration-space ports may.
    pub fn report_devices<K: KernelApi>(
        &self,
        kernel: &mut K,
        devices: &[PciDevice],
    ) -> Result<Vec<u16>, ClientError> {
        match self.call_with(kernel, DEVICES_FOUND_ACTION, &devices, Vec::new())? {
            PmReply::Bound(indices) => Ok(indices),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// The bound devices are enabled: start their drivers.
    pub fn devices_enabled<K: KernelApi>(&self, kernel: &mut K) -> Result<Vec<u16>, ClientError> {
        match self.call_with(kernel, DEVICES_ENABLED_ACTION, &(), Vec::new())? {
            PmReply::Bound(indices) => Ok(indices),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// Every device found and its driver.
    pub fn devices<K: KernelApi>(&self, kernel: &mut K) -> Result<Vec<DeviceEntry>, ClientError> {
        match self.call_with(kernel, DEVICES_ACTION, &(), Vec::new())? {
            PmReply::Devices(devices) => Ok(devices),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// A driver, once registered: hand the process manager `service_cap`
    /// (the capability its clients will be given) and learn its device.
    pub fn driver_ready<K: KernelApi>(
        &self,
        kernel: &mut K,
        service_cap: Cap<()>,
    ) -> Result<PciDevice, ClientError> {
        match self.call_with(kernel, DRIVER_READY_ACTION, &(), vec![service_cap])? {
            PmReply::Device(device) => Ok(device),
            _ => Err(ClientError::UnexpectedReply),
        }
    }
}
