//! The migration executor's state machine against a real coordinator (filesystem), with a fake
//! drain injected through the `Drain` trait: every state as a kill point, resume on a fresh
//! connection, proxy acknowledgements (live ones only), pause, and a failing drain.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use coord::{
    AckedSlot, Coordinator, Group, GroupServer, ProxyAck, ProxyAlive, SlotMapping, SlotState, Store,
};
use ctl::config::CtlConfig;
use ctl::executor::{Drain, DrainStep, Executor, Step};
use ctl::topom::Ctx;
use ctl::CtlError;

/// Keys per slot on the "source"; each step moves up to 3; can fail after N steps.
#[derive(Default)]
struct FakeDrain {
    keys: Mutex<HashMap<u32, u64>>,
    moved: Mutex<u64>,
    steps: Mutex<u64>,
    fail_after: Mutex<Option<u64>>,
}

#[async_trait]
impl Drain for FakeDrain {
    async fn step(&self, slot: u32, source: &str, target: &str) -> ctl::Result<DrainStep> {
        assert_eq!((source, target), ("127.0.0.1:1001", "127.0.0.1:1002"));
        let mut steps = self.steps.lock().unwrap();
        *steps += 1;
        if let Some(n) = *self.fail_after.lock().unwrap() {
            if *steps > n {
                return Err(CtlError::redis(source, "connection reset (injected)"));
            }
        }
        let mut keys = self.keys.lock().unwrap();
        let left = keys.entry(slot).or_insert(0);
        let moved = (*left).min(3);
        *left -= moved;
        *self.moved.lock().unwrap() += moved;
        Ok(DrainStep { moved, left: *left })
    }
}

async fn store(dir: &std::path::Path) -> Store {
    let cfg = coord::CoordConfig::new(coord::Kind::Filesystem, dir.to_str().unwrap(), "exec");
    let c: Arc<dyn Coordinator> = coord::connect(&cfg).await.unwrap();
    Store::new(c, "exec").unwrap()
}

