//! The open-loop engine (`--rate`): one plain thread per `--threads`, each driving its share of
//! the connections with nonblocking sockets and one `epoll` set.
//!
//! Why not the glommio executors of the closed loop: an open loop sleeps between sends, so every
//! request costs a wake-up for its send and one for its reply. Through glommio each wake-up also
//! arms and cancels io_uring timeouts and reads; at 10,000 GETs/s that took 70–80% of a core on
//! this machine, about 75 µs per request. Here a wake-up is one `epoll_pwait2` (a nanosecond
//! timeout, so sends are not rounded to milliseconds), and the same load costs about 30 µs per
//! request. A generator that needs less of its CPU perturbs less what it measures, and on a
//! small machine it shares that CPU with the tools it benchmarks (codisctl during a migration).
//!
//! The schedule and the accounting are those documented in the crate: each connection sends a
//! batch of `-P` requests every `c·P/rate` seconds, staggered over one interval, whether or not
//! earlier replies are back; a request's latency counts from when it was due.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::conn::{ReplyBuf, Target};
use crate::error::BenchError;
use crate::keys::{KeySampler, Rng};
use crate::runner::{ShardOutcome, ShardStats, Shared};
use crate::workload::Plan;

/// Unanswered requests per connection before it stops sending until replies come: a stalled
/// server must not make the generator fill both socket buffers (the due requests wait, and
/// their latency still counts from when they were due).
const MAX_INFLIGHT: usize = 8192;

/// What one open-loop thread runs.
pub(crate) struct OpenShard {
    pub shared: Arc<Shared>,
    pub plan: Arc<Plan>,
    pub target: Target,
    pub keys: Option<KeySampler>,
    pub interval: Duration,
    pub pipeline: usize,
    pub clients: usize,
    pub conns: std::ops::Range<usize>,
    pub duration: Option<Duration>,
    pub seed: u64,
    /// The CPU to pin this thread to, if any.
    pub cpu: Option<usize>,
    /// `--slow-log`: print the requests slower than this.
    pub slow_log: Option<SlowLog>,
}

/// `--slow-log`: every request slower than `threshold` is printed to stderr as
/// `slow <due> <latency µs> <slot>`, `<slot>` being its first key's slot (`-` without a key) and
/// `<due>` when it was scheduled, in seconds of
/// `CLOCK_MONOTONIC` (the clock of `perf record -k mono` and of `perf sched timehist` on such a
/// recording), so that slow requests can be lined up with what ran on the machine then.
#[derive(Clone, Copy)]
pub(crate) struct SlowLog {
    threshold: Duration,
    /// An instant and the same moment on `CLOCK_MONOTONIC`, in ns.
    base: Instant,
    base_ns: u64,
}

impl SlowLog {
    pub(crate) fn new(threshold: Duration) -> SlowLog {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let base = Instant::now();
        // SAFETY: clock_gettime writes the timespec it is given.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        SlowLog {
            threshold,
            base,
            base_ns: ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64,
        }
    }

    fn note(&self, due: Instant, latency: Duration, slot: u16) {
        if latency < self.threshold {
            return;
        }
        let ns = if due >= self.base {
            self.base_ns + (due - self.base).as_nanos() as u64
        } else {
            self.base_ns
                .saturating_sub((self.base - due).as_nanos() as u64)
        };
        let slot = if slot == NO_SLOT {
            "-".to_string()
        } else {
            slot.to_string()
        };
        eprintln!(
            "slow {}.{:09} {} {slot}",
            ns / 1_000_000_000,
            ns % 1_000_000_000,
            latency.as_micros()
        );
    }
}

/// A request without a key, in the slow log.
const NO_SLOT: u16 = u16::MAX;

