//! Sorted-set commands (Redis's `t_zset.c`). Range commands walk the set in order; small sets
//! are packed (listpack), big ones a B-tree plus a member table.

use bytes::{Bytes, BytesMut};
use hashbrown::HashMap;
use rand::seq::SliceRandom;
use rand::Rng;
use resp::{encode, Proto};

use super::types::{
    drop_if_empty, float_arg, scan_args, scan_page, scan_reply, timeout_arg, zset_create, zset_mut,
    zset_ref, WrongType, WOULD_BLOCK,
};
use super::{err, Ctx, Handler};
use crate::db::Db;
use crate::value::{Set, Value, ValueRef, ZSet};

/// The sorted-set commands served by shards.
pub static HANDLERS: &[(&str, Handler)] = &[
    ("zadd", zadd),
    ("zincrby", zincrby),
    ("zrem", zrem),
    ("zcard", zcard),
    ("zcount", zcount),
    ("zlexcount", zlexcount),
    ("zscore", zscore),
    ("zmscore", zmscore),
    ("zrank", zrank),
    ("zrevrank", zrevrank),
    ("zrange", zrange),
    ("zrangestore", zrangestore),
    ("zrangebyscore", zrangebyscore),
    ("zrevrangebyscore", zrevrangebyscore),
    ("zrangebylex", zrangebylex),
    ("zrevrangebylex", zrevrangebylex),
    ("zrevrange", zrevrange),
    ("zremrangebyrank", zremrangebyrank),
    ("zremrangebyscore", zremrangebyscore),
    ("zremrangebylex", zremrangebylex),
    ("zpopmin", zpopmin),
    ("zpopmax", zpopmax),
    ("bzpopmin", bzpopmin),
    ("bzpopmax", bzpopmax),
    ("zmpop", zmpop),
    ("bzmpop", bzmpop),
    ("zrandmember", zrandmember),
    ("zunion", zunion),
    ("zinter", zinter),
    ("zdiff", zdiff),
    ("zunionstore", zunionstore),
    ("zinterstore", zinterstore),
    ("zdiffstore", zdiffstore),
    ("zintercard", zintercard),
    ("zscan", zscan),
];

type Pairs = Vec<(Box<[u8]>, f64)>;

fn zadd_generic(ctx: &mut Ctx, forced_incr: bool) {
    let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) =
        (false, false, false, false, false, forced_incr);
    let mut i = 2;
    if !forced_incr {
        while i < ctx.args.len() {
            if ctx.is(i, "nx") {
                nx = true;
            } else if ctx.is(i, "xx") {
                xx = true;
            } else if ctx.is(i, "gt") {
                gt = true;
            } else if ctx.is(i, "lt") {
                lt = true;
            } else if ctx.is(i, "ch") {
                ch = true;
            } else if ctx.is(i, "incr") {
                incr = true;
            } else {
                break;
            }
            i += 1;
        }
    }
    let elements = ctx.args.len() - i;
    if !elements.is_multiple_of(2) || elements == 0 {
        return ctx.err(err::SYNTAX);
    }
    if nx && xx {
        return ctx.err("ERR XX and NX options at the same time are not compatible");
    }
    if (nx && (gt || lt)) || (gt && lt) {
        return ctx.err("ERR GT, LT, and/or NX options at the same time are not compatible");
    }
    if incr && elements > 2 {
        return ctx.err("ERR INCR option supports a single increment-element pair");
    }
    let mut pairs = Vec::with_capacity(elements / 2);
    for p in ctx.args[i..].chunks(2) {
        match float_arg(&p[0]) {
            Some(s) => pairs.push((s, p[1].clone())),
            None => return ctx.err(err::NOT_FLOAT),
        }
    }
    let now = ctx.now;
    let key = ctx.args[1].clone();
    let db = &mut ctx.dbs[ctx.db];
    let exists = match zset_mut(db, &key, now) {
        Err(_) => return ctx.wrongtype(),
        Ok(z) => z.is_some(),
    };
    if !exists && xx {
        return if incr { ctx.null() } else { ctx.int_reply(0) };
    }
    let Ok(z) = zset_create(db, &key, now) else {
        return ctx.wrongtype();
    };
    let (mut added, mut changed) = (0, 0);
    let mut result = None;
    let mut nan = false;
    for (score, m) in pairs {
        match z.score(&m) {
            Some(cur) => {
                if nx {
                    continue;
                }
                let new = if incr { cur + score } else { score };
                if new.is_nan() {
                    nan = true;
                    break;
                }
                if (gt && new <= cur) || (lt && new >= cur) {
                    continue;
                }
                result = Some(new);
                if new != cur {
                    z.insert(&m, new);
                    changed += 1;
                }
            }
            None => {
                if xx {
                    continue;
                }
                z.insert(&m, score);
                added += 1;
                result = Some(score);
            }
        }
    }
    drop_if_empty(db, &key, now);
    if added + changed == 0 {
        // No member added, no score changed: the key is not modified.
        db.untouch(&key);
    }
    if nan {
        return ctx.err("ERR resulting score is not a number (NaN)");
    }
    if incr {
        match result {
            Some(s) => ctx.double(s),
            None => ctx.null(),
        }
    } else {
        ctx.int_reply(added + if ch { changed } else { 0 })
    }
}

