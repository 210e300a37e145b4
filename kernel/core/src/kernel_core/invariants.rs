//! A full consistency check of the object model, for tests and for the
//! real kernel's self-test after a syscall fuzz run. O(everything).

use alloc::vec;
use alloc::vec::Vec;
use pandagen_abi::{Budget, Rights, ServiceId, TaskId};

use super::KernelCore;
use crate::budget::{AccountId, CAP_COST, CHANNEL_COST};
use crate::cap_table::{CapId, Capability, Holder, ObjectRef};
use crate::channel::{Channel, ChannelRef, Message};
use crate::sched::{BlockedOn, SchedState};

/// The first inconsistency `check_invariants` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvariantViolation {
    /// Two records share an id: a capability with two owners.
    DuplicateCapability(CapId),
    /// A record's holder field disagrees with where it is stored.
    HolderMismatch(CapId),
    /// A record designates a channel object that no longer exists.
    DanglingChannel(CapId),
    /// A channel's reference, sender, receiver or registration counts
    /// disagree with the records and registrations that exist, or its
    /// summary for the IPC fast path (`Channel::blocks`) disagrees with
    /// its counts, binding and queue.
    ChannelCounts(ChannelRef),
    /// A channel exists that nothing references.
    UnreferencedChannel(ChannelRef),
    /// A queue holds more messages than its bound.
    QueueOverCapacity(ChannelRef),
    /// A closed channel still holds messages.
    ClosedChannelNotEmpty(ChannelRef),
    /// A registration names a dead owner or a closed or missing channel.
    StaleRegistration(ServiceId),
    /// A live task is not scheduled, a blocked task is in the wrong wait
    /// list, or a slot of the task's capability space shows the IPC fast
    /// path a channel view that is not its record's.
    TaskState(TaskId),
    /// The ready lists, bitmap or deadline index are inconsistent.
    Scheduler,
    /// A channel's wait list holds a task not blocked on it.
    WaitList(ChannelRef),
    /// An account's charge disagrees with the objects it pays for, exceeds
    /// its limit, or an object names an account that does not exist.
    Account(AccountId),
    /// A kernel channel and the service channel it is bound to do not
    /// name each other, or a kernel channel has a sender or registration.
    Binding(ChannelRef),
    /// A message queued on (or parked for) this channel is charged to
    /// nobody: kernel memory outside every budget.
    UnpaidMessage(ChannelRef),
}

#[derive(Clone, Default, PartialEq, Eq, Debug)]
struct Counts {
    refs: u32,
    senders: u32,
    receivers: u32,
    registrations: u32,
}

