//! Lua scripting over TCP on a two-core server: replies and error texts byte for byte against
//! redis-server 7.0, SCRIPT LOAD/EXISTS/FLUSH and EVALSHA, a rate limiter and a lock written as
//! scripts, scripts whose declared keys span both cores, and the undeclared-key rule.

mod rawwire;

use std::thread;

use rawwire::{keys_on_two_cores, multibulk, split, Raw};

fn differential(script: &str) {
    let Some((redis, _dir)) = testkit::redis_server(&[]) else {
        return;
    };
    let codis = testkit::codis_server(&["--cores", "2"]);
    let mut r = Raw::connect(redis.port);
    let mut c = Raw::connect(codis.port);
    let mut diffs = Vec::new();
    for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let args = split(line);
        let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        let req = multibulk(&refs);
        r.send(&req);
        c.send(&req);
        let (rr, cr) = (r.read(), c.read());
        if rr != cr {
            diffs.push(format!(
                "{line}\n    redis: {}\n    codis: {}",
                rr.show(),
                cr.show()
            ));
        }
    }
    assert!(diffs.is_empty(), "replies differ:\n{}", diffs.join("\n"));
}

#[test]
fn eval_replies_and_errors_match_redis() {
    differential(
        r#"
        SET s abc
        EVAL "return redis.call('incr','s')" 1 s
        EVAL "return redis.pcall('incr','s')" 1 s
        EVAL "return redis.call('nosuch')" 0
        EVAL "return redis.call('get')" 0
        EVAL "error('boom')" 0
        EVAL "local x = 1\nerror('on line two')" 0
        EVAL "return {1,2,3.7,'x',nil,4}" 0
        EVAL "return {ok='fine'}" 0
        EVAL "return {err='My Error'}" 0
        EVAL "return redis.error_reply('E2')" 0
        EVAL "return redis.status_reply('S')" 0
        EVAL "return false" 0
        EVAL "return true" 0
        EVAL "return nil" 0
        EVAL "return 3.99" 0
        EVAL "return -2.5" 0
        EVAL "return redis.sha1hex('')" 0
        EVAL "return redis.sha1hex('hello world')" 0
        EVAL "syntax error here" 0
        EVAL "return 1" -1
        EVAL "return 1" 2 a
        EVAL "return 1" x
        EVALSHA ffffffffffffffffffffffffffffffffffffffff 0
        EVAL_RO "return redis.call('set','a','b')" 1 a
        EVAL "return redis.call('get', {})" 0
        EVAL "return {KEYS[1], KEYS[2], ARGV[1], ARGV[2]}" 2 k1 k2 a1 a2
        EVAL "redis.call('set', KEYS[1], ARGV[1]); return redis.call('get', KEYS[1])" 1 k v
        EVAL "return redis.call('hgetall', 'nohash')" 1 nohash
        EVAL "redis.call('rpush', 'l', 'a', 'b', 'c'); return redis.call('lrange', 'l', 0, -1)" 1 l
        EVAL "return redis.call('get', 'missing')" 1 missing
        EVAL "return type(redis.call('get', 'missing'))" 1 missing
        EVAL "return redis.call('set', 'st', 'x')" 1 st
        EVAL "return redis.call('set', 'st', 'x').ok" 1 st
        EVAL "local r = redis.pcall('lpush', 's', 'x'); return r.err" 1 s
        SCRIPT LOAD "return 'loaded'"
        EVALSHA 5b9ff1c1c6e1ef77f7ba3ccd1ae1ac5ef1c02b8f 0
        SCRIPT EXISTS 5b9ff1c1c6e1ef77f7ba3ccd1ae1ac5ef1c02b8f ffffffffffffffffffffffffffffffffffffffff
        SCRIPT FLUSH
        SCRIPT EXISTS 5b9ff1c1c6e1ef77f7ba3ccd1ae1ac5ef1c02b8f
        EVALSHA 5b9ff1c1c6e1ef77f7ba3ccd1ae1ac5ef1c02b8f 0
        EVAL "return 'loaded'" 0
        EVALSHA 5b9ff1c1c6e1ef77f7ba3ccd1ae1ac5ef1c02b8f 0
        SCRIPT FLUSH
        EVALSHA 5b9ff1c1c6e1ef77f7ba3ccd1ae1ac5ef1c02b8f 0
        EVAL "return 'loaded'" 0
        EVALSHA 5b9ff1c1c6e1ef77f7ba3ccd1ae1ac5ef1c02b8f 0
        SCRIPT EXISTS 9ed904a35754a476fa7bfd85a9d2eab35c29bcd0
        EVAL "return {KEYS[1], ARGV[1]}" 1 first one
        EVAL "return {KEYS[1], ARGV[1]}" 1 second two
        EVALSHA d006f1a90249474274c76f5be725b8f5804a346b 1 third three
        SCRIPT KILL
        SCRIPT LOAD "syntax error"
        SCRIPT FOO
        MULTI
        EVAL "return redis.call('incrby', KEYS[1], 5)" 1 n
        EVAL "return redis.call('get', KEYS[1])" 1 n
        EXEC
        "#,
    );
}