fn zadd(ctx: &mut Ctx) {
    zadd_generic(ctx, false)
}

fn zincrby(ctx: &mut Ctx) {
    let Some(by) = float_arg(ctx.arg(2)) else {
        return ctx.err(err::NOT_FLOAT);
    };
    let now = ctx.now;
    let key = ctx.args[1].clone();
    let m = ctx.args[3].clone();
    let db = &mut ctx.dbs[ctx.db];
    let Ok(z) = zset_create(db, &key, now) else {
        return ctx.wrongtype();
    };
    let cur = z.score(&m);
    let new = cur.unwrap_or(0.0) + by;
    if new.is_nan() {
        drop_if_empty(db, &key, now);
        return ctx.err("ERR resulting score is not a number (NaN)");
    }
    if cur == Some(new) {
        // The score stays: the key is not modified (Redis signals only a changed score).
        db.untouch(&key);
    } else {
        z.insert(&m, new);
    }
    ctx.double(new)
}

fn zrem(ctx: &mut Ctx) {
    let now = ctx.now;
    let db = &mut ctx.dbs[ctx.db];
    let n = match zset_mut(db, &ctx.args[1], now) {
        Err(_) => return ctx.wrongtype(),
        Ok(None) => 0,
        Ok(Some(z)) => ctx.args[2..].iter().filter(|m| z.remove(m)).count(),
    };
    if n == 0 {
        db.untouch(&ctx.args[1]);
    }
    drop_if_empty(db, &ctx.args[1], now);
    ctx.int_reply(n as i64)
}

/// The sorted set at argument `i` for reading; `Err` when WRONGTYPE was replied.
fn read<'a>(ctx: &'a mut Ctx, i: usize) -> Result<Option<&'a ZSet>, ()> {
    let now = ctx.now;
    match zset_ref(&mut ctx.dbs[ctx.db], &ctx.args[i], now) {
        Ok(z) => Ok(z),
        Err(_) => {
            encode::error(ctx.out, err::WRONGTYPE);
            Err(())
        }
    }
}

fn zcard(ctx: &mut Ctx) {
    let Ok(z) = read(ctx, 1) else { return };
    let n = z.map_or(0, |z| z.len());
    ctx.int_reply(n as i64)
}

/// A score interval with optional exclusive ends.
#[derive(Clone, Copy)]
struct ScoreRange {
    min: f64,
    minex: bool,
    max: f64,
    maxex: bool,
}

impl ScoreRange {
    fn contains(&self, s: f64) -> bool {
        (if self.minex {
            s > self.min
        } else {
            s >= self.min
        }) && (if self.maxex {
            s < self.max
        } else {
            s <= self.max
        })
    }
}

fn score_bound(b: &[u8]) -> Option<(f64, bool)> {
    let (ex, b) = match b.first() {
        Some(b'(') => (true, &b[1..]),
        _ => (false, b),
    };
    float_arg(b).map(|v| (v, ex))
}

fn score_range(ctx: &mut Ctx, min: usize, max: usize) -> Option<ScoreRange> {
    match (score_bound(ctx.arg(min)), score_bound(ctx.arg(max))) {
        (Some((min, minex)), Some((max, maxex))) => Some(ScoreRange {
            min,
            minex,
            max,
            maxex,
        }),
        _ => {
            ctx.err("ERR min or max is not a float");
            None
        }
    }
}

#[derive(Clone)]
enum Lex {
    Min,
    Max,
    Incl(Bytes),
    Excl(Bytes),
}

