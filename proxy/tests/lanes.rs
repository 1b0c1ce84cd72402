//! Lanes: in front of a codis-server running several cores, the proxy keeps one connection per
//! server core (`CLIENT CORE n`) and sends each request to the connection of the core owning its
//! slot (`SLOTSMOVE OWNERS`), so no request hops between the server's cores. When slots change
//! cores (`SLOTSMOVE`), the proxy follows without reordering a client's pipelined requests.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Cluster;
use redis::Commands;

/// `INFO stats` field `cross_core_commands` of a server: requests its cores forwarded to the
/// core owning their slot.
fn cross_core(c: &Cluster, gid: u32) -> u64 {
    let mut b = c.backend(gid);
    let info: String = redis::cmd("INFO").arg("stats").query(&mut b).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cross_core_commands:"))
        .expect("cross_core_commands in INFO stats")
        .trim()
        .parse()
        .unwrap()
}

/// Each server has at most one connection per proxy core (the proxy runs two) besides the one
/// asking.
fn assert_one_connection_per_proxy_core(c: &Cluster) {
    for gid in [1, 2] {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut c.backend(gid))
            .unwrap();
        let n = list.lines().count();
        assert!(n <= 3, "group {gid} has {n} connections:\n{list}");
    }
}

fn total_cross_core(c: &Cluster) -> u64 {
    cross_core(c, 1) + cross_core(c, 2)
}

