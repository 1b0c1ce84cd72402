//! Process start-up of the data plane: one pinned glommio executor per `--cpu`, each with its own
//! SO_REUSEPORT listener, its accept loop, its slot-table receiver and its stats flusher.

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender};
use futures::StreamExt;
use glommio::net::TcpListener;
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};
use socket2::{Domain, Protocol, Socket, Type};

use crate::core::Core;
use crate::slots::SlotTable;
use crate::stats::Shared;

/// A core's report: it applied (and drained for) the table of this version.
pub type CoreAck = (usize, u64);

/// What [`start`] returns: a slot-table sender per core, and the executors.
pub type Cores = (
    Vec<UnboundedSender<Arc<SlotTable>>>,
    Vec<ExecutorJoinHandle<()>>,
);

/// Turns transparent huge pages off for this process (`disable_thp`, on by default), as
/// codis-server and Redis do. mimalloc asks for huge pages on its arenas (`MADV_HUGEPAGE`), so
/// even where the system setting is `madvise`, the first touch of a fresh 2 MiB region faults
/// in and zeroes it whole. In the proxy that hit the control threads handling a migration's
/// pushes and watch events: runs of 3 ms on the CPU its cores share, and the GETs of that moment
/// waited (BENCHMARKS.md, session 36). The flag covers every mapping at its next fault.
pub fn disable_thp() {
    // SAFETY: prctl with integer arguments only; no pointer is passed.
    if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
        tracing::warn!(
            "disable_thp: prctl(PR_SET_THP_DISABLE) failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// CPUs this process may run on (respects `taskset`).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills a cpu_set_t we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![0];
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Resolves `addr` and checks that nobody holds the port: SO_REUSEPORT listeners would otherwise
/// silently share it with a leftover process.
pub fn probe(addr: &str) -> Result<SocketAddr, String> {
    let a = addr
        .to_socket_addrs()
        .map_err(|e| format!("bad listen address {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("bad listen address {addr}"))?;
    // A proxy that just exited leaves its listening sockets behind for a few milliseconds
    // (io_uring drops its accept requests' references after the process is gone), so a quick
    // restart would find the port busy: keep trying for a moment before giving up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let l = loop {
        match std::net::TcpListener::bind(a) {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => break r,
        }
    }
    .map_err(|e| format!("cannot listen on {a}: {e}"))?;
    l.local_addr().map_err(|e| e.to_string())
}

fn reuseport_listener(addr: SocketAddr, backlog: i32) -> std::io::Result<Socket> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let sk = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    sk.set_reuse_address(true)?;
    sk.set_reuse_port(true)?;
    sk.bind(&addr.into())?;
    sk.listen(backlog)?;
    Ok(sk)
}

/// Starts one executor per core listening on `addr` (already probed). Returns the senders that
/// push slot tables to each core, and the executor threads.
pub fn start(
    shared: Arc<Shared>,
    addr: SocketAddr,
    acks: UnboundedSender<CoreAck>,
) -> Result<Cores, String> {
    let n = shared.cores.len();
    let cpus = allowed_cpus();
    let mut fds = Vec::new();
    for _ in 0..n {
        fds.push(
            reuseport_listener(addr, 1024)
                .map_err(|e| format!("listen {addr}: {e}"))?
                .into_raw_fd(),
        );
    }
    let mut senders = Vec::new();
    let mut handles = Vec::new();
    for (i, fd) in fds.into_iter().enumerate() {
        let (tx, rx) = futures::channel::mpsc::unbounded::<Arc<SlotTable>>();
        senders.push(tx);
        let shared = shared.clone();
        let acks = acks.clone();
        let cpu = cpus.get(i % cpus.len().max(1)).copied().unwrap_or(0);
        let placement = if cpus.len() >= n {
            Placement::Fixed(cpu)
        } else {
            Placement::Unbound
        };
        let h = LocalExecutorBuilder::new(placement)
            .name(&format!("proxy-core-{i}"))
            .io_memory(1 << 20)
            // One task queue: see third_party/glommio/PATCHED.md, "Throughput preemption".
            .throughput_preemption(false)
            .spawn(move || async move {
                let core = Core::new(i, shared);
                glommio::spawn_local(apply_tables(core.clone(), rx, acks)).detach();
                let flusher = core.clone();
                glommio::spawn_local(async move {
                    loop {
                        glommio::timer::sleep(Duration::from_secs(1)).await;
                        flusher.flush_latency();
                    }
                })
                .detach();
                // SAFETY: `fd` is a bound, listening socket created above and owned by this core.
                let listener = unsafe { TcpListener::from_raw_fd(fd) };
                accept_loop(core, listener).await;
            })
            .map_err(|e| format!("cannot start executor {i}: {e}"))?;
        handles.push(h);
    }
    Ok((senders, handles))
}

async fn apply_tables(
    core: Rc<Core>,
    mut rx: UnboundedReceiver<Arc<SlotTable>>,
    acks: UnboundedSender<CoreAck>,
) {
    while let Some(mut t) = rx.next().await {
        // Only the newest table matters when several are queued.
        while let Ok(newer) = rx.try_recv() {
            t = newer;
        }
        let v = t.version;
        core.apply(t).await;
        let _ = acks.unbounded_send((core.id, v));
    }
}

async fn accept_loop(core: Rc<Core>, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let sh = core.shared.clone();
        let id = sh.sessions_total.fetch_add(1, Relaxed) + 1;
        if sh.sessions_alive.fetch_add(1, Relaxed) >= core.cfg.proxy_max_clients {
            sh.sessions_alive.fetch_sub(1, Relaxed);
            glommio::spawn_local(async move {
                use futures_lite::AsyncWriteExt;
                let mut s = stream;
                let _ = s.write_all(b"-ERR max number of clients reached\r\n").await;
            })
            .detach();
            continue;
        }
        let c = core.clone();
        glommio::spawn_local(async move {
            crate::session::serve(c.clone(), stream, id).await;
            c.shared.sessions_alive.fetch_sub(1, Relaxed);
        })
        .detach();
    }
}
