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

#[test]
fn open_loop_latency_includes_a_server_stall() {
    let redis = Redis::start(&["--enable-debug-command", "local"]);
    let port = redis.port.to_string();
    let bench = std::thread::spawn(move || {
        common::bench(&[
            "-p",
            &port,
            "-t",
            "ping_mbulk",
            "--rate",
            "1000",
            "--duration",
            "3s",
            "-c",
            "1",
            "--json",
        ])
    });
    // Stall once the bench is surely running (a hundred PINGs in), early in its 3 s.
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while redis.calls("ping") < 100 && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The server stalls 600 ms: ~600 requests are due meanwhile; with latency measured from the
    // schedule they wait on average ~300 ms, so well over 10% of requests exceed 100 ms. (A
    // closed-loop generator would report a single slow request.)
    redis.client().cmd(&["DEBUG", "SLEEP", "0.6"]);
    let out = bench.join().expect("bench thread");
    let r = &json_lines(&out)[0];
    assert!(num(r, "max") >= 400_000.0, "{r}");
    assert!(num(r, "p90") >= 100_000.0, "{r}");
}
