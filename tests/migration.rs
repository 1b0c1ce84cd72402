//! Slot migration end to end (issue 5, scaled for CI): two codis-server groups (`--cores 2`),
//! the filesystem coordinator, one codis-proxy (`--cpu 1`) and the codisctl dashboard.
//!
//! Slots 0–511 start on group 1 and 512–1023 on group 2; the data set is written through the
//! proxy (20,000 string keys with `{user:N}` tag groups, keys with TTLs, a hash, a list, a set
//! and a sorted set of 5,000 elements each, all four in migrating slots). Then `codisctl slot
//! migrate 448 511 2` (`E2E_MIGRATE_FROM=256` moves half of group 1's slots) runs while
//! client threads keep writing (INCR, SET with increasing values, MSET or MULTI/EXEC of tag
//! pairs) and
//! reading through the proxy, recording every acknowledged value and every error. Afterwards:
//! - every slot is idle and in its target group;
//! - every key read through the proxy has its last acknowledged value;
//! - SCAN of both servers: no key in two groups, every key on the group of its slot, nothing
//!   lost or invented;
//! - TTL keys still have a TTL, big collections are intact;
//! - every job a producer pushed onto four queues (two in migrating slots) was popped once and
//!   in order by its consumer blocked in BLPOP through the proxy, or is still queued;
//! - no client saw an error, and every whole-cluster SCAN through the proxy that ran meanwhile
//!   returned every key that existed throughout.
//!
//! `dashboard_killed_mid_migration` kills the dashboard with SIGKILL after a quarter of the
//! slots moved while one is mid-way (preparing/prepared/migrating/finished), restarts it, and checks the same guarantees once the restarted executor finished.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use e2e::{scan_all, wait_for, Cluster, Coordinator, Slot, Spec};

/// The last slot that moves (group 1 owns 0–511 before the migration).
const MOVE_TO: u32 = 511;
const TARGET: u32 = 2;

/// The first slot that moves: `E2E_MIGRATE_FROM` (256 moves half of group 1, 256 slots), by
/// default 448 (64 slots) to keep CI short — the executor moves one slot at a time between two
/// groups, each through every proxy's acknowledgement.
fn move_from() -> u32 {
    static FROM: OnceLock<u32> = OnceLock::new();
    *FROM.get_or_init(|| {
        std::env::var("E2E_MIGRATE_FROM")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&v| v <= MOVE_TO)
            .unwrap_or(448)
    })
}

fn migrating(slot: u16) -> bool {
    (move_from()..=MOVE_TO).contains(&(slot as u32))
}

const STRINGS: usize = 18_000;
const TAGS: usize = 1_000; // 2 keys each: 20,000 string keys in all
const TTL_KEYS: usize = 500;
const BIG: usize = 5_000;
const WRITERS: usize = 3;
const WRITER_KEYS: usize = 40;

/// The group a slot must be in once the migration is over.
fn final_group(slot: u16) -> u32 {
    if (slot as u32) < move_from() || slot >= 512 {
        slot_home(slot)
    } else {
        TARGET
    }
}

/// The group of a slot before the migration.
fn slot_home(slot: u16) -> u32 {
    if slot < 512 {
        1
    } else {
        2
    }
}

/// `prefix` + the first suffix whose slot is in the migrating range.
fn migrating_key(prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}:{i}"))
        .find(|k| migrating(resp::slot(k.as_bytes())))
        .unwrap_or_default()
}

struct BigKeys {
    hash: String,
    list: String,
    set: String,
    zset: String,
}

impl BigKeys {
    fn new() -> Self {
        BigKeys {
            hash: migrating_key("big:hash"),
            list: migrating_key("big:list"),
            set: migrating_key("big:set"),
            zset: migrating_key("big:zset"),
        }
    }
    fn all(&self) -> [&str; 4] {
        [&self.hash, &self.list, &self.set, &self.zset]
    }
}

/// Every string key written before the migration with its value.
fn fixed_strings() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = (0..STRINGS)
        .map(|i| (format!("s:{i}"), format!("v{i}")))
        .collect();
    for n in 0..TAGS {
        v.push((format!("{{user:{n}}}:a"), format!("a{n}")));
        v.push((format!("{{user:{n}}}:b"), format!("b{n}")));
    }
    v
}

