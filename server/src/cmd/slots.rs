//! Codis migration, target side: SLOTSRESTORE (sync) and SLOTSRESTORE-ASYNC (async stream).

use bytes::BytesMut;
use resp::encode;

use super::{Ctx, Handler};

/// The slot commands served by shards.
pub static HANDLERS: &[(&str, Handler)] = &[
    ("slotsrestore", slotsrestore),
    ("slotsrestore-async", slotsrestore_async),
];

/// `SLOTSRESTORE key ttl payload [key ttl payload …]`: validate every triple, then replace each key.
fn slotsrestore(ctx: &mut Ctx) {
    let n = ctx.args.len() - 1;
    if n % 3 != 0 {
        return ctx.err("ERR wrong number of arguments for 'slotsrestore' command");
    }
    let mut parsed = Vec::with_capacity(n / 3);
    for t in ctx.args[1..].chunks(3) {
        let ttl = match resp::parse_i64(&t[1]) {
            Some(v) if v >= 0 => v as u64,
            _ => return ctx.err("ERR invalid ttl value, must be >= 0"),
        };
        match crate::dump::load_value(&t[2]) {
            Ok(v) => parsed.push((t[0].clone(), ttl, v)),
            Err(e) => return ctx.err(&format!("ERR {}", e.to_string().to_lowercase())),
        }
    }
    let now = ctx.now;
    let mut fx = Vec::new();
    for (i, (k, ttl, v)) in parsed.into_iter().enumerate() {
        let at = if ttl == 0 { 0 } else { now + ttl };
        if ctx.propagating() {
            fx.push(crate::dump::restore_abs(&k, at, &ctx.args[3 + 3 * i]));
        }
        ctx.db().insert(&k, v, at);
    }
    ctx.propagate_as(fx);
    ctx.ok()
}

/// Append `SLOTSRESTORE-ASYNC-ACK errno msg`.
pub fn ack(out: &mut BytesMut, errno: i64, msg: &str) {
    encode::array(out, 3);
    encode::bulk(out, b"SLOTSRESTORE-ASYNC-ACK");
    encode::bulk(out, errno.to_string().as_bytes());
    encode::bulk(out, msg.as_bytes());
}

/// `SLOTSRESTORE-ASYNC delete key | expire key ttl | object key ttl payload | string key ttl value`.
/// Every form answers `SLOTSRESTORE-ASYNC-ACK errno msg`.
fn slotsrestore_async(ctx: &mut Ctx) {
    let sub = String::from_utf8_lossy(ctx.arg(1)).to_lowercase();
    let argc = ctx.args.len();
    let now = ctx.now;
    let ttl_at = |ctx: &Ctx, i: usize| -> Option<u64> {
        let v = resp::parse_i64(ctx.args.get(i)?)?;
        (v >= 0).then(|| if v == 0 { 0 } else { now + v as u64 })
    };
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
        ("object", 5) => {
            let Some(at) = ttl_at(ctx, 3) else {
                return ack(ctx.out, 1, "invalid ttl value");
            };
            match crate::dump::load_value(ctx.arg(4)) {
                Ok(v) => {
                    let k = ctx.arg(2).clone();
                    ctx.db().insert(&k, v, at);
                    if ctx.propagating() {
                        let c = crate::dump::restore_abs(&k, at, &ctx.args[4]);
                        ctx.propagate_as(vec![c]);
                    }
                    ack(ctx.out, 0, "OK")
                }
                Err(e) => ack(ctx.out, 1, &e.to_string()),
            }
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
