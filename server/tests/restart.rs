//! A codis-server restarted on the same port comes up at once, even while connections of its
//! previous run linger in TIME_WAIT (the server closed them, so the TIME_WAIT is on its port) or
//! its listening sockets outlive it for a moment; a second server on a port that is in use still
//! refuses to start. SIGTERM and SIGINT shut down as SHUTDOWN does: the AOF is flushed, the RDB
//! saved when save rules are set, and the exit status is 0.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn start(port: u16) -> std::process::Child {
    start_with(port, &[])
}

fn start_with(port: u16, extra: &[&str]) -> std::process::Child {
    Command::new(testkit::bin_path("codis-server"))
        .args([
            "--port",
            &port.to_string(),
            "--cores",
            "1",
            "--loglevel",
            "warn",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn codis-server")
}

#[test]
fn restart_on_the_same_port_with_time_wait_connections() {
    let port = testkit::free_port();
    let mut first = start(port);
    assert!(testkit::wait_port(port, Duration::from_secs(20)));
    // Connections the server closes itself (SHUTDOWN): their TIME_WAIT sits on the server's port.
    let mut conns: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    for c in &mut conns {
        c.write_all(b"PING\r\n").unwrap();
        let mut buf = [0u8; 16];
        let n = c.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"+PONG\r\n");
    }
    conns[0].write_all(b"SHUTDOWN NOSAVE\r\n").unwrap();
    let start_wait = Instant::now();
    while first.try_wait().unwrap().is_none() {
        assert!(
            start_wait.elapsed() < Duration::from_secs(20),
            "SHUTDOWN did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(conns);
    let mut second = start(port);
    let up = testkit::wait_port(port, Duration::from_secs(20));
    let exited = second.try_wait().unwrap();
    let mut err = String::new();
    if !up {
        let _ = second.kill();
        let _ = second.wait();
        if let Some(mut e) = second.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
    }
    assert!(up, "restart on port {port} failed ({exited:?}): {err}");

    // A third server on the same live port is refused with a clear error.
    let mut third = start(port);
    let status = third.wait().unwrap();
    let mut err = String::new();
    third
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success());
    assert!(err.contains("Address already in use"), "{err}");
    let _ = second.kill();
    let _ = second.wait();
}

fn signal(child: &std::process::Child, sig: libc::c_int) {
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
}

/// Waits up to 20 s for the child to exit and returns its exit code (None: killed by a signal).
fn wait_exit(child: &mut std::process::Child) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the server did not exit"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn connect(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection()
        .unwrap()
}

/// Waits until something on the port answers PING with PONG. A bare connect is not enough here:
/// the listening socket of a server that just exited accepts connections for a few milliseconds.
fn answers_ping(port: u16, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 7];
            if c.write_all(b"PING\r\n").is_ok()
                && c.read_exact(&mut buf).is_ok()
                && &buf == b"+PONG\r\n"
            {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Starts a server and waits for it, failing with its stderr if it does not come up.
fn start_up(port: u16, extra: &[&str]) -> std::process::Child {
    let mut child = start_with(port, extra);
    if !answers_ping(port, Duration::from_secs(20)) {
        let _ = child.kill();
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        panic!("server on {port} did not start: {err}");
    }
    child
}

#[test]
fn sigterm_saves_the_rdb_and_a_restart_at_once_finds_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let port = testkit::free_port();
    // A save rule that never fires by itself: only the shutdown saves.
    let args = ["--dir", d, "--save", "3600 1"];
    let mut first = start_up(port, &args);
    let mut con = connect(port);
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v1")
        .query(&mut con)
        .unwrap();
    let mut p = redis::pipe();
    for i in 0..1000 {
        p.cmd("SET").arg(format!("key:{i}")).arg(i).ignore();
    }
    let _: () = p.query(&mut con).unwrap();
    // Clients still connected while the signal arrives.
    signal(&first, libc::SIGTERM);
    assert_eq!(
        wait_exit(&mut first),
        Some(0),
        "SIGTERM exits with status 0"
    );
    assert!(
        dir.path().join("dump.rdb").exists(),
        "no RDB saved on SIGTERM"
    );
    drop(con);

    // Started again the moment the first one is gone: the port must be usable.
    let mut second = start_up(port, &args);
    let mut con = connect(port);
    let v: String = redis::cmd("GET").arg("k").query(&mut con).unwrap();
    assert_eq!(v, "v1");
    let n: u64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(n, 1001);
    let _ = second.kill();
    let _ = second.wait();
}

#[test]
fn sigint_flushes_the_aof_before_exiting() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let port = testkit::free_port();
    let args = [
        "--dir",
        d,
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
    ];
    let mut first = start_up(port, &args);
    let mut con = connect(port);
    let mut p = redis::pipe();
    for i in 0..20_000 {
        p.cmd("INCR").arg(format!("n:{}", i % 100)).ignore();
    }
    let _: () = p.query(&mut con).unwrap();
    // Right after the last reply: whatever the AOF thread has not written yet must still land.
    signal(&first, libc::SIGINT);
    assert_eq!(wait_exit(&mut first), Some(0), "SIGINT exits with status 0");
    drop(con);

    let mut second = start_up(port, &args);
    let mut con = connect(port);
    for i in 0..100 {
        let v: u64 = redis::cmd("GET")
            .arg(format!("n:{i}"))
            .query(&mut con)
            .unwrap();
        assert_eq!(v, 200, "n:{i}");
    }
    let _ = second.kill();
    let _ = second.wait();
}
