//! HyperLogLog over TCP: replies and errors identical to redis-server 7.0, identical estimates for
//! growing cardinalities, and HLL strings exchanged with Redis through DUMP/RESTORE both ways
//! (Redis's sparse and dense encodings read here; our dense one read by Redis).

mod types_common;
use types_common::{codis2, differential, Raw};

#[test]
fn hll_matches_redis() {
    differential(
        "pfadd h a b c d e f g
        pfadd h a
        pfadd h
        pfadd new
        pfcount h
        pfcount nokey
        pfadd h2 x y z a
        pfcount h h2
        pfmerge m h h2
        pfcount m
        pfmerge m2 nokey
        exists m2
        pfcount m2
        set s notanhll
        pfadd s a
        pfcount s
        pfmerge m s
        hset hh a 1
        pfadd hh a
        pfcount hh h
        type h",
    );
}

fn bulk_body(reply: &[u8]) -> Vec<u8> {
    let start = reply.iter().position(|&b| b == b'\n').unwrap() + 1;
    reply[start..reply.len() - 2].to_vec()
}

#[test]
fn estimates_and_interop_with_redis() {
    let Some((redis, _dir)) = testkit::redis_server(&[]) else {
        return;
    };
    let codis = codis2();
    let mut a = Raw::connect(codis.port);
    let mut b = Raw::connect(redis.port);
    for n in [10usize, 1000, 30000] {
        let key = format!("big{n}");
        let elems: Vec<String> = (0..n).map(|i| format!("e{i}")).collect();
        for chunk in elems.chunks(1000) {
            let mut args: Vec<&[u8]> = vec![b"PFADD", key.as_bytes()];
            args.extend(chunk.iter().map(|e| e.as_bytes()));
            assert_eq!(a.qb(&args), b.qb(&args));
        }
        assert_eq!(
            a.q(&format!("PFCOUNT {key}")),
            b.q(&format!("PFCOUNT {key}")),
            "estimate of {n}"
        );
    }
    // Redis's sparse (small) and dense (big) HLLs restore here and keep counting alike.
    for key in ["big10", "big30000"] {
        let payload = bulk_body(&b.qb(&[b"DUMP", key.as_bytes()]));
        assert_eq!(
            a.qb(&[b"RESTORE", b"copy", b"0", &payload, b"REPLACE"]),
            b"+OK\r\n"
        );
        assert_eq!(a.q("PFCOUNT copy"), b.q(&format!("PFCOUNT {key}")));
        assert_eq!(
            a.q("PFADD copy new-element"),
            b.q(&format!("PFADD {key} new-element"))
        );
        assert_eq!(a.q("PFCOUNT copy"), b.q(&format!("PFCOUNT {key}")));
    }
    // Ours restores in Redis.
    let payload = bulk_body(&a.qb(&[b"DUMP", b"big1000"]));
    assert_eq!(
        b.qb(&[b"RESTORE", b"fromcodis", b"0", &payload]),
        b"+OK\r\n"
    );
    assert_eq!(b.q("PFCOUNT fromcodis"), a.q("PFCOUNT big1000"));
}
