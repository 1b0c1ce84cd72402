//! Codis migration commands between two real codis-servers: the golden replies of the reference
//! codis-server, tag groups moving together, TTLs kept, whole slots moved in one async call, the
//! EXEC-WRAPPER codes, SLOTSRESTORE validation, and AUTH on the migration link.

use redis::{Connection, Value as V};

fn slot_of(k: &str) -> usize {
    resp::slot(k.as_bytes()) as usize
}

fn q<T: redis::FromRedisValue>(c: &mut Connection, args: &[&str]) -> T {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn q_err(c: &mut Connection, args: &[&str]) -> String {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    match cmd.query::<V>(c) {
        Err(e) => e.to_string(),
        Ok(v) => panic!("{args:?}: expected an error, got {v:?}"),
    }
}

/// `n` keys of `slot` named `prefix:<i>`, SET to their index on `c`.
fn fill_slot(c: &mut Connection, prefix: &str, slot: usize, n: usize) -> Vec<String> {
    let keys: Vec<String> = (0..)
        .map(|i| format!("{prefix}:{i}"))
        .filter(|k| slot_of(k) == slot)
        .take(n)
        .collect();
    let mut p = redis::pipe();
    for (i, k) in keys.iter().enumerate() {
        p.cmd("SET").arg(k).arg(i).ignore();
    }
    let _: () = p.query(c).unwrap();
    keys
}

/// `SLOTSMGRTSLOT-ASYNC` of `slot` from `c` to the server on `port` (up to 5,000 keys in one
/// call): the reply, [moved, left].
fn migrate_slot_async(c: &mut Connection, port: u16, slot: usize) -> Vec<i64> {
    let (port, slot) = (port.to_string(), slot.to_string());
    let args = [
        "SLOTSMGRTSLOT-ASYNC",
        "127.0.0.1",
        &port,
        "3000",
        "200",
        "1048576",
        &slot,
        "5000",
    ];
    q(c, &args)
}

#[test]
fn golden_sync_migration_replies() {
    let src = testkit::codis_server(&["--cores", "2"]);
    let dst = testkit::codis_server(&["--cores", "2"]);
    let (mut s, mut d) = (src.conn(), dst.conn());
    let dport = dst.port.to_string();
    let sport = src.port.to_string();
    let _: () = q(&mut s, &["SET", "alpha", "3"]);
    let _: () = q(&mut s, &["SET", "{tag}:a", "1"]);
    let _: () = q(&mut s, &["SET", "{tag}:b", "2", "EX", "1000"]);
    let _: () = q(&mut s, &["SET", "{tag}:l", "x"]);
    let n: i64 = q(
        &mut s,
        &["SLOTSMGRTONE", "127.0.0.1", &dport, "3000", "alpha"],
    );
    assert_eq!(n, 1);
    let v: String = q(&mut d, &["GET", "alpha"]);
    assert_eq!(v, "3");
    let e: i64 = q(&mut s, &["EXISTS", "alpha"]);
    assert_eq!(e, 0, "deleted at the source after the target acknowledged");
    let n: i64 = q(
        &mut s,
        &["SLOTSMGRTONE", "127.0.0.1", &dport, "3000", "nosuchkey"],
    );
    assert_eq!(n, 0);
    let n: i64 = q(
        &mut s,
        &["SLOTSMGRTTAGONE", "127.0.0.1", &dport, "3000", "{tag}:a"],
    );
    assert_eq!(n, 3, "the whole tag group moves");
    let ttl: i64 = q(&mut d, &["TTL", "{tag}:b"]);
    assert!(ttl > 900 && ttl <= 1000, "TTL kept: {ttl}");
    let info: Vec<Vec<i64>> = q(&mut d, &["SLOTSINFO"]);
    assert_eq!(info, vec![vec![362, 1], vec![899, 3]]);
    // Back the other way, one random key, then the rest with its tag group.
    let r: Vec<i64> = q(
        &mut d,
        &["SLOTSMGRTSLOT", "127.0.0.1", &sport, "3000", "899"],
    );
    assert_eq!(r, vec![1, 2]);
    let r: Vec<i64> = q(
        &mut d,
        &["SLOTSMGRTTAGSLOT", "127.0.0.1", &sport, "3000", "899"],
    );
    assert_eq!(r, vec![2, 0]);
    let r: Vec<i64> = q(
        &mut d,
        &["SLOTSMGRTTAGSLOT", "127.0.0.1", &sport, "3000", "899"],
    );
    assert_eq!(r, vec![0, 0], "an empty slot moves nothing");
    let n: i64 = q(&mut s, &["EXISTS", "{tag}:a", "{tag}:b", "{tag}:l"]);
    assert_eq!(n, 3);
    let err = q_err(
        &mut s,
        &["SLOTSMGRTSLOT", "127.0.0.1", &dport, "3000", "1024"],
    );
    assert!(err.contains("invalid slot number = 1024"), "{err}");
}

#[test]
fn async_moves_a_whole_slot_in_one_call() {
    let src = testkit::codis_server(&["--cores", "2"]);
    let dst = testkit::codis_server(&["--cores", "1"]);
    let (mut s, mut d) = (src.conn(), dst.conn());
    let keys = fill_slot(&mut s, "key", 77, 1000);
    // Strings on both sides of the size from which payloads are compressed (64 bytes).
    let (long, short) = ("x".repeat(100), "y".repeat(40));
    let _: () = q(&mut s, &["SET", &keys[0], &long]);
    let _: () = q(&mut s, &["SET", &keys[1], &short]);
    assert_eq!(migrate_slot_async(&mut s, dst.port, 77), vec![1000, 0]);
    let n: i64 = q(&mut d, &["DBSIZE"]);
    assert_eq!(n, 1000);
    let n: i64 = q(&mut s, &["DBSIZE"]);
    assert_eq!(n, 0);
    for (i, k) in keys.iter().enumerate().step_by(97).skip(1) {
        let v: i64 = q(&mut d, &["GET", k]);
        assert_eq!(v, i as i64);
    }
    let v: String = q(&mut d, &["GET", &keys[0]]);
    assert_eq!(v, long);
    let v: String = q(&mut d, &["GET", &keys[1]]);
    assert_eq!(v, short);
    // The small keys travelled as SLOTSRESTORE triples, 128 keys per command (a slice of the
    // target's work between which its other clients get in), not one command each.
    assert_eq!(restore_calls(&mut d, "slotsrestore"), 8);
    assert_eq!(restore_calls(&mut d, "slotsrestore-async"), 0);
    let _: () = q(&mut s, &["SLOTSMGRT-ASYNC-FENCE"]);
}

#[test]
fn exec_wrapper_codes() {
    let src = testkit::codis_server(&["--cores", "2"]);
    let mut s = src.conn();
    let _: () = q(&mut s, &["SET", "w", "v"]);
    let r: (i64, String) = q(&mut s, &["SLOTSMGRT-EXEC-WRAPPER", "w", "GET", "w"]);
    assert_eq!(r, (2, "v".to_string()));
    let r: (i64, i64) = q(&mut s, &["SLOTSMGRT-EXEC-WRAPPER", "w", "APPEND", "w", "x"]);
    assert_eq!(r, (2, 2));
    // Nested error replies: read the raw bytes.
    let raw = |cmd: &str| {
        use std::io::{Read, Write};
        let mut t = std::net::TcpStream::connect(("127.0.0.1", src.port)).unwrap();
        t.write_all(cmd.as_bytes()).unwrap();
        t.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut buf = vec![0u8; 512];
        let n = t.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    let r = raw("SLOTSMGRT-EXEC-WRAPPER gone GET gone\r\n");
    assert!(
        r.starts_with("*2\r\n:0\r\n-"),
        "a key not on this node answers code 0: {r:?}"
    );
    let r = raw("SLOTSMGRT-EXEC-WRAPPER w NOSUCHCMD w\r\n");
    assert!(r.starts_with("*2\r\n:-1\r\n-ERR unknown command"), "{r:?}");
}

#[test]
fn slotsrestore_validates_everything_first() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let mut c = srv.conn();
    let _: () = q(&mut c, &["SET", "a", "1"]);
    let payload: Vec<u8> = redis::cmd("DUMP").arg("a").query(&mut c).unwrap();
    // A good triple and a bad one: nothing is applied.
    let err = redis::cmd("SLOTSRESTORE")
        .arg("b")
        .arg(0)
        .arg(&payload[..])
        .arg("c")
        .arg(0)
        .arg("garbage-payload")
        .query::<V>(&mut c)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("dump payload version or checksum are wrong"),
        "{err}"
    );
    let n: i64 = q(&mut c, &["EXISTS", "b", "c"]);
    assert_eq!(n, 0);
    let err = redis::cmd("SLOTSRESTORE")
        .arg("b")
        .arg(-1)
        .arg(&payload[..])
        .query::<V>(&mut c)
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid ttl value, must be >= 0"), "{err}");
    // Always replaces, and keys on both cores are restored together.
    let _: () = redis::cmd("SLOTSRESTORE")
        .arg("a")
        .arg(0)
        .arg(&payload[..])
        .arg("b")
        .arg(5000)
        .arg(&payload[..])
        .query(&mut c)
        .unwrap();
    let v: Vec<i64> = q(&mut c, &["MGET", "a", "b"]);
    assert_eq!(v, vec![1, 1]);
    let ttl: i64 = q(&mut c, &["PTTL", "b"]);
    assert!(ttl > 0 && ttl <= 5000);
}