fn ttl_keys() -> Vec<String> {
    (0..TTL_KEYS).map(|i| format!("ttl:{i}")).collect()
}

fn fill(c: &Cluster, big: &BigKeys) {
    let mut con = c.proxy_conn();
    let strings = fixed_strings();
    for chunk in strings.chunks(1000) {
        let mut p = redis::pipe();
        for (k, v) in chunk {
            p.cmd("SET").arg(k).arg(v).ignore();
        }
        p.query::<()>(&mut con)
            .expect("fill strings through the proxy");
    }
    let mut p = redis::pipe();
    for k in ttl_keys() {
        p.cmd("SET").arg(&k).arg("t").arg("EX").arg(3600).ignore();
    }
    p.query::<()>(&mut con).expect("fill TTL keys");
    let mut p = redis::pipe();
    for part in (0..BIG).collect::<Vec<_>>().chunks(500) {
        let mut h = redis::cmd("HSET");
        h.arg(&big.hash);
        let mut l = redis::cmd("RPUSH");
        l.arg(&big.list);
        let mut s = redis::cmd("SADD");
        s.arg(&big.set);
        let mut z = redis::cmd("ZADD");
        z.arg(&big.zset);
        for &i in part {
            h.arg(format!("f{i}")).arg(i);
            l.arg(format!("e{i}"));
            s.arg(format!("m{i}"));
            z.arg(i).arg(format!("z{i}"));
        }
        p.add_command(h).ignore();
        p.add_command(l).ignore();
        p.add_command(s).ignore();
        p.add_command(z).ignore();
    }
    p.query::<()>(&mut con).expect("fill big collections");
}

/// What the client threads saw.
#[derive(Default)]
struct Seen {
    /// Last acknowledged value per key (INCR result, SET value, MSET value).
    acked: HashMap<String, i64>,
    /// Per INCR key: attempts that failed (the increment may or may not have happened).
    uncertain: HashMap<String, i64>,
    errors: Vec<String>,
    ops: u64,
    /// Per job queue: the last number pushed (producer) and popped (its consumer).
    queues: HashMap<String, (i64, i64)>,
}

struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Seen>>,
    ops: Arc<AtomicU64>,
}

fn connect(url: &str) -> redis::Connection {
    let con = redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .expect("connect to the proxy");
    // A request held longer than this is a bug worth reporting, not a hang.
    let _ = con.set_read_timeout(Some(Duration::from_secs(30)));
    con
}

fn writer(url: String, t: usize, stop: Arc<AtomicBool>, ops: Arc<AtomicU64>) -> Seen {
    let mut con = connect(&url);
    let mut seen = Seen::default();
    let mut round: i64 = 0;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        for j in 0..WRITER_KEYS {
            let ck = format!("w:{t}:cnt:{j}");
            match redis::cmd("INCR").arg(&ck).query::<i64>(&mut con) {
                Ok(v) => {
                    let prev = seen.acked.insert(ck.clone(), v).unwrap_or(0);
                    let lost = *seen.uncertain.get(&ck).unwrap_or(&0);
                    if v <= prev || v > prev + 1 + lost {
                        seen.errors.push(format!("INCR {ck}: {v} after {prev}"));
                    }
                }
                Err(e) => {
                    *seen.uncertain.entry(ck.clone()).or_default() += 1;
                    seen.errors.push(format!("INCR {ck}: {e}"));
                }
            }
            let sk = format!("w:{t}:set:{j}");
            match redis::cmd("SET")
                .arg(&sk)
                .arg(round)
                .query::<String>(&mut con)
            {
                Ok(_) => {
                    seen.acked.insert(sk.clone(), round);
                }
                Err(e) => seen.errors.push(format!("SET {sk} {round}: {e}")),
            }
            if round % 4 == 0 {
                let (a, b) = (format!("{{w:{t}:{j}}}:a"), format!("{{w:{t}:{j}}}:b"));
                // Every other time as a MULTI … EXEC transaction, which the proxy holds while
                // the pair's slot migrates.
                let r = if round % 8 == 0 {
                    redis::pipe()
                        .atomic()
                        .set(&a, round)
                        .set(&b, round)
                        .query::<(String, String)>(&mut con)
                        .map(|(x, _)| x)
                } else {
                    redis::cmd("MSET")
                        .arg(&a)
                        .arg(round)
                        .arg(&b)
                        .arg(round)
                        .query::<String>(&mut con)
                };
                match r {
                    Ok(_) => {
                        seen.acked.insert(a, round);
                        seen.acked.insert(b, round);
                    }
                    Err(e) => seen.errors.push(format!("MSET {a} {b} {round}: {e}")),
                }
            }
            if j % 8 == 0 {
                // Read your own write back through the proxy.
                match redis::cmd("GET").arg(&sk).query::<Option<i64>>(&mut con) {
                    Ok(v) if v == seen.acked.get(&sk).copied() => {}
                    Ok(v) => seen.errors.push(format!(
                        "GET {sk}: {v:?}, last acknowledged {:?}",
                        seen.acked.get(&sk)
                    )),
                    Err(e) => seen.errors.push(format!("GET {sk}: {e}")),
                }
            }
            seen.ops += 4;
        }
        ops.fetch_add(WRITER_KEYS as u64 * 4, Ordering::Relaxed);
    }
    seen
}

