//! The latency monitor (LATENCY), as Redis 7.0 keeps it: for each event class ("command",
//! "fast-command", "expire-cycle", "aof-write", "aof-fsync-always"), a ring of the last 160
//! per-second samples (the worst latency seen in that second, in milliseconds) and the all-time
//! maximum. Only events at least `latency-monitor-threshold` ms long are recorded (0, the
//! default, records nothing).
//!
//! One table serves the whole process, so every core's samples merge into the same series (as
//! SLOWLOG's log does). A command costs one relaxed load and one compare in
//! [`crate::shard::Shard::execute`]; only a slow event takes the table's lock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use resp::{encode, Proto};

/// Samples kept per event (Redis's `LATENCY_TS_LEN`).
const TS_LEN: usize = 160;

/// `latency-monitor-threshold`, in milliseconds (0: off).
static THRESHOLD_MS: AtomicU64 = AtomicU64::new(0);
/// The same in ticks (`u64::MAX`: off).
static THRESHOLD_TICKS: AtomicU64 = AtomicU64::new(u64::MAX);
static EVENTS: Mutex<BTreeMap<String, Series>> = Mutex::new(BTreeMap::new());

#[derive(Clone, Copy, Default)]
struct Sample {
    /// Unix seconds (0: an empty slot).
    time: i64,
    ms: u64,
}

struct Series {
    samples: [Sample; TS_LEN],
    /// The next slot to write.
    idx: usize,
    max: u64,
}

/// Set `latency-monitor-threshold` (ms).
pub fn set_threshold(ms: u64) {
    THRESHOLD_MS.store(ms, Ordering::Relaxed);
    refresh();
}

/// Convert the threshold to ticks again (called every 100 ms, as the tick rate's estimate
/// sharpens).
pub fn refresh() {
    let ms = THRESHOLD_MS.load(Ordering::Relaxed);
    let ticks = if ms == 0 {
        u64::MAX
    } else {
        crate::ticks::from_usec(ms.saturating_mul(1000))
    };
    THRESHOLD_TICKS.store(ticks, Ordering::Relaxed);
}

/// Called with every executed command's run time in ticks: a "command" or, for a command flagged
/// fast, a "fast-command" event when it reached the threshold.
#[inline]
pub fn check_command(ticks: u64, fast: bool) {
    if ticks >= THRESHOLD_TICKS.load(Ordering::Relaxed) {
        let ms = crate::ticks::to_usec(ticks) / 1000;
        add_sample_if_needed(if fast { "fast-command" } else { "command" }, ms);
    }
}

/// Record `ms` for `event` if the monitor is on and `ms` reaches the threshold.
pub fn add_sample_if_needed(event: &str, ms: u64) {
    let t = THRESHOLD_MS.load(Ordering::Relaxed);
    if t != 0 && ms >= t {
        add_sample(event, ms);
    }
}

#[cold]
fn add_sample(event: &str, ms: u64) {
    let now = (crate::shared::now_ms() / 1000) as i64;
    let mut events = EVENTS.lock().unwrap_or_else(|e| e.into_inner());
    let ts = events.entry(event.to_string()).or_insert_with(|| Series {
        samples: [Sample::default(); TS_LEN],
        idx: 0,
        max: 0,
    });
    ts.max = ts.max.max(ms);
    // One sample per second: a later event in the same second only raises it.
    let prev = (ts.idx + TS_LEN - 1) % TS_LEN;
    if ts.samples[prev].time == now {
        ts.samples[prev].ms = ts.samples[prev].ms.max(ms);
        return;
    }
    ts.samples[ts.idx] = Sample { time: now, ms };
    ts.idx = (ts.idx + 1) % TS_LEN;
}

impl Series {
    /// The samples, oldest first.
    fn ordered(&self) -> impl Iterator<Item = &Sample> {
        (0..TS_LEN)
            .map(move |j| &self.samples[(self.idx + j) % TS_LEN])
            .filter(|s| s.time != 0)
    }

    fn latest(&self) -> Sample {
        self.samples[(self.idx + TS_LEN - 1) % TS_LEN]
    }
}

fn verbatim(out: &mut BytesMut, text: &str, proto: Proto) {
    encode::verbatim(out, text.as_bytes(), proto);
}

