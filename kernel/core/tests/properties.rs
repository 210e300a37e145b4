//! Property tests: random operation sequences against a reference model.
//!
//! The model tracks, independently of the kernel, which handles must be
//! valid (and with which capability id), which must be dead forever, the
//! exact contents of every queue, and how many audit events of each kind
//! the operations must have produced. After every operation the kernel is
//! compared with the model and `check_invariants` runs.

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use common::*;
use pandagen_abi::error::{ReceiveError, SendError};
use pandagen_abi::{CapHandle, ExitReason, KernelError, Priority, Rights, TaskId, TrustDomain};
use pandagen_core::{
    AuditCounts, BlockedOn, CapId, ChannelRef, CoreConfig, KernelCore, Mintable, ObjectRef,
    ParkedMessage, SchedState, TaskSpec,
};
use proptest::prelude::*;

const QUEUE: u32 = 3;

/// At least 256 cases per property; `PROPTEST_CASES` may ask for more.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
        .max(256)
}

#[derive(Clone, Debug)]
enum Op {
    Spawn {
        user: bool,
    },
    Terminate(usize),
    CreateChannel(usize),
    Mint(usize, u16),
    /// Mint the first task a `Task` capability (with `SEND`) naming the
    /// second: authority to put capabilities into it.
    Authorise(usize, usize),
    Grant(usize, usize),
    Delegate(usize, usize),
    Clone(usize, u16),
    Drop(usize),
    Send {
        via: usize,
        caps: Vec<usize>,
        len: u8,
        park: bool,
    },
    Receive(usize),
    FinishParked {
        which: usize,
        deliver: bool,
    },
    Swap {
        via: usize,
        i: u8,
        j: u8,
    },
    UseDead(usize),
    UseForeign(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    let idx = 0usize..64;
    prop_oneof![
        2 => any::<bool>().prop_map(|user| Op::Spawn { user }),
        1 => idx.clone().prop_map(Op::Terminate),
        3 => idx.clone().prop_map(Op::CreateChannel),
        2 => (idx.clone(), any::<u16>()).prop_map(|(t, r)| Op::Mint(t, r)),
        2 => (idx.clone(), idx.clone()).prop_map(|(f, t)| Op::Authorise(f, t)),
        2 => (idx.clone(), idx.clone()).prop_map(|(c, t)| Op::Grant(c, t)),
        2 => (idx.clone(), idx.clone()).prop_map(|(c, t)| Op::Delegate(c, t)),
        2 => (idx.clone(), any::<u16>()).prop_map(|(c, r)| Op::Clone(c, r)),
        2 => idx.clone().prop_map(Op::Drop),
        6 => (idx.clone(), prop::collection::vec(0usize..64, 0..3), any::<u8>(), prop::bool::weighted(0.2))
            .prop_map(|(via, caps, len, park)| Op::Send { via, caps, len, park }),
        5 => idx.clone().prop_map(Op::Receive),
        1 => (idx.clone(), any::<bool>()).prop_map(|(which, deliver)| Op::FinishParked { which, deliver }),
        1 => (idx.clone(), 0u8..4, 0u8..4).prop_map(|(via, i, j)| Op::Swap { via, i, j }),
        2 => idx.clone().prop_map(Op::UseDead),
        1 => (idx.clone(), idx).prop_map(|(c, t)| Op::UseForeign(c, t)),
    ]
}

#[derive(Clone, Debug)]
struct LiveCap {
    task: TaskId,
    handle: CapHandle,
    id: CapId,
    object: ObjectRef,
    rights: Rights,
}

#[derive(Clone, Debug)]
struct Carried {
    id: CapId,
    object: ObjectRef,
    rights: Rights,
}

#[derive(Clone, Debug)]
struct Msg {
    seq: u64,
    bytes: Vec<u8>,
    caps: Vec<Carried>,
    sender_domain: bool,
}

struct Model {
    k: KernelCore,
    tasks: Vec<(TaskId, bool, bool)>, // (id, alive, user domain)
    live: Vec<LiveCap>,
    dead: Vec<(TaskId, CapHandle)>,
    queues: BTreeMap<ChannelRef, VecDeque<Msg>>,
    parked: Vec<(ParkedMessage, Msg)>,
    delivered: BTreeSet<u64>,
    execs: BTreeSet<u64>,
    expect: AuditCounts,
    now: u64,
}

fn rights_from(bits: u16) -> Rights {
    Rights::from_bits(bits as u32)
}

impl Model {
    fn new() -> Self {
        let k = KernelCore::new(CoreConfig {
            default_queue_capacity: QUEUE,
            audit_capacity: 64,
            ..CoreConfig::default()
        });
        Model {
            k,
            tasks: Vec::new(),
            live: Vec::new(),
            dead: Vec::new(),
            queues: BTreeMap::new(),
            parked: Vec::new(),
            delivered: BTreeSet::new(),
            execs: BTreeSet::new(),
            expect: AuditCounts::default(),
            now: 0,
        }
    }

