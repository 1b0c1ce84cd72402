//! One pipelined connection to a backend server for one database and protocol (RESP2, or RESP3
//! for sessions that said `HELLO 3`), shared by every session of a core. Requests are encoded
//! into one output buffer and written by a writer task (one write per batch); replies are cut
//! with `frame_len` (never parsed) and handed, first-in first-out, to the [`Waiter`] queued with
//! each request.
//!
//! Life cycle: connect lazily on first use (`AUTH product_auth`, `HELLO 3` for RESP3, `SELECT
//! db`), PING every `backend_ping_period`, fail everything queued with a clear error when the
//! connection dies, then reconnect with backoff (50 ms doubling to 2 s). While down, new
//! requests fail at once.
//!
//! **Lanes.** A codis-server runs one executor per core and each slot lives on one core; a
//! request that arrives on a connection served by another core hops between cores. So the
//! proxy keeps one connection ("lane") per server core that owns slots: lane `n` is pinned to
//! core `n` with `CLIENT CORE n`, and a request for slot `s` goes to lane `owners[s]`, read with
//! `SLOTSMOVE OWNERS` when lane 0 connects and every `backend_ping_period` (instead of its PING).
//! A server that knows neither command (redis-server, Codis's) gets one connection, as before.
//!
//! Ordering: a client's pipelined requests for one key must reach the server in order, and two
//! lanes are two connections. So the lane of a slot changes only while no request is in flight
//! on any lane of the server: a new owner table waits as `pending` until then, and a lane is
//! chosen right before its request is queued, with no wait in between. While a table is
//! pending, every lane of the server reports itself full, so sessions hold new requests (as
//! for a full pipeline) and the lanes drain: the switch costs one round trip, on start-up and
//! when slots change cores.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::UnixStream;
use resp::encode;

use crate::config::Config;
use crate::dial::{self, Conn, Io};
use crate::sync::{Batch, Event};

/// Where a reply goes: position `idx` of `batch`.
pub struct Waiter {
    pub batch: Rc<Batch>,
    pub idx: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Never used yet.
    Idle,
    /// Dialing: requests queue up.
    Connecting,
    Connected,
    /// Between a failure and the next dial: requests fail at once.
    Down,
}

/// What a queued request's reply is for.
enum Entry {
    /// A client's request.
    Reply(Waiter),
    /// The keepalive PING.
    Ping,
    /// `SLOTSMOVE OWNERS` (lane 0's keepalive on a codis-server).
    Owners,
}

/// Whether the server pins connections to cores (`CLIENT CORE`) and reports slot owners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cores {
    /// Not asked yet.
    Unknown,
    /// It answered `SLOTSMOVE OWNERS`.
    Lanes,
    /// It did not: one connection.
    Single,
}

/// The lanes of one server and database, shared by its lane backends.
struct Lanes {
    /// The core owning each slot, in use (None: everything on lane 0).
    owners: RefCell<Option<Rc<[u16]>>>,
    /// A newer owner table, installed once nothing is in flight on any lane.
    pending: RefCell<Option<Rc<[u16]>>>,
    /// Entries queued on all lanes together.
    busy: Cell<usize>,
    /// Lanes 1…; lane 0 is the head backend itself.
    extra: RefCell<Vec<Option<Rc<Backend>>>>,
    /// Lane 0.
    head: RefCell<std::rc::Weak<Backend>>,
    cores: Cell<Cores>,
}

impl Lanes {
    /// Installs the pending owner table if no request is in flight, and wakes the sessions
    /// that waited for it.
    fn settle(&self) {
        if self.busy.get() != 0 {
            return;
        }
        let Some(p) = self.pending.borrow_mut().take() else {
            return;
        };
        let single = p.iter().all(|&c| c == 0);
        *self.owners.borrow_mut() = (!single).then_some(p);
        if let Some(h) = self.head.borrow().upgrade() {
            h.space.notify_all();
        }
        for b in self.extra.borrow().iter().flatten() {
            b.space.notify_all();
        }
    }
}

