//! The dashboard daemon as a real process: one lock holder (a second dashboard is refused
//! with the holder named), CLI verbs routed through its API, the token check, promotion with
//! real redis-servers, the web page in headless Chromium, and a killed dashboard's lock gone.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use coord::SlotState;
use serde_json::Value;

const AUTH: &str = "s3cret";

struct Daemon(Child);
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn with_auth<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--product-auth", AUTH];
    v.extend_from_slice(args);
    v
}

fn http(port: u16, method: &str, path: &str) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt
        .block_on(ctl::http::request(
            &format!("127.0.0.1:{port}"),
            method,
            path,
            None,
            Duration::from_secs(10),
        ))
        .unwrap();
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

fn chromium(port: u16, shot: &std::path::Path) -> Option<String> {
    let bin = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(bin) = bin else {
        eprintln!(
            "SKIPPED web page check: chromium is not installed (apt-get install -y chromium)"
        );
        return None;
    };
    let profile = tempfile::tempdir().unwrap();
    let common = |extra: &str| {
        let mut c = Command::new(bin);
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--virtual-time-budget=4000",
            "--window-size=1400,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(extra)
        .arg(format!("http://127.0.0.1:{port}/"))
        .stdin(Stdio::null())
        .stderr(Stdio::null());
        c
    };
    let dom = common("--dump-dom").output().expect("run chromium");
    let _ = common(&format!("--screenshot={}", shot.display()))
        .stdout(Stdio::null())
        .status();
    Some(String::from_utf8_lossy(&dom.stdout).to_string())
}

