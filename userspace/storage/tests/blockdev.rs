//! The storage service on the kernel's block device, in the simulator:
//! the journal is reached through the block-device calls (acting as the
//! storage task, with the capability it was spawned with), and a storage
//! task that is killed and replaced by a fresh one — a new task, a new
//! device capability, nothing carried over in memory — serves every object
//! its predecessor committed, through the *same* kernel object
//! capabilities the client already holds (they name the service, not the
//! task), and imports the tokens its predecessor exported.

#[macro_use]
mod support;

use std::cell::RefCell;
use std::rc::Rc;

use pandagen_abi::services::STORAGE;
use pandagen_abi::{
    CapKind, ChannelId, Duration, ExitReason, FailureCause, Instant, KernelApi, KernelError,
    MessageEnvelope, MessagePayload, ReceivedMessage, Rights, TaskDescriptor, TaskId,
};
use pandagen_sim::SimulatedKernel;
use pandagen_storage::cap::OBJECT_CAP_RIGHTS;
use pandagen_storage::client::attenuate;
use pandagen_storage::protocol::{actions, Request, SCHEMA};
use pandagen_storage::server::HandleError;
use pandagen_storage::{
    BlockCallClient, ClientError, JournalBackend, ObjectCap, ObjectKind, ObjectToken, Op, OpResult,
    Reply, StorageClient, StorageError, StorageServer,
};

/// The one simulated kernel that every task view in a test acts on.
type SharedSim = Rc<RefCell<SimulatedKernel>>;

/// One task's view of a shared simulated kernel. Every call borrows the
/// kernel for itself only, so the storage server can answer a request
/// (`StorageServer::handle`) while its journal reaches the kernel too,
/// through the block calls of the same task.
#[derive(Clone)]
struct Task {
    kernel: SharedSim,
    task: TaskId,
}

impl Task {
    fn act<R>(&self, f: impl FnOnce(&mut SimulatedKernel) -> R) -> R {
        self.kernel.borrow_mut().as_task(self.task, f)
    }
}

impl KernelApi for Task {
    forward_to_simulator!();

    fn receive_with_capabilities(
        &mut self,
        channel: ChannelId,
        timeout: Option<Duration>,
    ) -> Result<ReceivedMessage, KernelError> {
        self.act(|k| k.receive_with_capabilities(channel, timeout))
    }

    fn now(&self) -> Instant {
        KernelApi::now(&*self.kernel.borrow())
    }
}

type Backend = JournalBackend<BlockCallClient<Task>>;

struct Storage {
    port: Task,
    channel: ChannelId,
    server: StorageServer<Backend>,
    formatted: bool,
    replayed: u64,
}

impl Storage {
    fn task(&self) -> TaskId {
        self.port.task
    }
}

/// Start a storage task the way the process manager does: a registry
/// capability and a block-device capability (`READ | WRITE`) moved into
/// it, then the program's start-up — open or format the journal on the
/// device, replay it, register.
fn start_storage(kernel: &SharedSim, key: [u8; 16]) -> Storage {
    let task = {
        let mut k = kernel.borrow_mut();
        let registry = k.registry_capability_for_child().unwrap();
        let device = k
            .root_copy(CapKind::BlockDevice, Rights::READ | Rights::WRITE)
            .unwrap();
        let descriptor = TaskDescriptor::new("storage".into())
            .with_capability(registry)
            .with_capability(device);
        let root = k.root_task();
        k.as_task(root, |k| k.spawn_task(descriptor))
            .unwrap()
            .task_id
    };
    let mut port = Task {
        kernel: kernel.clone(),
        task,
    };
    let device = port.act(|k| k.startup()).unwrap().capabilities[1];
    let disk = BlockCallClient::open(port.clone(), device).unwrap();
    let (journal, formatted) = JournalBackend::open_or_format(disk, key).unwrap();
    let (server, report) = StorageServer::open(journal).unwrap();
    let channel = StorageServer::<Backend>::register(&mut port).unwrap();
    Storage {
        port,
        channel,
        server,
        formatted,
        replayed: report.records,
    }
}

/// Let the storage task answer everything queued for it, with the
/// server's own `handle` step (the one `serve` loops over: it mints the
/// capability an answer grants and attaches it). Returns how many
/// requests it answered; a session request it keeps no session for is
/// left unanswered (see the protocol's *Sessions*).
fn pump(storage: &mut Storage) -> usize {
    let mut answered = 0;
    while let Ok(request) = storage
        .port
        .receive_with_capabilities(storage.channel, Some(Duration::ZERO))
    {
        match storage.server.handle(&mut storage.port, request) {
            Ok(()) => answered += 1,
            Err(HandleError::NoReplyChannel) => {}
            Err(e) => panic!("storage could not answer: {e:?}"),
        }
    }
    answered
}

