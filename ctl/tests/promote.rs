//! Promotion holds the group's slots on every live proxy before any server changes role:
//! a fake proxy (its own coordinator session) acknowledges what it sees, and the test checks
//! that while the slots are held the old master is still the only master.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coord::{
    AckedSlot, Coordinator, Group, GroupServer, ProxyAck, ProxyAlive, SlotMapping, SlotState, Store,
};
use ctl::config::CtlConfig;
use ctl::topom::Ctx;

async fn store(dir: &std::path::Path) -> Store {
    let cfg = coord::CoordConfig::new(coord::Kind::Filesystem, dir.to_str().unwrap(), "prom");
    let c: Arc<dyn Coordinator> = coord::connect(&cfg).await.unwrap();
    Store::new(c, "prom").unwrap()
}

fn role(port: u16) -> String {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    let info: String = redis::cmd("INFO").arg("replication").query(&mut c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("role:"))
        .unwrap_or("")
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_waits_for_proxies_to_hold_the_slots() {
    let Some((a, _da)) = testkit::redis_server(&[]) else {
        return;
    };
    let Some((b, _db)) = testkit::redis_server(&["--replicaof", "127.0.0.1", &a.port.to_string()])
    else {
        return;
    };
    check_promotion(a.port, b.port).await;
}

/// codisctl's promotion against codis-server: a replica made by `--replicaof` becomes the master
/// with the data the old master acknowledged, and the old master follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_of_a_codis_server_replica() {
    let a = testkit::codis_server(&["--cores", "2"]);
    let b = testkit::codis_server(&[
        "--cores",
        "2",
        "--replicaof",
        "127.0.0.1",
        &a.port.to_string(),
    ]);
    let (pa, pb) = (a.port, b.port);
    tokio::task::spawn_blocking(move || {
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{pa}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        for i in 0..100 {
            let _: () = redis::cmd("SET")
                .arg(format!("k{i}"))
                .arg(i)
                .query(&mut c)
                .unwrap();
        }
        let n: i64 = redis::cmd("WAIT").arg(1).arg(30_000).query(&mut c).unwrap();
        assert_eq!(n, 1, "the replica acknowledged the writes");
    })
    .await
    .unwrap();
    check_promotion(pa, pb).await;
    // After the promotion back, a is the master again; b follows it and has the data.
    tokio::task::spawn_blocking(move || {
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{pa}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        let v: Option<i64> = redis::cmd("GET").arg("k99").query(&mut c).unwrap();
        assert_eq!(v, Some(99));
        let _: () = redis::cmd("SET").arg("after").arg(1).query(&mut c).unwrap();
        let n: i64 = redis::cmd("WAIT").arg(1).arg(30_000).query(&mut c).unwrap();
        assert_eq!(n, 1, "the old replica follows the master again");
        let mut r = redis::Client::open(format!("redis://127.0.0.1:{pb}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        let v: Option<i64> = redis::cmd("GET").arg("after").query(&mut r).unwrap();
        assert_eq!(v, Some(1));
    })
    .await
    .unwrap();
}

async fn check_promotion(pa: u16, pb: u16) {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    let (aa, ba) = (format!("127.0.0.1:{}", pa), format!("127.0.0.1:{}", pb));
    s.update_group(&Group {
        id: 1,
        servers: [&aa, &ba]
            .iter()
            .map(|x| GroupServer {
                addr: x.to_string(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
    .await
    .unwrap();
    let owned: Vec<SlotMapping> = (0..4)
        .map(|id| SlotMapping {
            id,
            group_id: 1,
            ..Default::default()
        })
        .collect();
    s.update_slot_mappings(&owned).await.unwrap();

    // A fake proxy: acknowledges every slot as it is stored, and records the roles of the two
    // servers at the moment it first holds the group's slots.
    let proxy = store(dir.path()).await;
    proxy
        .register_alive(&ProxyAlive {
            token: "px".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let held_roles = Arc::new(std::sync::Mutex::new(None));
    let stop = Arc::new(AtomicBool::new(false));
    let (p2, hr, st) = (proxy.clone(), held_roles.clone(), stop.clone());
    let fake = tokio::spawn(async move {
        while !st.load(Ordering::SeqCst) {
            let slots = p2.slot_mappings().await.unwrap();
            let held = slots[..4]
                .iter()
                .all(|m| m.action.state == SlotState::Prepared);
            if held && hr.lock().unwrap().is_none() {
                let roles = tokio::task::spawn_blocking(move || (role(pa), role(pb)))
                    .await
                    .unwrap();
                *hr.lock().unwrap() = Some(roles);
            }
            let ack = ProxyAck {
                token: "px".into(),
                topology_version: p2.version().await.unwrap(),
                slots: slots
                    .iter()
                    .map(|m| AckedSlot {
                        id: m.id,
                        group_id: m.group_id,
                        state: m.action.state,
                        index: m.action.index,
                        target_id: m.action.target_id,
                    })
                    .collect(),
            };
            p2.ack(&ack).await.unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    });

    let ctx = Ctx::new(s.clone(), CtlConfig::new("prom"), true);
    let v = ctl::promote::promote(&ctx, 1, &ba).await.unwrap();
    assert_eq!(
        held_roles.lock().unwrap().clone(),
        Some(("master".to_string(), "slave".to_string())),
        "slots were held before any role changed"
    );
    assert_eq!(v["master"], ba);
    assert_eq!(role(pb), "master");
    assert_eq!(role(pa), "slave");
    let g = s.group(1).await.unwrap().unwrap();
    assert_eq!(
        g.servers.iter().map(|x| x.addr.clone()).collect::<Vec<_>>(),
        vec![ba.clone(), aa.clone()]
    );
    assert!(g.promoting.state.is_empty());
    let slots = s.slot_mappings().await.unwrap();
    assert!(slots[..4]
        .iter()
        .all(|m| m.group_id == 1 && m.action.state.is_nothing()));
    // The group is no longer promoting, so a second promotion back works too.
    ctl::promote::promote(&ctx, 1, &aa).await.unwrap();
    assert_eq!(role(pa), "master");
    stop.store(true, Ordering::SeqCst);
    fake.await.unwrap();
}
