//! Fault scenarios (issue 11), each with a checker: no acknowledged write lost (every key read
//! back is between its last acknowledged and its last attempted write), no client hangs (every
//! call has a timeout; a timeout fails the scenario), and numbers printed as `RESULT` lines
//! (errors seen, recovery time, keys checked). `scripts/faults <name>` runs one of them.
//!
//! - `proxy_kill`: two proxies on ZooKeeper, pipelined load through both, kill -9 one.
//! - `zk_outage`: ZooKeeper stopped for `E2E_ZK_OUTAGE_SECS` (default 8) under load; then a
//!   slot migration through the dashboard, which the proxy follows.
//! - `zk_quorum_loss`: a 3-member ensemble loses two members (the third runs without a
//!   quorum) for `E2E_ZK_OUTAGE_SECS` under load; then the same migration.
//! - `etcd_outage`: the same with the etcd coordinator (`E2E_ETCD_OUTAGE_SECS`, default 8).
//! - `slow_backend`: one group's codis-server paused (SIGSTOP) for `E2E_PAUSE_SECS` (default 5).
//! - `netcut`: one group's codis-server in its own network namespace; its veth link cut for
//!   `E2E_CUT_SECS` (default 6), then restored.
//!
//! Scenarios that need replication (kill -9 a master then promote, kill a replica and resync)
//! plug into the same pieces: [`Cluster`] for the processes, [`Load`] and [`Report::check`] for
//! the checker.

use std::process::Command;
use std::time::{Duration, Instant};

use coord::testutil::{EtcdServer, ZkEnsemble};
use e2e::load::{Load, LoadSpec, Report};
use e2e::{signal, wait_for, Cluster, Coordinator, Spec};
use serde_json::Value;

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}

/// Checks the report's keys through `url` and asserts none lost; returns the keys checked.
fn assert_no_loss(r: &Report, url: &str) -> usize {
    let c = r.check(url);
    assert!(
        c.lost.is_empty(),
        "{}: {} of {} keys lost an acknowledged write, e.g. {:?}",
        r.name,
        c.lost.len(),
        c.keys_checked,
        &c.lost[..c.lost.len().min(10)]
    );
    c.keys_checked
}

fn assert_clean(r: &Report, c: &Cluster) {
    assert!(
        r.failures() == 0 && r.hangs == 0,
        "{}: {} failed round trips, {} hangs, e.g. {:?}\n{}",
        r.name,
        r.failures(),
        r.hangs,
        r.first_errors(10),
        c.logs()
    );
}

/// Live proxies according to `codisctl proxy list` (`alive: true`).
fn alive_proxies(c: &Cluster) -> usize {
    fn count(v: &Value) -> usize {
        match v {
            Value::Object(m) => {
                usize::from(m.get("alive") == Some(&Value::Bool(true)))
                    + m.values().map(count).sum::<usize>()
            }
            Value::Array(a) => a.iter().map(count).sum(),
            _ => 0,
        }
    }
    let o = c.ctl(&["proxy", "list"]);
    if o.ok {
        count(&o.json)
    } else {
        usize::MAX
    }
}

fn two_groups() -> Vec<(u32, u32, u32)> {
    vec![(0, 511, 1), (512, 1023, 2)]
}

fn zookeeper() -> ZkEnsemble {
    ZkEnsemble::start().unwrap_or_else(|e| panic!("ZooKeeper (Debian package zookeeper): {e}"))
}

