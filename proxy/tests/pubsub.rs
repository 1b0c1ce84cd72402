//! Pub/sub through the proxy: SUBSCRIBE / PSUBSCRIBE / UNSUBSCRIBE / PUNSUBSCRIBE, PUBLISH and
//! PUBSUB, and sharded pub/sub (SSUBSCRIBE / SUNSUBSCRIBE / SPUBLISH), against redis-server byte
//! for byte (RESP2 and RESP3), and subscriptions that follow the pub/sub home when the topology
//! moves it.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, Frames};
use coord::SlotMapping;

/// A subscriber and a publisher on `port`, RESP2 or RESP3: everything both receive, in order.
fn conversation(port: u16, resp3: bool) -> Vec<String> {
    let mut sub = Frames::open(port);
    let mut publ = Frames::open(port);
    let mut got = Vec::new();
    if resp3 {
        sub.ask(&["HELLO", "3"]);
        publ.ask(&["HELLO", "3"]);
    }
    // Not subscribed: confirmations with a count of 0.
    got.push(sub.ask(&["UNSUBSCRIBE"]));
    got.push(sub.ask(&["PUNSUBSCRIBE", "x", "y"]));
    got.push(sub.next());
    got.push(publ.ask(&["PUBLISH", "news", "nobody"]));
    sub.send(&["SUBSCRIBE", "news", "sport"]);
    got.push(sub.next());
    got.push(sub.next());
    got.push(sub.ask(&["PSUBSCRIBE", "n*"]));
    got.push(publ.ask(&["PUBSUB", "NUMSUB", "news", "sport", "none"]));
    got.push(publ.ask(&["PUBSUB", "NUMPAT"]));
    got.push(publ.ask(&["PUBLISH", "news", "hello"]));
    // The channel's message, then the pattern's.
    got.push(sub.next());
    got.push(sub.next());
    // Pipelined: a message may not overtake or split the replies.
    sub.send(&["PING"]);
    sub.send(&["PING", "x"]);
    sub.send(&["GET", "k"]);
    sub.send(&["SUBSCRIBE"]);
    for _ in 0..4 {
        got.push(sub.next());
    }
    got.push(publ.ask(&["PUBLISH", "sport", "goal"]));
    got.push(sub.next());
    sub.send(&["UNSUBSCRIBE"]);
    // One confirmation per channel, in the server's hash order: the channels, then the counts.
    let two = [sub.next(), sub.next()];
    let field = |r: &str, i: usize| r.split("\r\n").nth(i).unwrap_or("").to_string();
    let mut names: Vec<String> = two.iter().map(|r| field(r, 4)).collect();
    names.sort();
    got.push(format!(
        "{names:?} {:?}",
        two.iter().map(|r| field(r, 5)).collect::<Vec<_>>()
    ));
    got.push(publ.ask(&["PUBLISH", "news", "again"]));
    got.push(sub.next());
    got.push(sub.ask(&["PUNSUBSCRIBE"]));
    // Out of subscribed mode: an ordinary connection again.
    got.push(sub.ask(&["SET", "k", "v"]));
    got.push(sub.ask(&["GET", "k"]));
    got.push(sub.ask(&["DEL", "k"]));
    // In one write: requests after SUBSCRIBE run subscribed, those after the last UNSUBSCRIBE
    // run as on any connection.
    sub.pipeline(&[
        &["SUBSCRIBE", "solo"],
        &["PING"],
        &["UNSUBSCRIBE"],
        &["GET", "k"],
        &["PING"],
    ]);
    for _ in 0..5 {
        got.push(sub.next());
    }
    got.push(publ.ask(&["PUBLISH", "news", "gone"]));
    // RESET ends the subscriptions (and RESP3) and keeps the connection.
    got.push(sub.ask(&["SUBSCRIBE", "r"]));
    got.push(sub.ask(&["RESET"]));
    got.push(sub.ask(&["GET", "k"]));
    got.push(publ.ask(&["PUBLISH", "r", "after reset"]));
    got
}

