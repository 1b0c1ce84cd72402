//! Counters and latencies. Each core writes only its own [`CoreStats`] (relaxed atomics on lines no
//! other core writes, so no contention and no locks on the hot path); its latency histogram lives
//! in the core and is merged into the shared one once a second. The admin thread reads and sums.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use resp::command::COMMANDS;
use serde::Serialize;

use crate::config::Config;

/// Index used for commands not in the table.
pub const UNKNOWN_CMD: usize = COMMANDS.len();

/// Per-command counters.
#[derive(Default)]
pub struct CmdStat {
    pub calls: AtomicU64,
    pub usecs: AtomicU64,
    pub fails: AtomicU64,
    pub redis_errors: AtomicU64,
}

/// One core's counters.
pub struct CoreStats {
    pub ops: AtomicU64,
    pub fails: AtomicU64,
    pub redis_errors: AtomicU64,
    pub cmds: Vec<CmdStat>,
    /// Request latencies in µs, merged from the core every second.
    pub latency: Mutex<Histogram<u64>>,
    /// Requests held because their slot was locked (`prepared`), their total and longest hold.
    pub held: AtomicU64,
    pub held_usecs: AtomicU64,
    pub held_usecs_max: AtomicU64,
}

/// A new latency histogram: 1 µs to 1 hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds are valid")
}

impl CoreStats {
    fn new() -> Self {
        CoreStats {
            ops: AtomicU64::new(0),
            fails: AtomicU64::new(0),
            redis_errors: AtomicU64::new(0),
            cmds: (0..=UNKNOWN_CMD).map(|_| CmdStat::default()).collect(),
            latency: Mutex::new(new_histogram()),
            held: AtomicU64::new(0),
            held_usecs: AtomicU64::new(0),
            held_usecs_max: AtomicU64::new(0),
        }
    }

    /// Records a request that waited `usecs` for its slot to unlock.
    pub fn record_hold(&self, usecs: u64) {
        self.held.fetch_add(1, Relaxed);
        self.held_usecs.fetch_add(usecs, Relaxed);
        self.held_usecs_max.fetch_max(usecs, Relaxed);
    }

    /// Records one finished request of command-table row `cmd`.
    #[inline]
    pub fn record(&self, cmd: usize, usecs: u64, failed: bool, redis_error: bool) {
        self.ops.fetch_add(1, Relaxed);
        if let Some(c) = self.cmds.get(cmd) {
            c.calls.fetch_add(1, Relaxed);
            c.usecs.fetch_add(usecs, Relaxed);
            if failed {
                c.fails.fetch_add(1, Relaxed);
            }
            if redis_error {
                c.redis_errors.fetch_add(1, Relaxed);
            }
        }
        if failed {
            self.fails.fetch_add(1, Relaxed);
        }
        if redis_error {
            self.redis_errors.fetch_add(1, Relaxed);
        }
    }

    fn reset(&self) {
        self.ops.store(0, Relaxed);
        self.fails.store(0, Relaxed);
        self.redis_errors.store(0, Relaxed);
        self.held.store(0, Relaxed);
        self.held_usecs.store(0, Relaxed);
        self.held_usecs_max.store(0, Relaxed);
        for c in &self.cmds {
            c.calls.store(0, Relaxed);
            c.usecs.store(0, Relaxed);
            c.fails.store(0, Relaxed);
            c.redis_errors.store(0, Relaxed);
        }
        if let Ok(mut h) = self.latency.lock() {
            h.reset();
        }
    }
}

/// One slow request.
#[derive(Clone, Debug, Serialize)]
pub struct SlowEntry {
    /// Unix time in ms when it finished.
    pub unix_ms: u64,
    pub usecs: u64,
    /// The command and its first arguments (truncated).
    pub command: String,
    pub client: String,
}

/// The N slowest requests seen (since the last reset), slowest first.
#[derive(Default)]
pub struct SlowLog {
    entries: Vec<SlowEntry>,
}

impl SlowLog {
    /// Keeps `e` if it is among the `cap` slowest.
    pub fn offer(&mut self, e: SlowEntry, cap: usize) {
        if cap == 0 {
            return;
        }
        if self.entries.len() >= cap && self.entries.last().is_some_and(|l| l.usecs >= e.usecs) {
            return;
        }
        let at = self.entries.partition_point(|x| x.usecs >= e.usecs);
        self.entries.insert(at, e);
        self.entries.truncate(cap);
    }
    /// The entries, slowest first.
    pub fn entries(&self) -> &[SlowEntry] {
        &self.entries
    }
}

