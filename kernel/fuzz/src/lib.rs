//! What the fuzz targets share: a driver that plays system calls from
//! several tasks into a [`KernelCore`] the way the kernel's handlers do
//! (decode the postcard request, then call the core as the caller), and
//! checks the core's invariants after every call.
//!
//! Each step is either a well-formed request (built from the fuzzer's
//! choices, encoded, then decoded as the kernel decodes it) or garbage
//! bytes for a call number; both go through the same decoder.

use arbitrary::Arbitrary;
use pandagen_abi::device::{DeviceResource, InterruptLines, PhysRange, PortRange};
use pandagen_abi::memory::PAGE_SIZE;
use pandagen_abi::screen::TakeOverScreenRequest;
use pandagen_abi::syscall::{
    AllocateDmaRequest, BindInterruptRequest, BlockInfoRequest, BlockReadRequest,
    BlockWriteRequest, CapRequest, CloneRequest, ExitRequest, InterruptRequest,
    MapDeviceMemoryRequest, MintDeviceRequest, MintObjectCapRequest, MintRegistrationRequest,
    ObjectSendRequest, PortReadRequest, PortWriteRequest, ReceiveRequest, RegisterRequest,
    SendReceiveRequest, SendRequest, ServiceRequest, SleepRequest, SpawnRequest, Syscall,
    TerminateRequest, TransferRequest,
};
use pandagen_abi::{
    budget::Budget, CapHandle, ExitReason, IdentityKind, Instant, KernelError, Priority, Rights,
    ServiceId, TaskId, TrustDomain,
};
use pandagen_core::{CoreConfig, KernelCore, SpawnArgs, TaskSpec, VecDisk};
use serde::Serialize;

/// Steps one input may take (keeps executions fast and bounded).
pub const MAX_STEPS: usize = 96;

/// Which capability a step names.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Handle {
    /// The caller's n-th capability (modulo how many it holds).
    Held(u8),
    /// Whatever bits: stale, guessed or forged handles.
    Raw(u64),
}

/// Which task a step names.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Task {
    /// The n-th live task (modulo how many there are).
    Live(u8),
    /// Any id, live or not.
    Raw(u64),
}

/// A device range a step names: near the machine's RAM, framebuffer and
/// device pages (in pages), or any bits.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Resource {
    Ports(u16, u16),
    Memory { first_page: u32, pages: u16 },
    RawMemory { base: u64, len: u64 },
    Interrupts(u8, u8),
    Dma { pages: u16 },
    Framebuffer { first_page: u32, pages: u16 },
}

impl Resource {
    fn device(self) -> DeviceResource {
        let range = |first_page: u32, pages: u16| {
            PhysRange::new(
                u64::from(first_page) * PAGE_SIZE,
                u64::from(pages) * PAGE_SIZE,
            )
        };
        match self {
            Resource::Ports(first, last) => DeviceResource::Ports(PortRange::new(first, last)),
            Resource::Memory { first_page, pages } => {
                DeviceResource::Memory(range(first_page, pages))
            }
            Resource::RawMemory { base, len } => DeviceResource::Memory(PhysRange::new(base, len)),
            Resource::Interrupts(first, last) => {
                DeviceResource::Interrupts(InterruptLines { first, last })
            }
            Resource::Dma { pages } => DeviceResource::Dma {
                bytes: u64::from(pages) * PAGE_SIZE,
            },
            Resource::Framebuffer { first_page, pages } => {
                DeviceResource::Framebuffer(range(first_page, pages))
            }
        }
    }
}

/// The machine the world's core describes: RAM below 128 MiB (never
/// device memory), a framebuffer, and device pages above.
pub const RAM: PhysRange = PhysRange::new(0, 0x800_0000);
pub const FRAMEBUFFER: PhysRange = PhysRange::new(0xfd00_0000, 0x30_0000);

