//! The storage service on the kernel's block device, in the simulator:
//! the journal is reached through the block-device calls (acting as the
//! storage task, with the capability it was spawned with), and a storage
//! task that is killed and replaced by a fresh one — a new task, a new
//! capability, nothing carried over in memory — serves every object its
//! predecessor committed, to the same capability tokens.

use std::cell::RefCell;
use std::rc::Rc;

use pandagen_abi::syscall::BlockInfo;
use pandagen_abi::{
    BlockApi, CapHandle, CapKind, ChannelId, Duration, ExitReason, FailureCause, KernelApi,
    KernelError, Rights, TaskDescriptor, TaskId,
};
use pandagen_sim::SimulatedKernel;
use pandagen_storage::protocol::Request;
use pandagen_storage::{
    JournalBackend, KernelBlockDevice, ObjectCap, ObjectKind, Op, OpResult, Reply, StorageClient,
    StorageServer,
};

type Kernel = Rc<RefCell<SimulatedKernel>>;

/// The block calls of one task of a shared simulated kernel.
struct Port {
    kernel: Kernel,
    task: TaskId,
}

impl BlockApi for Port {
    fn block_info(&mut self, device: CapHandle) -> Result<BlockInfo, KernelError> {
        self.kernel
            .borrow_mut()
            .as_task(self.task, |k| k.block_info(device))
    }

    fn block_read(
        &mut self,
        device: CapHandle,
        first: u64,
        count: u32,
    ) -> Result<Vec<u8>, KernelError> {
        self.kernel
            .borrow_mut()
            .as_task(self.task, |k| k.block_read(device, first, count))
    }

    fn block_write(
        &mut self,
        device: CapHandle,
        first: u64,
        bytes: &[u8],
    ) -> Result<(), KernelError> {
        self.kernel
            .borrow_mut()
            .as_task(self.task, |k| k.block_write(device, first, bytes))
    }
}

type Backend = JournalBackend<KernelBlockDevice<Port>>;

struct Storage {
    task: TaskId,
    channel: ChannelId,
    server: StorageServer<Backend>,
    formatted: bool,
    replayed: u64,
}

/// Start a storage task the way the process manager does: a registry
/// capability and a block-device capability (`READ | WRITE`) moved into
/// it, then the program's start-up — open or format the journal on the
/// device, replay it, register.
fn start_storage(kernel: &Kernel, key: [u8; 16]) -> Storage {
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
    let device = kernel
        .borrow_mut()
        .as_task(task, |k| k.startup())
        .unwrap()
        .capabilities[1];
    let port = Port {
        kernel: kernel.clone(),
        task,
    };
    let disk = KernelBlockDevice::open(port, device).unwrap();
    let (journal, formatted) = JournalBackend::open_or_format(disk, key).unwrap();
    let (server, report) = StorageServer::open(journal).unwrap();
    let channel = kernel
        .borrow_mut()
        .as_task(task, StorageServer::<Backend>::register)
        .unwrap();
    Storage {
        task,
        channel,
        server,
        formatted,
        replayed: report.records,
    }
}

/// Let the storage task answer everything queued for it (the steps of
/// `StorageServer::handle`, with the kernel borrowed only per call: the
/// journal reaches the kernel too while the server responds).
fn pump(kernel: &Kernel, storage: &mut Storage) {
    loop {
        let received = kernel.borrow_mut().as_task(storage.task, |k| {
            k.receive_with_capabilities(storage.channel, Some(Duration::ZERO))
        });
        let Ok(request) = received else { return };
        let now = kernel.borrow().now();
        let answer = storage.server.respond(&request.envelope, now);
        let reply = request.capabilities[0].handle();
        kernel.borrow_mut().as_task(storage.task, |k| {
            k.send_message(ChannelId::from_handle(reply), answer)
                .unwrap();
            for cap in request.capabilities {
                KernelApi::drop_capability(k, cap).unwrap();
            }
        });
    }
}

struct Client {
    task: TaskId,
    client: StorageClient,
}

impl Client {
    fn connect(kernel: &Kernel, task: TaskId) -> Client {
        let client = kernel
            .borrow_mut()
            .as_task(task, StorageClient::connect)
            .unwrap();
        Client { task, client }
    }

    fn call(&mut self, kernel: &Kernel, storage: &mut Storage, request: Request) -> Reply {
        let mut pending = kernel
            .borrow_mut()
            .as_task(self.task, |k| self.client.start(k, &request))
            .unwrap();
        pump(kernel, storage);
        kernel
            .borrow_mut()
            .as_task(self.task, |k| self.client.poll(k, &mut pending))
            .unwrap()
            .expect("storage answered")
    }