/// State shared by every core and the control thread.
pub struct Shared {
    pub cfg: Arc<Config>,
    pub start: Instant,
    pub start_unix: u64,
    pub cores: Vec<Arc<CoreStats>>,
    pub sessions_alive: AtomicUsize,
    pub sessions_total: AtomicU64,
    /// Sessions in subscribed mode, each with its own connection to the pub/sub home.
    pub sessions_subscribed: AtomicUsize,
    /// Sessions waiting in a blocking pop, on a connection of their own (`blocking`).
    pub sessions_blocked: AtomicUsize,
    /// Every connected client (`CLIENT LIST`, `CLIENT KILL`).
    pub clients: crate::clients::Registry,
    pub slowlog: Mutex<SlowLog>,
    /// Whether the proxy has a topology and serves.
    pub online: AtomicBool,
    /// The topology version every core has applied.
    pub topology_version: AtomicU64,
    /// Whole topology snapshots read back from the coordinator (changes not known from a push).
    pub topology_reads: AtomicU64,
    /// Requests per second over the last second.
    pub qps: AtomicU64,
    /// Set when the proxy is shutting down.
    pub closed: AtomicBool,
    /// This proxy's token (`proxy-{token}` in the coordinator).
    pub token: String,
    /// `SCRIPT FLUSH`es through this proxy (every core then forgets its scripts).
    pub script_flushes: crate::scripts::Flushes,
    /// Servers whose last connection went through their Unix socket: address → socket path.
    pub backends_unix: Mutex<std::collections::BTreeMap<String, String>>,
}

/// Unix time in milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Shared {
    /// Shared state for `ncores` cores.
    pub fn new(cfg: Arc<Config>, token: String) -> Arc<Shared> {
        let n = cfg.ncpu.max(1);
        Arc::new(Shared {
            cfg,
            start: Instant::now(),
            start_unix: unix_ms() / 1000,
            cores: (0..n).map(|_| Arc::new(CoreStats::new())).collect(),
            sessions_alive: AtomicUsize::new(0),
            sessions_total: AtomicU64::new(0),
            sessions_subscribed: AtomicUsize::new(0),
            sessions_blocked: AtomicUsize::new(0),
            clients: Default::default(),
            slowlog: Mutex::new(SlowLog::default()),
            online: AtomicBool::new(false),
            topology_version: AtomicU64::new(0),
            topology_reads: AtomicU64::new(0),
            qps: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            token,
            backends_unix: Default::default(),
            script_flushes: Default::default(),
        })
    }

    /// Total requests.
    pub fn ops_total(&self) -> u64 {
        self.cores.iter().map(|c| c.ops.load(Relaxed)).sum()
    }

    /// Records a slow request if it is slow enough.
    pub fn maybe_slow(&self, usecs: u64, command: impl FnOnce() -> String, client: &str) {
        if Duration::from_micros(usecs) < self.cfg.slowlog_slower_than {
            return;
        }
        if let Ok(mut s) = self.slowlog.lock() {
            s.offer(
                SlowEntry {
                    unix_ms: unix_ms(),
                    usecs,
                    command: command(),
                    client: client.to_string(),
                },
                self.cfg.slowlog_max_len,
            );
        }
    }

    /// Zeroes every counter, histogram and the slow log.
    pub fn reset(&self) {
        for c in &self.cores {
            c.reset();
        }
        if let Ok(mut s) = self.slowlog.lock() {
            *s = SlowLog::default();
        }
    }

    /// A summary for JSON and Prometheus.
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut cmds = Vec::new();
        for i in 0..=UNKNOWN_CMD {
            let (mut calls, mut usecs, mut fails, mut errs) = (0, 0, 0, 0);
            for c in &self.cores {
                let s = &c.cmds[i];
                calls += s.calls.load(Relaxed);
                usecs += s.usecs.load(Relaxed);
                fails += s.fails.load(Relaxed);
                errs += s.redis_errors.load(Relaxed);
            }
            if calls > 0 {
                let name = COMMANDS
                    .get(i)
                    .map_or("UNKNOWN".to_string(), |c| c.name.to_ascii_uppercase());
                cmds.push(CmdSnapshot {
                    opstr: name,
                    calls,
                    usecs,
                    usecs_percall: usecs / calls,
                    fails,
                    redis_errtype: errs,
                });
            }
        }
        cmds.sort_by(|a, b| a.opstr.cmp(&b.opstr));
        let mut h = new_histogram();
        for c in &self.cores {
            if let Ok(l) = c.latency.lock() {
                let _ = h.add(&*l);
            }
        }
        let q = |p: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(p)
            }
        };
        StatsSnapshot {
            online: self.online.load(Relaxed),
            closed: self.closed.load(Relaxed),
            topology_version: self.topology_version.load(Relaxed),
            topology_reads: self.topology_reads.load(Relaxed),
            ops_total: self.ops_total(),
            ops_fails: self.cores.iter().map(|c| c.fails.load(Relaxed)).sum(),
            ops_redis_errors: self
                .cores
                .iter()
                .map(|c| c.redis_errors.load(Relaxed))
                .sum(),
            ops_qps: self.qps.load(Relaxed),
            slot_lock_holds: self.cores.iter().map(|c| c.held.load(Relaxed)).sum(),
            slot_lock_hold_usecs: self.cores.iter().map(|c| c.held_usecs.load(Relaxed)).sum(),
            slot_lock_hold_usecs_max: self
                .cores
                .iter()
                .map(|c| c.held_usecs_max.load(Relaxed))
                .max()
                .unwrap_or(0),
            sessions_total: self.sessions_total.load(Relaxed),
            sessions_alive: self.sessions_alive.load(Relaxed) as u64,
            sessions_subscribed: self.sessions_subscribed.load(Relaxed) as u64,
            sessions_blocked: self.sessions_blocked.load(Relaxed) as u64,
            latency_usecs: Latency {
                count: h.len(),
                p50: q(0.5),
                p90: q(0.9),
                p99: q(0.99),
                p999: q(0.999),
                max: h.max(),
                mean: h.mean(),
            },
            cmds,
            uptime_secs: self.start.elapsed().as_secs(),
            primary_only: self.cfg.backend_primary_only,
            backends_unix: self
                .backends_unix
                .lock()
                .map(|m| m.clone())
                .unwrap_or_default(),
        }
    }

    /// A connection to `addr` was made over the Unix socket `path` (`None`: over TCP).
    pub fn backend_transport(&self, addr: &str, path: Option<&str>) {
        if let Ok(mut m) = self.backends_unix.lock() {
            match path {
                Some(p) if m.get(addr).map(String::as_str) != Some(p) => {
                    m.insert(addr.to_string(), p.to_string());
                }
                Some(_) => {}
                None => {
                    m.remove(addr);
                }
            }
        }
    }
}

