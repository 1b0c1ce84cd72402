//! Shared helpers of ctl's integration tests: run `codisctl`, start servers, read topology.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use coord::{Coordinator, Store, Topology};
use serde_json::Value;
use testkit::Proc;

/// How to reach the product from the CLI.
#[derive(Clone)]
pub struct Product {
    pub coordinator: String,
    pub zk: String,
    pub product: String,
}

impl Product {
    pub fn fs(dir: &Path, product: &str) -> Self {
        Product {
            coordinator: "filesystem".into(),
            zk: dir.display().to_string(),
            product: product.into(),
        }
    }
    pub fn zk(addr: &str, product: &str) -> Self {
        Product {
            coordinator: "zookeeper".into(),
            zk: addr.into(),
            product: product.into(),
        }
    }
    fn base(&self) -> Vec<String> {
        vec![
            "--coordinator".into(),
            self.coordinator.clone(),
            "--zk".into(),
            self.zk.clone(),
            "--product".into(),
            self.product.clone(),
        ]
    }
    /// Runs codisctl with the product flags; returns (exit ok, parsed JSON stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (bool, Value, String) {
        let mut a = self.base();
        a.extend(args.iter().map(|s| s.to_string()));
        run_ctl(&a)
    }
    /// Runs and asserts success (`ret == 0`).
    pub fn ok(&self, args: &[&str]) -> Value {
        let (ok, v, err) = self.run(args);
        assert!(ok, "codisctl {args:?} failed: {v} {err}");
        v
    }
    /// Runs and asserts a failure whose message contains `needle`.
    pub fn fails(&self, args: &[&str], needle: &str) -> String {
        let (ok, v, err) = self.run(args);
        assert!(!ok, "codisctl {args:?} should fail, got {v}");
        assert_eq!(v["ret"], 1, "{v}");
        let msg = v["msg"].as_str().unwrap_or_default().to_string();
        assert!(
            msg.contains(needle),
            "codisctl {args:?}: {msg:?} should mention {needle:?} ({err})"
        );
        msg
    }
    /// A coordinator connection of our own to check topology.
    pub async fn store(&self) -> Store {
        let kind = self.coordinator.parse().unwrap();
        let cfg = coord::CoordConfig::new(kind, &self.zk, &self.product);
        let c: Arc<dyn Coordinator> = coord::connect(&cfg).await.unwrap();
        Store::new(c, &self.product).unwrap()
    }
    pub async fn topology(&self) -> Topology {
        let s = self.store().await;
        let t = s.topology().await.unwrap();
        s.coordinator().close().await;
        t
    }
}

pub fn run_ctl(args: &[String]) -> (bool, Value, String) {
    let out: Output = Command::new(testkit::bin_path("codisctl"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run codisctl");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let v: Value = serde_json::from_str(stdout.trim()).unwrap_or(Value::String(stdout.clone()));
    (
        out.status.success(),
        v,
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// A master for a group: codis-server when it builds, else redis-server (with a note).
pub fn master_server() -> Proc {
    static CODIS_OK: OnceLock<bool> = OnceLock::new();
    let ok = *CODIS_OK.get_or_init(|| {
        // CI builds the whole workspace first; a missing binary means the server is not
        // buildable in this tree right now (building it here would cost minutes).
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf();
        let ok = dir.join("codis-server").exists();
        if !ok {
            eprintln!(
                "NOTE: no codis-server binary next to the tests; group masters are redis-server"
            );
        }
        ok
    });
    if ok {
        testkit::codis_server(&[])
    } else {
        redis().0
    }
}

/// A real redis-server (kept with its temp dir).
pub fn redis() -> (Proc, tempfile::TempDir) {
    testkit::redis_server(&[]).expect("redis-server is installed")
}

pub fn addr(p: &Proc) -> String {
    format!("127.0.0.1:{}", p.port)
}

/// `INFO replication` field of a server.
pub fn info_field(p: &Proc, field: &str) -> String {
    let mut c = p.conn();
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut c)
        .unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or("")
        .trim()
        .to_string()
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}
