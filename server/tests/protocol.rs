//! Protocol abuse: garbage, absurd headers, huge inline lines and clients vanishing mid-request
//! must cost only the offending connection; the server keeps answering everybody else.

mod rawwire;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use rawwire::{multibulk, Raw, Reply};

/// The server still answers a client connected before the abuse, and a new one.
fn still_serving(srv: &testkit::Proc, old: &mut redis::Connection, round: usize) {
    let v: String = redis::cmd("GET")
        .arg("canary")
        .query(old)
        .expect("old client");
    assert_eq!(v, "alive", "round {round}");
    let _: () = redis::cmd("SET")
        .arg(format!("r{round}"))
        .arg(round)
        .query(old)
        .unwrap();
    let mut fresh = srv.conn();
    let n: usize = redis::cmd("GET")
        .arg(format!("r{round}"))
        .query(&mut fresh)
        .expect("new client");
    assert_eq!(n, round);
}

/// Send `bytes`, then read whatever comes back until the server closes or goes quiet.
fn send_and_drain(port: u16, bytes: &[u8], then_close: bool) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _ = s.write_all(bytes);
    if then_close {
        return Vec::new();
    }
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = std::io::Read::read(&mut s, &mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    got
}

#[test]
fn abuse_leaves_the_server_up() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let mut old = srv.conn();
    let _: () = redis::cmd("SET")
        .arg("canary")
        .arg("alive")
        .query(&mut old)
        .unwrap();
    let mut round = 0;

    // Garbage bytes (inline requests of binary junk, then a bad multibulk).
    let mut junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    junk.extend_from_slice(b"\r\n*x\r\n");
    let got = send_and_drain(srv.port, &junk, false);
    assert!(
        got.starts_with(b"-ERR"),
        "garbage got {}",
        rawwire::show(&got)
    );
    round += 1;
    still_serving(&srv, &mut old, round);

    // A 4 GB bulk header: refused, connection closed.
    let got = send_and_drain(srv.port, b"*1\r\n$4294967296\r\n", false);
    assert_eq!(got, b"-ERR Protocol error: invalid bulk length\r\n");
    round += 1;
    still_serving(&srv, &mut old, round);

    // A 1M-element multibulk header, then the client disappears.
    send_and_drain(srv.port, b"*1000000\r\n", true);
    // ... and one that sends some of the elements first.
    let mut part = b"*1000000\r\n".to_vec();
    for _ in 0..10_000 {
        part.extend_from_slice(b"$3\r\nabc\r\n");
    }
    send_and_drain(srv.port, &part, true);
    round += 1;
    still_serving(&srv, &mut old, round);

    // Half a pipeline: many whole commands, then half of one, then gone.
    let mut pipe = Vec::new();
    for i in 0..5000 {
        pipe.extend_from_slice(&multibulk(&[b"SET", format!("half{i}").as_bytes(), b"v"]));
    }
    let last = multibulk(&[b"SET", b"halfdone", b"v"]);
    pipe.extend_from_slice(&last[..last.len() / 2]);
    send_and_drain(srv.port, &pipe, true);
    round += 1;
    still_serving(&srv, &mut old, round);
    let n: Option<String> = redis::cmd("GET").arg("halfdone").query(&mut old).unwrap();
    assert_eq!(n, None, "half a command must not run");

    // A pipeline whose replies are never read.
    let mut pipe = Vec::new();
    for _ in 0..20_000 {
        pipe.extend_from_slice(&multibulk(&[b"GET", b"canary"]));
    }
    send_and_drain(srv.port, &pipe, true);
    round += 1;
    still_serving(&srv, &mut old, round);

    // A 1 MiB+ inline line: too big, closed.
    let mut big = vec![b'x'; (1 << 20) + 10];
    big.extend_from_slice(b"\r\n");
    let mut c = Raw::connect(srv.port);
    c.send(&big);
    assert_eq!(
        c.read(),
        Reply::Frame(b"-ERR Protocol error: too big inline request\r\n".to_vec())
    );
    assert!(c.is_closed());
    round += 1;
    still_serving(&srv, &mut old, round);

    // A bulk announced at the maximum size, never sent.
    send_and_drain(srv.port, b"*2\r\n$3\r\nGET\r\n$536870912\r\nabc", true);
    round += 1;
    still_serving(&srv, &mut old, round);

    // Many abusers at once while a well-behaved client keeps working.
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let port = srv.port;
            std::thread::spawn(move || {
                let req: &[u8] = match i % 4 {
                    0 => b"*1\r\n$4294967296\r\n",
                    1 => b"*1000000\r\n$1\r\n",
                    2 => b"\x00\x01\x02\xff\xfe garbage\r\n",
                    _ => b"*3\r\n$3\r\nSET\r\n$1\r\nk",
                };
                send_and_drain(port, req, i % 2 == 0)
            })
        })
        .collect();
    for h in handles {
        h.join().expect("abuser");
    }
    round += 1;
    still_serving(&srv, &mut old, round);
}

/// A client that sends its commands and at once shuts down its side (`printf … | nc`, or a
/// pipeline whose last act is closing) gets every reply and then EOF: the server must notice a
/// FIN that arrives together with the last data, not only one that arrives later.
#[test]
fn half_closed_client_gets_its_replies_then_eof() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    for round in 0..50 {
        let mut s = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let req = format!("PING\r\nSET half{round} v{round}\r\nGET half{round}\r\n");
        s.write_all(req.as_bytes()).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let eof = loop {
            match std::io::Read::read(&mut s, &mut buf) {
                Ok(0) => break true,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => break false,
            }
        };
        let want = format!(
            "+PONG\r\n+OK\r\n${}\r\nv{round}\r\n",
            format!("v{round}").len()
        );
        assert_eq!(String::from_utf8_lossy(&got), want, "round {round}");
        assert!(
            eof,
            "round {round}: the server did not close after the client's FIN"
        );
    }
}
