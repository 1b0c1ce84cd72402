//! Codis migration, target side: SLOTSRESTORE (sync) and SLOTSRESTORE-ASYNC (async stream).

use bytes::{Bytes, BytesMut};
use resp::encode;

use super::{Ctx, Handler};
use crate::value::{Value, ValueMut};

/// The slot commands served by shards.
pub static HANDLERS: &[(&str, Handler)] = &[
    ("slotsrestore", slotsrestore),
    ("slotsrestore-async", slotsrestore_async),
];

/// `SLOTSRESTORE key ttl payload [key ttl payload …]`: validate every triple, then replace each key.
fn slotsrestore(ctx: &mut Ctx) {
    let _low = crate::lowprio::enter();
    let n = ctx.args.len() - 1;
    if n % 3 != 0 {
        return ctx.err("ERR wrong number of arguments for 'slotsrestore' command");
    }
    /// A checked triple's value: a string's bytes in `strs`, or any other value.
    enum Restored {
        Str(usize, usize),
        Value(crate::value::Value),
    }
    // Every triple is checked before any key is written (all or nothing). Strings, nearly every
    // key a migration moves, are decoded into one buffer instead of a value each.
    let mut parsed = Vec::with_capacity(n / 3);
    let mut strs = Vec::with_capacity(ctx.args[1..].chunks(3).map(|t| t[2].len()).sum());
    for t in ctx.args[1..].chunks(3) {
        let ttl = match resp::parse_i64(&t[1]) {
            Some(v) if v >= 0 => v as u64,
            _ => return ctx.err("ERR invalid ttl value, must be >= 0"),
        };
        let start = strs.len();
        let body = match rdb::dump::restore_string_append(&t[2], &mut strs) {
            Ok(true) => Ok(Restored::Str(start, strs.len())),
            Ok(false) => crate::dump::load_value(&t[2]).map(Restored::Value),
            Err(e) => Err(e),
        };
        match body {
            Ok(b) => parsed.push((ttl, b)),
            Err(e) => return ctx.err(&format!("ERR {}", e.to_string().to_lowercase())),
        }
    }
    let now = ctx.now;
    let mut fx = Vec::new();
    for (i, (ttl, body)) in parsed.into_iter().enumerate() {
        let at = if ttl == 0 { 0 } else { now + ttl };
        let k = ctx.args[1 + 3 * i].clone();
        if ctx.propagating() {
            fx.push(crate::dump::restore_abs(&k, at, &ctx.args[3 + 3 * i]));
        }
        match body {
            Restored::Str(a, b) => ctx.db().insert_str(&k, &strs[a..b], at),
            Restored::Value(v) => ctx.db().insert(&k, v, at),
        };
    }
    ctx.propagate_as(fx);
    ctx.ok()
}

/// Append `SLOTSRESTORE-ASYNC-ACK errno msg`.
pub fn ack(out: &mut BytesMut, errno: i64, msg: &str) {
    if errno == 0 && msg == "OK" {
        // The reply of every restored key, preformatted.
        return out
            .extend_from_slice(b"*3\r\n$22\r\nSLOTSRESTORE-ASYNC-ACK\r\n$1\r\n0\r\n$2\r\nOK\r\n");
    }
    encode::array(out, 3);
    encode::bulk(out, b"SLOTSRESTORE-ASYNC-ACK");
    encode::bulk(out, errno.to_string().as_bytes());
    encode::bulk(out, msg.as_bytes());
}