#[test]
fn migration_link_authenticates() {
    let src = testkit::codis_server(&["--cores", "1", "--requirepass", "pw"]);
    let dst = testkit::codis_server(&["--cores", "1", "--requirepass", "pw"]);
    let mut s = redis::Client::open(format!("redis://:pw@127.0.0.1:{}/", src.port))
        .unwrap()
        .get_connection()
        .unwrap();
    let mut d = redis::Client::open(format!("redis://:pw@127.0.0.1:{}/3", dst.port))
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = q(&mut s, &["SELECT", "3"]);
    let _: () = q(&mut s, &["SET", "k", "v"]);
    let n: i64 = q(
        &mut s,
        &[
            "SLOTSMGRTONE",
            "127.0.0.1",
            &dst.port.to_string(),
            "3000",
            "k",
        ],
    );
    assert_eq!(n, 1);
    let v: String = q(&mut d, &["GET", "k"]);
    assert_eq!(v, "v", "restored into the same database (3)");
}

fn restore_async_calls(c: &mut Connection) -> i64 {
    restore_calls(c, "slotsrestore-async")
}

/// The calls of command `name` in INFO commandstats.
fn restore_calls(c: &mut Connection, name: &str) -> i64 {
    let info: String = q(c, &["INFO", "commandstats"]);
    let prefix = format!("cmdstat_{name}:");
    info.lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.split("calls=").nth(1))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Big collections travel in `maxbulks`-element chunks with a temporary TTL fixed at the end: the
