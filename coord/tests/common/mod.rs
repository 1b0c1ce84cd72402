//! The conformance suite every backend must pass, and the "owner" child process used to prove
//! that a killed owner's ephemerals and lock vanish.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coord::{
    CoordConfig, Coordinator, Error, Group, GroupServer, Kind, ProxyAck, ProxyAlive, SlotAction,
    SlotMapping, SlotState, Store, Topom, WatchEvent, WatchKind,
};

pub type Factory = Arc<dyn Fn() -> CoordConfig + Send + Sync>;

static UNIQUE: AtomicU32 = AtomicU32::new(0);

/// A fresh path prefix so cases never see each other's nodes.
pub fn unique(tag: &str) -> String {
    format!(
        "/t{}-{}-{tag}",
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh product name.
pub fn product(tag: &str) -> String {
    format!(
        "p{}-{}-{tag}",
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    )
}

pub async fn open(f: &Factory) -> Arc<dyn Coordinator> {
    coord::connect(&f()).await.expect("connect")
}

/// Waits (up to 30 s) for `cond` to hold.
pub async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// The next `Changed` event whose path satisfies `pred` (30 s at most).
pub async fn expect_event(w: &mut coord::Watch, what: &str, pred: impl Fn(&str) -> bool) {
    let res = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match w.next().await {
                Some(WatchEvent::Changed { path }) if pred(&path) => return,
                Some(_) => continue,
                None => panic!("watch ended while waiting for {what}"),
            }
        }
    })
    .await;
    assert!(res.is_ok(), "no watch event for {what}");
}

pub async fn crud(f: &Factory) {
    let c = open(f).await;
    let base = unique("crud");
    let a = format!("{base}/a");
    assert_eq!(c.read(&a).await.unwrap(), None);
    assert_eq!(c.create(&a, b"one").await.unwrap(), 1);
    let n = c.read(&a).await.unwrap().unwrap();
    assert_eq!((n.data.as_slice(), n.version), (&b"one"[..], 1));
    assert!(matches!(c.create(&a, b"x").await, Err(Error::Exists { path }) if path == a));
    assert_eq!(c.update(&a, b"two", Some(1)).await.unwrap(), 2);
    // compare-and-set conflict: the stale version loses, the data stays
    let err = c.update(&a, b"stale", Some(1)).await.unwrap_err();
    assert!(
        matches!(&err, Error::Conflict { path, .. } if *path == a),
        "{err}"
    );
    assert!(err.to_string().contains(&a));
    assert_eq!(c.read(&a).await.unwrap().unwrap().data, b"two");
    assert_eq!(c.update(&a, b"three", None).await.unwrap(), 3);
    // update of a missing node: None creates, Some(v) is NotFound
    let b = format!("{base}/b");
    assert!(matches!(
        c.update(&b, b"x", Some(1)).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(c.update(&b, b"bee", None).await.unwrap(), 1);
    let deep = format!("{base}/c/d/e");
    c.create(&deep, b"deep").await.unwrap();
    assert_eq!(c.list(&base).await.unwrap(), vec!["a", "b", "c"]);
    assert_eq!(
        c.list(&format!("{base}/nothing")).await.unwrap(),
        Vec::<String>::new()
    );
    let kids = c.read_children(&base).await.unwrap();
    let names: Vec<&str> = kids.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"a") && names.contains(&"b"), "{names:?}");
    // read_many: in the order asked, None for a missing node
    let many = c
        .read_many(&[b.clone(), format!("{base}/missing"), a.clone()])
        .await
        .unwrap();
    let got: Vec<Option<(&[u8], u64)>> = many
        .iter()
        .map(|n| n.as_ref().map(|n| (n.data.as_slice(), n.version)))
        .collect();
    assert_eq!(
        got,
        vec![Some((&b"bee"[..], 1)), None, Some((&b"three"[..], 3))]
    );
    assert!(c.read_many(&[]).await.unwrap().is_empty());
    assert!(matches!(
        c.read_many(&[a.clone(), "relative".to_string()]).await,
        Err(Error::BadPath { .. })
    ));
    // delete: version check, children check, missing
    assert!(matches!(
        c.delete(&a, Some(1)).await,
        Err(Error::Conflict { .. })
    ));
    c.delete(&a, Some(3)).await.unwrap();
    assert!(matches!(
        c.delete(&a, None).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        c.delete(&format!("{base}/c/d"), None).await,
        Err(Error::NotEmpty { .. })
    ));
    c.delete(&deep, None).await.unwrap();
    assert_eq!(c.read(&deep).await.unwrap(), None);
    // recreated nodes start again at version 1
    assert_eq!(c.create(&a, b"again").await.unwrap(), 1);
    // bad paths are refused before reaching the store
    assert!(matches!(
        c.read("relative").await,
        Err(Error::BadPath { .. })
    ));
    assert!(matches!(
        c.create("/x/../y", b"").await,
        Err(Error::BadPath { .. })
    ));
}

