//! Command-line options (redis-benchmark's names where it has one) and their conversion into a
//! [`Load`], a [`Target`] and a test list.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::conn::Target;
use crate::error::BenchError;
use crate::keys::Dist;
use crate::runner::Load;
use crate::workload::{select_tests, TestKind};

/// codis-bench: a redis-benchmark-compatible load generator on glommio (thread-per-core).
#[derive(Debug, Parser)]
#[command(
    name = "codis-bench",
    version,
    disable_help_flag = true,
    args_conflicts_with_subcommands = true,
    args_override_self = true,
    after_help = "Examples:\n  codis-bench -p 19000 -t get,set -n 100000 -c 50 -P 16\n  \
codis-bench -p 19000 -t mixed --ratio 1:10 -r 100000 --dist zipfian --duration 30s\n  \
codis-bench -p 19000 -t get -r 1000 --rate 50000 --duration 10s --json\n  \
codis-bench compare --target redis=127.0.0.1:6379 --target codis=127.0.0.1:19000 -t get,set -P 16\n  \
codis-bench plot results.json --out docs/bench/"
)]
pub struct Cli {
    /// Compare targets instead of benchmarking one.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Server hostname.
    #[arg(short = 'h', long = "host", default_value = "127.0.0.1")]
    pub host: String,
    /// Server port.
    #[arg(short = 'p', long = "port", default_value_t = 6379)]
    pub port: u16,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Print help (-h is the host, as in redis-benchmark).
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the same workload against several targets in alternating rounds and compare them.
    Compare(CompareArgs),
    /// Draw SVG charts (throughput vs pipeline depth, latency percentiles per target) from
    /// `compare --json` results.
    Plot(PlotArgs),
}

/// `codis-bench plot` options.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// A file of `compare --json` objects (one per line, or a JSON array); an optional `suite`
    /// field groups rows into separate charts.
    pub results: std::path::PathBuf,
    /// Directory for the SVG files (created if missing).
    #[arg(long, default_value = "docs/bench")]
    pub out: std::path::PathBuf,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
}

/// `codis-bench compare` options (a repeated option: the last one wins, so scripts can override).
#[derive(Debug, Args)]
#[command(args_override_self = true)]
pub struct CompareArgs {
    /// A target as NAME=HOST:PORT (repeat; at least two make a comparison).
    #[arg(long = "target", required = true, value_parser = parse_named_target)]
    pub targets: Vec<(String, String)>,
    /// Rounds per target; targets alternate each round (A B, B A, …).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// The target the others are compared to (default: the first).
    #[arg(long)]
    pub baseline: Option<String>,
    /// Warn when a target's throughput spread across rounds, (max-min)/median, exceeds this (%).
    #[arg(long, default_value_t = 15.0)]
    pub max_spread: f64,
    /// Print one JSON object per test and target instead of the table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
}

