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
