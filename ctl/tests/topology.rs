//! End to end with real processes: codisctl against the filesystem coordinator and ZooKeeper,
//! groups with codis-server masters and redis-server replicas, the topology asserted after each
//! step, and bad input answered with a clear error and no change.

mod common;

use std::time::Duration;

use common::*;
use coord::SlotState;

async fn build_cluster(p: &Product) -> Vec<testkit::Proc> {
    let m1 = master_server();
    let m2 = master_server();
    p.ok(&["slot", "init"]);
    let t = p.topology().await;
    assert!(t.slots().iter().all(|m| m.group_id == 0));
    assert!(t.groups().is_empty());
    // init again refuses only once slots are assigned; -f always works
    p.ok(&["slot", "init"]);

    p.ok(&["group", "create", "1"]);
    p.ok(&["group", "create", "2"]);
    let t = p.topology().await;
    assert_eq!(t.groups().keys().copied().collect::<Vec<_>>(), vec![1, 2]);

    p.ok(&["server", "add", "1", &addr(&m1), "master"]);
    p.ok(&["server", "add", "2", &addr(&m2), "master"]);
    let t = p.topology().await;
    assert_eq!(t.master_of(1), Some(addr(&m1).as_str()));
    assert_eq!(t.master_of(2), Some(addr(&m2).as_str()));

    p.ok(&["slot", "range-set", "0", "511", "1", "online"]);
    p.ok(&["slot", "range-set", "512", "1023", "2", "online"]);
    let t = p.topology().await;
    assert_eq!(t.slots_of_group(1), (0..512).collect::<Vec<_>>());
    assert_eq!(t.slots_of_group(2), (512..1024).collect::<Vec<_>>());
    let info = p.ok(&["slot", "info", "600"]);
    assert_eq!(info["group_id"], 2);
    assert_eq!(info["master"], addr(&m2));
    p.fails(&["slot", "init"], "already initialized");
    vec![m1, m2]
}

async fn bad_input_changes_nothing(p: &Product) {
    let before = p.topology().await;
    let dead = format!("127.0.0.1:{}", testkit::free_port());
    // An HTTP-ish listener that is not Redis.
    let not_redis = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nr_addr = not_redis.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in not_redis.incoming().flatten() {
            use std::io::Write;
            let mut s = s;
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        }
    });
    p.fails(
        &["server", "add", "9", &dead, "master"],
        "group 9 does not exist",
    );
    p.fails(&["group", "create", "0"], "out of range");
    p.fails(&["group", "create", "10000"], "out of range");
    p.fails(&["slot", "info", "1024"], "out of range");
    p.fails(
        &["slot", "range-set", "0", "1024", "1", "online"],
        "out of range",
    );
    p.fails(
        &["slot", "range-set", "5", "3", "1", "online"],
        "bad slot range",
    );
    p.fails(
        &["slot", "range-set", "0", "3", "7", "online"],
        "group 7 does not exist",
    );
    p.fails(
        &["slot", "set", "3", "1", "sideways"],
        "want online or offline",
    );
    p.fails(
        &["slot", "migrate", "0", "3", "7"],
        "group 7 does not exist",
    );
    p.ok(&["group", "create", "3"]);
    let before3 = p.topology().await;
    p.fails(&["slot", "migrate", "0", "3", "3"], "group 3 has no master");
    p.fails(&["server", "add", "3", &dead, "master"], "not reachable");
    p.fails(
        &["server", "add", "3", &nr_addr, "master"],
        "not a Redis server",
    );
    p.fails(&["server", "add", "3", "nonsense", "master"], "bad address");
    p.fails(&["server", "add", "3", &dead, "slave"], "no master");
    p.fails(&["group", "create", "3"], "already exists");
    let t1 = before3.groups()[&1].servers[0].addr.clone();
    p.fails(&["server", "add", "3", &t1, "master"], "already in group 1");
    p.fails(&["server", "remove", "1", &t1], "serves 512 slot(s)");
    p.fails(&["group", "remove", "1"], "still has 1 server");
    p.fails(
        &["slot", "migrate", "0", "3", "1"],
        "already belongs to group 1",
    );
    assert_eq!(p.topology().await.data().groups, before3.data().groups);
    assert_eq!(p.topology().await.slots(), before3.slots());
    p.ok(&["group", "remove", "3"]);
    assert_eq!(p.topology().await.data().groups, before.data().groups);
}