/// Workload options, shared by a single run and `compare`.
#[derive(Debug, Args, Clone)]
pub struct LoadArgs {
    /// Number of parallel connections.
    #[arg(short = 'c', default_value_t = 50)]
    pub clients: usize,
    /// Total number of requests (exact, over all connections).
    #[arg(short = 'n', default_value_t = 100_000)]
    pub requests: u64,
    /// Pipeline <numreq> requests per batch (one write per batch).
    #[arg(short = 'P', default_value_t = 1)]
    pub pipeline: usize,
    /// Data size of SET/GET/… values in bytes (the byte 'x' repeated).
    #[arg(short = 'd', default_value_t = 3)]
    pub data_size: usize,
    /// Use keys key:000000000000 .. key:<keyspacelen-1> (12 digits) instead of the literal
    /// key:__rand_int__.
    #[arg(short = 'r', value_name = "KEYSPACELEN")]
    pub keyspace: Option<u64>,
    /// Only run these comma-separated tests: ping_inline, ping_mbulk, ping, set, get, incr,
    /// lpush, rpush, lpop, rpop, sadd, hset, spop, zadd, zpopmin, lrange, lrange_100, lrange_300,
    /// lrange_500, lrange_600, mset, mget, mixed. Default: redis-benchmark's suite.
    #[arg(short = 't', value_name = "TESTS")]
    pub tests: Option<String>,
    /// Executors (threads, one pinned per core); the connections are split among them.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Password for AUTH.
    #[arg(short = 'a', value_name = "PASSWORD")]
    pub password: Option<String>,
    /// SELECT this db number after connecting.
    #[arg(long, default_value_t = 0)]
    pub dbnum: u32,
    /// Mixed workload: GET:SET requests per cycle, e.g. 1:10 (one GET per ten SETs). Without -t,
    /// runs only the mixed test.
    #[arg(long, value_parser = parse_ratio, value_name = "GET:SET")]
    pub ratio: Option<[u32; 2]>,
    /// Key distribution over -r keys.
    #[arg(long, value_enum, default_value_t = DistArg::Uniform)]
    pub dist: DistArg,
    /// Exponent of the zipfian distribution (key k drawn ∝ 1/(k+1)^s).
    #[arg(long, default_value_t = 0.99)]
    pub zipf_exponent: f64,
    /// Run each test this long (e.g. 30s, 500ms, 2m) instead of -n requests.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Open loop: send this many requests per second in total, on schedule, whether or not
    /// earlier replies are back (each connection pipelines what is due); latency counts from the
    /// scheduled send time (no coordinated omission).
    #[arg(long, value_name = "REQ_PER_SEC")]
    pub rate: Option<f64>,
    /// With --rate: print every request slower than this many microseconds to stderr, as
    /// `slow <due> <latency µs> <slot>` where <due> is its scheduled send time in seconds of
    /// CLOCK_MONOTONIC (the clock of `perf record -k mono`), to line slow requests up with what
    /// the machine ran at that moment, and <slot> its first key's Codis slot (`-` for none).
    #[arg(long, value_name = "MICROS", requires = "rate")]
    pub slow_log: Option<u64>,
    /// Seed of the key generators (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// `--dist` values.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum DistArg {
    /// Every key equally likely.
    Uniform,
    /// Zipf's law (a few hot keys), see --zipf-exponent.
    Zipfian,
}

/// Output options of a single run.
#[derive(Debug, Args, Clone)]
pub struct OutputArgs {
    /// Output in redis-benchmark's CSV format.
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
    /// One JSON object per test: test, requests, errors, seconds, rps, p50, p90, p99, p999,
    /// p9999, max (latencies in microseconds).
    #[arg(long)]
    pub json: bool,
    /// Quiet: one line per test.
    #[arg(short = 'q')]
    pub quiet: bool,
}

impl LoadArgs {
    /// The validated load.
    pub fn load(&self) -> Result<Load, BenchError> {
        if self.clients == 0 {
            return Err(BenchError::Config("-c must be at least 1".into()));
        }
        if self.pipeline == 0 {
            return Err(BenchError::Config("-P must be at least 1".into()));
        }
        if self.threads == 0 {
            return Err(BenchError::Config("--threads must be at least 1".into()));
        }
        if self.keyspace == Some(0) {
            return Err(BenchError::Config("-r must be at least 1".into()));
        }
        let dist = match self.dist {
            DistArg::Uniform => Dist::Uniform,
            DistArg::Zipfian => {
                if self.keyspace.is_none() {
                    return Err(BenchError::Config(
                        "--dist zipfian needs a keyspace (-r)".into(),
                    ));
                }
                if !(self.zipf_exponent > 0.0 && self.zipf_exponent.is_finite()) {
                    return Err(BenchError::Config("--zipf-exponent must be > 0".into()));
                }
                Dist::Zipfian(self.zipf_exponent)
            }
        };
        if let Some(r) = self.rate {
            if !(r > 0.0 && r.is_finite()) {
                return Err(BenchError::Config("--rate must be > 0".into()));
            }
        }
        if self.duration == Some(Duration::ZERO) {
            return Err(BenchError::Config("--duration must be > 0".into()));
        }
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        });
        Ok(Load {
            clients: self.clients,
            requests: self.requests,
            pipeline: self.pipeline,
            threads: self.threads,
            data_size: self.data_size,
            keyspace: self.keyspace,
            dist,
            ratio: self.ratio.unwrap_or([1, 1]),
            duration: self.duration,
            rate: self.rate,
            slow_log: self.slow_log.map(Duration::from_micros),
            seed,
        })
    }

    /// The tests to run: `-t`, else the mixed test alone with `--ratio`, else the default suite.
    pub fn tests(&self) -> Result<Vec<TestKind>, BenchError> {
        match (&self.tests, self.ratio) {
            (None, Some(_)) => Ok(vec![TestKind::Mixed]),
            (spec, _) => select_tests(spec.as_deref()),
        }
    }

    /// A target at `addr` with this load's AUTH and SELECT.
    pub fn target(&self, addr: SocketAddr) -> Target {
        Target {
            addr,
            auth: self.password.clone(),
            dbnum: self.dbnum,
        }
    }
}