const RATE_LIMIT: &str = r#"
local n = redis.call('incr', KEYS[1])
if n == 1 then redis.call('pexpire', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then return 0 end
return 1
"#;

const LOCK: &str = "return redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])";
const UNLOCK: &str = r#"
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"#;

fn int(r: Vec<u8>) -> i64 {
    let s = String::from_utf8(r).unwrap();
    s.trim_start_matches(':').trim().parse().unwrap()
}

#[test]
fn rate_limiter_allows_exactly_the_limit_across_clients() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let mut c = Raw::connect(srv.port);
    let sha = c.cmd(&[b"SCRIPT", b"LOAD", RATE_LIMIT.as_bytes()]);
    let sha = String::from_utf8(sha).unwrap();
    let sha = sha.lines().nth(1).unwrap().to_string();
    let port = srv.port;
    let hs: Vec<_> = (0..4)
        .map(|_| {
            let sha = sha.clone();
            thread::spawn(move || {
                let mut c = Raw::connect(port);
                (0..50)
                    .map(|_| {
                        int(c.cmd(&[
                            b"EVALSHA",
                            sha.as_bytes(),
                            b"1",
                            b"rl:user",
                            b"70",
                            b"60000",
                        ]))
                    })
                    .sum::<i64>()
            })
        })
        .collect();
    let allowed: i64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(allowed, 70);
    assert_eq!(c.line("GET rl:user"), b"$3\r\n200\r\n");
    assert!(int(c.line("PTTL rl:user")) > 0);
}

#[test]
fn lock_and_unlock_scripts() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let mut a = Raw::connect(srv.port);
    let mut b = Raw::connect(srv.port);
    let lock = |c: &mut Raw, owner: &str| {
        c.cmd(&[
            b"EVAL",
            LOCK.as_bytes(),
            b"1",
            b"lock:r",
            owner.as_bytes(),
            b"10000",
        ])
    };
    let unlock = |c: &mut Raw, owner: &str| {
        c.cmd(&[
            b"EVAL",
            UNLOCK.as_bytes(),
            b"1",
            b"lock:r",
            owner.as_bytes(),
        ])
    };
    assert_eq!(lock(&mut a, "A"), b"+OK\r\n");
    assert_eq!(lock(&mut b, "B"), b"$-1\r\n");
    assert_eq!(unlock(&mut b, "B"), b":0\r\n");
    assert_eq!(unlock(&mut a, "A"), b":1\r\n");
    assert_eq!(lock(&mut b, "B"), b"+OK\r\n");
    assert_eq!(b.line("GET lock:r"), b"$1\r\nB\r\n");
}

/// A script whose declared keys live on both cores runs atomically on them; touching a key of the
/// other core that it did not declare is an error.
#[test]
fn scripts_spanning_cores_and_undeclared_keys() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let (k0, k1) = keys_on_two_cores("sk");
    let mut c = Raw::connect(srv.port);
    let move_one = "local v = redis.call('decr', KEYS[1]); redis.call('incr', KEYS[2]); return v";
    assert_eq!(c.line(&format!("SET {k0} 100")), b"+OK\r\n");
    let port = srv.port;
    let (a, b) = (k0.clone(), k1.clone());
    let checker = thread::spawn(move || {
        let mut c = Raw::connect(port);
        for _ in 0..300 {
            let r = String::from_utf8(c.line(&format!("EVAL \"return (tonumber(redis.call('get', KEYS[1])) or 0) + (tonumber(redis.call('get', KEYS[2])) or 0)\" 2 {a} {b}"))).unwrap();
            assert_eq!(r, ":100\r\n", "a script saw another half-done");
        }
    });
    for _ in 0..100 {
        c.cmd(&[
            b"EVAL",
            move_one.as_bytes(),
            b"2",
            k0.as_bytes(),
            k1.as_bytes(),
        ]);
    }
    checker.join().unwrap();
    assert_eq!(c.line(&format!("GET {k0}")), b"$1\r\n0\r\n");
    assert_eq!(c.line(&format!("GET {k1}")), b"$3\r\n100\r\n");
    // Undeclared key: for at least one of the two keys, the script runs on the other core.
    let r0 = c.line(&format!("EVAL \"return redis.call('get', '{k0}')\" 1 {k1}"));
    let r1 = c.line(&format!("EVAL \"return redis.call('get', '{k1}')\" 1 {k0}"));
    for r in [r0, r1] {
        assert!(
            String::from_utf8_lossy(&r).starts_with(
                "-ERR Script attempted to access a key that is neither declared nor on this core"
            ),
            "{}",
            String::from_utf8_lossy(&r)
        );
    }
}