    fn transact(&mut self, kernel: &Kernel, storage: &mut Storage, ops: Vec<Op>) -> Vec<OpResult> {
        match self.call(kernel, storage, Request::Transact { ops }) {
            Reply::Transacted { results, .. } => results,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn get(
        &mut self,
        kernel: &Kernel,
        storage: &mut Storage,
        cap: &ObjectCap,
        key: &[u8],
    ) -> Option<Vec<u8>> {
        let op = Op::Get {
            cap: cap.clone(),
            key: key.to_vec(),
            at: None,
        };
        match self.transact(kernel, storage, vec![op]).as_slice() {
            [OpResult::Value { value, .. }] => value.clone(),
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn crash(kernel: &Kernel, storage: Storage) {
    kernel.borrow_mut().terminate_task_with_reason(
        storage.task,
        ExitReason::Failure {
            error: FailureCause::Described("crashed by the test".into()),
        },
    );
}

#[test]
fn objects_survive_a_storage_restart_on_the_block_device() {
    let kernel: Kernel = Rc::new(RefCell::new(SimulatedKernel::new()));
    let client_task = {
        let mut k = kernel.borrow_mut();
        let root = k.root_task();
        k.as_task(root, |k| k.spawn_task(TaskDescriptor::new("client".into())))
            .unwrap()
            .task_id
    };

    let mut storage = start_storage(&kernel, *b"first-key-000000");
    assert!(storage.formatted, "a blank device is formatted");
    assert_eq!(storage.replayed, 0);
    let mut client = Client::connect(&kernel, client_task);
    let map = match client.call(
        &kernel,
        &mut storage,
        Request::Create {
            kind: ObjectKind::Map,
        },
    ) {
        Reply::Created { cap, .. } => cap,
        other => panic!("unexpected {other:?}"),
    };
    let big = vec![0xC3; 3000]; // a commit that spans several blocks
    client.transact(
        &kernel,
        &mut storage,
        vec![
            Op::Put {
                cap: map.clone(),
                key: b"greeting".to_vec(),
                value: b"hello from before the crash".to_vec(),
            },
            Op::Put {
                cap: map.clone(),
                key: b"big".to_vec(),
                value: big.clone(),
            },
        ],
    );
    assert_eq!(
        client.get(&kernel, &mut storage, &map, b"greeting"),
        Some(b"hello from before the crash".to_vec())
    );

    let old_task = storage.task;
    crash(&kernel, storage);
    assert!(!kernel.borrow().task_is_alive(old_task));

    // A new instance: another task, another capability, another key
    // offered — the volume keeps its own, so old tokens stay valid.
    let mut storage = start_storage(&kernel, *b"second-key-11111");
    assert_ne!(storage.task, old_task);
    assert!(
        !storage.formatted,
        "the existing volume is opened, not formatted"
    );
    assert!(storage.replayed >= 2, "replayed {}", storage.replayed);
    let mut client = Client::connect(&kernel, client_task);
    assert_eq!(
        client.get(&kernel, &mut storage, &map, b"greeting"),
        Some(b"hello from before the crash".to_vec())
    );
    assert_eq!(client.get(&kernel, &mut storage, &map, b"big"), Some(big));

    // And it goes on committing where the old one stopped.
    client.transact(
        &kernel,
        &mut storage,
        vec![Op::Put {
            cap: map.clone(),
            key: b"greeting".to_vec(),
            value: b"hello after the restart".to_vec(),
        }],
    );
    crash(&kernel, storage);
    let mut storage = start_storage(&kernel, *b"third-key-222222");
    let mut client = Client::connect(&kernel, client_task);
    assert_eq!(
        client.get(&kernel, &mut storage, &map, b"greeting"),
        Some(b"hello after the restart".to_vec())
    );
    kernel.borrow().check_invariants().unwrap();
}

#[test]
fn a_dead_instance_cannot_touch_the_device_through_its_old_capability() {
    let kernel: Kernel = Rc::new(RefCell::new(SimulatedKernel::new()));
    let storage = start_storage(&kernel, [1; 16]);
    let (task, device) = {
        let mut k = kernel.borrow_mut();
        let task = storage.task;
        (
            task,
            k.as_task(task, |k| k.startup()).unwrap().capabilities[1],
        )
    };
    crash(&kernel, storage);
    let result = kernel
        .borrow_mut()
        .as_task(task, |k| k.block_write(device, 0, &[0; 512]));
    assert_eq!(result, Err(KernelError::TaskNotFound(task)));
    // The volume is intact for the next instance.
    let next = start_storage(&kernel, [2; 16]);
    assert!(!next.formatted);
}