/// A shared, pipelined backend connection (server address + database + lane).
pub struct Backend {
    pub addr: Rc<str>,
    pub db: u32,
    /// The connection said `HELLO 3`: its replies are RESP3 (for RESP3 sessions only).
    pub resp3: bool,
    /// The server core this connection is pinned to (see "Lanes" above).
    pub lane: u16,
    lanes: Rc<Lanes>,
    cfg: Arc<Config>,
    shared: Arc<crate::stats::Shared>,
    state: Cell<State>,
    out: RefCell<BytesMut>,
    /// One entry per request written or buffered.
    queue: RefCell<VecDeque<Entry>>,
    writer: Event,
    /// Notified when the queue shrinks or the state changes.
    pub space: Event,
    retired: Cell<bool>,
    last_error: RefCell<String>,
    /// Requests queued so far, and requests answered (or failed) so far: a table change waits
    /// until `done` reaches the `sent` it saw (Codis's `refs.Wait()`).
    sent: Cell<u64>,
    done: Cell<u64>,
}

impl Backend {
    /// A backend (lane 0 of the server) that connects on first use.
    pub fn new(
        addr: &str,
        ch: crate::core::Channel,
        shared: Arc<crate::stats::Shared>,
    ) -> Rc<Backend> {
        let lanes = Rc::new(Lanes {
            owners: RefCell::new(None),
            pending: RefCell::new(None),
            busy: Cell::new(0),
            extra: RefCell::new(Vec::new()),
            head: RefCell::new(std::rc::Weak::new()),
            cores: Cell::new(Cores::Unknown),
        });
        let head = Backend::with_lane(addr.into(), ch.db, ch.resp3, shared, 0, lanes);
        *head.lanes.head.borrow_mut() = Rc::downgrade(&head);
        head
    }

    fn with_lane(
        addr: Rc<str>,
        db: u32,
        resp3: bool,
        shared: Arc<crate::stats::Shared>,
        lane: u16,
        lanes: Rc<Lanes>,
    ) -> Rc<Self> {
        Rc::new(Backend {
            addr,
            db,
            resp3,
            lane,
            lanes,
            cfg: shared.cfg.clone(),
            shared,
            state: Cell::new(State::Idle),
            out: RefCell::new(BytesMut::with_capacity(16 * 1024)),
            queue: RefCell::new(VecDeque::new()),
            writer: Event::default(),
            space: Event::default(),
            retired: Cell::new(false),
            last_error: RefCell::new(String::new()),
            sent: Cell::new(0),
            done: Cell::new(0),
        })
    }

    /// The lane for a request on `slot`: call it right before queueing the request (see
    /// "Lanes" above). `self` must be lane 0, as `Core::backend` returns it.
    #[inline]
    pub fn for_slot(self: &Rc<Self>, slot: u16) -> Rc<Backend> {
        match self.lane_of(slot) {
            0 => self.clone(),
            n => self.lane_backend(n),
        }
    }

    /// The lane `slot` goes to now.
    #[inline]
    pub fn lane_of(&self, slot: u16) -> u16 {
        match &*self.lanes.owners.borrow() {
            Some(o) => o.get(slot as usize).copied().unwrap_or(0),
            None => 0,
        }
    }

    fn lane_backend(self: &Rc<Self>, n: u16) -> Rc<Backend> {
        if self.retired.get() {
            // Draining: no new connection to a server the topology dropped.
            return self.clone();
        }
        let mut extra = self.lanes.extra.borrow_mut();
        let i = n as usize - 1;
        if extra.len() <= i {
            extra.resize(i + 1, None);
        }
        extra[i]
            .get_or_insert_with(|| {
                Backend::with_lane(
                    self.addr.clone(),
                    self.db,
                    self.resp3,
                    self.shared.clone(),
                    n,
                    self.lanes.clone(),
                )
            })
            .clone()
    }

    /// This backend and its other lanes.
    pub fn all_lanes(self: &Rc<Self>) -> Vec<Rc<Backend>> {
        let mut v = vec![self.clone()];
        v.extend(self.lanes.extra.borrow().iter().flatten().cloned());
        v
    }

