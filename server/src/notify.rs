//! Keyspace notifications (`notify-keyspace-events`), as Redis 7.0 emits them.
//!
//! # Cost when off
//! [`enabled`] is one relaxed atomic load; [`crate::shard::Shard::execute`] does nothing more while
//! the configured flags are empty (the default).
//!
//! # How events are found
//! Before a WRITE command runs, [`Probe::before`] records for each key it names (plus the
//! destination of `MOVE`/`COPY … DB`) whether the key exists and its modification count (the WATCH
//! counter of `Db`, which every mutation bumps). After the command, [`Probe::after`] turns the
//! per-key facts (existed, exists, modified) plus the reply into Redis's events with a per-command
//! table ([`plan`]): `set` on SET, `lpop` then `del` on an LPOP emptying its list, `srem`/`del`/
//! `sadd` on SMOVE, `rename_from`/`rename_to`… Keys created by the command get `new` (class `n`)
//! first, keys it deleted get `del` last unless the command's own event already said so. Keys
//! removed by expiry (lazily by any command, or by the active cycle) get `expired`.
//!
//! # Delivery
//! Events go to a per-core outbox (thread-local: a core is one thread); a per-core task
//! ([`start`]) hands each batch to every core's pub/sub registry, one batch after the other, so a
//! key's events (all produced on its owning core) reach every subscriber in order. Events of
//! different keys owned by different cores may interleave differently than on Redis.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};

use bytes::Bytes;
use resp::command::{CommandSpec, WRITE};

use crate::core::Core;
use crate::db::Db;

pub const KEYSPACE: u32 = 1 << 0;
pub const KEYEVENT: u32 = 1 << 1;
pub const GENERIC: u32 = 1 << 2;
pub const STRING: u32 = 1 << 3;
pub const LIST: u32 = 1 << 4;
pub const SET: u32 = 1 << 5;
pub const HASH: u32 = 1 << 6;
pub const ZSET: u32 = 1 << 7;
pub const EXPIRED: u32 = 1 << 8;
pub const EVICTED: u32 = 1 << 9;
pub const STREAM: u32 = 1 << 10;
pub const KEY_MISS: u32 = 1 << 11;
pub const LOADED: u32 = 1 << 12;
pub const MODULE: u32 = 1 << 13;
pub const NEW: u32 = 1 << 14;
/// `A`: every class but `m` and `n` (Redis's `NOTIFY_ALL`).
pub const ALL: u32 =
    GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;

/// The configured flags (0: off).
static FLAGS: AtomicU32 = AtomicU32::new(0);

/// Whether any notification may be emitted (one relaxed load).
#[inline]
pub fn enabled() -> bool {
    FLAGS.load(Ordering::Relaxed) != 0
}

/// Set the flags (CONFIG SET notify-keyspace-events).
pub fn set_flags(f: u32) {
    FLAGS.store(f, Ordering::Relaxed);
}

/// Redis's `keyspaceEventsStringToFlags`: `None` on an unknown character.
pub fn parse(classes: &str) -> Option<u32> {
    let mut f = 0;
    for c in classes.chars() {
        f |= match c {
            'A' => ALL,
            'g' => GENERIC,
            '$' => STRING,
            'l' => LIST,
            's' => SET,
            'h' => HASH,
            'z' => ZSET,
            'x' => EXPIRED,
            'e' => EVICTED,
            'K' => KEYSPACE,
            'E' => KEYEVENT,
            't' => STREAM,
            'm' => KEY_MISS,
            'd' => MODULE,
            'n' => NEW,
            _ => return None,
        };
    }
    Some(f)
}

/// Redis's `keyspaceEventsFlagsToString`: the canonical letters CONFIG GET shows.
pub fn to_string(f: u32) -> String {
    let mut s = String::new();
    if f & ALL == ALL {
        s.push('A');
    } else {
        for (bit, c) in [
            (GENERIC, 'g'),
            (STRING, '$'),
            (LIST, 'l'),
            (SET, 's'),
            (HASH, 'h'),
            (ZSET, 'z'),
            (EXPIRED, 'x'),
            (EVICTED, 'e'),
            (STREAM, 't'),
            (MODULE, 'd'),
            (NEW, 'n'),
        ] {
            if f & bit != 0 {
                s.push(c);
            }
        }
    }
    for (bit, c) in [(KEYSPACE, 'K'), (KEYEVENT, 'E'), (KEY_MISS, 'm')] {
        if f & bit != 0 {
            s.push(c);
        }
    }
    s
}

