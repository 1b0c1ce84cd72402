//! Sorted-set commands over TCP: a differential run against redis-server 7.0 (options, ranges
//! by rank/score/lex with exclusive and infinite bounds, LIMIT, REV, stores, aggregates, errors,
//! RESP3 doubles), encodings, and BZPOPMIN woken by a ZADD on another core.

mod types_common;
use std::thread::sleep;
use std::time::Duration;

use types_common::{codis2, differential, Raw};

#[test]
fn zsets_match_redis() {
    differential(
        "zadd z 1 a 2 b 3 c
        zadd z 1.5 a
        zadd z nx 9 a 4 d
        zadd z xx 9 a 4 e
        zadd z xx ch 10 a
        zadd z gt ch 5 a 20 b
        zadd z lt ch 5 a
        zadd z incr 2 a
        zadd z nx incr 2 a
        zadd z xx nx 1 a
        zadd z gt lt 1 a
        zadd z gt nx 1 a
        zadd z incr 1 a 2 b
        zadd z 1 a 2
        zadd z x a
        zadd z
        zadd nokey xx 1 a
        exists nokey
        zadd z -inf m inf n
        zadd z incr inf n
        zadd z incr -inf n
        zrange z 0 -1 withscores
        zcard z
        zscore z a
        zscore z q
        zmscore z a q b
        zrank z a
        zrevrank z a
        zrank z q
        zincrby z 2.5 c
        zincrby z x c
        zincrby z 1 new
        zcount z -inf +inf
        zcount z (1 3
        zcount z 1 (3
        zcount z x 3
        zcount z 3 1
        zrange z 0 -1
        zrange z -2 -1 withscores
        zrange z 1 0
        zrange z 0 -1 rev
        zrange z (1 5 byscore
        zrange z 5 (1 byscore rev withscores
        zrange z -inf +inf byscore limit 1 2
        zrange z -inf +inf byscore limit 1 -1
        zrange z -inf +inf byscore limit -1 2
        zrange z 0 -1 limit 1 2
        zrange z - + bylex withscores
        zrange z a b foo
        zrangebyscore z -inf +inf withscores limit 0 3
        zrangebyscore z (2 +inf
        zrevrangebyscore z +inf -inf withscores
        zrevrangebyscore z 2 1
        zrevrange z 0 2 withscores
        zrevrange z 0 2 limit 0 1
        zadd l 0 a 0 b 0 c 0 d 0 e
        zrangebylex l - +
        zrangebylex l [b (d
        zrangebylex l (b [d limit 1 1
        zrevrangebylex l + -
        zrevrangebylex l [d (a
        zrangebylex l a b
        zrangebylex l [a [b withscores
        zlexcount l - +
        zlexcount l [b [c
        zlexcount l x y
        zrange l [b [d bylex
        zrange l [d [b bylex rev
        zrangestore dst z 0 1
        zrange dst 0 -1 withscores
        zrangestore dst l [b [c bylex
        zrange dst 0 -1
        zrangestore dst z 10 20
        exists dst
        zremrangebyrank l 0 1
        zrange l 0 -1
        zremrangebylex l [d +
        zrange l 0 -1
        zremrangebyscore z (1 3
        zrange z 0 -1 withscores
        zpopmin z
        zpopmax z
        zpopmin z 2
        zpopmax z 0
        zpopmin z -1
        zpopmin nokey
        zpopmin nokey 2
        zadd p 1 a 2 b 3 c
        zmpop 1 p min
        zmpop 2 nokey p max count 5
        zmpop 1 nokey min
        zmpop 0 p min
        zmpop 1 p middle
        exists p
        bzpopmin nokey 0.01
        zadd p 1 a
        bzpopmax p 0
        zadd p 5 e
        bzmpop 0 1 p min
        zadd u1 1 a 2 b 3 c
        zadd u2 4 b 5 c 6 d
        sadd s3 c d e
        zunion 2 u1 u2 withscores
        zunion 2 u1 u2 weights 2 3 withscores
        zunion 2 u1 u2 aggregate max withscores
        zunion 2 u1 u2 aggregate min withscores
        zinter 2 u1 u2 withscores
        zinter 3 u1 u2 s3 withscores
        zdiff 2 u1 u2 withscores
        zdiff 2 u1 u2 weights 1 2
        zunion 0 u1
        zunion 3 u1 u2
        zunion 2 u1 u2 weights 1 x
        zunion 2 u1 u2 aggregate foo
        zunionstore out 2 u1 u2
        zrange out 0 -1 withscores
        zinterstore out 2 u1 u2 weights 1 -1
        zrange out 0 -1 withscores
        zdiffstore out 2 u1 u1
        exists out
        zunionstore out 0 u1
        zintercard 2 u1 u2
        zintercard 2 u1 u2 limit 1
        zintercard 0 u1
        set str x
        zunion 2 u1 str
        zadd str 1 a
        zrange str 0 -1
        zadd inf 1 a
        zunion 2 inf inf weights inf -inf withscores
        zrandmember nokey
        zrandmember nokey 5
        zrandmember u1 0
        zscan u1 0
        zscan u1 0 match a*
        object encoding u1
        type u1
        zadd big 1 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
        object encoding big
        zadd d 1.1 a 0.1 b 1e300 c -0 d 3.0 e
        zrange d 0 -1 withscores
        zscore d d
        zadd d 1e-10 f
        zscore d f
        skip hello 3
        zrange d 0 -1 withscores
        zscore d a
        zpopmin d
        zpopmin d 2
        zunion 1 d withscores
        zrandmember d 0 withscores
        bzpopmin d 0
        zmpop 1 d max
        zrank z a withscore",
    );
}

#[test]
fn zset_encodings_and_big_sets() {
    let srv = codis2();
    let mut c = Raw::connect(srv.port);
    assert_eq!(c.q("ZADD z 1 a"), ":1\r\n");
    assert_eq!(c.q("OBJECT ENCODING z"), "$8\r\nlistpack\r\n");
    for i in 0..200 {
        c.q(&format!("ZADD z {} m{i:03}", 200 - i));
    }
    assert_eq!(c.q("OBJECT ENCODING z"), "$8\r\nskiplist\r\n");
    assert_eq!(c.q("ZCARD z"), ":201\r\n");
    assert_eq!(c.q("ZRANK z m199"), ":1\r\n");
    assert_eq!(c.q("ZREVRANK z m000"), ":0\r\n");
    assert_eq!(c.q("ZRANGE z 0 1"), "*2\r\n$1\r\na\r\n$4\r\nm199\r\n");
    assert_eq!(c.q("ZRANGEBYSCORE z (199 +inf"), "*1\r\n$4\r\nm000\r\n");
    assert_eq!(c.q("ZCOUNT z -inf (2"), ":2\r\n");
    assert_eq!(c.q("ZREMRANGEBYSCORE z 0 100"), ":101\r\n");
    assert_eq!(c.q("ZCARD z"), ":100\r\n");
}

#[test]
fn bzpopmin_is_woken_by_zadd_on_another_core() {
    let srv = codis2();
    let keys: Vec<String> = (0..)
        .map(|i| format!("z{i}"))
        .filter(|k| !resp::slot(k.as_bytes()).is_multiple_of(2))
        .take(1)
        .chain(
            (0..)
                .map(|i| format!("z{i}"))
                .filter(|k| resp::slot(k.as_bytes()).is_multiple_of(2))
                .take(1),
        )
        .collect();
    let (a, b) = (&keys[0], &keys[1]);
    let mut w = Raw::connect(srv.port);
    let mut p = Raw::connect(srv.port);
    w.send_line(&format!("BZPOPMIN {a} 0"));
    sleep(Duration::from_millis(200));
    p.q(&format!("ZADD {a} 2 y 1 x"));
    assert_eq!(
        String::from_utf8_lossy(&w.read()),
        format!("*3\r\n${}\r\n{a}\r\n$1\r\nx\r\n$1\r\n1\r\n", a.len())
    );
    w.send_line(&format!("BZPOPMAX {b} {a} 0"));
    assert_eq!(
        String::from_utf8_lossy(&w.read()),
        format!("*3\r\n${}\r\n{a}\r\n$1\r\ny\r\n$1\r\n2\r\n", a.len())
    );
    w.send_line(&format!("BZMPOP 0 2 {a} {b} MIN"));
    sleep(Duration::from_millis(200));
    p.q(&format!("ZADD {b} 5 q"));
    assert_eq!(
        String::from_utf8_lossy(&w.read()),
        format!(
            "*2\r\n${}\r\n{b}\r\n*1\r\n*2\r\n$1\r\nq\r\n$1\r\n5\r\n",
            b.len()
        )
    );
    assert_eq!(w.q(&format!("BZPOPMIN {a} {b} 0.05")), "*-1\r\n");
    // ZUNIONSTORE across cores.
    p.q(&format!("ZADD {a} 1 m"));
    p.q(&format!("ZADD {b} 2 m"));
    assert_eq!(p.q(&format!("ZUNIONSTORE {a} 2 {a} {b}")), ":1\r\n");
    assert_eq!(p.q(&format!("ZSCORE {a} m")), "$1\r\n3\r\n");
}
