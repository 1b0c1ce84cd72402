//! Small Redis-exact semantics checked differentially against a real redis-server 7: encoding
//! thresholds set with CONFIG SET, OBJECT ENCODING of strings modified in place, and INCRBYFLOAT /
//! HINCRBYFLOAT results (Redis computes in long double).

use redis::Value;

/// A reply as comparable text: values as they came, errors as their message.
fn run(c: &mut redis::Connection, args: &[&str]) -> String {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    match cmd.query::<Value>(c) {
        Ok(v) => format!("{v:?}"),
        Err(e) => format!("ERR {:?} {}", e.code(), e.detail().unwrap_or("")),
    }
}

struct Pair {
    ours: redis::Connection,
    theirs: redis::Connection,
    _srv: testkit::Proc,
    _redis: Box<dyn std::any::Any>,
}

impl Pair {
    fn start() -> Option<Pair> {
        let Some(redis) = testkit::redis_server(&[]) else {
            eprintln!("SKIPPED: redis-server is not installed; differential semantics not checked");
            return None;
        };
        let srv = testkit::codis_server(&["--cores", "2"]);
        Some(Pair {
            ours: srv.conn(),
            theirs: redis.0.conn(),
            _srv: srv,
            _redis: Box::new(redis),
        })
    }

    /// Run on both and assert identical replies; returns the reply.
    fn same(&mut self, args: &[&str]) -> String {
        let a = run(&mut self.ours, args);
        let b = run(&mut self.theirs, args);
        assert_eq!(a, b, "reply to {args:?}: codis-server vs redis-server");
        a
    }
}