/// target ends with exactly the source's value and TTL, the source with nothing, and the target
/// served many small restore commands instead of one huge payload.
#[test]
fn big_values_move_in_bounded_chunks() {
    let src = testkit::codis_server(&["--cores", "2"]);
    let dst = testkit::codis_server(&["--cores", "2"]);
    let (mut s, mut d) = (src.conn(), dst.conn());
    let dport = dst.port.to_string();
    let n = 5000;
    let mut hset = vec!["HSET".to_string(), "{big}:hash".into()];
    let mut rpush = vec!["RPUSH".to_string(), "{big}:list".into()];
    let mut sadd = vec!["SADD".to_string(), "{big}:set".into()];
    let mut iadd = vec!["SADD".to_string(), "{big}:ints".into()];
    let mut zadd = vec!["ZADD".to_string(), "{big}:zset".into()];
    for i in 0..n {
        hset.extend([format!("f{i}"), format!("v{i}")]);
        rpush.push(format!("e{i}"));
        sadd.push(format!("m{i}"));
        iadd.push(format!("{}", i as i64 * 7 - 300));
        zadd.extend([format!("{}", i as f64 / 3.0 - 100.0), format!("z{i}")]);
    }
    for cmd in [&hset, &rpush, &sadd, &iadd, &zadd] {
        let args: Vec<&str> = cmd.iter().map(|s| s.as_str()).collect();
        let _: i64 = q(&mut s, &args);
    }
    let _: i64 = q(&mut s, &["PEXPIRE", "{big}:hash", "500000"]);
    let _: () = q(&mut s, &["SET", "{big}:small", "x"]);
    let slot = slot_of("{big}:hash").to_string();
    let before = restore_async_calls(&mut d);
    let r: Vec<i64> = q(
        &mut s,
        &[
            "SLOTSMGRTTAGSLOT-ASYNC",
            "127.0.0.1",
            &dport,
            "10000",
            "100",
            "65536",
            &slot,
            "10",
        ],
    );
    assert_eq!(r, vec![6, 0], "six keys moved, none left");
    let calls = restore_async_calls(&mut d) - before;
    assert!(
        calls >= 5 * (n as i64) / 100,
        "chunks of at most 100 elements: {calls} restore commands"
    );
    let keys: i64 = q(&mut s, &["DBSIZE"]);
    assert_eq!(keys, 0, "nothing left at the source");
    let h: std::collections::HashMap<String, String> = q(&mut d, &["HGETALL", "{big}:hash"]);
    assert_eq!(h.len(), n);
    assert_eq!(h["f4321"], "v4321");
    let l: Vec<String> = q(&mut d, &["LRANGE", "{big}:list", "0", "-1"]);
    assert_eq!(
        l,
        (0..n).map(|i| format!("e{i}")).collect::<Vec<_>>(),
        "order kept"
    );
    let c: i64 = q(&mut d, &["SCARD", "{big}:set"]);
    assert_eq!(c, n as i64);
    let m: i64 = q(&mut d, &["SISMEMBER", "{big}:ints", "-300"]);
    assert_eq!(m, 1);
    let c: i64 = q(&mut d, &["SCARD", "{big}:ints"]);
    assert_eq!(c, n as i64);
    let z: Vec<(String, f64)> = q(&mut d, &["ZRANGE", "{big}:zset", "0", "-1", "WITHSCORES"]);
    assert_eq!(z.len(), n);
    for (i, (m, sc)) in z.iter().enumerate() {
        assert_eq!(m, &format!("z{i}"));
        assert_eq!(*sc, i as f64 / 3.0 - 100.0, "scores travel bit-exact");
    }
    let ttl: i64 = q(&mut d, &["PTTL", "{big}:hash"]);
    assert!(ttl > 400_000 && ttl <= 500_000, "real TTL restored: {ttl}");
    for k in [
        "{big}:list",
        "{big}:set",
        "{big}:ints",
        "{big}:zset",
        "{big}:small",
    ] {
        let ttl: i64 = q(&mut d, &["PTTL", k]);
        assert_eq!(ttl, -1, "{k}: the temporary TTL was removed");
    }
}

