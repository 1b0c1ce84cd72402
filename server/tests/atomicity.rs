//! Multi-key commands whose keys live on different cores are atomic: while one client keeps
//! writing, readers never observe half of a write (a two-core codis-server; keys picked by
//! `slot % 2`, the owner rule of a fresh server).

mod rawwire;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const RUN: Duration = Duration::from_millis(2500);

#[test]
fn mset_is_seen_whole_by_mget() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let (k1, k2) = rawwire::keys_on_two_cores("atom");
    assert_ne!(resp::slot(k1.as_bytes()) % 2, resp::slot(k2.as_bytes()) % 2);
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let writer = {
        let (mut c, stop, writes) = (srv.conn(), stop.clone(), writes.clone());
        let (k1, k2) = (k1.clone(), k2.clone());
        thread::spawn(move || {
            let mut v: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                v += 1;
                let _: () = redis::cmd("MSET")
                    .arg(&k1)
                    .arg(v)
                    .arg(&k2)
                    .arg(v)
                    .query(&mut c)
                    .expect("MSET");
                writes.store(v, Ordering::Relaxed);
            }
        })
    };
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (mut c, stop) = (srv.conn(), stop.clone());
            let (k1, k2) = (k1.clone(), k2.clone());
            thread::spawn(move || {
                let mut reads = 0u64;
                let mut last = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let v: Vec<Option<u64>> = redis::cmd("MGET")
                        .arg(&k1)
                        .arg(&k2)
                        .query(&mut c)
                        .expect("MGET");
                    assert_eq!(v[0], v[1], "MGET saw half an MSET");
                    let cur = v[0].unwrap_or(0);
                    assert!(cur >= last, "values went backwards: {last} then {cur}");
                    last = cur;
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    thread::sleep(RUN);
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    let reads: u64 = readers.into_iter().map(|r| r.join().expect("reader")).sum();
    assert!(writes.load(Ordering::Relaxed) > 10, "the writer barely ran");
    assert!(reads > 10, "the readers barely ran");
}

#[test]
fn rename_ping_pong_keeps_exactly_one_key() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let (a, b) = rawwire::keys_on_two_cores("pp");
    let mut c = srv.conn();
    let _: () = redis::cmd("SET")
        .arg(&a)
        .arg("payload")
        .query(&mut c)
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let renamer = {
        let (mut c, stop) = (srv.conn(), stop.clone());
        let (a, b) = (a.clone(), b.clone());
        thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (from, to) = if n.is_multiple_of(2) {
                    (&a, &b)
                } else {
                    (&b, &a)
                };
                let _: () = redis::cmd("RENAME")
                    .arg(from)
                    .arg(to)
                    .query(&mut c)
                    .expect("RENAME");
                n += 1;
            }
            n
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|i| {
            let (mut c, stop) = (srv.conn(), stop.clone());
            let (a, b) = (a.clone(), b.clone());
            thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if i == 0 {
                        let n: i64 = redis::cmd("EXISTS").arg(&a).arg(&b).query(&mut c).unwrap();
                        assert_eq!(n, 1, "EXISTS a b during RENAME ping-pong");
                    } else {
                        let v: Vec<Option<String>> =
                            redis::cmd("MGET").arg(&a).arg(&b).query(&mut c).unwrap();
                        let present: Vec<_> = v.iter().flatten().collect();
                        assert_eq!(present, vec!["payload"], "MGET a b saw {v:?}");
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    thread::sleep(RUN);
    stop.store(true, Ordering::Relaxed);
    let renames = renamer.join().expect("renamer");
    let reads: u64 = readers.into_iter().map(|r| r.join().expect("reader")).sum();
    assert!(
        renames > 10 && reads > 10,
        "renames {renames}, reads {reads}"
    );
    let n: i64 = redis::cmd("EXISTS").arg(&a).arg(&b).query(&mut c).unwrap();
    assert_eq!(n, 1);
}

/// MSETNX and DEL across cores: all or nothing, as seen by a concurrent reader.
#[test]
fn msetnx_and_del_are_all_or_nothing() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let (k1, k2) = rawwire::keys_on_two_cores("nx");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (mut c, stop) = (srv.conn(), stop.clone());
        let (k1, k2) = (k1.clone(), k2.clone());
        thread::spawn(move || {
            let mut rounds = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let set: i64 = redis::cmd("MSETNX")
                    .arg(&k1)
                    .arg(rounds)
                    .arg(&k2)
                    .arg(rounds)
                    .query(&mut c)
                    .expect("MSETNX");
                assert_eq!(set, 1, "keys were deleted, MSETNX must succeed");
                let del: i64 = redis::cmd("DEL")
                    .arg(&k1)
                    .arg(&k2)
                    .query(&mut c)
                    .expect("DEL");
                assert_eq!(del, 2);
                rounds += 1;
            }
            rounds
        })
    };
    let mut c = srv.conn();
    let start = Instant::now();
    let mut seen_both = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        let v: Vec<Option<u64>> = redis::cmd("MGET").arg(&k1).arg(&k2).query(&mut c).unwrap();
        assert_eq!(v[0], v[1], "saw half of MSETNX or DEL: {v:?}");
        seen_both += v[0].is_some() as u64;
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = writer.join().expect("writer");
    assert!(rounds > 10, "only {rounds} rounds");
    let _ = seen_both;
}

