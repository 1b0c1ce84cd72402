//! A client connection: read, parse every complete request in the buffer, run the batch, write all
//! replies with one write.
//!
//! Within a batch, a command whose keys live on this core runs inline; commands for another core are
//! collected into one message per core ([`Plan`]) and their replies are spliced back **in request
//! order**. Commands that need the whole keyspace or several cores first flush what is pending, so
//! a client always observes its own commands in order.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::{TcpStream, UnixStream};
use hashbrown::HashMap;
use resp::command::{self, CommandSpec, ALLKEYS, BLOCKING, CONN, NOAUTH, PUBSUB, TX};
use resp::{encode, Args, Proto, RequestParser};

use crate::core::{Body, Core};
use crate::shard::Cmd;
use crate::shared::{now_ms, ClientInfo};
use crate::{admin, cmd, global, multi, pubsub, tx};

/// Per-connection state.
pub struct Session {
    pub db: usize,
    pub proto: Proto,
    pub authed: bool,
    pub quit: bool,
    pub info: Arc<ClientInfo>,
    /// MULTI queue and watched keys.
    pub tx: crate::tx::TxState,
    /// Subscribed channels and patterns.
    pub ps: crate::pubsub::PubSubState,
    /// The master's stream (replica side): writes are never refused as read-only.
    pub from_master: bool,
    /// `REPLCONF listening-port` of a replica-to-be.
    pub repl_port: u16,
    /// SYNC/PSYNC received: the connection becomes a replica link after this batch.
    pub psync: Option<crate::repl::master::PsyncReq>,
    /// The name last stored in `info.last_cmd` (a pipeline of one command locks it once).
    last_cmd: &'static str,
    /// `CLIENT CORE n`: after this batch's replies, the connection moves to core `n`.
    pub move_to: Option<usize>,
    /// Placed by `CLIENT CORE n`: never moved by core affinity.
    pub pinned: bool,
    /// MONITOR: the feed of every command the server runs, written to this client.
    pub monitor: Option<Arc<crate::monitor::Feed>>,
}

impl Session {
    /// A fresh session (database 0, RESP2).
    pub fn new(info: Arc<ClientInfo>, authed: bool) -> Session {
        Session {
            db: 0,
            proto: Proto::Resp2,
            authed,
            quit: false,
            info,
            tx: Default::default(),
            ps: Default::default(),
            from_master: false,
            repl_port: 0,
            psync: None,
            last_cmd: "",
            move_to: None,
            pinned: false,
            monitor: None,
        }
    }

    /// Stop monitoring (RESET, disconnect).
    pub fn stop_monitor(&mut self) {
        if let Some(f) = self.monitor.take() {
            crate::monitor::detach(&f);
        }
    }
}

/// A client's socket: TCP, or the `unixsocket`.
pub trait Io: AsyncRead + AsyncWrite + Unpin + std::os::fd::AsRawFd {}
impl<T: AsyncRead + AsyncWrite + Unpin + std::os::fd::AsRawFd> Io for T {}
pub type Stream = Box<dyn Io>;

/// A duplicate of `fd` (close-on-exec) for another core to own.
pub fn dup_fd(fd: std::os::fd::RawFd) -> std::io::Result<std::os::fd::OwnedFd> {
    // SAFETY: duplicating a descriptor the caller owns; the copy gets exactly one owner here.
    let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if d < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `d` is the new descriptor, owned by nothing else.
    Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(d) })
}

/// A client connection on its way to another core (`CLIENT CORE n`): a duplicate of its socket
/// descriptor, the session state that outlives a batch, and the bytes read but not yet parsed.
pub struct Adopted {
    pub fd: std::os::fd::OwnedFd,
    pub info: Arc<ClientInfo>,
    pub db: usize,
    pub proto: Proto,
    pub authed: bool,
    pub rbuf: BytesMut,
    pub pinned: bool,
    pub monitor: Option<Arc<crate::monitor::Feed>>,
}

/// How [`serve`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Served {
    /// The connection is over: forget the client.
    Closed,
    /// Another core serves the connection now.
    Moved,
}

/// Serves a connection another core handed over, then forgets the client when it ends.
pub async fn adopt(core: Rc<Core>, a: Adopted) {
    use std::os::fd::IntoRawFd;
    let fd = a.fd.into_raw_fd();
    // SAFETY: the descriptor was duplicated for us and ownership passes to the stream, of the
    // socket's own kind.
    let stream: Stream = unsafe {
        if a.info.unix {
            Box::new(<UnixStream as std::os::fd::FromRawFd>::from_raw_fd(fd))
        } else {
            Box::new(<TcpStream as std::os::fd::FromRawFd>::from_raw_fd(fd))
        }
    };
    let mut sess = Session::new(a.info, a.authed);
    sess.db = a.db;
    sess.proto = a.proto;
    sess.pinned = a.pinned;
    sess.monitor = a.monitor;
    let id = sess.info.id;
    if serve_session(core.clone(), stream, sess, a.rbuf).await == Served::Closed {
        forget(&core, id);
    }
}

