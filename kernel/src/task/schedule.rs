//! Switching between tasks: blocking, preemption, faults and the idle loop.
//!
//! The policy (priorities, round-robin within a priority, who waits for
//! what) is the core's: [`KernelCore::pick_next`], `yield_task`,
//! `expire_deadlines`. Here is only the mechanism: choosing the record
//! ([`UserTask::frame`]) the kernel leaves through, copying an interrupted
//! task's registers into its record, loading CR3, and completing a
//! blocked call when its task is picked again — which follows the core's
//! protocol of re-issuing `receive_or_block` with the same deadline.
//!
//! [`KernelCore::pick_next`]: pandagen_core::KernelCore::pick_next

use pandagen_abi::identity::CpuFault;
use pandagen_abi::syscall::{write_receive_reply_trailer, ReceiveReply, RECEIVE_REPLY_TRAILER_MAX};
use pandagen_abi::{ExitReason, FailureCause, Instant, KernelError, TaskId};
use pandagen_core::{Offer, RecvOutcome};
use spin::MutexGuard;

use super::{now, Current, KernelState, Pending, UserTask, UserTasks, KERNEL, TIME_SLICE_TICKS};
use crate::arch::x86_64::idt::vector;
use crate::arch::x86_64::trap::TrapFrame;
use crate::mem::paging;
use crate::syscall::reply;

type Guard = MutexGuard<'static, Option<KernelState>>;

/// Park the current task, whose registers are in its record (the syscall
/// stub saved them there): no task is current afterwards.
pub fn park_current(k: &mut KernelState) {
    k.current = Current::NONE;
}

/// Copy `frame` (an interrupt's or exception's frame from ring 3, on the
/// kernel stack) into the current task's record and park it.
fn park_interrupted(k: &mut KernelState, frame: &TrapFrame) {
    if let Some(cur) = k.current.take() {
        if let Some(task) = k.tasks.get_mut(&cur) {
            frame.copy_into(&mut task.frame);
        }
    }
}

/// Run the next ready task: complete its pending call if it has one and
/// load its address space; returns its record, the frame to leave the
/// kernel with. With nothing ready, halt with interrupts on until a timer
/// tick or device interrupt makes something ready. The current task must
/// have been parked (or ended) first.
pub fn schedule(mut guard: Guard) -> *mut TrapFrame {
    loop {
        {
            let k = guard.as_mut().expect("kernel state initialised");
            let now = now();
            k.core.expire_deadlines(now);
            while let Some(next) = k.core.pick_next() {
                if !k.tasks.contains_key(&next) {
                    // A core task without a program cannot run.
                    k.kill(
                        next,
                        ExitReason::Failure {
                            error: FailureCause::Described("no program loaded".into()),
                        },
                    );
                    continue;
                }
                if complete_pending(k, next, now) {
                    if let Some(frame) = become_current(k, next) {
                        return frame;
                    }
                }
            }
        }
        drop(guard);
        // Nothing is ready. Any interrupt may change that: the timer
        // expires deadlines (checked at the top of the loop).
        x86_64::instructions::interrupts::enable_and_hlt();
        x86_64::instructions::interrupts::disable();
        guard = KERNEL.lock();
    }
}

/// Make `next` the task that runs when the kernel returns to ring 3: its
/// address space, a fresh time slice, and the I/O permission bitmap
/// showing its port windows and no other task's. Every way into ring 3
/// after a switch goes through here, so no task ever runs with the ports
/// another task opened. Returns the address of `next`'s saved registers,
/// or `None` — having changed nothing — if it has no record. The record is
/// looked up once.
fn become_current(k: &mut KernelState, next: TaskId) -> Option<*mut TrapFrame> {
    let KernelState {
        tasks,
        current,
        slice_left,
        active_cr3,
        ..
    } = k;
    let task = tasks.get_mut(&next)?;
    let frame = enter(task, next, current, slice_left, active_cr3, false);
    // Nothing to do between two tasks without windows.
    if !task.ports.is_empty() || k.ports_open() {
        k.sync_ports(next);
    }
    Some(frame)
}

