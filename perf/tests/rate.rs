//! The open-loop `--rate` mode: it keeps its schedule, and latency counts from the scheduled send
//! time, so a server stall shows in the percentiles of every request it delayed.

mod common;

use std::time::Duration;

use common::{json_lines, num, Redis};

#[test]
fn rate_mode_keeps_its_rate() {
    let redis = Redis::start(&[]);
    let port = redis.port.to_string();
    let out = common::bench(&[
        "-p",
        &port,
        "-t",
        "get",
        "--rate",
        "2000",
        "--duration",
        "2s",
        "-c",
        "4",
        "--json",
    ]);
    let r = &json_lines(&out)[0];
    let requests = num(r, "requests");
    // 2 s at 2000/s = 4000 scheduled; generous bounds, the machine is noisy.
    assert!(requests <= 4000.0 * 1.05, "{r}");
    assert!(requests >= 4000.0 * 0.5, "{r}");
    assert_eq!(requests as u64, redis.calls("get"));
    assert_eq!(r["errors"], 0);
}

#[test]
fn rate_mode_with_exact_count() {
    let redis = Redis::start(&[]);
    let port = redis.port.to_string();
    let out = common::bench(&[
        "-p", &port, "-t", "set", "--rate", "5000", "-n", "1000", "-c", "5", "-P", "2", "--json",
    ]);
    let r = &json_lines(&out)[0];
    assert_eq!(r["requests"], 1000);
    assert_eq!(redis.calls("set"), 1000);
    // 1000 requests at 5000/s cannot finish much sooner than 0.2 s.
    assert!(num(r, "seconds") >= 0.15, "{r}");
}

/// The load of the stall tests: PINGs at 1,000/s over one connection for 3 s, then `extra`.
fn stall_load<'a>(port: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "-p",
        port,
        "-t",
        "ping_mbulk",
        "--rate",
        "1000",
        "--duration",
        "3s",
        "-c",
        "1",
    ];
    v.extend_from_slice(extra);
    v
}

/// Wait (up to 20 s) until `redis` has served `n` PINGs: the load is surely running.
fn wait_for_pings(redis: &Redis, n: u64) {
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while redis.calls("ping") < n && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn open_loop_latency_includes_a_server_stall() {
    let redis = Redis::start(&["--enable-debug-command", "local"]);
    let port = redis.port.to_string();
    let bench = std::thread::spawn(move || common::bench(&stall_load(&port, &["--json"])));
    // Stall once the bench is surely running (a hundred PINGs in), early in its 3 s.
    wait_for_pings(&redis, 100);
    // The server stalls 600 ms: ~600 requests are due meanwhile; with latency measured from the
    // schedule they wait on average ~300 ms, so well over 10% of requests exceed 100 ms. (A
    // closed-loop generator would report a single slow request.)
    redis.client().cmd(&["DEBUG", "SLEEP", "0.6"]);
    let out = bench.join().expect("bench thread");
    let r = &json_lines(&out)[0];
    assert!(num(r, "max") >= 400_000.0, "{r}");
    assert!(num(r, "p90") >= 100_000.0, "{r}");
}

/// A PING server that answers every request `delay` after it arrived, in order; returns its
/// port and a count of the requests that arrived in the first `window`.
fn delayed_pong_server(
    delay: Duration,
    window: Duration,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    let early = Arc::new(AtomicU64::new(0));
    let seen = early.clone();
    std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().expect("accept");
        let mut reader = sock.try_clone().expect("clone");
        let (tx, rx) = std::sync::mpsc::channel::<Instant>();
        // Writer: each `+PONG` `delay` after its request arrived, in order.
        std::thread::spawn(move || {
            for at in rx {
                if let Some(d) = (at + delay).checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
                if sock.write_all(b"+PONG\r\n").is_err() {
                    return;
                }
            }
        });
        let start = Instant::now();
        let mut buf = [0u8; 65536];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            // PING_INLINE: one `PING\r\n` per request.
            let now = Instant::now();
            for _ in 0..buf[..n].iter().filter(|&&c| c == b'\n').count() {
                if now.duration_since(start) < window {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
                let _ = tx.send(now);
            }
        }
    });
    (port, early)
}

/// `n` PING_INLINE at `rate`/s over one connection to `port`: the JSON result, every request
/// answered without error.
fn ping_inline_all_answered(port: &str, rate: u32, n: u32) -> serde_json::Value {
    let (rate, count) = (rate.to_string(), n.to_string());
    let out = common::bench(&[
        "-p",
        port,
        "-t",
        "ping_inline",
        "--rate",
        &rate,
        "-n",
        &count,
        "-c",
        "1",
        "--json",
    ]);
    let r = json_lines(&out).remove(0);
    assert_eq!(r["requests"], n, "{r}");
    assert_eq!(r["errors"], 0, "{r}");
    r
}

/// A server that answers every request only 300 ms after it arrived: the open loop must keep
/// sending on schedule meanwhile (not wait for each reply before the next send), and the latency
/// it reports is then the server's 300 ms, not a queue grown inside the generator.
#[test]
fn open_loop_sends_on_schedule_while_replies_are_outstanding() {
    let (port, early) = delayed_pong_server(Duration::from_millis(300), Duration::from_millis(200));
    let r = &ping_inline_all_answered(&port, 1000, 600);
    // 1000/s for 200 ms is ~200 requests; a generator waiting for each reply sends one.
    let early = early.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        early >= 100,
        "only {early} requests sent in the first 200 ms: {r}"
    );
    // Every request waits the server's 300 ms and no more than a scheduling hiccup beyond it;
    // waiting for replies before sending would put the 600th request ~180 s behind schedule.
    assert!(num(r, "p50") >= 290_000.0, "{r}");
    assert!(num(r, "max") < 2_000_000.0, "{r}");
}

