//! Ring-3 tasks: what the kernel keeps per task beside the core's object
//! model (saved registers, address space, a pending blocking call), and the
//! one lock that guards the whole kernel state.
//!
//! The object model — task identities, capabilities, channels, the
//! scheduler's ready and wait lists — is the [`KernelCore`]; this module
//! only adds what needs hardware: a [`TrapFrame`] and an
//! [`AddressSpace`] per task.
//!
//! Every task keeps its registers in [`UserTask::frame`]. A system call
//! saves them there as it enters (the syscall stub pushes them straight
//! into the running task's record), the dispatcher works on the record,
//! and the kernel leaves for ring 3 through the record of the task that
//! runs next: a call, switching or not, copies no frame. An interrupt or
//! exception from ring 3 builds its frame at the top of the one kernel
//! stack; a switch from there copies it into the record (see
//! [`schedule`]).

mod exchange;
mod object_call;
mod ports;
mod schedule;

pub use exchange::{DirectCall, Exchanged};

pub use schedule::{park_current, preempt_tick, resume_in_place, run_first, schedule, user_fault};

use schedule::accept_offer;

use alloc::vec::Vec;
use pandagen_abi::syscall::{StartupInfo, RESPONSE_BUFFER_BYTES};
use pandagen_abi::{Budget, CapHandle, ExecutionId, ExitReason, Instant, KernelError, TaskId};
use pandagen_core::{slot_index, CoreConfig, Delivered, KernelCore, ObjectCalled, Switched};
use serde::Serialize;
use spin::Mutex;

use crate::arch::x86_64::gdt;
use crate::arch::x86_64::trap::TrapFrame;
use crate::loader::{self, Loaded};
use crate::mem::{frame, heap, paging};
use crate::syscall::reply;
use crate::usermem::UserMemory;

/// The whole kernel state, behind one lock. Taken with interrupts off (in
/// the syscall and trap dispatchers); released only by the idle loop.
pub static KERNEL: Mutex<Option<KernelState>> = Mutex::new(None);

/// Lock [`KERNEL`] from a system call's entry: one attempt, which on
/// this one CPU with interrupts off always succeeds (nothing else holds
/// the lock while ring 3 runs), then the spinning lock as a fallback.
/// The attempt is one `lock cmpxchg` that falls through on success.
#[inline(always)]
pub fn lock_kernel() -> spin::MutexGuard<'static, Option<KernelState>> {
    match KERNEL.try_lock() {
        Some(guard) => guard,
        None => KERNEL.lock(),
    }
}

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

/// Bytes a task passed by pointer and length, not yet checked.
#[derive(Clone, Copy, Debug)]
pub struct UserRange {
    pub ptr: u64,
    pub len: usize,
}

/// What the kernel holds for a task beside the core's record. The frame
/// first (`repr(C)`), and the record first in its slot ([`Slot`]): a
/// slot's address is its task's frame's, where the syscall entry saves
/// and every exit leaves from (one `add` fewer on every switch).
#[repr(C)]
pub struct UserTask {
    /// The task's registers: saved here by every system call it makes
    /// (the syscall stub pushes them here), or copied here from the
    /// kernel stack when an interrupt or exception switches away from it;
    /// the kernel resumes the task from here.
    pub frame: TrapFrame,
    pub memory: UserMemory,
    pub pending: Option<Pending>,
    pub startup: StartupInfo,
    /// The program image it runs (`bin/<image>`): what its program secret
    /// is bound to (see `entropy`).
    pub image: alloc::string::String,
    /// Port capabilities open to its `in` and `out` (see `ports`).
    pub ports: ports::PortWindows,
}

/// The kernel's [`UserTask`]s, in a table parallel to the core's task
/// table (indexed by [`slot_index`]): every system call looks up its
/// caller, and the IPC path its receiver, so lookups are an index and an
/// id comparison. Growing the table moves every record, and with it the
/// running task's, where the syscall entry saves that task's registers:
/// [`UserTasks::insert`]'s one caller (`KernelState::attach`) points the
/// entry at it again.
#[derive(Default)]
pub struct UserTasks {
    slots: Vec<Option<Slot>>,
}

