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
use testkit::{bin_path, free_port, wait_ping, wait_port, Proc};

/// One slot as stored in the coordinator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub id: u32,
    pub group_id: u32,
    /// The action state (`""` when the slot has none).
    pub state: String,
    pub target_id: u32,
}

/// Where the cluster keeps its topology.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Coordinator {
    /// A directory inside the cluster's temp dir.
    Filesystem,
    /// A running ZooKeeper (connect string `host:port[,host:port]`).
    ZooKeeper(String),
    /// A running etcd v3 (endpoints `host:port[,host:port]`).
    Etcd(String),
}

/// What [`Cluster::start_spec`] starts.
#[derive(Clone, Debug)]
pub struct Spec {
    pub groups: u32,
    pub server_cores: u32,
    /// `(from, to, gid)` slot ranges, assigned online.
    pub ranges: Vec<(u32, u32, u32)>,
    /// How many proxies (each `--cpu 1`).
    pub proxies: usize,
    pub coordinator: Coordinator,
    /// Extra `key=value` lines of `config.ini` (read by codisctl and every proxy).
    pub ini_extra: String,
    /// Extra arguments of every codis-server.
    pub server_args: Vec<String>,
    /// Extra arguments of group `gid`'s codis-server (`(gid, args)`), e.g. `--bind`.
    pub group_args: Vec<(u32, Vec<String>)>,
    /// Group `gid`'s master listens on this host instead of 127.0.0.1 (`(gid, host)`).
    pub group_host: Vec<(u32, String)>,
    /// Wraps group `gid`'s codis-server command line (`(gid, prefix)`), e.g.
    /// `["ip", "netns", "exec", "ns1"]`.
    pub group_prefix: Vec<(u32, Vec<String>)>,
    /// The proxies' `session_auth` (clients of [`Cluster::proxy_conn`] send AUTH).
    pub session_auth: Option<String>,
}

impl Spec {
    /// `groups` masters with `--cores 1`, the given ranges, one proxy, the filesystem
    /// coordinator.
    pub fn new(groups: u32, ranges: &[(u32, u32, u32)]) -> Spec {
        Spec {
            groups,
            server_cores: 1,
            ranges: ranges.to_vec(),
            proxies: 1,
            coordinator: Coordinator::Filesystem,
            ini_extra: String::new(),
            server_args: Vec::new(),
            group_args: Vec::new(),
            group_host: Vec::new(),
            group_prefix: Vec::new(),
            session_auth: None,
        }
    }
}

