//! codis-bench against a real redis-server: exact request counts, checked replies, sane
//! percentiles, parseable JSON and CSV, the workload options.

mod common;

use common::{bench, bench_raw, json_lines, num, Redis};

#[test]
fn request_counts_are_exact() {
    let redis = Redis::start(&[]);
    let port = redis.port.to_string();
    let out = bench(&[
        "-p",
        &port,
        "-t",
        "set,get,incr,lpush,mset",
        "-n",
        "1237",
        "-c",
        "7",
        "-P",
        "5",
        "-r",
        "100",
        "--threads",
        "2",
        "--json",
    ]);
    let rows = json_lines(&out);
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["test"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["SET", "GET", "INCR", "LPUSH", "MSET (10 keys)"]);
    for r in &rows {
        assert_eq!(r["requests"], 1237, "{r}");
        assert_eq!(r["errors"], 0, "{r}");
    }
    for cmd in ["set", "get", "incr", "lpush", "mset"] {
        assert_eq!(redis.calls(cmd), 1237, "{cmd}");
    }
    // -r: keys are key:<12 digits> below 100.
    let mut c = redis.client();
    let keys = c.cmd(&["KEYS", "key:*"]);
    let resp::Frame::Array(keys) = keys else {
        panic!("{keys:?}")
    };
    assert!(!keys.is_empty() && keys.len() <= 100);
    for k in keys {
        let resp::Frame::Bulk(k) = k else { panic!() };
        let digits = &k[4..];
        assert_eq!(digits.len(), 12);
        assert!(std::str::from_utf8(digits).unwrap().parse::<u64>().unwrap() < 100);
    }
    assert_eq!(c.int(&["LLEN", "mylist"]), 1237);
}

#[test]
fn error_replies_count_as_errors() {
    let redis = Redis::start(&[]);
    let port = redis.port.to_string();
    let mut c = redis.client();
    // Without -r the key is the literal key:__rand_int__; make it a list: every GET is WRONGTYPE.
    c.int(&["LPUSH", "key:__rand_int__", "x"]);
    c.cmd(&["SET", "mylist", "not-a-list"]);
    let out = bench(&[
        "-p", &port, "-t", "get,lpop", "-n", "500", "-c", "4", "-P", "3", "--json",
    ]);
    let rows = json_lines(&out);
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(r["requests"], 500, "{r}");
        assert_eq!(r["errors"], 500, "{r}");
    }
    assert_eq!(redis.calls("get"), 500);
    assert_eq!(redis.cmdstat("get", "failed_calls"), 500);
    assert_eq!(redis.cmdstat("lpop", "failed_calls"), 500);
    // Fix the key: now every GET succeeds.
    c.cmd(&["DEL", "key:__rand_int__"]);
    let rows = json_lines(&bench(&[
        "-p", &port, "-t", "get", "-n", "300", "-c", "4", "--json",
    ]));
    assert_eq!(rows[0]["errors"], 0);
    assert_eq!(redis.calls("get"), 800);
    assert_eq!(redis.cmdstat("get", "failed_calls"), 500);
}

#[test]
fn percentiles_are_sane() {
    let redis = Redis::start(&[]);
    let port = redis.port.to_string();
    let out = bench(&[
        "-p",
        &port,
        "-t",
        "ping_mbulk,set",
        "-n",
        "3000",
        "-c",
        "10",
        "--json",
    ]);
    for r in json_lines(&out) {
        let p: Vec<f64> = ["p50", "p90", "p99", "p999", "p9999", "max"]
            .iter()
            .map(|k| num(&r, k))
            .collect();
        assert!(p[0] > 0.0, "{r}");
        assert!(
            p.windows(2).all(|w| w[0] <= w[1]),
            "percentiles not ordered: {r}"
        );
        assert!(num(&r, "rps") > 0.0 && num(&r, "seconds") > 0.0, "{r}");
        // `seconds` is printed to the millisecond: a short run's implied rate carries that
        // rounding on top of the 1% allowed.
        let secs = num(&r, "seconds");
        let implied = num(&r, "requests") / secs;
        let tolerance = 0.01 + 0.0005 / secs;
        assert!(
            (implied - num(&r, "rps")).abs() / implied < tolerance,
            "{r}"
        );
    }
}