/// The target side of the chunked form: appends, wrong types and bad scores are refused with an
/// error ACK, and a TTL of 0 persists the key.
#[test]
fn restore_async_chunk_forms() {
    let srv = testkit::codis_server(&["--cores", "1"]);
    let mut c = srv.conn();
    let ack = |c: &mut Connection, args: &[&str]| -> (String, String) {
        let v: Vec<String> = q(c, args);
        assert_eq!(v[0], "SLOTSRESTORE-ASYNC-ACK");
        (v[1].clone(), v[2].clone())
    };
    let a = ack(
        &mut c,
        &["SLOTSRESTORE-ASYNC", "list", "l", "0", "4", "a", "b"],
    );
    assert_eq!(a, ("0".into(), "2".into()));
    let a = ack(&mut c, &["SLOTSRESTORE-ASYNC", "list", "l", "0", "4", "c"]);
    assert_eq!(a, ("0".into(), "3".into()));
    let l: Vec<String> = q(&mut c, &["LRANGE", "l", "0", "-1"]);
    assert_eq!(l, ["a", "b", "c"]);
    let (code, msg) = ack(
        &mut c,
        &["SLOTSRESTORE-ASYNC", "hash", "l", "0", "0", "f", "v"],
    );
    assert_ne!(code, "0");
    assert!(msg.contains("wrong type"), "{msg}");
    let (code, msg) = ack(
        &mut c,
        &["SLOTSRESTORE-ASYNC", "zset", "z", "0", "0", "m", "1.5"],
    );
    assert_ne!(code, "0");
    assert!(msg.contains("bad raw bits"), "{msg}");
    let (code, _) = ack(&mut c, &["SLOTSRESTORE-ASYNC", "dict", "nokey", "0", "0"]);
    assert_ne!(code, "0", "an empty chunk for a missing key is an error");
    let a = ack(
        &mut c,
        &["SLOTSRESTORE-ASYNC", "dict", "s", "90000", "0", "x", "y"],
    );
    assert_eq!(a, ("0".into(), "2".into()));
    let ttl: i64 = q(&mut c, &["PTTL", "s"]);
    assert!(ttl > 0, "temporary TTL set: {ttl}");
    let a = ack(&mut c, &["SLOTSRESTORE-ASYNC", "expire", "s", "0"]);
    assert_eq!(a.0, "0");
    let ttl: i64 = q(&mut c, &["PTTL", "s"]);
    assert_eq!(ttl, -1, "expire 0 persists");
}

