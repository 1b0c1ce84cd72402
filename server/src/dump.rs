//! DUMP/RESTORE: conversion between the engine's [`Value`] and the neutral [`rdb::Value`], and the
//! two commands. Payloads are RDB version 7 (what `rdb::dump` writes), which every Redis since 3.2
//! restores; we restore everything Redis 7.0 dumps. Migration (`SLOTSRESTORE`) reuses
//! [`dump_value`] and [`load_value`].

use bytes::Bytes;

use crate::cmd::{err, Ctx, Handler};
use crate::value::{Hash, List, Set, Value, ValueRef, ZSet};

/// DUMP and RESTORE.
pub static HANDLERS: &[(&str, Handler)] = &[("dump", dump), ("restore", restore)];

/// The engine value as the neutral RDB value.
pub fn to_rdb(v: ValueRef<'_>) -> rdb::Value {
    let b = |x: &[u8]| Bytes::copy_from_slice(x);
    match v {
        ValueRef::Str(s) => rdb::Value::String(b(s)),
        ValueRef::Hash(h) => rdb::Value::Hash(h.iter().map(|(f, v)| (b(f), b(v))).collect()),
        ValueRef::List(l) => rdb::Value::List(l.iter().map(b).collect()),
        ValueRef::Set(s) => rdb::Value::Set(s.members().iter().map(|m| b(m)).collect()),
        ValueRef::ZSet(z) => rdb::Value::ZSet(z.iter().map(|(m, s)| (b(m), s)).collect()),
    }
}

/// The neutral RDB value as an engine value (encoded as its size requires). Empty aggregates
/// are refused, as Redis refuses them.
pub fn from_rdb(v: rdb::Value) -> Result<Value, rdb::DumpError> {
    let empty = || rdb::DumpError::BadDataFormat(rdb::DecodeError::Invalid("empty aggregate"));
    Ok(match v {
        rdb::Value::String(s) => Value::Str(s[..].into()),
        rdb::Value::List(l) if l.is_empty() => return Err(empty()),
        rdb::Value::List(l) => Value::List(List::from_items(
            l.iter().map(|e| Box::<[u8]>::from(&e[..])),
        )),
        rdb::Value::Set(s) if s.is_empty() => return Err(empty()),
        rdb::Value::Set(s) => Value::Set(Set::from_members(s)),
        rdb::Value::ZSet(z) if z.is_empty() => return Err(empty()),
        rdb::Value::ZSet(z) => {
            if z.iter().any(|(_, s)| s.is_nan()) {
                return Err(rdb::DumpError::BadDataFormat(rdb::DecodeError::Invalid(
                    "NaN score",
                )));
            }
            Value::ZSet(ZSet::from_pairs(z))
        }
        rdb::Value::Hash(h) if h.is_empty() => return Err(empty()),
        rdb::Value::Hash(h) => Value::Hash(Hash::from_pairs(h)),
    })
}

/// A DUMP payload of a value.
pub fn dump_value(v: ValueRef<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    dump_value_into(v, &mut out);
    out
}

/// Append the DUMP payload of a value to `out` (a string's without any allocation of its own).
pub fn dump_value_into(v: ValueRef<'_>, out: &mut Vec<u8>) {
    match v {
        ValueRef::Str(s) => rdb::dump::dump_string_into(out, s),
        v => out.extend_from_slice(&rdb::dump(&to_rdb(v))),
    }
}

/// Strings shorter than this go into a slot migration's payloads without LZF: for a value this
/// small, compressing on the source and decompressing on the target cost more CPU than the few
/// bytes saved are worth on the wire (for 32-byte values, LZF was 3% of the source's CPU and 6%
/// of the target's during a migration, BENCHMARKS.md "Session 15 runs").
pub const MIGRATE_LZF_MIN_LEN: usize = 64;

/// The DUMP payload of `v` for a slot migration: [`dump_value_into`]'s bytes, except that
/// strings shorter than [`MIGRATE_LZF_MIN_LEN`] are stored raw.
pub fn migration_payload_into(v: ValueRef<'_>, out: &mut Vec<u8>) {
    match v {
        ValueRef::Str(s) => rdb::dump::dump_string_with(out, s, s.len() >= MIGRATE_LZF_MIN_LEN),
        v => dump_value_into(v, out),
    }
}

