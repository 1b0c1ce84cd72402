//! List commands over TCP: semantics, errors, a differential run against redis-server 7.0, and
//! blocking pops across connections and cores (wake-ups, FIFO fairness, timeouts, disconnects).

mod types_common;
use std::thread::sleep;
use std::time::Duration;

use types_common::{codis2, differential, Raw};

/// `n` keys owned by `core` of a two-core server (`resp::slot(key) % 2`).
fn keys_on(core: u16, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("q{i}"))
        .filter(|k| resp::slot(k.as_bytes()) % 2 == core)
        .take(n)
        .collect()
}

/// Wait until the server reports `n` blocked clients (INFO clients), so the order in which
/// clients blocked is known before the test pushes.
fn blocked(port: u16, n: usize) {
    let mut c = Raw::connect(port);
    for _ in 0..500 {
        let info = c.q("INFO clients");
        if info.contains(&format!("blocked_clients:{n}\r\n")) {
            return;
        }
        sleep(Duration::from_millis(10));
    }
    panic!("never saw blocked_clients:{n}");
}

#[test]
fn lists_match_redis() {
    differential(
        "rpush l a b c d e
        lpush l z
        lrange l 0 -1
        lrange l -2 -1
        lrange l 5 2
        lrange l -100 100
        lrange l 10 20
        lrange nokey 0 -1
        lindex l 0
        lindex l -1
        lindex l 99
        lindex l x
        lset l 0 Z
        lset l 99 x
        lset nokey 0 x
        llen l
        lpop l
        rpop l
        lpop l 2
        rpop l 0
        lpop l -1
        lpop nokey
        lpop nokey 2
        lpop l 1 2
        rpush m a b a c a
        lrem m 2 a
        lrange m 0 -1
        rpush m a a
        lrem m -1 a
        lrange m 0 -1
        lrem m 0 a
        lrange m 0 -1
        linsert m before c X
        linsert m after c Y
        linsert m after nope Y
        linsert m middle c Y
        linsert nokey before a b
        lrange m 0 -1
        rpush p a b c a b c a
        lpos p a
        lpos p a rank 2
        lpos p a rank -1
        lpos p a count 0
        lpos p a count 2 rank -1
        lpos p a maxlen 1 count 0
        lpos p a rank 0
        lpos p a count -1
        lpos p zz
        lpos p zz count 2
        lpos p a foo 1
        ltrim p 1 -2
        lrange p 0 -1
        ltrim p 5 1
        exists p
        lpushx nokey a
        rpushx m q
        rpush s1 1 2 3
        lmove s1 s2 left right
        lmove s1 s2 right left
        lrange s2 0 -1
        lmove s1 s1 left right
        lrange s1 0 -1
        lmove s1 s2 up down
        rpoplpush s1 s2
        rpoplpush nokey s2
        set str x
        lmove s2 str left left
        lpush str a
        lmpop 1 nokey left
        lmpop 2 nokey s2 right count 10
        lmpop 0 s2 left
        lmpop 3 s2 left
        lmpop 1 s2 middle
        lmpop 1 s2 left count 0
        exists s2
        rpush s1 a b c
        blpop nokey s1 0
        brpop s1 0
        blpop s1 x
        blpop s1 -1
        blpop s1 1e20
        rpush b1 x
        blmove b1 b2 left left 0
        blmove str b2 left left 0
        brpoplpush b2 b1 0
        blmpop 0 2 nokey b1 left count 5
        blpop str 0
        object encoding s1
        type s1",
    );
}

#[test]
fn list_edges() {
    let srv = codis2();
    let mut c = Raw::connect(srv.port);
    assert_eq!(c.q("RPUSH l a b c"), ":3\r\n");
    assert_eq!(
        c.q("LRANGE l -100 100"),
        "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"
    );
    assert_eq!(c.q("LRANGE l 2 1"), "*0\r\n");
    assert_eq!(c.q("LINDEX l -3"), "$1\r\na\r\n");
    assert_eq!(c.q("LPOP l 0"), "*0\r\n");
    assert_eq!(c.q("LPOP nokey 1"), "*-1\r\n");
    assert_eq!(c.q("LPOP l 100"), "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n");
    assert_eq!(c.q("EXISTS l"), ":0\r\n");
    assert_eq!(
        c.q("BLPOP l x"),
        "-ERR timeout is not a float or out of range\r\n"
    );
    assert_eq!(c.q("BLPOP l -1"), "-ERR timeout is negative\r\n");
    // A long list converts from the packed form and keeps its order.
    for i in 0..300 {
        c.q(&format!("RPUSH big {i}"));
    }
    assert_eq!(c.q("LINDEX big 299"), "$3\r\n299\r\n");
    assert_eq!(c.q("OBJECT ENCODING big"), "$9\r\nquicklist\r\n");
    // LMOVE between cores is atomic and moves the element.
    let a = &keys_on(0, 1)[0];
    let b = &keys_on(1, 1)[0];
    c.q(&format!("RPUSH {a} 1 2"));
    assert_eq!(c.q(&format!("LMOVE {a} {b} LEFT RIGHT")), "$1\r\n1\r\n");
    assert_eq!(c.q(&format!("LRANGE {b} 0 -1")), "*1\r\n$1\r\n1\r\n");
    assert_eq!(
        c.q(&format!("LMPOP 2 nokey {b} LEFT COUNT 5")),
        format!("*2\r\n${}\r\n{b}\r\n*1\r\n$1\r\n1\r\n", b.len())
    );
}

