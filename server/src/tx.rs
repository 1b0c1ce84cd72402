//! Transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH.
//!
//! While a connection is in MULTI its commands are checked (unknown command, arity, AUTH: an error
//! marks the transaction so EXEC aborts with EXECABORT) and queued. EXEC gathers the keys of every
//! queued command plus the watched keys:
//! - all on one core: the whole queue runs in one step on that shard (after checking WATCH there),
//!   so nothing interleaves with it;
//! - on several cores: `multi::run_atomic` holds the shards in core order, checks WATCH, runs the
//!   queue on a scratch copy of the keys and writes back, like any multi-core command.
//!
//! WATCH registers the key with its owner shard ([`crate::db::Db::watch`]) and records the key's
//! modification count; every mutation through `Db` (writes from any core, expiry, FLUSHDB, slot
//! moves) bumps it, and EXEC compares.
//!
//! Whole-keyspace commands (FLUSHDB, DBSIZE, KEYS…) inside a transaction run in order between the
//! keyed parts, which stay atomic each; connection commands (PING, SELECT…) run in order of replies
//! but touch no data.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use resp::command::{CommandSpec, ALLKEYS, CONN};
use resp::{encode, Args, Proto};

use crate::cmd::{self, types::WOULD_BLOCK};
use crate::conn::{self, Plan, Session};
use crate::core::Core;
use crate::multi::{self, WatchedKey};
use crate::shard::Cmd;

/// The EXECABORT error.
pub const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";

/// A connection's transaction state.
#[derive(Default)]
pub struct TxState {
    multi: Option<Multi>,
    watched: Vec<WatchedKey>,
}

struct Multi {
    queued: Vec<Queued>,
    dirty: bool,
    /// The database queued commands run in (a queued SELECT changes it for what follows).
    db: usize,
}

struct Queued {
    spec: &'static CommandSpec,
    idx: usize,
    db: usize,
    args: Args,
}

impl TxState {
    /// Whether keys are watched (WATCH without EXEC, DISCARD or UNWATCH yet).
    pub fn watching(&self) -> bool {
        !self.watched.is_empty()
    }

    /// Whether the connection is between MULTI and EXEC/DISCARD.
    pub fn in_multi(&self) -> bool {
        self.multi.is_some()
    }

    /// For CLIENT PAUSE WRITE: whether EXEC (`spec`) runs a transaction that may write or
    /// replicate (false for any other command).
    pub fn may_replicate(&self, spec: &CommandSpec) -> bool {
        spec.name == "exec"
            && self
                .multi
                .as_ref()
                .is_some_and(|m| m.queued.iter().any(|q| crate::pause::may_replicate(q.spec)))
    }

    /// A command was refused while queuing: EXEC will answer EXECABORT.
    pub fn flag(&mut self) {
        if let Some(m) = &mut self.multi {
            m.dirty = true;
        }
    }
}

/// Whether `spec` is queued inside MULTI (everything except the transaction control commands,
/// QUIT and RESET).
pub fn queues(spec: &CommandSpec) -> bool {
    !matches!(
        spec.name,
        "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
    )
}

/// Queue a command inside MULTI and answer `+QUEUED`.
pub fn queue(
    core: &Core,
    sess: &mut Session,
    spec: &'static CommandSpec,
    idx: usize,
    args: Args,
    plan: &mut Plan,
    out: &mut BytesMut,
) {
    let ndb = core.shard.borrow().dbs.len();
    if let Some(m) = &mut sess.tx.multi {
        let db = m.db;
        if spec.name == "select" {
            if let Some(n) = resp::parse_i64(&args[1]).filter(|n| (0..ndb as i64).contains(n)) {
                m.db = n as usize;
            }
        }
        m.queued.push(Queued {
            spec,
            idx,
            db,
            args,
        });
    }
    let t = plan.target(out);
    let start = t.len();
    encode::simple(t, "QUEUED");
    plan.written(start);
}

/// Run MULTI, EXEC, DISCARD, WATCH or UNWATCH (pending replies already flushed to `out`).
pub async fn run(
    core: &Rc<Core>,
    sess: &mut Session,
    spec: &'static CommandSpec,
    args: Args,
    now: u64,
    out: &mut BytesMut,
) {
    match spec.name {
        "multi" => {
            if sess.tx.multi.is_some() {
                return encode::error(out, "ERR MULTI calls can not be nested");
            }
            sess.tx.multi = Some(Multi {
                queued: Vec::new(),
                dirty: false,
                db: sess.db,
            });
            sess.info.in_multi.store(true, Ordering::Relaxed);
            encode::ok(out);
        }
        "discard" => {
            sess.info.in_multi.store(false, Ordering::Relaxed);
            if sess.tx.multi.take().is_none() {
                return encode::error(out, "ERR DISCARD without MULTI");
            }
            unwatch_all(core, sess).await;
            encode::ok(out);
        }
        "unwatch" => {
            unwatch_all(core, sess).await;
            encode::ok(out);
        }
        "watch" => {
            if sess.tx.multi.is_some() {
                return encode::error(out, "ERR WATCH inside MULTI is not allowed");
            }
            watch(core, sess, &args[1..], now).await;
            encode::ok(out);
        }
        "exec" => exec(core, sess, now, out).await,
        _ => encode::error(out, &conn::unknown_command(&args)),
    }
}

