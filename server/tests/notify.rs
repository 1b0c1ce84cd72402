//! Keyspace notifications against a real redis-server 7.0, and client-output-buffer-limit pubsub.
//!
//! Both servers run `notify-keyspace-events KEA`; a subscriber PSUBSCRIBEs `__key*__:*` on each and
//! the same script of commands (every type family, expiry lazy and active, RENAME/MOVE/COPY, and on
//! codis-server with `--cores 2` commands whose keys live on both cores) runs on both.
//!
//! Comparison is **per key** (database, key): for each key, the sequence of its keyspace and
//! keyevent messages must be identical. codis-server delivers each key's events from the core
//! owning the key, so events of keys owned by different cores may interleave differently than on
//! Redis (a single thread); the order of one key's events is what Redis guarantees to rely on.

use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};

/// (db, key) → its messages in arrival order ("space:<event>" / "event:<event>").
type PerKey = BTreeMap<(String, Vec<u8>), Vec<String>>;

/// A pattern subscriber collecting keyspace/keyevent messages in a thread.
struct Listener {
    handle: thread::JoinHandle<PerKey>,
    stop: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

fn listen(client: redis::Client) -> Listener {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let stop = Arc::new(AtomicUsize::new(0));
    let count = Arc::new(AtomicUsize::new(0));
    let (s2, c2) = (stop.clone(), count.clone());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = thread::spawn(move || {
        let mut con = client.get_connection().expect("subscriber connection");
        let mut ps = con.as_pubsub();
        ps.psubscribe("__key*__:*").expect("psubscribe");
        ps.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        ready_tx.send(()).ok();
        let mut per = PerKey::new();
        while s2.load(Ordering::SeqCst) == 0 {
            let Ok(msg) = ps.get_message() else { continue };
            let ch = msg.get_channel_name().to_string();
            let payload: Vec<u8> = msg.get_payload().unwrap_or_default();
            let (kind, rest) = ch.split_once("@").expect("channel");
            let (db, tail) = rest.split_once("__:").expect("channel");
            let (key, line) = if kind == "__keyspace" {
                (
                    tail.as_bytes().to_vec(),
                    format!("space:{}", String::from_utf8_lossy(&payload)),
                )
            } else {
                (payload, format!("event:{tail}"))
            };
            per.entry((db.to_string(), key)).or_default().push(line);
            c2.fetch_add(1, Ordering::SeqCst);
        }
        per
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("subscriber ready");
    Listener {
        handle,
        stop,
        count,
    }
}

impl Listener {
    fn count(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Wait until `n` messages arrived (or a generous deadline), plus a short grace period for
    /// unexpected extra ones, then stop.
    fn finish(self, n: usize) -> PerKey {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.count() < n && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        thread::sleep(Duration::from_millis(300));
        self.stop.store(1, std::sync::atomic::Ordering::SeqCst);
        self.handle.join().expect("listener thread")
    }
}

fn slot(k: &str) -> u16 {
    resp::slot(k.as_bytes())
}

/// A key named `<base>N` whose slot is on the other core than `of` (slot parity, `--cores 2`).
fn other_core(of: &str, base: &str) -> String {
    (0..)
        .map(|i| format!("{base}{i}"))
        .find(|k| slot(k) % 2 != slot(of) % 2)
        .expect("a key on the other core")
}

/// The script: one command per entry; `SLEEP n` waits n ms; `WAITEXPIRE key` waits (through
/// INFO, which touches no key) until the active expiry cycle removed the only volatile key.
fn script() -> Vec<Vec<String>> {
    let far = other_core("src", "dst");
    let l2 = other_core("list1", "list2-");
    let s2 = other_core("set1", "set2-");
    let m2 = other_core("m1", "m2-");
    let z2 = other_core("zs1", "zs2-");
    let sd2 = other_core("sl", "sortdst-");
    let text = format!(
        "SET s1 hello
         SET s1 again NX
         SETRANGE s1 1 xx
         SETRANGE s1 1 \"\"
         APPEND s1 yy
         INCRBY n1 5
         INCR n1
         DECR n1
         INCRBYFLOAT n1 1.5
         SET s2 v EX 100
         SETEX s3 100 v
         GETSET s3 w
         MSET m1 a {m2} b
         GETDEL m1
         GETDEL m1
         EXPIRE s2 1000
         PERSIST s2
         PERSIST s2
         EXPIRE s2 -1
         DEL s1 nokey n1
         SET src v
         RENAME src {far}
         RENAME {far} {far}
         SET other 1
         RENAMENX other {far}
         COPY {far} copied
         MOVE copied 1
         LPUSH list1 a b c
         RPUSH list1 d e
         LPUSHX nolist a
         LINSERT list1 BEFORE b x
         LINSERT list1 BEFORE zz x
         LSET list1 0 y
         LREM list1 0 x
         LREM list1 0 nothing
         LTRIM list1 0 3
         LPOP list1
         RPOP list1
         LMOVE list1 {l2} LEFT RIGHT
         RPOPLPUSH {l2} list1
         LPOP list1 10
         LPOP list1
         HSET h f v g w
         HSETNX h f v
         HSETNX h n v
         HINCRBY h c 2
         HINCRBYFLOAT h d 1.5
         HDEL h nothing
         HDEL h f g c d n
         SADD set1 a b c d
         SADD set1 a
         SREM set1 zz
         SREM set1 a
         SADD one x
         SPOP one
         SMOVE set1 {s2} b
         SMOVE set1 {s2} nothing
         SADD set3 b c
         SINTERSTORE idst set3 {{set3}}x
         SUNIONSTORE udst set3
         SINTERSTORE udst set3 nokey
         SPOP set3 5
         ZADD zs1 1 a 2 b 3 c 4 d
         ZADD zs1 5 e
         ZINCRBY zs1 2 a
         ZADD zs1 INCR 1 b
         ZREM zs1 nothing
         ZREM zs1 c
         ZREMRANGEBYSCORE zs1 100 200
         ZREMRANGEBYSCORE zs1 0 3
         ZPOPMIN zs1
         ZUNIONSTORE {z2} 1 zs1
         ZPOPMAX zs1 10
         ZRANGESTORE zdst {z2} 0 -1
         RPUSH sl 3 1 2
         SORT sl STORE sdst
         SORT sl DESC STORE sdst
         SORT sl
         SORT nolist STORE sdst
         SORT sl STORE {sd2}
         SORT sl STORE sl
         SORT nolist STORE {sd2}
         PFADD hll a b
         PFADD hll a
         SET lazy v PX 50
         SLEEP 300
         GET lazy
         SET active v PX 50
         WAITEXPIRE active
         SET gx v
         GETEX gx EX 100
         GETEX gx PERSIST
         RESTORE dumped 0 DUMPOF hll
         EVALWRITES {{ev}}a {{ev}}b
         BLPOPLATER blist
         RPUSH blist x y
         "
    );
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.split_whitespace()
                .map(|w| w.replace("\"\"", ""))
                .collect()
        })
        .collect()
}

fn run(client: &redis::Client, cmds: &[Vec<String>]) {
    let con = &mut client.get_connection().expect("connect");
    let mut waiters = Vec::new();
    for c in cmds {
        match c[0].as_str() {
            // A script's writes emit the same events as the commands themselves.
            "EVALWRITES" => {
                let _: redis::Value = redis::cmd("EVAL")
                    .arg(
                        "redis.call('set', KEYS[1], '1') redis.call('expire', KEYS[1], 100) \
                         redis.call('rpush', KEYS[2], 'a') return redis.call('del', KEYS[1])",
                    )
                    .arg(2)
                    .arg(&c[1])
                    .arg(&c[2])
                    .query(con)
                    .expect("eval");
            }
            // A client blocked in BLPOP, served by a later push: the pop's events come then.
            "BLPOPLATER" => {
                let mut other = client.get_connection().expect("connect");
                let key = c[1].clone();
                waiters.push(thread::spawn(move || {
                    let _: redis::Value = redis::cmd("BLPOP")
                        .arg(&key)
                        .arg(30)
                        .query(&mut other)
                        .expect("blpop");
                }));
                // Wait until it is blocked.
                let deadline = Instant::now() + Duration::from_secs(20);
                while Instant::now() < deadline {
                    let info: String = redis::cmd("INFO")
                        .arg("clients")
                        .query(con)
                        .unwrap_or_default();
                    if info.contains("blocked_clients:1") {
                        break;
                    }
                    thread::sleep(Duration::from_millis(20));
                }
            }
            "SLEEP" => thread::sleep(Duration::from_millis(c[1].parse().unwrap_or(100))),
            "WAITEXPIRE" => {
                let deadline = Instant::now() + Duration::from_secs(20);
                // INFO does not touch the key (no lazy expiry): only the active cycle removes it.
                while Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(100));
                    if expired_gone(con, &c[1]) {
                        break;
                    }
                }
            }
            "RESTORE" if c.len() == 5 && c[3] == "DUMPOF" => {
                let payload: Vec<u8> = redis::cmd("DUMP").arg(&c[4]).query(con).expect("dump");
                let _: redis::Value = redis::cmd("RESTORE")
                    .arg(&c[1])
                    .arg(&c[2])
                    .arg(payload)
                    .query(con)
                    .expect("restore");
            }
            _ => {
                let mut cmd = redis::cmd(&c[0]);
                for a in &c[1..] {
                    cmd.arg(a.as_str());
                }
                let _: redis::Value = cmd.query(con).unwrap_or(redis::Value::Nil);
            }
        }
    }
    for w in waiters {
        w.join().expect("blocked client");
    }
}

