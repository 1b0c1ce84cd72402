//! Runs one test against one target: one executor per `--threads`, pinned to a core, each
//! driving its share of the `-c` connections (a glommio executor in the closed loop, a plain
//! epoll thread in the open loop, see [`crate::open`]); then merges the executors' counters and
//! histograms into a [`TestResult`].

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;

use crate::conn::{Conn, ConnParams, Target};
use crate::error::BenchError;
use crate::keys::{Dist, KeySampler};
use crate::workload::Plan;

/// Highest latency the histograms track (larger values are clamped to it).
const MAX_LATENCY_NS: u64 = 100_000_000_000;

/// How much load to generate (everything but the target and the test).
#[derive(Debug, Clone)]
pub struct Load {
    /// Connections in total (`-c`).
    pub clients: usize,
    /// Requests in total (`-n`); ignored with a duration.
    pub requests: u64,
    /// Requests per batch (`-P`).
    pub pipeline: usize,
    /// Executors (`--threads`).
    pub threads: usize,
    /// Value size in bytes (`-d`).
    pub data_size: usize,
    /// Key numbers `0..keyspace` for `__rand_int__` (`-r`).
    pub keyspace: Option<u64>,
    /// How key numbers are drawn.
    pub dist: Dist,
    /// GETs and SETs per cycle in the mixed test.
    pub ratio: [u32; 2],
    /// Run each test this long instead of `-n` requests.
    pub duration: Option<Duration>,
    /// Open loop at this many requests per second in total.
    pub rate: Option<f64>,
    /// Seed for key generation.
    pub seed: u64,
    /// Open loop: print the requests slower than this (`--slow-log`).
    pub slow_log: Option<Duration>,
}

/// What one test measured.
#[derive(Debug, Clone)]
pub struct TestResult {
    /// The test's name.
    pub name: String,
    /// Replies received (successes and errors).
    pub requests: u64,
    /// Replies that were error replies or not what the command must return.
    pub errors: u64,
    /// Wall-clock seconds from the first send to the last reply.
    pub seconds: f64,
    /// Latencies in nanoseconds.
    pub hist: Histogram<u64>,
}

impl TestResult {
    /// Replies per second.
    pub fn rps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// The latency at quantile `q` (0..=1), in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    /// The highest latency, in microseconds.
    pub fn max_us(&self) -> f64 {
        self.hist.max() as f64 / 1000.0
    }
}

/// Set by SIGINT/SIGTERM (see [`install_stop_signals`]): every connection stops sending, the
/// replies in flight are awaited, and the run reports what it measured so far.
static STOP: AtomicBool = AtomicBool::new(false);

/// Whether a stop signal arrived.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Bumped by SIGUSR1: every executor forgets what it measured so far and starts counting anew
/// (requests, errors, latencies and the clock of the rps), so a script can measure exactly the
/// window of something it starts after the load (`kill -USR1 $pid`, run it, `kill -INT $pid`).
static RESETS: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_reset_signal(_: libc::c_int) {
    RESETS.fetch_add(1, Ordering::Relaxed);
}

/// Make the first SIGINT or SIGTERM end the run gracefully (results of the current test are still
/// printed, later tests are skipped); a second one kills as usual. Lets a script run a timed
/// load for exactly as long as something else takes (`kill -INT $pid; wait $pid`). SIGUSR1
/// restarts the measurement (see [`RESETS`]).
pub fn install_stop_signals() {
    // SAFETY: the handler only updates an atomic (async-signal-safe).
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = on_reset_signal as extern "C" fn(libc::c_int) as usize;
        act.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(libc::SIGUSR1, &act, std::ptr::null_mut());
    }
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe); SA_RESETHAND restores
        // the default action after the first delivery.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as usize;
            act.sa_flags = libc::SA_RESETHAND | libc::SA_RESTART;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
}

/// State shared by every executor of a run.
pub struct Shared {
    remaining: AtomicU64,
    failed: AtomicBool,
    barrier: Barrier,
}

impl Shared {
    /// Mark the run failed (a connection could not be set up).
    pub(crate) fn fail(&self) {
        self.failed.store(true, Ordering::SeqCst);
    }

    /// Whether some executor failed to set up.
    pub(crate) fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Wait until every executor has set up its connections (or failed to).
    pub(crate) fn wait_ready(&self) {
        self.barrier.wait();
    }