/// Forget the transaction and every watched key (RESET, disconnect).
pub async fn reset(core: &Rc<Core>, sess: &mut Session) {
    sess.tx.multi = None;
    sess.info.in_multi.store(false, Ordering::Relaxed);
    unwatch_all(core, sess).await;
}

async fn watch(core: &Rc<Core>, sess: &mut Session, keys: &[Bytes], now: u64) {
    let db = sess.db;
    let mut by_core: BTreeMap<usize, Vec<Bytes>> = BTreeMap::new();
    for k in keys {
        let known = sess
            .tx
            .watched
            .iter()
            .any(|(d, wk, _, _)| *d == db && wk == k);
        let pending = by_core.values().any(|v| v.contains(k));
        if !known && !pending {
            by_core
                .entry(core.shared.owner(resp::slot(k)))
                .or_default()
                .push(k.clone());
        }
    }
    // Each key registers with the core owning its slot when the registration runs (a slot that
    // moved meanwhile sends the key on to its new owner).
    let mut todo: Vec<(usize, Vec<Bytes>)> = by_core.into_iter().collect();
    while let Some((c, ks)) = todo.pop() {
        let ks2 = ks.clone();
        let versions: Vec<Option<u64>> = core
            .run_on(c, move |sh| {
                ks2.iter()
                    .map(|k| {
                        let owned = sh.owns(resp::slot(k));
                        owned.then(|| sh.dbs.get_mut(db).map_or(0, |d| d.watch(k, now)))
                    })
                    .collect()
            })
            .await;
        for (k, v) in ks.into_iter().zip(versions) {
            match v {
                Some(v) => sess.tx.watched.push((db, k, c, v)),
                None => todo.push((core.shared.owner(resp::slot(&k)), vec![k])),
            }
        }
    }
}

async fn unwatch_all(core: &Rc<Core>, sess: &mut Session) {
    let watched = std::mem::take(&mut sess.tx.watched);
    let mut by_core: BTreeMap<usize, Vec<(usize, Bytes)>> = BTreeMap::new();
    for (d, k, c, _) in watched {
        by_core.entry(c).or_default().push((d, k));
    }
    for (c, ks) in by_core {
        core.run_on(c, move |sh| {
            for (d, k) in &ks {
                if let Some(db) = sh.dbs.get_mut(*d) {
                    db.unwatch(k);
                }
            }
        })
        .await;
    }
}

/// What a queued command is at EXEC time.
enum Kind {
    /// Runs on shards (keyed, or keyless like a blocking pop on nothing).
    Data,
    /// Answered by the connection.
    Conn,
    /// Whole keyspace.
    Global,
}

fn kind(q: &Queued) -> Kind {
    if q.spec.has(ALLKEYS) {
        Kind::Global
    } else if q.spec.has(CONN) || cmd::handler(q.idx).is_none() {
        Kind::Conn
    } else {
        Kind::Data
    }
}

async fn exec(core: &Rc<Core>, sess: &mut Session, now: u64, out: &mut BytesMut) {
    sess.info.in_multi.store(false, Ordering::Relaxed);
    let Some(m) = sess.tx.multi.take() else {
        return encode::error(out, "ERR EXEC without MULTI");
    };
    if m.dirty {
        unwatch_all(core, sess).await;
        return encode::error(out, EXECABORT);
    }
    let watched = std::mem::take(&mut sess.tx.watched);
    let proto = sess.proto;
    let n = m.queued.len();
    let mut replies: Vec<Bytes> = vec![Bytes::new(); n];
    let mut first = true;
    let mut i = 0;
    let mut aborted = false;
    // At least once: an empty transaction still checks the watched keys.
    while i < n || first {
        // One atomic segment: every data command up to the next whole-keyspace command.
        let mut seg: Vec<(usize, Cmd)> = Vec::new();
        let mut conns: Vec<usize> = Vec::new();
        while i < n && !matches!(kind(&m.queued[i]), Kind::Global) {
            let q = &m.queued[i];
            match kind(q) {
                Kind::Data => seg.push((
                    i,
                    Cmd {
                        db: q.db as u8,
                        idx: q.idx as u16,
                        args: q.args.clone(),
                        slot: crate::shard::NO_SLOT,
                    },
                )),
                _ => conns.push(i),
            }
            i += 1;
        }
        if first || !seg.is_empty() {
            let w = if first { watched.clone() } else { Vec::new() };
            let (pos, cmds): (Vec<usize>, Vec<Cmd>) = seg.into_iter().unzip();
            let mut buf = BytesMut::new();
            let mut ends = Vec::new();
            if !atomic(core, cmds, w, proto, now, &mut buf, &mut ends).await {
                aborted = true;
                break;
            }
            let buf = buf.freeze();
            let mut s = 0;
            for (p, e) in pos.into_iter().zip(ends) {
                let e = e as usize;
                replies[p] = unblocked(m.queued[p].spec.name, buf.slice(s..e), proto);
                s = e;
            }
        }
        first = false;
        for p in conns {
            let q = &m.queued[p];
            let mut buf = BytesMut::new();
            if q.spec.name == "unwatch" {
                // EXEC forgets the watched keys anyway (after the check, done above).
                encode::ok(&mut buf);
                replies[p] = buf.freeze();
                continue;
            }
            let mut plan = Plan::new(core.ncores());
            let saved = sess.db;
            sess.db = q.db;
            conn::run_conn(
                core,
                sess,
                q.spec,
                q.idx,
                q.args.clone(),
                now,
                &mut plan,
                &mut buf,
            )
            .await;
            if q.spec.name != "select" {
                sess.db = saved;
            }
            replies[p] = buf.freeze();
        }
        if i < n {
            let q = &m.queued[i];
            let mut buf = BytesMut::new();
            let saved = sess.db;
            sess.db = q.db;
            crate::global::run(core, sess, q.spec, q.idx, q.args.clone(), now, &mut buf).await;
            sess.db = saved;
            replies[i] = buf.freeze();
            i += 1;
        }
    }
    sess.tx.watched = watched;
    unwatch_all(core, sess).await;
    if aborted {
        return encode::null_array(out, proto);
    }
    if crate::monitor::active() {
        for q in &m.queued {
            if !crate::monitor::hidden(q.spec.name, q.spec.has(resp::command::ADMIN), &q.args) {
                crate::monitor::feed(q.db, &sess.info.addr, &q.args);
            }
        }
    }
    encode::array(out, n);
    for r in replies {
        out.extend_from_slice(&r);
    }
}

