//! SORT where codis-server departs from a non-cluster redis-server on purpose: BY/GET patterns
//! whose keys may lie in another slot are refused as Redis Cluster refuses them, and the keys a
//! pattern reads are found whichever core runs the command (`cmd/sort.rs`, `multi.rs`). Replies
//! that match redis-server are compared in `differential.rs`.

mod rawwire;

use rawwire::Raw;

const BY_DENIED: &[u8] = b"-ERR BY option of SORT denied in Cluster mode when keys formed by \
                           the pattern may be in different slots.\r\n";
const GET_DENIED: &[u8] = b"-ERR GET option of SORT denied in Cluster mode when keys formed by \
                            the pattern may be in different slots.\r\n";

/// Two hash tags whose slots belong to different cores of a two-core server.
fn tags() -> (String, String) {
    let (a, b) = rawwire::keys_on_two_cores("t");
    (format!("{{{a}}}"), format!("{{{b}}}"))
}

/// A list `{tag}l` of 1..=3 with weights `{tag}w_*` reversing it and names `{tag}o_*`.
fn fill(c: &mut Raw, tag: &str) {
    assert_eq!(c.line(&format!("RPUSH {tag}l 1 2 3")), b":3\r\n");
    assert_eq!(
        c.line(&format!(
            "MSET {tag}w_1 30 {tag}w_2 20 {tag}w_3 10 {tag}o_1 one {tag}o_2 two {tag}o_3 three"
        )),
        b"+OK\r\n"
    );
}

#[test]
fn patterns_outside_the_keys_slot_are_refused() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let mut c = Raw::connect(srv.port);
    let (u, x) = tags();
    fill(&mut c, &u);
    for cmd in ["SORT", "SORT_RO"] {
        for by in ["w_*", &format!("{x}w_*"), &format!("w_*{u}"), "{w_*}"] {
            let line = format!("{cmd} {u}l BY {by}");
            assert_eq!(c.line(&line), BY_DENIED, "{line}");
        }
        for get in ["o_*", &format!("{x}o_*"), "o_*->f"] {
            let line = format!("{cmd} {u}l GET {get}");
            assert_eq!(c.line(&line), GET_DENIED, "{line}");
        }
        // Refused while parsing, as Redis does: before the key's type is looked at, and in
        // order with the other options.
        assert_eq!(c.line(&format!("{cmd} nokey BY w_*")), BY_DENIED);
        assert_eq!(
            c.line(&format!("{cmd} {u}l FOO GET o_*")),
            b"-ERR syntax error\r\n"
        );
        assert_eq!(c.line(&format!("{cmd} {u}l GET o_* FOO")), GET_DENIED);
    }
    assert_eq!(c.line(&format!("SORT {u}l BY w_* STORE {u}d")), BY_DENIED);
    assert_eq!(c.line(&format!("EXISTS {u}d")), b":0\r\n");
    // Patterns that read no key are always accepted; so are patterns tagged with the slot.
    assert_eq!(
        c.line(&format!("SORT {u}l BY nosort GET # GET fixed DESC")),
        b"*6\r\n$1\r\n3\r\n$-1\r\n$1\r\n2\r\n$-1\r\n$1\r\n1\r\n$-1\r\n"
    );
    assert_eq!(
        c.line(&format!("SORT_RO {u}l BY {u}w_* GET {u}o_*")),
        b"*3\r\n$5\r\nthree\r\n$3\r\ntwo\r\n$3\r\none\r\n"
    );
}

#[test]
fn pattern_keys_are_read_on_every_path() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let mut c = Raw::connect(srv.port);
    let (u, x) = tags();
    fill(&mut c, &u);
    fill(&mut c, &x);
    let names = b"*3\r\n$5\r\nthree\r\n$3\r\ntwo\r\n$3\r\none\r\n";
    // On the shard owning each key (the connection sits on one of the two cores).
    for t in [&u, &x] {
        assert_eq!(c.line(&format!("SORT {t}l BY {t}w_* GET {t}o_*")), names);
    }
    // STORE on the other core: a scratch copy of both keys, pattern keys included.
    assert_eq!(
        c.line(&format!("SORT {u}l BY {u}w_* GET {u}o_* STORE {x}d")),
        b":3\r\n"
    );
    assert_eq!(c.line(&format!("LRANGE {x}d 0 -1")), names);
    // A transaction on both cores, whose own writes the SORT sees.
    assert_eq!(c.line("MULTI"), b"+OK\r\n");
    for l in [
        format!("RPUSH {u}l 4"),
        format!("SET {u}w_4 0"),
        format!("SET {u}o_4 four"),
        format!("SORT {u}l BY {u}w_* GET {u}o_* LIMIT 0 2"),
        format!("SORT {u}l BY {u}w_* GET {u}o_* STORE {x}d"),
    ] {
        assert_eq!(c.line(&l), b"+QUEUED\r\n", "{l}");
    }
    assert_eq!(
        c.line("EXEC"),
        b"*5\r\n:4\r\n+OK\r\n+OK\r\n*2\r\n$4\r\nfour\r\n$5\r\nthree\r\n:4\r\n"
    );
    assert_eq!(
        c.line(&format!("LRANGE {x}d 0 -1")),
        b"*4\r\n$4\r\nfour\r\n$5\r\nthree\r\n$3\r\ntwo\r\n$3\r\none\r\n"
    );
    // A script whose declared keys span cores runs on a scratch copy of them alone: a SORT
    // reading pattern keys is refused there rather than reading keys that are not copied.
    let eval = |c: &mut Raw, body: &str, keys: &[&str]| {
        let mut args: Vec<String> = vec!["EVAL".into(), body.into(), keys.len().to_string()];
        args.extend(keys.iter().map(|k| k.to_string()));
        let refs: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        c.cmd(&refs)
    };
    let by = format!("return redis.call('SORT', KEYS[1], 'BY', '{u}w_*', 'STORE', KEYS[2])");
    let (ul, ud, xd) = (format!("{u}l"), format!("{u}d"), format!("{x}d2"));
    assert_eq!(eval(&mut c, &by, &[&ul, &ud]), b":4\r\n");
    let refused = eval(&mut c, &by, &[&ul, &xd]);
    assert!(
        refused.starts_with(
            b"-ERR Script attempted to access a key that is neither declared nor on this core"
        ),
        "{}",
        String::from_utf8_lossy(&refused)
    );
    assert_eq!(c.line(&format!("EXISTS {x}d2")), b":0\r\n");
    let plain = "return redis.call('SORT', KEYS[1], 'STORE', KEYS[2])";
    assert_eq!(eval(&mut c, plain, &[&ul, &xd]), b":4\r\n");
    assert_eq!(
        c.line(&format!("LRANGE {x}d2 0 -1")),
        b"*4\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n$1\r\n4\r\n"
    );
}
