//! DUMP/RESTORE: every type dumped by codis-server restores in a real redis-server 7.0 and the
//! other way round (small and big encodings), plus RESTORE's options and errors.

mod types_common;
use types_common::{codis2, sort_reply, Raw};

/// Commands building one key per type and encoding.
const BUILD: &[&str] = &[
    "SET str hello",
    "SET int 12345",
    "HSET hsmall a 1 b 2",
    "RPUSH lsmall a b c",
    "SADD sint 1 2 3",
    "SADD sstr a b c",
    "ZADD zsmall 1 a 2.5 b -inf c",
];

/// Read-back commands whose (sorted) replies must agree.
const CHECK: &[&str] = &[
    "GET str",
    "GET int",
    "HGETALL hsmall",
    "HGETALL hbig",
    "LRANGE lsmall 0 -1",
    "LRANGE lbig 0 -1",
    "SMEMBERS sint",
    "SMEMBERS sstr",
    "SMEMBERS sbig",
    "ZRANGE zsmall 0 -1 WITHSCORES",
    "ZRANGE zbig 0 -1 WITHSCORES",
];

fn build(c: &mut Raw) {
    for cmd in BUILD {
        c.q(cmd);
    }
    // Past hash-max-listpack-entries (512): a hash table.
    for i in 0..600 {
        c.q(&format!("HSET hbig field{i} value{i}"));
    }
    for i in 0..300 {
        c.q(&format!("RPUSH lbig element-{i}"));
        c.q(&format!("SADD sbig m{i}"));
        c.q(&format!("ZADD zbig {i} m{i}"));
    }
}

fn keys() -> Vec<&'static str> {
    CHECK
        .iter()
        .map(|c| c.split(' ').nth(1).unwrap_or(""))
        .collect()
}

fn copy_all(from: &mut Raw, to: &mut Raw) {
    for k in keys() {
        let payload = from.qb(&[b"DUMP", k.as_bytes()]);
        assert!(
            payload.starts_with(b"$"),
            "DUMP {k}: {}",
            String::from_utf8_lossy(&payload)
        );
        let start = payload.iter().position(|&b| b == b'\n').unwrap() + 1;
        let body = &payload[start..payload.len() - 2];
        let r = to.qb(&[b"RESTORE", k.as_bytes(), b"0", body]);
        assert_eq!(
            r,
            b"+OK\r\n",
            "RESTORE {k}: {}",
            String::from_utf8_lossy(&r)
        );
    }
}

fn same(a: &mut Raw, b: &mut Raw) {
    for cmd in CHECK {
        assert_eq!(sort_reply(&a.q(cmd)), sort_reply(&b.q(cmd)), "{cmd}");
    }
}

#[test]
fn codis_dumps_restore_in_redis_and_back() {
    let Some((redis, _dir)) = testkit::redis_server(&[]) else {
        return;
    };
    let codis = codis2();
    let mut c = Raw::connect(codis.port);
    let mut r = Raw::connect(redis.port);
    build(&mut c);
    copy_all(&mut c, &mut r);
    same(&mut c, &mut r);
    // Redis's own dumps (listpack, quicklist, intset, hashtable, skiplist) restore here.
    let codis2 = codis2();
    let mut c2 = Raw::connect(codis2.port);
    copy_all(&mut r, &mut c2);
    same(&mut c2, &mut r);
    assert_eq!(c2.q("OBJECT ENCODING hbig"), "$9\r\nhashtable\r\n");
    assert_eq!(c2.q("OBJECT ENCODING sint"), "$6\r\nintset\r\n");
    assert_eq!(c2.q("OBJECT ENCODING zsmall"), "$8\r\nlistpack\r\n");
}

#[test]
fn restore_options_and_errors() {
    let srv = codis2();
    let mut c = Raw::connect(srv.port);
    c.q("RPUSH l a b");
    let p = c.qb(&[b"DUMP", b"l"]);
    let start = p.iter().position(|&b| b == b'\n').unwrap() + 1;
    let body = p[start..p.len() - 2].to_vec();
    let busy = c.qb(&[b"RESTORE", b"l", b"0", &body]);
    assert_eq!(busy, b"-BUSYKEY Target key name already exists.\r\n");
    assert_eq!(
        c.qb(&[b"RESTORE", b"l", b"0", &body, b"REPLACE"]),
        b"+OK\r\n"
    );
    assert_eq!(c.qb(&[b"RESTORE", b"t", b"100000", &body]), b"+OK\r\n");
    let pttl = c.q("PTTL t");
    assert!(
        pttl.starts_with(':') && pttl != ":-1\r\n" && pttl != ":-2\r\n",
        "{pttl}"
    );
    // An absolute TTL in the past: OK, but nothing is stored.
    assert_eq!(
        c.qb(&[b"RESTORE", b"past", b"1", &body, b"ABSTTL"]),
        b"+OK\r\n"
    );
    assert_eq!(c.q("EXISTS past"), ":0\r\n");
    assert_eq!(
        c.qb(&[b"RESTORE", b"x", b"-1", &body]),
        b"-ERR Invalid TTL value, must be >= 0\r\n"
    );
    assert_eq!(
        c.qb(&[b"RESTORE", b"x", b"0", &body, b"IDLETIME", b"-1"]),
        b"-ERR Invalid IDLETIME value, must be >= 0\r\n"
    );
    assert_eq!(
        c.qb(&[b"RESTORE", b"x", b"0", &body, b"FREQ", b"300"]),
        b"-ERR Invalid FREQ value, must be >= 0 and <= 255\r\n"
    );
    assert_eq!(
        c.qb(&[
            b"RESTORE",
            b"x",
            b"0",
            &body,
            b"IDLETIME",
            b"5",
            b"FREQ",
            b"1"
        ]),
        b"-ERR syntax error\r\n"
    );
    assert_eq!(
        c.qb(&[b"RESTORE", b"x", b"0", &body, b"IDLETIME", b"5"]),
        b"+OK\r\n"
    );
    assert_eq!(
        c.qb(&[b"RESTORE", b"y", b"0", b"garbage"]),
        b"-ERR DUMP payload version or checksum are wrong\r\n"
    );
    assert_eq!(c.q("DUMP nokey"), "$-1\r\n");
}
