//! CLIENT PAUSE timeout [WRITE|ALL] and CLIENT UNPAUSE as in Redis 7.0: held commands wait and
//! resume when the pause ends or is lifted, on every core, pipelines in order. Timings are only
//! bounded generously: a held reply must not arrive while the pause lasts, and must arrive soon
//! after it ends.

mod rawwire;

use std::time::{Duration, Instant};

use rawwire::{keys_on_two_cores, multibulk, show, Raw, Reply};

/// How long a held reply is awaited to show that it is held (absence of a reply).
const HELD: Duration = Duration::from_millis(300);

/// A raw connection pinned to `core`.
fn on_core(port: u16, core: u8) -> Raw {
    let mut r = Raw::connect(port);
    assert_eq!(r.line(&format!("CLIENT CORE {core}")), b"+OK\r\n");
    r
}

fn assert_held(r: &mut Raw, what: &str) {
    r.timeout(HELD);
    match r.read() {
        Reply::Timeout(b) if b.is_empty() => {}
        other => panic!(
            "{what}: expected no reply while paused, got {}",
            other.show()
        ),
    }
    r.timeout(Duration::from_secs(10));
}

fn reply(r: &mut Raw) -> Vec<u8> {
    r.timeout(Duration::from_secs(10));
    match r.read() {
        Reply::Frame(f) => f,
        other => panic!("expected a reply, got {}", other.show()),
    }
}

#[test]
fn pause_all_holds_every_client_on_every_core_until_the_timeout() {
    let server = testkit::codis_server(&["--cores", "2"]);
    let (k0, k1) = keys_on_two_cores("pa");
    let mut admin = on_core(server.port, 0);
    let mut c0 = on_core(server.port, 0);
    let mut c1 = on_core(server.port, 1);
    assert_eq!(c0.cmd(&[b"SET", k0.as_bytes(), b"v0"]), b"+OK\r\n");
    assert_eq!(c1.cmd(&[b"SET", k1.as_bytes(), b"v1"]), b"+OK\r\n");

    let start = Instant::now();
    assert_eq!(admin.line("CLIENT PAUSE 1500 ALL"), b"+OK\r\n");
    c0.send(&multibulk(&[b"GET", k0.as_bytes()]));
    c1.send(&multibulk(&[b"GET", k1.as_bytes()]));
    // As in Redis, under ALL even CLIENT UNPAUSE (and the pausing client) waits.
    admin.send(b"CLIENT UNPAUSE\r\n");
    assert_held(&mut c0, "GET on core 0");
    assert_held(&mut c1, "GET on core 1");
    assert_held(&mut admin, "CLIENT UNPAUSE under ALL");
    assert_eq!(reply(&mut c0), b"$2\r\nv0\r\n");
    assert_eq!(reply(&mut c1), b"$2\r\nv1\r\n");
    assert_eq!(reply(&mut admin), b"+OK\r\n");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1400),
        "resumed early: {took:?}"
    );
    assert!(took < Duration::from_secs(15), "never hung: {took:?}");
    // Over: nothing waits any more.
    assert_eq!(c0.line("PING"), b"+PONG\r\n");
}

#[test]
fn pause_write_lets_reads_through_and_holds_writes_until_unpause() {
    let server = testkit::codis_server(&["--cores", "2"]);
    let (k0, k1) = keys_on_two_cores("pw");
    let mut admin = on_core(server.port, 1);
    let mut r0 = on_core(server.port, 0);
    let mut w0 = on_core(server.port, 0);
    let mut w1 = on_core(server.port, 1);
    let mut p = on_core(server.port, 1);
    let mut e = on_core(server.port, 0);
    let mut tx = on_core(server.port, 1);
    assert_eq!(r0.cmd(&[b"SET", k0.as_bytes(), b"old"]), b"+OK\r\n");
    assert_eq!(r0.cmd(&[b"SET", k1.as_bytes(), b"old"]), b"+OK\r\n");

    assert_eq!(admin.line("CLIENT PAUSE 60000 WRITE"), b"+OK\r\n");
    // Reads, on both cores, and read-only transactions go through.
    assert_eq!(r0.cmd(&[b"GET", k0.as_bytes()]), b"$3\r\nold\r\n");
    assert_eq!(r0.cmd(&[b"GET", k1.as_bytes()]), b"$3\r\nold\r\n");
    assert_eq!(r0.line("PING"), b"+PONG\r\n");
    assert_eq!(tx.line("MULTI"), b"+OK\r\n");
    assert_eq!(tx.cmd(&[b"GET", k1.as_bytes()]), b"+QUEUED\r\n");
    assert_eq!(tx.line("EXEC"), b"*1\r\n$3\r\nold\r\n");

    // Writes, PUBLISH and EVAL (Redis's may-replicate commands) wait.
    w0.send(&multibulk(&[b"SET", k0.as_bytes(), b"new"]));
    w1.send(&multibulk(&[b"SET", k1.as_bytes(), b"new"]));
    p.send(b"PUBLISH ch m\r\n");
    e.send(b"EVAL \"return 1\" 0\r\n");
    assert_held(&mut w0, "SET on core 0");
    assert_held(&mut w1, "SET on core 1");
    assert_held(&mut p, "PUBLISH");
    assert_held(&mut e, "EVAL");
    assert_eq!(r0.cmd(&[b"GET", k0.as_bytes()]), b"$3\r\nold\r\n");
    // A transaction with a write waits at EXEC.
    assert_eq!(tx.line("MULTI"), b"+OK\r\n");
    tx.send(&multibulk(&[b"SET", k1.as_bytes(), b"tx"]));
    assert_held(&mut tx, "SET queued in MULTI");

    // The pausing client lifts it (reads are not held under WRITE).
    assert_eq!(admin.line("CLIENT UNPAUSE"), b"+OK\r\n");
    assert_eq!(reply(&mut w0), b"+OK\r\n");
    assert_eq!(reply(&mut w1), b"+OK\r\n");
    assert_eq!(reply(&mut p), b":0\r\n");
    assert_eq!(reply(&mut e), b":1\r\n");
    assert_eq!(reply(&mut tx), b"+QUEUED\r\n");
    assert_eq!(tx.line("EXEC"), b"*1\r\n+OK\r\n");
    assert_eq!(r0.cmd(&[b"GET", k0.as_bytes()]), b"$3\r\nnew\r\n");
    assert_eq!(r0.cmd(&[b"GET", k1.as_bytes()]), b"$2\r\ntx\r\n");
}

