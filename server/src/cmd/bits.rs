//! Bitmap and string-matching commands beyond single bits (Redis's `bitops.c` and `LCS` from
//! `t_string.c`): BITOP, BITFIELD, BITFIELD_RO and LCS, with Redis 7.0's arguments, replies and
//! error strings.
//!
//! BITFIELD writes edit a long string in place (`Db::str_buf`), as SETBIT does: a counter in a
//! large bitmap costs the bits it touches, not a copy of the bitmap.

use resp::encode;

use super::string::read_str;
use super::{err, Ctx, Handler};
use crate::value::{reserve_greedy, Value};

pub static HANDLERS: &[(&str, Handler)] = &[
    ("bitop", bitop),
    ("bitfield", bitfield),
    ("bitfield_ro", bitfield_ro),
    ("lcs", lcs),
];

#[derive(Clone, Copy, PartialEq)]
enum Op {
    And,
    Or,
    Xor,
    Not,
}

/// `BITOP op destkey key [key ...]`: the result is as long as the longest source (missing keys
/// and shorter strings count as zero bytes); an empty result deletes the destination.
fn bitop(ctx: &mut Ctx) {
    let op = if ctx.is(1, "and") {
        Op::And
    } else if ctx.is(1, "or") {
        Op::Or
    } else if ctx.is(1, "xor") {
        Op::Xor
    } else if ctx.is(1, "not") {
        Op::Not
    } else {
        return ctx.err(err::SYNTAX);
    };
    if op == Op::Not && ctx.args.len() != 4 {
        return ctx.err("ERR BITOP NOT must be called with a single source key.");
    }
    let keys = ctx.args[3..].to_vec();
    let mut srcs: Vec<Vec<u8>> = Vec::with_capacity(keys.len());
    for k in &keys {
        match read_str(ctx, k) {
            Ok(v) => srcs.push(v.map(<[u8]>::to_vec).unwrap_or_default()),
            Err(()) => return ctx.wrongtype(),
        }
    }
    let maxlen = srcs.iter().map(Vec::len).max().unwrap_or(0);
    let dst = ctx.args[2].clone();
    if maxlen == 0 {
        ctx.db().delete(&dst);
        return ctx.int_reply(0);
    }
    let byte = |s: &Vec<u8>, i: usize| s.get(i).copied().unwrap_or(0);
    let mut res = vec![0u8; maxlen];
    for (i, out) in res.iter_mut().enumerate() {
        let mut b = byte(&srcs[0], i);
        for s in &srcs[1..] {
            match op {
                Op::And => b &= byte(s, i),
                Op::Or => b |= byte(s, i),
                Op::Xor => b ^= byte(s, i),
                Op::Not => {}
            }
        }
        *out = if op == Op::Not { !b } else { b };
    }
    // As Redis's `setKey` of a new object: no expiry, encoding `raw`.
    ctx.db().insert_str(&dst, &res, 0);
    ctx.db().mark_raw(&dst);
    ctx.int_reply(maxlen as i64)
}

#[derive(Clone, Copy, PartialEq)]
enum Overflow {
    Wrap,
    Sat,
    Fail,
}

#[derive(Clone, Copy, PartialEq)]
enum FieldOp {
    Get,
    Set,
    Incrby,
}

/// One parsed BITFIELD operation.
struct Field {
    op: FieldOp,
    signed: bool,
    bits: u32,
    offset: u64,
    value: i64,
    overflow: Overflow,
}

const BAD_TYPE: &str = "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.";

/// `i1`..`i64` or `u1`..`u63` (case-sensitive, as Redis).
fn field_type(a: &[u8]) -> Option<(bool, u32)> {
    let signed = match a.first() {
        Some(b'i') => true,
        Some(b'u') => false,
        _ => return None,
    };
    let bits = resp::parse_i64(&a[1..])?;
    let max = if signed { 64 } else { 63 };
    (1..=max).contains(&bits).then_some((signed, bits as u32))
}

