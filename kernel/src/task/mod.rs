//! Ring-3 tasks: what the kernel keeps per task beside the core's object
//! model (saved registers, address space, a pending blocking call), and the
//! one lock that guards the whole kernel state.
//!
//! The object model — task identities, capabilities, channels, the
//! scheduler's ready and wait lists — is the [`KernelCore`]; this module
//! only adds what needs hardware: a [`TrapFrame`] and an
//! [`AddressSpace`] per task.
//!
//! One CPU, one kernel stack: every entry from ring 3 builds its frame at
//! the top of the same stack. The running task's registers live in that
//! *live frame*; a task that is not running keeps them in
//! [`UserTask::frame`]. Switching copies the live frame out and the next
//! task's frame in (see [`schedule`]).

mod schedule;

pub use schedule::{
    accept_offer, load as resume, park_current as park, preempt_tick, run_first, schedule,
    user_fault,
};

use alloc::vec::Vec;
use pandagen_abi::syscall::{StartupInfo, RESPONSE_BUFFER_BYTES};
use pandagen_abi::{CapHandle, ExecutionId, ExitReason, Instant, KernelError, TaskId};
use pandagen_core::{slot_index, KernelCore};
use spin::Mutex;

use crate::arch::x86_64::gdt;
use crate::arch::x86_64::trap::TrapFrame;
use crate::loader::{self, Loaded};
use crate::mem::paging;
use crate::usermem::UserMemory;

/// The whole kernel state, behind one lock. Taken with interrupts off (in
/// the syscall and trap dispatchers); released only by the idle loop.
pub static KERNEL: Mutex<Option<Kernel>> = Mutex::new(None);

/// Timer ticks a task runs before the next ready task of its priority gets
/// the CPU.
pub const TIME_SLICE_TICKS: u32 = 10;

/// A blocking call that has not completed yet, with where its response
/// goes.
#[derive(Clone, Copy, Debug)]
pub enum Pending {
    Receive {
        channel: CapHandle,
        deadline: Option<Instant>,
        response: UserBuffer,
    },
    Sleep {
        response: UserBuffer,
    },
}

/// A response buffer in a task's memory (pointer, capacity).
#[derive(Clone, Copy, Debug)]
pub struct UserBuffer {
    pub ptr: u64,
    pub capacity: u64,
}

/// What the kernel holds for a task beside the core's record.
pub struct UserTask {
    /// The registers while the task is not running.
    pub frame: TrapFrame,
    pub memory: UserMemory,
    pub pending: Option<Pending>,
    pub startup: StartupInfo,
}

/// The kernel's [`UserTask`]s, in a table parallel to the core's task
/// table (indexed by [`slot_index`]): every system call looks up its
/// caller, and the IPC path its receiver, so lookups are an index and an
/// id comparison.
#[derive(Default)]
pub struct UserTasks {
    slots: Vec<Option<(TaskId, UserTask)>>,
}

impl UserTasks {
    pub fn get(&self, id: &TaskId) -> Option<&UserTask> {
        match self.slots.get(slot_index(*id)) {
            Some(Some((owner, task))) if owner == id => Some(task),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, id: &TaskId) -> Option<&mut UserTask> {
        match self.slots.get_mut(slot_index(*id)) {
            Some(Some((owner, task))) if owner == id => Some(task),
            _ => None,
        }
    }

    pub fn contains_key(&self, id: &TaskId) -> bool {
        self.get(id).is_some()
    }

    /// Record `task` for `id`, replacing whatever its slot held (the core
    /// reuses a slot only after its previous task was removed).
    pub fn insert(&mut self, id: TaskId, task: UserTask) {
        let index = slot_index(id);
        if index >= self.slots.len() {
            self.slots.resize_with(index + 1, || None);
        }
        self.slots[index] = Some((id, task));
    }

    pub fn remove(&mut self, id: &TaskId) -> Option<UserTask> {
        let slot = self.slots.get_mut(slot_index(*id))?;
        match slot {
            Some((owner, _)) if owner == id => slot.take().map(|(_, task)| task),
            _ => None,
        }
    }
}

/// What ends the run in `suite` and `bench` modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootPolicy {
    /// The root's exit ends the QEMU run with its verdict.
    ExitQemu,
    /// The system keeps running whatever the root does.
    KeepRunning,
}

