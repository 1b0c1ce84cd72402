//! List commands (Redis's `t_list.c`), including the blocking variants: when nothing can be
//! popped, a blocking handler writes [`WOULD_BLOCK`] instead of a reply and the connection waits
//! (`blocking.rs`) for a push on one of its keys, then runs the handler again.

use resp::encode;

use super::types::{
    bulk_array, drop_if_empty, list_create, list_mut, timeout_arg, WrongType, WOULD_BLOCK,
};
use super::{err, Ctx, Handler};
use crate::db::Db;

/// The list commands served by shards.
pub static HANDLERS: &[(&str, Handler)] = &[
    ("lpush", lpush),
    ("rpush", rpush),
    ("lpushx", lpushx),
    ("rpushx", rpushx),
    ("lpop", lpop),
    ("rpop", rpop),
    ("llen", llen),
    ("lindex", lindex),
    ("lset", lset),
    ("lrange", lrange),
    ("ltrim", ltrim),
    ("lrem", lrem),
    ("linsert", linsert),
    ("lpos", lpos),
    ("lmove", lmove),
    ("rpoplpush", rpoplpush),
    ("lmpop", lmpop),
    ("blpop", blpop),
    ("brpop", brpop),
    ("blmove", blmove),
    ("brpoplpush", brpoplpush),
    ("blmpop", blmpop),
];

fn push_generic(ctx: &mut Ctx, left: bool, only_existing: bool) {
    let now = ctx.now;
    let db = &mut ctx.dbs[ctx.db];
    let l = if only_existing {
        match list_mut(db, &ctx.args[1], now) {
            Ok(Some(l)) => l,
            Ok(None) => return ctx.int_reply(0),
            Err(_) => return ctx.wrongtype(),
        }
    } else {
        match list_create(db, &ctx.args[1], now) {
            Ok(l) => l,
            Err(_) => return ctx.wrongtype(),
        }
    };
    for e in &ctx.args[2..] {
        l.push(e, left);
    }
    let n = l.len();
    ctx.int_reply(n as i64)
}

fn lpush(ctx: &mut Ctx) {
    push_generic(ctx, true, false)
}
fn rpush(ctx: &mut Ctx) {
    push_generic(ctx, false, false)
}
fn lpushx(ctx: &mut Ctx) {
    push_generic(ctx, true, true)
}
fn rpushx(ctx: &mut Ctx) {
    push_generic(ctx, false, true)
}

/// Pop up to `n` elements; `Ok(None)` when the key is missing.
fn pop_n(
    db: &mut Db,
    key: &[u8],
    left: bool,
    n: usize,
    now: u64,
) -> Result<Option<Vec<Box<[u8]>>>, WrongType> {
    let Some(l) = list_mut(db, key, now)? else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(n.min(l.len()));
    while out.len() < n {
        match l.pop(left) {
            Some(e) => out.push(e),
            None => break,
        }
    }
    drop_if_empty(db, key, now);
    Ok(Some(out))
}