/// A bit offset, `#n` meaning `n` fields of `bits` bits; below 2^32 (512 MB of bits).
fn field_offset(a: &[u8], bits: u32) -> Option<u64> {
    let (n, scale) = match a.strip_prefix(b"#") {
        Some(rest) => (resp::parse_i64(rest)?, bits as i64),
        None => (resp::parse_i64(a)?, 1),
    };
    let off = n.checked_mul(scale)?;
    (0..1i64 << 32).contains(&off).then_some(off as u64)
}

fn get_unsigned(p: &[u8], offset: u64, bits: u32) -> u64 {
    let mut v = 0u64;
    for i in 0..bits as u64 {
        let o = offset + i;
        let bit = p
            .get((o >> 3) as usize)
            .map_or(0, |b| (b >> (7 - (o & 7))) & 1);
        v = (v << 1) | bit as u64;
    }
    v
}

fn get_signed(p: &[u8], offset: u64, bits: u32) -> i64 {
    let v = get_unsigned(p, offset, bits);
    if bits < 64 && v & (1 << (bits - 1)) != 0 {
        (v | (u64::MAX << bits)) as i64
    } else {
        v as i64
    }
}

/// Write the low `bits` bits of `v` at `offset`, most significant first (the buffer is long
/// enough: grown before any write).
fn set_bits(p: &mut [u8], offset: u64, bits: u32, v: u64) {
    for i in 0..bits as u64 {
        let o = offset + i;
        let on = (v >> (bits as u64 - 1 - i)) & 1 != 0;
        let byte = &mut p[(o >> 3) as usize];
        let mask = 1u8 << (7 - (o & 7));
        if on {
            *byte |= mask;
        } else {
            *byte &= !mask;
        }
    }
}

/// Redis's `checkUnsignedBitfieldOverflow`: whether `value + incr` leaves `bits` bits, and the
/// value WRAP or SAT makes of it.
fn unsigned_overflow(value: u64, incr: i64, bits: u32, ow: Overflow) -> Option<u64> {
    let max = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let maxincr = max.wrapping_sub(value) as i64;
    let minincr = (value as i64).wrapping_neg();
    let wrap = || value.wrapping_add(incr as u64) & !(u64::MAX.checked_shl(bits).unwrap_or(0));
    if value > max || (incr > 0 && incr > maxincr) {
        Some(if ow == Overflow::Wrap { wrap() } else { max })
    } else if incr < 0 && incr < minincr {
        Some(if ow == Overflow::Wrap { wrap() } else { 0 })
    } else {
        None
    }
}

/// Redis's `checkSignedBitfieldOverflow`.
fn signed_overflow(value: i64, incr: i64, bits: u32, ow: Overflow) -> Option<i64> {
    let max = if bits == 64 {
        i64::MAX
    } else {
        (1i64 << (bits - 1)) - 1
    };
    let min = -max - 1;
    let maxincr = (max as u64).wrapping_sub(value as u64) as i64;
    let minincr = min.wrapping_sub(value);
    let wrap = || {
        let mut c = (value as u64).wrapping_add(incr as u64);
        if bits < 64 {
            let mask = u64::MAX << bits;
            if c & (1 << (bits - 1)) != 0 {
                c |= mask;
            } else {
                c &= !mask;
            }
        }
        c as i64
    };
    if value > max || (bits != 64 && incr > maxincr) || (value >= 0 && incr > 0 && incr > maxincr) {
        Some(if ow == Overflow::Wrap { wrap() } else { max })
    } else if value < min
        || (bits != 64 && incr < minincr)
        || (value < 0 && incr < 0 && incr < minincr)
    {
        Some(if ow == Overflow::Wrap { wrap() } else { min })
    } else {
        None
    }
}