/// Kill the storage task, as a crash would.
fn crash(storage: &Storage) {
    storage.port.kernel.borrow_mut().terminate_task_with_reason(
        storage.task(),
        ExitReason::Failure {
            error: FailureCause::Described("crashed by the test".into()),
        },
    );
}

/// A client task with one `StorageClient` for its whole life (connected
/// to the first storage instance): it keeps its reply channel and its
/// object capabilities across storage restarts.
struct Client {
    port: Task,
    client: StorageClient,
}

impl Client {
    fn spawn(kernel: &SharedSim) -> Client {
        let task = {
            let mut k = kernel.borrow_mut();
            let root = k.root_task();
            k.as_task(root, |k| k.spawn_task(TaskDescriptor::new("client".into())))
                .unwrap()
                .task_id
        };
        let mut port = Task {
            kernel: kernel.clone(),
            task,
        };
        let client = StorageClient::connect(&mut port).unwrap();
        Client { port, client }
    }

    /// Send `request` (through `via`, or to the service channel), let
    /// storage answer it, and take the answer and the capability it grants.
    fn call(
        &mut self,
        storage: &mut Storage,
        via: Option<&ObjectCap>,
        request: Request,
    ) -> Result<(Reply, Option<ObjectCap>), ClientError> {
        let mut pending = match via {
            Some(cap) => self.client.start_on(&mut self.port, cap, &request)?,
            None => self.client.start(&mut self.port, &request)?,
        };
        // A storage instance started after this client opened its session
        // keeps none for it: that request goes unanswered, and its re-send
        // past the deadline, which carries the reply capability again, is
        // answered.
        if pump(storage) == 0 {
            let deadline = pending.deadline();
            self.port.kernel.borrow_mut().advance_time_to(deadline);
            assert_eq!(self.client.poll(&mut self.port, &mut pending)?, None);
            assert_eq!(pump(storage), 1, "storage answered the re-send");
        }
        let reply = self
            .client
            .poll(&mut self.port, &mut pending)?
            .expect("storage answered");
        Ok((reply, pending.take_granted()))
    }