    /// Whether the connection is up (replica reads use only connected replicas).
    pub fn is_connected(&self) -> bool {
        self.state.get() == State::Connected
    }

    /// Starts connecting if nobody asked before.
    pub fn kick(self: &Rc<Self>) {
        if self.state.get() == State::Idle {
            self.state.set(State::Connecting);
            glommio::spawn_local(run(self.clone())).detach();
        }
    }

    /// Whether the pipeline is at `backend_max_pipeline`, or the server's lanes are changing
    /// (see "Lanes" above): wait for `space`, then choose the lane again.
    pub fn is_full(&self) -> bool {
        self.queue.borrow().len() >= self.cfg.backend_max_pipeline
            || self.lanes.pending.borrow().is_some()
    }

    /// Requests waiting for a reply.
    pub fn pending(&self) -> usize {
        self.queue.borrow().len()
    }

    /// Requests queued so far.
    pub fn sent(&self) -> u64 {
        self.sent.get()
    }

    /// Waits until every request queued before `sent` was answered or failed.
    pub async fn drained(&self, sent: u64) {
        loop {
            let wait = self.space.wait();
            if self.done.get() >= sent {
                return;
            }
            wait.await;
        }
    }

    /// The topology no longer uses this backend: close it (and its other lanes) once idle.
    pub fn retire(&self) {
        self.retired.set(true);
        self.writer.notify_all();
        if self.lane == 0 {
            for b in self.lanes.extra.take().into_iter().flatten() {
                b.retire();
            }
        }
    }

    fn push(&self, e: Entry) {
        self.queue.borrow_mut().push_back(e);
        self.lanes.busy.set(self.lanes.busy.get() + 1);
    }

    fn pop(&self) -> Option<Entry> {
        let e = self.queue.borrow_mut().pop_front();
        if e.is_some() {
            self.lanes.busy.set(self.lanes.busy.get() - 1);
        }
        e
    }

    /// Queues a request whose encoding `encode` appends to the output buffer. If the backend is
    /// down the waiter gets an error at once.
    pub fn send_with(self: &Rc<Self>, w: Waiter, encode: impl FnOnce(&mut BytesMut)) {
        self.kick();
        self.sent.set(self.sent.get() + 1);
        if self.state.get() == State::Down {
            let msg = format!(
                "-ERR handle request, backend {} is down: {}\r\n",
                self.addr,
                self.last_error.borrow()
            );
            self.complete(w, Bytes::from(msg));
            return;
        }
        encode(&mut self.out.borrow_mut());
        self.push(Entry::Reply(w));
        self.writer.notify_all();
    }

    /// Queues `args` as a RESP multibulk.
    pub fn send(self: &Rc<Self>, w: Waiter, args: &[Bytes]) {
        self.send_with(w, |buf| encode_args(buf, args.iter().map(|a| &a[..])));
    }

    fn complete(&self, w: Waiter, reply: Bytes) {
        self.done.set(self.done.get() + 1);
        w.batch.fill(w.idx as usize, reply);
    }

    fn fail_all(&self, why: &str) {
        self.out.borrow_mut().clear();
        let drained: Vec<_> = self.queue.borrow_mut().drain(..).collect();
        self.lanes.busy.set(self.lanes.busy.get() - drained.len());
        let msg = Bytes::from(format!(
            "-ERR handle response, backend {} closed: {}\r\n",
            self.addr,
            one_line(why)
        ));
        for e in drained {
            if let Entry::Reply(w) = e {
                self.complete(w, msg.clone());
            }
        }
        self.lanes.settle();
        self.space.notify_all();
    }