/// `LATENCY LATEST | HISTORY event | RESET [event ...] | GRAPH event | DOCTOR | HISTOGRAM
/// [command ...] | HELP` (arity checked by the caller from the subcommand table).
pub fn command(args: &[Bytes], proto: Proto, out: &mut BytesMut) {
    let sub = args[1].to_ascii_lowercase();
    let events = EVENTS.lock().unwrap_or_else(|e| e.into_inner());
    match sub.as_slice() {
        b"latest" => {
            encode::array(out, events.len());
            for (name, ts) in events.iter() {
                let last = ts.latest();
                encode::array(out, 4);
                encode::bulk(out, name.as_bytes());
                encode::int(out, last.time);
                encode::int(out, last.ms as i64);
                encode::int(out, ts.max as i64);
            }
        }
        b"history" => match events.get(&*String::from_utf8_lossy(&args[2])) {
            None => encode::array(out, 0),
            Some(ts) => {
                let samples: Vec<&Sample> = ts.ordered().collect();
                encode::array(out, samples.len());
                for s in samples {
                    encode::array(out, 2);
                    encode::int(out, s.time);
                    encode::int(out, s.ms as i64);
                }
            }
        },
        b"reset" => {
            drop(events);
            let mut events = EVENTS.lock().unwrap_or_else(|e| e.into_inner());
            let n = if args.len() == 2 {
                let n = events.len();
                events.clear();
                n
            } else {
                // Each argument resets the events it names (case-insensitively), as Redis counts.
                let mut n = 0;
                for a in &args[2..] {
                    let before = events.len();
                    events.retain(|k, _| !k.as_bytes().eq_ignore_ascii_case(a));
                    n += before - events.len();
                }
                n
            };
            encode::int(out, n as i64);
        }
        b"graph" => match events.get(&*String::from_utf8_lossy(&args[2])) {
            None => encode::error(
                out,
                &format!(
                    "ERR No samples available for event '{}'",
                    String::from_utf8_lossy(&args[2])
                ),
            ),
            Some(ts) => verbatim(out, &graph(&String::from_utf8_lossy(&args[2]), ts), proto),
        },
        b"doctor" => verbatim(out, &doctor(&events), proto),
        // Per-command histograms are not kept: every command is one without data, which Redis
        // leaves out of the map.
        b"histogram" => encode::map(out, 0, proto),
        _ => {
            let lines = [
                "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "DOCTOR",
                "    Return a human readable latency analysis report.",
                "GRAPH <event>",
                "    Return an ASCII latency graph for the <event> class.",
                "HISTORY <event>",
                "    Return time-latency samples for the <event> class.",
                "LATEST",
                "    Return the latest latency samples for all events.",
                "RESET [<event> ...]",
                "    Reset latency data of one or more <event> classes.",
                "    (default: reset all data for all event classes)",
                "HISTOGRAM [COMMAND ...]",
                "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
                "    If no commands are specified then all histograms are replied.",
                "HELP",
                "    Prints this help.",
            ];
            encode::help(out, &lines);
        }
    }
}

/// A plain text graph of an event's samples, oldest first: one line per sample, a bar scaled to
/// the all-time maximum.
fn graph(name: &str, ts: &Series) -> String {
    let samples: Vec<&Sample> = ts.ordered().collect();
    let high = samples.iter().map(|s| s.ms).max().unwrap_or(0);
    let low = samples.iter().map(|s| s.ms).min().unwrap_or(0);
    let mut g = format!(
        "{name} - high {high} ms, low {low} ms (all time high {} ms)\n",
        ts.max
    );
    g.push_str(&"-".repeat(80));
    g.push('\n');
    let now = (crate::shared::now_ms() / 1000) as i64;
    for s in samples {
        let width = (s.ms.saturating_mul(50))
            .checked_div(ts.max)
            .map_or(0, |w| w.max(1) as usize);
        g.push_str(&format!(
            "{:>8} {:>6} ms |{}\n",
            format!("-{}s", (now - s.time).max(0)),
            s.ms,
            "#".repeat(width)
        ));
    }
    g
}

/// LATENCY DOCTOR's report: per event, how many samples, their average, worst and latest, and
/// advice for the events this server records.
fn doctor(events: &BTreeMap<String, Series>) -> String {
    let threshold = THRESHOLD_MS.load(Ordering::Relaxed);
    if threshold == 0 {
        return "I'm sorry, Dave, I can't do that. Latency monitoring is disabled in this \
                codis-server instance. You may use \"CONFIG SET latency-monitor-threshold \
                <milliseconds>.\" in order to enable it.\n"
            .to_string();
    }
    if events.is_empty() {
        return format!(
            "No latency event was recorded (threshold: {threshold} ms). Nothing to report.\n"
        );
    }
    let mut r = format!(
        "Latency report (threshold: {threshold} ms), {} event class(es):\n\n",
        events.len()
    );
    for (i, (name, ts)) in events.iter().enumerate() {
        let samples: Vec<&Sample> = ts.ordered().collect();
        let n = samples.len().max(1) as u64;
        let avg = samples.iter().map(|s| s.ms).sum::<u64>() / n;
        let first = samples.first().map_or(0, |s| s.time);
        let last = ts.latest();
        r.push_str(&format!(
            "{}. {name}: {} latency spike(s) (average {avg} ms, worst {} ms), latest {} ms at \
             unix time {}; samples since unix time {first}.\n",
            i + 1,
            samples.len(),
            ts.max,
            last.ms,
            last.time,
        ));
    }
    r.push_str("\nAdvice:\n");
    for name in events.keys() {
        let advice = match name.as_str() {
            "command" => {
                "- Slow commands: check SLOWLOG GET for the offenders; O(N) commands on large \
                 values (KEYS, SMEMBERS, LRANGE 0 -1, SORT …) block the core that serves them."
            }
            "fast-command" => {
                "- Commands flagged O(1)/O(log N) were slow: the machine is likely overloaded, \
                 swapping, or the process was descheduled (check the CPU and memory of the host)."
            }
            "expire-cycle" => {
                "- The active expiry cycle took long: many keys expire at the same time; spread \
                 the TTLs with some randomness."
            }
            "aof-write" | "aof-fsync-always" => {
                "- Writing the AOF is slow: check the disk, or use `appendfsync everysec`."
            }
            _ => continue,
        };
        r.push_str(advice);
        r.push('\n');
    }
    r
}
