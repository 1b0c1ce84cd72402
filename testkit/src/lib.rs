//! Test support for integration tests across the workspace.
//!
//! - [`free_port`]: a loopback port nobody listens on (bind port 0, read it, release it).
//! - [`bin_path`]: where cargo put one of our binaries (`codis-server`, `codis-proxy`, …) for the
//!   profile the test runs under; builds it if missing.
//! - [`CodisServer`]: a `codis-server` child process on a free port, killed on drop.
//! - [`RedisServer`]: a real `redis-server` (Debian package) child process for differential tests.
//! - [`wait_port`]: wait until something accepts connections on a port.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
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
}

impl Proc {
    /// Kill the process now (as `kill -9`).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A `redis` crate client connected to the process.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).expect("redis url")
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
pub fn codis_server(extra: &[&str]) -> Proc {
    let port = free_port();
    let child = Command::new(bin_path("codis-server"))
        .args(["--port", &port.to_string(), "--loglevel", "warn"])
        .args(extra)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn codis-server");
    let mut p = Proc { child, port };
    assert!(
        wait_ping(&mut p, Duration::from_secs(20)),
        "codis-server did not start on {port}"
    );
    p
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
    let mut p = Proc { child, port };
    assert!(
        wait_ping(&mut p, Duration::from_secs(10)),
        "redis-server did not start"
    );
    Some((p, dir))
}

#[cfg(test)]
mod tests {
    #[test]
    fn free_ports_are_free() {
        let p = super::free_port();
        assert!(std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
    }
}