async fn replicas_and_dump(p: &Product) {
    let (a, _da) = redis();
    let (b, _db) = redis();
    p.ok(&["group", "create", "5"]);
    p.ok(&["server", "add", "5", &addr(&a), "master"]);
    p.fails(
        &["server", "add", "5", &addr(&b), "master"],
        "already has master",
    );
    p.ok(&["server", "add", "5", &addr(&b), "slave"]);
    assert_eq!(info_field(&b, "role"), "slave");
    assert_eq!(info_field(&b, "master_port"), a.port.to_string());
    let t = p.topology().await;
    let g = &t.groups()[&5];
    assert_eq!(
        g.servers.iter().map(|s| s.addr.clone()).collect::<Vec<_>>(),
        vec![addr(&a), addr(&b)]
    );
    let list = p.ok(&["server", "list"]);
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["addr"] == addr(&b))
        .unwrap()
        .clone();
    assert_eq!(
        (row["role"].as_str(), row["in_sync"].as_bool()),
        (Some("slave"), Some(true))
    );
    // dump, then restore into another product: same groups and slots
    let dump = p.ok(&["config", "dump"]);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), dump.to_string()).unwrap();
    let q = Product {
        product: format!("{}-copy", p.product),
        ..p.clone()
    };
    q.ok(&["config", "restore", file.path().to_str().unwrap()]);
    q.fails(
        &["config", "restore", file.path().to_str().unwrap()],
        "use -f",
    );
    assert_eq!(q.topology().await.slots(), p.topology().await.slots());
    assert_eq!(
        q.topology().await.data().groups,
        p.topology().await.data().groups
    );
    p.ok(&["server", "remove", "5", &addr(&b)]);
    p.ok(&["server", "remove", "5", &addr(&a)]);
    p.ok(&["group", "remove", "5"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_coordinator_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let p = Product::fs(dir.path(), "fs-e2e");
    let _servers = build_cluster(&p).await;
    bad_input_changes_nothing(&p).await;
    replicas_and_dump(&p).await;
    // slot set forces one slot; rebalance of a balanced product plans nothing
    p.ok(&["slot", "set", "7", "2", "online"]);
    assert_eq!(p.topology().await.slot(7).group_id, 2);
    p.ok(&["slot", "set", "7", "1", "online"]);
    let plan = p.ok(&["slot", "rebalance"]);
    assert_eq!(plan["ranges"], serde_json::json!([]));
    p.ok(&["slot", "range-set", "0", "99", "0", "offline"]);
    let plan = p.ok(&["slot", "rebalance"]);
    assert_eq!(plan["ranges"], serde_json::json!(["[0000,0099] => 1"]));
    assert!(p
        .topology()
        .await
        .slots()
        .iter()
        .all(|m| m.action.state == SlotState::Nothing));
    // With no dashboard, `slot migrate` runs the executor itself under the lock (offline slots
    // have no data to drain) and returns when every slot arrived.
    p.ok(&["slot", "migrate", "0", "9", "2", "--delay", "1"]);
    let t = p.topology().await;
    assert!((0..10).all(|s| t.slot(s).group_id == 2 && t.slot(s).action.state.is_nothing()));
    assert_eq!(t.slot(10).group_id, 0);
    assert!(
        p.store().await.load_topom().await.unwrap().is_none(),
        "lock released"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_coordinator_end_to_end() {
    let zk = match coord::testutil::ZkEnsemble::start() {
        Ok(z) => z,
        Err(e) => {
            eprintln!("SKIPPED: cannot start ZooKeeper: {e}");
            return;
        }
    };
    let p = Product::zk(&zk.connect_string(), "zk-e2e");
    let _servers = build_cluster(&p).await;
    bad_input_changes_nothing(&p).await;
    // the lock is ephemeral: nothing left behind by the CLI
    let s = p.store().await;
    assert!(s.load_topom().await.unwrap().is_none());
    s.coordinator().close().await;
    let _ = Duration::from_secs(0);
}