/// The client is gone: `connected_clients` and `CLIENT LIST` stop counting it.
pub fn forget(core: &Core, id: u64) {
    let sh = &core.shared;
    sh.connected.fetch_sub(1, Ordering::Relaxed);
    if let Ok(mut c) = sh.clients.lock() {
        c.remove(&id);
    }
}

/// Commands a connection's core sent to the core owning their slot (INFO stats
/// `cross_core_commands`): what `CLIENT CORE` lets a proxy avoid.
pub static CROSS_CORE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `client-core-affinity yes` (the default): a connection whose keyed commands almost all
/// belong to one other core moves there (see [`Plan::affinity`]).
pub static CORE_AFFINITY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
/// Connections moved by core affinity (INFO stats `client_core_affinity_moves`).
pub static AFFINITY_MOVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Keyed commands a connection's affinity is judged over.
const AFFINITY_WINDOW: u32 = 128;

/// Where the replies of a batch go while some are still being computed on other cores.
///
/// Ordering across slot moves: every command queued here was routed while no slot changed owner
/// (`seq`, see [`crate::shared::Shared::move_seq`]), so two commands for one slot never go to two
/// cores in one flush. A command that finds its slot gone when it runs comes back and is routed
/// again ([`redispatch`]), after the rest of its core's part, before its own reply is written.
#[derive(Default)]
pub struct Plan {
    per_core: Vec<Vec<Cmd>>,
    order: Vec<Piece>,
    scratch: BytesMut,
    /// The batch's command-table rows, looked up once (reused allocation).
    /// Per request of the batch: its command's table row, and its key's slot when it has a
    /// single key at a fixed position (else [`crate::shard::NO_SLOT`]).
    specs: Vec<(Option<&'static CommandSpec>, u16)>,
    /// Commands queued for other cores.
    remote: usize,
    /// The owner-change sequence under which the queued commands were routed (None: unstable).
    seq: Option<u64>,
    /// The client the commands are for (its id; 0: none), for SLOWLOG entries.
    pub client: u64,
    /// Keyed commands routed since the affinity was last judged, and how many of them went to
    /// each other core.
    keyed: u32,
    hops: Vec<u32>,
}

enum Piece {
    Local(usize, usize),
    Remote(usize, usize),
}

impl Plan {
    /// An empty plan for a server with `ncores` cores.
    pub fn new(ncores: usize) -> Plan {
        Plan {
            per_core: (0..ncores).map(|_| Vec::new()).collect(),
            order: Vec::new(),
            scratch: BytesMut::new(),
            specs: Vec::new(),
            remote: 0,
            seq: None,
            client: 0,
            keyed: 0,
            hops: vec![0; ncores],
        }
    }

    /// The buffer the next local reply must be written to.
    pub fn target<'a>(&'a mut self, out: &'a mut BytesMut) -> &'a mut BytesMut {
        if self.order.is_empty() {
            out
        } else {
            &mut self.scratch
        }
    }

    /// Record that a local reply was written starting at `start` of [`Plan::target`].
    pub fn written(&mut self, start: usize) {
        if !self.order.is_empty() {
            self.order.push(Piece::Local(start, self.scratch.len()));
        }
    }

    /// Whether commands routed now (after `seq0` was read, before `seq1`) may join the queued
    /// ones: no slot changed owner since the first of them was routed.
    fn routable(&self, seq1: u64) -> bool {
        self.remote == 0 || self.seq == Some(seq1)
    }

    /// After a window of keyed commands: the other core that at least 90% of them belonged to,
    /// if any (the connection would save every one of those hops by moving there). The window
    /// starts again either way.
    fn affinity(&mut self) -> Option<usize> {
        if self.keyed < AFFINITY_WINDOW {
            return None;
        }
        let keyed = std::mem::take(&mut self.keyed);
        let best = (0..self.hops.len()).max_by_key(|&c| self.hops[c])?;
        let n = self.hops[best];
        self.hops.iter_mut().for_each(|h| *h = 0);
        (n * 10 >= keyed * 9).then_some(best)
    }

    fn push_remote(&mut self, core: usize, cmd: Cmd, seq0: u64) {
        self.keyed += 1;
        self.hops[core] += 1;
        if self.remote == 0 {
            self.seq = (seq0 % 2 == 0).then_some(seq0);
        }
        self.remote += 1;
        self.order
            .push(Piece::Remote(core, self.per_core[core].len()));
        self.per_core[core].push(cmd);
    }