/// `SLOTSRESTORE-ASYNC delete key | expire key ttl | object key ttl payload | string key ttl value
/// | list|hash|dict|zset key ttl hint elements…`. Every form answers `SLOTSRESTORE-ASYNC-ACK errno msg`.
fn slotsrestore_async(ctx: &mut Ctx) {
    let argc = ctx.args.len();
    if argc == 5 && ctx.arg(1).eq_ignore_ascii_case(b"object") {
        // The form of every small key: no other work before it (not even the priority switch,
        // which would cost more than restoring one small key).
        return restore_object(ctx);
    }
    // A chunk of a big key's elements: a slice of migration work.
    let _low = crate::lowprio::enter();
    let sub = String::from_utf8_lossy(ctx.arg(1)).to_lowercase();
    let now = ctx.now;
    let ttl_at = |ctx: &Ctx, i: usize| -> Option<u64> { ttl_at(ctx, i, now) };
    match (sub.as_str(), argc) {
        ("delete", 3) => {
            let k = ctx.arg(2).clone();
            ctx.db().remove(&k);
            ctx.propagate_as(vec![super::argv(&[b"DEL", &k])]);
            ack(ctx.out, 0, "OK")
        }
        ("expire", 4) => {
            let Some(at) = ttl_at(ctx, 3) else {
                return ack(ctx.out, 1, "invalid ttl value");
            };
            let k = ctx.arg(2).clone();
            if ctx.db().set_expire(&k, at, now) {
                let c = if at == 0 {
                    super::argv(&[b"PERSIST", &k])
                } else {
                    super::argv(&[b"PEXPIREAT", &k, at.to_string().as_bytes()])
                };
                ctx.propagate_as(vec![c]);
            }
            ack(ctx.out, 0, "OK")
        }
        ("string", 5) => {
            let Some(at) = ttl_at(ctx, 3) else {
                return ack(ctx.out, 1, "invalid ttl value");
            };
            let (k, v) = (ctx.arg(2).clone(), ctx.arg(4).clone());
            ctx.db()
                .insert(&k, crate::value::Value::Str((&v[..]).into()), at);
            let c = if at == 0 {
                super::argv(&[b"SET", &k, &v])
            } else {
                super::argv(&[b"SET", &k, &v, b"PXAT", at.to_string().as_bytes()])
            };
            ctx.propagate_as(vec![c]);
            ack(ctx.out, 0, "OK")
        }
        ("list" | "hash" | "dict" | "zset", n) if n >= 5 => restore_chunk(ctx, &sub),
        _ => ack(
            ctx.out,
            1,
            &format!(
                "unsupported slotsrestore-async form '{sub}' with {} arguments",
                argc - 1
            ),
        ),
    }
}

/// Argument `i` as a TTL in ms (0: none) made absolute; `None` when it is not a number ≥ 0.
fn ttl_at(ctx: &Ctx, i: usize, now: u64) -> Option<u64> {
    let v = resp::parse_i64(ctx.args.get(i)?)?;
    (v >= 0).then(|| if v == 0 { 0 } else { now + v as u64 })
}

std::thread_local! {
    /// A string being restored (reused from key to key).
    static STR_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `SLOTSRESTORE-ASYNC object key ttl payload`: one key from its DUMP payload (a string goes
/// straight from the payload into the key's node).
fn restore_object(ctx: &mut Ctx) {
    let Some(at) = ttl_at(ctx, 3, ctx.now) else {
        return ack(ctx.out, 1, "invalid ttl value");
    };
    let k = ctx.arg(2).clone();
    let res = STR_BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        let done = rdb::dump::restore_string_into(ctx.arg(4), &mut buf)?;
        if done {
            ctx.db().insert_str(&k, &buf, at);
        } else {
            let v = crate::dump::load_value(ctx.arg(4))?;
            ctx.db().insert(&k, v, at);
        }
        if buf.capacity() > 64 * 1024 {
            *buf = Vec::new();
        }
        Ok::<(), rdb::DumpError>(())
    });
    match res {
        Ok(()) => {
            if ctx.propagating() {
                let c = crate::dump::restore_abs(&k, at, &ctx.args[4]);
                ctx.propagate_as(vec![c]);
            }
            ack(ctx.out, 0, "OK")
        }
        Err(e) => ack(ctx.out, 1, &e.to_string()),
    }
}

