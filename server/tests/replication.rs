//! Replication: a codis-server replica follows its master under a write load of every type (with
//! time-relative, random and scripted commands propagated as their effects), is promoted with every
//! acknowledged write, resynchronises partially after its link is cut, and interoperates with a
//! real redis-server 7 in both directions. Datasets are compared by full scans.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use redis::{Connection, Value};

/// One key as a comparable text: type, absolute expiry, canonical content.
fn dump_key(c: &mut Connection, k: &str) -> Option<String> {
    let t: String = redis::cmd("TYPE").arg(k).query(c).ok()?;
    let exp: i64 = redis::cmd("PEXPIRETIME").arg(k).query(c).unwrap_or(-3);
    let body = match t.as_str() {
        "string" => {
            let v: Vec<u8> = redis::cmd("GET").arg(k).query(c).ok()?;
            if v.starts_with(b"HYLL") {
                // HyperLogLogs: encodings (sparse/dense, cached count) may differ; the count may not.
                let n: i64 = redis::cmd("PFCOUNT").arg(k).query(c).ok()?;
                format!("hll {n}")
            } else {
                format!("{v:?}")
            }
        }
        "list" => format!(
            "{:?}",
            redis::cmd("LRANGE")
                .arg(k)
                .arg(0)
                .arg(-1)
                .query::<Vec<Vec<u8>>>(c)
                .ok()?
        ),
        "hash" => {
            let m: BTreeMap<Vec<u8>, Vec<u8>> = redis::cmd("HGETALL").arg(k).query(c).ok()?;
            format!("{m:?}")
        }
        "set" => {
            let mut m: Vec<Vec<u8>> = redis::cmd("SMEMBERS").arg(k).query(c).ok()?;
            m.sort();
            format!("{m:?}")
        }
        "zset" => {
            let v: Vec<(Vec<u8>, f64)> = redis::cmd("ZRANGE")
                .arg(k)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query(c)
                .ok()?;
            format!("{v:?}")
        }
        "none" => return None,
        other => other.to_string(),
    };
    Some(format!("{t} exp={exp} {body}"))
}