impl KernelCore {
    /// Check every structural invariant:
    /// * every capability record exists in exactly one place, and its
    ///   holder says where (so every valid capability has one owner);
    /// * every channel's counts match the records referencing it, no
    ///   channel is unreferenced, queues respect their bounds, closed
    ///   channels are empty;
    /// * registrations name live owners and open channels;
    /// * every live task is scheduled, each blocked receiver is in exactly
    ///   its channel's wait list, and the scheduler's lists are consistent.
    ///
    /// It allocates only flat tables indexed by slot (no tree per record),
    /// since the fuzzer runs it after every step.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        let mut seen: Vec<CapId> = Vec::new();
        // What the records and registrations say of each channel, by its
        // slot (a record naming a destroyed channel is refused at once, so
        // every count here is of the live channel in that slot).
        let mut counts: Vec<Option<Counts>> = vec![None; self.channels.slot_count()];
        let mut visit = |cap: &Capability, expected: Holder| -> Result<(), InvariantViolation> {
            seen.push(cap.id());
            if cap.holder() != expected {
                return Err(InvariantViolation::HolderMismatch(cap.id()));
            }
            if let ObjectRef::Channel(ch) = cap.object() {
                if self.channels.get(ch).is_none() {
                    return Err(InvariantViolation::ChannelCounts(ch));
                }
                let c = counts[ch.index() as usize].get_or_insert_with(Counts::default);
                c.refs += 1;
                c.senders += cap.rights().contains(Rights::SEND) as u32;
                c.receivers += cap.rights().contains(Rights::RECEIVE) as u32;
            }
            Ok(())
        };
        for (_, task) in self.tasks.iter() {
            for (_, cap) in task.space.iter() {
                visit(cap, Holder::Task(task.id))?;
            }
            if !task.space.views_agree() {
                return Err(InvariantViolation::TaskState(task.id));
            }
        }
        for (ch, c) in self.channels.iter() {
            for msg in &c.queue {
                for cap in &msg.caps {
                    visit(cap, Holder::Queued(ch))?;
                }
            }
        }
        for (_, msg) in self.parked.values() {
            for cap in &msg.caps {
                visit(cap, Holder::Parked)?;
            }
        }
        seen.sort_unstable();
        if let Some(pair) = seen.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(InvariantViolation::DuplicateCapability(pair[0]));
        }
        for r in self.registry.iter() {
            let open = self.channels.get(r.channel).is_some_and(|c| !c.is_closed());
            if !open || !self.is_alive(r.owner) {
                return Err(InvariantViolation::StaleRegistration(r.service));
            }
            counts[r.channel.index() as usize]
                .get_or_insert_with(Counts::default)
                .registrations += 1;
        }
        for (ch, c) in self.channels.iter() {
            let Some(expected) = &counts[ch.index() as usize] else {
                continue;
            };
            let actual = Counts {
                refs: c.refs,
                senders: c.senders,
                receivers: c.receivers,
                registrations: c.registrations,
            };
            if actual != *expected {
                return Err(InvariantViolation::ChannelCounts(ch));
            }
        }
        let queued = self
            .channels
            .iter()
            .flat_map(|(ch, c)| c.queue.iter().map(move |m| (ch, m)));
        let parked = self.parked.values().map(|(ch, m)| (*ch, m));
        if let Some((ch, _)) = queued.chain(parked).find(|(_, m)| m.payer.is_none()) {
            return Err(InvariantViolation::UnpaidMessage(ch));
        }
        for (ch, c) in self.channels.iter() {
            if counts[ch.index() as usize].is_none() || c.refs == 0 {
                return Err(InvariantViolation::UnreferencedChannel(ch));
            }
            if c.bounded_len() > c.capacity as usize {
                return Err(InvariantViolation::QueueOverCapacity(ch));
            }
            if c.is_closed() && !c.queue.is_empty() {
                return Err(InvariantViolation::ClosedChannelNotEmpty(ch));
            }
            let names_back =
                |other: Option<ChannelRef>, back: fn(&Channel) -> Option<ChannelRef>| {
                    other.is_none_or(|o| self.channels.get(o).is_none_or(|oc| back(oc) == Some(ch)))
                };
            let kernel_only = c.bound_to.is_none() || (c.senders == 0 && c.registrations == 0);
            if !kernel_only
                || !names_back(c.bound, |oc| oc.bound_to)
                || !names_back(c.bound_to, |oc| oc.bound)
                || c.bound.is_some_and(|b| self.channels.get(b).is_none())
            {
                return Err(InvariantViolation::Binding(ch));
            }
            for slot in self.sched.iter_list(c.waiters.get()) {
                let blocked_here = matches!(
                    self.sched.state(slot),
                    SchedState::Blocked(BlockedOn::Receive { channel, .. }) if channel == ch
                );
                if !blocked_here || self.tasks.by_slot(slot).is_none() {
                    return Err(InvariantViolation::WaitList(ch));
                }
            }
        }
        // Last, so that a broken count or binding is reported as itself.
        if let Some((ch, _)) = self.channels.iter().find(|(_, c)| c.blocks != c.summary()) {
            return Err(InvariantViolation::ChannelCounts(ch));
        }
        for (slot, task) in self.tasks.iter() {
            match self.sched.state(slot) {
                SchedState::Inactive => return Err(InvariantViolation::TaskState(task.id)),
                SchedState::Blocked(BlockedOn::Receive { channel, .. }) => {
                    let listed = self
                        .channels
                        .get(channel)
                        .is_some_and(|c| self.sched.iter_list(c.waiters.get()).any(|s| s == slot));
                    if !listed {
                        return Err(InvariantViolation::TaskState(task.id));
                    }
                }
                _ => {}
            }
        }
        if !self.sched.consistent() {
            return Err(InvariantViolation::Scheduler);
        }
        self.check_accounts()
    }

    /// Every account's charge is exactly the cost of the objects that name
    /// it as payer plus the limits of its child accounts, within its limit;
    /// no closed account lingers with nothing charged.
    fn check_accounts(&self) -> Result<(), InvariantViolation> {
        // What each account should be charged, by its slot (an object may
        // name an account past the table: that is found below).
        let mut expected: Vec<Option<Budget>> = vec![None; self.accounts.slot_count()];
        let mut missing = None;
        let mut add =
            |account: AccountId, amount: Budget| match expected.get_mut(account.index() as usize) {
                Some(e) => {
                    let e = e.get_or_insert(Budget::ZERO);
                    *e = e.saturating_add(amount);
                }
                None => missing = missing.or(Some(account)),
            };
        let cap = Budget::memory(CAP_COST);
        let message = |msg: &Message| Budget::memory(u64::from(msg.charge));
        for (_, task) in self.tasks.iter() {
            add(task.account, task.own_charge);
            for (_, c) in task.space.iter() {
                add(c.payer(), cap);
            }
        }
        for (_, c) in self.channels.iter() {
            add(c.payer, Budget::memory(CHANNEL_COST));
            for msg in &c.queue {
                if let Some(payer) = msg.payer {
                    add(payer, message(msg));
                }
                for carried in &msg.caps {
                    add(carried.payer(), cap);
                }
            }
        }
        for (_, msg) in self.parked.values() {
            if let Some(payer) = msg.payer {
                add(payer, message(msg));
            }
            for carried in &msg.caps {
                add(carried.payer(), cap);
            }
        }
        for (payer, cost) in self.binding_charges() {
            add(payer, Budget::memory(cost));
        }
        for (payer, frames) in self.quarantine_charges() {
            add(payer, Budget::new(0, frames));
        }
        for payer in self.exit_route_charges() {
            add(payer, Budget::memory(crate::budget::EXIT_ROUTE_COST));
        }
        for (_, usage, parent, _) in self.accounts.iter() {
            if let Some(parent) = parent {
                add(parent, usage.limit);
            }
        }
        if let Some(missing) = missing {
            return Err(InvariantViolation::Account(missing));
        }
        for (account, usage, _, open) in self.accounts.iter() {
            let charged = expected[account.index() as usize]
                .take()
                .unwrap_or_default();
            let empty_and_closed = !open && usage.used == Budget::ZERO;
            if charged != usage.used || !usage.used.fits_in(&usage.limit) || empty_and_closed {
                return Err(InvariantViolation::Account(account));
            }
        }
        // Charged to a slot that holds no account.
        match expected.iter().position(Option::is_some) {
            Some(index) => Err(InvariantViolation::Account(AccountId::from_index(
                index as u32,
            ))),
            None => Ok(()),
        }
    }
}

