//! The seed's walkthrough with codis-rs binaries only, on the filesystem coordinator and on
//! ZooKeeper: two groups of codis-servers (`codisctl server add … master`, and `… slave` for group
//! 1, which really replicates: `role:slave`, `master_link_status:up`), `slot range-set 0 1023 1
//! online`, the proxy, `redis-benchmark` through it, `slot migrate 0 511 2 --delay=10`, then
//! `server promote` of the slave: it becomes master with every acknowledged write, the proxy
//! writes to it, and the old master follows it as a replica. Topology and data are checked after
//! each step.

use std::process::Command;
use std::time::Duration;

use e2e::{
    replication_info, start_extra_server, wait_for, wait_link_up, Cluster, Coordinator, Spec,
};
use redis::Commands;
use testkit::free_port;

fn walk(coordinator: Coordinator) {
    walk_with(coordinator, "")
}

fn walk_with(coordinator: Coordinator, ini_extra: &str) {
    let mut spec = Spec::new(2, &[(0, 1023, 1)]);
    spec.coordinator = coordinator;
    spec.ini_extra = ini_extra.to_string();
    let mut c = Cluster::start_spec(spec);
    let slots = c.slots();
    assert!(slots.iter().all(|s| s.group_id == 1 && s.state.is_empty()));

    // server add 1 <addr> slave
    let port = free_port();
    let slave_proc = start_extra_server(c.dir.path(), port);
    let slave_addr = format!("127.0.0.1:{port}");
    c.ctl_ok(&["server", "add", "1", &slave_addr, "slave"]);
    let mut slave = slave_proc.conn();
    wait_link_up(&mut slave);
    let list = c.ctl_ok(&["server", "list"]).to_string();
    assert!(list.contains(&slave_addr), "server list: {list}");

    // Traffic through the proxy: our writes, then redis-benchmark.
    let mut p = c.proxy_conn();
    let keys: Vec<String> = (0..2000).map(|i| format!("walk:{i}")).collect();
    for k in &keys {
        let _: () = p.set(k, format!("v-{k}")).unwrap();
    }
    if let Ok(out) = Command::new("redis-benchmark")
        .args([
            "-p",
            &c.proxy(0).port.to_string(),
            "-t",
            "set,get",
            "-n",
            "2000",
        ])
        .args(["-c", "10", "-q", "--csv"])
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "redis-benchmark: {text}");
        assert!(
            text.contains("\"SET\"") && text.contains("\"GET\""),
            "{text}"
        );
    }

    // slot migrate 0 511 2 --delay=10 (the dashboard runs it; the CLI follows until done).
    c.start_dashboard();
    let out = c.ctl(&["slot", "migrate", "0", "511", "2", "--delay=10"]);
    assert!(out.ok, "slot migrate: {}\n{}", out.stderr, c.logs());
    let moved = wait_for(Duration::from_secs(180), || {
        let s = c.slots();
        s.iter()
            .all(|s| s.state.is_empty() && s.group_id == if s.id < 512 { 2 } else { 1 })
            .then_some(())
    });
    assert!(moved.is_some(), "migration did not finish\n{}", c.logs());
    let mut g2 = c.server_conn(2);
    for k in &keys {
        let v: String = p.get(k).unwrap();
        assert_eq!(v, format!("v-{k}"), "value lost in the migration");
        if resp::slot(k.as_bytes()) < 512 {
            let here: Option<String> = g2.get(k).unwrap();
            assert!(here.is_some(), "{k} of a migrated slot is not on group 2");
        }
    }

    // server promote 1 <slave>
    let mut old_master = c.server_conn(1);
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(20_000)
        .query(&mut old_master)
        .unwrap();
    assert_eq!(acked, 1, "the slave acknowledged the writes");
    c.ctl_ok(&["server", "promote", "1", &slave_addr]);
    let info = replication_info(&mut slave);
    assert!(info.contains("role:master"), "{info}");
    for k in &keys {
        let v: String = p.get(k).unwrap();
        assert_eq!(
            v,
            format!("v-{k}"),
            "acknowledged write lost in the promotion"
        );
    }
    let k1 = keys
        .iter()
        .find(|k| resp::slot(k.as_bytes()) >= 512)
        .expect("a key of group 1");
    let _: () = p.set(k1, "after-promotion").unwrap();
    let v: String = slave.get(k1).unwrap();
    assert_eq!(
        v, "after-promotion",
        "group 1's writes land on the promoted server"
    );
    let follows = wait_for(Duration::from_secs(30), || {
        let info = replication_info(&mut old_master);
        (info.contains("role:slave") && info.contains(&format!("master_port:{port}"))).then_some(())
    });
    assert!(
        follows.is_some(),
        "old master: {}",
        replication_info(&mut old_master)
    );
    let caught_up = wait_for(Duration::from_secs(30), || {
        let v: Option<String> = old_master.get(k1).ok();
        (v.as_deref() == Some("after-promotion")).then_some(())
    });
    assert!(caught_up.is_some(), "old master did not catch up");
}

#[test]
fn seed_walkthrough_on_the_filesystem_coordinator() {
    walk(Coordinator::Filesystem);
}

#[test]
fn seed_walkthrough_on_zookeeper() {
    let zk = coord::testutil::ZkEnsemble::start()
        .unwrap_or_else(|e| panic!("ZooKeeper (Debian package zookeeper): {e}"));
    walk_with(
        Coordinator::ZooKeeper(zk.connect_string()),
        "session_timeout_ms=30000\n",
    );
}
