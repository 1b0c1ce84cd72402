//! A codis-server restarted on the same port comes up at once, even while connections of its
//! previous run linger in TIME_WAIT (the server closed them, so the TIME_WAIT is on its port); a
//! second server on a port that is in use still refuses to start.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn start(port: u16) -> std::process::Child {
    Command::new(testkit::bin_path("codis-server"))
        .args([
            "--port",
            &port.to_string(),
            "--cores",
            "1",
            "--loglevel",
            "warn",
        ])
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
