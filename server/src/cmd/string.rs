//! String commands (Redis's `t_string.c`): GET/SET and friends, counters, ranges and bits.

use resp::encode;

use super::{err, Ctx, Handler, MAX_STRING};
use crate::value::{reserve_greedy, Value, ValueRef};

/// The string commands served by shards.
pub static HANDLERS: &[(&str, Handler)] = &[
    ("get", get),
    ("set", set),
    ("setnx", setnx),
    ("setex", setex),
    ("psetex", psetex),
    ("mget", mget),
    ("mset", mset),
    ("msetnx", msetnx),
    ("getset", getset),
    ("getdel", getdel),
    ("getex", getex),
    ("append", append),
    ("strlen", strlen),
    ("getrange", getrange),
    ("substr", getrange),
    ("setrange", setrange),
    ("incr", incr),
    ("decr", decr),
    ("incrby", incrby),
    ("decrby", decrby),
    ("incrbyfloat", incrbyfloat),
    ("setbit", setbit),
    ("getbit", getbit),
    ("bitcount", bitcount),
    ("bitpos", bitpos),
];

/// A live key's string bytes: `Ok(None)` when missing, `Err(())` when it holds another type.
pub fn read_str<'d>(ctx: &'d mut Ctx, key: &[u8]) -> Result<Option<&'d [u8]>, ()> {
    let now = ctx.now;
    match ctx.db().get(key, now) {
        None => Ok(None),
        Some(e) => match e.value {
            ValueRef::Str(s) => Ok(Some(s)),
            #[allow(unreachable_patterns)]
            _ => Err(()),
        },
    }
}

fn get(ctx: &mut Ctx) {
    let now = ctx.now;
    match ctx.dbs[ctx.db].get(&ctx.args[1], now).map(|e| e.value) {
        Some(ValueRef::Str(v)) => encode::bulk(ctx.out, v),
        #[allow(unreachable_patterns)]
        Some(_) => encode::error(ctx.out, err::WRONGTYPE),
        None => encode::null(ctx.out, ctx.proto),
    }
}

/// How SET-like commands set the expiry.
#[derive(Clone, Copy, PartialEq)]
enum Ttl {
    None,
    At(u64),
    Keep,
}

/// Turn a relative/absolute expiry argument into absolute ms, with Redis's checks.
/// `unit_ms` is 1000 for seconds; `absolute` for EXAT/PXAT.
pub fn expire_arg(ctx: &mut Ctx, i: usize, unit_ms: i64, absolute: bool, cmd: &str) -> Option<u64> {
    let v = ctx.int(i)?;
    let invalid = format!("ERR invalid expire time in '{cmd}' command");
    if v <= 0 {
        ctx.err(&invalid);
        return None;
    }
    let Some(ms) = v.checked_mul(unit_ms) else {
        ctx.err(&invalid);
        return None;
    };
    let at = if absolute {
        Some(ms)
    } else {
        ms.checked_add(ctx.now as i64)
    };
    match at {
        Some(at) if at > 0 => Some(at as u64),
        _ => {
            ctx.err(&invalid);
            None
        }
    }
}

