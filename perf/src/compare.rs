//! `codis-bench compare`: the same workload against several targets in alternating rounds
//! (A B, B A, A B …, so drift in the machine hits every target alike), then per test and target
//! the median throughput and latency percentiles, the spread across rounds and the ratio to the
//! baseline target.

use std::fmt::Write as _;

use crate::conn::Target;
use crate::error::BenchError;
use crate::report::round3;
use crate::runner::{run_test, Load, TestResult};
use crate::workload::{Plan, TestKind};

/// A named target (`--target name=host:port`).
#[derive(Debug, Clone)]
pub struct NamedTarget {
    /// Its label in the table.
    pub name: String,
    /// Where it is.
    pub target: Target,
}

/// One test on one target, summarised over the rounds.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Test name.
    pub test: String,
    /// Target name.
    pub target: String,
    /// Rounds run.
    pub rounds: usize,
    /// Median throughput (requests/s).
    pub rps: f64,
    /// Lowest round's throughput.
    pub rps_min: f64,
    /// Highest round's throughput.
    pub rps_max: f64,
    /// `(max - min) / median` of throughput, in percent.
    pub spread_pct: f64,
    /// Median throughput over the baseline's median throughput.
    pub ratio: f64,
    /// Median p99 over the baseline's median p99.
    pub p99_ratio: f64,
    /// Median latency percentiles in µs: p50, p90, p99, p99.9, p99.99, max.
    pub latency_us: [f64; 6],
    /// Requests over all rounds.
    pub requests: u64,
    /// Errors over all rounds.
    pub errors: u64,
}

/// Everything `compare` measured.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// Index of the baseline in the target list.
    pub baseline: usize,
    /// Per test, per target (in target order).
    pub summaries: Vec<Vec<Summary>>,
    /// Threshold (percent) above which a spread earns a warning.
    pub max_spread: f64,
}

/// Run `tests` with `load` against every target, `rounds` times, alternating the order.
pub fn compare(
    targets: &[NamedTarget],
    baseline: usize,
    load: &Load,
    tests: &[TestKind],
    rounds: usize,
    max_spread: f64,
) -> Result<Comparison, BenchError> {
    if targets.is_empty() || baseline >= targets.len() {
        return Err(BenchError::Config(
            "compare needs targets and a baseline among them".into(),
        ));
    }
    let rounds = rounds.max(1);
    let plans: Vec<Plan> = tests
        .iter()
        .map(|&k| Plan::new(k, load.data_size, load.keyspace.is_some(), load.ratio))
        .collect();
    // results[test][target] = one result per round
    let mut results: Vec<Vec<Vec<TestResult>>> = vec![vec![Vec::new(); targets.len()]; plans.len()];
    for round in 0..rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..targets.len()).collect()
        } else {
            (0..targets.len()).rev().collect()
        };
        for &ti in &order {
            for (pi, plan) in plans.iter().enumerate() {
                let mut load = load.clone();
                load.seed = load.seed.wrapping_add(round as u64);
                let r = run_test(&targets[ti].target, &load, plan)?;
                tracing::info!(
                    round = round + 1,
                    target = %targets[ti].name,
                    test = %r.name,
                    rps = round3(r.rps()),
                    errors = r.errors,
                    "round done"
                );
                results[pi][ti].push(r);
            }
        }
    }
    let mut summaries = Vec::with_capacity(plans.len());
    for per_target in &results {
        let mut row: Vec<Summary> = per_target
            .iter()
            .zip(targets)
            .map(|(rs, t)| summarize(rs, &t.name))
            .collect();
        let (base_rps, base_p99) = (row[baseline].rps, row[baseline].latency_us[2]);
        for s in &mut row {
            s.ratio = if base_rps > 0.0 {
                s.rps / base_rps
            } else {
                0.0
            };
            s.p99_ratio = if base_p99 > 0.0 {
                s.latency_us[2] / base_p99
            } else {
                0.0
            };
        }
        summaries.push(row);
    }
    Ok(Comparison {
        baseline,
        summaries,
        max_spread,
    })
}

