//! `unixsocket`: codis-server listens on a Unix socket as well as on TCP, as redis-server does
//! with `unixsocket` / `unixsocketperm`. Connections through it spread over the cores, show
//! `flags=U` and the socket path in CLIENT LIST, and the file is removed at shutdown.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

fn unix_client(path: &Path) -> redis::Connection {
    redis::Client::open(format!("unix://{}", path.display()))
        .expect("unix url")
        .get_connection()
        .expect("connect through the unix socket")
}

#[test]
fn clients_connect_through_the_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("codis.sock");
    // A socket file left behind by an earlier run is replaced, as Redis does.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let s = sock.to_str().unwrap().to_string();
    let mut p = testkit::codis_server(&[
        "--cores",
        "2",
        "--unixsocket",
        &s,
        "--unixsocketperm",
        "700",
    ]);
    let meta = std::fs::metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);

    // Several connections (dealt out to both cores), keys of every slot through each.
    let mut conns: Vec<redis::Connection> = (0..6).map(|_| unix_client(&sock)).collect();
    for (i, c) in conns.iter_mut().enumerate() {
        let mut pipe = redis::pipe();
        for k in 0..200 {
            pipe.cmd("SET").arg(format!("k:{i}:{k}")).arg(k).ignore();
        }
        pipe.query::<()>(c).unwrap();
    }
    let mut tcp = p.conn();
    for i in 0..6 {
        let keys: Vec<String> = (0..200).map(|k| format!("k:{i}:{k}")).collect();
        let got: Vec<i64> = redis::cmd("MGET").arg(&keys).query(&mut tcp).unwrap();
        assert_eq!(got, (0..200).collect::<Vec<i64>>());
    }
    let n: i64 = redis::cmd("DBSIZE").query(&mut conns[0]).unwrap();
    assert_eq!(n, 1200);

    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut conns[1])
        .unwrap();
    let unix: Vec<&str> = list.lines().filter(|l| l.contains(" flags=U ")).collect();
    assert_eq!(unix.len(), 6, "{list}");
    let addr = format!(" addr={s}:0 laddr={s}:0 ");
    assert!(unix.iter().all(|l| l.contains(&addr)), "{list}");
    assert_eq!(
        list.lines().filter(|l| l.contains(" flags=N ")).count(),
        1,
        "{list}"
    );

    let cfg: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("unixsocket*")
        .query(&mut tcp)
        .unwrap();
    assert_eq!(cfg, vec!["unixsocket", &s, "unixsocketperm", "700"]);
    let err = redis::cmd("CONFIG")
        .arg("SET")
        .arg("unixsocket")
        .arg("/tmp/x.sock")
        .query::<()>(&mut tcp)
        .unwrap_err();
    assert!(
        err.to_string().contains("can't set immutable config"),
        "{err}"
    );

    // SHUTDOWN through the socket; the file goes with the server.
    let _ = redis::cmd("SHUTDOWN").query::<()>(&mut conns[2]);
    testkit::wait_until("the server exits", || {
        matches!(p.child.try_wait(), Ok(Some(_)))
    });
    assert!(!sock.exists(), "the socket file outlived the server");
}

#[test]
fn a_file_that_is_not_a_socket_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.txt");
    std::fs::write(&path, "keep me").unwrap();
    let out = Command::new(testkit::bin_path("codis-server"))
        .args(["--port", &testkit::free_port().to_string(), "--dir"])
        .arg(dir.path())
        .arg("--unixsocket")
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .expect("run codis-server");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exists and is not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");

    let out = Command::new(testkit::bin_path("codis-server"))
        .args(["--port", "0", "--unixsocketperm", "999"])
        .stdin(Stdio::null())
        .output()
        .expect("run codis-server");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("octal"), "{err}");
}
