//! HyperLogLog (Redis's `hyperloglog.c`): PFADD, PFCOUNT, PFMERGE.
//!
//! A HyperLogLog is a string in Redis's own format (`HYLL` header, 16384 six-bit registers), so
//! GET, SET, DUMP and RESTORE interoperate with Redis. Like Redis, a new HyperLogLog starts in the
//! sparse encoding (run lengths of equal registers: a few dozen bytes for a small set) and
//! becomes dense (12 KiB) when a register needs a value above 32 or the string would pass 3,000
//! bytes (`hll-sparse-max-bytes`); both are updated in place, with Redis's opcode splitting and
//! merging, so the bytes after a PFADD or PFMERGE are the ones redis-server 7.0 writes. The
//! estimate is Redis's (MurmurHash64A with seed `0xadc83b19`, Ertl's improved estimator), so
//! counts are identical to Redis's. PFCOUNT of one key keeps the cardinality in the header as
//! Redis does; unlike Redis, it does not propagate PFCOUNT for that, so a replica's or the AOF's
//! copy may hold no cached value (the same registers).

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
    check(s)?;
    let mut regs = vec![0u8; REGISTERS];
    if s[4] == 0 {
        let p = &s[HDR..];
        for (i, r) in regs.iter_mut().enumerate() {
            *r = dense_get(p, i);
        }
        return Ok(regs);
    }
    let mut i = HDR;
    let mut idx = 0usize;
    while i < s.len() {
        let (val, run, oplen) = op_at(s, i)?;
        if idx + run > REGISTERS {
            return Err(Bad::Corrupt);
        }
        if val > 0 {
            regs[idx..idx + run].fill(val);
        }
        idx += run;
        i += oplen;
    }
    if idx != REGISTERS {
        return Err(Bad::Corrupt);
    }
    Ok(regs)
}

/// The dense string for registers under `hdr` (its magic and cached cardinality kept, its
/// encoding set to dense), as Redis converts a sparse HyperLogLog.
fn dense_with(hdr: &[u8], regs: &[u8]) -> Vec<u8> {
    let mut s = vec![0u8; DENSE_SIZE];
    s[..HDR].copy_from_slice(&hdr[..HDR]);
    s[4] = 0;
    let p = &mut s[HDR..];
    for (i, &v) in regs.iter().enumerate() {
        dense_set(p, i, v);
    }
    s
}

/// Register `i` of a dense string's register area.
fn dense_get(p: &[u8], i: usize) -> u8 {
    let byte = i * 6 / 8;
    let fb = (i * 6) & 7;
    let b0 = p[byte] as u16;
    let b1 = *p.get(byte + 1).unwrap_or(&0) as u16;
    (((b0 >> fb) | (b1 << (8 - fb))) & 63) as u8
}

/// Set register `i` of a dense string's register area to `v` (< 64).
fn dense_set(p: &mut [u8], i: usize, v: u8) {
    let byte = i * 6 / 8;
    let fb = (i * 6) & 7;
    let v = v as u16;
    p[byte] = (p[byte] as u16 & !(63 << fb) | (v << fb)) as u8;
    if fb > 2 {
        p[byte + 1] = (p[byte + 1] as u16 & !(63 >> (8 - fb)) | (v >> (8 - fb))) as u8;
    }
}

// The sparse encoding's opcodes: ZERO `00xxxxxx` (1–64 zero registers), XZERO `01xxxxxx
// yyyyyyyy` (1–16384 zero registers), VAL `1vvvvvxx` (1–4 registers of value 1–32).
const SPARSE_VAL_MAX_VALUE: u8 = 32;
const SPARSE_VAL_MAX_LEN: usize = 4;
const SPARSE_ZERO_MAX_LEN: usize = 64;