    /// A `SLOTSMOVE OWNERS` reply: the table to use once nothing is in flight.
    fn owners_reply(&self, r: &[u8]) {
        match parse_owners(r) {
            Some(o) => {
                self.lanes.cores.set(Cores::Lanes);
                let same = match &*self.lanes.owners.borrow() {
                    Some(cur) => cur[..] == o[..],
                    None => o.iter().all(|&c| c == 0),
                };
                *self.lanes.pending.borrow_mut() = (!same).then(|| o.into());
                self.lanes.settle();
            }
            None => {
                if self.lanes.cores.get() != Cores::Lanes {
                    self.lanes.cores.set(Cores::Single);
                }
            }
        }
    }
}

/// Reads a `SLOTSMOVE OWNERS` reply: 1024 integers, each a core (None if it is anything else).
fn parse_owners(r: &[u8]) -> Option<Vec<u16>> {
    let rest = r.strip_prefix(b"*1024\r\n")?;
    let mut owners = Vec::with_capacity(1024);
    for line in rest.split(|&c| c == b'\n') {
        if line.is_empty() {
            continue;
        }
        let n = line.strip_prefix(b":")?.strip_suffix(b"\r")?;
        let core = resp::parse_i64(n)?;
        owners.push(u16::try_from(core).ok().filter(|&c| c < 4096)?);
    }
    (owners.len() == 1024).then_some(owners)
}

