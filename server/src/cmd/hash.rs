//! Hash commands (Redis's `t_hash.c`).

use rand::seq::SliceRandom;
use rand::Rng;
use resp::{encode, Proto};

use super::types::{drop_if_empty, hash_create, hash_mut, scan_args, scan_page, scan_reply};
use super::{err, Ctx, Handler};
use crate::value::Hash;

/// The hash commands served by shards.
pub static HANDLERS: &[(&str, Handler)] = &[
    ("hset", hset),
    ("hmset", hmset),
    ("hsetnx", hsetnx),
    ("hget", hget),
    ("hmget", hmget),
    ("hdel", hdel),
    ("hexists", hexists),
    ("hlen", hlen),
    ("hstrlen", hstrlen),
    ("hkeys", hkeys),
    ("hvals", hvals),
    ("hgetall", hgetall),
    ("hincrby", hincrby),
    ("hincrbyfloat", hincrbyfloat),
    ("hrandfield", hrandfield),
    ("hscan", hscan),
];

fn hset_generic(ctx: &mut Ctx, name: &str, reply_ok: bool) {
    if !ctx.args.len().is_multiple_of(2) {
        return ctx.err(&format!(
            "ERR wrong number of arguments for '{name}' command"
        ));
    }
    let now = ctx.now;
    let db = &mut ctx.dbs[ctx.db];
    let h = match hash_create(db, &ctx.args[1], now) {
        Ok(h) => h,
        Err(_) => return ctx.wrongtype(),
    };
    let mut added = 0;
    for p in ctx.args[2..].chunks(2) {
        added += h.set(&p[0], &p[1]) as i64;
    }
    if reply_ok {
        ctx.ok()
    } else {
        ctx.int_reply(added)
    }
}

fn hset(ctx: &mut Ctx) {
    hset_generic(ctx, "hset", false)
}

fn hmset(ctx: &mut Ctx) {
    hset_generic(ctx, "hmset", true)
}

fn hsetnx(ctx: &mut Ctx) {
    let now = ctx.now;
    let db = &mut ctx.dbs[ctx.db];
    let h = match hash_create(db, &ctx.args[1], now) {
        Ok(h) => h,
        Err(_) => return ctx.wrongtype(),
    };
    let set = h.get(&ctx.args[2]).is_none();
    if set {
        h.set(&ctx.args[2], &ctx.args[3]);
    } else {
        db.untouch(&ctx.args[1]);
    }
    ctx.int_reply(set as i64)
}

/// Read-only access: `Ok(None)` when missing; replies WRONGTYPE and returns `Err` otherwise.
fn read<'a>(ctx: &'a mut Ctx) -> Result<Option<&'a mut Hash>, ()> {
    let now = ctx.now;
    match hash_mut(&mut ctx.dbs[ctx.db], &ctx.args[1], now) {
        Ok(h) => Ok(h),
        Err(_) => {
            encode::error(ctx.out, err::WRONGTYPE);
            Err(())
        }
    }
}

fn hget(ctx: &mut Ctx) {
    let now = ctx.now;
    match hash_mut(&mut ctx.dbs[ctx.db], &ctx.args[1], now) {
        Err(_) => encode::error(ctx.out, err::WRONGTYPE),
        Ok(h) => match h.and_then(|h| h.get(&ctx.args[2])) {
            Some(v) => encode::bulk(ctx.out, v),
            None => encode::null(ctx.out, ctx.proto),
        },
    }
}

fn hmget(ctx: &mut Ctx) {
    let now = ctx.now;
    match hash_mut(&mut ctx.dbs[ctx.db], &ctx.args[1], now) {
        Err(_) => encode::error(ctx.out, err::WRONGTYPE),
        Ok(h) => {
            encode::array(ctx.out, ctx.args.len() - 2);
            for f in &ctx.args[2..] {
                match h.as_ref().and_then(|h| h.get(f)) {
                    Some(v) => encode::bulk(ctx.out, v),
                    None => encode::null(ctx.out, ctx.proto),
                }
            }
        }
    }
}

