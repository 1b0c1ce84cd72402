//! Every reply is checked against what its command must return: a fake server answering with
//! well-formed but wrong replies makes the bench count errors, not successes.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use common::{bench, json_lines};

type Reply = fn(&[Bytes]) -> Vec<u8>;

/// A server on a free port answering each request with `reply(args)`; counts requests.
fn fake_server(reply: Reply) -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let c = c.clone();
            std::thread::spawn(move || serve(s, reply, &c));
        }
    });
    (port, count)
}

fn serve(mut s: TcpStream, reply: Reply, count: &AtomicU64) {
    let mut parser = resp::RequestParser::default();
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 16384];
    loop {
        let mut out = Vec::new();
        while let Ok(Some(args)) = parser.parse(&mut buf) {
            count.fetch_add(1, Ordering::SeqCst);
            out.extend_from_slice(&reply(&args));
        }
        if !out.is_empty() {
            // Two writes, so replies are also split across reads.
            let half = out.len() / 2;
            if s.write_all(&out[..half]).is_err() || s.write_all(&out[half..]).is_err() {
                return;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn errors_by_test(port: u16, tests: &str, n: &str) -> Vec<(String, u64, u64)> {
    let out = bench(&[
        "-p",
        &port.to_string(),
        "-t",
        tests,
        "-n",
        n,
        "-c",
        "3",
        "-P",
        "4",
        "-r",
        "10",
        "--json",
    ]);
    json_lines(&out)
        .iter()
        .map(|r| {
            (
                r["test"].as_str().unwrap_or("").to_string(),
                r["requests"].as_u64().unwrap_or(0),
                r["errors"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn ok_to_everything() {
    let (port, count) = fake_server(|_| b"+OK\r\n".to_vec());
    let rows = errors_by_test(
        port,
        "ping_mbulk,set,get,incr,lpush,lpop,zpopmin,lrange_100,mset,mget",
        "40",
    );
    for (test, requests, errors) in &rows {
        assert_eq!(*requests, 40, "{test}");
        let want = if test == "SET" || test.starts_with("MSET") {
            0
        } else {
            40
        };
        assert_eq!(*errors, want, "{test}");
    }
    assert_eq!(count.load(Ordering::SeqCst), 40 * rows.len() as u64);
}

#[test]
fn bulk_to_everything() {
    let (port, _) = fake_server(|_| b"$1\r\nx\r\n".to_vec());
    for (test, requests, errors) in
        errors_by_test(port, "set,get,incr,lpop,spop,ping_inline,mget", "20")
    {
        assert_eq!(requests, 20, "{test}");
        let ok = matches!(test.as_str(), "GET" | "LPOP" | "SPOP");
        assert_eq!(errors, if ok { 0 } else { 20 }, "{test}");
    }
}

#[test]
fn arrays_of_the_wrong_length() {
    // MGET of 10 keys answered with 9 elements, LRANGE 0 99 with 101, ZPOPMIN with 1.
    let (port, _) = fake_server(|args| {
        let n = match &args[0][..] {
            b"MGET" => 9,
            b"LRANGE" => 101,
            b"ZPOPMIN" => 1,
            _ => return b":1\r\n".to_vec(),
        };
        let mut v = format!("*{n}\r\n").into_bytes();
        for _ in 0..n {
            v.extend_from_slice(b"$3\r\nxxx\r\n");
        }
        v
    });
    for (test, requests, errors) in errors_by_test(port, "mget,lrange_100,zpopmin,lpush", "24") {
        assert_eq!(requests, 24, "{test}");
        // LPUSH (the LRANGE fill) gets its integer: fine. The arrays are all wrong.
        let want = if test.starts_with("LPUSH") { 0 } else { 24 };
        assert_eq!(errors, want, "{test}");
    }
}

#[test]
fn right_arrays_pass() {
    let (port, _) = fake_server(|args| {
        let n = match &args[0][..] {
            b"MGET" => 10,
            b"LRANGE" => 100,
            b"ZPOPMIN" => 2,
            _ => return b":1\r\n".to_vec(),
        };
        let mut v = format!("*{n}\r\n").into_bytes();
        for i in 0..n {
            v.extend_from_slice(if i % 3 == 0 {
                b"$-1\r\n"
            } else {
                b"$3\r\nxxx\r\n"
            });
        }
        v
    });
    for (test, requests, errors) in errors_by_test(port, "mget,lrange_100,zpopmin", "24") {
        assert_eq!((requests, errors), (24, 0), "{test}");
    }
}

#[test]
fn a_server_answering_errors_fails_every_request() {
    let (port, count) = fake_server(|_| b"-ERR out of service\r\n".to_vec());
    let tests =
        "ping_inline,ping_mbulk,set,get,incr,lpush,lpop,sadd,hset,zadd,lrange_100,mset,mget";
    let rows = errors_by_test(port, tests, "30");
    assert_eq!(rows.len(), 14, "{rows:?}");
    for (test, requests, errors) in &rows {
        assert_eq!((*requests, *errors), (30, 30), "{test}");
    }
    assert_eq!(count.load(Ordering::SeqCst), 30 * 14);
}