    fn t(&mut self) -> pandagen_abi::Instant {
        self.now += 1;
        at(self.now)
    }

    fn user(&self, task: TaskId) -> bool {
        self.tasks.iter().find(|t| t.0 == task).unwrap().2
    }

    fn alive_task(&self, i: usize) -> Option<TaskId> {
        let alive: Vec<_> = self.tasks.iter().filter(|t| t.1).collect();
        (!alive.is_empty()).then(|| alive[i % alive.len()].0)
    }

    fn any_task(&self, i: usize) -> Option<TaskId> {
        (!self.tasks.is_empty()).then(|| self.tasks[i % self.tasks.len()].0)
    }

    /// Whether `from` may put capabilities into `to`.
    fn authorised(&self, from: TaskId, to: TaskId) -> bool {
        from == to
            || self.live.iter().any(|c| {
                c.task == from && c.object == ObjectRef::Task(to) && c.rights.contains(Rights::SEND)
            })
    }

    fn pick(&self, i: usize) -> Option<usize> {
        (!self.live.is_empty()).then(|| i % self.live.len())
    }

    fn kill(&mut self, i: usize) -> LiveCap {
        let c = self.live.remove(i);
        self.dead.push((c.task, c.handle));
        c
    }

    fn cross(&mut self, from: bool, to: bool) {
        if from != to {
            self.expect.cross_domain += 1;
        }
    }

    fn apply(&mut self, op: Op) {
        self.apply_op(op);
        self.sweep_closed();
    }

