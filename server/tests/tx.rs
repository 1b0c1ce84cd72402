//! Transactions over TCP on a two-core server: MULTI/EXEC/DISCARD replies byte for byte against a
//! real redis-server, WATCH invalidated by writers on either core, by expiry and FLUSHDB, and EXEC
//! atomic under concurrent writers and readers when its keys span both cores.

mod rawwire;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rawwire::{keys_on_two_cores, multibulk, split, Raw};

/// Run each line on one connection of both servers, comparing reply bytes.
fn differential(script: &str) {
    let Some((redis, _dir)) = testkit::redis_server(&[]) else {
        return;
    };
    let codis = testkit::codis_server(&["--cores", "2"]);
    let mut r = Raw::connect(redis.port);
    let mut c = Raw::connect(codis.port);
    let mut diffs = Vec::new();
    for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let args = split(line);
        let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        let req = multibulk(&refs);
        r.send(&req);
        c.send(&req);
        let (rr, cr) = (r.read(), c.read());
        if rr != cr {
            diffs.push(format!(
                "{line}\n    redis: {}\n    codis: {}",
                rr.show(),
                cr.show()
            ));
        }
    }
    assert!(diffs.is_empty(), "replies differ:\n{}", diffs.join("\n"));
}

#[test]
fn multi_exec_replies_match_redis() {
    // {a} and {b} tags: keys on both cores of the two-core server.
    differential(
        r#"
        MULTI
        MULTI
        WATCH x
        GET x
        EXEC
        EXEC
        DISCARD
        UNWATCH
        MULTI
        SET a 1
        INCR a
        LPUSH a x
        SET b 2
        MSET a 5 b 6 c 7
        MGET a b c nokey
        DEL a b c
        PING
        ECHO hi
        EXEC
        MULTI
        NOSUCH cmd
        GET a b
        SET a 1
        EXEC
        GET a
        MULTI
        SET a 1
        DISCARD
        GET a
        MULTI
        EXEC
        MULTI
        SELECT 1
        SET inone 1
        EXEC
        GET inone
        SELECT 0
        GET inone
        MULTI
        SET k v
        FLUSHDB
        SET k2 v2
        DBSIZE
        EXEC
        MULTI
        RPUSH l a b
        BLPOP l 0
        BLPOP l 0
        BLPOP l 0
        EXEC
        WATCH w1 w2
        MULTI
        SET w1 x
        EXEC
        "#,
    );
}

/// Another client changes a watched key (on either core): EXEC answers a null array and runs nothing.
#[test]
fn watch_is_invalidated_by_writers_on_every_core() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let (k0, k1) = keys_on_two_cores("watched");
    for (round, key) in [&k0, &k1, &k0, &k1].into_iter().enumerate() {
        let mut c = Raw::connect(srv.port);
        let mut other = Raw::connect(srv.port);
        assert_eq!(c.line(&format!("WATCH {key}")), b"+OK\r\n");
        assert_eq!(other.line(&format!("SET {key} round{round}")), b"+OK\r\n");
        assert_eq!(c.line("MULTI"), b"+OK\r\n");
        assert_eq!(c.line(&format!("SET {k0} mine")), b"+QUEUED\r\n");
        assert_eq!(c.line(&format!("SET {k1} mine")), b"+QUEUED\r\n");
        assert_eq!(c.line("EXEC"), b"*-1\r\n", "round {round}");
        assert_ne!(c.line(&format!("GET {key}")), b"$4\r\nmine\r\n");
        // Without interference the same transaction succeeds, and EXEC forgot the watch.
        assert_eq!(c.line(&format!("WATCH {k0} {k1}")), b"+OK\r\n");
        assert_eq!(c.line("MULTI"), b"+OK\r\n");
        assert_eq!(c.line(&format!("SET {k0} mine")), b"+QUEUED\r\n");
        assert_eq!(c.line("EXEC"), b"*1\r\n+OK\r\n");
        assert_eq!(other.line(&format!("SET {k0} later")), b"+OK\r\n");
        assert_eq!(c.line("MULTI"), b"+OK\r\n");
        assert_eq!(c.line(&format!("GET {k0}")), b"+QUEUED\r\n");
        assert_eq!(c.line("EXEC"), b"*1\r\n$5\r\nlater\r\n");
    }
}

