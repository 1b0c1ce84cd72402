//! Client load with a checker, for the fault scenarios.
//!
//! [`Load::start`] runs `threads` client threads against one `redis://` URL. Each thread owns
//! `keys_per_thread` keys (optionally only keys a filter accepts, e.g. the slots of one group)
//! and writes them round-robin with `SET key seq` in pipelines of `pipeline` commands (plus a
//! `GET` of one key of the batch, which must read back what the batch wrote). Per key it
//! remembers the last acknowledged `seq` and the last attempted one (a failed pipeline may or
//! may not have been applied). Every call has a timeout: a call that times out is a **hang**,
//! counted apart from other errors. Every round trip is recorded (start, latency, ok), so a
//! scenario can ask how many requests completed inside a time window and their p99.
//!
//! [`Report::check`] reads every key back (through any live proxy) and verifies that no
//! acknowledged write is lost: `acked <= value <= attempted`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Which keys a load may use.
pub type KeyFilter = Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// What a [`Load`] does.
#[derive(Clone)]
pub struct LoadSpec {
    /// Label in reports; also the key prefix.
    pub name: String,
    pub url: String,
    pub threads: usize,
    pub keys_per_thread: usize,
    /// Commands per round trip (1: no pipelining).
    pub pipeline: usize,
    /// Longest a call may take before it counts as a hang.
    pub timeout: Duration,
    pub key_filter: Option<KeyFilter>,
}

impl LoadSpec {
    /// `threads` threads, 50 keys each, pipelines of 20, a 10 s timeout, every key allowed.
    pub fn new(name: &str, url: &str, threads: usize) -> LoadSpec {
        LoadSpec {
            name: name.to_string(),
            url: url.to_string(),
            threads,
            keys_per_thread: 50,
            pipeline: 20,
            timeout: Duration::from_secs(10),
            key_filter: None,
        }
    }

    /// Only keys whose slot satisfies `f`.
    pub fn slots(mut self, f: impl Fn(u16) -> bool + Send + Sync + 'static) -> LoadSpec {
        self.key_filter = Some(Arc::new(move |k: &[u8]| f(resp::slot(k))));
        self
    }
}

/// One round trip.
#[derive(Clone, Copy, Debug)]
pub struct OpRec {
    pub thread: u16,
    /// When it started, from the start of the load.
    pub start: Duration,
    pub latency: Duration,
    pub ok: bool,
}

impl OpRec {
    pub fn end(&self) -> Duration {
        self.start + self.latency
    }
}

/// One key: last acknowledged and last attempted sequence numbers (0: never).
#[derive(Clone, Debug)]
pub struct KeyState {
    pub key: String,
    pub acked: u64,
    pub attempted: u64,
}

#[derive(Default)]
struct ThreadOut {
    keys: Vec<KeyState>,
    ops: Vec<OpRec>,
    errors: Vec<(Duration, String)>,
    hangs: usize,
}

/// A running load.
pub struct Load {
    pub spec: LoadSpec,
    pub t0: Instant,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    threads: Vec<JoinHandle<ThreadOut>>,
}

/// What a load saw.
pub struct Report {
    pub name: String,
    pub t0: Instant,
    pub keys: Vec<KeyState>,
    pub ops: Vec<OpRec>,
    /// (when, message) of every failed round trip.
    pub errors: Vec<(Duration, String)>,
    /// Calls that hit the timeout.
    pub hangs: usize,
    pub elapsed: Duration,
}

/// The outcome of [`Report::check`].
#[derive(Debug, Default)]
pub struct Check {
    pub keys_checked: usize,
    /// Keys whose value is older than their last acknowledged write (or newer than any
    /// attempted one): `key: value (acked a, attempted b)`.
    pub lost: Vec<String>,
}

fn keys_for(spec: &LoadSpec, t: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("{}:{t}:{i}", spec.name))
        .filter(|k| spec.key_filter.as_ref().is_none_or(|f| f(k.as_bytes())))
        .take(spec.keys_per_thread)
        .collect()
}