pub async fn watches(f: &Factory) {
    let c = open(f).await;
    let other = open(f).await;
    let base = unique("watch");
    let node = format!("{base}/n");
    let mut data = c.watch(&node, WatchKind::Data).await.unwrap();
    let mut kids = c.watch(&base, WatchKind::Children).await.unwrap();
    let mut tree = c.watch(&base, WatchKind::Tree).await.unwrap();
    other.create(&node, b"1").await.unwrap();
    expect_event(&mut data, "data watch on create", |p| p == node).await;
    expect_event(&mut kids, "children watch on create", |p| p == base).await;
    expect_event(&mut tree, "tree watch on create", |p| p == node).await;
    other.update(&node, b"2", None).await.unwrap();
    expect_event(&mut data, "data watch on update", |p| p == node).await;
    let deep = format!("{base}/x/y");
    other.create(&deep, b"").await.unwrap();
    expect_event(&mut tree, "tree watch on a deep create", |p| p == deep).await;
    other.update(&deep, b"changed", None).await.unwrap();
    expect_event(&mut tree, "tree watch on a deep update", |p| p == deep).await;
    other.delete(&node, None).await.unwrap();
    expect_event(&mut data, "data watch on delete", |p| p == node).await;
    expect_event(&mut kids, "children watch on delete", |p| p == base).await;
    // a watch keeps firing after many events (it is not one-shot)
    for i in 0..3 {
        other.create(&format!("{base}/k{i}"), b"").await.unwrap();
        expect_event(&mut kids, "children watch, repeated", |p| p == base).await;
    }
    other.close().await;
}

pub async fn ephemerals_close(f: &Factory) {
    let owner = open(f).await;
    let watcher = open(f).await;
    let base = unique("eph");
    let e = format!("{base}/e");
    owner.create_ephemeral(&e, b"mine").await.unwrap();
    assert_eq!(owner.update(&e, b"mine2", None).await.unwrap(), 2);
    assert_eq!(watcher.read(&e).await.unwrap().unwrap().data, b"mine2");
    assert_eq!(watcher.list(&base).await.unwrap(), vec!["e"]);
    owner.close().await;
    eventually("ephemeral gone after close", || {
        let w = watcher.clone();
        let e = e.clone();
        async move { w.read(&e).await.unwrap().is_none() }
    })
    .await;
    assert_eq!(watcher.list(&base).await.unwrap(), Vec::<String>::new());
}

/// Starts this test binary as an owner process: it creates ephemeral `eph` and takes lock `lock`.
pub fn spawn_owner(test_name: &str, cfg: &CoordConfig, eph: &str, lock: &str) -> Child {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env("COORD_OWNER_KIND", cfg.kind.to_string())
        .env("COORD_OWNER_ADDR", &cfg.addr)
        .env(
            "COORD_OWNER_TIMEOUT_MS",
            cfg.session_timeout.as_millis().to_string(),
        )
        .env("COORD_OWNER_EPH", eph)
        .env("COORD_OWNER_LOCK", lock)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn owner");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("OWNER-READY") => break,
            Some(Ok(l)) if l.contains("OWNER-FAILED") => panic!("owner failed: {l}"),
            Some(_) => continue,
            None => panic!("owner process exited before it was ready"),
        }
    }
    // keep draining so the child never blocks on a full pipe
    std::thread::spawn(move || for _ in lines {});
    child
}

/// Body of the `owner_process` test: does nothing unless started by `spawn_owner`.
pub fn owner_main() {
    let Ok(kind) = std::env::var("COORD_OWNER_KIND") else {
        return;
    };
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut cfg = CoordConfig::new(
            kind.parse::<Kind>().expect("kind"),
            &env("COORD_OWNER_ADDR"),
            "owner",
        );
        cfg.session_timeout =
            Duration::from_millis(env("COORD_OWNER_TIMEOUT_MS").parse().unwrap_or(2000));
        let c = coord::connect(&cfg).await.expect("connect");
        let res = async {
            c.create_ephemeral(&env("COORD_OWNER_EPH"), b"owned")
                .await?;
            c.lock(&env("COORD_OWNER_LOCK"), b"{\"pid\":1}").await
        }
        .await;
        match res {
            Ok(()) => println!("OWNER-READY"),
            Err(e) => println!("OWNER-FAILED {e}"),
        }
        std::future::pending::<()>().await;
    });
}