/// Readers of a watched key (of every type, on either core) do not invalidate the watch, as in Redis.
#[test]
fn watch_survives_readers() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let (k0, k1) = keys_on_two_cores("read");
    let mut c = Raw::connect(srv.port);
    let mut other = Raw::connect(srv.port);
    for key in [&k0, &k1] {
        for (setup, reads) in [
            (
                format!("HSET {key} f v"),
                vec![
                    format!("HGET {key} f"),
                    format!("HGETALL {key}"),
                    format!("HLEN {key}"),
                ],
            ),
            (
                format!("RPUSH {key} a b"),
                vec![format!("LRANGE {key} 0 -1"), format!("LINDEX {key} 0")],
            ),
            (
                format!("SADD {key} a b"),
                vec![format!("SMEMBERS {key}"), format!("SISMEMBER {key} a")],
            ),
            (
                format!("ZADD {key} 1 a"),
                vec![format!("ZSCORE {key} a"), format!("ZRANGE {key} 0 -1")],
            ),
            (
                format!("SET {key} 1"),
                vec![format!("GET {key}"), format!("STRLEN {key}")],
            ),
        ] {
            other.line(&format!("DEL {key}"));
            other.line(&setup);
            assert_eq!(c.line(&format!("WATCH {key}")), b"+OK\r\n");
            for r in &reads {
                other.line(r);
            }
            assert_eq!(c.line("MULTI"), b"+OK\r\n");
            assert_eq!(c.line(&format!("EXISTS {key}")), b"+QUEUED\r\n");
            assert_eq!(
                c.line("EXEC"),
                b"*1\r\n:1\r\n",
                "{setup}: reads {reads:?} broke the watch"
            );
        }
    }
}

#[test]
fn watch_is_invalidated_by_expiry_flushdb_and_delete_of_missing_keys() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let (k0, k1) = keys_on_two_cores("exp");
    let mut c = Raw::connect(srv.port);
    let mut other = Raw::connect(srv.port);
    // Expiry between WATCH and EXEC.
    assert_eq!(c.line(&format!("SET {k1} v PX 100")), b"+OK\r\n");
    assert_eq!(c.line(&format!("WATCH {k1}")), b"+OK\r\n");
    thread::sleep(Duration::from_millis(300));
    assert_eq!(c.line("MULTI"), b"+OK\r\n");
    assert_eq!(c.line(&format!("SET {k0} x")), b"+QUEUED\r\n");
    assert_eq!(c.line("EXEC"), b"*-1\r\n");
    // FLUSHDB from another connection.
    assert_eq!(c.line(&format!("SET {k0} v")), b"+OK\r\n");
    assert_eq!(c.line(&format!("WATCH {k0}")), b"+OK\r\n");
    assert_eq!(other.line("FLUSHDB"), b"+OK\r\n");
    assert_eq!(c.line("MULTI"), b"+OK\r\n");
    assert_eq!(c.line("PING"), b"+QUEUED\r\n");
    assert_eq!(c.line("EXEC"), b"*-1\r\n");
    // A watched missing key created and deleted again still counts as modified.
    assert_eq!(c.line(&format!("WATCH {k1}")), b"+OK\r\n");
    assert_eq!(other.line(&format!("SET {k1} v")), b"+OK\r\n");
    assert_eq!(other.line(&format!("DEL {k1}")), b":1\r\n");
    assert_eq!(c.line("MULTI"), b"+OK\r\n");
    assert_eq!(c.line("PING"), b"+QUEUED\r\n");
    assert_eq!(c.line("EXEC"), b"*-1\r\n");
    // Reads of a watched key do not invalidate it; DISCARD and UNWATCH forget it.
    assert_eq!(c.line(&format!("SET {k0} v")), b"+OK\r\n");
    assert_eq!(c.line(&format!("WATCH {k0}")), b"+OK\r\n");
    assert_eq!(other.line(&format!("GET {k0}")), b"$1\r\nv\r\n");
    assert_eq!(c.line("MULTI"), b"+OK\r\n");
    assert_eq!(c.line("PING"), b"+QUEUED\r\n");
    assert_eq!(c.line("EXEC"), b"*1\r\n+PONG\r\n");
    assert_eq!(c.line(&format!("WATCH {k0}")), b"+OK\r\n");
    assert_eq!(c.line("UNWATCH"), b"+OK\r\n");
    assert_eq!(other.line(&format!("SET {k0} w")), b"+OK\r\n");
    assert_eq!(c.line("MULTI"), b"+OK\r\n");
    assert_eq!(c.line("PING"), b"+QUEUED\r\n");
    assert_eq!(c.line("EXEC"), b"*1\r\n+PONG\r\n");
}