fn is_zero(b: u8) -> bool {
    b & 0xc0 == 0
}
fn is_xzero(b: u8) -> bool {
    b & 0xc0 == 0x40
}
fn val_value(b: u8) -> u8 {
    ((b >> 2) & 0x1f) + 1
}
fn val_len(b: u8) -> usize {
    (b & 3) as usize + 1
}
fn val_op(value: u8, len: usize) -> u8 {
    0x80 | ((value - 1) << 2) | (len as u8 - 1)
}
/// The opcode at `p` of a sparse string: the value of its registers (0 for ZERO and XZERO), how
/// many registers it covers, and its length in bytes.
fn op_at(s: &[u8], p: usize) -> Result<(u8, usize, usize), Bad> {
    let b = s[p];
    Ok(if is_zero(b) {
        (0, (b & 0x3f) as usize + 1, 1)
    } else if is_xzero(b) {
        let lo = *s.get(p + 1).ok_or(Bad::Corrupt)? as usize;
        (0, (((b & 0x3f) as usize) << 8 | lo) + 1, 2)
    } else {
        (val_value(b), val_len(b), 1)
    })
}

/// A ZERO or XZERO opcode for a run of `len` zero registers, appended to `out`.
fn zero_ops(out: &mut Vec<u8>, len: usize) {
    if len > SPARSE_ZERO_MAX_LEN {
        out.push(0x40 | ((len - 1) >> 8) as u8);
        out.push(((len - 1) & 0xff) as u8);
    } else {
        out.push((len - 1) as u8);
    }
}

/// A new, empty HyperLogLog: sparse, one XZERO opcode for every register, no cached
/// cardinality.
fn new_sparse() -> Vec<u8> {
    let mut s = vec![0u8; HDR];
    s[..4].copy_from_slice(b"HYLL");
    s[4] = 1;
    s[15] = 0x80;
    zero_ops(&mut s, REGISTERS);
    s
}

/// What [`sparse_set`] did.
enum SparseSet {
    Unchanged,
    Updated,
    /// The register needs the dense encoding (a value above 32, or too long a string).
    Promote,
}

/// Raise register `index` of a sparse HyperLogLog to `count` if it is lower, splitting the
/// opcode that covers it and merging equal neighbours as Redis's `hllSparseSet` does.
fn sparse_set(s: &mut Vec<u8>, index: usize, count: u8) -> Result<SparseSet, Bad> {
    if count > SPARSE_VAL_MAX_VALUE {
        return Ok(SparseSet::Promote);
    }
    // Find the opcode covering `index`.
    let (mut p, mut first, mut span, mut prev) = (HDR, 0usize, 0usize, None);
    while p < s.len() {
        let (_, len, oplen) = op_at(s, p)?;
        span = len;
        if index < first + span {
            break;
        }
        prev = Some(p);
        p += oplen;
        first += span;
    }
    if span == 0 || p >= s.len() {
        return Err(Bad::Corrupt);
    }
    let op = s[p];
    let last = first + span - 1;
    let mut done = false;
    if !is_zero(op) && !is_xzero(op) {
        if val_value(op) >= count {
            return Ok(SparseSet::Unchanged);
        }
        if span == 1 {
            s[p] = val_op(count, 1);
            done = true;
        }
    } else if is_zero(op) && span == 1 {
        s[p] = val_op(count, 1);
        done = true;
    }
    if !done {
        // Split the opcode: [run before] VAL(count, 1) [run after].
        let mut seq = Vec::with_capacity(5);
        let zero = is_zero(op) || is_xzero(op);
        if index != first {
            if zero {
                zero_ops(&mut seq, index - first);
            } else {
                seq.push(val_op(val_value(op), index - first));
            }
        }
        seq.push(val_op(count, 1));
        if index != last {
            if zero {
                zero_ops(&mut seq, last - index);
            } else {
                seq.push(val_op(val_value(op), last - index));
            }
        }
        let oldlen = if is_xzero(op) { 2 } else { 1 };
        if seq.len() > oldlen
            && s.len() + seq.len() - oldlen > crate::value::limits::hll_sparse_max()
        {
            return Ok(SparseSet::Promote);
        }
        s.splice(p..p + oldlen, seq);
    }
    // Merge adjacent VAL opcodes of the same value, scanning up to five opcodes from the one
    // before the change.
    let mut p = prev.unwrap_or(HDR);
    let mut scan = 5;
    while p < s.len() && scan > 0 {
        scan -= 1;
        if is_xzero(s[p]) {
            p += 2;
            continue;
        }
        if is_zero(s[p]) {
            p += 1;
            continue;
        }
        if p + 1 < s.len() && !is_zero(s[p + 1]) && !is_xzero(s[p + 1]) {
            let (v1, v2) = (val_value(s[p]), val_value(s[p + 1]));
            let len = val_len(s[p]) + val_len(s[p + 1]);
            if v1 == v2 && len <= SPARSE_VAL_MAX_LEN {
                s[p + 1] = val_op(v1, len);
                s.remove(p);
                continue;
            }
        }
        p += 1;
    }
    Ok(SparseSet::Updated)
}