/// `talk` through the proxy on `proxy` and straight to redis-server on `redis`, in RESP2 and
/// RESP3: the same replies and messages, step by step.
fn assert_same_as_redis(talk: fn(u16, bool) -> Vec<String>, proxy: u16, redis: u16) {
    for resp3 in [false, true] {
        let through = talk(proxy, resp3);
        let direct = talk(redis, resp3);
        for (i, (a, b)) in through.iter().zip(&direct).enumerate() {
            assert_eq!(a, b, "step {i} (resp3: {resp3}): proxy vs redis-server");
        }
        assert_eq!(through.len(), direct.len());
    }
}

#[test]
fn pubsub_matches_redis_in_resp2_and_resp3() {
    let c = Cluster::start("");
    let Some((r, _dir)) = testkit::redis_server(&[]) else {
        return;
    };
    assert_same_as_redis(conversation, c.port, r.port);
    // The shapes that matter, whatever redis-server says.
    let two = conversation(c.port, false);
    assert_eq!(two[0], "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n");
    assert_eq!(two[4], "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n");
    assert_eq!(
        two[9], ":2\r\n",
        "PUBLISH reached the channel and the pattern"
    );
    let msg = "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n";
    assert_eq!(two[10], msg);
    let refused = "-ERR Can't execute 'get'";
    assert!(two[14].starts_with(refused), "{}", two[14]);
    let three = conversation(c.port, true);
    assert_eq!(three[10], msg.replacen('*', ">", 1));
    assert_eq!(
        three[14], "_\r\n",
        "RESP3 runs GET while subscribed, as Redis does"
    );
}

/// Sharded pub/sub (SSUBSCRIBE, SUNSUBSCRIBE, SPUBLISH, PUBSUB SHARD*), RESP2 or RESP3:
/// everything a subscriber and a publisher receive, in order.
fn shard_conversation(port: u16, resp3: bool) -> Vec<String> {
    let mut sub = Frames::open(port);
    let mut publ = Frames::open(port);
    let mut got = Vec::new();
    if resp3 {
        sub.ask(&["HELLO", "3"]);
        publ.ask(&["HELLO", "3"]);
    }
    // Not subscribed: a confirmation with a count of 0.
    got.push(sub.ask(&["SUNSUBSCRIBE"]));
    sub.send(&["SSUBSCRIBE", "orders", "{t}x", "orders"]);
    for _ in 0..3 {
        got.push(sub.next());
    }
    // A plain subscription counts apart from the shard channels.
    got.push(sub.ask(&["SUBSCRIBE", "orders"]));
    got.push(publ.ask(&["SPUBLISH", "orders", "one"]));
    got.push(sub.next());
    got.push(publ.ask(&["PUBLISH", "orders", "two"]));
    got.push(sub.next());
    got.push(publ.ask(&["SPUBLISH", "nobody", "x"]));
    got.push(publ.ask(&["PUBSUB", "SHARDNUMSUB", "orders", "{t}x", "zz"]));
    got.push(publ.ask(&["PUBSUB", "SHARDCHANNELS", "{t*"]));
    got.push(publ.ask(&["PUBSUB", "NUMSUB", "orders"]));
    got.push(sub.ask(&["GET", "k"]));
    got.push(sub.ask(&["SUNSUBSCRIBE", "orders"]));
    got.push(sub.ask(&["UNSUBSCRIBE"]));
    // Still subscribed to {t}x: PING answers as in subscribed mode.
    got.push(sub.ask(&["PING"]));
    got.push(sub.ask(&["SUNSUBSCRIBE"]));
    got.push(sub.ask(&["GET", "k"]));
    got.push(publ.ask(&["SPUBLISH", "{t}x", "gone"]));
    got
}