#[derive(Clone)]
struct LexRange {
    min: Lex,
    max: Lex,
}

impl LexRange {
    fn gte_min(&self, m: &[u8]) -> bool {
        match &self.min {
            Lex::Min => true,
            Lex::Max => false,
            Lex::Incl(b) => m >= &b[..],
            Lex::Excl(b) => m > &b[..],
        }
    }

    fn lte_max(&self, m: &[u8]) -> bool {
        match &self.max {
            Lex::Min => false,
            Lex::Max => true,
            Lex::Incl(b) => m <= &b[..],
            Lex::Excl(b) => m < &b[..],
        }
    }
}

fn lex_bound(b: &Bytes) -> Option<Lex> {
    match b.first() {
        Some(b'-') if b.len() == 1 => Some(Lex::Min),
        Some(b'+') if b.len() == 1 => Some(Lex::Max),
        Some(b'[') => Some(Lex::Incl(b.slice(1..))),
        Some(b'(') => Some(Lex::Excl(b.slice(1..))),
        _ => None,
    }
}

fn lex_range(ctx: &mut Ctx, min: usize, max: usize) -> Option<LexRange> {
    match (lex_bound(ctx.arg(min)), lex_bound(ctx.arg(max))) {
        (Some(min), Some(max)) => Some(LexRange { min, max }),
        _ => {
            ctx.err("ERR min or max not valid string range item");
            None
        }
    }
}

fn zcount(ctx: &mut Ctx) {
    let Some(r) = score_range(ctx, 2, 3) else {
        return;
    };
    let Ok(z) = read(ctx, 1) else { return };
    let n = z.map_or(0, |z| z.iter().filter(|(_, s)| r.contains(*s)).count());
    ctx.int_reply(n as i64)
}

fn zlexcount(ctx: &mut Ctx) {
    let Some(r) = lex_range(ctx, 2, 3) else {
        return;
    };
    let Ok(z) = read(ctx, 1) else { return };
    let n = z.map_or(0, |z| select(z, &Bounds::Lex(r), false, None).len());
    ctx.int_reply(n as i64)
}

fn zscore(ctx: &mut Ctx) {
    let args = ctx.args;
    let Ok(z) = read(ctx, 1) else { return };
    match z.and_then(|z| z.score(&args[2])) {
        Some(s) => ctx.double(s),
        None => ctx.null(),
    }
}

fn zmscore(ctx: &mut Ctx) {
    let args = ctx.args;
    let proto = ctx.proto;
    let Ok(z) = read(ctx, 1) else { return };
    let scores: Vec<Option<f64>> = args[2..]
        .iter()
        .map(|m| z.as_ref().and_then(|z| z.score(m)))
        .collect();
    encode::array(ctx.out, scores.len());
    for s in scores {
        match s {
            Some(s) => encode::double(ctx.out, s, proto),
            None => encode::null(ctx.out, proto),
        }
    }
}

fn rank_generic(ctx: &mut Ctx, rev: bool) {
    if ctx.args.len() != 3 {
        let name = if rev { "zrevrank" } else { "zrank" };
        return ctx.err(&format!(
            "ERR wrong number of arguments for '{name}' command"
        ));
    }
    let args = ctx.args;
    let Ok(z) = read(ctx, 1) else { return };
    let r = z.and_then(|z| {
        z.rank(&args[2])
            .map(|r| if rev { z.len() - 1 - r } else { r })
    });
    match r {
        Some(r) => ctx.int_reply(r as i64),
        None => ctx.null(),
    }
}

fn zrank(ctx: &mut Ctx) {
    rank_generic(ctx, false)
}
fn zrevrank(ctx: &mut Ctx) {
    rank_generic(ctx, true)
}

#[derive(Clone, Copy, PartialEq)]
enum By {
    Rank,
    Score,
    Lex,
}

/// Everything a ZRANGE-family command asks for.
struct RangeSpec {
    by: By,
    rev: bool,
    limit: Option<(i64, i64)>,
    withscores: bool,
}

enum Bounds {
    Rank(i64, i64),
    Score(ScoreRange),
    Lex(LexRange),
}

