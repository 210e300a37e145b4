//! The record of what happened in a simulation, in order.
//!
//! Every send, delivery, fault decision and (in the scenario runner) service
//! step is appended with the virtual time it happened at. Messages are named
//! by their kernel sequence number (`seq`, assigned at each successful
//! send), which is deterministic; the envelope's `MessageId` is recorded too
//! but left out of [`Trace::render`], since ids come from a process-wide
//! counter and differ between runs in one test binary.
//!
//! The trace is a ring: it keeps the newest [`Trace::capacity`] records
//! (by default [`DEFAULT_TRACE_CAPACITY`]) and counts the ones it let go
//! ([`Trace::dropped`]), so a long simulation runs in flat memory with
//! tracing on. Names that recur in every record (a message's action, a
//! service's name) are shared, not copied: the trace keeps one `Arc<str>`
//! per distinct action ([`Trace::intern`]).

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};
use std::sync::Arc;

use pandagen_abi::{Instant, KernelError, MessageId, TaskId};

use crate::fault::ChannelKey;
use crate::runner::StepOutcome;

/// How many records a trace keeps unless told otherwise.
pub const DEFAULT_TRACE_CAPACITY: usize = 1 << 16;

/// How many distinct names the trace shares at most; past that it starts a
/// fresh set (records keep the names they hold), so a simulation that
/// invents names without end cannot grow it either.
const MAX_SHARED_NAMES: usize = 1024;

/// Why a message that was sent successfully was never delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossReason {
    /// A drop fault hit it.
    InjectedDrop,
    /// A failing receive consumed it.
    InjectedReceiveCrash,
    /// Its channel closed (every receiver is gone) before delivery.
    ChannelClosed,
    /// It had been handed to a waiting receiver, which ended before taking
    /// it.
    ReceiverExited,
    /// Its receiver had no room for the capabilities it carried, so the
    /// kernel discarded it (and invalidated them).
    ReceiverFull,
    /// The channel's queue was full when a delayed or reordered message
    /// came due.
    QueueFull,
    /// It was still held by a delay or reorder fault when the test
    /// discarded everything held (`SimulatedKernel::discard_held`).
    Discarded,
}

/// One thing that happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceEvent {
    /// A message was accepted by the kernel.
    Sent {
        seq: u64,
        id: MessageId,
        from: TaskId,
        channel: ChannelKey,
        action: Arc<str>,
        capabilities: usize,
    },
    /// The message went straight to `to`, which was blocked receiving on
    /// its channel (the core's hand-off, `send_or_hand_off`): nothing was
    /// queued.
    HandedOff { seq: u64, to: TaskId },
    /// The message went straight to `to` and `to` became the running task
    /// while the sender blocked for its answer (the core's IPC fast path,
    /// `send_receive_fast`).
    SwitchedTo { seq: u64, to: TaskId },
    /// A send failed because of an injected fault; nothing was enqueued.
    SendFailed { from: TaskId, action: Arc<str> },
    /// A message was lost; its capabilities were invalidated.
    Lost {
        seq: u64,
        reason: LossReason,
        capabilities: usize,
    },
    /// A delay fault holds the message until `until`.
    Delayed { seq: u64, until: Instant },
    /// A reorder fault holds the message until `overtakes` later messages on
    /// its channel have passed it.
    HeldForReorder { seq: u64, overtakes: u32 },
    /// A held (delayed or reordered) message entered its channel's queue.
    Released { seq: u64 },
    /// A message was handed to a receiver.
    Delivered {
        seq: u64,
        id: MessageId,
        to: TaskId,
        channel: ChannelKey,
    },
    /// A receive failed because of an injected fault.
    ReceiveFailed {
        task: TaskId,
        channel: ChannelKey,
        consumed: Option<u64>,
    },
    /// A task was terminated by a crash-after-messages fault.
    TaskCrashed { task: TaskId, after: u32 },
    /// A receive or sleep moved the clock.
    Waited { task: TaskId, until: Instant },
    /// A task ended (by exit, termination or an injected crash).
    Exited { task: TaskId, reason: String },
    /// A service's message handler returned an error (the service went on).
    HandlerError { task: TaskId, error: KernelError },
    /// The scenario runner stepped a service.
    Step {
        service: Arc<str>,
        task: TaskId,
        outcome: StepOutcome,
    },
}

/// An event and the virtual time it happened at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceRecord {
    pub at: Instant,
    pub event: TraceEvent,
}

/// The ordered record of a run: the newest `capacity` records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// A ring once full: `records[oldest]` is the oldest record, and a new
    /// one overwrites it in place.
    records: Vec<TraceRecord>,
    oldest: usize,
    capacity: usize,
    dropped: u64,
    enabled: bool,
    names: BTreeSet<Arc<str>>,
    /// The name shared last: most records repeat the previous one's.
    last_name: Option<Arc<str>>,
}

impl Default for Trace {
    fn default() -> Self {
        Self::new()
    }
}