/// Appends `*n $len arg…` for `args`.
pub fn encode_args<'a>(buf: &mut BytesMut, args: impl ExactSizeIterator<Item = &'a [u8]>) {
    encode::array(buf, args.len());
    for a in args {
        encode::bulk(buf, a);
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// Connect, serve, fail, back off, forever (until retired).
async fn run(b: Rc<Backend>) {
    let mut failures: u32 = 0;
    loop {
        b.state.set(State::Connecting);
        let err = match connect(&b).await {
            Ok(stream) => {
                failures = 0;
                b.state.set(State::Connected);
                tracing::debug!(backend = %b.addr, db = b.db, "connected");
                b.writer.notify_all();
                b.space.notify_all();
                serve(&b, stream).await
            }
            Err(e) => e,
        };
        b.state.set(State::Down);
        if b.retired.get() {
            b.fail_all(&err);
            tracing::debug!(backend = %b.addr, db = b.db, "closed: {err}");
            return;
        }
        tracing::warn!(backend = %b.addr, db = b.db, "backend connection failed: {err}");
        *b.last_error.borrow_mut() = err.clone();
        b.fail_all(&err);
        failures = failures.saturating_add(1);
        let delay = Duration::from_millis(50 << failures.min(6)).min(Duration::from_secs(2));
        glommio::timer::sleep(delay).await;
        if b.retired.get() {
            return;
        }
    }
}

/// Dials the server over TCP and says the handshake. With `backend_prefer_unixsocket`, a server
/// on this very host (the TCP connection's two ends have one address) is asked for its
/// `unixsocket` first; when it has one, the connection goes through that socket instead, once the
/// server behind it has said it listens on this address's port. Anything unexpected on that way
/// leaves the TCP connection in use.
async fn connect(b: &Backend) -> Result<Conn, String> {
    let mut s = dial::tcp(&b.addr).await?;
    // SAFETY: the descriptor belongs to `s`, which outlives `fd` and `sock`.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(std::os::fd::AsRawFd::as_raw_fd(&s)) };
    let sock = socket2::SockRef::from(&fd);
    let _ = sock.set_recv_buffer_size(b.cfg.backend_recv_bufsize);
    let _ = sock.set_send_buffer_size(b.cfg.backend_send_bufsize);
    if !b.cfg.backend_keepalive_period.is_zero() {
        let ka = socket2::TcpKeepalive::new().with_time(b.cfg.backend_keepalive_period);
        let _ = sock.set_tcp_keepalive(&ka);
    }
    if b.cfg.backend_prefer_unixsocket && dial::on_this_host(&s) {
        let path = handshake(b, &mut s, Step::Probe).await?;
        let port = s.peer_addr().map(|a| a.port()).unwrap_or(0);
        if let Some(path) = path {
            match via_unix(b, &path, port).await {
                Ok(u) => {
                    b.shared.backend_transport(&b.addr, Some(&path));
                    return Ok(Box::new(u));
                }
                Err(e) => {
                    tracing::info!(backend = %b.addr, "unixsocket {path} not used: {e}");
                }
            }
        }
    }
    handshake(b, &mut s, Step::Full).await?;
    if !b.cfg.backend_send_timeout.is_zero() {
        let _ = s.set_write_timeout(Some(b.cfg.backend_send_timeout));
    }
    b.shared.backend_transport(&b.addr, None);
    Ok(Box::new(s))
}

/// The server's Unix socket at `path`, handshaken, if the server behind it listens on `port`.
async fn via_unix(b: &Backend, path: &str, port: u16) -> Result<UnixStream, String> {
    let mut u = dial::unix(path).await?;
    handshake(b, &mut u, Step::Unix(port)).await?;
    if !b.cfg.backend_send_timeout.is_zero() {
        let _ = u.set_write_timeout(Some(b.cfg.backend_send_timeout));
    }
    Ok(u)
}

/// Which handshake [`handshake`] says.
#[derive(Clone, Copy, PartialEq)]
enum Step {
    /// AUTH and `CONFIG GET unixsocket` only: the TCP connection may be dropped for the socket.
    Probe,
    /// The connection's whole handshake.
    Full,
    /// The whole handshake plus `CONFIG GET port`, which must answer this port.
    Unix(u16),
}

/// Says the handshake of `step` and reads its replies: AUTH, HELLO 3 (RESP3 connections) and
/// SELECT, none may fail; then `CLIENT CORE lane` pins the connection to its core and lane 0 reads
/// the slot owners. A server without those commands answers errors, and gets a single
/// connection. Returns the `unixsocket` a probe found (`None`: none, or no answer).
async fn handshake<S: Io>(b: &Backend, s: &mut S, step: Step) -> Result<Option<String>, String> {
    #[derive(PartialEq)]
    enum Hello {
        Must,
        Pin,
        Owners,
        UnixPath,
        Port(u16),
    }
    let mut hello = BytesMut::new();
    let mut expected = Vec::new();
    let mut cmd = |args: &[&[u8]], e: Hello| {
        encode_args(&mut hello, args.iter().copied());
        expected.push(e);
    };
    if !b.cfg.product_auth.is_empty() {
        cmd(&[b"AUTH", b.cfg.product_auth.as_bytes()], Hello::Must);
    }
    if step == Step::Probe {
        cmd(&[b"CONFIG", b"GET", b"unixsocket"], Hello::UnixPath);
    } else {
        if b.resp3 {
            cmd(&[b"HELLO", b"3"], Hello::Must);
        }
        if b.db != 0 {
            cmd(&[b"SELECT", b.db.to_string().as_bytes()], Hello::Must);
        }
        if b.cfg.backend_core_lanes {
            cmd(
                &[b"CLIENT", b"CORE", b.lane.to_string().as_bytes()],
                Hello::Pin,
            );
            if b.lane == 0 {
                cmd(&[b"SLOTSMOVE", b"OWNERS"], Hello::Owners);
            }
        }
        if let Step::Unix(port) = step {
            cmd(&[b"CONFIG", b"GET", b"port"], Hello::Port(port));
        }
    }
    if expected.is_empty() {
        b.lanes.cores.set(Cores::Single);
        return Ok(None);
    }
    s.write_all(&hello)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = BytesMut::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut found = None;
    let deadline = glommio::timer::Timer::new(Duration::from_secs(5));
    let read_all = async {
        let mut got = 0;
        while got < expected.len() {
            while let Some(n) = resp::frame::frame_len(&buf).map_err(|e| e.to_string())? {
                let f = buf.split_to(n);
                let err = f.first() == Some(&b'-');
                let text = || String::from_utf8_lossy(&f[1..f.len().saturating_sub(2)]).to_string();
                match expected.get(got) {
                    Some(Hello::Must) if err => return Err(format!("handshake: {}", text())),
                    Some(Hello::Pin) if err => {
                        tracing::debug!(backend = %b.addr, lane = b.lane, "not pinned to a core: {}", text());
                    }
                    Some(Hello::Owners) => b.owners_reply(&f),
                    Some(Hello::UnixPath) => {
                        found = dial::config_value(&f).filter(|p| !p.is_empty())
                    }
                    Some(Hello::Port(port)) => dial::expect_port(&f, *port)?,
                    _ => {}
                }
                got += 1;
                if got >= expected.len() {
                    break;
                }
            }
            if got >= expected.len() {
                break;
            }
            let n = s.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("closed during handshake".to_string());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok(())
    };
    futures_lite::future::or(read_all, async {
        deadline.await;
        Err("handshake timed out".to_string())
    })
    .await?;
    Ok(found)
}

/// Runs the reader, the writer and the pinger until one of them fails; returns why.
async fn serve(b: &Rc<Backend>, stream: Conn) -> String {
    let (mut r, mut w) = stream.split();
    let reader = async {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut chunk = vec![0u8; 64 * 1024];
        // backend_recv_timeout: a watchdog instead of a timer around each read.
        let timeout = Some(b.cfg.backend_recv_timeout).filter(|t| !t.is_zero());
        let idle = crate::sync::Watchdog::new(timeout);
        loop {
            let n = match idle.or_idle(r.read(&mut chunk)).await {
                None => return "read: Operation timed out".to_string(),
                Some(Ok(0)) => return "connection closed by the server".to_string(),
                Some(Ok(n)) => n,
                Some(Err(e)) => return format!("read: {e}"),
            };
            if timeout.is_some() {
                idle.touch(std::time::Instant::now());
            }
            buf.extend_from_slice(&chunk[..n]);
            loop {
                match resp::frame::frame_len(&buf) {
                    Ok(Some(len)) => {
                        let frame = buf.split_to(len).freeze();
                        if frame[0] == b'>' {
                            // A RESP3 push is no reply to anything queued (the proxy sends no
                            // command that subscribes or tracks): skip it, keep the order.
                            tracing::debug!(backend = %b.addr, "push message ignored");
                            continue;
                        }
                        match b.pop() {
                            Some(Entry::Reply(w)) => b.complete(w, frame),
                            Some(Entry::Ping) => {}
                            Some(Entry::Owners) => b.owners_reply(&frame),
                            None => return "reply without a request".to_string(),
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return format!("bad reply: {e}"),
                }
            }
            b.lanes.settle();
            b.space.notify_all();
        }
    };
    let writer = async {
        let mut spare = BytesMut::with_capacity(16 * 1024);
        loop {
            loop {
                let wake = b.writer.wait();
                if !b.out.borrow().is_empty() {
                    break;
                }
                if b.retired.get() && b.queue.borrow().is_empty() {
                    return "retired".to_string();
                }
                wake.await;
            }
            std::mem::swap(&mut *b.out.borrow_mut(), &mut spare);
            if let Err(e) = w.write_all(&spare).await {
                return format!("write: {e}");
            }
            spare.clear();
            if spare.capacity() > 4 << 20 {
                spare = BytesMut::with_capacity(16 * 1024);
            }
        }
    };
    // The pinger runs as a task of its own (cancelled when `serve` returns and drops it), not
    // raced with the reader and the writer: a future in that race is polled at every wake of
    // either, and a timer re-registers itself at each poll.
    let period = b.cfg.backend_ping_period;
    let pinger = (!period.is_zero()).then(|| {
        let b = b.clone();
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(period).await;
                if b.lane == 0 && b.lanes.cores.get() == Cores::Lanes {
                    b.out
                        .borrow_mut()
                        .extend_from_slice(b"*2\r\n$9\r\nSLOTSMOVE\r\n$6\r\nOWNERS\r\n");
                    b.push(Entry::Owners);
                } else {
                    b.out
                        .borrow_mut()
                        .extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
                    b.push(Entry::Ping);
                }
                b.writer.notify_all();
            }
        })
    });
    let why = futures_lite::future::or(reader, writer).await;
    drop(pinger);
    why
}
