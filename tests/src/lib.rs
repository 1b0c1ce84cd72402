//! Harness of the cross-binary end-to-end tests: a whole codis-rs cluster made of real
//! processes on 127.0.0.1 — codis-server group masters, one codis-proxy, the codisctl
//! dashboard — sharing one filesystem coordinator described by a `config.ini`.
//!
//! - [`Cluster::start`]: the coordinator directory, `config.ini`, the masters and the topology
//!   (`slot init -f`, `group create`, `server add`, `slot range-set`), then the proxy.
//! - [`Cluster::ctl`]: run `codisctl -c config.ini …` and parse its JSON answer.
//! - [`Cluster::start_dashboard`] / [`Cluster::kill_dashboard`]: the daemon that runs the
//!   migration executor (killed with SIGKILL, as a crash).
//! - [`Cluster::slots`]: every slot's `(group_id, state, target_id)` read from the coordinator.
//! - [`Cluster::proxy_conn`], [`scan_all`]: clients through the proxy and straight to a server.
//!
//! Child processes write their logs into the cluster's directory; [`Cluster::logs`] returns
//! their tails for failure messages. Everything is killed when the [`Cluster`] drops.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::{bin_path, free_port, wait_port, Proc};

/// One slot as stored in the coordinator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub id: u32,
    pub group_id: u32,
    /// The action state (`""` when the slot has none).
    pub state: String,
    pub target_id: u32,
}

/// A running cluster.
/// Fields drop in order: the processes die before their directory goes.
pub struct Cluster {
    pub dashboard: Option<Proc>,
    pub proxy: Proc,
    /// Group masters; group `i + 1` is `masters[i]`.
    pub masters: Vec<Proc>,
    pub config: PathBuf,
    dashboard_port: u16,
    pub dir: tempfile::TempDir,
}

/// The answer of one codisctl run.
#[derive(Debug)]
pub struct CtlOut {
    pub ok: bool,
    pub json: Value,
    pub stdout: String,
    pub stderr: String,
}

fn log_file(dir: &Path, name: &str) -> (Stdio, Stdio) {
    let path = dir.join(format!("{name}.log"));
    match File::create(&path).and_then(|f| Ok((f.try_clone()?, f))) {
        Ok((a, b)) => (Stdio::from(a), Stdio::from(b)),
        Err(_) => (Stdio::null(), Stdio::null()),
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

impl Cluster {
    /// Starts `groups` codis-server masters (`--cores server_cores`), writes the topology with
    /// `ranges` (`(from, to, gid)`, assigned online without moving data) and starts one
    /// codis-proxy with `--cpu 1`. The dashboard is not started.
    pub fn start(groups: u32, server_cores: u32, ranges: &[(u32, u32, u32)]) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let coord = dir.path().join("coordinator");
        std::fs::create_dir_all(&coord).expect("coordinator dir");
        let dashboard_port = free_port();
        let config = dir.path().join("config.ini");
        let ini = format!(
            "coordinator=filesystem\nzk={}\nproduct=e2e\nproduct_auth=\ndashboard_addr=127.0.0.1:{dashboard_port}\nmigration_method=semi-async\n",
            coord.display()
        );
        std::fs::write(&config, ini).expect("write config.ini");
        let mut masters = Vec::new();
        for g in 1..=groups {
            masters.push(start_server(dir.path(), g, server_cores));
        }
        let ctl_ok = |args: &[&str]| ctl_ok(dir.path(), &config, args);
        ctl_ok(&["slot", "init", "-f"]);
        for g in 1..=groups {
            let gs = g.to_string();
            ctl_ok(&["group", "create", &gs]);
            let addr = format!("127.0.0.1:{}", masters[g as usize - 1].port);
            ctl_ok(&["server", "add", &gs, &addr, "master"]);
        }
        for &(from, to, gid) in ranges {
            let (from, to, gid) = (from.to_string(), to.to_string(), gid.to_string());
            ctl_ok(&["slot", "range-set", &from, &to, &gid, "online"]);
        }
        let proxy = start_proxy(dir.path(), &config);
        Cluster {
            dir,
            config,
            masters,
            proxy,
            dashboard: None,
            dashboard_port,
        }
    }

    /// `127.0.0.1:port` of group `gid`'s master.
    pub fn server_addr(&self, gid: u32) -> String {
        format!("127.0.0.1:{}", self.masters[gid as usize - 1].port)
    }

    /// A connection straight to group `gid`'s master.
    pub fn server_conn(&self, gid: u32) -> redis::Connection {
        self.masters[gid as usize - 1].conn()
    }

    /// A connection through the proxy.
    pub fn proxy_conn(&self) -> redis::Connection {
        self.proxy.conn()
    }

    /// The proxy's `redis://` URL.
    pub fn proxy_url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.proxy.port)
    }

    /// Runs `codisctl -c config.ini args…`.
    pub fn ctl(&self, args: &[&str]) -> CtlOut {
        run_ctl(&self.config, args)
    }

    /// Starts `codisctl -c config.ini args…` without waiting (killed when dropped); its
    /// output goes to `<log>.log`.
    pub fn spawn_ctl(&self, log: &str, args: &[&str]) -> Proc {
        let (out, err) = log_file(self.dir.path(), log);
        let child = Command::new(bin_path("codisctl"))
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn codisctl");
        Proc { child, port: 0 }
    }

    /// Runs codisctl and asserts it succeeded.
    pub fn ctl_ok(&self, args: &[&str]) -> Value {
        ctl_ok(self.dir.path(), &self.config, args)
    }

    /// Starts (or restarts) the dashboard on its fixed port; waits until it serves.
    pub fn start_dashboard(&mut self) {
        // A restarted dashboard logs into a new file so the first one stays readable.
        let restarted = self.dir.path().join("dashboard.log").exists();
        let name = if restarted {
            "dashboard-restarted"
        } else {
            "dashboard"
        };
        let (out, err) = log_file(self.dir.path(), name);
        let child = Command::new(bin_path("codisctl"))
            .arg("-c")
            .arg(&self.config)
            .args([
                "dashboard",
                "--addr",
                &format!("127.0.0.1:{}", self.dashboard_port),
            ])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn codisctl dashboard");
        let p = Proc {
            child,
            port: self.dashboard_port,
        };
        assert!(
            wait_port(p.port, Duration::from_secs(20)),
            "the dashboard did not start:\n{}",
            self.logs()
        );
        self.dashboard = Some(p);
    }

    /// Kills the dashboard with SIGKILL (a crash: no cleanup runs).
    pub fn kill_dashboard(&mut self) {
        if let Some(mut d) = self.dashboard.take() {
            d.kill();
        }
    }

    /// Every slot as stored in the coordinator (`codisctl config dump`).
    pub fn slots(&self) -> Vec<Slot> {
        let v = self.ctl_ok(&["config", "dump"]);
        let dump = if v.get("slots").is_some() {
            &v
        } else {
            v.get("dump").unwrap_or(&v)
        };
        let slots = dump["slots"]
            .as_array()
            .unwrap_or_else(|| panic!("config dump has no slots: {v}"));
        slots
            .iter()
            .map(|s| Slot {
                id: s["id"].as_u64().unwrap_or(0) as u32,
                group_id: s["group_id"].as_u64().unwrap_or(0) as u32,
                state: s["action"]["state"].as_str().unwrap_or("").to_string(),
                target_id: s["action"]["target_id"].as_u64().unwrap_or(0) as u32,
            })
            .collect()
    }

    /// The tails of every log of the cluster, for failure messages.
    pub fn logs(&self) -> String {
        logs(self.dir.path())
    }
}