/// Optimistic increments (WATCH, GET, MULTI, SET, EXEC, retried when EXEC is null) of keys
/// across the slots, migrating ones included: a key's value is always its last acknowledged
/// increment, so a transaction that ran on a server its slot had left would show.
fn watcher(url: String, stop: Arc<AtomicBool>, ops: Arc<AtomicU64>) -> Seen {
    let mut con = connect(&url);
    let mut seen = Seen::default();
    let keys: Vec<String> = (0..16).map(|j| format!("wt:{j}")).collect();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let k = &keys[i % keys.len()];
        i += 1;
        let attempt = (|| -> redis::RedisResult<Option<i64>> {
            redis::cmd("WATCH").arg(k).query::<()>(&mut con)?;
            let v: Option<i64> = redis::cmd("GET").arg(k).query(&mut con)?;
            let next = v.unwrap_or(0) + 1;
            let done: Option<(String,)> = redis::pipe().atomic().set(k, next).query(&mut con)?;
            Ok(done.map(|_| next))
        })();
        match attempt {
            Ok(Some(v)) => {
                let prev = seen.acked.insert(k.clone(), v).unwrap_or(0);
                if v != prev + 1 {
                    seen.errors
                        .push(format!("WATCH/EXEC {k}: {v} after {prev}"));
                }
            }
            Ok(None) => {} // a watched key changed (or moved): retried
            Err(e) => seen.errors.push(format!("WATCH/EXEC {k}: {e}")),
        }
        seen.ops += 1;
        ops.fetch_add(1, Ordering::Relaxed);
    }
    if seen.acked.is_empty() {
        seen.errors
            .push("no WATCH … EXEC transaction succeeded".into());
    }
    seen
}

/// Job queues, two in migrating slots and two not.
fn queue_keys() -> Vec<String> {
    let still = |p: &str| {
        (0..)
            .map(|i| format!("{p}:{i}"))
            .find(|k| !migrating(resp::slot(k.as_bytes())))
            .unwrap_or_default()
    };
    vec![
        migrating_key("queue:a"),
        migrating_key("queue:b"),
        still("queue:c"),
        still("queue:d"),
    ]
}

/// RPUSHes 1, 2, 3… to each queue in turn, about every 2 ms.
fn producer(url: String, stop: Arc<AtomicBool>, ops: Arc<AtomicU64>) -> Seen {
    let mut con = connect(&url);
    let mut seen = Seen::default();
    let queues = queue_keys();
    let mut pushed = vec![0i64; queues.len()];
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let j = i % queues.len();
        i += 1;
        let v = pushed[j] + 1;
        match redis::cmd("RPUSH")
            .arg(&queues[j])
            .arg(v)
            .query::<i64>(&mut con)
        {
            Ok(_) => pushed[j] = v,
            Err(e) => seen.errors.push(format!("RPUSH {}: {e}", queues[j])),
        }
        seen.ops += 1;
        ops.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(2));
    }
    for (q, n) in queues.into_iter().zip(pushed) {
        seen.queues.insert(q, (n, 0));
    }
    seen
}