/// Select the members a range asks for, in reply order.
fn select(z: &ZSet, b: &Bounds, rev: bool, limit: Option<(i64, i64)>) -> Pairs {
    let mut all: Vec<(&[u8], f64)> = z.iter().collect();
    // Redis first tests the range against the set's ends (the last member must reach the start
    // bound, the first must not pass the end bound): with members of different scores, that
    // test alone can make the reply empty.
    if let Bounds::Lex(r) = b {
        let ends = all.first().zip(all.last());
        if !ends.is_some_and(|((first, _), (last, _))| r.lte_max(first) && r.gte_min(last)) {
            return Vec::new();
        }
    }
    if rev {
        all.reverse();
    }
    let picked: Vec<(&[u8], f64)> = match b {
        Bounds::Rank(s, e) => {
            let len = all.len() as i64;
            let mut s = if *s < 0 { s + len } else { *s };
            let mut e = if *e < 0 { e + len } else { *e };
            if s < 0 {
                s = 0;
            }
            if s > e || s >= len {
                Vec::new()
            } else {
                if e >= len {
                    e = len - 1;
                }
                all[s as usize..=e as usize].to_vec()
            }
        }
        Bounds::Score(r) => all.into_iter().filter(|(_, s)| r.contains(*s)).collect(),
        // As Redis walks a listpack: from the first member past the start bound, while members
        // stay within the end bound (members are assumed to share one score).
        Bounds::Lex(r) if !rev => all
            .into_iter()
            .skip_while(|(m, _)| !r.gte_min(m))
            .take_while(|(m, _)| r.lte_max(m))
            .collect(),
        Bounds::Lex(r) => all
            .into_iter()
            .skip_while(|(m, _)| !r.lte_max(m))
            .take_while(|(m, _)| r.gte_min(m))
            .collect(),
    };
    let picked = match limit {
        Some((off, _)) if off < 0 => Vec::new(),
        Some((off, cnt)) => {
            let it = picked.into_iter().skip(off as usize);
            if cnt < 0 {
                it.collect()
            } else {
                it.take(cnt as usize).collect()
            }
        }
        None => picked,
    };
    picked.into_iter().map(|(m, s)| (m.into(), s)).collect()
}

/// Reply members (with scores: RESP3 nests `[member, score]`, RESP2 flattens).
fn reply_members(out: &mut BytesMut, proto: Proto, items: &[(Box<[u8]>, f64)], withscores: bool) {
    if !withscores {
        encode::array(out, items.len());
        for (m, _) in items {
            encode::bulk(out, m);
        }
    } else if proto == Proto::Resp3 {
        encode::array(out, items.len());
        for (m, s) in items {
            encode::array(out, 2);
            encode::bulk(out, m);
            encode::double(out, *s, proto);
        }
    } else {
        encode::array(out, items.len() * 2);
        for (m, s) in items {
            encode::bulk(out, m);
            encode::double(out, *s, proto);
        }
    }
}

/// The shared body of ZRANGE, ZRANGESTORE, ZRANGEBYSCORE… `src` is the source key's argument,
/// `dst` the destination's for ZRANGESTORE; options start at `opts`.
fn range_generic(
    ctx: &mut Ctx,
    src: usize,
    dst: Option<usize>,
    mut spec: RangeSpec,
    opts: usize,
    generic: bool,
) {
    let (lo, hi) = (src + 1, src + 2);
    let mut i = opts;
    while i < ctx.args.len() {
        let left = ctx.args.len() - i - 1;
        if ctx.is(i, "withscores") && dst.is_none() {
            spec.withscores = true;
        } else if ctx.is(i, "limit") && left >= 2 {
            let Some(off) = ctx.int(i + 1) else { return };
            let Some(cnt) = ctx.int(i + 2) else { return };
            spec.limit = Some((off, cnt));
            i += 2;
        } else if generic && ctx.is(i, "byscore") {
            spec.by = By::Score;
        } else if generic && ctx.is(i, "bylex") {
            spec.by = By::Lex;
        } else if generic && ctx.is(i, "rev") {
            spec.rev = true;
        } else {
            return ctx.err(err::SYNTAX);
        }
        i += 1;
    }
    if spec.limit.is_some() && spec.by == By::Rank {
        return ctx.err(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        );
    }
    if spec.withscores && spec.by == By::Lex {
        return ctx.err("ERR syntax error, WITHSCORES not supported in combination with BYLEX");
    }
    // With REV, score and lex ranges are given max first.
    let (min_at, max_at) = if spec.rev && spec.by != By::Rank {
        (hi, lo)
    } else {
        (lo, hi)
    };
    let bounds = match spec.by {
        By::Rank => {
            let Some(s) = ctx.int(lo) else { return };
            let Some(e) = ctx.int(hi) else { return };
            Bounds::Rank(s, e)
        }
        By::Score => match score_range(ctx, min_at, max_at) {
            Some(r) => Bounds::Score(r),
            None => return,
        },
        By::Lex => match lex_range(ctx, min_at, max_at) {
            Some(r) => Bounds::Lex(r),
            None => return,
        },
    };
    let Ok(z) = read(ctx, src) else { return };
    let items = z
        .map(|z| select(z, &bounds, spec.rev, spec.limit))
        .unwrap_or_default();
    match dst {
        None => reply_members(ctx.out, ctx.proto, &items, spec.withscores),
        Some(d) => {
            let key = ctx.args[d].clone();
            let db = &mut ctx.dbs[ctx.db];
            db.delete(&key);
            let n = items.len();
            if n > 0 {
                db.insert(&key, Value::ZSet(ZSet::from_pairs(items)), 0);
            }
            ctx.int_reply(n as i64)
        }
    }
}

