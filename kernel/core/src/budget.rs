//! Accounts: who pays for each kernel object (see [`pandagen_abi::budget`]).
//!
//! Every task has an *account* with a limit (its [`Budget`]) and what is
//! charged to it. A spawner's account is charged the whole limit it grants
//! its child, so the limits of all accounts under a root never add up to
//! more than the root's. Every object the core keeps records the account
//! that paid for it (a channel its creator, a capability record the task
//! whose call made it, a queued message its sender) and releases the charge
//! there when it goes away.
//!
//! When a task dies its account is *closed*: what is still charged to it
//! (objects it made that others still reach, messages it sent that are
//! still queued) stays charged, the rest of its limit returns to the
//! parent at once, and the closed account's limit shrinks to what is still
//! charged. Each later release on a closed account shrinks its limit and is
//! passed on to the parent the same way, so the parent gets every byte back
//! as the dead task's last objects go. A closed account with nothing
//! charged is freed (no account can then still name it as parent: a child
//! account's limit is always charged to its parent).
//!
//! The invariant, for every account: `used` = the costs of the objects
//! charged to it + the limits of its child accounts (live or closed), and
//! `used <= limit`.

use alloc::vec::Vec;
use core::mem::size_of;
use pandagen_abi::error::Resource;
use pandagen_abi::{Budget, KernelError};

use crate::cap_table::{Capability, Slot as CapSlot};
use crate::channel::{ChannelSlot, Message};
use crate::sched::SCHEDULER_BYTES;
use crate::task::TASK_TABLE_BYTES;
use pandagen_abi::api::limits::MAX_TASK_NAME;

/// Bytes charged per capability record: the slot holding it (twice, since
/// a space grows by doubling) and its free-list entry.
pub const CAP_COST: u64 = 2 * size_of::<CapSlot>() as u64 + 16;
/// Bytes charged per channel: its table slot, which holds the object
/// (twice, since the table grows by doubling), and the queue buffer every
/// channel keeps (see `slab::fit_queue`), as the kernel heap serves it.
pub const CHANNEL_COST: u64 = 2 * size_of::<ChannelSlot>() as u64
    + allocation(crate::slab::MIN_QUEUE_BUFFER * size_of::<Message>());

/// The most bytes the kernel's exit notification of one task can take: its
/// reason is cut to `MAX_EXIT_REASON_TEXT`, the rest is fixed-size (a test
/// encodes the largest of each kind).
pub const EXIT_NOTIFICATION_BYTES: usize = 1024;
/// Bytes reserved, when a spawn records an exit route, for the kernel's
/// notification on it: the queued message it will become. Charged to the
/// spawner, so that the kernel's own messages are paid for like any other
/// and delivering one never needs memory nobody was charged for.
pub const EXIT_ROUTE_COST: u64 = message_cost(EXIT_NOTIFICATION_BYTES, 0);
/// Bytes charged per task for the core's records before the embedding
/// kernel's own share ([`CoreConfig::task_overhead`](crate::CoreConfig::task_overhead)):
/// its entries in the task, identity, scheduler and account tables (each
/// twice, since the tables grow by doubling) and its name.
pub const TASK_COST: u64 =
    2 * (TASK_TABLE_BYTES + SCHEDULER_BYTES + ACCOUNT_BYTES) as u64 + allocation(MAX_TASK_NAME);

/// Table bytes one account takes: its slot and free-list entry.
const ACCOUNT_BYTES: usize = size_of::<Option<Account>>() + size_of::<u32>();

/// Bytes charged for a queued message of `len` bytes carrying `caps`
/// capabilities: its queue entry (twice, since a queue's buffer grows by
/// doubling), its byte buffer and the vector holding the carried records,
/// each as the kernel heap serves it (see [`allocation`]). The records
/// themselves are charged as [`CAP_COST`] to whoever made them.
#[inline]
pub const fn message_cost(len: usize, caps: usize) -> u64 {
    let carried = if caps == 0 {
        0
    } else {
        allocation(caps * size_of::<Capability>())
    };
    2 * size_of::<Message>() as u64 + allocation(len) + carried
}

