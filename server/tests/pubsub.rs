//! Pub/sub over TCP on a two-core server: replies and pushes byte for byte against redis-server
//! (RESP2 and RESP3, subscribed-mode rules, PUBSUB introspection, sharded pub/sub), fan-out to
//! many subscribers on both cores in publish order per publisher, and a slow subscriber dropped
//! at the output limit.

mod rawwire;

use std::thread;
use std::time::{Duration, Instant};

use rawwire::{multibulk, show, split, Raw, Reply};

/// Everything that arrives within a short while after sending `line`.
fn exchange(c: &mut Raw, line: &str) -> Vec<u8> {
    let args = split(line);
    let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
    c.send(&multibulk(&refs));
    let mut got = Vec::new();
    c.timeout(Duration::from_millis(1500));
    // The first reply may take a moment; what follows arrives together.
    loop {
        match c.read() {
            Reply::Frame(f) => got.extend_from_slice(&f),
            _ => break,
        }
        c.timeout(Duration::from_millis(150));
    }
    got
}

/// Lines prefixed `N:` run on connection N (0 by default); every connection's output after each
/// line is compared.
fn differential(script: &str) {
    let Some((redis, _dir)) = testkit::redis_server(&[]) else {
        return;
    };
    let codis = testkit::codis_server(&["--cores", "2"]);
    let mut r: Vec<Raw> = (0..3).map(|_| Raw::connect(redis.port)).collect();
    let mut c: Vec<Raw> = (0..3).map(|_| Raw::connect(codis.port)).collect();
    let mut diffs = Vec::new();
    for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (n, cmd) = match line.split_once(':') {
            Some((n, rest)) if n.len() == 1 && n.as_bytes()[0].is_ascii_digit() => {
                (n.parse::<usize>().unwrap(), rest.trim())
            }
            _ => (0, line),
        };
        // `!`: run without comparing (replies that legitimately differ, like client ids).
        let (compare, cmd) = match cmd.strip_prefix('!') {
            Some(rest) => (false, rest.trim()),
            None => (true, cmd),
        };
        let a = exchange(&mut r[n], cmd);
        let b = exchange(&mut c[n], cmd);
        if compare && a != b {
            diffs.push(format!(
                "{line}\n    redis: {}\n    codis: {}",
                show(&a),
                show(&b)
            ));
        }
        // Pushes another connection received.
        for i in 0..3 {
            if i == n {
                continue;
            }
            r[i].timeout(Duration::from_millis(100));
            c[i].timeout(Duration::from_millis(100));
            let (x, y) = (r[i].read(), c[i].read());
            if x != y {
                diffs.push(format!(
                    "{line} (connection {i})\n    redis: {}\n    codis: {}",
                    x.show(),
                    y.show()
                ));
            }
        }
    }
    assert!(diffs.is_empty(), "replies differ:\n{}", diffs.join("\n"));
}

#[test]
fn subscribe_publish_and_introspection_match_redis() {
    differential(
        r#"
        0: SUBSCRIBE news sport
        1: PSUBSCRIBE n* s?ort
        2: PUBSUB NUMSUB news sport none
        2: PUBSUB NUMPAT
        2: PUBLISH news hello
        2: PUBLISH sport "a b"
        2: PUBLISH nothing x
        0: PING
        0: PING hi
        0: GET k
        0: SUBSCRIBE news
        0: UNSUBSCRIBE news
        0: UNSUBSCRIBE
        0: UNSUBSCRIBE
        0: GET k
        1: PUNSUBSCRIBE n*
        1: PUNSUBSCRIBE
        1: PUNSUBSCRIBE
        2: PUBSUB NUMPAT
        2: PUBSUB NUMSUB
        2: PUBSUB CHANNELS
        2: PUBSUB FOO
        0: !HELLO 3
        2: PUBSUB NUMPAT extra
        0: SUBSCRIBE c3
        0: GET k
        0: PING
        2: PUBLISH c3 pushed
        0: UNSUBSCRIBE
        1: SUBSCRIBE x
        1: RESET
        1: GET k
        "#,
    );
}

