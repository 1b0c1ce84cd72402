//! Set commands (Redis's `t_set.c`).

use rand::seq::SliceRandom;
use resp::encode;

use super::types::{
    bulk_array, bulk_set, drop_if_empty, scan_args, scan_page, scan_reply, set_create, set_mut,
    set_ref,
};
use super::{err, Ctx, Handler};
use crate::value::{Set, Value};

/// The set commands served by shards.
pub static HANDLERS: &[(&str, Handler)] = &[
    ("sadd", sadd),
    ("srem", srem),
    ("scard", scard),
    ("sismember", sismember),
    ("smismember", smismember),
    ("smembers", smembers),
    ("srandmember", srandmember),
    ("spop", spop),
    ("smove", smove),
    ("sinter", sinter),
    ("sintercard", sintercard),
    ("sinterstore", sinterstore),
    ("sunion", sunion),
    ("sunionstore", sunionstore),
    ("sdiff", sdiff),
    ("sdiffstore", sdiffstore),
    ("sscan", sscan),
];

fn sadd(ctx: &mut Ctx) {
    let now = ctx.now;
    let s = match set_create(&mut ctx.dbs[ctx.db], &ctx.args[1], now) {
        Ok(s) => s,
        Err(_) => return ctx.wrongtype(),
    };
    let n = ctx.args[2..].iter().filter(|m| s.insert(m)).count();
    if n == 0 {
        ctx.dbs[ctx.db].untouch(&ctx.args[1]);
    }
    ctx.int_reply(n as i64)
}

fn srem(ctx: &mut Ctx) {
    let now = ctx.now;
    let db = &mut ctx.dbs[ctx.db];
    let n = match set_mut(db, &ctx.args[1], now) {
        Err(_) => return ctx.wrongtype(),
        Ok(None) => 0,
        Ok(Some(s)) => ctx.args[2..].iter().filter(|m| s.remove(m)).count(),
    };
    if n == 0 {
        db.untouch(&ctx.args[1]);
    }
    drop_if_empty(db, &ctx.args[1], now);
    ctx.int_reply(n as i64)
}

/// The set at `key` for reading (cloned out of the database is avoided): `Err` replied WRONGTYPE.
fn read<'a>(ctx: &'a mut Ctx, i: usize) -> Result<Option<&'a mut Set>, ()> {
    let now = ctx.now;
    match set_mut(&mut ctx.dbs[ctx.db], &ctx.args[i], now) {
        Ok(s) => Ok(s),
        Err(_) => {
            encode::error(ctx.out, err::WRONGTYPE);
            Err(())
        }
    }
}

fn scard(ctx: &mut Ctx) {
    let Ok(s) = read(ctx, 1) else { return };
    let n = s.map_or(0, |s| s.len());
    ctx.int_reply(n as i64)
}

fn sismember(ctx: &mut Ctx) {
    let args = ctx.args;
    let Ok(s) = read(ctx, 1) else { return };
    let r = s.is_some_and(|s| s.contains(&args[2]));
    ctx.int_reply(r as i64)
}

fn smismember(ctx: &mut Ctx) {
    let now = ctx.now;
    match set_mut(&mut ctx.dbs[ctx.db], &ctx.args[1], now) {
        Err(_) => encode::error(ctx.out, err::WRONGTYPE),
        Ok(s) => {
            encode::array(ctx.out, ctx.args.len() - 2);
            for m in &ctx.args[2..] {
                encode::int(ctx.out, s.as_ref().is_some_and(|s| s.contains(m)) as i64);
            }
        }
    }
}

fn smembers(ctx: &mut Ctx) {
    let Ok(s) = read(ctx, 1) else { return };
    let m = s.map(|s| s.members()).unwrap_or_default();
    bulk_set(ctx.out, ctx.proto, &m)
}