/// Largest block the kernel heap serves from a power-of-two size class
/// (`pandagen_heap::MAX_CLASS_SIZE`); larger blocks come from its
/// linked-list heap in 16-byte granules.
const LARGEST_CLASS: usize = 2048;

/// The heap bytes an allocation of `bytes` occupies: its power-of-two size
/// class (at least 16 bytes), or 16-byte granules above the largest class.
#[inline(always)]
pub const fn allocation(bytes: usize) -> u64 {
    if bytes == 0 {
        0
    } else if bytes <= LARGEST_CLASS {
        let class = if bytes < 16 {
            16
        } else {
            bytes.next_power_of_two()
        };
        class as u64
    } else {
        (bytes as u64).div_ceil(16) * 16 + 16
    }
}

/// An account, by its slot in [`Accounts`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(u32);

impl AccountId {
    #[cfg(test)]
    pub(crate) const fn from_raw(index: u32) -> Self {
        AccountId(index)
    }

    /// The account in table slot `index` (for the invariant check, which
    /// indexes its tables by slot).
    pub(crate) const fn from_index(index: u32) -> Self {
        AccountId(index)
    }

    /// The account's slot in the table.
    pub const fn index(self) -> u32 {
        self.0
    }
}

/// One account's figures, for listings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BudgetUsage {
    /// What the account may hold.
    pub limit: Budget,
    /// What is charged to it now, including the limits it granted to
    /// children.
    pub used: Budget,
}

impl BudgetUsage {
    /// What can still be charged.
    pub fn available(&self) -> Budget {
        self.limit.saturating_sub(self.used)
    }

    /// Whether `amount` more can be charged (see [`Accounts::check`]).
    #[inline(always)]
    pub(crate) fn check(&self, amount: Budget) -> Result<(), KernelError> {
        let available = self.available();
        if amount.fits_in(&available) {
            Ok(())
        } else {
            Err(exceeded(amount, available))
        }
    }

    /// Charge `bytes` of memory, which [`BudgetUsage::check`] has just
    /// said can be paid (nothing was charged since): the charge without
    /// checking again.
    #[inline(always)]
    pub(crate) fn charge_checked_memory(&mut self, bytes: u64) {
        let amount = Budget::memory(bytes);
        debug_assert!(amount.fits_in(&self.available()), "charge beyond limit");
        self.used = self.used.saturating_add(amount);
    }
}

#[derive(Clone, Copy, Debug)]
struct Account {
    usage: BudgetUsage,
    parent: Option<AccountId>,
    /// Its task is alive (the account is open).
    open: bool,
}

/// The table of accounts.
#[derive(Default)]
pub(crate) struct Accounts {
    slots: Vec<Option<Account>>,
    free: Vec<u32>,
}

fn exceeded(need: Budget, available: Budget) -> KernelError {
    let resource = if need.memory > available.memory {
        Resource::MemoryBudget
    } else {
        Resource::FrameBudget
    };
    KernelError::ResourceExhausted(resource)
}

impl Accounts {
    pub(crate) fn new() -> Self {
        Accounts::default()
    }

    #[inline(always)]
    fn get(&self, id: AccountId) -> &Account {
        self.slots[id.0 as usize]
            .as_ref()
            .expect("an account named by a live object exists")
    }

    #[inline(always)]
    fn get_mut(&mut self, id: AccountId) -> &mut Account {
        self.slots[id.0 as usize]
            .as_mut()
            .expect("an account named by a live object exists")
    }