#[test]
fn an_endless_script_is_stopped_at_lua_time_limit() {
    let srv = testkit::codis_server(&["--cores", "1"]);
    let mut c = Raw::connect(srv.port);
    assert_eq!(c.line("CONFIG SET lua-time-limit 200"), b"+OK\r\n");
    assert_eq!(
        c.line("CONFIG GET lua-time-limit"),
        b"*2\r\n$14\r\nlua-time-limit\r\n$3\r\n200\r\n"
    );
    let r = String::from_utf8(c.line("EVAL \"while true do end\" 0")).unwrap();
    assert!(
        r.starts_with("-ERR") && r.contains("lua-time-limit (200 ms)"),
        "{r}"
    );
    // The core is free again, and so is the Lua state.
    let mut other = Raw::connect(srv.port);
    assert_eq!(other.line("PING"), b"+PONG\r\n");
    assert_eq!(c.line("EVAL \"return 1\" 0"), b":1\r\n");
}

/// `PUBLISH` inside a script: the receiver count covers the subscribers of every core (channel
/// and pattern), each gets the message once, and (un)subscribing and disconnecting change the
/// count.
#[test]
fn publish_from_a_script_reaches_subscribers_on_every_core() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let on_core = |core: usize| {
        let mut c = Raw::connect(srv.port);
        assert_eq!(c.line(&format!("CLIENT CORE {core}")), b"+OK\r\n");
        c
    };
    let mut subs = [on_core(0), on_core(1)];
    for s in subs.iter_mut() {
        assert!(s
            .line("SUBSCRIBE news")
            .starts_with(b"*3\r\n$9\r\nsubscribe"));
    }
    let mut pat = on_core(1);
    assert!(pat
        .line("PSUBSCRIBE n*")
        .starts_with(b"*3\r\n$10\r\npsubscribe"));
    let mut c = on_core(0);
    let publish = "EVAL \"return redis.call('PUBLISH', 'news', ARGV[1])\" 0";
    assert_eq!(c.line(&format!("{publish} hello")), b":3\r\n");
    for s in subs.iter_mut() {
        assert_eq!(
            s.read().bytes(),
            b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n"
        );
    }
    assert_eq!(
        pat.read().bytes(),
        b"*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$5\r\nhello\r\n"
    );
    assert_eq!(
        c.line("EVAL \"return redis.call('PUBLISH', 'other', 'x')\" 0"),
        b":0\r\n"
    );
    assert!(subs[0]
        .line("UNSUBSCRIBE news")
        .starts_with(b"*3\r\n$11\r\nunsubscribe"));
    assert_eq!(c.line(&format!("{publish} again")), b":2\r\n");
    drop(pat);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let n = c.line(&format!("{publish} more"));
        if n == b":1\r\n" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "count after a disconnect: {n:?}"
        );
        thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Lua bytecode never runs, as in Redis (crafted bytecode can corrupt the interpreter's memory):
/// neither as an EVAL body nor through `loadstring`.
#[test]
fn bytecode_is_refused() {
    let srv = testkit::codis_server(&["--cores", "1"]);
    let mut c = Raw::connect(srv.port);
    let dump = c.cmd(&[
        b"EVAL",
        b"return string.dump(function() return 'from bytecode' end)",
        b"0",
    ]);
    let body_start = dump.iter().position(|&b| b == b'\n').unwrap() + 1;
    let body = &dump[body_start..dump.len() - 2];
    assert_eq!(body[0], 27, "a Lua bytecode header");
    let r = c.cmd(&[b"EVAL", body, b"0"]);
    assert_eq!(
        r,
        b"-ERR Error compiling script (new function): user_script:1: unexpected symbol near 'char(27)'\r\n"
    );
    let r = c.cmd(&[
        b"EVAL",
        b"return type(loadstring(string.dump(function() return 1 end)))",
        b"0",
    ]);
    assert_eq!(r, b"$3\r\nnil\r\n");
}