/// Whether the active expiry cycle removed `key`: INFO keyspace's `expires` count dropped to 0
/// (no other volatile key remains at that point of the script).
fn expired_gone(con: &mut redis::Connection, _key: &str) -> bool {
    let info: String = redis::cmd("INFO")
        .arg("keyspace")
        .query(con)
        .unwrap_or_default();
    !info
        .lines()
        .any(|l| l.starts_with("db0:") && !l.contains("expires=0,"))
}

#[test]
fn events_match_redis_per_key() {
    let Some((redis, _dir)) = testkit::redis_server(&["--notify-keyspace-events", "KEA"]) else {
        eprintln!("redis-server not installed: skipping");
        return;
    };
    let codis = testkit::codis_server(&["--cores", "2"]);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg("KEA")
        .query(&mut codis.conn())
        .expect("config set");
    let cmds = script();

    let l = listen(redis.client());
    run(&redis.client(), &cmds);
    // Redis delivers synchronously: once the script ran, everything is sent.
    thread::sleep(Duration::from_millis(300));
    let n = l.count();
    let want = l.finish(n);
    assert!(n > 100, "redis emitted {n} messages only");

    let l = listen(codis.client());
    run(&codis.client(), &cmds);
    let got = l.finish(n);

    let mut diffs = Vec::new();
    for k in want.keys().chain(got.keys()) {
        let (a, b) = (want.get(k), got.get(k));
        if a != b {
            diffs.push(format!(
                "db {} key {:?}:\n    redis: {:?}\n    codis: {:?}",
                k.0,
                String::from_utf8_lossy(&k.1),
                a,
                b
            ));
        }
    }
    diffs.dedup();
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// Messages arriving at a fresh subscriber while `cmds` run on `srv` (waits for `expect`).
fn collect(srv: &testkit::Proc, cmds: &[&str], expect: usize) -> PerKey {
    let l = listen(srv.client());
    let script: Vec<Vec<String>> = cmds
        .iter()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    run(&srv.client(), &script);
    l.finish(expect)
}

fn lines(p: &PerKey) -> Vec<String> {
    p.iter()
        .flat_map(|((db, k), v)| {
            v.iter()
                .map(move |e| format!("{db}/{}/{e}", String::from_utf8_lossy(k)))
        })
        .collect()
}

#[test]
fn flags_filter_and_config() {
    let codis = testkit::codis_server(&["--cores", "2"]);
    let mut c = codis.conn();
    let get = |c: &mut redis::Connection| -> Vec<String> {
        redis::cmd("CONFIG")
            .arg("GET")
            .arg("notify-keyspace-events")
            .query(c)
            .expect("config get")
    };
    assert_eq!(get(&mut c), vec!["notify-keyspace-events", ""]);
    // Redis's canonical letters.
    for (set, shown) in [
        ("KEA", "AKE"),
        ("Kx", "xK"),
        ("lE", "lE"),
        ("Eg$lshzxetd", "AE"),
    ] {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("notify-keyspace-events")
            .arg(set)
            .query(&mut c)
            .expect("config set");
        assert_eq!(get(&mut c)[1], shown, "after {set}");
    }
    let bad: redis::RedisResult<()> = redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg("KQ")
        .query(&mut c);
    assert!(bad.is_err());

    // "Kx": only keyspace expiry events.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg("Kx")
        .query(&mut c)
        .expect("config set");
    let got = collect(
        &codis,
        &[
            "SET a 1 PX 30",
            "LPUSH l x",
            "SADD s y",
            "SLEEP 200",
            "GET a",
        ],
        1,
    );
    assert_eq!(lines(&got), vec!["0/a/space:expired"]);

    // "El": only list keyevents.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg("El")
        .query(&mut c)
        .expect("config set");
    let got = collect(
        &codis,
        &[
            "SET b 1",
            "RPUSH l2 x y",
            "LPOP l2",
            "LPOP l2",
            "HSET h f v",
            "DEL l",
        ],
        3,
    );
    // LPOP emptying l2 also emits `del` (class g, filtered out here).
    assert_eq!(
        lines(&got),
        vec!["0/l2/event:rpush", "0/l2/event:lpop", "0/l2/event:lpop"]
    );

    // Off again: nothing.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg("")
        .query(&mut c)
        .expect("config set");
    let got = collect(&codis, &["SET c 1", "DEL c"], 0);
    assert!(got.is_empty(), "{got:?}");
}

#[test]
fn slow_subscriber_dropped_at_configured_pubsub_limit() {
    use std::io::{Read, Write};
    let codis = testkit::codis_server(&["--cores", "2"]);
    let mut c = codis.conn();
    let shown: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("client-output-buffer-limit")
        .query(&mut c)
        .expect("config get");
    assert_eq!(
        shown[1],
        "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"
    );
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("client-output-buffer-limit")
        .arg("pubsub 1mb 512kb 60")
        .query(&mut c)
        .expect("config set");
    let shown: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("client-output-buffer-limit")
        .query(&mut c)
        .expect("config get");
    assert_eq!(
        shown[1],
        "normal 0 0 0 slave 268435456 67108864 60 pubsub 1048576 524288 60"
    );

    // A subscriber that never reads after subscribing.
    let mut sub = std::net::TcpStream::connect(("127.0.0.1", codis.port)).expect("connect");
    sub.write_all(b"*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nfeed\r\n")
        .expect("subscribe");
    let mut ack = [0u8; 64];
    sub.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let n = sub.read(&mut ack).expect("subscribe ack");
    assert!(n > 0);
    let rss0 = rss_kb(codis.child.id());

    // Publish ~200 MB: far beyond the limit plus what the kernel's socket buffers hold.
    let payload = vec![b'x'; 64 * 1024];
    let mut dropped = false;
    for _ in 0..3200 {
        let n: i64 = redis::cmd("PUBLISH")
            .arg("feed")
            .arg(&payload[..])
            .query(&mut c)
            .expect("publish");
        if n == 0 {
            dropped = true;
            break;
        }
    }
    assert!(dropped, "the subscriber was never disconnected");
    let rss1 = rss_kb(codis.child.id());
    if let (Some(a), Some(b)) = (rss0, rss1) {
        assert!(
            b < a + 64 * 1024,
            "RSS grew from {a} kB to {b} kB with a 1 MB pubsub limit"
        );
    }
    // The server closed the subscriber's connection: reading drains what was sent, then EOF.
    sub.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match sub.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

fn rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
