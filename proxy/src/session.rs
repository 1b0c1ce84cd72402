//! A client session: read, parse up to `session_max_pipeline` requests, dispatch each one (to a
//! backend, split across backends, or answered here), wait for the batch, then write every reply
//! in request order with one write.
//!
//! Errors never close the connection except protocol errors (Redis's exact text, then close),
//! `QUIT`, and — with `session_break_on_failure` — a refused or failed request.

use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use resp::encode::{self, Proto};
use resp::{Args, RequestParser};

use crate::clients::{self, ClientEntry};
use crate::commands::{self, Cmd, FunctionRoute, Kind, SplitKind};
use crate::core::{Channel, Core, CoreTable};
use crate::local;
use crate::multikey::{self, Merge, SplitBufs};
use crate::pubsub;
use crate::router::{self, Target};
use crate::scan;
use crate::sync::Batch;

/// How [`Session::forward_as`] sends a request.
#[derive(Clone, Copy)]
enum Route {
    Plain,
    /// EVAL or EVALSHA: maybe rewritten for its server (`scripts`).
    Script(crate::scripts::Call),
}

/// Where the reply of one request comes from.
enum Item {
    /// Bytes `start..end` of the session's local reply buffer.
    Local(usize, usize),
    /// Position in the batch.
    Remote(usize),
    /// Sub-requests to merge.
    Merge(Merge),
    /// A `SLOTSSCAN` page whose cursor becomes the cluster-wide `SCAN` cursor.
    Scan(usize, scan::Step),
}

struct Session {
    core: Rc<Core>,
    /// This client in the proxy's registry (`CLIENT LIST`).
    me: Arc<ClientEntry>,
    /// The database and protocol: which backend connections carry the requests.
    ch: Channel,
    authed: bool,
    quit: bool,
    /// A refused or failed request asks to close (`session_break_on_failure`).
    broken: bool,
    peer: String,
    batch: Rc<Batch>,
    items: Vec<(Item, usize)>,
    local: BytesMut,
    split: SplitBufs,
    reqs: Vec<Args>,
    /// Between MULTI and EXEC/DISCARD.
    multi: Option<Multi>,
    /// A `SUBSCRIBE` / `PSUBSCRIBE` that ends the batch: the session enters subscribed mode
    /// once the replies before it are written (`pubsub`).
    subscribe: Option<Args>,
    /// After `WATCH`, until EXEC, DISCARD or UNWATCH.
    watched: Option<Watched>,
    /// The connection the last blocking command ran on, kept for the next (`blocking`).
    blocker: Option<Blocker>,
    /// A blocking command ran in this batch: the idle watchdog starts over after it (Redis
    /// never times out a blocked client).
    blocked: bool,
}

/// A session's own connection for blocking commands, and its `CLIENT ID` on the server (what
/// `CLIENT UNBLOCK` names).
struct Blocker {
    addr: String,
    ch: Channel,
    conn: crate::dial::Conn,
    id: i64,
}

/// How a blocking command's wait on a server ended.
enum Waited {
    /// The server's reply; `unblocked`: after the proxy's `CLIENT UNBLOCK`.
    Reply {
        reply: Bytes,
        unblocked: bool,
    },
    Failed(String),
    /// The client went away.
    Gone,
}

/// `WATCH` through the proxy: the keys' slot, and the session's own connection to that slot's
/// master, where WATCH ran and the transaction will run (WATCH is a connection's state, which
/// the shared pipelines cannot hold for one client).
struct Watched {
    slot: u16,
    addr: String,
    /// The database the connection has selected.
    db: u32,
    conn: crate::dial::Conn,
    /// A later WATCH found the slot on another server: the watched keys moved, so EXEC
    /// fails as if one had changed.
    moved: bool,
}

/// A transaction being queued: its commands, the one slot their keys hash to (None: no key
/// yet), and whether a queued command was refused (EXEC then aborts, as in Redis).
#[derive(Default)]
struct Multi {
    cmds: Vec<Args>,
    slot: Option<u16>,
    dirty: bool,
}

const NOT_ONLINE: &str = "ERR router is not online";

/// Serves one client until it quits, breaks the protocol or disconnects.
/// `id` is the client's `CLIENT ID`.
pub async fn serve(core: Rc<Core>, mut stream: TcpStream, id: u64) {
    let cfg = core.cfg.clone();
    let _ = stream.set_nodelay(true);
    if !cfg.session_send_timeout.is_zero() {
        let _ = stream.set_write_timeout(Some(cfg.session_send_timeout));
    }
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let laddr = stream
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    // Declared after `stream` (a parameter), so dropped before the socket closes.
    let shared = core.shared.clone();
    let registered = shared
        .clients
        .register(id, peer.clone(), laddr, stream.as_raw_fd());
    let mut s = Session {
        me: registered.entry.clone(),
        peer,
        core,
        ch: Channel::default(),
        authed: cfg.session_auth.is_empty(),
        quit: false,
        broken: false,
        batch: Rc::new(Batch::default()),
        items: Vec::new(),
        local: BytesMut::with_capacity(4096),
        split: SplitBufs::default(),
        reqs: Vec::new(),
        multi: None,
        subscribe: None,
        watched: None,
        blocker: None,
        blocked: false,
    };
    let mut parser = RequestParser::new(cfg.session_max_bulk);
    parser.set_authenticated(s.authed);
    let mut rbuf = BytesMut::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut out = BytesMut::with_capacity(16 * 1024);
    // session_recv_timeout: a watchdog instead of a timer around each read.
    let watchdog =
        || crate::sync::Watchdog::new(Some(cfg.session_recv_timeout).filter(|t| !t.is_zero()));
    let mut idle = watchdog();
    // When the last read returned: the start of the batch it completes (one clock read per
    // read, none per loop turn).
    let mut received: Option<Instant> = None;
    loop {
        let mut proto_err = None;
        s.fresh_batch();
        while s.items.len() < cfg.session_max_pipeline && !s.quit && s.subscribe.is_none() {
            match parser.parse(&mut rbuf) {
                Ok(Some(args)) => {
                    s.handle(&args).await;
                    s.reqs.push(args);
                    parser.set_authenticated(s.authed);
                }
                Ok(None) => break,
                Err(e) => {
                    proto_err = Some(e);
                    break;
                }
            }
        }
        if s.items.is_empty() && proto_err.is_none() && !s.quit && s.subscribe.is_none() {
            if rbuf.len() > cfg.session_max_bufsize {
                tracing::warn!(client = %s.peer, "closing client that reached the max query buffer length");
                break;
            }
            match idle.or_idle(stream.read(&mut chunk)).await {
                None => {
                    tracing::debug!(client = %s.peer, "closing a client idle for session_recv_timeout");
                    break;
                }
                Some(Ok(0) | Err(_)) => break,
                Some(Ok(n)) => {
                    rbuf.extend_from_slice(&chunk[..n]);
                    let now = Instant::now();
                    s.me.active(now);
                    received = Some(now);
                }
            }
            continue;
        }
        let t0 = received.take().unwrap_or_else(Instant::now);
        idle.touch(t0);
        s.batch.done().await;
        let usecs = t0.elapsed().as_micros() as u64;
        s.write_replies(&mut out, usecs);
        if let Some(e) = &proto_err {
            tracing::debug!(client = %s.peer, "protocol error: {e}");
            encode::error(&mut out, &e.to_string());
        }
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            break;
        }
        out.clear();
        if out.capacity() > 4 << 20 {
            out = BytesMut::with_capacity(16 * 1024);
        }
        if proto_err.is_some() || s.quit || s.broken {
            break;
        }
        if std::mem::take(&mut s.blocked) {
            // Blocked for however long: idle only from now on.
            idle = watchdog();
            received = None;
        }
        if let Some(first) = s.subscribe.take() {
            if !s
                .subscribed(&mut stream, &mut rbuf, &mut parser, first)
                .await
            {
                break;
            }
            // Subscribed for however long (Redis never times out subscribers): idle only from
            // now on, with a fresh watchdog (the old one may have fired meanwhile).
            idle = watchdog();
            received = None;
        }
        if rbuf.capacity() > 4 << 20 && rbuf.len() < 16 * 1024 {
            let rest = rbuf.split();
            rbuf = BytesMut::with_capacity(16 * 1024);
            rbuf.extend_from_slice(&rest);
        }
    }
}

