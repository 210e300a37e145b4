//! The system call dispatcher: the safe side of the `syscall` entry.
//!
//! [`syscall_dispatch`] receives the caller's saved registers (per
//! `pandagen_abi::syscall`; the entry stub pushes them straight into the
//! caller's record, which is the live frame while the call runs), copies
//! the request in through the caller's page tables, and calls one
//! handler per [`Syscall`]. The handlers are grouped by the ABI table's
//! families, one file each: [`task`], [`ipc`], [`caps`], [`info`],
//! [`console`], [`block`]; each file's `handler`
//! maps its family's calls to their handlers, and the compiler checks that
//! every call has one. Every handler has one shape —
//! `fn(&mut Ctx, request bytes) -> Result<Step, KernelError>` — and decodes
//! its postcard request itself; an `Err` is encoded as the response. The
//! [`Step`] says what happens to the caller: a response, a block (the call
//! completes when the task is picked again), an exit. The dispatcher's own
//! result is an [`Outcome`]: the call ran (a recoverable error is its
//! response), or no response can be written at all and `rax` carries a
//! transport status.
//!
//! Checks, in order: the number (`UnknownSyscall`); for calls that take
//! a message off a channel (`CallProperties::receives`: `Receive` and
//! `SendReceive`) the response buffer (writable user memory for
//! `min(capacity, RESPONSE_BUFFER_BYTES)` bytes, else
//! `rax = STATUS_BAD_RESPONSE_BUFFER` and nothing is received — a message,
//! once dequeued, could not be put back); the request length
//! (`RequestTooLarge`); the request range (`BadUserMemory`); the postcard
//! (`MalformedRequest`). Other calls check their response buffer when the
//! response is written: a call whose response cannot be written has still
//! taken effect, and `rax` says the response was lost
//! (`STATUS_BAD_RESPONSE_BUFFER` or `status_response_too_large`). Nothing
//! a task passes can make the kernel panic: every failure is a typed
//! error.

mod block;
mod caps;
mod console;
mod device;
mod info;
mod ipc;
pub(crate) mod object_call;
pub mod reply;
mod task;

use pandagen_abi::error::{Resource, SyscallError};
use pandagen_abi::syscall::{
    Family, Syscall, MAX_REQUEST_BYTES, RESPONSE_BUFFER_BYTES, STATUS_BAD_RESPONSE_BUFFER,
    STATUS_KERNEL_UNAVAILABLE,
};
use pandagen_abi::{CapHandle, CapKind, ExitReason, Instant, KernelError, Rights, TaskId};
use pandagen_core::CapInfo;
use serde::Serialize;

use crate::arch::x86_64::trap::TrapFrame;
use crate::task::{DirectCall, Exchanged, KernelState, Pending, UserBuffer};

/// Heap the kernel keeps for its own bookkeeping whatever tasks queue.
const HEAP_RESERVE: usize = 512 * 1024;

/// The one shape of every handler.
type Handler = fn(&mut Ctx<'_>, &[u8]) -> Result<Step, KernelError>;

/// What a call does to its caller.
pub enum Step {
    /// The response (this many bytes of the kernel's response buffer) is
    /// ready; the caller continues.
    Reply(usize),
    /// As `Reply`, then the caller goes to the back of its ready list.
    ReplyThenYield(usize),
    /// The caller blocks until `Pending` can complete.
    Block(Pending),
    /// The caller ends.
    Exit(ExitReason),
    /// The caller blocks until `pending` can complete, and `task` — which
    /// the core has already made the running task — runs next.
    SwitchTo { task: TaskId, pending: Pending },
}

/// A call in progress. Its fields are the handlers' (this module's
/// children) alone.
pub struct Ctx<'k> {
    k: &'k mut KernelState,
    caller: TaskId,
    now: Instant,
    response: UserBuffer,
    /// The argument registers beyond the request and response buffers,
    /// for calls whose request travels partly in registers.
    registers: ExtraRegisters,
}

/// `r8`, `r9`, `r12` and `r13` as the caller left them.
#[derive(Clone, Copy, Debug)]
pub struct ExtraRegisters {
    pub r8: u64,
    pub r9: u64,
    pub r12: u64,
    pub r13: u64,
}

impl ExtraRegisters {
    fn of(frame: &TrapFrame) -> Self {
        ExtraRegisters {
            r8: frame.r8,
            r9: frame.r9,
            r12: frame.r12,
            r13: frame.r13,
        }
    }
}

