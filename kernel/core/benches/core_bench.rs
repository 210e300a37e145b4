//! Microbenchmarks of the kernel core's hot paths, on the host.
//!
//! `cargo bench -p pandagen-core --bench core_bench`
//!
//! Each benchmark runs `ROUNDS` timed batches of `BATCH` operations and
//! reports the median batch, in nanoseconds per operation, as
//! `[BENCH] <name> <value> ns/op` lines that `cargo xtask bench` collects.

use std::hint::black_box;
use std::time::Instant as Wall;

use pandagen_abi::{CapKind, Instant, Priority, Rights};
use pandagen_core::{KernelCore, Mintable, TaskSpec};

const ROUNDS: usize = 31;
const BATCH: u32 = 20_000;

/// Time `batch` (which performs `BATCH * per_iter` operations) and report
/// it as `name`, unless filtered out.
fn bench(name: &str, per_iter: f64, batch: impl FnMut()) {
    if wanted(name) {
        report(name, median_ns_per_op(batch) / per_iter);
    }
}

fn median_ns_per_op(mut batch: impl FnMut()) -> f64 {
    // Warm up caches, the allocator and the queue's buffer.
    batch();
    let mut samples: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = Wall::now();
            batch();
            start.elapsed().as_nanos() as f64 / BATCH as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[ROUNDS / 2]
}

fn report(name: &str, value: f64) {
    println!("[BENCH] {name} {value:.1} ns/op");
}

/// `CORE_BENCH_FILTER=<substring>` runs only the matching benchmarks (for
/// instruction counting under callgrind).
fn wanted(name: &str) -> bool {
    std::env::var("CORE_BENCH_FILTER").map_or(true, |f| name.contains(&f))
}

fn main() {
    let now = Instant::ZERO;
    let mut k = KernelCore::default();
    let (a, _) = k.create_task(None, TaskSpec::new("a"), now).unwrap();
    let (b, _) = k.create_task(None, TaskSpec::new("b"), now).unwrap();
    // Give the spaces some population so lookups are not trivially hot.
    for i in 0..64 {
        k.mint(
            a,
            Mintable::StorageObject(pandagen_core::ServiceObject::new(
                pandagen_abi::ServiceId::from_raw(0),
                i,
            )),
            Rights::READ,
            now,
        )
        .unwrap();
    }
    let chan = k.create_channel(b, now).unwrap();
    k.mint(b, Mintable::Task(a), Rights::SEND, now).unwrap();
    let to_b = k.grant(b, chan, a, now).unwrap();

    bench("core_cap_lookup", 1.0, || {
        for _ in 0..BATCH {
            black_box(
                k.lookup(a, black_box(to_b), CapKind::Channel, Rights::SEND, now)
                    .unwrap(),
            );
        }
    });

    let payload = [0x5au8; 64];
    bench("core_send_recv_64b", 1.0, || {
        for _ in 0..BATCH {
            k.send(a, to_b, payload.to_vec(), &[], now).unwrap();
            let m = k.receive(b, chan, now).unwrap().unwrap();
            black_box(m.bytes);
        }
    });

    // The same round trip passing one buffer back and forth: the path
    // itself, without the allocator.
    let mut buf = payload.to_vec();
    bench("core_send_recv_64b_no_alloc", 1.0, || {
        for _ in 0..BATCH {
            k.send(a, to_b, std::mem::take(&mut buf), &[], now).unwrap();
            buf = k.receive(b, chan, now).unwrap().unwrap().bytes;
        }
    });

    // A message carrying one capability, moved and installed each time.
    let mut carried = k
        .mint(a, Mintable::KernelInfo, Rights::TRANSFER, now)
        .unwrap();
    let back = k.create_channel(a, now).unwrap();
    k.mint(a, Mintable::Task(b), Rights::SEND, now).unwrap();
    let to_a = k.grant(a, back, b, now).unwrap();
    bench("core_send_recv_64b_with_cap", 2.0, || {
        for _ in 0..BATCH {
            k.send(a, to_b, payload.to_vec(), &[carried], now).unwrap();
            let m = k.receive(b, chan, now).unwrap().unwrap();
            k.send(b, to_a, Vec::new(), &m.caps, now).unwrap();
            carried = k.receive(a, back, now).unwrap().unwrap().caps[0];
        }
    });

    // pick-next over 64 ready tasks in 4 priority levels; each op is one
    // pick plus the yield that puts the task back (a context-switch's
    // worth of policy).
    let mut s = KernelCore::default();
    for i in 0..64u8 {
        s.create_task(None, TaskSpec::new("t").priority(Priority(i % 4 * 8)), now)
            .unwrap();
    }
    bench("core_sched_pick_next", 1.0, || {
        for _ in 0..BATCH {
            let t = s.pick_next().unwrap();
            s.yield_task(black_box(t));
        }
    });

    // Block-with-deadline and expiry: receive timeout bookkeeping.
    let (w, _) = s.create_task(None, TaskSpec::new("w"), now).unwrap();
    let wc = s.create_channel(w, now).unwrap();
    let mut t = 0u64;
    bench("core_block_and_expire", 1.0, || {
        for _ in 0..BATCH {
            t += 1;
            s.receive_or_block(
                w,
                wc,
                Some(Instant::from_nanos(t + 10)),
                Instant::from_nanos(t),
            )
            .unwrap();
            s.expire_deadlines(Instant::from_nanos(t + 10));
        }
    });

    k.check_invariants().unwrap();
    s.check_invariants().unwrap();
}
