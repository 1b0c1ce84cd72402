//! Differential tests against a real redis-server 7.0: its DUMP output must `restore()` to the
//! value we expect, our `dump()` (and our codis-server-3.2-style native payloads) must RESTORE
//! into it and read back equal, and payloads it rejects we reject too.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

use bytes::Bytes;
use rdb::{crc64, dump, intset, listpack, restore, ziplist, Value};
use redis::{Connection, RedisResult};

struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
}

/// Start redis-server on a free port, or `None` (with a message) if it is not installed.
fn start() -> Option<Server> {
    if !on_path("redis-server") {
        eprintln!("SKIPPED: redis-server is not on PATH; install the Debian package redis-server");
        return None;
    }
    // We validate payloads as deeply as Redis does with `sanitize-dump-payload yes` (duplicates,
    // blob integrity), so that is the mode we compare against.
    for _attempt in 0..5 {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args([
                "--sanitize-dump-payload",
                "yes",
                "--enable-debug-command",
                "yes",
                "--dir",
            ])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let mut server = Server {
            child,
            port,
            _dir: dir,
        };
        for _ in 0..400 {
            if let Ok(Some(_)) = server.child.try_wait() {
                break; // exited (port taken?): try another port
            }
            let ok = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok();
            if ok {
                return Some(server);
            }
            sleep(Duration::from_millis(25));
        }
    }
    panic!("redis-server did not start");
}

fn connect(s: &Server) -> Connection {
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/", s.port)).expect("client");
    client.get_connection().expect("connect")
}

fn b(s: impl AsRef<[u8]>) -> Bytes {
    Bytes::copy_from_slice(s.as_ref())
}

/// Sets, hashes and zsets in a canonical order so that values compare as multisets / maps.
fn norm(v: Value) -> Value {
    match v {
        Value::Set(mut m) => {
            m.sort();
            Value::Set(m)
        }
        Value::Hash(mut p) => {
            p.sort();
            Value::Hash(p)
        }
        Value::ZSet(mut p) => {
            p.sort_by(|a, b| a.0.cmp(&b.0));
            Value::ZSet(p)
        }
        other => other,
    }
}

fn assert_same(got: Value, want: &Value, what: &str) {
    let (g, w) = (norm(got), norm(want.clone()));
    if let (Value::ZSet(g), Value::ZSet(w)) = (&g, &w) {
        assert_eq!(g.len(), w.len(), "{what}: zset size");
        for ((gm, gs), (wm, ws)) in g.iter().zip(w) {
            assert_eq!(gm, wm, "{what}: member");
            assert_eq!(gs.to_bits(), ws.to_bits(), "{what}: score of {gm:?}");
        }
        return;
    }
    assert_eq!(g, w, "{what}");
}

/// Create `v` at `key` with ordinary commands.
fn create(con: &mut Connection, key: &str, v: &Value) {
    let _: () = redis::cmd("DEL").arg(key).query(con).expect("DEL");
    let c = match v {
        Value::String(s) => {
            let _: () = redis::cmd("SET")
                .arg(key)
                .arg(&s[..])
                .query(con)
                .expect("SET");
            return;
        }
        Value::List(items) => {
            let mut c = redis::cmd("RPUSH");
            c.arg(key);
            for i in items {
                c.arg(&i[..]);
            }
            c
        }
        Value::Set(items) => {
            let mut c = redis::cmd("SADD");
            c.arg(key);
            for i in items {
                c.arg(&i[..]);
            }
            c
        }
        Value::ZSet(pairs) => {
            let mut c = redis::cmd("ZADD");
            c.arg(key);
            for (m, s) in pairs {
                c.arg(resp_score(*s)).arg(&m[..]);
            }
            c
        }
        Value::Hash(pairs) => {
            let mut c = redis::cmd("HSET");
            c.arg(key);
            for (f, v) in pairs {
                c.arg(&f[..]).arg(&v[..]);
            }
            c
        }
    };
    let _: i64 = c.query(con).expect("create");
}

fn resp_score(s: f64) -> String {
    if s == f64::INFINITY {
        "+inf".into()
    } else if s == f64::NEG_INFINITY {
        "-inf".into()
    } else {
        format!("{s:?}")
    }
}