struct Outbox {
    /// Channel, payload, and whether the channel is a shard channel (`SPUBLISH`).
    msgs: Vec<(Bytes, Bytes, bool)>,
    waker: Option<Waker>,
}

thread_local! {
    static OUTBOX: RefCell<Outbox> = const { RefCell::new(Outbox { msgs: Vec::new(), waker: None }) };
}

/// Redis's `notifyKeyspaceEvent`: queue the keyspace and/or keyevent message for delivery.
pub fn emit(class: u32, event: &str, key: &[u8], db: usize) {
    let f = FLAGS.load(Ordering::Relaxed);
    if f & class == 0 {
        return;
    }
    OUTBOX.with(|o| {
        let mut o = o.borrow_mut();
        if f & KEYSPACE != 0 {
            let mut ch = format!("__keyspace@{db}__:").into_bytes();
            ch.extend_from_slice(key);
            o.msgs
                .push((ch.into(), Bytes::copy_from_slice(event.as_bytes()), false));
        }
        if f & KEYEVENT != 0 {
            let ch = format!("__keyevent@{db}__:{event}");
            o.msgs.push((ch.into(), Bytes::copy_from_slice(key), false));
        }
        if let Some(w) = o.waker.take() {
            w.wake();
        }
    });
}

/// Queue a message for every core's subscribers, behind the events queued so far (`PUBLISH`
/// or `SPUBLISH`, with `shard`, from a script).
pub fn queue(channel: Bytes, payload: Bytes, shard: bool) {
    OUTBOX.with(|o| {
        let mut o = o.borrow_mut();
        o.msgs.push((channel, payload, shard));
        if let Some(w) = o.waker.take() {
            w.wake();
        }
    });
}

/// Start this core's delivery task: hands queued events to every core's subscribers, in order.
pub fn start(core: Rc<Core>) {
    glommio::spawn_local(async move {
        loop {
            std::future::poll_fn(|cx| {
                OUTBOX.with(|o| {
                    let mut o = o.borrow_mut();
                    if o.msgs.is_empty() {
                        o.waker = Some(cx.waker().clone());
                        Poll::Pending
                    } else {
                        Poll::Ready(())
                    }
                })
            })
            .await;
            let batch = Arc::new(OUTBOX.with(|o| std::mem::take(&mut o.borrow_mut().msgs)));
            core.broadcast(move |_| {
                for (ch, payload, shard) in batch.iter() {
                    if *shard {
                        crate::pubsub::deliver_shard(ch, payload);
                    } else {
                        crate::pubsub::deliver(ch, payload);
                    }
                }
            })
            .await;
        }
    })
    .detach();
}

