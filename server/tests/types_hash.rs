//! Hash commands over TCP: byte-exact replies, errors, encodings, and a differential run against
//! redis-server 7.0.

mod types_common;
use types_common::{codis2, differential, Raw};

#[test]
fn hash_basics_and_errors() {
    let srv = codis2();
    let mut c = Raw::connect(srv.port);
    assert_eq!(c.q("HSET h a 1 b 2"), ":2\r\n");
    assert_eq!(c.q("HSET h a 3"), ":0\r\n");
    assert_eq!(c.q("HGET h a"), "$1\r\n3\r\n");
    assert_eq!(c.q("HGET h nope"), "$-1\r\n");
    assert_eq!(
        c.q("HGETALL h"),
        "*4\r\n$1\r\na\r\n$1\r\n3\r\n$1\r\nb\r\n$1\r\n2\r\n"
    );
    assert_eq!(
        c.q("HSET h a"),
        "-ERR wrong number of arguments for 'hset' command\r\n"
    );
    assert_eq!(
        c.q("HMSET h a 1 b"),
        "-ERR wrong number of arguments for 'hmset' command\r\n"
    );
    assert_eq!(c.q("OBJECT ENCODING h"), "$8\r\nlistpack\r\n");
    assert_eq!(c.q("TYPE h"), "+hash\r\n");
    assert_eq!(c.q("SET s x"), "+OK\r\n");
    assert_eq!(
        c.q("HGET s a"),
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    );
    assert_eq!(c.q("HSET h n x"), ":1\r\n");
    assert_eq!(
        c.q("HINCRBY h n 1"),
        "-ERR hash value is not an integer\r\n"
    );
    assert_eq!(
        c.q("HINCRBYFLOAT h n 1"),
        "-ERR hash value is not a float\r\n"
    );
    assert_eq!(
        c.q("HINCRBY h i 9223372036854775807"),
        ":9223372036854775807\r\n"
    );
    assert_eq!(
        c.q("HINCRBY h i 1"),
        "-ERR increment or decrement would overflow\r\n"
    );
    assert_eq!(c.q("HINCRBYFLOAT h f 1.5"), "$3\r\n1.5\r\n");
    // Empty hashes are deleted.
    assert_eq!(c.q("HDEL h a b n i f"), ":5\r\n");
    assert_eq!(c.q("EXISTS h"), ":0\r\n");
    // Conversion past hash-max-listpack-value / -entries.
    let long = "x".repeat(65);
    assert_eq!(c.q(&format!("HSET big f {long}")), ":1\r\n");
    assert_eq!(c.q("OBJECT ENCODING big"), "$9\r\nhashtable\r\n");
    // redis-server's built-in default is 512 entries (its sample redis.conf says 128).
    for i in 0..512 {
        c.q(&format!("HSET many f{i} v"));
    }
    assert_eq!(c.q("OBJECT ENCODING many"), "$8\r\nlistpack\r\n");
    c.q("HSET many f512 v");
    assert_eq!(c.q("OBJECT ENCODING many"), "$9\r\nhashtable\r\n");
    assert_eq!(c.q("HLEN many"), ":513\r\n");
    assert_eq!(
        c.q("CONFIG GET hash-max-listpack-entries"),
        "*2\r\n$25\r\nhash-max-listpack-entries\r\n$3\r\n512\r\n"
    );
}

#[test]
fn hscan_walks_a_big_hash_completely() {
    let srv = codis2();
    let mut c = Raw::connect(srv.port);
    // Past hash-max-listpack-entries (512), so a table, walked in pages.
    for i in 0..1000 {
        c.q(&format!("HSET h f{i} {i}"));
    }
    let mut seen = std::collections::HashSet::new();
    let mut cursor = "0".to_string();
    let mut rounds = 0;
    loop {
        let r = c.q(&format!("HSCAN h {cursor} COUNT 50"));
        let lines: Vec<&str> = r.split("\r\n").collect();
        cursor = lines[2].to_string();
        for pair in lines[4..].chunks(4) {
            if pair.len() >= 2 && !pair[1].is_empty() {
                seen.insert(pair[1].to_string());
            }
        }
        rounds += 1;
        if cursor == "0" {
            break;
        }
        assert!(rounds < 100);
    }
    assert_eq!(seen.len(), 1000);
    assert!(rounds > 5, "a big hash is walked in pages");
}

#[test]
fn hrandfield_invariants() {
    let srv = codis2();
    let mut c = Raw::connect(srv.port);
    c.q("HSET h a 1 b 2 c 3");
    assert_eq!(c.q("HRANDFIELD nokey"), "$-1\r\n");
    assert_eq!(c.q("HRANDFIELD nokey 3"), "*0\r\n");
    assert_eq!(c.q("HRANDFIELD h 0"), "*0\r\n");
    assert!(c.q("HRANDFIELD h 10").starts_with("*3\r\n"));
    assert!(c.q("HRANDFIELD h -10").starts_with("*10\r\n"));
    assert!(c.q("HRANDFIELD h 2 WITHVALUES").starts_with("*4\r\n"));
    assert_eq!(c.q("HRANDFIELD h 2 foo"), "-ERR syntax error\r\n");
}

#[test]
fn hashes_match_redis() {
    differential(
        "hset h a 1 b 2 c 3
        hset h a 5
        hget h a
        hmget h a zz b
        hmget nokey a
        hgetall h
        hkeys h
        hvals h
        hlen h
        hstrlen h a
        hstrlen h zz
        hexists h a
        hdel h a q
        hgetall h
        hsetnx h b 9
        hsetnx h z 9
        hincrby h b 10
        hincrby h b x
        hincrby h new -5
        hset h s hello
        hincrby h s 1
        hincrbyfloat h f 1.5
        hincrbyfloat h f 2.5
        hincrbyfloat h f abc
        hincrbyfloat h f inf
        hmset h x 1 y 2
        set str v
        hget str a
        hset str a 1
        hgetall str
        hlen str
        hdel h b z new s f x y c
        exists h
        hscan h 0
        hset h2 a 1 b 2
        hscan h2 0
        hscan h2 0 match a*
        hscan h2 0 count 0
        hscan h2 x
        hscan h2 0 foo
        object encoding h2
        hset h2 c \"\"
        hget h2 c
        rename h2 h3
        hgetall h3
        copy h3 h4
        hgetall h4
        skip hello 3
        hgetall h4
        hget h4 nope
        hmget h4 a nope",
    );
}