/// [`become_current`] but for the I/O bitmap, with `next`'s record `task`
/// already at hand: its address space and a fresh time slice. Returns the
/// address of its saved registers. The caller brings the bitmap to the
/// task's windows, or knows that neither it nor the bitmap has any.
///
/// With `other` (the direct path, whose receiver is never its caller),
/// `next` is another task than the one whose space is loaded, and so its
/// space is another (the loader makes one per task): its CR3 is loaded
/// without comparing it with the loaded one first. (Were they the same,
/// the load would only flush the TLB.)
#[inline(always)]
pub(super) fn enter(
    task: &mut UserTask,
    next: TaskId,
    current: &mut Current,
    slice_left: &mut u32,
    active_cr3: &mut u64,
    other: bool,
) -> *mut TrapFrame {
    let cr3 = task.memory.cr3();
    debug_assert!(
        !other || *active_cr3 != cr3,
        "a switch to another task in the same space"
    );
    if other || *active_cr3 != cr3 {
        // SAFETY: every task space comes from `new_user_space` and shares
        // the kernel half; `cr3` is its CR3 value.
        unsafe { paging::load_cr3(cr3) };
        *active_cr3 = cr3;
    }
    current.set(next);
    *slice_left = TIME_SLICE_TICKS;
    live(task)
}

/// `task`'s record, the task that runs (or is about to run) in ring 3,
/// as the frame to leave the kernel with: its system calls save their
/// registers there (the syscall entry is pointed at it). Every switch
/// comes here, and so does the growth of the table of records, which
/// moves them (`KernelState::attach`).
#[inline(always)]
pub(super) fn live(task: &mut UserTask) -> *mut TrapFrame {
    // The record lives in the kernel half, mapped in every space.
    let frame = &mut task.frame as *mut TrapFrame;
    // SAFETY: interrupts are off (the kernel lock is held). The record
    // stays where it is while its task is the current one: records move
    // only when the table grows, which comes back here for the current
    // task; a task's record is freed only when it ends, and a task that
    // ended is no longer current: the next one becomes current here.
    unsafe { crate::arch::x86_64::syscall_entry::save_calls_into(frame) };
    frame
}

/// The frame to leave the kernel with for `next`: its saved registers,
/// left in its record (the syscall exit restores registers from whatever
/// frame it is given, and nothing runs between the dispatcher's return and
/// the `iretq`: one CPU, interrupts off). `None` — having changed nothing
/// — if `next` has no record.
#[inline(always)]
pub fn resume_in_place(k: &mut KernelState, next: TaskId) -> Option<*mut TrapFrame> {
    become_current(k, next)
}

/// Finish `task`'s blocked call if it can finish now. Returns whether the
/// task can run (false: it blocked again).
fn complete_pending(k: &mut KernelState, task: TaskId, now: Instant) -> bool {
    let Some(pending) = k.tasks.get_mut(&task).and_then(|t| t.pending.take()) else {
        return true;
    };
    let (response, len) = match pending {
        Pending::Sleep { response } => (response, reply::encode(&mut k.response, &Ok(()))),
        Pending::Receive {
            channel,
            deadline,
            response,
        } => match k.core.receive_or_block(task, channel, deadline, now) {
            Ok(RecvOutcome::Blocked) => {
                if let Some(t) = k.tasks.get_mut(&task) {
                    t.pending = Some(pending);
                }
                return false;
            }
            Ok(RecvOutcome::Message(delivered)) => {
                let len = reply::encode_receive(&mut k.response, &delivered);
                (response, len)
            }
            Ok(RecvOutcome::TimedOut) => (
                response,
                reply::encode::<ReceiveReply<'_>>(&mut k.response, &Err(KernelError::Timeout)),
            ),
            Err(e) => (
                response,
                reply::encode::<ReceiveReply<'_>>(&mut k.response, &Err(e)),
            ),
        },
    };
    let KernelState {
        tasks, response: r, ..
    } = k;
    if let Some(t) = tasks.get_mut(&task) {
        t.frame.rax = reply::deliver(&mut t.memory, response, &r[..len]);
    }
    true
}