    fn create(&mut self, storage: &mut Storage, kind: ObjectKind) -> ObjectCap {
        match self.call(storage, None, Request::Create { kind }) {
            Ok((Reply::Created { .. }, Some(cap))) => cap,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn transact(
        &mut self,
        storage: &mut Storage,
        cap: &ObjectCap,
        ops: Vec<Op>,
    ) -> Result<Vec<OpResult>, ClientError> {
        match self.call(storage, Some(cap), Request::Transact { ops })? {
            (Reply::Transacted { results, .. }, None) => Ok(results),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn put(
        &mut self,
        storage: &mut Storage,
        cap: &ObjectCap,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), ClientError> {
        let op = Op::Put {
            key: key.to_vec(),
            value: value.to_vec(),
        };
        match self.transact(storage, cap, vec![op])?.as_slice() {
            [OpResult::Written(_)] => Ok(()),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn get(&mut self, storage: &mut Storage, cap: &ObjectCap, key: &[u8]) -> Option<Vec<u8>> {
        let op = Op::Get {
            key: key.to_vec(),
            at: None,
        };
        match self.transact(storage, cap, vec![op]).unwrap().as_slice() {
            [OpResult::Value { value, .. }] => value.clone(),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn export(&mut self, storage: &mut Storage, cap: &ObjectCap) -> ObjectToken {
        match self.call(storage, Some(cap), Request::Export) {
            Ok((Reply::Token(token), None)) => token,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn import(&mut self, storage: &mut Storage, token: &ObjectToken) -> ObjectCap {
        let request = Request::Import {
            token: token.clone(),
        };
        match self.call(storage, None, request) {
            Ok((Reply::Cap(_), Some(cap))) => cap,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// What the kernel says this client holds under `cap`.
    fn holds(&self, cap: &ObjectCap) -> Option<(CapKind, Rights)> {
        self.port
            .kernel
            .borrow()
            .capabilities_of(self.port.task)
            .into_iter()
            .find(|(handle, _)| *handle == cap.handle())
            .map(|(_, info)| (info.kind(), info.rights))
    }
}

/// The first block of the device, read by the root task with its own
/// device capability.
fn superblock(kernel: &SharedSim) -> Vec<u8> {
    let mut k = kernel.borrow_mut();
    let device = k.root_capability(CapKind::BlockDevice).unwrap();
    let root = k.root_task();
    k.as_task(root, |k| k.block_read(device, 0, 1)).unwrap()
}

#[test]
fn objects_survive_two_storage_restarts_on_the_block_device() {
    let kernel: SharedSim = Rc::new(RefCell::new(SimulatedKernel::new()));
    let mut storage = start_storage(&kernel, *b"first-key-000000");
    let mut client = Client::spawn(&kernel);
    assert!(storage.formatted, "a blank device is formatted");
    assert_eq!(storage.replayed, 0);
    assert!(superblock(&kernel).starts_with(pandagen_storage::journal::SUPER_MAGIC));
    let map = client.create(&mut storage, ObjectKind::Map);
    assert_eq!(
        client.holds(&map),
        Some((CapKind::StorageObject, OBJECT_CAP_RIGHTS))
    );
    let greeting = b"hello from before the crash".to_vec();
    let big = vec![0xC3; 3000]; // a commit that spans several blocks
    let written = client
        .transact(
            &mut storage,
            &map,
            vec![
                Op::Put {
                    key: b"greeting".to_vec(),
                    value: greeting.clone(),
                },
                Op::Put {
                    key: b"big".to_vec(),
                    value: big.clone(),
                },
            ],
        )
        .unwrap();
    assert_eq!(written.len(), 2);
    assert_eq!(
        client.get(&mut storage, &map, b"greeting"),
        Some(greeting.clone())
    );
    // A read-only copy, sealed into a token under the volume's key.
    let ro = attenuate(&mut client.port, &map, Rights::READ | Rights::GRANT).unwrap();
    let token = client.export(&mut storage, &ro);

    let old_task = storage.task();
    crash(&storage);
    drop(storage);
    assert!(!kernel.borrow().task_is_alive(old_task));
    // With no storage task registered, the capability has nowhere to go.
    let probe = MessageEnvelope::new(
        STORAGE,
        actions::TRANSACT,
        SCHEMA,
        MessagePayload::new(&Request::Transact { ops: vec![] }).unwrap(),
    );
    assert_eq!(
        client.port.send_to_object(&map, probe, vec![]),
        Err(KernelError::ServiceNotFound(STORAGE))
    );

    // A new instance: another task, another device capability, another key
    // offered — the volume keeps its own, so the old token stays valid.
    let mut storage = start_storage(&kernel, *b"second-key-11111");
    assert_ne!(storage.task(), old_task);
    assert!(
        !storage.formatted,
        "the existing volume is opened, not formatted"
    );
    // The first instance's opening, the creation and the two-key commit.
    assert_eq!(storage.replayed, 3);
    assert_eq!(storage.server.store().instance(), 2);
    // The client's same kernel capability reaches the new instance.
    assert_eq!(
        client.holds(&map),
        Some((CapKind::StorageObject, OBJECT_CAP_RIGHTS))
    );
    assert_eq!(
        client.get(&mut storage, &map, b"greeting"),
        Some(greeting.clone())
    );
    assert_eq!(client.get(&mut storage, &map, b"big"), Some(big.clone()));
    // So does the read-only copy, still read-only.
    assert_eq!(
        client.get(&mut storage, &ro, b"greeting"),
        Some(greeting.clone())
    );
    assert!(matches!(
        client.put(&mut storage, &ro, b"greeting", b"defaced"),
        Err(ClientError::Storage(StorageError::MissingRights {
            required: Rights::WRITE,
            ..
        }))
    ));
    // The token exported by the dead instance imports here.
    let imported = client.import(&mut storage, &token);
    assert_eq!(
        client.holds(&imported),
        Some((
            CapKind::StorageObject,
            Rights::READ | Rights::GRANT | Rights::TRANSFER
        ))
    );
    assert_eq!(
        client.get(&mut storage, &imported, b"big"),
        Some(big.clone())
    );

    // And it goes on committing where the old one stopped.
    client
        .put(&mut storage, &map, b"greeting", b"hello after the restart")
        .unwrap();
    let second_task = storage.task();
    crash(&storage);
    drop(storage);

    let mut storage = start_storage(&kernel, *b"third-key-222222");
    assert_ne!(storage.task(), second_task);
    assert!(!storage.formatted);
    // ... and the second instance's opening and its put.
    assert_eq!(storage.replayed, 5);
    assert_eq!(storage.server.store().instance(), 3);
    assert_eq!(storage.server.store().object_count(), 1);
    assert_eq!(
        client.get(&mut storage, &map, b"greeting"),
        Some(b"hello after the restart".to_vec())
    );
    assert_eq!(client.get(&mut storage, &map, b"big"), Some(big));
    kernel.borrow().check_invariants().unwrap();
}

#[test]
fn a_dead_instance_cannot_touch_the_device_through_its_old_capability() {
    let kernel: SharedSim = Rc::new(RefCell::new(SimulatedKernel::new()));
    let mut storage = start_storage(&kernel, [1; 16]);
    let mut client = Client::spawn(&kernel);
    let map = client.create(&mut storage, ObjectKind::Map);
    client.put(&mut storage, &map, b"k", b"committed").unwrap();
    let task = storage.task();
    let device = storage.port.act(|k| k.startup()).unwrap().capabilities[1];
    crash(&storage);

    // The block calls refuse the dead task outright.
    let mut zombie = storage.port.clone();
    assert_eq!(
        zombie.block_write(device, 0, &[0; 512]),
        Err(KernelError::TaskNotFound(task))
    );
    // Nor can what is left of its server commit anything: the journal's
    // writes go through the same dead capability.
    let create = Request::Create {
        kind: ObjectKind::Map,
    };
    let envelope = MessageEnvelope::new(
        STORAGE,
        create.action(),
        SCHEMA,
        MessagePayload::new(&create).unwrap(),
    );
    let now = zombie.now();
    let answer = storage.server.respond(&envelope, None, now);
    assert!(
        matches!(answer.response(), Ok(Err(StorageError::Backend(_)))),
        "{:?}",
        answer.response()
    );
    drop(storage);

    // The volume is intact for the next instance, which serves the
    // committed value through the client's capability and nothing else.
    let mut next = start_storage(&kernel, [2; 16]);
    assert!(!next.formatted);
    // The first instance's opening, the creation and the put: nothing of
    // the dead one's attempt.
    assert_eq!(next.replayed, 3);
    assert_eq!(next.server.store().object_count(), 1);
    assert_eq!(
        client.get(&mut next, &map, b"k"),
        Some(b"committed".to_vec())
    );
    kernel.borrow().check_invariants().unwrap();
}

/// A task holding only a copy of the root's device capability with
/// `rights`, and that capability in its space.
fn device_holder(kernel: &SharedSim, rights: Rights) -> (Task, pandagen_abi::CapHandle) {
    let task = {
        let mut k = kernel.borrow_mut();
        let device = k.root_copy(CapKind::BlockDevice, rights).unwrap();
        let descriptor = TaskDescriptor::new("disk-user".into()).with_capability(device);
        let root = k.root_task();
        k.as_task(root, |k| k.spawn_task(descriptor))
            .unwrap()
            .task_id
    };
    let port = Task {
        kernel: kernel.clone(),
        task,
    };
    let device = port.act(|k| k.startup()).unwrap().capabilities[0];
    (port, device)
}

#[test]
fn the_block_call_client_refuses_a_request_whole_and_says_why() {
    use pandagen_abi::{BlockDevice, BlockError};

    let kernel: SharedSim = Rc::new(RefCell::new(SimulatedKernel::new()));
    let (port, device) = device_holder(&kernel, Rights::READ | Rights::WRITE);
    let mut disk = BlockCallClient::open(port, device).unwrap();
    let (size, blocks) = (disk.block_size() as usize, disk.block_count());

    // Larger than one call: split into pieces, and read back whole.
    let data: Vec<u8> = (0..3 * 16 * 1024).map(|i| (i % 251) as u8).collect();
    disk.write_blocks(7, &data).unwrap();
    let mut back = vec![0; data.len()];
    disk.read_blocks(7, &mut back).unwrap();
    assert_eq!(back, data);

    // A write whose first pieces would fit but whose end is off the
    // device writes nothing at all.
    let first = blocks - 40;
    assert_eq!(
        disk.write_blocks(first, &vec![0xEE; 64 * size]),
        Err(BlockError::OutOfRange {
            first,
            count: 64,
            blocks
        })
    );
    let mut tail = vec![0xFF; 40 * size];
    disk.read_blocks(first, &mut tail).unwrap();
    assert!(tail.iter().all(|&b| b == 0), "a refused write wrote");
    assert_eq!(
        disk.read_blocks(0, &mut []),
        Err(BlockError::BadLength {
            len: 0,
            block_size: size as u32
        })
    );

    // A read-only capability: reads work, writes are not permitted, and
    // the kernel's own answer is kept for diagnostics.
    let (port, device) = device_holder(&kernel, Rights::READ);
    let mut read_only = BlockCallClient::open(port, device).unwrap();
    let mut block = vec![0; size];
    read_only.read_blocks(7, &mut block).unwrap();
    assert_eq!(block, data[..size]);
    assert_eq!(
        read_only.write_blocks(7, &block),
        Err(BlockError::NotPermitted)
    );
    assert_eq!(
        read_only.last_error(),
        Some(KernelError::InsufficientAuthority)
    );
    kernel.borrow().check_invariants().unwrap();
}