/// Read `key` back with GET / LRANGE / SMEMBERS / ZRANGE WITHSCORES / HGETALL.
fn read_back(con: &mut Connection, key: &str) -> Value {
    let ty: String = redis::cmd("TYPE").arg(key).query(con).expect("TYPE");
    let flat = |cmd: &mut redis::Cmd, con: &mut Connection| -> Vec<Vec<u8>> {
        cmd.query(con).expect("read")
    };
    match ty.as_str() {
        "string" => {
            let s: Vec<u8> = redis::cmd("GET").arg(key).query(con).expect("GET");
            Value::String(b(s))
        }
        "list" => Value::List(
            flat(redis::cmd("LRANGE").arg(key).arg(0).arg(-1), con)
                .into_iter()
                .map(b)
                .collect(),
        ),
        "set" => Value::Set(
            flat(redis::cmd("SMEMBERS").arg(key), con)
                .into_iter()
                .map(b)
                .collect(),
        ),
        "zset" => {
            let f = flat(
                redis::cmd("ZRANGE")
                    .arg(key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES"),
                con,
            );
            Value::ZSet(
                f.chunks(2)
                    .map(|c| {
                        let s = std::str::from_utf8(&c[1]).expect("utf8 score");
                        (b(&c[0]), s.parse::<f64>().expect("score"))
                    })
                    .collect(),
            )
        }
        "hash" => {
            let f = flat(redis::cmd("HGETALL").arg(key), con);
            Value::Hash(f.chunks(2).map(|c| (b(&c[0]), b(&c[1]))).collect())
        }
        other => panic!("unexpected type {other} for {key}"),
    }
}

fn redis_dump(con: &mut Connection, key: &str) -> Vec<u8> {
    redis::cmd("DUMP").arg(key).query(con).expect("DUMP")
}

fn redis_restore(con: &mut Connection, key: &str, payload: &[u8]) -> RedisResult<()> {
    redis::cmd("RESTORE")
        .arg(key)
        .arg(0)
        .arg(payload)
        .arg("REPLACE")
        .query(con)
}

/// Values of every type, small and big, with the Redis 7 DUMP type byte each one produces.
fn cases() -> Vec<(&'static str, Value, u8)> {
    let long = |i: usize| format!("{i}-{}", "lorem ipsum dolor ".repeat(12));
    let mut v = vec![
        ("str-hello", Value::String(b("hello")), 0),
        ("str-empty", Value::String(b("")), 0),
        ("str-int", Value::String(b("12345")), 0),
        ("str-neg", Value::String(b("-2")), 0),
        ("str-i64max", Value::String(b("9223372036854775807")), 0),
        ("str-lzf", Value::String(b("x".repeat(100))), 0),
        ("str-long", Value::String(b(long(7).repeat(50))), 0),
        ("str-binary", Value::String(b(b"\r\n\x00\xff bin")), 0),
        (
            "list-small",
            Value::List(vec![b("a"), b("1"), b("-7"), b("a"), b("300000"), b("")]),
            18,
        ),
    ];
    let big_list: Vec<Bytes> = (0..3000)
        .map(|i| {
            if i % 3 == 0 {
                b(long(i))
            } else {
                b((i as i64 * 7919 - 100000).to_string())
            }
        })
        .collect();
    v.push(("list-big", Value::List(big_list), 18));
    v.push((
        "set-intset",
        Value::Set(vec![b("5"), b("-1"), b("100000"), b("9223372036854775807")]),
        11,
    ));
    v.push((
        "set-strings",
        Value::Set(vec![b("a"), b("b"), b("1"), b(long(1))]),
        2,
    ));
    v.push((
        "set-big-ints",
        Value::Set((0..1000).map(|i| b((i * 31).to_string())).collect()),
        2,
    ));
    v.push((
        "set-big",
        Value::Set((0..700).map(|i| b(format!("m{i}"))).collect()),
        2,
    ));
    let small_z = vec![
        (b("a"), 1.0),
        (b("b"), -2.5),
        (b("c"), f64::INFINITY),
        (b("d"), f64::NEG_INFINITY),
        (b("e"), 0.1),
        (b("f"), 1e-300),
        (b("7"), 123456789.0),
    ];
    v.push(("zset-small", Value::ZSet(small_z), 17));
    let big_z = (0..500)
        .map(|i| (b(format!("m{i}")), i as f64 / 3.0 - 50.0))
        .collect();
    v.push(("zset-big", Value::ZSet(big_z), 5));
    v.push((
        "zset-longmember",
        Value::ZSet(vec![(b(long(3)), 2.0), (b("x"), f64::INFINITY)]),
        5,
    ));
    v.push((
        "hash-small",
        Value::Hash(vec![(b("f"), b("v")), (b("n"), b("42")), (b("e"), b(""))]),
        16,
    ));
    let big_h = (0..300)
        .map(|i| {
            (
                b(format!("f{i}")),
                b(if i % 2 == 0 { long(i) } else { i.to_string() }),
            )
        })
        .collect();
    v.push(("hash-big", Value::Hash(big_h), 4));
    v.push(("hash-longval", Value::Hash(vec![(b("f"), b(long(9)))]), 4));
    v
}

#[test]
fn redis_dump_restores_in_rust() {
    let Some(server) = start() else { return };
    let mut con = connect(&server);
    for (key, value, ty) in cases() {
        create(&mut con, key, &value);
        let payload = redis_dump(&mut con, key);
        assert_eq!(payload[0], ty, "{key}: Redis 7 DUMP type byte");
        assert_eq!(
            u16::from_le_bytes([payload[payload.len() - 10], payload[payload.len() - 9]]),
            10
        );
        let got = restore(&payload).unwrap_or_else(|e| panic!("{key}: {e:?}"));
        assert_same(got, &value, key);
    }
}

#[test]
fn redis_reference_bytes() {
    let Some(server) = start() else { return };
    let mut con = connect(&server);
    for (key, value, _) in cases()
        .into_iter()
        .filter(|c| matches!(c.1, Value::String(_)))
    {
        create(&mut con, key, &value);
        let theirs = redis_dump(&mut con, key);
        let ours = dump(&value);
        // Same body byte for byte (our strings are encoded exactly like Redis's); only the
        // version (7 against 10) and hence the CRC differ.
        assert_eq!(
            theirs[..theirs.len() - 10],
            ours[..ours.len() - 10],
            "{key}"
        );
    }
}

#[test]
fn rust_dump_restores_in_redis() {
    let Some(server) = start() else { return };
    let mut con = connect(&server);
    for (key, value, _) in cases() {
        let payload = dump(&value);
        redis_restore(&mut con, key, &payload).unwrap_or_else(|e| panic!("{key}: RESTORE: {e}"));
        assert_same(read_back(&mut con, key), &value, key);
        // And Redis's re-DUMP of what we gave it comes back to the same value.
        assert_same(
            restore(&redis_dump(&mut con, key)).expect("re-dump"),
            &value,
            key,
        );
    }
}

fn payload(ty: u8, body: &[u8], version: u16) -> Vec<u8> {
    let mut p = vec![ty];
    p.extend_from_slice(body);
    p.extend_from_slice(&version.to_le_bytes());
    let crc = crc64(&p);
    p.extend_from_slice(&crc.to_le_bytes());
    p
}

fn blob(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    rdb::string::write_string(&mut out, data, true);
    out
}

/// Payloads in codis-server 3.2's native encodings (ziplist, intset, quicklist) at RDB version 7,
/// and the older zipmap: Redis 7 must accept them and agree with our reader.
#[test]
fn codis_style_native_payloads() {
    let Some(server) = start() else { return };
    let mut con = connect(&server);
    let long = "q".repeat(400);
    let mut quick = vec![3u8];
    quick.extend(blob(&ziplist::encode(&["a", "12", &long])));
    quick.extend(blob(&ziplist::encode(&["-100000", "b"])));
    quick.extend(blob(&ziplist::encode(&["9223372036854775807"])));
    let mut quick2 = vec![2u8, 1];
    quick2.extend(blob(long.as_bytes()));
    quick2.push(2);
    quick2.extend(blob(&listpack::encode(&["x", "-5000", "70000"])));
    let cases: Vec<(&str, Vec<u8>, Value)> = vec![
        (
            "zl-list",
            payload(
                10,
                &blob(&ziplist::encode(&["a", "1", "-300", "70000", &long])),
                7,
            ),
            Value::List(vec![b("a"), b("1"), b("-300"), b("70000"), b(&long)]),
        ),
        (
            "zl-hash",
            payload(13, &blob(&ziplist::encode(&["f", "1", "g", &long])), 7),
            Value::Hash(vec![(b("f"), b("1")), (b("g"), b(&long))]),
        ),
        (
            "zl-zset",
            payload(
                12,
                &blob(&ziplist::encode(&["a", "1.5", "b", "-3", "c", "inf"])),
                7,
            ),
            Value::ZSet(vec![(b("a"), 1.5), (b("b"), -3.0), (b("c"), f64::INFINITY)]),
        ),
        (
            "intset",
            payload(11, &blob(&intset::encode(&[7, -70000, 3])), 7),
            Value::Set(vec![b("-70000"), b("3"), b("7")]),
        ),
        (
            "quicklist",
            payload(14, &quick, 7),
            Value::List(vec![
                b("a"),
                b("12"),
                b(&long),
                b("-100000"),
                b("b"),
                b("9223372036854775807"),
            ]),
        ),
        (
            "quicklist2",
            payload(18, &quick2, 10),
            Value::List(vec![b(&long), b("x"), b("-5000"), b("70000")]),
        ),
        (
            "zipmap",
            payload(9, &blob(b"\x02\x01k\x01\x00v\x02kk\x03\x02vvv..\xff"), 6),
            Value::Hash(vec![(b("k"), b("v")), (b("kk"), b("vvv"))]),
        ),
        (
            "zset2",
            payload(
                5,
                &[&[1u8, 1, b'm'][..], &(-0.25f64).to_le_bytes()].concat(),
                9,
            ),
            Value::ZSet(vec![(b("m"), -0.25)]),
        ),
        (
            "set-listpack",
            payload(16, &blob(&listpack::encode(&["f", "v"])), 10),
            Value::Hash(vec![(b("f"), b("v"))]),
        ),
    ];
    for (key, p, want) in cases {
        assert_same(
            restore(&p).unwrap_or_else(|e| panic!("{key}: {e:?}")),
            &want,
            key,
        );
        redis_restore(&mut con, key, &p).unwrap_or_else(|e| panic!("{key}: RESTORE: {e}"));
        assert_same(read_back(&mut con, key), &want, key);
    }
}

/// Payloads Redis 7.0 refuses, we refuse too, with the same message.
#[test]
fn rejections_agree() {
    let Some(server) = start() else { return };
    let mut con = connect(&server);
    let mut wrong_crc = dump(&Value::String(b("v")));
    let n = wrong_crc.len();
    wrong_crc[n - 3] ^= 0x40;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("short", vec![0, 1, b'v', 7, 0, 0, 0, 0, 0]),
        ("wrong crc", wrong_crc),
        ("version 11", payload(0, b"\x01v", 11)),
        ("truncated body", payload(0, b"\x20v", 7)),
        ("unknown type", payload(8, b"\x01v", 7)),
        ("empty list", payload(1, b"\x00", 7)),
        ("duplicate set member", payload(2, b"\x02\x01a\x01a", 7)),
        (
            "duplicate hash field",
            payload(4, b"\x02\x01a\x01x\x01a\x01y", 7),
        ),
        ("nan score", payload(3, b"\x01\x01a\xfd", 7)),
        (
            "odd hash listpack",
            payload(16, &blob(&listpack::encode(&["f"])), 10),
        ),
        (
            "bad ziplist",
            payload(
                10,
                &blob(b"\x0b\x00\x00\x00\x0a\x00\x00\x00\x01\x00\xfe"),
                7,
            ),
        ),
        (
            "unsorted intset",
            payload(11, &blob(&[2, 0, 0, 0, 2, 0, 0, 0, 5, 0, 1, 0]), 7),
        ),
    ];
    for (what, p) in cases {
        let ours = restore(&p).expect_err(what).to_string();
        let theirs = redis_restore(&mut con, "bad", &p).expect_err(what);
        let text = theirs.to_string();
        assert!(
            text.contains(&ours),
            "{what}: Redis said {text:?}, we said {ours:?}"
        );
    }
    // Redis parses the value from the whole payload, footer included, so a string that runs
    // into the version and CRC bytes is accepted; so do we, with the same bytes.
    let p = payload(0, b"\x05v", 7);
    let ours = restore(&p).expect("reaches into the footer");
    redis_restore(&mut con, "quirk", &p).expect("Redis accepts it");
    assert_eq!(read_back(&mut con, "quirk"), ours);
    assert_eq!(ours, Value::String(b(&p[2..7])));
}

/// Redis 7 stores list elements above `quicklist-packed-threshold` in PLAIN quicklist2 nodes.
#[test]
fn plain_quicklist_nodes() {
    let Some(server) = start() else { return };
    let mut con = connect(&server);
    let _: () = redis::cmd("DEBUG")
        .arg("QUICKLIST-PACKED-THRESHOLD")
        .arg(100)
        .query(&mut con)
        .expect("DEBUG");
    let big = "z".repeat(300);
    let value = Value::List(vec![
        b("a"),
        b(&big),
        b("b"),
        b("12"),
        b(big.replace('z', "y")),
    ]);
    create(&mut con, "plain", &value);
    let payload = redis_dump(&mut con, "plain");
    assert_eq!(
        payload[..3],
        [18, 4, 2],
        "quicklist2 of four nodes, the first packed"
    );
    assert_eq!(payload[14], 1, "the second node is plain");
    assert_same(restore(&payload).expect("restore"), &value, "plain");
}