fn set(ctx: &mut Ctx) {
    if ctx.args.len() == 3 {
        // Plain `SET key value`: one table operation.
        ctx.dbs[ctx.db].insert_str(&ctx.args[1], &ctx.args[2], 0);
        return ctx.ok();
    }
    let (mut nx, mut xx, mut get_old) = (false, false, false);
    let mut ttl = Ttl::None;
    let mut i = 3;
    while i < ctx.args.len() {
        let has_next = i + 1 < ctx.args.len();
        if ctx.is(i, "nx") && !xx {
            nx = true;
        } else if ctx.is(i, "xx") && !nx {
            xx = true;
        } else if ctx.is(i, "get") {
            get_old = true;
        } else if ctx.is(i, "keepttl") && ttl == Ttl::None {
            ttl = Ttl::Keep;
        } else if has_next
            && ttl == Ttl::None
            && ["ex", "px", "exat", "pxat"].iter().any(|w| ctx.is(i, w))
        {
            let unit = if ctx.is(i, "ex") || ctx.is(i, "exat") {
                1000
            } else {
                1
            };
            let abs = ctx.is(i, "exat") || ctx.is(i, "pxat");
            let Some(at) = expire_arg(ctx, i + 1, unit, abs, "set") else {
                return;
            };
            ttl = Ttl::At(at);
            i += 1;
        } else {
            return ctx.err(err::SYNTAX);
        }
        i += 1;
    }
    let key = ctx.arg(1).clone();
    let old = match read_str(ctx, &key) {
        Ok(o) => o.map(|v| v.to_vec()),
        Err(()) if get_old => return ctx.wrongtype(),
        Err(()) => None,
    };
    let exists = {
        let now = ctx.now;
        ctx.db().contains(&key, now)
    };
    if (nx && exists) || (xx && !exists) {
        return match (get_old, old) {
            (true, Some(v)) => ctx.bulk(&v),
            _ => ctx.null(),
        };
    }
    let value = ctx.arg(2).clone();
    let now = ctx.now;
    if ctx.propagating() {
        let v = ctx.arg(2).clone();
        let c = match ttl {
            Ttl::Keep => super::argv(&[b"SET", &key, &v, b"KEEPTTL"]),
            Ttl::At(at) => super::argv(&[b"SET", &key, &v, b"PXAT", at.to_string().as_bytes()]),
            Ttl::None => super::argv(&[b"SET", &key, &v]),
        };
        ctx.propagate_as(vec![c]);
    }
    match ttl {
        Ttl::Keep => ctx.db().insert_str_keep_ttl(&key, &value, now),
        Ttl::At(at) => {
            ctx.db().insert_str(&key, &value, at);
        }
        Ttl::None => {
            ctx.db().insert_str(&key, &value, 0);
        }
    }
    match (get_old, old) {
        (false, _) => ctx.ok(),
        (true, Some(v)) => ctx.bulk(&v),
        (true, None) => ctx.null(),
    }
}

fn setnx(ctx: &mut Ctx) {
    let key = ctx.arg(1).clone();
    let now = ctx.now;
    if ctx.db().contains(&key, now) {
        return ctx.int_reply(0);
    }
    let v = ctx.arg(2).clone();
    ctx.db().insert_str(&key, &v, 0);
    ctx.int_reply(1)
}

fn setex_with(ctx: &mut Ctx, unit: i64, name: &str) {
    let Some(at) = expire_arg(ctx, 2, unit, false, name) else {
        return;
    };
    let key = ctx.arg(1).clone();
    if ctx.propagating() {
        let c = super::argv(&[b"SET", &key, ctx.arg(3), b"PXAT", at.to_string().as_bytes()]);
        ctx.propagate_as(vec![c]);
    }
    let v = ctx.arg(3).clone();
    ctx.db().insert_str(&key, &v, at);
    ctx.ok()
}

fn setex(ctx: &mut Ctx) {
    setex_with(ctx, 1000, "setex")
}

fn psetex(ctx: &mut Ctx) {
    setex_with(ctx, 1, "psetex")
}

fn mget(ctx: &mut Ctx) {
    let n = ctx.args.len() - 1;
    ctx.array(n);
    let now = ctx.now;
    for key in &ctx.args[1..] {
        match ctx.dbs[ctx.db].get(key, now).map(|e| e.value) {
            Some(ValueRef::Str(v)) => encode::bulk(ctx.out, v),
            _ => encode::null(ctx.out, ctx.proto),
        }
    }
}

fn mset_pairs_ok(ctx: &mut Ctx) -> bool {
    if ctx.args.len() % 2 == 0 {
        let name = String::from_utf8_lossy(ctx.arg(0)).to_lowercase();
        ctx.err(&format!(
            "ERR wrong number of arguments for '{name}' command"
        ));
        return false;
    }
    true
}

