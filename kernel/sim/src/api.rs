//! `KernelApi` for the simulator: every call acts as the current task.

use pandagen_abi::cap::kinds;
use pandagen_abi::syscall::BlockInfo;
use pandagen_abi::{
    Cap, CapHandle, ChannelId, Duration, Instant, KernelApi, KernelError, MessageEnvelope,
    ReceivedMessage, Rights, ServiceId, TaskDescriptor, TaskHandle, TaskId,
};

use crate::blockdev::new_disk;
use crate::kernel::SimulatedKernel;
use crate::trace::TraceEvent;

impl SimulatedKernel {
    fn alive_caller(&self) -> Result<TaskId, KernelError> {
        let task = self.current;
        if self.core.is_alive(task) {
            Ok(task)
        } else {
            Err(KernelError::TaskNotFound(task))
        }
    }
}

impl KernelApi for SimulatedKernel {
    fn spawn_task(&mut self, descriptor: TaskDescriptor) -> Result<TaskHandle, KernelError> {
        self.spawn_as(self.current, descriptor, None)
    }

    fn create_channel(&mut self) -> Result<ChannelId, KernelError> {
        let now = self.clock_now();
        self.core
            .create_channel(self.current, now)
            .map(ChannelId::from_handle)
    }

    #[inline]
    fn send_with_capabilities(
        &mut self,
        channel: ChannelId,
        message: MessageEnvelope,
        capabilities: Vec<Cap<()>>,
    ) -> Result<(), KernelError> {
        self.send_as(self.current, channel, message, capabilities)
    }

    #[inline]
    fn receive_with_capabilities(
        &mut self,
        channel: ChannelId,
        timeout: Option<Duration>,
    ) -> Result<ReceivedMessage, KernelError> {
        self.receive_as(self.current, channel, timeout)
    }

    /// `receive_with_capabilities` built as an envelope where it leaves the
    /// simulator's mirror, the capabilities it carried dropped as the
    /// default does (see `messaging::Receipt`).
    #[inline]
    fn receive_message(
        &mut self,
        channel: ChannelId,
        timeout: Option<Duration>,
    ) -> Result<MessageEnvelope, KernelError> {
        self.receive_as(self.current, channel, timeout)
    }

    /// The core's fast path when the other side is waiting (see
    /// [`crate::messaging`]'s docs), else the kernel's general path.
    fn send_then_receive(
        &mut self,
        send: ChannelId,
        message: MessageEnvelope,
        receive: ChannelId,
        timeout: Option<Duration>,
    ) -> Result<ReceivedMessage, KernelError> {
        self.send_then_receive_as(self.current, send, message, receive, timeout)
    }

    fn now(&self) -> Instant {
        self.clock_now()
    }

    /// Virtual time moves by `duration` (delivering delayed messages that
    /// come due); no other task runs meanwhile in a single-actor test, and
    /// the scenario runner treats a sleeping service like any other.
    fn sleep(&mut self, duration: Duration) -> Result<(), KernelError> {
        let task = self.alive_caller()?;
        self.advance_time(duration);
        let until = self.clock_now();
        self.record(TraceEvent::Waited { task, until });
        Ok(())
    }

    fn grant_capability(&mut self, task: TaskId, capability: Cap<()>) -> Result<(), KernelError> {
        let now = self.clock_now();
        self.core
            .grant(self.current, capability.handle(), task, now)?;
        self.bump_activity();
        Ok(())
    }

    /// Uses the caller's registration for `service_id` (see
    /// `KernelCore::find_registration`).
    fn register_service(
        &mut self,
        service_id: ServiceId,
        channel: ChannelId,
    ) -> Result<(), KernelError> {
        let caller = self.alive_caller()?;
        let now = self.clock_now();
        let authority = self
            .core
            .find_registration(caller, service_id)
            .ok_or(KernelError::InsufficientAuthority)?;
        self.core
            .register_service(caller, authority, service_id, channel.handle(), now)
    }

