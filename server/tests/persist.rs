//! RDB persistence end to end: SAVE + restart keeps every type, TTL and database; a BGSAVE taken
//! under a write load is a valid RDB (`redis-check-rdb`, a real redis-server 7 loads it) holding
//! exactly the state of one instant; an RDB written by redis-server 7 loads into codis-server;
//! a corrupt file stops the server at start-up with a clear error.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::Connection;

const DBS: [i64; 3] = [0, 1, 5];

/// A writer thread on its own connection: `step(conn, round)` for rounds 0, 1, … until `stop`
/// is set; joins to the number of rounds done.
fn spawn_writer(
    mut w: Connection,
    stop: &Arc<AtomicBool>,
    mut step: impl FnMut(&mut Connection, u64) + Send + 'static,
) -> std::thread::JoinHandle<u64> {
    let stop = stop.clone();
    std::thread::spawn(move || {
        let mut round = 0u64;
        while !stop.load(Ordering::Relaxed) {
            step(&mut w, round);
            round += 1;
        }
        round
    })
}

/// What a key holds, comparable across servers: type, canonical value, PTTL.
type Dump = BTreeMap<(i64, Vec<u8>), (String, Vec<Vec<u8>>, i64)>;

fn q<T: redis::FromRedisValue>(c: &mut Connection, args: &[&[u8]]) -> T {
    let mut cmd = redis::cmd(std::str::from_utf8(args[0]).unwrap());
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c)
        .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(args[0])))
}

fn select(c: &mut Connection, db: i64) {
    let _: () = redis::cmd("SELECT").arg(db).query(c).unwrap();
}

/// A dataset of every type and encoding, in several databases, some keys with TTLs.
fn populate(c: &mut Connection) {
    for db in DBS {
        select(c, db);
        let mut p = redis::pipe();
        let big: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        p.cmd("SET").arg("s:int").arg(12345).ignore();
        p.cmd("SET").arg("s:neg").arg(-7).ignore();
        p.cmd("SET").arg("s:i64").arg(i64::MAX).ignore();
        p.cmd("SET")
            .arg("s:toolong")
            .arg("123456789012345678901")
            .ignore();
        p.cmd("SET").arg("s:lead0").arg("007").ignore();
        p.cmd("SET").arg("s:empty").arg("").ignore();
        p.cmd("SET")
            .arg("s:bin")
            .arg(&b"a\0b\r\nc\xff"[..])
            .ignore();
        p.cmd("SET").arg("s:big").arg(&big[..]).ignore();
        p.cmd("SET").arg("s:rep").arg("ab".repeat(500)).ignore();
        p.cmd("SET").arg(format!("db{db}")).arg(db).ignore();
        p.cmd("HSET")
            .arg("h:small")
            .arg(&["f1", "v1", "f2", "2", "f3", ""])
            .ignore();
        for i in 0..300 {
            p.cmd("HSET")
                .arg("h:large")
                .arg(format!("f{i}"))
                .arg(i)
                .ignore();
        }
        p.cmd("HSET")
            .arg("h:bigval")
            .arg("f")
            .arg("x".repeat(100))
            .ignore();
        p.cmd("RPUSH")
            .arg("l:small")
            .arg(&["a", "1", "b", "a"])
            .ignore();
        for i in 0..1000 {
            p.cmd("RPUSH")
                .arg("l:large")
                .arg(format!("e{}", i % 37))
                .ignore();
        }
        p.cmd("RPUSH").arg("l:bigval").arg("y".repeat(200)).ignore();
        p.cmd("SADD")
            .arg("set:ints")
            .arg(&[3, -1, 100000, 7])
            .ignore();
        for i in 0..1000 {
            p.cmd("SADD").arg("set:manyints").arg(i * 3).ignore();
        }
        p.cmd("SADD").arg("set:str").arg(&["a", "b", "c"]).ignore();
        for i in 0..600 {
            p.cmd("SADD").arg("set:large").arg(format!("m{i}")).ignore();
        }
        p.cmd("ZADD")
            .arg("z:small")
            .arg(&["1.5", "a", "-2", "b", "inf", "c", "-inf", "d", "0.1", "e"])
            .ignore();
        for i in 0..300 {
            p.cmd("ZADD")
                .arg("z:large")
                .arg(i as f64 / 3.0)
                .arg(format!("m{i}"))
                .ignore();
        }
        p.cmd("PFADD")
            .arg("hll")
            .arg(&["a", "b", "c", "d"])
            .ignore();
        for i in 0..200 {
            p.cmd("PFADD").arg("hll:big").arg(format!("x{i}")).ignore();
        }
        p.cmd("SET")
            .arg("ttl:s")
            .arg("v")
            .arg("PX")
            .arg(3_600_000)
            .ignore();
        p.cmd("EXPIRE").arg("h:small").arg(7200).ignore();
        p.cmd("PEXPIRE").arg("z:large").arg(10_000_000).ignore();
        for i in 0..2000 {
            p.cmd("SET")
                .arg(format!("k:{i}"))
                .arg(format!("value-{i}"))
                .ignore();
        }
        let _: () = p.query(c).unwrap();
    }
    select(c, 0);
}

