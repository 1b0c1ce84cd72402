//! Redis 7 Functions across a slot migration: a library loaded only on group 1's server is on
//! group 2's server once `codisctl slot migrate` moved some of group 1's slots there (the
//! executor copies it with `FUNCTION DUMP` / `FUNCTION RESTORE … REPLACE` before the first slot
//! moves), and `FCALL` through the proxy on a key of a migrated slot runs on group 2. A library
//! the target cannot take (a function name it has in another library) stops the migration
//! before any slot moves, with the server's reason.

use e2e::{Cluster, Spec};
use redis::Value;
use testkit::{function_libraries as libraries, function_load};

const LIBRARY: &str = "#!lua name=migrated
redis.register_function('mget1', function(keys) return redis.call('GET', keys[1]) end)
redis.register_function('mset1', function(keys, args) return redis.call('SET', keys[1], args[1]) end)";

/// The first `prefix:N` key whose slot is in `from..=to`.
fn key_in(prefix: &str, from: u16, to: u16) -> String {
    (0..)
        .map(|i| format!("{prefix}:{i}"))
        .find(|k| (from..=to).contains(&resp::slot(k.as_bytes())))
        .unwrap()
}

#[test]
fn functions_follow_migrated_slots() {
    let c = Cluster::start_spec(Spec::new(2, &[(0, 511, 1), (512, 1023, 2)]));
    let (mut g1, mut g2) = (c.server_conn(1), c.server_conn(2));
    function_load(&mut g1, LIBRARY);
    assert!(libraries(&mut g2).is_empty());
    let mut p = c.proxy_conn();
    let key = key_in("fn", 0, 63);
    let stay = key_in("fn", 64, 511);
    for k in [&key, &stay] {
        let r: Value = redis::cmd("FCALL")
            .arg("mset1")
            .arg(1)
            .arg(k)
            .arg(format!("v-{k}"))
            .query(&mut p)
            .unwrap();
        assert_eq!(r, Value::Okay);
    }

    let out = c.ctl(&["slot", "migrate", "0", "63", "2"]);
    assert!(
        out.ok,
        "slot migrate: {} {}\n{}",
        out.stdout,
        out.stderr,
        c.logs()
    );
    assert!(c
        .slots()
        .iter()
        .all(|s| s.state.is_empty() && s.group_id == if s.id < 64 || s.id >= 512 { 2 } else { 1 }));
    assert_eq!(libraries(&mut g2), ["migrated"]);
    // The key moved with its slot; FCALL through the proxy finds the function on group 2.
    let there: Option<String> = redis::cmd("GET").arg(&key).query(&mut g2).unwrap();
    assert_eq!(there, Some(format!("v-{key}")));
    let v: String = redis::cmd("FCALL")
        .arg("mget1")
        .arg(1)
        .arg(&key)
        .query(&mut p)
        .unwrap();
    assert_eq!(v, format!("v-{key}"));
    let r: Value = redis::cmd("FCALL")
        .arg("mset1")
        .arg(1)
        .arg(&key)
        .arg("after")
        .query(&mut p)
        .unwrap();
    assert_eq!(r, Value::Okay);
    let there: Option<String> = redis::cmd("GET").arg(&key).query(&mut g2).unwrap();
    assert_eq!(there.as_deref(), Some("after"));
    let v: String = redis::cmd("FCALL")
        .arg("mget1")
        .arg(1)
        .arg(&stay)
        .query(&mut p)
        .unwrap();
    assert_eq!(v, format!("v-{stay}"));

    // Group 2 has `clash` in a library of its own: group 1's library of that name cannot go
    // there, and no slot moves.
    function_load(
        &mut g1,
        "#!lua name=one\nredis.register_function('clash', function() return 1 end)",
    );
    function_load(
        &mut g2,
        "#!lua name=two\nredis.register_function('clash', function() return 2 end)",
    );
    let out = c.ctl(&["slot", "migrate", "64", "127", "2"]);
    let text = format!("{} {}", out.stdout, out.stderr);
    assert!(!out.ok, "slot migrate succeeded: {text}");
    assert!(
        text.contains("cannot copy the functions") && text.contains("already exists"),
        "{text}"
    );
    assert!(c
        .slots()
        .iter()
        .filter(|s| (64..128).contains(&s.id))
        .all(|s| s.group_id == 1 && s.state == "pending"));
    assert_eq!(libraries(&mut g2), ["migrated", "two"]);
}