/// BLPOPs one queue (1 s timeout) until stopped: blocked through the proxy most of the time,
/// also while its slot migrates; every number must come once, in order.
fn consumer(url: String, q: String, stop: Arc<AtomicBool>, ops: Arc<AtomicU64>) -> Seen {
    let mut con = connect(&url);
    let mut seen = Seen::default();
    let mut popped = 0i64;
    while !stop.load(Ordering::Relaxed) {
        match redis::cmd("BLPOP")
            .arg(&q)
            .arg(1)
            .query::<Option<(String, i64)>>(&mut con)
        {
            Ok(Some((_, v))) => {
                if v != popped + 1 {
                    seen.errors.push(format!("BLPOP {q}: {v} after {popped}"));
                }
                popped = v;
            }
            Ok(None) => {}
            Err(e) => seen.errors.push(format!("BLPOP {q}: {e}")),
        }
        seen.ops += 1;
        ops.fetch_add(1, Ordering::Relaxed);
    }
    seen.queues.insert(q, (0, popped));
    seen
}

fn reader(url: String, stop: Arc<AtomicBool>, ops: Arc<AtomicU64>, big: Vec<String>) -> Seen {
    let mut con = connect(&url);
    let mut seen = Seen::default();
    let strings = fixed_strings();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        // Walk the whole key space, 50 keys per MGET (split by slot in the proxy).
        let part: Vec<&(String, String)> = (0..50)
            .map(|n| &strings[(i + n * 397) % strings.len()])
            .collect();
        i = i.wrapping_add(1);
        let keys: Vec<&String> = part.iter().map(|(k, _)| k).collect();
        match redis::cmd("MGET")
            .arg(&keys)
            .query::<Vec<Option<String>>>(&mut con)
        {
            Ok(vals) => {
                for ((k, want), got) in part.iter().zip(vals) {
                    if got.as_deref() != Some(want.as_str()) {
                        seen.errors
                            .push(format!("MGET {k}: {got:?}, want {want:?}"));
                    }
                }
            }
            Err(e) => seen.errors.push(format!("MGET: {e}")),
        }
        let k = &big[i % big.len()];
        match redis::cmd("EXISTS").arg(k).query::<i64>(&mut con) {
            Ok(1) => {}
            Ok(n) => seen.errors.push(format!("EXISTS {k}: {n}")),
            Err(e) => seen.errors.push(format!("EXISTS {k}: {e}")),
        }
        seen.ops += 2;
        ops.fetch_add(2, Ordering::Relaxed);
    }
    seen
}

/// Whole-cluster SCANs through the proxy, pass after pass while the slots move: each complete
/// pass must return every key that exists throughout (the fixed strings), whichever side of a
/// migrating slot holds it when the pass gets there.
fn scanner(url: String, stop: Arc<AtomicBool>, ops: Arc<AtomicU64>) -> Seen {
    let mut con = connect(&url);
    let mut seen = Seen::default();
    let fixed: Vec<String> = fixed_strings().into_iter().map(|(k, _)| k).collect();
    let mut passes = 0;
    // At least one pass, and the one under way when the load stops is completed.
    while passes == 0 || !stop.load(Ordering::Relaxed) {
        let mut got: HashSet<String> = HashSet::new();
        let mut cursor = "0".to_string();
        loop {
            match redis::cmd("SCAN")
                .arg(&cursor)
                .arg("COUNT")
                .arg(200)
                .query::<(String, Vec<String>)>(&mut con)
            {
                Ok((next, keys)) => {
                    got.extend(keys);
                    cursor = next;
                }
                Err(e) => {
                    seen.errors.push(format!("SCAN {cursor}: {e}"));
                    return seen;
                }
            }
            seen.ops += 1;
            ops.fetch_add(1, Ordering::Relaxed);
            if cursor == "0" {
                break;
            }
        }
        let missed: Vec<&String> = fixed.iter().filter(|k| !got.contains(*k)).collect();
        if !missed.is_empty() {
            seen.errors.push(format!(
                "SCAN pass {passes} missed {} keys, e.g. {:?}",
                missed.len(),
                &missed[..missed.len().min(5)]
            ));
        }
        passes += 1;
    }
    eprintln!("scanner: {passes} complete SCAN passes through the proxy");
    seen
}