#[test]
fn proxy_kill() {
    let zk = zookeeper();
    let mut spec = Spec::new(2, &two_groups());
    spec.proxies = 2;
    spec.coordinator = Coordinator::ZooKeeper(zk.connect_string());
    let mut c = Cluster::start_spec(spec);
    let alive = wait_for(Duration::from_secs(30), || {
        (alive_proxies(&c) == 2).then_some(())
    });
    assert!(alive.is_some(), "both proxies alive\n{}", c.logs());

    let mut a = LoadSpec::new("pk-survivor", &c.proxy_url_of(0), 2);
    a.pipeline = 50;
    let mut b = LoadSpec::new("pk-victim", &c.proxy_url_of(1), 2);
    b.pipeline = 50;
    let (la, lb) = (Load::start(a), Load::start(b));
    assert!(la.wait_progress(200, Duration::from_secs(30)), "no load");
    assert!(lb.wait_progress(200, Duration::from_secs(30)), "no load");

    let killed_at = la.now();
    let t = Instant::now();
    c.kill_proxy(1);
    let gone = wait_for(Duration::from_secs(60), || {
        (alive_proxies(&c) == 1).then_some(t.elapsed())
    });
    assert!(
        gone.is_some(),
        "the killed proxy's liveness node is still in ZooKeeper after 60 s\n{}",
        c.logs()
    );
    // The survivor keeps serving a while longer.
    assert!(
        la.wait_progress(200, Duration::from_secs(30)),
        "survivor stalled"
    );
    let (ra, rb) = (la.stop(), lb.stop());
    eprintln!("{}\n{}", ra.summary(), rb.summary());
    assert_clean(&ra, &c);
    assert_eq!(
        rb.hangs,
        0,
        "the killed proxy's clients hung: {:?}",
        rb.first_errors(5)
    );
    let url = c.proxy_url_of(0);
    let checked = assert_no_loss(&ra, &url) + assert_no_loss(&rb, &url);
    let survivor_after = ra.ok_within(killed_at, ra.elapsed).len();
    eprintln!(
        "RESULT proxy-kill: survivor errors 0 ({} round trips after the kill), victim clients {} errors 0 hangs, registration gone after {}, keys checked {checked}, lost 0",
        survivor_after,
        rb.failures(),
        ms(gone.unwrap_or_default())
    );
}

/// A coordinator that a scenario can stop and bring back (same ports, same data).
trait Outage {
    fn label(&self) -> &'static str;
    fn stop(&mut self);
    fn start(&mut self);
}

impl Outage for ZkEnsemble {
    fn label(&self) -> &'static str {
        "ZooKeeper"
    }
    fn stop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
    }
    fn start(&mut self) {
        for n in &mut self.nodes {
            n.restart().expect("restart ZooKeeper");
        }
        assert!(
            (0..self.nodes.len()).all(|i| self.wait_serving(i, Duration::from_secs(60))),
            "ZooKeeper did not come back"
        );
    }
}

/// Two of three ensemble members killed: the survivor runs without a quorum.
struct QuorumLoss(ZkEnsemble);

impl Outage for QuorumLoss {
    fn label(&self) -> &'static str {
        "ZooKeeper's quorum"
    }
    fn stop(&mut self) {
        for n in &mut self.0.nodes[1..] {
            n.kill();
        }
        // The survivor stops serving once it notices it lost the majority.
        let lost = wait_for(Duration::from_secs(30), || {
            (!self.0.nodes[0].is_serving()).then_some(())
        });
        assert!(
            lost.is_some(),
            "the last ZooKeeper member still serves alone"
        );
    }
    fn start(&mut self) {
        for n in &mut self.0.nodes[1..] {
            n.restart().expect("restart ZooKeeper");
        }
        assert!(
            (0..self.0.nodes.len()).all(|i| self.0.wait_serving(i, Duration::from_secs(60))),
            "ZooKeeper's quorum did not come back"
        );
    }
}

impl Outage for EtcdServer {
    fn label(&self) -> &'static str {
        "etcd"
    }
    fn stop(&mut self) {
        self.kill();
    }
    fn start(&mut self) {
        // `restart` waits until etcd answers /health.
        self.restart().expect("restart etcd");
    }
}

#[test]
fn zk_outage() {
    let outage = env_secs("E2E_ZK_OUTAGE_SECS", 8);
    let zk = zookeeper();
    let coordinator = Coordinator::ZooKeeper(zk.connect_string());
    coordinator_outage("zk-outage", zk, coordinator, outage);
}