fn mset(ctx: &mut Ctx) {
    if !mset_pairs_ok(ctx) {
        return;
    }
    for i in (1..ctx.args.len()).step_by(2) {
        let (k, v) = (ctx.arg(i).clone(), ctx.arg(i + 1).clone());
        ctx.db().insert_str(&k, &v, 0);
    }
    ctx.ok()
}

fn msetnx(ctx: &mut Ctx) {
    if !mset_pairs_ok(ctx) {
        return;
    }
    let now = ctx.now;
    for i in (1..ctx.args.len()).step_by(2) {
        let k = ctx.arg(i).clone();
        if ctx.db().contains(&k, now) {
            return ctx.int_reply(0);
        }
    }
    for i in (1..ctx.args.len()).step_by(2) {
        let (k, v) = (ctx.arg(i).clone(), ctx.arg(i + 1).clone());
        ctx.db().insert_str(&k, &v, 0);
    }
    ctx.int_reply(1)
}

fn getset(ctx: &mut Ctx) {
    let key = ctx.arg(1).clone();
    let old = match read_str(ctx, &key) {
        Ok(o) => o.map(|v| v.to_vec()),
        Err(()) => return ctx.wrongtype(),
    };
    let v = ctx.arg(2).clone();
    ctx.db().insert_str(&key, &v, 0);
    match old {
        Some(v) => ctx.bulk(&v),
        None => ctx.null(),
    }
}

fn getdel(ctx: &mut Ctx) {
    let key = ctx.arg(1).clone();
    match read_str(ctx, &key) {
        Ok(Some(v)) => {
            let v = v.to_vec();
            ctx.db().remove(&key);
            ctx.bulk(&v)
        }
        Ok(None) => ctx.null(),
        Err(()) => ctx.wrongtype(),
    }
}

fn getex(ctx: &mut Ctx) {
    let mut ttl: Option<u64> = None; // Some(0) = persist
                                     // The argument index, unit (ms) and absoluteness of EX/PX/EXAT/PXAT.
    let mut expire: Option<(usize, i64, bool)> = None;
    let mut i = 2;
    while i < ctx.args.len() {
        let has_next = i + 1 < ctx.args.len();
        let unset = ttl.is_none() && expire.is_none();
        if ctx.is(i, "persist") && unset {
            ttl = Some(0);
        } else if has_next && unset && ["ex", "px", "exat", "pxat"].iter().any(|w| ctx.is(i, w)) {
            let unit = if ctx.is(i, "ex") || ctx.is(i, "exat") {
                1000
            } else {
                1
            };
            let abs = ctx.is(i, "exat") || ctx.is(i, "pxat");
            // The value is checked after the key, as Redis does.
            expire = Some((i + 1, unit, abs));
            i += 1;
        } else {
            return ctx.err(err::SYNTAX);
        }
        i += 1;
    }
    let key = ctx.arg(1).clone();
    let v = match read_str(ctx, &key) {
        Ok(Some(v)) => v.to_vec(),
        Ok(None) => return ctx.null(),
        Err(()) => return ctx.wrongtype(),
    };
    if let Some((at, unit, abs)) = expire {
        let Some(at) = expire_arg(ctx, at, unit, abs, "getex") else {
            return;
        };
        ttl = Some(at);
    }
    let now = ctx.now;
    match ttl {
        Some(at) if at != 0 && at <= now => {
            ctx.db().remove(&key);
            ctx.propagate_as(vec![super::argv(&[b"DEL", &key])]);
        }
        Some(0) => {
            // A key without a TTL is left as it is (not a modification, nothing propagated).
            if ctx.db().get(&key, now).is_some_and(|e| e.expire_at() != 0) {
                ctx.db().set_expire(&key, 0, now);
                ctx.propagate_as(vec![super::argv(&[b"PERSIST", &key])]);
            }
        }
        Some(at) => {
            ctx.db().set_expire(&key, at, now);
            let at = at.to_string();
            ctx.propagate_as(vec![super::argv(&[b"PEXPIREAT", &key, at.as_bytes()])]);
        }
        None => {}
    }
    ctx.bulk(&v)
}