fn spec(by: By, rev: bool) -> RangeSpec {
    RangeSpec {
        by,
        rev,
        limit: None,
        withscores: false,
    }
}

fn zrange(ctx: &mut Ctx) {
    range_generic(ctx, 1, None, spec(By::Rank, false), 4, true)
}
fn zrangestore(ctx: &mut Ctx) {
    range_generic(ctx, 2, Some(1), spec(By::Rank, false), 5, true)
}
fn zrangebyscore(ctx: &mut Ctx) {
    range_generic(ctx, 1, None, spec(By::Score, false), 4, false)
}
fn zrevrangebyscore(ctx: &mut Ctx) {
    range_generic(ctx, 1, None, spec(By::Score, true), 4, false)
}
fn zrangebylex(ctx: &mut Ctx) {
    range_generic(ctx, 1, None, spec(By::Lex, false), 4, false)
}
fn zrevrangebylex(ctx: &mut Ctx) {
    range_generic(ctx, 1, None, spec(By::Lex, true), 4, false)
}
fn zrevrange(ctx: &mut Ctx) {
    range_generic(ctx, 1, None, spec(By::Rank, true), 4, false)
}

fn remrange(ctx: &mut Ctx, by: By) {
    let bounds = match by {
        By::Rank => {
            let Some(s) = ctx.int(2) else { return };
            let Some(e) = ctx.int(3) else { return };
            Bounds::Rank(s, e)
        }
        By::Score => match score_range(ctx, 2, 3) {
            Some(r) => Bounds::Score(r),
            None => return,
        },
        By::Lex => match lex_range(ctx, 2, 3) {
            Some(r) => Bounds::Lex(r),
            None => return,
        },
    };
    let now = ctx.now;
    let key = ctx.args[1].clone();
    let db = &mut ctx.dbs[ctx.db];
    let n = match zset_mut(db, &key, now) {
        Err(_) => return ctx.wrongtype(),
        Ok(None) => 0,
        Ok(Some(z)) => {
            let gone = select(z, &bounds, false, None);
            for (m, _) in &gone {
                z.remove(m);
            }
            gone.len()
        }
    };
    if n == 0 {
        db.untouch(&key);
    }
    drop_if_empty(db, &key, now);
    ctx.int_reply(n as i64)
}

fn zremrangebyrank(ctx: &mut Ctx) {
    remrange(ctx, By::Rank)
}
fn zremrangebyscore(ctx: &mut Ctx) {
    remrange(ctx, By::Score)
}
fn zremrangebylex(ctx: &mut Ctx) {
    remrange(ctx, By::Lex)
}

/// Pop up to `n` members from the low (`min`) or high end; `Ok(None)` when the key is missing.
fn pop_n(
    db: &mut Db,
    key: &[u8],
    min: bool,
    n: usize,
    now: u64,
) -> Result<Option<Pairs>, WrongType> {
    let Some(z) = zset_mut(db, key, now)? else {
        return Ok(None);
    };
    let picked: Pairs = if min {
        z.iter().take(n).map(|(m, s)| (m.into(), s)).collect()
    } else {
        z.iter().rev().take(n).map(|(m, s)| (m.into(), s)).collect()
    };
    for (m, _) in &picked {
        z.remove(m);
    }
    if picked.is_empty() {
        db.untouch(key);
    }
    drop_if_empty(db, key, now);
    Ok(Some(picked))
}