/// `check_invariants` against states the public operations never produce,
/// each broken in one place on purpose: the checker must name the fault.
#[cfg(test)]
mod tests {
    use alloc::vec::Vec;
    use pandagen_abi::{ExitReason, Instant, Priority, Rights, ServiceId, TaskId};

    use super::InvariantViolation as V;
    use crate::cap_table::{Capability, Holder, ObjectRef};
    use crate::channel::ChannelRef;
    use crate::registry::Registration;
    use crate::sched::BlockedOn;
    use crate::{KernelCore, Mintable, TaskSpec};

    const T0: Instant = Instant::ZERO;

    /// A consistent kernel: two tasks, a channel `a` owns (with one
    /// message queued) of which `b` holds a send-only copy, and a service
    /// registered on it.
    struct World {
        k: KernelCore,
        a: TaskId,
        b: TaskId,
        ch: ChannelRef,
    }

    fn world() -> World {
        let mut k = KernelCore::default();
        let a = k.create_task(None, TaskSpec::new("a"), T0).unwrap().0;
        let b = k.create_task(None, TaskSpec::new("b"), T0).unwrap().0;
        let chan = k.create_channel(a, T0).unwrap();
        let send = k
            .clone_cap(a, chan, Rights::SEND | Rights::GRANT, T0)
            .unwrap();
        let over_b = k.mint(a, Mintable::Task(b), Rights::SEND, T0).unwrap();
        k.grant(a, send, b, T0).unwrap();
        k.drop_cap(a, send, T0).unwrap();
        k.drop_cap(a, over_b, T0).unwrap();
        let reg = k
            .mint(a, Mintable::ServiceRegistry, Rights::REGISTER, T0)
            .unwrap();
        k.register_service(a, reg, ServiceId::from_raw(9), chan, T0)
            .unwrap();
        k.send(a, chan, b"queued".to_vec(), &[], T0).unwrap();
        let ch = k.channel_of(a, chan, T0).unwrap();
        k.check_invariants().unwrap();
        World { k, a, b, ch }
    }