/// A replica of the migration target ends with the same big keys as its master: the chunked
/// restore forms replicate as plain RPUSH/HSET/SADD/ZADD with an absolute expiry.
#[test]
fn chunked_migration_reaches_the_targets_replica() {
    let src = testkit::codis_server(&["--cores", "2"]);
    let dst = testkit::codis_server(&["--cores", "2"]);
    let dport = dst.port.to_string();
    let rep = testkit::codis_server(&["--cores", "1", "--replicaof", "127.0.0.1", &dport]);
    let (mut s, mut d, mut r) = (src.conn(), dst.conn(), rep.conn());
    let start = std::time::Instant::now();
    loop {
        let info: String = q(&mut r, &["INFO", "replication"]);
        if info.contains("master_link_status:up") {
            break;
        }
        assert!(start.elapsed().as_secs() < 30, "replica link never came up");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for i in 0..1000 {
        let (f, v, sc) = (
            format!("f{i}"),
            format!("v{i}"),
            format!("{}", i as f64 * 0.25),
        );
        let _: i64 = q(&mut s, &["HSET", "{r}:h", &f, &v]);
        let _: i64 = q(&mut s, &["RPUSH", "{r}:l", &v]);
        let _: i64 = q(&mut s, &["SADD", "{r}:s", &f]);
        let _: i64 = q(&mut s, &["ZADD", "{r}:z", &sc, &f]);
    }
    let _: i64 = q(&mut s, &["EXPIRE", "{r}:z", "7000"]);
    let slot = slot_of("{r}:h").to_string();
    let moved: Vec<i64> = q(
        &mut s,
        &[
            "SLOTSMGRTTAGSLOT-ASYNC",
            "127.0.0.1",
            &dport,
            "10000",
            "64",
            "4096",
            &slot,
            "10",
        ],
    );
    assert_eq!(moved, vec![4, 0]);
    let acked: i64 = q(&mut d, &["WAIT", "1", "20000"]);
    assert_eq!(acked, 1);
    for (k, cmd) in [
        ("{r}:h", "HGETALL"),
        ("{r}:l", "LRANGE"),
        ("{r}:s", "SMEMBERS"),
        ("{r}:z", "ZRANGE"),
    ] {
        let args: Vec<&str> = if cmd == "LRANGE" || cmd == "ZRANGE" {
            vec![cmd, k, "0", "-1", "WITHSCORES"][..if cmd == "ZRANGE" { 5 } else { 4 }].to_vec()
        } else {
            vec![cmd, k]
        };
        let mut want: Vec<String> = q(&mut d, &args);
        let mut got: Vec<String> = q(&mut r, &args);
        if cmd == "HGETALL" || cmd == "SMEMBERS" {
            want.sort();
            got.sort();
        }
        assert!(!want.is_empty(), "{k} missing on the target");
        assert_eq!(got, want, "{k} differs on the replica");
    }
    let ttl: i64 = q(&mut r, &["PTTL", "{r}:z"]);
    assert!(
        ttl > 6_000_000 && ttl <= 7_000_000,
        "absolute expiry replicated: {ttl}"
    );
    let ttl: i64 = q(&mut r, &["PTTL", "{r}:h"]);
    assert_eq!(ttl, -1, "temporary TTL removed on the replica too");
}

/// Nice values of a process's threads (field 19 of /proc/PID/task/*/stat).
fn thread_nices(pid: u32) -> Vec<i64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
        .filter_map(|s| {
            // The command name in parentheses may hold spaces: count fields after it.
            let rest = &s[s.rfind(')')? + 2..];
            rest.split(' ').nth(16)?.parse().ok()
        })
        .collect()
}

/// Whether this process may raise a thread's nice value and lower it back, as the server must.
fn can_renice() -> bool {
    std::thread::spawn(|| {
        // SAFETY: the calling thread's own priority.
        unsafe {
            let tid = libc::gettid() as libc::id_t;
            let base = libc::getpriority(libc::PRIO_PROCESS, tid);
            base < 19
                && libc::setpriority(libc::PRIO_PROCESS, tid, base + 1) == 0
                && libc::setpriority(libc::PRIO_PROCESS, tid, base) == 0
        }
    })
    .join()
    .unwrap()
}