/// Run `edit` on the string at `key` in place (see [`Value::Buf`]) and mark it raw; `None`
/// (nothing done) when the key is not a string.
fn edit_in_place(ctx: &mut Ctx, key: &[u8], edit: impl FnOnce(&mut Vec<u8>) -> i64) -> Option<i64> {
    let now = ctx.now;
    let n = edit(ctx.db().str_buf(key, now)?.ok()?);
    ctx.db().mark_raw(key);
    Some(n)
}

fn append(ctx: &mut Ctx) {
    let key = ctx.arg(1).clone();
    let add = ctx.arg(2).clone();
    let len = match read_str(ctx, &key) {
        Ok(v) => v.map(|v| v.len()),
        Err(()) => return ctx.wrongtype(),
    };
    if len.unwrap_or(0) + add.len() > MAX_STRING {
        return ctx.err(err::MAX_SIZE);
    }
    if len.is_some_and(|n| n + add.len() >= Value::EDIT_IN_PLACE) {
        let grown = edit_in_place(ctx, &key, |b| {
            reserve_greedy(b, b.len() + add.len());
            b.extend_from_slice(&add);
            b.len() as i64
        });
        if let Some(n) = grown {
            return ctx.int_reply(n);
        }
    }
    let (mut v, existed) = match read_str(ctx, &key) {
        Ok(Some(v)) => (v.to_vec(), true),
        Ok(None) => (Vec::new(), false),
        Err(()) => return ctx.wrongtype(),
    };
    v.extend_from_slice(&add);
    let n = v.len();
    let now = ctx.now;
    ctx.db().insert_keep_ttl(&key, Value::Str(v.into()), now);
    if existed {
        // Redis appends to an unshared copy: `raw` from now on (a new key is stored as SET would).
        ctx.db().mark_raw(&key);
    }
    ctx.int_reply(n as i64)
}

fn strlen(ctx: &mut Ctx) {
    let key = ctx.arg(1).clone();
    match read_str(ctx, &key) {
        Ok(v) => {
            let n = v.map_or(0, |v| v.len());
            ctx.int_reply(n as i64)
        }
        Err(()) => ctx.wrongtype(),
    }
}

/// Redis's index normalisation for GETRANGE-style `start end` (inclusive), or None for empty.
pub fn clamp_range(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    if start < 0 && end < 0 && start > end {
        return None;
    }
    clamp_ends(start, end, len)
}

/// [`clamp_range`] without its first test: BITPOS clamps two negative ends that cross (`-1
/// -100`) to 0 and searches what is left, as Redis 7.0 does.
fn clamp_ends(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let mut s = if start < 0 { len + start } else { start };
    let mut e = if end < 0 { len + end } else { end };
    s = s.max(0);
    e = e.max(0);
    if e >= len {
        e = len - 1;
    }
    if len == 0 || s > e {
        return None;
    }
    Some((s as usize, e as usize))
}

fn getrange(ctx: &mut Ctx) {
    let Some(start) = ctx.int(2) else { return };
    let Some(end) = ctx.int(3) else { return };
    let now = ctx.now;
    // The range is encoded straight from the stored bytes (the database and the output buffer
    // are separate fields of the context).
    match ctx.dbs[ctx.db].get(&ctx.args[1], now).map(|e| e.value) {
        Some(ValueRef::Str(v)) => match clamp_range(start, end, v.len()) {
            Some((s, e)) => encode::bulk(ctx.out, &v[s..=e]),
            None => encode::bulk(ctx.out, b""),
        },
        #[allow(unreachable_patterns)]
        Some(_) => encode::error(ctx.out, err::WRONGTYPE),
        None => encode::bulk(ctx.out, b""),
    }
}