/// Every key of databases 0..3 with its content.
fn scan_all(c: &mut Connection) -> BTreeMap<(i64, String), String> {
    let mut all = BTreeMap::new();
    for db in 0..3 {
        let _: () = redis::cmd("SELECT").arg(db).query(c).unwrap();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(1000)
                .query(c)
                .unwrap();
            for k in keys {
                if let Some(v) = dump_key(c, &k) {
                    all.insert((db, k), v);
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    let _: () = redis::cmd("SELECT").arg(0).query(c).unwrap();
    all
}

fn info_field(c: &mut Connection, section: &str, field: &str) -> Option<String> {
    let text: String = redis::cmd("INFO").arg(section).query(c).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix(&format!("{field}:"))
            .map(|v| v.trim().to_string())
    })
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_link_up(replica: &mut Connection) {
    wait_until("master_link_status:up", Duration::from_secs(30), || {
        info_field(replica, "replication", "master_link_status").as_deref() == Some("up")
    });
}

/// WAIT until `n` replicas acknowledged everything; asserts they did.
fn wait_acked(master: &mut Connection, n: i64) {
    let got: i64 = redis::cmd("WAIT").arg(n).arg(20_000).query(master).unwrap();
    assert_eq!(got, n, "WAIT {n} returned {got}");
}

/// Compare master and replica until equal (the replica may still be applying the last bytes).
/// The master is scanned again each round: keys with millisecond TTLs expire on the master (and
/// their DEL reaches the replica) while the comparison runs.
fn assert_same(master: &mut Connection, replica: &mut Connection) {
    let start = Instant::now();
    loop {
        let want = scan_all(master);
        let got = scan_all(replica);
        if got == want {
            return;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let missing: Vec<_> = want
                .iter()
                .filter(|(k, v)| got.get(*k) != Some(*v))
                .take(5)
                .collect();
            let extra: Vec<_> = got
                .iter()
                .filter(|(k, _)| !want.contains_key(*k))
                .take(5)
                .collect();
            panic!(
                "replica differs: {} vs {} keys; differing on master side: {missing:?}; extra on replica: {extra:?}",
                want.len(),
                got.len()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A write load touching every type, with commands that must replicate as their effect.
fn write_load(c: &mut Connection, seed: u64, n: usize, scripts: bool) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut p = redis::pipe();
    for i in 0..n {
        let k = rng.gen_range(0..200);
        let s = format!("s{k}");
        match i % 24 {
            0 => p.cmd("SET").arg(&s).arg(i),
            1 => p.cmd("SET").arg(&s).arg(i).arg("EX").arg(1000 + k),
            2 => p.cmd("APPEND").arg(&s).arg("x"),
            3 => p.cmd("INCRBYFLOAT").arg(format!("f{k}")).arg(1.25),
            4 => p
                .cmd("HSET")
                .arg(format!("h{k}"))
                .arg(format!("f{i}"))
                .arg(i),
            5 => p
                .cmd("HINCRBYFLOAT")
                .arg(format!("h{k}"))
                .arg("fl")
                .arg(0.5),
            6 => p.cmd("RPUSH").arg(format!("l{k}")).arg(i).arg(i + 1),
            7 => p.cmd("LPOP").arg(format!("l{k}")),
            8 => p
                .cmd("LMOVE")
                .arg(format!("l{k}"))
                .arg(format!("l{}", k + 1))
                .arg("LEFT")
                .arg("RIGHT"),
            9 => p
                .cmd("SADD")
                .arg(format!("t{k}"))
                .arg(i)
                .arg(i % 7)
                .arg(i % 11),
            10 => p.cmd("SPOP").arg(format!("t{k}")),
            11 => p.cmd("SPOP").arg(format!("t{k}")).arg(2),
            12 => p
                .cmd("ZADD")
                .arg(format!("z{k}"))
                .arg(i as f64 / 3.0)
                .arg(format!("m{i}")),
            13 => p.cmd("ZINCRBY").arg(format!("z{k}")).arg(1.5).arg("m1"),
            14 => p.cmd("ZPOPMIN").arg(format!("z{k}")),
            15 => p.cmd("EXPIRE").arg(format!("h{k}")).arg(5000),
            16 => p.cmd("PEXPIRE").arg(format!("z{k}")).arg(900_000),
            17 => p.cmd("SETEX").arg(format!("e{k}")).arg(3000).arg(i),
            18 => p.cmd("GETEX").arg(&s).arg("PX").arg(700_000),
            19 => p
                .cmd("MSET")
                .arg(format!("m{k}"))
                .arg(i)
                .arg(format!("n{k}"))
                .arg(i),
            20 => p.cmd("PFADD").arg(format!("p{k}")).arg(i).arg(i * 7),
            21 => p.cmd("DEL").arg(format!("t{}", k + 3)),
            22 => p
                .cmd("SET")
                .arg(format!("short{i}"))
                .arg(1)
                .arg("PX")
                .arg(30),
            _ => p.cmd("INCR").arg(format!("c{k}")),
        };
        p.ignore();
    }
    let _: () = p.query(c).unwrap();
    // A transaction, a script (random numbers through redis.call are effects), other databases.
    let _: () = redis::pipe()
        .atomic()
        .cmd("INCR")
        .arg("{tx}a")
        .ignore()
        .cmd("SPOP")
        .arg("t1")
        .ignore()
        .cmd("SET")
        .arg("{tx}b")
        .arg(seed)
        .arg("PX")
        .arg(600_000)
        .ignore()
        .query(c)
        .unwrap();
    if scripts {
        let _: Value = redis::cmd("EVAL")
            .arg("redis.call('SET', KEYS[1], ARGV[1]); redis.call('INCRBYFLOAT', KEYS[1], '0.5'); return redis.call('SPOP', KEYS[2])")
            .arg(2)
            .arg("{sc}x")
            .arg("{sc}set")
            .arg(seed)
            .query(c)
            .unwrap();
        let _: () = redis::cmd("SADD")
            .arg("{sc}set")
            .arg(1)
            .arg(2)
            .arg(3)
            .query(c)
            .unwrap();
    }
    for db in [1, 2] {
        let _: () = redis::cmd("SELECT").arg(db).query(c).unwrap();
        let _: () = redis::cmd("SET")
            .arg(format!("db{db}"))
            .arg(seed)
            .query(c)
            .unwrap();
        let _: () = redis::cmd("HSET")
            .arg("hh")
            .arg("a")
            .arg(seed)
            .query(c)
            .unwrap();
    }
    let _: () = redis::cmd("SELECT").arg(0).query(c).unwrap();
}

#[test]
fn replica_follows_every_type_then_promotion_keeps_acknowledged_writes() {
    let master = testkit::codis_server(&["--cores", "2"]);
    let mut m = master.conn();
    // Data present before the replica exists: full sync.
    write_load(&mut m, 1, 3000, true);
    let port = master.port.to_string();
    let replica = testkit::codis_server(&["--cores", "2", "--replicaof", "127.0.0.1", &port]);
    let mut r = replica.conn();
    wait_link_up(&mut r);
    // Then the command stream.
    write_load(&mut m, 2, 5000, true);
    wait_acked(&mut m, 1);
    // Short-lived keys expire on the master (lazily and actively) and replicate as DEL.
    std::thread::sleep(Duration::from_millis(300));
    let _: Option<String> = redis::cmd("GET").arg("short22").query(&mut m).unwrap();
    wait_until(
        "active expiry of short keys",
        Duration::from_secs(10),
        || {
            let k: Vec<String> = redis::cmd("KEYS").arg("short*").query(&mut m).unwrap();
            k.is_empty()
        },
    );
    wait_acked(&mut m, 1);
    assert_same(&mut m, &mut r);
    let rdb: i64 = redis::cmd("DBSIZE").query(&mut r).unwrap();
    let mdb: i64 = redis::cmd("DBSIZE").query(&mut m).unwrap();
    assert_eq!(rdb, mdb, "expired keys were deleted on the replica too");

    // A read-only replica refuses writes from clients.
    let e = redis::cmd("SET")
        .arg("x")
        .arg(1)
        .query::<()>(&mut r)
        .unwrap_err();
    assert!(e.to_string().contains("read only replica"), "{e}");
    let role: Vec<Value> = redis::cmd("ROLE").query(&mut r).unwrap();
    assert_eq!(role[0], Value::BulkString(b"slave".to_vec()));

    // Every write acknowledged by WAIT 1 survives the promotion.
    let mut acked = Vec::new();
    for i in 0..200 {
        let _: () = redis::cmd("SET")
            .arg(format!("ack{i}"))
            .arg(i)
            .query(&mut m)
            .unwrap();
        if i % 20 == 19 {
            let n: i64 = redis::cmd("WAIT").arg(1).arg(20_000).query(&mut m).unwrap();
            if n == 1 {
                acked.extend((i - 19..=i).map(|j| format!("ack{j}")));
            }
        }
    }
    assert!(!acked.is_empty());
    let old_id = info_field(&mut r, "replication", "master_replid").unwrap();
    let _: () = redis::cmd("SLAVEOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut r)
        .unwrap();
    assert_eq!(
        info_field(&mut r, "replication", "role").as_deref(),
        Some("master")
    );
    assert_eq!(
        info_field(&mut r, "replication", "master_replid2").as_deref(),
        Some(old_id.as_str()),
        "the old history id is kept for PSYNC continuation"
    );
    for k in &acked {
        let v: Option<String> = redis::cmd("GET").arg(k).query(&mut r).unwrap();
        assert!(v.is_some(), "acknowledged {k} lost at promotion");
    }
    let _: () = redis::cmd("SET")
        .arg("after")
        .arg("promotion")
        .query(&mut r)
        .unwrap();

    // The old master, re-pointed at the new one, catches up.
    let rport = replica.port.to_string();
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(&rport)
        .query(&mut m)
        .unwrap();
    wait_link_up(&mut m);
    let _: () = redis::cmd("SET")
        .arg("after2")
        .arg("x")
        .query(&mut r)
        .unwrap();
    wait_acked(&mut r, 1);
    assert_same(&mut r, &mut m);
}

#[test]
fn partial_resync_after_the_link_is_cut() {
    let master = testkit::codis_server(&["--cores", "2"]);
    let mut m = master.conn();
    let port = master.port.to_string();
    let replica = testkit::codis_server(&["--cores", "2", "--replicaof", "127.0.0.1", &port]);
    let mut r = replica.conn();
    wait_link_up(&mut r);
    write_load(&mut m, 3, 2000, false);
    wait_acked(&mut m, 1);
    for round in 0..2 {
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("replica")
            .query(&mut m)
            .unwrap();
        assert_eq!(killed, 1);
        // Writes while the link is down come from the backlog.
        write_load(&mut m, 10 + round, 500, false);
        wait_until("the replica to reconnect", Duration::from_secs(30), || {
            info_field(&mut m, "replication", "connected_slaves").as_deref() == Some("1")
        });
        wait_acked(&mut m, 1);
    }
    let ok: i64 = info_field(&mut m, "stats", "sync_partial_ok")
        .unwrap()
        .parse()
        .unwrap();
    let full: i64 = info_field(&mut m, "stats", "sync_full")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(ok, 2, "both reconnections continued with +CONTINUE");
    assert_eq!(full, 1, "only the first synchronisation was full");
    assert_same(&mut m, &mut r);
    let mo = info_field(&mut m, "replication", "master_repl_offset").unwrap();
    wait_until("equal offsets", Duration::from_secs(10), || {
        info_field(&mut r, "replication", "slave_repl_offset").as_deref() == Some(mo.as_str())
    });
}

#[test]
fn redis_server_replicates_from_codis_server() {
    let master = testkit::codis_server(&["--cores", "2"]);
    let mut m = master.conn();
    write_load(&mut m, 4, 2000, true);
    let port = master.port.to_string();
    let Some((replica, _dir)) = testkit::redis_server(&["--replicaof", "127.0.0.1", &port]) else {
        return;
    };
    let mut r = replica.conn();
    wait_link_up(&mut r);
    write_load(&mut m, 5, 3000, true);
    wait_acked(&mut m, 1);
    assert_same(&mut m, &mut r);
}

#[test]
fn codis_server_replicates_from_redis_server() {
    let Some((master, _dir)) = testkit::redis_server(&[]) else {
        return;
    };
    let mut m = master.conn();
    write_load(&mut m, 6, 2000, true);
    let port = master.port.to_string();
    let replica = testkit::codis_server(&["--cores", "2", "--replicaof", "127.0.0.1", &port]);
    let mut r = replica.conn();
    wait_link_up(&mut r);
    write_load(&mut m, 7, 3000, true);
    wait_acked(&mut m, 1);
    assert_same(&mut m, &mut r);
}

#[test]
fn migration_keeps_replicas_of_both_ends_in_step() {
    let src = testkit::codis_server(&["--cores", "2"]);
    let dst = testkit::codis_server(&["--cores", "2"]);
    let src_r = testkit::codis_server(&[
        "--cores",
        "2",
        "--replicaof",
        "127.0.0.1",
        &src.port.to_string(),
    ]);
    let dst_r = testkit::codis_server(&[
        "--cores",
        "1",
        "--replicaof",
        "127.0.0.1",
        &dst.port.to_string(),
    ]);
    let (mut s, mut d, mut sr, mut dr) = (src.conn(), dst.conn(), src_r.conn(), dst_r.conn());
    wait_link_up(&mut sr);
    wait_link_up(&mut dr);
    let in_slot = |slot: u16, prefix: &str| -> Vec<String> {
        (0..)
            .map(|i| format!("{prefix}:{i}"))
            .filter(|k| resp::slot(k.as_bytes()) == slot)
            .take(300)
            .collect()
    };
    let mut p = redis::pipe();
    for (i, k) in in_slot(77, "a").iter().enumerate() {
        match i % 4 {
            0 => p.cmd("SET").arg(k).arg(i).arg("EX").arg(5000),
            1 => p.cmd("RPUSH").arg(k).arg(i).arg(i + 1),
            2 => p.cmd("HSET").arg(k).arg("f").arg(i),
            _ => p.cmd("ZADD").arg(k).arg(i).arg("m"),
        };
        p.ignore();
    }
    for (i, k) in in_slot(78, "b").iter().enumerate() {
        p.cmd("SET").arg(k).arg(i).ignore();
    }
    let _: () = p.query(&mut s).unwrap();
    let dport = dst.port.to_string();
    let r: Vec<i64> = redis::cmd("SLOTSMGRTSLOT-ASYNC")
        .arg("127.0.0.1")
        .arg(&dport)
        .arg(3000)
        .arg(50)
        .arg(1 << 20)
        .arg(77)
        .arg(5000)
        .query(&mut s)
        .unwrap();
    assert_eq!(r, vec![300, 0]);
    loop {
        let r: Vec<i64> = redis::cmd("SLOTSMGRTTAGSLOT")
            .arg("127.0.0.1")
            .arg(&dport)
            .arg(3000)
            .arg(78)
            .query(&mut s)
            .unwrap();
        if r[1] == 0 {
            break;
        }
    }
    wait_acked(&mut s, 1);
    wait_acked(&mut d, 1);
    let dn: i64 = redis::cmd("DBSIZE").query(&mut d).unwrap();
    assert_eq!(dn, 600);
    assert_same(&mut s, &mut sr);
    assert_same(&mut d, &mut dr);
}

#[test]
fn blocking_pops_served_later_replicate_as_their_effect() {
    let master = testkit::codis_server(&["--cores", "2"]);
    let port = master.port.to_string();
    let replica = testkit::codis_server(&["--cores", "2", "--replicaof", "127.0.0.1", &port]);
    let (mut m, mut r) = (master.conn(), replica.conn());
    wait_link_up(&mut r);
    let mut waiters = Vec::new();
    for key in ["bl", "bz"] {
        let mut c = master.conn();
        waiters.push(std::thread::spawn(move || {
            let v: Value = if key == "bl" {
                redis::cmd("BLPOP").arg(key).arg(30).query(&mut c).unwrap()
            } else {
                redis::cmd("BZPOPMIN")
                    .arg(key)
                    .arg(30)
                    .query(&mut c)
                    .unwrap()
            };
            v
        }));
    }
    wait_until("two blocked clients", Duration::from_secs(20), || {
        info_field(&mut m, "clients", "blocked_clients").as_deref() == Some("2")
    });
    let _: () = redis::cmd("RPUSH")
        .arg("bl")
        .arg("a")
        .arg("b")
        .arg("c")
        .query(&mut m)
        .unwrap();
    let _: () = redis::cmd("ZADD")
        .arg("bz")
        .arg(1)
        .arg("x")
        .arg(2)
        .arg("y")
        .query(&mut m)
        .unwrap();
    for w in waiters {
        let v = w.join().unwrap();
        assert!(matches!(v, Value::Array(_)), "served: {v:?}");
    }
    wait_acked(&mut m, 1);
    assert_same(&mut m, &mut r);
    let left: Vec<String> = redis::cmd("LRANGE")
        .arg("bl")
        .arg(0)
        .arg(-1)
        .query(&mut r)
        .unwrap();
    assert_eq!(left, vec!["b", "c"]);
}

/// PFCOUNT rewriting a HyperLogLog's cached cardinality propagates, so the replica's string keeps
/// the master's bytes (Redis propagates it the same way).
/// One more write to `m`, waited for on `r`: everything `m` did before it reached `r`.
fn write_one_more_and_wait(m: &mut Connection, r: &mut Connection) {
    let _: () = redis::cmd("SET").arg("done").arg(1).query(m).unwrap();
    wait_until(
        "the replica has the last write",
        Duration::from_secs(20),
        || {
            redis::cmd("GET")
                .arg("done")
                .query::<Option<String>>(r)
                .ok()
                .flatten()
                .is_some()
        },
    );
}

#[test]
fn pfcount_cache_update_reaches_the_replica() {
    let master = testkit::codis_server(&["--cores", "2"]);
    let port = master.port.to_string();
    let replica = testkit::codis_server(&["--cores", "2", "--replicaof", "127.0.0.1", &port]);
    let (mut m, mut r) = (master.conn(), replica.conn());
    wait_link_up(&mut r);
    let _: () = redis::cmd("PFADD")
        .arg("h")
        .arg(&["a", "b", "c"])
        .query(&mut m)
        .unwrap();
    let n: i64 = redis::cmd("PFCOUNT").arg("h").query(&mut m).unwrap();
    assert_eq!(n, 3);
    write_one_more_and_wait(&mut m, &mut r);
    let get = |c: &mut Connection| -> Vec<u8> { redis::cmd("GET").arg("h").query(c).unwrap() };
    let (on_m, on_r) = (get(&mut m), get(&mut r));
    assert_eq!(on_m[15] & 0x80, 0, "the master's cache is valid");
    assert_eq!(
        on_m, on_r,
        "the replica's HyperLogLog differs from the master's"
    );
}

/// `redis.set_repl(redis.REPL_NONE)` keeps a script's later writes on the master;
/// `REPL_ALL` sends them again; `REPL_AOF` or `REPL_REPLICA` alone are refused (the AOF and the
/// replicas read one stream) and the script stops there.
#[test]
fn set_repl_none_keeps_a_scripts_writes_off_the_replica() {
    let master = testkit::codis_server(&["--cores", "1"]);
    let port = master.port.to_string();
    let replica = testkit::codis_server(&["--cores", "1", "--replicaof", "127.0.0.1", &port]);
    let (mut m, mut r) = (master.conn(), replica.conn());
    wait_link_up(&mut r);
    let script = "redis.call('SET', KEYS[1], 'shared') \
                  redis.set_repl(redis.REPL_NONE) \
                  redis.call('SET', KEYS[2], 'local') \
                  redis.set_repl(redis.REPL_ALL) \
                  redis.call('SET', KEYS[3], 'shared') \
                  return 1";
    let n: i64 = redis::cmd("EVAL")
        .arg(script)
        .arg(3)
        .arg(&["a", "b", "c"])
        .query(&mut m)
        .unwrap();
    assert_eq!(n, 1);
    let err = redis::cmd("EVAL")
        .arg("redis.set_repl(redis.REPL_AOF) redis.call('SET', 'd', 1)")
        .arg(0)
        .query::<()>(&mut m)
        .unwrap_err()
        .to_string();
    assert!(err.contains("REPL_ALL or redis.REPL_NONE"), "{err}");
    write_one_more_and_wait(&mut m, &mut r);
    let get = |c: &mut Connection, k: &str| -> Option<String> {
        redis::cmd("GET").arg(k).query(c).unwrap()
    };
    for (k, on_m, on_r) in [
        ("a", Some("shared"), Some("shared")),
        ("b", Some("local"), None),
        ("c", Some("shared"), Some("shared")),
        ("d", None, None),
    ] {
        assert_eq!(get(&mut m, k).as_deref(), on_m, "master {k}");
        assert_eq!(get(&mut r, k).as_deref(), on_r, "replica {k}");
    }
}

/// PUBLISH and SPUBLISH reach the replica's subscribers, as Redis propagates them to replicas,
/// and stay out of the master's AOF.
#[test]
fn publish_reaches_subscribers_of_the_replica_not_the_aof() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let master = testkit::codis_server(&[
        "--cores",
        "2",
        "--dir",
        d,
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ]);
    let port = master.port.to_string();
    let replica = testkit::codis_server(&["--cores", "2", "--replicaof", "127.0.0.1", &port]);
    let (mut m, mut r) = (master.conn(), replica.conn());
    wait_link_up(&mut r);
    let mut sub = std::net::TcpStream::connect(("127.0.0.1", replica.port)).unwrap();
    sub.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    sub.write_all(
        b"*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nnews\r\n*2\r\n$10\r\nSSUBSCRIBE\r\n$5\r\nsnews\r\n",
    )
    .unwrap();
    let mut got = Vec::new();
    let mut read_until = |want: &[u8], got: &mut Vec<u8>| {
        let start = Instant::now();
        while !got.windows(want.len()).any(|w| w == want) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "never received {:?}; got {:?}",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(got)
            );
            let mut buf = [0u8; 4096];
            if let Ok(n) = sub.read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
        }
    };
    read_until(b"$10\r\nssubscribe\r\n$5\r\nsnews\r\n:1\r\n", &mut got);
    let n: i64 = redis::cmd("PUBLISH")
        .arg("news")
        .arg("hello")
        .query(&mut m)
        .unwrap();
    assert_eq!(n, 0, "nobody subscribes on the master");
    let _: i64 = redis::cmd("SPUBLISH")
        .arg("snews")
        .arg("shello")
        .query(&mut m)
        .unwrap();
    read_until(b"$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n", &mut got);
    read_until(
        b"$8\r\nsmessage\r\n$5\r\nsnews\r\n$6\r\nshello\r\n",
        &mut got,
    );
    // A script's messages too, in order with its writes.
    let n: i64 = redis::cmd("EVAL")
        .arg("redis.call('SET', KEYS[1], 'v'); return redis.call('PUBLISH', 'news', 'scripted')")
        .arg(1)
        .arg("from-script")
        .query(&mut m)
        .unwrap();
    assert_eq!(n, 0, "nobody subscribes on the master");
    let _: i64 = redis::cmd("EVAL")
        .arg("return redis.call('SPUBLISH', 'snews', 'sscripted')")
        .arg(0)
        .query(&mut m)
        .unwrap();
    read_until(
        b"$7\r\nmessage\r\n$4\r\nnews\r\n$8\r\nscripted\r\n",
        &mut got,
    );
    read_until(
        b"$8\r\nsmessage\r\n$5\r\nsnews\r\n$9\r\nsscripted\r\n",
        &mut got,
    );
    let _: () = redis::cmd("SET")
        .arg("after")
        .arg("1")
        .query(&mut m)
        .unwrap();
    wait_acked(&mut m, 1);
    let v: Option<String> = redis::cmd("GET").arg("from-script").query(&mut r).unwrap();
    assert_eq!(
        v.as_deref(),
        Some("v"),
        "the script's write reached the replica"
    );
    let mut aof = Vec::new();
    for e in std::fs::read_dir(dir.path()).unwrap().flatten() {
        if e.file_name().to_string_lossy().contains("appendonly") && e.path().is_file() {
            aof.extend(std::fs::read(e.path()).unwrap());
        }
    }
    let has = |s: &[u8]| aof.windows(s.len()).any(|w| w.eq_ignore_ascii_case(s));
    assert!(has(b"$5\r\nafter\r\n"), "the AOF holds the SET");
    assert!(
        has(b"$11\r\nfrom-script\r\n"),
        "the AOF holds the script's write"
    );
    assert!(
        !has(b"publish"),
        "PUBLISH/SPUBLISH went into the AOF: {}",
        String::from_utf8_lossy(&aof)
    );
}