#[test]
fn sharded_pubsub_matches_redis() {
    // Shard channels are a namespace of their own: `smessage`, their own counts, no patterns;
    // any subscription keeps a RESP2 client in subscribed mode.
    differential(
        r#"
        0: SUNSUBSCRIBE
        0: SSUBSCRIBE c1 {t}x c1
        0: SUBSCRIBE c1
        1: PSUBSCRIBE c*
        0: GET k
        2: SPUBLISH c1 hi
        2: PUBLISH c1 yo
        2: SPUBLISH nobody x
        2: PUBSUB SHARDNUMSUB c1 {t}x zz
        2: PUBSUB SHARDCHANNELS {t*
        2: PUBSUB NUMSUB c1
        2: PUBSUB NUMPAT
        2: EVAL "return redis.call('spublish', KEYS[1], 'from lua')" 1 c1
        0: SUNSUBSCRIBE c1
        0: UNSUBSCRIBE
        0: PING
        0: SUNSUBSCRIBE
        0: PING
        2: PUBSUB SHARDCHANNELS
        2: SPUBLISH
        0: !HELLO 3
        0: SSUBSCRIBE r3
        0: GET k
        2: SPUBLISH r3 pushed
        0: RESET
        2: SPUBLISH r3 gone
        "#,
    );
}

#[test]
fn pubsub_channels_lists_active_channels() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let mut subs: Vec<Raw> = Vec::new();
    for ch in ["alpha", "beta", "gamma", "alpha"] {
        let mut c = Raw::connect(srv.port);
        assert!(exchange(&mut c, &format!("SUBSCRIBE {ch}")).starts_with(b"*3\r\n"));
        subs.push(c);
    }
    let mut q = Raw::connect(srv.port);
    let mut names = |pat: &str| -> Vec<String> {
        let r = q.line(&format!("PUBSUB CHANNELS {pat}"));
        let s = String::from_utf8(r).unwrap();
        let mut v: Vec<String> = s
            .split("\r\n")
            .skip(1)
            .filter(|l| !l.starts_with('$') && !l.is_empty())
            .map(String::from)
            .collect();
        v.sort();
        v
    };
    assert_eq!(names("*"), vec!["alpha", "beta", "gamma"]);
    assert_eq!(names("?e*"), vec!["beta"]);
    assert_eq!(
        q.line("PUBSUB NUMSUB alpha beta zeta"),
        b"*6\r\n$5\r\nalpha\r\n:2\r\n$4\r\nbeta\r\n:1\r\n$4\r\nzeta\r\n:0\r\n"
    );
    drop(subs);
    // Disconnected subscribers leave their channels.
    let deadline = Instant::now() + Duration::from_secs(10);
    while q.line("PUBSUB NUMSUB alpha") != b"*2\r\n$5\r\nalpha\r\n:0\r\n" {
        assert!(
            Instant::now() < deadline,
            "closed subscribers still counted"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// CLIENT LIST counts a subscriber's channels, patterns and shard channels and flags it `P`,
/// and INFO stats counts the server's, as Redis does, until RESET.
#[test]
fn client_list_shows_subscriptions() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let mut sub = Raw::connect(srv.port);
    let id = String::from_utf8(exchange(&mut sub, "CLIENT ID")).unwrap();
    let id = format!("id={} ", id.trim().trim_start_matches(':'));
    exchange(&mut sub, "SUBSCRIBE a b");
    exchange(&mut sub, "PSUBSCRIBE x*");
    exchange(&mut sub, "SSUBSCRIBE s");
    let mut q = Raw::connect(srv.port);
    let mut fields = || -> String {
        let list = String::from_utf8(q.line("CLIENT LIST")).unwrap();
        let line = list
            .lines()
            .find(|l| l.starts_with(&id))
            .unwrap_or_else(|| panic!("no {id}in {list}"))
            .to_string();
        line.split(' ')
            .filter(|f| {
                ["flags=", "sub=", "psub=", "ssub="]
                    .iter()
                    .any(|p| f.starts_with(p))
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(fields(), "flags=P sub=2 psub=1 ssub=1");
    // INFO stats counts the distinct channels, patterns and shard channels, as Redis does.
    let mut info = Raw::connect(srv.port);
    let counts = |q: &mut Raw| -> String {
        let info = String::from_utf8(q.line("INFO stats")).unwrap();
        info.lines()
            .filter(|l| l.starts_with("pubsub"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let want = "pubsub_channels:2 pubsub_patterns:1 pubsubshard_channels:1";
    assert_eq!(counts(&mut info), want);
    exchange(&mut sub, "RESET");
    assert_eq!(fields(), "flags=N sub=0 psub=0 ssub=0");
    let none = "pubsub_channels:0 pubsub_patterns:0 pubsubshard_channels:0";
    assert_eq!(counts(&mut info), none);
}

/// Many subscribers (on both cores: connections spread over the cores) and several publishers:
/// every subscriber gets every message, each publisher's in its order, and PUBLISH counts all.
#[test]
fn fan_out_across_cores_in_publish_order() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let nsubs = 16;
    let npubs = 3;
    let per_pub = 200;
    let mut subs = Vec::new();
    for i in 0..nsubs {
        let mut c = Raw::connect(srv.port);
        if i % 2 == 0 {
            assert!(exchange(&mut c, "SUBSCRIBE feed").starts_with(b"*3\r\n$9\r\nsubscribe"));
        } else {
            assert!(exchange(&mut c, "PSUBSCRIBE fe?d").starts_with(b"*3\r\n$10\r\npsubscribe"));
        }
        subs.push(c);
    }
    let port = srv.port;
    let readers: Vec<_> = subs
        .into_iter()
        .map(|mut c| {
            thread::spawn(move || {
                c.timeout(Duration::from_secs(20));
                let mut next = vec![0usize; npubs];
                for _ in 0..npubs * per_pub {
                    let f = match c.read() {
                        Reply::Frame(f) => f,
                        other => panic!("subscriber got {}", other.show()),
                    };
                    let text = String::from_utf8(f).unwrap();
                    let payload = text
                        .split("\r\n")
                        .nth(text.split("\r\n").count() - 2)
                        .unwrap();
                    let (p, i) = payload.split_once('-').unwrap();
                    let (p, i): (usize, usize) = (p.parse().unwrap(), i.parse().unwrap());
                    assert_eq!(i, next[p], "publisher {p} out of order");
                    next[p] += 1;
                }
                next
            })
        })
        .collect();
    let pubs: Vec<_> = (0..npubs)
        .map(|p| {
            thread::spawn(move || {
                let mut c = Raw::connect(port);
                for i in 0..per_pub {
                    let msg = format!("{p}-{i}");
                    let r = c.cmd(&[b"PUBLISH", b"feed", msg.as_bytes()]);
                    assert_eq!(r, format!(":{nsubs}\r\n").into_bytes());
                }
            })
        })
        .collect();
    for p in pubs {
        p.join().unwrap();
    }
    for r in readers {
        assert_eq!(r.join().unwrap(), vec![per_pub; npubs]);
    }
}

/// A subscriber that never reads is disconnected once its pending messages pass the pub/sub output
/// limit (32 MB); publishers and other clients carry on.
#[test]
fn slow_subscriber_is_disconnected_at_the_limit() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let mut slow = Raw::connect(srv.port);
    assert!(exchange(&mut slow, "SUBSCRIBE firehose").starts_with(b"*3\r\n"));
    let mut p = Raw::connect(srv.port);
    let big = vec![b'x'; 1 << 20];
    let mut last = Vec::new();
    for _ in 0..200 {
        last = p.cmd(&[b"PUBLISH", b"firehose", &big]);
        if last == b":0\r\n" {
            break;
        }
    }
    assert_eq!(last, b":0\r\n", "the slow subscriber was never dropped");
    assert_eq!(
        p.line("PUBSUB NUMSUB firehose"),
        b"*2\r\n$8\r\nfirehose\r\n:0\r\n"
    );
    // The slow connection is closed: reading drains what was sent, then ends.
    slow.timeout(Duration::from_secs(10));
    let mut frames = 0;
    loop {
        match slow.read() {
            Reply::Frame(_) => frames += 1,
            Reply::Closed(_) => break,
            Reply::Timeout(_) => panic!("slow subscriber still connected after {frames} messages"),
        }
    }
    assert!(frames < 200);
    assert_eq!(p.line("PING"), b"+PONG\r\n");
}