/// A blocking command inside a transaction never blocks: it answers as if it timed out.
fn unblocked(name: &str, reply: Bytes, proto: Proto) -> Bytes {
    if &reply[..] != WOULD_BLOCK {
        return reply;
    }
    let mut b = BytesMut::new();
    match name {
        "blmove" | "brpoplpush" => encode::null(&mut b, proto),
        _ => encode::null_array(&mut b, proto),
    }
    b.freeze()
}

/// Run `cmds` atomically after checking `watched`; false (nothing ran) when a watched key changed.
/// A watched key whose slot moved to another core since WATCH counts as changed (its
/// modification count stayed behind on the old core).
async fn atomic(
    core: &Rc<Core>,
    cmds: Vec<Cmd>,
    watched: Vec<WatchedKey>,
    proto: Proto,
    now: u64,
    out: &mut BytesMut,
    ends: &mut Vec<u32>,
) -> bool {
    let mut keys: Vec<(Bytes, usize)> = Vec::new();
    for c in &cmds {
        keys.extend(multi::touched_keys(c.idx as usize, &c.args, c.db as usize));
    }
    let mut cmds = cmds;
    let mut watched = watched;
    loop {
        let owner = |k: &Bytes| core.shared.owner(resp::slot(k));
        let mut owners: Vec<usize> = keys
            .iter()
            .map(|(k, _)| owner(k))
            .chain(watched.iter().map(|(_, k, _, _)| owner(k)))
            .collect();
        owners.sort_unstable();
        owners.dedup();
        if owners.len() > 1 {
            return multi::run_atomic(core, keys, watched, &cmds, proto, now, out, ends).await;
        }
        let target = owners.first().copied().unwrap_or(core.id);
        if watched.iter().any(|(_, _, c, _)| *c != target) {
            return false; // a watched key's slot moved to another core since WATCH
        }
        let slots: Vec<u16> = keys
            .iter()
            .map(|(k, _)| k)
            .chain(watched.iter().map(|(_, k, _, _)| k))
            .map(|k| resp::slot(k))
            .collect();
        let r = core
            .run_on(target, move |sh| {
                if !slots.iter().all(|&s| sh.owns(s)) {
                    // A slot moved on the way here: route again.
                    return Err((cmds, watched));
                }
                let clean = watched.iter().all(|(d, k, _, v)| {
                    sh.dbs.get_mut(*d).and_then(|db| db.watch_version(k, now)) == Some(*v)
                });
                if !clean {
                    return Ok((false, Bytes::new(), Vec::new()));
                }
                let mut out = BytesMut::new();
                let mut ends = Vec::with_capacity(cmds.len());
                let track = crate::repl::prop::active();
                if track {
                    sh.capture = Some(Vec::new());
                }
                for c in &cmds {
                    // Every key's slot is owned here (checked above): this always runs.
                    let _ran = sh.execute(c, proto, now, &mut out);
                    ends.push(out.len() as u32);
                }
                if track {
                    // The transaction's effects, as one MULTI/EXEC block, before the shard moves on.
                    let fx = sh.capture.take().unwrap_or_default();
                    crate::repl::prop::log().append(&fx, true);
                }
                Ok((true, out.freeze(), ends))
            })
            .await;
        let (ok, bytes, e) = match r {
            Ok(r) => r,
            Err((c, w)) => {
                cmds = c;
                watched = w;
                continue;
            }
        };
        if ok {
            let base = out.len() as u32;
            out.extend_from_slice(&bytes);
            ends.extend(e.into_iter().map(|x| x + base));
        }
        return ok;
    }
}
