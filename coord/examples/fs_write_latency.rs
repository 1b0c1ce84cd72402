//! Latency of filesystem-coordinator writes of the size a migration wave makes.
//!
//! `cargo run --release -p coord --example fs_write_latency -- [DIR] [NODES] [ROUNDS]`
//! writes NODES slot nodes (1 KB each, as `update_many_bump` with the topology version) ROUNDS
//! times under DIR (default: a temporary directory; give one on the disk the coordinator uses)
//! and prints the median and p90 of one write, and the fsyncs it cost.

use std::time::Instant;

use coord::coordinator::Coordinator;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next();
    let nodes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let tmp = tempfile::tempdir_in(dir.as_deref().unwrap_or("/tmp")).expect("temporary directory");
    let c = coord::fs::FsCoordinator::open(tmp.path()).expect("open");
    let value = vec![b'x'; 1000];
    let items: Vec<(String, Vec<u8>)> = (0..nodes)
        .map(|i| (format!("/codis3/bench/slots/slot-{i:04}"), value.clone()))
        .collect();
    c.update_many(&items).await.expect("first write");
    let before = c.syncs();
    let mut us = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        c.update_many_bump(&items, "/codis3/bench/topom-version")
            .await
            .expect("write");
        us.push(t.elapsed().as_micros() as u64);
    }
    let after = c.syncs();
    us.sort_unstable();
    println!(
        "{nodes} nodes x {rounds} writes: median {} us, p90 {} us, max {} us; per write {:.1} journal syncs, {:.1} file and {:.1} directory fsyncs",
        us[us.len() / 2],
        us[us.len() * 9 / 10],
        us[us.len() - 1],
        (after.journal - before.journal) as f64 / rounds as f64,
        (after.files - before.files) as f64 / rounds as f64,
        (after.dirs - before.dirs) as f64 / rounds as f64,
    );
}