impl Session {
    /// An empty batch for the next requests (a new one if a task still holds the last).
    fn fresh_batch(&mut self) {
        if Rc::get_mut(&mut self.batch).is_none() {
            self.batch = Rc::new(Batch::default());
        }
        self.batch.reset(0);
    }

    fn reply_local(&mut self, cmd: usize, f: impl FnOnce(&mut BytesMut)) {
        let start = self.local.len();
        f(&mut self.local);
        self.items.push((Item::Local(start, self.local.len()), cmd));
    }

    fn error(&mut self, cmd: usize, text: &str) {
        self.reply_local(cmd, |b| encode::error(b, text));
    }

    fn remote(&mut self, cmd: usize) -> usize {
        let idx = self.batch.push_slot();
        self.items.push((Item::Remote(idx), cmd));
        idx
    }

    /// The table once none of `slots` is locked (`prepared` slots hold requests).
    async fn unlocked_table(&self, slots: impl Fn(&CoreTable) -> bool) -> Option<Rc<CoreTable>> {
        let mut held: Option<std::time::Instant> = None;
        loop {
            let wait = self.core.table_changed.wait();
            let t = self.core.table()?;
            if !slots(&t) {
                if let Some(since) = held {
                    let us = since.elapsed().as_micros() as u64;
                    self.core.stats.record_hold(us);
                    tracing::trace!(micros = us, "request held by a locked slot");
                }
                return Some(t);
            }
            held.get_or_insert_with(std::time::Instant::now);
            wait.await;
        }
    }

    /// The transaction being queued, if any, which ends here (EXEC, DISCARD).
    fn take_multi(&mut self) -> Option<Multi> {
        self.me.set_multi(false);
        self.multi.take()
    }

    /// `RESET`, as Redis: no transaction or watched keys, database 0, RESP2, no name, and
    /// not authenticated if the proxy asks for a password. (Subscriptions end too: see
    /// `while_subscribed`.)
    fn reset(&mut self) {
        self.multi = None;
        self.me.set_multi(false);
        self.watched = None;
        self.ch = Channel::default();
        self.me.db.store(0, Relaxed);
        self.me.set_proto(Proto::Resp2);
        self.me.set_name(b"");
        self.authed = self.core.cfg.session_auth.is_empty();
    }

    /// The table once `slot` is neither locked nor migrating: a transaction then runs whole on
    /// one server.
    async fn settled_table(&self, slot: usize) -> Option<Rc<CoreTable>> {
        self.unlocked_table(|t| {
            let r = &t.table.slots[slot];
            r.locked || r.migrate_from.is_some()
        })
        .await
    }

    /// The table once `slot` is settled (see [`Session::settled_table`]) and the slot's master
    /// there; `None` after replying request `ci`'s error (not online, or the slot offline).
    async fn settled_master(&mut self, ci: usize, slot: usize) -> Option<(Rc<CoreTable>, u32)> {
        let Some(t) = self.settled_table(slot).await else {
            self.error(ci, NOT_ONLINE);
            return None;
        };
        let Some(owner) = t.table.slots[slot].backend else {
            self.reply_local(ci, |b| b.extend_from_slice(router::SLOT_OFFLINE.as_bytes()));
            return None;
        };
        Some((t, owner))
    }