/// Raise register `index` of the HyperLogLog string `s` (either encoding) to `count`,
/// converting it to dense when the sparse encoding cannot hold the result. Returns whether the
/// register changed.
fn raise(s: &mut Vec<u8>, index: usize, count: u8) -> Result<bool, Bad> {
    if s[4] == 1 {
        match sparse_set(s, index, count)? {
            SparseSet::Unchanged => return Ok(false),
            SparseSet::Updated => return Ok(true),
            SparseSet::Promote => {
                let regs = registers(s)?;
                *s = dense_with(&s[..HDR], &regs);
            }
        }
    }
    let p = &mut s[HDR..];
    if dense_get(p, index) >= count {
        return Ok(false);
    }
    dense_set(p, index, count);
    Ok(true)
}

/// Whether `s` is a HyperLogLog string (Redis's `isHLLObjectOrReply`, without walking the
/// sparse opcodes: a broken sparse string is found when it is used).
fn check(s: &[u8]) -> Result<(), Bad> {
    if s.len() < HDR || &s[..4] != b"HYLL" || s[4] > 1 || (s[4] == 0 && s.len() != DENSE_SIZE) {
        return Err(Bad::NotHll);
    }
    Ok(())
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

fn bad(e: Bad) -> &'static str {
    match e {
        Bad::NotHll => NOT_HLL,
        Bad::Corrupt => CORRUPT,
    }
}

/// Apply `edit` to the HyperLogLog at `key` in place, creating an empty sparse one when the key
/// is missing. Returns `edit`'s answer and whether the key was created, or the error to reply.
fn update<T>(
    db: &mut Db,
    key: &[u8],
    now: u64,
    edit: impl FnOnce(&mut Vec<u8>) -> Result<T, Bad>,
) -> Result<(T, bool), &'static str> {
    match db.get(key, now).map(|e| e.value) {
        None => {
            let mut s = new_sparse();
            let r = edit(&mut s).map_err(bad)?;
            db.insert(key, Value::Str(s.into_boxed_slice()), 0);
            // Redis allocates it as a raw string, whatever its length.
            db.mark_raw(key);
            Ok((r, true))
        }
        Some(ValueRef::Str(s)) => {
            check(s).map_err(bad)?;
            let Some(Ok(buf)) = db.str_buf(key, now) else {
                return Err(err::WRONGTYPE);
            };
            let r = edit(buf).map_err(bad)?;
            db.mark_raw(key);
            Ok((r, false))
        }
        Some(_) => Err(err::WRONGTYPE),
    }
}

fn pfadd(ctx: &mut Ctx) {
    let now = ctx.now;
    let args = ctx.args;
    let r = update(&mut ctx.dbs[ctx.db], &args[1], now, |s| {
        let mut changed = false;
        for e in &args[2..] {
            let (i, c) = pat_len(e);
            changed |= raise(s, i, c)?;
        }
        if changed {
            s[15] |= 0x80;
        }
        Ok(changed)
    });
    match r {
        Ok((changed, created)) => {
            if !(changed || created) {
                // No register raised: Redis does not signal the key.
                ctx.dbs[ctx.db].untouch(&args[1]);
            }
            ctx.int_reply((changed || created) as i64)
        }
        Err(e) => ctx.err(e),
    }
}