/// A task's record in [`UserTasks`], with the id of the task it is for.
/// The record first, so that its frame is at the slot's own address.
#[repr(C)]
struct Slot {
    task: UserTask,
    owner: TaskId,
}

const _: () = assert!(core::mem::offset_of!(UserTask, frame) == 0);
const _: () = assert!(core::mem::offset_of!(Slot, task) == 0);

impl UserTasks {
    pub fn get(&self, id: &TaskId) -> Option<&UserTask> {
        match self.slots.get(slot_index(*id)) {
            Some(Some(Slot { task, owner })) if owner == id => Some(task),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, id: &TaskId) -> Option<&mut UserTask> {
        match self.slots.get_mut(slot_index(*id)) {
            Some(Some(Slot { task, owner })) if owner == id => Some(task),
            _ => None,
        }
    }

    /// The records at two different slots (`None` if either is empty, they
    /// are the same slot, or the first is not `first`'s): the first task's,
    /// and the second's with its id (where the slot keeps it, read at its
    /// use rather than carried). For a caller whose id and slot are
    /// known and a task the core named by its slot (the core's slots and
    /// these are the same, see [`slot_index`]). Inline: the direct
    /// `Exchange` finds its two records here on every call.
    #[inline(always)]
    pub fn pair_at_mut(
        &mut self,
        first: &TaskId,
        slots: (u32, u32),
    ) -> Option<(&mut UserTask, &TaskId, &mut UserTask)> {
        let [x, y] = self
            .slots
            .get_disjoint_mut([slots.0 as usize, slots.1 as usize])
            .ok()?;
        match (x, y) {
            (
                Some(Slot {
                    task: task_a,
                    owner,
                }),
                Some(Slot {
                    task: task_b,
                    owner: second,
                }),
            ) if owner == first => Some((task_a, second, task_b)),
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
        self.slots[index] = Some(Slot { task, owner: id });
    }

    pub fn remove(&mut self, id: &TaskId) -> Option<UserTask> {
        let slot = self.slots.get_mut(slot_index(*id))?;
        match slot {
            Some(Slot { owner, .. }) if owner == id => slot.take().map(|slot| slot.task),
            _ => None,
        }
    }
}

/// Called when a watched task ends, with the object model after its end.
/// Only the test harness watches a task (its root task, for the verdict).
pub type TaskEndHook = fn(&KernelCore, &ExitReason);

/// The current task ([`KernelState::current`]) as its id's raw value, 0
/// for none. No task has the id 0: a task id's low bits are its slot
/// plus one (`pandagen_core::task`), and 0 is `KERNEL_TASK`, the sender
/// the kernel stamps on its own messages. So the id itself says whether
/// there is one, and making a task current is one store, where an
/// `Option<TaskId>` writes its tag and the id (every switch makes one).
#[derive(Clone, Copy)]
pub(crate) struct Current(u64);

impl Current {
    /// No task is current.
    pub(crate) const NONE: Current = Current(0);

    /// The current task, if any.
    #[inline(always)]
    pub(crate) fn get(self) -> Option<TaskId> {
        match self.0 {
            0 => None,
            raw => Some(TaskId::from_raw(raw)),
        }
    }

    /// `task` is current. Never `KERNEL_TASK` (no task has its id),
    /// which would read back as none: asserted in debug builds.
    #[inline(always)]
    pub(crate) fn set(&mut self, task: TaskId) {
        debug_assert_ne!(
            task,
            pandagen_abi::ids::KERNEL_TASK,
            "the kernel's id made current"
        );
        self.0 = task.as_raw();
    }

    /// The current task, if any, and none afterwards.
    pub(crate) fn take(&mut self) -> Option<TaskId> {
        let current = self.get();
        *self = Current::NONE;
        current
    }
}

/// The kernel's state: the core's object model and, per task, what needs
/// hardware. One instance, behind [`KERNEL`].
pub struct KernelState {
    core: KernelCore,
    tasks: UserTasks,
    /// The task whose registers are in the live frame.
    current: Current,
    /// A task whose end someone is waiting for (see [`TaskEndHook`]).
    end_watch: Option<(TaskId, TaskEndHook)>,
    /// Ticks left in the current task's slice.
    slice_left: u32,
    /// The CR3 value loaded (the root of the page table with the kernel's
    /// flags, `paging::cr3_of`).
    active_cr3: u64,
    /// Scratch for the request being decoded (taken out during a call).
    request: Vec<u8>,
    /// Scratch for the response being encoded.
    response: Vec<u8>,
    /// The port ranges open in the TSS I/O bitmap (see `ports`).
    open_ports: ports::OpenPorts,
}

/// Kernel heap kept out of every budget: the kernel's own growth that no
/// task pays for (the audit ring, the tables' slots, exit notifications).
const UNBUDGETED_HEAP: u64 = 1 << 20;
/// Frames kept out of every budget: kernel stacks and page tables the
/// kernel makes for itself.
const UNBUDGETED_FRAMES: u64 = 1024;

/// The core's configuration on this machine: tasks are charged for what
/// this kernel keeps per task too (the root budget is set by
/// [`root_budget`] once the core exists).
fn core_config() -> CoreConfig {
    CoreConfig {
        task_overhead: core::mem::size_of::<(TaskId, UserTask)>() as u64,
        // Nothing about an ended task stays behind (its parent has the
        // exit notification).
        keep_ended_identities: false,
        ..CoreConfig::default()
    }
}

/// The root task's budget: the heap and the frames free now, less what the
/// kernel keeps for itself. Measured once the core exists, so that its own
/// fixed structures are not promised to any task.
fn root_budget() -> Budget {
    let (_, heap_free) = heap::usage();
    let (_, frames_free) = frame::counts();
    Budget::new(
        (heap_free as u64).saturating_sub(UNBUDGETED_HEAP),
        frames_free.saturating_sub(UNBUDGETED_FRAMES),
    )
}

/// The current time as the core sees it.
pub fn now() -> Instant {
    Instant::from_nanos(crate::time::now())
}

impl KernelState {
    pub fn new() -> Self {
        let mut state = KernelState {
            core: KernelCore::new(core_config()),
            tasks: UserTasks::default(),
            current: Current::NONE,
            end_watch: None,
            slice_left: TIME_SLICE_TICKS,
            active_cr3: paging::cr3_of(&paging::kernel_space()),
            request: alloc::vec![0; pandagen_abi::syscall::MAX_REQUEST_BYTES],
            response: alloc::vec![0; RESPONSE_BUFFER_BYTES],
            open_ports: ports::OpenPorts::new(),
        };
        state.core.set_reserved_physical(crate::device::reserved());
        if let Some(pages) = crate::early_display::framebuffer_pages() {
            state.core.set_framebuffer(pages);
        }
        // No task exists yet, so this cannot be refused.
        let _ = state.core.set_root_budget(root_budget());
        state
    }

    /// The object model.
    pub fn core(&self) -> &KernelCore {
        &self.core
    }

    pub fn core_mut(&mut self) -> &mut KernelCore {
        &mut self.core
    }

    /// The task whose registers are in the live frame.
    pub fn current(&self) -> Option<TaskId> {
        self.current.get()
    }

    /// Call `on_end` when `task` ends (replacing any earlier watch).
    pub fn watch_end(&mut self, task: TaskId, on_end: TaskEndHook) {
        self.end_watch = Some((task, on_end));
    }

    /// The program image `task` runs (`bin/<image>`).
    pub fn image(&self, task: TaskId) -> Option<&str> {
        self.tasks.get(&task).map(|t| t.image.as_str())
    }

    /// What `task` learns about itself at start.
    pub fn startup(&self, task: TaskId) -> Option<&StartupInfo> {
        self.tasks.get(&task).map(|t| &t.startup)
    }

    /// `task`'s memory, as its system calls see it.
    pub fn memory_mut(&mut self, task: TaskId) -> Option<&mut UserMemory> {
        self.tasks.get_mut(&task).map(|t| &mut t.memory)
    }

    /// `task` waits for `pending` to complete; it completes when the
    /// scheduler picks the task again.
    pub fn set_pending(&mut self, task: TaskId, pending: Pending) {
        if let Some(t) = self.tasks.get_mut(&task) {
            t.pending = Some(pending);
        }
    }

    /// The request scratch buffer, taken out for the length of one call
    /// (so that a handler can read the request while changing the kernel
    /// state); give it back with [`KernelState::return_request_buffer`].
    pub fn take_request_buffer(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.request)
    }

    pub fn return_request_buffer(&mut self, buffer: Vec<u8>) {
        self.request = buffer;
    }

    /// Encode `result` as the response; returns its length.
    pub fn encode_response<T: Serialize>(&mut self, result: &Result<T, KernelError>) -> usize {
        reply::encode(&mut self.response, result)
    }

    /// Encode a delivered message as the response to a receive.
    pub fn encode_received(&mut self, delivered: &Delivered) -> usize {
        reply::encode_receive(&mut self.response, delivered)
    }

    /// Answer the running `task`'s call: write the first `len` bytes of
    /// the response into its buffer `to` and the `rax` it sees into its
    /// record. Returns the record to resume it with (see
    /// [`KernelState::answer`]), or `None` if the task has no record.
    pub fn deliver_answer(
        &mut self,
        task: TaskId,
        to: UserBuffer,
        len: usize,
    ) -> Option<*mut TrapFrame> {
        let t = self.tasks.get_mut(&task)?;
        t.frame.rax = reply::deliver(&mut t.memory, to, &self.response[..len]);
        Some(&mut t.frame as *mut TrapFrame)
    }

    /// Whether `frame` is `task`'s record, where the syscall entry saves
    /// its registers (checked in debug builds on every call: a stale
    /// entry pointer would have written another task's registers, or
    /// freed memory).
    pub fn is_record_of(&self, task: TaskId, frame: *const TrapFrame) -> bool {
        self.tasks
            .get(&task)
            .is_some_and(|t| core::ptr::eq(&t.frame, frame))
    }

    /// Answer the running `task`'s call with `rax` alone. Returns its
    /// record, where its registers were saved when it entered, as the
    /// frame to resume it with (the record may have moved since, if the
    /// call grew the table: the address is taken afresh; `attach` pointed
    /// the syscall entry at it), or `None` if the task has no record.
    pub fn answer(&mut self, task: TaskId, rax: u64) -> Option<*mut TrapFrame> {
        let t = self.tasks.get_mut(&task)?;
        t.frame.rax = rax;
        Some(&mut t.frame as *mut TrapFrame)
    }

    /// Send as `caller`: straight into the buffer of a receiver blocked on
    /// the channel if there is one (see `KernelCore::send_or_hand_off`),
    /// else onto the queue.
    pub fn send_or_hand_off(
        &mut self,
        caller: TaskId,
        channel: CapHandle,
        message: &[u8],
        capabilities: &[CapHandle],
        now: Instant,
    ) -> Result<(), KernelError> {
        let KernelState { core, tasks, .. } = self;
        core.send_or_hand_off(caller, channel, message, capabilities, now, |offer| {
            accept_offer(tasks, offer)
        })?;
        Ok(())
    }

    /// [`KernelState::send_or_hand_off`] through an object capability
    /// (see `KernelCore::send_to_object_or_hand_off`): the message, with
    /// its stamp, goes straight into the buffer of the service's task
    /// blocked receiving, if there is one and it can take it.
    pub fn send_to_object_or_hand_off(
        &mut self,
        caller: TaskId,
        object: CapHandle,
        message: &[u8],
        capabilities: &[CapHandle],
        now: Instant,
    ) -> Result<(), KernelError> {
        let KernelState { core, tasks, .. } = self;
        core.send_to_object_or_hand_off(caller, object, message, capabilities, now, |offer| {
            accept_offer(tasks, offer)
        })?;
        Ok(())
    }

    /// A client's object call (see `KernelCore::call_object`): the send's
    /// hand-off as in [`KernelState::send_to_object_or_hand_off`], then the
    /// receive.
    pub fn call_object(
        &mut self,
        caller: TaskId,
        object: CapHandle,
        message: &[u8],
        receive: CapHandle,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Result<ObjectCalled, KernelError> {
        let KernelState { core, tasks, .. } = self;
        core.call_object(caller, object, message, receive, deadline, now, |offer| {
            accept_offer(tasks, offer)
        })
    }

    /// The core's send-then-receive fast path (see
    /// `KernelCore::send_receive_fast`): `Some` if the message went
    /// straight to a waiting receiver, which the core made the running task.
    pub fn send_receive_fast(
        &mut self,
        caller: TaskId,
        send: CapHandle,
        message: &[u8],
        receive: CapHandle,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Option<Switched> {
        let KernelState { core, tasks, .. } = self;
        core.send_receive_fast(
            caller,
            send,
            message,
            receive,
            deadline,
            || now,
            |offer| accept_offer(tasks, offer),
        )
    }

    /// Attach a loaded program to the core task `task`.
    fn attach(
        &mut self,
        task: TaskId,
        execution: ExecutionId,
        name: &str,
        image: &str,
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
                image: alloc::string::String::from(image),
                ports: ports::PortWindows::new(),
            },
        );
        // The table may have grown and moved every record: the running
        // task's calls are saved where its record now is.
        if let Some(running) = self.current.get().and_then(|cur| self.tasks.get_mut(&cur)) {
            schedule::live(running);
        }
    }

    /// End `task`: the core invalidates its capabilities and sends its exit
    /// notification; its address space is freed. If it was watched (see
    /// [`KernelState::watch_end`]), the watcher's hook runs last.
    pub fn kill(&mut self, task: TaskId, reason: ExitReason) {
        // The reason's text comes from ring 3: bounded before it is logged.
        let reason = reason.bounded();
        let now = now();
        let watcher = self
            .end_watch
            .filter(|(watched, _)| *watched == task)
            .map(|(_, on_end)| (on_end, reason.clone()));
        if reason != ExitReason::Normal {
            log::info!("task {task} ended: {reason:?}");
        }
        if let Err(e) = self.core.terminate(task, reason, now) {
            log::error!("terminating task {task}: {e:?}");
        }
        // The kernel routes notifications on exit channels; it keeps no
        // history of them.
        self.core.clear_exit_notifications();
        if self.current.get() == Some(task) {
            self.current = Current::NONE;
        }
        if let Some(user) = self.tasks.remove(&task) {
            if self.active_cr3 == user.memory.cr3() {
                let kernel = paging::kernel_space();
                // SAFETY: the kernel space shares the kernel half.
                unsafe { paging::switch_to(&kernel) };
                self.active_cr3 = paging::cr3_of(&kernel);
            }
            // A DMA holder's quarantined frames stay allocated: its
            // device may still write into them until it is reset.
            let quarantined = self.core.quarantined_dma(task);
            if !quarantined.is_empty() {
                log::info!(
                    "dma quarantine: {} frames of task {task} kept until its device is reset",
                    quarantined
                        .iter()
                        .map(|r| r.len / pandagen_abi::memory::PAGE_SIZE)
                        .sum::<u64>()
                );
            }
            loader::destroy_keeping(user.memory.into_space(), &quarantined);
        }
        if let Some((on_end, reason)) = watcher {
            on_end(&self.core, &reason);
        }
    }

    /// Load `image` (the program `bin/<image_name>`) and create a core
    /// task for it with `create`, which is told how many frames the new
    /// address space took (page tables and pages: everything the frame
    /// allocator handed out while loading), so that the core charges them
    /// to the task's budget.
    pub fn start(
        &mut self,
        image_name: &str,
        image: &[u8],
        name: &str,
        create: impl FnOnce(&mut KernelCore, u64) -> Result<pandagen_core::Spawned, KernelError>,
    ) -> Result<pandagen_core::Spawned, KernelError> {
        let free_before = frame::counts().1;
        let loaded = loader::load(image)?;
        let frames = free_before.saturating_sub(frame::counts().1);
        match create(&mut self.core, frames) {
            Ok(spawned) => {
                self.attach(
                    spawned.task,
                    spawned.execution,
                    name,
                    image_name,
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
