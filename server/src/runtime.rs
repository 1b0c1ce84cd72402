//! Process start-up: listeners, one pinned glommio executor per core, the links between cores, the
//! accept loops and the active expiry cycle.

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Config;
use crate::core::{Core, Links, Req, Resp};
use crate::shard::Shard;
use crate::shared::{now_ms, ClientInfo, Shared};

/// Capacity of each core-to-core channel.
const CHANNEL_SIZE: usize = 1024;

/// CPUs this process may run on (respects `taskset`).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills a cpu_set_t we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return (0..std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1))
                .collect();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// The CPUs the process was allowed at start, before executors pinned their threads.
static PROCESS_CPUS: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();

/// Let the calling thread run on every CPU the process was started with.
///
/// A thread spawned from an executor inherits that executor's one-CPU affinity, so background
/// work (a snapshot's writer, the AOF writer, file loading, fsync) would compete with the
/// executor for its CPU even when other CPUs are idle. Background threads call this first, as
/// redis-server's fork child and bio threads are free to run anywhere. Under `taskset` the set is
/// the one taskset gave; before [`run`] (or when unknown) this does nothing.
pub fn unpin_background_thread() {
    let Some(cpus) = PROCESS_CPUS.get() else {
        return;
    };
    if cpus.len() < 2 {
        return;
    }
    // SAFETY: we fill a zeroed cpu_set_t we own and apply it to the calling thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            if c < libc::CPU_SETSIZE as usize {
                libc::CPU_SET(c, &mut set);
            }
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            tracing::debug!(
                "sched_setaffinity for a background thread failed: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Resolve the listen addresses and make sure nobody else holds the port: glommio-style
/// SO_REUSEPORT listeners would otherwise silently share it with a leftover process.
fn listen_addrs(cfg: &Config) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for host in &cfg.bind {
        let host = host.trim_start_matches('-');
        let addr = (host, cfg.port)
            .to_socket_addrs()
            .map_err(|e| format!("bad bind address {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("bad bind address {host}"))?;
        // Bind without SO_REUSEPORT and without listening: it fails if anyone listens on the
        // port, and it never accepts a connection a client could mistake for the server being up.
        // SO_REUSEADDR (as redis-server sets it) lets a restarted server bind while connections
        // of its previous run linger in TIME_WAIT; it still fails against a live listener.
        let domain = if addr.is_ipv6() {
            Domain::IPV6
        } else {
            Domain::IPV4
        };
        let bind = || {
            Socket::new(domain, Type::STREAM, Some(Protocol::TCP))
                .and_then(|s| s.set_reuse_address(true).map(|_| s))
                .and_then(|s| s.bind(&addr.into()).map(|_| s))
        };
        // A server that just exited leaves its listening sockets behind for a few milliseconds
        // (io_uring drops its accept requests' references after the process is gone), so a quick
        // restart would find the port busy: keep trying for a moment before giving up.
        let deadline = Instant::now() + Duration::from_secs(2);
        let probe = loop {
            match bind() {
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                r => break r,
            }
        }
        .map_err(|e| format!("Could not create server TCP listening socket {addr}: {e}"))?;
        let local = probe
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .ok_or_else(|| format!("cannot read the address bound for {addr}"))?;
        out.push(local);
    }
    Ok(out)
}

/// The pid file written at start-up, removed at shutdown.
static PIDFILE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Write this process's id to `path` (`pidfile`), to be removed by [`remove_run_files`].
pub fn write_pidfile(path: &str) -> std::io::Result<()> {
    std::fs::write(path, format!("{}\n", std::process::id()))?;
    let _ = PIDFILE.set(path.to_string());
    Ok(())
}

/// The Unix socket file this server bound, removed at shutdown.
static UNIXSOCKET: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Remove the pid file and the Unix socket file, if this server made them (on the way out).
pub fn remove_run_files() {
    if let Some(p) = PIDFILE.get() {
        let _ = std::fs::remove_file(p);
    }
    if let Some(p) = UNIXSOCKET.get() {
        let _ = std::fs::remove_file(p);
    }
}

/// Binds the `unixsocket` (replacing a socket file a previous run left behind, as Redis does, but
/// never a file of another kind) and applies `unixsocketperm`.
fn unix_listener(cfg: &Config) -> Result<std::os::fd::OwnedFd, String> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let path = &cfg.unixsocket;
    let fail = |e: std::io::Error| format!("unixsocket {path}: {e}");
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path).map_err(fail)?,
        Ok(_) => return Err(format!("unixsocket {path}: exists and is not a socket")),
        Err(_) => {}
    }
    let l = std::os::unix::net::UnixListener::bind(path).map_err(fail)?;
    let _ = UNIXSOCKET.set(path.clone());
    if cfg.unixsocketperm != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(cfg.unixsocketperm))
            .map_err(fail)?;
    }
    Ok(l.into())
}