    /// `check_invariants` after `break_it` changed a fresh world.
    fn broken(break_it: impl FnOnce(&mut World)) -> Result<(), V> {
        let mut w = world();
        break_it(&mut w);
        w.k.check_invariants()
    }

    fn first_cap_of(k: &KernelCore, task: TaskId) -> (pandagen_abi::CapHandle, &Capability) {
        k.tasks.get(task).unwrap().space.iter().next().unwrap()
    }

    #[test]
    fn a_capability_in_two_places_is_found() {
        let mut w = world();
        let (_, cap) = first_cap_of(&w.k, w.a);
        let id = cap.id();
        let payer = w.k.account_of(w.b).unwrap();
        let copy = Capability::new(id, cap.object(), cap.rights(), Holder::Task(w.b), payer);
        w.k.tasks.get_mut(w.b).unwrap().space.install(copy).ok();
        // The counts stay right, so only the duplicate is wrong.
        let c = w.k.channels.get_mut(w.ch).unwrap();
        c.refs += 1;
        c.senders += 1;
        c.receivers += 1;
        assert_eq!(w.k.check_invariants(), Err(V::DuplicateCapability(id)));
    }

    #[test]
    fn a_holder_that_disagrees_with_the_place_is_found() {
        let mut w = world();
        let (h, cap) = first_cap_of(&w.k, w.b);
        let id = cap.id();
        let mut cap = w.k.tasks.get_mut(w.b).unwrap().space.remove(h).unwrap();
        cap.set_holder(Holder::Parked);
        // Re-install without the kernel's bookkeeping (which would fix it).
        w.k.tasks.get_mut(w.b).unwrap().space.install(cap).ok();
        assert_eq!(w.k.check_invariants(), Err(V::HolderMismatch(id)));
    }

    #[test]
    fn every_channel_count_is_checked() {
        let counts: [fn(&mut crate::channel::Channel); 4] = [
            |c| c.refs += 1,
            |c| c.senders -= 1,
            |c| c.receivers += 1,
            |c| c.registrations += 1,
        ];
        for (i, bump) in counts.into_iter().enumerate() {
            let mut w = world();
            bump(w.k.channels.get_mut(w.ch).unwrap());
            assert_eq!(
                w.k.check_invariants(),
                Err(V::ChannelCounts(w.ch)),
                "count {i}"
            );
        }
    }

    #[test]
    fn a_channel_nothing_references_is_found() {
        let mut w = world();
        let payer = w.k.account_of(w.a).unwrap();
        let orphan = w.k.channels.create(1, payer);
        assert_eq!(w.k.check_invariants(), Err(V::UnreferencedChannel(orphan)));
        // Also when its own count claims a reference that no record makes.
        w.k.channels.get_mut(orphan).unwrap().refs = 1;
        assert_eq!(w.k.check_invariants(), Err(V::UnreferencedChannel(orphan)));
    }

    #[test]
    fn a_record_naming_a_destroyed_channel_is_found() {
        let mut w = world();
        let payer = w.k.account_of(w.b).unwrap();
        let gone = w.k.channels.create(1, payer);
        w.k.channels.destroy(gone);
        let cap =
            w.k.new_record(ObjectRef::Channel(gone), Rights::SEND, w.b, payer);
        w.k.tasks.get_mut(w.b).unwrap().space.install(cap).ok();
        assert_eq!(w.k.check_invariants(), Err(V::ChannelCounts(gone)));
    }

