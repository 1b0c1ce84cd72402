//! Blocking commands (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN, BZPOPMAX, BZMPOP).
//!
//! A blocking command's handler runs like any other; when nothing is available it writes
//! [`WOULD_BLOCK`] instead of a reply. Then:
//!
//! - **Keys on one core** (the common case): the same closure that ran the handler on the owner
//!   shard registers a *serve* waiter in that shard's [`Registry`] — atomically, so no push can slip
//!   in between. When a write command touches a key with waiters ([`after_writes`], called by
//!   `Shard::execute` and by `multi.rs`' write-back), the shard re-runs the waiters' commands
//!   **itself**, first blocked first served, as long as the key can serve them (Redis's
//!   `handleClientsBlockedOnKeys`), and sends each reply to its connection through a oneshot
//!   channel (woken across threads).
//! - **Keys on several cores**: the connection registers a *wake* waiter on every involved core,
//!   then tries the command through `multi.rs`; on a wake-up it deregisters and tries again.
//!   Fairness here is best effort (a woken client competes with newer ones).
//!
//! The connection waits with the command's timeout (0: forever); on timeout it removes its waiter
//! on the owner core — if the shard already served it, the reply is taken instead, so a popped
//! element is never lost. A client that disconnects while blocked is noticed within 100 ms and
//! unregistered. `CLIENT UNBLOCK` ends a wait as its timeout would (or with an error): the
//! connection's core keeps a way to interrupt each of its blocked connections ([`unblock`]).

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::channel::oneshot;
use hashbrown::HashMap;
use resp::command::COMMANDS;
use resp::{encode, Args, Proto};

use crate::cmd::types::{float_arg, WOULD_BLOCK};
use crate::conn::Session;
use crate::core::Core;
use crate::shard::{Cmd, Shard};
use crate::shared::now_ms;
use crate::value::ValueRef;

/// What the shard does for a waiter whose key became ready.
pub enum Action {
    /// Run the command here and send its reply.
    Serve {
        cmd: Cmd,
        proto: Proto,
        tx: oneshot::Sender<Bytes>,
    },
    /// Tell the connection to retry (an empty message).
    Wake { tx: oneshot::Sender<Bytes> },
}

/// One blocked client on this shard.
pub struct Waiter {
    pub db: usize,
    /// The waiter's keys owned by this shard.
    pub keys: Vec<Bytes>,
    /// Waits for a sorted set (BZPOP*) rather than a list.
    pub zset: bool,
    pub action: Action,
}

/// Per-shard registry of blocked clients: key -> FIFO of waiter ids.
#[derive(Default)]
pub struct Registry {
    waiters: HashMap<u64, Waiter>,
    by_key: HashMap<(usize, Bytes), VecDeque<u64>>,
    serving: bool,
    pending: Vec<(usize, Bytes)>,
}

impl Registry {
    /// Whether no client is blocked here.
    pub fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    /// Number of blocked clients (INFO `blocked_clients`).
    pub fn len(&self) -> usize {
        self.waiters.len()
    }

    /// Register a waiter at the back of each of its keys' queues.
    pub fn add(&mut self, id: u64, w: Waiter) {
        for k in &w.keys {
            self.by_key
                .entry((w.db, k.clone()))
                .or_default()
                .push_back(id);
        }
        self.waiters.insert(id, w);
    }

    fn add_front(&mut self, id: u64, w: Waiter) {
        for k in &w.keys {
            self.by_key
                .entry((w.db, k.clone()))
                .or_default()
                .push_front(id);
        }
        self.waiters.insert(id, w);
    }

    /// Remove a waiter; returns it when it was still registered.
    pub fn take(&mut self, id: u64) -> Option<Waiter> {
        let w = self.waiters.remove(&id)?;
        for k in &w.keys {
            let slot = (w.db, k.clone());
            if let Some(q) = self.by_key.get_mut(&slot) {
                q.retain(|x| *x != id);
                if q.is_empty() {
                    self.by_key.remove(&slot);
                }
            }
        }
        Some(w)
    }

    /// Remove a waiter; true when it was still registered (not served yet).
    pub fn remove(&mut self, id: u64) -> bool {
        self.take(id).is_some()
    }

