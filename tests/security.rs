//! Security defaults (issue 11): passwords enforced end to end, the dashboard's mutating API
//! refuses requests without the token, and client-supplied sizes cannot make codis-server or
//! codis-proxy allocate without bound (the process RSS is sampled from `/proc/<pid>/status`
//! while a hostile client sends huge multibulk counts, bulk lengths and inline lines).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use e2e::{rss_kb, wait_for, Cluster, Spec};

fn raw_request(port: u16, req: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(req).expect("write");
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn conn(url: &str) -> redis::Connection {
    let c = redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .expect("connect");
    let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
    c
}

#[test]
fn passwords_enforced_through_proxy_migration_and_dashboard() {
    let mut spec = Spec::new(2, &[(0, 511, 1), (512, 1023, 2)]);
    spec.server_args = vec!["--requirepass".into(), "server-pw".into()];
    spec.ini_extra = "product_auth=server-pw\nsession_auth=client-pw\n".into();
    spec.session_auth = Some("client-pw".into());
    let mut c = Cluster::start_spec(spec);
    let proxy = c.proxy(0).port;

    // requirepass: a client of codis-server without AUTH is refused.
    let r = raw_request(c.masters[0].port, b"GET x\r\n");
    assert!(r.starts_with("-NOAUTH"), "codis-server without AUTH: {r:?}");
    let r = raw_request(c.masters[0].port, b"AUTH wrong\r\n");
    assert!(
        r.starts_with("-WRONGPASS") || r.starts_with("-ERR"),
        "{r:?}"
    );
    // session_auth: a client of the proxy without AUTH (or with the server's password) is refused.
    let r = raw_request(proxy, b"GET x\r\n");
    assert!(r.starts_with("-NOAUTH"), "codis-proxy without AUTH: {r:?}");
    let r = raw_request(proxy, b"AUTH server-pw\r\nGET x\r\n");
    assert!(
        r.starts_with("-ERR"),
        "codis-proxy with the wrong password: {r:?}"
    );

    // product_auth: the proxy authenticates to every backend.
    let mut p = conn(&c.proxy_url());
    let mut pipe = redis::pipe();
    for i in 0..400 {
        pipe.cmd("SET").arg(format!("auth:{i}")).arg(i).ignore();
    }
    pipe.query::<()>(&mut p).expect("SET through the proxy");
    for gid in 1..=2 {
        let url = format!("redis://:server-pw@{}/", c.server_addr(gid));
        let n: i64 = redis::cmd("DBSIZE").query(&mut conn(&url)).expect("DBSIZE");
        assert!(n > 0, "group {gid} got no keys: product_auth not used?");
    }

    // The migration link (dashboard → source → target) authenticates too.
    c.start_dashboard();
    let out = c.ctl(&["slot", "migrate", "0", "31", "2"]);
    assert!(
        out.ok,
        "slot migrate: {} {}\n{}",
        out.stdout,
        out.stderr,
        c.logs()
    );
    let moved = wait_for(Duration::from_secs(120), || {
        let s = c.slots();
        s[..32]
            .iter()
            .all(|s| s.group_id == 2 && s.state.is_empty())
            .then_some(())
    });
    assert!(moved.is_some(), "slots 0-31 did not move\n{}", c.logs());
    for i in 0..400 {
        let v: Option<i64> = redis::cmd("GET")
            .arg(format!("auth:{i}"))
            .query(&mut p)
            .expect("GET");
        assert_eq!(v, Some(i), "auth:{i} after the migration");
    }
    let url2 = format!("redis://:server-pw@{}/", c.server_addr(2));
    let keys2 = e2e::scan_all(&mut conn(&url2)).expect("SCAN group 2");
    let migrated = keys2.iter().filter(|k| resp::slot(k) < 32).count();
    assert!(migrated > 0, "no key of slots 0-31 reached group 2");

    // The dashboard's mutating API refuses a request without the right token.
    let port = c.dashboard.as_ref().map(|d| d.port).unwrap_or(0);
    let r = raw_request(
        port,
        b"PUT /api/topom/group/create/not-the-token/9 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
    );
    assert!(
        r.starts_with("HTTP/1.0 403") || r.starts_with("HTTP/1.1 403"),
        "dashboard without the token: {r:?}"
    );
    let r = raw_request(
        port,
        b"PUT /api/topom/group/create/9 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
    );
    assert!(
        !r.starts_with("HTTP/1.0 2") && !r.starts_with("HTTP/1.1 2"),
        "dashboard without a token at all: {r:?}"
    );
    let groups = c.ctl(&["group", "list"]);
    assert!(
        !groups.stdout.contains("\"id\": 9") && !groups.stdout.contains("\"id\":9"),
        "group 9 was created without the token: {}",
        groups.stdout
    );
    eprintln!("RESULT auth: requirepass, session_auth, product_auth (proxy and migration: {migrated} keys moved), dashboard token: enforced");
}

/// Samples a process's RSS every few ms until stopped; the maximum in KiB.
struct RssWatch {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl RssWatch {
    fn start(pid: u32) -> RssWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicU64::new(rss_kb(pid).unwrap_or(0)));
        let (s, m) = (stop.clone(), max.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(kb) = rss_kb(pid) {
                    m.fetch_max(kb, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        RssWatch {
            stop,
            max,
            handle: Some(handle),
        }
    }

    fn max_kb(&mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.max.load(Ordering::Relaxed)
    }
}

/// What one hostile client achieved.
#[derive(Debug)]
struct Attack {
    sent: u64,
    /// The write error that stopped it (`None`: it sent everything it wanted).
    cut_off: Option<String>,
    reply: String,
}

/// Sends `header`, then `filler` repeated up to `cap` bytes, until the peer stops it.
fn attack(port: u16, header: &[u8], filler: &[u8], cap: u64) -> Attack {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_write_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut chunk = Vec::with_capacity(1 << 20);
    while chunk.len() + filler.len() <= 1 << 20 {
        chunk.extend_from_slice(filler);
    }
    let mut sent = 0u64;
    let mut cut_off = s.write_all(header).err().map(|e| e.to_string());
    while cut_off.is_none() && sent < cap {
        match s.write(&chunk) {
            Ok(0) => cut_off = Some("write returned 0".into()),
            Ok(n) => sent += n as u64,
            Err(e) => cut_off = Some(e.to_string()),
        }
    }
    let mut buf = vec![0u8; 512];
    let n = s.read(&mut buf).unwrap_or(0);
    Attack {
        sent,
        cut_off,
        reply: String::from_utf8_lossy(&buf[..n]).into_owned(),
    }
}

/// Runs every hostile client against `port` (a process `pid` whose query buffer limit is
/// `limit_mb`) and checks the process stays bounded and alive.
fn hostile_clients(name: &str, pid: u32, port: u16, limit_mb: u64) {
    let base = rss_kb(pid).expect("VmRSS");
    // The limit, socket buffers, allocator slack: far below what the clients ask for.
    let bound_kb = base + (limit_mb * 4 + 128) * 1024;
    let cases: [(&str, &[u8], &[u8], u64); 4] = [
        (
            "*1000000000 then small bulks",
            b"*1000000000\r\n",
            b"$1\r\na\r\n",
            512 << 20,
        ),
        ("*1 $2000000000", b"*1\r\n$2000000000\r\n", b"x", 16 << 20),
        ("2 GB inline line", b"", b"aaaaaaaaaaaaaaaa", 2 << 30),
        (
            "SET with a 500 MB bulk",
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$500000000\r\n",
            b"vvvvvvvv",
            512 << 20,
        ),
    ];
    for (what, header, filler, cap) in cases {
        let mut w = RssWatch::start(pid);
        let a = attack(port, header, filler, cap);
        let max = w.max_kb();
        eprintln!(
            "RESULT size-limits {name}: {what}: sent {} MB before the cut ({:?}), reply {:?}, RSS {} MB -> max {} MB (bound {} MB)",
            a.sent >> 20,
            a.cut_off,
            a.reply.lines().next().unwrap_or(""),
            base / 1024,
            max / 1024,
            bound_kb / 1024
        );
        assert!(
            a.cut_off.is_some() || a.reply.starts_with("-ERR"),
            "{name}: {what}: the client sent {} MB and was never stopped",
            a.sent >> 20
        );
        assert!(
            a.sent < (limit_mb + 64) << 20,
            "{name}: {what}: accepted {} MB with a {limit_mb} MB limit",
            a.sent >> 20
        );
        assert!(
            max <= bound_kb,
            "{name}: {what}: RSS grew from {base} KiB to {max} KiB"
        );
        let r = raw_request(port, b"PING\r\n");
        assert!(r.starts_with("+PONG"), "{name} after {what}: {r:?}");
    }
}

#[test]
fn client_sizes_are_bounded_codis_server() {
    let s = testkit::codis_server(&["--cores", "1"]);
    let mut c = s.conn();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("client-query-buffer-limit")
        .arg("8mb")
        .query(&mut c)
        .expect("CONFIG SET client-query-buffer-limit");
    hostile_clients("codis-server", s.child.id(), s.port, 8);
}

#[test]
fn client_sizes_are_bounded_codis_proxy() {
    let mut spec = Spec::new(1, &[(0, 1023, 1)]);
    spec.ini_extra = "session_max_bufsize=8mb\n".into();
    let c = Cluster::start_spec(spec);
    let p = c.proxy(0);
    hostile_clients("codis-proxy", p.child.id(), p.port, 8);
}

/// The local addresses listening on `port` (from `/proc/net/tcp` and `/proc/net/tcp6`), as
/// hex `ADDR` strings of the kernel's table.
fn listeners(port: u16) -> Vec<String> {
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 4 || f[3] != "0A" {
                continue;
            }
            if let Some((addr, p)) = f[1].split_once(':') {
                if u16::from_str_radix(p, 16).ok() == Some(port) {
                    out.push(addr.to_string());
                }
            }
        }
    }
    out
}

#[test]
fn codis_server_binds_loopback_by_default() {
    let s = testkit::codis_server(&["--cores", "1"]);
    let l = listeners(s.port);
    assert!(!l.is_empty(), "nothing listens on {}", s.port);
    // 127.0.0.1 is 0100007F in the kernel's byte order; 0.0.0.0 would be 00000000.
    assert!(
        l.iter().all(|a| a == "0100007F"),
        "codis-server listens on {l:?} by default"
    );
    eprintln!("RESULT bind: codis-server default listeners {l:?} (127.0.0.1 only)");
}