/// The tails of every `*.log` in `dir`.
pub fn logs(dir: &Path) -> String {
    let mut out = String::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    names.sort();
    for p in names {
        if p.extension().is_some_and(|e| e == "log") {
            out.push_str(&format!("---- {} ----\n{}\n", p.display(), tail(&p, 30)));
        }
    }
    out
}

/// Runs `codisctl -c config args…`.
pub fn run_ctl(config: &Path, args: &[&str]) -> CtlOut {
    let out = Command::new(bin_path("codisctl"))
        .arg("-c")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run codisctl");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let json = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    CtlOut {
        ok: out.status.success(),
        json,
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

fn ctl_ok(dir: &Path, config: &Path, args: &[&str]) -> Value {
    let o = run_ctl(config, args);
    assert!(
        o.ok,
        "codisctl {args:?} failed: {} {}\n{}",
        o.stdout,
        o.stderr,
        logs(dir)
    );
    o.json
}

fn start_proxy(dir: &Path, config: &Path) -> Proc {
    let port = free_port();
    let admin = free_port();
    let (out, err) = log_file(dir, "proxy");
    let child = Command::new(bin_path("codis-proxy"))
        .arg("-c")
        .arg(config)
        .args(["--cpu", "1", "--log-level", "info"])
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .args(["--http-addr", &format!("127.0.0.1:{admin}")])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn codis-proxy");
    let p = Proc { child, port };
    assert!(
        wait_port(port, Duration::from_secs(20)),
        "codis-proxy did not start:\n{}",
        logs(dir)
    );
    // Online means it has the topology: a key of every group answers.
    let start = Instant::now();
    loop {
        let mut conn = p.conn();
        let r: redis::RedisResult<Option<String>> =
            redis::cmd("GET").arg("e2e:probe").query(&mut conn);
        if r.is_ok() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "codis-proxy never came online: {r:?}\n{}",
            logs(dir)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    p
}

fn start_server(dir: &Path, gid: u32, cores: u32) -> Proc {
    let port = free_port();
    let data = dir.join(format!("server-{gid}"));
    std::fs::create_dir_all(&data).expect("server dir");
    let (out, err) = log_file(dir, &format!("server-{gid}"));
    let child = Command::new(bin_path("codis-server"))
        .args(["--port", &port.to_string(), "--cores", &cores.to_string()])
        .args(["--loglevel", "warn", "--dir"])
        .arg(&data)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn codis-server");
    let p = Proc { child, port };
    assert!(
        wait_port(port, Duration::from_secs(20)),
        "codis-server of group {gid} did not start on {port}:\n{}",
        tail(&dir.join(format!("server-{gid}.log")), 30)
    );
    p
}

/// Every key of database 0 on a server, by `SCAN`.
pub fn scan_all(conn: &mut redis::Connection) -> redis::RedisResult<Vec<Vec<u8>>> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query(conn)?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// Polls `f` every 100 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