    /// Let go of every waiter with a key in `slot` (the slot is moving to another core): each is
    /// sent an empty message, which makes its connection route the command again.
    pub fn evict_slot(&mut self, slot: u16) {
        let ids: Vec<u64> = self
            .waiters
            .iter()
            .filter(|(_, w)| w.keys.iter().any(|k| resp::slot(k) == slot))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(w) = self.take(id) {
                match w.action {
                    Action::Serve { tx, .. } | Action::Wake { tx } => {
                        let _ = tx.send(Bytes::new());
                    }
                }
            }
        }
    }

    fn front(&self, db: usize, key: &Bytes) -> Option<u64> {
        self.by_key.get(&(db, key.clone()))?.front().copied()
    }
}

/// After a write touched `keys` on this shard: serve or wake the clients blocked on them, first
/// blocked first served, while each key can serve. Re-entrant calls (a served BLMOVE pushing to
/// another key) queue their keys.
pub fn after_writes(sh: &mut Shard, keys: &[(usize, Bytes)], now: u64) {
    if sh.blocked.is_empty() {
        return;
    }
    if sh.blocked.serving {
        sh.blocked.pending.extend_from_slice(keys);
        return;
    }
    sh.blocked.serving = true;
    let mut queue: VecDeque<(usize, Bytes)> = keys.iter().cloned().collect();
    while let Some((db, key)) = queue.pop_front() {
        while let Some(id) = sh.blocked.front(db, &key) {
            let zset = match sh.blocked.waiters.get(&id) {
                Some(w) => w.zset,
                None => break,
            };
            let ready = match sh.dbs.get_mut(db).and_then(|d| d.get(&key, now)) {
                Some(e) => matches!(
                    (e.value, zset),
                    (ValueRef::List(_), false) | (ValueRef::ZSet(_), true)
                ),
                None => false,
            };
            if !ready {
                break;
            }
            let Some(w) = sh.blocked.take(id) else { break };
            match w.action {
                Action::Wake { tx } => {
                    let _ = tx.send(Bytes::new());
                }
                Action::Serve { cmd, proto, tx } => {
                    if tx.is_canceled() {
                        continue;
                    }
                    let mut out = BytesMut::new();
                    if !sh.execute(&cmd, proto, now, &mut out) {
                        // Its slot moved away (not expected: moves evict waiters): retry.
                        let _ = tx.send(Bytes::new());
                        continue;
                    }
                    if &out[..] == WOULD_BLOCK {
                        let w = Waiter {
                            action: Action::Serve { cmd, proto, tx },
                            ..w
                        };
                        sh.blocked.add_front(id, w);
                        break;
                    }
                    let _ = tx.send(out.freeze());
                    queue.extend(sh.blocked.pending.drain(..));
                }
            }
        }
    }
    sh.blocked.pending.clear();
    sh.blocked.serving = false;
}

/// The timeout argument's position for each blocking command.
fn timeout_ms(args: &Args) -> Option<u64> {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let at = match name.as_str() {
        "blmove" => 5,
        "brpoplpush" => 3,
        "blmpop" | "bzmpop" => 1,
        _ => args.len() - 1,
    };
    let t = float_arg(args.get(at)?)?;
    Some((t * 1000.0).ceil().max(0.0) as u64)
}

enum End {
    Got(Bytes),
    TimedOut,
    Closed,
    /// `CLIENT UNBLOCK` (true: with `ERROR`).
    Unblocked(bool),
}

/// `CLIENT UNBLOCK`'s error reply.
const UNBLOCKED: &str = "UNBLOCKED client unblocked via CLIENT UNBLOCK";

thread_local! {
    /// This core's connections waiting in a blocking command, by client id: the sender that
    /// interrupts the wait (true: reply with [`UNBLOCKED`]).
    static INTERRUPTS: RefCell<HashMap<u64, oneshot::Sender<bool>>> = RefCell::new(HashMap::new());
}

/// Removes a connection's interrupt when its wait ends.
struct Interruptible(u64);

impl Drop for Interruptible {
    fn drop(&mut self) {
        INTERRUPTS.with(|m| m.borrow_mut().remove(&self.0));
    }
}

/// `CLIENT UNBLOCK id [TIMEOUT|ERROR]`: ends client `id`'s wait in a blocking command, as if it
/// timed out (or with an error). Whether the client was blocked.
pub async fn unblock(core: &Rc<Core>, id: u64, error: bool) -> bool {
    let info = core
        .shared
        .clients
        .lock()
        .ok()
        .and_then(|c| c.get(&id).cloned());
    let Some(info) = info else {
        return false;
    };
    let on = info.core.load(std::sync::atomic::Ordering::Relaxed);
    core.run_on(on, move |_| {
        INTERRUPTS
            .with(|m| m.borrow_mut().remove(&id))
            .is_some_and(|tx| tx.send(error).is_ok())
    })
    .await
}