fn srandmember(ctx: &mut Ctx) {
    if ctx.args.len() > 3 {
        return ctx.err(err::SYNTAX);
    }
    let count = if ctx.args.len() == 3 {
        let Some(c) = ctx.int(2) else { return };
        if c < -(i64::MAX / 2) {
            return ctx.err("ERR value is out of range");
        }
        Some(c)
    } else {
        None
    };
    let Ok(s) = read(ctx, 1) else { return };
    let mut rng = rand::thread_rng();
    // Ok: one member (or none); Err: an array of members.
    let reply: Result<Option<Box<[u8]>>, Vec<Box<[u8]>>> = match (s, count) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(Vec::new()),
        (Some(s), None) => Ok(s.random(&mut rng)),
        // Distinct members: all of them, a shuffled sample of all when most are wanted, else
        // random draws until enough distinct ones (each draw O(1)).
        (Some(s), Some(c)) if c >= 0 && c as u64 >= s.len() as u64 => Err(s.members()),
        (Some(s), Some(c)) if c >= 0 && (c as usize) * 2 > s.len() => {
            let members = s.members();
            Err(members
                .choose_multiple(&mut rng, c as usize)
                .cloned()
                .collect())
        }
        (Some(s), Some(c)) if c >= 0 => {
            let mut seen = hashbrown::HashSet::with_capacity(c as usize);
            let mut picked = Vec::with_capacity(c as usize);
            while picked.len() < c as usize {
                let Some(m) = s.random(&mut rng) else { break };
                if seen.insert(m.clone()) {
                    picked.push(m);
                }
            }
            Err(picked)
        }
        // Negative: that many draws, repeats allowed.
        (Some(s), Some(c)) => Err((0..c.unsigned_abs())
            .map_while(|_| s.random(&mut rng))
            .collect()),
    };
    match reply {
        Ok(Some(m)) => encode::bulk(ctx.out, &m),
        Ok(None) => encode::null(ctx.out, ctx.proto),
        Err(picked) => bulk_array(ctx.out, &picked),
    }
}

fn spop(ctx: &mut Ctx) {
    if ctx.args.len() > 3 {
        return ctx.err(err::SYNTAX);
    }
    let count = if ctx.args.len() == 3 {
        match resp::parse_i64(ctx.arg(2)) {
            Some(c) if c >= 0 => Some(c as usize),
            _ => return ctx.err("ERR value is out of range, must be positive"),
        }
    } else {
        None
    };
    let now = ctx.now;
    let args = ctx.args;
    let key = &args[1];
    let db = &mut ctx.dbs[ctx.db];
    let s = match set_mut(db, key, now) {
        Err(_) => return ctx.wrongtype(),
        Ok(s) => s,
    };
    let mut rng = rand::thread_rng();
    let want = count.unwrap_or(1);
    let mut emptied = false;
    let popped: Vec<Box<[u8]>> = match s {
        None => Vec::new(),
        // All of it: the members in one go (the key is deleted below).
        Some(s) if want >= s.len() => {
            emptied = true;
            let all = s.members();
            for m in &all {
                s.remove(m);
            }
            all
        }
        // A random draw per member popped, each O(1) expected.
        Some(s) => {
            let mut out = Vec::with_capacity(want);
            while out.len() < want {
                let Some(m) = s.pop_random(&mut rng) else {
                    break;
                };
                out.push(m);
            }
            emptied = s.is_empty();
            out
        }
    };
    let popped = &popped[..];
    // Redis never keeps an empty set (and a missing key costs no second lookup).
    if emptied {
        db.remove(key);
    } else if popped.is_empty() {
        db.untouch(key);
    }
    if crate::repl::prop::active() {
        let fx = if popped.is_empty() {
            Vec::new()
        } else {
            let mut c = vec![bytes::Bytes::from_static(b"SREM"), key.clone()];
            c.extend(popped.iter().map(|m| bytes::Bytes::copy_from_slice(m)));
            vec![c]
        };
        ctx.rewrite = Some(fx);
    }
    match count {
        None => match popped.first() {
            Some(m) => encode::bulk(ctx.out, m),
            None => encode::null(ctx.out, ctx.proto),
        },
        Some(_) => bulk_set(ctx.out, ctx.proto, popped),
    }
}

fn smove(ctx: &mut Ctx) {
    let now = ctx.now;
    let (src, dst, m) = (
        ctx.args[1].clone(),
        ctx.args[2].clone(),
        ctx.args[3].clone(),
    );
    let db = &mut ctx.dbs[ctx.db];
    let has = match set_mut(db, &src, now) {
        Err(_) => return ctx.wrongtype(),
        Ok(None) => return ctx.int_reply(0),
        Ok(Some(s)) => s.contains(&m),
    };
    if set_mut(db, &dst, now).is_err() {
        return ctx.wrongtype();
    }
    if src == dst || !has {
        // Nothing moves: neither set is modified.
        db.untouch(&src);
        db.untouch(&dst);
        return ctx.int_reply(has as i64);
    }
    if let Ok(Some(s)) = set_mut(db, &src, now) {
        s.remove(&m);
    }
    drop_if_empty(db, &src, now);
    if let Ok(d) = set_create(db, &dst, now) {
        if !d.insert(&m) {
            // The member was there already: the destination is not modified.
            db.untouch(&dst);
        }
    }
    ctx.int_reply(1)
}

/// The sets at `keys` (None for missing keys), or a WRONGTYPE reply.
pub fn load_sets(ctx: &mut Ctx, keys: &[bytes::Bytes]) -> Option<Vec<Option<Set>>> {
    let now = ctx.now;
    let mut v = Vec::with_capacity(keys.len());
    for k in keys {
        match set_ref(&mut ctx.dbs[ctx.db], k, now) {
            Err(_) => {
                ctx.wrongtype();
                return None;
            }
            Ok(s) => v.push(s.cloned()),
        }
    }
    Some(v)
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Inter,
    Union,
    Diff,
}

