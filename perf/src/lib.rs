//! codis-bench: the load generator of codis-rs, a redis-benchmark work-alike on the
//! thread-per-core runtime (glommio / io_uring), plus a side-by-side `compare` mode.
//!
//! # Usage
//!
//! ```text
//! codis-bench [-h HOST] [-p PORT] [-c CLIENTS] [-n REQUESTS] [-P PIPELINE] [-d BYTES]
//!             [-r KEYSPACELEN] [-t TESTS] [--threads N] [-a PASSWORD] [--dbnum DB]
//!             [--ratio GET:SET] [--dist uniform|zipfian] [--zipf-exponent S]
//!             [--duration 30s] [--rate REQ_PER_SEC] [--seed N] [--csv | --json] [-q]
//! codis-bench compare --target NAME=HOST:PORT --target NAME=HOST:PORT [--rounds 5]
//!             [--baseline NAME] [--max-spread 15] [--json] <the same workload options>
//! codis-bench plot RESULTS.json [--out docs/bench/]
//! ```
//!
//! - Options are redis-benchmark's (`-h` is the host, so help is `--help`); defaults too: 50
//!   clients, 100000 requests, pipeline 1, 3-byte values of `x`. `-n` is exact: the connections
//!   claim batches from one shared budget.
//! - Tests (`-t`, comma-separated): `ping_inline ping_mbulk ping set get incr lpush rpush lpop
//!   rpop sadd hset spop zadd zpopmin lrange lrange_100 lrange_300 lrange_500 lrange_600 mset
//!   mget mixed`, and `lrange_N` for any N; the default is redis-benchmark's suite (all but `mget` and `mixed`); LRANGE
//!   tests are preceded by "LPUSH (needed to benchmark LRANGE)" as in redis-benchmark.
//! - Keys: `key:__rand_int__` literally, or with `-r N` a 12-digit number below N drawn per
//!   placeholder (`key:000000012345`), uniformly or with `--dist zipfian` (key 0 hottest).
//! - `--ratio 1:10`: the `mixed` test, one GET per ten SETs (GET:SET), on the same keys.
//! - `--duration 30s` runs each test for that long instead of `-n` requests.
//! - `--rate N`: open loop at N requests/s in total: each connection sends a batch of `-P`
//!   requests every `c·P/N` seconds (connections staggered over one interval), and each
//!   request's latency counts from when its batch was *scheduled*. A connection that falls
//!   behind (its previous reply still outstanding) sends the overdue batch as soon as it can,
//!   and the wait shows in the percentiles, so a stalled server cannot hide behind a slowed
//!   generator (no coordinated omission, as in wrk2). A warning is logged when the achieved
//!   rate stays under 90% of the target.
//! - Every reply is checked (`GET` → bulk or nil, `SET` → `+OK`, `INCR` → integer, …); error
//!   replies and wrong replies are counted as `errors`, not successes.
//! - Output: a block per test with throughput and p50/p90/p99/p99.9/p99.99/max in µs; `-q` one
//!   line per test; `--csv` redis-benchmark 7.0's CSV (latencies in ms); `--json` one object
//!   per line with `test, requests, errors, seconds, rps, p50, p90, p99, p999, p9999, max`
//!   (latencies in µs).
//! - `compare` runs every test on each target in alternating rounds (A B, B A, …) and prints,
//!   per test and target, the median throughput and percentiles, the min–max and spread of
//!   throughput, and the ratios to the baseline (first target unless `--baseline`); a spread
//!   above `--max-spread` percent earns a WARNING line (machine too noisy).
//! - `plot` draws SVG charts from `compare --json` rows (see [`plot`]): throughput against
//!   pipeline depth and latency percentiles, per target.
//! - The first SIGINT/SIGTERM stops a run gracefully: in-flight replies are awaited and the
//!   current test's results are printed (later tests are skipped); scripts use it to load a
//!   server for exactly as long as something else takes. SIGUSR1 restarts the measurement
//!   (counts, latencies and the rps clock), so the figures cover only what follows it.
//! - Runtime: one glommio executor per `--threads`, pinned to the allowed cores in turn, each
//!   driving its share of the connections. glommio needs locked memory (run as root or raise
//!   `ulimit -l`). Logs go to stderr (`RUST_LOG`), results to stdout.
//!
//! # Layout
//! - [`cli`]: the options and their validation.
//! - [`workload`]: tests, pre-encoded request templates with `__rand_int__` slots, reply checks.
//! - [`keys`]: the PRNG and the uniform / zipfian key distributions.
//! - [`conn`]: one connection's allocation-free hot loop (batch write, `frame_len` reads).
//! - [`runner`]: executors, the shared request budget, histogram merging.
//! - [`report`]: text, `-q`, CSV and JSON output.
//! - [`compare`]: the multi-target comparison.
//! - [`plot`]: SVG charts of comparison results.
//! - [`error`]: fatal errors.