fn all_keys(c: &mut Connection) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    let mut cursor = b"0".to_vec();
    loop {
        let (next, page): (Vec<u8>, Vec<Vec<u8>>) = q(c, &[b"SCAN", &cursor, b"COUNT", b"1000"]);
        keys.extend(page);
        if next == b"0" {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys.dedup();
    keys
}

/// Every key of `dbs` with its type, value and PTTL.
fn dump(c: &mut Connection, dbs: &[i64]) -> Dump {
    let mut out = Dump::new();
    for &db in dbs {
        select(c, db);
        for k in all_keys(c) {
            let ty: String = q(c, &[b"TYPE", &k]);
            let val: Vec<Vec<u8>> = match ty.as_str() {
                "string" => vec![q(c, &[b"GET", &k])],
                "list" => q(c, &[b"LRANGE", &k, b"0", b"-1"]),
                "set" => {
                    let mut v: Vec<Vec<u8>> = q(c, &[b"SMEMBERS", &k]);
                    v.sort();
                    v
                }
                "zset" => q(c, &[b"ZRANGE", &k, b"0", b"-1", b"WITHSCORES"]),
                "hash" => {
                    let v: Vec<Vec<u8>> = q(c, &[b"HGETALL", &k]);
                    let mut pairs: Vec<Vec<u8>> = v
                        .chunks(2)
                        .map(|p| [&p[0][..], b"=", &p[1][..]].concat())
                        .collect();
                    pairs.sort();
                    pairs
                }
                other => panic!("unexpected type {other}"),
            };
            let pttl: i64 = q(c, &[b"PTTL", &k]);
            out.insert((db, k), (ty, val, pttl));
        }
    }
    select(c, 0);
    out
}

/// Equal keys, types and values; TTLs both absent or both present and close.
fn assert_same(a: &Dump, b: &Dump) {
    let ka: Vec<_> = a.keys().collect();
    let kb: Vec<_> = b.keys().collect();
    if ka != kb {
        let only_a: Vec<_> = ka.iter().filter(|k| !b.contains_key(k)).take(5).collect();
        let only_b: Vec<_> = kb.iter().filter(|k| !a.contains_key(k)).take(5).collect();
        panic!(
            "key sets differ ({} vs {}); only left: {only_a:?}; only right: {only_b:?}",
            ka.len(),
            kb.len()
        );
    }
    for (k, (ta, va, pa)) in a {
        let (tb, vb, pb) = &b[k];
        assert_eq!(ta, tb, "type of {k:?}");
        assert!(va == vb, "value of {k:?} differs");
        if *pa < 0 || *pb < 0 {
            assert_eq!(pa, pb, "ttl of {k:?}");
        } else {
            assert!((pa - pb).abs() < 120_000, "ttl of {k:?}: {pa} vs {pb}");
        }
    }
}

fn info_field(c: &mut Connection, field: &str) -> String {
    let text: String = redis::cmd("INFO").arg("persistence").query(c).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Start a BGSAVE and wait until it finished successfully.
fn bgsave_and_wait(c: &mut Connection) {
    let before: u64 = info_field(c, "rdb_saves").parse().unwrap();
    let r: String = redis::cmd("BGSAVE").query(c).unwrap();
    assert_eq!(r, "Background saving started");
    let start = Instant::now();
    loop {
        let saves: u64 = info_field(c, "rdb_saves").parse().unwrap();
        if saves > before && info_field(c, "rdb_bgsave_in_progress") == "0" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "BGSAVE never finished"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(info_field(c, "rdb_last_bgsave_status"), "ok");
}

fn check_rdb(path: &Path) {
    let out = match Command::new("redis-check-rdb").arg(path).output() {
        Ok(o) => o,
        Err(_) => {
            eprintln!("SKIPPED redis-check-rdb: not installed (apt-get install redis-tools)");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("RDB looks OK"),
        "redis-check-rdb refused {}: {text}",
        path.display()
    );
}

#[test]
fn save_and_restart_keep_every_type() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let srv = testkit::codis_server(&["--cores", "2", "--dir", d]);
    let mut c = srv.conn();
    populate(&mut c);
    let before = dump(&mut c, &DBS);
    let _: () = redis::cmd("SAVE").query(&mut c).unwrap();
    let last: i64 = redis::cmd("LASTSAVE").query(&mut c).unwrap();
    assert!(last > 1_600_000_000);
    assert_eq!(info_field(&mut c, "rdb_changes_since_last_save"), "0");
    check_rdb(&dir.path().join("dump.rdb"));
    drop(c);
    drop(srv);
    // A different core count on restart: keys land on their new owners.
    let srv = testkit::codis_server(&["--cores", "3", "--dir", d]);
    let mut c = srv.conn();
    // Loading is not a change (read commands may count: some use mutable access).
    assert_eq!(info_field(&mut c, "rdb_changes_since_last_save"), "0");
    let after = dump(&mut c, &DBS);
    assert_same(&before, &after);
    // DEBUG RELOAD round-trips too.
    let _: () = redis::cmd("DEBUG").arg("RELOAD").query(&mut c).unwrap();
    assert_same(&before, &dump(&mut c, &DBS));
}

#[test]
fn bgsave_under_writes_is_valid_and_loads_into_redis() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let srv = testkit::codis_server(&["--cores", "2", "--dir", d]);
    let mut c = srv.conn();
    populate(&mut c);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(srv.conn(), &stop, |w, i| {
        let mut p = redis::pipe();
        for j in 0..50 {
            let n = (i * 50 + j) % 3000;
            p.cmd("SET").arg(format!("w:{n}")).arg(i).ignore();
            p.cmd("HSET")
                .arg("w:h")
                .arg(format!("f{n}"))
                .arg(i)
                .ignore();
            p.cmd("DEL").arg(format!("k:{}", n % 2000)).ignore();
        }
        let _: () = p.query(w).unwrap();
    });
    std::thread::sleep(Duration::from_millis(100));
    bgsave_and_wait(&mut c);
    // A second BGSAVE right after the first one is accepted too.
    bgsave_and_wait(&mut c);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let file = dir.path().join("dump.rdb");
    check_rdb(&file);
    // The file taken under load is a valid RDB a real Redis loads.
    let copy = dir.path().join("under-load.rdb");
    std::fs::copy(&file, &copy).unwrap();
    if let Some((rs, _rd)) = testkit::redis_server(&["--dir", d, "--dbfilename", "under-load.rdb"])
    {
        let mut r = rs.conn();
        let n: i64 = redis::cmd("DBSIZE").query(&mut r).unwrap();
        assert!(n > 0);
    }
    // Quiet now: SAVE and compare everything with what redis-server loads.
    let _: () = redis::cmd("SAVE").query(&mut c).unwrap();
    check_rdb(&file);
    let ours = dump(&mut c, &DBS);
    let Some((rs, _rd)) = testkit::redis_server(&["--dir", d, "--dbfilename", "dump.rdb"]) else {
        return;
    };
    let mut r = rs.conn();
    assert_same(&ours, &dump(&mut r, &DBS));
}

#[test]
fn rdb_from_redis_server_loads() {
    let Some((rs, rdir)) = testkit::redis_server(&[]) else {
        return;
    };
    let mut r = rs.conn();
    populate(&mut r);
    let want = dump(&mut r, &DBS);
    let _: () = redis::cmd("SAVE").query(&mut r).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(rdir.path().join("dump.rdb"), dir.path().join("dump.rdb")).unwrap();
    let d = dir.path().to_str().unwrap();
    let srv = testkit::codis_server(&["--cores", "2", "--dir", d]);
    let mut c = srv.conn();
    assert_same(&want, &dump(&mut c, &DBS));
}

/// Start codis-server on `file` in `dir`; it must exit with an error naming the problem.
fn refuses(dir: &Path, file: &str) -> String {
    let mut child = Command::new(testkit::bin_path("codis-server"))
        .args(["--port", &testkit::free_port().to_string(), "--cores", "2"])
        .arg("--dir")
        .arg(dir)
        .args(["--dbfilename", file])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("codis-server started on corrupt file {file}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success(), "{file}: exit status {status}");
    assert!(err.contains("Fatal error loading the DB"), "{file}: {err}");
    assert!(!err.contains("panicked"), "{file}: {err}");
    err
}

#[test]
fn corrupt_rdb_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    {
        let srv = testkit::codis_server(&["--cores", "2", "--dir", d]);
        let mut c = srv.conn();
        populate(&mut c);
        let _: () = redis::cmd("SAVE").query(&mut c).unwrap();
    }
    let good = std::fs::read(dir.path().join("dump.rdb")).unwrap();
    std::fs::write(dir.path().join("garbage.rdb"), b"this is not an rdb file").unwrap();
    assert!(refuses(dir.path(), "garbage.rdb").contains("not an RDB file"));
    std::fs::write(dir.path().join("trunc.rdb"), &good[..good.len() / 2]).unwrap();
    refuses(dir.path(), "trunc.rdb");
    let mut flipped = good.clone();
    let n = flipped.len();
    flipped[n - 3] ^= 0x55;
    std::fs::write(dir.path().join("crc.rdb"), &flipped).unwrap();
    assert!(refuses(dir.path(), "crc.rdb").contains("checksum"));
    // A key in a database this server does not have.
    let srv = testkit::codis_server(&["--cores", "1", "--dir", d, "--dbfilename", "x.rdb"]);
    let mut c = srv.conn();
    select(&mut c, 9);
    let _: () = redis::cmd("SET").arg("a").arg(1).query(&mut c).unwrap();
    let _: () = redis::cmd("SAVE").query(&mut c).unwrap();
    drop(srv);
    std::fs::write(dir.path().join("few.conf"), "databases 4\n").unwrap();
    let mut child = Command::new(testkit::bin_path("codis-server"))
        .arg(dir.path().join("few.conf"))
        .args(["--port", &testkit::free_port().to_string()])
        .arg("--dir")
        .arg(dir.path())
        .args(["--dbfilename", "x.rdb"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = {
        let start = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                break child.wait_with_output().unwrap();
            }
            assert!(start.elapsed() < Duration::from_secs(30), "started anyway");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("database 9"), "{err}");
}

/// A single client increments N counters round-robin and, after each round r, creates `n:r`.
/// Any instant's state is "counters = [V+1]*j ++ [V]*(N-j)" with `n:0..n:V-1` (or one fewer
/// when the round's INCRs are done but its marker is not). A snapshot mixing instants breaks it.
#[test]
fn bgsave_is_point_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let srv = testkit::codis_server(&["--cores", "2", "--dir", d]);
    let mut c = srv.conn();
    // Ballast so the snapshot takes a while.
    for chunk in 0..40 {
        let mut p = redis::pipe();
        for i in 0..5000 {
            p.cmd("SET")
                .arg(format!("ballast:{chunk}:{i}"))
                .arg("x".repeat(40))
                .ignore();
        }
        let _: () = p.query(&mut c).unwrap();
    }
    const N: usize = 64;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(srv.conn(), &stop, |w, r| {
        for i in 0..N {
            let _: i64 = redis::cmd("INCR").arg(format!("ctr:{i}")).query(w).unwrap();
        }
        let _: () = redis::cmd("SET")
            .arg(format!("n:{r}"))
            .arg(1)
            .query(w)
            .unwrap();
    });
    // Let a few rounds happen, snapshot twice under the load.
    std::thread::sleep(Duration::from_millis(300));
    let mut checked = 0;
    for _ in 0..2 {
        bgsave_and_wait(&mut c);
        let bytes = std::fs::read(dir.path().join("dump.rdb")).unwrap();
        let entries = rdb::file::read_all(&bytes).unwrap();
        let mut ctr = vec![0i64; N];
        let mut markers = Vec::new();
        let mut ballast = 0;
        for e in entries {
            let k = String::from_utf8_lossy(&e.key).to_string();
            let rdb::Value::String(v) = &e.value else {
                panic!("unexpected value for {k}");
            };
            if let Some(i) = k.strip_prefix("ctr:") {
                ctr[i.parse::<usize>().unwrap()] = std::str::from_utf8(v).unwrap().parse().unwrap();
            } else if let Some(r) = k.strip_prefix("n:") {
                markers.push(r.parse::<u64>().unwrap());
            } else {
                ballast += 1;
            }
        }
        assert_eq!(ballast, 200_000);
        markers.sort();
        let v = *ctr.iter().min().unwrap();
        let j = ctr.iter().take_while(|x| **x == v + 1).count();
        assert!(
            ctr[..j].iter().all(|x| *x == v + 1) && ctr[j..].iter().all(|x| *x == v),
            "counters are not from one instant: {ctr:?}"
        );
        let m = markers.len() as i64;
        assert_eq!(
            markers,
            (0..m as u64).collect::<Vec<_>>(),
            "markers have gaps"
        );
        if j > 0 {
            assert_eq!(m, v, "markers vs counters {ctr:?}");
        } else {
            assert!(m == v || m == v - 1, "markers {m} vs counters {v}");
        }
        checked += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = writer.join().unwrap();
    assert_eq!(checked, 2);
    assert!(rounds > 0);
}

/// Under `appendfsync always`, kill -9 during a write load loses no acknowledged write.
#[test]
fn aof_always_keeps_every_acknowledged_write_after_kill() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let mut srv = testkit::codis_server(&[
        "--cores",
        "2",
        "--dir",
        d,
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ]);
    {
        let mut c = srv.conn();
        populate(&mut c);
    }
    let before = {
        let mut c = srv.conn();
        dump(&mut c, &DBS)
    };
    // Writers record what the server acknowledged; the process dies under them.
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let mut c = srv.conn();
            std::thread::spawn(move || {
                let mut acked: Vec<(String, u64)> = Vec::new();
                let mut incrs = 0u64;
                for i in 0.. {
                    let key = format!("ack:{w}:{i}");
                    let r: redis::RedisResult<()> =
                        redis::cmd("SET").arg(&key).arg(i).query(&mut c);
                    if r.is_err() {
                        break;
                    }
                    acked.push((key, i));
                    let r: redis::RedisResult<u64> =
                        redis::cmd("INCR").arg(format!("ctr:{w}")).query(&mut c);
                    match r {
                        Ok(n) => incrs = n,
                        Err(_) => break,
                    }
                }
                (w, acked, incrs)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    srv.kill();
    let results: Vec<_> = writers.into_iter().map(|h| h.join().unwrap()).collect();
    let srv = testkit::codis_server(&[
        "--cores",
        "3",
        "--dir",
        d,
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ]);
    let mut c = srv.conn();
    let mut total = 0;
    for (w, acked, incrs) in results {
        assert!(!acked.is_empty(), "writer {w} got nothing acknowledged");
        for (k, v) in &acked {
            let got: Option<u64> = redis::cmd("GET").arg(k).query(&mut c).unwrap();
            assert_eq!(got, Some(*v), "acknowledged write {k} lost");
        }
        let n: u64 = redis::cmd("GET")
            .arg(format!("ctr:{w}"))
            .query(&mut c)
            .unwrap();
        assert!(n >= incrs, "counter {w}: {n} < acknowledged {incrs}");
        total += acked.len();
    }
    assert!(total > 0);
    // The dataset written before the load is intact too (compare it without the load's keys).
    let mut after = dump(&mut c, &DBS);
    after.retain(|(_, k), _| !k.starts_with(b"ack:") && !k.starts_with(b"ctr:"));
    assert_same(&before, &after);
}

/// BGREWRITEAOF under writes, then a restart (everysec, SHUTDOWN) and a cut-short last command.
#[test]
fn aof_rewrite_restart_and_truncated_tail() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let args = ["--cores", "2", "--dir", d, "--appendonly", "yes"];
    let srv = testkit::codis_server(&args);
    let mut c = srv.conn();
    populate(&mut c);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(srv.conn(), &stop, |w, i| {
        let _: () = redis::cmd("SET")
            .arg(format!("w:{}", i % 500))
            .arg(i)
            .query(w)
            .unwrap();
        let _: () = redis::cmd("HSET")
            .arg("w:h")
            .arg(i % 50)
            .arg(i)
            .query(w)
            .unwrap();
    });
    std::thread::sleep(Duration::from_millis(200));
    let r: String = redis::cmd("BGREWRITEAOF").query(&mut c).unwrap();
    assert_eq!(r, "Background append only file rewriting started");
    let start = Instant::now();
    while info_field(&mut c, "aof_rewrite_in_progress") != "0" {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "rewrite never finished"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(info_field(&mut c, "aof_last_bgrewrite_status"), "ok");
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let want = dump(&mut c, &DBS);
    let _ = redis::cmd("SHUTDOWN").query::<()>(&mut c);
    drop(srv);
    let aof = dir.path().join("appendonly.aof");
    assert!(
        std::fs::read(&aof).unwrap().starts_with(b"REDIS"),
        "rewrite left no RDB preamble"
    );
    let srv = testkit::codis_server(&args);
    let mut c = srv.conn();
    assert_same(&want, &dump(&mut c, &DBS));
    drop(c);
    drop(srv);
    // A crash mid-write leaves half a command: it is dropped, the rest loads.
    let mut f = std::fs::OpenOptions::new().append(true).open(&aof).unwrap();
    std::io::Write::write_all(&mut f, b"*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$5\r\nva").unwrap();
    drop(f);
    let srv = testkit::codis_server(&args);
    let mut c = srv.conn();
    assert_same(&want, &dump(&mut c, &DBS));
    if Command::new("redis-check-aof")
        .arg("--help")
        .output()
        .is_ok()
    {
        let out = Command::new("redis-check-aof").arg(&aof).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("is valid"), "redis-check-aof: {text}");
    }
}

fn config_set(c: &mut Connection, k: &str, v: &str) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(k)
        .arg(v)
        .query(c)
        .unwrap_or_else(|e| panic!("CONFIG SET {k} {v}: {e}"));
}

/// `CONFIG SET appendonly yes|no`, `appendfsync` and `save` at run time, as in Redis: switching
/// the AOF on writes a new AOF from a snapshot (under a write load) and appends from then on;
/// switching it off stops appending.
#[test]
fn config_set_appendonly_appendfsync_and_save_at_run_time() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let srv = testkit::codis_server(&["--cores", "2", "--dir", d]);
    let mut c = srv.conn();
    populate(&mut c);
    assert_eq!(info_field(&mut c, "aof_enabled"), "0");
    // Switch on while a client writes: the snapshot and the appended stream meet exactly.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(srv.conn(), &stop, |w, i| {
        let _: () = redis::cmd("SET")
            .arg(format!("w:{}", i % 300))
            .arg(i)
            .query(w)
            .unwrap();
        let _: i64 = redis::cmd("INCR").arg("w:ctr").query(w).unwrap();
    });
    std::thread::sleep(Duration::from_millis(100));
    config_set(&mut c, "appendonly", "yes");
    let start = Instant::now();
    while info_field(&mut c, "aof_enabled") != "1"
        || info_field(&mut c, "aof_rewrite_in_progress") != "0"
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the AOF was never switched on"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(info_field(&mut c, "aof_last_bgrewrite_status"), "ok");
    let got: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query(&mut c)
        .unwrap();
    assert_eq!(got, ["appendonly", "yes"]);
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    // appendfsync always at run time: from now on a reply means the write is on disk.
    config_set(&mut c, "appendfsync", "always");
    let _: () = redis::cmd("SET")
        .arg("acked")
        .arg("1")
        .query(&mut c)
        .unwrap();
    let want = dump(&mut c, &DBS);
    // Switched off: later writes are not appended.
    config_set(&mut c, "appendonly", "no");
    assert_eq!(info_field(&mut c, "aof_enabled"), "0");
    let _: () = redis::cmd("SET")
        .arg("after-off")
        .arg("1")
        .query(&mut c)
        .unwrap();
    // `save` rules at run time: a rule met starts a background save within a few seconds.
    let saves: u64 = info_field(&mut c, "rdb_saves").parse().unwrap();
    config_set(&mut c, "save", "1 1");
    let start = Instant::now();
    while info_field(&mut c, "rdb_saves").parse::<u64>().unwrap() <= saves {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the save rule never fired"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    config_set(&mut c, "save", "");
    drop(c);
    drop(srv);
    let aof = dir.path().join("appendonly.aof");
    assert!(
        std::fs::read(&aof).unwrap().starts_with(b"REDIS"),
        "switching on wrote no RDB preamble"
    );
    std::fs::remove_file(dir.path().join("dump.rdb")).unwrap();
    // The AOF alone holds exactly the data at the switch-off.
    let srv = testkit::codis_server(&["--cores", "3", "--dir", d, "--appendonly", "yes"]);
    let mut c = srv.conn();
    assert_same(&want, &dump(&mut c, &DBS));
    let off: Option<String> = redis::cmd("GET").arg("after-off").query(&mut c).unwrap();
    assert_eq!(off, None, "a write after appendonly no reached the AOF");
}
