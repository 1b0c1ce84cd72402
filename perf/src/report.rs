//! Printing results: human text (latencies in µs), `-q` one-liners, redis-benchmark 7.0's exact CSV,
//! and one JSON object per test for scripts.

use crate::runner::{Load, TestResult};

/// How to print a single run's results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A block per test.
    Text,
    /// One line per test.
    Quiet,
    /// redis-benchmark's `--csv`.
    Csv,
    /// One JSON object per line.
    Json,
}

/// redis-benchmark 7.0's CSV header line.
pub const CSV_HEADER: &str = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"";

/// What to print before the first test, if anything.
pub fn header(format: Format) -> Option<&'static str> {
    (format == Format::Csv).then_some(CSV_HEADER)
}

/// One test's result in `format` (without a trailing newline).
pub fn render(format: Format, r: &TestResult, load: &Load) -> String {
    match format {
        Format::Text => text(r, load),
        Format::Quiet => format!(
            "{}: {:.2} requests per second, errors={}, latency (µs) p50={:.1} p99={:.1} max={:.1}",
            r.name,
            r.rps(),
            r.errors,
            r.quantile_us(0.5),
            r.quantile_us(0.99),
            r.max_us()
        ),
        Format::Csv => csv(r),
        Format::Json => json(r),
    }
}

fn text(r: &TestResult, load: &Load) -> String {
    let mode = match (load.rate, load.duration) {
        (Some(rate), _) => format!(", open loop at {rate} req/s"),
        (None, Some(_)) => ", timed".to_string(),
        _ => String::new(),
    };
    format!(
        "====== {name} ======\n  {req} requests completed in {secs:.2} seconds ({err} errors)\n  \
         {c} parallel clients, {d} bytes payload, pipeline {p}, {t} threads{mode}\n  \
         throughput: {rps:.2} requests per second\n  \
         latency (µs): p50={p50:.1} p90={p90:.1} p99={p99:.1} p99.9={p999:.1} p99.99={p9999:.1} max={max:.1}\n",
        name = r.name,
        req = r.requests,
        secs = r.seconds,
        err = r.errors,
        c = load.clients,
        d = load.data_size,
        p = load.pipeline,
        t = load.threads,
        rps = r.rps(),
        p50 = r.quantile_us(0.5),
        p90 = r.quantile_us(0.9),
        p99 = r.quantile_us(0.99),
        p999 = r.quantile_us(0.999),
        p9999 = r.quantile_us(0.9999),
        max = r.max_us(),
    )
}

/// A row of redis-benchmark 7.0's CSV: rps with 2 decimals, latencies in ms with 3.
pub fn csv(r: &TestResult) -> String {
    let ms = |ns: f64| ns / 1_000_000.0;
    let h = &r.hist;
    let empty = h.is_empty();
    let q = |x: f64| {
        if empty {
            0.0
        } else {
            ms(h.value_at_quantile(x) as f64)
        }
    };
    format!(
        "\"{}\",\"{:.2}\",\"{:.3}\",\"{:.3}\",\"{:.3}\",\"{:.3}\",\"{:.3}\",\"{:.3}\"",
        r.name,
        r.rps(),
        if empty { 0.0 } else { ms(h.mean()) },
        if empty { 0.0 } else { ms(h.min() as f64) },
        q(0.5),
        q(0.95),
        q(0.99),
        if empty { 0.0 } else { ms(h.max() as f64) },
    )
}

/// The JSON object of one test (latencies in microseconds), keys in this order.
#[derive(Debug, serde::Serialize)]
pub struct JsonRow<'a> {
    test: &'a str,
    requests: u64,
    errors: u64,
    seconds: f64,
    rps: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    p9999: f64,
    max: f64,
}

/// The JSON line of one test.
pub fn json(r: &TestResult) -> String {
    let row = JsonRow {
        test: &r.name,
        requests: r.requests,
        errors: r.errors,
        seconds: round3(r.seconds),
        rps: round3(r.rps()),
        p50: round3(r.quantile_us(0.5)),
        p90: round3(r.quantile_us(0.9)),
        p99: round3(r.quantile_us(0.99)),
        p999: round3(r.quantile_us(0.999)),
        p9999: round3(r.quantile_us(0.9999)),
        max: round3(r.max_us()),
    };
    serde_json::to_string(&row).unwrap_or_default()
}

/// `x` rounded to 3 decimals.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::new_histogram;

    fn result() -> TestResult {
        let mut hist = new_histogram().unwrap();
        for us in [100u64, 200, 300, 400, 1000] {
            hist.record(us * 1000).unwrap();
        }
        TestResult {
            name: "GET".into(),
            requests: 5,
            errors: 1,
            seconds: 0.5,
            hist,
        }
    }

    #[test]
    fn csv_row_shape() {
        let row = csv(&result());
        assert!(
            row.starts_with("\"GET\",\"10.00\",\"0.400\",\"0.100\",\"0.300\""),
            "{row}"
        );
        assert_eq!(row.split(',').count(), CSV_HEADER.split(',').count());
    }

    #[test]
    fn json_keys() {
        let line = json(&result());
        assert!(
            line.starts_with("{\"test\":\"GET\",\"requests\":5,\"errors\":1,"),
            "{line}"
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        for k in [
            "test", "requests", "errors", "seconds", "rps", "p50", "p90", "p99", "p999", "p9999",
            "max",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert_eq!(v["errors"], 1);
        assert_eq!(v["rps"], 10.0);
    }
}