#[test]
fn a_write_transaction_waits_at_exec() {
    let server = testkit::codis_server(&["--cores", "2"]);
    let mut admin = on_core(server.port, 0);
    let mut tx = on_core(server.port, 1);
    assert_eq!(tx.line("MULTI"), b"+OK\r\n");
    assert_eq!(tx.line("INCR n"), b"+QUEUED\r\n");
    assert_eq!(admin.line("CLIENT PAUSE 60000 WRITE"), b"+OK\r\n");
    tx.send(b"EXEC\r\n");
    assert_held(&mut tx, "EXEC of a write");
    assert_eq!(admin.line("CLIENT UNPAUSE"), b"+OK\r\n");
    assert_eq!(reply(&mut tx), b"*1\r\n:1\r\n");
}

#[test]
fn pipelined_commands_resume_in_order_after_unpause() {
    let server = testkit::codis_server(&["--cores", "2"]);
    let (k0, k1) = keys_on_two_cores("pp");
    let mut admin = on_core(server.port, 0);
    let mut c = on_core(server.port, 1);
    assert_eq!(c.cmd(&[b"SET", k0.as_bytes(), b"1"]), b"+OK\r\n");
    assert_eq!(admin.line("CLIENT PAUSE 60000 WRITE"), b"+OK\r\n");
    // One pipeline: reads before the first write answer at once; the write and everything after
    // it (reads included, on both cores) wait and then run in order.
    let mut pipe = Vec::new();
    pipe.extend(multibulk(&[b"GET", k0.as_bytes()]));
    pipe.extend(multibulk(&[b"GET", k1.as_bytes()]));
    pipe.extend(multibulk(&[b"INCR", k0.as_bytes()]));
    pipe.extend(multibulk(&[b"GET", k0.as_bytes()]));
    pipe.extend(multibulk(&[b"SET", k1.as_bytes(), b"x"]));
    pipe.extend(multibulk(&[b"INCR", k0.as_bytes()]));
    pipe.extend(multibulk(&[b"GET", k1.as_bytes()]));
    pipe.extend(multibulk(&[b"GET", k0.as_bytes()]));
    c.send(&pipe);
    assert_eq!(reply(&mut c), b"$1\r\n1\r\n");
    assert_eq!(reply(&mut c), b"$-1\r\n");
    assert_held(&mut c, "INCR in a pipeline");
    assert_eq!(admin.line("CLIENT UNPAUSE"), b"+OK\r\n");
    let expected: [&[u8]; 6] = [
        b":2\r\n",
        b"$1\r\n2\r\n",
        b"+OK\r\n",
        b":3\r\n",
        b"$1\r\nx\r\n",
        b"$1\r\n3\r\n",
    ];
    for (i, want) in expected.iter().enumerate() {
        let got = reply(&mut c);
        assert_eq!(got, *want, "reply {i}: {}", show(&got));
    }
}

#[test]
fn the_pausing_client_waits_too_and_overlapping_pauses_merge() {
    let server = testkit::codis_server(&["--cores", "2"]);
    let mut a = on_core(server.port, 0);
    let mut b = on_core(server.port, 1);
    // WRITE then a longer ALL: ALL wins for the later end.
    assert_eq!(a.line("CLIENT PAUSE 200 WRITE"), b"+OK\r\n");
    assert_eq!(b.line("CLIENT PAUSE 1200 ALL"), b"+OK\r\n");
    let start = Instant::now();
    a.send(b"GET k\r\n");
    b.send(b"GET k\r\n");
    assert_held(&mut a, "the client that paused first");
    assert_held(&mut b, "the client that paused last");
    assert_eq!(reply(&mut a), b"$-1\r\n");
    assert_eq!(reply(&mut b), b"$-1\r\n");
    assert!(start.elapsed() >= Duration::from_millis(900));
    // A pause of 0 ms pauses nothing.
    assert_eq!(a.line("CLIENT PAUSE 0"), b"+OK\r\n");
    assert_eq!(b.line("SET k v"), b"+OK\r\n");
}