/// The slot of `req`'s first key (its second argument), [`NO_SLOT`] if it has none. Only with
/// `--slow-log` (it copies the request to parse it).
fn first_key_slot(req: &[u8]) -> u16 {
    match resp::Frame::parse(&mut bytes::BytesMut::from(req)) {
        Ok(Some(resp::Frame::Array(args))) => match args.get(1) {
            Some(resp::Frame::Bulk(key)) => resp::slot(key),
            _ => NO_SLOT,
        },
        _ => NO_SLOT,
    }
}

/// One open-loop connection.
struct OpenConn {
    sock: TcpStream,
    rbuf: ReplyBuf,
    /// Encoded requests not yet accepted by the socket.
    out: Vec<u8>,
    out_pos: usize,
    /// Requests sent (or queued in `out`) and not yet answered: (when due, template).
    inflight: VecDeque<(Instant, u8, u16)>,
    next_send: Instant,
    sending: bool,
    /// Whether the epoll registration asks for writability too.
    want_out: bool,
    rng: Rng,
    seq: u64,
}

/// Blocking connect with TCP_NODELAY, AUTH and SELECT as asked; nonblocking afterwards.
fn connect(target: &Target) -> Result<(TcpStream, ReplyBuf), BenchError> {
    let addr = target.addr;
    let err = |e: io::Error| BenchError::Connect(addr, e.into());
    let mut sock = TcpStream::connect(addr).map_err(err)?;
    sock.set_nodelay(true).map_err(err)?;
    let mut rbuf = ReplyBuf::new();
    if let Some(pass) = &target.auth {
        setup_call(
            &mut sock,
            &mut rbuf,
            addr,
            "AUTH",
            &[b"AUTH", pass.as_bytes()],
        )?;
    }
    if target.dbnum != 0 {
        let db = target.dbnum.to_string();
        setup_call(
            &mut sock,
            &mut rbuf,
            addr,
            "SELECT",
            &[b"SELECT", db.as_bytes()],
        )?;
    }
    sock.set_nonblocking(true).map_err(err)?;
    Ok((sock, rbuf))
}

/// Send one set-up command and require `+OK`.
fn setup_call(
    sock: &mut TcpStream,
    rbuf: &mut ReplyBuf,
    addr: SocketAddr,
    what: &'static str,
    args: &[&[u8]],
) -> Result<(), BenchError> {
    let mut req = bytes::BytesMut::new();
    resp::Frame::command(args.iter().map(|a| bytes::Bytes::copy_from_slice(a))).encode(&mut req);
    sock.write_all(&req).map_err(|e| BenchError::Io(addr, e))?;
    let r = loop {
        if let Some(r) = rbuf
            .next_reply()
            .map_err(|e| BenchError::Protocol(addr, e))?
        {
            break r;
        }
        let n = sock
            .read(rbuf.spare())
            .map_err(|e| BenchError::Io(addr, e))?;
        if n == 0 {
            return Err(BenchError::Closed(addr));
        }
        rbuf.filled(n);
    };
    let reply = rbuf.get(r);
    if reply != b"+OK\r\n" {
        return Err(BenchError::Setup {
            addr,
            what,
            reply: String::from_utf8_lossy(reply).trim_end().to_string(),
        });
    }
    Ok(())
}