#[test]
fn encoding_thresholds_follow_config_set() {
    let Some(mut p) = Pair::start() else { return };
    for (k, v) in [
        ("hash-max-listpack-entries", "4"),
        ("hash-max-ziplist-value", "8"),
        ("set-max-intset-entries", "5"),
        ("zset-max-ziplist-entries", "3"),
        ("zset-max-listpack-value", "6"),
        ("list-max-listpack-size", "4"),
    ] {
        p.same(&["CONFIG", "SET", k, v]);
    }
    for k in [
        "hash-max-listpack-entries",
        "hash-max-ziplist-entries",
        "hash-max-listpack-value",
        "hash-max-ziplist-value",
        "set-max-intset-entries",
        "zset-max-listpack-entries",
        "zset-max-ziplist-entries",
        "zset-max-listpack-value",
        "zset-max-ziplist-value",
        "list-max-listpack-size",
        "list-max-ziplist-size",
    ] {
        p.same(&["CONFIG", "GET", k]);
    }
    p.same(&["CONFIG", "SET", "hash-max-listpack-value", "1kb"]);
    p.same(&["CONFIG", "GET", "hash-max-ziplist-value"]);
    p.same(&["CONFIG", "SET", "hash-max-listpack-value", "8"]);
    p.same(&["CONFIG", "SET", "hash-max-listpack-entries", "-1"]);
    p.same(&["CONFIG", "SET", "set-max-intset-entries", "x"]);
    p.same(&["CONFIG", "SET", "list-max-listpack-size", "x"]);
    p.same(&["CONFIG", "SET", "zset-max-listpack-value", "nope"]);

    // Hashes: by count, then by value length.
    for i in 0..6 {
        p.same(&["HSET", "h1", &format!("f{i}"), "v"]);
        p.same(&["OBJECT", "ENCODING", "h1"]);
    }
    p.same(&["HSET", "h2", "f", "123456789"]);
    p.same(&["OBJECT", "ENCODING", "h2"]);
    p.same(&["HSET", "h3", "f", "12345678"]);
    p.same(&["OBJECT", "ENCODING", "h3"]);
    // Sets: integers past the count, then a non-integer.
    for i in 0..7 {
        p.same(&["SADD", "s1", &i.to_string()]);
        p.same(&["OBJECT", "ENCODING", "s1"]);
    }
    p.same(&["SADD", "s2", "1", "2"]);
    p.same(&["OBJECT", "ENCODING", "s2"]);
    p.same(&["SADD", "s2", "x"]);
    p.same(&["OBJECT", "ENCODING", "s2"]);
    // Sorted sets: by count and by member length.
    for i in 0..5 {
        p.same(&["ZADD", "z1", &i.to_string(), &format!("m{i}")]);
        p.same(&["OBJECT", "ENCODING", "z1"]);
    }
    p.same(&["ZADD", "z2", "1", "abcdefg"]);
    p.same(&["OBJECT", "ENCODING", "z2"]);
    p.same(&["ZADD", "z3", "1", "abcdef"]);
    p.same(&["OBJECT", "ENCODING", "z3"]);
    // Converted values stay converted when they shrink.
    p.same(&["HDEL", "h1", "f0", "f1", "f2", "f3"]);
    p.same(&["OBJECT", "ENCODING", "h1"]);
    p.same(&["ZREM", "z1", "m0", "m1", "m2"]);
    p.same(&["OBJECT", "ENCODING", "z1"]);
    // Lists report quicklist whatever their size.
    for i in 0..10 {
        p.same(&["RPUSH", "l1", &format!("element-{i}")]);
        p.same(&["OBJECT", "ENCODING", "l1"]);
    }
    // Raising the thresholds again lets new values stay compact.
    p.same(&["CONFIG", "SET", "hash-max-listpack-entries", "128"]);
    p.same(&["CONFIG", "SET", "zset-max-listpack-entries", "128"]);
    p.same(&["CONFIG", "SET", "set-max-intset-entries", "512"]);
    for i in 0..6 {
        p.same(&["HSET", "h4", &format!("f{i}"), "v"]);
        p.same(&["SADD", "s4", &i.to_string()]);
        p.same(&["ZADD", "z4", &i.to_string(), &format!("m{i}")]);
    }
    for k in ["h4", "s4", "z4", "h1", "z1", "s1"] {
        p.same(&["OBJECT", "ENCODING", k]);
    }
    // Zero: nothing stays compact.
    p.same(&["CONFIG", "SET", "hash-max-listpack-entries", "0"]);
    p.same(&["CONFIG", "SET", "set-max-intset-entries", "0"]);
    p.same(&["CONFIG", "SET", "zset-max-listpack-entries", "0"]);
    p.same(&["HSET", "h5", "a", "b"]);
    p.same(&["SADD", "s5", "1"]);
    p.same(&["ZADD", "z5", "1", "a"]);
    for k in ["h5", "s5", "z5"] {
        p.same(&["OBJECT", "ENCODING", k]);
    }
}

#[test]
fn encoding_thresholds_from_command_line_and_file() {
    let conf = std::env::temp_dir().join(format!("semantics-{}.conf", std::process::id()));
    std::fs::write(
        &conf,
        "zset-max-listpack-value 3\nset-max-intset-entries 100\n",
    )
    .unwrap();
    let conf_s = conf.to_string_lossy().to_string();
    let srv = testkit::codis_server(&[
        &conf_s,
        "--cores",
        "1",
        "--hash-max-ziplist-entries",
        "2",
        "--set-max-intset-entries",
        "1",
    ]);
    let _ = std::fs::remove_file(&conf);
    let mut c = srv.conn();
    assert!(run(&mut c, &["CONFIG", "GET", "hash-max-listpack-entries"]).contains("\"2\""));
    run(&mut c, &["HSET", "h", "a", "1", "b", "2"]);
    assert!(run(&mut c, &["OBJECT", "ENCODING", "h"]).contains("listpack"));
    run(&mut c, &["HSET", "h", "c", "3"]);
    assert!(run(&mut c, &["OBJECT", "ENCODING", "h"]).contains("hashtable"));
    run(&mut c, &["SADD", "s", "1", "2"]);
    assert!(run(&mut c, &["OBJECT", "ENCODING", "s"]).contains("hashtable"));
    assert!(run(&mut c, &["CONFIG", "GET", "zset-max-ziplist-value"]).contains("\"3\""));
    run(&mut c, &["ZADD", "z", "1", "abcd"]);
    assert!(run(&mut c, &["OBJECT", "ENCODING", "z"]).contains("skiplist"));
}