/// Concurrent multi-core commands run in groups under shared holds (group commit): each one
/// stays atomic. Eight clients move members between two sets on different cores with SMOVE
/// (a read-modify-write of both keys) while MSETs of key pairs across cores run beside them;
/// no member is lost or duplicated, and INFO shows that commands shared groups.
#[test]
fn grouped_multi_core_commands_stay_atomic() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let (a, b) = rawwire::keys_on_two_cores("grp");
    let mut c = srv.conn();
    let members: Vec<u32> = (0..200).collect();
    let _: i64 = redis::cmd("SADD")
        .arg(&a)
        .arg(&members)
        .query(&mut c)
        .unwrap();
    let stat = |c: &mut redis::Connection, f: &str| -> u64 {
        let info: String = redis::cmd("INFO").arg("stats").query(c).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{f}:")))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let cmds0 = stat(&mut c, "multi_core_commands");
    let groups0 = stat(&mut c, "multi_core_groups");
    let workers: Vec<_> = (0..8u32)
        .map(|w| {
            let mut c = srv.conn();
            let (a, b) = (a.clone(), b.clone());
            thread::spawn(move || {
                let start = Instant::now();
                let mut i = w;
                while start.elapsed() < RUN {
                    let m = (i * 37) % 200;
                    let (from, to) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
                    let _: i64 = redis::cmd("SMOVE")
                        .arg(from)
                        .arg(to)
                        .arg(m)
                        .query(&mut c)
                        .unwrap();
                    let (x, y) = rawwire::keys_on_two_cores(&format!("pair{w}"));
                    let _: () = redis::cmd("MSET")
                        .arg(&x)
                        .arg(i)
                        .arg(&y)
                        .arg(i)
                        .query(&mut c)
                        .unwrap();
                    let v: Vec<u32> = redis::cmd("MGET").arg(&x).arg(&y).query(&mut c).unwrap();
                    assert_eq!(v, vec![i, i], "client {w} read its own MSET back wrong");
                    i += 8;
                }
            })
        })
        .collect();
    for h in workers {
        h.join().unwrap();
    }
    let na: i64 = redis::cmd("SCARD").arg(&a).query(&mut c).unwrap();
    let nb: i64 = redis::cmd("SCARD").arg(&b).query(&mut c).unwrap();
    let both: Vec<u32> = redis::cmd("SINTER").arg(&a).arg(&b).query(&mut c).unwrap();
    assert_eq!(na + nb, 200, "members lost or duplicated: {na} + {nb}");
    assert!(both.is_empty(), "members in both sets: {both:?}");
    let cmds = stat(&mut c, "multi_core_commands") - cmds0;
    let groups = stat(&mut c, "multi_core_groups") - groups0;
    assert!(cmds > 100, "only {cmds} multi-core commands ran");
    assert!(
        groups < cmds,
        "{cmds} multi-core commands from 8 clients never shared a group ({groups} groups)"
    );
}