fn setrange(ctx: &mut Ctx) {
    let Some(offset) = ctx.int(2) else { return };
    if offset < 0 {
        return ctx.err(err::OFFSET_RANGE);
    }
    let key = ctx.arg(1).clone();
    let value = ctx.arg(3).clone();
    let len = match read_str(ctx, &key) {
        Ok(v) => v.map(|v| v.len()),
        Err(()) => return ctx.wrongtype(),
    };
    if value.is_empty() {
        return ctx.int_reply(len.unwrap_or(0) as i64);
    }
    let offset = offset as usize;
    let end = offset + value.len();
    if end > MAX_STRING {
        return ctx.err(err::MAX_SIZE);
    }
    if len.is_some_and(|n| n.max(end) >= Value::EDIT_IN_PLACE) {
        let done = edit_in_place(ctx, &key, |b| {
            if b.len() < end {
                reserve_greedy(b, end);
                b.resize(end, 0);
            }
            b[offset..end].copy_from_slice(&value);
            b.len() as i64
        });
        if let Some(n) = done {
            return ctx.int_reply(n);
        }
    }
    let mut v = match read_str(ctx, &key) {
        Ok(v) => v.map(|v| v.to_vec()).unwrap_or_default(),
        Err(()) => return ctx.wrongtype(),
    };
    if v.len() < end {
        v.resize(end, 0);
    }
    v[offset..end].copy_from_slice(&value);
    let n = v.len();
    let now = ctx.now;
    ctx.db().insert_keep_ttl(&key, Value::Str(v.into()), now);
    ctx.db().mark_raw(&key);
    ctx.int_reply(n as i64)
}

fn incr_by(ctx: &mut Ctx, by: i64) {
    let key = ctx.arg(1).clone();
    let now = ctx.now;
    // The value and its expiry in one lookup; the store keeps the expiry.
    let (cur, expire_at) = match ctx.db().get(&key, now) {
        None => (0, 0),
        Some(e) => match e.value {
            ValueRef::Str(v) => match resp::parse_i64(v) {
                Some(n) => (n, e.expire_at()),
                None => return ctx.err(err::NOT_INT),
            },
            #[allow(unreachable_patterns)]
            _ => return ctx.wrongtype(),
        },
    };
    let Some(n) = cur.checked_add(by) else {
        return ctx.err(err::OVERFLOW);
    };
    let mut buf = itoa::Buffer::new();
    ctx.db()
        .insert_str(&key, buf.format(n).as_bytes(), expire_at);
    ctx.int_reply(n)
}

fn incr(ctx: &mut Ctx) {
    incr_by(ctx, 1)
}

fn decr(ctx: &mut Ctx) {
    incr_by(ctx, -1)
}

fn incrby(ctx: &mut Ctx) {
    if let Some(n) = ctx.int(2) {
        incr_by(ctx, n)
    }
}

fn decrby(ctx: &mut Ctx) {
    let Some(n) = ctx.int(2) else { return };
    match n.checked_neg() {
        Some(n) => incr_by(ctx, n),
        None => ctx.err("ERR decrement would overflow"),
    }
}

/// Parse a float the way Redis's `string2ld` does: the whole text, no spaces, no NaN.
pub fn parse_float(b: &[u8]) -> Option<f64> {
    if b.is_empty() || b[0].is_ascii_whitespace() || b[b.len() - 1].is_ascii_whitespace() {
        return None;
    }
    let s = std::str::from_utf8(b).ok()?;
    let v: f64 = match s.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        _ => s.parse().ok()?,
    };
    (!v.is_nan()).then_some(v)
}

