//! maxmemory eviction: allkeys-lru keeps recently read keys and drops cold ones while
//! used_memory stays near the limit; noeviction answers Redis's OOM error; volatile-* evicts
//! only keys with a TTL; evictions are counted, notified and the limit is visible in INFO.

use std::time::{Duration, Instant};

fn info_field(c: &mut redis::Connection, section: &str, field: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg(section).query(c).expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in INFO {section}"))
}

fn config_set(c: &mut redis::Connection, k: &str, v: &str) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(k)
        .arg(v)
        .query(c)
        .expect("CONFIG SET");
}

fn exists(c: &mut redis::Connection, key: &str) -> bool {
    let n: i64 = redis::cmd("EXISTS").arg(key).query(c).expect("EXISTS");
    n == 1
}

const VAL: usize = 512;

#[test]
fn allkeys_lru_keeps_recently_read_keys() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let mut c = srv.conn();
    config_set(&mut c, "maxmemory-policy", "allkeys-lru");
    let v = "x".repeat(VAL);
    let mut p = redis::pipe();
    for i in 0..4000 {
        p.cmd("SET").arg(format!("old:{i}")).arg(&v).ignore();
    }
    let _: () = p.query(&mut c).expect("fill");
    let used = info_field(&mut c, "memory", "used_memory");
    // Room for about a thousand more keys.
    let limit = used + 600 * 1024;
    config_set(&mut c, "maxmemory", &limit.to_string());
    assert_eq!(info_field(&mut c, "memory", "maxmemory"), limit);
    // Let the old keys age, then read the first 400 (hot).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let idle: i64 = redis::cmd("OBJECT")
            .arg("IDLETIME")
            .arg("old:3999")
            .query(&mut c)
            .expect("OBJECT");
        if idle >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "keys do not age");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut p = redis::pipe();
    for i in 0..400 {
        p.cmd("GET").arg(format!("old:{i}")).ignore();
    }
    let _: () = p.query(&mut c).expect("hot reads");
    // Write past the limit: about 2,000 keys more than fit.
    for chunk in 0..30 {
        let mut p = redis::pipe();
        for i in 0..100 {
            p.cmd("SET")
                .arg(format!("new:{chunk}:{i}"))
                .arg(&v)
                .ignore();
        }
        let _: () = p
            .query(&mut c)
            .expect("writes under allkeys-lru never fail");
    }
    let evicted = info_field(&mut c, "stats", "evicted_keys");
    assert!(evicted >= 1000, "evicted_keys {evicted}");
    let used = info_field(&mut c, "memory", "used_memory");
    assert!(
        used <= limit + 512 * 1024,
        "used_memory {used} far above maxmemory {limit}"
    );
    let hot = (0..400)
        .filter(|i| exists(&mut c, &format!("old:{i}")))
        .count();
    let cold = (400..4000)
        .filter(|i| exists(&mut c, &format!("old:{i}")))
        .count();
    let hot_rate = hot as f64 / 400.0;
    let cold_rate = cold as f64 / 3600.0;
    // Sampled LRU (5 samples, as Redis): once most cold keys are gone a sample can hold only
    // hot and new keys, so some hot keys go too (354-380 of 400 kept over 16 runs); random
    // eviction would keep the hot ones at the cold rate (about 0.28 here).
    assert!(
        hot_rate >= 0.8 && hot_rate > cold_rate + 0.3,
        "hot kept {hot}/400, cold kept {cold}/3600 ({evicted} evicted)"
    );
}

#[test]
fn noeviction_answers_oom_and_still_serves_reads_and_deletes() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let mut c = srv.conn();
    let used = info_field(&mut c, "memory", "used_memory");
    config_set(&mut c, "maxmemory", &(used + 256 * 1024).to_string());
    let v = "y".repeat(VAL);
    let mut oom = None;
    for i in 0..5000 {
        let r: redis::RedisResult<()> =
            redis::cmd("SET").arg(format!("k{i}")).arg(&v).query(&mut c);
        if let Err(e) = r {
            oom = Some(format!(
                "{} {}",
                e.code().unwrap_or(""),
                e.detail().unwrap_or("")
            ));
            break;
        }
    }
    assert_eq!(
        oom.as_deref(),
        Some("OOM command not allowed when used memory > 'maxmemory'.")
    );
    let got: Option<String> = redis::cmd("GET").arg("k0").query(&mut c).expect("GET");
    assert_eq!(got.as_deref(), Some(v.as_str()));
    let n: i64 = redis::cmd("DEL")
        .arg("k0")
        .query(&mut c)
        .expect("DEL is allowed");
    assert_eq!(n, 1);
    assert_eq!(info_field(&mut c, "stats", "evicted_keys"), 0);
    // Raising the limit lets writes through again.
    config_set(&mut c, "maxmemory", "0");
    let _: () = redis::cmd("SET")
        .arg("again")
        .arg(&v)
        .query(&mut c)
        .expect("SET");
}

