//! Storage throughput: Map puts and gets per second through the simulator's
//! IPC and on the store directly (see `tests/support/bench.rs`).
//!
//! Run: `cargo bench -p pandagen-storage --bench storage_bench` or
//! `cargo run --release -p pandagen-storage --example storage_bench`.

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "../tests/support/bench.rs"]
mod bench;

fn main() {
    bench::run();
}
