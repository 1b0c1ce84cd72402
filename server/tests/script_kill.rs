//! SCRIPT KILL on a two-core server: a script blocks the core running it (no client of that core
//! is even read meanwhile), so SCRIPT KILL is sent from connections until one served by the other
//! core answers. A read-only script is killed with Redis's error; one that wrote is UNKILLABLE and
//! stops at `lua-time-limit` (codis-server's deviation, see docs/scripting-and-notifications.md).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn cmd(parts: &[&str]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", parts.len()).into_bytes();
    for p in parts {
        v.extend_from_slice(format!("${}\r\n{p}\r\n", p.len()).as_bytes());
    }
    v
}

/// One line reply (status, error or integer), or None on timeout.
fn line(r: &mut BufReader<TcpStream>, timeout: Duration) -> Option<String> {
    r.get_ref().set_read_timeout(Some(timeout)).ok()?;
    let mut s = String::new();
    match r.read_line(&mut s) {
        Ok(n) if n > 0 => Some(s.trim_end().to_string()),
        _ => None,
    }
}

fn connect(port: u16) -> BufReader<TcpStream> {
    BufReader::new(TcpStream::connect(("127.0.0.1", port)).expect("connect"))
}

/// Send SCRIPT KILL from several connections until one not blocked by the script answers
/// something other than NOTBUSY (the script may not have started yet). Connections on the
/// script's core do not answer while it runs; their replies (and slow ones from the other core
/// on a loaded machine) are waited for without giving up on the connection, partial lines kept.
fn kill_from_other_core(port: u16) -> String {
    send_from_other_core(port, &["SCRIPT", "KILL"])
}

/// [`kill_from_other_core`] with another command (FUNCTION KILL).
fn send_from_other_core(port: u16, kill: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut conns: Vec<(BufReader<TcpStream>, Vec<u8>)> = Vec::new();
    let mut opened_at = Instant::now() - Duration::from_secs(60);
    while Instant::now() < deadline {
        // Eight more connections every 3 s: one of them, at least, lands on the other core.
        if opened_at.elapsed() >= Duration::from_secs(3) && conns.len() < 64 {
            for _ in 0..8 {
                let mut c = connect(port);
                c.get_mut().write_all(&cmd(kill)).expect("send");
                c.get_ref()
                    .set_read_timeout(Some(Duration::from_millis(20)))
                    .expect("read timeout");
                conns.push((c, Vec::new()));
            }
            opened_at = Instant::now();
        }
        for (c, buf) in conns.iter_mut() {
            // A timeout leaves what was read so far in `buf`.
            if c.read_until(b'\n', buf).is_err() || !buf.ends_with(b"\n") {
                continue;
            }
            let reply = String::from_utf8_lossy(buf).trim_end().to_string();
            buf.clear();
            if !reply.starts_with("-NOTBUSY") {
                return reply;
            }
            c.get_mut().write_all(&cmd(kill)).expect("send");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no connection on the other core answered {kill:?}");
}

/// A two-core server whose scripts run for a minute before `lua-time-limit` stops them.
fn two_cores_without_time_limit() -> (testkit::Proc, redis::Connection) {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let mut c = srv.conn();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("lua-time-limit")
        .arg("60000")
        .query(&mut c)
        .expect("config set");
    (srv, c)
}

/// The core that ran a killed script serves its connection again.
fn serves_again(runner: &mut BufReader<TcpStream>) {
    runner.get_mut().write_all(&cmd(&["PING"])).expect("send");
    assert_eq!(
        line(runner, Duration::from_secs(10)).as_deref(),
        Some("+PONG")
    );
}

#[test]
fn script_kill_from_another_core() {
    let (srv, mut c) = two_cores_without_time_limit();
    let nothing: redis::RedisResult<()> = redis::cmd("SCRIPT").arg("KILL").query(&mut c);
    assert!(format!("{:?}", nothing.unwrap_err()).contains("No scripts in execution right now"));

    // A read-only endless script is killed.
    let mut runner = connect(srv.port);
    runner
        .get_mut()
        .write_all(&cmd(&["EVAL", "while true do end", "0"]))
        .expect("send");
    assert_eq!(kill_from_other_core(srv.port), "+OK");
    let r = line(&mut runner, Duration::from_secs(30)).expect("script reply");
    assert!(
        r.starts_with("-ERR Script killed by user with SCRIPT KILL..."),
        "{r}"
    );
    serves_again(&mut runner);

    // A script that wrote cannot be killed; it stops at lua-time-limit.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("lua-time-limit")
        .arg("3000")
        .query(&mut c)
        .expect("config set");
    runner
        .get_mut()
        .write_all(&cmd(&[
            "EVAL",
            "redis.call('set', KEYS[1], '1') while true do end",
            "1",
            "wk",
        ]))
        .expect("send");
    let r = kill_from_other_core(srv.port);
    assert_eq!(r, "-UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.");
    let r = line(&mut runner, Duration::from_secs(60)).expect("script reply");
    assert!(r.starts_with("-"), "{r}");
}

/// SCRIPT KILL does not stop a function (Redis answers BUSY and names FUNCTION KILL); FUNCTION
/// KILL does.
#[test]
fn function_kill_from_another_core() {
    let (srv, mut c) = two_cores_without_time_limit();
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("#!lua name=spin\nredis.register_function('spin', function() while true do end end)")
        .query(&mut c)
        .expect("load");
    let mut runner = connect(srv.port);
    runner
        .get_mut()
        .write_all(&cmd(&["FCALL", "spin", "0"]))
        .expect("send");
    assert_eq!(
        kill_from_other_core(srv.port),
        "-BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."
    );
    // FUNCTION STATS, from a connection of the other core, names it and its command.
    let stats = (0..32)
        .find_map(|_| {
            // A connection of the busy core would not even finish its handshake.
            let mut c = srv
                .client()
                .get_connection_with_timeout(Duration::from_secs(2))
                .ok()?;
            c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            redis::cmd("FUNCTION")
                .arg("STATS")
                .query::<redis::Value>(&mut c)
                .ok()
        })
        .expect("no connection of the other core answered FUNCTION STATS");
    let redis::Value::Array(top) = &stats else {
        panic!("{stats:?}")
    };
    let redis::Value::Array(running) = &top[1] else {
        panic!("running_script: {stats:?}")
    };
    assert_eq!(
        running[1],
        redis::Value::BulkString(b"spin".to_vec()),
        "{stats:?}"
    );
    assert_eq!(
        running[3],
        redis::Value::Array(
            ["FCALL", "spin", "0"]
                .map(|a| redis::Value::BulkString(a.as_bytes().to_vec()))
                .to_vec()
        ),
        "{stats:?}"
    );
    assert_eq!(send_from_other_core(srv.port, &["FUNCTION", "KILL"]), "+OK");
    let r = line(&mut runner, Duration::from_secs(30)).expect("function reply");
    assert!(
        r.starts_with("-ERR Script killed by user with SCRIPT KILL..."),
        "{r}"
    );
    serves_again(&mut runner);
}