#[test]
fn blocked_pop_is_woken_by_a_push_on_either_core() {
    let srv = codis2();
    for core in 0..2 {
        let k = &keys_on(core, 1)[0];
        let mut waiter = Raw::connect(srv.port);
        waiter.send_line(&format!("BLPOP {k} 0"));
        blocked(srv.port, 1);
        // Several pushing connections: they land on both cores.
        for i in 0..3 {
            let mut p = Raw::connect(srv.port);
            if i == 2 {
                assert_eq!(p.q(&format!("RPUSH {k} v")), ":1\r\n");
            } else {
                assert_eq!(p.q("PING"), "+PONG\r\n");
            }
        }
        let want = format!("*2\r\n${}\r\n{k}\r\n$1\r\nv\r\n", k.len());
        assert_eq!(String::from_utf8_lossy(&waiter.read()), want);
        let mut c = Raw::connect(srv.port);
        assert_eq!(
            c.q(&format!("EXISTS {k}")),
            ":0\r\n",
            "the element was consumed"
        );
    }
}

#[test]
fn first_blocked_first_served() {
    let srv = codis2();
    let mut c1 = Raw::connect(srv.port);
    let mut c2 = Raw::connect(srv.port);
    let mut c3 = Raw::connect(srv.port);
    let mut p = Raw::connect(srv.port);
    c1.send_line("BRPOP fair 0");
    blocked(srv.port, 1);
    c2.send_line("BRPOP fair 0");
    blocked(srv.port, 2);
    c3.send_line("BLMOVE fair dst LEFT LEFT 0");
    blocked(srv.port, 3);
    assert_eq!(p.q("RPUSH fair one"), ":1\r\n");
    assert_eq!(
        String::from_utf8_lossy(&c1.read()),
        "*2\r\n$4\r\nfair\r\n$3\r\none\r\n"
    );
    // One push of two elements serves the next two waiters, in order.
    assert_eq!(p.q("RPUSH fair two three"), ":2\r\n");
    assert_eq!(
        String::from_utf8_lossy(&c2.read()),
        "*2\r\n$4\r\nfair\r\n$5\r\nthree\r\n"
    );
    assert_eq!(String::from_utf8_lossy(&c3.read()), "$3\r\ntwo\r\n");
    assert_eq!(p.q("LRANGE dst 0 -1"), "*1\r\n$3\r\ntwo\r\n");
    assert_eq!(p.q("EXISTS fair"), ":0\r\n");
}

#[test]
fn blocking_on_keys_of_both_cores() {
    let srv = codis2();
    let a = &keys_on(0, 1)[0];
    let b = &keys_on(1, 1)[0];
    let mut w = Raw::connect(srv.port);
    let mut p = Raw::connect(srv.port);
    w.send_line(&format!("BLPOP {a} {b} 0"));
    blocked(srv.port, 1);
    p.q(&format!("LPUSH {b} x"));
    assert_eq!(
        String::from_utf8_lossy(&w.read()),
        format!("*2\r\n${}\r\n{b}\r\n$1\r\nx\r\n", b.len())
    );
    // BLMOVE from a key of core 0 to a key of core 1; a client blocked on the destination is
    // served by the move.
    let mut w2 = Raw::connect(srv.port);
    w2.send_line(&format!("BLPOP {b} 0"));
    blocked(srv.port, 1);
    w.send_line(&format!("BLMOVE {a} {b} RIGHT LEFT 0"));
    blocked(srv.port, 2);
    p.q(&format!("RPUSH {a} moved"));
    assert_eq!(String::from_utf8_lossy(&w.read()), "$5\r\nmoved\r\n");
    assert_eq!(
        String::from_utf8_lossy(&w2.read()),
        format!("*2\r\n${}\r\n{b}\r\n$5\r\nmoved\r\n", b.len())
    );
    assert_eq!(p.q(&format!("EXISTS {a} {b}")), ":0\r\n");
    // BLMPOP over both cores.
    w.send_line(&format!("BLMPOP 0 2 {a} {b} RIGHT COUNT 2"));
    blocked(srv.port, 1);
    p.q(&format!("RPUSH {a} 1 2 3"));
    assert_eq!(
        String::from_utf8_lossy(&w.read()),
        format!("*2\r\n${}\r\n{a}\r\n*2\r\n$1\r\n3\r\n$1\r\n2\r\n", a.len())
    );
}