/// The registers the direct path needs before it has the caller's record
/// at hand (an `Exchange`'s length, channels, timeout and flags: what the
/// core's check takes), as the entry stub passes them to
/// [`direct_entry`] (in argument registers, after saving them in the
/// caller's record, which the call changes through the kernel state: so
/// nothing refers to the record while the kernel state is borrowed). The
/// buffers' addresses are read from the record once the path holds it.
#[derive(Clone, Copy, Debug)]
pub struct CallRegisters {
    pub rsi: u64,
    pub r8: u64,
    pub r9: u64,
    pub r12: u64,
    pub r13: u64,
}

impl CallRegisters {
    /// Whether these are the registers the stub saved in `frame`.
    ///
    /// # Safety
    /// `frame` is the entry stub's argument: the running task's saved
    /// registers, valid, and not referred to by anything live.
    unsafe fn saved_in(&self, frame: *const TrapFrame) -> bool {
        // SAFETY: valid and unaliased (the caller's promise); a shared
        // borrow for the length of these reads only.
        let frame = unsafe { &*frame };
        (self.rsi, self.r8, self.r9, self.r12, self.r13)
            == (frame.rsi, frame.r8, frame.r9, frame.r12, frame.r13)
    }
}

impl Ctx<'_> {
    /// The caller's capability `handle`, which must be of `kind` and hold
    /// `rights` (a refusal is audited and returned as the call's error).
    pub fn require(
        &mut self,
        handle: CapHandle,
        kind: CapKind,
        rights: Rights,
    ) -> Result<CapInfo, KernelError> {
        self.k
            .core_mut()
            .lookup(self.caller, handle, kind, rights, self.now)
    }

    /// Refuse with `ResourceExhausted(Memory)` unless the heap can take
    /// `bytes` more and still keep [`HEAP_RESERVE`] free: tasks filling
    /// channels nobody drains, or creating objects without end, must not
    /// run the kernel out of memory.
    pub fn ensure_heap_room(&self, bytes: usize) -> Result<(), KernelError> {
        if crate::mem::heap::has_room(bytes + HEAP_RESERVE) {
            Ok(())
        } else {
            Err(KernelError::ResourceExhausted(Resource::Memory))
        }
    }

    /// Encode `Ok(value)` as the response.
    pub fn reply<T: Serialize>(&mut self, value: T) -> Result<Step, KernelError> {
        Ok(Step::Reply(self.k.encode_response(&Ok(value))))
    }
}

/// Decode a postcard request; any failure is `MalformedRequest`.
pub fn decode<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, KernelError> {
    postcard::from_bytes(bytes).map_err(|_| KernelError::Syscall(SyscallError::MalformedRequest))
}

/// How the dispatcher leaves the caller (after Hubris's `UserError`: a
/// call either runs — its recoverable errors are answered as its result —
/// or cannot be answered at all).
enum Outcome {
    /// The call ran: its result, `Ok` or a recoverable `Err`, is encoded in
    /// the kernel's response buffer, and the [`Step`] says what happens to
    /// the caller.
    Ran(Step),
    /// No response can be written: the caller resumes at once with this
    /// transport status in `rax`, and the call did nothing.
    Unanswered(u64),
}

/// Why a call did not run to a [`Step`].
enum CallError {
    /// Answered to the caller as `Err(error)`: a bad number, request or
    /// pointer, or the handler's own refusal.
    Recoverable(KernelError),
    /// Nothing can be answered (see [`Outcome::Unanswered`]).
    Unanswerable(u64),
}

impl From<KernelError> for CallError {
    fn from(error: KernelError) -> Self {
        CallError::Recoverable(error)
    }
}