fn connect(url: &str, timeout: Duration) -> redis::RedisResult<redis::Connection> {
    let con = redis::Client::open(url)?.get_connection_with_timeout(timeout)?;
    con.set_read_timeout(Some(timeout))?;
    con.set_write_timeout(Some(timeout))?;
    Ok(con)
}

fn is_hang(e: &redis::RedisError) -> bool {
    e.is_timeout()
        || matches!(
            e.kind(),
            redis::ErrorKind::IoError if e.to_string().contains("timed out")
                || e.to_string().contains("WouldBlock")
                || e.to_string().contains("Resource temporarily unavailable")
        )
}

fn run_thread(
    spec: LoadSpec,
    t: usize,
    t0: Instant,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
) -> ThreadOut {
    let mut out = ThreadOut {
        keys: keys_for(&spec, t)
            .into_iter()
            .map(|key| KeyState {
                key,
                acked: 0,
                attempted: 0,
            })
            .collect(),
        ..Default::default()
    };
    let n = out.keys.len();
    let mut con: Option<redis::Connection> = None;
    let mut next = 0usize;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let start = t0.elapsed();
        let c = match con.as_mut() {
            Some(c) => c,
            None => match connect(&spec.url, spec.timeout) {
                Ok(c) => con.insert(c),
                Err(e) => {
                    let hang = is_hang(&e);
                    out.hangs += usize::from(hang);
                    out.errors.push((start, format!("connect: {e}")));
                    out.ops.push(OpRec {
                        thread: t as u16,
                        start,
                        latency: t0.elapsed() - start,
                        ok: false,
                    });
                    failed.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            },
        };
        seq += 1;
        let batch: Vec<usize> = (0..spec.pipeline.max(1).min(n))
            .map(|i| (next + i) % n)
            .collect();
        next = (next + batch.len()) % n;
        let mut p = redis::pipe();
        for &i in &batch {
            p.cmd("SET").arg(&out.keys[i].key).arg(seq).ignore();
            out.keys[i].attempted = seq;
        }
        p.cmd("GET").arg(&out.keys[batch[0]].key);
        let r: redis::RedisResult<(Option<u64>,)> = p.query(c);
        let latency = t0.elapsed() - start;
        let ok = match r {
            Ok((Some(v),)) if v == seq => {
                for &i in &batch {
                    out.keys[i].acked = seq;
                }
                true
            }
            Ok((v,)) => {
                // Acknowledged, yet the read-back disagrees: the writes counted as
                // acknowledged, the read as an error.
                for &i in &batch {
                    out.keys[i].acked = seq;
                }
                out.errors.push((
                    start,
                    format!("GET {} = {v:?}, wrote {seq}", out.keys[batch[0]].key),
                ));
                false
            }
            Err(e) => {
                let hang = is_hang(&e);
                out.hangs += usize::from(hang);
                out.errors
                    .push((start, format!("{}{e}", if hang { "HANG: " } else { "" })));
                // The connection may be mid-reply: start over on a new one.
                con = None;
                std::thread::sleep(Duration::from_millis(20));
                false
            }
        };
        out.ops.push(OpRec {
            thread: t as u16,
            start,
            latency,
            ok,
        });
        if ok {
            done.fetch_add(1, Ordering::Relaxed);
        } else {
            failed.fetch_add(1, Ordering::Relaxed);
        }
    }
    out
}