/// `a == b`, without a call to `memcmp` for the names of 8 to 16 bytes
/// most actions have: two overlapping eight-byte words each.
#[inline(always)]
fn same_name(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if (8..=16).contains(&n) {
        let word = |s: &[u8], at: usize| u64::from_ne_bytes(s[at..at + 8].try_into().unwrap());
        return word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8);
    }
    a == b
}

impl Trace {
    /// An enabled trace of [`DEFAULT_TRACE_CAPACITY`] records.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_TRACE_CAPACITY)
    }

    /// An enabled trace that keeps the newest `capacity` records.
    pub fn with_capacity(capacity: usize) -> Self {
        Trace {
            records: Vec::new(),
            oldest: 0,
            capacity,
            dropped: 0,
            enabled: true,
            names: BTreeSet::new(),
            last_name: None,
        }
    }

    /// Keep the newest `capacity` records from now on (the oldest beyond it
    /// are let go at once).
    pub fn set_capacity(&mut self, capacity: usize) {
        let mut records = std::mem::take(&mut self.records);
        records.rotate_left(self.oldest);
        self.oldest = 0;
        let excess = records.len().saturating_sub(capacity);
        records.drain(..excess);
        records.shrink_to(capacity);
        self.dropped += excess as u64;
        self.records = records;
        self.capacity = capacity;
    }

    /// How many records the trace keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many records were let go to stay within the capacity.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Recording can be switched off altogether.
    pub fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    #[inline]
    pub fn push(&mut self, at: Instant, event: TraceEvent) {
        if !self.enabled || self.records.len() < self.capacity || self.capacity == 0 {
            return self.push_unless_full(at, event);
        }
        // The ring is full: the newest record takes the oldest's place
        // (written first, then the old one dropped, so that the new one is
        // not staged on the stack across the drop).
        let old = std::mem::replace(&mut self.records[self.oldest], TraceRecord { at, event });
        self.oldest += 1;
        if self.oldest == self.records.len() {
            self.oldest = 0;
        }
        self.dropped += 1;
        drop(old);
    }

    /// [`Trace::push`] while the ring is filling (or recording is off).
    #[cold]
    #[inline(never)]
    fn push_unless_full(&mut self, at: Instant, event: TraceEvent) {
        if self.enabled && self.records.len() < self.capacity {
            self.records.push(TraceRecord { at, event });
        }
    }

    /// The shared copy of `name`, made on its first use: records of the
    /// same action or service point at one string.
    #[inline]
    pub fn intern(&mut self, name: &str) -> Arc<str> {
        match &self.last_name {
            Some(last) if same_name(last.as_bytes(), name.as_bytes()) => Arc::clone(last),
            _ => self.intern_other(name),
        }
    }

    /// [`Trace::intern`] of a name other than the last one shared.
    #[cold]
    fn intern_other(&mut self, name: &str) -> Arc<str> {
        let shared = match self.names.get(name) {
            Some(shared) => Arc::clone(shared),
            None => {
                if self.names.len() >= MAX_SHARED_NAMES {
                    self.names.clear();
                }
                let shared: Arc<str> = Arc::from(name);
                self.names.insert(Arc::clone(&shared));
                shared
            }
        };
        self.last_name = Some(Arc::clone(&shared));
        shared
    }

    /// How many distinct names the trace currently shares.
    pub fn shared_names(&self) -> usize {
        self.names.len()
    }

    /// The records kept, oldest first.
    pub fn records(&self) -> impl Iterator<Item = &TraceRecord> {
        let (newer, older) = self.records.split_at(self.oldest);
        older.iter().chain(newer)
    }

    pub fn events(&self) -> impl Iterator<Item = &TraceEvent> {
        self.records().map(|r| &r.event)
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn count(&self, predicate: impl Fn(&TraceEvent) -> bool) -> usize {
        self.events().filter(|e| predicate(e)).count()
    }

    /// Sequence numbers of delivered messages, in delivery order.
    pub fn delivered(&self) -> Vec<u64> {
        self.events()
            .filter_map(|e| match e {
                TraceEvent::Delivered { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect()
    }

    /// Sequence numbers of lost messages.
    pub fn lost(&self) -> Vec<u64> {
        self.events()
            .filter_map(|e| match e {
                TraceEvent::Lost { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect()
    }

    /// A stable text form, one line per event, without process-global ids:
    /// two runs of the same scenario with the same plan render identically.
    /// A trace that let records go says so in its first line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if self.dropped > 0 {
            let _ = writeln!(out, "({} earlier records dropped)", self.dropped);
        }
        for record in self.records() {
            let _ = writeln!(out, "{}", RenderRecord(record));
        }
        out
    }
}

struct RenderRecord<'a>(&'a TraceRecord);

impl fmt::Display for RenderRecord<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>12}ns ", self.0.at.as_nanos())?;
        match &self.0.event {
            TraceEvent::Sent {
                seq,
                from,
                channel,
                action,
                capabilities,
                ..
            } => {
                let from = if *from == pandagen_core::channel::KERNEL_SENDER {
                    String::from("kernel")
                } else {
                    from.to_string()
                };
                write!(
                    f,
                    "sent #{seq} {from} -> {channel} {action:?} caps={capabilities}"
                )
            }
            TraceEvent::SendFailed { from, action } => {
                write!(f, "send-failed {from} {action:?} (injected)")
            }
            TraceEvent::Lost {
                seq,
                reason,
                capabilities,
            } => write!(f, "lost #{seq} {reason:?} caps={capabilities}"),
            TraceEvent::Delayed { seq, until } => {
                write!(f, "delayed #{seq} until {}ns", until.as_nanos())
            }
            TraceEvent::HeldForReorder { seq, overtakes } => {
                write!(f, "held #{seq} for {overtakes} overtakes")
            }
            TraceEvent::Released { seq } => write!(f, "released #{seq}"),
            TraceEvent::HandedOff { seq, to } => write!(f, "handed #{seq} -> {to}"),
            TraceEvent::SwitchedTo { seq, to } => write!(f, "switched #{seq} -> {to}"),
            TraceEvent::Delivered {
                seq, to, channel, ..
            } => write!(f, "delivered #{seq} {channel} -> {to}"),
            TraceEvent::ReceiveFailed {
                task,
                channel,
                consumed,
            } => write!(
                f,
                "receive-failed {task} on {channel} consumed={consumed:?} (injected)"
            ),
            TraceEvent::TaskCrashed { task, after } => {
                write!(f, "crashed {task} after {after} messages (injected)")
            }
            TraceEvent::Waited { task, until } => {
                write!(f, "waited {task} until {}ns", until.as_nanos())
            }
            TraceEvent::Exited { task, reason } => write!(f, "exited {task} {reason}"),
            TraceEvent::HandlerError { task, error } => {
                write!(f, "handler-error {task}: {error}")
            }
            TraceEvent::Step {
                service,
                task,
                outcome,
            } => write!(f, "step {service} ({task}) -> {outcome}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_name_answers_as_equality_does() {
        for len in 0..=24 {
            let name: Vec<u8> = (0..len).map(|i| b'a' + i as u8).collect();
            assert!(same_name(&name, &name.clone()), "{len}");
            for at in 0..len {
                let mut other = name.clone();
                other[at] ^= 0x20;
                assert!(!same_name(&name, &other), "{len} bytes, differing at {at}");
            }
            let mut longer = name.clone();
            longer.push(b'z');
            assert!(!same_name(&name, &longer) && !same_name(&longer, &name));
        }
    }

    #[test]
    fn interning_the_next_action_shares_or_replaces_the_last() {
        let mut trace = Trace::new();
        let first = trace.intern("bench.echo");
        let again = trace.intern(&String::from("bench.echo"));
        assert!(Arc::ptr_eq(&first, &again), "the same name is shared");
        let other = trace.intern("bench.echp");
        assert_eq!(&*other, "bench.echp", "a name one byte apart is its own");
        assert!(!Arc::ptr_eq(&first, &other));
    }

    #[test]
    fn render_omits_message_ids() {
        let mut a = Trace::new();
        let mut b = Trace::new();
        for (trace, id) in [(&mut a, 1), (&mut b, 99)] {
            trace.push(
                Instant::from_nanos(5),
                TraceEvent::Sent {
                    seq: 0,
                    id: MessageId::from_raw(id),
                    from: TaskId::from_raw(1),
                    channel: ChannelKey(3),
                    action: "ping".into(),
                    capabilities: 0,
                },
            );
        }
        assert_ne!(a, b);
        assert_eq!(a.render(), b.render());
        assert!(a.render().contains("sent #0 task#1 -> ch3g0 \"ping\""));
    }

    #[test]
    fn the_ring_keeps_the_newest_records_and_counts_the_rest() {
        let mut t = Trace::with_capacity(4);
        for seq in 0..10 {
            t.push(Instant::ZERO, TraceEvent::Released { seq });
        }
        assert_eq!(t.len(), 4);
        assert_eq!(t.dropped(), 6);
        let kept: Vec<u64> = t
            .events()
            .map(|e| match e {
                TraceEvent::Released { seq } => *seq,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(kept, [6, 7, 8, 9]);
        assert!(t.render().starts_with("(6 earlier records dropped)\n"));
        t.set_capacity(2);
        assert_eq!((t.len(), t.dropped()), (2, 8));
    }

    #[test]
    fn names_are_shared_and_bounded() {
        let mut t = Trace::new();
        let a = t.intern("storage.put");
        let b = t.intern("storage.put");
        assert!(Arc::ptr_eq(&a, &b));
        for i in 0..3 * MAX_SHARED_NAMES {
            t.intern(&format!("action{i}"));
            assert!(t.shared_names() <= MAX_SHARED_NAMES);
        }
        assert_eq!(&*a, "storage.put");
    }

    #[test]
    fn disabled_trace_records_nothing() {
        let mut t = Trace::new();
        t.set_enabled(false);
        t.push(Instant::ZERO, TraceEvent::Released { seq: 1 });
        assert!(t.is_empty());
    }
}
