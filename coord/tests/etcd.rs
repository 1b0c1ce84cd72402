//! The conformance suite on a real etcd v3 server (Debian's `etcd-server`), plus an outage.

mod common;

use std::sync::Arc;
use std::time::Duration;

use coord::testutil::EtcdServer;
use coord::{CoordConfig, Error, Kind};

#[test]
fn owner_process() {
    common::owner_main();
}

fn factory(addr: String) -> common::Factory {
    Arc::new(move || {
        let mut cfg = CoordConfig::new(Kind::Etcd, &addr, "demo");
        cfg.session_timeout = Duration::from_secs(3);
        cfg
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_conformance() {
    let etcd = EtcdServer::start().expect("start etcd");
    common::run_suite(factory(etcd.addr()), "owner_process").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_outage_then_back() {
    let mut etcd = EtcdServer::start().expect("start etcd");
    let f = factory(etcd.addr());
    let c = common::open(&f).await;
    let base = common::unique("outage");
    let eph = format!("{base}/alive/proxy-1");
    c.create_ephemeral(&eph, b"here").await.unwrap();
    let mut tree = c.watch(&base, coord::WatchKind::Tree).await.unwrap();
    etcd.kill();
    let probe = format!("{base}/probe");
    let err = c.update(&probe, b"x", None).await.unwrap_err();
    assert!(
        matches!(&err, Error::Unavailable { path, .. } if *path == probe),
        "{err}"
    );
    // longer than the lease TTL: the lease expires and a new one must restore the ephemeral
    tokio::time::sleep(Duration::from_secs(4)).await;
    etcd.restart().unwrap();
    common::eventually("writes work again after the outage", || {
        let c = c.clone();
        let probe = probe.clone();
        async move { c.update(&probe, b"x", None).await.is_ok() }
    })
    .await;
    common::eventually("the ephemeral is back under a new lease", || {
        let c = c.clone();
        let eph = eph.clone();
        async move { c.read(&eph).await.ok().flatten().is_some() }
    })
    .await;
    // the watch was re-established
    let other = common::open(&f).await;
    let later = format!("{base}/later");
    other.create(&later, b"").await.unwrap();
    common::expect_event(&mut tree, "tree watch after the outage", |p| p == later).await;

    let dead = format!("127.0.0.1:{}", coord::testutil::free_port());
    let nobody = coord::connect(&CoordConfig::new(Kind::Etcd, &dead, "demo"))
        .await
        .unwrap();
    let err = nobody.read("/codis3/demo/topom").await.unwrap_err();
    assert!(
        matches!(&err, Error::Unavailable { path, .. } if path == "/codis3/demo/topom"),
        "{err}"
    );
}