/// Resolve `host:port` (first address).
pub fn resolve(host_port: &str) -> Result<SocketAddr, BenchError> {
    host_port
        .to_socket_addrs()
        .map_err(|e| BenchError::Resolve(host_port.to_string(), e))?
        .next()
        .ok_or_else(|| {
            BenchError::Resolve(host_port.to_string(), std::io::Error::other("no address"))
        })
}

/// `30s`, `500ms`, `2m`, `1h`, `1.5s` or bare seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?} (e.g. 30s, 500ms, 2m)"))?;
    let secs = match unit.trim() {
        "" | "s" | "sec" => n,
        "ms" => n / 1000.0,
        "us" | "µs" => n / 1_000_000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("bad duration unit {other:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

/// `G:S`, e.g. `1:10`.
pub fn parse_ratio(s: &str) -> Result<[u32; 2], String> {
    let (g, st) = s
        .split_once(':')
        .ok_or_else(|| format!("bad ratio {s:?}: expected GET:SET, e.g. 1:10"))?;
    let g: u32 = g
        .trim()
        .parse()
        .map_err(|_| format!("bad GET count in {s:?}"))?;
    let st: u32 = st
        .trim()
        .parse()
        .map_err(|_| format!("bad SET count in {s:?}"))?;
    if g == 0 && st == 0 {
        return Err("ratio 0:0 sends nothing".into());
    }
    Ok([g, st])
}

/// `name=host:port`.
pub fn parse_named_target(s: &str) -> Result<(String, String), String> {
    let (name, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("bad target {s:?}: expected NAME=HOST:PORT"))?;
    if name.is_empty() || addr.is_empty() {
        return Err(format!("bad target {s:?}: expected NAME=HOST:PORT"));
    }
    Ok((name.to_string(), addr.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("xs").is_err());
        assert!(parse_duration("3 weeks").is_err());
    }

    #[test]
    fn ratios_and_targets() {
        assert_eq!(parse_ratio("1:10").unwrap(), [1, 10]);
        assert!(parse_ratio("0:0").is_err());
        assert!(parse_ratio("3").is_err());
        assert_eq!(
            parse_named_target("redis=127.0.0.1:6379").unwrap(),
            ("redis".to_string(), "127.0.0.1:6379".to_string())
        );
        assert!(parse_named_target("127.0.0.1:6379").is_err());
    }

    #[test]
    fn redis_benchmark_flags_parse() {
        let cli = Cli::try_parse_from([
            "codis-bench",
            "-h",
            "localhost",
            "-p",
            "7000",
            "-c",
            "10",
            "-n",
            "500",
            "-P",
            "4",
            "-d",
            "8",
            "-r",
            "100",
            "-t",
            "get,set",
            "--csv",
            "-q",
            "-a",
            "pw",
            "--dbnum",
            "2",
        ])
        .unwrap();
        assert_eq!(cli.host, "localhost");
        assert_eq!(cli.port, 7000);
        assert_eq!(cli.load.pipeline, 4);
        assert!(cli.output.csv && cli.output.quiet);
        let cmp = Cli::try_parse_from([
            "codis-bench",
            "compare",
            "--target",
            "a=127.0.0.1:1",
            "--target",
            "b=127.0.0.1:2",
            "--rounds",
            "3",
            "-t",
            "get",
        ])
        .unwrap();
        assert!(
            matches!(cmp.command, Some(Command::Compare(c)) if c.targets.len() == 2 && c.rounds == 3)
        );
        let twice = Cli::try_parse_from([
            "codis-bench",
            "compare",
            "--target",
            "a=127.0.0.1:1",
            "--rounds",
            "5",
            "-P",
            "1",
            "--rounds",
            "2",
            "-P",
            "16",
        ])
        .unwrap();
        assert!(
            matches!(twice.command, Some(Command::Compare(c)) if c.rounds == 2 && c.load.pipeline == 16)
        );
    }

    #[test]
    fn ratio_alone_selects_the_mixed_test() {
        let cli = Cli::try_parse_from(["codis-bench", "--ratio", "1:10"]).unwrap();
        assert_eq!(cli.load.tests().unwrap(), vec![TestKind::Mixed]);
        let bad = Cli::try_parse_from(["codis-bench", "--dist", "zipfian"]).unwrap();
        assert!(bad.load.load().is_err());
    }
}