/// A float as INCRBYFLOAT stores it (Redis's human format: no exponent, no trailing zeros).
pub fn human_float(v: f64) -> String {
    let s = format!("{v}");
    if s == "-0" {
        "0".into()
    } else {
        s
    }
}

fn incrbyfloat(ctx: &mut Ctx) {
    use crate::longdouble;
    let key = ctx.arg(1).clone();
    // Redis's order: type, then the stored value, then the increment.
    let cur = match read_str(ctx, &key) {
        Ok(Some(v)) => match longdouble::parse(v) {
            Some(n) => n,
            None => return ctx.err(err::NOT_FLOAT),
        },
        Ok(None) => longdouble::LongDouble::ZERO,
        Err(()) => return ctx.wrongtype(),
    };
    let Some(by) = longdouble::parse(ctx.arg(2)) else {
        return ctx.err(err::NOT_FLOAT);
    };
    // Redis adds in long double (x87 extended) and prints with `%.17Lf`, trimmed.
    let Some(text) = longdouble::incr(&cur, &by) else {
        return ctx.err("ERR increment would produce NaN or Infinity");
    };
    let now = ctx.now;
    ctx.propagate_as(vec![super::argv(&[
        b"SET",
        &key,
        text.as_bytes(),
        b"KEEPTTL",
    ])]);
    ctx.db().insert_str_keep_ttl(&key, text.as_bytes(), now);
    // Redis builds the result as text: `embstr`/`raw`, never `int`, even for "3".
    ctx.db().mark_text(&key);
    ctx.bulk(text.as_bytes())
}

fn bit_offset(ctx: &mut Ctx, i: usize) -> Option<usize> {
    match resp::parse_i64(ctx.arg(i)) {
        Some(n) if (0..(1i64 << 32)).contains(&n) => Some(n as usize),
        _ => {
            ctx.err(err::BIT_OFFSET);
            None
        }
    }
}

fn setbit(ctx: &mut Ctx) {
    let Some(off) = bit_offset(ctx, 2) else {
        return;
    };
    let on = match &ctx.arg(3)[..] {
        b"1" => true,
        b"0" => false,
        _ => return ctx.err(err::BIT_VALUE),
    };
    let key = ctx.arg(1).clone();
    let byte = off >> 3;
    let mask = 1u8 << (7 - (off & 7));
    let flip = |v: &mut Vec<u8>| {
        if v.len() <= byte {
            reserve_greedy(v, byte + 1);
            v.resize(byte + 1, 0);
        }
        let old = v[byte] & mask != 0;
        if on {
            v[byte] |= mask;
        } else {
            v[byte] &= !mask;
        }
        old as i64
    };
    let len = match read_str(ctx, &key) {
        Ok(v) => v.map(|v| v.len()),
        Err(()) => return ctx.wrongtype(),
    };
    // Redis signals the key only when the bit flips or the string grows.
    let same = |ctx: &mut Ctx, old: i64| {
        if old == on as i64 && len.is_some_and(|n| n > byte) {
            ctx.db().untouch(&key);
        }
    };
    if len.is_some_and(|n| n.max(byte + 1) >= Value::EDIT_IN_PLACE) {
        if let Some(old) = edit_in_place(ctx, &key, flip) {
            same(ctx, old);
            return ctx.int_reply(old);
        }
    }
    let mut v = match read_str(ctx, &key) {
        Ok(v) => v.map(|v| v.to_vec()).unwrap_or_default(),
        Err(()) => return ctx.wrongtype(),
    };
    let old = flip(&mut v);
    let now = ctx.now;
    ctx.db().insert_keep_ttl(&key, Value::Str(v.into()), now);
    ctx.db().mark_raw(&key);
    same(ctx, old);
    ctx.int_reply(old)
}