/// Called by the entry stub for a call with a direct path
/// ([`Syscall::Exchange`] with `C` = `ExchangeRegisters`,
/// [`Syscall::CallObject`] with `C` = `ObjectCallRegisters`) with the
/// caller's record, where the stub saved its registers; leaves the kernel
/// itself, through the frame to resume (`leave_to`: it does not return,
/// so it keeps none of the registers the stub has saved already and
/// restores none on the way out). The direct path
/// (`KernelState::direct_call`) first, which leaves the caller's
/// registers where the stub saved them; a call it declines, having
/// changed nothing, goes to the general path like any other.
///
/// The stub passes the caller's `rsi`, `r12`, `r13`, `r8` and `r9` as
/// the arguments after `frame` (the values it has just saved there), so
/// that they are not loaded back from the record.
pub extern "C" fn direct_entry<C: DirectCall>(
    frame: *mut TrapFrame,
    rsi: u64,
    r12: u64,
    r13: u64,
    r8: u64,
    r9: u64,
) -> ! {
    let registers = CallRegisters {
        rsi,
        r8,
        r9,
        r12,
        r13,
    };
    debug_assert!(
        // SAFETY: the stub's argument, read before the kernel state is
        // locked; read only.
        unsafe { registers.saved_in(frame) },
        "the syscall entry passed {} registers it did not save",
        C::NAME
    );
    let mut guard = crate::task::lock_kernel();
    let taken = match guard.as_mut() {
        Some(k) => {
            debug_assert!(
                k.current()
                    .is_some_and(|caller| k.is_record_of(caller, frame)),
                "the syscall entry saved {}'s registers outside its caller's record",
                C::NAME
            );
            debug_assert!(
                // SAFETY: the stub's argument, the caller's record; read only.
                unsafe { (*frame).has_user_selectors() },
                "a record without the user selectors"
            );
            k.direct_call::<C>(&registers)
        }
        None => Exchanged::Declined,
    };
    drop(guard);
    let next = match taken {
        Exchanged::Resume(next) => next,
        Exchanged::Declined => {
            // The record is as the stub left it: the general path reads
            // the registers again. It is found again where the stub found
            // it (nothing declined re-points the entry), so that `frame`
            // is not kept in a register across the direct path.
            let record = crate::arch::x86_64::syscall_entry::saved_record();
            debug_assert_eq!(record, frame, "a declined call moved the entry");
            // The stub did not save RAX for a direct entry (it knows the
            // number): the dispatcher reads the call's number there.
            // SAFETY: the caller's record, where the stub saved its
            // registers; nothing refers to it (the lock is released).
            unsafe { (*record).rax = C::NUMBER as u64 };
            syscall_dispatch(record)
        }
    };
    // SAFETY: `next` is the record of the task that runs next, as the
    // direct path or the dispatcher returned it (the syscall exit's
    // frame): a ring-3 frame with the user selectors, which nothing else
    // refers to once the lock is released (one CPU, interrupts off).
    unsafe { crate::arch::x86_64::syscall_entry::leave_to(next) }
}

/// Called by the entry stub with the caller's record, where the stub saved
/// its registers; returns the frame to resume. The call's handling
/// writes the caller's record through the kernel state, never through
/// `frame`, which a spawn may have moved; the frame to resume is looked
/// up afresh.
pub extern "C" fn syscall_dispatch(frame: *mut TrapFrame) -> *mut TrapFrame {
    // SAFETY: the stub's argument, read before the kernel state is locked.
    if unsafe { (*frame).rax } == Syscall::Null as u64 {
        // SAFETY: the stub's argument, valid and unaliased: the kernel
        // state is not locked.
        unsafe { (*frame).rax = 0 };
        return frame;
    }
    let mut guard = crate::task::lock_kernel();
    // Unreachable in practice: ring 3 runs only once the kernel state
    // exists, and only as its current task.
    let Some((k, caller)) = guard
        .as_mut()
        .and_then(|k| k.current().map(|caller| (k, caller)))
    else {
        drop(guard);
        // SAFETY: as above; the lock is released.
        unsafe { (*frame).rax = STATUS_KERNEL_UNAVAILABLE };
        return frame;
    };
    debug_assert!(
        k.is_record_of(caller, frame),
        "the syscall entry saved task {caller}'s registers outside its record"
    );
    debug_assert!(
        // SAFETY: the stub's argument, the caller's record; read only.
        unsafe { (*frame).has_user_selectors() },
        "task {caller}'s record without the user selectors"
    );
    // SAFETY: the stub's argument; nothing has changed or moved the record
    // since it was saved (no handler has run), and the borrow ends here.
    let response = unsafe {
        UserBuffer {
            ptr: (*frame).rdx,
            capacity: (*frame).r10,
        }
    };
    let step = match dispatch(k, caller, frame, response) {
        Outcome::Ran(step) => step,
        Outcome::Unanswered(status) => {
            if let Some(resume) = k.answer(caller, status) {
                return resume;
            }
            // The caller has no record left: it cannot run.
            crate::task::park_current(k);
            return crate::task::schedule(guard);
        }
    };
    // The call may have given up a capability whose ports are open (the
    // ports open are the caller's: it runs).
    if k.ports_open() {
        k.sync_ports(caller);
    }
    match step {
        Step::Reply(len) => {
            if let Some(resume) = k.deliver_answer(caller, response, len) {
                return resume;
            }
            crate::task::park_current(k);
        }
        Step::ReplyThenYield(len) => {
            let _ = k.deliver_answer(caller, response, len);
            k.core_mut().yield_task(caller);
            crate::task::park_current(k);
        }
        Step::Block(pending) => {
            k.set_pending(caller, pending);
            crate::task::park_current(k);
        }
        Step::Exit(reason) => k.kill(caller, reason),
        Step::SwitchTo { task, pending } => {
            k.set_pending(caller, pending);
            crate::task::park_current(k);
            if let Some(next) = crate::task::resume_in_place(k, task) {
                return next;
            }
        }
    }
    crate::task::schedule(guard)
}