async fn setup(dir: &std::path::Path) -> Store {
    let s = store(dir).await;
    for (gid, port) in [(1, 1001), (2, 1002)] {
        s.update_group(&Group {
            id: gid,
            servers: vec![GroupServer {
                addr: format!("127.0.0.1:{port}"),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    }
    for sid in 0..8 {
        s.update_slot_mapping(&SlotMapping {
            id: sid,
            group_id: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    s
}

fn ctx(s: Store) -> Arc<Ctx> {
    Ctx::new(s, CtlConfig::new("exec"), true)
}

#[tokio::test]
async fn kill_and_resume_from_every_state() {
    let mut seen = Vec::new();
    for kill_after in 0..=5 {
        let dir = tempfile::tempdir().unwrap();
        let s1 = setup(dir.path()).await;
        let drain = Arc::new(FakeDrain::default());
        drain.keys.lock().unwrap().insert(5, 10);
        let c1 = ctx(s1.clone());
        c1.slot_migrate(5, 5, 2, None).await.unwrap();
        let ex1 = Executor::new(c1.clone(), drain.clone());
        for _ in 0..kill_after {
            ex1.step_slot(5).await.unwrap();
        }
        let state = s1.slot_mapping(5).await.unwrap().action.state;
        seen.push(state);
        // "kill": drop everything and close the session
        drop(ex1);
        drop(c1);
        s1.coordinator().close().await;

        let s2 = store(dir.path()).await;
        let ex2 = Executor::new(ctx(s2.clone()), drain.clone());
        ex2.run_until_idle(&AtomicBool::new(false)).await.unwrap();
        let m = s2.slot_mapping(5).await.unwrap();
        assert_eq!(
            (m.group_id, m.action.state),
            (2, SlotState::Nothing),
            "kill after {kill_after} steps"
        );
        assert_eq!(
            *drain.moved.lock().unwrap(),
            10,
            "every key moved exactly once"
        );
        assert_eq!(drain.keys.lock().unwrap()[&5], 0);
        // other slots untouched
        assert_eq!(s2.slot_mapping(4).await.unwrap().group_id, 1);
    }
    assert_eq!(
        seen,
        vec![
            SlotState::Pending,
            SlotState::Preparing,
            SlotState::Prepared,
            SlotState::Migrating,
            SlotState::Finished,
            SlotState::Nothing
        ]
    );
}

#[tokio::test]
async fn killed_in_the_middle_of_draining_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path()).await;
    let drain = Arc::new(FakeDrain::default());
    drain.keys.lock().unwrap().insert(3, 20);
    *drain.fail_after.lock().unwrap() = Some(2);
    let c = ctx(s.clone());
    c.slot_migrate(3, 3, 2, None).await.unwrap();
    let ex = Executor::new(c.clone(), drain.clone());
    let err = ex.run_round().await.unwrap_err();
    assert!(err.to_string().contains("injected"), "{err}");
    let m = s.slot_mapping(3).await.unwrap();
    assert_eq!((m.group_id, m.action.state), (1, SlotState::Migrating));
    assert_eq!(drain.keys.lock().unwrap()[&3], 14);
    assert!(c.control.progress()[&3].error.is_some());
    // a new executor (same store state) finishes the job
    *drain.fail_after.lock().unwrap() = None;
    let ex = Executor::new(ctx(store(dir.path()).await), drain.clone());
    ex.run_until_idle(&AtomicBool::new(false)).await.unwrap();
    let m = s.slot_mapping(3).await.unwrap();
    assert_eq!((m.group_id, m.action.state), (2, SlotState::Nothing));
    assert_eq!(*drain.moved.lock().unwrap(), 20);
}

#[tokio::test]
async fn waits_for_live_proxies_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path()).await;
    // two proxies, each with its own coordinator session
    let p1 = store(dir.path()).await;
    let p2 = store(dir.path()).await;
    for (st, tok) in [(&p1, "p1"), (&p2, "p2")] {
        st.register_alive(&ProxyAlive {
            token: tok.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let drain = Arc::new(FakeDrain::default());
    let c = ctx(s.clone());
    c.slot_migrate(6, 6, 2, None).await.unwrap();
    let ex = Executor::new(c.clone(), drain);
    assert_eq!(
        ex.step_slot(6).await.unwrap(),
        Step::Advanced(SlotState::Preparing)
    );
    assert_eq!(
        ex.step_slot(6).await.unwrap(),
        Step::Advanced(SlotState::Prepared)
    );
    assert_eq!(
        ex.step_slot(6).await.unwrap(),
        Step::Waiting(SlotState::Prepared)
    );
    let m = s.slot_mapping(6).await.unwrap();
    let mut waiting = ex.unacked(&m).await.unwrap();
    waiting.sort();
    assert_eq!(waiting, vec!["p1".to_string(), "p2".to_string()]);
    // p1 acknowledges the exact mapping
    p1.ack(&ProxyAck {
        token: "p1".into(),
        topology_version: 9,
        slots: vec![AckedSlot {
            id: 6,
            group_id: 1,
            state: SlotState::Prepared,
            index: m.action.index,
            target_id: 2,
        }],
    })
    .await
    .unwrap();
    assert_eq!(
        ex.step_slot(6).await.unwrap(),
        Step::Waiting(SlotState::Prepared)
    );
    assert_eq!(c.control.progress()[&6].waiting_for, vec!["p2".to_string()]);
    // an ack of another state does not count
    p2.ack(&ProxyAck {
        token: "p2".into(),
        topology_version: 9,
        slots: vec![AckedSlot {
            id: 6,
            group_id: 1,
            state: SlotState::Preparing,
            index: m.action.index,
            target_id: 2,
        }],
    })
    .await
    .unwrap();
    assert_eq!(
        ex.step_slot(6).await.unwrap(),
        Step::Waiting(SlotState::Prepared)
    );
    // p2 dies: its liveness node vanishes and it is no longer waited for
    p2.coordinator().close().await;
    assert_eq!(
        ex.step_slot(6).await.unwrap(),
        Step::Advanced(SlotState::Migrating)
    );
    assert_eq!(ex.drive_slot(6).await.unwrap(), SlotState::Nothing);
    assert_eq!(s.slot_mapping(6).await.unwrap().group_id, 2);
}

#[tokio::test]
async fn pause_cancel_and_scheduling() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path()).await;
    let drain = Arc::new(FakeDrain::default());
    let c = ctx(s.clone());
    c.slot_migrate(0, 2, 2, None).await.unwrap();
    c.control.set_paused(true);
    let ex = Executor::new(c.clone(), drain.clone());
    assert_eq!(
        ex.step_slot(0).await.unwrap(),
        Step::Waiting(SlotState::Pending)
    );
    assert_eq!(ex.run_round().await.unwrap(), 3);
    assert!(s
        .slot_mappings()
        .await
        .unwrap()
        .iter()
        .take(3)
        .all(|m| m.action.state == SlotState::Pending));
    // cancel one pending slot; a migrating one cannot be cancelled
    c.slot_cancel(Some(2)).await.unwrap();
    assert_eq!(
        s.slot_mapping(2).await.unwrap().action.state,
        SlotState::Nothing
    );
    c.control.set_paused(false);
    for _ in 0..3 {
        ex.step_slot(0).await.unwrap();
    }
    assert_eq!(
        s.slot_mapping(0).await.unwrap().action.state,
        SlotState::Migrating
    );
    let e = c.slot_cancel(Some(0)).await.unwrap_err();
    assert!(e.to_string().contains("cannot be cancelled"), "{e}");
    ex.run_until_idle(&AtomicBool::new(false)).await.unwrap();
    let slots = s.slot_mappings().await.unwrap();
    assert_eq!(
        slots.iter().take(4).map(|m| m.group_id).collect::<Vec<_>>(),
        vec![2, 2, 1, 1]
    );
}

#[tokio::test]
async fn real_drain_reports_a_server_without_slot_commands() {
    // A stock redis-server does not know SLOTSMGRTTAGSLOT-ASYNC: the error is clear and the
    // slot stays migrating, to be resumed later.
    let Some((src, _d1)) = testkit::redis_server(&[]) else {
        return;
    };
    let Some((dst, _d2)) = testkit::redis_server(&[]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path()).await;
    for (gid, p) in [(1, src.port), (2, dst.port)] {
        let mut g = s.group(gid).await.unwrap().unwrap();
        g.servers[0].addr = format!("127.0.0.1:{p}");
        s.update_group(&g).await.unwrap();
    }
    let c = ctx(s.clone());
    c.slot_migrate(1, 1, 2, None).await.unwrap();
    let ex = Executor::redis(c.clone());
    let e = ex.run_round().await.unwrap_err();
    assert!(e.to_string().contains("SLOTSMGRTTAGSLOT-ASYNC"), "{e}");
    assert_eq!(
        s.slot_mapping(1).await.unwrap().action.state,
        SlotState::Migrating
    );
    let d = ctl::executor::RedisDrain::new(Default::default(), String::new());
    assert_eq!(
        d.command(9, "10.0.0.1:6379").unwrap(),
        [
            "SLOTSMGRTTAGSLOT-ASYNC",
            "10.0.0.1",
            "6379",
            "5000",
            "200",
            "33554432",
            "9",
            "500"
        ]
    );
    let sync = ctl::config::MigrationSettings {
        method: ctl::config::MigrationMethod::Sync,
        ..Default::default()
    };
    let d = ctl::executor::RedisDrain::new(sync, String::new());
    assert_eq!(
        d.command(9, "h:1").unwrap(),
        ["SLOTSMGRTTAGSLOT", "h", "1", "30000", "9"]
    );
}

/// Slots moving between the same two groups run in one batch (one round finishes them all); a
/// slot from the same source to another group waits for the next round.
#[tokio::test]
async fn slots_between_the_same_groups_move_together() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path()).await;
    s.update_group(&Group {
        id: 3,
        servers: vec![GroupServer {
            addr: "127.0.0.1:1003".into(),
            ..Default::default()
        }],
        ..Default::default()
    })
    .await
    .unwrap();
    let drain = Arc::new(FakeDrain::default());
    for sid in 0..4 {
        drain.keys.lock().unwrap().insert(sid, 7);
    }
    let c = ctx(s.clone());
    c.slot_migrate(0, 3, 2, None).await.unwrap();
    c.slot_migrate(4, 4, 3, None).await.unwrap();
    let ex = Executor::new(c.clone(), drain.clone());
    assert_eq!(ex.run_round().await.unwrap(), 5);
    let slots = s.slot_mappings().await.unwrap();
    for m in slots.iter().take(4) {
        assert_eq!(
            (m.group_id, m.action.state),
            (2, SlotState::Nothing),
            "slot {}",
            m.id
        );
    }
    assert_eq!(
        *drain.moved.lock().unwrap(),
        28,
        "every key of the batch moved"
    );
    assert_eq!(
        (slots[4].group_id, slots[4].action.state),
        (1, SlotState::Pending),
        "group 1 was busy with group 2"
    );
}

/// `migration_drain_parallel` 0 (the default): one drain per executor core of the source master,
/// from its INFO `executor_cores`; 1 for a server that does not report it.
#[tokio::test]
async fn drain_parallelism_follows_the_source_cores() {
    let d = ctl::executor::RedisDrain::new(Default::default(), String::new());
    assert_eq!(ctl::config::MigrationSettings::default().drain_parallel, 0);
    let two = testkit::codis_server(&["--cores", "2"]);
    assert_eq!(d.parallelism(&format!("127.0.0.1:{}", two.port)).await, 2);
    let one = testkit::codis_server(&["--cores", "1"]);
    assert_eq!(d.parallelism(&format!("127.0.0.1:{}", one.port)).await, 1);
    if let Some((r, _dir)) = testkit::redis_server(&[]) {
        assert_eq!(d.parallelism(&format!("127.0.0.1:{}", r.port)).await, 1);
    }
    // Unreachable: 1, not an error (the drain itself reports the failure).
    let gone = testkit::free_port();
    assert_eq!(d.parallelism(&format!("127.0.0.1:{gone}")).await, 1);
}