impl Load {
    /// Starts the client threads.
    pub fn start(spec: LoadSpec) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let t0 = Instant::now();
        let threads = (0..spec.threads)
            .map(|t| {
                let (s, st, d, f) = (spec.clone(), stop.clone(), done.clone(), failed.clone());
                std::thread::spawn(move || run_thread(s, t, t0, st, d, f))
            })
            .collect();
        Load {
            spec,
            t0,
            stop,
            done,
            failed,
            threads,
        }
    }

    /// Successful round trips so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Failed round trips so far.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Time since the load started.
    pub fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    /// Waits until `n` more round trips succeeded (false after `timeout`).
    pub fn wait_progress(&self, n: u64, timeout: Duration) -> bool {
        let from = self.done();
        let start = Instant::now();
        while self.done() < from + n {
            if start.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Stops the threads and collects what they saw.
    pub fn stop(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let mut r = Report {
            name: self.spec.name.clone(),
            t0: self.t0,
            keys: Vec::new(),
            ops: Vec::new(),
            errors: Vec::new(),
            hangs: 0,
            elapsed: self.t0.elapsed(),
        };
        for h in self.threads {
            let o = h.join().expect("load thread panicked");
            r.keys.extend(o.keys);
            r.ops.extend(o.ops);
            r.errors.extend(o.errors);
            r.hangs += o.hangs;
        }
        r.ops.sort_by_key(|o| o.start);
        r.errors.sort_by_key(|e| e.0);
        r
    }
}

/// The `q` quantile (0..=1) of some latencies.
pub fn quantile(mut lat: Vec<Duration>, q: f64) -> Option<Duration> {
    if lat.is_empty() {
        return None;
    }
    lat.sort();
    let i = ((lat.len() as f64 - 1.0) * q).round() as usize;
    Some(lat[i.min(lat.len() - 1)])
}

impl Report {
    /// Successful round trips that started and ended inside `[from, to)`.
    pub fn ok_within(&self, from: Duration, to: Duration) -> Vec<OpRec> {
        self.ops
            .iter()
            .filter(|o| o.ok && o.start >= from && o.end() < to)
            .copied()
            .collect()
    }

    /// p99 latency of the successful round trips that started inside `[from, to)`.
    pub fn p99(&self, from: Duration, to: Duration) -> Option<Duration> {
        quantile(
            self.ops
                .iter()
                .filter(|o| o.ok && o.start >= from && o.start < to)
                .map(|o| o.latency)
                .collect(),
            0.99,
        )
    }

    /// Failed round trips.
    pub fn failures(&self) -> usize {
        self.ops.iter().filter(|o| !o.ok).count()
    }

    /// Successful round trips.
    pub fn successes(&self) -> usize {
        self.ops.iter().filter(|o| o.ok).count()
    }

    /// The first `n` error messages, for failure output.
    pub fn first_errors(&self, n: usize) -> Vec<String> {
        self.errors
            .iter()
            .take(n)
            .map(|(t, e)| format!("{:.2}s {e}", t.as_secs_f64()))
            .collect()
    }

    /// Reads every key back through `url` and checks `acked <= value <= attempted`.
    pub fn check(&self, url: &str) -> Check {
        let mut con = connect(url, Duration::from_secs(30)).expect("connect for the check");
        let mut c = Check::default();
        for chunk in self.keys.chunks(500) {
            let mut p = redis::pipe();
            for k in chunk {
                p.cmd("GET").arg(&k.key);
            }
            let got: Vec<Option<u64>> = p.query(&mut con).expect("read keys back for the check");
            for (k, v) in chunk.iter().zip(got) {
                c.keys_checked += 1;
                let ok = match v {
                    None => k.acked == 0,
                    Some(v) => v >= k.acked && v <= k.attempted,
                };
                if !ok {
                    c.lost.push(format!(
                        "{}: {v:?} (acked {}, attempted {})",
                        k.key, k.acked, k.attempted
                    ));
                }
            }
        }
        c
    }

    /// One line of numbers for the scenario's output.
    pub fn summary(&self) -> String {
        let ok = self.successes();
        let all = quantile(
            self.ops
                .iter()
                .filter(|o| o.ok)
                .map(|o| o.latency)
                .collect(),
            0.99,
        );
        format!(
            "{}: {ok} round trips ok, {} failed, {} hangs, p99 {:?}, {:.1}s",
            self.name,
            self.failures(),
            self.hangs,
            all.unwrap_or_default(),
            self.elapsed.as_secs_f64()
        )
    }
}
