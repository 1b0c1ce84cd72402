//! Generic key commands (Redis's `db.c` / `expire.c`) that run on a shard: deletion, existence,
//! types, expiry, renames, copies, moves between databases, OBJECT.

use super::{err, Ctx, Handler};

/// The key commands served by shards.
pub static HANDLERS: &[(&str, Handler)] = &[
    ("del", del),
    ("unlink", del),
    ("exists", exists),
    ("touch", touch),
    ("type", type_),
    ("expire", expire),
    ("pexpire", pexpire),
    ("expireat", expireat),
    ("pexpireat", pexpireat),
    ("ttl", ttl),
    ("pttl", pttl),
    ("expiretime", expiretime),
    ("pexpiretime", pexpiretime),
    ("persist", persist),
    ("rename", rename),
    ("renamenx", renamenx),
    ("copy", copy),
    ("move", move_),
    ("object", object),
];

fn del(ctx: &mut Ctx) {
    let now = ctx.now;
    let db = &mut ctx.dbs[ctx.db];
    let mut n = 0;
    for k in &ctx.args[1..] {
        if db.contains(k, now) {
            db.delete(k);
            n += 1;
        }
    }
    ctx.int_reply(n)
}

fn exists(ctx: &mut Ctx) {
    let now = ctx.now;
    let db = &mut ctx.dbs[ctx.db];
    let n = ctx.args[1..].iter().filter(|k| db.contains(k, now)).count();
    ctx.int_reply(n as i64)
}

/// TOUCH: like EXISTS, but each present key counts as accessed.
fn touch(ctx: &mut Ctx) {
    let now = ctx.now;
    let db = &mut ctx.dbs[ctx.db];
    let n = ctx.args[1..]
        .iter()
        .filter(|k| db.get(k, now).is_some())
        .count();
    ctx.int_reply(n as i64)
}

fn type_(ctx: &mut Ctx) {
    let now = ctx.now;
    let t = ctx.dbs[ctx.db]
        .peek(&ctx.args[1], now)
        .map_or("none", |e| e.value.type_name());
    ctx.simple(t)
}

fn expire_generic(ctx: &mut Ctx, unit: i64, absolute: bool, name: &str) {
    // Redis checks the options before the time argument.
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for i in 3..ctx.args.len() {
        if ctx.is(i, "nx") {
            nx = true;
        } else if ctx.is(i, "xx") {
            xx = true;
        } else if ctx.is(i, "gt") {
            gt = true;
        } else if ctx.is(i, "lt") {
            lt = true;
        } else {
            let a = String::from_utf8_lossy(ctx.arg(i)).to_string();
            return ctx.err(&format!("ERR Unsupported option {a}"));
        }
    }
    if nx && (xx || gt || lt) {
        return ctx.err("ERR NX and XX, GT or LT options at the same time are not compatible");
    }
    if gt && lt {
        return ctx.err("ERR GT and LT options at the same time are not compatible");
    }
    let Some(when) = ctx.int(2) else { return };
    let invalid = format!("ERR invalid expire time in '{name}' command");
    let Some(ms) = when.checked_mul(unit) else {
        return ctx.err(&invalid);
    };
    let at = if absolute {
        Some(ms)
    } else {
        ms.checked_add(ctx.now as i64)
    };
    let Some(at) = at else {
        return ctx.err(&invalid);
    };
    let now = ctx.now;
    let key = ctx.arg(1).clone();
    let db = ctx.db();
    let Some(e) = db.get(&key, now) else {
        return ctx.int_reply(0);
    };
    let cur = e.expire_at();
    // A key without expiry counts as an infinite TTL for GT/LT.
    let refused = (nx && cur != 0)
        || (xx && cur == 0)
        || (gt && (cur == 0 || at <= cur as i64))
        || (lt && cur != 0 && at >= cur as i64);
    if refused {
        return ctx.int_reply(0);
    }
    if at <= now as i64 {
        db.delete(&key);
        ctx.propagate_as(vec![super::argv(&[b"DEL", &key])]);
    } else {
        db.set_expire(&key, at as u64, now);
        let at = at.to_string();
        ctx.propagate_as(vec![super::argv(&[b"PEXPIREAT", &key, at.as_bytes()])]);
    }
    ctx.int_reply(1)
}