/// Transactions incrementing two keys on different cores, under concurrent transactions from other
/// connections; checkers reading both keys (cross-core MGET and MULTI/GET/GET/EXEC) never see them
/// differ.
#[test]
fn exec_across_cores_is_atomic_under_concurrency() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let (a, b) = keys_on_two_cores("atom");
    let port = srv.port;
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for _ in 0..3 {
        let (a, b) = (a.clone(), b.clone());
        writers.push(thread::spawn(move || {
            let mut c = Raw::connect(port);
            for _ in 0..300 {
                let mut req = multibulk(&[b"MULTI"]);
                req.extend(multibulk(&[b"INCR", a.as_bytes()]));
                req.extend(multibulk(&[b"INCRBY", b.as_bytes(), b"1"]));
                req.extend(multibulk(&[b"EXEC"]));
                c.send(&req);
                for _ in 0..3 {
                    c.read();
                }
                let exec = c.read();
                assert!(exec.bytes().starts_with(b"*2\r\n:"), "{}", exec.show());
            }
        }));
    }
    let mut checkers = Vec::new();
    for n in 0..2 {
        let (a, b, stop) = (a.clone(), b.clone(), stop.clone());
        checkers.push(thread::spawn(move || {
            let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                .unwrap()
                .get_connection()
                .unwrap();
            let mut checks = 0;
            while !stop.load(Ordering::Relaxed) || checks == 0 {
                let (x, y): (Option<i64>, Option<i64>) = if n == 0 {
                    redis::cmd("MGET").arg(&a).arg(&b).query(&mut c).unwrap()
                } else {
                    redis::pipe()
                        .atomic()
                        .get(&a)
                        .get(&b)
                        .query(&mut c)
                        .unwrap()
                };
                assert_eq!(x, y, "a transaction was observed half-applied");
                checks += 1;
            }
            checks
        }));
    }
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for c in checkers {
        assert!(c.join().unwrap() > 0);
    }
    let mut c = Raw::connect(port);
    assert_eq!(c.line(&format!("GET {a}")), b"$3\r\n900\r\n");
    assert_eq!(c.line(&format!("GET {b}")), b"$3\r\n900\r\n");
}

/// Optimistic locking: WATCH/GET/MULTI/SET/EXEC with retries from clients landing on both cores
/// loses no increment.
#[test]
fn watch_retry_loop_counts_exactly() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let port = srv.port;
    let mut hs = Vec::new();
    for _ in 0..4 {
        hs.push(thread::spawn(move || {
            let mut c = Raw::connect(port);
            let mut aborted = 0;
            for _ in 0..100 {
                loop {
                    assert_eq!(c.line("WATCH counter"), b"+OK\r\n");
                    let cur = c.line("GET counter");
                    let n: i64 = if cur == b"$-1\r\n" {
                        0
                    } else {
                        let s = String::from_utf8_lossy(&cur).to_string();
                        s.lines().nth(1).unwrap().parse().unwrap()
                    };
                    let mut req = multibulk(&[b"MULTI"]);
                    let v = (n + 1).to_string();
                    req.extend(multibulk(&[b"SET", b"counter", v.as_bytes()]));
                    req.extend(multibulk(&[b"EXEC"]));
                    c.send(&req);
                    c.read();
                    c.read();
                    let r = c.read();
                    if r.bytes() == b"*1\r\n+OK\r\n" {
                        break;
                    }
                    assert_eq!(r.bytes(), b"*-1\r\n");
                    aborted += 1;
                }
            }
            aborted
        }));
    }
    for h in hs {
        h.join().unwrap();
    }
    let mut c = Raw::connect(port);
    assert_eq!(c.line("GET counter"), b"$3\r\n400\r\n");
}