/// One event: class, name, key, database.
pub type Event = (u32, &'static str, Bytes, usize);

/// Queue events for delivery (on the core owning their keys, so each key's events stay in order).
pub fn emit_all(events: Vec<Event>) {
    for (class, e, key, db) in events {
        emit(class, e, &key, db);
    }
}

/// Events for keys removed by expiry (`expired`, class `x`).
pub fn expired(db: usize, keys: &[Box<[u8]>]) {
    for k in keys {
        emit(EXPIRED, "expired", k, db);
    }
}

/// `evicted` events for keys removed by maxmemory eviction.
pub fn evicted(db: usize, key: &[u8]) {
    emit(EVICTED, "evicted", key, db);
}

/// What a key looked like around one command.
#[derive(Debug)]
struct KeyState {
    db: usize,
    key: Bytes,
    existed: bool,
    version: u64,
    exists: bool,
    modified: bool,
}

/// The keys of one WRITE command, observed before it runs (see the module documentation).
pub struct Probe {
    keys: Vec<KeyState>,
}

impl Probe {
    /// Record the command's keys before it runs (`None` for commands that emit nothing).
    pub fn before(
        spec: &'static CommandSpec,
        args: &[Bytes],
        db: usize,
        dbs: &mut [Db],
        now: u64,
    ) -> Option<Probe> {
        if !spec.has(WRITE) || dbs.len() <= db {
            return None;
        }
        let mut keys: Vec<(usize, Bytes, usize)> = spec
            .key_positions(args)
            .into_iter()
            .map(|p| (db, args[p].clone(), p))
            .collect();
        let target_db = |i: usize| {
            resp::parse_i64(args.get(i)?)
                .filter(|n| *n >= 0 && (*n as usize) < dbs.len())
                .map(|n| n as usize)
        };
        match spec.name {
            "move" => {
                if let Some(d) = target_db(2) {
                    keys.push((d, args[1].clone(), 2));
                }
            }
            "copy" => {
                let mut i = 3;
                while i + 1 < args.len() {
                    if args[i].eq_ignore_ascii_case(b"db") {
                        if let Some(d) = target_db(i + 1) {
                            if let Some(k) = keys.iter_mut().find(|k| k.2 == 2) {
                                k.0 = d;
                            }
                        }
                    }
                    i += 1;
                }
            }
            _ => {}
        }
        let keys = keys
            .into_iter()
            .map(|(d, key, _)| {
                let existed = dbs[d].contains(&key, now);
                let version = dbs[d].watch(&key, now);
                KeyState {
                    db: d,
                    key,
                    existed,
                    version,
                    exists: false,
                    modified: false,
                }
            })
            .collect();
        Some(Probe { keys })
    }

    /// After the command ran (`reply` is its reply): its events, in order, for [`emit_all`].
    pub fn after(
        mut self,
        name: &str,
        args: &[Bytes],
        dbs: &mut [Db],
        now: u64,
        reply: &[u8],
    ) -> Vec<Event> {
        let mut out = Vec::new();
        for k in &mut self.keys {
            let db = &mut dbs[k.db];
            k.modified = db.watch_version(&k.key, now) != Some(k.version);
            k.exists = db.contains(&k.key, now);
            db.unwatch(&k.key);
        }
        // An error, or a blocking command that blocked, changed nothing.
        if matches!(reply.first(), Some(b'-' | 0) | None) {
            return out;
        }
        let mut ev: Vec<(usize, u32, &'static str)> = Vec::new();
        plan(name, args, &self.keys, reply, &mut ev);
        // `new` first for keys the command created; `del` last for keys it deleted.
        for (i, k) in self.keys.iter().enumerate() {
            if !k.existed
                && k.exists
                && !self.keys[..i]
                    .iter()
                    .any(|o| o.db == k.db && o.key == k.key)
            {
                out.push((NEW, "new", k.key.clone(), k.db));
            }
        }
        for &(i, class, e) in &ev {
            let k = &self.keys[i];
            out.push((class, e, k.key.clone(), k.db));
        }
        for (i, k) in self.keys.iter().enumerate() {
            let said = ev
                .iter()
                .any(|&(j, _, e)| j == i && matches!(e, "del" | "rename_from" | "move_from"));
            let dup = self.keys[..i]
                .iter()
                .any(|o| o.db == k.db && o.key == k.key);
            if k.existed && !k.exists && !said && !dup {
                out.push((GENERIC, "del", k.key.clone(), k.db));
            }
        }
        out
    }
}

/// The integer of an integer reply.
fn int_reply(reply: &[u8]) -> Option<i64> {
    let body = reply.strip_prefix(b":")?;
    let end = body.iter().position(|&b| b == b'\r')?;
    resp::parse_i64(&body[..end])
}

/// Whether a reply is a null (RESP2 or RESP3) or an empty array.
fn is_null(reply: &[u8]) -> bool {
    reply.starts_with(b"$-1")
        || reply.starts_with(b"*-1")
        || reply.starts_with(b"_")
        || reply.starts_with(b"*0\r")
}

/// The events of one command, Redis 7.0's names and classes (see `t_*.c`, `db.c`, `expire.c`):
/// (index into `keys`, class, event), in the order Redis emits them.
fn plan(
    name: &str,
    args: &[Bytes],
    keys: &[KeyState],
    reply: &[u8],
    ev: &mut Vec<(usize, u32, &'static str)>,
) {
    let n = int_reply(reply);
    let positive = n.is_some_and(|n| n > 0);
    let first = |ev: &mut Vec<_>, class, e| {
        if keys.first().is_some_and(|k| k.modified) {
            ev.push((0, class, e));
        }
    };
    let ex = |i: usize| keys.get(i).is_some_and(|k| k.exists && k.modified);
    let opt = |w: &str| {
        args.iter()
            .skip(1)
            .any(|a| a.eq_ignore_ascii_case(w.as_bytes()))
    };
    match name {
        // Strings.
        "set" | "setex" | "psetex" | "getset" => {
            if ex(0) {
                ev.push((0, STRING, "set"));
                let expiring = matches!(name, "setex" | "psetex")
                    || ["ex", "px", "exat", "pxat"].iter().any(|w| opt(w));
                if expiring {
                    ev.push((0, GENERIC, "expire"));
                }
            }
        }
        "setnx" | "msetnx" => {
            if positive {
                (0..keys.len()).for_each(|i| ev.push((i, STRING, "set")));
            }
        }
        "mset" => (0..keys.len()).for_each(|i| ev.push((i, STRING, "set"))),
        "append" => first(ev, STRING, "append"),
        "setrange" if !args[3].is_empty() => first(ev, STRING, "setrange"),
        "incr" | "decr" | "incrby" | "decrby" => first(ev, STRING, "incrby"),
        "incrbyfloat" => first(ev, STRING, "incrbyfloat"),
        "setbit" => first(ev, STRING, "setbit"),
        // BITFIELD: Redis skips the event when OVERFLOW FAIL refused every write (the key it
        // created for them stays); here any write that reached the key counts.
        "bitfield" => first(ev, STRING, "setbit"),
        "bitop" if ex(0) => ev.push((0, STRING, "set")),
        "getdel" if !is_null(reply) => ev.push((0, GENERIC, "del")),
        "getex" => {
            if !is_null(reply) && keys[0].modified {
                if opt("persist") {
                    ev.push((0, GENERIC, "persist"));
                } else if keys[0].exists {
                    ev.push((0, GENERIC, "expire"));
                }
            }
        }
        "pfadd" if positive => ev.push((0, STRING, "pfadd")),
        "pfmerge" => ev.push((0, STRING, "pfadd")),
        // Keys.
        "del" | "unlink" => {}
        "expire" | "pexpire" | "expireat" | "pexpireat" if positive && keys[0].exists => {
            ev.push((0, GENERIC, "expire"))
        }
        "persist" if positive => ev.push((0, GENERIC, "persist")),
        "rename" | "renamenx" => {
            if keys.len() == 2 && keys[0].key != keys[1].key && (name == "rename" || positive) {
                ev.push((0, GENERIC, "rename_from"));
                ev.push((1, GENERIC, "rename_to"));
            }
        }
        "copy" if positive => ev.push((1, GENERIC, "copy_to")),
        "move" => {
            if positive && keys.len() == 2 {
                ev.push((0, GENERIC, "move_from"));
                ev.push((1, GENERIC, "move_to"));
            }
        }
        "restore" | "slotsrestore" => {
            for i in 0..keys.len() {
                if keys[i].exists && keys[i].modified {
                    ev.push((i, GENERIC, "restore"))
                }
            }
        }
        // Lists.
        "lpush" | "lpushx" if positive => ev.push((0, LIST, "lpush")),
        "rpush" | "rpushx" if positive => ev.push((0, LIST, "rpush")),
        "lpop" | "rpop" | "blpop" | "brpop" | "lmpop" | "blmpop" => {
            let left = match name {
                "lpop" | "blpop" => true,
                "rpop" | "brpop" => false,
                _ => opt("left"),
            };
            if is_null(reply) {
                return;
            }
            if let Some(i) = keys.iter().position(|k| k.modified && k.existed) {
                ev.push((i, LIST, if left { "lpop" } else { "rpop" }));
            }
        }
        "lmove" | "blmove" | "rpoplpush" | "brpoplpush" => {
            if !is_null(reply) && keys.len() == 2 {
                let (from, to) = match name {
                    "rpoplpush" | "brpoplpush" => (false, true),
                    _ => (
                        args[3].eq_ignore_ascii_case(b"left"),
                        args[4].eq_ignore_ascii_case(b"left"),
                    ),
                };
                ev.push((1, LIST, if to { "lpush" } else { "rpush" }));
                ev.push((0, LIST, if from { "lpop" } else { "rpop" }));
            }
        }
        "linsert" if positive => ev.push((0, LIST, "linsert")),
        "lset" => ev.push((0, LIST, "lset")),
        "lrem" if positive => ev.push((0, LIST, "lrem")),
        "ltrim" if keys[0].existed => ev.push((0, LIST, "ltrim")),
        // Hashes.
        "hset" | "hmset" => ev.push((0, HASH, "hset")),
        "hsetnx" if positive => ev.push((0, HASH, "hset")),
        "hdel" if positive => ev.push((0, HASH, "hdel")),
        "hincrby" => ev.push((0, HASH, "hincrby")),
        "hincrbyfloat" => ev.push((0, HASH, "hincrbyfloat")),
        // Sets.
        "sadd" if positive => ev.push((0, SET, "sadd")),
        "srem" if positive => ev.push((0, SET, "srem")),
        "spop" if !is_null(reply) => ev.push((0, SET, "spop")),
        "smove" => {
            if positive && keys.len() == 2 {
                ev.push((0, SET, "srem"));
                if !keys[0].exists {
                    ev.push((0, GENERIC, "del"));
                }
                if keys[1].modified {
                    ev.push((1, SET, "sadd"));
                }
            }
        }
        "sinterstore" | "sunionstore" | "sdiffstore" => store(name, SET, keys, ev),
        // SORT … STORE (its destination is key 1): `sortstore` when the result is not empty.
        "sort" if keys.get(1).is_some_and(|k| k.exists) => ev.push((1, LIST, "sortstore")),
        // Sorted sets.
        "zadd" if keys[0].modified => {
            ev.push((0, ZSET, if opt("incr") { "zincr" } else { "zadd" }))
        }
        "zincrby" => ev.push((0, ZSET, "zincr")),
        "geoadd" if keys[0].modified => ev.push((0, ZSET, "zadd")),
        // On the destination: `geosearchstore` (key 0) or, for GEORADIUS … STORE, `georadiusstore`.
        "geosearchstore" => store(name, ZSET, keys, ev),
        "georadius" | "georadiusbymember" if keys.get(1).is_some_and(|k| k.exists) => {
            ev.push((1, ZSET, "georadiusstore"))
        }
        "zrem" if positive => ev.push((0, ZSET, "zrem")),
        "zremrangebyscore" | "zremrangebyrank" | "zremrangebylex" if positive => {
            ev.push((0, ZSET, static_name(name)))
        }
        "zpopmin" | "zpopmax" | "bzpopmin" | "bzpopmax" | "zmpop" | "bzmpop" => {
            let min = match name {
                "zpopmin" | "bzpopmin" => true,
                "zpopmax" | "bzpopmax" => false,
                _ => opt("min"),
            };
            if is_null(reply) {
                return;
            }
            if let Some(i) = keys.iter().position(|k| k.modified && k.existed) {
                ev.push((i, ZSET, if min { "zpopmin" } else { "zpopmax" }));
            }
        }
        "zunionstore" | "zinterstore" | "zdiffstore" | "zrangestore" => store(name, ZSET, keys, ev),
        _ => {}
    }
}

/// `*STORE` commands: their event on the destination when the result is not empty, else `del`
/// (added by the caller) when the destination existed.
fn store(name: &str, class: u32, keys: &[KeyState], ev: &mut Vec<(usize, u32, &'static str)>) {
    if keys.first().is_some_and(|k| k.exists) {
        ev.push((0, class, static_name(name)));
    }
}

/// A command name as the `'static` event name it also is.
fn static_name(name: &str) -> &'static str {
    resp::command::lookup(name.as_bytes()).map_or("", |s| s.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip_like_redis() {
        assert_eq!(parse(""), Some(0));
        assert_eq!(parse("KEA").map(to_string).as_deref(), Some("AKE"));
        assert_eq!(parse("Kx").map(to_string).as_deref(), Some("xK"));
        assert_eq!(parse("Elg$").map(to_string).as_deref(), Some("g$lE"));
        // As in Redis, `A` hides `n` (it is not part of `A`, but the string shows `A` alone).
        assert_eq!(parse("KEAmn").map(to_string).as_deref(), Some("AKEm"));
        assert_eq!(parse("q"), None);
    }
}