pub struct Kernel {
    pub core: KernelCore,
    pub tasks: UserTasks,
    /// The task whose registers are in the live frame.
    pub current: Option<TaskId>,
    pub root: Option<TaskId>,
    pub root_policy: RootPolicy,
    /// Ticks left in the current task's slice.
    pub slice_left: u32,
    /// The root of the page table in CR3.
    pub active_space: u64,
    /// Scratch for the request being decoded (taken out during a call).
    pub request: Vec<u8>,
    /// Scratch for the response being encoded.
    pub response: Vec<u8>,
}

/// The current time as the core sees it.
pub fn now() -> Instant {
    Instant::from_nanos(crate::time::now())
}

impl Kernel {
    pub fn new(root_policy: RootPolicy) -> Self {
        Kernel {
            // Nothing about an ended task stays behind (its parent has the
            // exit notification).
            core: KernelCore::new(pandagen_core::CoreConfig {
                keep_ended_identities: false,
                ..pandagen_core::CoreConfig::default()
            }),
            tasks: UserTasks::default(),
            current: None,
            root: None,
            root_policy,
            slice_left: TIME_SLICE_TICKS,
            active_space: paging::kernel_space().root(),
            request: alloc::vec![0; pandagen_abi::syscall::MAX_REQUEST_BYTES],
            response: alloc::vec![0; RESPONSE_BUFFER_BYTES],
        }
    }

    /// Attach a loaded program to the core task `task`.
    pub fn attach(
        &mut self,
        task: TaskId,
        execution: ExecutionId,
        name: &str,
        capabilities: &[CapHandle],
        loaded: Loaded,
    ) {
        let frame = TrapFrame {
            rip: loaded.entry,
            cs: u64::from(gdt::USER_CODE),
            rflags: 0x202,
            rsp: loaded.stack_top,
            ss: u64::from(gdt::USER_DATA),
            ..TrapFrame::default()
        };
        let startup = StartupInfo::new(task, execution, name, capabilities);
        self.tasks.insert(
            task,
            UserTask {
                frame,
                memory: UserMemory::new(loaded.space),
                pending: None,
                startup,
            },
        );
    }

    /// End `task`: the core invalidates its capabilities and sends its exit
    /// notification; its address space is freed. If it was the root under
    /// [`RootPolicy::ExitQemu`], the run ends here.
    pub fn kill(&mut self, task: TaskId, reason: ExitReason) {
        // The reason's text comes from ring 3: bounded before it is logged.
        let reason = reason.bounded();
        let now = now();
        let normal = reason == ExitReason::Normal;
        if !normal {
            log::info!("task {task} ended: {reason:?}");
        }
        if let Err(e) = self.core.terminate(task, reason, now) {
            log::error!("terminating task {task}: {e:?}");
        }
        // The kernel routes notifications on exit channels; it keeps no
        // history of them.
        self.core.clear_exit_notifications();
        if self.current == Some(task) {
            self.current = None;
        }
        if let Some(user) = self.tasks.remove(&task) {
            if self.active_space == user.memory.space().root() {
                let kernel = paging::kernel_space();
                // SAFETY: the kernel space shares the kernel half.
                unsafe { paging::switch_to(&kernel) };
                self.active_space = kernel.root();
            }
            loader::destroy(user.memory.into_space());
        }
        if self.root == Some(task) && self.root_policy == RootPolicy::ExitQemu {
            crate::runner::finish(&self.core, normal);
        }
    }

    /// Load `image` and create a core task for it with `create`.
    pub fn start(
        &mut self,
        image: &[u8],
        name: &str,
        create: impl FnOnce(&mut KernelCore) -> Result<pandagen_core::Spawned, KernelError>,
    ) -> Result<pandagen_core::Spawned, KernelError> {
        let loaded = loader::load(image)?;
        match create(&mut self.core) {
            Ok(spawned) => {
                self.attach(
                    spawned.task,
                    spawned.execution,
                    name,
                    &spawned.capabilities,
                    loaded,
                );
                Ok(spawned)
            }
            Err(e) => {
                loader::destroy(loaded.space);
                Err(e)
            }
        }
    }
}
