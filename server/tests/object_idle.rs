//! Per-key access tracking: OBJECT IDLETIME (LRU clock) and OBJECT FREQ (LFU counter), what
//! counts as an access, the policy switch and its error strings, RESTORE IDLETIME/FREQ — checked
//! on codis-server and, where the answer is deterministic, against a real redis-server 7.

use std::time::{Duration, Instant};

fn idle(c: &mut redis::Connection, key: &str) -> i64 {
    redis::cmd("OBJECT")
        .arg("IDLETIME")
        .arg(key)
        .query(c)
        .expect("OBJECT IDLETIME")
}

fn freq(c: &mut redis::Connection, key: &str) -> i64 {
    redis::cmd("OBJECT")
        .arg("FREQ")
        .arg(key)
        .query(c)
        .expect("OBJECT FREQ")
}

fn err_of(c: &mut redis::Connection, args: &[&str]) -> String {
    let r: redis::RedisResult<redis::Value> = redis::cmd(args[0]).arg(&args[1..]).query(c);
    match r {
        Err(e) => format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or("")),
        Ok(v) => panic!("{args:?} answered {v:?}, expected an error"),
    }
}

/// Wait (generously) until `key` has been idle at least `secs` seconds.
fn wait_idle(c: &mut redis::Connection, key: &str, secs: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let i = idle(c, key);
        if i >= secs {
            return i;
        }
        assert!(Instant::now() < deadline, "{key} stays at idle {i}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The same script on both servers: IDLETIME grows while the key is untouched, OBJECT/TYPE/TTL/
/// EXISTS do not reset it, GET and SET do.
fn lru_script(c: &mut redis::Connection) -> Vec<String> {
    let mut log = Vec::new();
    let _: () = redis::cmd("SET").arg("a").arg("va").query(c).expect("SET");
    let _: () = redis::cmd("SET").arg("b").arg("vb").query(c).expect("SET");
    let _: () = redis::cmd("SET").arg("t").arg("vt").query(c).expect("SET");
    log.push(format!("fresh a small: {}", idle(c, "a") <= 2));
    wait_idle(c, "a", 4);
    for cmd in ["TYPE", "TTL", "EXISTS", "PTTL"] {
        let _: redis::Value = redis::cmd(cmd).arg("a").query(c).expect(cmd);
    }
    log.push(format!("a after peeks >=4: {}", idle(c, "a") >= 4));
    let _: Option<String> = redis::cmd("GET").arg("a").query(c).expect("GET");
    log.push(format!("a after GET small: {}", idle(c, "a") <= 2));
    log.push(format!("b untouched >=4: {}", idle(c, "b") >= 4));
    let _: () = redis::cmd("SET").arg("b").arg("vb2").query(c).expect("SET");
    log.push(format!("b after SET small: {}", idle(c, "b") <= 2));
    let n: i64 = redis::cmd("TOUCH").arg("t").query(c).expect("TOUCH");
    log.push(format!("touch {n} t small: {}", idle(c, "t") <= 2));
    let _: i64 = redis::cmd("APPEND")
        .arg("a")
        .arg("x")
        .query(c)
        .expect("APPEND");
    log.push(format!("a after APPEND small: {}", idle(c, "a") <= 2));
    log.push(format!("missing {:?}", {
        let v: Option<i64> = redis::cmd("OBJECT")
            .arg("IDLETIME")
            .arg("nokey")
            .query(c)
            .expect("OBJECT");
        v
    }));
    log.push(err_of(c, &["OBJECT", "FREQ", "a"]));
    log
}

/// Under allkeys-lfu: FREQ of a new key, growth with many reads, the IDLETIME error, RESTORE FREQ.
fn lfu_script(c: &mut redis::Connection) -> Vec<String> {
    let mut log = Vec::new();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lfu")
        .query(c)
        .expect("CONFIG SET");
    let _: () = redis::cmd("SET")
        .arg("hot")
        .arg("hotv")
        .query(c)
        .expect("SET");
    let _: () = redis::cmd("SET")
        .arg("cold")
        .arg("coldv")
        .query(c)
        .expect("SET");
    // 5 (LFU_INIT_VAL), or 4 if a minute boundary passed (decay).
    let f = freq(c, "cold");
    log.push(format!("new: {} ({f})", (4..=5).contains(&f)));
    let mut p = redis::pipe();
    for _ in 0..2000 {
        p.cmd("GET").arg("hot").ignore();
    }
    let _: () = p.query(c).expect("GETs");
    let hot = freq(c, "hot");
    log.push(format!("hot grew: {}", hot > 5 && hot < 255));
    log.push(format!(
        "cold stays: {}",
        (3..=5).contains(&freq(c, "cold"))
    ));
    log.push(err_of(c, &["OBJECT", "IDLETIME", "hot"]));
    let dump: Vec<u8> = redis::cmd("DUMP").arg("cold").query(c).expect("DUMP");
    let _: () = redis::cmd("RESTORE")
        .arg("r")
        .arg(0)
        .arg(&dump)
        .arg("FREQ")
        .arg(100)
        .query(c)
        .expect("RESTORE FREQ");
    log.push(format!("restored freq {}", freq(c, "r")));
    // Back to an LRU policy: FREQ errors again, IDLETIME answers.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query(c)
        .expect("CONFIG SET");
    log.push(err_of(c, &["OBJECT", "FREQ", "hot"]));
    let _: Option<String> = redis::cmd("GET").arg("hot").query(c).expect("GET");
    log.push(format!("lru again small: {}", idle(c, "hot") <= 2));
    let _: () = redis::cmd("RESTORE")
        .arg("r2")
        .arg(0)
        .arg(&dump)
        .arg("IDLETIME")
        .arg(1000)
        .query(c)
        .expect("RESTORE IDLETIME");
    let i = idle(c, "r2");
    log.push(format!(
        "restored idle ~1000: {}",
        (1000..1030).contains(&i)
    ));
    log.push(err_of(c, &["CONFIG", "SET", "maxmemory-policy", "bogus"]));
    log
}

#[test]
fn idletime_tracks_access_like_redis() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let mut c = srv.conn();
    let ours = lru_script(&mut c);
    for l in &ours {
        assert!(!l.ends_with("false"), "{ours:?}");
    }
    match testkit::redis_server(&[]) {
        Some((redis, _dir)) => {
            let mut rc = redis.conn();
            let theirs = lru_script(&mut rc);
            assert_eq!(ours, theirs);
        }
        None => eprintln!("redis-server not installed: differential half skipped"),
    }
}

#[test]
fn freq_under_lfu_policy_like_redis() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let mut c = srv.conn();
    let ours = lfu_script(&mut c);
    for l in &ours {
        assert!(!l.ends_with("false"), "{ours:?}");
    }
    match testkit::redis_server(&[]) {
        Some((redis, _dir)) => {
            let mut rc = redis.conn();
            let theirs = lfu_script(&mut rc);
            assert_eq!(ours, theirs);
        }
        None => eprintln!("redis-server not installed: differential half skipped"),
    }
}

