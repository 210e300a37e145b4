//! The storage benchmark's body, shared by `benches/storage_bench.rs` and
//! `examples/storage_bench.rs`.
//!
//! Storage throughput on the host: Map puts and gets per second through the
//! SimulatedKernel's IPC (typed client -> request envelope with a reply
//! capability -> storage server `handle` -> answer), and the same
//! operations on the object store directly, to show what IPC costs. Each
//! figure is the median of several runs, printed as
//! `[BENCH] <name> <value> <unit>`.

use std::time::Instant;

use super::support::Harness;
use pandagen_sim::FaultPlan;
use pandagen_storage::{
    MemoryBackend, ObjectKind, ObjectStore, StorageClient, TransactionalStorage,
};

const OPS: usize = 2_000;
const RUNS: usize = 7;
const VALUE: [u8; 16] = *b"sixteen byte val";

fn key(i: usize) -> [u8; 8] {
    (i as u64).to_be_bytes()
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

fn per_second(ops: usize, started: Instant) -> f64 {
    ops as f64 / started.elapsed().as_secs_f64()
}

/// One run through simulated IPC: (puts/s, gets/s).
fn ipc_run() -> (f64, f64) {
    let mut h = Harness::new(FaultPlan::new());
    h.start_storage();
    let task = h.spawn_client("bench");
    let mut client = StorageClient::connect(&mut h.as_client(task)).unwrap();
    let (map, _) = client
        .create(&mut h.as_client(task), ObjectKind::Map)
        .unwrap();
    let started = Instant::now();
    for i in 0..OPS {
        client
            .put(&mut h.as_client(task), &map, &key(i), &VALUE)
            .unwrap();
    }
    let puts = per_second(OPS, started);
    let started = Instant::now();
    for i in 0..OPS {
        let value = client.get(&mut h.as_client(task), &map, &key(i)).unwrap();
        assert_eq!(value.as_deref(), Some(&VALUE[..]));
    }
    let gets = per_second(OPS, started);
    (puts, gets)
}

/// One run on the store itself, one transaction per operation: (puts/s, gets/s).
fn store_run() -> (f64, f64) {
    let (mut store, _) = ObjectStore::open(MemoryBackend::new([1; 16])).unwrap();
    let (map, _) = store.create(ObjectKind::Map).unwrap();
    let started = Instant::now();
    for i in 0..OPS {
        let mut tx = store.begin_transaction().unwrap();
        store.put(&mut tx, map, &key(i), &VALUE).unwrap();
        store.commit(&mut tx).unwrap();
    }
    let puts = per_second(OPS, started);
    let started = Instant::now();
    for i in 0..OPS {
        let mut tx = store.begin_transaction().unwrap();
        let value = store.get(&tx, map, &key(i), None).unwrap();
        assert!(value.value.is_some());
        store.commit(&mut tx).unwrap();
    }
    let gets = per_second(OPS, started);
    (puts, gets)
}

fn report(name: &str, samples: Vec<f64>) {
    println!("[BENCH] {name} {:.0} ops/s", median(samples));
}

pub fn run() {
    let (ipc_puts, ipc_gets): (Vec<f64>, Vec<f64>) = (0..RUNS).map(|_| ipc_run()).unzip();
    let (store_puts, store_gets): (Vec<f64>, Vec<f64>) = (0..RUNS).map(|_| store_run()).unzip();
    report("storage_sim_ipc_map_put", ipc_puts);
    report("storage_sim_ipc_map_get", ipc_gets);
    report("storage_store_map_put", store_puts);
    report("storage_store_map_get", store_gets);
}
