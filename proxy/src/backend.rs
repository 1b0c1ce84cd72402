//! One pipelined connection to a backend server for one database, shared by every session of a
//! core. Requests are encoded into one output buffer and written by a writer task (one write per
//! batch); replies are cut with `frame_len` (never parsed) and handed, first-in first-out, to
//! the [`Waiter`] queued with each request.
//!
//! Life cycle: connect lazily on first use (`AUTH product_auth`, `SELECT db`), PING every
//! `backend_ping_period`, fail everything queued with a clear error when the connection dies,
//! then reconnect with backoff (50 ms doubling to 2 s). While down, new requests fail at once.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use resp::encode;

use crate::config::Config;
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

/// A shared, pipelined backend connection (server address + database).
pub struct Backend {
    pub addr: Rc<str>,
    pub db: u32,
    cfg: Arc<Config>,
    state: Cell<State>,
    out: RefCell<BytesMut>,
    /// One entry per request written or buffered; `None` is a keepalive PING.
    queue: RefCell<VecDeque<Option<Waiter>>>,
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
    /// A backend that connects on first use.
    pub fn new(addr: &str, db: u32, cfg: Arc<Config>) -> Rc<Backend> {
        Rc::new(Backend {
            addr: addr.into(),
            db,
            cfg,
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

    /// Whether the pipeline is at `backend_max_pipeline`.
    pub fn is_full(&self) -> bool {
        self.queue.borrow().len() >= self.cfg.backend_max_pipeline
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

    /// The topology no longer uses this backend: close it once idle.
    pub fn retire(&self) {
        self.retired.set(true);
        self.writer.notify_all();
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
        self.queue.borrow_mut().push_back(Some(w));
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
        if drained.iter().any(Option::is_some) {
            let msg = Bytes::from(format!(
                "-ERR handle response, backend {} closed: {}\r\n",
                self.addr,
                one_line(why)
            ));
            for w in drained.into_iter().flatten() {
                self.complete(w, msg.clone());
            }
        }
        self.space.notify_all();
    }
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

async fn connect(b: &Backend) -> Result<TcpStream, String> {
    let addr: std::net::SocketAddr = match b.addr.parse() {
        Ok(a) => a,
        Err(_) => {
            use std::net::ToSocketAddrs;
            b.addr
                .to_socket_addrs()
                .map_err(|e| format!("resolve {}: {e}", b.addr))?
                .next()
                .ok_or_else(|| format!("resolve {}: no address", b.addr))?
        }
    };
    let mut s = TcpStream::connect_timeout(addr, Duration::from_secs(5))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_nodelay(true);
    // SAFETY: the descriptor belongs to `s`, which outlives `fd` and `sock`.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(std::os::fd::AsRawFd::as_raw_fd(&s)) };
    let sock = socket2::SockRef::from(&fd);
    let _ = sock.set_recv_buffer_size(b.cfg.backend_recv_bufsize);
    let _ = sock.set_send_buffer_size(b.cfg.backend_send_bufsize);
    if !b.cfg.backend_keepalive_period.is_zero() {
        let ka = socket2::TcpKeepalive::new().with_time(b.cfg.backend_keepalive_period);
        let _ = sock.set_tcp_keepalive(&ka);
    }
    // Handshake: AUTH and SELECT, each must answer +OK.
    let mut hello = BytesMut::new();
    let mut expected = 0;
    if !b.cfg.product_auth.is_empty() {
        encode_args(
            &mut hello,
            [&b"AUTH"[..], b.cfg.product_auth.as_bytes()].into_iter(),
        );
        expected += 1;
    }
    if b.db != 0 {
        let db = b.db.to_string();
        encode_args(&mut hello, [&b"SELECT"[..], db.as_bytes()].into_iter());
        expected += 1;
    }
    if expected > 0 {
        s.write_all(&hello)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = BytesMut::new();
        let mut chunk = [0u8; 512];
        let mut got = 0;
        let deadline = glommio::timer::Timer::new(Duration::from_secs(5));
        let read_all = async {
            while got < expected {
                while let Some(n) = resp::frame::frame_len(&buf).map_err(|e| e.to_string())? {
                    let f = buf.split_to(n);
                    if f.first() == Some(&b'-') {
                        return Err(format!(
                            "handshake: {}",
                            String::from_utf8_lossy(&f[1..f.len().saturating_sub(2)])
                        ));
                    }
                    got += 1;
                }
                if got >= expected {
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
    }
    if !b.cfg.backend_send_timeout.is_zero() {
        let _ = s.set_write_timeout(Some(b.cfg.backend_send_timeout));
    }
    Ok(s)
}

/// Runs the reader, the writer and the pinger until one of them fails; returns why.
async fn serve(b: &Rc<Backend>, stream: TcpStream) -> String {
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
                        let w = b.queue.borrow_mut().pop_front();
                        match w {
                            Some(Some(w)) => b.complete(w, frame),
                            Some(None) => {}
                            None => return "reply without a request".to_string(),
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return format!("bad reply: {e}"),
                }
            }
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
    let pinger = async {
        let period = b.cfg.backend_ping_period;
        if period.is_zero() {
            return futures::future::pending::<String>().await;
        }
        loop {
            glommio::timer::sleep(period).await;
            b.out
                .borrow_mut()
                .extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
            b.queue.borrow_mut().push_back(None);
            b.writer.notify_all();
        }
    };
    futures_lite::future::or(reader, futures_lite::future::or(writer, pinger)).await
}