    #[test]
    fn a_queue_over_its_bound_is_found_and_a_full_one_is_fine() {
        let mut w = world();
        w.k.channels.get_mut(w.ch).unwrap().capacity = 1;
        assert_eq!(w.k.check_invariants(), Ok(()), "exactly full");
        w.k.channels.get_mut(w.ch).unwrap().capacity = 0;
        assert_eq!(w.k.check_invariants(), Err(V::QueueOverCapacity(w.ch)));
    }

    #[test]
    fn every_broken_kernel_channel_binding_is_found() {
        /// A service channel owned by `a` with a kernel channel bound to
        /// it: (world, service, kernel channel).
        fn bound() -> (World, ChannelRef, ChannelRef) {
            let mut w = world();
            let service = w.k.create_channel(w.a, T0).unwrap();
            let kernel = w.k.bind_kernel_channel(w.a, service, T0).unwrap();
            let service = w.k.channel_of(w.a, service, T0).unwrap();
            let kernel = w.k.channel_of(w.a, kernel, T0).unwrap();
            w.k.check_invariants().unwrap();
            (w, service, kernel)
        }
        // A sender on the kernel channel (`new_record` keeps the counts).
        let (mut w, _, kernel) = bound();
        let payer = w.k.account_of(w.b).unwrap();
        let send =
            w.k.new_record(ObjectRef::Channel(kernel), Rights::SEND, w.b, payer);
        w.k.tasks.get_mut(w.b).unwrap().space.install(send).ok();
        assert_eq!(w.k.check_invariants(), Err(V::Binding(kernel)), "a sender");
        // The service channel no longer names its kernel channel.
        let (mut w, service, kernel) = bound();
        w.k.channels.get_mut(service).unwrap().bound = None;
        assert_eq!(w.k.check_invariants(), Err(V::Binding(kernel)), "one end");
        // The kernel channel no longer names its service channel.
        let (mut w, service, kernel) = bound();
        w.k.channels.get_mut(kernel).unwrap().bound_to = None;
        assert_eq!(
            w.k.check_invariants(),
            Err(V::Binding(service)),
            "other end"
        );
    }

    #[test]
    fn every_broken_account_is_found() {
        // A charge no object explains.
        let mut w = world();
        let a = w.k.account_of(w.a).unwrap();
        w.k.accounts.charge_memory(a, 16).unwrap();
        assert_eq!(w.k.check_invariants(), Err(V::Account(a)), "unexplained");
        // Charges that match but pass the limit.
        let mut w = world();
        let a = w.k.account_of(w.a).unwrap();
        let (usage, _) = w.k.accounts.figures_mut(a);
        usage.limit.memory = usage.used.memory - 1;
        assert_eq!(w.k.check_invariants(), Err(V::Account(a)), "over its limit");
        // A closed account with nothing charged that was never freed.
        let mut w = world();
        let stray =
            w.k.accounts
                .open(None, pandagen_abi::Budget::memory(4096))
                .unwrap();
        assert_eq!(
            w.k.check_invariants(),
            Ok(()),
            "an open empty account is fine"
        );
        *w.k.accounts.figures_mut(stray).1 = false;
        assert_eq!(
            w.k.check_invariants(),
            Err(V::Account(stray)),
            "closed and empty"
        );
    }

    #[test]
    fn a_queued_message_nobody_pays_for_is_found() {
        // The queued message's charge released behind the kernel's back
        // and its payer forgotten: the accounts agree again, so only the
        // unpaid message is wrong.
        let mut w = world();
        let c = w.k.channels.get_mut(w.ch).unwrap();
        let msg = c.queue.front_mut().unwrap();
        let (payer, cost) = (msg.payer.take().unwrap(), u64::from(msg.charge));
        w.k.accounts.release_memory(payer, cost);
        assert_eq!(w.k.check_invariants(), Err(V::UnpaidMessage(w.ch)));
    }