/// Parse every operation first (any error replies before anything runs), as Redis does.
fn parse_fields(ctx: &mut Ctx) -> Option<Vec<Field>> {
    let mut fields = Vec::new();
    let mut overflow = Overflow::Wrap;
    let n = ctx.args.len();
    let mut j = 2;
    while j < n {
        let rem = n - j - 1;
        let op = if ctx.is(j, "get") && rem >= 2 {
            FieldOp::Get
        } else if ctx.is(j, "set") && rem >= 3 {
            FieldOp::Set
        } else if ctx.is(j, "incrby") && rem >= 3 {
            FieldOp::Incrby
        } else if ctx.is(j, "overflow") && rem >= 1 {
            overflow = if ctx.is(j + 1, "wrap") {
                Overflow::Wrap
            } else if ctx.is(j + 1, "sat") {
                Overflow::Sat
            } else if ctx.is(j + 1, "fail") {
                Overflow::Fail
            } else {
                ctx.err("ERR Invalid OVERFLOW type specified");
                return None;
            };
            j += 2;
            continue;
        } else {
            ctx.err(err::SYNTAX);
            return None;
        };
        let Some((signed, bits)) = field_type(&ctx.args[j + 1]) else {
            ctx.err(BAD_TYPE);
            return None;
        };
        let Some(offset) = field_offset(&ctx.args[j + 2], bits) else {
            ctx.err(err::BIT_OFFSET);
            return None;
        };
        let value = if op == FieldOp::Get {
            0
        } else {
            ctx.int(j + 3)?
        };
        fields.push(Field {
            op,
            signed,
            bits,
            offset,
            value,
            overflow,
        });
        j += if op == FieldOp::Get { 3 } else { 4 };
    }
    Some(fields)
}

/// Run one SET or INCRBY on `buf`; the reply value, or None when OVERFLOW FAIL refused it.
/// Sets `*changed` when the stored bits differ afterwards.
fn write_field(buf: &mut [u8], f: &Field, changed: &mut bool) -> Option<i64> {
    if f.signed {
        let old = get_signed(buf, f.offset, f.bits);
        let (new, reply, over) = if f.op == FieldOp::Incrby {
            let w = signed_overflow(old, f.value, f.bits, f.overflow);
            let new = w.unwrap_or_else(|| old.wrapping_add(f.value));
            (new, new, w.is_some())
        } else {
            let w = signed_overflow(f.value, 0, f.bits, f.overflow);
            (w.unwrap_or(f.value), old, w.is_some())
        };
        if over && f.overflow == Overflow::Fail {
            return None;
        }
        set_bits(buf, f.offset, f.bits, new as u64);
        *changed |= old != new;
        Some(reply)
    } else {
        let old = get_unsigned(buf, f.offset, f.bits);
        let (new, reply, over) = if f.op == FieldOp::Incrby {
            let w = unsigned_overflow(old, f.value, f.bits, f.overflow);
            let new = w.unwrap_or_else(|| old.wrapping_add(f.value as u64));
            (new, new, w.is_some())
        } else {
            let w = unsigned_overflow(f.value as u64, 0, f.bits, f.overflow);
            (w.unwrap_or(f.value as u64), old, w.is_some())
        };
        if over && f.overflow == Overflow::Fail {
            return None;
        }
        set_bits(buf, f.offset, f.bits, new);
        *changed |= old != new;
        Some(reply as i64)
    }
}

fn read_field(v: &[u8], f: &Field) -> i64 {
    if f.signed {
        get_signed(v, f.offset, f.bits)
    } else {
        get_unsigned(v, f.offset, f.bits) as i64
    }
}

