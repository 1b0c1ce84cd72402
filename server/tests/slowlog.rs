//! SLOWLOG as in Redis 7.0: entries for commands slower than `slowlog-log-slower-than`, newest
//! first, with Redis's argument limits, the client's address and name, whichever core ran them.

use redis::Value;

fn slowlog(c: &mut redis::Connection, count: i64) -> Vec<Value> {
    redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(count)
        .query(c)
        .unwrap()
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).to_string(),
        Value::SimpleString(s) => s.clone(),
        other => panic!("not text: {other:?}"),
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        other => panic!("not an integer: {other:?}"),
    }
}

/// (id, micros, args, addr, name) of one entry.
fn entry(v: &Value) -> (i64, i64, Vec<String>, String, String) {
    let Value::Array(f) = v else {
        panic!("entry is not an array: {v:?}")
    };
    assert_eq!(f.len(), 6, "{f:?}");
    assert!(int(&f[1]) > 1_600_000_000, "unix timestamp");
    let Value::Array(args) = &f[3] else {
        panic!("args: {:?}", f[3])
    };
    (
        int(&f[0]),
        int(&f[2]),
        args.iter().map(text).collect(),
        text(&f[4]),
        text(&f[5]),
    )
}

fn config_set(c: &mut redis::Connection, k: &str, v: &str) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(k)
        .arg(v)
        .query(c)
        .unwrap();
}

#[test]
fn slow_commands_are_logged_with_client_and_limits() {
    let server = testkit::codis_server(&["--cores", "2"]);
    let mut c = server.conn();
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("loader")
        .query(&mut c)
        .unwrap();
    let list: String = redis::cmd("CLIENT").arg("INFO").query(&mut c).unwrap();
    let addr = list
        .split_whitespace()
        .find_map(|f| f.strip_prefix("addr="))
        .unwrap()
        .to_string();

    // The default threshold (10 ms): quick commands stay out, DEBUG SLEEP goes in.
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut c).unwrap();
    let _: () = redis::cmd("DEBUG")
        .arg("SLEEP")
        .arg("0.05")
        .query(&mut c)
        .unwrap();
    let all = slowlog(&mut c, -1);
    assert_eq!(all.len(), 1, "{all:?}");
    let (_, us, args, a, name) = entry(&all[0]);
    assert!(us >= 50_000, "DEBUG SLEEP 0.05 took {us} µs");
    assert_eq!(args, ["DEBUG", "SLEEP", "0.05"]);
    assert_eq!((a.as_str(), name.as_str()), (addr.as_str(), "loader"));

    // Threshold 0: everything, on both cores, newest first; keys of both cores are spread over
    // the 1024 slots, so twenty keys land on each core.
    let _: i64 = redis::cmd("SLOWLOG").arg("LEN").query(&mut c).unwrap();
    config_set(&mut c, "slowlog-log-slower-than", "0");
    let _: () = redis::cmd("SLOWLOG").arg("RESET").query(&mut c).unwrap();
    for i in 0..20 {
        let _: () = redis::cmd("SET")
            .arg(format!("key:{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    let all = slowlog(&mut c, -1);
    let sets: Vec<_> = all
        .iter()
        .map(entry)
        .filter(|e| e.2.first().map(String::as_str) == Some("SET"))
        .collect();
    assert_eq!(sets.len(), 20, "{all:?}");
    for (n, e) in sets.iter().enumerate() {
        let i = 19 - n;
        assert_eq!(e.2, ["SET".to_string(), format!("key:{i}"), i.to_string()]);
        assert_eq!(
            (e.3.as_str(), e.4.as_str()),
            (addr.as_str(), "loader"),
            "{e:?}"
        );
    }
    assert!(sets.windows(2).all(|w| w[0].0 > w[1].0), "ids descend");

    // Redis's limits: 32 arguments, 128 bytes each.
    let _: () = redis::cmd("SLOWLOG").arg("RESET").query(&mut c).unwrap();
    let big = "x".repeat(200);
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&big)
        .query(&mut c)
        .unwrap();
    let mut rpush = redis::cmd("RPUSH");
    rpush.arg("list");
    for i in 0..40 {
        rpush.arg(i);
    }
    let _: i64 = rpush.query(&mut c).unwrap();
    config_set(&mut c, "requirepass", "sekret");
    let _: () = redis::cmd("AUTH").arg("sekret").query(&mut c).unwrap();
    let all: Vec<_> = slowlog(&mut c, 10).iter().map(entry).collect();
    let config = all
        .iter()
        .find(|e| e.2[0].eq_ignore_ascii_case("config"))
        .expect("CONFIG SET logged");
    assert_eq!(config.2[3], "(redacted)");
    assert!(
        all.iter()
            .all(|e| !e.2.iter().any(|a| a.contains("sekret"))),
        "{all:?}"
    );
    let push = all.iter().find(|e| e.2[0] == "RPUSH").unwrap();
    assert_eq!(push.2.len(), 32);
    assert_eq!(push.2[31], "... (11 more arguments)");
    let set = all.iter().find(|e| e.2[0] == "SET").unwrap();
    assert_eq!(set.2[2], format!("{}... (72 more bytes)", "x".repeat(128)));

    // slowlog-max-len keeps the newest; RESET empties; errors as Redis's.
    config_set(&mut c, "slowlog-max-len", "5");
    for i in 0..10 {
        let _: Option<String> = redis::cmd("GET")
            .arg(format!("key:{i}"))
            .query(&mut c)
            .unwrap();
    }
    let n: i64 = redis::cmd("SLOWLOG").arg("LEN").query(&mut c).unwrap();
    assert_eq!(n, 5);
    assert_eq!(slowlog(&mut c, 2).len(), 2);
    let _: () = redis::cmd("SLOWLOG").arg("RESET").query(&mut c).unwrap();
    let e = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(-2)
        .query::<Value>(&mut c)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("count should be greater than or equal to -1"),
        "{e}"
    );
    let e = redis::cmd("SLOWLOG")
        .arg("NOPE")
        .query::<Value>(&mut c)
        .unwrap_err();
    assert!(e.to_string().contains("unknown subcommand 'NOPE'"), "{e}");
    config_set(&mut c, "slowlog-log-slower-than", "-1");
    let _: () = redis::cmd("SLOWLOG").arg("RESET").query(&mut c).unwrap();
    let _: () = redis::cmd("DEBUG")
        .arg("SLEEP")
        .arg("0.02")
        .query(&mut c)
        .unwrap();
    let n: i64 = redis::cmd("SLOWLOG").arg("LEN").query(&mut c).unwrap();
    assert_eq!(n, 0, "a negative threshold logs nothing");
}