#[test]
fn csv_matches_redis_benchmark_format() {
    let redis = Redis::start(&[]);
    let port = redis.port.to_string();
    let ours = bench(&[
        "-p",
        &port,
        "-t",
        "ping,get,lrange_100",
        "-n",
        "400",
        "-c",
        "5",
        "--csv",
    ]);
    let theirs = std::process::Command::new("redis-benchmark")
        .args([
            "-p",
            &port,
            "-t",
            "ping,get,lrange_100",
            "-n",
            "400",
            "-c",
            "5",
            "--csv",
        ])
        .output()
        .expect("run redis-benchmark");
    let theirs = String::from_utf8_lossy(&theirs.stdout).to_string();
    let lines: Vec<&str> = ours.lines().collect();
    let their_lines: Vec<&str> = theirs.lines().filter(|l| l.starts_with('"')).collect();
    assert_eq!(lines[0], their_lines[0], "header");
    let names = |ls: &[&str]| -> Vec<String> {
        ls[1..]
            .iter()
            .map(|l| l.split(',').next().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(names(&lines), names(&their_lines), "test names and order");
    for l in &lines[1..] {
        let fields: Vec<&str> = l.split(',').collect();
        assert_eq!(fields.len(), 8, "{l}");
        assert!(
            fields
                .iter()
                .all(|f| f.starts_with('"') && f.ends_with('"')),
            "{l}"
        );
        let nums: Vec<f64> = fields[1..]
            .iter()
            .map(|f| f.trim_matches('"').parse().expect("number"))
            .collect();
        assert!(nums[0] > 0.0, "{l}");
        assert_eq!(
            fields[1].trim_matches('"').split('.').nth(1).map(str::len),
            Some(2),
            "rps has 2 decimals"
        );
        assert_eq!(
            fields[2].trim_matches('"').split('.').nth(1).map(str::len),
            Some(3),
            "ms have 3 decimals"
        );
        // min <= p50 <= p95 <= p99 <= max
        assert!(
            nums[2] <= nums[3] && nums[3] <= nums[4] && nums[4] <= nums[5] && nums[5] <= nums[6],
            "{l}"
        );
    }
}

#[test]
fn text_and_quiet_output_label_latency_units() {
    let redis = Redis::start(&[]);
    let port = redis.port.to_string();
    let text = bench(&["-p", &port, "-t", "get", "-n", "200", "-c", "2"]);
    assert!(text.contains("====== GET ======"), "{text}");
    assert!(text.contains("200 requests completed"), "{text}");
    assert!(text.contains("latency (µs): p50="), "{text}");
    assert!(text.contains("p99.99=") && text.contains("max="), "{text}");
    let quiet = bench(&["-p", &port, "-t", "get", "-n", "200", "-c", "2", "-q"]);
    assert!(
        quiet.starts_with("GET: ") && quiet.contains("requests per second"),
        "{quiet}"
    );
}

#[test]
fn mixed_ratio_sends_gets_and_sets_in_proportion() {
    let redis = Redis::start(&[]);
    let port = redis.port.to_string();
    // Batches of 4 = one 1:3 cycle, so every connection's share is whole cycles.
    let out = bench(&[
        "-p", &port, "--ratio", "1:3", "-n", "4000", "-c", "4", "-P", "4", "-r", "50", "--json",
    ]);
    let rows = json_lines(&out);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["test"], "MIXED (GET:SET 1:3)");
    assert_eq!(rows[0]["requests"], 4000);
    assert_eq!(rows[0]["errors"], 0);
    assert_eq!(redis.calls("get"), 1000);
    assert_eq!(redis.calls("set"), 3000);
}

#[test]
fn lrange_tests_fill_the_list_first() {
    let redis = Redis::start(&[]);
    let port = redis.port.to_string();
    let out = bench(&[
        "-p",
        &port,
        "-t",
        "lrange_100,lrange_600",
        "-n",
        "700",
        "-c",
        "3",
        "--json",
    ]);
    let rows = json_lines(&out);
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["test"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        [
            "LPUSH (needed to benchmark LRANGE)",
            "LRANGE_100 (first 100 elements)",
            "LRANGE_600 (first 600 elements)"
        ]
    );
    assert!(rows.iter().all(|r| r["errors"] == 0), "{out}");
    assert_eq!(redis.calls("lrange"), 1400);
    assert_eq!(redis.client().int(&["LLEN", "mylist"]), 700);
}

#[test]
fn duration_mode_counts_what_it_sent() {
    let redis = Redis::start(&[]);
    let port = redis.port.to_string();
    let out = bench(&[
        "-p",
        &port,
        "-t",
        "incr",
        "--duration",
        "1s",
        "-c",
        "4",
        "-P",
        "2",
        "--json",
    ]);
    let r = &json_lines(&out)[0];
    assert!(num(r, "seconds") >= 1.0, "{r}");
    assert!(num(r, "requests") > 0.0);
    assert_eq!(num(r, "requests") as u64, redis.calls("incr"));
    // Without -r every INCR hits the literal key: its value is the request count.
    let v = redis.client().cmd(&["GET", "counter:__rand_int__"]);
    assert_eq!(v, resp::Frame::Bulk(r["requests"].to_string().into()));
}

#[test]
fn zipfian_keys_concentrate_on_few_keys() {
    let redis = Redis::start(&[]);
    let port = redis.port.to_string();
    bench(&[
        "-p", &port, "-t", "set", "-n", "3000", "-r", "1000", "--dist", "zipfian", "--seed", "7",
        "-q",
    ]);
    let zipf_keys = redis.client().int(&["DBSIZE"]);
    redis.client().cmd(&["FLUSHALL"]);
    bench(&[
        "-p", &port, "-t", "set", "-n", "3000", "-r", "1000", "--seed", "7", "-q",
    ]);
    let uniform_keys = redis.client().int(&["DBSIZE"]);
    // Uniform: ~950 distinct keys of 1000; zipf(0.99): far fewer.
    assert!(uniform_keys > 900, "{uniform_keys}");
    assert!(zipf_keys < 750 && zipf_keys > 10, "{zipf_keys}");
}

#[test]
fn auth_and_dbnum() {
    let redis = Redis::start(&["--requirepass", "s3cret"]);
    let port = redis.port.to_string();
    let out = bench(&[
        "-p", &port, "-a", "s3cret", "--dbnum", "3", "-t", "set", "-n", "100", "-r", "10", "--json",
    ]);
    assert_eq!(json_lines(&out)[0]["errors"], 0);
    let mut c = redis.client();
    c.cmd(&["SELECT", "3"]);
    assert!(c.int(&["DBSIZE"]) > 0);
    let bad = bench_raw(&["-p", &port, "-a", "wrong", "-t", "set", "-n", "10"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("AUTH failed"), "{err}");
}

#[test]
fn bad_options_are_refused() {
    let out = bench_raw(&["-t", "nosuchtest", "-p", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown test"));
    let help = bench(&["--help"]);
    assert!(help.contains("--ratio") && help.contains("--rate") && help.contains("compare"));
    let help = bench(&["compare", "--help"]);
    assert!(help.contains("--target") && help.contains("--baseline") && help.contains("--rounds"));
}

#[test]
fn every_workload_counts_exactly() {
    let redis = Redis::start(&[]);
    let port = redis.port.to_string();
    let pings_before = redis.calls("ping");
    // 1001 requests: not a multiple of -P 4 nor of -c 3, so the last batches are partial.
    let out = bench(&[
        "-p",
        &port,
        "-t",
        "ping,lpush,lpop,sadd,hset,zadd,mget,lrange_7",
        "-n",
        "1001",
        "-c",
        "3",
        "-P",
        "4",
        "-r",
        "1000",
        "--json",
    ]);
    let rows = json_lines(&out);
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["test"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        [
            "PING_INLINE",
            "PING_MBULK",
            "LPUSH",
            "LPOP",
            "SADD",
            "HSET",
            "ZADD",
            "LPUSH (needed to benchmark LRANGE)",
            "LRANGE_7 (first 7 elements)",
            "MGET (10 keys)"
        ]
    );
    for r in &rows {
        assert_eq!(r["requests"], 1001, "{r}");
        assert_eq!(r["errors"], 0, "{r}");
    }
    // What the server counted, command by command.
    for (cmd, calls) in [
        ("ping", 2002 + pings_before),
        ("lpush", 2002),
        ("lpop", 1001),
        ("sadd", 1001),
        ("hset", 1001),
        ("zadd", 1001),
        ("lrange", 1001),
        ("mget", 1001),
    ] {
        assert_eq!(redis.calls(cmd), calls, "{cmd}");
        assert_eq!(redis.cmdstat(cmd, "failed_calls"), 0, "{cmd}");
    }
    let mut c = redis.client();
    // LPUSH then LPOP of 1001 each leave the fill's 1001 elements.
    assert_eq!(c.int(&["LLEN", "mylist"]), 1001);
    // SADD/HSET/ZADD members are element:<12 digits> below 1000.
    let card = c.int(&["SCARD", "myset"]);
    assert!(card > 0 && card <= 1000, "{card}");
    let hlen = c.int(&["HLEN", "myhash"]);
    assert!(hlen > 0 && hlen <= 1000, "{hlen}");
    let zcard = c.int(&["ZCARD", "myzset"]);
    assert!(zcard > 0 && zcard <= 1000, "{zcard}");
}

#[test]
fn wrong_type_keys_make_every_reply_an_error() {
    let redis = Redis::start(&[]);
    let port = redis.port.to_string();
    let mut c = redis.client();
    // With -r 5 the GET keys are key:000000000000..key:000000000004: make them all lists.
    for i in 0..5 {
        c.int(&["RPUSH", &format!("key:{i:012}"), "a", "b"]);
    }
    let out = bench(&[
        "-p", &port, "-t", "get,incr", "-n", "777", "-c", "5", "-P", "8", "-r", "5", "--json",
    ]);
    let rows = json_lines(&out);
    assert_eq!(rows[0]["test"], "GET");
    assert_eq!(rows[0]["requests"], 777);
    assert_eq!(rows[0]["errors"], 777, "GET of a list is WRONGTYPE: {out}");
    assert_eq!(redis.cmdstat("get", "failed_calls"), 777);
    // INCR keys are counter:…, untouched: no error.
    assert_eq!(rows[1]["errors"], 0, "{out}");
}

#[test]
fn first_sigint_stops_the_run_and_reports() {
    let redis = Redis::start(&[]);
    let port = redis.port.to_string();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_codis-bench"))
        .args([
            "-p",
            &port,
            "-t",
            "set,get",
            "--duration",
            "10m",
            "-c",
            "4",
            "--json",
        ])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start codis-bench");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while redis.calls("set") < 500 {
        assert!(
            std::time::Instant::now() < until,
            "codis-bench never got going"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: sending a signal to our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let out = child.wait_with_output().expect("wait for codis-bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = json_lines(&String::from_utf8_lossy(&out.stdout));
    // The test under way (SET) is reported, the next (GET) is skipped.
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["test"], "SET");
    assert_eq!(rows[0]["errors"], 0);
    assert_eq!(num(&rows[0], "requests") as u64, redis.calls("set"));
    assert_eq!(redis.calls("get"), 0);
}