    async fn handle(&mut self, args: &Args) {
        let cmd = commands::lookup(&args[0]);
        let ci = cmd.index;
        self.me.command(ci);
        if !self.authed
            && !matches!(
                cmd.kind,
                Kind::Auth | Kind::Quit | Kind::Hello | Kind::Reset
            )
        {
            self.error(ci, "NOAUTH Authentication required.");
            return;
        }
        if let Some(spec) = cmd.spec {
            let odd_mset = cmd.kind == Kind::Split(SplitKind::Mset) && args.len() & 1 == 0;
            if !spec.arity_ok(args.len()) || odd_mset {
                let text = format!("ERR wrong number of arguments for '{}' command", spec.name);
                self.error(ci, &text);
                if let Some(m) = &mut self.multi {
                    m.dirty = true;
                }
                return;
            }
        }
        if self.multi.is_some() && cmd.kind == Kind::Watch {
            // As Redis: refused, and the transaction goes on.
            self.error(ci, "ERR WATCH inside MULTI is not allowed");
            return;
        }
        if self.multi.is_some()
            && !matches!(
                cmd.kind,
                Kind::Multi | Kind::Exec | Kind::Discard | Kind::Quit | Kind::Unwatch | Kind::Reset
            )
        {
            self.queue(&cmd, args);
            return;
        }
        match cmd.kind {
            Kind::Multi => match self.multi {
                Some(_) => self.error(ci, "ERR MULTI calls can not be nested"),
                None => {
                    // After WATCH, the transaction must stay on the watched slot.
                    self.multi = Some(Multi {
                        slot: self.watched.as_ref().map(|w| w.slot),
                        ..Multi::default()
                    });
                    self.me.set_multi(true);
                    self.reply_local(ci, encode::ok);
                }
            },
            Kind::Exec => match (self.take_multi(), self.watched.take()) {
                (None, w) => {
                    self.watched = w;
                    self.error(ci, "ERR EXEC without MULTI")
                }
                (Some(m), None) => self.exec(ci, m).await,
                (Some(m), Some(w)) => self.exec_watched(ci, m, w).await,
            },
            Kind::Discard => match self.take_multi() {
                None => self.error(ci, "ERR DISCARD without MULTI"),
                Some(_) => {
                    // DISCARD forgets the watched keys too: closing the connection does.
                    self.watched = None;
                    self.reply_local(ci, encode::ok)
                }
            },
            // Closing the session's own connection forgets what it watched; WATCH never
            // reaches a shared connection.
            Kind::Unwatch => {
                self.watched = None;
                self.reply_local(ci, encode::ok)
            }
            Kind::Watch => self.watch(ci, args).await,
            Kind::Reset => {
                self.reset();
                self.reply_local(ci, |b| b.extend_from_slice(b"+RESET\r\n"));
            }
            Kind::Quit => {
                self.quit = true;
                self.reply_local(ci, encode::ok);
            }
            Kind::Auth => self.auth(ci, args),
            Kind::Select => {
                let n = self.core.cfg.backend_number_databases;
                match resp::parse_i64(&args[1]) {
                    Some(db) if (0..n as i64).contains(&db) => {
                        self.ch.db = db as u32;
                        self.me.db.store(self.ch.db, Relaxed);
                        self.reply_local(ci, encode::ok);
                    }
                    _ => self.error(ci, &format!("ERR invalid DB index, only accept DB [0,{n})")),
                }
            }
            Kind::Ping => match args.len() {
                1 => self.reply_local(ci, |b| b.extend_from_slice(b"+PONG\r\n")),
                2 => self.reply_local(ci, |b| encode::bulk(b, &args[1])),
                _ => self.error(ci, "ERR wrong number of arguments for 'ping' command"),
            },
            Kind::Echo => self.reply_local(ci, |b| encode::bulk(b, &args[1])),
            Kind::Info => {
                let core = self.core.clone();
                let ks = if local::wants_keyspace(args) {
                    Some(local::keyspace(&core).await)
                } else {
                    None
                };
                let proto = self.me.proto();
                self.reply_local(ci, |b| local::info(&core, args, ks.as_deref(), proto, b));
            }
            Kind::Hello => {
                let want = self.core.cfg.session_auth.clone();
                let ok = |user: &[u8], pass: &[u8]| {
                    user == b"default" && (want.is_empty() || pass == want.as_bytes())
                };
                match clients::parse_hello(args, self.authed, ok) {
                    Ok(h) => {
                        self.authed |= h.auth;
                        if let Some(n) = h.name {
                            self.me.set_name(n);
                        }
                        if let Some(p) = h.proto {
                            self.me.set_proto(p);
                            self.ch.resp3 = p == Proto::Resp3;
                        }
                        let (id, proto) = (self.me.id, self.me.proto());
                        self.reply_local(ci, |b| local::hello(id, proto, b));
                    }
                    Err(e) => self.error(ci, &e),
                }
            }
            Kind::Client => {
                let start = self.local.len();
                let reg = &self.core.shared.clients;
                match clients::client(reg, &self.me, args, &mut self.local) {
                    clients::Outcome::Done => {
                        self.items.push((Item::Local(start, self.local.len()), ci))
                    }
                    clients::Outcome::Refused(name) => self.refuse(ci, &name),
                }
                // CLIENT KILL … SKIPME no may name this very client: reply, then close.
                self.quit |= self.me.killed();
            }
            Kind::Config => {
                if args[1].eq_ignore_ascii_case(b"get") {
                    self.config_get(ci, args);
                } else {
                    let sub = String::from_utf8_lossy(&args[1]).to_ascii_uppercase();
                    self.refuse(ci, &format!("CONFIG {sub}"));
                }
            }
            Kind::SlotsMapping => {
                let core = self.core.clone();
                self.reply_local(ci, |b| local::slots_mapping(&core, args, b));
            }
            Kind::SlotsInfo => self.slots_info(ci, args).await,
            Kind::SlotsScan => match resp::parse_i64(&args[1]) {
                Some(slot) if (0..resp::MAX_SLOTS as i64).contains(&slot) => {
                    self.forward(&cmd, args, slot as u16, &[], false).await
                }
                _ => self.error(ci, "ERR invalid slot number"),
            },
            Kind::Scan => self.scan(ci, args).await,
            Kind::DbSize | Kind::Script => {
                let kind = if cmd.kind == Kind::DbSize {
                    SplitKind::Sum
                } else if args[1].eq_ignore_ascii_case(b"exists") {
                    SplitKind::All
                } else if args[1].eq_ignore_ascii_case(b"kill") {
                    SplitKind::Any
                } else if args[1].eq_ignore_ascii_case(b"debug") {
                    // A debugging session would take over a backend connection all sessions share.
                    return self.refuse(ci, "SCRIPT DEBUG");
                } else {
                    SplitKind::Same
                };
                let Some(t) = self.core.table() else {
                    return self.error(ci, NOT_ONLINE);
                };
                let mut known = Vec::new();
                if cmd.kind == Kind::Script {
                    let core = &self.core;
                    let flushes = &core.shared.script_flushes;
                    if args[1].eq_ignore_ascii_case(b"flush") {
                        flushes.bump();
                    } else if args[1].eq_ignore_ascii_case(b"load") && args.len() == 3 {
                        core.scripts.borrow_mut().learn(flushes, &args[2]);
                    } else if kind == SplitKind::All {
                        let mut scripts = core.scripts.borrow_mut();
                        known = args[2..]
                            .iter()
                            .map(|a| scripts.knows(flushes, a))
                            .collect();
                    }
                }
                self.send_to_every_master(ci, &t, kind, args, &known);
            }
            Kind::Function => match commands::function_route(&args[1]) {
                FunctionRoute::Every(kind) => match self.core.table() {
                    Some(t) => self.send_to_every_master(ci, &t, kind, args, &[]),
                    None => self.error(ci, NOT_ONLINE),
                },
                FunctionRoute::One => self.send_to_one_master(ci, args),
            },
            Kind::Subscribe => match pubsub::Sub::of(&args[0]) {
                Some(
                    pubsub::Sub::Subscribe | pubsub::Sub::Psubscribe | pubsub::Sub::Ssubscribe,
                ) => {
                    self.subscribe = Some(args.clone());
                }
                Some(sub) => {
                    // Not subscribed: Redis confirms with a count of 0.
                    let proto = self.me.proto();
                    self.reply_local(ci, |b| pubsub::unsubscribed(sub, args, proto, b));
                }
                None => self.error(ci, "ERR unknown pub/sub command"),
            },
            Kind::Publish => self.send_to_home(ci, args),
            Kind::Blocked => {
                let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
                self.refuse(ci, &name);
            }
            Kind::Blocking => self.blocking(&cmd, args).await,
            Kind::Split(kind) => self.split(&cmd, kind, args).await,
            Kind::Forward {
                multi_key, script, ..
            } => {
                if multi_key {
                    if let Some(spec) = cmd.spec {
                        if commands::common_slot(spec, args).is_none() {
                            self.error(ci, "CROSSSLOT Keys in request don't hash to the same slot");
                            return;
                        }
                    }
                }
                let key = commands::hash_key(&cmd, args);
                let slot = resp::slot(key);
                match script {
                    None => self.forward(&cmd, args, slot, key, cmd.replica_ok).await,
                    Some(call) => {
                        let route = Route::Script(call);
                        self.forward_as(&cmd, args, slot, key, cmd.replica_ok, route)
                            .await
                    }
                }
            }
        }
    }