#[test]
fn string_encodings_match_redis() {
    let Some(mut p) = Pair::start() else { return };
    let long = "x".repeat(45);
    let script: Vec<Vec<&str>> = vec![
        vec!["SET", "a", "hello"],
        vec!["SET", "b", "12345"],
        vec!["SET", "c", &long],
        vec!["SET", "d", "-0"],
        vec!["SET", "e", "007"],
        vec!["SET", "f", "+1"],
        vec!["SET", "g", "12345678901234567890"],
        vec!["APPEND", "a", "!"],
        vec!["APPEND", "b", "6"],
        vec!["APPEND", "new1", "7"],
        vec!["APPEND", "new2", "abc"],
        vec!["SETRANGE", "sr1", "0", "ab"],
        vec!["SET", "sr2", "hello"],
        vec!["SETRANGE", "sr2", "1", "E"],
        vec!["SET", "sr3", "hello"],
        vec!["SETRANGE", "sr3", "1", ""],
        vec!["SETBIT", "sb1", "3", "1"],
        vec!["SET", "sb2", "abc"],
        vec!["SETBIT", "sb2", "0", "0"],
        vec!["SET", "i1", "10"],
        vec!["APPEND", "i1", "0"],
        vec!["INCR", "i1"],
        vec!["SET", "f1", "1.5"],
        vec!["INCRBYFLOAT", "f1", "1.5"],
        vec!["INCRBYFLOAT", "f2", "2"],
        vec!["INCRBYFLOAT", "f3", "5.0e3"],
        vec!["INCRBYFLOAT", "f4", "1e50"],
        vec!["SET", "gs", "x"],
        vec!["APPEND", "gs", "y"],
        vec!["GETSET", "gs", "z"],
        vec!["SET", "sa", "x"],
        vec!["APPEND", "sa", "y"],
        vec!["EXPIRE", "sa", "1000"],
        vec!["SET", "sb", "x"],
        vec!["APPEND", "sb", "y"],
        vec!["SET", "sb", "xy"],
        vec!["INCRBY", "n1", "5"],
        vec!["DECR", "n2"],
        vec!["MSET", "m1", "99", "m2", "text"],
        vec!["SETEX", "se", "100", "42"],
    ];
    for cmd in &script {
        p.same(cmd);
    }
    for k in [
        "a", "b", "c", "d", "e", "f", "g", "new1", "new2", "sr1", "sr2", "sr3", "sb1", "sb2", "i1",
        "f1", "f2", "f3", "gs", "sa", "sb", "n1", "n2", "m1", "m2", "se",
    ] {
        p.same(&["OBJECT", "ENCODING", k]);
        p.same(&["GET", k]);
    }
    p.same(&["TTL", "sa"]);
    // The mark travels with the value.
    for cmd in [
        vec!["SET", "r1", "ab"],
        vec!["APPEND", "r1", "c"],
        vec!["RENAME", "r1", "r2"],
        vec!["OBJECT", "ENCODING", "r2"],
        vec!["COPY", "r2", "r3"],
        vec!["OBJECT", "ENCODING", "r3"],
        vec!["SET", "{t}a", "ab"],
        vec!["SETRANGE", "{t}a", "0", "x"],
        vec!["RENAME", "{t}a", "{t}b"],
        vec!["OBJECT", "ENCODING", "{t}b"],
        vec!["SET", "ex1", "ab"],
        vec!["APPEND", "ex1", "c"],
        vec!["PEXPIREAT", "ex1", "9223372036854775807"],
        vec!["PEXPIRETIME", "ex1"],
        vec!["GET", "ex1"],
        vec!["SET", "ex2", "ab"],
        vec!["APPEND", "ex2", "c"],
        vec!["PEXPIREAT", "ex2", "99999999999999"],
        vec!["PEXPIRETIME", "ex2"],
        vec!["OBJECT", "ENCODING", "ex2"],
        vec!["PERSIST", "ex2"],
        vec!["OBJECT", "ENCODING", "ex2"],
        vec!["PFADD", "hll", "a", "b"],
        vec!["OBJECT", "ENCODING", "hll"],
    ] {
        p.same(&cmd);
    }
}