/// One system call.
#[derive(Arbitrary, Clone, Debug)]
pub enum Step {
    /// Garbage request bytes for call `number`.
    Garbage {
        caller: u8,
        number: u8,
        bytes: Vec<u8>,
    },
    CreateChannel {
        caller: u8,
    },
    Send {
        caller: u8,
        channel: Handle,
        bytes: Vec<u8>,
        caps: Vec<Handle>,
    },
    Receive {
        caller: u8,
        channel: Handle,
        timeout: Option<u16>,
    },
    SendReceive {
        caller: u8,
        send: Handle,
        receive: Handle,
        consume_send: bool,
        bytes: Vec<u8>,
    },
    Grant {
        caller: u8,
        cap: Handle,
        to: Task,
    },
    Delegate {
        caller: u8,
        cap: Handle,
        to: Task,
    },
    Clone {
        caller: u8,
        cap: Handle,
        rights: u16,
    },
    Drop {
        caller: u8,
        cap: Handle,
    },
    MintRegistration {
        caller: u8,
        registry: Handle,
        service: u8,
    },
    Registrant {
        caller: u8,
        service: u8,
    },
    Register {
        caller: u8,
        service: u8,
        channel: Handle,
    },
    Lookup {
        caller: u8,
        service: u8,
    },
    Mint {
        caller: u8,
        service: u8,
        badge: u64,
        rights: u16,
    },
    SendToObject {
        caller: u8,
        object: Handle,
        bytes: Vec<u8>,
        caps: Vec<Handle>,
    },
    Spawn {
        caller: u8,
        caps: Vec<Handle>,
        exit: Option<Handle>,
        priority: u8,
        /// A budget carved from the caller's (memory bytes, frames), or the
        /// kernel's default.
        budget: Option<(u32, u32)>,
    },
    Terminate {
        caller: u8,
        target: Task,
    },
    Exit {
        caller: u8,
    },
    Sleep {
        caller: u8,
        nanos: u16,
    },
    BlockRead {
        caller: u8,
        device: Handle,
        first: u8,
        count: u8,
    },
    BlockWrite {
        caller: u8,
        device: Handle,
        first: u8,
        blocks: u8,
    },
    /// Time passes: deadlines expire, the scheduler picks.
    Tick {
        nanos: u16,
    },
    MintDevice {
        caller: u8,
        parent: Handle,
        resource: Resource,
        rights: u16,
    },
    PortAccess {
        caller: u8,
        cap: Handle,
        port: u16,
        width: u8,
        write: bool,
    },
    OpenPorts {
        caller: u8,
        cap: Handle,
    },
    MapDeviceMemory {
        caller: u8,
        cap: Handle,
        resource: Resource,
        writable: bool,
    },
    BindInterrupt {
        caller: u8,
        cap: Handle,
        line: u8,
        channel: Handle,
    },
    AcknowledgeInterrupt {
        caller: u8,
        cap: Handle,
        line: u8,
    },
    /// A line fires (the kernel's interrupt path).
    Fire {
        line: u8,
    },
    AllocateDma {
        caller: u8,
        cap: Handle,
        pages: u16,
        /// The frame allocator then fails (the charge is given back).
        allocation_fails: bool,
    },
    TakeOverScreen {
        caller: u8,
        framebuffer: Handle,
        channel: Handle,
    },
}

/// The page tables a mapping of `pages` pages adds, as the kernel charges
/// them: the bound first (refused past the frames budget), then back what
/// a contiguous run did not need (one table per 512 pages, plus one).
fn charge_tables(core: &mut KernelCore, task: TaskId, pages: u64) -> Result<(), KernelError> {
    let bound: u64 = [512u64, 512 * 512, 512 * 512 * 512]
        .iter()
        .map(|span| pages.div_ceil(*span) + 1)
        .sum();
    core.charge_frames(task, bound)?;
    core.release_frames(task, bound - (pages / 512 + 1).min(bound));
    Ok(())
}