    /// A command between MULTI and EXEC: `+QUEUED` if it can run in the transaction (a
    /// command the proxy forwards, whose keys hash to the transaction's one slot), else an error
    /// that makes EXEC abort.
    fn queue(&mut self, cmd: &Cmd, args: &Args) {
        let ci = cmd.index;
        let slot: Result<Option<u16>, String> = match (cmd.kind, cmd.spec) {
            // In a transaction a blocking command does not block (as in Redis).
            (Kind::Forward { .. } | Kind::Split(_) | Kind::Blocking, Some(spec)) => {
                commands::common_slot(spec, args)
                    .ok_or_else(|| "CROSSSLOT Keys in request don't hash to the same slot".into())
            }
            // Not in the command table: Codis hashes argv[1].
            (Kind::Forward { .. }, None) => Ok(args.get(1).map(|k| resp::slot(k))),
            (Kind::Ping | Kind::Echo, _) => Ok(None),
            (Kind::Blocked, _) => {
                let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
                Err(format!(
                    "ERR handle request, command '{name}' is not allowed"
                ))
            }
            _ => {
                let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
                Err(format!(
                    "ERR {name} inside MULTI is not supported by codis-proxy"
                ))
            }
        };
        let Some(m) = self.multi.as_mut() else {
            return;
        };
        let slot = slot.and_then(|s| match (s, m.slot) {
            (Some(s), Some(t)) if s != t => Err(
                "CROSSSLOT Keys in a transaction through codis-proxy must hash to one slot".into(),
            ),
            _ => Ok(s),
        });
        match slot {
            Ok(s) => {
                if s.is_some() {
                    m.slot = s;
                }
                let script = match cmd.kind {
                    Kind::Forward {
                        script: Some(call), ..
                    } => {
                        let flushes = &self.core.shared.script_flushes;
                        let mut scripts = self.core.scripts.borrow_mut();
                        scripts.in_transaction(flushes, call, args)
                    }
                    _ => None,
                };
                m.cmds.push(script.unwrap_or_else(|| args.clone()));
                self.reply_local(ci, |b| b.extend_from_slice(b"+QUEUED\r\n"));
            }
            Err(e) => {
                m.dirty = true;
                self.error(ci, &e);
                self.broken |= self.core.cfg.session_break_on_failure && e.contains("not allowed");
            }
        }
    }

    /// EXEC: the queued commands go to the slot's master as one contiguous MULTI … EXEC on the
    /// shared backend connection (nothing of another session can come between them there), and
    /// the client gets EXEC's reply. A slot that is locked or migrating is waited for, so the
    /// transaction runs whole on one side.
    async fn exec(&mut self, ci: usize, m: Multi) {
        if m.dirty {
            return self.error(
                ci,
                "EXECABORT Transaction discarded because of previous errors.",
            );
        }
        if m.cmds.is_empty() {
            return self.reply_local(ci, |b| encode::array(b, 0));
        }
        let slot = m.slot.unwrap_or(0) as usize;
        loop {
            let Some((t, owner)) = self.settled_master(ci, slot).await else {
                return;
            };
            let b = self.core.backend(&t, owner, self.ch).for_slot(slot as u16);
            if b.is_full() {
                drop(t);
                b.space.wait().await;
                continue;
            }
            // MULTI's and the +QUEUED replies land in the batch unread; EXEC's is the answer.
            let multi = [Bytes::from_static(b"MULTI")];
            let idx = self.batch.push_slot();
            router::send(
                &self.core,
                Target::Direct(b.clone()),
                &[],
                &multi,
                &self.batch,
                idx,
            );
            for c in &m.cmds {
                let idx = self.batch.push_slot();
                router::send(
                    &self.core,
                    Target::Direct(b.clone()),
                    &[],
                    c,
                    &self.batch,
                    idx,
                );
            }
            let exec = [Bytes::from_static(b"EXEC")];
            let idx = self.remote(ci);
            router::send(&self.core, Target::Direct(b), &[], &exec, &self.batch, idx);
            return;
        }
    }

    /// `WATCH key…`: the keys must share one slot (and the slot of an earlier WATCH). Once the
    /// slot is neither locked nor migrating, WATCH runs on the session's own connection to its
    /// master, opened now if needed; the client gets that server's reply.
    async fn watch(&mut self, ci: usize, args: &Args) {
        const CROSS: &str =
            "CROSSSLOT Keys in a transaction through codis-proxy must hash to one slot";
        let slot = match commands::lookup(&args[0])
            .spec
            .and_then(|spec| commands::common_slot(spec, args))
        {
            Some(Some(s)) => s,
            _ => return self.error(ci, CROSS),
        };
        if self.watched.as_ref().is_some_and(|w| w.slot != slot) {
            return self.error(ci, CROSS);
        }
        let Some((t, owner)) = self.settled_master(ci, slot as usize).await else {
            return;
        };
        let addr = t.table.addr(owner).to_string();
        drop(t);
        if let Some(w) = &mut self.watched {
            if w.addr != addr {
                // The slot moved since the first WATCH: the keys watched there have left.
                w.moved = true;
                return self.reply_local(ci, encode::ok);
            }
        }
        if self.watched.is_none() {
            let auth = self.core.cfg.product_auth.clone();
            let unix = self.core.cfg.backend_prefer_unixsocket;
            match crate::private::dial(&addr, &auth, self.ch.resp3, self.ch.db, unix).await {
                Ok(conn) => {
                    self.watched = Some(Watched {
                        slot,
                        addr,
                        db: self.ch.db,
                        conn,
                        moved: false,
                    })
                }
                Err(e) => return self.error(ci, &format!("ERR handle request, WATCH: {e}")),
            }
        }
        let Some(w) = self.watched.as_mut() else {
            return;
        };
        match crate::private::roundtrip(&mut w.conn, std::slice::from_ref(args)).await {
            Ok(r) => {
                let reply = r.into_iter().next().unwrap_or_default();
                self.reply_local(ci, |b| b.extend_from_slice(&reply));
            }
            Err(e) => {
                self.watched = None;
                self.error(ci, &format!("ERR handle request, WATCH: {e}"));
            }
        }
    }