    fn apply_op(&mut self, op: Op) {
        let now = self.t();
        match op {
            Op::Spawn { user } => {
                let domain = if user {
                    TrustDomain::user()
                } else {
                    TrustDomain::core()
                };
                let (t, e) = self
                    .k
                    .create_task(None, TaskSpec::new("p").trust_domain(domain), now)
                    .unwrap();
                assert!(self.tasks.iter().all(|x| x.0 != t), "task id reused");
                assert!(self.execs.insert(e.as_raw()), "execution id reused");
                self.tasks.push((t, true, user));
            }
            Op::Terminate(i) => {
                let Some(t) = self.alive_task(i) else { return };
                self.k.terminate(t, ExitReason::Normal, now).unwrap();
                self.tasks.iter_mut().find(|x| x.0 == t).unwrap().1 = false;
                let mut j = 0;
                while j < self.live.len() {
                    if self.live[j].task == t {
                        self.kill(j);
                        self.expect.invalidated += 1;
                    } else {
                        j += 1;
                    }
                }
            }
            Op::CreateChannel(i) => {
                let Some(t) = self.alive_task(i) else { return };
                let h = self.k.create_channel(t, now).unwrap();
                let info = self.k.inspect(t, h).unwrap();
                let ObjectRef::Channel(ch) = info.object else {
                    panic!()
                };
                self.queues.insert(ch, VecDeque::new());
                self.expect.granted += 1;
                self.live.push(LiveCap {
                    task: t,
                    handle: h,
                    id: info.id,
                    object: info.object,
                    rights: info.rights,
                });
            }
            Op::Mint(i, bits) => {
                let Some(t) = self.alive_task(i) else { return };
                let rights = rights_from(bits);
                let h = self
                    .k
                    .mint(
                        t,
                        Mintable::StorageObject(pandagen_core::ServiceObject::new(
                            pandagen_abi::ServiceId::from_raw(0),
                            bits as u64,
                        )),
                        rights,
                        now,
                    )
                    .unwrap();
                let info = self.k.inspect(t, h).unwrap();
                self.expect.granted += 1;
                self.live.push(LiveCap {
                    task: t,
                    handle: h,
                    id: info.id,
                    object: info.object,
                    rights,
                });
            }
            Op::Authorise(from, to) => {
                let (Some(from), Some(to)) = (self.alive_task(from), self.any_task(to)) else {
                    return;
                };
                let h = self
                    .k
                    .mint(from, Mintable::Task(to), Rights::SEND, now)
                    .unwrap();
                let info = self.k.inspect(from, h).unwrap();
                self.expect.granted += 1;
                self.live.push(LiveCap {
                    task: from,
                    handle: h,
                    id: info.id,
                    object: info.object,
                    rights: Rights::SEND,
                });
            }
            Op::Grant(c, target) => {
                let (Some(c), Some(target)) = (self.pick(c), self.any_task(target)) else {
                    return;
                };
                let cap = self.live[c].clone();
                let target_alive = self.k.is_alive(target);
                let authorised = self.authorised(cap.task, target);
                let r = self.k.grant(cap.task, cap.handle, target, now);
                if !cap.rights.contains(Rights::GRANT) || !authorised {
                    assert_eq!(r, Err(KernelError::InsufficientAuthority));
                    self.expect.invalid_use_attempts += 1;
                } else if !target_alive {
                    assert_eq!(r, Err(KernelError::TaskNotFound(target)));
                } else {
                    let h = r.unwrap();
                    let info = self.k.inspect(target, h).unwrap();
                    assert_ne!(info.id, cap.id);
                    assert_eq!((info.object, info.rights), (cap.object, cap.rights));
                    self.expect.granted += 1;
                    let (f, t) = (self.user(cap.task), self.user(target));
                    self.cross(f, t);
                    self.live.push(LiveCap {
                        task: target,
                        handle: h,
                        id: info.id,
                        ..cap
                    });
                }
            }
            Op::Delegate(c, target) => {
                let (Some(c), Some(target)) = (self.pick(c), self.any_task(target)) else {
                    return;
                };
                let cap = self.live[c].clone();
                let target_alive = self.k.is_alive(target);
                let authorised = self.authorised(cap.task, target);
                let r = self.k.delegate(cap.task, cap.handle, target, now);
                if !cap.rights.contains(Rights::TRANSFER) || !authorised {
                    assert_eq!(r, Err(KernelError::InsufficientAuthority));
                    self.expect.invalid_use_attempts += 1;
                } else if !target_alive {
                    assert_eq!(r, Err(KernelError::TaskNotFound(target)));
                } else {
                    let h = r.unwrap();
                    self.kill(c);
                    assert_eq!(
                        self.k.inspect(target, h).unwrap().id,
                        cap.id,
                        "a move keeps the id"
                    );
                    self.expect.delegated += 1;
                    let (f, t) = (self.user(cap.task), self.user(target));
                    self.cross(f, t);
                    self.live.push(LiveCap {
                        task: target,
                        handle: h,
                        ..cap
                    });
                }
            }
            Op::Clone(c, bits) => {
                let Some(c) = self.pick(c) else { return };
                let cap = self.live[c].clone();
                let r = self
                    .k
                    .clone_cap(cap.task, cap.handle, rights_from(bits), now);
                if !cap.rights.contains(Rights::GRANT) {
                    assert_eq!(r, Err(KernelError::InsufficientAuthority));
                    self.expect.invalid_use_attempts += 1;
                } else {
                    let h = r.unwrap();
                    let info = self.k.inspect(cap.task, h).unwrap();
                    let expected = cap.rights.attenuate(rights_from(bits));
                    assert_eq!(info.rights, expected, "rights only shrink");
                    assert!(cap.rights.contains(info.rights));
                    self.expect.cloned += 1;
                    self.live.push(LiveCap {
                        handle: h,
                        id: info.id,
                        rights: expected,
                        ..cap
                    });
                }
            }
            Op::Drop(c) => {
                let Some(c) = self.pick(c) else { return };
                let cap = self.kill(c);
                self.k.drop_cap(cap.task, cap.handle, now).unwrap();
                self.expect.dropped += 1;
            }
            Op::Send {
                via,
                caps,
                len,
                park,
            } => self.send(via, caps, len, park, now),
            Op::Receive(c) => self.receive(c, now),
            Op::FinishParked { which, deliver } => {
                if self.parked.is_empty() {
                    return;
                }
                let (p, msg) = self.parked.remove(which % self.parked.len());
                let ch = p.channel();
                if !deliver {
                    self.k.discard(p, now);
                    self.expect.invalidated += msg.caps.len() as u64;
                    return;
                }
                let open = self.k.channel_exists(ch) && !self.k.is_channel_closed(ch);
                let full = self
                    .queues
                    .get(&ch)
                    .is_some_and(|q| q.len() >= QUEUE as usize);
                match self.k.enqueue(p, now) {
                    Ok(seq) => {
                        assert!(open && !full);
                        let mut msg = msg;
                        msg.seq = seq;
                        self.queues.get_mut(&ch).unwrap().push_back(msg);
                    }
                    Err(e) => {
                        let expected = if !open {
                            SendError::ChannelClosed
                        } else {
                            SendError::QueueFull
                        };
                        assert_eq!(e, KernelError::SendFailed(expected));
                        self.expect.invalidated += msg.caps.len() as u64;
                    }
                }
            }
            Op::Swap { via, i, j } => {
                let Some(c) = self.pick(via) else { return };
                let ObjectRef::Channel(ch) = self.live[c].object else {
                    return;
                };
                let q = self.queues.get_mut(&ch).unwrap();
                let in_range = (i as usize) < q.len() && (j as usize) < q.len();
                assert_eq!(self.k.swap_queued(ch, i as usize, j as usize), in_range);
                if in_range {
                    q.swap(i as usize, j as usize);
                }
            }
            Op::UseDead(i) => {
                if self.dead.is_empty() {
                    return;
                }
                let (t, h) = self.dead[i % self.dead.len()];
                // A dead handle is never usable, for any operation.
                assert!(self.k.inspect(t, h).is_none());
                let e = self.k.drop_cap(t, h, now).unwrap_err();
                assert!(matches!(
                    e,
                    KernelError::InvalidCapability | KernelError::TaskNotFound(_)
                ));
                let e = self.k.send(t, h, vec![1], &[], now).unwrap_err();
                assert!(matches!(
                    e,
                    KernelError::InvalidCapability | KernelError::TaskNotFound(_)
                ));
                self.expect.invalid_use_attempts += 2;
            }
            Op::UseForeign(c, t) => {
                let (Some(c), Some(other)) = (self.pick(c), self.alive_task(t)) else {
                    return;
                };
                let cap = self.live[c].clone();
                if other == cap.task
                    || self
                        .live
                        .iter()
                        .any(|l| l.task == other && l.handle == cap.handle)
                {
                    return;
                }
                assert_eq!(
                    self.k.drop_cap(other, cap.handle, now),
                    Err(KernelError::InvalidCapability)
                );
                self.expect.invalid_use_attempts += 1;
            }
        }
    }

