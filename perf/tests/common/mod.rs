//! Test helpers: a real redis-server on a free port in a temp dir (killed on drop), a tiny
//! synchronous client, and a way to run the codis-bench binary.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use resp::Frame;

/// A redis-server child process.
pub struct Redis {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
    password: Option<String>,
}

fn free_port() -> u16 {
    testkit::free_port()
}

impl Redis {
    /// Start `redis-server` with no persistence (and `extra` arguments). A free port can be taken
    /// by a server of a test running in parallel between our probe and redis-server's bind: the
    /// server that answers must report our child's pid, else we retry on another port.
    pub fn start(extra: &[&str]) -> Redis {
        for _ in 0..5 {
            if let Some(r) = Redis::try_start(extra) {
                return r;
            }
        }
        panic!("redis-server did not come up on any of 5 ports");
    }

    fn try_start(extra: &[&str]) -> Option<Redis> {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let password = extra
            .iter()
            .position(|a| *a == "--requirepass")
            .and_then(|i| extra.get(i + 1))
            .map(|s| s.to_string());
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(extra)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (Debian package redis-server)");
        let mut r = Redis {
            child,
            port,
            _dir: dir,
            password,
        };
        let pid = format!("process_id:{}", r.child.id());
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = r.child.try_wait() {
                return None; // exited: most likely the port was taken
            }
            if let Ok(mut c) = r.try_client() {
                // A connection reset here (a server on this port going away) means: not ours yet.
                if let Ok(Frame::Bulk(info)) = c.try_cmd(&["INFO", "server"]) {
                    let ours = String::from_utf8_lossy(&info)
                        .lines()
                        .any(|l| l.trim_end() == pid);
                    return ours.then_some(r);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {port} did not come up");
    }

    fn try_client(&self) -> std::io::Result<Client> {
        let s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut c = Client {
            s,
            buf: BytesMut::new(),
        };
        if let Some(p) = &self.password {
            c.try_cmd(&["AUTH", p])?;
        }
        Ok(c)
    }

    /// A connected client.
    pub fn client(&self) -> Client {
        self.try_client().expect("connect to redis-server")
    }

    /// `host:port` of this server.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `calls` of `cmdstat_<name>` in INFO commandstats (0 when never called).
    pub fn calls(&self, name: &str) -> u64 {
        self.cmdstat(name, "calls")
    }

    /// A counter (`calls`, `failed_calls`, …) of `cmdstat_<name>` in INFO commandstats.
    pub fn cmdstat(&self, name: &str, field: &str) -> u64 {
        let info = match self.client().cmd(&["INFO", "commandstats"]) {
            Frame::Bulk(b) => String::from_utf8_lossy(&b).to_string(),
            other => panic!("INFO replied {other:?}"),
        };
        let prefix = format!("cmdstat_{name}:");
        let want = format!("{field}=");
        info.lines()
            .find_map(|l| l.trim_end().strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').find_map(|kv| kv.strip_prefix(&want)))
            .map(|n| n.parse().expect("counter number"))
            .unwrap_or(0)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking RESP client for set-up and checks.
pub struct Client {
    s: TcpStream,
    buf: BytesMut,
}

impl Client {
    /// Send a command, return its reply.
    pub fn cmd(&mut self, args: &[&str]) -> Frame {
        self.try_cmd(args).expect("reply")
    }

    /// Send a command, return its reply or the I/O error (a closed connection is one).
    pub fn try_cmd(&mut self, args: &[&str]) -> std::io::Result<Frame> {
        let mut out = BytesMut::new();
        Frame::command(args.iter().map(|a| a.as_bytes().to_vec())).encode(&mut out);
        self.s.write_all(&out)?;
        loop {
            if let Some(f) = Frame::parse(&mut self.buf).expect("valid reply") {
                return Ok(f);
            }
            let mut chunk = [0u8; 16384];
            let n = self.s.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// An integer reply's value.
    pub fn int(&mut self, args: &[&str]) -> i64 {
        match self.cmd(args) {
            Frame::Integer(i) => i,
            other => panic!("{args:?} replied {other:?}"),
        }
    }
}

/// Run codis-bench with `args`; panics unless it exits 0.
pub fn bench(args: &[&str]) -> String {
    let out = bench_raw(args);
    assert!(
        out.status.success(),
        "codis-bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Run codis-bench with `args`, whatever its exit status.
pub fn bench_raw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_codis-bench"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run codis-bench")
}

/// The JSON lines of `--json` output.
pub fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

/// A number field of a JSON object.
pub fn num(v: &serde_json::Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no number {key} in {v}"))
}
