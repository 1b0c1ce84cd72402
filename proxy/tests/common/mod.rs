//! A small cluster for end-to-end tests: a filesystem (or ZooKeeper) coordinator, two
//! codis-server groups (slots 0–511 → group 1, 512–1023 → group 2) and the codis-proxy binary.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coord::{CoordConfig, Group, GroupServer, Kind, SlotMapping, Store};
use testkit::Proc;

pub const PRODUCT: &str = "e2e";

/// What the groups run.
#[derive(Clone, Copy)]
pub enum Servers {
    /// codis-server with this many cores.
    Codis(u32),
    /// codis-server with this many cores, also listening on `unix-<gid>.sock` in the test's
    /// directory ([`Cluster::unix_socket`]).
    CodisUnix(u32),
    /// A real redis-server.
    Redis,
}

pub struct Cluster {
    pub rt: tokio::runtime::Runtime,
    pub dir: tempfile::TempDir,
    pub coord_dir: PathBuf,
    pub store: Store,
    pub servers: Vec<Proc>,
    pub proxy: Option<Child>,
    pub port: u16,
    pub admin_port: u16,
    pub extra_toml: String,
    pub coord_ini: String,
}

/// Start a codis-server on `port` (single core).
pub fn server_on(port: u16) -> Proc {
    server_with_cores(port, 1)
}

/// Start a codis-server on `port` with `cores` executors.
pub fn server_with_cores(port: u16, cores: u32) -> Proc {
    server_with_args(port, cores, &[])
}

/// Start a codis-server on `port` with `cores` executors and `extra` arguments.
pub fn server_with_args(port: u16, cores: u32, extra: &[&str]) -> Proc {
    let child = Command::new(testkit::bin_path("codis-server"))
        .args([
            "--port",
            &port.to_string(),
            "--loglevel",
            "warn",
            "--cores",
            &cores.to_string(),
        ])
        .args(extra)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn codis-server");
    let p = Proc::new(child, port);
    assert!(
        testkit::wait_port(port, Duration::from_secs(20)),
        "codis-server did not start"
    );
    p
}

impl Cluster {
    /// Filesystem coordinator, two groups, proxy with `toml` extra settings.
    pub fn start(toml: &str) -> Cluster {
        Self::start_servers(toml, Servers::Codis(1))
    }

    /// Like [`Cluster::start`], with `cores` executors per codis-server.
    pub fn start_cores(toml: &str, cores: u32) -> Cluster {
        Self::start_servers(toml, Servers::Codis(cores))
    }

    /// Like [`Cluster::start_cores`], each server also listening on a Unix socket
    /// ([`Cluster::unix_socket`]).
    pub fn start_unix(toml: &str, cores: u32) -> Cluster {
        Self::start_servers(toml, Servers::CodisUnix(cores))
    }

    /// Like [`Cluster::start`], with real redis-servers as the groups (None if not installed).
    pub fn start_redis(toml: &str) -> Option<Cluster> {
        testkit::have_redis_server().then(|| Self::start_servers(toml, Servers::Redis))
    }

