//! Driving the storage server and typed clients inside the SimulatedKernel.
//!
//! The typed client blocks in `receive` for its answer, and the simulator
//! runs one task at a time, so a client's wait must give the storage task
//! its turn. [`ClientKernel`] is the client task's view of the simulated
//! kernel: every call acts as that task, and when its receive would block,
//! it first lets the storage task handle whatever is queued for it — with
//! the server's own `handle` step, the same one `serve` loops over. All
//! IPC goes through the simulator, so its fault plan applies to requests
//! and answers alike.
//!
//! The storage task can be killed (by the test or by the fault plan) and
//! started again on the same backend, as a supervisor would restart it.
#![allow(dead_code)]

use std::cell::RefCell;
use std::rc::Rc;

use pandagen_abi::error::ReceiveError;
use pandagen_abi::{
    ChannelId, Duration, ExitReason, FailureCause, Instant, KernelApi, KernelError,
    ReceivedMessage, TaskDescriptor, TaskHandle, TaskId,
};
use pandagen_sim::{FaultPlan, SimulatedKernel};
use pandagen_storage::{MemoryBackend, StorageClient, StorageServer};

/// The `KernelApi` methods that a test's view of one task forwards
/// unchanged to the simulated kernel through its `act` method: every one
/// but receiving and the clock, which each view does its own way.
macro_rules! forward_to_simulator {
    () => {
        fn block_info(
            &mut self,
            device: pandagen_abi::CapHandle,
        ) -> Result<pandagen_abi::syscall::BlockInfo, pandagen_abi::KernelError> {
            self.act(|k| k.block_info(device))
        }

        fn block_read(
            &mut self,
            device: pandagen_abi::CapHandle,
            first: u64,
            count: u32,
        ) -> Result<Vec<u8>, pandagen_abi::KernelError> {
            self.act(|k| k.block_read(device, first, count))
        }

        fn block_write(
            &mut self,
            device: pandagen_abi::CapHandle,
            first: u64,
            bytes: &[u8],
        ) -> Result<(), pandagen_abi::KernelError> {
            self.act(|k| k.block_write(device, first, bytes))
        }

        fn spawn_task(
            &mut self,
            descriptor: pandagen_abi::TaskDescriptor,
        ) -> Result<pandagen_abi::TaskHandle, pandagen_abi::KernelError> {
            self.act(|k| k.spawn_task(descriptor))
        }

        fn create_channel(&mut self) -> Result<pandagen_abi::ChannelId, pandagen_abi::KernelError> {
            self.act(|k| k.create_channel())
        }

        fn send_with_capabilities(
            &mut self,
            channel: pandagen_abi::ChannelId,
            message: pandagen_abi::MessageEnvelope,
            capabilities: Vec<pandagen_abi::Cap<()>>,
        ) -> Result<(), pandagen_abi::KernelError> {
            self.act(|k| k.send_with_capabilities(channel, message, capabilities))
        }

        fn sleep(
            &mut self,
            duration: pandagen_abi::Duration,
        ) -> Result<(), pandagen_abi::KernelError> {
            self.act(|k| k.sleep(duration))
        }

        fn grant_capability(
            &mut self,
            task: pandagen_abi::TaskId,
            capability: pandagen_abi::Cap<()>,
        ) -> Result<(), pandagen_abi::KernelError> {
            self.act(|k| k.grant_capability(task, capability))
        }

        fn register_service(
            &mut self,
            service_id: pandagen_abi::ServiceId,
            channel: pandagen_abi::ChannelId,
        ) -> Result<(), pandagen_abi::KernelError> {
            self.act(|k| k.register_service(service_id, channel))
        }

        fn lookup_service(
            &mut self,
            service_id: pandagen_abi::ServiceId,
        ) -> Result<pandagen_abi::ChannelId, pandagen_abi::KernelError> {
            self.act(|k| k.lookup_service(service_id))
        }

        fn mint_registration_capability(
            &mut self,
            registry: &pandagen_abi::Cap<()>,
            service: pandagen_abi::ServiceId,
        ) -> Result<
            pandagen_abi::Cap<pandagen_abi::cap::kinds::ServiceRegistration>,
            pandagen_abi::KernelError,
        > {
            self.act(|k| k.mint_registration_capability(registry, service))
        }

        fn service_registrant(
            &mut self,
            service: pandagen_abi::ServiceId,
        ) -> Result<pandagen_abi::TaskId, pandagen_abi::KernelError> {
            self.act(|k| k.service_registrant(service))
        }

        fn delegate_capability(
            &mut self,
            capability: pandagen_abi::Cap<()>,
            to: pandagen_abi::TaskId,
        ) -> Result<(), pandagen_abi::KernelError> {
            self.act(|k| pandagen_abi::KernelApi::delegate_capability(k, capability, to))
        }

        fn drop_capability(
            &mut self,
            capability: pandagen_abi::Cap<()>,
        ) -> Result<(), pandagen_abi::KernelError> {
            self.act(|k| pandagen_abi::KernelApi::drop_capability(k, capability))
        }

        fn clone_capability(
            &mut self,
            capability: &pandagen_abi::Cap<()>,
            rights: pandagen_abi::Rights,
        ) -> Result<pandagen_abi::Cap<()>, pandagen_abi::KernelError> {
            self.act(|k| k.clone_capability(capability, rights))
        }

        fn mint_object_capability(
            &mut self,
            service: pandagen_abi::ServiceId,
            badge: u64,
            rights: pandagen_abi::Rights,
        ) -> Result<
            pandagen_abi::Cap<pandagen_abi::cap::kinds::StorageObject>,
            pandagen_abi::KernelError,
        > {
            self.act(|k| k.mint_object_capability(service, badge, rights))
        }

        fn send_to_object(
            &mut self,
            object: &pandagen_abi::Cap<pandagen_abi::cap::kinds::StorageObject>,
            message: pandagen_abi::MessageEnvelope,
            capabilities: Vec<pandagen_abi::Cap<()>>,
        ) -> Result<(), pandagen_abi::KernelError> {
            self.act(|k| k.send_to_object(object, message, capabilities))
        }
    };
}

