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
//! - `promote_waits_for_a_lagging_replica`: the replica lags behind a live master (its stream
//!   held back by a relay): the promotion rolls back after the catch-up limit, or waits.
//! - `ctl_killed_mid_promotion`: `codisctl server promote` is SIGKILLed while the group's slots
//!   are locked (`promoting = prepared`: a second, paused proxy has not acknowledged yet), under
//!   a pipelined load through the first proxy. Running the same command again completes the
//!   promotion; the clients' held requests complete, no call times out and no acknowledged write
//!   is lost (the replica is promoted only once it holds the master's whole stream).

use std::time::{Duration, Instant};

use e2e::load::{Load, LoadSpec};
use e2e::{replication_info, signal, start_extra_server, wait_for, wait_link_up, Cluster, Spec};
use redis::Commands;
use serde_json::Value;
use testkit::{free_port, Proc};

fn start_replica(c: &Cluster, port: u16) -> Proc {
    start_extra_server(c.dir.path(), port)
}

/// A cluster of two groups (slots 0–511 → 1, 512–1023 → 2) where group 1 also has a replica.
fn cluster_with_replica() -> (Cluster, Proc, String) {
    with_replica(Cluster::start(2, 1, &[(0, 511, 1), (512, 1023, 2)]))
}

/// Adds a replica to group 1 of `c` and waits until it is in sync.
fn with_replica(c: Cluster) -> (Cluster, Proc, String) {
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

/// Group `gid` as `codisctl config dump` shows it.
fn group(c: &Cluster, gid: u32) -> Value {
    let v = c.ctl_ok(&["config", "dump"]);
    let d = if v.get("group").is_some() {
        &v
    } else {
        v.get("dump").unwrap_or(&v)
    };
    d["group"]
        .as_array()
        .and_then(|a| a.iter().find(|g| g["id"].as_u64() == Some(u64::from(gid))))
        .cloned()
        .unwrap_or_else(|| panic!("no group {gid} in the config dump: {v}"))
}

fn promoting(g: &Value) -> String {
    g["promoting"]["state"].as_str().unwrap_or("").to_string()
}

#[test]
fn ctl_killed_mid_promotion() {
    let mut spec = Spec::new(2, &[(0, 511, 1), (512, 1023, 2)]);
    spec.proxies = 2;
    let (c, replica, replica_addr) = with_replica(Cluster::start_spec(spec));
    let old_master = c.server_addr(1);
    let mut lspec = LoadSpec::new("promote-kill", &c.proxy_url_of(0), 2).slots(|s| s < 512);
    lspec.pipeline = 10;
    // Requests of the locked slots wait through the kill and the restart.
    lspec.timeout = Duration::from_secs(60);
    let load = Load::start(lspec);
    assert!(load.wait_progress(300, Duration::from_secs(30)), "no load");

    // The second proxy, paused, holds the promotion at `prepared` (it cannot acknowledge).
    assert!(
        c.wait_proxies_settled(),
        "proxies never acknowledged the topology"
    );
    let paused = c.proxy(1).child.id();
    signal(paused, libc::SIGSTOP);
    let mut ctl = c.spawn_ctl("promote-1", &["server", "promote", "1", &replica_addr]);
    let prepared = wait_for(Duration::from_secs(60), || {
        (promoting(&group(&c, 1)) == "prepared").then_some(())
    });
    let locked_at = load.now();
    let t0 = Instant::now();
    let _ = ctl.child.kill();
    let _ = ctl.child.wait();
    signal(paused, libc::SIGCONT);
    assert!(
        prepared.is_some(),
        "the promotion never reached `prepared`\n{}",
        c.logs()
    );
    let locked = c
        .slots()
        .iter()
        .filter(|s| s.group_id == 1 && s.state == "prepared")
        .count();
    let left = promoting(&group(&c, 1));
    assert_eq!(left, "prepared", "state after the kill");
    assert_eq!(locked, 512, "group 1's slots stay locked after the kill");

    // The recovery: the same command again.
    let out = wait_for(Duration::from_secs(60), || {
        let o = c.ctl(&["server", "promote", "1", &replica_addr]);
        o.ok.then_some(o)
    });
    assert!(
        out.is_some(),
        "the restarted promotion kept failing: {:?}\n{}",
        c.ctl(&["server", "promote", "1", &replica_addr]),
        c.logs()
    );
    let resumed_in = t0.elapsed();
    let g = group(&c, 1);
    assert_eq!(promoting(&g), "", "promotion state cleared: {g}");
    assert_eq!(
        g["servers"][0]["server"].as_str(),
        Some(replica_addr.as_str()),
        "the replica is group 1's master: {g}"
    );
    assert!(
        c.slots().iter().all(|s| s.state.is_empty()),
        "slot actions cleared"
    );
    let mut rc = replica.conn();
    assert!(replication_info(&mut rc).contains("role:master"));
    let mut om = c.server_conn(1);
    let old_role = wait_for(Duration::from_secs(30), || {
        replication_info(&mut om)
            .contains("role:slave")
            .then_some(())
    });
    assert!(
        old_role.is_some(),
        "the old master {old_master} was re-pointed to the new one"
    );
    let done0 = load.done();
    let recovered = wait_for(Duration::from_secs(60), || {
        (load.done() > done0 + 300).then(|| load.now() - locked_at)
    });
    assert!(
        recovered.is_some(),
        "the load did not recover\n{}",
        c.logs()
    );
    let r = load.stop();
    eprintln!("{}", r.summary());
    assert!(
        r.failures() == 0 && r.hangs == 0,
        "{} failed round trips, {} hangs, e.g. {:?}\n{}",
        r.failures(),
        r.hangs,
        r.first_errors(10),
        c.logs()
    );
    let check = r.check(&c.proxy_url_of(0));
    assert!(
        check.lost.is_empty(),
        "{} keys lost an acknowledged write: {:?}",
        check.lost.len(),
        &check.lost[..check.lost.len().min(10)]
    );
    eprintln!(
        "RESULT promote-kill: codisctl killed with promoting=prepared and {locked} slots locked; `codisctl server promote` run again completed {:.1}s after the kill, load recovered {:.1}s after the lock; client errors 0, hangs 0, {} load keys checked, lost 0",
        resumed_in.as_secs_f64(),
        recovered.unwrap_or_default().as_secs_f64(),
        check.keys_checked
    );
}

/// A TCP relay on a free loopback port to `target`, whose target→client direction can be paused:
/// a replica replicating through it falls behind its master while both stay up and answer.
struct Relay {
    port: u16,
    paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    fn start(target: u16) -> Relay {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let port = free_port();
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("relay bind");
        let paused = Arc::new(AtomicBool::new(false));
        let p = paused.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let pipe =
                    |mut from: TcpStream, mut to: TcpStream, pause: Option<Arc<AtomicBool>>| {
                        std::thread::spawn(move || {
                            let mut buf = vec![0u8; 64 * 1024];
                            loop {
                                while pause.as_ref().is_some_and(|p| p.load(Ordering::Relaxed)) {
                                    std::thread::sleep(Duration::from_millis(5));
                                }
                                match from.read(&mut buf) {
                                    Ok(0) | Err(_) => break,
                                    Ok(n) => {
                                        if to.write_all(&buf[..n]).is_err() {
                                            break;
                                        }
                                    }
                                }
                            }
                            let _ = to.shutdown(std::net::Shutdown::Both);
                        });
                    };
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                pipe(client, server, None);
                pipe(s2, c2, Some(p.clone()));
            }
        });
        Relay { port, paused }
    }

    fn pause(&self, on: bool) {
        self.paused.store(on, std::sync::atomic::Ordering::Relaxed);
    }
}