    /// EXEC after WATCH: `MULTI`, the queued commands and `EXEC` on the connection that
    /// watched, once the slot is neither locked nor migrating, so the server decides whether
    /// a watched key changed. If the slot has moved to another server since, the keys have
    /// left that server: the transaction fails as for a changed key (a null reply). The
    /// connection is closed afterwards, which forgets the watched keys.
    async fn exec_watched(&mut self, ci: usize, m: Multi, mut w: Watched) {
        if m.dirty {
            return self.error(
                ci,
                "EXECABORT Transaction discarded because of previous errors.",
            );
        }
        let slot = w.slot as usize;
        let Some(t) = self.settled_table(slot).await else {
            return self.error(ci, NOT_ONLINE);
        };
        let owner = t.table.slots[slot].backend.map(|b| t.table.addr(b));
        if w.moved || owner != Some(w.addr.as_str()) {
            let proto = self.me.proto();
            return self.reply_local(ci, |b| encode::null_array(b, proto));
        }
        drop(t);
        let mut reqs: Vec<Vec<Bytes>> = Vec::with_capacity(m.cmds.len() + 3);
        if w.db != self.ch.db {
            reqs.push(vec![
                Bytes::from_static(b"SELECT"),
                Bytes::from(self.ch.db.to_string()),
            ]);
        }
        reqs.push(vec![Bytes::from_static(b"MULTI")]);
        reqs.extend(m.cmds.iter().map(|c| c.to_vec()));
        reqs.push(vec![Bytes::from_static(b"EXEC")]);
        // In flight for the table: no await between the check above and this.
        let core = self.core.clone();
        let inflight = core.private_request();
        let r = crate::private::roundtrip(&mut w.conn, &reqs).await;
        drop(inflight);
        match r {
            Ok(mut replies) => {
                let reply = replies.pop().unwrap_or_default();
                self.reply_local(ci, |b| b.extend_from_slice(&reply));
            }
            Err(e) => self.error(ci, &format!("ERR handle request, EXEC: {e}")),
        }
    }

    /// A blocking command (see `blocking`): on the session's own connection to the master of
    /// its slot, once that slot is settled and the requests before it are answered; run again
    /// on the new master if the slot moves while it waits.
    async fn blocking(&mut self, cmd: &Cmd, args: &Args) {
        let ci = cmd.index;
        let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
        let slot = match cmd.spec.and_then(|spec| commands::common_slot(spec, args)) {
            Some(Some(s)) => s as usize,
            Some(None) => 0,
            None => return self.error(ci, "CROSSSLOT Keys in request don't hash to the same slot"),
        };
        let lname = name.to_ascii_lowercase();
        let at = crate::blocking::timeout_at(&lname, args.len());
        // An invalid timeout goes to the server once, for its error.
        let deadline = crate::blocking::deadline(&args[at], Instant::now());
        // Redis runs a client's commands in order: what came before in the pipeline first.
        self.batch.done().await;
        self.blocked = true;
        let mut req = args.to_vec();
        loop {
            let Some((t, owner)) = self.settled_master(ci, slot).await else {
                return;
            };
            let addr = t.table.addr(owner).to_string();
            drop(t);
            let mut b = match self.blocker.take() {
                Some(b) if b.addr == addr && b.ch == self.ch => b,
                _ => match self.dial_blocker(&addr).await {
                    Ok(b) => b,
                    Err(e) => return self.error(ci, &format!("ERR handle request, {name}: {e}")),
                },
            };
            match self.wait_blocked(&mut b, slot, &req).await {
                Waited::Reply { reply, unblocked } => {
                    self.blocker = Some(b);
                    let expired = match deadline {
                        Some(Some(d)) => Instant::now() >= d,
                        _ => false,
                    };
                    if unblocked && crate::blocking::is_null(&reply) && !expired {
                        // Unblocked because the slot moved: wait again where it lives now.
                        let d = deadline.flatten();
                        req = crate::blocking::with_timeout(args, at, d);
                        continue;
                    }
                    return self.reply_local(ci, |o| o.extend_from_slice(&reply));
                }
                Waited::Failed(e) => {
                    return self.error(ci, &format!("ERR handle request, {name}: {e}"));
                }
                Waited::Gone => {
                    self.quit = true;
                    return;
                }
            }
        }
    }

    /// A connection for blocking commands to `addr`, and its id there.
    async fn dial_blocker(&self, addr: &str) -> Result<Blocker, String> {
        let cfg = &self.core.cfg;
        let unix = cfg.backend_prefer_unixsocket;
        let mut conn =
            crate::private::dial(addr, &cfg.product_auth, self.ch.resp3, self.ch.db, unix).await?;
        let req = [vec![
            Bytes::from_static(b"CLIENT"),
            Bytes::from_static(b"ID"),
        ]];
        let r = crate::private::roundtrip(&mut conn, &req).await?;
        let id = r
            .first()
            .and_then(|r| r.strip_prefix(b":"))
            .and_then(|r| resp::parse_i64(r.strip_suffix(b"\r\n")?))
            .ok_or_else(|| format!("{addr}: CLIENT ID failed"))?;
        Ok(Blocker {
            addr: addr.to_string(),
            ch: self.ch,
            conn,
            id,
        })
    }

    /// Sends `req` on `b` and waits for its reply. If the topology moves `slot` meanwhile (locked,
    /// migrating or on another master), the server is told to `CLIENT UNBLOCK` the wait and its
    /// reply is still read.
    async fn wait_blocked(&self, b: &mut Blocker, slot: usize, req: &[Bytes]) -> Waited {
        use futures::future::{select, Either};
        let shared = &self.core.shared;
        shared.sessions_blocked.fetch_add(1, Relaxed);
        let _count = Decrement(&shared.sessions_blocked);
        self.me.set_blocked(true);
        let _flag = Unblocked(&self.me);
        let reqs = [req.to_vec()];
        let reply = crate::private::exchange(&mut b.conn, &reqs);
        futures::pin_mut!(reply);
        let moved = async {
            loop {
                let changed = self.core.table_changed.wait();
                let stays = self.core.table().is_some_and(|t| {
                    let r = &t.table.slots[slot];
                    !r.locked
                        && r.migrate_from.is_none()
                        && r.backend.map(|o| t.table.addr(o)) == Some(b.addr.as_str())
                });
                if !stays {
                    return;
                }
                changed.await;
            }
        };
        let fd = self.me.fd();
        let gone = async {
            loop {
                glommio::timer::sleep(std::time::Duration::from_millis(200)).await;
                if crate::blocking::client_gone(fd) || self.me.killed() {
                    return;
                }
            }
        };
        futures::pin_mut!(moved, gone);
        let first = select(reply, select(moved, gone)).await;
        let (reply, unblocked) = match first {
            Either::Left((r, _)) => (r, false),
            Either::Right((Either::Right(_), _)) => return Waited::Gone,
            Either::Right((Either::Left(_), reply)) => {
                let cfg = &self.core.cfg;
                let unblock = async {
                    let mut c = crate::private::dial(
                        &b.addr,
                        &cfg.product_auth,
                        false,
                        0,
                        cfg.backend_prefer_unixsocket,
                    )
                    .await?;
                    let id = Bytes::from(b.id.to_string());
                    let req = [vec![
                        Bytes::from_static(b"CLIENT"),
                        Bytes::from_static(b"UNBLOCK"),
                        id,
                    ]];
                    crate::private::roundtrip(&mut c, &req).await
                };
                if let Err(e) = unblock.await {
                    tracing::warn!(backend = %b.addr, "CLIENT UNBLOCK after a topology change failed: {e}");
                }
                (reply.await, true)
            }
        };
        match reply {
            Ok(mut r) => Waited::Reply {
                reply: r.pop().unwrap_or_default(),
                unblocked,
            },
            Err(e) => Waited::Failed(e),
        }
    }