pub type Shared = Rc<RefCell<MemoryBackend>>;

struct Storage {
    task: TaskId,
    channel: ChannelId,
    server: StorageServer<Shared>,
}

/// A simulated kernel with a storage task and any number of client tasks.
pub struct Harness {
    pub kernel: SimulatedKernel,
    pub backend: Shared,
    storage: Option<Storage>,
    /// Storage instances started so far.
    pub starts: u32,
    /// Kill the storage task after it executes the next request and before
    /// it sends the answer.
    pub crash_before_next_answer: bool,
}

impl Harness {
    pub fn new(plan: FaultPlan) -> Self {
        Harness {
            kernel: SimulatedKernel::with_fault_plan(plan),
            backend: Rc::new(RefCell::new(MemoryBackend::new(*b"sim-storage-key!"))),
            storage: None,
            starts: 0,
            crash_before_next_answer: false,
        }
    }

    /// Spawn a storage task (with a registry capability), register it as
    /// `services::STORAGE` and open the server on the shared backend.
    pub fn start_storage(&mut self) -> TaskId {
        let root = self.kernel.root_task();
        let registry = self.kernel.registry_capability_for_child().unwrap();
        let descriptor = TaskDescriptor::new("storage".into()).with_capability(registry);
        let handle = self
            .kernel
            .as_task(root, |k| k.spawn_task(descriptor))
            .unwrap();
        let backend = self.backend.clone();
        let (channel, server) = self.kernel.as_task(handle.task_id, |k| {
            let channel = StorageServer::<Shared>::register(k).unwrap();
            let (server, _) = StorageServer::open(backend).unwrap();
            (channel, server)
        });
        self.storage = Some(Storage {
            task: handle.task_id,
            channel,
            server,
        });
        self.starts += 1;
        handle.task_id
    }

    /// The running server, for assertions on its state.
    pub fn server(&self) -> Option<&StorageServer<Shared>> {
        self.storage.as_ref().map(|s| &s.server)
    }

    pub fn storage_task(&self) -> Option<TaskId> {
        self.storage.as_ref().map(|s| s.task)
    }

    /// Whether a storage task is running.
    pub fn storage_alive(&mut self) -> bool {
        self.reap_storage();
        self.storage.is_some()
    }