#[test]
fn timeouts_and_disconnects() {
    let srv = codis2();
    let a = &keys_on(0, 1)[0];
    let b = &keys_on(1, 1)[0];
    let mut c = Raw::connect(srv.port);
    assert_eq!(c.q("BLPOP nokey 0.05"), "*-1\r\n");
    assert_eq!(c.q(&format!("BRPOP {a} {b} 0.05")), "*-1\r\n");
    assert_eq!(c.q("BLMOVE nokey x LEFT LEFT 0.05"), "*-1\r\n");
    assert_eq!(c.q("BLMPOP 0.05 1 nokey LEFT"), "*-1\r\n");
    c.q("HELLO 3");
    assert_eq!(c.q("BLPOP nokey 0.05"), "_\r\n");
    // Replies after a timeout keep their order in a pipeline.
    let mut d = Raw::connect(srv.port);
    d.send_line("BLPOP nokey 0.05");
    d.send_line("PING");
    assert_eq!(String::from_utf8_lossy(&d.read()), "*-1\r\n");
    assert_eq!(String::from_utf8_lossy(&d.read()), "+PONG\r\n");
    // A client that went away while blocked does not swallow a later push.
    {
        let mut gone = Raw::connect(srv.port);
        gone.send_line("BLPOP lost 0");
        blocked(srv.port, 1);
    }
    // The server notices the disconnect (it polls blocked clients' sockets).
    blocked(srv.port, 0);
    assert_eq!(d.q("RPUSH lost x"), ":1\r\n");
    assert_eq!(d.q("LLEN lost"), ":1\r\n");
}