    /// Codis's refusal of a blocked command (`name` as the client should read it).
    fn refuse(&mut self, ci: usize, name: &str) {
        self.error(
            ci,
            &format!("ERR handle request, command '{name}' is not allowed"),
        );
        self.broken |= self.core.cfg.session_break_on_failure;
    }

    /// Sends `args` to every group master of `t`; the client gets their replies merged by
    /// `kind` (`multikey::to_every_master`).
    fn send_to_every_master(
        &mut self,
        ci: usize,
        t: &CoreTable,
        kind: SplitKind,
        args: &Args,
        known: &[bool],
    ) {
        let (core, db) = (self.core.clone(), self.ch);
        let (batch, split) = (&self.batch, &mut self.split);
        match multikey::to_every_master(&core, t, db, kind, args, known, batch, split) {
            Some(m) => self.items.push((Item::Merge(m), ci)),
            None => self.reply_local(ci, |b| b.extend_from_slice(router::SLOT_OFFLINE.as_bytes())),
        }
    }

    /// `CONFIG GET pattern…`: what redis-benchmark asks first, and how an operator reads a
    /// backend setting through the proxy. Settings are changed on the servers themselves, never
    /// through here.
    fn config_get(&mut self, ci: usize, args: &Args) {
        if args.len() < 3 {
            self.error(ci, "ERR wrong number of arguments for 'config|get' command");
            return;
        }
        self.send_to_one_master(ci, args);
    }

    /// Sends `args` to the master of the first slot that has one and is not migrating
    /// (`CONFIG GET`, `FUNCTION LIST`, …).
    fn send_to_one_master(&mut self, ci: usize, args: &Args) {
        let Some(t) = self.core.table() else {
            self.error(ci, NOT_ONLINE);
            return;
        };
        let master = t
            .table
            .slots
            .iter()
            .find(|s| s.migrate_from.is_none() && s.backend.is_some())
            .and_then(|s| s.backend);
        match master {
            Some(addr) => {
                let b = self.core.backend(&t, addr, self.ch);
                let idx = self.remote(ci);
                router::send(&self.core, Target::Direct(b), &[], args, &self.batch, idx);
            }
            None => self.reply_local(ci, |b| b.extend_from_slice(router::SLOT_OFFLINE.as_bytes())),
        }
    }

    /// `PUBLISH`, `PUBSUB …`: to the pub/sub home (`pubsub`) on the shared connection.
    fn send_to_home(&mut self, ci: usize, args: &Args) {
        let Some(t) = self.core.table() else {
            self.error(ci, NOT_ONLINE);
            return;
        };
        match t.table.pubsub_home {
            Some(home) => {
                let b = self.core.backend(&t, home, self.ch);
                let idx = self.remote(ci);
                router::send(&self.core, Target::Direct(b), &[], args, &self.batch, idx);
            }
            None => self.reply_local(ci, |b| b.extend_from_slice(router::SLOT_OFFLINE.as_bytes())),
        }
    }

    /// The pub/sub home's address in the current table.
    fn home_addr(&self) -> Option<String> {
        let t = self.core.table()?;
        let h = t.table.pubsub_home?;
        Some(t.table.addr(h).to_string())
    }