#[test]
fn sharded_pubsub_matches_redis() {
    let c = Cluster::start("");
    let Some((r, _dir)) = testkit::redis_server(&[]) else {
        return;
    };
    assert_same_as_redis(shard_conversation, c.port, r.port);
    let two = shard_conversation(c.port, false);
    assert_eq!(two[3], "*3\r\n$10\r\nssubscribe\r\n$6\r\norders\r\n:2\r\n");
    assert_eq!(two[4], "*3\r\n$9\r\nsubscribe\r\n$6\r\norders\r\n:1\r\n");
    assert_eq!(
        two[5], ":1\r\n",
        "SPUBLISH reached the shard subscriber only"
    );
    assert_eq!(
        two[6],
        "*3\r\n$8\r\nsmessage\r\n$6\r\norders\r\n$3\r\none\r\n"
    );
}

/// The same in front of redis-server groups (the home is then a redis-server).
#[test]
fn pubsub_through_redis_server_groups() {
    let Some(c) = Cluster::start_redis("") else {
        return;
    };
    let Some((r, _dir)) = testkit::redis_server(&[]) else {
        return;
    };
    assert_same_as_redis(conversation, c.port, r.port);
    assert_same_as_redis(shard_conversation, c.port, r.port);
}

/// `session_recv_timeout` closes idle clients, but never a subscriber (as Redis's `timeout`),
/// and counts again from when it leaves subscribed mode.
#[test]
fn idle_timeout_spares_subscribers() {
    let c = Cluster::start("session_recv_timeout = \"1s\"\n");
    let mut sub = Frames::open(c.port);
    assert!(sub.ask(&["SUBSCRIBE", "quiet"]).ends_with(":1\r\n"));
    std::thread::sleep(Duration::from_millis(2500));
    let mut p = Frames::open(c.port);
    assert_eq!(p.ask(&["PUBLISH", "quiet", "still here"]), ":1\r\n");
    assert_eq!(
        sub.next(),
        "*3\r\n$7\r\nmessage\r\n$5\r\nquiet\r\n$10\r\nstill here\r\n"
    );
    assert!(sub.ask(&["UNSUBSCRIBE"]).ends_with(":0\r\n"));
    assert_eq!(sub.ask(&["PING"]), "+PONG\r\n");
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        sub.closed(),
        "an idle client outside subscribed mode stays open"
    );
}