/// Big lists (quicklists of many chunks, elements from 1 byte to past a chunk's 8 KB) under a
/// seeded random mix of every list command, reply for reply against redis-server 7.0; the list
/// is also reshaped with CONFIG SET list-max-listpack-size midway.
#[test]
fn big_lists_match_redis() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    let Some((redis, _dir)) = testkit::redis_server(&[]) else {
        return;
    };
    let codis = codis2();
    let mut a = Raw::connect(codis.port);
    let mut b = Raw::connect(redis.port);
    let mut rng = StdRng::seed_from_u64(7);
    let elem = |rng: &mut StdRng| -> String {
        let tag = rng.gen_range(0..5u8);
        let n = match rng.gen_range(0..40) {
            0 => 9000,
            1..=4 => 200,
            5..=8 => 40,
            _ => 3,
        };
        let mut s = "x".repeat(n);
        s.replace_range(0..1, &tag.to_string());
        s
    };
    let mut history: Vec<String> = Vec::new();
    for step in 0..3000 {
        let len = 2000i64;
        let idx = |rng: &mut StdRng| rng.gen_range(-len..len).to_string();
        let cmd: Vec<String> = match if step == 1500 {
            100
        } else {
            rng.gen_range(0..100)
        } {
            0..=29 => {
                let mut v = vec![if rng.gen_bool(0.5) { "lpush" } else { "rpush" }.to_string()];
                v.push("big".into());
                for _ in 0..rng.gen_range(1..20) {
                    v.push(elem(&mut rng));
                }
                v
            }
            30..=39 => vec![
                if rng.gen_bool(0.5) { "lpop" } else { "rpop" }.into(),
                "big".into(),
                rng.gen_range(1..5).to_string(),
            ],
            40..=49 => vec!["lindex".into(), "big".into(), idx(&mut rng)],
            50..=57 => vec!["lset".into(), "big".into(), idx(&mut rng), elem(&mut rng)],
            58..=67 => {
                let s = idx(&mut rng);
                vec!["lrange".into(), "big".into(), s, idx(&mut rng)]
            }
            68..=74 => vec![
                "linsert".into(),
                "big".into(),
                if rng.gen_bool(0.5) { "before" } else { "after" }.into(),
                elem(&mut rng),
                elem(&mut rng),
            ],
            75..=79 => vec![
                "lrem".into(),
                "big".into(),
                rng.gen_range(-3..4).to_string(),
                elem(&mut rng),
            ],
            80..=84 => vec![
                "lpos".into(),
                "big".into(),
                elem(&mut rng),
                "rank".into(),
                if rng.gen_bool(0.5) { "-2" } else { "3" }.into(),
                "count".into(),
                rng.gen_range(0..4).to_string(),
            ],
            85..=87 => vec![
                "lmove".into(),
                "big".into(),
                "big".into(),
                if rng.gen_bool(0.5) { "left" } else { "right" }.into(),
                if rng.gen_bool(0.5) { "left" } else { "right" }.into(),
            ],
            88..=89 => {
                // Trim a little from both ends (keeps the list big).
                let s = rng.gen_range(0..30).to_string();
                let e = (-rng.gen_range(1..30)).to_string();
                vec!["ltrim".into(), "big".into(), s, e]
            }
            100 => vec![
                "config".into(),
                "set".into(),
                "list-max-listpack-size".into(),
                "5".into(),
            ],
            _ => vec!["llen".into(), "big".into()],
        };
        let args: Vec<&[u8]> = cmd.iter().map(|s| s.as_bytes()).collect();
        let ra = String::from_utf8_lossy(&a.qb(&args)).into_owned();
        let rb = String::from_utf8_lossy(&b.qb(&args)).into_owned();
        let short: Vec<String> = cmd
            .iter()
            .map(|s| {
                if s.len() > 12 {
                    format!("{}…({})", &s[..1], s.len())
                } else {
                    s.clone()
                }
            })
            .collect();
        history.push(short.join(" "));
        if ra != rb {
            let start = history.len().saturating_sub(20);
            panic!(
                "step {step}: `{}` differs\n codis-server: {:.300}\n redis-server: {:.300}\nlast commands:\n{}",
                short.join(" "),
                ra,
                rb,
                history[start..].join("\n")
            );
        }
    }
    assert_eq!(a.q("LRANGE big 0 -1"), b.q("LRANGE big 0 -1"));
    assert_eq!(a.q("OBJECT ENCODING big"), "$9\r\nquicklist\r\n");
    let n = a.q("LLEN big");
    assert!(n.len() > 5, "the list stayed big: {n:?}");
}

/// `CLIENT UNBLOCK id [TIMEOUT|ERROR]` ends a wait as its timeout would, or with Redis's
/// UNBLOCKED error, whether the client waits on one core or on keys of both; nothing is popped.
#[test]
fn client_unblock_ends_a_wait() {
    let srv = codis2();
    let a = &keys_on(0, 1)[0];
    let b = &keys_on(1, 1)[0];
    let mut ctl = Raw::connect(srv.port);
    for (wait, mode, reply) in [
        (format!("BLPOP {a} 0"), "", "*-1\r\n"),
        (format!("BLPOP {b} 0"), " TIMEOUT", "*-1\r\n"),
        (
            format!("BRPOP {a} 0"),
            " ERROR",
            "-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n",
        ),
        (format!("BLPOP {a} {b} 0"), "", "*-1\r\n"),
        (
            format!("BLMOVE {a} {b} LEFT LEFT 0"),
            " ERROR",
            "-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n",
        ),
    ] {
        let mut w = Raw::connect(srv.port);
        let id = w.q("CLIENT ID");
        let id = id.trim_start_matches(':').trim_end();
        w.send_line(&wait);
        blocked(srv.port, 1);
        assert_eq!(ctl.q(&format!("CLIENT UNBLOCK {id}{mode}")), ":1\r\n");
        assert_eq!(String::from_utf8_lossy(&w.read()), reply, "{wait}{mode}");
        blocked(srv.port, 0);
        // Not blocked any more: 0, and the connection serves on.
        assert_eq!(ctl.q(&format!("CLIENT UNBLOCK {id}")), ":0\r\n");
        assert_eq!(w.q("PING"), "+PONG\r\n");
    }
    assert_eq!(ctl.q(&format!("EXISTS {a} {b}")), ":0\r\n");
    assert_eq!(ctl.q("CLIENT UNBLOCK 999999"), ":0\r\n");
    assert_eq!(
        ctl.q("CLIENT UNBLOCK x"),
        "-ERR value is not an integer or out of range\r\n"
    );
    assert_eq!(
        ctl.q("CLIENT UNBLOCK 1 LATER"),
        "-ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR\r\n"
    );
}