#[test]
fn entries_do_not_grow() {
    assert!(
        std::mem::size_of::<server::db::Entry>() <= 32,
        "{}",
        std::mem::size_of::<server::db::Entry>()
    );
}

/// A small deterministic generator (no dependency needed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// `min` to `min + spread - 1` random decimal digits.
    fn digits(&mut self, min: u64, spread: u64) -> String {
        let n = min + self.below(spread.max(1));
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }

    /// A float text of the kinds users send: plain decimals of many magnitudes, exponents,
    /// signs, long digit strings, now and then something Redis refuses.
    fn float_text(&mut self) -> String {
        let sign = match self.below(4) {
            0 => "-",
            1 if self.below(4) == 0 => "+",
            _ => "",
        };
        let body = match self.below(12) {
            0 => format!("{}", self.below(100)),
            1 => format!("{}.{}", self.below(1000), self.digits(1, 3)),
            2 => format!("0.{}", self.digits(1, 20)),
            3 => format!("{}.{}", self.digits(1, 12), self.digits(0, 8)),
            4 => format!("{}e{}", self.below(10), self.below(25)),
            5 => format!(
                "{}.{}e{}",
                self.below(10),
                self.digits(1, 4),
                self.below(12)
            ),
            6 => format!(
                "{}.{}E-{}",
                self.below(10),
                self.digits(1, 4),
                self.below(20)
            ),
            7 => self.digits(1, 40),
            8 => format!("{}.{}", self.digits(1, 25), self.digits(1, 25)),
            9 => format!(".{}", self.digits(1, 5)),
            10 => format!("{}.", self.below(1000)),
            _ => match self.below(10) {
                0 => "inf".into(),
                1 => "abc".into(),
                2 => " 1".into(),
                3 => "1 ".into(),
                4 => "1e5000".into(),
                5 => "1e-5000".into(),
                6 => "0x1p3".into(),
                7 => "nan".into(),
                8 => "1e308".into(),
                _ => "".into(),
            },
        };
        format!("{sign}{body}")
    }
}

#[test]
fn incrbyfloat_matches_redis_long_double() {
    let Some(mut p) = Pair::start() else { return };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..2500 {
        let a = rng.float_text();
        let b = rng.float_text();
        let key = format!("k{i}");
        p.same(&["SET", &key, &a]);
        p.same(&["INCRBYFLOAT", &key, &b]);
        p.same(&["GET", &key]);
        p.same(&["HSET", "h", &key, &a]);
        p.same(&["HINCRBYFLOAT", "h", &key, &b]);
        // A running sum that accumulates rounding.
        if !b.is_empty() {
            p.same(&["INCRBYFLOAT", "acc", &b]);
            p.same(&["HINCRBYFLOAT", "hacc", "f", &b]);
        }
    }
    for (a, b) in [
        ("0.1", "0.2"),
        ("10.5", "0.1"),
        ("1", "-1"),
        ("-0.1", "0.1"),
        ("3.0e3", "2.0e2"),
        ("1e4900", "1e4900"),
        ("1.7976931348623157e308", "1e308"),
        ("1e-4940", "0"),
    ] {
        p.same(&["SET", "x", a]);
        p.same(&["INCRBYFLOAT", "x", b]);
        p.same(&["OBJECT", "ENCODING", "x"]);
        p.same(&["DEL", "hx"]);
        p.same(&["HINCRBYFLOAT", "hx", "f", a]);
        p.same(&["HINCRBYFLOAT", "hx", "f", b]);
    }
    p.same(&["SET", "big", &"9".repeat(5200)]);
    p.same(&["INCRBYFLOAT", "big", "1"]);
    p.same(&["INCRBYFLOAT", "nokey", &"1".repeat(5200)]);
    p.same(&["LPUSH", "list", "1"]);
    p.same(&["INCRBYFLOAT", "list", "x"]);
}