    fn start_servers(toml: &str, servers: Servers) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let coord_dir = dir.path().join("coord");
        let ini = format!(
            "coordinator=filesystem\nzk={}\nproduct={PRODUCT}\n",
            coord_dir.display()
        );
        let cc = CoordConfig::new(Kind::Filesystem, coord_dir.to_str().unwrap(), PRODUCT);
        Self::start_with_cores(dir, coord_dir, cc, ini, toml, servers)
    }

    pub fn start_with(
        dir: tempfile::TempDir,
        coord_dir: PathBuf,
        cc: CoordConfig,
        ini: String,
        toml: &str,
    ) -> Cluster {
        Self::start_with_cores(dir, coord_dir, cc, ini, toml, Servers::Codis(1))
    }

    fn start_with_cores(
        dir: tempfile::TempDir,
        coord_dir: PathBuf,
        cc: CoordConfig,
        ini: String,
        toml: &str,
        servers: Servers,
    ) -> Cluster {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let store = rt.block_on(async {
            let c = coord::connect(&cc).await.expect("coordinator");
            Store::new(c, PRODUCT).expect("store")
        });
        let servers = (1..=2)
            .map(|gid| match servers {
                Servers::Codis(cores) => server_with_cores(testkit::free_port(), cores),
                Servers::CodisUnix(cores) => {
                    let sock = Self::socket_in(dir.path(), gid);
                    let sock = sock.to_str().unwrap();
                    server_with_args(testkit::free_port(), cores, &["--unixsocket", sock])
                }
                // Without persistence it never writes to its directory.
                Servers::Redis => testkit::redis_server(&[]).expect("redis-server").0,
            })
            .collect();
        let mut c = Cluster {
            rt,
            dir,
            coord_dir,
            store,
            servers,
            proxy: None,
            port: testkit::free_port(),
            admin_port: testkit::free_port(),
            extra_toml: toml.to_string(),
            coord_ini: ini,
        };
        for gid in [1u32, 2] {
            let addr = c.server_addr(gid);
            c.rt.block_on(c.store.update_group(&Group {
                id: gid,
                servers: vec![GroupServer {
                    addr,
                    ..Default::default()
                }],
                ..Default::default()
            }))
            .expect("group");
        }
        let slots: Vec<SlotMapping> = (0..1024u32)
            .map(|id| SlotMapping {
                id,
                group_id: if id < 512 { 1 } else { 2 },
                ..Default::default()
            })
            .collect();
        c.rt.block_on(c.store.update_slot_mappings(&slots))
            .expect("slots");
        c.start_proxy();
        c
    }

    /// The Unix socket of group `gid`'s server in a [`Cluster::start_unix`] cluster.
    pub fn unix_socket(&self, gid: u32) -> PathBuf {
        Self::socket_in(self.dir.path(), gid)
    }

    fn socket_in(dir: &std::path::Path, gid: u32) -> PathBuf {
        dir.join(format!("unix-{gid}.sock"))
    }

    pub fn server_addr(&self, gid: u32) -> String {
        format!("127.0.0.1:{}", self.servers[gid as usize - 1].port)
    }

    pub fn start_proxy(&mut self) {
        let ini = self.dir.path().join("config.ini");
        std::fs::write(&ini, &self.coord_ini).unwrap();
        let toml = self.dir.path().join("proxy.toml");
        std::fs::write(&toml, &self.extra_toml).unwrap();
        let child = Command::new(testkit::bin_path("codis-proxy"))
            .arg("-c")
            .arg(&ini)
            .arg("--config")
            .arg(&toml)
            .args(["--cpu", "2", "--log-level", "warn"])
            .arg(format!("--addr=127.0.0.1:{}", self.port))
            .arg(format!("--http-addr=127.0.0.1:{}", self.admin_port))
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn codis-proxy");
        self.proxy = Some(child);
        assert!(
            testkit::wait_port(self.port, Duration::from_secs(20)),
            "proxy did not start"
        );
        assert!(
            testkit::wait_port(self.admin_port, Duration::from_secs(20)),
            "admin did not start"
        );
        self.wait_online();
    }

    /// Waits until every core applied the topology (admin `/proxy/stats` says online).
    pub fn wait_online(&self) {
        let start = Instant::now();
        loop {
            let (st, body) = self.http("GET", "/proxy/stats");
            if st == 200 && body.contains("\"online\":true") {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "proxy never came online: {body}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One raw request/reply exchange on a new connection (reads one reply chunk).
    pub fn raw(&self, req: &[u8]) -> Vec<u8> {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return Vec::new();
        };
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(req).unwrap();
        let mut buf = vec![0u8; 65536];
        let n = s.read(&mut buf).unwrap_or(0);
        buf.truncate(n);
        buf
    }

    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// A direct connection to group `gid`'s server.
    pub fn backend(&self, gid: u32) -> redis::Connection {
        self.servers[gid as usize - 1].conn()
    }

    /// The group that owns `key`.
    pub fn group_of(key: &str) -> u32 {
        if resp::slot(key.as_bytes()) < 512 {
            1
        } else {
            2
        }
    }

    /// GET over HTTP/1.0 on the admin port: (status, body).
    pub fn http(&self, method: &str, path: &str) -> (u16, String) {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.admin_port)) else {
            return (0, String::new());
        };
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let status = out
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// The proxy's token (from its model on the admin API).
    pub fn token(&self) -> String {
        let (st, body) = self.http("GET", "/api/proxy/model");
        assert_eq!(st, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).expect("model json")["token"]
            .as_str()
            .expect("token in the model")
            .to_string()
    }

    pub fn stats(&self) -> serde_json::Value {
        let (st, body) = self.http("GET", "/proxy/stats");
        assert_eq!(st, 200, "{body}");
        serde_json::from_str(&body).expect("stats json")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut p) = self.proxy.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

/// A connection that reads whole replies (RESP2 or RESP3), one per request.
pub struct Frames {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Frames {
    pub fn open(port: u16) -> Frames {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Frames { s, buf: Vec::new() }
    }

    /// Sends `args` as a multibulk request and returns its reply's bytes.
    pub fn ask(&mut self, args: &[&str]) -> String {
        self.send(args);
        self.next()
    }

    /// Sends `args` as a multibulk request.
    pub fn send(&mut self, args: &[&str]) {
        self.pipeline(&[args]);
    }

    /// Sends several requests in one write.
    pub fn pipeline(&mut self, reqs: &[&[&str]]) {
        let mut req = String::new();
        for args in reqs {
            req.push_str(&format!("*{}\r\n", args.len()));
            for a in *args {
                req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
            }
        }
        self.s.write_all(req.as_bytes()).unwrap();
    }

    /// Whether the server closed the connection (EOF or reset on the next read).
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 64];
        matches!(self.s.read(&mut b), Ok(0) | Err(_))
    }

    /// The next whole frame the server sends (a reply, or a pub/sub message).
    pub fn next(&mut self) -> String {
        loop {
            if let Some(n) = resp::frame::frame_len(&self.buf).unwrap() {
                let r = String::from_utf8_lossy(&self.buf[..n]).into_owned();
                self.buf.drain(..n);
                return r;
            }
            let mut chunk = [0u8; 65536];
            let n = self.s.read(&mut chunk).unwrap();
            assert!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}