fn pop_generic(ctx: &mut Ctx, left: bool) {
    if ctx.args.len() > 3 {
        let name = if left { "lpop" } else { "rpop" };
        return ctx.err(&format!(
            "ERR wrong number of arguments for '{name}' command"
        ));
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
    let db = &mut ctx.dbs[ctx.db];
    let key = &ctx.args[1];
    let l = match list_mut(db, key, now) {
        Err(_) => return ctx.wrongtype(),
        Ok(None) => {
            return match count {
                Some(_) => ctx.null_array(),
                None => ctx.null(),
            }
        }
        Ok(Some(l)) => l,
    };
    // The reply is written straight from the list's storage: no copy of the element.
    let out = &mut *ctx.out;
    match count {
        None => {
            if l.pop_with(left, |e| encode::bulk(out, e)).is_none() {
                encode::null(out, ctx.proto);
            }
        }
        Some(c) => {
            let n = c.min(l.len());
            encode::array(out, n);
            if n == 0 {
                // A count of 0 pops nothing: the list is not modified.
                return db.untouch(key);
            }
            for _ in 0..n {
                l.pop_with(left, |e| encode::bulk(out, e));
            }
        }
    }
    if l.is_empty() {
        drop_if_empty(db, key, now);
    }
}

fn lpop(ctx: &mut Ctx) {
    pop_generic(ctx, true)
}
fn rpop(ctx: &mut Ctx) {
    pop_generic(ctx, false)
}

fn llen(ctx: &mut Ctx) {
    let now = ctx.now;
    match list_mut(&mut ctx.dbs[ctx.db], &ctx.args[1], now) {
        Err(_) => ctx.wrongtype(),
        Ok(l) => {
            let n = l.map_or(0, |l| l.len());
            ctx.int_reply(n as i64)
        }
    }
}

/// A Redis index (negative counts from the tail) into a list of `len`.
fn index(i: i64, len: usize) -> Option<usize> {
    let i = if i < 0 { i + len as i64 } else { i };
    (0..len as i64).contains(&i).then_some(i as usize)
}

fn lindex(ctx: &mut Ctx) {
    // Redis's order: the key and its type, then the index.
    let i = resp::parse_i64(&ctx.args[2]);
    let now = ctx.now;
    match list_mut(&mut ctx.dbs[ctx.db], &ctx.args[1], now) {
        Err(_) => encode::error(ctx.out, err::WRONGTYPE),
        Ok(None) => encode::null(ctx.out, ctx.proto),
        Ok(Some(l)) => match i {
            None => encode::error(ctx.out, err::NOT_INT),
            Some(i) => match index(i, l.len()).and_then(|i| l.get(i)) {
                Some(e) => encode::bulk(ctx.out, e),
                None => encode::null(ctx.out, ctx.proto),
            },
        },
    }
}

fn lset(ctx: &mut Ctx) {
    // Redis's order: the key and its type, then the index.
    let i = resp::parse_i64(&ctx.args[2]);
    let now = ctx.now;
    let v = ctx.args[3].clone();
    match list_mut(&mut ctx.dbs[ctx.db], &ctx.args[1], now) {
        Err(_) => ctx.wrongtype(),
        Ok(None) => ctx.err(err::NO_SUCH_KEY),
        Ok(Some(l)) => match i.map(|i| index(i, l.len())) {
            None => encode::error(ctx.out, err::NOT_INT),
            Some(Some(i)) => {
                l.set(i, &v);
                ctx.ok()
            }
            Some(None) => ctx.err("ERR index out of range"),
        },
    }
}

/// Redis's start/stop normalization for LRANGE/LTRIM: the inclusive range, or None when empty.
fn range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let mut s = if start < 0 { start + len } else { start };
    let mut e = if stop < 0 { stop + len } else { stop };
    if s < 0 {
        s = 0;
    }
    if s > e || s >= len {
        return None;
    }
    if e >= len {
        e = len - 1;
    }
    Some((s as usize, e as usize))
}

fn lrange(ctx: &mut Ctx) {
    let Some(s) = ctx.int(2) else { return };
    let Some(e) = ctx.int(3) else { return };
    let now = ctx.now;
    match list_mut(&mut ctx.dbs[ctx.db], &ctx.args[1], now) {
        Err(_) => encode::error(ctx.out, err::WRONGTYPE),
        Ok(None) => encode::array(ctx.out, 0),
        Ok(Some(l)) => match range(s, e, l.len()) {
            None => encode::array(ctx.out, 0),
            Some((s, e)) => {
                encode::array(ctx.out, e - s + 1);
                let out = &mut *ctx.out;
                l.for_range(s, e - s + 1, |x| encode::bulk(out, x));
            }
        },
    }
}

