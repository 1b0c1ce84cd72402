//! The seed's walkthrough with codis-rs binaries only: groups of codis-servers configured with
//! `codisctl server add … master|slave` (the slave really replicates: `role:slave`,
//! `master_link_status:up`), traffic through codis-proxy, then `codisctl server promote` of the
//! slave: it becomes master with every acknowledged write, the proxy writes to it, and the old
//! master follows it as a replica.

use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::{wait_for, Cluster};
use redis::Commands;
use testkit::{bin_path, free_port, wait_port, Proc};

fn replication(c: &mut redis::Connection) -> String {
    redis::cmd("INFO")
        .arg("replication")
        .query(c)
        .unwrap_or_default()
}

#[test]
fn add_a_slave_then_promote_it() {
    let c = Cluster::start(2, 1, &[(0, 511, 1), (512, 1023, 2)]);
    let port = free_port();
    let child = Command::new(bin_path("codis-server"))
        .args([
            "--port",
            &port.to_string(),
            "--cores",
            "1",
            "--loglevel",
            "warn",
        ])
        .arg("--dir")
        .arg(c.dir.path())
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn codis-server");
    let slave_proc = Proc { child, port };
    assert!(wait_port(port, Duration::from_secs(20)));
    let slave_addr = format!("127.0.0.1:{port}");
    c.ctl_ok(&["server", "add", "1", &slave_addr, "slave"]);
    let mut slave = slave_proc.conn();
    let up = wait_for(Duration::from_secs(30), || {
        let info = replication(&mut slave);
        (info.contains("role:slave") && info.contains("master_link_status:up")).then_some(())
    });
    assert!(
        up.is_some(),
        "slave never synced: {}",
        replication(&mut slave)
    );

    let mut p = c.proxy_conn();
    let keys: Vec<String> = (0..2000).map(|i| format!("walk:{i}")).collect();
    for k in &keys {
        let _: () = p.set(k, format!("v-{k}")).unwrap();
    }
    let mut old_master = c.server_conn(1);
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(20_000)
        .query(&mut old_master)
        .unwrap();
    assert_eq!(acked, 1, "the slave acknowledged the writes");

    c.ctl_ok(&["server", "promote", "1", &slave_addr]);
    let info = replication(&mut slave);
    assert!(info.contains("role:master"), "{info}");
    for k in &keys {
        let v: String = p.get(k).unwrap();
        assert_eq!(
            v,
            format!("v-{k}"),
            "acknowledged write lost in the promotion"
        );
    }
    // Group 1's keys now land on the promoted server.
    let k1 = keys
        .iter()
        .find(|k| resp::slot(k.as_bytes()) < 512)
        .expect("a key of group 1");
    let _: () = p.set(k1, "after-promotion").unwrap();
    let v: String = slave.get(k1).unwrap();
    assert_eq!(v, "after-promotion");
    // The old master follows the new one.
    let follows = wait_for(Duration::from_secs(30), || {
        let info = replication(&mut old_master);
        (info.contains("role:slave") && info.contains(&format!("master_port:{port}"))).then_some(())
    });
    assert!(
        follows.is_some(),
        "old master: {}",
        replication(&mut old_master)
    );
    let caught_up = wait_for(Duration::from_secs(30), || {
        let v: Option<String> = old_master.get(k1).ok();
        (v.as_deref() == Some("after-promotion")).then_some(())
    });
    assert!(caught_up.is_some(), "old master did not catch up");
}
