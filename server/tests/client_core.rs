//! `CLIENT CORE [n]`: which core serves a connection, and moving the connection to another core
//! (what codis-proxy does so that its requests never hop between the server's cores). The
//! connection keeps its database, authentication and name, and bytes that arrived with the move
//! are served by the new core.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use redis::Value;

fn core_of(c: &mut redis::Connection) -> i64 {
    redis::cmd("CLIENT").arg("CORE").query(c).unwrap()
}

fn move_to(c: &mut redis::Connection, core: i64) {
    let r: String = redis::cmd("CLIENT").arg("CORE").arg(core).query(c).unwrap();
    assert_eq!(r, "OK");
}

fn stat(c: &mut redis::Connection, section: &str, field: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg(section).query(c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("{field} in INFO {section}"))
        .trim()
        .parse()
        .unwrap()
}

/// A key whose slot core `core` owns (slots start on core `slot % 2`).
fn key_on(core: u16, n: usize) -> String {
    (0..)
        .map(|i| format!("k{n}:{i}"))
        .find(|k| resp::slot(k.as_bytes()) % 2 == core)
        .unwrap()
}

#[test]
fn connections_move_between_cores_with_their_state() {
    let s = testkit::codis_server(&["--cores", "2", "--requirepass", "pw"]);
    let client = redis::Client::open(format!("redis://:pw@127.0.0.1:{}/", s.port)).unwrap();
    let mut c = client.get_connection().unwrap();
    let first = core_of(&mut c);
    assert!(first == 0 || first == 1);
    let other = 1 - first;
    let _: () = redis::cmd("SELECT").arg(5).query(&mut c).unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("mover")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("here")
        .arg("db5")
        .query(&mut c)
        .unwrap();
    move_to(&mut c, other);
    assert_eq!(core_of(&mut c), other);
    // Same database, still authenticated, same name and id.
    let v: String = redis::cmd("GET").arg("here").query(&mut c).unwrap();
    assert_eq!(v, "db5");
    let name: String = redis::cmd("CLIENT").arg("GETNAME").query(&mut c).unwrap();
    assert_eq!(name, "mover");
    move_to(&mut c, first);
    assert_eq!(core_of(&mut c), first);
    // Moving to the core it is on is a no-op.
    move_to(&mut c, first);
    assert_eq!(core_of(&mut c), first);

    // Errors.
    for (arg, want) in [
        ("2", "invalid core index 2"),
        ("-1", "not an integer"),
        ("x", "not an integer"),
    ] {
        let e = redis::cmd("CLIENT")
            .arg("CORE")
            .arg(arg)
            .query::<Value>(&mut c)
            .unwrap_err();
        assert!(e.to_string().contains(want), "CLIENT CORE {arg}: {e}");
    }
    let _: () = redis::cmd("WATCH").arg("here").query(&mut c).unwrap();
    let e = redis::cmd("CLIENT")
        .arg("CORE")
        .arg(other)
        .query::<Value>(&mut c)
        .unwrap_err();
    assert!(e.to_string().contains("watched keys"), "{e}");
    let _: () = redis::cmd("UNWATCH").query(&mut c).unwrap();

    // Only the connections that exist are counted once moved ones close.
    let mut admin = client.get_connection().unwrap();
    let before = stat(&mut admin, "clients", "connected_clients");
    for i in 0..10 {
        let mut m = client.get_connection().unwrap();
        move_to(&mut m, i % 2);
        move_to(&mut m, (i + 1) % 2);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = stat(&mut admin, "clients", "connected_clients");
        if now == before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "connected_clients {now}, {before} before"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bytes_pipelined_behind_the_move_are_served_by_the_new_core() {
    let s = testkit::codis_server(&["--cores", "2"]);
    let mut t = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let read_until = |t: &mut TcpStream, want: &[u8]| {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.ends_with(want) {
            let n = t.read(&mut buf).unwrap();
            assert!(n > 0, "closed; got {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(got).unwrap()
    };
    t.write_all(b"CLIENT CORE\r\n").unwrap();
    let first: i64 = read_until(&mut t, b"\r\n")[1..].trim().parse().unwrap();
    let other = 1 - first;
    // The move, a SET, then half a GET: the rest of the GET arrives after the move.
    t.write_all(format!("CLIENT CORE {other}\r\nSET a 1\r\n*2\r\n$3\r\nGET").as_bytes())
        .unwrap();
    assert_eq!(read_until(&mut t, b"+OK\r\n+OK\r\n"), "+OK\r\n+OK\r\n");
    std::thread::sleep(Duration::from_millis(100));
    t.write_all(b"\r\n$1\r\na\r\nCLIENT CORE\r\n").unwrap();
    let rest = read_until(&mut t, format!(":{other}\r\n").as_bytes());
    assert_eq!(rest, format!("$1\r\n1\r\n:{other}\r\n"));
}

#[test]
fn a_connection_on_the_owning_core_never_hops() {
    let s = testkit::codis_server(&["--cores", "2"]);
    let mut admin = s.conn();
    for core in [0u16, 1] {
        let mut c = s.conn();
        move_to(&mut c, i64::from(core));
        let keys: Vec<String> = (0..100).map(|n| key_on(core, n)).collect();
        let other: Vec<String> = (0..100).map(|n| key_on(1 - core, n)).collect();
        let base = stat(&mut admin, "stats", "cross_core_commands");
        let mut p = redis::pipe();
        for k in &keys {
            p.set(k, "v").ignore().get(k);
        }
        let got: Vec<String> = p.query(&mut c).unwrap();
        assert!(got.iter().all(|v| v == "v"));
        let own = stat(&mut admin, "stats", "cross_core_commands") - base;
        assert_eq!(own, 0, "core {core}: requests for its own slots hopped");
        let mut p = redis::pipe();
        for k in &other {
            p.get(k);
        }
        let _: Vec<Option<String>> = p.query(&mut c).unwrap();
        let hops = stat(&mut admin, "stats", "cross_core_commands") - base;
        assert_eq!(hops, 100, "core {core}: the other core's keys must hop");
    }
}

#[test]
fn counters_stay_exact_while_connections_keep_moving() {
    let s = testkit::codis_server(&["--cores", "2"]);
    let port = s.port;
    let workers: Vec<_> = (0..4)
        .map(|w| {
            std::thread::spawn(move || {
                let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
                let mut c = client.get_connection().unwrap();
                let mut done = 0i64;
                for round in 0..60 {
                    move_to(&mut c, (round + w) % 2);
                    let mut p = redis::pipe();
                    for i in 0..20 {
                        p.incr(format!("ctr:{}", i % 5), 1).ignore();
                    }
                    p.query::<()>(&mut c).unwrap();
                    done += 20;
                }
                done
            })
        })
        .collect();
    let total: i64 = workers.into_iter().map(|h| h.join().unwrap()).sum();
    let mut c = s.conn();
    let sum: i64 = (0..5)
        .map(|i| {
            redis::cmd("GET")
                .arg(format!("ctr:{i}"))
                .query::<i64>(&mut c)
                .unwrap()
        })
        .sum();
    assert_eq!(sum, total);
}

#[test]
fn a_connection_whose_keys_live_on_another_core_moves_there() {
    let s = testkit::codis_server(&["--cores", "2"]);
    let mut admin = s.conn();
    let gets = |c: &mut redis::Connection, keys: &[String]| {
        for k in keys {
            let _: Option<String> = redis::cmd("GET").arg(k).query(c).unwrap();
        }
    };

    // One key of the other core, one request at a time (redis-benchmark without -r): after a
    // window of them the connection moves, and then nothing hops.
    let mut c = s.conn();
    let here = core_of(&mut c);
    let other = 1 - here;
    let key = key_on(other as u16, 0);
    let moves0 = stat(&mut admin, "stats", "client_core_affinity_moves");
    gets(&mut c, &vec![key.clone(); 200]);
    assert_eq!(core_of(&mut c), other, "the connection follows its keys");
    assert!(stat(&mut admin, "stats", "client_core_affinity_moves") > moves0);
    let base = stat(&mut admin, "stats", "cross_core_commands");
    gets(&mut c, &vec![key.clone(); 100]);
    assert_eq!(stat(&mut admin, "stats", "cross_core_commands"), base);

    // Keys spread over both cores: no core to prefer, the connection stays.
    let mut d = s.conn();
    let start = core_of(&mut d);
    let spread: Vec<String> = (0..400).map(|n| key_on((n % 2) as u16, n)).collect();
    gets(&mut d, &spread);
    assert_eq!(core_of(&mut d), start);

    // Placed by CLIENT CORE: never moved.
    let mut p = s.conn();
    move_to(&mut p, here);
    gets(&mut p, &vec![key.clone(); 300]);
    assert_eq!(core_of(&mut p), here, "a pinned connection stays");

    // Switched off.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("client-core-affinity")
        .arg("no")
        .query(&mut admin)
        .unwrap();
    let mut q = s.conn();
    let start = core_of(&mut q);
    let far = key_on(1 - start as u16, 1);
    gets(&mut q, &vec![far; 300]);
    assert_eq!(core_of(&mut q), start, "client-core-affinity no");
}
