//! RDB strings: raw, integer-encoded (`0xC0` int8, `0xC1` int16, `0xC2` int32, all LE) and
//! LZF-compressed (`0xC3 clen len data`), plus the text and binary doubles of zset scores.

use bytes::Bytes;

use crate::error::DecodeError;
use crate::length::{read_len_or_encoding, read_len_usize, write_len, Length};
use crate::lzf;
use crate::reader::Reader;

/// Special encoding: 8-bit signed integer.
pub const ENC_INT8: u8 = 0;
/// Special encoding: 16-bit signed little-endian integer.
pub const ENC_INT16: u8 = 1;
/// Special encoding: 32-bit signed little-endian integer.
pub const ENC_INT32: u8 = 2;
/// Special encoding: LZF-compressed string.
pub const ENC_LZF: u8 = 3;

/// Strings up to this length are never compressed (Redis's `len > 20` rule).
pub const LZF_MIN_LEN: usize = 21;

std::thread_local! {
    /// [`write_string`]'s LZF output, reused (a DUMP of many short strings allocates nothing).
    static LZF_OUT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `s` as an `i64` if it is the canonical decimal form of one (no sign `+`, no leading zeros,
/// no `-0`), as Redis's `string2ll` + round-trip check decides.
pub fn canonical_int(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let v: i64 = std::str::from_utf8(s).ok()?.parse().ok()?;
    (v.to_string().as_bytes() == s).then_some(v)
}

/// Append `s` as Redis's `rdbSaveRawString` does: integer encoding for canonical integers that
/// fit in 32 bits, LZF when `compress` and the string is longer than 20 bytes and shrinks by
/// more than 4 bytes, otherwise raw.
pub fn write_string(out: &mut Vec<u8>, s: &[u8], compress: bool) {
    if s.len() <= 11 {
        if let Some(v) = canonical_int(s) {
            if write_int(out, v) {
                return;
            }
        }
    }
    if compress && s.len() >= LZF_MIN_LEN {
        let done = LZF_OUT.with(|c| {
            let mut c = c.borrow_mut();
            c.clear();
            if !lzf::compress_into(s, s.len() - 4, &mut c) {
                return false;
            }
            out.push(0xC0 | ENC_LZF);
            write_len(out, c.len() as u64);
            write_len(out, s.len() as u64);
            out.extend_from_slice(&c);
            true
        });
        if done {
            return;
        }
    }
    write_len(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// Append `v` in the smallest integer encoding; false (nothing written) if it needs more than
/// 32 bits, in which case Redis stores the decimal text instead.
pub fn write_int(out: &mut Vec<u8>, v: i64) -> bool {
    if let Ok(b) = i8::try_from(v) {
        out.push(0xC0 | ENC_INT8);
        out.push(b as u8);
    } else if let Ok(h) = i16::try_from(v) {
        out.push(0xC0 | ENC_INT16);
        out.extend_from_slice(&h.to_le_bytes());
    } else if let Ok(w) = i32::try_from(v) {
        out.push(0xC0 | ENC_INT32);
        out.extend_from_slice(&w.to_le_bytes());
    } else {
        return false;
    }
    true
}

/// Read a string in any of its encodings (integers come back as decimal text).
pub fn read_string(r: &mut Reader<'_>) -> Result<Bytes, DecodeError> {
    let mut out = Vec::new();
    read_string_into(r, &mut out)?;
    Ok(Bytes::from(out))
}

/// [`read_string`] appending the bytes to `out` (integers as decimal text), with no allocation
/// when `out` has room.
pub fn read_string_into(r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let int = |out: &mut Vec<u8>, v: i64| {
        out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    };
    match read_len_or_encoding(r)? {
        Length::Len(n) => {
            let n = usize::try_from(n).map_err(|_| DecodeError::Truncated)?;
            out.extend_from_slice(r.take(n)?);
        }
        Length::Encoded(ENC_INT8) => int(out, i64::from(r.u8()? as i8)),
        Length::Encoded(ENC_INT16) => int(out, i64::from(i16::from_le_bytes(r.array()?))),
        Length::Encoded(ENC_INT32) => int(out, i64::from(i32::from_le_bytes(r.array()?))),
        Length::Encoded(ENC_LZF) => {
            let clen = read_len_usize(r)?;
            let len = read_len_usize(r)?;
            let data = r.take(clen)?;
            lzf::decompress_into(data, len, out)?;
        }
        Length::Encoded(_) => return Err(DecodeError::Invalid("unknown string encoding")),
    }
    Ok(())
}

/// The decimal text of `v`.
pub fn int_text(v: i64) -> Bytes {
    Bytes::from(v.to_string())
}

/// Append a zset score the RDB ≤ 7 way: a length byte then `%.17g` text, or the special lengths
/// 253 (NaN), 254 (+inf), 255 (−inf) with no text.
pub fn write_double(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.push(253);
    } else if v.is_infinite() {
        out.push(if v > 0.0 { 254 } else { 255 });
    } else {
        let s = format_g17(v);
        out.push(s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    }
}

/// Read a text zset score (see [`write_double`]).
pub fn read_double(r: &mut Reader<'_>) -> Result<f64, DecodeError> {
    match r.u8()? {
        253 => Ok(f64::NAN),
        254 => Ok(f64::INFINITY),
        255 => Ok(f64::NEG_INFINITY),
        n => parse_double(r.take(usize::from(n))?),
    }
}

/// Read a binary little-endian `f64` (RDB type 5, `ZSET_2`).
pub fn read_binary_double(r: &mut Reader<'_>) -> Result<f64, DecodeError> {
    Ok(f64::from_bits(r.u64_le()?))
}

/// Parse a score stored as text (`strtod` semantics for the forms Redis writes, including
/// `inf`, `-inf` and `nan`).
pub fn parse_double(s: &[u8]) -> Result<f64, DecodeError> {
    std::str::from_utf8(s)
        .ok()
        .and_then(|t| t.parse::<f64>().ok())
        .ok_or(DecodeError::Invalid("bad double value"))
}

/// C's `printf("%.17g", v)` for a finite `v`: 17 significant digits, trailing zeros removed,
/// exponent form when the exponent is below −4 or at least 17.
pub fn format_g17(v: f64) -> String {
    const P: i32 = 17;
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let sci = format!("{:.*e}", (P - 1) as usize, v);
    let (mant, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..P).contains(&exp) {
        let mant = trim_fraction(mant);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.unsigned_abs())
    } else {
        let fixed = format!("{:.*}", (P - 1 - exp) as usize, v);
        trim_fraction(&fixed).to_string()
    }
}

fn trim_fraction(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        write_string(&mut v, s, true);
        v
    }

    fn dec(b: &[u8]) -> Bytes {
        let mut r = Reader::new(b);
        let s = read_string(&mut r).expect("decodes");
        assert!(r.is_empty());
        s
    }

    #[test]
    fn redis_examples() {
        assert_eq!(enc(b"hello"), b"\x05hello");
        assert_eq!(enc(b"12345"), [0xc1, 0x39, 0x30]);
        assert_eq!(enc(b"-2"), [0xc0, 0xfe]);
        let big = b"9223372036854775807";
        let mut want = vec![0x13];
        want.extend_from_slice(big);
        assert_eq!(enc(big), want);
        let x = enc(&[b'x'; 100]);
        assert_eq!(&x[..4], [0xc3, 0x09, 0x40, 0x64]);
        assert_eq!(x.len(), 4 + 9);
        assert_eq!(dec(&x), vec![b'x'; 100]);
    }

    #[test]
    fn integer_rules() {
        assert_eq!(enc(b"0"), [0xc0, 0]);
        assert_eq!(enc(b"127"), [0xc0, 0x7f]);
        assert_eq!(enc(b"128"), [0xc1, 0x80, 0]);
        assert_eq!(enc(b"-32768"), [0xc1, 0x00, 0x80]);
        assert_eq!(enc(b"2147483647"), [0xc2, 0xff, 0xff, 0xff, 0x7f]);
        assert_eq!(enc(b"-2147483648"), [0xc2, 0, 0, 0, 0x80]);
        assert_eq!(enc(b"2147483648"), b"\x0a2147483648");
        for s in [&b"007"[..], b"-0", b"+1", b" 1", b"1 ", b""] {
            assert_eq!(enc(s)[0] as usize, s.len(), "{s:?} stays text");
        }
        for s in [
            "0",
            "-1",
            "127",
            "-128",
            "300",
            "-40000",
            "2147483647",
            "-2147483648",
        ] {
            assert_eq!(dec(&enc(s.as_bytes())), s.as_bytes());
        }
    }

    #[test]
    fn long_strings() {
        let s: Vec<u8> = (0..1000u32)
            .flat_map(|i| (i % 50).to_string().into_bytes())
            .collect();
        let e = enc(&s);
        assert_eq!(e[0], 0xc3);
        assert!(e.len() < s.len());
        assert_eq!(dec(&e), s);
        let twenty = [b'a'; 20];
        assert_eq!(enc(&twenty)[0], 20, "20 bytes are never compressed");
        let mut raw = Vec::new();
        write_string(&mut raw, &[b'a'; 100], false);
        assert_eq!(raw[..2], [0x40, 100]);
    }

    #[test]
    fn bad_strings() {
        for b in [
            &[0xc4u8][..],
            &[0xc1, 0x01],
            &[0x05, b'a'],
            &[0xc3, 0x01, 0x05, 0x00],
        ] {
            assert!(read_string(&mut Reader::new(b)).is_err(), "{b:?}");
        }
    }

    #[test]
    fn g17() {
        assert_eq!(format_g17(1.0), "1");
        assert_eq!(format_g17(-2.5), "-2.5");
        assert_eq!(format_g17(0.1), "0.10000000000000001");
        assert_eq!(format_g17(1e17), "1e+17");
        assert_eq!(format_g17(12345678901234567.0), "12345678901234568");
        assert_eq!(format_g17(0.0001), "0.0001");
        assert_eq!(format_g17(0.00001), "1.0000000000000001e-05");
        assert_eq!(format_g17(-0.0), "-0");
        assert_eq!(format_g17(f64::MAX), "1.7976931348623157e+308");
        assert_eq!(format_g17(5e-324), "4.9406564584124654e-324");
        for v in [1.5, -3.25, 1e300, 2.2250738585072014e-308, 0.3, 1.0 / 3.0] {
            assert_eq!(format_g17(v).parse::<f64>().ok(), Some(v));
        }
    }

    #[test]
    fn doubles() {
        for v in [0.0, 1.5, -7.0, f64::INFINITY, f64::NEG_INFINITY, 1e-300] {
            let mut b = Vec::new();
            write_double(&mut b, v);
            assert_eq!(read_double(&mut Reader::new(&b)), Ok(v));
        }
        let mut b = Vec::new();
        write_double(&mut b, f64::NAN);
        assert_eq!(b, [253]);
        assert!(read_double(&mut Reader::new(&b)).expect("nan").is_nan());
        assert_eq!(read_double(&mut Reader::new(b"\x031.5")), Ok(1.5));
        assert!(read_double(&mut Reader::new(b"\x03abc")).is_err());
    }
}