/// The core, its tasks and a small disk.
pub struct World {
    pub core: KernelCore,
    pub disk: VecDisk,
    pub now: u64,
    /// The live tasks, refreshed before each step.
    live: Vec<TaskId>,
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl World {
    /// A root task and three children, as a process manager would start.
    pub fn new() -> Self {
        // The kernel's configuration but for a shorter audit ring: 4,096
        // records (a quarter megabyte, which the allocator maps and unmaps
        // at each input) are more than 96 steps can fill, while 256 are
        // filled and wrapped by many inputs, so the ring's wrapping and its
        // refusal index are exercised rather than skipped.
        let mut core = KernelCore::new(CoreConfig {
            audit_capacity: 256,
            ..CoreConfig::default()
        });
        core.set_reserved_physical(vec![RAM]);
        core.set_framebuffer(FRAMEBUFFER);
        let now = Instant::from_nanos(0);
        let root = core.create_root_task("root", now).expect("root");
        for name in ["a", "b", "c"] {
            let args = SpawnArgs {
                spec: TaskSpec::new(name),
                with_image: true,
                capabilities: &[],
                exit_channel: None,
                frames: 0,
            };
            core.spawn(root.task, args, now).expect("child");
        }
        World {
            core,
            disk: VecDisk::new(64, 16),
            now: 0,
            live: Vec::new(),
        }
    }

    fn caller(&self, pick: u8) -> Option<TaskId> {
        let live = &self.live;
        (!live.is_empty()).then(|| live[usize::from(pick) % live.len()])
    }

    fn task(&self, pick: Task) -> TaskId {
        match pick {
            Task::Live(n) => self.caller(n).unwrap_or(TaskId::from_raw(0)),
            Task::Raw(raw) => TaskId::from_raw(raw),
        }
    }

    fn handle(&self, caller: TaskId, pick: Handle) -> CapHandle {
        match pick {
            Handle::Held(n) => {
                let held = self.core.list_caps(caller).unwrap_or_default();
                if held.is_empty() {
                    CapHandle::from_raw(u64::from(n))
                } else {
                    held[usize::from(n) % held.len()].0
                }
            }
            Handle::Raw(raw) => CapHandle::from_raw(raw),
        }
    }

    fn handles(&self, caller: TaskId, picks: &[Handle], max: usize) -> Vec<CapHandle> {
        picks
            .iter()
            .take(max)
            .map(|&p| self.handle(caller, p))
            .collect()
    }

    fn instant(&self) -> Instant {
        Instant::from_nanos(self.now)
    }

    /// Run `step`, then check the core's invariants (panics if broken).
    pub fn run(&mut self, step: &Step) {
        self.live.clear();
        self.live.extend(self.core.task_ids());
        self.play(step);
        if let Err(violation) = self.core.check_invariants() {
            panic!("invariant broken after {step:?}: {violation:?}");
        }
    }

    fn play(&mut self, step: &Step) {
        let Some((caller, call, bytes)) = self.encode(step) else {
            match step {
                Step::Tick { nanos } => {
                    self.now += u64::from(*nanos);
                    self.core.expire_deadlines(self.instant());
                    if let Some(task) = self.core.pick_next() {
                        self.core.yield_task(task);
                    }
                }
                Step::Fire { line } => {
                    let _ = self.core.interrupt_fired(*line);
                }
                _ => {}
            }
            return;
        };
        let done = self.dispatch(caller, call, &bytes);
        if let (
            Ok(()),
            Step::AllocateDma {
                pages,
                allocation_fails: true,
                ..
            },
        ) = (done, step)
        {
            // The kernel's frame allocation failed after the charge.
            self.core
                .uncharge_dma(caller, u64::from(*pages) * PAGE_SIZE);
        }
    }

    /// The request bytes a well-formed step sends (garbage steps send
    /// their bytes as they are).
    fn encode(&self, step: &Step) -> Option<(TaskId, Syscall, Vec<u8>)> {
        fn bytes<T: Serialize>(value: &T) -> Vec<u8> {
            postcard::to_allocvec(value).expect("a request encodes")
        }
        let caps_of = |caller, picks: &[Handle]| {
            heapless::Vec::from_slice(&self.handles(caller, picks, 4)).expect("at most 4")
        };
        let service = |n: u8| ServiceId::from_raw(u64::from(n % 8));
        let (pick, call, encoded) = match step {
            Step::Tick { .. } | Step::Fire { .. } => return None,
            Step::MintDevice {
                caller,
                parent,
                resource,
                rights,
            } => {
                let c = self.caller(*caller)?;
                let request = MintDeviceRequest {
                    parent: self.handle(c, *parent),
                    resource: resource.device(),
                    rights: Rights::from_bits(u32::from(*rights)),
                };
                (*caller, Syscall::MintDevice, bytes(&request))
            }
            Step::PortAccess {
                caller,
                cap,
                port,
                width,
                write,
            } => {
                let c = self.caller(*caller)?;
                let capability = self.handle(c, *cap);
                if *write {
                    let request = PortWriteRequest {
                        capability,
                        port: *port,
                        width: *width,
                        value: 0,
                    };
                    (*caller, Syscall::PortWrite, bytes(&request))
                } else {
                    let request = PortReadRequest {
                        capability,
                        port: *port,
                        width: *width,
                    };
                    (*caller, Syscall::PortRead, bytes(&request))
                }
            }
            Step::OpenPorts { caller, cap } => {
                let c = self.caller(*caller)?;
                let request = CapRequest {
                    capability: self.handle(c, *cap),
                };
                (*caller, Syscall::OpenPorts, bytes(&request))
            }
            Step::MapDeviceMemory {
                caller,
                cap,
                resource,
                writable,
            } => {
                let c = self.caller(*caller)?;
                let range = match resource.device() {
                    DeviceResource::Memory(r) | DeviceResource::Framebuffer(r) => r,
                    _ => PhysRange::new(0, 0),
                };
                let request = MapDeviceMemoryRequest {
                    capability: self.handle(c, *cap),
                    range,
                    writable: *writable,
                    at: None,
                };
                (*caller, Syscall::MapDeviceMemory, bytes(&request))
            }
            Step::BindInterrupt {
                caller,
                cap,
                line,
                channel,
            } => {
                let c = self.caller(*caller)?;
                let request = BindInterruptRequest {
                    capability: self.handle(c, *cap),
                    line: *line,
                    channel: self.handle(c, *channel),
                };
                (*caller, Syscall::BindInterrupt, bytes(&request))
            }
            Step::AcknowledgeInterrupt { caller, cap, line } => {
                let c = self.caller(*caller)?;
                let request = InterruptRequest {
                    capability: self.handle(c, *cap),
                    line: *line,
                };
                (*caller, Syscall::AcknowledgeInterrupt, bytes(&request))
            }
            Step::AllocateDma {
                caller, cap, pages, ..
            } => {
                let c = self.caller(*caller)?;
                let request = AllocateDmaRequest {
                    capability: self.handle(c, *cap),
                    bytes: u64::from(*pages) * PAGE_SIZE,
                };
                (*caller, Syscall::AllocateDma, bytes(&request))
            }
            Step::TakeOverScreen {
                caller,
                framebuffer,
                channel,
            } => {
                let c = self.caller(*caller)?;
                let request = TakeOverScreenRequest {
                    framebuffer: self.handle(c, *framebuffer),
                    channel: self.handle(c, *channel),
                };
                (*caller, Syscall::TakeOverScreen, bytes(&request))
            }
            Step::Garbage {
                caller,
                number,
                bytes,
            } => {
                let call = Syscall::from_number(u64::from(*number)).ok()?;
                (*caller, call, bytes.clone())
            }
            Step::CreateChannel { caller } => (*caller, Syscall::CreateChannel, bytes(&())),
            Step::Send {
                caller,
                channel,
                bytes: message,
                caps,
            } => {
                let c = self.caller(*caller)?;
                let request = SendRequest {
                    channel: self.handle(c, *channel),
                    message,
                    capabilities: caps_of(c, caps),
                };
                (*caller, Syscall::Send, bytes(&request))
            }
            Step::Receive {
                caller,
                channel,
                timeout,
            } => {
                let c = self.caller(*caller)?;
                let request = ReceiveRequest {
                    channel: self.handle(c, *channel),
                    timeout_nanos: timeout.map(u64::from),
                };
                (*caller, Syscall::Receive, bytes(&request))
            }
            Step::SendReceive {
                caller,
                send,
                receive,
                consume_send,
                bytes: message,
            } => {
                let c = self.caller(*caller)?;
                let request = SendReceiveRequest {
                    send: self.handle(c, *send),
                    receive: self.handle(c, *receive),
                    timeout_nanos: Some(1000),
                    consume_send: *consume_send,
                    message,
                };
                (*caller, Syscall::SendReceive, bytes(&request))
            }
            Step::Grant { caller, cap, to } | Step::Delegate { caller, cap, to } => {
                let c = self.caller(*caller)?;
                let request = TransferRequest {
                    capability: self.handle(c, *cap),
                    task: self.task(*to),
                };
                let call = match step {
                    Step::Grant { .. } => Syscall::Grant,
                    _ => Syscall::Delegate,
                };
                (*caller, call, bytes(&request))
            }
            Step::Clone {
                caller,
                cap,
                rights,
            } => {
                let c = self.caller(*caller)?;
                let request = CloneRequest {
                    capability: self.handle(c, *cap),
                    rights: Rights::from_bits(u32::from(*rights)),
                };
                (*caller, Syscall::Clone, bytes(&request))
            }
            Step::Drop { caller, cap } => {
                let c = self.caller(*caller)?;
                let request = CapRequest {
                    capability: self.handle(c, *cap),
                };
                (*caller, Syscall::Drop, bytes(&request))
            }
            Step::Register {
                caller,
                service: s,
                channel,
            } => {
                let c = self.caller(*caller)?;
                let request = RegisterRequest {
                    service: service(*s),
                    channel: self.handle(c, *channel),
                };
                (*caller, Syscall::RegisterService, bytes(&request))
            }
            Step::MintRegistration {
                caller,
                registry,
                service: s,
            } => {
                let c = self.caller(*caller)?;
                let request = MintRegistrationRequest {
                    registry: self.handle(c, *registry),
                    service: service(*s),
                };
                (*caller, Syscall::MintRegistration, bytes(&request))
            }
            Step::Registrant { caller, service: s } => {
                let request = ServiceRequest {
                    service: service(*s),
                };
                (*caller, Syscall::ServiceRegistrant, bytes(&request))
            }
            Step::Lookup { caller, service: s } => {
                let request = ServiceRequest {
                    service: service(*s),
                };
                (*caller, Syscall::LookupService, bytes(&request))
            }
            Step::Mint {
                caller,
                service: s,
                badge,
                rights,
            } => {
                let request = MintObjectCapRequest {
                    service: service(*s),
                    badge: *badge,
                    rights: Rights::from_bits(u32::from(*rights)),
                };
                (*caller, Syscall::MintObjectCap, bytes(&request))
            }
            Step::SendToObject {
                caller,
                object,
                bytes: message,
                caps,
            } => {
                let c = self.caller(*caller)?;
                let request = ObjectSendRequest {
                    object: self.handle(c, *object),
                    message,
                    capabilities: caps_of(c, caps),
                };
                (*caller, Syscall::SendToObject, bytes(&request))
            }
            Step::Spawn {
                caller,
                caps,
                exit,
                priority,
                budget,
            } => {
                let c = self.caller(*caller)?;
                let request = SpawnRequest {
                    name: "child",
                    image: "program",
                    capabilities: heapless::Vec::from_slice(&self.handles(c, caps, 8))
                        .expect("within the spawn limit"),
                    priority: Priority(*priority),
                    kind: IdentityKind::Service,
                    trust_domain: "user",
                    exit_channel: exit.map(|e| self.handle(c, e)),
                    budget: budget.map(|(memory, frames)| Budget {
                        memory: memory.into(),
                        frames: frames.into(),
                    }),
                };
                (*caller, Syscall::Spawn, bytes(&request))
            }
            Step::Terminate { caller, target } => {
                let request = TerminateRequest {
                    task: self.task(*target),
                    reason: ExitReason::Normal,
                };
                (*caller, Syscall::Terminate, bytes(&request))
            }
            Step::Exit { caller } => {
                let request = ExitRequest {
                    reason: ExitReason::Normal,
                };
                (*caller, Syscall::Exit, bytes(&request))
            }
            Step::Sleep { caller, nanos } => {
                let request = SleepRequest {
                    nanos: u64::from(*nanos),
                };
                (*caller, Syscall::Sleep, bytes(&request))
            }
            Step::BlockRead {
                caller,
                device,
                first,
                count,
            } => {
                let c = self.caller(*caller)?;
                let request = BlockReadRequest {
                    capability: self.handle(c, *device),
                    first: u64::from(*first),
                    count: u32::from(*count),
                };
                (*caller, Syscall::BlockRead, bytes(&request))
            }
            Step::BlockWrite {
                caller,
                device,
                first,
                blocks,
            } => {
                let c = self.caller(*caller)?;
                let data = vec![0x5a; usize::from(*blocks % 20) * 64];
                let request = BlockWriteRequest {
                    capability: self.handle(c, *device),
                    first: u64::from(*first),
                    bytes: &data,
                };
                (*caller, Syscall::BlockWrite, bytes(&request))
            }
        };
        Some((self.caller(pick)?, call, encoded))
    }

    /// Decode `request` for `call` and run it as the kernel's handler
    /// does.
    pub fn dispatch(
        &mut self,
        caller: TaskId,
        call: Syscall,
        request: &[u8],
    ) -> Result<(), KernelError> {
        fn decode<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, KernelError> {
            postcard::from_bytes(bytes).map_err(|_| {
                KernelError::Syscall(pandagen_abi::error::SyscallError::MalformedRequest)
            })
        }
        let now = self.instant();
        let core = &mut self.core;
        match call {
            Syscall::CreateChannel => {
                decode::<()>(request)?;
                core.create_channel(caller, now)?;
            }
            Syscall::Send => {
                let r: SendRequest<'_> = decode(request)?;
                core.send(caller, r.channel, r.message.to_vec(), &r.capabilities, now)?;
            }
            Syscall::Receive => {
                let r: ReceiveRequest = decode(request)?;
                let deadline = r.timeout_nanos.map(|t| Instant::from_nanos(self.now + t));
                core.receive_or_block(caller, r.channel, deadline, now)?;
            }
            Syscall::SendReceive => {
                let r: SendReceiveRequest<'_> = decode(request)?;
                core.send(caller, r.send, r.message.to_vec(), &[], now)?;
                let deadline = r.timeout_nanos.map(|t| Instant::from_nanos(self.now + t));
                core.receive_or_block(caller, r.receive, deadline, now)?;
            }
            Syscall::Grant => {
                let r: TransferRequest = decode(request)?;
                core.grant(caller, r.capability, r.task, now)?;
            }
            Syscall::Delegate => {
                let r: TransferRequest = decode(request)?;
                core.delegate(caller, r.capability, r.task, now)?;
            }
            Syscall::Clone => {
                let r: CloneRequest = decode(request)?;
                core.clone_cap(caller, r.capability, r.rights, now)?;
            }
            Syscall::Drop => {
                let r: CapRequest = decode(request)?;
                core.drop_cap(caller, r.capability, now)?;
            }
            Syscall::BindKernelChannel => {
                let r: CapRequest = decode(request)?;
                core.bind_kernel_channel(caller, r.capability, now)?;
            }
            Syscall::RegisterService => {
                let r: RegisterRequest = decode(request)?;
                let authority = core
                    .find_registration(caller, r.service)
                    .ok_or(KernelError::InsufficientAuthority)?;
                core.register_service(caller, authority, r.service, r.channel, now)?;
            }
            Syscall::MintRegistration => {
                let r: MintRegistrationRequest = decode(request)?;
                core.mint_registration(caller, r.registry, r.service, now)?;
            }
            Syscall::ServiceRegistrant => {
                let r: ServiceRequest = decode(request)?;
                core.service_registrant(r.service)?;
            }
            Syscall::LookupService => {
                let r: ServiceRequest = decode(request)?;
                core.lookup_service(caller, r.service, now)?;
            }
            Syscall::MintObjectCap => {
                let r: MintObjectCapRequest = decode(request)?;
                core.mint_object_cap(caller, r.service, r.badge, r.rights, now)?;
            }
            Syscall::SendToObject => {
                let r: ObjectSendRequest<'_> = decode(request)?;
                core.send_to_object(caller, r.object, r.message.to_vec(), &r.capabilities, now)?;
            }
            Syscall::Spawn => {
                let r: SpawnRequest<'_> = decode(request)?;
                let args = SpawnArgs {
                    spec: TaskSpec::new(r.name)
                        .kind(r.kind)
                        .trust_domain(TrustDomain::new(r.trust_domain))
                        .priority(r.priority),
                    with_image: true,
                    capabilities: &r.capabilities,
                    exit_channel: r.exit_channel,
                    frames: 0,
                };
                core.authorize_spawn(caller, &args, now)?;
                core.spawn(caller, args, now)?;
            }
            Syscall::Terminate => {
                let r: TerminateRequest = decode(request)?;
                let target = core
                    .task_info(r.task)
                    .ok_or(KernelError::TaskNotFound(r.task))?;
                let parent = core.task_identity(caller);
                if r.task == caller || target.parent.is_none() || target.parent != parent {
                    return Err(KernelError::InsufficientAuthority);
                }
                core.terminate(r.task, r.reason, now)?;
                core.clear_exit_notifications();
            }
            Syscall::Exit => {
                let r: ExitRequest = decode(request)?;
                core.terminate(caller, r.reason, now)?;
                core.clear_exit_notifications();
            }
            Syscall::Sleep => {
                let r: SleepRequest = decode(request)?;
                let until = Instant::from_nanos(self.now.saturating_add(r.nanos));
                core.sleep_until(caller, until, now)?;
            }
            Syscall::Yield => {
                decode::<()>(request)?;
                core.yield_task(caller);
            }
            Syscall::BlockInfo => {
                let r: BlockInfoRequest = decode(request)?;
                core.block_info(caller, r.capability, &self.disk, now)?;
            }
            Syscall::BlockRead => {
                let r: BlockReadRequest = decode(request)?;
                core.block_read(caller, r.capability, &mut self.disk, r.first, r.count, now)?;
            }
            Syscall::BlockWrite => {
                let r: BlockWriteRequest<'_> = decode(request)?;
                core.block_write(caller, r.capability, &mut self.disk, r.first, r.bytes, now)?;
            }
            Syscall::MintDevice => {
                let r: MintDeviceRequest = decode(request)?;
                core.mint_device(caller, r.parent, r.resource, r.rights, now)?;
            }
            Syscall::PortRead => {
                let r: PortReadRequest = decode(request)?;
                core.check_port_access(caller, r.capability, r.port, r.width, false, now)?;
            }
            Syscall::PortWrite => {
                let r: PortWriteRequest = decode(request)?;
                core.check_port_access(caller, r.capability, r.port, r.width, true, now)?;
            }
            Syscall::OpenPorts => {
                let r: CapRequest = decode(request)?;
                core.port_range(caller, r.capability, now)?;
            }
            Syscall::MapDeviceMemory => {
                let r: MapDeviceMemoryRequest = decode(request)?;
                core.check_device_mapping(caller, r.capability, r.range, r.writable, now)?;
                charge_tables(core, caller, r.range.len / PAGE_SIZE)?;
            }
            Syscall::BindInterrupt => {
                let r: BindInterruptRequest = decode(request)?;
                core.bind_interrupt(caller, r.capability, r.line, r.channel, now)?;
            }
            Syscall::AcknowledgeInterrupt => {
                let r: InterruptRequest = decode(request)?;
                core.acknowledge_interrupt(caller, r.capability, r.line, now)?;
            }
            Syscall::AllocateDma => {
                let r: AllocateDmaRequest = decode(request)?;
                core.charge_dma(caller, r.capability, r.bytes, now)?;
                if let Err(e) = charge_tables(core, caller, r.bytes / PAGE_SIZE) {
                    core.uncharge_dma(caller, r.bytes);
                    return Err(e);
                }
            }
            Syscall::TakeOverScreen => {
                let r: TakeOverScreenRequest = decode(request)?;
                core.check_screen_takeover(caller, r.framebuffer, r.channel, now)?;
            }
            // Calls that do not reach the object model: decoding is all
            // the kernel does with their bytes before its own checks.
            _ => {}
        }
        Ok(())
    }
}