    #[test]
    fn a_fast_path_summary_out_of_step_with_its_channel_is_found() {
        use crate::channel::Channel;
        // Each bit of the summary lost or gained behind the kernel's back
        // (the world's channel has a message queued, a receiver, senders
        // and a registration: only `QUEUED` is set).
        assert_eq!(w_blocks(), Channel::QUEUED);
        for bit in [
            Channel::QUEUED,
            Channel::CLOSED,
            Channel::SILENT,
            Channel::BOUND,
        ] {
            let found = broken(|w| w.k.channels.get_mut(w.ch).unwrap().blocks ^= bit);
            assert_eq!(found, Err(V::ChannelCounts(w_ch())), "bit {bit}");
        }
        // And in step again once written from its fields.
        let mut w = world();
        w.k.channels.get_mut(w.ch).unwrap().blocks = 0;
        w.k.channels.get_mut(w.ch).unwrap().resync();
        w.k.check_invariants().unwrap();
    }

    /// The summary follows every change of what it summarizes on a
    /// channel with no sender (the case where registrations and bindings
    /// decide whether it is drained): `check_invariants` after each step
    /// fails if one writer forgot it.
    #[test]
    fn a_fast_path_summary_follows_its_channel_through_every_change() {
        use crate::channel::Channel;
        let mut k = KernelCore::default();
        let a = k.create_task(None, TaskSpec::new("a"), T0).unwrap().0;
        let chan = k.create_channel(a, T0).unwrap();
        let ch = k.channel_of(a, chan, T0).unwrap();
        let blocks = |k: &KernelCore| k.channels.get(ch).unwrap().blocks;
        assert_eq!(blocks(&k), 0, "open, with a sender");
        let r = k
            .clone_cap(a, chan, Rights::RECEIVE | Rights::GRANT, T0)
            .unwrap();
        k.drop_cap(a, chan, T0).unwrap();
        k.check_invariants().unwrap();
        assert_eq!(blocks(&k), Channel::SILENT, "no sender left");
        let reg = k
            .mint(a, Mintable::ServiceRegistry, Rights::REGISTER, T0)
            .unwrap();
        let svc = ServiceId::from_raw(5);
        k.register_service(a, reg, svc, r, T0).unwrap();
        k.check_invariants().unwrap();
        assert_eq!(blocks(&k), 0, "registered");
        k.unregister_service(a, svc).unwrap();
        k.check_invariants().unwrap();
        assert_eq!(blocks(&k), Channel::SILENT, "unregistered");
        let kernel = k.bind_kernel_channel(a, r, T0).unwrap();
        k.check_invariants().unwrap();
        assert_eq!(blocks(&k), Channel::BOUND, "bound");
        k.drop_cap(a, kernel, T0).unwrap();
        k.check_invariants().unwrap();
        assert_eq!(blocks(&k), Channel::SILENT, "unbound");
        k.register_service(a, reg, svc, r, T0).unwrap();
        // Its last receive right goes while a capability without rights
        // keeps it: closed, and its registration gone with it.
        let kept = k.clone_cap(a, r, Rights::NONE, T0).unwrap();
        k.drop_cap(a, r, T0).unwrap();
        k.check_invariants().unwrap();
        assert_eq!(blocks(&k), Channel::CLOSED | Channel::SILENT, "closed");
        k.drop_cap(a, kept, T0).unwrap();
        k.check_invariants().unwrap();
        assert!(
            k.channels.get(ch).is_none(),
            "gone with its last capability"
        );
    }

    fn w_blocks() -> u8 {
        let w = world();
        w.k.channels.get(w.ch).unwrap().blocks
    }

    fn w_ch() -> ChannelRef {
        world().ch
    }

    #[test]
    fn a_closed_channel_with_messages_is_found() {
        let mut w = world();
        // Take the only receive right away behind the kernel's back, with
        // the counts adjusted to match.
        w.k.unregister_owner(w.a);
        let (h, _) = first_cap_of(&w.k, w.a);
        w.k.tasks.get_mut(w.a).unwrap().space.remove(h).unwrap();
        let c = w.k.channels.get_mut(w.ch).unwrap();
        c.refs -= 1;
        c.senders -= 1;
        c.receivers -= 1;
        assert_eq!(w.k.check_invariants(), Err(V::ClosedChannelNotEmpty(w.ch)));
    }