/// A value from a DUMP payload (ours or Redis's); the error's `Display` is Redis's text.
pub fn load_value(payload: &[u8]) -> Result<Value, rdb::DumpError> {
    from_rdb(rdb::restore(payload)?)
}

fn dump(ctx: &mut Ctx) {
    let now = ctx.now;
    let p = ctx.dbs[ctx.db]
        .get(&ctx.args[1], now)
        .map(|e| dump_value(e.value));
    match p {
        Some(p) => ctx.bulk(&p),
        None => ctx.null(),
    }
}

/// `RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f]`, checks in Redis's order.
fn restore(ctx: &mut Ctx) {
    let (mut replace, mut absttl, mut idle, mut freq) = (false, false, false, false);
    let (mut idle_v, mut freq_v) = (None, None);
    let mut j = 4;
    while j < ctx.args.len() {
        let more = j + 1 < ctx.args.len();
        if ctx.is(j, "replace") {
            replace = true;
        } else if ctx.is(j, "absttl") {
            absttl = true;
        } else if ctx.is(j, "idletime") && more && !freq {
            let Some(v) = ctx.int(j + 1) else { return };
            if v < 0 {
                return ctx.err("ERR Invalid IDLETIME value, must be >= 0");
            }
            idle = true;
            idle_v = Some(v as u64);
            j += 1;
        } else if ctx.is(j, "freq") && more && !idle {
            let Some(v) = ctx.int(j + 1) else { return };
            if !(0..=255).contains(&v) {
                return ctx.err("ERR Invalid FREQ value, must be >= 0 and <= 255");
            }
            freq = true;
            freq_v = Some(v as u8);
            j += 1;
        } else {
            return ctx.err(err::SYNTAX);
        }
        j += 1;
    }
    let now = ctx.now;
    let key = ctx.args[1].clone();
    if !replace && ctx.dbs[ctx.db].contains(&key, now) {
        return ctx.err(err::BUSYKEY);
    }
    let Some(ttl) = ctx.int(2) else { return };
    if ttl < 0 {
        return ctx.err("ERR Invalid TTL value, must be >= 0");
    }
    let v = match load_value(ctx.arg(3)) {
        Ok(v) => v,
        Err(e) => return ctx.err(&format!("ERR {e}")),
    };
    let db = &mut ctx.dbs[ctx.db];
    if replace {
        db.delete(&key);
    }
    let at = match (ttl, absttl) {
        (0, _) => 0,
        (t, true) => t as u64,
        (t, false) => now.saturating_add(t as u64),
    };
    if at != 0 && at <= now {
        if replace {
            ctx.propagate_as(vec![crate::cmd::argv(&[b"DEL", &key])]);
        }
        return ctx.ok();
    }
    db.insert(&key, v, at);
    if let Some(c) = crate::db::clock::from_hints(freq_v, idle_v) {
        db.set_clock(&key, c);
    }
    if ctx.propagating() {
        ctx.propagate_as(vec![restore_abs(&key, at, &ctx.args[3])]);
    }
    ctx.ok()
}

/// `RESTORE key <absolute ms> payload REPLACE ABSTTL` (or `… 0 payload REPLACE` without expiry):
/// how a restored key propagates, so replicas get the same absolute expiry.
pub fn restore_abs(key: &[u8], at: u64, payload: &[u8]) -> Vec<bytes::Bytes> {
    let at_s = at.to_string();
    let mut c = crate::cmd::argv(&[b"RESTORE", key, at_s.as_bytes(), payload, b"REPLACE"]);
    if at != 0 {
        c.push(bytes::Bytes::from_static(b"ABSTTL"));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_type() {
        let vals = vec![
            Value::Str(b"hello"[..].into()),
            Value::Hash(Hash::from_pairs([("a", "1"), ("b", "2")])),
            Value::List(List::from_items([&b"x"[..], b"y"].map(Box::<[u8]>::from))),
            Value::Set(Set::from_members(["1", "2", "3"])),
            Value::Set(Set::from_members(["a", "b"])),
            Value::ZSet(ZSet::from_pairs([("a", 1.5), ("b", -2.0)])),
        ];
        for v in vals {
            let back = load_value(&dump_value(v.view())).unwrap();
            assert_eq!(back, v);
        }
        assert_eq!(
            load_value(b"nonsense").unwrap_err().to_string(),
            "DUMP payload version or checksum are wrong"
        );
    }
}