/// A SIGTERM or SIGINT received and not yet acted on (the signal number; 0: none).
pub static SHUTDOWN_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// Set once the data is loaded and the cores start: before that a signal exits at once.
static SERVING: AtomicBool = AtomicBool::new(false);

/// SIGTERM and SIGINT as redis-server takes them: block both in every thread and let one thread
/// wait for them. While the data loads the server exits at once; after that the first signal
/// schedules a shutdown that core 0 carries out ([`crate::admin::start_signal_shutdown`]), and a
/// second SIGINT exits at once.
fn watch_signals() -> Result<(), String> {
    // SAFETY: a zeroed sigset_t is valid storage; sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, initialised signal set; the calls only modify it or this thread's
    // signal mask.
    let rc = unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(format!(
            "cannot block SIGTERM and SIGINT: {}",
            std::io::Error::from_raw_os_error(rc)
        ));
    }
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: `set` is initialised and `sig` is valid storage for the result.
            if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                continue;
            }
            let name = signal_name(sig);
            if !SERVING.load(Ordering::Relaxed) {
                tracing::warn!("Received {name} while loading the data, exiting.");
                remove_run_files();
                std::process::exit(0);
            }
            if sig == libc::SIGINT && SHUTDOWN_SIGNAL.load(Ordering::Relaxed) != 0 {
                tracing::warn!("You insist... exiting now.");
                remove_run_files();
                std::process::exit(1);
            }
            tracing::warn!("Received {name} scheduling shutdown...");
            SHUTDOWN_SIGNAL.store(sig, Ordering::Relaxed);
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    Ok(())
}

/// "SIGINT" or "SIGTERM", for the log.
pub fn signal_name(sig: i32) -> &'static str {
    if sig == libc::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    }
}

fn reuseport_listener(addr: SocketAddr) -> std::io::Result<Socket> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let sk = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    sk.set_reuse_address(true)?;
    sk.set_reuse_port(true)?;
    sk.bind(&addr.into())?;
    sk.listen(1024)?;
    Ok(sk)
}

async fn connect_tx<T: Send + 'static>(
    v: Vec<Option<SharedSender<T>>>,
) -> Vec<Option<ConnectedSender<T>>> {
    futures::future::join_all(v.into_iter().map(|t| async move {
        match t {
            Some(t) => Some(t.connect().await),
            None => None,
        }
    }))
    .await
}

async fn connect_rx<T: Send + 'static>(v: Vec<SharedReceiver<T>>) -> Vec<ConnectedReceiver<T>> {
    futures::future::join_all(v.into_iter().map(|r| r.connect())).await
}

type Pair<T> = (Vec<Option<SharedSender<T>>>, Vec<SharedReceiver<T>>);

/// Build the channel mesh: for core `i`, its senders to every other core and its receivers.
fn mesh<T: Send + 'static>(n: usize) -> Vec<Pair<T>> {
    let mut senders: Vec<Vec<Option<SharedSender<T>>>> =
        (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    let mut receivers: Vec<Vec<SharedReceiver<T>>> = (0..n).map(|_| Vec::new()).collect();
    for (from, row) in senders.iter_mut().enumerate() {
        for (to, slot) in row.iter_mut().enumerate() {
            if from != to {
                let (tx, rx) = shared_channel::new_bounded(CHANNEL_SIZE);
                *slot = Some(tx);
                receivers[to].push(rx);
            }
        }
    }
    senders.into_iter().zip(receivers).collect()
}