    /// Send what is pending to other cores, wait, and write every reply so far to `out` in order.
    pub async fn flush(&mut self, core: &Rc<Core>, proto: Proto, now: u64, out: &mut BytesMut) {
        if self.order.is_empty() {
            return;
        }
        self.remote = 0;
        self.seq = None;
        let mut calls = Vec::new();
        let mut sent = 0;
        for (c, cmds) in self.per_core.iter_mut().enumerate() {
            if !cmds.is_empty() {
                sent += cmds.len() as u64;
                let cmds = std::mem::take(cmds);
                calls.push((c, core.exec_remote(c, proto, now, cmds, self.client)));
            }
        }
        CROSS_CORE.fetch_add(sent, Ordering::Relaxed);
        let (ids, futs): (Vec<usize>, Vec<_>) = calls.into_iter().unzip();
        let bodies = futures::future::join_all(futs).await;
        let mut replies: Vec<Option<(bytes::Bytes, Vec<u32>)>> =
            (0..self.per_core.len()).map(|_| None).collect();
        let mut moved: HashMap<(usize, u32), Cmd> = HashMap::new();
        for (c, b) in ids.into_iter().zip(bodies) {
            if let Body::Replies(bytes, ends, m) = b {
                replies[c] = Some((bytes, ends));
                moved.extend(m.into_iter().map(|(i, cmd)| ((c, i), cmd)));
            }
        }
        let mut fixed: HashMap<usize, bytes::Bytes> = HashMap::new();
        if !moved.is_empty() {
            crate::slotmove::REROUTED
                .fetch_add(moved.len() as u64, std::sync::atomic::Ordering::Relaxed);
            let mut redo = Vec::with_capacity(moved.len());
            for (oi, p) in self.order.iter().enumerate() {
                if let Piece::Remote(c, i) = p {
                    if let Some(cmd) = moved.remove(&(*c, *i as u32)) {
                        redo.push((oi, cmd));
                    }
                }
            }
            fixed = redispatch(core, proto, now, redo)
                .await
                .into_iter()
                .collect();
        }
        for (oi, p) in self.order.drain(..).enumerate() {
            match p {
                Piece::Local(s, e) => out.extend_from_slice(&self.scratch[s..e]),
                Piece::Remote(c, i) => match (&replies[c], fixed.get(&oi)) {
                    (_, Some(r)) => out.extend_from_slice(r),
                    (Some((bytes, ends)), None) if i < ends.len() => {
                        let s = if i == 0 { 0 } else { ends[i - 1] as usize };
                        out.extend_from_slice(&bytes[s..ends[i] as usize]);
                    }
                    _ => encode::error(out, "ERR internal error: a core did not answer"),
                },
            }
        }
        self.scratch.clear();
    }
}

/// The core owning every key of a single-core command now (None: its keys span cores now).
fn owner_of(core: &Core, cmd: &Cmd) -> Option<usize> {
    let spec = &command::COMMANDS[cmd.idx as usize];
    let mut owner = None;
    for p in spec.key_positions(&cmd.args) {
        let o = core.shared.owner(resp::slot(&cmd.args[p]));
        match owner {
            None => owner = Some(o),
            Some(x) if x != o => return None,
            _ => {}
        }
    }
    Some(owner.unwrap_or(core.id))
}

/// Run commands whose slot moved while they were on their way, at their slots' owners now, in
/// order per slot; returns each one's reply with its tag. Rounds repeat while slots keep moving.
pub async fn redispatch(
    core: &Rc<Core>,
    proto: Proto,
    now: u64,
    cmds: Vec<(usize, Cmd)>,
) -> Vec<(usize, bytes::Bytes)> {
    let mut todo = cmds;
    let mut done = Vec::with_capacity(todo.len());
    while !todo.is_empty() {
        // Route every command under one owner layout. A command whose keys now span cores runs
        // alone through `multi.rs`, after the ones before it and before the ones after it.
        let (groups, spanning, rest) = loop {
            let seq0 = core.shared.move_seq();
            let mut groups: Vec<Vec<(usize, Cmd)>> =
                (0..core.ncores()).map(|_| Vec::new()).collect();
            let mut spanning = None;
            let mut rest = Vec::new();
            for (tag, c) in todo.drain(..) {
                if spanning.is_some() || !rest.is_empty() {
                    rest.push((tag, c));
                    continue;
                }
                match owner_of(core, &c) {
                    Some(o) => groups[o].push((tag, c)),
                    None if groups.iter().all(|g| g.is_empty()) => spanning = Some((tag, c)),
                    None => rest.push((tag, c)),
                }
            }
            if seq0 % 2 == 0 && core.shared.move_seq() == seq0 {
                break (groups, spanning, rest);
            }
            todo = groups
                .into_iter()
                .flatten()
                .chain(spanning)
                .chain(rest)
                .collect();
            todo.sort_by_key(|(tag, _)| *tag);
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        };
        todo = rest;
        if let Some((tag, c)) = spanning {
            let mut b = BytesMut::new();
            let (db, idx) = (c.db as usize, c.idx as usize);
            multi::run(core, db, idx, c.args, proto, now, &mut b).await;
            done.push((tag, b.freeze()));
            continue;
        }
        let mut calls = Vec::new();
        let mut tags = Vec::new();
        let mut local = Vec::new();
        for (c, g) in groups.into_iter().enumerate() {
            if g.is_empty() {
                continue;
            }
            if c == core.id {
                local = g;
                continue;
            }
            let (t, cmds): (Vec<usize>, Vec<Cmd>) = g.into_iter().unzip();
            tags.push(t);
            calls.push(core.exec_remote(c, proto, now, cmds, 0));
        }
        let bodies = futures::future::join_all(calls).await;
        if !local.is_empty() {
            core.wait_unheld().await;
            let mut shard = core.shard.borrow_mut();
            for (tag, c) in local {
                let mut b = BytesMut::new();
                if shard.execute(&c, proto, now, &mut b) {
                    done.push((tag, b.freeze()));
                } else {
                    crate::slotmove::REROUTED.fetch_add(1, Ordering::Relaxed);
                    todo.push((tag, c));
                }
            }
        }
        for (t, b) in tags.into_iter().zip(bodies) {
            match b {
                Body::Replies(bytes, ends, m) => {
                    let mut s = 0;
                    for (tag, e) in t.iter().zip(ends) {
                        done.push((*tag, bytes.slice(s..e as usize)));
                        s = e as usize;
                    }
                    for (i, c) in m {
                        crate::slotmove::REROUTED.fetch_add(1, Ordering::Relaxed);
                        let tag = t[i as usize];
                        done.retain(|(d, _)| *d != tag);
                        todo.push((tag, c));
                    }
                }
                Body::Any(_) => {
                    for tag in t {
                        let mut e = BytesMut::new();
                        encode::error(&mut e, "ERR internal error: a core did not answer");
                        done.push((tag, e.freeze()));
                    }
                }
            }
        }
        todo.sort_by_key(|(tag, _)| *tag);
    }
    done
}

/// Serve one client until it quits, breaks the protocol, disconnects or moves to another core.
pub async fn serve(core: Rc<Core>, stream: Stream, info: Arc<ClientInfo>) -> Served {
    let authed = core.shared.config().requirepass.is_none();
    let sess = Session::new(info, authed);
    serve_session(core, stream, sess, BytesMut::with_capacity(16 * 1024)).await
}

/// The connection loop, from `sess` and the unparsed bytes `rbuf`.
async fn serve_session(
    core: Rc<Core>,
    mut stream: Stream,
    mut sess: Session,
    mut rbuf: BytesMut,
) -> Served {
    let cfg = core.shared.config();
    let mut parser = RequestParser::new(cfg.proto_max_bulk_len);
    parser.set_authenticated(sess.authed);
    let query_limit = cfg.client_query_buffer_limit;
    let mut chunk = vec![0u8; 16 * 1024];
    let mut batch: Vec<Args> = Vec::new();
    let mut out = BytesMut::with_capacity(16 * 1024);
    let mut plan = Plan::new(core.ncores());
    plan.client = sess.info.id;
    // Bytes that came with a moved connection are parsed before the socket is read.
    let mut carried = !rbuf.is_empty();
    let mut dead = false;
    loop {
        let read = match (sess.ps.mailbox().cloned(), sess.monitor.clone()) {
            (None, None) if carried => Some(Ok(0)),
            (None, None) => Some(stream.read(&mut chunk).await),
            // Subscribed: wait for the socket or a message, whichever comes first.
            (Some(mb), None) => {
                let r = stream.read(&mut chunk);
                let m = mb.ready();
                futures::pin_mut!(r, m);
                match futures::future::select(r, m).await {
                    futures::future::Either::Left((res, _)) => Some(res),
                    futures::future::Either::Right(_) => None,
                }
            }
            // Monitoring (and maybe subscribed): the socket, the feed or a message.
            (mb, Some(feed)) if !carried => {
                let r = stream.read(&mut chunk);
                let m = async {
                    match &mb {
                        Some(mb) => mb.ready().await,
                        None => std::future::pending().await,
                    }
                };
                let f = feed.ready();
                futures::pin_mut!(r, m, f);
                match futures::future::select(r, futures::future::select(m, f)).await {
                    futures::future::Either::Left((res, _)) => Some(res),
                    futures::future::Either::Right(_) => None,
                }
            }
            (_, Some(_)) => Some(Ok(0)),
        };
        let n = match read {
            Some(Ok(0)) if carried => {
                carried = false;
                0
            }
            Some(Ok(0) | Err(_)) => break,
            Some(Ok(n)) => n,
            None => {
                if let Some(feed) = sess.monitor.clone() {
                    feed.drain(&mut out);
                    if feed.closed() {
                        break;
                    }
                }
                let mb = sess.ps.mailbox().cloned();
                if let Some(mb) = &mb {
                    mb.drain(sess.proto, &mut out);
                    if mb.closed() {
                        break;
                    }
                }
                if !out.is_empty() && !write_out(&mut stream, &out, mb.as_ref()).await {
                    break;
                }
                out.clear();
                continue;
            }
        };
        rbuf.extend_from_slice(&chunk[..n]);
        if rbuf.len() > query_limit {
            tracing::warn!(
                client = sess.info.id,
                "Closing client that reached max query buffer length"
            );
            break;
        }
        let mut proto_err = None;
        loop {
            match parser.parse(&mut rbuf) {
                Ok(Some(args)) => batch.push(args),
                Ok(None) => break,
                Err(e) => {
                    proto_err = Some(e);
                    break;
                }
            }
        }
        if !batch.is_empty() {
            // A paused command stops the batch: the replies before it go out, then it waits.
            while run_batch(&core, &mut sess, &mut batch, &mut plan, &mut out).await {
                if !out.is_empty() {
                    if !write_out(&mut stream, &out, sess.ps.mailbox()).await {
                        dead = true;
                        break;
                    }
                    out.clear();
                }
                wait_paused(&sess, &batch).await;
            }
            if dead {
                break;
            }
            parser.set_authenticated(sess.authed);
            if let Some(to) = plan.affinity() {
                if !sess.pinned
                    && !sess.from_master
                    && sess.move_to.is_none()
                    && CORE_AFFINITY.load(Ordering::Relaxed)
                    && !sess.tx.in_multi()
                    && !sess.tx.watching()
                    && !sess.ps.subscribed()
                    && sess.monitor.is_none()
                {
                    AFFINITY_MOVES.fetch_add(1, Ordering::Relaxed);
                    sess.move_to = Some(to);
                }
            }
        }
        if let Some(e) = &proto_err {
            tracing::debug!(client = sess.info.id, "protocol error: {e}");
            encode::error(&mut out, &e.to_string());
        }
        if !out.is_empty() {
            if !write_out(&mut stream, &out, sess.ps.mailbox()).await {
                break;
            }
            out.clear();
            if out.capacity() > 1 << 20 {
                out = BytesMut::with_capacity(16 * 1024);
            }
        }
        if proto_err.is_some() || sess.quit || sess.info.killed.load(Ordering::Relaxed) {
            break;
        }
        if let Some(req) = sess.psync.take() {
            tx::reset(&core, &mut sess).await;
            sess.ps.clear();
            sess.info.set_subs((0, 0, 0));
            sess.stop_monitor();
            let info = sess.info.clone();
            crate::repl::master::serve_replica(core, stream, info, req, sess.repl_port).await;
            return Served::Closed;
        }
        if let Some(to) = sess.move_to.take() {
            match move_to(&core, stream, &sess, rbuf, to).await {
                Ok(()) => return Served::Moved,
                Err((s, r)) => {
                    stream = s;
                    rbuf = r;
                }
            }
        }
        if rbuf.capacity() > 1 << 20 && rbuf.len() < 16 * 1024 {
            rbuf = BytesMut::from(&rbuf[..]);
        }
    }
    tx::reset(&core, &mut sess).await;
    sess.ps.clear();
    sess.info.set_subs((0, 0, 0));
    sess.stop_monitor();
    Served::Closed
}

/// Hands the connection to core `to`: the socket is duplicated for it, then this core's handle
/// (and its poll) is dropped. On failure the connection stays here.
async fn move_to(
    core: &Rc<Core>,
    stream: Stream,
    sess: &Session,
    rbuf: BytesMut,
    to: usize,
) -> Result<(), (Stream, BytesMut)> {
    use std::os::fd::AsRawFd;
    if to == core.id {
        return Err((stream, rbuf));
    }
    let owned = match dup_fd(stream.as_raw_fd()) {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(
                client = sess.info.id,
                "CLIENT CORE: cannot duplicate the socket: {e}"
            );
            return Err((stream, rbuf));
        }
    };
    sess.info.fd.store(owned.as_raw_fd(), Ordering::Relaxed);
    sess.info.core.store(to, Ordering::Relaxed);
    drop(stream);
    let a = Adopted {
        fd: owned,
        info: sess.info.clone(),
        db: sess.db,
        proto: sess.proto,
        authed: sess.authed,
        rbuf,
        pinned: sess.pinned,
        monitor: sess.monitor.clone(),
    };
    if !core.send_adopt(to, a).await {
        // The server is stopping; the copy was closed with the undelivered message.
        tracing::debug!(client = sess.info.id, "CLIENT CORE: core {to} is gone");
    }
    Ok(())
}