fn zpop_generic(ctx: &mut Ctx, min: bool) {
    if ctx.args.len() > 3 {
        return ctx.err(err::SYNTAX);
    }
    let count = if ctx.args.len() == 3 {
        match resp::parse_i64(ctx.arg(2)) {
            Some(c) if c >= 0 => Some(c as usize),
            Some(_) => return ctx.err("ERR value is out of range, must be positive"),
            None => return ctx.err(err::NOT_INT),
        }
    } else {
        None
    };
    let now = ctx.now;
    let key = ctx.args[1].clone();
    let items = match pop_n(&mut ctx.dbs[ctx.db], &key, min, count.unwrap_or(1), now) {
        Err(_) => return ctx.wrongtype(),
        Ok(v) => v.unwrap_or_default(),
    };
    if count.is_none() {
        encode::array(ctx.out, items.len() * 2);
        for (m, s) in &items {
            encode::bulk(ctx.out, m);
            encode::double(ctx.out, *s, ctx.proto);
        }
        return;
    }
    reply_members(ctx.out, ctx.proto, &items, true)
}

fn zpopmin(ctx: &mut Ctx) {
    zpop_generic(ctx, true)
}
fn zpopmax(ctx: &mut Ctx) {
    zpop_generic(ctx, false)
}

fn bzpop_generic(ctx: &mut Ctx, min: bool) {
    let last = ctx.args.len() - 1;
    if timeout_arg(ctx, last).is_none() {
        return;
    }
    let now = ctx.now;
    for k in &ctx.args[1..last] {
        match pop_n(&mut ctx.dbs[ctx.db], k, min, 1, now) {
            Err(_) => return encode::error(ctx.out, err::WRONGTYPE),
            Ok(Some(v)) if !v.is_empty() => {
                encode::array(ctx.out, 3);
                encode::bulk(ctx.out, k);
                encode::bulk(ctx.out, &v[0].0);
                encode::double(ctx.out, v[0].1, ctx.proto);
                let name: &[u8] = if min { b"ZPOPMIN" } else { b"ZPOPMAX" };
                let c = super::argv(&[name, k]);
                ctx.propagate_as(vec![c]);
                return;
            }
            _ => {}
        }
    }
    ctx.out.extend_from_slice(WOULD_BLOCK)
}

fn bzpopmin(ctx: &mut Ctx) {
    bzpop_generic(ctx, true)
}
fn bzpopmax(ctx: &mut Ctx) {
    bzpop_generic(ctx, false)
}

/// ZMPOP/BZMPOP with their parsed arguments. Returns false when every key was missing.
fn zmpop_run(ctx: &mut Ctx, m: &super::list::Mpop) -> bool {
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
                encode::array(ctx.out, v.len());
                for (m, s) in &v {
                    encode::array(ctx.out, 2);
                    encode::bulk(ctx.out, m);
                    encode::double(ctx.out, *s, ctx.proto);
                }
                return true;
            }
        }
    }
    false
}

fn zmpop(ctx: &mut Ctx) {
    let Some(m) = super::list::mpop_args(ctx, 1, "min", "max") else {
        return;
    };
    if !zmpop_run(ctx, &m) {
        ctx.null_array()
    }
}

fn bzmpop(ctx: &mut Ctx) {
    // Redis parses the timeout after numkeys, MIN|MAX and COUNT.
    let Some(m) = super::list::mpop_args(ctx, 2, "min", "max") else {
        return;
    };
    if timeout_arg(ctx, 1).is_none() {
        return;
    }
    if !zmpop_run(ctx, &m) {
        ctx.out.extend_from_slice(WOULD_BLOCK)
    } else {
        // Served (a WRONGTYPE changes nothing, so nothing propagates).
        let mut c = vec![bytes::Bytes::from_static(b"ZMPOP")];
        c.extend(ctx.args[2..].iter().cloned());
        ctx.propagate_as(vec![c]);
    }
}

