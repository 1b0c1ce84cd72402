//! Test support for integration tests across the workspace.
//!
//! - [`free_port`]: a loopback port nobody listens on, below the ephemeral range.
//! - [`bin_path`]: where cargo put one of our binaries (`codis-server`, `codis-proxy`, …) for the
//!   profile the test runs under; builds it if missing.
//! - [`CodisServer`]: a `codis-server` child process on a free port, killed on drop.
//! - [`RedisServer`]: a real `redis-server` (Debian package) child process for differential tests.
//! - [`wait_port`]: wait until something accepts connections on a port.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1, chosen **below the kernel's ephemeral range**.
///
/// Port 0 would hand out an ephemeral port, and ephemeral ports are also what every outgoing
/// connection uses as its local port: once a test kills a server and restarts it on the same
/// port, any `connect()` in the meantime (a proxy reconnecting, a client probing) may take that
/// port as its local end — or connect to itself on loopback — and the restart fails to bind.
/// Ports below the ephemeral range are never picked for outgoing connections. Each call probes
/// from a per-process pseudo-random point so parallel test processes rarely collide.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let low = ephemeral_low().max(20_000);
    let base = 15_000u32;
    let span = low - base;
    // One starting point per process: successive calls then walk a fixed permutation of the
    // range, so two tests of one process never get the same port (a time-based seed per call
    // could repeat a port another test's server is about to bind).
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        u64::from(std::process::id()).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
    });
    for _ in 0..u64::from(span) {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let candidate = base + (seed.wrapping_add(n) % u64::from(span)) as u32;
        if let Ok(port) = u16::try_from(candidate) {
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// The first port of the kernel's ephemeral (outgoing connection) range; 32768 if unknown.
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .filter(|&v: &u32| v > 1024 && v <= 65_535)
        .unwrap_or(32_768)
}

/// Wait until 127.0.0.1:`port` accepts a connection (up to `timeout`).
pub fn wait_port(port: u16, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Wait until `f` holds, checking every 20 ms; panics naming `what` after 20 seconds.
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The path of a workspace binary built for the same profile as the running test.
///
/// Test executables live in `target/<profile>/deps/`; binaries in `target/<profile>/`. If the
/// binary is missing, it is built with cargo (same profile).
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>")
        .to_path_buf();
    let path = profile_dir.join(name);
    if !path.exists() {
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args(["build", "--bin", name]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "cargo build --bin {name} failed");
    }
    path
}

/// A child process killed (SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
    pub port: u16,
    /// A codis-server's own working directory (`--dir`), removed after the process is killed.
    dir: Option<tempfile::TempDir>,
}

impl Proc {
    /// A process on `port` (0: none), killed when dropped.
    pub fn new(child: Child, port: u16) -> Proc {
        Proc {
            child,
            port,
            dir: None,
        }
    }

    /// Kill the process now (as `kill -9`).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A `redis` crate client connected to the process.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).expect("redis url")
    }

    /// The working directory testkit gave a codis-server started without `--dir`.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_ref().map(|d| d.path())
    }

    /// A synchronous connection.
    pub fn conn(&self) -> redis::Connection {
        self.client().get_connection().expect("connect")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Start `codis-server` on a free port with extra arguments.
///
/// The port is free when picked but another process may bind it before the server does (CI
/// saw "Address already in use" once): a server that exits during start-up is started again
/// on another port, up to three times.
pub fn codis_server(extra: &[&str]) -> Proc {
    let mut port = 0;
    for _ in 0..3 {
        port = free_port();
        // Without `--dir` a server would save to (and load from) the test's working directory:
        // one test's dump.rdb would seed every later test's servers.
        let dir = (!extra.contains(&"--dir")).then(|| tempfile::tempdir().expect("tempdir"));
        let mut cmd = Command::new(bin_path("codis-server"));
        cmd.args(["--port", &port.to_string(), "--loglevel", "warn"]);
        if let Some(d) = &dir {
            cmd.arg("--dir").arg(d.path());
        }
        let child = cmd
            .args(extra)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn codis-server");
        let mut p = Proc { child, port, dir };
        if wait_ping(&mut p, Duration::from_secs(20)) {
            return p;
        }
        if !matches!(p.child.try_wait(), Ok(Some(_))) {
            break; // running but not answering: a real failure, not a lost port
        }
    }
    panic!("codis-server did not start on {port}");
}

/// Wait until the process answers PING on its port (and is still alive). Stronger than
/// [`wait_port`]: a bare connect can succeed against something that is not the server.
pub fn wait_ping(p: &mut Proc, timeout: Duration) -> bool {
    use std::io::{Read, Write};
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(Some(status)) = p.child.try_wait() {
            eprintln!(
                "process on port {} exited during start-up: {status}",
                p.port
            );
            return false;
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", p.port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 64];
            if s.write_all(b"PING\r\n").is_ok() {
                if let Ok(n) = s.read(&mut buf) {
                    // +PONG, or -NOAUTH when a password is required: either way it serves.
                    if buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH") {
                        return true;
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// `THP_enabled` of `/proc/PID/status`: "0" when the process turned transparent huge pages off
/// (`prctl(PR_SET_THP_DISABLE)`); `None` before Linux 6.x, which does not show it.
pub fn thp_enabled(pid: u32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(|v| v.trim().to_string())
}

/// Whether Debian's `redis-server` is installed.
pub fn have_redis_server() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Start a real `redis-server` (no persistence) on a free port; `None` if it is not installed.
pub fn redis_server(extra: &[&str]) -> Option<(Proc, tempfile::TempDir)> {
    if !have_redis_server() {
        eprintln!("SKIPPED: redis-server is not installed (apt-get install redis-server)");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
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
        .arg("--dir")
        .arg(dir.path())
        .args(extra)
        .stdout(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn redis-server");
    let mut p = Proc::new(child, port);
    assert!(
        wait_ping(&mut p, Duration::from_secs(10)),
        "redis-server did not start"
    );
    Some((p, dir))
}

/// `FUNCTION LOAD code` on `c` (panics on an error); the library's name.
pub fn function_load(c: &mut redis::Connection, code: &str) -> String {
    redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg(code)
        .query(c)
        .expect("FUNCTION LOAD")
}

/// The names of the libraries `FUNCTION LIST` reports on `c`, sorted.
pub fn function_libraries(c: &mut redis::Connection) -> Vec<String> {
    let v: redis::Value = redis::cmd("FUNCTION")
        .arg("LIST")
        .query(c)
        .expect("FUNCTION LIST");
    let redis::Value::Array(libs) = v else {
        panic!("FUNCTION LIST: {v:?}")
    };
    let mut names: Vec<String> = libs
        .iter()
        .filter_map(|lib| {
            // RESP2: [library_name, name, engine, LUA, functions, [...]]
            let redis::Value::Array(fields) = lib else {
                return None;
            };
            let at = fields
                .iter()
                .position(|f| *f == redis::Value::BulkString(b"library_name".to_vec()))?;
            match fields.get(at + 1)? {
                redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            }
        })
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    #[test]
    fn free_ports_are_free() {
        let p = super::free_port();
        assert!(std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        // Never a port an outgoing connection could take as its local end.
        assert!(u32::from(p) < super::ephemeral_low().max(20_000), "{p}");
        assert_ne!(super::free_port(), super::free_port());
    }
}