    /// Terminate the storage task, as a crash would: whatever it held in
    /// memory (open transactions, remembered answers) is gone.
    pub fn kill_storage(&mut self) {
        if let Some(storage) = self.storage.take() {
            self.kernel.terminate_task_with_reason(
                storage.task,
                ExitReason::Failure {
                    error: FailureCause::Described("killed by the test".into()),
                },
            );
        }
    }

    fn reap_storage(&mut self) {
        if let Some(s) = &self.storage {
            if !self.kernel.task_is_alive(s.task) {
                self.storage = None;
            }
        }
    }

    /// Spawn a client task with no capabilities.
    pub fn spawn_client(&mut self, name: &str) -> TaskId {
        let root = self.kernel.root_task();
        let descriptor = TaskDescriptor::new(name.into());
        let handle: TaskHandle = self
            .kernel
            .as_task(root, |k| k.spawn_task(descriptor))
            .unwrap();
        handle.task_id
    }

    /// Spawn a client task and connect a storage client for it to the
    /// running service.
    pub fn connect_client(&mut self, name: &str) -> (TaskId, StorageClient) {
        let task = self.spawn_client(name);
        let client = StorageClient::connect(&mut self.as_client(task))
            .unwrap_or_else(|e| panic!("{name} cannot connect: {e:?}"));
        (task, client)
    }

    /// The kernel as seen by `task`.
    pub fn as_client(&mut self, task: TaskId) -> ClientKernel<'_> {
        ClientKernel { h: self, task }
    }

    /// Let the storage task handle every request queued for it. Returns
    /// how many it took off its queue.
    pub fn pump(&mut self) -> usize {
        let mut taken = 0;
        let mut transient = 0;
        loop {
            self.reap_storage();
            let Some(storage) = self.storage.as_mut() else {
                return taken;
            };
            let task = storage.task;
            let channel = storage.channel;
            let received = self.kernel.as_task(task, |k| {
                k.receive_with_capabilities(channel, Some(Duration::ZERO))
            });
            match received {
                Ok(request) => {
                    taken += 1;
                    // A crash-after-messages fault may have ended the task
                    // as the request was delivered: then it never ran.
                    if !self.kernel.task_is_alive(task) {
                        self.storage = None;
                        return taken;
                    }
                    let storage = self.storage.as_mut().unwrap();
                    if self.crash_before_next_answer {
                        self.crash_before_next_answer = false;
                        let now = self.kernel.now();
                        let _ = storage
                            .server
                            .respond(&request.envelope, request.badge, now);
                        self.kill_storage();
                        return taken;
                    }
                    let kernel = &mut self.kernel;
                    let _ = kernel.as_task(task, |k| storage.server.handle(k, request));
                }
                Err(KernelError::ReceiveFailed(ReceiveError::InjectedFault)) if transient < 8 => {
                    transient += 1;
                }
                Err(_) => return taken,
            }
        }
    }
}

/// `KernelApi` acting as one client task (see the module docs).
pub struct ClientKernel<'a> {
    h: &'a mut Harness,
    task: TaskId,
}

impl ClientKernel<'_> {
    pub fn task(&self) -> TaskId {
        self.task
    }

    fn act<R>(&mut self, f: impl FnOnce(&mut SimulatedKernel) -> R) -> R {
        self.h.kernel.as_task(self.task, f)
    }
}

impl KernelApi for ClientKernel<'_> {
    forward_to_simulator!();

    fn receive_with_capabilities(
        &mut self,
        channel: ChannelId,
        timeout: Option<Duration>,
    ) -> Result<ReceivedMessage, KernelError> {
        loop {
            match self.act(|k| k.receive_with_capabilities(channel, Some(Duration::ZERO))) {
                Err(KernelError::Timeout) => {}
                other => return other,
            }
            if self.h.pump() == 0 {
                break;
            }
        }
        // Nothing for us and nothing left for the storage task to do:
        // wait in virtual time (delayed messages may come due meanwhile).
        self.act(|k| k.receive_with_capabilities(channel, timeout))
    }

    fn now(&self) -> Instant {
        self.h.kernel.now()
    }
}