#[test]
fn volatile_policies_evict_only_keys_with_ttl() {
    for policy in [
        "volatile-lru",
        "volatile-ttl",
        "volatile-random",
        "volatile-lfu",
    ] {
        let srv = testkit::codis_server(&["--cores", "2"]);
        let mut c = srv.conn();
        config_set(&mut c, "maxmemory-policy", policy);
        config_set(&mut c, "notify-keyspace-events", "Ee");
        let mut sub = srv.conn();
        let mut ps = sub.as_pubsub();
        ps.psubscribe("__keyevent@0__:evicted").expect("PSUBSCRIBE");
        ps.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let v = "z".repeat(VAL);
        let mut p = redis::pipe();
        for i in 0..1000 {
            p.cmd("SET").arg(format!("keep:{i}")).arg(&v).ignore();
            p.cmd("SET")
                .arg(format!("vol:{i}"))
                .arg(&v)
                .arg("EX")
                .arg(1000 + i)
                .ignore();
        }
        let _: () = p.query(&mut c).expect("fill");
        let used = info_field(&mut c, "memory", "used_memory");
        config_set(&mut c, "maxmemory", &(used + 128 * 1024).to_string());
        // A write landing on a shard with no volatile key left is refused at once; the other
        // shard's timer evicts its own keys meanwhile, so retry until refusals persist.
        let mut oom = false;
        let mut refused = 0;
        for i in 0..3000 {
            let r: redis::RedisResult<()> =
                redis::cmd("SET").arg(format!("p{i}")).arg(&v).query(&mut c);
            match r {
                Ok(()) => refused = 0,
                Err(e) => {
                    assert_eq!(e.code(), Some("OOM"), "{e}");
                    refused += 1;
                    if refused >= 8 {
                        oom = true;
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
        }
        assert!(
            oom,
            "{policy}: once the volatile keys are gone, writes fail"
        );
        let keep = (0..1000)
            .filter(|i| exists(&mut c, &format!("keep:{i}")))
            .count();
        assert_eq!(keep, 1000, "{policy}: persistent keys are never evicted");
        let vol = (0..1000)
            .filter(|i| exists(&mut c, &format!("vol:{i}")))
            .count();
        assert!(vol < 100, "{policy}: {vol} volatile keys left");
        let evicted = info_field(&mut c, "stats", "evicted_keys");
        assert!(evicted >= 900, "{policy}: evicted_keys {evicted}");
        let msg = ps.get_message().expect("an evicted notification");
        let key: String = msg.get_payload().expect("payload");
        assert!(key.starts_with("vol:"), "{policy}: evicted {key}");
    }
}

#[test]
fn evictions_reach_replicas_as_del() {
    let master = testkit::codis_server(&["--cores", "2"]);
    let replica = testkit::codis_server(&["--cores", "2"]);
    let mut m = master.conn();
    let mut r = replica.conn();
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(master.port.to_string())
        .query(&mut r)
        .expect("REPLICAOF");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut r)
            .expect("INFO");
        if info.contains("master_link_status:up") {
            break;
        }
        assert!(Instant::now() < deadline, "replica link never came up");
        std::thread::sleep(Duration::from_millis(50));
    }
    config_set(&mut m, "maxmemory-policy", "allkeys-random");
    let v = "w".repeat(VAL);
    let mut p = redis::pipe();
    for i in 0..2000 {
        p.cmd("SET").arg(format!("a:{i}")).arg(&v).ignore();
    }
    let _: () = p.query(&mut m).expect("fill");
    let used = info_field(&mut m, "memory", "used_memory");
    config_set(&mut m, "maxmemory", &(used + 128 * 1024).to_string());
    let mut p = redis::pipe();
    for i in 0..1000 {
        p.cmd("SET").arg(format!("b:{i}")).arg(&v).ignore();
    }
    let _: () = p.query(&mut m).expect("writes");
    assert!(info_field(&mut m, "stats", "evicted_keys") >= 500);
    // The replica ends up with exactly the master's keys (evictions arrived as DEL).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut mk: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut m).expect("KEYS");
        let mut rk: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut r).expect("KEYS");
        mk.sort();
        rk.sort();
        if mk == rk {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica has {} keys, master {}",
            rk.len(),
            mk.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