/// A 3-member ZooKeeper ensemble loses its quorum: two members are killed, the third keeps
/// running but cannot serve (no majority). Proxy and dashboard see their sessions fail and
/// reconnect attempts refused, unlike a clean "everything down". Then the two come back.
#[test]
fn zk_quorum_loss() {
    let outage = env_secs("E2E_ZK_OUTAGE_SECS", 8);
    let zk = ZkEnsemble::start_nodes(3)
        .unwrap_or_else(|e| panic!("ZooKeeper ensemble (Debian package zookeeper): {e}"));
    let coordinator = Coordinator::ZooKeeper(zk.connect_string());
    coordinator_outage("zk-quorum-loss", QuorumLoss(zk), coordinator, outage);
}

#[test]
fn etcd_outage() {
    let outage = env_secs("E2E_ETCD_OUTAGE_SECS", 8);
    let etcd =
        EtcdServer::start().unwrap_or_else(|e| panic!("etcd (Debian package etcd-server): {e}"));
    let coordinator = Coordinator::Etcd(etcd.addr());
    coordinator_outage("etcd-outage", etcd, coordinator, outage);
}

/// The whole coordinator stopped for `outage` under load: the proxy keeps serving from its last
/// table; after the coordinator returns, a slot migration completes and the proxy follows it.
fn coordinator_outage(
    name: &str,
    mut coord: impl Outage,
    coordinator: Coordinator,
    outage: Duration,
) {
    let label = coord.label();
    let mut spec = Spec::new(2, &two_groups());
    spec.coordinator = coordinator;
    let mut c = Cluster::start_spec(spec);
    c.start_dashboard();
    let l = Load::start(LoadSpec::new(name, &c.proxy_url(), 2));
    assert!(l.wait_progress(200, Duration::from_secs(30)), "no load");

    let down_at = l.now();
    coord.stop();
    eprintln!("{label} stopped for {outage:?}");
    std::thread::sleep(outage);
    let up_at = l.now();
    let served_during = l.done();
    coord.start();
    let back = Instant::now();
    // A topology change after the outage: slot 0 moves from group 1 to group 2.
    let dashboard_alive = c
        .dashboard
        .as_mut()
        .is_some_and(|d| d.child.try_wait().ok().flatten().is_none());
    if !dashboard_alive {
        eprintln!("the dashboard exited during the {label} outage; restarting it");
        c.start_dashboard();
    }
    let out = wait_for(Duration::from_secs(60), || {
        let o = c.ctl(&["slot", "migrate", "0", "0", "2"]);
        o.ok.then_some(o)
    });
    assert!(
        out.is_some(),
        "slot migrate after the outage kept failing: {:?}\n{}",
        c.ctl(&["slot", "migrate", "0", "0", "2"]),
        c.logs()
    );
    let moved = wait_for(Duration::from_secs(120), || {
        let s = c.slots();
        (s[0].group_id == 2 && s[0].state.is_empty()).then_some(back.elapsed())
    });
    assert!(moved.is_some(), "slot 0 did not move\n{}", c.logs());
    // The proxy follows: a key of slot 0 written through it lands on group 2.
    let key = (0..)
        .map(|i| format!("zk-slot0-{i}"))
        .find(|k| resp::slot(k.as_bytes()) == 0)
        .unwrap_or_default();
    // A write routed to group 1 after the slot moved would be stranded there: count them.
    let mut p = c.proxy_conn();
    let mut g2 = c.server_conn(2);
    let mut stranded = 0;
    let followed = wait_for(Duration::from_secs(30), || {
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg("after")
            .query(&mut p)
            .expect("SET through the proxy after the migration");
        let on2: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query(&mut g2)
            .expect("GET on group 2");
        if on2.is_none() {
            stranded += 1;
        }
        on2.is_some().then(|| back.elapsed())
    });
    assert!(
        followed.is_some(),
        "the proxy did not follow the migration\n{}",
        c.logs()
    );
    assert_eq!(
        stranded,
        0,
        "{stranded} writes of slot 0 went to group 1 after the migration finished\n{}",
        c.logs()
    );
    assert!(
        l.wait_progress(100, Duration::from_secs(30)),
        "load stalled"
    );
    let r = l.stop();
    eprintln!("{}", r.summary());
    assert_clean(&r, &c);
    let checked = assert_no_loss(&r, &c.proxy_url());
    let during = r.ok_within(down_at, up_at).len();
    assert!(during > 0, "nothing served while {label} was down");
    eprintln!(
        "RESULT {name}: outage {outage:?}, round trips served during it {during} (of {served_during} so far), client errors 0, hangs 0, slot 0 migrated {} after {label} returned, proxy followed, keys checked {checked}, lost 0",
        ms(moved.unwrap_or_default())
    );
}