fn zrandmember(ctx: &mut Ctx) {
    let (count, withscores) = match ctx.args.len() {
        2 => (None, false),
        3 | 4 => {
            if ctx.args.len() == 4 && !ctx.is(3, "withscores") {
                return ctx.err(err::SYNTAX);
            }
            let Some(c) = ctx.int(2) else { return };
            (Some(c), ctx.args.len() == 4)
        }
        _ => return ctx.err(err::SYNTAX),
    };
    let proto = ctx.proto;
    let Ok(z) = read(ctx, 1) else { return };
    let all: Pairs = z
        .map(|z| z.iter().map(|(m, s)| (m.into(), s)).collect())
        .unwrap_or_default();
    let mut rng = rand::thread_rng();
    let Some(count) = count else {
        return match all.choose(&mut rng) {
            Some((m, _)) => encode::bulk(ctx.out, m),
            None => encode::null(ctx.out, proto),
        };
    };
    let picked: Pairs = if all.is_empty() {
        Vec::new()
    } else if count >= 0 {
        all.choose_multiple(&mut rng, count as usize)
            .cloned()
            .collect()
    } else {
        (0..count.unsigned_abs())
            .map(|_| all[rng.gen_range(0..all.len())].clone())
            .collect()
    };
    reply_members(ctx.out, proto, &picked, withscores)
}

#[derive(Clone, Copy, PartialEq)]
enum SetOp {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy)]
enum Agg {
    Sum,
    Min,
    Max,
}

fn aggregate(agg: Agg, acc: &mut f64, v: f64) {
    match agg {
        Agg::Sum => {
            *acc += v;
            if acc.is_nan() {
                *acc = 0.0;
            }
        }
        Agg::Min => *acc = acc.min(v),
        Agg::Max => *acc = acc.max(v),
    }
}

/// An input of ZUNION & co: a sorted set, or a plain set (every score 1).
fn load_input(db: &mut Db, key: &[u8], now: u64) -> Result<Pairs, WrongType> {
    match db.get(key, now).map(|e| e.value) {
        None => Ok(Vec::new()),
        Some(ValueRef::ZSet(z)) => Ok(z.iter().map(|(m, s)| (m.into(), s)).collect()),
        Some(ValueRef::Set(s)) => Ok(Set::members(s).into_iter().map(|m| (m, 1.0)).collect()),
        Some(_) => Err(WrongType),
    }
}

fn setop_generic(ctx: &mut Ctx, op: SetOp, store: bool) {
    let name = String::from_utf8_lossy(ctx.arg(0)).to_lowercase();
    let at = if store { 2 } else { 1 };
    let Some(n) = ctx.int(at) else { return };
    if n < 1 {
        return ctx.err(&format!(
            "ERR at least 1 input key is needed for '{name}' command"
        ));
    }
    let n = n as usize;
    if n > ctx.args.len() - at - 1 {
        return ctx.err(err::SYNTAX);
    }
    // Redis's order: every input's type, then the options.
    let now = ctx.now;
    let mut inputs = Vec::with_capacity(n);
    for k in &ctx.args[at + 1..at + 1 + n] {
        match load_input(&mut ctx.dbs[ctx.db], k, now) {
            Ok(p) => inputs.push(p),
            Err(_) => return encode::error(ctx.out, err::WRONGTYPE),
        }
    }
    let mut weights = vec![1.0; n];
    let mut agg = Agg::Sum;
    let mut withscores = false;
    let mut i = at + 1 + n;
    while i < ctx.args.len() {
        let left = ctx.args.len() - i - 1;
        if op != SetOp::Diff && ctx.is(i, "weights") && left >= n {
            for (j, wt) in weights.iter_mut().enumerate() {
                match float_arg(ctx.arg(i + 1 + j)) {
                    Some(w) => *wt = w,
                    None => return ctx.err("ERR weight value is not a float"),
                }
            }
            i += n;
        } else if op != SetOp::Diff && ctx.is(i, "aggregate") && left >= 1 {
            agg = if ctx.is(i + 1, "sum") {
                Agg::Sum
            } else if ctx.is(i + 1, "min") {
                Agg::Min
            } else if ctx.is(i + 1, "max") {
                Agg::Max
            } else {
                return ctx.err(err::SYNTAX);
            };
            i += 1;
        } else if !store && ctx.is(i, "withscores") {
            withscores = true;
        } else {
            return ctx.err(err::SYNTAX);
        }
        i += 1;
    }
    let weigh = |s: f64, w: f64| {
        let v = s * w;
        if v.is_nan() {
            0.0
        } else {
            v
        }
    };
    let mut result: Pairs = match op {
        SetOp::Union => {
            let mut acc: HashMap<Box<[u8]>, f64> = HashMap::new();
            for (inp, w) in inputs.iter().zip(&weights) {
                for (m, s) in inp {
                    let v = weigh(*s, *w);
                    match acc.get_mut(m) {
                        Some(a) => aggregate(agg, a, v),
                        None => {
                            acc.insert(m.clone(), v);
                        }
                    }
                }
            }
            acc.into_iter().collect()
        }
        SetOp::Inter => {
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by_key(|&j| inputs[j].len());
            let maps: Vec<HashMap<&[u8], f64>> = inputs
                .iter()
                .map(|p| p.iter().map(|(m, s)| (&m[..], *s)).collect())
                .collect();
            let first = order[0];
            let mut out = Vec::new();
            'm: for (m, s) in &inputs[first] {
                let mut acc = weigh(*s, weights[first]);
                for &j in &order[1..] {
                    match maps[j].get(&m[..]) {
                        Some(s) => aggregate(agg, &mut acc, weigh(*s, weights[j])),
                        None => continue 'm,
                    }
                }
                out.push((m.clone(), acc));
            }
            out
        }
        SetOp::Diff => {
            let others: Vec<HashMap<&[u8], f64>> = inputs[1..]
                .iter()
                .map(|p| p.iter().map(|(m, s)| (&m[..], *s)).collect())
                .collect();
            inputs[0]
                .iter()
                .filter(|(m, _)| !others.iter().any(|o| o.contains_key(&m[..])))
                .cloned()
                .collect()
        }
    };
    result.sort_by(|a, b| {
        crate::value::Score(a.1)
            .cmp(&crate::value::Score(b.1))
            .then_with(|| a.0.cmp(&b.0))
    });
    if !store {
        return reply_members(ctx.out, ctx.proto, &result, withscores);
    }
    let dst = ctx.args[1].clone();
    let db = &mut ctx.dbs[ctx.db];
    db.delete(&dst);
    let len = result.len();
    if len > 0 {
        db.insert(&dst, Value::ZSet(ZSet::from_pairs(result)), 0);
    }
    ctx.int_reply(len as i64)
}