fn getbit(ctx: &mut Ctx) {
    let Some(off) = bit_offset(ctx, 2) else {
        return;
    };
    let key = ctx.arg(1).clone();
    match read_str(ctx, &key) {
        Ok(v) => {
            let bit = v
                .and_then(|v| v.get(off >> 3).copied())
                .map_or(0, |b| (b >> (7 - (off & 7))) & 1);
            ctx.int_reply(bit as i64)
        }
        Err(()) => ctx.wrongtype(),
    }
}

/// Parse the optional `start end [BYTE|BIT]` of BITCOUNT/BITPOS from argument `from`.
/// Returns (start, end, end_given, bit_mode), or the error to reply once the key has been
/// checked (Redis looks the key up first).
fn range_args(
    args: &[bytes::Bytes],
    from: usize,
    end_required: bool,
) -> Result<(i64, i64, bool, bool), &'static str> {
    let n = args.len();
    if n <= from {
        return Ok((0, -1, false, false));
    }
    if end_required && n == from + 1 {
        return Err(err::SYNTAX);
    }
    let int = |i: usize| resp::parse_i64(&args[i]).ok_or(err::NOT_INT);
    let start = int(from)?;
    if n == from + 1 {
        return Ok((start, -1, false, false));
    }
    let end = int(from + 1)?;
    let mut bit = false;
    if n == from + 3 {
        if args[from + 2].eq_ignore_ascii_case(b"bit") {
            bit = true;
        } else if !args[from + 2].eq_ignore_ascii_case(b"byte") {
            return Err(err::SYNTAX);
        }
    } else if n > from + 3 {
        return Err(err::SYNTAX);
    }
    Ok((start, end, true, bit))
}

fn bitcount(ctx: &mut Ctx) {
    let key = ctx.arg(1).clone();
    let range = range_args(ctx.args, 2, true);
    // Redis's order: the key (missing: 0 whatever the arguments) and its type, then the range.
    let count = match read_str(ctx, &key) {
        Ok(Some(v)) => {
            let (start, end, _, bit) = match range {
                Ok(r) => r,
                Err(e) => return encode::error(ctx.out, e),
            };
            let total = if bit { v.len() * 8 } else { v.len() };
            match clamp_range(start, end, total) {
                None => 0,
                Some((s, e)) if bit => count_bits(v, s, e),
                Some((s, e)) => popcount(&v[s..=e]),
            }
        }
        Ok(None) => 0,
        Err(()) => return ctx.wrongtype(),
    };
    ctx.int_reply(count as i64)
}

/// Set bits from bit `s` to bit `e` (inclusive) of `v`.
fn count_bits(v: &[u8], s: usize, e: usize) -> u64 {
    let (fb, lb) = (s >> 3, e >> 3);
    let head = 0xffu8 >> (s & 7);
    let tail = 0xffu8 << (7 - (e & 7));
    if fb == lb {
        return (v[fb] & head & tail).count_ones() as u64;
    }
    ((v[fb] & head).count_ones() + (v[lb] & tail).count_ones()) as u64 + popcount(&v[fb + 1..lb])
}

/// Set bits in `b`, eight bytes at a time (with the CPU's POPCNT instruction when it has one).
pub fn popcount(b: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("popcnt") {
        // SAFETY: the CPU supports POPCNT (checked just above).
        return unsafe { popcount_popcnt(b) };
    }
    popcount_words(b)
}

