//! HyperLogLog (Redis's `hyperloglog.c`): PFADD, PFCOUNT, PFMERGE.
//!
//! A HyperLogLog is a string in Redis's own format (`HYLL` header, 16384 six-bit registers), so
//! GET, SET, DUMP and RESTORE interoperate with Redis. We read both of Redis's encodings (sparse
//! and dense) and always write the dense one (12 KiB); the estimate is Redis's (MurmurHash64A with
//! seed `0xadc83b19`, Ertl's improved estimator), so counts are identical to Redis's.

use super::{err, Ctx, Handler};
use crate::db::Db;
use crate::value::{Value, ValueRef};

/// The HyperLogLog commands served by shards.
pub static HANDLERS: &[(&str, Handler)] =
    &[("pfadd", pfadd), ("pfcount", pfcount), ("pfmerge", pfmerge)];

const P: u32 = 14;
const REGISTERS: usize = 1 << P;
const Q: usize = 64 - P as usize;
const HDR: usize = 16;
const DENSE_SIZE: usize = HDR + REGISTERS * 6 / 8;
const ALPHA_INF: f64 = 0.721_347_520_444_481_7;

const NOT_HLL: &str = "WRONGTYPE Key is not a valid HyperLogLog string value.";
const CORRUPT: &str = "INVALIDOBJ Corrupted HLL object detected";

/// Redis's MurmurHash64A.
pub fn murmur64a(key: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (key.len() as u64).wrapping_mul(M);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut k = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        for (i, b) in rest.iter().enumerate() {
            h ^= (*b as u64) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// Register index and run length (`hllPatLen`).
fn pat_len(e: &[u8]) -> (usize, u8) {
    let mut hash = murmur64a(e, 0xadc8_3b19);
    let index = (hash & (REGISTERS as u64 - 1)) as usize;
    hash >>= P;
    hash |= 1u64 << Q;
    let mut bit = 1u64;
    let mut count = 1u8;
    while hash & bit == 0 {
        count += 1;
        bit <<= 1;
    }
    (index, count)
}

enum Bad {
    NotHll,
    Corrupt,
}

/// Decode a HyperLogLog string (dense or sparse) into one byte per register.
fn registers(s: &[u8]) -> Result<Vec<u8>, Bad> {
    if s.len() < HDR || &s[..4] != b"HYLL" || s[4] > 1 {
        return Err(Bad::NotHll);
    }
    let mut regs = vec![0u8; REGISTERS];
    if s[4] == 0 {
        if s.len() != DENSE_SIZE {
            return Err(Bad::NotHll);
        }
        let p = &s[HDR..];
        for (i, r) in regs.iter_mut().enumerate() {
            let byte = i * 6 / 8;
            let fb = (i * 6) & 7;
            let b0 = p[byte] as u16;
            let b1 = *p.get(byte + 1).unwrap_or(&0) as u16;
            *r = (((b0 >> fb) | (b1 << (8 - fb))) & 63) as u8;
        }
        return Ok(regs);
    }
    let mut i = HDR;
    let mut idx = 0usize;
    while i < s.len() {
        let b = s[i];
        if b & 0xc0 == 0 {
            idx += (b & 0x3f) as usize + 1;
            i += 1;
        } else if b & 0xc0 == 0x40 {
            let next = *s.get(i + 1).ok_or(Bad::Corrupt)? as usize;
            idx += (((b & 0x3f) as usize) << 8 | next) + 1;
            i += 2;
        } else {
            let val = ((b >> 2) & 0x1f) + 1;
            let run = (b & 3) as usize + 1;
            if idx + run > REGISTERS {
                return Err(Bad::Corrupt);
            }
            regs[idx..idx + run].iter_mut().for_each(|r| *r = val);
            idx += run;
            i += 1;
        }
        if idx > REGISTERS {
            return Err(Bad::Corrupt);
        }
    }
    if idx != REGISTERS {
        return Err(Bad::Corrupt);
    }
    Ok(regs)
}

/// The dense string for registers (cached cardinality marked invalid).
fn dense(regs: &[u8]) -> Box<[u8]> {
    let mut s = vec![0u8; DENSE_SIZE + 1];
    s[..4].copy_from_slice(b"HYLL");
    s[15] = 0x80;
    let p = &mut s[HDR..];
    for (i, &v) in regs.iter().enumerate() {
        let byte = i * 6 / 8;
        let fb = (i * 6) & 7;
        let v = v as u16;
        p[byte] |= (v << fb) as u8;
        p[byte + 1] |= (v >> (8 - fb)) as u8;
    }
    s.truncate(DENSE_SIZE);
    s.into_boxed_slice()
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let zp = z;
        z += x * y;
        y += y;
        if zp == z {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let zp = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if zp == z {
            return z / 3.0;
        }
    }
}

/// Redis's estimate for a register set.
fn count(regs: &[u8]) -> u64 {
    let mut histo = [0u32; 64];
    for &r in regs {
        histo[r as usize & 63] += 1;
    }
    let m = REGISTERS as f64;
    let mut z = m * tau((m - histo[Q + 1] as f64) / m);
    for j in (1..=Q).rev() {
        z += histo[j] as f64;
        z *= 0.5;
    }
    z += m * sigma(histo[0] as f64 / m);
    (ALPHA_INF * m * m / z).round() as u64
}

/// The registers at `key` (`None` when missing), or the error to reply.
fn load(db: &mut Db, key: &[u8], now: u64) -> Result<Option<Vec<u8>>, &'static str> {
    match db.get(key, now).map(|e| e.value) {
        None => Ok(None),
        Some(ValueRef::Str(s)) => match registers(s) {
            Ok(r) => Ok(Some(r)),
            Err(Bad::NotHll) => Err(NOT_HLL),
            Err(Bad::Corrupt) => Err(CORRUPT),
        },
        Some(_) => Err(err::WRONGTYPE),
    }
}

/// The union of the registers of `keys` (missing keys count as empty).
fn union(db: &mut Db, keys: &[bytes::Bytes], now: u64) -> Result<Vec<u8>, &'static str> {
    let mut acc = vec![0u8; REGISTERS];
    for k in keys {
        if let Some(r) = load(db, k, now)? {
            acc.iter_mut().zip(r).for_each(|(a, b)| *a = (*a).max(b));
        }
    }
    Ok(acc)
}