fn ltrim(ctx: &mut Ctx) {
    let Some(s) = ctx.int(2) else { return };
    let Some(e) = ctx.int(3) else { return };
    let now = ctx.now;
    let key = ctx.args[1].clone();
    let db = &mut ctx.dbs[ctx.db];
    match list_mut(db, &key, now) {
        Err(_) => return ctx.wrongtype(),
        Ok(None) => {}
        Ok(Some(l)) => {
            let r = range(s, e, l.len());
            l.trim(r);
        }
    }
    drop_if_empty(db, &key, now);
    ctx.ok()
}

fn lrem(ctx: &mut Ctx) {
    let Some(count) = ctx.int(2) else { return };
    let now = ctx.now;
    let key = ctx.args[1].clone();
    let el = ctx.args[3].clone();
    let db = &mut ctx.dbs[ctx.db];
    let n = match list_mut(db, &key, now) {
        Err(_) => return ctx.wrongtype(),
        Ok(None) => 0,
        Ok(Some(l)) => {
            let limit = if count == 0 {
                usize::MAX
            } else {
                usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX)
            };
            l.remove_matching(&el, limit, count < 0)
        }
    };
    if n == 0 {
        db.untouch(&key);
    }
    drop_if_empty(db, &key, now);
    ctx.int_reply(n as i64)
}

fn linsert(ctx: &mut Ctx) {
    let after = if ctx.is(2, "after") {
        true
    } else if ctx.is(2, "before") {
        false
    } else {
        return ctx.err(err::SYNTAX);
    };
    let now = ctx.now;
    let (pivot, el) = (ctx.args[3].clone(), ctx.args[4].clone());
    let r = match list_mut(&mut ctx.dbs[ctx.db], &ctx.args[1], now) {
        Err(_) => return ctx.wrongtype(),
        Ok(None) => 0,
        Ok(Some(l)) => match l.iter().position(|e| *e == *pivot) {
            Some(p) => {
                l.insert(p + after as usize, &el);
                l.len() as i64
            }
            None => -1,
        },
    };
    if r == -1 {
        // No pivot, no insertion: the list is not modified.
        ctx.dbs[ctx.db].untouch(&ctx.args[1]);
    }
    ctx.int_reply(r)
}

fn lpos(ctx: &mut Ctx) {
    let (mut rank, mut count, mut maxlen) = (1i64, None, 0usize);
    let mut i = 3;
    while i < ctx.args.len() {
        if i + 1 >= ctx.args.len() {
            return ctx.err(err::SYNTAX);
        }
        if ctx.is(i, "rank") {
            let Some(r) = ctx.int(i + 1) else { return };
            if r == 0 {
                return ctx.err("ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list");
            }
            if r == i64::MIN {
                return ctx.err("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807");
            }
            rank = r;
        } else if ctx.is(i, "count") {
            // Redis gives the same error for a count that is not an integer.
            match resp::parse_i64(&ctx.args[i + 1]) {
                Some(c) if c >= 0 => count = Some(c as usize),
                _ => return ctx.err("ERR COUNT can't be negative"),
            }
        } else if ctx.is(i, "maxlen") {
            match resp::parse_i64(&ctx.args[i + 1]) {
                Some(m) if m >= 0 => maxlen = m as usize,
                _ => return ctx.err("ERR MAXLEN can't be negative"),
            }
        } else {
            return ctx.err(err::SYNTAX);
        }
        i += 2;
    }
    let now = ctx.now;
    let el = ctx.args[2].clone();
    let l = match list_mut(&mut ctx.dbs[ctx.db], &ctx.args[1], now) {
        Err(_) => return ctx.wrongtype(),
        Ok(l) => l,
    };
    let mut found = Vec::new();
    if let Some(l) = l {
        let len = l.len();
        let want = match count {
            Some(0) => usize::MAX,
            Some(c) => c,
            None => 1,
        };
        let mut skip = rank.unsigned_abs() - 1;
        let limit = if maxlen == 0 { usize::MAX } else { maxlen };
        let it: Box<dyn Iterator<Item = (usize, &[u8])>> = if rank > 0 {
            Box::new(l.iter().enumerate())
        } else {
            Box::new(
                l.iter()
                    .rev()
                    .enumerate()
                    .map(move |(i, e)| (len - 1 - i, e)),
            )
        };
        for (n, (pos, e)) in it.enumerate() {
            if n >= limit || found.len() >= want {
                break;
            }
            if e == &el[..] {
                if skip > 0 {
                    skip -= 1;
                } else {
                    found.push(pos as i64);
                }
            }
        }
    }
    match count {
        Some(_) => {
            encode::array(ctx.out, found.len());
            for p in found {
                encode::int(ctx.out, p);
            }
        }
        None => match found.first() {
            Some(p) => ctx.int_reply(*p),
            None => ctx.null(),
        },
    }
}