fn info_field(info: &str, field: &str) -> Option<u64> {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
}

/// The replica of group 1 lags (its replication stream is held back while it keeps answering):
/// `codisctl server promote` with the old master alive must not promote it as is. Held back for
/// longer than the catch-up limit, the promotion is rolled back and the master keeps serving
/// every acknowledged write; held back for a moment, the promotion waits for the replica and
/// no acknowledged write is lost.
#[test]
fn promote_waits_for_a_lagging_replica() {
    let (c, replica, replica_addr) = cluster_with_replica();
    let master_port = c.masters[0].port;
    let relay = Relay::start(master_port);
    let mut rc = replica.conn();
    // The replica now replicates through the relay (same replication id: a partial resync).
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(relay.port)
        .query(&mut rc)
        .unwrap();
    wait_link_up(&mut rc);
    let mut p = c.proxy_conn();
    let keys = |tag: &str| -> Vec<String> {
        (0..2000)
            .map(|i| format!("{tag}:{i}"))
            .filter(|k| resp::slot(k.as_bytes()) < 512)
            .collect()
    };

    // 1. Held back for good: rolled back after the catch-up limit, the master keeps serving.
    relay.pause(true);
    let lagged = keys("lagged");
    for k in &lagged {
        let _: () = p.set(k, format!("v-{k}")).unwrap();
    }
    let mut master = c.server_conn(1);
    let want = info_field(&replication_info(&mut master), "master_repl_offset").unwrap();
    let behind = info_field(&replication_info(&mut rc), "slave_repl_offset").unwrap_or(0);
    assert!(
        behind < want,
        "the replica is not behind ({behind} of {want})"
    );
    let t0 = Instant::now();
    let out = c.ctl(&["server", "promote", "1", &replica_addr]);
    let rolled_back_in = t0.elapsed();
    assert!(!out.ok, "promoted a lagging replica: {:?}", out.json);
    let why = format!("{} {}", out.stderr, out.json);
    assert!(
        why.contains("did not catch up") && why.contains("rolled back"),
        "{why}"
    );
    let g = group(&c, 1);
    assert_eq!(promoting(&g), "", "promotion state cleared: {g}");
    assert_eq!(
        g["servers"][0]["server"].as_str(),
        Some(c.server_addr(1).as_str()),
        "the old master stays master: {g}"
    );
    assert!(
        c.slots().iter().all(|s| s.state.is_empty()),
        "slots unlocked"
    );
    assert!(replication_info(&mut rc).contains("role:slave"));
    for k in &lagged {
        let v: Option<String> = p.get(k).unwrap();
        assert_eq!(v.as_deref(), Some(format!("v-{k}").as_str()));
    }
    let _: () = p.set("after-rollback", "1").unwrap();

    // 2. Held back for a moment: the promotion waits until the replica has everything.
    let waited = keys("waited");
    for k in &waited {
        let _: () = p.set(k, format!("v-{k}")).unwrap();
    }
    let mut ctl = c.spawn_ctl("promote-lag", &["server", "promote", "1", &replica_addr]);
    let prepared = wait_for(Duration::from_secs(60), || {
        (promoting(&group(&c, 1)) == "prepared").then_some(())
    });
    assert!(prepared.is_some(), "the promotion never locked the slots");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        ctl.child.try_wait().unwrap().is_none(),
        "the promotion did not wait for the lagging replica"
    );
    relay.pause(false);
    let t1 = Instant::now();
    let status = wait_for(Duration::from_secs(60), || ctl.child.try_wait().unwrap());
    assert!(
        status.is_some_and(|s| s.success()),
        "the promotion failed after the replica caught up: {status:?}\n{}",
        c.logs()
    );
    let finished_in = t1.elapsed();
    let g = group(&c, 1);
    assert_eq!(
        g["servers"][0]["server"].as_str(),
        Some(replica_addr.as_str()),
        "the replica is group 1's master: {g}"
    );
    assert!(replication_info(&mut rc).contains("role:master"));
    let mut p = c.proxy_conn();
    for k in lagged.iter().chain(&waited) {
        let v: Option<String> = p.get(k).unwrap();
        assert_eq!(
            v.as_deref(),
            Some(format!("v-{k}").as_str()),
            "acknowledged write lost by the promotion"
        );
    }
    eprintln!(
        "RESULT promote-lag: lagging replica (stream held back): promotion rolled back after {:.1}s, master kept serving; held back 1.5s: promotion waited and finished {:.1}s after the stream resumed; {} acknowledged keys checked on the new master, lost 0",
        rolled_back_in.as_secs_f64(),
        finished_in.as_secs_f64(),
        lagged.len() + waited.len()
    );
}