    fn send(
        &mut self,
        via: usize,
        caps: Vec<usize>,
        len: u8,
        park: bool,
        now: pandagen_abi::Instant,
    ) {
        let Some(v) = self.pick(via) else { return };
        let chan = self.live[v].clone();
        let own: Vec<usize> = (0..self.live.len())
            .filter(|&i| self.live[i].task == chan.task)
            .collect();
        let mut carried_idx: Vec<usize> = caps.iter().map(|&c| own[c % own.len()]).collect();
        carried_idx.dedup();
        let handles: Vec<CapHandle> = carried_idx.iter().map(|&i| self.live[i].handle).collect();
        let bytes = vec![len; len as usize % 70];
        let r = if park {
            self.k
                .prepare_send(chan.task, chan.handle, bytes.clone(), &handles, now)
                .map(Err)
        } else {
            self.k
                .send(chan.task, chan.handle, bytes.clone(), &handles, now)
                .map(Ok)
        };
        let ObjectRef::Channel(ch) = chan.object else {
            assert!(matches!(r, Err(KernelError::WrongCapabilityKind { .. })));
            self.expect.invalid_use_attempts += 1;
            return;
        };
        let mut uses_ok = chan.rights.contains(Rights::SEND);
        let mut first_bad_is_use = !uses_ok;
        let closed = self.k.is_channel_closed(ch);
        let full = self.queues[&ch].len() >= QUEUE as usize;
        if uses_ok && !closed && !full {
            for &i in &carried_idx {
                if !self.live[i].rights.contains(Rights::TRANSFER) {
                    uses_ok = false;
                    first_bad_is_use = true;
                    break;
                }
            }
        }
        let self_receive = carried_idx.iter().any(|&i| {
            self.live[i].object == ObjectRef::Channel(ch)
                && self.live[i].rights.contains(Rights::RECEIVE)
        });
        match r {
            Err(e) => {
                if first_bad_is_use {
                    assert_eq!(e, KernelError::InsufficientAuthority);
                    self.expect.invalid_use_attempts += 1;
                } else if closed {
                    assert_eq!(e, KernelError::SendFailed(SendError::ChannelClosed));
                } else if full {
                    assert_eq!(e, KernelError::SendFailed(SendError::QueueFull));
                } else {
                    assert!(self_receive, "unexpected send failure {e:?}");
                    assert_eq!(
                        e,
                        KernelError::SendFailed(SendError::ReceiveRightOnOwnChannel)
                    );
                }
                // Nothing moved.
                for &i in &carried_idx {
                    assert_eq!(
                        self.k
                            .inspect(self.live[i].task, self.live[i].handle)
                            .map(|c| c.id),
                        Some(self.live[i].id)
                    );
                }
            }
            Ok(outcome) => {
                assert!(uses_ok && !closed && !full && !self_receive);
                let sender_domain = self.user(chan.task);
                let mut moved = Vec::new();
                let mut sorted = carried_idx.clone();
                sorted.sort_unstable_by(|a, b| b.cmp(a));
                let mut by_idx = BTreeMap::new();
                for i in sorted {
                    let c = self.kill(i);
                    by_idx.insert(
                        i,
                        Carried {
                            id: c.id,
                            object: c.object,
                            rights: c.rights,
                        },
                    );
                }
                for i in &carried_idx {
                    moved.push(by_idx[i].clone());
                }
                let (seq, parked) = match outcome {
                    Ok(seq) => (seq, None),
                    Err(p) => (0, Some(p)),
                };
                let msg = Msg {
                    seq,
                    bytes,
                    caps: moved,
                    sender_domain,
                };
                match parked {
                    None => self.queues.get_mut(&ch).unwrap().push_back(msg),
                    Some(p) => {
                        // The parked message's sequence number is learned on enqueue.
                        let mut msg = msg;
                        msg.seq = u64::MAX;
                        self.parked.push((p, msg));
                    }
                }
            }
        }
    }