/// Write `out`; while subscribed, give up (false) when the mailbox overflows meanwhile.
async fn write_out(stream: &mut Stream, out: &[u8], mb: Option<&Rc<pubsub::Mailbox>>) -> bool {
    crate::aof::before_reply().await;
    match mb {
        None => stream.write_all(out).await.is_ok(),
        Some(mb) => {
            let w = stream.write_all(out);
            let c = mb.wait_closed();
            futures::pin_mut!(w, c);
            match futures::future::select(w, c).await {
                futures::future::Either::Left((r, _)) => r.is_ok(),
                futures::future::Either::Right(_) => false,
            }
        }
    }
}

/// Run a batch of requests in order, replies appended to `out` (also the replica's apply path).
/// True when CLIENT PAUSE holds the next command: it and those after it stay in `batch`.
pub async fn run_batch(
    core: &Rc<Core>,
    sess: &mut Session,
    batch: &mut Vec<Args>,
    plan: &mut Plan,
    out: &mut BytesMut,
) -> bool {
    let now = now_ms();
    sess.info.last_ms.store(now, Ordering::Relaxed);
    // Each command's table row, looked up once for the prefetch and the dispatch.
    let mut specs = std::mem::take(&mut plan.specs);
    specs.clear();
    // Pipelines mostly repeat one command: look a name up once per run of it.
    let mut last: Option<(&[u8], Option<&'static CommandSpec>)> = None;
    for a in batch.iter() {
        let spec = match (a.first(), last) {
            (None, _) => None,
            (Some(name), Some((prev, spec))) if prev == &name[..] => spec,
            (Some(name), _) => {
                let spec = command::lookup(name);
                last = Some((name, spec));
                spec
            }
        };
        let slot = spec.map_or(crate::shard::NO_SLOT, |s| crate::shard::command_slot(s, a));
        specs.push((spec, slot));
    }
    if batch.len() > 1 {
        prefetch(core, sess.db, batch, &specs);
    }
    let mut done = 0;
    let mut paused = false;
    for (i, &(spec, slot)) in specs.iter().enumerate() {
        if sess.quit {
            done = batch.len();
            break;
        }
        if !sess.from_master && is_paused(sess, spec, &batch[i]) {
            paused = true;
            break;
        }
        let args = std::mem::take(&mut batch[i]);
        done = i + 1;
        dispatch(core, sess, spec, slot, args, now, plan, out).await;
        // A migration's restores arrive as pipelined `SLOTSRESTORE`s of a slice of keys each:
        // let this core's other clients in between them, not after the whole batch.
        if spec.is_some_and(|s| s.name == "slotsrestore") && done < batch.len() {
            plan.flush(core, sess.proto, now, out).await;
            glommio::yield_to_io().await;
        }
    }
    batch.drain(..done);
    plan.specs = specs;
    plan.flush(core, sess.proto, now, out).await;
    paused
}

/// Whether CLIENT PAUSE holds this request now. Requests refused before they would run (unknown,
/// wrong arity, not authenticated) are answered at once, as Redis checks the pause last.
fn is_paused(sess: &Session, spec: Option<&'static CommandSpec>, args: &Args) -> bool {
    let Some(spec) = spec else { return false };
    crate::pause::holds(spec, || sess.tx.may_replicate(spec))
        && spec.arity_ok(args.len())
        && (sess.authed || spec.has(NOAUTH))
        && admin::subcommand_error(spec.name, args).is_none()
}

/// Wait until CLIENT PAUSE no longer holds the first request of `batch`.
async fn wait_paused(sess: &Session, batch: &[Args]) {
    let Some(spec) = batch.first().and_then(|a| command::lookup(a.first()?)) else {
        return;
    };
    crate::pause::wait(spec, || sess.tx.may_replicate(spec)).await;
}

/// Warm the caches for this core's keys of a pipelined batch (see [`Shard::prefetch`]).
fn prefetch(core: &Core, db: usize, batch: &[Args], specs: &[(Option<&'static CommandSpec>, u16)]) {
    if let Ok(shard) = core.shard.try_borrow() {
        shard.prefetch(batch.iter().zip(specs).filter_map(|(a, &(s, slot))| {
            let (key, member) = crate::shard::Shard::prefetch_args(s?, a)?;
            Some((db, key, slot, member))
        }));
    }
}

/// Redis's unknown-command error: name and the first arguments quoted, 128 characters at most.
pub fn unknown_command(args: &Args) -> String {
    let name = String::from_utf8_lossy(&args[0]).replace(['\r', '\n'], " ");
    let name: String = name.chars().take(128).collect();
    let mut rest = String::new();
    for a in &args[1..] {
        if rest.len() >= 128 {
            break;
        }
        let a = String::from_utf8_lossy(a).replace(['\r', '\n'], " ");
        let room = 128 - rest.len();
        let a: String = a.chars().take(room).collect();
        rest.push_str(&format!("'{a}' "));
    }
    format!("ERR unknown command '{name}', with args beginning with: {rest}")
}

#[allow(clippy::too_many_arguments)]
async fn dispatch(
    core: &Rc<Core>,
    sess: &mut Session,
    spec: Option<&'static CommandSpec>,
    slot: u16,
    args: Args,
    now: u64,
    plan: &mut Plan,
    out: &mut BytesMut,
) {
    let spec: &'static CommandSpec = match spec {
        Some(s) => s,
        None => {
            sess.tx.flag();
            return reply_err(plan, out, &unknown_command(&args));
        }
    };
    let idx = cmd::index_of(spec);
    if !std::ptr::eq(sess.last_cmd, spec.name) {
        sess.last_cmd = spec.name;
        if let Ok(mut last) = sess.info.last_cmd.lock() {
            *last = spec.name;
        }
    }
    if !spec.arity_ok(args.len()) {
        sess.tx.flag();
        return reply_err(
            plan,
            out,
            &format!("ERR wrong number of arguments for '{}' command", spec.name),
        );
    }
    if let Some(e) = admin::subcommand_error(spec.name, &args) {
        sess.tx.flag();
        return reply_err(plan, out, &e);
    }
    if !sess.authed && !spec.has(NOAUTH) {
        sess.tx.flag();
        return reply_err(plan, out, "NOAUTH Authentication required.");
    }
    if sess.proto == Proto::Resp2
        && sess.ps.subscribed()
        && !pubsub::allowed_when_subscribed(spec.name)
    {
        sess.tx.flag();
        return reply_err(plan, out, &pubsub::not_allowed(spec.name));
    }
    if spec.has(command::WRITE) && !sess.from_master && crate::repl::readonly() {
        sess.tx.flag();
        return reply_err(plan, out, crate::repl::READONLY_ERR);
    }
    if sess.tx.in_multi() && tx::queues(spec) {
        return tx::queue(core, sess, spec, idx, args, plan, out);
    }
    if spec.has(TX) {
        plan.flush(core, sess.proto, now, out).await;
        let logged = crate::monitor::active().then(|| args.clone());
        tx::run(core, sess, spec, args, now, out).await;
        // EXEC's line follows the lines of the commands it ran (Redis feeds after `call`).
        if let Some(a) = logged {
            feed_monitors(sess, spec, &a);
        }
        return;
    }
    if crate::monitor::active() && spec.name != "select" {
        feed_monitors(sess, spec, &args);
    }
    if spec.has(command::SLOTS) && crate::migrate::handles(spec.name) {
        plan.flush(core, sess.proto, now, out).await;
        return crate::migrate::run(core, sess, spec, idx, args, out).await;
    }
    if spec.has(CONN) && !spec.has(command::ADMIN) {
        // SELECT's line shows the database it selected (Redis feeds after the command ran).
        let logged = (spec.name == "select" && crate::monitor::active()).then(|| args.clone());
        run_conn(core, sess, spec, idx, args, now, plan, out).await;
        if let Some(a) = logged {
            feed_monitors(sess, spec, &a);
        }
        return;
    }
    if spec.has(CONN) || spec.has(ALLKEYS) {
        // Administrative and whole-keyspace commands (CONFIG, DEBUG, KEYS, FLUSHALL…) are timed
        // here for SLOWLOG, from start to reply (they may gather from every core).
        let start = crate::ticks::now();
        let logged = args.clone();
        if spec.has(CONN) {
            run_conn(core, sess, spec, idx, args, now, plan, out).await;
        } else {
            plan.flush(core, sess.proto, now, out).await;
            global::run(core, sess, spec, idx, args, now, out).await;
        }
        let took = crate::ticks::now().wrapping_sub(start);
        crate::slowlog::set_client(sess.info.id);
        crate::slowlog::check(took, &logged);
        crate::latency::check_command(took, spec.has(command::FAST));
        return;
    }
    if cmd::handler(idx).is_none() {
        return reply_err(plan, out, &unknown_command(&args));
    }
    if spec.has(BLOCKING) {
        plan.flush(core, sess.proto, now, out).await;
        return crate::blocking::run(core, sess, idx, args, out).await;
    }
    // The common case, one key at a fixed position, needs no key list.
    let seq0 = core.shared.move_seq();
    let mut slot = slot;
    let (owner, single) = if crate::shard::one_fixed_key(spec) {
        if slot == crate::shard::NO_SLOT {
            slot = resp::slot(&args[spec.first as usize]);
        }
        (core.shared.owner(slot), true)
    } else {
        let positions = spec.key_positions(&args);
        let owner = match positions.first() {
            Some(&p) => core.shared.owner(resp::slot(&args[p])),
            None => core.id,
        };
        (
            owner,
            positions
                .iter()
                .all(|&p| core.shared.owner(resp::slot(&args[p])) == owner),
        )
    };
    if !single {
        plan.flush(core, sess.proto, now, out).await;
        return multi::run(core, sess.db, idx, args, sess.proto, now, out).await;
    }
    let cmd = Cmd {
        db: sess.db as u8,
        idx: idx as u16,
        args,
        slot: if single { slot } else { crate::shard::NO_SLOT },
    };
    route(core, sess.proto, now, plan, out, owner, seq0, cmd).await;
}

/// Show a command to the clients in MONITOR (unless it is one MONITOR leaves out).
pub fn feed_monitors(sess: &Session, spec: &CommandSpec, args: &Args) {
    if !crate::monitor::hidden(spec.name, spec.has(command::ADMIN), args) {
        crate::monitor::feed(sess.db, &sess.info.addr, args);
    }
}

/// Run a single-core command inline or queue it for its core, keeping the plan's routing
/// consistent (flush first if a slot changed owner since the queued commands were routed).
#[allow(clippy::too_many_arguments)]
async fn route(
    core: &Rc<Core>,
    proto: Proto,
    now: u64,
    plan: &mut Plan,
    out: &mut BytesMut,
    owner: usize,
    seq0: u64,
    cmd: Cmd,
) {
    let (mut owner, mut seq0) = (owner, seq0);
    loop {
        if !plan.routable(core.shared.move_seq()) {
            plan.flush(core, proto, now, out).await;
        } else if owner == core.id {
            plan.keyed += 1;
            core.wait_unheld().await;
            crate::slowlog::set_client(plan.client);
            let target = plan.target(out);
            let start = target.len();
            if core.shard.borrow_mut().execute(&cmd, proto, now, target) {
                return plan.written(start);
            }
            crate::slotmove::REROUTED.fetch_add(1, Ordering::Relaxed);
        } else {
            return plan.push_remote(owner, cmd, seq0);
        }
        // The slot moved, or the plan had to be flushed: route again.
        seq0 = core.shared.move_seq();
        match owner_of(core, &cmd) {
            Some(o) => owner = o,
            None => {
                // Its keys span cores now (one of their slots moved): the multi-core path.
                plan.flush(core, proto, now, out).await;
                let (db, idx) = (cmd.db as usize, cmd.idx as usize);
                return multi::run(core, db, idx, cmd.args, proto, now, out).await;
            }
        }
    }
}

/// Run a command the connection answers itself (also from EXEC), in order through `plan`.
#[allow(clippy::too_many_arguments)]
pub async fn run_conn(
    core: &Rc<Core>,
    sess: &mut Session,
    spec: &'static CommandSpec,
    idx: usize,
    args: Args,
    now: u64,
    plan: &mut Plan,
    out: &mut BytesMut,
) {
    if spec.name == "reset" {
        plan.flush(core, sess.proto, now, out).await;
        tx::reset(core, sess).await;
        sess.ps.clear();
        sess.info.set_subs((0, 0, 0));
        sess.stop_monitor();
    }
    if spec.name == "monitor" {
        // Redis ignores MONITOR from a client that already monitors.
        if sess.monitor.is_none() {
            sess.monitor = Some(crate::monitor::attach(sess.info.id));
            let t = plan.target(out);
            let start = t.len();
            encode::ok(t);
            plan.written(start);
        }
        return;
    }
    if spec.name == "script" {
        let t = plan.target(out);
        let start = t.len();
        crate::script::script_cmd(&args, t);
        return plan.written(start);
    }
    if spec.name == "function" {
        if crate::function::writes(&args[1]) && !sess.from_master && crate::repl::readonly() {
            return reply_err(plan, out, crate::repl::READONLY_ERR);
        }
        let t = plan.target(out);
        let start = t.len();
        if crate::script::function_cmd(&args, sess.proto, t) {
            // The libraries changed: the AOF and the replicas replay the command.
            crate::repl::prop::log().append(&[(sess.db, args.to_vec())], false);
        }
        return plan.written(start);
    }
    if spec.has(PUBSUB)
        || (spec.name == "ping" && sess.ps.subscribed() && sess.proto == Proto::Resp2)
    {
        plan.flush(core, sess.proto, now, out).await;
        if spec.name == "ping" {
            // Subscribed RESP2 clients get PING's reply as a message-like array.
            encode::array(out, 2);
            encode::bulk(out, b"pong");
            encode::bulk(out, args.get(1).map_or(&b""[..], |a| &a[..]));
            return;
        }
        let id = sess.info.id;
        pubsub::run(core, &mut sess.ps, id, sess.proto, spec.name, &args, out).await;
        sess.info.set_subs(sess.ps.counts());
        return;
    }
    admin::run(core, sess, spec, idx, args, now, plan, out).await
}

/// Write an error reply in order.
pub fn reply_err(plan: &mut Plan, out: &mut BytesMut, e: &str) {
    let t = plan.target(out);
    let start = t.len();
    encode::error(t, e);
    plan.written(start);
}
