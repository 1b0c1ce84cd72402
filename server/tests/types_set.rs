//! Set commands over TCP, including multi-key commands whose keys live on different cores.

mod types_common;
use types_common::{codis2, differential, Raw};

/// Two keys of each core parity (`resp::slot(key) % 2` picks the core of a two-core server).
fn keys_on(core: u16, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("k{i}"))
        .filter(|k| resp::slot(k.as_bytes()) % 2 == core)
        .take(n)
        .collect()
}

#[test]
fn set_basics_and_errors() {
    let srv = codis2();
    let mut c = Raw::connect(srv.port);
    assert_eq!(c.q("SADD s 3 1 2 2"), ":3\r\n");
    assert_eq!(c.q("OBJECT ENCODING s"), "$6\r\nintset\r\n");
    assert_eq!(c.q("SMEMBERS s"), "*3\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n");
    assert_eq!(c.q("SADD s 01"), ":1\r\n");
    assert_eq!(c.q("OBJECT ENCODING s"), "$9\r\nhashtable\r\n");
    assert_eq!(c.q("SISMEMBER s 01"), ":1\r\n");
    assert_eq!(c.q("SISMEMBER s 4"), ":0\r\n");
    assert_eq!(c.q("SMISMEMBER s 1 9"), "*2\r\n:1\r\n:0\r\n");
    assert_eq!(c.q("SREM s 1 2 3 01"), ":4\r\n");
    assert_eq!(c.q("EXISTS s"), ":0\r\n");
    c.q("SET str x");
    assert_eq!(
        c.q("SADD str a"),
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    );
    assert_eq!(
        c.q("SINTERCARD 0 a"),
        "-ERR numkeys should be greater than 0\r\n"
    );
    assert_eq!(
        c.q("SINTERCARD 3 a b"),
        "-ERR Number of keys can't be greater than number of args\r\n"
    );
    assert_eq!(
        c.q("SINTERCARD 1 a LIMIT -1"),
        "-ERR LIMIT can't be negative\r\n"
    );
    assert_eq!(
        c.q("SPOP s -1"),
        "-ERR value is out of range, must be positive\r\n"
    );
    for i in 0..513 {
        c.q(&format!("SADD many {i}"));
    }
    assert_eq!(c.q("OBJECT ENCODING many"), "$9\r\nhashtable\r\n");
    assert_eq!(c.q("SCARD many"), ":513\r\n");
}

#[test]
fn multi_key_set_commands_across_cores() {
    let srv = codis2();
    let mut c = Raw::connect(srv.port);
    let a = &keys_on(0, 1)[0];
    let b = &keys_on(1, 1)[0];
    let d = &keys_on(1, 2)[1];
    c.q(&format!("SADD {a} 1 2 3 x"));
    c.q(&format!("SADD {b} 2 3 4 x"));
    assert_eq!(c.q(&format!("SINTERSTORE {d} {a} {b}")), ":3\r\n");
    assert_eq!(c.q(&format!("SCARD {d}")), ":3\r\n");
    assert_eq!(c.q(&format!("SINTERCARD 2 {a} {b} LIMIT 2")), ":2\r\n");
    assert_eq!(c.q(&format!("SMOVE {a} {b} 1")), ":1\r\n");
    assert_eq!(c.q(&format!("SISMEMBER {b} 1")), ":1\r\n");
    assert_eq!(c.q(&format!("SISMEMBER {a} 1")), ":0\r\n");
    assert_eq!(c.q(&format!("SDIFFSTORE {d} {b} {a}")), ":2\r\n");
    assert_eq!(
        c.q(&format!("SMEMBERS {d}")),
        "*2\r\n$1\r\n1\r\n$1\r\n4\r\n"
    );
    assert_eq!(c.q(&format!("SDIFFSTORE {d} nokey {a}")), ":0\r\n");
    assert_eq!(c.q(&format!("EXISTS {d}")), ":0\r\n");
}