/// Latency percentiles in µs.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

/// One command's totals (Codis's `OpStats`).
#[derive(Clone, Debug, Serialize)]
pub struct CmdSnapshot {
    pub opstr: String,
    pub calls: u64,
    pub usecs: u64,
    pub usecs_percall: u64,
    pub fails: u64,
    pub redis_errtype: u64,
}

/// Everything `/proxy/stats` shows.
#[derive(Clone, Debug, Serialize)]
pub struct StatsSnapshot {
    pub online: bool,
    pub closed: bool,
    pub topology_version: u64,
    pub topology_reads: u64,
    pub ops_total: u64,
    pub ops_fails: u64,
    pub ops_redis_errors: u64,
    pub ops_qps: u64,
    /// Requests held by a locked (`prepared`) slot, total and longest hold in µs.
    pub slot_lock_holds: u64,
    pub slot_lock_hold_usecs: u64,
    pub slot_lock_hold_usecs_max: u64,
    pub sessions_total: u64,
    pub sessions_alive: u64,
    pub sessions_subscribed: u64,
    pub sessions_blocked: u64,
    pub latency_usecs: Latency,
    pub cmds: Vec<CmdSnapshot>,
    pub uptime_secs: u64,
    pub primary_only: bool,
    /// Servers reached through their Unix socket (`backend_prefer_unixsocket`): address → path.
    pub backends_unix: std::collections::BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slowlog_keeps_the_slowest() {
        let mut s = SlowLog::default();
        for us in [5, 1, 9, 3, 7] {
            s.offer(
                SlowEntry {
                    unix_ms: 0,
                    usecs: us,
                    command: String::new(),
                    client: String::new(),
                },
                3,
            );
        }
        let v: Vec<u64> = s.entries().iter().map(|e| e.usecs).collect();
        assert_eq!(v, vec![9, 7, 5]);
    }
}