/// Subscribers on several proxy sessions; the publisher on another; a QUIT while subscribed.
#[test]
fn many_subscribers_and_quit() {
    let c = Cluster::start("");
    let mut subs: Vec<Frames> = (0..5).map(|_| Frames::open(c.port)).collect();
    for (i, s) in subs.iter_mut().enumerate() {
        let r = s.ask(&["SUBSCRIBE", "fan"]);
        assert!(r.ends_with(":1\r\n"), "{i}: {r}");
    }
    let mut p = Frames::open(c.port);
    assert_eq!(p.ask(&["PUBLISH", "fan", "out"]), ":5\r\n");
    // Operators see them: /proxy/stats, /metrics and INFO clients.
    assert_eq!(c.stats()["sessions_subscribed"], 5);
    let (_, metrics) = c.http("GET", "/metrics");
    assert!(
        metrics.contains("codis_proxy_sessions_subscribed 5"),
        "{metrics}"
    );
    assert!(p.ask(&["INFO", "clients"]).contains("pubsub_clients:5\r\n"));
    let list = p.ask(&["CLIENT", "LIST"]);
    assert_eq!(
        list.matches(" flags=P db=0 sub=1 psub=0 ").count(),
        5,
        "{list}"
    );
    assert_eq!(
        list.matches(" flags=N db=0 sub=0 psub=0 ").count(),
        1,
        "{list}"
    );
    // A client in MULTI is flagged x, as on Redis, until DISCARD.
    let mut m = Frames::open(c.port);
    assert_eq!(m.ask(&["MULTI"]), "+OK\r\n");
    let list = p.ask(&["CLIENT", "LIST"]);
    assert_eq!(list.matches(" flags=x ").count(), 1, "{list}");
    assert_eq!(m.ask(&["DISCARD"]), "+OK\r\n");
    let list = p.ask(&["CLIENT", "LIST"]);
    assert_eq!(list.matches(" flags=x ").count(), 0, "{list}");
    for s in &mut subs {
        assert_eq!(
            s.next(),
            "*3\r\n$7\r\nmessage\r\n$3\r\nfan\r\n$3\r\nout\r\n"
        );
    }
    assert_eq!(subs[0].ask(&["QUIT"]), "+OK\r\n");
    let start = Instant::now();
    loop {
        let n = p.ask(&["PUBSUB", "NUMSUB", "fan"]);
        if n == "*2\r\n$3\r\nfan\r\n:4\r\n" && c.stats()["sessions_subscribed"] == 4 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "QUIT left the subscription: {n}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// All of group 1's slots move to group 2: the pub/sub home becomes group 2's master, and a
/// subscriber keeps receiving what is published through the proxy.
#[test]
fn subscriptions_follow_the_home() {
    let c = Cluster::start("");
    let mut sub = Frames::open(c.port);
    assert!(sub.ask(&["SUBSCRIBE", "moving"]).ends_with(":1\r\n"));
    assert!(sub.ask(&["PSUBSCRIBE", "mov*"]).ends_with(":2\r\n"));
    assert!(sub.ask(&["SSUBSCRIBE", "smoving"]).ends_with(":1\r\n"));
    let mut p = Frames::open(c.port);
    assert_eq!(p.ask(&["PUBLISH", "moving", "one"]), ":2\r\n");
    sub.next();
    sub.next();
    let numsub = |gid: u32| {
        let mut b = c.backend(gid);
        let v: Vec<redis::Value> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg("moving")
            .query(&mut b)
            .unwrap();
        match v.get(1) {
            Some(redis::Value::Int(n)) => *n,
            other => panic!("PUBSUB NUMSUB: {other:?}"),
        }
    };
    assert_eq!((numsub(1), numsub(2)), (1, 0), "home is group 1's master");
    let home = |p: &mut Frames| {
        let info = p.ask(&["INFO", "proxy"]);
        let line = info
            .lines()
            .find(|l| l.starts_with("pubsub_home:"))
            .map(str::to_string);
        line.unwrap_or_default()
    };
    assert_eq!(home(&mut p), format!("pubsub_home:{}", c.server_addr(1)));
    let slots: Vec<SlotMapping> = (0..1024u32)
        .map(|id| SlotMapping {
            id,
            group_id: 2,
            ..Default::default()
        })
        .collect();
    c.rt.block_on(c.store.update_slot_mappings(&slots)).unwrap();
    let start = Instant::now();
    while (numsub(1), numsub(2)) != (0, 1) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the subscriber never moved"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // PUBLISH through the proxy now goes to group 2 too (once the proxy has the new table).
    let start = Instant::now();
    loop {
        match p.ask(&["PUBLISH", "moving", "two"]).as_str() {
            ":2\r\n" => break,
            r => assert!(start.elapsed() < Duration::from_secs(20), "PUBLISH: {r}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(home(&mut p), format!("pubsub_home:{}", c.server_addr(2)));
    let mut msgs = vec![sub.next(), sub.next()];
    msgs.sort();
    assert_eq!(
        msgs,
        [
            "*3\r\n$7\r\nmessage\r\n$6\r\nmoving\r\n$3\r\ntwo\r\n",
            "*4\r\n$8\r\npmessage\r\n$4\r\nmov*\r\n$6\r\nmoving\r\n$3\r\ntwo\r\n",
        ]
    );
    // The shard channel moved with the rest.
    assert_eq!(p.ask(&["SPUBLISH", "smoving", "three"]), ":1\r\n");
    assert_eq!(
        sub.next(),
        "*3\r\n$8\r\nsmessage\r\n$7\r\nsmoving\r\n$5\r\nthree\r\n"
    );
    // The re-subscription's confirmations never reached the client: the next reply is PING's.
    assert_eq!(sub.ask(&["PING"]), "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    assert!(sub.ask(&["UNSUBSCRIBE", "moving"]).ends_with(":1\r\n"));
}