    /// Open an account with `limit`, charging the limit to `parent`
    /// (which must be open). Errors with the parent's exhausted dimension.
    pub(crate) fn open(
        &mut self,
        parent: Option<AccountId>,
        limit: Budget,
    ) -> Result<AccountId, KernelError> {
        if let Some(p) = parent {
            self.charge(p, limit)?;
        }
        let account = Account {
            usage: BudgetUsage {
                limit,
                used: Budget::ZERO,
            },
            parent,
            open: true,
        };
        let index = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(account);
                i
            }
            None => {
                self.slots.push(Some(account));
                (self.slots.len() - 1) as u32
            }
        };
        Ok(AccountId(index))
    }

    /// Whether `amount` more can be charged to `id`.
    #[inline(always)]
    pub(crate) fn check(&self, id: AccountId, amount: Budget) -> Result<(), KernelError> {
        self.get(id).usage.check(amount)
    }

    /// `id`'s figures, found once for a check ([`BudgetUsage::check`]) and
    /// the charge that may follow it ([`BudgetUsage::charge_checked_memory`]).
    #[inline(always)]
    pub(crate) fn usage_mut(&mut self, id: AccountId) -> &mut BudgetUsage {
        &mut self.get_mut(id).usage
    }

    /// Charge `amount` to `id`, or change nothing and say which budget is
    /// exhausted.
    #[inline]
    pub(crate) fn charge(&mut self, id: AccountId, amount: Budget) -> Result<(), KernelError> {
        self.check(id, amount)?;
        let usage = &mut self.get_mut(id).usage;
        usage.used = usage.used.saturating_add(amount);
        Ok(())
    }

    /// Charge `bytes` of memory to `id`, which [`Accounts::check`] has
    /// just said it can pay (nothing was charged to it since): the charge
    /// without checking again.
    #[inline]
    pub(crate) fn charge_checked_memory(&mut self, id: AccountId, bytes: u64) {
        self.usage_mut(id).charge_checked_memory(bytes);
    }

    /// Charge a memory cost (see [`Accounts::charge`]).
    /// For the invariant checker's tests: an account's figures and open
    /// flag, to break in ways no operation would.
    #[cfg(test)]
    pub(crate) fn figures_mut(&mut self, id: AccountId) -> (&mut BudgetUsage, &mut bool) {
        let account = self.get_mut(id);
        (&mut account.usage, &mut account.open)
    }

    #[inline]
    pub(crate) fn charge_memory(&mut self, id: AccountId, bytes: u64) -> Result<(), KernelError> {
        self.charge(id, Budget::memory(bytes))
    }

    /// Return `amount` to `id`. On a closed account the limit shrinks by as
    /// much and the parent gets it back, and so on up; closed accounts left
    /// with nothing charged are freed. O(depth of closed ancestors).
    #[inline]
    pub(crate) fn release(&mut self, id: AccountId, amount: Budget) {
        let account = self.get_mut(id);
        debug_assert!(amount.fits_in(&account.usage.used), "release beyond charge");
        account.usage.used = account.usage.used.saturating_sub(amount);
        if !account.open {
            self.release_closed(id, amount);
        }
    }

    /// The rest of [`Accounts::release`] when `id`'s account is closed
    /// (`amount` already uncharged from it): its limit shrinks by as much,
    /// and the release goes on up to the first open ancestor.
    #[cold]
    fn release_closed(&mut self, id: AccountId, amount: Budget) {
        let mut at = Some(id);
        while let Some(id) = at.take() {
            let account = self.get_mut(id);
            account.usage.limit = account.usage.limit.saturating_sub(amount);
            at = account.parent;
            self.free_if_empty(id);
            let Some(parent) = at else {
                return;
            };
            let account = self.get_mut(parent);
            debug_assert!(amount.fits_in(&account.usage.used), "release beyond charge");
            account.usage.used = account.usage.used.saturating_sub(amount);
            if account.open {
                return;
            }
        }
    }

    /// Release a memory cost (see [`Accounts::release`]).
    #[inline]
    pub(crate) fn release_memory(&mut self, id: AccountId, bytes: u64) {
        self.release(id, Budget::memory(bytes))
    }

    /// Close `id` (its task died): return its unused limit to its parent
    /// and keep what is still charged until it is released.
    pub(crate) fn close(&mut self, id: AccountId) {
        let account = self.get_mut(id);
        account.open = false;
        let unused = account.usage.available();
        account.usage.limit = account.usage.used;
        let parent = account.parent;
        self.free_if_empty(id);
        if let Some(p) = parent {
            self.release(p, unused);
        }
    }

    fn free_if_empty(&mut self, id: AccountId) {
        let account = self.get(id);
        if !account.open && account.usage.used == Budget::ZERO {
            self.slots[id.0 as usize] = None;
            self.free.push(id.0);
        }
    }

    /// An account's figures.
    pub(crate) fn usage(&self, id: AccountId) -> BudgetUsage {
        self.get(id).usage
    }

    /// Accounts that exist (open, or closed with something still charged).
    pub(crate) fn live(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// Slots in the table, open or free (every account's index is below).
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Every account: id, figures, parent, open.
    pub(crate) fn iter(
        &self,
    ) -> impl Iterator<Item = (AccountId, BudgetUsage, Option<AccountId>, bool)> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.as_ref()
                .map(|a| (AccountId(i as u32), a.usage, a.parent, a.open))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_limit_is_carved_from_the_parent_and_returned_at_close() {
        let mut a = Accounts::new();
        let root = a.open(None, Budget::new(1000, 10)).unwrap();
        let child = a.open(Some(root), Budget::new(600, 4)).unwrap();
        assert_eq!(a.usage(root).used, Budget::new(600, 4));
        assert_eq!(
            a.open(Some(root), Budget::new(500, 0)),
            Err(KernelError::ResourceExhausted(Resource::MemoryBudget))
        );
        assert_eq!(
            a.open(Some(root), Budget::new(0, 7)),
            Err(KernelError::ResourceExhausted(Resource::FrameBudget))
        );
        a.charge_memory(child, 100).unwrap();
        a.close(child);
        // 500 unused came back; the 100 still charged stays on the closed
        // account until released.
        assert_eq!(a.usage(root).used, Budget::new(100, 0));
        a.release_memory(child, 100);
        assert_eq!(a.usage(root).used, Budget::ZERO);
        assert_eq!(a.live(), 1, "the closed, empty account is freed");
    }

    #[test]
    fn a_refusal_names_the_dimension_that_ran_out() {
        let mut a = Accounts::new();
        let task = a.open(None, Budget::new(1000, 10)).unwrap();
        // All the memory that is left, but one frame too many: frames.
        assert_eq!(
            a.charge(task, Budget::new(1000, 11)),
            Err(KernelError::ResourceExhausted(Resource::FrameBudget))
        );
        assert_eq!(
            a.charge(task, Budget::new(1001, 10)),
            Err(KernelError::ResourceExhausted(Resource::MemoryBudget))
        );
        assert_eq!(a.usage(task).used, Budget::ZERO, "nothing charged");
    }

    #[test]
    fn releases_on_closed_accounts_travel_up_to_the_first_open_one() {
        let mut a = Accounts::new();
        let root = a.open(None, Budget::memory(1000)).unwrap();
        let mid = a.open(Some(root), Budget::memory(500)).unwrap();
        let leaf = a.open(Some(mid), Budget::memory(200)).unwrap();
        a.charge_memory(leaf, 50).unwrap();
        a.charge_memory(mid, 30).unwrap();
        a.close(mid);
        a.close(leaf);
        assert_eq!(a.usage(root).used.memory, 80);
        a.release_memory(mid, 30);
        assert_eq!(a.usage(root).used.memory, 50);
        a.release_memory(leaf, 50);
        assert_eq!(a.usage(root).used.memory, 0);
        assert_eq!(a.live(), 1);
    }

    #[test]
    fn a_release_stops_at_the_first_open_account() {
        let mut a = Accounts::new();
        let root = a.open(None, Budget::memory(1000)).unwrap();
        let mid = a.open(Some(root), Budget::memory(500)).unwrap();
        let leaf = a.open(Some(mid), Budget::memory(200)).unwrap();
        a.charge_memory(leaf, 50).unwrap();
        a.close(leaf);
        let (root_before, mid_before) = (a.usage(root), a.usage(mid));
        a.release_memory(leaf, 50);
        assert_eq!(a.usage(mid).used.memory, mid_before.used.memory - 50);
        assert_eq!(
            a.usage(mid).limit,
            mid_before.limit,
            "an open account keeps its limit"
        );
        assert_eq!(a.usage(root), root_before, "the release goes no further");
        assert_eq!(a.live(), 2, "the closed leaf, now empty, is freed");
    }
}