fn start_load(c: &Cluster, big: &BigKeys) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    // Odd writers, the reader and the scanner speak RESP3 (`HELLO 3`): their requests take the
    // proxy's RESP3 backend connections through the migration path too.
    let resp3 = format!("{}?protocol=resp3", c.proxy_url());
    for t in 0..WRITERS {
        let url = if t % 2 == 1 {
            resp3.clone()
        } else {
            c.proxy_url()
        };
        let (stop, ops) = (stop.clone(), ops.clone());
        threads.push(std::thread::spawn(move || writer(url, t, stop, ops)));
    }
    let (url, s, o) = (resp3.clone(), stop.clone(), ops.clone());
    let names: Vec<String> = big.all().iter().map(|s| s.to_string()).collect();
    threads.push(std::thread::spawn(move || reader(url, s, o, names)));
    let (url, s, o) = (resp3, stop.clone(), ops.clone());
    threads.push(std::thread::spawn(move || scanner(url, s, o)));
    let (url, s, o) = (c.proxy_url(), stop.clone(), ops.clone());
    threads.push(std::thread::spawn(move || watcher(url, s, o)));
    let (url, s, o) = (c.proxy_url(), stop.clone(), ops.clone());
    threads.push(std::thread::spawn(move || producer(url, s, o)));
    for q in queue_keys() {
        let (url, s, o) = (c.proxy_url(), stop.clone(), ops.clone());
        threads.push(std::thread::spawn(move || consumer(url, q, s, o)));
    }
    // Let the load run on the old layout for a moment.
    let start = Instant::now();
    while ops.load(Ordering::Relaxed) < 2_000 && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    Load { stop, threads, ops }
}

fn stop_load(load: Load) -> Seen {
    load.stop.store(true, Ordering::Relaxed);
    let mut all = Seen::default();
    for t in load.threads {
        let s = t.join().expect("client thread panicked");
        all.acked.extend(s.acked);
        all.uncertain.extend(s.uncertain);
        all.errors.extend(s.errors);
        all.ops += s.ops;
        for (q, (pushed, popped)) in s.queues {
            let e = all.queues.entry(q).or_default();
            e.0 = e.0.max(pushed);
            e.1 = e.1.max(popped);
        }
    }
    eprintln!(
        "client load: {} operations ({} counted live), {} errors",
        all.ops,
        load.ops.load(Ordering::Relaxed),
        all.errors.len()
    );
    all
}

/// Slots of the migrating range not yet in the target group with no action.
fn pending_slots(slots: &[Slot]) -> Vec<u32> {
    slots
        .iter()
        .filter(|s| !s.state.is_empty() || s.group_id != final_group(s.id as u16))
        .map(|s| s.id)
        .collect()
}

fn moved_count(slots: &[Slot]) -> usize {
    slots
        .iter()
        .filter(|s| migrating(s.id as u16) && s.group_id == TARGET && s.state.is_empty())
        .count()
}

/// Waits until every slot is idle in its final group.
fn wait_migrated(c: &Cluster, timeout: Duration) {
    let mut last = Vec::new();
    let done = wait_for(timeout, || {
        last = c.slots();
        pending_slots(&last).is_empty().then_some(())
    });
    if done.is_none() {
        let busy: Vec<&Slot> = last
            .iter()
            .filter(|s| !s.state.is_empty())
            .take(5)
            .collect();
        panic!(
            "migration not finished after {timeout:?}: {} slots left, busy {busy:?}\n{}",
            pending_slots(&last).len(),
            c.logs()
        );
    }
}