    fn mint_device_capability(
        &mut self,
        parent: &Cap<()>,
        resource: pandagen_abi::device::DeviceResource,
        rights: Rights,
    ) -> Result<Cap<()>, KernelError> {
        let caller = self.alive_caller()?;
        let now = self.clock_now();
        let handle = self
            .core
            .mint_device(caller, parent.handle(), resource, rights, now)?;
        self.bump_activity();
        Ok(Cap::from_handle(handle))
    }

    fn mint_registration_capability(
        &mut self,
        registry: &Cap<()>,
        service: ServiceId,
    ) -> Result<Cap<kinds::ServiceRegistration>, KernelError> {
        let caller = self.alive_caller()?;
        let now = self.clock_now();
        let handle = self
            .core
            .mint_registration(caller, registry.handle(), service, now)?;
        self.bump_activity();
        Ok(Cap::from_handle(handle).assume_kind())
    }

    fn bind_kernel_channel(&mut self, channel: ChannelId) -> Result<ChannelId, KernelError> {
        let caller = self.alive_caller()?;
        let now = self.clock_now();
        let handle = self
            .core
            .bind_kernel_channel(caller, channel.handle(), now)?;
        self.bump_activity();
        Ok(ChannelId::from_handle(handle))
    }

    fn service_registrant(&mut self, service: ServiceId) -> Result<TaskId, KernelError> {
        self.core.service_registrant(service)
    }

    fn lookup_service(&mut self, service_id: ServiceId) -> Result<ChannelId, KernelError> {
        let now = self.clock_now();
        self.core
            .lookup_service(self.current, service_id, now)
            .map(ChannelId::from_handle)
    }

    fn delegate_capability(&mut self, capability: Cap<()>, to: TaskId) -> Result<(), KernelError> {
        let now = self.clock_now();
        self.core
            .delegate(self.current, capability.handle(), to, now)?;
        self.bump_activity();
        Ok(())
    }

    fn drop_capability(&mut self, capability: Cap<()>) -> Result<(), KernelError> {
        let now = self.clock_now();
        self.core.drop_cap(self.current, capability.handle(), now)?;
        self.bump_activity();
        self.reap_closed();
        Ok(())
    }

    fn clone_capability(
        &mut self,
        capability: &Cap<()>,
        rights: Rights,
    ) -> Result<Cap<()>, KernelError> {
        let now = self.clock_now();
        self.core
            .clone_cap(self.current, capability.handle(), rights, now)
            .map(Cap::from_handle)
    }

    fn mint_object_capability(
        &mut self,
        service: ServiceId,
        badge: u64,
        rights: Rights,
    ) -> Result<Cap<kinds::StorageObject>, KernelError> {
        let now = self.clock_now();
        let handle = self
            .core
            .mint_object_cap(self.current, service, badge, rights, now)?;
        self.bump_activity();
        Ok(Cap::from_handle(handle).assume_kind())
    }

    fn send_to_object(
        &mut self,
        object: &Cap<kinds::StorageObject>,
        message: MessageEnvelope,
        capabilities: Vec<Cap<()>>,
    ) -> Result<(), KernelError> {
        self.send_to_object_as(self.current, object.handle(), message, capabilities)
    }

    fn block_info(&mut self, device: CapHandle) -> Result<BlockInfo, KernelError> {
        let (caller, now) = (self.current, self.clock_now());
        let disk = self.disk.get_or_insert_with(new_disk);
        self.core.block_info(caller, device, disk, now)
    }

    fn block_read(
        &mut self,
        device: CapHandle,
        first: u64,
        count: u32,
    ) -> Result<Vec<u8>, KernelError> {
        let (caller, now) = (self.current, self.clock_now());
        let disk = self.disk.get_or_insert_with(new_disk);
        self.core
            .block_read(caller, device, disk, first, count, now)
    }

    fn block_write(
        &mut self,
        device: CapHandle,
        first: u64,
        bytes: &[u8],
    ) -> Result<(), KernelError> {
        let (caller, now) = (self.current, self.clock_now());
        let disk = self.disk.get_or_insert_with(new_disk);
        self.core
            .block_write(caller, device, disk, first, bytes, now)
    }
}