/// The median of `v` (mean of the middle two for an even count); 0 when empty.
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn summarize(rs: &[TestResult], target: &str) -> Summary {
    let mut rps: Vec<f64> = rs.iter().map(|r| r.rps()).collect();
    let rps_min = rps.iter().copied().fold(f64::INFINITY, f64::min);
    let rps_max = rps.iter().copied().fold(0.0, f64::max);
    let med = median(&mut rps);
    let lat = |f: &dyn Fn(&TestResult) -> f64| {
        let mut v: Vec<f64> = rs.iter().map(f).collect();
        median(&mut v)
    };
    Summary {
        test: rs.first().map(|r| r.name.clone()).unwrap_or_default(),
        target: target.to_string(),
        rounds: rs.len(),
        rps: med,
        rps_min: if rps_min.is_finite() { rps_min } else { 0.0 },
        rps_max,
        spread_pct: if med > 0.0 {
            (rps_max - rps_min) / med * 100.0
        } else {
            0.0
        },
        ratio: 0.0,
        p99_ratio: 0.0,
        latency_us: [
            lat(&|r| r.quantile_us(0.5)),
            lat(&|r| r.quantile_us(0.9)),
            lat(&|r| r.quantile_us(0.99)),
            lat(&|r| r.quantile_us(0.999)),
            lat(&|r| r.quantile_us(0.9999)),
            lat(&|r| r.max_us()),
        ],
        requests: rs.iter().map(|r| r.requests).sum(),
        errors: rs.iter().map(|r| r.errors).sum(),
    }
}

impl Comparison {
    /// Warnings for every test and target whose throughput spread exceeds the threshold.
    pub fn warnings(&self) -> Vec<String> {
        self.summaries
            .iter()
            .flatten()
            .filter(|s| s.spread_pct > self.max_spread)
            .map(|s| {
                format!(
                    "WARNING: {} on {}: throughput spread across {} rounds is {:.1}% (> {:.0}%): \
                     the machine is too noisy for a reliable comparison",
                    s.test, s.target, s.rounds, s.spread_pct, self.max_spread
                )
            })
            .collect()
    }

    /// The comparison table (latencies in µs), warnings last.
    pub fn table(&self, load: &Load) -> String {
        let mut out = String::new();
        let base = self
            .summaries
            .first()
            .and_then(|row| row.get(self.baseline))
            .map(|s| s.target.clone())
            .unwrap_or_default();
        for row in &self.summaries {
            let Some(first) = row.first() else { continue };
            let _ = writeln!(
                out,
                "== {} (-c {} -P {} -d {}; median of {} rounds; latency in µs; ratios vs {}) ==",
                first.test, load.clients, load.pipeline, load.data_size, first.rounds, base
            );
            let _ =
                writeln!(
                out,
                "{:<12} {:>12} {:>19} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>7} {:>7}",
                "target", "rps", "rps min-max", "spread", "rps x", "p50", "p90", "p99", "p99.9",
                "p99.99", "max", "p99 x", "errors"
            );
            for s in row {
                let l = s.latency_us;
                let _ = writeln!(
                    out,
                    "{:<12} {:>12.2} {:>19} {:>6.1}% {:>7.3} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10.1} {:>7.3} {:>7}",
                    s.target,
                    s.rps,
                    format!("{:.0}-{:.0}", s.rps_min, s.rps_max),
                    s.spread_pct,
                    s.ratio,
                    l[0],
                    l[1],
                    l[2],
                    l[3],
                    l[4],
                    l[5],
                    s.p99_ratio,
                    s.errors
                );
            }
            out.push('\n');
        }
        for w in self.warnings() {
            out.push_str(&w);
            out.push('\n');
        }
        out
    }

    /// One JSON object per test and target (with the load's `clients`, `pipeline`, `data_size`,
    /// so result files from several runs can be merged and plotted).
    pub fn json_lines(&self, load: &Load) -> Vec<serde_json::Value> {
        self.summaries
            .iter()
            .flatten()
            .map(|s| {
                let l = s.latency_us;
                serde_json::json!({
                    "test": s.test,
                    "target": s.target,
                    "baseline": self.summaries.first().and_then(|r| r.get(self.baseline)).map(|b| b.target.clone()),
                    "clients": load.clients,
                    "pipeline": load.pipeline,
                    "data_size": load.data_size,
                    "rate": load.rate,
                    "rounds": s.rounds,
                    "requests": s.requests,
                    "errors": s.errors,
                    "rps": round3(s.rps),
                    "rps_min": round3(s.rps_min),
                    "rps_max": round3(s.rps_max),
                    "spread_pct": round3(s.spread_pct),
                    "noisy": s.spread_pct > self.max_spread,
                    "ratio": round3(s.ratio),
                    "p99_ratio": round3(s.p99_ratio),
                    "p50": round3(l[0]),
                    "p90": round3(l[1]),
                    "p99": round3(l[2]),
                    "p999": round3(l[3]),
                    "p9999": round3(l[4]),
                    "max": round3(l[5]),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
    }
}