/// Turn transparent huge pages off for this process (`disable-thp yes`, Redis's default since
/// 6.2, and for the same reason: latency). mimalloc asks the kernel for huge pages on its arenas
/// (`MADV_HUGEPAGE`), so THP is in use here even where the system setting is `madvise`. The
/// first touch of such a region then faults in and zeroes 2 MiB at once: measured during a slot
/// migration under a GET load (`scripts/bench --migration`), a source server's executor spent
/// up to 20 ms at a time in `clear_page_erms` from those faults, and every request waited.
/// `PR_SET_THP_DISABLE` applies to every mapping at its next fault, mimalloc's included.
pub fn disable_thp() {
    // SAFETY: prctl with integer arguments only; no pointer is passed.
    let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if r != 0 {
        tracing::warn!(
            "disable-thp: prctl(PR_SET_THP_DISABLE) failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Run the server until SHUTDOWN. Returns an error if it cannot start.
pub fn run(config: Config) -> Result<(), String> {
    if config.disable_thp {
        disable_thp();
    }
    // Before the executors start: the probe's answer is logged once, at start-up.
    crate::lowprio::probe();
    let cpus = allowed_cpus();
    let _ = PROCESS_CPUS.set(cpus.clone());
    let ncores = if config.cores == 0 {
        cpus.len().max(1)
    } else {
        config.cores
    };
    if ncores > 256 {
        return Err("--cores must be at most 256".into());
    }
    let addrs = listen_addrs(&config)?;
    let mut unix_fd = if config.unixsocket.is_empty() {
        None
    } else {
        Some(unix_listener(&config)?)
    };
    // Before any other thread starts (the AOF writer, the executors), so all inherit the mask.
    watch_signals()?;
    let port = addrs.first().map_or(config.port, |a| a.port());
    let mut config = config;
    config.port = port;
    let ndb = config.databases;
    // Before anything creates a key (the expiry window of the entry word starts here).
    crate::db::clock::init(now_ms());
    let mut preload = if config.appendonly {
        crate::aof::startup(&config, ncores)?
    } else {
        crate::persist::startup_load(&config, ncores)?
    };
    let shared = Arc::new(Shared::new(ncores, config));
    shared.tcp_port.store(port as usize, Ordering::Relaxed);
    crate::slowlog::init(shared.clone());
    // One SO_REUSEPORT socket per core and address, created before any executor starts.
    let mut per_core_fds: Vec<Vec<i32>> = Vec::new();
    for _ in 0..ncores {
        let mut fds = Vec::new();
        for a in &addrs {
            fds.push(
                reuseport_listener(*a)
                    .map_err(|e| format!("listen {a}: {e}"))?
                    .into_raw_fd(),
            );
        }
        per_core_fds.push(fds);
    }
    SERVING.store(true, Ordering::Relaxed);
    let reqs = mesh::<Req>(ncores);
    let resps = mesh::<Resp>(ncores);
    let mut handles = Vec::new();
    for (i, ((fds, (req_tx, req_rx)), (resp_tx, resp_rx))) in
        per_core_fds.into_iter().zip(reqs).zip(resps).enumerate()
    {
        let shared = shared.clone();
        let items = preload.get_mut(i).map(std::mem::take).unwrap_or_default();
        let unix = if i == 0 { unix_fd.take() } else { None };
        let cpu = cpus[i % cpus.len().max(1)];
        let builder = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("core-{i}"))
            .io_memory(1 << 20)
            // One task queue: preemption by completion count only costs an io-wq hand-off
            // per 128 completions (third_party/glommio/PATCHED.md, "Throughput preemption").
            .throughput_preemption(false);
        let h = builder
            .spawn(move || async move {
                // A sender's connect waits for its receiver's: connect every end concurrently.
                let (req_out, resp_out, req_in, resp_in) = futures::join!(
                    connect_tx(req_tx),
                    connect_tx(resp_tx),
                    connect_rx(req_rx),
                    connect_rx(resp_rx)
                );
                let links = Links {
                    req_out,
                    resp_out,
                    req_in,
                    resp_in,
                };
                let n = shared.ncores;
                let mut shard = Shard::new(i, ndb, |s| s % n == i);
                crate::persist::fill_at_start(&mut shard, items);
                let core = Core::start(i, shared.clone(), shard, links);
                if i == 0 {
                    crate::admin::start_signal_shutdown(&core);
                    crate::persist::start_cron(&core);
                    crate::repl::start(&core);
                }
                crate::notify::start(core.clone());
                let expiry = core.clone();
                glommio::spawn_local(async move {
                    loop {
                        glommio::timer::sleep(Duration::from_millis(100)).await;
                        let now = now_ms();
                        crate::db::clock::tick(now);
                        if i == 0 {
                            crate::slowlog::refresh();
                            crate::latency::refresh();
                        }
                        expiry.wait_unheld().await;
                        let start = Instant::now();
                        loop {
                            let removed = expiry.shard.borrow_mut().active_expire(now, 20_000);
                            // Keep going while many keys expire, but never for more than 25 ms.
                            if removed < 5_000 || start.elapsed() > Duration::from_millis(25) {
                                break;
                            }
                        }
                        let took = start.elapsed().as_millis() as u64;
                        crate::latency::add_sample_if_needed("expire-cycle", took);
                        // Over maxmemory: this shard frees what it can too (a write landing on
                        // a shard with nothing left to evict is refused until then).
                        if crate::evict::over_limit() {
                            expiry.shard.borrow_mut().evict(0);
                        }
                    }
                })
                .detach();
                let mut accepts = Vec::new();
                for fd in fds {
                    // SAFETY: `fd` is a bound, listening socket we created and own.
                    let listener = unsafe { TcpListener::from_raw_fd(fd) };
                    let core = core.clone();
                    accepts.push(glommio::spawn_local(accept_loop(core, listener)));
                }
                if let Some(fd) = unix {
                    // SAFETY: `fd` is the bound, listening Unix socket made above; ownership
                    // passes to the listener.
                    let listener =
                        unsafe { glommio::net::UnixListener::from_raw_fd(fd.into_raw_fd()) };
                    accepts.push(glommio::spawn_local(unix_accept_loop(
                        core.clone(),
                        listener,
                    )));
                }
                futures::future::join_all(accepts).await;
            })
            .map_err(|e| format!("cannot start executor {i} on cpu {cpu}: {e}"))?;
        handles.push(h);
    }
    for a in &addrs {
        tracing::info!("Ready to accept connections tcp on {a} with {ncores} cores");
    }
    if let Some(p) = UNIXSOCKET.get() {
        tracing::info!("Ready to accept connections unix on {p}");
    }
    for h in handles {
        h.join().map_err(|e| format!("executor failed: {e}"))?;
    }
    Ok(())
}

async fn accept_loop(core: std::rc::Rc<Core>, listener: TcpListener) {
    let laddr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let addr = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
        let Some(info) = admit(&core, addr, laddr.clone(), fd, false) else {
            refuse(Box::new(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        serve_here(&core, Box::new(stream), info);
    }
}

/// Accepts the `unixsocket`'s connections (on core 0) and deals them out to the cores in turn;
/// `CLIENT CORE` and core affinity move them on from there, as TCP connections.
async fn unix_accept_loop(core: std::rc::Rc<Core>, listener: glommio::net::UnixListener) {
    let path = core.shared.config().unixsocket.clone();
    let addr = format!("{path}:0");
    let mut turn = 0usize;
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("accept on {path} failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
        let Some(info) = admit(&core, addr.clone(), addr.clone(), fd, true) else {
            refuse(Box::new(stream));
            continue;
        };
        let to = turn % core.ncores();
        turn = turn.wrapping_add(1);
        if to == core.id {
            serve_here(&core, Box::new(stream), info);
            continue;
        }
        let Ok(owned) = crate::conn::dup_fd(fd) else {
            serve_here(&core, Box::new(stream), info);
            continue;
        };
        info.fd
            .store(std::os::fd::AsRawFd::as_raw_fd(&owned), Ordering::Relaxed);
        info.core.store(to, Ordering::Relaxed);
        drop(stream);
        let a = crate::conn::Adopted {
            fd: owned,
            authed: core.shared.config().requirepass.is_none(),
            info,
            db: 0,
            proto: resp::Proto::Resp2,
            rbuf: bytes::BytesMut::new(),
            pinned: false,
            monitor: None,
        };
        let core = core.clone();
        glommio::spawn_local(async move {
            let id = a.info.id;
            if !core.send_adopt(to, a).await {
                crate::conn::forget(&core, id);
            }
        })
        .detach();
    }
}

/// Counts a new connection and registers it for CLIENT LIST; `None` when `maxclients` is
/// reached (the connection is then refused).
fn admit(
    core: &std::rc::Rc<Core>,
    addr: String,
    laddr: String,
    fd: i32,
    unix: bool,
) -> Option<Arc<ClientInfo>> {
    let sh = &core.shared;
    let max = sh.config.read().map(|c| c.maxclients).unwrap_or(10000);
    sh.total_connections.fetch_add(1, Ordering::Relaxed);
    if sh.connected.load(Ordering::Relaxed) >= max {
        sh.rejected_connections.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    let id = sh.next_client_id.fetch_add(1, Ordering::Relaxed);
    let info = Arc::new(ClientInfo::new(id, addr, laddr, fd, core.id, unix));
    if let Ok(mut c) = sh.clients.lock() {
        c.insert(id, info.clone());
    }
    sh.connected.fetch_add(1, Ordering::Relaxed);
    Some(info)
}

/// Tells a connection over `maxclients` why, then closes it.
fn refuse(mut s: crate::conn::Stream) {
    glommio::spawn_local(async move {
        use futures_lite::AsyncWriteExt;
        let _ = s.write_all(b"-ERR max number of clients reached\r\n").await;
    })
    .detach();
}

/// Serves an admitted connection on this core.
fn serve_here(core: &std::rc::Rc<Core>, stream: crate::conn::Stream, info: Arc<ClientInfo>) {
    let core = core.clone();
    let id = info.id;
    glommio::spawn_local(async move {
        if crate::conn::serve(core.clone(), stream, info).await == crate::conn::Served::Closed {
            crate::conn::forget(&core, id);
        }
    })
    .detach();
}
