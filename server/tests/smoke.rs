//! The first end-to-end check: a two-core codis-server answers a real client, pipelines come back
//! in order across cores, and cross-core MSET/MGET see whole writes.

use std::io::{Read, Write};
use std::net::TcpStream;

#[test]
fn pipeline_across_cores_keeps_order() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let mut c = srv.conn();
    let mut p = redis::pipe();
    for i in 0..2000 {
        p.cmd("SET").arg(format!("k{i}")).arg(i).ignore();
    }
    for i in 0..2000 {
        p.cmd("GET").arg(format!("k{i}"));
    }
    let got: Vec<i64> = p.query(&mut c).unwrap();
    assert_eq!(got, (0..2000).collect::<Vec<i64>>());
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 2000);
    // MSET spanning both cores, then MGET back.
    let _: () = redis::cmd("MSET")
        .arg("a")
        .arg(1)
        .arg("b")
        .arg(2)
        .arg("c")
        .arg(3)
        .query(&mut c)
        .unwrap();
    let v: Vec<Option<i64>> = redis::cmd("MGET")
        .arg("a")
        .arg("b")
        .arg("c")
        .arg("nope")
        .query(&mut c)
        .unwrap();
    assert_eq!(v, vec![Some(1), Some(2), Some(3), None]);
}

#[test]
fn protocol_error_closes_only_that_connection() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let mut good = srv.conn();
    let mut bad = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    bad.write_all(b"*1\r\n$4294967296\r\n").unwrap();
    let mut reply = String::new();
    bad.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "-ERR Protocol error: invalid bulk length\r\n");
    let pong: String = redis::cmd("PING").query(&mut good).unwrap();
    assert_eq!(pong, "PONG");
}