fn compute(sets: &[Option<Set>], op: Op, limit: usize) -> Vec<Box<[u8]>> {
    match op {
        Op::Inter => {
            if sets.iter().any(|s| s.as_ref().is_none_or(|s| s.is_empty())) {
                return Vec::new();
            }
            let mut sorted: Vec<&Set> = sets.iter().flatten().collect();
            sorted.sort_by_key(|s| s.len());
            let mut out = Vec::new();
            for m in sorted[0].members() {
                if sorted[1..].iter().all(|s| s.contains(&m)) {
                    out.push(m);
                    if limit != 0 && out.len() >= limit {
                        break;
                    }
                }
            }
            out
        }
        Op::Union => {
            let mut acc = Set::default();
            for s in sets.iter().flatten() {
                for m in s.members() {
                    acc.insert(&m);
                }
            }
            acc.members()
        }
        Op::Diff => {
            let Some(Some(first)) = sets.first() else {
                return Vec::new();
            };
            first
                .members()
                .into_iter()
                .filter(|m| !sets[1..].iter().flatten().any(|s| s.contains(m)))
                .collect()
        }
    }
}

fn set_op(ctx: &mut Ctx, op: Op, store: bool) {
    let first = if store { 2 } else { 1 };
    let keys = ctx.args[first..].to_vec();
    let Some(sets) = load_sets(ctx, &keys) else {
        return;
    };
    let result = compute(&sets, op, 0);
    if !store {
        return bulk_set(ctx.out, ctx.proto, &result);
    }
    let dst = ctx.args[1].clone();
    let db = &mut ctx.dbs[ctx.db];
    db.delete(&dst);
    let n = result.len();
    if n > 0 {
        db.insert(&dst, Value::Set(Set::from_members(result)), 0);
    }
    ctx.int_reply(n as i64)
}

fn sinter(ctx: &mut Ctx) {
    set_op(ctx, Op::Inter, false)
}
fn sinterstore(ctx: &mut Ctx) {
    set_op(ctx, Op::Inter, true)
}
fn sunion(ctx: &mut Ctx) {
    set_op(ctx, Op::Union, false)
}
fn sunionstore(ctx: &mut Ctx) {
    set_op(ctx, Op::Union, true)
}
fn sdiff(ctx: &mut Ctx) {
    set_op(ctx, Op::Diff, false)
}
fn sdiffstore(ctx: &mut Ctx) {
    set_op(ctx, Op::Diff, true)
}

/// Parse `numkeys key… ` starting at argument `at`: the number of keys, or a reply.
pub fn numkeys(ctx: &mut Ctx, at: usize) -> Option<usize> {
    let n = match resp::parse_i64(ctx.arg(at)) {
        Some(n) if n > 0 => n as usize,
        Some(_) => {
            ctx.err("ERR numkeys should be greater than 0");
            return None;
        }
        None => {
            ctx.err("ERR numkeys should be greater than 0");
            return None;
        }
    };
    if n > ctx.args.len() - at - 1 {
        ctx.err("ERR Number of keys can't be greater than number of args");
        return None;
    }
    Some(n)
}

fn sintercard(ctx: &mut Ctx) {
    let Some(n) = numkeys(ctx, 1) else { return };
    let mut limit = 0usize;
    let mut i = 2 + n;
    while i < ctx.args.len() {
        if ctx.is(i, "limit") && i + 1 < ctx.args.len() {
            match resp::parse_i64(ctx.arg(i + 1)) {
                Some(l) if l >= 0 => limit = l as usize,
                _ => return ctx.err("ERR LIMIT can't be negative"),
            }
            i += 2;
        } else {
            return ctx.err(err::SYNTAX);
        }
    }
    let keys = ctx.args[2..2 + n].to_vec();
    let Some(sets) = load_sets(ctx, &keys) else {
        return;
    };
    let r = compute(&sets, Op::Inter, limit);
    ctx.int_reply(r.len() as i64)
}

fn sscan(ctx: &mut Ctx) {
    let Some(o) = scan_args(ctx, |ctx| read(ctx, 1).map(|s| s.is_some())) else {
        return;
    };
    let Ok(Some(s)) = read(ctx, 1) else { return };
    let compact = matches!(s, Set::Ints(_));
    let items: super::types::ScanItems = s.members().into_iter().map(|m| (m, None)).collect();
    let (next, page) = scan_page(items, |k| k, &o, compact);
    scan_reply(ctx.out, next, &page);
}
