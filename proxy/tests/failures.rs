//! Faults and changes under load: a backend killed and restarted, the coordinator gone, a
//! topology change (prepared lock, then reassignment) with no request lost or misrouted, and
//! the admin HTTP / registration view.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{server_on, Cluster};
use coord::{SlotAction, SlotMapping, SlotState};
use redis::Commands;

/// A key owned by group `gid`.
fn key_in(gid: u32, tag: &str) -> String {
    (0..)
        .map(|i| format!("{tag}{i}"))
        .find(|k| Cluster::group_of(k) == gid)
        .unwrap()
}

/// One request on an open connection; the reply text (a single read).
fn ask(s: &mut TcpStream, req: &str) -> String {
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s
        .read(&mut buf)
        .expect("reply within the read timeout (no hang)");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn backend_killed_and_restarted_under_load() {
    let mut c = Cluster::start("");
    let k1 = key_in(1, "a");
    let k2 = key_in(2, "b");
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicUsize::new(0));
    let oks = Arc::new(AtomicUsize::new(0));
    let port = c.port;
    let load = {
        let (stop, errors, oks) = (stop.clone(), errors.clone(), oks.clone());
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let k = format!("load{}", i % 64);
                let r = ask(&mut s, &format!("SET {k} {i}\r\n"));
                if r == "+OK\r\n" {
                    oks.fetch_add(1, Ordering::Relaxed);
                } else {
                    assert!(r.starts_with("-ERR handle "), "unexpected reply {r:?}");
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        })
    };
    let mut s = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(ask(&mut s, &format!("SET {k1} one\r\n")), "+OK\r\n");
    assert_eq!(ask(&mut s, &format!("SET {k2} two\r\n")), "+OK\r\n");
    let port1 = c.servers[0].port;
    c.servers[0].kill();
    // Group 1 fails fast with a clear error; group 2 keeps serving; the connection stays open.
    let r = ask(&mut s, &format!("GET {k1}\r\n"));
    assert!(r.starts_with("-ERR handle "), "{r}");
    assert!(r.contains(&format!("127.0.0.1:{port1}")), "{r}");
    assert_eq!(ask(&mut s, &format!("GET {k2}\r\n")), "$3\r\ntwo\r\n");
    std::thread::sleep(Duration::from_millis(300));
    // Restart on the same port: the proxy reconnects by itself.
    c.servers[0] = server_on(port1);
    let start = Instant::now();
    loop {
        let r = ask(&mut s, &format!("SET {k1} back\r\n"));
        if r == "+OK\r\n" {
            break;
        }
        assert!(r.starts_with("-ERR handle "), "{r}");
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no recovery: {r}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(ask(&mut s, &format!("GET {k1}\r\n")), "$4\r\nback\r\n");
    let before = oks.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    assert!(oks.load(Ordering::Relaxed) > before, "load did not recover");
    assert!(errors.load(Ordering::Relaxed) > 0 || before > 0);
}

#[test]
fn coordinator_gone_keeps_serving() {
    let c = Cluster::start("");
    let mut p = c.conn();
    let _: () = p.set("x", "1").unwrap();
    // The coordinator's data disappears at once (renamed away, then deleted).
    let gone = c.dir.path().join("gone");
    std::fs::rename(&c.coord_dir, &gone).unwrap();
    let _ = std::fs::remove_dir_all(&gone);
    std::thread::sleep(Duration::from_millis(1500));
    for i in 0..100 {
        let k = format!("after{i}");
        let _: () = p.set(&k, i).unwrap();
        assert_eq!(p.get::<_, i64>(&k).unwrap(), i);
    }
    assert_eq!(p.get::<_, String>("x").unwrap(), "1");
    let mut fresh = c.conn();
    assert_eq!(fresh.get::<_, String>("x").unwrap(), "1");
    assert_eq!(c.stats()["online"], true);
}