    fn receive(&mut self, c: usize, now: pandagen_abi::Instant) {
        let Some(c) = self.pick(c) else { return };
        let cap = self.live[c].clone();
        let r = self.k.receive(cap.task, cap.handle, now);
        let ObjectRef::Channel(ch) = cap.object else {
            assert!(matches!(r, Err(KernelError::WrongCapabilityKind { .. })));
            self.expect.invalid_use_attempts += 1;
            return;
        };
        if !cap.rights.contains(Rights::RECEIVE) {
            assert_eq!(r, Err(KernelError::InsufficientAuthority));
            self.expect.invalid_use_attempts += 1;
            return;
        }
        let q = self.queues.get_mut(&ch).unwrap();
        let Some(front) = q.pop_front() else {
            match r {
                Ok(None) => assert!(self.sender_may_exist(ch), "should have reported closed"),
                Err(KernelError::ReceiveFailed(ReceiveError::ChannelClosed)) => {
                    assert!(
                        !self.sender_may_exist(ch),
                        "reported closed while a sender exists"
                    );
                }
                other => panic!("empty queue gave {other:?}"),
            }
            return;
        };
        let m = r.unwrap().expect("the model has a message queued");
        assert_eq!(m.seq, front.seq, "FIFO unless a fault reordered");
        assert!(
            self.delivered.insert(m.seq),
            "message {} delivered twice",
            m.seq
        );
        assert_eq!(m.bytes, front.bytes);
        assert_eq!(m.caps.len(), front.caps.len());
        let to = self.user(cap.task);
        for (h, carried) in m.caps.iter().zip(front.caps) {
            let info = self.k.inspect(cap.task, *h).unwrap();
            assert_eq!(info.id, carried.id, "carried capabilities arrive in order");
            self.expect.delegated += 1;
            self.cross(front.sender_domain, to);
            self.live.push(LiveCap {
                task: cap.task,
                handle: *h,
                id: carried.id,
                object: carried.object,
                rights: carried.rights,
            });
        }
    }