    /// Subscribed mode (`pubsub`), entered with the `SUBSCRIBE` or `PSUBSCRIBE` `first`: the
    /// session's own connection to the pub/sub home carries its subscriptions, messages go to
    /// the client as they come, replies in request order. Returns whether the session goes on
    /// in normal mode (its last subscription ended, or the home could not be reached: the
    /// client got the error) or closes.
    async fn subscribed(
        &mut self,
        stream: &mut TcpStream,
        rbuf: &mut BytesMut,
        parser: &mut RequestParser,
        first: Args,
    ) -> bool {
        use pubsub::Sub;
        let resp3 = self.ch.resp3;
        let auth = self.core.cfg.product_auth.clone();
        let unix = self.core.cfg.backend_prefer_unixsocket;
        let dialed = match self.home_addr() {
            Some(a) => crate::private::dial(&a, &auth, resp3, 0, unix)
                .await
                .map(|s| (a, s)),
            None => Err("no group owns slots".to_string()),
        };
        let (mut home_addr, mut home) = match dialed {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(client = %self.peer, "pub/sub home unreachable: {e}");
                let mut out = BytesMut::new();
                encode::error(&mut out, &format!("ERR handle request, pub/sub: {e}"));
                return stream.write_all(&out).await.is_ok();
            }
        };
        let shared = self.core.shared.clone();
        shared.sessions_subscribed.fetch_add(1, Relaxed);
        let _count = Decrement(&shared.sessions_subscribed);
        let me = self.me.clone();
        let _subs = Unsubscribed(&me);
        let mut sub = pubsub::Subscriber::default();
        let mut to_home = BytesMut::new();
        if let Some(k) = Sub::of(&first[0]) {
            encode_request(&mut to_home, &first);
            sub.sent(k, &first);
        }
        let mut out = BytesMut::new();
        let mut hbuf = BytesMut::with_capacity(16 * 1024);
        let mut cchunk = vec![0u8; 16 * 1024];
        let mut hchunk = vec![0u8; 16 * 1024];
        let mut closing = false;
        // RESET: subscriptions end with the home connection, the session goes on.
        let mut leave = false;
        let core = self.core.clone();
        enum Ev {
            Client(std::io::Result<usize>),
            Home(std::io::Result<usize>),
            Table,
        }
        loop {
            // Requests already read (pipelined after the SUBSCRIBE, or read below), unless the
            // ones before them leave subscribed mode: those then run in normal mode.
            while !closing && !leave && !sub.leaving() {
                let args = match parser.parse(rbuf) {
                    Ok(Some(a)) => a,
                    Ok(None) => break,
                    Err(e) => {
                        let mut r = BytesMut::new();
                        encode::error(&mut r, &e.to_string());
                        sub.owe_local(r.freeze());
                        closing = true;
                        break;
                    }
                };
                let mode = self.while_subscribed(&args, &mut sub, &mut to_home).await;
                closing |= mode == Leave::Close;
                leave |= mode == Leave::Reset;
            }
            sub.flush_local(&mut out);
            if !to_home.is_empty() {
                if let Err(e) = home.write_all(&to_home).await {
                    tracing::warn!(client = %self.peer, "pub/sub home {home_addr}: {e}");
                    return false;
                }
                to_home.clear();
            }
            if !out.is_empty() {
                if stream.write_all(&out).await.is_err() {
                    return false;
                }
                out.clear();
            }
            if closing && !sub.busy() {
                return false;
            }
            if leave && !sub.busy() {
                parser.set_authenticated(self.authed);
                return true;
            }
            if sub.done() {
                return true;
            }
            let table_changed = core.table_changed.wait();
            // The topology moved the home: once nothing is owed, subscribe there again.
            if !sub.busy() {
                if let Some(a) = self.home_addr().filter(|a| *a != home_addr) {
                    match crate::private::dial(&a, &auth, resp3, 0, unix).await {
                        Ok(s) => {
                            tracing::info!(client = %self.peer, from = %home_addr, to = %a, "pub/sub home moved: subscribing again");
                            home = s;
                            home_addr = a;
                            hbuf.clear();
                            for r in sub.resubscribe() {
                                encode_request(&mut to_home, &r);
                            }
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(client = %self.peer, "new pub/sub home unreachable: {e}");
                            return false;
                        }
                    }
                }
            }
            let ev = futures_lite::future::or(
                futures_lite::future::or(
                    async { Ev::Client(stream.read(&mut cchunk).await) },
                    async { Ev::Home(home.read(&mut hchunk).await) },
                ),
                async {
                    table_changed.await;
                    Ev::Table
                },
            )
            .await;
            match ev {
                Ev::Client(Ok(0) | Err(_)) => return false,
                Ev::Client(Ok(n)) => {
                    rbuf.extend_from_slice(&cchunk[..n]);
                    if rbuf.len() > self.core.cfg.session_max_bufsize {
                        tracing::warn!(client = %self.peer, "closing subscriber that reached the max query buffer length");
                        return false;
                    }
                }
                Ev::Home(Ok(0)) => {
                    tracing::warn!(client = %self.peer, "pub/sub home {home_addr} closed the connection");
                    return false;
                }
                Ev::Home(Err(e)) => {
                    tracing::warn!(client = %self.peer, "pub/sub home {home_addr}: {e}");
                    return false;
                }
                Ev::Home(Ok(n)) => {
                    hbuf.extend_from_slice(&hchunk[..n]);
                    loop {
                        match resp::frame::frame_len(&hbuf) {
                            Ok(Some(len)) => {
                                let f = hbuf.split_to(len);
                                if let Err(e) = sub.from_home(&f, &mut out) {
                                    tracing::warn!(client = %self.peer, "{e}");
                                    return false;
                                }
                                let (c, p, s) = sub.counts();
                                self.me.set_subs(c, p, s);
                            }
                            Ok(None) => break,
                            Err(e) => {
                                tracing::warn!(client = %self.peer, "pub/sub home {home_addr}: bad reply: {e}");
                                return false;
                            }
                        }
                    }
                }
                Ev::Table => {}
            }
        }
    }

    /// One request of a subscribed client: pub/sub commands and PING go to the home, QUIT ends
    /// the session, and anything else is refused (RESP2, as Redis) or, for a RESP3 client, runs
    /// as usual unless it would change the session's mode.
    async fn while_subscribed(
        &mut self,
        args: &Args,
        sub: &mut pubsub::Subscriber,
        to_home: &mut BytesMut,
    ) -> Leave {
        let cmd = commands::lookup(&args[0]);
        self.me.command(cmd.index);
        let local = |f: &dyn Fn(&mut BytesMut)| {
            let mut r = BytesMut::new();
            f(&mut r);
            r.freeze()
        };
        if let Some(spec) = cmd.spec {
            if !spec.arity_ok(args.len()) {
                let text = format!("ERR wrong number of arguments for '{}' command", spec.name);
                sub.owe_local(local(&|b| encode::error(b, &text)));
                return Leave::Stay;
            }
        }
        if let Some(k) = pubsub::Sub::of(&args[0]) {
            encode_request(to_home, args);
            sub.sent(k, args);
            return Leave::Stay;
        }
        match cmd.kind {
            Kind::Ping => {
                encode_request(to_home, args);
                sub.owe_home(1);
            }
            Kind::Quit => {
                sub.owe_local(Bytes::from_static(b"+OK\r\n"));
                return Leave::Close;
            }
            Kind::Reset => {
                self.reset();
                sub.owe_local(Bytes::from_static(b"+RESET\r\n"));
                return Leave::Reset;
            }
            _ if !self.ch.resp3 => {
                let text = pubsub::not_allowed(&args[0]);
                sub.owe_local(local(&|b| encode::error(b, &text)));
            }
            Kind::Hello | Kind::Multi | Kind::Exec | Kind::Discard => {
                let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
                let text =
                    format!("ERR {name} is not allowed while subscribed through codis-proxy");
                sub.owe_local(local(&|b| encode::error(b, &text)));
            }
            _ => {
                // RESP3: an ordinary command, routed and answered as in normal mode.
                self.fresh_batch();
                let t0 = Instant::now();
                self.handle(args).await;
                self.batch.done().await;
                let mut r = BytesMut::new();
                self.write_replies(&mut r, t0.elapsed().as_micros() as u64);
                sub.owe_local(r.freeze());
            }
        }
        Leave::Stay
    }

    /// `SCAN`: one `SLOTSSCAN` page of the slot the cursor names, from the slot's master (or,
    /// while it migrates, first its source then its target); see `scan`.
    async fn scan(&mut self, ci: usize, args: &Args) {
        let (cur, opts) = match scan::parse(args) {
            Ok(v) => v,
            Err(e) => return self.error(ci, e),
        };
        loop {
            let Some(t) = self
                .unlocked_table(|t| t.table.slots[cur.slot as usize].locked)
                .await
            else {
                return self.error(ci, NOT_ONLINE);
            };
            let route = &t.table.slots[cur.slot as usize];
            let Some(owner) = route.backend else {
                return self
                    .reply_local(ci, |b| b.extend_from_slice(router::SLOT_OFFLINE.as_bytes()));
            };
            let (addr, step) = scan::target(cur, owner, route.migrate_from);
            let b = self.core.backend(&t, addr, self.ch).for_slot(cur.slot);
            if b.is_full() {
                drop(t);
                b.space.wait().await;
                continue;
            }
            let idx = self.batch.push_slot();
            self.items.push((Item::Scan(idx, step), ci));
            let req = scan::request(cur, &opts);
            router::send(&self.core, Target::Direct(b), &[], &req, &self.batch, idx);
            return;
        }
    }

    fn auth(&mut self, ci: usize, args: &Args) {
        let want = &self.core.cfg.session_auth;
        if want.is_empty() {
            self.error(ci, "ERR Client sent AUTH, but no password is set");
            return;
        }
        let pass = match args.len() {
            2 => &args[1],
            3 if args[1].eq_ignore_ascii_case(b"default") => &args[2],
            3 => {
                self.authed = false;
                self.error(
                    ci,
                    "WRONGPASS invalid username-password pair or user is disabled.",
                );
                return;
            }
            _ => {
                self.error(ci, "ERR syntax error");
                return;
            }
        };
        if pass[..] == *want.as_bytes() {
            self.authed = true;
            self.reply_local(ci, encode::ok);
        } else {
            self.authed = false;
            self.error(ci, "ERR invalid password");
        }
    }

    async fn slots_info(&mut self, ci: usize, args: &Args) {
        if args.len() != 2 {
            self.error(ci, "ERR wrong number of arguments for 'slotsinfo' command");
            return;
        }
        let Some(t) = self.core.table() else {
            self.error(ci, NOT_ONLINE);
            return;
        };
        let addr = String::from_utf8_lossy(&args[1]).into_owned();
        match self.core.backend_by_addr(&t, &addr, self.ch) {
            Some(b) => {
                let idx = self.remote(ci);
                router::send(
                    &self.core,
                    Target::Direct(b),
                    &[],
                    &args[..1],
                    &self.batch,
                    idx,
                );
            }
            None => self.error(ci, &format!("ERR backend server '{addr}' not found")),
        }
    }

    /// Sends one request for `slot`, waiting while the slot is locked or the pipeline is full.
    async fn forward(&mut self, cmd: &Cmd, args: &Args, slot: u16, key: &[u8], replica_ok: bool) {
        self.forward_as(cmd, args, slot, key, replica_ok, Route::Plain)
            .await
    }

    /// [`Session::forward`], where a scripting command may be rewritten for its server first
    /// (`scripts`).
    async fn forward_as(
        &mut self,
        cmd: &Cmd,
        args: &Args,
        slot: u16,
        key: &[u8],
        replica_ok: bool,
        route: Route,
    ) {
        loop {
            let Some(t) = self
                .unlocked_table(|t| t.table.slots[slot as usize].locked)
                .await
            else {
                self.error(cmd.index, NOT_ONLINE);
                return;
            };
            let target = router::target(&self.core, &t, slot, self.ch, key, replica_ok);
            if let Target::Direct(b) = &target {
                if b.is_full() {
                    let b = b.clone();
                    drop(target);
                    b.space.wait().await;
                    continue;
                }
            }
            let idx = self.remote(cmd.index);
            if let Route::Script(call) = route {
                let addr = match &target {
                    Target::Direct(b) => Some(&b.addr),
                    _ => None,
                };
                let flushes = &self.core.shared.script_flushes;
                let eval = self
                    .core
                    .scripts
                    .borrow_mut()
                    .route(flushes, call, args, addr);
                if let Some(eval) = eval {
                    router::send(&self.core, target, key, &eval, &self.batch, idx);
                    return;
                }
            }
            router::send(&self.core, target, key, args, &self.batch, idx);
            return;
        }
    }

    async fn split(&mut self, cmd: &Cmd, kind: SplitKind, args: &Args) {
        let step = if kind == SplitKind::Mset { 2 } else { 1 };
        let Some(t) = self
            .unlocked_table(|t| {
                args[1..]
                    .iter()
                    .step_by(step)
                    .any(|k| t.table.slots[resp::slot(k) as usize].locked)
            })
            .await
        else {
            self.error(cmd.index, NOT_ONLINE);
            return;
        };
        match multikey::split(
            &self.core,
            &t,
            self.ch,
            kind,
            args,
            &self.batch,
            &mut self.split,
        ) {
            Ok(m) => self.items.push((Item::Merge(m), cmd.index)),
            Err(Some(slot)) => {
                let key = args[1].clone();
                drop(t);
                self.forward(cmd, args, slot, &key, false).await
            }
            Err(None) => {
                let idx = self.remote(cmd.index);
                self.batch
                    .fill(idx, Bytes::from_static(router::SLOT_OFFLINE.as_bytes()));
            }
        }
    }

    /// Writes every reply in request order and records the batch's statistics.
    fn write_replies(&mut self, out: &mut BytesMut, usecs: u64) {
        let core = &self.core;
        let stats = &core.stats;
        let n = self.items.len() as u64;
        let mut slow = false;
        for (i, (item, ci)) in self.items.iter().enumerate() {
            let start = out.len();
            match item {
                Item::Local(s, e) => out.extend_from_slice(&self.local[*s..*e]),
                Item::Remote(idx) => out.extend_from_slice(&self.batch.get(*idx)),
                Item::Merge(m) => {
                    multikey::merge(m, &self.split, &self.batch, out);
                }
                Item::Scan(idx, step) => scan::reply(*step, &self.batch.get(*idx), out),
            }
            let is_err = out.get(start) == Some(&b'-');
            let failed = is_err
                && (out[start..].starts_with(b"-ERR handle ")
                    || out[start..].starts_with(b"-ERR router"));
            stats.record(*ci, usecs, failed, is_err && !failed);
            if failed && core.cfg.session_break_on_failure {
                self.broken = true;
            }
            if !slow
                && i < 64
                && std::time::Duration::from_micros(usecs) >= core.cfg.slowlog_slower_than
            {
                slow = true;
            }
        }
        if n > 0 {
            let _ = core.latency.borrow_mut().record_n(usecs.max(1), n);
        }
        if slow {
            for args in self.reqs.iter().take(8) {
                core.shared.maybe_slow(usecs, || describe(args), &self.peer);
            }
        }
        self.items.clear();
        self.local.clear();
        self.split.parts.clear();
        self.split.map.clear();
        self.reqs.clear();
        if self.local.capacity() > 1 << 20 {
            self.local = BytesMut::with_capacity(4096);
        }
    }
}

