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
//! service's name, an exit reason) are kept once in the trace's table and a
//! record holds a [`Name`], a number ([`Trace::intern`], [`Trace::name`]):
//! a record owns nothing, so the ring overwrites the oldest one without
//! dropping it.

use std::collections::{BTreeMap, VecDeque};
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

/// A name in a trace's table (an action, a service, an exit reason),
/// resolved with [`Trace::name`] as long as a record of that trace holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(u64);

/// What a service's step came to, as a trace record keeps it
/// ([`crate::runner::StepOutcome`] with the exit reason's text in the
/// trace's table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepSummary {
    Progress,
    Idle,
    WaitUntil(Instant),
    /// The task ended; the name is the reason's `Debug` text.
    Exit(Name),
}

impl StepSummary {
    /// `outcome` as a record keeps it, its exit reason's text in `trace`.
    pub fn of(outcome: &StepOutcome, trace: &mut Trace) -> Self {
        match outcome {
            StepOutcome::Progress => StepSummary::Progress,
            StepOutcome::Idle => StepSummary::Idle,
            StepOutcome::WaitUntil(t) => StepSummary::WaitUntil(*t),
            StepOutcome::Exit(reason) => StepSummary::Exit(trace.intern(&format!("{reason:?}"))),
        }
    }
}

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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceEvent {
    /// A message was accepted by the kernel.
    Sent {
        seq: u64,
        id: MessageId,
        from: TaskId,
        channel: ChannelKey,
        action: Name,
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
    SendFailed { from: TaskId, action: Name },
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
    /// A task ended (by exit, termination or an injected crash); the
    /// name is the reason's `Debug` text.
    Exited { task: TaskId, reason: Name },
    /// A service's message handler returned an error (the service went on).
    HandlerError { task: TaskId, error: KernelError },
    /// The scenario runner stepped a service.
    Step {
        service: Name,
        task: TaskId,
        outcome: StepSummary,
    },
}

/// An event and the virtual time it happened at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// The number of records at which a push overwrites the oldest: the
    /// capacity while recording is on and keeps any, else `usize::MAX`
    /// (never reached), so that [`Trace::push`] tells its case with one
    /// comparison.
    full_at: usize,
    /// The names records may hold: `names[i]` is `Name(first_name + i)`.
    names: VecDeque<Arc<str>>,
    first_name: u64,
    /// The names handed out again for the same text (at most
    /// `MAX_SHARED_NAMES`; past that a fresh set starts and the old set's
    /// names wait in `retiring`).
    lookup: BTreeMap<Arc<str>, Name>,
    /// Sets of names no longer handed out: the names below `.0` go once
    /// `dropped` reaches `.1`, the number of records pushed before the set
    /// closed (every record holding one of them is gone then).
    retiring: VecDeque<(u64, u64)>,
    /// The name shared last: most records repeat the previous one's.
    last_name: Option<(Arc<str>, Name)>,
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
            full_at: Self::full_at(true, capacity),
            names: VecDeque::new(),
            first_name: 0,
            lookup: BTreeMap::new(),
            retiring: VecDeque::new(),
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
        self.full_at = Self::full_at(self.enabled, capacity);
    }

    fn full_at(enabled: bool, capacity: usize) -> usize {
        if enabled && capacity > 0 {
            capacity
        } else {
            usize::MAX
        }
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
        self.full_at = Self::full_at(enabled, self.capacity);
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    #[inline]
    pub fn push(&mut self, at: Instant, event: TraceEvent) {
        if self.records.len() != self.full_at {
            return self.push_unless_full(at, event);
        }
        // The ring is full: the newest record takes the oldest's place (a
        // record owns nothing, so the old one needs no drop).
        self.records[self.oldest] = TraceRecord { at, event };
        self.oldest += 1;
        if self.oldest == self.records.len() {
            self.oldest = 0;
        }
        self.dropped += 1;
    }

    /// [`Trace::push`] while the ring is filling (or recording is off).
    #[cold]
    #[inline(never)]
    fn push_unless_full(&mut self, at: Instant, event: TraceEvent) {
        if self.enabled && self.records.len() < self.capacity {
            self.records.push(TraceRecord { at, event });
        }
    }

    /// The [`Name`] of `name` for a record, kept in the table on its first
    /// use: records of the same action or service hold the same one.
    #[inline]
    pub fn intern(&mut self, name: &str) -> Name {
        match &self.last_name {
            Some((last, id)) if same_name(last.as_bytes(), name.as_bytes()) => *id,
            _ => self.intern_other(name),
        }
    }

    /// [`Trace::intern`] of a name other than the last one shared.
    #[cold]
    fn intern_other(&mut self, name: &str) -> Name {
        if !self.enabled {
            // No record is kept, so no name is needed.
            return Name(u64::MAX);
        }
        self.retire_names();
        let id = match self.lookup.get(name) {
            Some(id) => *id,
            None => {
                let next = self.first_name + self.names.len() as u64;
                if self.lookup.len() >= MAX_SHARED_NAMES {
                    // Records pushed so far may hold the old set's names.
                    let pushed = self.dropped + self.records.len() as u64;
                    self.retiring.push_back((next, pushed));
                    self.lookup.clear();
                }
                let shared: Arc<str> = Arc::from(name);
                self.names.push_back(Arc::clone(&shared));
                self.lookup.insert(Arc::clone(&shared), Name(next));
                Name(next)
            }
        };
        let text = Arc::clone(&self.names[(id.0 - self.first_name) as usize]);
        self.last_name = Some((text, id));
        id
    }

    /// Let go of the names of closed sets that no kept record holds.
    fn retire_names(&mut self) {
        while let Some(&(end, after)) = self.retiring.front() {
            if self.dropped < after && !self.records.is_empty() {
                break;
            }
            let gone = (end - self.first_name) as usize;
            self.names.drain(..gone);
            self.first_name = end;
            self.retiring.pop_front();
        }
    }

    /// The text of `name`, if a record of this trace may hold it.
    pub fn name(&self, name: Name) -> Option<&str> {
        let at = name.0.checked_sub(self.first_name)?;
        self.names.get(usize::try_from(at).ok()?).map(|n| &**n)
    }

    /// How many distinct names the trace currently hands out again.
    pub fn shared_names(&self) -> usize {
        self.lookup.len()
    }

    /// How many names the table keeps (those handed out again, and those
    /// of closed sets that kept records may still hold).
    pub fn kept_names(&self) -> usize {
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
            let _ = writeln!(out, "{}", RenderRecord(record, self));
        }
        out
    }
}