    fn all_in_flight(&self) -> impl Iterator<Item = &Carried> {
        self.queues
            .values()
            .flat_map(|q| q.iter().flat_map(|m| m.caps.iter()))
            .chain(self.parked.iter().flat_map(|(_, m)| m.caps.iter()))
    }

    fn sender_may_exist(&self, ch: ChannelRef) -> bool {
        let obj = ObjectRef::Channel(ch);
        self.live
            .iter()
            .any(|c| c.object == obj && c.rights.contains(Rights::SEND))
            || self
                .all_in_flight()
                .any(|c| c.object == obj && c.rights.contains(Rights::SEND))
    }

    fn receiver_exists(&self, ch: ChannelRef) -> bool {
        let obj = ObjectRef::Channel(ch);
        self.live
            .iter()
            .any(|c| c.object == obj && c.rights.contains(Rights::RECEIVE))
            || self
                .all_in_flight()
                .any(|c| c.object == obj && c.rights.contains(Rights::RECEIVE))
    }

    /// Close, in the model, every channel with no receive right left
    /// (to a fixpoint, as closing discards carried rights), and compare
    /// with the kernel.
    fn sweep_closed(&mut self) {
        loop {
            let doomed: Vec<ChannelRef> = self
                .queues
                .iter()
                .filter(|(ch, q)| !q.is_empty() && !self.receiver_exists(**ch))
                .map(|(ch, _)| *ch)
                .collect();
            if doomed.is_empty() {
                break;
            }
            for ch in doomed {
                let q = std::mem::take(self.queues.get_mut(&ch).unwrap());
                self.expect.invalidated += q.iter().map(|m| m.caps.len() as u64).sum::<u64>();
            }
        }
        let chans: Vec<ChannelRef> = self.queues.keys().copied().collect();
        for ch in chans {
            assert_eq!(
                self.k.is_channel_closed(ch),
                !self.receiver_exists(ch),
                "closedness of {ch}"
            );
            let referenced = self.live.iter().any(|c| c.object == ObjectRef::Channel(ch))
                || self
                    .all_in_flight()
                    .any(|c| c.object == ObjectRef::Channel(ch));
            assert_eq!(self.k.channel_exists(ch), referenced, "existence of {ch}");
            if referenced {
                let len = self.k.queue_len(ch).unwrap();
                assert_eq!(len, self.queues[&ch].len());
                assert!(len <= QUEUE as usize, "queue bound");
            }
        }
    }