/// A running cluster.
/// Fields drop in order: the processes die before their directory goes.
pub struct Cluster {
    pub dashboard: Option<Proc>,
    /// The proxies (`None` once killed with [`Cluster::kill_proxy`]).
    pub proxies: Vec<Option<Proc>>,
    /// Group masters; group `i + 1` is `masters[i]`.
    pub masters: Vec<Proc>,
    /// The host each master listens on (`127.0.0.1` unless [`Spec::group_host`] says).
    pub hosts: Vec<String>,
    pub config: PathBuf,
    dashboard_port: u16,
    pub spec: Spec,
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
        let mut spec = Spec::new(groups, ranges);
        spec.server_cores = server_cores;
        Cluster::start_spec(spec)
    }

    /// Starts what `spec` describes: the masters, the topology, then the proxies.
    pub fn start_spec(spec: Spec) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let dashboard_port = free_port();
        let config = dir.path().join("config.ini");
        let coord_line = match &spec.coordinator {
            Coordinator::Filesystem => {
                let coord = dir.path().join("coordinator");
                std::fs::create_dir_all(&coord).expect("coordinator dir");
                format!("coordinator=filesystem\nzk={}\n", coord.display())
            }
            Coordinator::ZooKeeper(addr) => {
                format!("coordinator=zookeeper\nzk={addr}\nsession_timeout_ms=4000\n")
            }
            Coordinator::Etcd(addr) => {
                format!("coordinator=etcd\nzk={addr}\nsession_timeout_ms=4000\n")
            }
        };
        let ini = format!(
            "{coord_line}product=e2e\nproduct_auth=\ndashboard_addr=127.0.0.1:{dashboard_port}\nmigration_method=semi-async\n{}\n",
            spec.ini_extra
        );
        std::fs::write(&config, ini).expect("write config.ini");
        let mut masters = Vec::new();
        let mut hosts = Vec::new();
        for g in 1..=spec.groups {
            let host = spec
                .group_host
                .iter()
                .find(|(id, _)| *id == g)
                .map_or("127.0.0.1".to_string(), |(_, h)| h.clone());
            masters.push(start_server(dir.path(), g, &spec, &host));
            hosts.push(host);
        }
        let ctl_ok = |args: &[&str]| ctl_ok(dir.path(), &config, args);
        ctl_ok(&["slot", "init", "-f"]);
        for g in 1..=spec.groups {
            let gs = g.to_string();
            ctl_ok(&["group", "create", &gs]);
            let i = g as usize - 1;
            let addr = format!("{}:{}", hosts[i], masters[i].port);
            ctl_ok(&["server", "add", &gs, &addr, "master"]);
        }
        for &(from, to, gid) in &spec.ranges {
            let (from, to, gid) = (from.to_string(), to.to_string(), gid.to_string());
            ctl_ok(&["slot", "range-set", &from, &to, &gid, "online"]);
        }
        let mut proxies = Vec::new();
        for i in 0..spec.proxies {
            let name = if i == 0 {
                "proxy".to_string()
            } else {
                format!("proxy-{}", i + 1)
            };
            proxies.push(Some(start_proxy(
                dir.path(),
                &config,
                &name,
                spec.session_auth.as_deref(),
            )));
        }
        Cluster {
            dir,
            config,
            masters,
            hosts,
            proxies,
            dashboard: None,
            dashboard_port,
            spec,
        }
    }

    /// Proxy `i` (panics if it was killed).
    pub fn proxy(&self, i: usize) -> &Proc {
        self.proxies[i].as_ref().expect("that proxy was killed")
    }

    /// Kills proxy `i` with SIGKILL.
    pub fn kill_proxy(&mut self, i: usize) {
        if let Some(mut p) = self.proxies[i].take() {
            p.kill();
        }
    }

    /// The `redis://` URL of proxy `i` (with the session password when there is one).
    pub fn proxy_url_of(&self, i: usize) -> String {
        proxy_url(self.proxy(i).port, self.spec.session_auth.as_deref())
    }

    /// Process ids: every live proxy, every master, the dashboard (name, pid).
    pub fn pids(&self) -> Vec<(String, u32)> {
        let mut v = Vec::new();
        for (i, p) in self.proxies.iter().enumerate() {
            if let Some(p) = p {
                v.push((format!("proxy-{}", i + 1), p.child.id()));
            }
        }
        for (i, m) in self.masters.iter().enumerate() {
            v.push((format!("server-{}", i + 1), m.child.id()));
        }
        if let Some(d) = &self.dashboard {
            v.push(("dashboard".to_string(), d.child.id()));
        }
        v
    }

    /// `host:port` of group `gid`'s master.
    pub fn server_addr(&self, gid: u32) -> String {
        let i = gid as usize - 1;
        format!("{}:{}", self.hosts[i], self.masters[i].port)
    }

    /// A connection straight to group `gid`'s master.
    pub fn server_conn(&self, gid: u32) -> redis::Connection {
        redis::Client::open(format!("redis://{}/", self.server_addr(gid)))
            .and_then(|c| c.get_connection())
            .expect("connect to a codis-server")
    }

    /// A connection through the first proxy.
    pub fn proxy_conn(&self) -> redis::Connection {
        redis::Client::open(self.proxy_url())
            .and_then(|c| c.get_connection())
            .expect("connect to the proxy")
    }

    /// The first proxy's `redis://` URL.
    pub fn proxy_url(&self) -> String {
        self.proxy_url_of(0)
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
        Proc::new(child, 0)
    }

    /// Waits (up to 30 s) until every live proxy acknowledged the same topology version, so
    /// none is in the middle of writing its acknowledgement (with the filesystem coordinator
    /// that write holds the coordinator's write lock: a proxy paused with SIGSTOP inside it
    /// would block every writer until it resumes).
    pub fn wait_proxies_settled(&self) -> bool {
        wait_for(Duration::from_secs(30), || {
            let v = self.ctl_ok(&["proxy", "list"]);
            let list = v.get("proxies").unwrap_or(&v).as_array()?.clone();
            let acked: Vec<u64> = list
                .iter()
                .filter(|p| p["alive"].as_bool() == Some(true))
                .map(|p| p["acked_version"].as_u64().unwrap_or(0))
                .collect();
            let first = *acked.first()?;
            (acked.len() == self.proxies.iter().flatten().count()
                && first > 0
                && acked.iter().all(|&a| a == first))
            .then_some(())
        })
        .is_some()
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
        let p = Proc::new(child, self.dashboard_port);
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

/// `redis://[:password@]127.0.0.1:port/`.
pub fn proxy_url(port: u16, password: Option<&str>) -> String {
    match password {
        Some(pw) => format!("redis://:{pw}@127.0.0.1:{port}/"),
        None => format!("redis://127.0.0.1:{port}/"),
    }
}

fn start_proxy(dir: &Path, config: &Path, name: &str, auth: Option<&str>) -> Proc {
    let port = free_port();
    let admin = free_port();
    let (out, err) = log_file(dir, name);
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
    let p = Proc::new(child, port);
    assert!(
        wait_port(port, Duration::from_secs(20)),
        "codis-proxy did not start:\n{}",
        logs(dir)
    );
    // Online means it has the topology: a key of every group answers.
    let start = Instant::now();
    let url = proxy_url(port, auth);
    loop {
        let r: redis::RedisResult<Option<String>> = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection())
            .and_then(|mut conn| redis::cmd("GET").arg("e2e:probe").query(&mut conn));
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

fn start_server(dir: &Path, gid: u32, spec: &Spec, host: &str) -> Proc {
    let port = free_port();
    let data = dir.join(format!("server-{gid}"));
    std::fs::create_dir_all(&data).expect("server dir");
    let (out, err) = log_file(dir, &format!("server-{gid}"));
    let prefix: Vec<String> = spec
        .group_prefix
        .iter()
        .find(|(id, _)| *id == gid)
        .map(|(_, p)| p.clone())
        .unwrap_or_default();
    let server = bin_path("codis-server");
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(&server);
            c
        }
        None => Command::new(&server),
    };
    cmd.args(["--port", &port.to_string()])
        .args(["--cores", &spec.server_cores.to_string()])
        .args(["--loglevel", "warn", "--dir"])
        .arg(&data)
        .args(&spec.server_args);
    if host != "127.0.0.1" {
        cmd.args(["--bind", host]);
    }
    if let Some((_, extra)) = spec.group_args.iter().find(|(id, _)| *id == gid) {
        cmd.args(extra);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn codis-server");
    let p = Proc::new(child, port);
    let start = Instant::now();
    let up = loop {
        if std::net::TcpStream::connect((host, port)).is_ok() {
            break true;
        }
        if start.elapsed() > Duration::from_secs(20) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        up,
        "codis-server of group {gid} did not start on {host}:{port}:\n{}",
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

/// A codis-server outside the topology (`--cores 1`, its own directory in `dir`) on `port`,
/// answering PING: a replica to add with `codisctl server add … slave` or `REPLICAOF`.
pub fn start_extra_server(dir: &Path, port: u16) -> Proc {
    let data = dir.join(format!("extra-{port}"));
    std::fs::create_dir_all(&data).expect("server dir");
    let child = Command::new(bin_path("codis-server"))
        .args([
            "--port",
            &port.to_string(),
            "--cores",
            "1",
            "--loglevel",
            "warn",
        ])
        .arg("--dir")
        .arg(&data)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn codis-server");
    let mut p = Proc::new(child, port);
    assert!(
        wait_ping(&mut p, Duration::from_secs(20)),
        "codis-server on {port} did not start"
    );
    p
}

/// `INFO replication` of a server ("" when it does not answer).
pub fn replication_info(c: &mut redis::Connection) -> String {
    redis::cmd("INFO")
        .arg("replication")
        .query(c)
        .unwrap_or_default()
}

/// Waits until a server is a replica with its master link up; panics after 60 s.
pub fn wait_link_up(c: &mut redis::Connection) {
    let up = wait_for(Duration::from_secs(60), || {
        let info = replication_info(c);
        (info.contains("role:slave") && info.contains("master_link_status:up")).then_some(())
    });
    assert!(
        up.is_some(),
        "replica link never came up: {}",
        replication_info(c)
    );
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

/// Sends signal `sig` (e.g. `libc::SIGSTOP`) to process `pid`.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child process this harness started.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// The resident set size of a process in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
}

pub mod load;