pub mod cli;
pub mod compare;
pub mod conn;
pub mod error;
pub mod keys;
mod open;
pub mod plot;
pub mod report;
pub mod runner;
pub mod workload;

use std::io::Write;

pub use cli::Cli;
pub use error::BenchError;
pub use runner::{install_stop_signals, run_test, stop_requested, Load, TestResult};

use compare::NamedTarget;
use report::Format;
use workload::Plan;

/// Send logs (ours via tracing, glommio's via `log`) to stderr; `RUST_LOG` filters (default info).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .finish();
    let _ = tracing::subscriber::set_global_default(subscriber);
    let _ = tracing_log::LogTracer::init();
}

/// Run what the command line asks, printing results to `out`.
pub fn run(cli: &Cli, out: &mut dyn Write) -> Result<(), BenchError> {
    match &cli.command {
        Some(cli::Command::Compare(c)) => run_compare(c, out),
        Some(cli::Command::Plot(p)) => run_plot(p, out),
        None => run_single(cli, out),
    }
}

fn run_plot(p: &cli::PlotArgs, out: &mut dyn Write) -> Result<(), BenchError> {
    let text =
        std::fs::read_to_string(&p.results).map_err(|e| BenchError::File(p.results.clone(), e))?;
    let rows = plot::parse_rows(&text)?;
    for path in plot::plot(&rows, &p.out)? {
        writeln!(out, "{}", path.display()).map_err(|e| BenchError::File(path.clone(), e))?;
    }
    Ok(())
}

fn run_single(cli: &Cli, out: &mut dyn Write) -> Result<(), BenchError> {
    let load = cli.load.load()?;
    let tests = cli.load.tests()?;
    let addr = cli::resolve(&format!("{}:{}", cli.host, cli.port))?;
    let target = cli.load.target(addr);
    let format = if cli.output.csv {
        Format::Csv
    } else if cli.output.json {
        Format::Json
    } else if cli.output.quiet {
        Format::Quiet
    } else {
        Format::Text
    };
    let io = |e| BenchError::Io(addr, e);
    if let Some(h) = report::header(format) {
        writeln!(out, "{h}").map_err(io)?;
    }
    for kind in tests {
        let plan = Plan::new(kind, load.data_size, load.keyspace.is_some(), load.ratio);
        let r = run_test(&target, &load, &plan)?;
        warn_if_rate_missed(&r, &load);
        writeln!(out, "{}", report::render(format, &r, &load)).map_err(io)?;
        out.flush().map_err(io)?;
        if stop_requested() {
            break;
        }
    }
    Ok(())
}

/// An open-loop run that fell well short of its rate measured a saturated server (or generator):
/// its latencies then mostly show queueing, which the reader must know.
fn warn_if_rate_missed(r: &TestResult, load: &Load) {
    if let Some(rate) = load.rate {
        if r.rps() < rate * 0.9 {
            tracing::warn!(
                test = %r.name,
                target_rate = rate,
                achieved = report::round3(r.rps()),
                "open-loop rate not reached: the server (or this generator) is saturated; \
                 latencies include the queueing behind the schedule"
            );
        }
    }
}

fn run_compare(c: &cli::CompareArgs, out: &mut dyn Write) -> Result<(), BenchError> {
    let load = c.load.load()?;
    let tests = c.load.tests()?;
    let mut targets = Vec::with_capacity(c.targets.len());
    for (name, addr) in &c.targets {
        if targets.iter().any(|t: &NamedTarget| &t.name == name) {
            return Err(BenchError::Config(format!(
                "target name {name:?} given twice"
            )));
        }
        targets.push(NamedTarget {
            name: name.clone(),
            target: c.load.target(cli::resolve(addr)?),
        });
    }
    let baseline = match &c.baseline {
        None => 0,
        Some(b) => targets.iter().position(|t| &t.name == b).ok_or_else(|| {
            BenchError::Config(format!("--baseline {b:?} is not a --target name"))
        })?,
    };
    let cmp = compare::compare(&targets, baseline, &load, &tests, c.rounds, c.max_spread)?;
    for w in cmp.warnings() {
        tracing::warn!("{w}");
    }
    let addr = targets[baseline].target.addr;
    let io = |e| BenchError::Io(addr, e);
    if c.json {
        for v in cmp.json_lines(&load) {
            writeln!(out, "{v}").map_err(io)?;
        }
    } else {
        write!(out, "{}", cmp.table(&load)).map_err(io)?;
    }
    out.flush().map_err(io)
}
