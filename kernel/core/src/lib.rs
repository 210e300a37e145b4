//! # pandagen-core — the kernel's portable object model
//!
//! One implementation of capabilities, channels, tasks and identities, the
//! service registry, scheduling policy and the audit log, used unchanged by
//! the real kernel (ring 0, bare metal) and by the host `SimulatedKernel`.
//! `no_std` + `alloc`; no hardware access, no clock, no global state, and
//! no hashing with random state: given the same calls, a [`KernelCore`]
//! behaves identically everywhere.
//!
//! Everything goes through [`KernelCore`]. Its methods take the calling
//! task explicitly and, where time matters, the current `Instant`
//! (`pandagen_abi::Instant`): the core never decides who is calling or what
//! time it is.
//!
//! * [`cap_table`] — capability records ([`Capability`], constructible only
//!   here) and per-task spaces addressed by generation-checked handles;
//! * [`audit`] — the bounded [`AuditLog`] of [`CapabilityEvent`]s;
//! * [`channel`] — bounded FIFO queues of messages carrying bytes and moved
//!   capabilities, and the close semantics;
//! * [`task`] — the task table (ids never reused) and identity table;
//! * [`registry`] — `ServiceId` → channel;
//! * [`sched`] — scheduling policy: priorities, round-robin, blocking with
//!   deadlines;
//! * [`program_image`] — validation of a ring-3 program image (ELF);
//! * [`budget`] — accounts: who pays for each kernel object, budgets
//!   carved from the spawner's, returned at death;
//! * [`block`] — the kernel's block device: the checks every block call
//!   passes ([`KernelCore::block_read`] and friends) before it reaches the
//!   [`BlockDevice`](pandagen_abi::BlockDevice) each kernel provides, and
//!   [`VecDisk`].
//!
//! ## Semantics in brief
//!
//! * **Capabilities** live in per-task spaces; a handle is slot index +
//!   generation, so stale or guessed handles fail. `grant` copies (needs
//!   `GRANT`), `delegate` moves (needs `TRANSFER`), `clone_cap` makes an
//!   attenuated copy in the caller's own space (needs `GRANT`, since
//!   clone + delegate would otherwise be a grant), `drop_cap` releases.
//!   Every refused use is audited as `InvalidUseAttempt`; termination
//!   invalidates everything the task held.
//! * **Channels** are bounded FIFO queues; sends never block. A message's
//!   capabilities are moved into kernel custody (attaching one needs
//!   `TRANSFER`) and installed in the receiver's space on delivery. A
//!   channel closes when its last `RECEIVE` capability is gone, discarding
//!   its queue and invalidating (and auditing) the capabilities in it; see
//!   [`channel`] for the full close semantics.
//! * **Object capabilities** are minted by a service for its own objects
//!   ([`KernelCore::mint_object_cap`]: kind `StorageObject`, object =
//!   service id + opaque badge, only by the registration holder). Sending
//!   *through* one ([`KernelCore::send_to_object`]) reaches the channel the
//!   service has registered at that moment, and the delivered message
//!   carries the badge and the rights of the capability used. They move,
//!   attenuate and die with their holder like any other capability.
//! * **Blocking** is bookkeeping only: [`KernelCore::receive_or_block`],
//!   [`KernelCore::sleep_until`], [`KernelCore::expire_deadlines`] and
//!   [`KernelCore::next_deadline`] hold who waits for what; see the
//!   protocol on `receive_or_block`.
//! * **Fault injection** uses [`KernelCore::prepare_send`] /
//!   [`KernelCore::enqueue`] / [`KernelCore::discard`] (delay, drop),
//!   [`KernelCore::swap_queued`] (reorder) and [`KernelCore::discard_next`]
//!   (loss on receive); none can duplicate a message or leak a capability.
//! * [`KernelCore::check_invariants`] verifies the whole model.
//!
//! A typical round trip:
//!
//! ```
//! use pandagen_abi::{Instant, ServiceId, Rights};
//! use pandagen_core::{KernelCore, Mintable, TaskSpec};
//!
//! let t0 = Instant::ZERO;
//! let mut k = KernelCore::default();
//! let (server, _) = k.create_task(None, TaskSpec::new("server"), t0).unwrap();
//! let (client, _) = k.create_task(Some(server), TaskSpec::new("client"), t0).unwrap();
//! let registry = k.mint(server, Mintable::ServiceRegistry, Rights::REGISTER, t0).unwrap();
//! let chan = k.create_channel(server, t0).unwrap();
//! let svc = ServiceId::from_raw(7);
//! k.register_service(server, registry, svc, chan, t0).unwrap();
//!
//! let to_server = k.lookup_service(client, svc, t0).unwrap();
//! k.send(client, to_server, b"ping".to_vec(), &[], t0).unwrap();
//! let msg = k.receive(server, chan, t0).unwrap().unwrap();
//! assert_eq!((msg.sender, msg.bytes.as_slice()), (client, &b"ping"[..]));
//! k.check_invariants().unwrap();
//! ```
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod audit;
pub mod block;
pub mod budget;
pub mod cached_disk;
pub mod cap_table;
pub mod channel;
pub mod device_window;
mod kernel_core;
pub mod program_image;
pub mod registry;
pub mod sched;
mod slab;
pub mod sorted_map;
pub mod task;
pub mod user_range;

pub use audit::{AuditCounts, AuditLog, AuditRecord, CapabilityEvent, InvalidationReason};
pub use block::VecDisk;
pub use budget::{AccountId, BudgetUsage};
pub use cached_disk::{CachedDisk, CutOutcome};
pub use cap_table::{
    CapId, CapInfo, CapStatus, Capability, Holder, InvalidUse, Mintable, ObjectRef, ServiceObject,
};
pub use channel::{Body, ChannelRef, Delivered};
pub use kernel_core::{
    binding_cost, exit_notification_bytes, Collected, Committed, CoreConfig, Devices, ExitRoute,
    FastCall, InterruptOutcome, InvariantViolation, KernelCore, ObjectCalled, Offer, ParkedMessage,
    RecvOutcome, Sent, SpawnArgs, Spawned, Switched, TaskInfo, DEFAULT_CHILD_FRAMES,
    DEFAULT_CHILD_MEMORY, DEVICE_RIGHTS, EXIT_NOTIFICATION_SCHEMA, INTERRUPT_SCHEMA,
    KERNEL_SERVICE, ROOT_DEVICE_CAPS,
};
pub use registry::Registration;
pub use sched::{BlockedOn, SchedState};
pub use task::{slot_index, TaskSpec, WakeReason, MAX_TASKS};
