//! Blocking pops through the proxy (Codis 3.2 refused them): BLPOP and friends wait on a
//! connection of the session's own to the slot's master, are woken by pushes from any client,
//! keep the client's pipeline order and timeout, end when the client goes away, and follow
//! their slot to another group.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, Frames};
use coord::SlotMapping;

/// The CLIENT LIST lines of group `gid`'s server that are blocked in `cmd`.
fn blocked_on(c: &Cluster, gid: u32, cmd: &str) -> usize {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut c.backend(gid))
        .unwrap();
    list.lines()
        .filter(|l| l.contains(&format!(" cmd={cmd} ")))
        .count()
}

fn key_in(gid: u32, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| Cluster::group_of(k) == gid)
        .unwrap()
}

#[test]
fn blocking_pops_wait_for_pushes_through_the_proxy() {
    let c = Cluster::start("");
    let port = c.port;
    let q1 = key_in(1, "q");
    let q2 = key_in(2, "q");

    // A waiter on each group, woken by a push from another client.
    let waiters: Vec<_> = [q1.clone(), q2.clone()]
        .into_iter()
        .map(|q| {
            std::thread::spawn(move || {
                let mut w = Frames::open(port);
                w.ask(&["BLPOP", &q, "0"])
            })
        })
        .collect();
    for gid in [1, 2] {
        testkit::wait_until("the waiter blocks on its server", || {
            blocked_on(&c, gid, "blpop") == 1
        });
    }
    // The proxy counts its blocked sessions (stats, INFO, /metrics).
    assert_eq!(c.stats()["sessions_blocked"], 2);
    let mut p = Frames::open(port);
    assert!(p
        .ask(&["INFO", "clients"])
        .contains("blocked_clients:2\r\n"));
    let list = p.ask(&["CLIENT", "LIST"]);
    assert_eq!(list.matches(" flags=b ").count(), 2, "{list}");
    assert_eq!(list.matches(" cmd=blpop ").count(), 2, "{list}");
    let (st, metrics) = c.http("GET", "/metrics");
    assert_eq!(st, 200);
    assert!(
        metrics.contains("codis_proxy_sessions_blocked 2"),
        "{metrics}"
    );
    for q in [&q1, &q2] {
        assert_eq!(p.ask(&["RPUSH", q, "job"]), ":1\r\n");
    }
    for (w, q) in waiters.into_iter().zip([&q1, &q2]) {
        assert_eq!(
            w.join().unwrap(),
            format!("*2\r\n${}\r\n{q}\r\n$3\r\njob\r\n", q.len())
        );
    }
    assert_eq!(c.stats()["sessions_blocked"], 0);

    let mut a = Frames::open(port);
    // The timeout holds, as a null.
    let t = Instant::now();
    assert_eq!(a.ask(&["BRPOP", "empty", "0.3"]), "*-1\r\n");
    assert!(t.elapsed() >= Duration::from_millis(300));
    // Keys of several slots are refused; an invalid timeout gets the server's error.
    assert_eq!(
        a.ask(&["BLPOP", "a", "b", "1"]),
        "-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    assert_eq!(
        a.ask(&["BLPOP", "a", "soon"]),
        "-ERR timeout is not a float or out of range\r\n"
    );
    // Pipeline order: the push before the pop runs first, the PING after it waits for it.
    a.pipeline(&[&["LPUSH", "{p}q", "x"], &["BRPOP", "{p}q", "0"], &["PING"]]);
    assert_eq!(a.next(), ":1\r\n");
    assert_eq!(a.next(), "*2\r\n$4\r\n{p}q\r\n$1\r\nx\r\n");
    assert_eq!(a.next(), "+PONG\r\n");
    // The other blocking pops: BLMOVE, BRPOPLPUSH, BZPOPMIN, BLMPOP.
    assert_eq!(a.ask(&["RPUSH", "{m}src", "1", "2"]), ":2\r\n");
    assert_eq!(
        a.ask(&["BLMOVE", "{m}src", "{m}dst", "LEFT", "RIGHT", "0"]),
        "$1\r\n1\r\n"
    );
    assert_eq!(
        a.ask(&["BRPOPLPUSH", "{m}src", "{m}dst", "0"]),
        "$1\r\n2\r\n"
    );
    assert_eq!(
        a.ask(&["LRANGE", "{m}dst", "0", "-1"]),
        "*2\r\n$1\r\n2\r\n$1\r\n1\r\n"
    );
    assert_eq!(a.ask(&["ZADD", "z", "2", "b", "1", "a"]), ":2\r\n");
    assert_eq!(
        a.ask(&["BZPOPMIN", "z", "0"]),
        "*3\r\n$1\r\nz\r\n$1\r\na\r\n$1\r\n1\r\n"
    );
    assert_eq!(
        a.ask(&["BLMPOP", "0", "2", "{m}dst", "{m}x", "RIGHT"]),
        "*2\r\n$6\r\n{m}dst\r\n*1\r\n$1\r\n1\r\n"
    );
    // Inside MULTI a blocking pop does not block (as in Redis).
    assert_eq!(a.ask(&["MULTI"]), "+OK\r\n");
    assert_eq!(a.ask(&["BLPOP", "empty", "0"]), "+QUEUED\r\n");
    assert_eq!(a.ask(&["EXEC"]), "*1\r\n*-1\r\n");
    // RESP3: the timeout's null is RESP3's.
    assert!(a.ask(&["HELLO", "3"]).starts_with('%'));
    assert_eq!(a.ask(&["BLPOP", "empty", "0.05"]), "_\r\n");

    // A worker popping in a loop dials its server once.
    let mut worker = Frames::open(port);
    let mut pusher = Frames::open(port);
    for i in 0..50 {
        assert_eq!(pusher.ask(&["LPUSH", "{w}jobs", &i.to_string()]), ":1\r\n");
        let r = worker.ask(&["BRPOP", "{w}jobs", "5"]);
        assert!(r.ends_with(&format!("\r\n{i}\r\n")), "{r}");
    }
    let gid = Cluster::group_of("{w}jobs");
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut c.backend(gid))
        .unwrap();
    assert_eq!(
        list.lines().filter(|l| l.contains(" cmd=brpop ")).count(),
        1,
        "{list}"
    );
}