#[test]
fn slow_backend() {
    let pause = env_secs("E2E_PAUSE_SECS", 5);
    let c = Cluster::start_spec(Spec::new(2, &two_groups()));
    let mut h = LoadSpec::new("healthy", &c.proxy_url(), 2).slots(|s| s < 512);
    h.pipeline = 10;
    let mut p = LoadSpec::new("paused", &c.proxy_url(), 1).slots(|s| s >= 512);
    p.pipeline = 10;
    // Requests to the paused group may wait for it: give them the pause and a margin.
    p.timeout = pause + Duration::from_secs(60);
    let (lh, lp) = (Load::start(h), Load::start(p));
    assert!(lh.wait_progress(500, Duration::from_secs(30)), "no load");
    assert!(lp.wait_progress(100, Duration::from_secs(30)), "no load");
    let before_from = lh.now();
    lh.wait_progress(1000, Duration::from_secs(10));

    let pid = c.masters[1].child.id();
    let stop_at = lh.now();
    signal(pid, libc::SIGSTOP);
    std::thread::sleep(pause);
    let cont_at = lh.now();
    let paused_failed = lp.failed();
    let n0 = lp.done();
    signal(pid, libc::SIGCONT);
    let recovered = wait_for(Duration::from_secs(60), || {
        (lp.done() > n0).then(|| lp.now() - cont_at)
    });
    lh.wait_progress(200, Duration::from_secs(10));
    let (rh, rp) = (lh.stop(), lp.stop());
    eprintln!("{}\n{}", rh.summary(), rp.summary());
    assert_clean(&rh, &c);
    assert_eq!(
        rp.hangs,
        0,
        "paused-group clients hung: {:?}",
        rp.first_errors(5)
    );
    assert!(
        recovered.is_some(),
        "the paused group did not recover after SIGCONT\n{}",
        c.logs()
    );
    // No healthy request waited for the paused server: every healthy thread completed
    // requests entirely while it was stopped.
    let during = rh.ok_within(stop_at, cont_at);
    for t in 0..2u16 {
        let n = during.iter().filter(|o| o.thread == t).count();
        assert!(
            n >= 10,
            "healthy thread {t} completed only {n} requests while group 2 was paused"
        );
    }
    let paused_errors: Vec<String> = rp
        .errors
        .iter()
        .filter(|(t, _)| *t >= stop_at)
        .take(3)
        .map(|(_, e)| e.clone())
        .collect();
    let checked = assert_no_loss(&rh, &c.proxy_url()) + assert_no_loss(&rp, &c.proxy_url());
    let p99_before = rh.p99(before_from, stop_at).unwrap_or_default();
    let p99_during = rh.p99(stop_at, cont_at).unwrap_or_default();
    let paused_behaviour = if rp.failures() == 0 {
        "waited until SIGCONT, then succeeded".to_string()
    } else {
        format!(
            "{} errors ({} before SIGCONT), e.g. {paused_errors:?}",
            rp.failures(),
            paused_failed
        )
    };
    eprintln!(
        "RESULT slow-backend: pause {pause:?}; healthy group: {} round trips during the pause, errors 0, p99 before {} / during {}; paused group: {paused_behaviour}; first success {} after SIGCONT; keys checked {checked}, lost 0",
        during.len(),
        ms(p99_before),
        ms(p99_during),
        ms(recovered.unwrap_or_default())
    );
}