fn check_all(c: &Cluster, big: &BigKeys, seen: &Seen) {
    // 1. Topology: every slot idle in its final group.
    let slots = c.slots();
    assert_eq!(slots.len(), 1024);
    let left = pending_slots(&slots);
    assert!(left.is_empty(), "slots not migrated: {left:?}");

    // 2. Every key read through the proxy has its last acknowledged value.
    let mut con = c.proxy_conn();
    let strings = fixed_strings();
    let mut wrong = Vec::new();
    for chunk in strings.chunks(1000) {
        let mut p = redis::pipe();
        for (k, _) in chunk {
            p.cmd("GET").arg(k);
        }
        let got: Vec<Option<String>> = p.query(&mut con).expect("read back through the proxy");
        for ((k, want), got) in chunk.iter().zip(got) {
            if got.as_deref() != Some(want.as_str()) {
                wrong.push(format!("{k}: {got:?}, want {want:?}"));
            }
        }
    }
    let mut written: Vec<(&String, &i64)> = seen.acked.iter().collect();
    written.sort();
    for chunk in written.chunks(1000) {
        let mut p = redis::pipe();
        for (k, _) in chunk {
            p.cmd("GET").arg(*k);
        }
        let got: Vec<Option<i64>> = p.query(&mut con).expect("read client keys back");
        for ((k, &want), got) in chunk.iter().zip(got) {
            let extra = seen.uncertain.get(*k).copied().unwrap_or(0);
            let ok = got.is_some_and(|g| g >= want && g <= want + extra);
            if !ok {
                wrong.push(format!(
                    "{k}: {got:?}, last acknowledged {want} (+{extra} unanswered)"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} keys lost their last acknowledged value, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );

    // 3. TTL keys kept a TTL.
    let mut p = redis::pipe();
    for k in ttl_keys() {
        p.cmd("TTL").arg(k);
    }
    let ttls: Vec<i64> = p.query(&mut con).expect("TTL through the proxy");
    let bad: Vec<(usize, i64)> = ttls
        .iter()
        .copied()
        .enumerate()
        .filter(|&(_, t)| !(1..=3600).contains(&t))
        .collect();
    assert!(
        bad.is_empty(),
        "TTL keys without their TTL (index, TTL): {:?}",
        &bad[..bad.len().min(10)]
    );

    // 4. Big collections intact.
    let h: HashMap<String, i64> = redis::cmd("HGETALL")
        .arg(&big.hash)
        .query(&mut con)
        .expect("HGETALL");
    assert_eq!(h.len(), BIG, "hash {} fields", big.hash);
    assert!(
        (0..BIG).all(|i| h.get(&format!("f{i}")) == Some(&(i as i64))),
        "hash {} content",
        big.hash
    );
    let l: Vec<String> = redis::cmd("LRANGE")
        .arg(&big.list)
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .expect("LRANGE");
    assert!(
        l.len() == BIG && l.iter().enumerate().all(|(i, e)| *e == format!("e{i}")),
        "list {} ({} elements)",
        big.list,
        l.len()
    );
    let s: HashSet<String> = redis::cmd("SMEMBERS")
        .arg(&big.set)
        .query(&mut con)
        .expect("SMEMBERS");
    assert!(
        s.len() == BIG && (0..BIG).all(|i| s.contains(&format!("m{i}"))),
        "set {} ({} members)",
        big.set,
        s.len()
    );
    let z: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(&big.zset)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut con)
        .expect("ZRANGE");
    assert!(
        z.len() == BIG
            && z.iter()
                .enumerate()
                .all(|(i, (m, sc))| *m == format!("z{i}") && *sc == i as f64),
        "sorted set {} ({} members)",
        big.zset,
        z.len()
    );

    // 5. Job queues: every number pushed was popped once, in order, or is still queued; then
    // the queues go, so that the key census below sees only the data set.
    assert_eq!(seen.queues.len(), 4, "{:?}", seen.queues);
    for (q, &(pushed, popped)) in &seen.queues {
        let rest: Vec<i64> = redis::cmd("LRANGE")
            .arg(q)
            .arg(0)
            .arg(-1)
            .query(&mut con)
            .expect("LRANGE a queue");
        let want: Vec<i64> = (popped + 1..=pushed).collect();
        assert!(
            rest == want,
            "queue {q}: popped 1..={popped} of 1..={pushed}, left {} ({:?}…)",
            rest.len(),
            &rest[..rest.len().min(5)]
        );
        assert!(popped > 0, "nothing popped from {q}");
        redis::cmd("DEL")
            .arg(q)
            .query::<i64>(&mut con)
            .expect("DEL a queue");
    }

    // 6. Straight to the servers: no key twice, every key on its slot's group, nothing extra.
    let mut on: Vec<HashSet<Vec<u8>>> = Vec::new();
    for gid in 1..=2 {
        let keys = scan_all(&mut c.server_conn(gid)).expect("SCAN a server");
        let n = keys.len();
        let set: HashSet<Vec<u8>> = keys.into_iter().collect();
        assert_eq!(set.len(), n, "SCAN of group {gid} returned duplicates");
        on.push(set);
    }
    let both: Vec<String> = on[0]
        .intersection(&on[1])
        .take(10)
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert!(both.is_empty(), "keys on both groups: {both:?}");
    for (i, set) in on.iter().enumerate() {
        let gid = i as u32 + 1;
        let misplaced: Vec<String> = set
            .iter()
            .filter(|k| final_group(resp::slot(k)) != gid)
            .take(10)
            .map(|k| format!("{} (slot {})", String::from_utf8_lossy(k), resp::slot(k)))
            .collect();
        assert!(
            misplaced.is_empty(),
            "keys on group {gid} whose slot belongs elsewhere: {misplaced:?}"
        );
    }
    let mut expected: HashSet<Vec<u8>> = strings
        .iter()
        .map(|(k, _)| k.clone().into_bytes())
        .collect();
    expected.extend(ttl_keys().into_iter().map(String::into_bytes));
    expected.extend(big.all().iter().map(|k| k.as_bytes().to_vec()));
    expected.extend(seen.acked.keys().map(|k| k.clone().into_bytes()));
    expected.extend(seen.uncertain.keys().map(|k| k.clone().into_bytes()));
    let stored: HashSet<Vec<u8>> = on[0].union(&on[1]).cloned().collect();
    let missing: Vec<String> = expected
        .difference(&stored)
        .take(10)
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    let extra: Vec<String> = stored
        .difference(&expected)
        .take(10)
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "keys missing {missing:?}, unexpected {extra:?}"
    );
    let moved = on[1].iter().filter(|k| migrating(resp::slot(k))).count();
    eprintln!(
        "group 1: {} keys, group 2: {} keys ({moved} migrated)",
        on[0].len(),
        on[1].len()
    );
    let want = expected.iter().filter(|k| migrating(resp::slot(k))).count();
    assert_eq!(moved, want, "keys of migrated slots on group {TARGET}");
    assert!(moved > 0, "no key sits in a migrated slot");

    // 7. No client saw an error.
    assert!(
        seen.errors.is_empty(),
        "{} client errors during the migration, e.g. {:?}",
        seen.errors.len(),
        &seen.errors[..seen.errors.len().min(10)]
    );
}

fn cluster() -> (Cluster, BigKeys) {
    cluster_with("")
}

/// The test cluster with extra `config.ini` lines.
fn cluster_with(ini_extra: &str) -> (Cluster, BigKeys) {
    let mut spec = Spec::new(2, &[(0, 511, 1), (512, 1023, 2)]);
    spec.server_cores = 2;
    spec.ini_extra = ini_extra.to_string();
    let c = Cluster::start_spec(spec);
    let big = BigKeys::new();
    fill(&c, &big);
    (c, big)
}

/// Moves the test range with the dashboard while clients write and read through the proxy, then
/// checks every key.
fn migrate_under_load(mut c: Cluster, big: BigKeys, label: &str) {
    c.start_dashboard();
    let load = start_load(&c, &big);
    let started = Instant::now();
    let from = move_from().to_string();
    let (to, gid) = (MOVE_TO.to_string(), TARGET.to_string());
    // The CLI hands the range to the dashboard and follows it until every slot moved.
    let mut cli = c.spawn_ctl("slot-migrate", &["slot", "migrate", &from, &to, &gid]);
    wait_migrated(&c, Duration::from_secs(240));
    let status = cli.child.wait().expect("wait for codisctl slot migrate");
    assert!(
        status.success(),
        "codisctl slot migrate: {status}\n{}",
        c.logs()
    );
    eprintln!(
        "migrated {} slots{label} in {:?}",
        MOVE_TO - move_from() + 1,
        started.elapsed()
    );
    let seen = stop_load(load);
    check_all(&c, &big, &seen);
}

#[test]
fn migrate_slots_under_load() {
    let (c, big) = cluster();
    migrate_under_load(c, big, "");
}

/// The same migration under load with ZooKeeper (Debian's package) as the coordinator: the
/// proxy and the dashboard follow the slot states through real watches and ephemeral nodes.
#[test]
fn migrate_slots_under_load_on_zookeeper() {
    let zk = coord::testutil::ZkEnsemble::start()
        .unwrap_or_else(|e| panic!("ZooKeeper (Debian package zookeeper): {e}"));
    let mut spec = Spec::new(2, &[(0, 511, 1), (512, 1023, 2)]);
    spec.server_cores = 2;
    spec.coordinator = Coordinator::ZooKeeper(zk.connect_string());
    let c = Cluster::start_spec(spec);
    let big = BigKeys::new();
    fill(&c, &big);
    migrate_under_load(c, big, " on ZooKeeper");
}

#[test]
fn dashboard_killed_mid_migration() {
    // Small batches and a pause between steps, so the migration is still running when the
    // dashboard is killed: without the pause a fast machine moves the 64 slots between two
    // polls of `c.slots()` and the kill never lands mid-migration (the restarted dashboard
    // does not keep the pause and finishes at full speed).
    let (mut c, big) = cluster_with("migration_parallel_slots=4\n");
    c.start_dashboard();
    let load = start_load(&c, &big);
    let out = c.ctl(&[
        "slot",
        "migrate",
        &move_from().to_string(),
        &MOVE_TO.to_string(),
        &TARGET.to_string(),
        "--delay",
        "100",
        "--no-wait",
    ]);
    assert!(
        out.ok,
        "slot migrate --no-wait failed: {} {}\n{}",
        out.stdout,
        out.stderr,
        c.logs()
    );
    let total = (MOVE_TO - move_from() + 1) as usize;
    // Kill it while a slot is between `pending` and done (one of them is, nearly always).
    let moved = wait_for(Duration::from_secs(240), || {
        let slots = c.slots();
        let n = moved_count(&slots);
        let mid = slots
            .iter()
            .any(|s| !s.state.is_empty() && s.state != "pending");
        (n >= total / 4 && n < total && mid).then_some(n)
    });
    assert!(
        moved.is_some(),
        "a quarter of the slots did not move within 240 s\n{}",
        c.logs()
    );
    c.kill_dashboard();
    let at_kill = c.slots();
    let busy: Vec<&Slot> = at_kill
        .iter()
        .filter(|s| !s.state.is_empty() && s.state != "pending")
        .collect();
    eprintln!(
        "dashboard killed with {} of {total} slots moved, in progress: {busy:?}",
        moved_count(&at_kill)
    );
    assert!(
        moved_count(&at_kill) < total,
        "the migration ended before the kill"
    );
    // Clients keep going without a dashboard for a moment (a prepared slot holds its requests).
    std::thread::sleep(Duration::from_millis(500));
    let restarted = Instant::now();
    c.start_dashboard();
    wait_migrated(&c, Duration::from_secs(240));
    let finished = restarted.elapsed();
    let seen = stop_load(load);
    check_all(&c, &big, &seen);
    eprintln!(
        "RESULT dashboard-kill: killed with {} of {total} slots moved, the restarted dashboard finished in {:.1}s, client errors {}, keys checked {} (+ every key SCANned on both groups), lost 0",
        moved_count(&at_kill),
        finished.as_secs_f64(),
        seen.errors.len(),
        fixed_strings().len() + seen.acked.len()
    );
}