#[test]
fn a_client_that_leaves_while_blocked_frees_the_server() {
    let c = Cluster::start("session_recv_timeout = 1\n");
    let q = key_in(1, "gone");
    {
        let mut w = Frames::open(c.port);
        w.send(&["BLPOP", &q, "0"]);
        testkit::wait_until("blocked", || blocked_on(&c, 1, "blpop") == 1);
    }
    testkit::wait_until("the server forgets the waiter", || {
        blocked_on(&c, 1, "blpop") == 0
    });
    // Nothing was popped for the client that left.
    let mut p = Frames::open(c.port);
    assert_eq!(p.ask(&["RPUSH", &q, "kept"]), ":1\r\n");
    assert_eq!(p.ask(&["LLEN", &q]), ":1\r\n");
    // Blocked longer than session_recv_timeout (1 s): not closed, as Redis never times out a
    // blocked client; the connection serves on afterwards.
    let mut w = Frames::open(c.port);
    assert_eq!(w.ask(&["BLPOP", "nothing", "1.5"]), "*-1\r\n");
    assert_eq!(w.ask(&["PING"]), "+PONG\r\n");
}

#[test]
fn a_blocked_pop_follows_its_slot_to_another_group() {
    let c = Cluster::start("");
    let q = key_in(1, "moving");
    let port = c.port;
    let waiter = std::thread::spawn({
        let q = q.clone();
        move || {
            let mut w = Frames::open(port);
            let r = w.ask(&["BLPOP", &q, "0"]);
            (r, w.ask(&["PING"]))
        }
    });
    testkit::wait_until("blocked on group 1", || blocked_on(&c, 1, "blpop") == 1);
    // The (empty) slot moves to group 2.
    let before = c.stats()["topology_version"].as_u64().unwrap() + 1;
    let moved = SlotMapping {
        id: resp::slot(q.as_bytes()) as u32,
        group_id: 2,
        ..Default::default()
    };
    c.rt.block_on(c.store.update_slot_mappings(&[moved]))
        .unwrap();
    testkit::wait_until("the proxy applies the table", || {
        c.stats()["topology_version"].as_u64().unwrap_or(0) >= before
    });
    // The proxy unblocked the wait on group 1 and waits on group 2 now.
    testkit::wait_until("blocked on group 2", || blocked_on(&c, 2, "blpop") == 1);
    assert_eq!(blocked_on(&c, 1, "blpop"), 0);
    let mut p = Frames::open(port);
    assert_eq!(p.ask(&["RPUSH", &q, "here"]), ":1\r\n");
    let (r, ping) = waiter.join().unwrap();
    assert_eq!(r, format!("*2\r\n${}\r\n{q}\r\n$4\r\nhere\r\n", q.len()));
    assert_eq!(ping, "+PONG\r\n");
    let mut g2 = c.backend(2);
    assert_eq!(
        redis::cmd("EXISTS").arg(&q).query::<i64>(&mut g2).unwrap(),
        0
    );
}