/// A network namespace holding one end of a veth pair; both removed on drop.
struct NetNs {
    name: String,
    /// The end left in the root namespace.
    host_if: String,
    /// Address of the namespace's end.
    ns_addr: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

impl NetNs {
    fn create() -> Result<NetNs, String> {
        let id = std::process::id() % 100_000;
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let nonce = (clock ^ std::process::id()) % 250 + 1;
        let ns = NetNs {
            name: format!("codis-e2e-{id}"),
            host_if: format!("ce{id}a"),
            ns_addr: format!("10.213.{nonce}.2"),
        };
        let peer = format!("ce{id}b");
        let host_addr = format!("10.213.{nonce}.1/30");
        let ns_cidr = format!("{}/30", ns.ns_addr);
        ip(&["netns", "add", &ns.name])?;
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ])?;
        ip(&["link", "set", &peer, "netns", &ns.name])?;
        ip(&["addr", "add", &host_addr, "dev", &ns.host_if])?;
        ip(&["link", "set", &ns.host_if, "up"])?;
        let exec = |a: &[&str]| {
            let mut v = vec!["netns", "exec", &ns.name, "ip"];
            v.extend_from_slice(a);
            ip(&v)
        };
        exec(&["addr", "add", &ns_cidr, "dev", &peer])?;
        exec(&["link", "set", &peer, "up"])?;
        exec(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn cut(&self) -> Result<(), String> {
        ip(&["link", "set", &self.host_if, "down"])
    }

    fn restore(&self) -> Result<(), String> {
        ip(&["link", "set", &self.host_if, "up"])
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

#[test]
fn netcut() {
    let cut_for = env_secs("E2E_CUT_SECS", 6);
    let ns = match NetNs::create() {
        Ok(ns) => ns,
        Err(e) => {
            // Creating namespaces needs root (CAP_NET_ADMIN/CAP_SYS_ADMIN).
            eprintln!("SKIPPED: cannot create a network namespace: {e}");
            return;
        }
    };
    let mut spec = Spec::new(2, &two_groups());
    spec.group_prefix = vec![(
        2,
        vec!["ip".into(), "netns".into(), "exec".into(), ns.name.clone()],
    )];
    spec.group_host = vec![(2, ns.ns_addr.clone())];
    // Requests to an unreachable group fail after this instead of Codis's 30 s.
    spec.ini_extra = "backend_recv_timeout=2s\nbackend_send_timeout=2s\n".into();
    let c = Cluster::start_spec(spec);
    let mut g1 = LoadSpec::new("near", &c.proxy_url(), 2).slots(|s| s < 512);
    g1.pipeline = 10;
    let mut g2 = LoadSpec::new("cut", &c.proxy_url(), 1).slots(|s| s >= 512);
    g2.pipeline = 10;
    g2.timeout = cut_for + Duration::from_secs(60);
    let (l1, l2) = (Load::start(g1), Load::start(g2));
    assert!(l1.wait_progress(300, Duration::from_secs(30)), "no load");
    assert!(l2.wait_progress(100, Duration::from_secs(30)), "no load");

    let cut_at = l1.now();
    ns.cut().expect("cut the link");
    std::thread::sleep(cut_for);
    let restored_at = l1.now();
    let failed_during = l2.failed();
    let n0 = l2.done();
    ns.restore().expect("restore the link");
    let recovered = wait_for(Duration::from_secs(90), || {
        (l2.done() > n0).then(|| l2.now() - restored_at)
    });
    l1.wait_progress(100, Duration::from_secs(10));
    let (r1, r2) = (l1.stop(), l2.stop());
    eprintln!("{}\n{}", r1.summary(), r2.summary());
    assert_clean(&r1, &c);
    assert_eq!(
        r2.hangs,
        0,
        "clients of the cut group hung: {:?}",
        r2.first_errors(5)
    );
    assert!(
        recovered.is_some(),
        "no recovery after the link came back\n{}",
        c.logs()
    );
    let during = r1.ok_within(cut_at, restored_at);
    assert!(
        during.len() >= 10,
        "the reachable group served only {} round trips during the cut",
        during.len()
    );
    let checked = assert_no_loss(&r1, &c.proxy_url()) + assert_no_loss(&r2, &c.proxy_url());
    eprintln!(
        "RESULT netcut: cut {cut_for:?} (namespace {}, veth down); reachable group: {} round trips during the cut, errors 0; cut group: {} errors ({failed_during} during the cut), e.g. {:?}, first success {} after restore; keys checked {checked}, lost 0",
        ns.name,
        during.len(),
        r2.failures(),
        r2.first_errors(2),
        ms(recovered.unwrap_or_default())
    );
}
