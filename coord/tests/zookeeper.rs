//! The conformance suite on a real ZooKeeper (Debian's `zookeeper`), on a three-node ensemble
//! with a node killed mid-test, plus session expiry, digest auth and a server outage.

mod common;

use std::sync::Arc;
use std::time::Duration;

use coord::testutil::ZkEnsemble;
use coord::zk::ZkCoordinator;
use coord::{CoordConfig, Coordinator, Error, Kind};

#[test]
fn owner_process() {
    common::owner_main();
}

fn factory(hosts: String) -> common::Factory {
    Arc::new(move || {
        let mut cfg = CoordConfig::new(Kind::ZooKeeper, &hosts, "demo");
        cfg.session_timeout = Duration::from_secs(4);
        cfg
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_conformance() {
    let zk = ZkEnsemble::start().expect("start zookeeper");
    common::run_suite(factory(zk.connect_string()), "owner_process").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_ensemble_survives_a_killed_node() {
    let mut zk = ZkEnsemble::start_nodes(3).expect("start a three-node ensemble");
    let f = factory(zk.connect_string());
    common::crud(&f).await;
    let c = common::open(&f).await;
    let store = coord::Store::new(c.clone(), &common::product("ens")).unwrap();
    let mut watch = store.watch_topology().await.unwrap();
    zk.nodes[0].kill();
    // the already-open coordinator and its watch carry on through the remaining quorum
    store
        .update_group(&coord::Group {
            id: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let t = tokio::time::timeout(Duration::from_secs(30), watch.changed())
        .await
        .expect("watch fired after a node died")
        .expect("alive");
    assert!(t.group(1).is_some());
    common::run_suite(f, "owner_process").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_session_expiry_auth_and_outage() {
    let mut zk = ZkEnsemble::start().expect("start zookeeper");
    let hosts = zk.connect_string();
    let mut cfg = CoordConfig::new(Kind::ZooKeeper, &hosts, "demo");
    cfg.session_timeout = Duration::from_secs(2);
    cfg.auth = Some("alice:secret".into());
    let owner = ZkCoordinator::new(&cfg).unwrap();
    let base = common::unique("expiry");
    let eph = format!("{base}/alive/proxy-1");
    owner.create_ephemeral(&eph, b"here").await.unwrap();
    let before = owner.session_id().await.unwrap();

    // Digest auth: nodes are creator-only; a client without the credentials is refused,
    // naming the path; one with them reads.
    let anon = coord::connect(&CoordConfig::new(Kind::ZooKeeper, &hosts, "demo"))
        .await
        .unwrap();
    let err = anon.read(&eph).await.unwrap_err();
    assert!(
        matches!(&err, Error::Denied { path, .. } if *path == eph),
        "{err}"
    );
    let same = coord::connect(&cfg).await.unwrap();
    assert_eq!(same.read(&eph).await.unwrap().unwrap().data, b"here");

    // Expire the session: freeze the server longer than the session timeout; when it resumes
    // it expires the session, and the coordinator opens a new one and re-creates its ephemeral.
    zk.nodes[0].pause();
    tokio::time::sleep(Duration::from_secs(5)).await;
    zk.nodes[0].resume();
    common::eventually("a new session re-created the ephemeral", || {
        let same = same.clone();
        let eph = eph.clone();
        let owner = &owner;
        async move {
            let now = owner.session_id().await;
            now.is_some() && now != Some(before) && same.read(&eph).await.ok().flatten().is_some()
        }
    })
    .await;

    // Outage: every operation fails with Unavailable naming the path, never panics …
    zk.nodes[0].kill();
    let probe = format!("{base}/probe");
    let err = same.update(&probe, b"x", None).await.unwrap_err();
    assert!(
        matches!(&err, Error::Unavailable { path, .. } if *path == probe),
        "{err}"
    );
    assert!(err.to_string().contains("unavailable"), "{err}");
    // … and a coordinator that comes back is used again, ephemerals restored.
    zk.nodes[0].restart().unwrap();
    assert!(zk.wait_serving(0, Duration::from_secs(60)));
    common::eventually("writes work again after the outage", || {
        let same = same.clone();
        let probe = probe.clone();
        async move { same.update(&probe, b"x", None).await.is_ok() }
    })
    .await;
    common::eventually("the ephemeral is back", || {
        let same = same.clone();
        let eph = eph.clone();
        async move { same.read(&eph).await.ok().flatten().is_some() }
    })
    .await;

    // A coordinator pointed at nothing reports the path and the cause.
    let dead = format!("127.0.0.1:{}", coord::testutil::free_port());
    let nobody = coord::connect(&CoordConfig::new(Kind::ZooKeeper, &dead, "demo"))
        .await
        .unwrap();
    let err = nobody.read("/codis3/demo/topom").await.unwrap_err();
    assert!(
        matches!(&err, Error::Unavailable { path, .. } if path == "/codis3/demo/topom"),
        "{err}"
    );
    assert!(err.to_string().contains(&dead), "{err}");
    owner.close().await;
}