fn pfcount(ctx: &mut Ctx) {
    let now = ctx.now;
    let db = &mut ctx.dbs[ctx.db];
    // One key with a valid cached cardinality: answer from the cache, as Redis does.
    if ctx.args.len() == 2 {
        if let Some(ValueRef::Str(s)) = db.get(&ctx.args[1], now).map(|e| e.value) {
            if check(s).is_ok() && s[15] & 0x80 == 0 {
                let mut c = [0u8; 8];
                c.copy_from_slice(&s[8..16]);
                return ctx.int_reply(u64::from_le_bytes(c) as i64);
            }
        }
    }
    let card = match union(db, &ctx.args[1..], now) {
        Ok(acc) => count(&acc),
        Err(e) => return ctx.err(e),
    };
    // One existing key: keep the cardinality in its header, as Redis does (the string is left
    // as it was when the key is missing).
    if ctx.args.len() == 2 {
        if let Some(Ok(s)) = db.str_buf(&ctx.args[1], now) {
            s[8..16].copy_from_slice(&card.to_le_bytes());
            db.mark_raw(&ctx.args[1]);
            // Rewriting the cache modifies the string: Redis signals it (PFCOUNT is read-only,
            // so `str_buf`'s touch did not count) and propagates the PFCOUNT, so a replica's
            // copy keeps the same bytes. Not from a scratch copy: a read-only transaction's
            // copies are not written back.
            db.signal(&ctx.args[1]);
            if !db.is_scratch() {
                let args = ctx.args.to_vec();
                ctx.propagate_as(vec![args]);
            }
        }
    }
    ctx.int_reply(card as i64)
}

fn pfmerge(ctx: &mut Ctx) {
    let now = ctx.now;
    let db = &mut ctx.dbs[ctx.db];
    // As Redis: the destination stays sparse unless an input (itself included) is dense.
    let mut any_dense = false;
    for k in &ctx.args[1..] {
        if let Some(ValueRef::Str(s)) = db.get(k, now).map(|e| e.value) {
            any_dense |= s.len() > 4 && s[4] == 0;
        }
    }
    let acc = match union(db, &ctx.args[1..], now) {
        Ok(acc) => acc,
        Err(e) => return ctx.err(e),
    };
    let r = update(db, &ctx.args[1], now, |s| {
        if any_dense && s[4] == 1 {
            let regs = registers(s)?;
            *s = dense_with(&s[..HDR], &regs);
        }
        for (i, &v) in acc.iter().enumerate() {
            if v > 0 {
                raise(s, i, v)?;
            }
        }
        s[15] |= 0x80;
        Ok(())
    });
    match r {
        Ok(_) => ctx.ok(),
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
        let mut hdr = [0u8; HDR];
        hdr[..4].copy_from_slice(b"HYLL");
        assert_eq!(registers(&dense_with(&hdr, &regs)).ok(), Some(regs));
    }

    #[test]
    fn sparse_updates_match_the_registers_they_stand_for() {
        let mut s = new_sparse();
        let mut model = vec![0u8; REGISTERS];
        let mut x = 12345u64;
        for _ in 0..400 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Clustered indexes exercise VAL splits and merges, not only ZERO splits.
            let i = ((x >> 33) as usize % 64) * 7 + (x >> 20) as usize % 3;
            let c = 1 + (x >> 40) as u8 % 5;
            let before = model[i];
            model[i] = model[i].max(c);
            assert_eq!(raise(&mut s, i, c).ok(), Some(model[i] != before));
            assert_eq!(s[4], 1, "still sparse");
            assert_eq!(registers(&s).ok().as_deref(), Some(&model[..]));
        }
        // A value above 32 needs the dense encoding; the header's cache bytes are kept.
        s[8] = 7;
        assert_eq!(raise(&mut s, 5, 40).ok(), Some(true));
        model[5] = 40;
        assert_eq!((s[4], s.len(), s[8]), (0, DENSE_SIZE, 7));
        assert_eq!(registers(&s).ok(), Some(model));
    }

    #[test]
    fn empty_counts_zero() {
        assert_eq!(count(&vec![0u8; REGISTERS]), 0);
    }
}
