//! Background threads are not pinned to an executor's CPU: the AOF writer (and a snapshot's
//! writer, file loading, fsync) may run on any CPU the process was started with, so they do not
//! take the CPU of the core serving clients while another CPU is idle. And the process-wide
//! memory setting next to it: transparent huge pages (`disable-thp`).

use std::time::{Duration, Instant};

/// `Cpus_allowed_list` of every thread of `pid`, by thread name.
fn thread_cpus(pid: u32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let cpus = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap_or("")
            .trim()
            .to_string();
        out.push((comm.trim().to_string(), cpus));
    }
    out
}

#[test]
fn aof_writer_runs_on_any_cpu_while_the_executor_is_pinned() {
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    if ncpu < 2 {
        eprintln!("SKIPPED: one CPU, nothing to unpin");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    let mut p = testkit::codis_server(&["--cores", "1", "--dir", &d]);
    let mut c = p.conn();
    // Turned on at runtime: the writer thread is spawned from the executor's thread.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendonly")
        .arg("yes")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut c).unwrap();
    let pid = p.child.id();
    let start = Instant::now();
    let (core, writer) = loop {
        let threads = thread_cpus(pid);
        // glommio names executor threads `<name>-<id>`.
        let find = |name: &str| {
            threads
                .iter()
                .find(|(n, _)| n.starts_with(name))
                .map(|(_, c)| c.clone())
        };
        if let (Some(core), Some(writer)) = (find("core-0-"), find("aof-writer")) {
            break (core, writer);
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "threads core-0 and aof-writer not found: {threads:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        !core.contains(['-', ',']),
        "executor pinned to one CPU: {core}"
    );
    assert_ne!(writer, core, "the AOF writer inherited the executor's CPU");
    p.kill();
}

/// The value `CONFIG GET key` answers.
fn config_get(c: &mut redis::Connection, key: &str) -> String {
    let v: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(key).query(c).unwrap();
    assert_eq!(v.len(), 2, "CONFIG GET {key}: {v:?}");
    v[1].clone()
}

/// `disable-thp yes` (the default, as in Redis) turns transparent huge pages off for the process;
/// `--disable-thp no` leaves them on; CONFIG GET shows the setting and CONFIG SET refuses it.
#[test]
fn transparent_huge_pages_are_off_unless_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    let mut p = testkit::codis_server(&["--cores", "1", "--dir", &d]);
    let mut c = p.conn();
    assert_eq!(config_get(&mut c, "disable-thp"), "yes");
    let e = redis::cmd("CONFIG")
        .arg("SET")
        .arg("disable-thp")
        .arg("no")
        .query::<()>(&mut c)
        .unwrap_err();
    assert!(e.to_string().contains("can't set immutable config"), "{e}");
    let Some(on) = testkit::thp_enabled(p.child.id()) else {
        eprintln!("SKIPPED the /proc check: this kernel has no THP_enabled in /proc/PID/status");
        p.kill();
        return;
    };
    assert_eq!(on, "0", "disable-thp yes left THP on");
    p.kill();

    let mut p = testkit::codis_server(&["--cores", "1", "--dir", &d, "--disable-thp", "no"]);
    let mut c = p.conn();
    assert_eq!(config_get(&mut c, "disable-thp"), "no");
    // 1 unless the kernel was built without THP at all.
    if std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists() {
        assert_eq!(testkit::thp_enabled(p.child.id()).as_deref(), Some("1"));
    }
    p.kill();
}
