//! The proxy on a real ZooKeeper (Debian package `zookeeper`): routing, registration, and
//! serving on after ZooKeeper stops.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, PRODUCT};
use coord::testutil::ZkEnsemble;
use coord::{CoordConfig, Kind};
use redis::Commands;

#[test]
fn zookeeper_coordinator() {
    let mut zk = match ZkEnsemble::start() {
        Ok(z) => z,
        Err(e) => panic!("ZooKeeper: {e}"),
    };
    let addr = zk.connect_string();
    let dir = tempfile::tempdir().unwrap();
    let cc = CoordConfig::new(Kind::ZooKeeper, &addr, PRODUCT);
    let ini = format!("coordinator=zookeeper\nzk={addr}\nproduct={PRODUCT}\n");
    let coord_dir = dir.path().join("unused");
    let c = Cluster::start_with(dir, coord_dir, cc, ini, "");
    let mut p = c.conn();
    for i in 0..100 {
        let _: () = p.set(format!("z{i}"), i).unwrap();
    }
    let n1: i64 = redis::cmd("DBSIZE").query(&mut c.backend(1)).unwrap();
    let n2: i64 = redis::cmd("DBSIZE").query(&mut c.backend(2)).unwrap();
    assert_eq!(n1 + n2, 100);
    assert!(n1 > 0 && n2 > 0);
    let start = Instant::now();
    loop {
        let alive = c.rt.block_on(c.store.alive()).unwrap_or_default();
        if !alive.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no liveness node in ZooKeeper"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for n in &mut zk.nodes {
        n.kill();
    }
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..100 {
        assert_eq!(p.get::<_, i64>(format!("z{i}")).unwrap(), i);
    }
}