fn hdel(ctx: &mut Ctx) {
    let now = ctx.now;
    let db = &mut ctx.dbs[ctx.db];
    let n = match hash_mut(db, &ctx.args[1], now) {
        Err(_) => return ctx.wrongtype(),
        Ok(None) => 0,
        Ok(Some(h)) => ctx.args[2..].iter().filter(|f| h.remove(f)).count(),
    };
    if n == 0 {
        db.untouch(&ctx.args[1]);
    }
    drop_if_empty(db, &ctx.args[1], now);
    ctx.int_reply(n as i64)
}

fn hexists(ctx: &mut Ctx) {
    let args = ctx.args;
    let Ok(h) = read(ctx) else { return };
    let r = h.is_some_and(|h| h.get(&args[2]).is_some());
    ctx.int_reply(r as i64)
}

fn hlen(ctx: &mut Ctx) {
    let Ok(h) = read(ctx) else { return };
    let n = h.map_or(0, |h| h.len());
    ctx.int_reply(n as i64)
}

fn hstrlen(ctx: &mut Ctx) {
    let args = ctx.args;
    let Ok(h) = read(ctx) else { return };
    let n = h.and_then(|h| h.get(&args[2])).map_or(0, |v| v.len());
    ctx.int_reply(n as i64)
}

fn hgetall_generic(ctx: &mut Ctx, keys: bool, vals: bool) {
    let now = ctx.now;
    let h = match hash_mut(&mut ctx.dbs[ctx.db], &ctx.args[1], now) {
        Err(_) => return encode::error(ctx.out, err::WRONGTYPE),
        Ok(h) => h,
    };
    let n = h.as_ref().map_or(0, |h| h.len());
    if keys && vals {
        encode::map(ctx.out, n, ctx.proto);
    } else {
        encode::array(ctx.out, n);
    }
    if let Some(h) = h {
        for (f, v) in h.iter() {
            if keys {
                encode::bulk(ctx.out, f);
            }
            if vals {
                encode::bulk(ctx.out, v);
            }
        }
    }
}

fn hkeys(ctx: &mut Ctx) {
    hgetall_generic(ctx, true, false)
}
fn hvals(ctx: &mut Ctx) {
    hgetall_generic(ctx, false, true)
}
fn hgetall(ctx: &mut Ctx) {
    hgetall_generic(ctx, true, true)
}

fn hincrby(ctx: &mut Ctx) {
    let Some(by) = ctx.int(3) else { return };
    let now = ctx.now;
    let h = match hash_create(&mut ctx.dbs[ctx.db], &ctx.args[1], now) {
        Ok(h) => h,
        Err(_) => return ctx.wrongtype(),
    };
    let cur = match h.get(&ctx.args[2]) {
        None => 0,
        Some(v) => match resp::parse_i64(v) {
            Some(n) => n,
            None => {
                let key = ctx.args[1].clone();
                drop_if_empty(&mut ctx.dbs[ctx.db], &key, now);
                return ctx.err("ERR hash value is not an integer");
            }
        },
    };
    let Some(n) = cur.checked_add(by) else {
        let key = ctx.args[1].clone();
        drop_if_empty(&mut ctx.dbs[ctx.db], &key, now);
        return ctx.err(err::OVERFLOW);
    };
    h.set(&ctx.args[2], itoa::Buffer::new().format(n).as_bytes());
    ctx.int_reply(n)
}

