//! MONITOR against a real redis-server 7.0: the same commands, sent by one client while another
//! monitors, must produce the same feed lines once the timestamp and the client's port are taken
//! out; then what only codis-server can show (keys on both cores, several monitors, RESET, a
//! monitor that disconnects).

mod rawwire;

use rawwire::{multibulk, split, Raw, Reply};

/// What the monitored client sends (redis-cli syntax). Covers: plain commands on keys that live
/// on both cores, quoting, SELECT, errors after a command ran (WRONGTYPE: shown) and before (wrong
/// arity, unknown: not shown), transactions (queued commands appear at EXEC, before it), a
/// discarded transaction, scripts (EVAL, then its calls as `lua`), administrative
/// commands (hidden), CLIENT subcommands (some shown), AUTH and HELLO AUTH (redacted).
const SCRIPT: &str = r#"
SET a 1
SET "with space" "quote\"and\\backslash\x01\n"
GET nokey
MSET k1 v1 k2 v2 k3 v3
MGET k1 k2 k3
LPUSH list x
INCR list
GET
NOSUCHCOMMAND x
SELECT 5
SET five 5
SELECT 0
MULTI
INCR a
SET b 2
EXEC
MULTI
SET never 1
DISCARD
EVAL "return redis.call('set', KEYS[1], ARGV[1])" 1 a scripted
CONFIG GET maxmemory
CLIENT SETNAME watcher
CLIENT GETNAME
CLIENT LIST
DEBUG SLEEP 0
AUTH nopass
AUTH someone nopass
HELLO 2 AUTH default wrong
PING
ECHO done
"#;

/// Feed lines with the timestamp dropped and the client address replaced by `C`.
fn normalized(mon: &mut Raw) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let Reply::Frame(f) = mon.read() else {
            panic!("the monitor connection closed");
        };
        let s = String::from_utf8_lossy(&f).trim_end().to_string();
        let (stamp, rest) = s.split_once(' ').expect("a timestamp");
        assert!(stamp.starts_with('+'), "{s}");
        let (secs, micros) = stamp[1..].split_once('.').expect("seconds.micros");
        assert!(secs.parse::<u64>().is_ok() && micros.len() == 6, "{s}");
        let close = rest.find(']').expect("[db who]");
        let (db, who) = rest[1..close].split_once(' ').expect("db and who");
        let who = if who == "lua" { "lua" } else { "C" };
        let line = format!("[{db} {who}]{}", &rest[close + 1..]);
        let done = line.ends_with("\"ECHO\" \"done\"");
        lines.push(line);
        if done {
            return lines;
        }
    }
}

fn transcript(port: u16) -> Vec<String> {
    let mut mon = Raw::connect(port);
    mon.send(&multibulk(&[b"MONITOR"]));
    assert_eq!(mon.read(), Reply::Frame(b"+OK\r\n".to_vec()));
    let mut c = Raw::connect(port);
    for line in SCRIPT.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let args = split(line);
        let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        c.send(&multibulk(&refs));
        let _ = c.read();
    }
    normalized(&mut mon)
}

#[test]
fn monitor_lines_match_redis() {
    let Some((redis, _dir)) = testkit::redis_server(&["--enable-debug-command", "yes"]) else {
        return;
    };
    let codis = testkit::codis_server(&["--cores", "2"]);
    let want = transcript(redis.port);
    let got = transcript(codis.port);
    assert!(
        want.iter()
            .any(|l| l.contains("[0 lua] \"set\" \"a\" \"scripted\"")),
        "{want:#?}"
    );
    assert_eq!(
        got, want,
        "codis-server's MONITOR feed differs from redis-server's"
    );
}

#[test]
fn monitors_see_every_core_and_stop() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let (a, b) = rawwire::keys_on_two_cores("mon");
    let mut m1 = Raw::connect(srv.port);
    let mut m2 = Raw::connect(srv.port);
    for m in [&mut m1, &mut m2] {
        m.send(&multibulk(&[b"MONITOR"]));
        assert_eq!(m.read(), Reply::Frame(b"+OK\r\n".to_vec()));
    }
    // A third monitor that goes away must not disturb the others.
    let mut gone = Raw::connect(srv.port);
    gone.send(&multibulk(&[b"MONITOR"]));
    assert_eq!(gone.read(), Reply::Frame(b"+OK\r\n".to_vec()));
    drop(gone);
    let mut c = srv.conn();
    for i in 0..200 {
        let k = if i % 2 == 0 { &a } else { &b };
        let _: () = redis::cmd("SET").arg(k).arg(i).query(&mut c).unwrap();
    }
    let _: String = redis::cmd("ECHO").arg("end").query(&mut c).unwrap();
    for m in [&mut m1, &mut m2] {
        let mut n = 0;
        loop {
            let Reply::Frame(f) = m.read() else {
                panic!("monitor closed")
            };
            let s = String::from_utf8_lossy(&f).to_string();
            if s.contains("\"ECHO\" \"end\"") {
                break;
            }
            let k = if n % 2 == 0 { &a } else { &b };
            assert!(
                s.ends_with(&format!("\"SET\" \"{k}\" \"{n}\"\r\n")),
                "line {n}: {s}"
            );
            n += 1;
        }
        assert_eq!(n, 200);
    }
    // RESET ends monitoring: after it the connection answers commands and sees no feed.
    m1.send(&multibulk(&[b"RESET"]));
    assert_eq!(m1.read(), Reply::Frame(b"+RESET\r\n".to_vec()));
    let _: () = redis::cmd("SET")
        .arg(&a)
        .arg("after")
        .query(&mut c)
        .unwrap();
    m1.send(&multibulk(&[b"PING"]));
    assert_eq!(m1.read(), Reply::Frame(b"+PONG\r\n".to_vec()));
    // The other monitor saw m1's RESET, then the SET.
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("\"after\"")) {
        let Reply::Frame(f) = m2.read() else {
            panic!("monitor closed")
        };
        seen.push(String::from_utf8_lossy(&f).to_string());
        assert!(seen.len() <= 2, "{seen:?}");
    }
    assert!(seen[0].ends_with("\"RESET\"\r\n"), "{seen:?}");
}