struct RenderRecord<'a>(&'a TraceRecord, &'a Trace);

impl fmt::Display for RenderRecord<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>12}ns ", self.0.at.as_nanos())?;
        let name = |n: &Name| self.1.name(*n).unwrap_or("?");
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
                let action = name(action);
                write!(
                    f,
                    "sent #{seq} {from} -> {channel} {action:?} caps={capabilities}"
                )
            }
            TraceEvent::SendFailed { from, action } => {
                write!(f, "send-failed {from} {:?} (injected)", name(action))
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
            TraceEvent::Exited { task, reason } => {
                write!(f, "exited {task} {}", name(reason))
            }
            TraceEvent::HandlerError { task, error } => {
                write!(f, "handler-error {task}: {error}")
            }
            TraceEvent::Step {
                service,
                task,
                outcome,
            } => {
                write!(f, "step {} ({task}) -> ", name(service))?;
                match outcome {
                    StepSummary::Progress => f.write_str("progress"),
                    StepSummary::Idle => f.write_str("idle"),
                    StepSummary::WaitUntil(t) => write!(f, "wait until {}ns", t.as_nanos()),
                    StepSummary::Exit(reason) => write!(f, "exit {}", name(reason)),
                }
            }
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
        assert_eq!(first, again, "the same name is shared");
        let other = trace.intern("bench.echp");
        assert_eq!(
            trace.name(other),
            Some("bench.echp"),
            "a name one byte apart is its own"
        );
        assert_ne!(first, other);
        assert_eq!(
            trace.intern("bench.echo"),
            first,
            "the table still shares it"
        );
    }

    #[test]
    fn render_omits_message_ids() {
        let mut a = Trace::new();
        let mut b = Trace::new();
        for (trace, id) in [(&mut a, 1), (&mut b, 99)] {
            let action = trace.intern("ping");
            trace.push(
                Instant::from_nanos(5),
                TraceEvent::Sent {
                    seq: 0,
                    id: MessageId::from_raw(id),
                    from: TaskId::from_raw(1),
                    channel: ChannelKey(3),
                    action,
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
        assert_eq!(a, b);
        for i in 0..3 * MAX_SHARED_NAMES {
            t.intern(&format!("action{i}"));
            assert!(t.shared_names() <= MAX_SHARED_NAMES);
        }
        // No record holds any of them: the closed sets are let go.
        assert!(t.kept_names() <= MAX_SHARED_NAMES + 1, "{}", t.kept_names());
        assert_eq!(t.name(a), None, "a name no record held is gone");
    }

    fn sent(t: &mut Trace, seq: u64, action: &str) {
        let action = t.intern(action);
        t.push(
            Instant::ZERO,
            TraceEvent::Sent {
                seq,
                id: MessageId::from_raw(seq),
                from: TaskId::from_raw(1),
                channel: ChannelKey(3),
                action,
                capabilities: 0,
            },
        );
    }

    #[test]
    fn a_kept_record_keeps_its_name_and_the_table_stays_bounded() {
        let ring = 3 * MAX_SHARED_NAMES;
        let mut t = Trace::with_capacity(ring);
        sent(&mut t, 0, "storage.put");
        // Many more distinct names than one set holds, while the first
        // record is still kept: its set is closed, not let go.
        for seq in 1..ring as u64 {
            sent(&mut t, seq, &format!("action{seq}"));
        }
        assert_eq!(t.dropped(), 0);
        assert!(t
            .render()
            .lines()
            .next()
            .unwrap()
            .ends_with("\"storage.put\" caps=0"));
        for (seq, event) in t.events().enumerate() {
            let TraceEvent::Sent { action, .. } = event else {
                panic!("{event:?}")
            };
            let want = if seq == 0 {
                "storage.put".to_string()
            } else {
                format!("action{seq}")
            };
            assert_eq!(t.name(*action), Some(want.as_str()));
        }
        // Ten rings of fresh names later, the table holds what the ring's
        // records hold and one open set, not everything ever named.
        for seq in ring as u64..11 * ring as u64 {
            sent(&mut t, seq, &format!("action{seq}"));
        }
        assert!(
            t.kept_names() <= ring + 2 * MAX_SHARED_NAMES,
            "{}",
            t.kept_names()
        );
        for event in t.events() {
            let TraceEvent::Sent { seq, action, .. } = event else {
                panic!("{event:?}")
            };
            assert_eq!(t.name(*action), Some(format!("action{seq}").as_str()));
        }
    }

    #[test]
    fn a_full_ring_follows_its_switch_and_capacity() {
        let seqs = |t: &Trace| -> Vec<u64> {
            t.events()
                .map(|e| match e {
                    TraceEvent::Released { seq } => *seq,
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        let mut t = Trace::with_capacity(2);
        for seq in 0..3 {
            t.push(Instant::ZERO, TraceEvent::Released { seq });
        }
        assert_eq!((seqs(&t), t.dropped()), (vec![1, 2], 1));
        t.set_enabled(false);
        t.push(Instant::ZERO, TraceEvent::Released { seq: 3 });
        assert_eq!(
            (seqs(&t), t.dropped()),
            (vec![1, 2], 1),
            "off: a full ring is left alone"
        );
        t.set_enabled(true);
        t.set_capacity(3);
        t.push(Instant::ZERO, TraceEvent::Released { seq: 4 });
        assert_eq!(
            (seqs(&t), t.dropped()),
            (vec![1, 2, 4], 1),
            "a larger ring grows"
        );
        t.push(Instant::ZERO, TraceEvent::Released { seq: 5 });
        assert_eq!((seqs(&t), t.dropped()), (vec![2, 4, 5], 2));
        t.set_capacity(0);
        t.push(Instant::ZERO, TraceEvent::Released { seq: 6 });
        assert_eq!((t.len(), t.dropped()), (0, 5), "a ring of none keeps none");
    }

    #[test]
    fn disabled_trace_records_nothing() {
        let mut t = Trace::new();
        t.set_enabled(false);
        t.push(Instant::ZERO, TraceEvent::Released { seq: 1 });
        assert!(t.is_empty());
    }
}