fn side(ctx: &Ctx, i: usize) -> Option<bool> {
    if ctx.is(i, "left") {
        Some(true)
    } else if ctx.is(i, "right") {
        Some(false)
    } else {
        None
    }
}

/// Pop from `src`'s side and push to `dst`'s side; replies the element (null when `src` is
/// missing).
fn move_generic(ctx: &mut Ctx, from_left: bool, to_left: bool) {
    let now = ctx.now;
    let (src, dst) = (ctx.args[1].clone(), ctx.args[2].clone());
    let db = &mut ctx.dbs[ctx.db];
    match list_mut(db, &src, now) {
        Err(_) => return ctx.wrongtype(),
        Ok(None) => return ctx.null(),
        Ok(Some(_)) => {}
    }
    if list_mut(db, &dst, now).is_err() {
        return ctx.wrongtype();
    }
    let Ok(Some(l)) = list_mut(db, &src, now) else {
        return ctx.null();
    };
    let Some(e) = l.pop(from_left) else {
        return ctx.null();
    };
    if let Ok(d) = list_create(db, &dst, now) {
        d.push(&e, to_left);
    }
    drop_if_empty(db, &src, now);
    ctx.bulk(&e)
}

fn lmove(ctx: &mut Ctx) {
    let (Some(f), Some(t)) = (side(ctx, 3), side(ctx, 4)) else {
        return ctx.err(err::SYNTAX);
    };
    move_generic(ctx, f, t)
}

fn rpoplpush(ctx: &mut Ctx) {
    move_generic(ctx, false, true)
}

/// Parsed `numkeys key… LEFT|RIGHT [COUNT n]` starting at argument `at`.
pub(crate) struct Mpop {
    pub keys: Vec<bytes::Bytes>,
    pub left: bool,
    pub count: usize,
}

pub(crate) fn mpop_args(ctx: &mut Ctx, at: usize, min: &str, max: &str) -> Option<Mpop> {
    let n = match resp::parse_i64(ctx.arg(at)) {
        Some(n) if n > 0 => n as usize,
        _ => {
            ctx.err("ERR numkeys should be greater than 0");
            return None;
        }
    };
    if n > ctx.args.len() - at - 1 {
        ctx.err(err::SYNTAX);
        return None;
    }
    let w = at + 1 + n;
    let left = if ctx.is(w, min) {
        true
    } else if ctx.is(w, max) {
        false
    } else {
        ctx.err(err::SYNTAX);
        return None;
    };
    let mut count = None;
    let mut i = w + 1;
    while i < ctx.args.len() {
        if ctx.is(i, "count") && i + 1 < ctx.args.len() && count.is_none() {
            match resp::parse_i64(ctx.arg(i + 1)) {
                Some(c) if c > 0 => count = Some(c as usize),
                _ => {
                    ctx.err("ERR count should be greater than 0");
                    return None;
                }
            }
            i += 2;
        } else {
            ctx.err(err::SYNTAX);
            return None;
        }
    }
    Some(Mpop {
        keys: ctx.args[at + 1..w].to_vec(),
        left,
        count: count.unwrap_or(1),
    })
}