#[test]
fn spop_and_srandmember_invariants() {
    let srv = codis2();
    let mut c = Raw::connect(srv.port);
    c.q("SADD s a b c d");
    assert!(c.q("SPOP s 2").starts_with("*2\r\n"));
    assert_eq!(c.q("SCARD s"), ":2\r\n");
    assert!(c.q("SRANDMEMBER s -5").starts_with("*5\r\n"));
    assert!(c.q("SRANDMEMBER s 5").starts_with("*2\r\n"));
    assert!(c.q("SPOP s 10").starts_with("*2\r\n"));
    assert_eq!(c.q("EXISTS s"), ":0\r\n");
    assert_eq!(c.q("SPOP s"), "$-1\r\n");
}

#[test]
fn sets_match_redis() {
    differential(
        "sadd s 1 2 3 2
        sadd s a
        sorted smembers s
        scard s
        sismember s 1
        smismember s 1 zz a
        srem s 1 zz
        sadd i 5 3 1 -2 10
        smembers i
        object encoding i
        sadd i 01
        object encoding i
        sadd j 1 2 3 4
        sorted sinter i j
        sinter i nokey
        sorted sunion j nokey
        sorted sdiff j i
        sdiff nokey j
        sinterstore d i j
        sorted smembers d
        sunionstore d j nokey
        sdiffstore d nokey j
        exists d
        set str v
        sinter str i
        sinter nokey str
        sunion i str
        sintercard 2 i j
        sintercard 2 i j limit 1
        sintercard 2 i j foo
        smove j i 4
        smove j i 99
        smove j str 1
        smove nokey i 1
        smove j j 1
        spop nokey
        spop nokey 2
        spop j 0
        srandmember nokey
        srandmember nokey 5
        srandmember j 0
        sadd big2 -1 b c
        object encoding big2
        sadd e 9
        srem e 9
        exists e
        sadd x 7
        rename x y
        smembers y
        type y",
    );
}

/// SPOP and SRANDMEMBER draw from big table-encoded sets without listing them: popping a
/// 20,000-member set one by one yields every member exactly once, draws keep landing on many
/// different members (not the same few), and they still work once the set is nearly empty (the
/// table shrinks as it empties, so a random probe keeps finding members).
#[test]
fn random_members_of_a_big_set() {
    use std::collections::HashSet;
    let srv = codis2();
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{}/", srv.port))
        .unwrap()
        .get_connection()
        .unwrap();
    let n = 20_000;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let members: Vec<String> = chunk.iter().map(|i| format!("m{i}")).collect();
        let _: i64 = redis::cmd("SADD")
            .arg("big")
            .arg(&members)
            .query(&mut c)
            .unwrap();
    }
    let enc: String = redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg("big")
        .query(&mut c)
        .unwrap();
    assert_eq!(enc, "hashtable");

    let mut seen = HashSet::new();
    for _ in 0..2000 {
        let m: String = redis::cmd("SRANDMEMBER").arg("big").query(&mut c).unwrap();
        seen.insert(m);
    }
    assert!(
        seen.len() > 1500,
        "2,000 draws hit only {} members",
        seen.len()
    );
    let distinct: Vec<String> = redis::cmd("SRANDMEMBER")
        .arg("big")
        .arg(500)
        .query(&mut c)
        .unwrap();
    assert_eq!(distinct.iter().collect::<HashSet<_>>().len(), 500);
    let repeats: Vec<String> = redis::cmd("SRANDMEMBER")
        .arg("big")
        .arg(-300)
        .query(&mut c)
        .unwrap();
    assert_eq!(repeats.len(), 300);

    let mut popped = HashSet::new();
    for left in (1..=n).rev() {
        if left == 10 {
            // Nearly empty: draws still find the last members.
            let m: String = redis::cmd("SRANDMEMBER").arg("big").query(&mut c).unwrap();
            assert!(!popped.contains(&m));
            let rest: Vec<String> = redis::cmd("SPOP")
                .arg("big")
                .arg(100)
                .query(&mut c)
                .unwrap();
            assert_eq!(rest.len(), 10);
            popped.extend(rest);
            break;
        }
        let m: String = redis::cmd("SPOP").arg("big").query(&mut c).unwrap();
        assert!(popped.insert(m), "a member popped twice");
    }
    assert_eq!(popped.len(), n);
    assert!(popped.iter().all(|m| m.starts_with('m')));
    let exists: i64 = redis::cmd("EXISTS").arg("big").query(&mut c).unwrap();
    assert_eq!(exists, 0);
}