/// Whether the client's socket was closed by the peer (checked while it is blocked).
fn peer_closed(sess: &Session) -> bool {
    if sess.info.killed.load(std::sync::atomic::Ordering::Relaxed) {
        return true;
    }
    let mut b = [0u8; 1];
    // SAFETY: a non-blocking peek of one byte on the connection's own descriptor.
    let n = unsafe {
        libc::recv(
            sess.info.fd.load(std::sync::atomic::Ordering::Relaxed),
            b.as_mut_ptr() as *mut libc::c_void,
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n == 0
}

/// Clients blocked right now, process-wide (INFO clients `blocked_clients`).
pub static BLOCKED_CLIENTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Counts one blocked client, and flags it in CLIENT LIST, for as long as it lives.
struct BlockedGuard<'a>(&'a crate::shared::ClientInfo);

impl BlockedGuard<'_> {
    fn new(info: &crate::shared::ClientInfo) -> BlockedGuard<'_> {
        BLOCKED_CLIENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        info.blocked
            .store(true, std::sync::atomic::Ordering::Relaxed);
        BlockedGuard(info)
    }
}

impl Drop for BlockedGuard<'_> {
    fn drop(&mut self) {
        BLOCKED_CLIENTS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.0
            .blocked
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Wait for any receiver, the deadline, or the client going away.
async fn wait(
    sess: &Session,
    rxs: &mut [oneshot::Receiver<Bytes>],
    deadline: Option<Instant>,
) -> End {
    let _blocked = BlockedGuard::new(&sess.info);
    let (itx, mut irx) = oneshot::channel::<bool>();
    let id = sess.info.id;
    INTERRUPTS.with(|m| m.borrow_mut().insert(id, itx));
    let _interruptible = Interruptible(id);
    loop {
        let mut tick = Duration::from_millis(100);
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return End::TimedOut;
            }
            tick = tick.min(left);
        }
        let any = futures::future::select_all(rxs.iter_mut());
        let timer = Box::pin(glommio::timer::sleep(tick));
        let stop = futures::future::select(timer, &mut irx);
        match futures::future::select(any, stop).await {
            futures::future::Either::Left(((Ok(b), _, _), _)) => return End::Got(b),
            // The shard dropped the waiter (server stopping): treat as a disconnect.
            futures::future::Either::Left(((Err(_), _, _), _)) => return End::Closed,
            futures::future::Either::Right((futures::future::Either::Right((Ok(e), _)), _)) => {
                return End::Unblocked(e)
            }
            futures::future::Either::Right(_) => {
                if peer_closed(sess) {
                    return End::Closed;
                }
            }
        }
    }
}

/// Run a blocking command for a connection and append its reply to `out`.
///
/// An empty message from a shard means "route again": the waiter's slot moved to another core
/// (`Registry::evict_slot`), so the command starts over at the new owner, same deadline.
pub async fn run(core: &Rc<Core>, sess: &mut Session, idx: usize, args: Args, out: &mut BytesMut) {
    let spec = &COMMANDS[idx];
    let zset = spec.name.starts_with("bz");
    let deadline = match timeout_ms(&args) {
        Some(0) | None => None,
        Some(ms) => Some(Instant::now() + Duration::from_millis(ms)),
    };
    loop {
        let mut by_core: BTreeMap<usize, Vec<Bytes>> = BTreeMap::new();
        for p in spec.key_positions(&args) {
            let k = args[p].clone();
            let c = core.shared.owner(resp::slot(&k));
            let ks = by_core.entry(c).or_default();
            if !ks.contains(&k) {
                ks.push(k);
            }
        }
        let done = if by_core.len() <= 1 {
            one_core(core, sess, idx, &args, by_core, deadline, zset, out).await
        } else {
            several_cores(core, sess, idx, &args, by_core, deadline, zset, out).await
        };
        if done {
            return;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            encode::null_array(out, sess.proto);
            return;
        }
    }
}

