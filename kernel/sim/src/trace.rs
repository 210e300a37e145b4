//! The record of what happened in a simulation, in order.
//!
//! Every send, delivery, fault decision and (in the scenario runner) service
//! step is appended with the virtual time it happened at. Messages are named
//! by their kernel sequence number (`seq`, assigned at each successful
//! send), which is deterministic; the envelope's `MessageId` is recorded too
//! but left out of [`Trace::render`], since ids come from a process-wide
//! counter and differ between runs in one test binary.

use std::fmt::{self, Write as _};

use pandagen_abi::{Instant, KernelError, MessageId, TaskId};

use crate::fault::ChannelKey;

/// Why a message that was sent successfully was never delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossReason {
    /// A drop fault hit it.
    InjectedDrop,
    /// A failing receive consumed it.
    InjectedReceiveCrash,
    /// Its channel closed (every receiver is gone) before delivery.
    ChannelClosed,
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
        action: String,
        capabilities: usize,
    },
    /// A send failed because of an injected fault; nothing was enqueued.
    SendFailed { from: TaskId, action: String },
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
        service: String,
        task: TaskId,
        outcome: String,
    },
}

/// An event and the virtual time it happened at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceRecord {
    pub at: Instant,
    pub event: TraceEvent,
}

/// The ordered record of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    records: Vec<TraceRecord>,
    enabled: bool,
}

impl Trace {
    pub fn new() -> Self {
        Trace {
            records: Vec::new(),
            enabled: true,
        }
    }

    /// Recording can be switched off (benchmarks do) to keep memory flat.
    pub fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub fn push(&mut self, at: Instant, event: TraceEvent) {
        if self.enabled {
            self.records.push(TraceRecord { at, event });
        }
    }

    pub fn records(&self) -> &[TraceRecord] {
        &self.records
    }

    pub fn events(&self) -> impl Iterator<Item = &TraceEvent> {
        self.records.iter().map(|r| &r.event)
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
    pub fn render(&self) -> String {
        let mut out = String::new();
        for record in &self.records {
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
    fn disabled_trace_records_nothing() {
        let mut t = Trace::new();
        t.set_enabled(false);
        t.push(Instant::ZERO, TraceEvent::Released { seq: 1 });
        assert!(t.is_empty());
    }
}