#[test]
fn policy_from_config_file_and_idle_of_keys_across_cores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("c.conf");
    std::fs::write(
        &conf,
        "maxmemory-policy volatile-lfu\nlfu-log-factor 0\nlfu-decay-time 0\n",
    )
    .expect("conf");
    let srv = testkit::codis_server(&[conf.to_str().expect("path"), "--cores", "2"]);
    let mut c = srv.conn();
    let p: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query(&mut c)
        .expect("CONFIG GET");
    assert_eq!(p, vec!["maxmemory-policy", "volatile-lfu"]);
    // lfu-log-factor 0: every access increments the counter (from 5).
    for i in 0..20 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut c)
            .expect("SET");
        for _ in 0..3 {
            let _: Option<String> = redis::cmd("GET")
                .arg(format!("k{i}"))
                .query(&mut c)
                .expect("GET");
        }
        assert_eq!(freq(&mut c, &format!("k{i}")), 8, "k{i}");
    }
    // MSET across cores keeps the counter of overwritten keys (Redis's dbOverwrite under LFU).
    let _: () = redis::cmd("MSET")
        .arg(&["k0", "a", "k1", "b", "k2", "c"])
        .query(&mut c)
        .expect("MSET");
    assert!(freq(&mut c, "k1") >= 8);
}