#[inline(always)]
fn popcount_words(b: &[u8]) -> u64 {
    let mut words = b.chunks_exact(8);
    let mut n: u64 = words
        .by_ref()
        .map(|w| u64::from_ne_bytes(<[u8; 8]>::try_from(w).unwrap_or_default()).count_ones() as u64)
        .sum();
    n += words
        .remainder()
        .iter()
        .map(|x| x.count_ones() as u64)
        .sum::<u64>();
    n
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn popcount_popcnt(b: &[u8]) -> u64 {
    popcount_words(b)
}

/// The first bit equal to `want` from `first` to `last` (inclusive), skipping whole bytes that
/// cannot hold it.
fn find_bit(v: &[u8], first: usize, last: usize, want: bool) -> Option<usize> {
    let skip = if want { 0x00 } else { 0xff };
    let mut i = first;
    while i <= last {
        if i & 7 == 0 && i + 7 <= last && v[i >> 3] == skip {
            i += 8;
            continue;
        }
        if (v[i >> 3] & (0x80 >> (i & 7)) != 0) == want {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn bitpos(ctx: &mut Ctx) {
    let want = match ctx.int(2) {
        Some(1) => true,
        Some(0) => false,
        Some(_) => return ctx.err("ERR The bit argument must be 1 or 0."),
        None => return,
    };
    let key = ctx.arg(1).clone();
    let range = range_args(ctx.args, 3, false);
    // Redis's order: the bit, then the key (missing: all clear bits) and its type, then the range.
    let pos = match read_str(ctx, &key) {
        Ok(Some(v)) => {
            let (start, end, end_given, bit) = match range {
                Ok(r) => r,
                Err(e) => return encode::error(ctx.out, e),
            };
            let total = if bit { v.len() * 8 } else { v.len() };
            match clamp_ends(start, end, total) {
                None => -1,
                Some((s, e)) => {
                    let (first, last) = if bit { (s, e) } else { (s * 8, e * 8 + 7) };
                    match find_bit(v, first, last, want) {
                        Some(i) => i as i64,
                        // Looking for a clear bit with no explicit end: the string is padded
                        // with zeros on the right.
                        None if !want && !end_given => (last + 1) as i64,
                        None => -1,
                    }
                }
            }
        }
        Ok(None) => {
            if want {
                -1
            } else {
                0
            }
        }
        Err(()) => return ctx.wrongtype(),
    };
    ctx.int_reply(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_counting_and_searching() {
        let v: Vec<u8> = (0..200u32)
            .map(|i| (i.wrapping_mul(37) ^ (i >> 2)) as u8)
            .collect();
        let naive = |s: usize, e: usize| {
            (s..=e)
                .filter(|&i| v[i >> 3] & (0x80 >> (i & 7)) != 0)
                .count() as u64
        };
        for (s, e) in [
            (0, 0),
            (3, 5),
            (0, 7),
            (5, 12),
            (8, 15),
            (7, 1599),
            (13, 1000),
            (1599, 1599),
        ] {
            assert_eq!(count_bits(&v, s, e), naive(s, e), "{s}..={e}");
        }
        assert_eq!(popcount(&v), naive(0, 1599));
        assert_eq!(popcount(&v[3..17]), naive(24, 17 * 8 - 1));
        let z = [0u8, 0, 0, 0x10, 0xff, 0xff, 0xfe];
        assert_eq!(find_bit(&z, 0, 55, true), Some(27));
        assert_eq!(find_bit(&z, 28, 55, true), Some(32));
        assert_eq!(find_bit(&z, 32, 55, false), Some(55));
        assert_eq!(find_bit(&z, 32, 54, false), None);
        assert_eq!(find_bit(&z, 0, 26, true), None);
    }

    #[test]
    fn ranges_like_redis() {
        assert_eq!(clamp_range(0, -1, 5), Some((0, 4)));
        assert_eq!(clamp_range(-3, -1, 5), Some((2, 4)));
        assert_eq!(clamp_range(-1, -3, 5), None);
        assert_eq!(clamp_range(3, 100, 5), Some((3, 4)));
        assert_eq!(clamp_range(0, 0, 0), None);
    }

    #[test]
    fn floats() {
        assert_eq!(parse_float(b"1.5"), Some(1.5));
        assert_eq!(parse_float(b" 1"), None);
        assert_eq!(parse_float(b"abc"), None);
        assert_eq!(human_float(10.6), "10.6");
        assert_eq!(human_float(3.0), "3");
        assert_eq!(human_float(1e20), "100000000000000000000");
    }
}