fn expire(ctx: &mut Ctx) {
    expire_generic(ctx, 1000, false, "expire")
}
fn pexpire(ctx: &mut Ctx) {
    expire_generic(ctx, 1, false, "pexpire")
}
fn expireat(ctx: &mut Ctx) {
    expire_generic(ctx, 1000, true, "expireat")
}
fn pexpireat(ctx: &mut Ctx) {
    expire_generic(ctx, 1, true, "pexpireat")
}

/// Reply -2 (missing), -1 (no expiry) or `f(expire_at, now)`.
fn ttl_generic(ctx: &mut Ctx, f: fn(u64, u64) -> i64) {
    let now = ctx.now;
    let r = match ctx.dbs[ctx.db].peek(&ctx.args[1], now) {
        None => -2,
        Some(e) if e.expire_at() == 0 => -1,
        Some(e) => f(e.expire_at(), now),
    };
    ctx.int_reply(r)
}

fn ttl(ctx: &mut Ctx) {
    ttl_generic(ctx, |at, now| ((at - now + 500) / 1000) as i64)
}
fn pttl(ctx: &mut Ctx) {
    ttl_generic(ctx, |at, now| (at - now) as i64)
}
fn expiretime(ctx: &mut Ctx) {
    ttl_generic(ctx, |at, _| ((at + 500) / 1000) as i64)
}
fn pexpiretime(ctx: &mut Ctx) {
    ttl_generic(ctx, |at, _| at as i64)
}

fn persist(ctx: &mut Ctx) {
    let now = ctx.now;
    let key = ctx.arg(1).clone();
    let db = ctx.db();
    let had = db.get(&key, now).is_some_and(|e| e.expire_at() != 0);
    if had {
        db.set_expire(&key, 0, now);
    }
    ctx.int_reply(had as i64)
}

fn rename_generic(ctx: &mut Ctx, nx: bool) {
    let now = ctx.now;
    let (src, dst) = (ctx.arg(1).clone(), ctx.arg(2).clone());
    let db = ctx.db();
    if !db.contains(&src, now) {
        return ctx.err(err::NO_SUCH_KEY);
    }
    if src == dst {
        return if nx { ctx.int_reply(0) } else { ctx.ok() };
    }
    if nx && db.contains(&dst, now) {
        return ctx.int_reply(0);
    }
    if let Some(e) = db.remove(&src) {
        db.insert_entry(&dst, e);
    }
    if nx {
        ctx.int_reply(1)
    } else {
        ctx.ok()
    }
}

fn rename(ctx: &mut Ctx) {
    rename_generic(ctx, false)
}
fn renamenx(ctx: &mut Ctx) {
    rename_generic(ctx, true)
}

/// Parse a database index argument, replying the Redis error when invalid.
pub fn db_index(ctx: &mut Ctx, i: usize) -> Option<usize> {
    let n = ctx.int(i)?;
    if n < 0 || n as usize >= ctx.dbs.len() {
        ctx.err(err::DB_RANGE);
        return None;
    }
    Some(n as usize)
}

