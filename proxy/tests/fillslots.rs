//! The fillslots admin API (`PUT /api/proxy/fillslots/{xauth}`): a pushed slot state is applied
//! on every core before the reply (a `prepared` slot holds requests, which are released by the
//! next push and counted in the stats), the proxy ignores coordinator snapshots older than what
//! was pushed, and a wrong xauth is refused.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Cluster, PRODUCT};
use coord::{FillSlots, Group, GroupServer, SlotAction, SlotMapping, SlotState};
use redis::Commands;

/// `PUT path` with a JSON body on the admin port: (status, body).
fn put(c: &Cluster, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", c.admin_port)).expect("admin port");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "PUT {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The proxy's fillslots path (with its xauth).
fn fill_path(c: &Cluster) -> String {
    let xauth = proxy::identity::codis_xauth(&[PRODUCT, "", &c.token()]);
    format!("/api/proxy/fillslots/{xauth}")
}

fn groups(c: &Cluster) -> Vec<Group> {
    [1u32, 2]
        .iter()
        .map(|&gid| Group {
            id: gid,
            servers: vec![GroupServer {
                addr: c.server_addr(gid),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect()
}

fn slot_json(c: &Cluster, slot: u32) -> serde_json::Value {
    let (st, body) = c.http("GET", "/proxy/slots");
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v[slot as usize].clone()
}

#[test]
fn pushed_states_apply_before_the_reply_and_hold_requests_only_while_locked() {
    let c = Cluster::start("");
    let path = fill_path(&c);

    // A key of group 1, on the source.
    let k = (0..)
        .map(|i| format!("fill{i}"))
        .find(|k| Cluster::group_of(k) == 1)
        .unwrap();
    let slot = resp::slot(k.as_bytes()) as u32;
    let _: () = c.backend(1).set(&k, "v1").unwrap();

    // Versions far ahead of the coordinator's, so only the push can explain what is applied.
    let base = c.rt.block_on(c.store.version()).unwrap() + 5;
    let fill = |version: u64, m: SlotMapping| {
        serde_json::to_vec(&FillSlots {
            version,
            slots: vec![m],
            groups: groups(&c),
        })
        .unwrap()
    };
    let action = |state| SlotMapping {
        id: slot,
        group_id: 1,
        action: SlotAction {
            index: 7,
            state,
            target_id: 2,
        },
    };

    // A wrong xauth is refused and changes nothing.
    let (st, _) = put(
        &c,
        "/api/proxy/fillslots/wrong",
        &fill(base, action(SlotState::Prepared)),
    );
    assert_eq!(st, 403);
    assert_eq!(slot_json(&c, slot)["locked"], false);

    // prepared: applied (locked) when the reply comes.
    let (st, body) = put(&c, &path, &fill(base, action(SlotState::Prepared)));
    assert_eq!(st, 200, "{body}");
    let s = slot_json(&c, slot);
    assert_eq!(
        (s["state"].as_str(), s["locked"].as_bool()),
        (Some("prepared"), Some(true)),
        "{s}"
    );

    // A request for the slot is held ...
    let mut conn = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    conn.write_all(format!("GET {k}\r\n").as_bytes()).unwrap();
    let mut buf = [0u8; 256];
    assert!(
        conn.read(&mut buf).is_err(),
        "a request for a locked slot was answered"
    );
    // ... while other slots are served.
    let other = (0..)
        .map(|i| format!("other{i}"))
        .find(|k| resp::slot(k.as_bytes()) as u32 != slot)
        .unwrap();
    let mut p = c.conn();
    let _: () = p.set(&other, "x").unwrap();

    // A coordinator write (older version than pushed) does not undo the push.
    c.rt.block_on(c.store.update_slot_mapping(&SlotMapping {
        id: slot,
        group_id: 1,
        ..Default::default()
    }))
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(slot_json(&c, slot)["locked"], true);

    // migrating: the held request is released and answered from the source.
    let (st, body) = put(&c, &path, &fill(base + 1, action(SlotState::Migrating)));
    assert_eq!(st, 200, "{body}");
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let n = conn.read(&mut buf).expect("the held request is answered");
    assert_eq!(&buf[..n], b"$2\r\nv1\r\n");
    let st = c.stats();
    assert!(st["slot_lock_holds"].as_u64().unwrap() >= 1, "{st}");
    assert!(st["slot_lock_hold_usecs_max"].as_u64().unwrap() > 0, "{st}");

    // Done: the slot belongs to group 2; writes land there.
    let (st, body) = put(
        &c,
        &path,
        &fill(
            base + 2,
            SlotMapping {
                id: slot,
                group_id: 2,
                ..Default::default()
            },
        ),
    );
    assert_eq!(st, 200, "{body}");
    let _: () = p.set(&k, "v2").unwrap();
    assert_eq!(
        c.backend(2)
            .get::<_, Option<String>>(&k)
            .unwrap()
            .as_deref(),
        Some("v2")
    );

    // A coordinator snapshot as new as the push takes over again (source of truth).
    let start = Instant::now();
    loop {
        let v = c.rt.block_on(c.store.bump_version()).unwrap();
        if v > base + 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "bumping the version"
        );
    }
    let start = Instant::now();
    while slot_json(&c, slot)["backend_addr"] != c.server_addr(1) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the coordinator's newer snapshot was not applied"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A push that holds the one write after the proxy's topology makes it whole: the coordinator
/// watch does not read the topology back for that write (it used to re-read every slot node after
/// each migration step). A write no push announced is still read back and applied.
#[test]
fn a_pushed_version_is_not_read_back_but_an_unannounced_write_is() {
    let c = Cluster::start("");
    let path = fill_path(&c);
    // Settled: the proxy runs the coordinator's current version (its registration included).
    let start = Instant::now();
    let version = loop {
        let v = c.rt.block_on(c.store.version()).unwrap();
        if c.stats()["topology_version"].as_u64() == Some(v) {
            std::thread::sleep(Duration::from_millis(300));
            if c.rt.block_on(c.store.version()).unwrap() == v {
                break v;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the proxy did not settle on the coordinator's version: {}",
            c.stats()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let reads = c.stats()["topology_reads"].as_u64().unwrap();
    let slot = 77u32;
    let m = |state| SlotMapping {
        id: slot,
        group_id: 1,
        action: SlotAction {
            index: 3,
            state,
            target_id: 2,
        },
    };

    // The push of version+1 first, then the very write it announced.
    let body = serde_json::to_vec(&FillSlots {
        version: version + 1,
        slots: vec![m(SlotState::Preparing)],
        groups: groups(&c),
    })
    .unwrap();
    let (st, body) = put(&c, &path, &body);
    assert_eq!(st, 200, "{body}");
    let written =
        c.rt.block_on(
            c.store
                .update_slot_mappings_versioned(&[m(SlotState::Preparing)]),
        )
        .unwrap();
    assert_eq!(written, version + 1);
    // Long enough for the watch to see the write (it reads the version node, then stops).
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        c.stats()["topology_reads"].as_u64().unwrap(),
        reads,
        "a pushed version was read back from the coordinator"
    );
    assert_eq!(slot_json(&c, slot)["state"], "preparing");

    // A write nobody pushed: read back and applied.
    c.rt.block_on(c.store.update_slot_mapping(&m(SlotState::Pending)))
        .unwrap();
    let start = Instant::now();
    while slot_json(&c, slot)["state"] != "pending" {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "an unannounced coordinator write was not applied: {}",
            slot_json(&c, slot)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(c.stats()["topology_reads"].as_u64().unwrap() > reads);
}

/// A push overtaken by a newer one (both written, the newer pushed first) is confirmed only once
/// the proxy runs its records: the running table was merged from the newer push alone, so the
/// proxy reads the topology back before answering instead of answering from that table.
#[test]
fn an_overtaken_push_is_confirmed_only_with_its_records() {
    let c = Cluster::start("");
    let path = fill_path(&c);
    let start = Instant::now();
    while c.stats()["online"] != true {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "proxy not online"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = |slot: u32| SlotMapping {
        id: slot,
        group_id: 1,
        action: SlotAction {
            index: slot as u64,
            state: SlotState::Preparing,
            target_id: 2,
        },
    };
    let fill = |version: u64, slot: u32| {
        serde_json::to_vec(&FillSlots {
            version,
            slots: vec![m(slot)],
            groups: groups(&c),
        })
        .unwrap()
    };
    // The proxy's registration bumps the version too: wait until it is done, so that only
    // this test writes from here on.
    while c.rt.block_on(c.store.alive()).unwrap().is_empty()
        || c.rt.block_on(c.store.proxies()).unwrap().is_empty()
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "proxy not registered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let v = c.rt.block_on(c.store.version()).unwrap();
    // The newer push (slot 91 at v+2) arrives first, before either write is even made.
    let (st, body) = put(&c, &path, &fill(v + 2, 91));
    assert_eq!(st, 200, "{body}");
    assert_eq!(slot_json(&c, 91)["state"], "preparing");
    assert_eq!(slot_json(&c, 90)["state"], "");
    let w1 =
        c.rt.block_on(c.store.update_slot_mappings_versioned(&[m(90)]))
            .unwrap();
    let w2 =
        c.rt.block_on(c.store.update_slot_mappings_versioned(&[m(91)]))
            .unwrap();
    assert_eq!(
        (w1, w2),
        (v + 1, v + 2),
        "another writer bumped the version"
    );
    // The overtaken push of v+1: its slot must be applied when the reply comes.
    let (st, body) = put(&c, &path, &fill(v + 1, 90));
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        slot_json(&c, 90)["state"],
        "preparing",
        "the overtaken push was confirmed from a table without its records"
    );
    assert_eq!(slot_json(&c, 91)["state"], "preparing");
}