    #[test]
    fn a_registration_of_a_dead_owner_or_a_closed_channel_is_found() {
        let svc = ServiceId::from_raw(10);
        let ghost = broken(|w| {
            w.k.registry.insert(Registration {
                service: svc,
                channel: w.ch,
                owner: TaskId::from_raw(999),
                registered_at: T0,
            });
            w.k.channels.get_mut(w.ch).unwrap().registrations += 1;
        });
        assert_eq!(ghost, Err(V::StaleRegistration(svc)));
        let closed = broken(|w| {
            let gone = ChannelRef::from_parts(77, 1);
            w.k.registry.insert(Registration {
                service: svc,
                channel: gone,
                owner: w.a,
                registered_at: T0,
            });
        });
        assert_eq!(closed, Err(V::StaleRegistration(svc)));
    }

    #[test]
    fn an_unscheduled_task_or_an_unlisted_waiter_is_found() {
        let mut w = world();
        let slot = w.k.tasks.slot_of(w.b).unwrap();
        w.k.sched.deactivate(slot, None);
        assert_eq!(w.k.check_invariants(), Err(V::TaskState(w.b)));

        let mut w = world();
        let slot = w.k.tasks.slot_of(w.b).unwrap();
        // Blocked on the channel, but not in its wait list.
        let on = BlockedOn::Receive {
            channel: w.ch,
            deadline: None,
        };
        w.k.sched.block(slot, on, None);
        assert_eq!(w.k.check_invariants(), Err(V::TaskState(w.b)));
    }

    #[test]
    fn a_waiter_blocked_elsewhere_is_found() {
        let mut w = world();
        let other = w.k.create_channel(w.b, T0).unwrap();
        let other = w.k.channel_of(w.b, other, T0).unwrap();
        let slot = w.k.tasks.slot_of(w.b).unwrap();
        // In `ch`'s wait list while blocked on `other`.
        let on = BlockedOn::Receive {
            channel: other,
            deadline: None,
        };
        let waiters = w.k.channels.get_mut(w.ch).map(|c| c.waiters.get_mut());
        w.k.sched.block(slot, on, waiters);
        assert_eq!(w.k.check_invariants(), Err(V::WaitList(w.ch)));
    }

    #[test]
    fn a_waiter_whose_task_is_gone_is_found() {
        let mut w = world();
        let slot = w.k.tasks.slot_of(w.b).unwrap();
        let on = BlockedOn::Receive {
            channel: w.ch,
            deadline: None,
        };
        let waiters = w.k.channels.get_mut(w.ch).map(|c| c.waiters.get_mut());
        w.k.sched.block(slot, on, waiters);
        w.k.check_invariants().unwrap();
        // The task leaves the table but not the wait list.
        let caps: Vec<_> = w.k.tasks.by_slot_mut(slot).unwrap().space.drain();
        for cap in caps {
            w.k.retire(cap, T0);
        }
        w.k.tasks.remove(slot);
        assert_eq!(w.k.check_invariants(), Err(V::WaitList(w.ch)));
    }

    #[test]
    fn a_scheduler_out_of_step_is_found() {
        let mut w = world();
        let slot = w.k.tasks.slot_of(w.b).unwrap();
        w.k.set_priority(w.b, Priority::HIGH).unwrap();
        // Ready a second time: listed twice.
        w.k.sched.activate(slot, Priority::HIGH);
        assert_eq!(w.k.check_invariants(), Err(V::Scheduler));
    }

    #[test]
    fn a_terminated_world_is_consistent() {
        let mut w = world();
        w.k.terminate(w.a, ExitReason::Normal, T0).unwrap();
        w.k.terminate(w.b, ExitReason::Normal, T0).unwrap();
        assert_eq!(w.k.check_invariants(), Ok(()));
        assert_eq!(w.k.channel_count(), 0);
    }
}
