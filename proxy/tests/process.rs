//! Process-wide settings of codis-proxy.

mod common;

use common::Cluster;

/// `disable_thp` in `/proxy`'s config.
fn shown(c: &Cluster) -> serde_json::Value {
    let (code, body) = c.http("GET", "/proxy");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["config"]["disable_thp"].clone()
}

/// Transparent huge pages are off for the proxy unless `disable_thp = false` (as codis-server's
/// and Redis's `disable-thp`): a fresh 2 MiB page faulted in by mimalloc stalls whichever thread
/// touches it first, and the proxy's cores share their CPU with its control threads.
#[test]
fn transparent_huge_pages_are_off_unless_asked_for() {
    let mut c = Cluster::start("");
    assert_eq!(shown(&c), serde_json::json!(true));
    let pid = c.proxy.as_ref().unwrap().id();
    let Some(on) = testkit::thp_enabled(pid) else {
        eprintln!("SKIPPED the /proc check: this kernel has no THP_enabled in /proc/PID/status");
        return;
    };
    assert_eq!(on, "0", "the default left THP on");

    let mut old = c.proxy.take().unwrap();
    old.kill().unwrap();
    old.wait().unwrap();
    c.extra_toml = "disable_thp = false\n".into();
    c.start_proxy();
    assert_eq!(shown(&c), serde_json::json!(false));
    let pid = c.proxy.as_ref().unwrap().id();
    // 1 unless the kernel was built without THP at all.
    if std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists() {
        assert_eq!(testkit::thp_enabled(pid).as_deref(), Some("1"));
    }
}