    /// Claim up to `want` requests to send now; 0 means stop.
    #[inline]
    pub fn claim(&self, want: u64, deadline: Option<Instant>) -> u64 {
        if stop_requested() {
            return 0;
        }
        if let Some(d) = deadline {
            return if Instant::now() < d { want } else { 0 };
        }
        match self
            .remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                (r > 0).then(|| r - r.min(want))
            }) {
            Ok(prev) => prev.min(want),
            Err(_) => 0,
        }
    }
}

/// One executor's counters, shared by its connections (single-threaded, so `Cell`s).
pub struct ShardStats {
    requests: Cell<u64>,
    errors: Cell<u64>,
    hist: RefCell<Histogram<u64>>,
    /// When counting started (the executor's start, or the last SIGUSR1 it noticed).
    since: Cell<Instant>,
    /// The [`RESETS`] count these figures belong to.
    epoch: Cell<u64>,
}

impl ShardStats {
    pub(crate) fn new(start: Instant) -> Result<ShardStats, BenchError> {
        Ok(ShardStats {
            requests: Cell::new(0),
            errors: Cell::new(0),
            hist: RefCell::new(new_histogram()?),
            since: Cell::new(start),
            epoch: Cell::new(RESETS.load(Ordering::Relaxed)),
        })
    }

    /// Count one reply and its latency.
    #[inline]
    pub fn record(&self, latency: Duration, ok: bool) {
        let epoch = RESETS.load(Ordering::Relaxed);
        if epoch != self.epoch.get() {
            self.epoch.set(epoch);
            self.since.set(Instant::now());
            self.requests.set(0);
            self.errors.set(0);
            self.hist.borrow_mut().reset();
        }
        self.requests.set(self.requests.get() + 1);
        if !ok {
            self.errors.set(self.errors.get() + 1);
        }
        let ns = (latency.as_nanos() as u64).clamp(1, MAX_LATENCY_NS);
        self.hist.borrow_mut().saturating_record(ns);
    }
}

/// An empty latency histogram (nanoseconds, 3 significant digits).
pub fn new_histogram() -> Result<Histogram<u64>, BenchError> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).map_err(|e| BenchError::Runtime(e.to_string()))
}

impl ShardStats {
    /// What this executor measured, up to `end`.
    pub(crate) fn into_outcome(self, end: Instant) -> ShardOutcome {
        ShardOutcome {
            requests: self.requests.get(),
            errors: self.errors.get(),
            hist: self.hist.into_inner(),
            start: self.since.get(),
            end,
        }
    }
}

/// One executor's figures, merged into a [`TestResult`] by [`run_test`].
pub(crate) struct ShardOutcome {
    requests: u64,
    errors: u64,
    hist: Histogram<u64>,
    start: Instant,
    end: Instant,
}

/// The CPUs this process may run on (executors are pinned to them in turn).
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Run `plan` against `target` with `load`; every connection is set up before the clock starts.
pub fn run_test(target: &Target, load: &Load, plan: &Plan) -> Result<TestResult, BenchError> {
    let clients = load.clients.max(1);
    let threads = load.threads.clamp(1, clients);
    let pipeline = load.pipeline.max(1);
    let shared = Arc::new(Shared {
        remaining: AtomicU64::new(load.requests),
        failed: AtomicBool::new(false),
        barrier: Barrier::new(threads),
    });
    let plan = Arc::new(plan.clone());
    let keys = load.keyspace.map(|n| KeySampler::new(load.dist, n));
    // Each connection sends `pipeline` requests per interval: `clients * pipeline / interval = rate`.
    let interval = load
        .rate
        .map(|r| Duration::from_secs_f64(pipeline as f64 * clients as f64 / r.max(1e-9)));
    let cpus = allowed_cpus();
    let mut handles = Vec::with_capacity(threads);
    for shard in 0..threads {
        let first = shard * (clients / threads) + shard.min(clients % threads);
        let count = clients / threads + usize::from(shard < clients % threads);
        let cpu = (!cpus.is_empty()).then(|| cpus[shard % cpus.len()]);
        let (shared, plan, target, keys) =
            (shared.clone(), plan.clone(), target.clone(), keys.clone());
        let (duration, seed, slow_log) = (load.duration, load.seed, load.slow_log);
        let conns = first..first + count;
        let name = format!("bench-{shard}");
        let handle = match interval {
            // Open loop: plain threads with epoll (see `crate::open` for why not glommio).
            Some(interval) => std::thread::Builder::new()
                .name(name)
                .spawn(move || {
                    crate::open::shard_main(crate::open::OpenShard {
                        shared,
                        plan,
                        target,
                        keys,
                        interval,
                        pipeline,
                        clients,
                        conns,
                        duration,
                        seed,
                        cpu,
                        slow_log: slow_log.map(crate::open::SlowLog::new),
                    })
                })
                .map(ShardHandle::Thread)
                .map_err(|e| BenchError::Runtime(e.to_string()))?,
            None => {
                let placement = cpu.map_or(Placement::Unbound, Placement::Fixed);
                LocalExecutorBuilder::new(placement)
                    .name(&name)
                    // See third_party/glommio/PATCHED.md, "Throughput preemption".
                    .throughput_preemption(false)
                    .spawn(move || async move {
                        shard_main(ShardArgs {
                            shared,
                            plan,
                            target,
                            keys,
                            pipeline,
                            conns,
                            duration,
                            seed,
                        })
                        .await
                    })
                    .map(ShardHandle::Executor)
                    .map_err(|e| BenchError::Runtime(e.to_string()))?
            }
        };
        handles.push(handle);
    }
    let mut outcomes = Vec::with_capacity(threads);
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Some(o)) => outcomes.push(o),
            Ok(None) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let mut hist = new_histogram()?;
    let (mut requests, mut errors) = (0, 0);
    let start = outcomes.iter().map(|o| o.start).min();
    let end = outcomes.iter().map(|o| o.end).max();
    for o in &outcomes {
        requests += o.requests;
        errors += o.errors;
        hist.add(&o.hist)
            .map_err(|e| BenchError::Runtime(e.to_string()))?;
    }
    let seconds = match (start, end) {
        (Some(s), Some(e)) => e.duration_since(s).as_secs_f64(),
        _ => 0.0,
    };
    Ok(TestResult {
        name: plan.name.clone(),
        requests,
        errors,
        seconds,
        hist,
    })
}

