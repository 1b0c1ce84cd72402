//! Routing end to end: strings and keys commands, hash tags, multi-key split/merge across the two
//! groups, pipelines, SELECT, AUTH, blocked commands, local replies.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Cluster, Frames};
use coord::SlotMapping;
use redis::{Commands, Value};

fn cmd(c: &mut redis::Connection, args: &[&str]) -> redis::RedisResult<Value> {
    let mut k = redis::cmd(args[0]);
    for a in &args[1..] {
        k.arg(*a);
    }
    k.query(c)
}

fn err_text(r: redis::RedisResult<Value>) -> String {
    match r {
        Err(e) => e.to_string(),
        Ok(Value::ServerError(e)) => format!("{e:?}"),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

#[test]
fn strings_keys_and_placement() {
    let c = Cluster::start("");
    let mut p = c.conn();
    let keys: Vec<String> = (0..200).map(|i| format!("key:{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        let _: () = p.set(k, i).unwrap();
    }
    assert_eq!(p.incr::<_, _, i64>("key:0", 5).unwrap(), 5);
    assert_eq!(p.append::<_, _, i64>("key:1", "x").unwrap(), 2);
    assert_eq!(p.get::<_, String>("key:1").unwrap(), "1x");
    assert_eq!(p.strlen::<_, i64>("key:1").unwrap(), 2);
    let _: () = p.set_ex("ttl", "v", 100).unwrap();
    assert!(p.ttl::<_, i64>("ttl").unwrap() > 0);
    assert_eq!(
        cmd(&mut p, &["TYPE", "key:2"]).unwrap(),
        Value::SimpleString("string".into())
    );
    assert_eq!(p.get::<_, Option<String>>("missing").unwrap(), None);
    // Each key lives on exactly the group its slot maps to.
    let mut b1 = c.backend(1);
    let mut b2 = c.backend(2);
    for k in &keys {
        let (own, other) = if Cluster::group_of(k) == 1 {
            (&mut b1, &mut b2)
        } else {
            (&mut b2, &mut b1)
        };
        assert!(
            own.exists::<_, bool>(k).unwrap(),
            "{k} missing on its group"
        );
        assert!(
            !other.exists::<_, bool>(k).unwrap(),
            "{k} present on the wrong group"
        );
    }
    // Hash tags keep keys together.
    let _: () = p.set("{user1}.a", 1).unwrap();
    let _: () = p.set("{user1}.b", 2).unwrap();
    let g = Cluster::group_of("user1");
    let mut own = c.backend(g);
    assert!(
        own.exists::<_, bool>("{user1}.a").unwrap() && own.exists::<_, bool>("{user1}.b").unwrap()
    );
}

#[test]
fn multi_key_split_and_merge() {
    let c = Cluster::start("");
    let mut p = c.conn();
    let n = 100;
    let mut mset = redis::cmd("MSET");
    for i in 0..n {
        mset.arg(format!("m{i}")).arg(format!("v{i}"));
    }
    let _: () = mset.query(&mut p).unwrap();
    // MGET mixes both groups and missing keys; order is the request's.
    let mut mget = redis::cmd("MGET");
    for i in (0..n).rev() {
        mget.arg(format!("m{i}"));
    }
    mget.arg("nope");
    let vals: Vec<Option<String>> = mget.query(&mut p).unwrap();
    let mut want: Vec<Option<String>> = (0..n).rev().map(|i| Some(format!("v{i}"))).collect();
    want.push(None);
    assert_eq!(vals, want);
    // Each backend holds exactly its keys.
    let in1 = (0..n)
        .filter(|i| Cluster::group_of(&format!("m{i}")) == 1)
        .count() as i64;
    assert!(in1 > 0 && in1 < n as i64);
    assert_eq!(
        redis::cmd("DBSIZE")
            .query::<i64>(&mut c.backend(1))
            .unwrap(),
        in1
    );
    assert_eq!(
        redis::cmd("DBSIZE")
            .query::<i64>(&mut c.backend(2))
            .unwrap(),
        n as i64 - in1
    );
    let all: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    let mut ex = redis::cmd("EXISTS");
    ex.arg(&all).arg("nope").arg("m0");
    assert_eq!(ex.query::<i64>(&mut p).unwrap(), n as i64 + 1);
    let mut touch = redis::cmd("TOUCH");
    touch.arg(&all[..10]);
    assert_eq!(touch.query::<i64>(&mut p).unwrap(), 10);
    let mut del = redis::cmd("DEL");
    del.arg(&all[..50]).arg("nope");
    assert_eq!(del.query::<i64>(&mut p).unwrap(), 50);
    let mut unlink = redis::cmd("UNLINK");
    unlink.arg(&all[50..]);
    assert_eq!(unlink.query::<i64>(&mut p).unwrap(), 50);
    assert_eq!(
        redis::cmd("DBSIZE")
            .query::<i64>(&mut c.backend(1))
            .unwrap(),
        0
    );
    assert_eq!(
        redis::cmd("DBSIZE")
            .query::<i64>(&mut c.backend(2))
            .unwrap(),
        0
    );
    // Keys of one slot span no split; odd MSET is an arity error.
    assert!(err_text(cmd(&mut p, &["MSET", "a", "1", "b"])).contains("wrong number of arguments"));
    // Multi-key commands across slots are refused.
    let e = c.raw(b"SINTER a b\r\n");
    assert_eq!(
        e,
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    let e = c.raw(b"RPOPLPUSH a b\r\n");
    assert_eq!(
        e,
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    // SORT's STORE destination is one of its keys; within one tag it is forwarded.
    let e = c.raw(b"SORT a BY nosort STORE b\r\n");
    assert_eq!(
        e,
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    assert_eq!(c.raw(b"RPUSH {s}l 2 1\r\n"), b":2\r\n");
    assert_eq!(c.raw(b"SORT {s}l STORE {s}d\r\n"), b":2\r\n");
    // LCS takes two keys (one slot); BITFIELD and BITFIELD_RO route by their key.
    assert_eq!(
        c.raw(b"LCS a b\r\n"),
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    assert_eq!(c.raw(b"MSET {l}a ohmytext {l}b mynewtext\r\n"), b"+OK\r\n");
    assert_eq!(c.raw(b"LCS {l}a {l}b\r\n"), b"$6\r\nmytext\r\n");
    assert_eq!(c.raw(b"BITFIELD bf SET u8 0 200\r\n"), b"*1\r\n:0\r\n");
    assert_eq!(c.raw(b"BITFIELD_RO bf GET u8 0\r\n"), b"*1\r\n:200\r\n");
}

#[test]
fn pipeline_of_10000_in_order() {
    let c = Cluster::start("");
    let mut s = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = Vec::new();
    let mut want = Vec::new();
    for i in 0..5000 {
        let k = format!("p{i}");
        let v = format!("val{i}");
        req.extend_from_slice(
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n",
                k.len(),
                v.len()
            )
            .as_bytes(),
        );
        want.extend_from_slice(b"+OK\r\n");
    }
    for i in 0..5000 {
        let k = format!("p{i}");
        let v = format!("val{i}");
        req.extend_from_slice(format!("*2\r\n$3\r\nGET\r\n${}\r\n{k}\r\n", k.len()).as_bytes());
        want.extend_from_slice(format!("${}\r\n{v}\r\n", v.len()).as_bytes());
    }
    s.write_all(&req).unwrap();
    let mut got = vec![0u8; want.len()];
    s.read_exact(&mut got).unwrap();
    assert!(got == want, "replies out of order or wrong");
}

#[test]
fn auth_select_blocked_and_local_commands() {
    let c = Cluster::start("session_auth = \"sekret\"\n");
    let mut s = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut ask = |req: &str| -> String {
        s.write_all(req.as_bytes()).unwrap();
        let mut buf = vec![0u8; 65536];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(ask("GET a\r\n"), "-NOAUTH Authentication required.\r\n");
    assert_eq!(ask("AUTH nope\r\n"), "-ERR invalid password\r\n");
    assert_eq!(ask("AUTH sekret\r\n"), "+OK\r\n");
    assert_eq!(ask("PING\r\n"), "+PONG\r\n");
    assert_eq!(ask("PING hello\r\n"), "$5\r\nhello\r\n");
    assert_eq!(ask("ECHO hi\r\n"), "$2\r\nhi\r\n");
    assert_eq!(
        ask("SELECT 16\r\n"),
        "-ERR invalid DB index, only accept DB [0,16)\r\n"
    );
    assert_eq!(ask("SELECT 3\r\n"), "+OK\r\n");
    assert_eq!(ask("SET dbkey three\r\n"), "+OK\r\n");
    assert_eq!(
        ask("KEYS *\r\n"),
        "-ERR handle request, command 'KEYS' is not allowed\r\n"
    );
    assert_eq!(
        ask("WAIT 1 0\r\n"),
        "-ERR handle request, command 'WAIT' is not allowed\r\n"
    );
    // Blocking pops run (proxy/tests/blocking.rs), in the session's database.
    assert_eq!(ask("RPUSH dbq j\r\n"), ":1\r\n");
    assert_eq!(ask("BLPOP dbq 0\r\n"), "*2\r\n$3\r\ndbq\r\n$1\r\nj\r\n");
    assert_eq!(
        ask("MONITOR\r\n"),
        "-ERR handle request, command 'MONITOR' is not allowed\r\n"
    );
    assert_eq!(ask("GET dbkey\r\n"), "$5\r\nthree\r\n");
    assert_eq!(
        ask("GET\r\n"),
        "-ERR wrong number of arguments for 'get' command\r\n"
    );
    let info = ask("INFO server\r\n");
    assert!(
        info.contains("# Server") && !info.contains("# Clients"),
        "{info}"
    );
    let m = ask("SLOTSMAPPING 1000\r\n");
    assert!(m.contains(&c.server_addr(2)), "{m}");
    assert_eq!(ask("SELECT 0\r\n"), "+OK\r\n");
    assert_eq!(ask("GET dbkey\r\n"), "$-1\r\n");
    assert_eq!(ask("QUIT\r\n"), "+OK\r\n");
    // The key went to DB 3 of its group.
    let g = Cluster::group_of("dbkey");
    let mut b = c.backend(g);
    let _: () = redis::cmd("SELECT").arg(3).query(&mut b).unwrap();
    assert_eq!(
        redis::cmd("GET")
            .arg("dbkey")
            .query::<String>(&mut b)
            .unwrap(),
        "three"
    );
}

/// A raw connection to the proxy; `ask` sends one request and reads one reply chunk.
struct Raw(TcpStream);

impl Raw {
    fn open(port: u16) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Raw(s)
    }

    fn ask(&mut self, req: &str) -> String {
        self.0.write_all(req.as_bytes()).unwrap();
        let mut buf = vec![0u8; 65536];
        let n = self.0.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Whether the proxy closed the connection (EOF or reset on the next read).
    fn closed(&mut self) -> bool {
        let mut b = [0u8; 64];
        matches!(self.0.read(&mut b), Ok(0) | Err(_))
    }
}

/// `HELLO 3` through the proxy: replies come in RESP3 (maps, sets, doubles, nulls), exactly as
/// a redis-server answers the same commands, while a RESP2 client of the same proxy keeps
/// getting RESP2 for the same keys; `HELLO 2` switches back.
#[test]
fn resp3_sessions_get_resp3_replies() {
    let c = Cluster::start("");
    // Keys on both groups, so MGET and DEL split.
    let k1 = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| Cluster::group_of(k) == 1)
        .unwrap();
    let k2 = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| Cluster::group_of(k) == 2)
        .unwrap();
    let script: Vec<Vec<&str>> = vec![
        vec!["SET", &k1, "v1"],
        vec!["GET", &k1],
        vec!["GET", "missing"],
        vec!["MGET", &k1, "missing", &k2],
        vec!["SET", &k2, "v2"],
        vec!["MGET", &k2, &k1, "missing"],
        vec!["HSET", "h", "f", "1", "g", "2"],
        vec!["HGETALL", "h"],
        vec!["HRANDFIELD", "h", "-1"],
        vec!["HGET", "h", "nope"],
        vec!["SADD", "s", "a"],
        vec!["SMEMBERS", "s"],
        vec!["ZADD", "z", "1.5", "m", "2", "n"],
        vec!["ZSCORE", "z", "m"],
        vec!["ZRANGE", "z", "0", "-1", "WITHSCORES"],
        vec!["ZINCRBY", "z", "1", "m"],
        vec!["ZPOPMIN", "z"],
        vec!["INCRBYFLOAT", "f", "1.5"],
        vec!["LPOS", "nolist", "x"],
        vec!["EXISTS", &k1, &k2, "missing"],
        vec!["DEL", &k1, &k2],
        vec!["EVAL", "return redis.call('hgetall', KEYS[1])", "1", "h"],
        vec![
            "EVAL",
            "redis.setresp(3); return redis.call('hgetall', KEYS[1])",
            "1",
            "h",
        ],
        vec!["EVAL", "return {double=3.5}", "1", "h"],
        vec!["EVAL", "return nil", "1", "h"],
        vec!["MULTI"],
        vec!["HGETALL", "h"],
        vec!["HINCRBYFLOAT", "h", "f", "0.5"],
        vec!["EXEC"],
        vec!["CONFIG", "GET", "databases"],
        vec!["PING"],
        vec!["HGETALL", "nohash"],
    ];
    let mut p = Frames::open(c.port);
    let hello = p.ask(&["HELLO", "3"]);
    assert!(
        hello.starts_with("%7\r\n$6\r\nserver\r\n$11\r\ncodis-proxy\r\n")
            && hello.contains("$5\r\nproto\r\n:3\r\n"),
        "{hello}"
    );
    let replies: Vec<String> = script.iter().map(|a| p.ask(a)).collect();
    // Shapes that only RESP3 has, whether or not redis-server is here to compare with.
    assert_eq!(replies[2], "_\r\n");
    assert_eq!(replies[5], "*3\r\n$2\r\nv2\r\n$2\r\nv1\r\n_\r\n");
    assert_eq!(
        replies[7],
        "%2\r\n$1\r\nf\r\n$1\r\n1\r\n$1\r\ng\r\n$1\r\n2\r\n"
    );
    assert_eq!(replies[11], "~1\r\n$1\r\na\r\n");
    assert_eq!(replies[13], ",1.5\r\n");
    if let Some((r, _dir)) = testkit::redis_server(&[]) {
        let mut d = Frames::open(r.port);
        d.ask(&["HELLO", "3"]);
        for (a, got) in script.iter().zip(&replies) {
            let want = d.ask(a);
            if a[0] == "HRANDFIELD" {
                // Random order: the same pairs.
                assert_eq!(got.len(), want.len(), "{a:?}");
                continue;
            }
            assert_eq!(got, &want, "{a:?} through the proxy vs redis-server");
        }
    }
    // A RESP2 client of the same proxy, at the same time: its own protocol.
    let mut p2 = Frames::open(c.port);
    assert_eq!(
        p2.ask(&["HGETALL", "h"]),
        "*4\r\n$1\r\nf\r\n$3\r\n1.5\r\n$1\r\ng\r\n$1\r\n2\r\n"
    );
    assert_eq!(p2.ask(&["ZSCORE", "z", "m"]), "$3\r\n2.5\r\n");
    assert_eq!(p.ask(&["ZSCORE", "z", "m"]), ",2.5\r\n");
    assert_eq!(p2.ask(&["GET", "missing"]), "$-1\r\n");
    // What the proxy answers itself follows the session's protocol too.
    assert_eq!(p.ask(&["CLIENT", "GETNAME"]), "_\r\n");
    let info = p.ask(&["CLIENT", "INFO"]);
    assert!(
        info.starts_with('=') && info.contains("txt:id=") && info.contains(" resp=3 "),
        "{info}"
    );
    let info = p2.ask(&["CLIENT", "INFO"]);
    assert!(info.starts_with('$') && info.contains(" resp=2 "), "{info}");
    let info = p.ask(&["INFO", "server"]);
    assert!(
        info.starts_with('=') && info.contains("txt:# Server\r\n"),
        "{info}"
    );
    assert_eq!(p.ask(&["SELECT", "3"]), "+OK\r\n");
    assert_eq!(p.ask(&["HSET", "h3", "a", "b"]), ":1\r\n");
    assert_eq!(p.ask(&["HGETALL", "h3"]), "%1\r\n$1\r\na\r\n$1\r\nb\r\n");
    assert_eq!(p2.ask(&["HGETALL", "h3"]), "*0\r\n");
    // Replies the proxy merges from several groups: the same in RESP3.
    let scan = p.ask(&["SCAN", "0", "COUNT", "1000"]);
    assert!(scan.starts_with("*2\r\n$"), "{scan}");
    assert_eq!(p.ask(&["DBSIZE"]), ":1\r\n");
    assert_eq!(p.ask(&["SCRIPT", "EXISTS", "0000"]), "*1\r\n:0\r\n");
    // HELLO 2: back to RESP2 on the same connection.
    let hello = p.ask(&["HELLO", "2"]);
    assert!(hello.starts_with("*14\r\n"), "{hello}");
    assert_eq!(p.ask(&["HGETALL", "h3"]), "*2\r\n$1\r\na\r\n$1\r\nb\r\n");
    assert_eq!(p.ask(&["CLIENT", "GETNAME"]), "$-1\r\n");
}

#[test]
fn client_hello_and_config_get_are_answered() {
    // session_break_on_failure: a refused command closes the connection, so CLIENT SETNAME and
    // SETINFO (sent by client libraries on connect) must not be refused.
    let c = Cluster::start("session_auth = \"sekret\"\nsession_break_on_failure = true\n");
    let mut a = Raw::open(c.port);
    assert!(a
        .ask("HELLO 2\r\n")
        .starts_with("-NOAUTH HELLO must be called"));
    assert_eq!(
        a.ask("HELLO 2 AUTH default nope\r\n"),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(a.ask("GET k\r\n"), "-NOAUTH Authentication required.\r\n");
    assert_eq!(
        a.ask("HELLO 4 AUTH default sekret\r\n"),
        "-NOPROTO unsupported protocol version\r\n"
    );
    assert_eq!(a.ask("GET k\r\n"), "-NOAUTH Authentication required.\r\n");
    let hello = a.ask("HELLO 2 AUTH default sekret SETNAME app-1\r\n");
    assert!(
        hello.starts_with("*14\r\n$6\r\nserver\r\n$11\r\ncodis-proxy\r\n"),
        "{hello}"
    );
    let id = a.ask("CLIENT ID\r\n");
    let id: u64 = id.trim_start_matches(':').trim().parse().unwrap();
    assert!(
        hello.contains(&format!("$2\r\nid\r\n:{id}\r\n")),
        "{hello} / {id}"
    );
    // HELLO's AUTH authenticated the session.
    assert_eq!(a.ask("GET k\r\n"), "$-1\r\n");
    assert_eq!(a.ask("CLIENT GETNAME\r\n"), "$5\r\napp-1\r\n");
    assert_eq!(a.ask("CLIENT SETINFO LIB-NAME redis-py\r\n"), "+OK\r\n");
    assert_eq!(a.ask("CLIENT SETINFO LIB-VER 5.0.1\r\n"), "+OK\r\n");
    assert_eq!(
        a.ask("*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$3\r\na b\r\n"),
        "-ERR Client names cannot contain spaces, newlines or special characters.\r\n"
    );
    assert_eq!(a.ask("CLIENT SETNAME app-2\r\n"), "+OK\r\n");
    assert_eq!(a.ask("SELECT 5\r\n"), "+OK\r\n");
    let info = a.ask("CLIENT INFO\r\n");
    for want in [
        format!("id={id} "),
        " name=app-2 ".into(),
        " db=5 ".into(),
        " cmd=client ".into(),
        " lib-name=redis-py lib-ver=5.0.1".into(),
    ] {
        assert!(info.contains(&want), "{want} not in {info}");
    }

    // CONFIG GET reads a backend master's setting; CONFIG SET is refused.
    let mut b = Raw::open(c.port);
    assert_eq!(b.ask("AUTH sekret\r\n"), "+OK\r\n");
    assert_eq!(
        b.ask("CONFIG GET databases\r\n"),
        "*2\r\n$9\r\ndatabases\r\n$2\r\n16\r\n"
    );
    // CLIENT LIST shows every client of the proxy, whichever core serves it.
    let list = b.ask("CLIENT LIST\r\n");
    assert!(
        list.contains(&format!("id={id} ")) && list.contains(" name=app-2 "),
        "{list}"
    );
    assert_eq!(list.matches("\nid=").count(), 2, "{list}");
    // CLIENT KILL ID closes the other client's connection.
    assert_eq!(b.ask(&format!("CLIENT KILL ID {id}\r\n")), ":1\r\n");
    assert!(a.closed(), "the killed client's connection is still open");
    let list = b.ask("CLIENT LIST\r\n");
    assert!(!list.contains(&format!("id={id} ")), "{list}");
    assert_eq!(
        b.ask("CLIENT KILL 127.0.0.1:1\r\n"),
        "-ERR No such client\r\n"
    );
    // What would act on the shared backend pipelines stays refused (and, here, closes).
    assert_eq!(
        b.ask("CONFIG SET maxmemory 1\r\n"),
        "-ERR handle request, command 'CONFIG SET' is not allowed\r\n"
    );
    assert!(
        b.closed(),
        "session_break_on_failure did not close after a refusal"
    );
    let mut d = Raw::open(c.port);
    assert_eq!(d.ask("AUTH sekret\r\n"), "+OK\r\n");
    assert_eq!(
        d.ask("CLIENT PAUSE 100\r\n"),
        "-ERR handle request, command 'CLIENT PAUSE' is not allowed\r\n"
    );
}

/// WATCH through the proxy: optimistic transactions on one slot behave as on Redis (the
/// server that holds the slot decides), cross-slot WATCH is refused, and a slot that moved to
/// another server between WATCH and EXEC fails the transaction as a changed key would.
#[test]
fn watch_runs_optimistic_transactions() {
    let c = Cluster::start("");
    let mut a = Frames::open(c.port);
    let mut b = Frames::open(c.port);
    assert_eq!(a.ask(&["WATCH", "{w}k"]), "+OK\r\n");
    assert_eq!(a.ask(&["GET", "{w}k"]), "$-1\r\n");
    assert_eq!(a.ask(&["MULTI"]), "+OK\r\n");
    assert_eq!(a.ask(&["SET", "{w}k", "1"]), "+QUEUED\r\n");
    assert_eq!(a.ask(&["EXEC"]), "*1\r\n+OK\r\n");
    // Another client changes the key between WATCH and EXEC: the transaction does not run.
    assert_eq!(a.ask(&["WATCH", "{w}k", "{w}other"]), "+OK\r\n");
    assert_eq!(b.ask(&["INCR", "{w}k"]), ":2\r\n");
    assert_eq!(a.ask(&["MULTI"]), "+OK\r\n");
    assert_eq!(a.ask(&["INCRBY", "{w}k", "10"]), "+QUEUED\r\n");
    assert_eq!(a.ask(&["EXEC"]), "*-1\r\n");
    assert_eq!(a.ask(&["GET", "{w}k"]), "$1\r\n2\r\n");
    // EXEC forgot the watch: the next transaction runs whatever others do.
    assert_eq!(b.ask(&["INCR", "{w}k"]), ":3\r\n");
    assert_eq!(a.ask(&["MULTI"]), "+OK\r\n");
    assert_eq!(a.ask(&["INCR", "{w}k"]), "+QUEUED\r\n");
    assert_eq!(a.ask(&["EXEC"]), "*1\r\n:4\r\n");
    // UNWATCH and DISCARD forget it too.
    for forget in [&["UNWATCH"][..], &["MULTI"], &["DISCARD"]] {
        if forget[0] == "MULTI" {
            assert_eq!(a.ask(&["WATCH", "{w}k"]), "+OK\r\n");
            assert_eq!(a.ask(forget), "+OK\r\n");
            assert_eq!(a.ask(&["DISCARD"]), "+OK\r\n");
            continue;
        }
        if forget[0] == "DISCARD" {
            continue;
        }
        assert_eq!(a.ask(&["WATCH", "{w}k"]), "+OK\r\n");
        assert_eq!(a.ask(forget), "+OK\r\n");
    }
    assert_eq!(b.ask(&["INCR", "{w}k"]), ":5\r\n");
    assert_eq!(a.ask(&["MULTI"]), "+OK\r\n");
    assert_eq!(a.ask(&["GET", "{w}k"]), "+QUEUED\r\n");
    assert_eq!(a.ask(&["EXEC"]), "*1\r\n$1\r\n5\r\n");
    // Keys of two slots, in one WATCH or across WATCH and the transaction: refused.
    let cross = "-CROSSSLOT Keys in a transaction through codis-proxy must hash to one slot\r\n";
    assert_eq!(a.ask(&["WATCH", "{w}k", "{v}k"]), cross);
    assert_eq!(a.ask(&["WATCH", "{w}k"]), "+OK\r\n");
    assert_eq!(a.ask(&["WATCH", "{v}k"]), cross);
    assert_eq!(a.ask(&["MULTI"]), "+OK\r\n");
    assert_eq!(
        a.ask(&["WATCH", "{w}k"]),
        "-ERR WATCH inside MULTI is not allowed\r\n"
    );
    assert_eq!(a.ask(&["SET", "{v}k", "1"]), cross);
    assert_eq!(
        a.ask(&["EXEC"]),
        "-EXECABORT Transaction discarded because of previous errors.\r\n"
    );
    assert_eq!(a.ask(&["EXISTS", "{v}k"]), ":0\r\n");
    // RESP3: the aborted EXEC is a null.
    let mut r3 = Frames::open(c.port);
    r3.ask(&["HELLO", "3"]);
    assert_eq!(r3.ask(&["WATCH", "{w}k"]), "+OK\r\n");
    assert_eq!(b.ask(&["INCR", "{w}k"]), ":6\r\n");
    assert_eq!(r3.ask(&["MULTI"]), "+OK\r\n");
    assert_eq!(r3.ask(&["INCR", "{w}k"]), "+QUEUED\r\n");
    assert_eq!(r3.ask(&["EXEC"]), "_\r\n");
    // The slot moves to the other group between WATCH and EXEC: the transaction fails.
    let slot = resp::slot(b"{w}k") as u32;
    let gid = Cluster::group_of("{w}k");
    assert_eq!(a.ask(&["WATCH", "{w}k"]), "+OK\r\n");
    let before = c.stats()["topology_version"].as_u64().unwrap() + 1;
    let moved = SlotMapping {
        id: slot,
        group_id: 3 - gid,
        ..Default::default()
    };
    c.rt.block_on(c.store.update_slot_mappings(&[moved]))
        .unwrap();
    // Every core of the proxy has applied the new table once the version moves.
    let version = |c: &Cluster| c.stats()["topology_version"].as_u64().unwrap_or(0);
    let start = std::time::Instant::now();
    while version(&c) < before {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the slot never moved"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(a.ask(&["MULTI"]), "+OK\r\n");
    assert_eq!(a.ask(&["SET", "{w}k", "lost"]), "+QUEUED\r\n");
    assert_eq!(a.ask(&["EXEC"]), "*-1\r\n");
    assert_eq!(
        a.ask(&["GET", "{w}k"]),
        "$-1\r\n",
        "the new group never had the key"
    );
}

/// RESET gives the session a new connection's state: no transaction, database 0, RESP2, no
/// name, not authenticated.
#[test]
fn reset_returns_a_new_connections_state() {
    let c = Cluster::start("session_auth = \"pw\"\n");
    let mut a = Frames::open(c.port);
    assert_eq!(a.ask(&["AUTH", "pw"]), "+OK\r\n");
    assert_eq!(a.ask(&["SELECT", "2"]), "+OK\r\n");
    assert!(a.ask(&["HELLO", "3", "SETNAME", "n"]).starts_with("%7"));
    assert_eq!(a.ask(&["WATCH", "{r}a"]), "+OK\r\n");
    assert_eq!(a.ask(&["MULTI"]), "+OK\r\n");
    assert_eq!(a.ask(&["SET", "{r}a", "1"]), "+QUEUED\r\n");
    assert_eq!(a.ask(&["RESET"]), "+RESET\r\n");
    assert_eq!(
        a.ask(&["GET", "{r}a"]),
        "-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(a.ask(&["AUTH", "pw"]), "+OK\r\n");
    let info = a.ask(&["CLIENT", "INFO"]);
    assert!(info.starts_with('$'), "RESP2 again: {info}");
    for want in [" name= ", " db=0 ", " resp=2 "] {
        assert!(info.contains(want), "{want} not in {info}");
    }
    assert_eq!(a.ask(&["EXEC"]), "-ERR EXEC without MULTI\r\n");
    assert_eq!(a.ask(&["GET", "{r}a"]), "$-1\r\n");
}

/// Every key of a SCAN through the proxy, paging with `extra` options until the cursor is 0.
fn scan_all(p: &mut redis::Connection, extra: &[&str]) -> (Vec<String>, usize) {
    let mut cursor = "0".to_string();
    let (mut keys, mut calls) = (Vec::new(), 0);
    loop {
        let mut c = redis::cmd("SCAN");
        c.arg(&cursor);
        for a in extra {
            c.arg(*a);
        }
        let (next, page): (String, Vec<String>) = c.query(p).unwrap();
        keys.extend(page);
        calls += 1;
        cursor = next;
        if cursor == "0" {
            return (keys, calls);
        }
    }
}

#[test]
fn scan_and_dbsize_walk_every_group() {
    let c = Cluster::start("");
    let mut p = c.conn();
    let mut pipe = redis::pipe();
    for i in 0..3000 {
        pipe.set(format!("s:{i}"), i).ignore();
    }
    for i in 0..40 {
        pipe.rpush(format!("list:{i}"), "x").ignore();
    }
    let _: () = pipe.query(&mut p).unwrap();
    let (mut keys, calls) = scan_all(&mut p, &["COUNT", "100"]);
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(n, keys.len(), "a key was returned twice");
    assert_eq!(keys.len(), 3040);
    assert!(calls >= 1024, "{calls} calls for 1024 slots");
    // Both groups held some of them.
    let (g1, g2): (i64, i64) = (
        redis::cmd("DBSIZE").query(&mut c.backend(1)).unwrap(),
        redis::cmd("DBSIZE").query(&mut c.backend(2)).unwrap(),
    );
    assert!(g1 > 0 && g2 > 0 && g1 + g2 == 3040, "{g1} / {g2}");
    // DBSIZE through the proxy sums every group master.
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut p).unwrap(), 3040);
    // MATCH and TYPE are applied by the servers.
    let (mut lists, _) = scan_all(&mut p, &["TYPE", "list"]);
    lists.sort();
    let mut want: Vec<String> = (0..40).map(|i| format!("list:{i}")).collect();
    want.sort();
    assert_eq!(lists, want);
    let (m, _) = scan_all(&mut p, &["MATCH", "s:1?", "COUNT", "1000"]);
    assert_eq!(m.len(), 10, "{m:?}");
    // Redis's errors; SELECT applies.
    assert_eq!(
        err_text(cmd(&mut p, &["SCAN", "x"])),
        "An error was signalled by the server - ResponseError: invalid cursor"
    );
    let _: () = redis::cmd("SELECT").arg(2).query(&mut p).unwrap();
    assert!(scan_all(&mut p, &[]).0.is_empty());
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut p).unwrap(), 0);
    // redis-cli --scan, the tool users reach for, walks the same keys.
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &c.port.to_string(), "--scan", "--pattern", "list:*"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 40);
    // redis-cli --bigkeys asks DBSIZE, then SCANs and sizes every key.
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &c.port.to_string(), "--bigkeys"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Biggest   list found"), "{text}");
    assert!(text.contains("3040 keys"), "{text}");
}

#[test]
fn transactions_on_one_slot() {
    let c = Cluster::start("");
    let mut a = Raw::open(c.port);
    // A client library's transaction, pipelined in one write.
    let got = a.ask("MULTI\r\nSET {t}a 1\r\nINCR {t}b\r\nGET {t}a\r\nEXEC\r\n");
    assert_eq!(
        got,
        "+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n+OK\r\n:1\r\n$1\r\n1\r\n"
    );
    // A runtime error stays inside EXEC's reply, as in Redis.
    assert_eq!(
        a.ask("MULTI\r\nLPUSH {t}a x\r\nINCR {t}b\r\nEXEC\r\n"),
        "+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n:2\r\n"
    );
    // Keys of two slots, a refused command, a wrong arity: EXEC aborts and nothing ran.
    for bad in ["SET other 1", "KEYS *", "GET"] {
        let r = a.ask(&format!("MULTI\r\nSET {{t}}c 1\r\n{bad}\r\n"));
        assert!(r.starts_with("+OK\r\n+QUEUED\r\n-"), "{bad}: {r}");
        assert_eq!(
            a.ask("EXEC\r\n"),
            "-EXECABORT Transaction discarded because of previous errors.\r\n",
            "{bad}"
        );
    }
    assert_eq!(a.ask("GET {t}c\r\n"), "$-1\r\n");
    assert_eq!(
        a.ask("MULTI\r\nSET {t}c 1\r\nDISCARD\r\n"),
        "+OK\r\n+QUEUED\r\n+OK\r\n"
    );
    assert_eq!(a.ask("GET {t}c\r\n"), "$-1\r\n");
    assert_eq!(a.ask("EXEC\r\n"), "-ERR EXEC without MULTI\r\n");
    assert_eq!(a.ask("DISCARD\r\n"), "-ERR DISCARD without MULTI\r\n");
    assert_eq!(
        a.ask("MULTI\r\nMULTI\r\n"),
        "+OK\r\n-ERR MULTI calls can not be nested\r\n"
    );
    assert_eq!(a.ask("EXEC\r\n"), "*0\r\n");
    assert_eq!(a.ask("UNWATCH\r\n"), "+OK\r\n");

    // Transactions share the core's one backend connection with other sessions' plain
    // commands: none may slip into another session's MULTI … EXEC.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut plain = Vec::new();
    for _ in 0..3 {
        let (port, stop) = (c.port, stop.clone());
        plain.push(std::thread::spawn(move || {
            let mut p = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                .unwrap()
                .get_connection()
                .unwrap();
            let mut last = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let v: i64 = redis::cmd("INCR").arg("{t}n").query(&mut p).unwrap();
                assert!(v > last);
                last = v;
            }
        }));
    }
    let mut t = c.conn();
    for _ in 0..300 {
        let (x, y): (i64, i64) = redis::pipe()
            .atomic()
            .cmd("INCR")
            .arg("{t}n")
            .cmd("INCR")
            .arg("{t}n")
            .query(&mut t)
            .unwrap();
        assert_eq!(y, x + 1, "another increment ran inside the transaction");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in plain {
        h.join().unwrap();
    }
}

#[test]
fn protocol_errors_close_only_the_offender_and_max_clients() {
    let c = Cluster::start("proxy_max_clients = 3\n");
    let mut good = c.conn();
    let _: () = good.set("g", "1").unwrap();
    assert_eq!(
        c.raw(b"*99999999999\r\n"),
        b"-ERR Protocol error: invalid multibulk length\r\n"
    );
    assert_eq!(
        c.raw(b"*1\r\n$999999999999\r\n"),
        b"-ERR Protocol error: invalid bulk length\r\n"
    );
    assert_eq!(good.get::<_, String>("g").unwrap(), "1");
    let _c2 = c.conn();
    let _c3 = c.conn();
    assert_eq!(
        c.raw(b"PING\r\n"),
        b"-ERR max number of clients reached\r\n"
    );
}

#[test]
fn redis_benchmark_runs_clean() {
    let c = Cluster::start("");
    let out = std::process::Command::new("redis-benchmark")
        .args([
            "-p",
            &c.port.to_string(),
            "-t",
            "set,get,incr,mset,lpush",
            "-n",
            "20000",
            "-q",
            "-c",
            "20",
        ])
        .output()
        .expect("redis-benchmark (package redis-tools)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    for t in ["SET", "GET", "INCR", "MSET", "LPUSH"] {
        assert!(
            text.contains(&format!("{t}: ")) || text.contains(&format!("{t} (")),
            "no {t} result: {text}"
        );
    }
    assert!(!text.to_lowercase().contains("error"), "{text}");
    // redis-benchmark asks CONFIG GET first: the proxy reads it from a backend master.
    assert!(!text.contains("Could not fetch server CONFIG"), "{text}");
    let st = c.stats();
    for cmd in st["cmds"].as_array().unwrap() {
        if ["SET", "GET", "INCR", "MSET", "LPUSH"].contains(&cmd["opstr"].as_str().unwrap()) {
            assert!(cmd["calls"].as_u64().unwrap() >= 20000, "{cmd}");
            assert_eq!(cmd["fails"], 0, "{cmd}");
            assert_eq!(cmd["redis_errtype"], 0, "{cmd}");
        }
    }
}

#[test]
fn hashes_lists_sets() {
    let c = Cluster::start("");
    let mut p = c.conn();
    // Hashes.
    assert_eq!(p.hset::<_, _, _, i64>("h", "f1", "v1").unwrap(), 1);
    let _: () = redis::cmd("HSET")
        .arg("h")
        .arg("f2")
        .arg("v2")
        .query(&mut p)
        .unwrap();
    assert_eq!(p.hget::<_, _, String>("h", "f2").unwrap(), "v2");
    assert_eq!(p.hlen::<_, i64>("h").unwrap(), 2);
    assert_eq!(p.hincr::<_, _, _, i64>("h", "n", 3).unwrap(), 3);
    let all: std::collections::HashMap<String, String> = p.hgetall("h").unwrap();
    assert_eq!(all.len(), 3);
    // Lists.
    assert_eq!(p.rpush::<_, _, i64>("l", &["a", "b", "c"]).unwrap(), 3);
    assert_eq!(p.lpush::<_, _, i64>("l", "z").unwrap(), 4);
    assert_eq!(
        p.lrange::<_, Vec<String>>("l", 0, -1).unwrap(),
        vec!["z", "a", "b", "c"]
    );
    assert_eq!(p.rpop::<_, String>("l", None).unwrap(), "c");
    // Sets; multi-key set commands work inside one hash tag and are refused across slots.
    let _: () = redis::cmd("SADD")
        .arg("{t}s1")
        .arg(&["a", "b", "c"])
        .query(&mut p)
        .unwrap();
    let _: () = redis::cmd("SADD")
        .arg("{t}s2")
        .arg(&["b", "c", "d"])
        .query(&mut p)
        .unwrap();
    let mut inter: Vec<String> = redis::cmd("SINTER")
        .arg("{t}s1")
        .arg("{t}s2")
        .query(&mut p)
        .unwrap();
    inter.sort();
    assert_eq!(inter, vec!["b", "c"]);
    assert_eq!(p.scard::<_, i64>("{t}s1").unwrap(), 3);
    assert_eq!(
        c.raw(b"SUNION {t}s1 other\r\n"),
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    // Each key lives on its slot's group.
    for k in ["h", "l", "{t}s1", "{t}s2"] {
        let g = Cluster::group_of(k);
        assert!(
            c.backend(g).exists::<_, bool>(k).unwrap(),
            "{k} not on group {g}"
        );
        assert!(
            !c.backend(3 - g).exists::<_, bool>(k).unwrap(),
            "{k} on the wrong group"
        );
    }
}

/// `INFO keyspace` sums every group's keyspace per database, as if the cluster were one server.
#[test]
fn info_keyspace_sums_every_group() {
    let c = Cluster::start("");
    let mut p = c.conn();
    for i in 0..300 {
        let _: () = p.set(format!("ks:{i}"), i).unwrap();
    }
    for i in 0..40 {
        let _: () = p.set_ex(format!("ttl:{i}"), i, 1000).unwrap();
    }
    let _: () = redis::cmd("SELECT").arg(5).query(&mut p).unwrap();
    for i in 0..7 {
        let _: () = p.set(format!("five:{i}"), i).unwrap();
    }
    // Both groups hold some of the keys, so the sum is only right if both were asked.
    let on1 = (0..300)
        .filter(|i| Cluster::group_of(&format!("ks:{i}")) == 1)
        .count();
    assert!(on1 > 0 && on1 < 300);
    let info: String = redis::cmd("INFO").arg("keyspace").query(&mut p).unwrap();
    assert!(info.starts_with("# Keyspace"), "{info}");
    assert!(info.contains("db0:keys=340,expires=40,avg_ttl="), "{info}");
    assert!(info.contains("db5:keys=7,expires=0,avg_ttl=0"), "{info}");
    let all: String = redis::cmd("INFO").query(&mut p).unwrap();
    assert!(
        all.contains("# Server") && all.contains("db0:keys=340"),
        "{all}"
    );
    let server_only: String = redis::cmd("INFO").arg("server").query(&mut p).unwrap();
    assert!(!server_only.contains("# Keyspace"), "{server_only}");
    // The fields redis-cli --stat reads: the proxy's own memory, no blocked clients.
    let mem: String = redis::cmd("INFO").arg("memory").query(&mut p).unwrap();
    let used: u64 = mem
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(used > 1 << 20, "{mem}");
    assert!(all.contains("blocked_clients:0\r\n"), "{all}");
}

/// SCRIPT goes to every group master (Codis refused it): a script loaded through the proxy runs
/// by EVALSHA on keys of either group, EXISTS is 1 only where every group has the script, FLUSH
/// empties every cache, KILL answers NOTBUSY when no group runs a script, DEBUG stays refused.
#[test]
fn script_reaches_every_group() {
    let c = Cluster::start("");
    let mut p = c.conn();
    let body = "return redis.call('GET', KEYS[1])";
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(body)
        .query(&mut p)
        .unwrap();
    assert_eq!(sha.len(), 40);
    let k1 = (0..)
        .map(|i| format!("s{i}"))
        .find(|k| Cluster::group_of(k) == 1)
        .unwrap();
    let k2 = (0..)
        .map(|i| format!("s{i}"))
        .find(|k| Cluster::group_of(k) == 2)
        .unwrap();
    for (g, k) in [(1, &k1), (2, &k2)] {
        let _: () = p.set(k, format!("v{g}")).unwrap();
        let v: String = redis::cmd("EVALSHA")
            .arg(&sha)
            .arg(1)
            .arg(k)
            .query(&mut p)
            .unwrap();
        assert_eq!(v, format!("v{g}"));
        let there: Vec<i64> = redis::cmd("SCRIPT")
            .arg("EXISTS")
            .arg(&sha)
            .query(&mut c.backend(g))
            .unwrap();
        assert_eq!(there, vec![1], "group {g}");
    }
    // EXISTS: 1 only where every group has it (the second script is on group 1 only).
    let only1: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg("return 1")
        .query(&mut c.backend(1))
        .unwrap();
    let ex: Vec<i64> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(&sha)
        .arg(&only1)
        .arg("nope")
        .query(&mut p)
        .unwrap();
    assert_eq!(ex, vec![1, 0, 0]);
    let kill = err_text(cmd(&mut p, &["SCRIPT", "KILL"]));
    assert!(kill.contains("No scripts in execution"), "{kill}");
    assert!(err_text(cmd(&mut p, &["SCRIPT", "DEBUG", "YES"])).contains("not allowed"));
    assert!(err_text(cmd(&mut p, &["SCRIPT", "BOGUS"])).contains("unknown subcommand"));
    assert_eq!(cmd(&mut p, &["SCRIPT", "FLUSH"]).unwrap(), Value::Okay);
    let ex: Vec<i64> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(&sha)
        .arg(&only1)
        .query(&mut p)
        .unwrap();
    assert_eq!(ex, vec![0, 0]);
    let gone: Vec<i64> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(&only1)
        .query(&mut c.backend(1))
        .unwrap();
    assert_eq!(gone, vec![0]);
    let gone = err_text(cmd(&mut p, &["EVALSHA", &sha, "1", &k1]));
    assert!(gone.contains("No matching script"), "{gone}");
    // Inside MULTI the proxy refuses it (the transaction goes to one slot's master).
    assert_eq!(cmd(&mut p, &["MULTI"]).unwrap(), Value::Okay);
    assert!(err_text(cmd(&mut p, &["SCRIPT", "LOAD", body])).contains("not supported"));
    let exec = err_text(cmd(&mut p, &["EXEC"]));
    assert!(exec.contains("Transaction discarded"), "{exec}");
}

#[test]
fn evalsha_runs_on_every_group_after_one_eval() {
    let c = Cluster::start("");
    let mut p = c.conn();
    let keys: Vec<String> = [1, 2]
        .iter()
        .map(|&g| {
            (0..)
                .map(|i| format!("e{i}"))
                .find(|k| Cluster::group_of(k) == g)
                .unwrap()
        })
        .collect();
    let (k1, k2) = (&keys[0], &keys[1]);
    let _: () = p.set(k1, "one").unwrap();
    let _: () = p.set(k2, "two").unwrap();
    let exists = |g: u32, sha: &str| -> i64 {
        let v: Vec<i64> = redis::cmd("SCRIPT")
            .arg("EXISTS")
            .arg(sha)
            .query(&mut c.backend(g))
            .unwrap();
        v[0]
    };
    let body = "return redis.call('GET', KEYS[1])";
    let v: String = redis::cmd("EVAL")
        .arg(body)
        .arg(1)
        .arg(k1)
        .query(&mut p)
        .unwrap();
    assert_eq!(v, "one");
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(body)
        .query(&mut c.backend(1))
        .unwrap();
    assert_eq!(exists(2, &sha), 0, "EVAL ran on group 1 only");
    // Through the proxy it exists: EVALSHA of it runs on any key (as on one Redis).
    let ex: Vec<i64> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(&sha)
        .arg("0".repeat(40))
        .query(&mut p)
        .unwrap();
    assert_eq!(ex, vec![1, 0]);
    // The EVALSHA for group 2 carries the body there (in upper case too, as Redis accepts).
    let v: String = redis::cmd("EVALSHA")
        .arg(sha.to_uppercase())
        .arg(1)
        .arg(k2)
        .query(&mut p)
        .unwrap();
    assert_eq!(v, "two");
    assert_eq!(exists(2, &sha), 1);
    let v: String = redis::cmd("EVALSHA_RO")
        .arg(&sha)
        .arg(1)
        .arg(k2)
        .query(&mut p)
        .unwrap();
    assert_eq!(v, "two");

    // In one pipeline: the EVAL, then the EVALSHA to the other group right behind it.
    let body2 = "return redis.call('GET', KEYS[1]) .. '!'";
    let sha2: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(body2)
        .query(&mut c.backend(1))
        .unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query(&mut c.backend(1))
        .unwrap();
    let (a, b): (String, String) = redis::pipe()
        .cmd("EVAL")
        .arg(body2)
        .arg(1)
        .arg(k1)
        .cmd("EVALSHA")
        .arg(&sha2)
        .arg(1)
        .arg(k2)
        .query(&mut p)
        .unwrap();
    assert_eq!((a.as_str(), b.as_str()), ("one!", "two!"));

    // In a transaction on group 2's slot.
    let body3 = "return #redis.call('GET', KEYS[1])";
    let n: i64 = redis::cmd("EVAL")
        .arg(body3)
        .arg(1)
        .arg(k1)
        .query(&mut p)
        .unwrap();
    assert_eq!(n, 3);
    let sha3: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(body3)
        .query(&mut c.backend(1))
        .unwrap();
    assert_eq!(exists(2, &sha3), 0);
    let (n,): (i64,) = redis::pipe()
        .atomic()
        .cmd("EVALSHA")
        .arg(&sha3)
        .arg(1)
        .arg(k2)
        .query(&mut p)
        .unwrap();
    assert_eq!(n, 3);

    // A SHA1 the proxy never saw is Redis's NOSCRIPT; so is every script after SCRIPT FLUSH.
    let unknown = err_text(cmd(&mut p, &["EVALSHA", &"a".repeat(40), "1", k2]));
    assert!(unknown.contains("No matching script"), "{unknown}");
    assert_eq!(cmd(&mut p, &["SCRIPT", "FLUSH"]).unwrap(), Value::Okay);
    for k in [k1, k2] {
        let gone = err_text(cmd(&mut p, &["EVALSHA", &sha, "1", k]));
        assert!(gone.contains("No matching script"), "{gone}");
    }
}

/// A library of two functions: `fset` writes its key, `fget` (no-writes) reads it.
const LIBRARY: &str = "#!lua name=proxylib
redis.register_function('fset', function(keys, args) return redis.call('SET', keys[1], args[1]) end)
redis.register_function{function_name='fget', callback=function(keys) return redis.call('GET', keys[1]) end, flags={'no-writes'}}";

/// FUNCTION through the proxy: LOAD, DELETE, FLUSH and RESTORE reach every group master (each
/// server's own FUNCTION LIST shows it), FCALL and FCALL_RO run on the group that owns the first
/// key and write it there, keys of two slots are CROSSSLOT, LIST/DUMP/STATS/HELP are answered by
/// one master, KILL answers NOTBUSY when no group runs a function, and inside MULTI FUNCTION is
/// refused (as SCRIPT) while FCALL is queued.
fn functions_reach_every_group(c: &Cluster) {
    let mut p = c.conn();
    let name: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg(LIBRARY)
        .query(&mut p)
        .unwrap();
    assert_eq!(name, "proxylib");
    for g in [1, 2] {
        assert_eq!(
            testkit::function_libraries(&mut c.backend(g)),
            ["proxylib"],
            "group {g}"
        );
    }
    let again = err_text(cmd(&mut p, &["FUNCTION", "LOAD", LIBRARY]));
    assert!(again.contains("already exists"), "{again}");
    let replaced: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(LIBRARY)
        .query(&mut p)
        .unwrap();
    assert_eq!(replaced, "proxylib");

    let keys: Vec<String> = [1, 2]
        .iter()
        .map(|&g| {
            (0..)
                .map(|i| format!("f{i}"))
                .find(|k| Cluster::group_of(k) == g)
                .unwrap()
        })
        .collect();
    for (g, k) in [(1, &keys[0]), (2, &keys[1])] {
        let v = format!("v{g}");
        assert_eq!(
            cmd(&mut p, &["FCALL", "fset", "1", k, &v]).unwrap(),
            Value::Okay
        );
        let here: Option<String> = c.backend(g).get(k).unwrap();
        assert_eq!(here.as_deref(), Some(v.as_str()), "{k} on group {g}");
        let there: Option<String> = c.backend(3 - g).get(k).unwrap();
        assert_eq!(there, None, "{k} is not on group {}", 3 - g);
        let got: String = redis::cmd("FCALL_RO")
            .arg("fget")
            .arg(1)
            .arg(k)
            .query(&mut p)
            .unwrap();
        assert_eq!(got, v);
    }
    let cross = err_text(cmd(
        &mut p,
        &["FCALL", "fset", "2", &keys[0], &keys[1], "x"],
    ));
    assert!(cross.contains("don't hash to the same slot"), "{cross}");
    let same_tag = cmd(&mut p, &["FCALL", "fset", "2", "{t}a", "{t}b", "x"]).unwrap();
    assert_eq!(same_tag, Value::Okay);
    let ro = err_text(cmd(&mut p, &["FCALL_RO", "fset", "1", &keys[0], "x"]));
    assert!(ro.contains("write flag using *_ro command"), "{ro}");
    let missing = err_text(cmd(&mut p, &["FCALL", "nope", "0"]));
    assert!(missing.contains("Function not found"), "{missing}");

    // Read from one master.
    assert_eq!(testkit::function_libraries(&mut p), ["proxylib"]);
    let Value::BulkString(dump) = cmd(&mut p, &["FUNCTION", "DUMP"]).unwrap() else {
        panic!("FUNCTION DUMP is not a bulk string");
    };
    assert!(dump.len() > 10, "{} bytes", dump.len());
    assert!(matches!(
        cmd(&mut p, &["FUNCTION", "STATS"]),
        Ok(Value::Array(_))
    ));
    assert!(matches!(
        cmd(&mut p, &["FUNCTION", "HELP"]),
        Ok(Value::Array(_))
    ));
    let kill = err_text(cmd(&mut p, &["FUNCTION", "KILL"]));
    assert!(kill.contains("No scripts in execution"), "{kill}");
    let bogus = err_text(cmd(&mut p, &["FUNCTION", "BOGUS"]));
    assert!(bogus.contains("unknown subcommand"), "{bogus}");

    // MULTI: FUNCTION is refused as SCRIPT is; FCALL on the transaction's slot is queued.
    assert_eq!(cmd(&mut p, &["MULTI"]).unwrap(), Value::Okay);
    let refused = err_text(cmd(&mut p, &["FUNCTION", "FLUSH"]));
    assert!(refused.contains("not supported"), "{refused}");
    let exec = err_text(cmd(&mut p, &["EXEC"]));
    assert!(exec.contains("Transaction discarded"), "{exec}");
    let (v,): (String,) = redis::pipe()
        .atomic()
        .cmd("FCALL")
        .arg("fget")
        .arg(1)
        .arg(&keys[1])
        .query(&mut p)
        .unwrap();
    assert_eq!(v, "v2");

    // DELETE and FLUSH empty every group; RESTORE of the dump brings the library back on each.
    assert_eq!(
        cmd(&mut p, &["FUNCTION", "DELETE", "proxylib"]).unwrap(),
        Value::Okay
    );
    for g in [1, 2] {
        assert!(
            testkit::function_libraries(&mut c.backend(g)).is_empty(),
            "group {g}"
        );
    }
    let gone = err_text(cmd(&mut p, &["FUNCTION", "DELETE", "proxylib"]));
    assert!(gone.contains("Library not found"), "{gone}");
    let restored = redis::cmd("FUNCTION")
        .arg("RESTORE")
        .arg(&dump)
        .query::<Value>(&mut p)
        .unwrap();
    assert_eq!(restored, Value::Okay);
    for g in [1, 2] {
        assert_eq!(
            testkit::function_libraries(&mut c.backend(g)),
            ["proxylib"],
            "group {g}"
        );
    }
    assert_eq!(cmd(&mut p, &["FUNCTION", "FLUSH"]).unwrap(), Value::Okay);
    for g in [1, 2] {
        assert!(
            testkit::function_libraries(&mut c.backend(g)).is_empty(),
            "group {g}"
        );
    }
    let flushed = err_text(cmd(&mut p, &["FCALL", "fget", "1", &keys[0]]));
    assert!(flushed.contains("Function not found"), "{flushed}");
}

#[test]
fn functions_reach_every_group_of_codis_servers() {
    functions_reach_every_group(&Cluster::start(""));
}

/// The same against redis-server 7 groups (skipped when it is not installed): the proxy's side
/// alone, with Redis's own FUNCTION replies.
#[test]
fn functions_reach_every_group_of_redis_servers() {
    if let Some(c) = Cluster::start_redis("") {
        functions_reach_every_group(&c);
    }
}