#[test]
fn topology_change_under_load_loses_and_misroutes_nothing() {
    let c = Cluster::start("");
    let token = c.token();
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let port = c.port;
    let writer = {
        let (stop, written) = (stop.clone(), written.clone());
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(
                    ask(&mut s, &format!("SET w{i} {i}\r\n")),
                    "+OK\r\n",
                    "write {i}"
                );
                i += 1;
                written.store(i, Ordering::Relaxed);
            }
        })
    };
    while written.load(Ordering::Relaxed) < 300 {
        std::thread::sleep(Duration::from_millis(10));
    }
    // prepared: the proxy locks slots 0..512, drains, and acknowledges.
    let prepared: Vec<SlotMapping> = (0..512)
        .map(|id| SlotMapping {
            id,
            group_id: 1,
            action: SlotAction {
                index: 1,
                state: SlotState::Prepared,
                target_id: 2,
            },
        })
        .collect();
    c.rt.block_on(c.store.update_slot_mappings(&prepared))
        .unwrap();
    let start = Instant::now();
    loop {
        let acks = c.rt.block_on(c.store.acks()).unwrap();
        if acks
            .get(&token)
            .is_some_and(|a| prepared.iter().all(|m| a.has_applied(m)))
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no acknowledgement"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    // Then the slots move to group 2 (as after a finished migration).
    let moved: Vec<SlotMapping> = (0..512)
        .map(|id| SlotMapping {
            id,
            group_id: 2,
            ..Default::default()
        })
        .collect();
    c.rt.block_on(c.store.update_slot_mappings(&moved)).unwrap();
    let at = written.load(Ordering::Relaxed);
    while written.load(Ordering::Relaxed) < at + 300 {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let n = written.load(Ordering::Relaxed);
    let mut b1 = c.backend(1);
    let mut b2 = c.backend(2);
    let mut seen_on_2 = false;
    let mut moved_keys = 0;
    for i in 0..n {
        let k = format!("w{i}");
        let on1: Option<usize> = b1.get(&k).unwrap();
        let on2: Option<usize> = b2.get(&k).unwrap();
        assert!(on1.is_some() != on2.is_some(), "{k} lost or duplicated");
        assert_eq!(on1.or(on2), Some(i));
        if resp::slot(k.as_bytes()) < 512 {
            // In write order: group 1 until the switch, group 2 after, never back.
            if on2.is_some() {
                seen_on_2 = true;
                moved_keys += 1;
            } else {
                assert!(!seen_on_2, "{k} written to the old owner after the switch");
            }
        } else {
            assert!(on2.is_some(), "{k} misrouted");
        }
    }
    assert!(moved_keys > 0);
}

#[test]
fn admin_http_metrics_and_registration() {
    let c = Cluster::start("slowlog_slower_than = \"0\"\n");
    let mut p = c.conn();
    for i in 0..50 {
        let _: () = p.set(format!("s{i}"), i).unwrap();
    }
    let st = c.stats();
    assert!(st["ops_total"].as_u64().unwrap() >= 50, "{st}");
    assert!(st["cmds"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["opstr"] == "SET"));
    assert!(
        st["latency_usecs"]["count"].as_u64().unwrap() > 0 || st["ops_total"].as_u64().unwrap() > 0
    );
    let (code, metrics) = c.http("GET", "/metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains("codis_proxy_ops_total "), "{metrics}");
    assert!(
        metrics.contains("codis_proxy_cmd_calls_total{cmd=\"SET\"}"),
        "{metrics}"
    );
    let (code, body) = c.http("GET", "/proxy");
    assert_eq!(code, 200);
    let overview: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(overview["model"]["product_name"], common::PRODUCT);
    assert_eq!(overview["slots"].as_array().unwrap().len(), 1024);
    let (code, body) = c.http("GET", "/proxy/slowlog");
    assert_eq!(code, 200);
    assert!(body.contains("SET"), "{body}");
    let (code, _) = c.http("GET", "/api/proxy/xping/wrong");
    assert_eq!(code, 403);
    // Registration, liveness and acknowledgement in the coordinator.
    let token = overview["model"]["token"].as_str().unwrap().to_string();
    let start = Instant::now();
    loop {
        let proxies = c.rt.block_on(c.store.proxies()).unwrap();
        let alive = c.rt.block_on(c.store.alive()).unwrap();
        let acks = c.rt.block_on(c.store.acks()).unwrap();
        let version = c.rt.block_on(c.store.version()).unwrap();
        if proxies
            .get(&token)
            .is_some_and(|m| m.proxy_addr == format!("127.0.0.1:{}", c.port))
            && alive.contains_key(&token)
            && acks
                .get(&token)
                .is_some_and(|a| a.topology_version == version)
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not registered: {proxies:?} {alive:?} {acks:?} v{version}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Liveness is re-created if it disappears (as after a session loss).
    c.rt.block_on(c.store.unregister_alive(&token)).unwrap();
    let start = Instant::now();
    while !c.rt.block_on(c.store.alive()).unwrap().contains_key(&token) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "liveness not re-created"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn migrating_slot_consults_the_source_first() {
    let c = Cluster::start("");
    let token = c.token();
    let k = key_in(1, "mig");
    let slot = resp::slot(k.as_bytes()) as u32;
    let mut s = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(ask(&mut s, &format!("SET {k} v\r\n")), "+OK\r\n");
    let m = SlotMapping {
        id: slot,
        group_id: 1,
        action: SlotAction {
            index: 1,
            state: SlotState::Migrating,
            target_id: 2,
        },
    };
    c.rt.block_on(c.store.update_slot_mapping(&m)).unwrap();
    let start = Instant::now();
    while !c
        .rt
        .block_on(c.store.acks())
        .unwrap()
        .get(&token)
        .is_some_and(|a| a.has_applied(&m))
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no acknowledgement"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The proxy asks the source (SLOTSMGRT-EXEC-WRAPPER) before the target: either the source
    // serves it, or — on a server without the migration commands — its refusal comes back.
    let r = ask(&mut s, &format!("GET {k}\r\n"));
    assert!(
        r == "$1\r\nv\r\n" || r.to_lowercase().contains("slotsmgrt-exec-wrapper"),
        "{r}"
    );
    let mapping = ask(&mut s, &format!("SLOTSMAPPING {slot}\r\n"));
    assert!(
        mapping.contains(&c.server_addr(1)) && mapping.contains(&c.server_addr(2)),
        "{mapping}"
    );
    // finished: the target alone.
    let f = SlotMapping {
        id: slot,
        group_id: 2,
        ..Default::default()
    };
    c.rt.block_on(c.store.update_slot_mapping(&f)).unwrap();
    let start = Instant::now();
    loop {
        if ask(&mut s, &format!("SET {k} t\r\n")) == "+OK\r\n"
            && c.backend(2)
                .get::<_, Option<String>>(&k)
                .unwrap()
                .as_deref()
                == Some("t")
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "slot never moved to the target"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
