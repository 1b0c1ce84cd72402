//! `backend_prefer_unixsocket`: a codis-server on the proxy's host that listens on a Unix socket
//! is reached through it instead of loopback TCP, after it proved (`CONFIG GET port`) that it is
//! the server of the topology's address. Anything else keeps TCP.

mod common;

use common::{server_with_args, Cluster, Frames};
use redis::Commands;

/// The CLIENT LIST lines of group `gid`'s server, without the connection asking.
fn clients(c: &Cluster, gid: u32) -> Vec<String> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut c.backend(gid))
        .unwrap();
    list.lines()
        .filter(|l| !l.contains(" cmd=client "))
        .map(String::from)
        .collect()
}

/// Writes and reads back `n` keys through the proxy (both groups, pipelined and MGET/MSET).
fn traffic(c: &Cluster, round: u32, n: u32) {
    let mut p = c.conn();
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("SET")
            .arg(format!("k:{i}"))
            .arg(round * 100_000 + i)
            .ignore();
    }
    pipe.query::<()>(&mut p).unwrap();
    let keys: Vec<String> = (0..n).map(|i| format!("k:{i}")).collect();
    let got: Vec<u32> = redis::cmd("MGET").arg(&keys).query(&mut p).unwrap();
    assert_eq!(got, (0..n).map(|i| round * 100_000 + i).collect::<Vec<_>>());
}

#[test]
fn servers_on_this_host_are_reached_through_their_unix_socket() {
    let mut c = Cluster::start_unix("", 2);
    traffic(&c, 1, 2000);
    let stats = c.stats();
    for gid in [1, 2] {
        let path = c.unix_socket(gid);
        assert_eq!(
            stats["backends_unix"][c.server_addr(gid)],
            path.to_str().unwrap(),
            "{stats}"
        );
        // Every connection of the proxy (two cores, a lane per server core each) is a Unix
        // one; the TCP connection that asked for the socket's path is gone.
        testkit::wait_until("only unix connections", || {
            let l = clients(&c, gid);
            !l.is_empty() && l.iter().all(|l| l.contains(" flags=U "))
        });
    }
    // The lanes work over the socket: each request went to its slot's core.
    for gid in [1, 2] {
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query(&mut c.backend(gid))
            .unwrap();
        let cross: u64 = info
            .lines()
            .find_map(|l| l.strip_prefix("cross_core_commands:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(cross < 200, "group {gid}: {cross} cross-core commands");
    }

    // A session's own connections take the socket too: WATCH's (to the key's server) and a
    // subscriber's (to the pub/sub home, group 1).
    let k1 = (0..)
        .map(|i| format!("w:{i}"))
        .find(|k| Cluster::group_of(k) == 1)
        .unwrap();
    let mut w = Frames::open(c.port);
    assert_eq!(w.ask(&["WATCH", &k1]), "+OK\r\n");
    let mut sub = Frames::open(c.port);
    assert_eq!(
        sub.ask(&["SUBSCRIBE", "news"]),
        "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    );
    let before = c.stats()["sessions_subscribed"].as_u64().unwrap();
    assert_eq!(before, 1);
    let l = clients(&c, 1);
    assert!(
        l.iter()
            .all(|l| l.contains(" flags=U ") || l.contains(" flags=PU ")),
        "{l:?}"
    );
    assert!(l.iter().any(|l| l.contains(" cmd=watch ")), "{l:?}");
    // The subscriber's connection: a pub/sub client (P) on the socket (U), as Redis shows it.
    assert!(
        l.iter()
            .any(|l| l.contains(" cmd=subscribe ") && l.contains(" flags=PU ")),
        "{l:?}"
    );
    let mut p = c.conn();
    let n: i64 = redis::cmd("PUBLISH")
        .arg("news")
        .arg("hi")
        .query(&mut p)
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        sub.next(),
        "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
    );
    assert_eq!(w.ask(&["MULTI"]), "+OK\r\n");
    assert_eq!(w.ask(&["SET", &k1, "x"]), "+QUEUED\r\n");
    assert_eq!(w.ask(&["EXEC"]), "*1\r\n+OK\r\n");
    drop((w, sub));

    // A server killed and restarted on the same port and socket: the proxy comes back to it
    // through the socket by itself.
    let port1 = c.servers[0].port;
    c.servers[0].kill();
    let sock = c.unix_socket(1);
    c.servers[0] = server_with_args(port1, 2, &["--unixsocket", sock.to_str().unwrap()]);
    let k1 = (0..)
        .map(|i| format!("again:{i}"))
        .find(|k| Cluster::group_of(k) == 1)
        .unwrap();
    testkit::wait_until("the proxy reconnects", || p.set::<_, _, ()>(&k1, 7).is_ok());
    assert_eq!(p.get::<_, i64>(&k1).unwrap(), 7);
    traffic(&c, 2, 500);
    testkit::wait_until("only unix connections after the restart", || {
        let l = clients(&c, 1);
        !l.is_empty() && l.iter().all(|l| l.contains(" flags=U "))
    });
}

#[test]
fn a_socket_leading_to_another_server_is_not_used() {
    let c = Cluster::start_unix("", 1);
    // Group 1's socket path now leads to group 2's server: the proxy must notice (port check)
    // and reach group 1 over TCP, or group 1's keys would land on group 2.
    std::fs::rename(c.unix_socket(2), c.unix_socket(1)).unwrap();
    let mut p = c.conn();
    let keys: Vec<String> = (0..200).map(|i| format!("moved:{i}")).collect();
    for k in &keys {
        let _: () = p.set(k, k).unwrap();
    }
    for k in &keys {
        let gid = Cluster::group_of(k);
        let mut b = c.backend(gid);
        assert_eq!(
            b.get::<_, Option<String>>(k).unwrap().as_deref(),
            Some(k.as_str())
        );
        let mut other = c.backend(3 - gid);
        assert_eq!(
            other.get::<_, Option<String>>(k).unwrap(),
            None,
            "{k} on the wrong group"
        );
    }
    let stats = c.stats();
    assert!(
        stats["backends_unix"].get(c.server_addr(1)).is_none(),
        "{stats}"
    );
    // A session's own connection (WATCH's) makes the same check and keeps TCP too.
    let k1 = keys.iter().find(|k| Cluster::group_of(k) == 1).unwrap();
    let mut w = Frames::open(c.port);
    assert_eq!(w.ask(&["WATCH", k1]), "+OK\r\n");
    let l = clients(&c, 1);
    assert!(l.iter().any(|l| l.contains(" cmd=watch ")), "{l:?}");
    assert!(l.iter().all(|l| l.contains(" flags=N ")), "{l:?}");
    // Group 2's socket is gone from its path, so group 2 is reached over TCP too.
    assert!(
        stats["backends_unix"].get(c.server_addr(2)).is_none(),
        "{stats}"
    );
}

#[test]
fn tcp_only_when_the_proxy_says_so() {
    let c = Cluster::start_unix("backend_prefer_unixsocket = false\n", 1);
    traffic(&c, 1, 300);
    for gid in [1, 2] {
        let l = clients(&c, gid);
        assert!(!l.is_empty());
        assert!(l.iter().all(|l| l.contains(" flags=N ")), "{l:?}");
    }
    assert_eq!(c.stats()["backends_unix"], serde_json::json!({}));
}