/// Keys on one core: run there, else wait as a serve waiter. False: route again (slot moved).
#[allow(clippy::too_many_arguments)]
async fn one_core(
    core: &Rc<Core>,
    sess: &mut Session,
    idx: usize,
    args: &Args,
    by_core: BTreeMap<usize, Vec<Bytes>>,
    deadline: Option<Instant>,
    zset: bool,
    out: &mut BytesMut,
) -> bool {
    let (db, proto) = (sess.db, sess.proto);
    let (owner, keys) = by_core.into_iter().next().unwrap_or((core.id, Vec::new()));
    let id = core.new_tx();
    let (tx, rx) = oneshot::channel::<Bytes>();
    let cmd = Cmd {
        db: db as u8,
        idx: idx as u16,
        args: args.clone(),
        slot: crate::shard::NO_SLOT,
    };
    let now = now_ms();
    // None: the slot moved on the way; Some(None): registered; Some(Some(reply)): served.
    let first: Option<Option<Bytes>> = core
        .run_on(owner, move |sh| {
            let mut o = BytesMut::new();
            if !sh.execute(&cmd, proto, now, &mut o) {
                return None;
            }
            if &o[..] != WOULD_BLOCK {
                return Some(Some(o.freeze()));
            }
            let w = Waiter {
                db,
                keys,
                zset,
                action: Action::Serve { cmd, proto, tx },
            };
            sh.blocked.add(id, w);
            Some(None)
        })
        .await;
    let first = match first {
        None => return false,
        Some(f) => f,
    };
    if let Some(r) = first {
        out.extend_from_slice(&r);
        return true;
    }
    let mut rxs = [rx];
    let end = wait(sess, &mut rxs, deadline).await;
    let [mut rx] = rxs;
    match end {
        End::Got(b) if b.is_empty() => false,
        End::Got(b) => {
            out.extend_from_slice(&b);
            true
        }
        End::TimedOut | End::Closed | End::Unblocked(_) => {
            let removed = core.run_on(owner, move |sh| sh.blocked.remove(id)).await;
            let closed = matches!(end, End::Closed);
            if closed {
                sess.quit = true;
            }
            let late = if removed {
                None
            } else if let Ok(Some(b)) = rx.try_recv() {
                Some(b)
            } else {
                (&mut rx).await.ok()
            };
            match late {
                // Served just before the timeout: the element was popped, deliver it.
                Some(b) if !b.is_empty() => out.extend_from_slice(&b),
                // Unblocked with an error: nothing popped.
                _ if matches!(end, End::Unblocked(true)) => encode::error(out, UNBLOCKED),
                // Timed out (or evicted by a slot move at the same moment: nothing popped).
                _ if !closed => encode::null_array(out, proto),
                _ => {}
            }
            true
        }
    }
}

/// Keys on several cores: wake-up waiters everywhere, try through `multi.rs`. False: route
/// again (woken, or a slot moved).
#[allow(clippy::too_many_arguments)]
async fn several_cores(
    core: &Rc<Core>,
    sess: &mut Session,
    idx: usize,
    args: &Args,
    by_core: BTreeMap<usize, Vec<Bytes>>,
    deadline: Option<Instant>,
    zset: bool,
    out: &mut BytesMut,
) -> bool {
    let (db, proto) = (sess.db, sess.proto);
    let id = core.new_tx();
    let mut rxs = Vec::new();
    let mut stale = false;
    for (&c, keys) in &by_core {
        let (tx, rx) = oneshot::channel::<Bytes>();
        let keys = keys.clone();
        stale |= !core
            .run_on(c, move |sh| {
                if !keys.iter().all(|k| sh.owns(resp::slot(k))) {
                    return false;
                }
                let w = Waiter {
                    db,
                    keys,
                    zset,
                    action: Action::Wake { tx },
                };
                sh.blocked.add(id, w);
                true
            })
            .await;
        rxs.push(rx);
    }
    if stale {
        // A slot moved while registering: undo, route again.
        for &c in by_core.keys() {
            core.run_on(c, move |sh| sh.blocked.remove(id)).await;
        }
        return false;
    }
    let mut tmp = BytesMut::new();
    crate::multi::run(core, db, idx, args.clone(), proto, now_ms(), &mut tmp).await;
    let end = if &tmp[..] != WOULD_BLOCK {
        End::Got(tmp.freeze())
    } else {
        match wait(sess, &mut rxs, deadline).await {
            End::Got(_) => End::Got(Bytes::new()),
            e => e,
        }
    };
    for &c in by_core.keys() {
        core.run_on(c, move |sh| sh.blocked.remove(id)).await;
    }
    match end {
        End::Got(b) if !b.is_empty() => {
            out.extend_from_slice(&b);
            true
        }
        End::Got(_) => false,
        End::TimedOut | End::Unblocked(false) => {
            encode::null_array(out, proto);
            true
        }
        End::Unblocked(true) => {
            encode::error(out, UNBLOCKED);
            true
        }
        End::Closed => {
            sess.quit = true;
            true
        }
    }
}