/// Pop from the first non-empty key. Returns false when every key is missing.
fn mpop_run(ctx: &mut Ctx, m: &Mpop) -> bool {
    let now = ctx.now;
    for k in &m.keys {
        match pop_n(&mut ctx.dbs[ctx.db], k, m.left, m.count, now) {
            Err(_) => {
                ctx.wrongtype();
                return true;
            }
            Ok(None) => continue,
            Ok(Some(v)) => {
                encode::array(ctx.out, 2);
                encode::bulk(ctx.out, k);
                bulk_array(ctx.out, &v);
                return true;
            }
        }
    }
    false
}

fn lmpop(ctx: &mut Ctx) {
    let Some(m) = mpop_args(ctx, 1, "left", "right") else {
        return;
    };
    if !mpop_run(ctx, &m) {
        ctx.null_array()
    }
}

fn bpop_generic(ctx: &mut Ctx, left: bool) {
    let last = ctx.args.len() - 1;
    if timeout_arg(ctx, last).is_none() {
        return;
    }
    let now = ctx.now;
    for k in &ctx.args[1..last] {
        match pop_n(&mut ctx.dbs[ctx.db], k, left, 1, now) {
            Err(_) => return encode::error(ctx.out, err::WRONGTYPE),
            Ok(Some(v)) if !v.is_empty() => {
                encode::array(ctx.out, 2);
                encode::bulk(ctx.out, k);
                encode::bulk(ctx.out, &v[0]);
                let name: &[u8] = if left { b"LPOP" } else { b"RPOP" };
                let c = super::argv(&[name, k]);
                ctx.propagate_as(vec![c]);
                return;
            }
            _ => {}
        }
    }
    ctx.out.extend_from_slice(WOULD_BLOCK)
}

fn blpop(ctx: &mut Ctx) {
    bpop_generic(ctx, true)
}
fn brpop(ctx: &mut Ctx) {
    bpop_generic(ctx, false)
}

fn bmove_generic(ctx: &mut Ctx, timeout_at: usize, from_left: bool, to_left: bool) {
    if timeout_arg(ctx, timeout_at).is_none() {
        return;
    }
    let now = ctx.now;
    match list_mut(&mut ctx.dbs[ctx.db], &ctx.args[1], now) {
        Err(_) => ctx.wrongtype(),
        Ok(None) => ctx.out.extend_from_slice(WOULD_BLOCK),
        Ok(Some(_)) => {
            let side = |l: bool| -> &'static [u8] {
                if l {
                    b"LEFT"
                } else {
                    b"RIGHT"
                }
            };
            let c = super::argv(&[
                b"LMOVE",
                &ctx.args[1],
                &ctx.args[2],
                side(from_left),
                side(to_left),
            ]);
            ctx.propagate_as(vec![c]);
            move_generic(ctx, from_left, to_left)
        }
    }
}

fn blmove(ctx: &mut Ctx) {
    let (Some(f), Some(t)) = (side(ctx, 3), side(ctx, 4)) else {
        return ctx.err(err::SYNTAX);
    };
    bmove_generic(ctx, 5, f, t)
}

fn brpoplpush(ctx: &mut Ctx) {
    bmove_generic(ctx, 3, false, true)
}

fn blmpop(ctx: &mut Ctx) {
    // Redis parses the timeout after numkeys, the side and COUNT.
    let Some(m) = mpop_args(ctx, 2, "left", "right") else {
        return;
    };
    if timeout_arg(ctx, 1).is_none() {
        return;
    }
    if !mpop_run(ctx, &m) {
        ctx.out.extend_from_slice(WOULD_BLOCK)
    } else {
        // Served: the same pop without the timeout.
        let mut c = vec![bytes::Bytes::from_static(b"LMPOP")];
        c.extend(ctx.args[2..].iter().cloned());
        ctx.propagate_as(vec![c]);
    }
}
