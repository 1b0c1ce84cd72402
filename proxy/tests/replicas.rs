//! Replica reads end to end (`backend_primary_only = false`): a codis-server replica of group 1's
//! master, kept in sync by codis-server replication, serves the proxy's reads of group 1's slots;
//! writes still go to the master; when the replica dies, reads fall back to the master.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Cluster;
use coord::{Group, GroupServer};
use redis::Commands;

fn get_calls(c: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(c).unwrap();
    info.lines()
        .find(|l| l.starts_with("cmdstat_get:"))
        .and_then(|l| l.split("calls=").nth(1))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn cross_core(c: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("stats").query(c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cross_core_commands:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn reads_go_to_a_live_replica_and_fall_back_to_the_master() {
    replica_reads(1);
}

/// The same with two-core servers: the proxy reads through the replica's lanes.
#[test]
fn reads_go_to_a_live_two_core_replica() {
    replica_reads(2);
}

fn replica_reads(cores: u32) {
    let c = Cluster::start_cores("backend_primary_only = false\n", cores);
    let master_port = c.servers[0].port;
    let rport = testkit::free_port();
    let child = Command::new(testkit::bin_path("codis-server"))
        .args([
            "--port",
            &rport.to_string(),
            "--cores",
            &cores.to_string(),
            "--loglevel",
            "warn",
        ])
        .args(["--replicaof", "127.0.0.1", &master_port.to_string()])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn replica");
    let mut replica_proc = testkit::Proc::new(child, rport);
    assert!(testkit::wait_ping(
        &mut replica_proc,
        Duration::from_secs(20)
    ));
    let mut replica = replica_proc.conn();
    wait_until("replica link up", || {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut replica)
            .unwrap();
        info.contains("master_link_status:up")
    });
    let group = Group {
        id: 1,
        servers: vec![
            GroupServer {
                addr: c.server_addr(1),
                ..Default::default()
            },
            GroupServer {
                addr: format!("127.0.0.1:{rport}"),
                replica_group: true,
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    c.rt.block_on(c.store.update_group(&group)).expect("group");

    let mut p = c.conn();
    let keys: Vec<String> = (0..400)
        .map(|i| format!("rk:{i}"))
        .filter(|k| Cluster::group_of(k) == 1)
        .take(100)
        .collect();
    for k in &keys {
        let _: () = p.set(k, format!("v-{k}")).unwrap();
    }
    let mut master = c.backend(1);
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(20_000)
        .query(&mut master)
        .unwrap();
    assert_eq!(acked, 1, "the replica acknowledged every write");
    // The proxy follows the group change; from then on group 1's reads land on the replica.
    // Warm up with a key of the replica's core 0 only: with two cores, the first reads of core
    // 1's slots then find its lane still connecting (they must stay on the replica).
    let warm = keys
        .iter()
        .find(|k| resp::slot(k.as_bytes()) % 2 == 0)
        .unwrap();
    wait_until("reads reach the replica", || {
        let v: String = p.get(warm).unwrap();
        assert_eq!(v, format!("v-{warm}"));
        get_calls(&mut replica) > 0
    });
    let (m0, r0) = (get_calls(&mut master), get_calls(&mut replica));
    let hops0 = cross_core(&mut replica);
    for k in &keys {
        let v: String = p.get(k).unwrap();
        assert_eq!(
            v,
            format!("v-{k}"),
            "replica answers with the replicated value"
        );
    }
    assert_eq!(
        get_calls(&mut replica) - r0,
        keys.len() as u64,
        "every read on the replica"
    );
    assert_eq!(get_calls(&mut master), m0, "no read on the master");
    // Each read went to the replica core owning its slot (lanes), or hopped while a lane
    // connected (without lanes about half of them hop).
    let hops = cross_core(&mut replica) - hops0;
    assert!(
        hops <= keys.len() as u64 / 4,
        "{hops} of {} reads hopped between the replica's cores",
        keys.len()
    );
    // Writes still go to the master (the replica is read-only and would refuse them).
    let _: () = p.set(&keys[1], "changed").unwrap();
    let v: String = master.get(&keys[1]).unwrap();
    assert_eq!(v, "changed");

    // The replica dies: after at most a few failed reads, the master serves them again.
    replica_proc.child.kill().unwrap();
    let _ = replica_proc.child.wait();
    wait_until(
        "reads fall back to the master",
        || matches!(p.get::<_, String>(&keys[2]), Ok(v) if v == format!("v-{}", keys[2])),
    );
    for k in &keys[3..] {
        let v: String = p.get(k).expect("read after fallback");
        assert_eq!(v, format!("v-{k}"));
    }
}
