//! The README's first command, `scripts/quickstart`, as a user runs it (on free ports instead of
//! 16379-16382 / 18087 / 19000 / 11000): the cluster it starts serves through the proxy on both
//! groups, the migration it suggests moves every key of slots 0-511 to group 2, a second
//! quickstart on the same ports refuses to start without touching the first one's data, and
//! `kill` stops every process it started.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use redis::Commands;
use testkit::{bin_path, free_port};

/// Four consecutive free ports (the two groups' master and replica).
fn four_ports() -> u16 {
    loop {
        let p = free_port();
        if p < 65_000 && (1..4).all(|i| TcpListener::bind(("127.0.0.1", p + i)).is_ok()) {
            return p;
        }
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `scripts/quickstart --no-build` on the given ports; stopped with SIGTERM when dropped.
struct Quickstart {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Quickstart {
    fn start(dir: &Path, ports: &[u16; 4]) -> Quickstart {
        // The binaries of this test's profile, built if missing; the script finds them at
        // $CARGO_TARGET_DIR/<profile>.
        let bin = bin_path("codis-server");
        for b in ["codisctl", "codis-proxy"] {
            bin_path(b);
        }
        let profile_dir = bin.parent().unwrap();
        let mut cmd = Command::new("bash");
        cmd.arg(repo().join("scripts/quickstart"))
            .args(["--no-build", "--dir"])
            .arg(dir)
            .args(["--server-port", &ports[0].to_string()])
            .args(["--dashboard-port", &ports[1].to_string()])
            .args(["--proxy-port", &ports[2].to_string()])
            .args(["--admin-port", &ports[3].to_string()])
            .env("CARGO_TARGET_DIR", profile_dir.parent().unwrap())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if profile_dir.file_name().is_some_and(|n| n == "debug") {
            cmd.arg("--debug");
        }
        let mut child = cmd.spawn().expect("run scripts/quickstart");
        let (tx, lines) = mpsc::channel();
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(l);
                }
            });
        }
        Quickstart { child, lines }
    }

    /// Output lines until one contains `what`; panics with everything seen after `secs`.
    fn wait_for(&self, what: &str, secs: u64) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = l.contains(what);
                    seen.push(l);
                    if hit {
                        return seen;
                    }
                }
                Err(_) => panic!("quickstart never printed {what:?}:\n{}", seen.join("\n")),
            }
        }
    }

    /// Sends SIGTERM; whether the script exited within `secs`.
    fn terminate(&mut self, secs: u64) -> bool {
        // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Quickstart {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() && !self.terminate(10) {
            // Last resort after a failed test: everything the script started shares its
            // process group (see `start`).
            // SAFETY: kill(2) on the process group our child leads.
            unsafe {
                libc::kill(-(self.child.id() as i32), libc::SIGKILL);
            }
            let _ = self.child.wait();
        }
    }
}

fn conn(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection()
        .unwrap()
}

fn dbsize(port: u16) -> i64 {
    redis::cmd("DBSIZE").query(&mut conn(port)).unwrap()
}

#[test]
fn quickstart_runs_the_cluster_and_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cluster");
    let s1 = four_ports();
    // free_port() walks the port range in order: skip the servers' four.
    let other = || loop {
        let p = free_port();
        if !(s1..s1 + 4).contains(&p) {
            return p;
        }
    };
    let ports = [s1, other(), other(), other()];
    let proxy = ports[2];
    let mut qs = Quickstart::start(&data, &ports);
    let banner = qs.wait_for("Ctrl-C stops everything", 120).join("\n");
    assert!(banner.contains("codis-rs is running"), "{banner}");

    // Keys through the proxy land on both groups' masters and are read back.
    let mut p = conn(proxy);
    for i in 0..300 {
        let _: () = p.set(format!("key:{i}"), i).unwrap();
    }
    let (g1, g2) = (dbsize(s1), dbsize(s1 + 2));
    assert_eq!(g1 + g2, 300, "group 1 {g1} + group 2 {g2}");
    assert!(g1 > 0 && g2 > 0, "group 1 {g1}, group 2 {g2}");
    // The proxy reached both masters through their Unix sockets (same host).
    for port in [s1, s1 + 2] {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut conn(port))
            .unwrap();
        assert!(list.contains(" flags=U "), "master :{port}: {list}");
    }

    // A second quickstart on the same ports refuses, and leaves the first one's data alone.
    let mut again = Quickstart::start(&data, &ports);
    let out = again.wait_for("already in use", 60).join("\n");
    let st = again.child.wait().unwrap();
    assert!(!st.success(), "the second quickstart succeeded: {out}");
    assert!(
        data.join("config.ini").exists(),
        "the second quickstart removed the first's files"
    );

    // The migration the banner suggests: slots 0-511 (all of group 1's) move to group 2.
    let ctl = bin_path("codisctl");
    let conf = data.join("config.ini");
    let out = Command::new(&ctl)
        .arg("-c")
        .arg(&conf)
        .args(["slot", "migrate", "0", "511", "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(dbsize(s1), 0);
    assert_eq!(dbsize(s1 + 2), 300);
    for i in 0..300 {
        assert_eq!(p.get::<_, i64>(format!("key:{i}")).unwrap(), i);
    }
    drop(p);

    // kill (SIGTERM) stops every process it started: all its ports are free again.
    assert!(qs.terminate(30), "quickstart ignored SIGTERM for 30 s");
    let all = [s1, s1 + 1, s1 + 2, s1 + 3, ports[1], ports[2], ports[3]];
    let deadline = Instant::now() + Duration::from_secs(10);
    for port in all {
        while TcpListener::bind(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "port {port} still in use after quickstart stopped"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