fn bitfield_generic(ctx: &mut Ctx, read_only: bool) {
    let Some(fields) = parse_fields(ctx) else {
        return;
    };
    let key = ctx.args[1].clone();
    let writes = fields.iter().any(|f| f.op != FieldOp::Get);
    if !writes {
        let v = match read_str(ctx, &key) {
            Ok(v) => v.map(<[u8]>::to_vec).unwrap_or_default(),
            Err(()) => return ctx.wrongtype(),
        };
        ctx.array(fields.len());
        for f in &fields {
            let n = read_field(&v, f);
            ctx.int_reply(n);
        }
        return;
    }
    if read_only {
        return ctx.err("ERR BITFIELD_RO only supports the GET subcommand");
    }
    // Redis grows (or creates) the string to the farthest bit written before running any
    // operation, even one that OVERFLOW FAIL then refuses.
    let need = fields
        .iter()
        .filter(|f| f.op != FieldOp::Get)
        .map(|f| ((f.offset + f.bits as u64 - 1) >> 3) as usize + 1)
        .max()
        .unwrap_or(0);
    let len = match read_str(ctx, &key) {
        Ok(v) => v.map(<[u8]>::len),
        Err(()) => return ctx.wrongtype(),
    };
    let mut replies: Vec<Option<i64>> = Vec::with_capacity(fields.len());
    let mut changed = false;
    let mut run = |buf: &mut Vec<u8>| {
        if buf.len() < need {
            reserve_greedy(buf, need);
            buf.resize(need, 0);
        }
        for f in &fields {
            replies.push(match f.op {
                FieldOp::Get => Some(read_field(buf, f)),
                _ => write_field(buf, f, &mut changed),
            });
        }
    };
    let now = ctx.now;
    match len {
        Some(n) if n.max(need) >= Value::EDIT_IN_PLACE => match ctx.db().str_buf(&key, now) {
            Some(Ok(buf)) => run(buf),
            _ => return ctx.wrongtype(),
        },
        _ => {
            let mut v = match read_str(ctx, &key) {
                Ok(v) => v.map(<[u8]>::to_vec).unwrap_or_default(),
                Err(()) => return ctx.wrongtype(),
            };
            run(&mut v);
            ctx.db().insert_keep_ttl(&key, Value::Str(v.into()), now);
        }
    }
    ctx.db().mark_raw(&key);
    if !changed && len.is_some_and(|n| n >= need) {
        // No bit changed and the string did not grow: Redis does not signal the key.
        ctx.db().untouch(&key);
    }
    ctx.array(replies.len());
    for r in replies {
        match r {
            Some(n) => ctx.int_reply(n),
            None => ctx.null(),
        }
    }
}

fn bitfield(ctx: &mut Ctx) {
    bitfield_generic(ctx, false)
}

fn bitfield_ro(ctx: &mut Ctx) {
    bitfield_generic(ctx, true)
}

