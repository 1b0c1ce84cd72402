//! `codis-bench compare` across two real redis-servers.

mod common;

use common::{bench, json_lines, num, Redis};

#[test]
fn compare_reports_ratios_per_target() {
    let a = Redis::start(&[]);
    let b = Redis::start(&[]);
    let (ta, tb) = (format!("fast={}", a.addr()), format!("other={}", b.addr()));
    let out = bench(&[
        "compare",
        "--target",
        &ta,
        "--target",
        &tb,
        "--rounds",
        "3",
        "--baseline",
        "other",
        "-t",
        "get,set",
        "-n",
        "1000",
        "-c",
        "5",
        "--json",
    ]);
    let rows = json_lines(&out);
    assert_eq!(rows.len(), 4, "{out}");
    for r in &rows {
        assert_eq!(r["rounds"], 3);
        assert_eq!(r["requests"], 3000);
        assert_eq!(r["errors"], 0);
        assert!(
            num(r, "rps_min") <= num(r, "rps") && num(r, "rps") <= num(r, "rps_max"),
            "{r}"
        );
        assert!(num(r, "ratio") > 0.0 && num(r, "p99_ratio") > 0.0, "{r}");
        if r["target"] == "other" {
            assert_eq!(num(r, "ratio"), 1.0);
            assert_eq!(num(r, "p99_ratio"), 1.0);
        }
    }
    // Every round's requests reached each server exactly.
    for s in [&a, &b] {
        assert_eq!(s.calls("get"), 3000);
        assert_eq!(s.calls("set"), 3000);
    }
}

#[test]
fn compare_table_and_noise_warning() {
    let a = Redis::start(&[]);
    let (ta, tb) = (format!("one={}", a.addr()), format!("two={}", a.addr()));
    // --max-spread 0: any difference between rounds is "too noisy", so the warning must show.
    let out = bench(&[
        "compare",
        "--target",
        &ta,
        "--target",
        &tb,
        "--rounds",
        "2",
        "-t",
        "get",
        "-n",
        "500",
        "-c",
        "2",
        "--max-spread",
        "0",
    ]);
    assert!(out.contains("== GET"), "{out}");
    assert!(out.contains("rps x") && out.contains("p99 x"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("one ")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("two ")), "{out}");
    assert!(out.contains("WARNING: GET on"), "{out}");
}

#[test]
fn compare_json_feeds_the_plots() {
    let a = Redis::start(&[]);
    let b = Redis::start(&[]);
    let (ta, tb) = (format!("a={}", a.addr()), format!("b={}", b.addr()));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut results = String::new();
    for p in ["1", "8"] {
        let out = bench(&[
            "compare", "--target", &ta, "--target", &tb, "--rounds", "1", "-t", "get,set", "-n",
            "400", "-c", "4", "-P", p, "--json",
        ]);
        for mut row in json_lines(&out) {
            assert_eq!(row["pipeline"].to_string(), p, "{row}");
            assert_eq!(row["clients"], 4);
            assert_eq!(row["baseline"], "a");
            row["suite"] = "server direct".into();
            results.push_str(&format!("{row}\n"));
        }
    }
    let file = dir.path().join("results.json");
    std::fs::write(&file, results).expect("write results");
    let out_dir = dir.path().join("svg");
    let listed = bench(&[
        "plot",
        file.to_str().expect("utf-8 path"),
        "--out",
        out_dir.to_str().expect("utf-8 path"),
    ]);
    let mut files: Vec<&str> = listed.lines().collect();
    files.sort_unstable();
    assert_eq!(files.len(), 3, "{listed}");
    for (f, name) in files.iter().zip([
        "server-direct-latency-p1.svg",
        "server-direct-latency-p8.svg",
        "server-direct-throughput.svg",
    ]) {
        assert!(f.ends_with(name), "{f}");
        let svg = std::fs::read_to_string(f).expect("read svg");
        assert!(svg.starts_with("<svg") || svg.contains("<svg"), "{f}");
        assert!(svg.contains(">a GET<") || svg.contains("a GET"), "{f}");
        assert!(svg.contains("b SET"), "{f}");
    }
    let bad = common::bench_raw(&["plot", "/nonexistent/results.json"]);
    assert!(!bad.status.success());
}