/// `SLOTSRESTORE-ASYNC list|hash|dict|zset key ttl hint elements…`: one chunk of a big collection
/// (Codis 3.2's chunked form). Elements are appended to the key (created by the first chunk); a
/// zset score travels as the 8 raw bytes of its IEEE 754 bits. The TTL (ms, 0: none) is set after
/// each chunk: the source sends a temporary one and fixes it with `expire` at the end, so a
/// migration that dies half way leaves nothing behind for long. Acks the collection's length.
fn restore_chunk(ctx: &mut Ctx, sub: &str) {
    let now = ctx.now;
    let ttl = match resp::parse_i64(ctx.arg(3)) {
        Some(v) if v >= 0 => v as u64,
        _ => {
            let msg = format!(
                "invalid TTL value (TTL={})",
                String::from_utf8_lossy(ctx.arg(3))
            );
            return ack(ctx.out, 1, &msg);
        }
    };
    if !resp::parse_i64(ctx.arg(4)).is_some_and(|h| h >= 0) {
        let msg = format!(
            "invalid Hint value (Hint={})",
            String::from_utf8_lossy(ctx.arg(4))
        );
        return ack(ctx.out, 1, &msg);
    }
    let elems = &ctx.args[5..];
    let pairs = matches!(sub, "hash" | "zset");
    if pairs && elems.len() % 2 != 0 {
        let msg = format!(
            "wrong number of arguments (argc={},cmd={sub})",
            ctx.args.len()
        );
        return ack(ctx.out, 1, &msg);
    }
    let mut scores = Vec::new();
    if sub == "zset" {
        for (j, s) in elems.iter().skip(1).step_by(2).enumerate() {
            let Ok(raw) = <[u8; 8]>::try_from(&s[..]) else {
                return ack(
                    ctx.out,
                    1,
                    &format!("invalid zset score ([{j}]), bad raw bits"),
                );
            };
            let score = f64::from_bits(u64::from_le_bytes(raw));
            if score.is_nan() {
                return ack(
                    ctx.out,
                    1,
                    &format!("invalid zset score ([{j}]), not a number"),
                );
            }
            scores.push(score);
        }
    }
    let key = ctx.arg(2).clone();
    let expected = match sub {
        "list" => "list",
        "hash" => "hash",
        "dict" => "set",
        _ => "zset",
    };
    let db = &mut ctx.dbs[ctx.db];
    if db.get(&key, now).is_none() {
        if elems.is_empty() {
            let msg = format!(
                "the specified key doesn't exist ({})",
                String::from_utf8_lossy(&key)
            );
            return ack(ctx.out, 1, &msg);
        }
        let empty = match sub {
            "list" => Value::List(Default::default()),
            "hash" => Value::Hash(Default::default()),
            "dict" => Value::Set(Default::default()),
            _ => Value::ZSet(Default::default()),
        };
        db.insert(&key, empty, 0);
    }
    let Some(e) = db.get_mut(&key, now) else {
        return ack(ctx.out, 1, "the key vanished");
    };
    let len = match e.value {
        ValueMut::List(l) if expected == "list" => {
            for x in elems {
                l.push(x, false);
            }
            l.len()
        }
        ValueMut::Hash(h) if expected == "hash" => {
            for fv in elems.chunks(2) {
                h.set(&fv[0], &fv[1]);
            }
            h.len()
        }
        ValueMut::Set(st) if expected == "set" => {
            for x in elems {
                st.insert(x);
            }
            st.len()
        }
        ValueMut::ZSet(z) if expected == "zset" => {
            for (m, score) in elems.iter().step_by(2).zip(scores) {
                z.insert(m, score);
            }
            z.len()
        }
        other => {
            let msg = format!(
                "wrong type (expect={expected},got={})",
                other.view().type_name()
            );
            return ack(ctx.out, 1, &msg);
        }
    };
    let at = if ttl == 0 { 0 } else { now + ttl };
    db.set_expire(&key, at, now);
    if ctx.propagating() && !elems.is_empty() {
        // Replicas get the plain commands with an absolute expiry.
        let name: &[u8] = match sub {
            "list" => b"RPUSH",
            "hash" => b"HSET",
            "dict" => b"SADD",
            _ => b"ZADD",
        };
        let mut c = vec![Bytes::from_static(name), key.clone()];
        if sub == "zset" {
            for (m, raw) in elems.chunks(2).map(|p| (&p[0], &p[1])) {
                let bits = <[u8; 8]>::try_from(&raw[..]).map_or(0, u64::from_le_bytes);
                c.push(Bytes::from(format!("{}", f64::from_bits(bits))));
                c.push(m.clone());
            }
        } else {
            c.extend(elems.iter().cloned());
        }
        let ttl_cmd = if at == 0 {
            super::argv(&[b"PERSIST", &key])
        } else {
            super::argv(&[b"PEXPIREAT", &key, at.to_string().as_bytes()])
        };
        ctx.propagate_as(vec![c, ttl_cmd]);
    }
    ack(ctx.out, 0, &len.to_string())
}