    fn check(&self) {
        self.k.check_invariants().unwrap();
        // Every valid capability has exactly one owner and the kernel agrees.
        let ids: BTreeSet<CapId> = self.live.iter().map(|c| c.id).collect();
        assert_eq!(
            ids.len(),
            self.live.len(),
            "two live handles share a capability"
        );
        let mut kernel_ids = BTreeSet::new();
        for &(t, alive, _) in &self.tasks {
            if alive {
                for (h, info) in self.k.list_caps(t).unwrap() {
                    assert!(kernel_ids.insert(info.id));
                    assert!(self
                        .live
                        .iter()
                        .any(|c| c.task == t && c.handle == h && c.id == info.id));
                }
            }
        }
        assert_eq!(ids, kernel_ids);
        for c in &self.live {
            let info = self
                .k
                .inspect(c.task, c.handle)
                .expect("a live handle works");
            assert_eq!(
                (info.id, info.rights, info.object),
                (c.id, c.rights, c.object)
            );
        }
        for &(t, h) in &self.dead {
            assert!(self.k.inspect(t, h).is_none(), "a dead handle came back");
        }
        assert_eq!(self.k.audit_log().counts(), self.expect, "audit totals");
        assert_eq!(self.k.parked_count(), self.parked.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn random_operations_preserve_ownership_delivery_and_audit(
        ops in prop::collection::vec(op(), 1..80)
    ) {
        let mut m = Model::new();
        // Start with a few tasks so most operations have something to act on.
        for user in [false, true, false] {
            m.apply(Op::Spawn { user });
        }
        for op in ops {
            m.apply(op);
            m.check();
        }
        // Tear everything down: nothing may survive its owners.
        while let Some(t) = m.alive_task(0) {
            let _ = t;
            m.apply(Op::Terminate(0));
            m.check();
        }
        for (p, msg) in std::mem::take(&mut m.parked) {
            m.k.discard(p, at(u64::MAX));
            m.expect.invalidated += msg.caps.len() as u64;
        }
        m.sweep_closed();
        m.check();
        // Only a cycle of receive rights carried in each other's queues can
        // outlive every task (documented in `channel`); anything else is a leak.
        if m.all_in_flight().next().is_none() {
            prop_assert_eq!(m.k.channel_count(), 0);
        }
    }
}

/// A reference scheduler: a list of tasks with a FIFO stamp.
#[derive(Clone, Debug)]
enum SchedOp {
    Spawn(u8),
    Pick,
    Yield,
    Sleep(usize, u8),
    Advance(u8),
    Terminate(usize),
    SetPriority(usize, u8),
}

fn sched_op() -> impl Strategy<Value = SchedOp> {
    prop_oneof![
        2 => (0u8..4).prop_map(SchedOp::Spawn),
        4 => Just(SchedOp::Pick),
        3 => Just(SchedOp::Yield),
        2 => (0usize..32, 1u8..20).prop_map(|(t, d)| SchedOp::Sleep(t, d)),
        2 => (0u8..30).prop_map(SchedOp::Advance),
        1 => (0usize..32).prop_map(SchedOp::Terminate),
        1 => (0usize..32, 0u8..4).prop_map(|(t, p)| SchedOp::SetPriority(t, p)),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum RefState {
    Ready(u64),
    Running,
    Sleeping(u64),
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn the_scheduler_matches_a_reference_policy(ops in prop::collection::vec(sched_op(), 1..100)) {
        let mut k = kernel();
        let mut model: Vec<(TaskId, u8, RefState)> = Vec::new();
        let mut stamp = 0u64;
        let mut now = 0u64;
        let mut running: Option<TaskId> = None;
        let slot = |t: TaskId| t.as_raw() & 0xFFFF;
        for op in ops {
            match op {
                SchedOp::Spawn(p) => {
                    let t = spawn_at(&mut k, "t", Priority(p * 8));
                    stamp += 1;
                    model.push((t, p * 8, RefState::Ready(stamp)));
                }
                SchedOp::Pick => {
                    let expected = model
                        .iter()
                        .filter_map(|&(t, p, s)| match s {
                            RefState::Ready(st) => Some((std::cmp::Reverse(p), st, t)),
                            _ => None,
                        })
                        .min()
                        .map(|x| x.2);
                    let got = k.pick_next();
                    prop_assert_eq!(got, expected);
                    if let Some(t) = got {
                        if let Some(prev) = running.take() {
                            // The previously running task is preempted.
                            prop_assert!(k.yield_task(prev));
                            stamp += 1;
                            model.iter_mut().find(|m| m.0 == prev).unwrap().2 = RefState::Ready(stamp);
                        }
                        model.iter_mut().find(|m| m.0 == t).unwrap().2 = RefState::Running;
                        running = Some(t);
                    }
                }
                SchedOp::Yield => {
                    if let Some(t) = running.take() {
                        prop_assert!(k.yield_task(t));
                        stamp += 1;
                        model.iter_mut().find(|m| m.0 == t).unwrap().2 = RefState::Ready(stamp);
                    }
                }
                SchedOp::Sleep(i, d) => {
                    if model.is_empty() { continue; }
                    let (t, _, s) = model[i % model.len()];
                    if matches!(s, RefState::Sleeping(_)) { continue; }
                    let until = now + d as u64;
                    prop_assert_eq!(k.sleep_until(t, at(until), at(now)), Ok(true));
                    if running == Some(t) { running = None; }
                    model.iter_mut().find(|m| m.0 == t).unwrap().2 = RefState::Sleeping(until);
                }
                SchedOp::Advance(d) => {
                    now += d as u64;
                    let mut due: Vec<(u64, u64, TaskId)> = model
                        .iter()
                        .filter_map(|&(t, _, s)| match s {
                            RefState::Sleeping(u) if u <= now => Some((u, slot(t), t)),
                            _ => None,
                        })
                        .collect();
                    due.sort();
                    prop_assert_eq!(k.expire_deadlines(at(now)), due.len());
                    for (_, _, t) in due {
                        stamp += 1;
                        model.iter_mut().find(|m| m.0 == t).unwrap().2 = RefState::Ready(stamp);
                    }
                    let next = model.iter().filter_map(|m| match m.2 { RefState::Sleeping(u) => Some(u), _ => None }).min();
                    prop_assert_eq!(k.next_deadline(), next.map(at));
                }
                SchedOp::Terminate(i) => {
                    if model.is_empty() { continue; }
                    let (t, _, _) = model.remove(i % model.len());
                    k.terminate(t, ExitReason::Normal, at(now)).unwrap();
                    if running == Some(t) { running = None; }
                }
                SchedOp::SetPriority(i, p) => {
                    if model.is_empty() { continue; }
                    let idx = i % model.len();
                    let t = model[idx].0;
                    k.set_priority(t, Priority(p * 8)).unwrap();
                    model[idx].1 = p * 8;
                    if let RefState::Ready(_) = model[idx].2 {
                        stamp += 1;
                        model[idx].2 = RefState::Ready(stamp);
                    }
                }
            }
            for &(t, _, s) in &model {
                let expected = match s {
                    RefState::Ready(_) => SchedState::Ready,
                    RefState::Running => SchedState::Running,
                    RefState::Sleeping(u) => SchedState::Blocked(BlockedOn::Sleep { until: at(u) }),
                };
                prop_assert_eq!(k.task_state(t), Some(expected));
            }
            k.check_invariants().unwrap();
        }
    }
}