fn zunion(ctx: &mut Ctx) {
    setop_generic(ctx, SetOp::Union, false)
}
fn zinter(ctx: &mut Ctx) {
    setop_generic(ctx, SetOp::Inter, false)
}
fn zdiff(ctx: &mut Ctx) {
    setop_generic(ctx, SetOp::Diff, false)
}
fn zunionstore(ctx: &mut Ctx) {
    setop_generic(ctx, SetOp::Union, true)
}
fn zinterstore(ctx: &mut Ctx) {
    setop_generic(ctx, SetOp::Inter, true)
}
fn zdiffstore(ctx: &mut Ctx) {
    setop_generic(ctx, SetOp::Diff, true)
}

fn zintercard(ctx: &mut Ctx) {
    let Some(n) = ctx.int(1) else { return };
    if n < 1 {
        return ctx.err("ERR at least 1 input key is needed for 'zintercard' command");
    }
    let n = n as usize;
    if n > ctx.args.len() - 2 {
        return ctx.err(err::SYNTAX);
    }
    // Redis's order: every input's type, then the options.
    let now = ctx.now;
    let mut inputs = Vec::with_capacity(n);
    let args = ctx.args;
    for k in &args[2..2 + n] {
        match load_input(&mut ctx.dbs[ctx.db], k, now) {
            Ok(p) => inputs.push(p),
            Err(_) => return ctx.wrongtype(),
        }
    }
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
    inputs.sort_by_key(|p| p.len());
    let maps: Vec<HashMap<&[u8], f64>> = inputs[1..]
        .iter()
        .map(|p| p.iter().map(|(m, s)| (&m[..], *s)).collect())
        .collect();
    let mut count = 0;
    for (m, _) in &inputs[0] {
        if maps.iter().all(|mp| mp.contains_key(&m[..])) {
            count += 1;
            if limit != 0 && count >= limit {
                break;
            }
        }
    }
    ctx.int_reply(count as i64)
}

fn zscan(ctx: &mut Ctx) {
    let Some(o) = scan_args(ctx, |ctx| read(ctx, 1).map(|z| z.is_some())) else {
        return;
    };
    let Ok(Some(z)) = read(ctx, 1) else { return };
    let compact = matches!(z, ZSet::Pack(_));
    let items: super::types::ScanItems = z
        .iter()
        .map(|(m, s)| {
            (
                m.into(),
                Some(encode::format_double(s).into_bytes().into_boxed_slice()),
            )
        })
        .collect();
    let (next, page) = scan_page(items, |k| k, &o, compact);
    scan_reply(ctx.out, next, &page);
}