type ShardResult = Result<Option<ShardOutcome>, BenchError>;

/// A running executor (closed loop) or thread (open loop).
enum ShardHandle {
    Executor(glommio::ExecutorJoinHandle<ShardResult>),
    Thread(std::thread::JoinHandle<ShardResult>),
}

impl ShardHandle {
    fn join(self) -> ShardResult {
        match self {
            ShardHandle::Executor(h) => h.join().map_err(|e| BenchError::Runtime(e.to_string()))?,
            ShardHandle::Thread(h) => h
                .join()
                .map_err(|_| BenchError::Runtime("a load thread panicked".into()))?,
        }
    }
}

struct ShardArgs {
    shared: Arc<Shared>,
    plan: Arc<Plan>,
    target: Target,
    keys: Option<KeySampler>,
    pipeline: usize,
    conns: std::ops::Range<usize>,
    duration: Option<Duration>,
    seed: u64,
}

/// One executor: connect its connections, wait for every executor, run them all, report.
async fn shard_main(a: ShardArgs) -> Result<Option<ShardOutcome>, BenchError> {
    let mut conns = Vec::with_capacity(a.conns.len());
    let mut failure = None;
    for idx in a.conns.clone() {
        match Conn::open(&a.target).await {
            Ok(c) => conns.push((idx, c)),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    match &failure {
        Some(e) => {
            tracing::debug!(executor = ?a.conns, "connection set-up failed: {e}");
            a.shared.fail();
        }
        None => tracing::debug!(executor = ?a.conns, target = %a.target.addr, "connections ready"),
    }
    // Every executor reaches the barrier, failed or not, so none waits forever. Blocking here is
    // fine: this executor has nothing else to run yet.
    a.shared.wait_ready();
    if let Some(e) = failure {
        return Err(e);
    }
    if a.shared.failed() {
        return Ok(None);
    }
    let start = Instant::now();
    let stats = Rc::new(ShardStats::new(start)?);
    let deadline = a.duration.map(|d| start + d);
    let mut tasks = Vec::with_capacity(conns.len());
    for (idx, conn) in conns {
        let params = ConnParams {
            pipeline: a.pipeline,
            keys: a.keys.clone(),
            seed: a.seed ^ (idx as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        };
        let (plan, shared, stats) = (a.plan.clone(), a.shared.clone(), stats.clone());
        tasks.push(glommio::spawn_local(async move {
            conn.run(&plan, &params, &shared, &stats, deadline).await
        }));
    }
    let mut first_err = None;
    for t in tasks {
        if let Err(e) = t.await {
            first_err.get_or_insert(e);
        }
    }
    let end = Instant::now();
    if let Some(e) = first_err {
        return Err(e);
    }
    let stats =
        Rc::try_unwrap(stats).map_err(|_| BenchError::Runtime("stats still shared".into()))?;
    Ok(Some(stats.into_outcome(end)))
}