/// The open loop stops sending past 8,192 unanswered requests on a connection (a stalled
/// server must not get both socket buffers filled), and sends the rest once replies come.
#[test]
fn open_loop_caps_the_requests_in_flight() {
    let (port, early) =
        delayed_pong_server(Duration::from_millis(1000), Duration::from_millis(900));
    let r = ping_inline_all_answered(&port, 50000, 20000);
    // All 20,000 are due within 0.4 s; no reply comes before 1 s.
    let early = early.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (8000..=8192).contains(&early),
        "{early} requests in flight before the first reply: {r}"
    );
}

/// SIGUSR1 restarts the measurement: a server stall before it is forgotten, and the requests
/// and rps cover only the time after it (scripts measure exactly a migration's window this way).
#[test]
fn sigusr1_restarts_the_measurement() {
    use std::process::{Command, Stdio};
    use std::time::Instant;

    let redis = Redis::start(&["--enable-debug-command", "local"]);
    let child = Command::new(env!("CARGO_BIN_EXE_codis-bench"))
        .args([
            "-p",
            &redis.port.to_string(),
            "-t",
            "ping_mbulk",
            "--rate",
            "1000",
            "--duration",
            "60s",
            "-c",
            "2",
            "--json",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start codis-bench");
    let pid = child.id() as libc::pid_t;
    let until = Instant::now() + Duration::from_secs(20);
    while redis.calls("ping") < 100 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    // A 500 ms stall, then the restart, then one second of calm load, then the stop.
    redis.client().cmd(&["DEBUG", "SLEEP", "0.5"]);
    std::thread::sleep(Duration::from_millis(300));
    let before = redis.calls("ping");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    std::thread::sleep(Duration::from_secs(1));
    unsafe { libc::kill(pid, libc::SIGINT) };
    let out = child.wait_with_output().expect("codis-bench output");
    assert!(out.status.success(), "{out:?}");
    let r = &json_lines(&String::from_utf8_lossy(&out.stdout))[0];
    let requests = num(r, "requests");
    // ~1000 requests after the restart, far fewer than all the server answered.
    assert!(requests + 300.0 < redis.calls("ping") as f64, "{r}");
    assert!(before >= 300, "{before} PINGs before the restart");
    assert!((500.0..=1500.0).contains(&requests), "{r}");
    // The stall's ~500 ms latencies are gone from the figures.
    assert!(num(r, "max") < 300_000.0, "{r}");
    assert!((0.7..=1.5).contains(&num(r, "seconds")), "{r}");
}

/// Seconds on CLOCK_MONOTONIC, the clock `--slow-log` prints due times on.
fn monotonic_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

#[test]
fn slow_log_prints_the_requests_a_stall_delayed_with_their_due_time() {
    let redis = Redis::start(&["--enable-debug-command", "local"]);
    let port = redis.port.to_string();
    let t0 = monotonic_secs();
    let bench = std::thread::spawn(move || {
        common::bench_raw(&stall_load(&port, &["--slow-log", "100000", "--json"]))
    });
    wait_for_pings(&redis, 100);
    // A 600 ms stall: the ~500 requests due in its first 500 ms wait over 100 ms each.
    let stall_at = monotonic_secs();
    redis.client().cmd(&["DEBUG", "SLEEP", "0.6"]);
    let out = bench.join().expect("bench thread");
    let t1 = monotonic_secs();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let slow: Vec<(f64, u64)> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("slow "))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let [due, us, slot] = f[..] else {
                panic!("not `slow <due> <us> <slot>`: {l}");
            };
            // PING has no key: no slot.
            assert_eq!(slot, "-", "{l}");
            (due.parse().expect("due"), us.parse().expect("us"))
        })
        .collect();
    assert!(slow.len() >= 200, "{} slow lines: {stderr}", slow.len());
    for &(due, us) in &slow {
        assert!(us >= 100_000, "a line under the threshold: {due} {us}");
        assert!(
            due > t0 && due < t1,
            "due {due} outside the run [{t0}, {t1}]"
        );
    }
    // The stall's requests: due around it, answered after it began (the host may add a few
    // slow requests of its own elsewhere).
    let stalled = slow
        .iter()
        .filter(|&&(due, us)| due > stall_at - 0.2 && due + us as f64 / 1e6 >= stall_at)
        .count();
    assert!(
        stalled >= 200,
        "{stalled} of {} slow lines around the stall",
        slow.len()
    );
    // Every logged request is one the JSON report counted among its slowest.
    let r = &json_lines(&String::from_utf8_lossy(&out.stdout))[0];
    assert!(
        num(r, "max") >= *slow.iter().map(|(_, u)| u).max().unwrap() as f64 * 0.99,
        "{r}"
    );
}

#[test]
fn slow_log_needs_an_open_loop() {
    let out = common::bench_raw(&["-p", "1", "-t", "get", "--slow-log", "10"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rate"));
}