fn hincrbyfloat(ctx: &mut Ctx) {
    use crate::longdouble;
    let Some(by) = longdouble::parse(ctx.arg(3)) else {
        return ctx.err(err::NOT_FLOAT);
    };
    if by.is_inf() {
        return ctx.err("ERR value is NaN or Infinity");
    }
    let now = ctx.now;
    let key = ctx.args[1].clone();
    let h = match hash_create(&mut ctx.dbs[ctx.db], &key, now) {
        Ok(h) => h,
        Err(_) => return ctx.wrongtype(),
    };
    let cur = match h.get(&ctx.args[2]) {
        None => longdouble::LongDouble::ZERO,
        Some(v) => match longdouble::parse(v) {
            Some(n) => n,
            None => {
                drop_if_empty(&mut ctx.dbs[ctx.db], &key, now);
                return ctx.err("ERR hash value is not a float");
            }
        },
    };
    // Redis adds in long double (x87 extended) and prints with `%.17Lf`, trimmed.
    let Some(text) = longdouble::incr(&cur, &by) else {
        drop_if_empty(&mut ctx.dbs[ctx.db], &key, now);
        return ctx.err("ERR increment would produce NaN or Infinity");
    };
    h.set(&ctx.args[2], text.as_bytes());
    let field = ctx.args[2].clone();
    ctx.propagate_as(vec![super::argv(&[b"HSET", &key, &field, text.as_bytes()])]);
    ctx.bulk(text.as_bytes())
}

fn hrandfield(ctx: &mut Ctx) {
    let (count, withvalues) = match ctx.args.len() {
        2 => (None, false),
        3 | 4 => {
            if ctx.args.len() == 4 && !ctx.is(3, "withvalues") {
                return ctx.err(err::SYNTAX);
            }
            let Some(c) = ctx.int(2) else { return };
            let withvalues = ctx.args.len() == 4;
            if withvalues && c < -(i64::MAX / 2) {
                return ctx.err("ERR value is out of range");
            }
            (Some(c), withvalues)
        }
        _ => return ctx.err(err::SYNTAX),
    };
    let now = ctx.now;
    let proto = ctx.proto;
    let h = match hash_mut(&mut ctx.dbs[ctx.db], &ctx.args[1], now) {
        Err(_) => return encode::error(ctx.out, err::WRONGTYPE),
        Ok(h) => h,
    };
    let pairs: Vec<(&[u8], &[u8])> = h.as_ref().map(|h| h.iter().collect()).unwrap_or_default();
    let mut rng = rand::thread_rng();
    let Some(count) = count else {
        return match pairs.choose(&mut rng) {
            Some((f, _)) => encode::bulk(ctx.out, f),
            None => encode::null(ctx.out, proto),
        };
    };
    let picked: Vec<(&[u8], &[u8])> = if pairs.is_empty() {
        Vec::new()
    } else if count >= 0 {
        let n = (count as usize).min(pairs.len());
        pairs.choose_multiple(&mut rng, n).copied().collect()
    } else {
        (0..count.unsigned_abs())
            .map(|_| pairs[rng.gen_range(0..pairs.len())])
            .collect()
    };
    reply_pairs(ctx.out, proto, &picked, withvalues);
}

/// Field (and value) pairs: RESP3 nests `[f, v]` arrays, RESP2 flattens.
fn reply_pairs(
    out: &mut bytes::BytesMut,
    proto: Proto,
    picked: &[(&[u8], &[u8])],
    withvalues: bool,
) {
    if !withvalues {
        encode::array(out, picked.len());
        for (f, _) in picked {
            encode::bulk(out, f);
        }
        return;
    }
    if proto == Proto::Resp3 {
        encode::array(out, picked.len());
        for (f, v) in picked {
            encode::array(out, 2);
            encode::bulk(out, f);
            encode::bulk(out, v);
        }
    } else {
        encode::array(out, 2 * picked.len());
        for (f, v) in picked {
            encode::bulk(out, f);
            encode::bulk(out, v);
        }
    }
}

fn hscan(ctx: &mut Ctx) {
    let Some(o) = scan_args(ctx, |ctx| read(ctx).map(|h| h.is_some())) else {
        return;
    };
    let now = ctx.now;
    let Ok(Some(h)) = hash_mut(&mut ctx.dbs[ctx.db], &ctx.args[1], now) else {
        return;
    };
    let compact = matches!(h, Hash::Pack(_));
    let items: Vec<(&[u8], Option<&[u8]>)> = h.iter().map(|(f, v)| (f, Some(v))).collect();
    let (next, page) = scan_page(items, |k| k, &o, compact);
    scan_reply(ctx.out, next, &page);
}
