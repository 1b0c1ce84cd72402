//! Fault scenarios that need replication (issue 11), with the same checker as `faults.rs`:
//!
//! - `master_kill`: group 1 has a codis-server replica (added with `codisctl server add … slave`);
//!   under a pipelined load through the proxy, a first batch of writes is confirmed with `WAIT 1`,
//!   then the master is killed with SIGKILL. Clients must get prompt errors (no call times out),
//!   `codisctl server promote` makes the replica master, the load recovers through the proxy, every
//!   WAIT-confirmed write is present, and once the load has rewritten its keys on the new master
//!   none of its acknowledged writes is lost.
//! - `replica_kill`: the replica is killed under load and started again on the same port: it
//!   resynchronises (link up, `WAIT 1` answers 1) and holds exactly the master's data.

use std::time::{Duration, Instant};

use e2e::load::{Load, LoadSpec};
use e2e::{replication_info, start_extra_server, wait_for, wait_link_up, Cluster};
use redis::Commands;
use testkit::{free_port, Proc};

fn start_replica(c: &Cluster, port: u16) -> Proc {
    start_extra_server(c.dir.path(), port)
}

/// A cluster of two groups (slots 0–511 → 1, 512–1023 → 2) where group 1 also has a replica.
fn cluster_with_replica() -> (Cluster, Proc, String) {
    let c = Cluster::start(2, 1, &[(0, 511, 1), (512, 1023, 2)]);
    let port = free_port();
    let replica = start_replica(&c, port);
    let addr = format!("127.0.0.1:{port}");
    c.ctl_ok(&["server", "add", "1", &addr, "slave"]);
    wait_link_up(&mut replica.conn());
    (c, replica, addr)
}

#[test]
fn master_kill() {
    let (mut c, replica, replica_addr) = cluster_with_replica();
    let mut p = c.proxy_conn();
    // Writes confirmed by WAIT before the failure: these must survive it.
    let confirmed: Vec<String> = (0..3000)
        .map(|i| format!("confirmed:{i}"))
        .filter(|k| resp::slot(k.as_bytes()) < 512)
        .collect();
    for k in &confirmed {
        let _: () = p.set(k, format!("v-{k}")).unwrap();
    }
    let mut master = c.server_conn(1);
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(20_000)
        .query(&mut master)
        .unwrap();
    assert_eq!(acked, 1);

    let mut spec = LoadSpec::new("failover", &c.proxy_url(), 2).slots(|s| s < 512);
    spec.pipeline = 10;
    spec.timeout = Duration::from_secs(20);
    let load = Load::start(spec);
    assert!(load.wait_progress(300, Duration::from_secs(30)), "no load");

    let killed_at = load.now();
    let t0 = Instant::now();
    c.masters[0].child.kill().expect("kill -9 the master");
    let _ = c.masters[0].child.wait();
    // Clients see errors while the group has no master (and must not hang).
    let failed0 = load.failed();
    let saw_errors = wait_for(Duration::from_secs(20), || {
        (load.failed() > failed0).then_some(())
    });
    c.ctl_ok(&["server", "promote", "1", &replica_addr]);
    let promoted_in = t0.elapsed();
    let done0 = load.done();
    let recovered = wait_for(Duration::from_secs(60), || {
        (load.done() > done0 + 200).then(|| load.now() - killed_at)
    });
    assert!(
        recovered.is_some(),
        "the load did not recover\n{}",
        c.logs()
    );
    // Let every thread rewrite all of its keys on the new master, then check them all.
    assert!(load.wait_progress(2000, Duration::from_secs(60)));
    let r = load.stop();
    eprintln!("{}", r.summary());
    assert_eq!(r.hangs, 0, "clients hung: {:?}", r.first_errors(5));
    let check = r.check(&c.proxy_url());
    assert!(
        check.lost.is_empty(),
        "{} keys lost an acknowledged write: {:?}",
        check.lost.len(),
        &check.lost[..check.lost.len().min(10)]
    );
    let mut p = c.proxy_conn();
    for k in &confirmed {
        let v: Option<String> = p.get(k).unwrap();
        assert_eq!(
            v.as_deref(),
            Some(format!("v-{k}").as_str()),
            "WAIT-confirmed write lost"
        );
    }
    let mut r_conn = replica.conn();
    assert!(replication_info(&mut r_conn).contains("role:master"));
    eprintln!(
        "RESULT master-kill: {} errors seen by clients ({}), promoted {:.1}s after the kill, load recovered {:.1}s after the kill, {} WAIT-confirmed keys present, {} load keys checked, lost 0, hangs 0",
        r.failures(),
        if saw_errors.is_some() { "prompt" } else { "none observed" },
        promoted_in.as_secs_f64(),
        recovered.unwrap_or_default().as_secs_f64(),
        confirmed.len(),
        check.keys_checked
    );
}

#[test]
fn replica_kill() {
    let (c, mut replica, _addr) = cluster_with_replica();
    let mut spec = LoadSpec::new("resync", &c.proxy_url(), 2).slots(|s| s < 512);
    spec.pipeline = 10;
    let load = Load::start(spec);
    assert!(load.wait_progress(300, Duration::from_secs(30)), "no load");
    let port = replica.port;
    replica.child.kill().expect("kill -9 the replica");
    let _ = replica.child.wait();
    assert!(
        load.wait_progress(300, Duration::from_secs(30)),
        "load stalled"
    );
    let t0 = Instant::now();
    let replica = start_replica(&c, port);
    let mut rc = replica.conn();
    // The restarted server has no replication settings of its own (SLAVEOF came from codisctl),
    // so it is re-pointed as an operator would; it then resynchronises from scratch.
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(c.masters[0].port)
        .query(&mut rc)
        .unwrap();
    wait_link_up(&mut rc);
    let resynced_in = t0.elapsed();
    assert!(
        load.wait_progress(300, Duration::from_secs(30)),
        "load stalled"
    );
    let r = load.stop();
    eprintln!("{}", r.summary());
    assert!(r.failures() == 0 && r.hangs == 0, "{:?}", r.first_errors(5));
    let mut master = c.server_conn(1);
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(20_000)
        .query(&mut master)
        .unwrap();
    assert_eq!(
        acked, 1,
        "the resynchronised replica acknowledges the stream"
    );
    let mut want = e2e::scan_all(&mut master).unwrap();
    want.sort();
    let same = wait_for(Duration::from_secs(20), || {
        let mut got = e2e::scan_all(&mut rc).ok()?;
        got.sort();
        (got == want).then_some(())
    });
    assert!(same.is_some(), "replica keys differ from the master's");
    for k in want.iter().take(200) {
        let a: Option<Vec<u8>> = master.get(k).unwrap();
        let b: Option<Vec<u8>> = rc.get(k).unwrap();
        assert_eq!(a, b);
    }
    let check = r.check(&c.proxy_url());
    assert!(
        check.lost.is_empty(),
        "{:?}",
        &check.lost[..check.lost.len().min(5)]
    );
    eprintln!(
        "RESULT replica-kill: load errors 0, hangs 0, replica resynchronised {:.1}s after restart, {} keys identical on master and replica, {} load keys checked, lost 0",
        resynced_in.as_secs_f64(),
        want.len(),
        check.keys_checked
    );
}