/// `LCS key1 key2 [LEN] [IDX] [MINMATCHLEN n] [WITHMATCHLEN]`: the longest common subsequence
/// by Redis's dynamic programming table (and its limit: a table over 512 MB is refused).
fn lcs(ctx: &mut Ctx) {
    let (ka, kb) = (ctx.args[1].clone(), ctx.args[2].clone());
    let a = read_str(ctx, &ka).map(|v| v.map(<[u8]>::to_vec));
    let b = read_str(ctx, &kb).map(|v| v.map(<[u8]>::to_vec));
    let (Ok(a), Ok(b)) = (a, b) else {
        return ctx.err("ERR The specified keys must contain string values");
    };
    let (a, b) = (a.unwrap_or_default(), b.unwrap_or_default());
    let (mut get_len, mut get_idx, mut with_len) = (false, false, false);
    let mut min_len: i64 = 0;
    let mut j = 3;
    while j < ctx.args.len() {
        let more = ctx.args.len() - 1 - j;
        if ctx.is(j, "idx") {
            get_idx = true;
        } else if ctx.is(j, "len") {
            get_len = true;
        } else if ctx.is(j, "withmatchlen") {
            with_len = true;
        } else if ctx.is(j, "minmatchlen") && more > 0 {
            let Some(n) = ctx.int(j + 1) else { return };
            min_len = n.max(0);
            j += 1;
        } else {
            return ctx.err(err::SYNTAX);
        }
        j += 1;
    }
    if get_len && get_idx {
        return ctx.err("ERR If you want both the length and indexes, please just use IDX.");
    }
    let (alen, blen) = (a.len(), b.len());
    let cells = (alen as u64 + 1) * (blen as u64 + 1);
    if cells.saturating_mul(4) > super::MAX_STRING as u64 {
        return ctx
            .err("ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len");
    }
    let w = blen + 1;
    let mut t = vec![0u32; cells as usize];
    for i in 1..=alen {
        for j in 1..=blen {
            t[i * w + j] = if a[i - 1] == b[j - 1] {
                t[(i - 1) * w + j - 1] + 1
            } else {
                t[(i - 1) * w + j].max(t[i * w + j - 1])
            };
        }
    }
    let total = t[alen * w + blen];
    if get_len {
        return ctx.int_reply(total as i64);
    }
    // Walk back from the end, collecting the subsequence and, for IDX, the matching ranges
    // (last first, as Redis reports them).
    let mut out = vec![0u8; total as usize];
    let mut idx = total as usize;
    let mut ranges: Vec<[usize; 4]> = Vec::new();
    let mut cur: Option<[usize; 4]> = None; // a_start, a_end, b_start, b_end
    let (mut i, mut j) = (alen, blen);
    while i > 0 && j > 0 {
        let mut emit = false;
        if a[i - 1] == b[j - 1] {
            out[idx - 1] = a[i - 1];
            match &mut cur {
                None => cur = Some([i - 1, i - 1, j - 1, j - 1]),
                Some(r) if r[0] == i && r[2] == j => {
                    r[0] -= 1;
                    r[2] -= 1;
                }
                Some(_) => emit = true,
            }
            if cur.is_some_and(|r| r[0] == 0 || r[2] == 0) {
                emit = true;
            }
            idx -= 1;
            i -= 1;
            j -= 1;
        } else {
            if t[(i - 1) * w + j] > t[i * w + j - 1] {
                i -= 1;
            } else {
                j -= 1;
            }
            emit = cur.is_some();
        }
        if emit {
            if let Some(r) = cur.take() {
                if (r[1] - r[0] + 1) as i64 >= min_len {
                    ranges.push(r);
                }
            }
        }
    }
    if !get_idx {
        return ctx.bulk(&out);
    }
    encode::map(ctx.out, 2, ctx.proto);
    ctx.bulk(b"matches");
    ctx.array(ranges.len());
    for r in &ranges {
        ctx.array(2 + with_len as usize);
        ctx.array(2);
        ctx.int_reply(r[0] as i64);
        ctx.int_reply(r[1] as i64);
        ctx.array(2);
        ctx.int_reply(r[2] as i64);
        ctx.int_reply(r[3] as i64);
        if with_len {
            ctx.int_reply((r[1] - r[0] + 1) as i64);
        }
    }
    ctx.bulk(b"len");
    ctx.int_reply(total as i64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitfield_bits_round_trip() {
        let mut buf = vec![0u8; 16];
        for (signed, bits, off, v) in [
            (false, 8u32, 0u64, 200u64),
            (false, 5, 3, 31),
            (true, 4, 13, (-3i64) as u64),
            (true, 64, 40, i64::MIN as u64),
            (false, 63, 7, (1 << 62) + 5),
        ] {
            set_bits(&mut buf, off, bits, v);
            if signed {
                assert_eq!(get_signed(&buf, off, bits), v as i64);
            } else {
                assert_eq!(get_unsigned(&buf, off, bits), v);
            }
        }
    }

    #[test]
    fn overflow_like_redis() {
        // u8: 250 + 10 wraps to 4, saturates at 255; 5 - 10 wraps to 251, saturates at 0.
        assert_eq!(unsigned_overflow(250, 10, 8, Overflow::Wrap), Some(4));
        assert_eq!(unsigned_overflow(250, 10, 8, Overflow::Sat), Some(255));
        assert_eq!(unsigned_overflow(5, -10, 8, Overflow::Wrap), Some(251));
        assert_eq!(unsigned_overflow(5, -10, 8, Overflow::Sat), Some(0));
        assert_eq!(unsigned_overflow(5, 10, 8, Overflow::Fail), None);
        // i8: 120 + 10 wraps to -126, saturates at 127; -120 - 10 saturates at -128.
        assert_eq!(signed_overflow(120, 10, 8, Overflow::Wrap), Some(-126));
        assert_eq!(signed_overflow(120, 10, 8, Overflow::Sat), Some(127));
        assert_eq!(signed_overflow(-120, -10, 8, Overflow::Sat), Some(-128));
        assert_eq!(signed_overflow(-120, 10, 8, Overflow::Sat), None);
        // i64 at its limits.
        assert_eq!(
            signed_overflow(i64::MAX, 1, 64, Overflow::Wrap),
            Some(i64::MIN)
        );
        assert_eq!(
            signed_overflow(i64::MIN, -1, 64, Overflow::Sat),
            Some(i64::MIN)
        );
        assert_eq!(field_type(b"u64"), None);
        assert_eq!(field_type(b"i64"), Some((true, 64)));
        assert_eq!(field_type(b"I8"), None);
        assert_eq!(field_offset(b"#2", 8), Some(16));
        assert_eq!(field_offset(b"4294967296", 8), None);
    }
}