#[test]
fn dashboard_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let p = Product::fs(dir.path(), "dash");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let m1 = master_server();
    let m2 = master_server();
    p.ok(&with_auth(&["slot", "init"]));
    for (gid, m) in [("1", &m1), ("2", &m2)] {
        p.ok(&with_auth(&["group", "create", gid]));
        p.ok(&with_auth(&["server", "add", gid, &addr(m), "master"]));
    }
    p.ok(&with_auth(&[
        "slot",
        "range-set",
        "0",
        "511",
        "1",
        "online",
    ]));
    p.ok(&with_auth(&[
        "slot",
        "range-set",
        "512",
        "1023",
        "2",
        "online",
    ]));

    // Start the dashboard.
    let port = testkit::free_port();
    let listen = format!("127.0.0.1:{port}");
    let d = Command::new(testkit::bin_path("codisctl"))
        .args(["--coordinator", "filesystem", "--zk"])
        .arg(dir.path())
        .args([
            "--product",
            "dash",
            "--product-auth",
            AUTH,
            "dashboard",
            "--addr",
            &listen,
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut daemon = Daemon(d);
    assert!(
        testkit::wait_port(port, Duration::from_secs(20)),
        "dashboard did not start"
    );
    let holder = rt.block_on(async { p.store().await.load_topom().await.unwrap() });
    assert_eq!(holder.map(|t| t.admin_addr), Some(listen.clone()));

    // A second dashboard is refused, naming the holder.
    let (ok, v, _) = p.run(&with_auth(&[
        "dashboard",
        "--addr",
        &format!("127.0.0.1:{}", testkit::free_port()),
    ]));
    assert!(!ok);
    let msg = v["msg"].as_str().unwrap_or_default();
    assert!(
        msg.contains("locked by the dashboard at") && msg.contains(&listen),
        "{msg}"
    );

    // Verbs go through the dashboard (which holds the lock).
    p.ok(&with_auth(&["group", "create", "3"]));
    p.fails(&with_auth(&["group", "create", "3"]), "already exists");
    p.fails(
        &with_auth(&["slot", "migrate", "0", "3", "3"]),
        "group 3 has no master",
    );
    p.ok(&with_auth(&["group", "remove", "3"]));
    // The wrong token (product name only, no auth) is refused.
    p.fails(&["group", "create", "4"], "unauthorized");
    let (status, _) = http(port, "PUT", "/api/topom/group/create/nottoken/4");
    assert_eq!(status, 403);
    let (status, o) = http(port, "GET", "/topom");
    assert_eq!(status, 200);
    assert_eq!(o["slots"].as_array().map(|a| a.len()), Some(1024));
    assert_eq!(o["product"], "dash");
    assert!(rt.block_on(async { p.topology().await.group(4).is_none() }));

    // Promotion with real redis-servers through the dashboard.
    let (a, _da) = redis();
    let (b, _db) = redis();
    p.ok(&with_auth(&["group", "create", "4"]));
    p.ok(&with_auth(&["server", "add", "4", &addr(&a), "master"]));
    p.ok(&with_auth(&["server", "add", "4", &addr(&b), "slave"]));
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v1")
        .query(&mut a.conn())
        .unwrap();
    wait_until("replication of k", Duration::from_secs(10), || {
        redis::cmd("GET")
            .arg("k")
            .query::<Option<String>>(&mut b.conn())
            .ok()
            .flatten()
            .as_deref()
            == Some("v1")
    });
    p.ok(&with_auth(&["slot", "set", "1023", "4", "online"]));
    p.fails(
        &with_auth(&["server", "promote", "4", &addr(&a)]),
        "already the master",
    );
    p.fails(
        &with_auth(&["server", "promote", "4", "127.0.0.1:1"]),
        "not in group 4",
    );
    let v = p.ok(&with_auth(&["server", "promote", "4", &addr(&b)]));
    assert_eq!(v["master"], addr(&b));
    assert_eq!(info_field(&b, "role"), "master");
    let got: Option<String> = redis::cmd("GET").arg("k").query(&mut b.conn()).unwrap();
    assert_eq!(got.as_deref(), Some("v1"), "data present on the new master");
    assert_eq!(info_field(&a, "role"), "slave", "old master demoted");
    assert_eq!(info_field(&a, "master_port"), b.port.to_string());
    let t = rt.block_on(p.topology());
    let g = &t.groups()[&4];
    assert_eq!(
        g.servers.iter().map(|s| s.addr.clone()).collect::<Vec<_>>(),
        vec![addr(&b), addr(&a)]
    );
    assert!(g.promoting.state.is_empty());
    let m = t.slot(1023);
    assert_eq!((m.group_id, m.action.state), (4, SlotState::Nothing));

    // Something to look at: paused pending migrations, then the page.
    p.ok(&with_auth(&["slot", "action", "pause"]));
    p.ok(&with_auth(&[
        "slot",
        "migrate",
        "0",
        "40",
        "2",
        "--no-wait",
    ]));
    std::thread::sleep(Duration::from_millis(2500)); // let the poller see the servers
    let shot = dir.path().join("dashboard.png");
    if let Some(dom) = chromium(port, &shot) {
        assert_eq!(
            dom.matches("title=\"slot ").count(),
            1024,
            "slot map rendered"
        );
        assert!(dom.contains("slot 600 → group 2"), "slot colours by group");
        assert!(dom.contains("(pending to group 2)"), "migrations shown");
        assert!(
            dom.contains(&addr(&b)) && dom.contains(&addr(&m1)),
            "servers listed"
        );
        assert!(dom.contains("data-gid=\"4\""), "groups listed");
        if shot.exists() {
            let art = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
            let _ = std::fs::create_dir_all(&art);
            let _ = std::fs::copy(&shot, art.join("dashboard.png"));
        }
    }
    let v = p.ok(&with_auth(&["slot", "action", "cancel"]));
    assert_eq!(v["cancelled"], 41);
    p.ok(&with_auth(&["slot", "action", "resume"]));
    // The dashboard's executor runs a migration the CLI follows to the end.
    p.ok(&with_auth(&[
        "slot",
        "range-set",
        "100",
        "109",
        "0",
        "offline",
    ]));
    p.ok(&with_auth(&["slot", "migrate", "100", "109", "2"]));
    let t = rt.block_on(p.topology());
    assert!((100..110).all(|s| t.slot(s).group_id == 2 && t.slot(s).action.state.is_nothing()));
    let (_, stats) = http(port, "GET", "/api/topom/stats");
    assert!(
        stats["stats"]["servers"]
            .as_array()
            .is_some_and(|a| a.len() >= 4),
        "{stats}"
    );

    // kill -9: the lock vanishes with the process; the CLI then acts directly.
    let _ = daemon.0.kill();
    let _ = daemon.0.wait();
    assert!(rt
        .block_on(async { p.store().await.load_topom().await.unwrap() })
        .is_none());
    p.fails(
        &with_auth(&["slot", "action", "pause"]),
        "no dashboard is running",
    );
    p.ok(&with_auth(&[
        "slot",
        "range-set",
        "1023",
        "1023",
        "2",
        "online",
    ]));
    p.ok(&with_auth(&["server", "remove", "4", &addr(&a)]));
    assert_eq!(rt.block_on(p.topology()).groups()[&4].servers.len(), 1);
}