fn pfadd(ctx: &mut Ctx) {
    let now = ctx.now;
    let key = ctx.args[1].clone();
    let db = &mut ctx.dbs[ctx.db];
    let (mut regs, mut changed) = match load(db, &key, now) {
        Err(e) => return ctx.err(e),
        Ok(Some(r)) => (r, false),
        Ok(None) => (vec![0u8; REGISTERS], true),
    };
    for e in &ctx.args[2..] {
        let (i, c) = pat_len(e);
        if regs[i] < c {
            regs[i] = c;
            changed = true;
        }
    }
    if changed {
        db.insert_keep_ttl(&key, Value::Str(dense(&regs)), now);
    }
    ctx.int_reply(changed as i64)
}

fn pfcount(ctx: &mut Ctx) {
    let now = ctx.now;
    let db = &mut ctx.dbs[ctx.db];
    // One key with a valid cached cardinality: answer from the cache, as Redis does.
    if ctx.args.len() == 2 {
        if let Some(ValueRef::Str(s)) = db.get(&ctx.args[1], now).map(|e| e.value) {
            if s.len() >= HDR && &s[..4] == b"HYLL" && s[15] & 0x80 == 0 && registers(s).is_ok() {
                let mut c = [0u8; 8];
                c.copy_from_slice(&s[8..16]);
                return ctx.int_reply(u64::from_le_bytes(c) as i64);
            }
        }
    }
    match union(db, &ctx.args[1..], now) {
        Ok(acc) => ctx.int_reply(count(&acc) as i64),
        Err(e) => ctx.err(e),
    }
}

fn pfmerge(ctx: &mut Ctx) {
    let now = ctx.now;
    let db = &mut ctx.dbs[ctx.db];
    match union(db, &ctx.args[1..], now) {
        Ok(acc) => {
            db.insert_keep_ttl(&ctx.args[1], Value::Str(dense(&acc)), now);
            ctx.ok()
        }
        Err(e) => ctx.err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_round_trip() {
        let mut regs = vec![0u8; REGISTERS];
        for (i, r) in regs.iter_mut().enumerate() {
            *r = (i % 64) as u8;
        }
        assert_eq!(registers(&dense(&regs)).ok(), Some(regs));
    }

    #[test]
    fn empty_counts_zero() {
        assert_eq!(count(&vec![0u8; REGISTERS]), 0);
    }
}