#[test]
fn migration_slices_run_at_a_raised_nice_value() {
    let src = testkit::codis_server(&["--cores", "1", "--migration-nice", "19"]);
    let dst = testkit::codis_server(&["--cores", "1"]);
    let (mut s, mut d) = (src.conn(), dst.conn());
    let v: Vec<String> = q(&mut s, &["CONFIG", "GET", "migration-nice"]);
    assert_eq!(v, ["migration-nice", "19"]);
    let v: Vec<String> = q(&mut d, &["CONFIG", "GET", "migration-nice"]);
    assert_eq!(v, ["migration-nice", "10"], "the default");
    let err = q_err(&mut d, &["CONFIG", "SET", "migration-nice", "20"]);
    assert!(err.contains("must be between 0 and 19"), "{err}");
    let _: () = q(&mut d, &["CONFIG", "SET", "migration-nice", "19"]);

    // One slot of 100,000 keys: a few hundred slices on each side.
    let n = 100_000;
    let slot = slot_of("{m}");
    let mut p = redis::pipe();
    for i in 0..n {
        p.cmd("SET").arg(format!("{{m}}:{i}")).arg(i).ignore();
    }
    let _: () = p.query(&mut s).unwrap();
    let pids = [src.child.id(), dst.child.id()];
    let base = *thread_nices(pids[0]).iter().max().unwrap();
    for p in pids {
        assert!(
            thread_nices(p).iter().all(|&x| x == base),
            "threads start at nice {base}"
        );
    }

    // Watch both servers' threads while the slot moves.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seen = [i64::MIN; 2];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (i, &p) in pids.iter().enumerate() {
                    seen[i] = seen[i].max(thread_nices(p).into_iter().max().unwrap_or(i64::MIN));
                }
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            seen
        })
    };
    let r: Vec<i64> = q(
        &mut s,
        &[
            "SLOTSMGRTSLOT-ASYNC",
            "127.0.0.1",
            &dst.port.to_string(),
            "30000",
            "200",
            "1048576",
            &slot.to_string(),
            &(2 * n).to_string(),
        ],
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    assert_eq!(r, vec![n, 0]);
    let moved: i64 = q(&mut d, &["DBSIZE"]);
    assert_eq!(moved, n);

    let stat = |c: &mut Connection, name: &str| -> i64 {
        let info: String = q(c, &["INFO", "stats"]);
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:"))?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in INFO stats"))
    };
    if can_renice() {
        assert_eq!(stat(&mut s, "migration_nice"), 19);
        // 100,000 keys in slices of at most 128 keys: collected, then deleted, at the source.
        assert!(stat(&mut s, "migration_low_priority_slices") >= 2 * 782);
        assert!(stat(&mut d, "migration_low_priority_slices") >= 782);
        assert_eq!(
            seen,
            [(base + 19).min(19); 2],
            "the source's and the target's migration work ran at nice {base} + 19"
        );
    }
    // Every thread is back where it started.
    for p in pids {
        let now = thread_nices(p);
        assert!(
            now.iter().all(|&x| x == base),
            "nice values after the migration: {now:?}"
        );
    }
}

/// A target on this host that listens on a Unix socket gets the migration stream through it
/// (CLIENT LIST on the target shows the source's link as a Unix client); every key arrives.
#[test]
fn migration_takes_the_targets_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("dst.sock");
    let sock = sock.to_str().unwrap();
    let src = testkit::codis_server(&["--cores", "2"]);
    let dst = testkit::codis_server(&["--cores", "1", "--unixsocket", sock]);
    let (mut s, mut d) = (src.conn(), dst.conn());
    let keys = fill_slot(&mut s, "u", 300, 500);
    assert_eq!(migrate_slot_async(&mut s, dst.port, 300), vec![500, 0]);
    let n: i64 = q(&mut d, &["DBSIZE"]);
    assert_eq!(n, 500);
    for (i, k) in keys.iter().enumerate().step_by(37) {
        let v: i64 = q(&mut d, &["GET", k]);
        assert_eq!(v, i as i64);
    }
    // The source keeps its link to the target for the next step: a Unix client that restored.
    let list: String = q(&mut d, &["CLIENT", "LIST"]);
    assert!(
        list.lines().any(|l| l.contains(&format!(" addr={sock}:0 "))
            && l.contains(" flags=U ")
            && l.contains(" cmd=slotsrestore ")),
        "{list}"
    );
    assert!(
        !list
            .lines()
            .any(|l| l.contains(" cmd=slotsrestore") && !l.contains(" flags=U ")),
        "a restore came over TCP: {list}"
    );
}