/// What a request of a subscribed client does to subscribed mode.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Leave {
    Stay,
    /// QUIT: reply, then close.
    Close,
    /// RESET: reply, then normal mode without subscriptions.
    Reset,
}

/// Clears a client's blocked flag (`CLIENT LIST`) when dropped.
struct Unblocked<'a>(&'a ClientEntry);

impl Drop for Unblocked<'_> {
    fn drop(&mut self) {
        self.0.set_blocked(false);
    }
}

/// Decrements a gauge when dropped.
struct Decrement<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Clears a client's subscription counts (`CLIENT LIST`) when dropped.
struct Unsubscribed<'a>(&'a ClientEntry);

impl Drop for Unsubscribed<'_> {
    fn drop(&mut self) {
        self.0.set_subs(0, 0, 0);
    }
}

/// Appends `args` as a multibulk request.
fn encode_request(buf: &mut BytesMut, args: &[Bytes]) {
    crate::backend::encode_args(buf, args.iter().map(|a| &a[..]));
}

/// `NAME arg1 arg2 …` for the slow log (at most 4 arguments, 32 bytes each).
fn describe(args: &Args) -> String {
    let mut s = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
    for a in args.iter().skip(1).take(4) {
        s.push(' ');
        s.push_str(&String::from_utf8_lossy(&a[..a.len().min(32)]));
    }
    if args.len() > 5 {
        s.push_str(&format!(" … ({} more)", args.len() - 5));
    }
    s
}