pub async fn owner_killed(f: &Factory, test_name: &str) {
    let c = open(f).await;
    let base = unique("kill");
    let eph = format!("{base}/alive/proxy-x");
    let lock = format!("{base}/topom");
    let mut cfg = f();
    cfg.session_timeout = Duration::from_secs(2);
    let mut child = spawn_owner(test_name, &cfg, &eph, &lock);
    assert_eq!(c.read(&eph).await.unwrap().unwrap().data, b"owned");
    // the lock excludes a second holder
    let err = c.lock(&lock, b"second").await.unwrap_err();
    assert!(
        matches!(&err, Error::LockHeld { path, .. } if *path == lock),
        "{err}"
    );
    assert!(err.to_string().contains("pid"), "holder named: {err}");
    child.kill().expect("kill owner");
    let _ = child.wait();
    eventually("killed owner's ephemeral vanishes", || {
        let c = c.clone();
        let eph = eph.clone();
        async move { c.read(&eph).await.unwrap().is_none() }
    })
    .await;
    eventually("killed owner's lock frees itself", || {
        let c = c.clone();
        let lock = lock.clone();
        async move { c.lock(&lock, b"second").await.is_ok() }
    })
    .await;
    assert_eq!(c.read(&lock).await.unwrap().unwrap().data, b"second");
    // an operator can force-remove a lock
    assert!(c.remove_lock(&lock).await.unwrap());
    assert!(!c.remove_lock(&lock).await.unwrap());
    c.unlock(&lock).await.unwrap();
}