/// Sends a request on many connections, so that every proxy core connects its lanes and
/// learns the owners, then lets the owner tables settle.
fn warm_up(c: &Cluster) {
    for i in 0..16 {
        let mut p = c.conn();
        let _: Option<String> = p.get(format!("warm:{i}")).unwrap();
        let _: Option<String> = p.get(format!("warm:{}", i + 100)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..16 {
        let mut p = c.conn();
        let _: Option<String> = p.get(format!("warm:{i}")).unwrap();
    }
}

#[test]
fn requests_reach_the_core_owning_their_slot() {
    let c = Cluster::start_cores("", 2);
    warm_up(&c);
    // Direct clients hop between cores: the counter works.
    let mut direct = c.backend(1);
    let before = cross_core(&c, 1);
    let mut pipe = redis::pipe();
    for i in 0..200 {
        pipe.get(format!("direct:{i}"));
    }
    let _: Vec<Option<String>> = pipe.query(&mut direct).unwrap();
    assert!(
        cross_core(&c, 1) > before,
        "a direct connection to a 2-core server never hopped between cores"
    );

    let base = total_cross_core(&c);
    let mut p = c.conn();
    let keys: Vec<String> = (0..2000).map(|i| format!("lane:{i}")).collect();
    for chunk in keys.chunks(100) {
        let mut pipe = redis::pipe();
        for k in chunk {
            pipe.set(k, format!("v-{k}")).ignore();
        }
        pipe.query::<()>(&mut p).unwrap();
    }
    for chunk in keys.chunks(100) {
        let mut pipe = redis::pipe();
        for k in chunk {
            pipe.get(k);
        }
        let got: Vec<String> = pipe.query(&mut p).unwrap();
        for (k, v) in chunk.iter().zip(got) {
            assert_eq!(v, format!("v-{k}"));
        }
    }
    // MGET and DEL split per server core and merge in key order.
    let some: Vec<&String> = keys.iter().step_by(7).take(50).collect();
    let got: Vec<String> = p.mget(&some).unwrap();
    for (k, v) in some.iter().zip(&got) {
        assert_eq!(v, &format!("v-{k}"));
    }
    let n: i64 = p.del(&some).unwrap();
    assert_eq!(n, 50);
    // Keys live on both cores of both servers.
    let owners: Vec<i64> = redis::cmd("SLOTSMOVE")
        .arg("OWNERS")
        .query(&mut c.backend(1))
        .unwrap();
    let cores: std::collections::HashSet<i64> = keys
        .iter()
        .map(|k| owners[resp::slot(k.as_bytes()) as usize])
        .collect();
    assert_eq!(cores.len(), 2, "the keys should cover both cores");
    let hops = total_cross_core(&c) - base;
    assert!(
        hops <= 40,
        "{hops} of 4,100 requests through the proxy hopped between server cores"
    );
}

#[test]
fn lanes_follow_slot_moves_without_reordering() {
    let c = Cluster::start_cores(
        "backend_ping_period = \"100ms\"\nbackend_max_pipeline = 4\n",
        2,
    );
    warm_up(&c);
    let keys: Vec<String> = (0..8).map(|i| format!("{{order}}:{i}")).collect();
    let slot = resp::slot(b"order");
    let gid = Cluster::group_of("order");
    // Flip the tag's slot between the server's cores while a client appends in pipelines.
    let stop = Arc::new(AtomicBool::new(false));
    let mover = {
        let stop = stop.clone();
        let mut b = c.backend(gid);
        std::thread::spawn(move || {
            let mut moves = 0;
            let mut core = 0;
            while !stop.load(Ordering::Relaxed) {
                core = 1 - core;
                let _: i64 = redis::cmd("SLOTSMOVE")
                    .arg(slot)
                    .arg(core)
                    .query(&mut b)
                    .unwrap();
                moves += 1;
                std::thread::sleep(Duration::from_millis(15));
            }
            moves
        })
    };
    let mut p = c.conn();
    let mut want = vec![String::new(); keys.len()];
    let started = Instant::now();
    let mut i = 0u64;
    while started.elapsed() < Duration::from_secs(4) {
        let mut pipe = redis::pipe();
        for _ in 0..64 {
            let k = (i % keys.len() as u64) as usize;
            pipe.append(&keys[k], format!("{i},")).ignore();
            want[k].push_str(&format!("{i},"));
            i += 1;
        }
        pipe.query::<()>(&mut p).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let moves = mover.join().unwrap();
    assert!(moves > 10, "only {moves} slot moves happened");
    for (k, w) in keys.iter().zip(&want) {
        let got: String = p.get(k).unwrap();
        assert!(
            got == *w,
            "{k}: appends out of order ({} of {} bytes)",
            got.len(),
            w.len()
        );
    }
    // Once the slot stays put (on core 1: lane 0 would hop), every proxy core's lanes learn
    // its owner at the next keepalive.
    let _: i64 = redis::cmd("SLOTSMOVE")
        .arg(slot)
        .arg(1)
        .query(&mut c.backend(gid))
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    warm_up(&c);
    let base = cross_core(&c, gid);
    for _ in 0..10 {
        let mut pipe = redis::pipe();
        for k in &keys {
            pipe.get(k);
        }
        let _: Vec<String> = pipe.query(&mut p).unwrap();
    }
    let hops = cross_core(&c, gid) - base;
    assert!(
        hops <= 2,
        "{hops} of 80 GETs hopped after the owners were refreshed"
    );
}

/// `backend_core_lanes = false`: one connection per server, requests hop as Codis's would.
#[test]
fn lanes_can_be_switched_off() {
    let c = Cluster::start_cores("backend_core_lanes = false\n", 2);
    warm_up(&c);
    let base = total_cross_core(&c);
    let mut p = c.conn();
    let mut pipe = redis::pipe();
    for i in 0..400 {
        pipe.set(format!("off:{i}"), i).ignore();
    }
    pipe.query::<()>(&mut p).unwrap();
    let hops = total_cross_core(&c) - base;
    assert!(hops >= 100, "only {hops} of 400 SETs hopped without lanes");
    assert_one_connection_per_proxy_core(&c);
}

/// A redis-server knows neither `CLIENT CORE` nor `SLOTSMOVE OWNERS`: one connection per
/// server, as before lanes.
#[test]
fn a_redis_server_behind_the_proxy_gets_one_connection() {
    let Some(c) = Cluster::start_redis("backend_ping_period = \"200ms\"\n") else {
        return;
    };
    let mut p = c.conn();
    for i in 0..200 {
        let _: () = p.set(format!("one:{i}"), i).unwrap();
    }
    let keys: Vec<String> = (0..200).map(|i| format!("one:{i}")).collect();
    let got: Vec<i64> = p.mget(&keys).unwrap();
    assert_eq!(got, (0..200).collect::<Vec<i64>>());
    // Keepalives go on as PINGs.
    std::thread::sleep(Duration::from_millis(600));
    let got: i64 = p.get("one:7").unwrap();
    assert_eq!(got, 7);
    assert_one_connection_per_proxy_core(&c);
}