fn copy(ctx: &mut Ctx) {
    let mut target = ctx.db;
    let mut replace = false;
    let mut i = 3;
    while i < ctx.args.len() {
        if ctx.is(i, "replace") {
            replace = true;
        } else if ctx.is(i, "db") && i + 1 < ctx.args.len() {
            let Some(d) = db_index(ctx, i + 1) else {
                return;
            };
            target = d;
            i += 1;
        } else {
            return ctx.err(err::SYNTAX);
        }
        i += 1;
    }
    let (src, dst) = (ctx.arg(1).clone(), ctx.arg(2).clone());
    if src == dst && target == ctx.db {
        return ctx.err(err::SAME_OBJECT);
    }
    let now = ctx.now;
    let Some(e) = ctx.dbs[ctx.db].get(&src, now).map(|e| e.to_entry()) else {
        return ctx.int_reply(0);
    };
    let tdb = &mut ctx.dbs[target];
    if tdb.contains(&dst, now) && !replace {
        return ctx.int_reply(0);
    }
    let int = e.encoding() == "int"
        && matches!(&e.value, crate::value::Value::Str(b)
            if resp::parse_i64(b).is_some_and(|n| (0..10_000).contains(&n)));
    tdb.insert_entry(&dst, e);
    if int {
        // Redis's COPY duplicates a shared integer into an object of its own.
        tdb.mark_copy(&dst);
    }
    ctx.int_reply(1)
}

fn move_(ctx: &mut Ctx) {
    let Some(target) = db_index(ctx, 2) else {
        return;
    };
    if target == ctx.db {
        return ctx.err(err::SAME_OBJECT);
    }
    let now = ctx.now;
    let key = ctx.arg(1).clone();
    if !ctx.dbs[ctx.db].contains(&key, now) || ctx.dbs[target].contains(&key, now) {
        return ctx.int_reply(0);
    }
    if let Some(e) = ctx.dbs[ctx.db].remove(&key) {
        ctx.dbs[target].insert_entry(&key, e);
    }
    ctx.int_reply(1)
}

fn object(ctx: &mut Ctx) {
    if ctx.is(1, "help") {
        let lines = [
            "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "ENCODING <key>",
            "    Return the kind of internal representation used in order to store the value",
            "    associated with a <key>.",
            "FREQ <key>",
            "    Return the access frequency index of the <key>. The returned integer is",
            "    proportional to the logarithm of the recent access frequency of the key.",
            "IDLETIME <key>",
            "    Return the idle time of the <key>, that is the approximated number of",
            "    seconds elapsed since the last access to the key.",
            "REFCOUNT <key>",
            "    Return the number of references of the value associated with the specified",
            "    <key>.",
            "HELP",
            "    Prints this help.",
        ];
        ctx.array(lines.len());
        for l in lines {
            ctx.simple(l);
        }
        return;
    }
    let sub = String::from_utf8_lossy(ctx.arg(1)).to_lowercase();
    if ctx.args.len() != 3 || !["encoding", "freq", "idletime", "refcount"].contains(&sub.as_str())
    {
        let s = String::from_utf8_lossy(ctx.arg(1)).to_string();
        return ctx.err(&format!(
            "ERR unknown subcommand or wrong number of arguments for '{s}'. Try OBJECT HELP."
        ));
    }
    let now = ctx.now;
    // Not an access (Redis's LOOKUP_NOTOUCH).
    let Some(e) = ctx.dbs[ctx.db].peek(&ctx.args[2], now) else {
        return ctx.null();
    };
    let lfu = crate::db::clock::lfu();
    let c = e.clock();
    match sub.as_str() {
        "encoding" => {
            let enc = e.encoding();
            ctx.bulk(enc.as_bytes())
        }
        // Redis shares one object per integer 0..9999 between keys (reference count INT_MAX)
        // unless an LRU/LFU maxmemory policy needs a clock per key; nothing else is shared.
        "refcount" => {
            let shared = e.shared_int() && crate::evict::shares_integers();
            ctx.int_reply(if shared { i32::MAX as i64 } else { 1 })
        }
        "freq" if lfu => ctx.int_reply(crate::db::clock::decayed(c) as i64),
        "freq" => ctx.err(
            "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        ),
        _ if lfu => ctx.err(
            "ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        ),
        _ => ctx.int_reply(crate::db::clock::idle_secs(c) as i64),
    }
}