fn group(id: u32, addrs: &[&str]) -> Group {
    Group {
        id,
        servers: addrs
            .iter()
            .map(|a| GroupServer {
                addr: a.to_string(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

pub async fn topology(f: &Factory) {
    let c = open(f).await;
    let store = Store::new(c.clone(), &product("topo")).unwrap();
    let empty = store.topology().await.unwrap();
    assert_eq!(empty.version(), 0);
    assert!(empty.slots().iter().all(|m| m.group_id == 0));
    let mut watch = store.watch_topology().await.unwrap();
    store
        .update_group(&group(1, &["127.0.0.1:7001", "127.0.0.1:7101"]))
        .await
        .unwrap();
    store
        .update_group(&group(2, &["127.0.0.1:7002"]))
        .await
        .unwrap();
    let mut maps: Vec<SlotMapping> = (0..1024)
        .map(|id| SlotMapping {
            id,
            group_id: if id < 512 { 1 } else { 2 },
            ..Default::default()
        })
        .collect();
    maps[7].action = SlotAction {
        index: 1,
        state: SlotState::Migrating,
        target_id: 2,
    };
    store.update_slot_mappings(&maps).await.unwrap();
    let t = store.topology().await.unwrap();
    assert_eq!(t.version(), 3);
    assert_eq!(t.groups().len(), 2);
    assert_eq!(t.slot(600).group_id, 2);
    let r = t.route(7).unwrap();
    assert_eq!(r.master, Some("127.0.0.1:7001"));
    assert_eq!(r.target_master, Some("127.0.0.1:7002"));
    assert_eq!(r.state, SlotState::Migrating);
    assert_eq!(t.route(1000).unwrap().master, Some("127.0.0.1:7002"));
    assert_eq!(t.slots_of_group(1).len(), 512);
    // the watch converges on the same snapshot
    let mut seen = watch.current();
    while seen.version() < 3 {
        seen = tokio::time::timeout(Duration::from_secs(30), watch.changed())
            .await
            .expect("topology watch fired")
            .expect("watch alive");
    }
    assert_eq!(seen, t);
    // a finished migration shows up in the next snapshot
    let mut m7 = maps[7].clone();
    m7.group_id = 2;
    m7.action = SlotAction::default();
    store.update_slot_mapping(&m7).await.unwrap();
    let next = loop {
        let s = tokio::time::timeout(Duration::from_secs(30), watch.changed())
            .await
            .expect("topology watch fired")
            .expect("watch alive");
        if s.version() >= 4 {
            break s;
        }
    };
    assert_eq!(next.route(7).unwrap().master, Some("127.0.0.1:7002"));
    assert_eq!(next.route(7).unwrap().state, SlotState::Nothing);
    // acks and liveness are stored but are not topology changes
    let ack = ProxyAck {
        token: "tok".into(),
        topology_version: next.version(),
        slots: vec![coord::AckedSlot {
            id: 7,
            group_id: 2,
            ..Default::default()
        }],
    };
    store.ack(&ack).await.unwrap();
    store
        .register_alive(&ProxyAlive {
            token: "tok".into(),
            proxy_addr: "127.0.0.1:19000".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(store.acks().await.unwrap()["tok"].has_applied(&m7));
    assert_eq!(store.alive().await.unwrap().len(), 1);
    assert_eq!(store.topology().await.unwrap().version(), next.version());
    // the product lock stores the Topom record
    let topom = Topom {
        token: "t1".into(),
        admin_addr: "127.0.0.1:18087".into(),
        product_name: store.product().into(),
        pid: 42,
        ..Default::default()
    };
    store.acquire(&topom).await.unwrap();
    assert_eq!(store.load_topom().await.unwrap(), Some(topom.clone()));
    let second = Store::new(open(f).await, store.product()).unwrap();
    assert!(matches!(
        second.acquire(&topom).await,
        Err(Error::LockHeld { .. })
    ));
    store.release().await.unwrap();
    second.acquire(&topom).await.unwrap();
    second.coordinator().close().await;
}

pub async fn products_isolated(f: &Factory) {
    let c = open(f).await;
    let (n1, n2) = (product("iso"), product("iso"));
    let s1 = Store::new(c.clone(), &n1).unwrap();
    let s2 = Store::new(c.clone(), &format!("{n1}x")).unwrap();
    let s3 = Store::new(c.clone(), &n2).unwrap();
    let mut w2 = s2.watch_topology().await.unwrap();
    s1.update_group(&group(1, &["127.0.0.1:1"])).await.unwrap();
    s1.update_slot_mapping(&SlotMapping {
        id: 3,
        group_id: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(s2.groups().await.unwrap().len(), 0);
    assert_eq!(s3.groups().await.unwrap().len(), 0);
    assert_eq!(s2.slot_mapping(3).await.unwrap().group_id, 0);
    assert_eq!(s2.version().await.unwrap(), 0);
    // s2's watch sees only s2's own change
    s2.update_group(&group(5, &["127.0.0.1:5"])).await.unwrap();
    let t = tokio::time::timeout(Duration::from_secs(30), w2.changed())
        .await
        .expect("watch fired")
        .expect("alive");
    assert_eq!(t.groups().keys().copied().collect::<Vec<_>>(), vec![5]);
    assert_eq!(t.slot(3).group_id, 0);
    assert!(Store::new(c.clone(), "../etc").is_err());
    assert!(Store::new(c.clone(), "a/b").is_err());
}

pub async fn bad_input(f: &Factory) {
    let c = open(f).await;
    let store = Store::new(c.clone(), &product("bad")).unwrap();
    store
        .update_group(&group(1, &["127.0.0.1:1"]))
        .await
        .unwrap();
    let gpath = store.paths().group(3);
    c.update(&gpath, b"{not json", None).await.unwrap();
    let err = store.groups().await.unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { path, .. } if *path == gpath),
        "{err}"
    );
    assert!(
        err.to_string().contains("group-0003") && err.to_string().contains("JSON"),
        "{err}"
    );
    let err = store.topology().await.unwrap_err();
    assert!(err.to_string().contains(&gpath), "{err}");
    // a slot node holding another slot's id is corrupt too
    let spath = store.paths().slot(9);
    c.update(&spath, br#"{"id":10,"group_id":1,"action":{}}"#, None)
        .await
        .unwrap();
    c.delete(&gpath, None).await.unwrap();
    let err = store.topology().await.unwrap_err();
    assert!(err.to_string().contains("slot-0009"), "{err}");
    c.update(
        &spath,
        br#"{"id":9,"group_id":1,"action":{"state":"nonsense"}}"#,
        None,
    )
    .await
    .unwrap();
    let err = store.slot_mapping(9).await.unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { path, .. } if *path == spath),
        "{err}"
    );
    c.delete(&spath, None).await.unwrap();
    // missing nodes: None for reads, NotFound naming the path for writes that need them
    assert_eq!(store.group(42).await.unwrap(), None);
    assert_eq!(store.slot_mapping(42).await.unwrap().group_id, 0);
    let missing = store.paths().group(42);
    let err = c.update(&missing, b"{}", Some(1)).await.unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { path } if *path == missing),
        "{err}"
    );
    assert!(store.topology().await.is_ok());
}

/// Every case, in order, with its name in any failure.
pub async fn run_suite(f: Factory, owner_test: &str) {
    crud(&f).await;
    eprintln!("crud ok");
    watches(&f).await;
    eprintln!("watches ok");
    ephemerals_close(&f).await;
    eprintln!("ephemerals_close ok");
    owner_killed(&f, owner_test).await;
    eprintln!("owner_killed ok");
    topology(&f).await;
    eprintln!("topology ok");
    products_isolated(&f).await;
    eprintln!("products_isolated ok");
    bad_input(&f).await;
    eprintln!("bad_input ok");
}