/// Validate and run one call.
fn dispatch(
    k: &mut KernelState,
    caller: TaskId,
    frame: *const TrapFrame,
    response: UserBuffer,
) -> Outcome {
    match validate_and_run(k, caller, frame, response) {
        Ok(step) => Outcome::Ran(step),
        Err(CallError::Recoverable(e)) => {
            Outcome::Ran(Step::Reply(k.encode_response::<()>(&Err(e))))
        }
        Err(CallError::Unanswerable(status)) => Outcome::Unanswered(status),
    }
}

/// The checks of the module documentation, in order, then the handler.
fn validate_and_run(
    k: &mut KernelState,
    caller: TaskId,
    frame: *const TrapFrame,
    response: UserBuffer,
) -> Result<Step, CallError> {
    // SAFETY: `frame` is the caller's record, where the entry stub saved
    // its registers: valid, and nothing changes or moves it until the
    // handler runs (which may, through the kernel state: a spawn that
    // grows the table of records). This borrow's last use is before the
    // handler, and it is read where a register is needed rather than
    // copied out whole, so that no register is kept across the calls
    // below.
    let saved = unsafe { &*frame };
    let call = Syscall::from_number(saved.rax).map_err(KernelError::Syscall)?;
    let memory = k
        .memory_mut(caller)
        .ok_or(KernelError::TaskNotFound(caller))?;
    if call.properties().receives {
        let check = response.capacity.min(RESPONSE_BUFFER_BYTES as u64);
        if memory.check_writable(response.ptr, check).is_err() {
            return Err(CallError::Unanswerable(STATUS_BAD_RESPONSE_BUFFER));
        }
    }
    let len = saved.rsi;
    if len > MAX_REQUEST_BYTES as u64 {
        return Err(KernelError::Syscall(SyscallError::RequestTooLarge {
            len,
            max: MAX_REQUEST_BYTES as u32,
        })
        .into());
    }
    let mut request = k.take_request_buffer();
    let request_bytes = &mut request[..len as usize];
    let result = match k
        .memory_mut(caller)
        .map(|m| m.copy_in(saved.rdi, request_bytes))
    {
        Some(Ok(())) => {
            let mut cx = Ctx {
                k: &mut *k,
                caller,
                now: crate::task::now(),
                response,
                registers: ExtraRegisters::of(saved),
            };
            handle(call, &mut cx, request_bytes)
        }
        Some(Err(e)) => Err(KernelError::Syscall(SyscallError::BadUserMemory(e))),
        None => Err(KernelError::TaskNotFound(caller)),
    };
    k.return_request_buffer(request);
    let step = result?;
    debug_assert!(
        call.properties().blocks || !matches!(step, Step::Block(_) | Step::SwitchTo { .. }),
        "{call:?} blocked, but its row in the call table does not say `blocks`"
    );
    Ok(step)
}

/// Run `call`'s handler. Calls that create kernel objects are refused
/// before the heap runs low (sends check against their message's size);
/// calls that free memory always run.
fn handle(call: Syscall, cx: &mut Ctx<'_>, request: &[u8]) -> Result<Step, KernelError> {
    if call.properties().allocates {
        cx.ensure_heap_room(0)?;
    }
    let handler = match call.family() {
        Family::Task(call) => task::handler(call),
        Family::Ipc(call) => ipc::handler(call),
        Family::Caps(call) => caps::handler(call),
        Family::Info(call) => info::handler(call),
        Family::Console(call) => console::handler(call),
        Family::Block(call) => block::handler(call),
        Family::Device(call) => device::handler(call),
    };
    handler(cx, request)
}