/// The kernel's half of a hand-off ([`KernelCore::send_or_hand_off`] and
/// the fast path): complete `offer.receiver`'s blocked receive by writing
/// the message straight into its response buffer, which was checked
/// writable when it blocked. Declines — and the core queues the message
/// instead — if the task is not blocked in a receive or its buffer cannot
/// hold the reply; the queued message then meets the usual path when the
/// task runs.
///
/// [`KernelCore::send_or_hand_off`]: pandagen_core::KernelCore::send_or_hand_off
pub(super) fn accept_offer(tasks: &mut UserTasks, offer: &Offer<'_>) -> bool {
    let Some(task) = tasks.get_mut(&offer.receiver) else {
        return false;
    };
    let Some(Pending::Receive { response, .. }) = task.pending else {
        return false;
    };
    let mut trailer = [0u8; RECEIVE_REPLY_TRAILER_MAX];
    let trailer_len = write_receive_reply_trailer(offer.badge, &mut trailer);
    let Some(rax) = reply::deliver_stamped_message(
        &mut task.memory,
        response,
        offer.sender,
        offer.bytes,
        &trailer[..trailer_len],
    ) else {
        return false;
    };
    task.frame.rax = rax;
    task.pending = None;
    true
}

/// The timer interrupted ring 3 (`frame`, on the kernel stack): expire
/// deadlines and switch if the slice is used up or a sleeper woke (it may
/// outrank the current task). Returns the record of the task that runs
/// next, or `None` to resume `frame`.
pub fn preempt_tick(frame: &TrapFrame) -> Option<*mut TrapFrame> {
    let mut guard = KERNEL.lock();
    let k = guard.as_mut()?;
    let woken = k.core.expire_deadlines(now());
    k.slice_left = k.slice_left.saturating_sub(1);
    if woken == 0 && k.slice_left > 0 {
        return None;
    }
    if let Some(cur) = k.current.get() {
        k.core.yield_task(cur);
    }
    park_interrupted(k, frame);
    Some(schedule(guard))
}

/// What a CPU exception in ring 3 means for the task.
fn classify(frame: &TrapFrame) -> CpuFault {
    let error_code = frame.error_code;
    match frame.vector as u8 {
        vector::DIVIDE_ERROR => CpuFault::DivideError,
        vector::BREAKPOINT => CpuFault::Breakpoint,
        vector::INVALID_OPCODE => CpuFault::InvalidOpcode,
        vector::GENERAL_PROTECTION => CpuFault::GeneralProtection { error_code },
        vector::ALIGNMENT_CHECK => CpuFault::AlignmentCheck,
        vector::PAGE_FAULT => {
            let address = x86_64::registers::control::Cr2::read_raw();
            if crate::loader::in_stack_guard(address) {
                CpuFault::StackOverflow { address }
            } else {
                CpuFault::PageFault {
                    address,
                    error_code,
                }
            }
        }
        v => CpuFault::Other {
            vector: v,
            error_code,
        },
    }
}

/// A ring-3 exception (`frame`, on the kernel stack): end only the current
/// task (one report line), then run another; returns its record.
pub fn user_fault(frame: &TrapFrame) -> *mut TrapFrame {
    let fault = classify(frame);
    let mut guard = KERNEL.lock();
    let Some(k) = guard.as_mut() else {
        crate::panic::stop_after_fatal_error()
    };
    let Some(task) = k.current.get() else {
        log::error!("ring-3 fault {fault} with no current task");
        crate::panic::stop_after_fatal_error()
    };
    let name = k
        .tasks
        .get(&task)
        .map(|t| t.startup.name.clone())
        .unwrap_or_default();
    crate::println!(
        "[FAULT] task {task} ({name}) ended: {fault} at rip {:#x}",
        frame.rip
    );
    k.kill(
        task,
        ExitReason::Failure {
            error: FailureCause::Fault(fault),
        },
    );
    schedule(guard)
}

/// Start scheduling from the boot context: never returns.
pub fn run_first() -> ! {
    x86_64::instructions::interrupts::disable();
    let frame = schedule(KERNEL.lock());
    // SAFETY: `schedule` returns the record of the task to run, a ring-3
    // frame, which it pointed the syscall entry at (`live`).
    unsafe { crate::arch::x86_64::syscall_entry::enter_user(frame) }
}
