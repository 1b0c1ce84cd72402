//! The latency monitor (LATENCY LATEST/HISTORY/RESET/GRAPH/DOCTOR) as in Redis 7.0: events at
//! least `latency-monitor-threshold` ms long, one series per event merged across cores.

use redis::Value;

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        other => panic!("not an integer: {other:?}"),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).to_string(),
        Value::SimpleString(s) => s.clone(),
        other => panic!("not text: {other:?}"),
    }
}

fn latest(c: &mut redis::Connection) -> Vec<(String, i64, i64, i64)> {
    let v: Vec<Value> = redis::cmd("LATENCY").arg("LATEST").query(c).unwrap();
    v.iter()
        .map(|e| {
            let Value::Array(f) = e else {
                panic!("entry is not an array: {e:?}")
            };
            assert_eq!(f.len(), 4, "{f:?}");
            (text(&f[0]), int(&f[1]), int(&f[2]), int(&f[3]))
        })
        .collect()
}

fn history(c: &mut redis::Connection, event: &str) -> Vec<(i64, i64)> {
    let v: Vec<Vec<i64>> = redis::cmd("LATENCY")
        .arg("HISTORY")
        .arg(event)
        .query(c)
        .unwrap();
    v.into_iter().map(|s| (s[0], s[1])).collect()
}

fn config_get(c: &mut redis::Connection, k: &str) -> String {
    let v: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(k).query(c).unwrap();
    assert_eq!(v.len(), 2, "{v:?}");
    v[1].clone()
}

fn pin(c: &mut redis::Connection, core: i64) {
    let r: String = redis::cmd("CLIENT").arg("CORE").arg(core).query(c).unwrap();
    assert_eq!(r, "OK");
}

#[test]
fn nothing_is_recorded_while_the_threshold_is_zero() {
    let server = testkit::codis_server(&["--cores", "2"]);
    let mut c = server.conn();
    assert_eq!(config_get(&mut c, "latency-monitor-threshold"), "0");
    let _: () = redis::cmd("DEBUG")
        .arg("SLEEP")
        .arg("0.03")
        .query(&mut c)
        .unwrap();
    assert!(latest(&mut c).is_empty());
    assert!(history(&mut c, "command").is_empty());
    let doctor: String = redis::cmd("LATENCY").arg("DOCTOR").query(&mut c).unwrap();
    assert!(doctor.contains("disabled"), "{doctor}");
}

#[test]
fn slow_commands_show_in_latest_and_history_on_every_core_and_reset_clears() {
    let server = testkit::codis_server(&["--cores", "2"]);
    let mut a = server.conn();
    let mut b = server.conn();
    pin(&mut a, 0);
    pin(&mut b, 1);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("latency-monitor-threshold")
        .arg("10")
        .query(&mut a)
        .unwrap();
    assert_eq!(config_get(&mut b, "latency-monitor-threshold"), "10");

    // A slow command on core 1, read from core 0.
    let _: () = redis::cmd("DEBUG")
        .arg("SLEEP")
        .arg("0.05")
        .query(&mut b)
        .unwrap();
    let l = latest(&mut a);
    assert_eq!(l.len(), 1, "{l:?}");
    let (event, time, last, max) = l[0].clone();
    assert_eq!(event, "command");
    assert!(time > 1_600_000_000, "unix seconds: {time}");
    assert!(last >= 45 && max >= last, "{l:?}");
    let h = history(&mut a, "command");
    assert_eq!(h, vec![(time, last)]);

    // Another one on core 0: the same series (one sample per second, the worst of that second).
    let _: () = redis::cmd("DEBUG")
        .arg("SLEEP")
        .arg("0.06")
        .query(&mut a)
        .unwrap();
    let l = latest(&mut b);
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(l[0].3 >= 55, "max keeps the worst: {l:?}");
    let h = history(&mut b, "command");
    assert!(!h.is_empty() && h.len() <= 2, "{h:?}");
    assert_eq!(h.last().unwrap().1, l[0].2);

    // A fast command under the threshold adds nothing; unknown events have no history.
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut a).unwrap();
    assert_eq!(latest(&mut a).len(), 1);
    assert!(history(&mut a, "no-such-event").is_empty());

    let graph: String = redis::cmd("LATENCY")
        .arg("GRAPH")
        .arg("command")
        .query(&mut a)
        .unwrap();
    assert!(graph.starts_with("command - high "), "{graph}");
    let doctor: String = redis::cmd("LATENCY").arg("DOCTOR").query(&mut a).unwrap();
    assert!(doctor.contains("command"), "{doctor}");

    // RESET with names counts the events it removed; without, every event.
    let n: i64 = redis::cmd("LATENCY")
        .arg("RESET")
        .arg("nope")
        .query(&mut a)
        .unwrap();
    assert_eq!(n, 0);
    let n: i64 = redis::cmd("LATENCY")
        .arg("RESET")
        .arg("command")
        .arg("nope")
        .query(&mut a)
        .unwrap();
    assert_eq!(n, 1);
    assert!(latest(&mut b).is_empty());
    assert!(history(&mut b, "command").is_empty());
    let _: () = redis::cmd("DEBUG")
        .arg("SLEEP")
        .arg("0.02")
        .query(&mut b)
        .unwrap();
    let n: i64 = redis::cmd("LATENCY").arg("RESET").query(&mut a).unwrap();
    assert_eq!(n, 1);
    assert!(latest(&mut a).is_empty());
    let e = redis::cmd("LATENCY")
        .arg("GRAPH")
        .arg("command")
        .query::<String>(&mut a)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("No samples available for event 'command'"),
        "{e}"
    );
}

#[test]
fn the_threshold_comes_from_flags_and_config_files() {
    let server = testkit::codis_server(&["--cores", "1", "--latency-monitor-threshold", "7"]);
    let mut c = server.conn();
    assert_eq!(config_get(&mut c, "latency-monitor-threshold"), "7");
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("redis.conf");
    std::fs::write(&conf, "latency-monitor-threshold 12\n").unwrap();
    let server = testkit::codis_server(&["--cores", "1", conf.to_str().unwrap()]);
    let mut c = server.conn();
    assert_eq!(config_get(&mut c, "latency-monitor-threshold"), "12");
}