/// An epoll set; closed on drop.
struct Epoll(libc::c_int);

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall; the descriptor is owned by the returned value.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll(fd))
    }

    fn ctl(&self, op: libc::c_int, fd: libc::c_int, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        if unsafe { libc::epoll_ctl(self.0, op, fd, &mut ev) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Wait for events until `timeout` (forever with `None`); returns how many were stored.
    /// `epoll_pwait2` takes a nanosecond timeout; kernels without it (before 5.11) get
    /// `epoll_wait` with the timeout rounded up to a millisecond.
    fn wait(&self, evs: &mut [libc::epoll_event], timeout: Option<Duration>) -> io::Result<usize> {
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs() as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        let tsp = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `evs` is writable for its length, `tsp` is null or points at `ts`.
        let n = unsafe {
            libc::syscall(
                libc::SYS_epoll_pwait2,
                self.0,
                evs.as_mut_ptr(),
                evs.len() as libc::c_int,
                tsp,
                std::ptr::null::<libc::sigset_t>(),
                0usize,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENOSYS) {
            return Err(e);
        }
        let ms = timeout.map_or(-1, |t| {
            t.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
        });
        // SAFETY: as above.
        let n = unsafe { libc::epoll_wait(self.0, evs.as_mut_ptr(), evs.len() as i32, ms) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours and closed once.
        unsafe { libc::close(self.0) };
    }
}

/// Pin the calling thread to `cpu`.
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; pid 0 is the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// One open-loop thread: connect, meet the other threads at the barrier, run, report.
pub(crate) fn shard_main(a: OpenShard) -> Result<Option<ShardOutcome>, BenchError> {
    if let Some(cpu) = a.cpu {
        pin_to(cpu);
    }
    // Wake-ups exactly when a batch is due: the default 50 µs timer slack would add up to that
    // to every measured latency.
    // SAFETY: plain prctl on the calling thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let mut socks = Vec::with_capacity(a.conns.len());
    let mut failure = None;
    for idx in a.conns.clone() {
        match connect(&a.target) {
            Ok(c) => socks.push((idx, c)),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if failure.is_some() {
        a.shared.fail();
    }
    // Every thread reaches the barrier, failed or not, so none waits forever.
    a.shared.wait_ready();
    if let Some(e) = failure {
        return Err(e);
    }
    if a.shared.failed() {
        return Ok(None);
    }
    let addr = a.target.addr;
    let io_err = |e| BenchError::Io(addr, e);
    let start = Instant::now();
    let stats = ShardStats::new(start)?;
    let deadline = a.duration.map(|d| start + d);
    let p = a.pipeline.max(1);
    let fixed = KeySampler::Uniform(1);
    let keys = a.keys.as_ref().unwrap_or(&fixed);
    let ep = Epoll::new().map_err(io_err)?;
    let mut conns = Vec::with_capacity(socks.len());
    for (i, (idx, (sock, rbuf))) in socks.into_iter().enumerate() {
        ep.ctl(
            libc::EPOLL_CTL_ADD,
            sock.as_raw_fd(),
            libc::EPOLLIN as u32,
            i as u64,
        )
        .map_err(io_err)?;
        conns.push(OpenConn {
            sock,
            rbuf,
            out: Vec::new(),
            out_pos: 0,
            inflight: VecDeque::new(),
            // Spread the connections evenly over one interval instead of firing together.
            next_send: start + a.interval.mul_f64(idx as f64 / a.clients as f64),
            sending: true,
            want_out: false,
            rng: Rng::new(a.seed ^ (idx as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            seq: 0,
        });
    }
    let mut evs = vec![libc::epoll_event { events: 0, u64: 0 }; conns.len().clamp(1, 256)];
    loop {
        // Send every batch that is due, each connection's in one write.
        let now = Instant::now();
        let mut next_due: Option<Instant> = None;
        let mut live = false;
        for (i, c) in conns.iter_mut().enumerate() {
            if c.sending && c.next_send <= now && c.inflight.len() < MAX_INFLIGHT {
                let before = c.out.len();
                while c.next_send <= now && c.inflight.len() < MAX_INFLIGHT {
                    let k = a.shared.claim(p as u64, deadline) as usize;
                    if k == 0 {
                        c.sending = false;
                        break;
                    }
                    for _ in 0..k {
                        let t = a.plan.pick(c.seq);
                        c.seq += 1;
                        let at = c.out.len();
                        a.plan.templates[t].write(&mut c.out, keys, &mut c.rng);
                        let slot = match a.slow_log {
                            Some(_) => first_key_slot(&c.out[at..]),
                            None => NO_SLOT,
                        };
                        c.inflight.push_back((c.next_send, t as u8, slot));
                    }
                    c.next_send += a.interval;
                }
                if c.out.len() > before {
                    c.flush(&ep, i, addr)?;
                }
            }
            if c.sending && c.inflight.len() < MAX_INFLIGHT {
                next_due = Some(next_due.map_or(c.next_send, |d| d.min(c.next_send)));
            }
            live |= c.sending || !c.inflight.is_empty();
        }
        if !live {
            break;
        }
        // Sleep until a reply arrives or the next batch is due. A stop signal is noticed at the
        // next due batch (claim says stop), at most one interval later.
        let timeout = next_due.map(|d| d.saturating_duration_since(Instant::now()));
        let n = match ep.wait(&mut evs, timeout) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(io_err(e)),
        };
        for ev in &evs[..n] {
            let i = ev.u64 as usize;
            let c = &mut conns[i];
            if ev.events & libc::EPOLLOUT as u32 != 0 {
                c.flush(&ep, i, addr)?;
            }
            if ev.events & (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
                c.receive(&a.plan, &stats, addr, a.slow_log.as_ref())?;
            }
        }
    }
    Ok(Some(stats.into_outcome(Instant::now())))
}

impl OpenConn {
    /// Write what the socket takes now; ask epoll for writability while something is left.
    fn flush(&mut self, ep: &Epoll, token: usize, addr: SocketAddr) -> Result<(), BenchError> {
        while self.out_pos < self.out.len() {
            match self.sock.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(BenchError::Closed(addr)),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(BenchError::Io(addr, e)),
            }
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        let want_out = !self.out.is_empty();
        if want_out != self.want_out {
            let events = libc::EPOLLIN as u32 | if want_out { libc::EPOLLOUT as u32 } else { 0 };
            ep.ctl(
                libc::EPOLL_CTL_MOD,
                self.sock.as_raw_fd(),
                events,
                token as u64,
            )
            .map_err(|e| BenchError::Io(addr, e))?;
            self.want_out = want_out;
        }
        Ok(())
    }

    /// Read what arrived and account every complete reply.
    fn receive(
        &mut self,
        plan: &Plan,
        stats: &ShardStats,
        addr: SocketAddr,
        slow: Option<&SlowLog>,
    ) -> Result<(), BenchError> {
        loop {
            let room = self.rbuf.spare();
            let room_len = room.len();
            // A read that did not fill the buffer took everything there was: the next arrival
            // wakes epoll again (level-triggered), so no read is spent on `EAGAIN`.
            let drained = match self.sock.read(room) {
                Ok(0) => return Err(BenchError::Closed(addr)),
                Ok(n) => {
                    self.rbuf.filled(n);
                    n < room_len
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(BenchError::Io(addr, e)),
            };
            let now = Instant::now();
            while let Some(r) = self
                .rbuf
                .next_reply()
                .map_err(|e| BenchError::Protocol(addr, e))?
            {
                let Some((due, t, slot)) = self.inflight.pop_front() else {
                    return Err(BenchError::Runtime(format!(
                        "{addr}: a reply nobody asked for"
                    )));
                };
                let ok = plan.templates[t as usize].expect.check(self.rbuf.get(r));
                let lat = now.saturating_duration_since(due);
                if let Some(log) = slow {
                    log.note(due, lat, slot);
                }
                stats.record(lat, ok);
            }
            if drained {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_key_slot_reads_the_second_argument() {
        let get = b"*2\r\n$3\r\nGET\r\n$16\r\nkey:000000001234\r\n";
        assert_eq!(first_key_slot(get), resp::slot(b"key:000000001234"));
        assert_ne!(first_key_slot(get), NO_SLOT);
        assert_eq!(first_key_slot(b"*1\r\n$4\r\nPING\r\n"), NO_SLOT);
        assert_eq!(
            first_key_slot(b"*2\r\n$3\r\nGET\r\n$99\r\nshort\r\n"),
            NO_SLOT
        );
        assert_eq!(first_key_slot(b""), NO_SLOT);
    }
}
